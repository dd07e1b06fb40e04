#!/usr/bin/env python3
"""dsrgen's benchmark, side by side with its floors, in one run on one
filesystem. From the repository's root:

    python3 bench/bench.py [--dir DIR] [S] [M] [L]        (default: M L)

The trees are written below DIR (default target/bench). File creation on a
shared disk swings several-fold with background writeback; on tmpfs
(`--dir /dev/shm/dsrgen-bench`) it is the kernel's CPU work alone, and the
ratios are steady.

It builds dsrgen in release mode, generates the synthetic inventories
(examples/gen_inventory.rs), and for each size reports wall time (best of
three) and peak memory of

  check                 parse and validate, no output
  build, empty folder   the whole tree written
  build, no change      everything compared, nothing written
  build --check         the same, read-only
  build, one cluster    after changing one cluster's weights
  render only           templates rendered in memory (examples/render_bench.rs)

next to the floors

  cp -a                 copying the finished tree
  read all              find OUT -type f -exec cat {} + > /dev/null
  Jinja2, in memory     the same templates and contexts in Python's Jinja2
  Jinja2, to disk       the same, writing the tree (what an Ansible template
                        task costs at the least)

and the ratios the project's targets are stated in. Jinja2 comes from a
virtual environment under target/bench/ that the script makes if needed.
Results go to stdout and target/bench/results.md.
"""
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "target", "bench")
DSRGEN = os.path.join(ROOT, "target", "release", "dsrgen")
VENV = os.path.join(WORK, "venv")


def ensure_jinja2():
    """Re-run under a virtual environment that has Jinja2, if this Python lacks it."""
    try:
        import jinja2  # noqa: F401

        return
    except ImportError:
        pass
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "jinja2"], check=True)
    os.execv(python, [python] + sys.argv)


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def timed(args, before=None):
    """Best wall time of three runs (seconds) and the largest peak RSS (MB)."""
    best, peak = float("inf"), 0.0
    for _ in range(3):
        if before:
            before()
        out = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M"] + args,
            capture_output=True,
            text=True,
        )
        if out.returncode not in (0, 1):
            raise SystemExit(f"{args} failed:\n{out.stderr}")
        seconds, kb = out.stderr.strip().splitlines()[-1].split()
        best = min(best, float(seconds))
        peak = max(peak, int(kb) / 1024)
    return best, peak


def clean(path):
    def go():
        shutil.rmtree(path, ignore_errors=True)
        os.sync()

    return go


def bench(size, trees):
    here = os.path.join(WORK, size)
    shutil.rmtree(here, ignore_errors=True)
    os.makedirs(here)
    trees = os.path.join(trees, size)
    shutil.rmtree(trees, ignore_errors=True)
    os.makedirs(trees)
    inventory = os.path.join(here, "inventory.yaml")
    with open(inventory, "w") as f:
        f.write(run([os.path.join(ROOT, "target/release/examples/gen_inventory"), size]).stdout)
    checked = run([DSRGEN, "check", inventory])
    if checked.stderr:
        raise SystemExit(f"the generated inventory must check clean:\n{checked.stderr}")
    out = os.path.join(trees, "out")
    rows = {}
    rows["check"] = timed([DSRGEN, "check", inventory])
    rows["build, empty folder"] = timed([DSRGEN, "build", inventory, "--out", out], before=clean(out))
    files = sum(len(f) for _, _, f in os.walk(os.path.join(out, "hosts")))
    rows["build, no change"] = timed([DSRGEN, "build", inventory, "--out", out])
    rows["build --check, no change"] = timed([DSRGEN, "build", inventory, "--out", out, "--check"])

    # One cluster changes: the first weight of the first cluster, back and forth.
    with open(inventory) as f:
        text = f.read()
    first = re.search(r"weights: \{ (web\d+): (\d+)", text)
    variants = [text, text[: first.start(2)] + str(int(first.group(2)) % 100 + 1) + text[first.end(2):]]
    turn = [0]

    def flip():
        turn[0] ^= 1
        with open(inventory, "w") as f:
            f.write(variants[turn[0]])

    rows["build, one cluster changed"] = timed([DSRGEN, "build", inventory, "--out", out], before=flip)
    with open(inventory, "w") as f:
        f.write(text)
    run([DSRGEN, "build", inventory, "--out", out])

    copy = os.path.join(trees, "copy")
    rows["cp -a of the tree"] = timed(["cp", "-a", out, copy], before=clean(copy))
    rows["read every file"] = timed(["sh", "-c", f"find {out} -type f -exec cat {{}} + > /dev/null"])

    render = run([os.path.join(ROOT, "target/release/examples/render_bench"), inventory]).stdout.split()
    rows["render only (dsrgen)"] = (float(render[0]), None)
    contexts = os.path.join(here, "contexts.jsonl")
    # --check into a folder that does not exist: writes nothing, exits 1 (drift).
    subprocess.run(
        [DSRGEN, "build", inventory, "--out", os.path.join(trees, "none"), "--check", "--dump-contexts", contexts],
        capture_output=True,
    )
    reference = os.path.join(ROOT, "bench", "reference.py")
    templates = os.path.join(ROOT, "templates")
    rows["Jinja2, in memory"] = (float(run([sys.executable, reference, contexts, templates]).stdout.split()[0]), None)
    ref_out = os.path.join(trees, "jinja2")
    clean(ref_out)()
    started = time.perf_counter()
    run([sys.executable, reference, contexts, templates, ref_out])
    rows["Jinja2, to disk"] = (time.perf_counter() - started, None)
    if not trees.startswith(WORK + os.sep):
        shutil.rmtree(trees, ignore_errors=True)  # only target/ keeps them
    return rows, files


def main():
    args = sys.argv[1:]
    trees = WORK
    if "--dir" in args:
        at = args.index("--dir")
        trees = os.path.abspath(args[at + 1])
        del args[at : at + 2]
    sizes = args or ["M", "L"]
    ensure_jinja2()
    subprocess.run(
        ["cargo", "build", "--release", "-q", "--bin", "dsrgen", "--example", "gen_inventory", "--example", "render_bench"],
        cwd=ROOT,
        check=True,
    )
    os.makedirs(WORK, exist_ok=True)
    results = {size: bench(size, trees) for size in sizes}

    lines = ["| | " + " | ".join(f"{s} ({results[s][1]} files)" for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    names = list(results[sizes[0]][0])
    for name in names:
        cells = []
        for s in sizes:
            seconds, mb = results[s][0][name]
            cells.append(f"{seconds:.2f} s" + (f", {mb:.0f} MB" if mb else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    def ratio(s, a, b):
        return results[s][0][a][0] / results[s][0][b][0]

    lines.append("")
    lines.append("| ratio | target | " + " | ".join(sizes) + " |")
    lines.append("|---|---|" + "---|" * len(sizes))
    checks = [
        ("build, empty / cp -a", "<= 1.3", lambda s: ratio(s, "build, empty folder", "cp -a of the tree"), lambda r: r <= 1.3),
        ("build, no change / read every file", "<= 1.5", lambda s: ratio(s, "build, no change", "read every file"), lambda r: r <= 1.5),
        ("build --check / read every file", "<= 1.5", lambda s: ratio(s, "build --check, no change", "read every file"), lambda r: r <= 1.5),
        ("one cluster / no change", "<= 1.5", lambda s: ratio(s, "build, one cluster changed", "build, no change"), lambda r: r <= 1.5),
        ("Jinja2 in memory / dsrgen render", ">= 10", lambda s: ratio(s, "Jinja2, in memory", "render only (dsrgen)"), lambda r: r >= 10),
        ("Jinja2 to disk / dsrgen build", ">= 2", lambda s: ratio(s, "Jinja2, to disk", "build, empty folder"), lambda r: r >= 2),
        ("check", "<= 0.5 s", lambda s: results[s][0]["check"][0], lambda r: r <= 0.5),
        ("peak memory (MB)", "<= 300", lambda s: max(mb or 0 for _, mb in results[s][0].values()), lambda r: r <= 300),
    ]
    for name, target, value, ok in checks:
        cells = [f"{value(s):.2f} {'met' if ok(value(s)) else 'MISSED'}" for s in sizes]
        lines.append(f"| {name} | {target} | " + " | ".join(cells) + " |")
    if "M" in sizes and "L" in sizes:
        lines.append("")
        lines.append("M to L (5x the inventory): " + ", ".join(
            f"{name} x{results['L'][0][name][0] / max(results['M'][0][name][0], 1e-9):.1f}"
            for name in ["check", "build, empty folder", "build, no change", "render only (dsrgen)"]))
    lines.append("")
    lines.append(f"Trees written below {trees}.")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(WORK, "results.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
