#!/usr/bin/env python3
"""The nftables director at scale, side by side in one run (issue 17). As root,
from the repository's root:

    python3 bench/nft.py [--packets N]        (default 200000)

It builds dsrgen in release mode ($CARGO_TARGET_DIR or target/), generates the
L benchmark inventory (examples/gen_inventory.rs) and builds it, and builds
tests/e2e/maglev.yaml, whose director has one service. Then, in network
namespaces it creates (documentation addresses only), it reports

  per packet            a Python loop sends N UDP datagrams of one flow
                        through a veth pair into the director's ingress chain,
                        which looks the service up, finds the flow's pin and
                        forwards it to a backend (a static neighbour entry, so
                        nothing waits for ARP); wall time per datagram, best
                        of three, the two rulesets taking turns
  nft -f                load time and nft's peak memory of L's director,
                        into an empty namespace and over itself (a reload)

and the ratio L / one service, which the issue wants under 1.2. Results go to
stdout and target/bench/nft.md.
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
DSRGEN = os.path.join(TARGET, "release", "dsrgen")
WORK = os.path.join(ROOT, "target", "bench")

SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.51.100.100", 40000))
s.connect((sys.argv[1], int(sys.argv[2])))
n = int(sys.argv[3])
for _ in range(1000):
    s.send(b"x")
start = time.perf_counter()
for _ in range(n):
    s.send(b"x")
print(time.perf_counter() - start)
"""


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def build(inventory, out):
    run([DSRGEN, "build", inventory, "--out", out])


def director(out):
    """The one nftables file of a built tree."""
    for host in sorted(os.listdir(os.path.join(out, "hosts"))):
        path = os.path.join(out, "hosts", host, "etc/nftables.d/dsrgen.nft")
        if os.path.exists(path):
            return path
    raise SystemExit(f"no nftables director in {out}")


def first_service(ruleset):
    """(interface, VIP, port, backend addresses) of the first UDP service on IPv4."""
    text = open(ruleset).read()
    interface = re.search(r'device "([^"]+)"', text).group(1)
    m = re.search(r"add element netdev dsrgen svc4 \{ ([\d.]+) \. udp \. (\d+) :", text)
    if not m:
        raise SystemExit(f"{ruleset} has no IPv4 UDP service")
    vip, port = m.group(1), m.group(2)
    live = re.search(rf"add element netdev dsrgen live4 \{{ {re.escape(vip)} \. udp \. {port} \. [^}}]*\}}", text)
    ids = re.findall(r"\. (\d+)(?:,| \})", live.group(0))
    backends = {}
    for bid, address in re.findall(r"(\d+) : ([\d.]+)", re.search(r"add element netdev dsrgen be4 \{[^}]*\}", text).group(0)):
        backends[bid] = address
    return interface, vip, int(port), [backends[i] for i in ids]


def documented(ruleset, path):
    """A copy of `ruleset` whose first IPv4 UDP service and its backends have
    documentation addresses (198.51.100.0/24), so that the benchmark sends
    packets to nothing else. The L inventory uses 198.18.0.0/15."""
    interface, vip, port, backends = first_service(ruleset)
    text = open(ruleset).read()
    renamed = {vip: "198.51.100.181"}
    renamed.update({b: f"198.51.100.{10 + i}" for i, b in enumerate(backends)})
    for old, new in renamed.items():
        text = re.sub(rf"(?<![\d.]){re.escape(old)}(?![\d.])", new, text)
    with open(path, "w") as f:
        f.write(text)
    return path


def namespace_script(ruleset, packets):
    """A shell script that sets up sender -> director and prints the seconds."""
    interface, vip, port, backends = first_service(ruleset)
    assert all(a.startswith("198.51.100.") for a in [vip] + backends), "documentation addresses only"
    neigh = "\n".join(
        f"ip -n dir neigh replace {b} lladdr 02:00:00:00:02:{i % 256:02x} dev {interface} nud permanent"
        for i, b in enumerate(backends)
    )
    return f"""set -e
ip netns add snd; ip netns add dir
ip link add eth0 netns snd type veth peer name {interface} netns dir
ip -n snd addr add 198.51.100.100/24 dev eth0
ip -n dir addr add 198.51.100.2/24 dev {interface}
ip -n snd link set eth0 up; ip -n dir link set {interface} up
ip -n snd neigh replace {vip} lladdr $(ip -n dir -j link show {interface} | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])') dev eth0 nud permanent
{neigh}
ip netns exec dir nft -f {ruleset}
ip netns exec snd python3 -c '{SENDER}' {vip} {port} {packets}
"""


def per_packet(ruleset, packets):
    script = namespace_script(ruleset, packets)
    out = run(["unshare", "--mount", "--net", "sh", "-c",
               "mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns && " + script.replace("\n", "\n")])
    return float(out.stdout.strip().splitlines()[-1]) / packets * 1e6


def load(ruleset):
    interface = first_service(ruleset)[0]
    script = f"""ip link add {interface} type veth peer name peer0
/usr/bin/time -f '%e %M' nft -f {ruleset}
/usr/bin/time -f '%e %M' nft -f {ruleset}"""
    out = subprocess.run(["unshare", "--net", "sh", "-ec", script], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"nft -f {ruleset} failed:\n{out.stderr}")
    rows = [line.split() for line in out.stderr.strip().splitlines()[-2:]]
    return [(float(s), int(kb) / 1024) for s, kb in rows]


def main():
    packets = 200000
    if "--packets" in sys.argv:
        packets = int(sys.argv[sys.argv.index("--packets") + 1])
    run(["cargo", "build", "--release", "-q", "--bin", "dsrgen", "--example", "gen_inventory"], cwd=ROOT)
    os.makedirs(WORK, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        inventory = os.path.join(tmp, "L.yaml")
        with open(inventory, "w") as f:
            f.write(run([os.path.join(TARGET, "release/examples/gen_inventory"), "L"]).stdout)
        build(inventory, os.path.join(tmp, "L"))
        build(os.path.join(ROOT, "tests/e2e/maglev.yaml"), os.path.join(tmp, "one"))
        big, one = director(os.path.join(tmp, "L")), director(os.path.join(tmp, "one"))
        sent_big = documented(big, os.path.join(tmp, "L.nft"))
        sent_one = documented(one, os.path.join(tmp, "one.nft"))
        services = sum(1 for line in open(big) if line.startswith("add element netdev dsrgen svc"))
        entries = sum(line.count(" : ") for line in open(big) if line.startswith("add element netdev dsrgen maglev"))
        costs = {"one": [], "L": []}
        for _ in range(3):
            costs["one"].append(per_packet(sent_one, packets))
            costs["L"].append(per_packet(sent_big, packets))
        (first, first_mb), (again, again_mb) = load(big)
    c1, cl = min(costs["one"]), min(costs["L"])
    lines = [
        f"| | one service | L's director ({services} services, {entries} table entries) |",
        "|---|---|---|",
        f"| per packet, {packets} datagrams (best of 3) | {c1:.2f} us | {cl:.2f} us |",
        f"| all three runs | {', '.join(f'{c:.2f}' for c in costs['one'])} | {', '.join(f'{c:.2f}' for c in costs['L'])} |",
        f"| nft -f, empty namespace | | {first:.2f} s, {first_mb:.0f} MB |",
        f"| nft -f, over itself (reload) | | {again:.2f} s, {again_mb:.0f} MB |",
        "",
        f"per-packet ratio L / one service: {cl / c1:.2f} (target under 1.2: {'met' if cl / c1 < 1.2 else 'MISSED'}); "
        f"load under 2 s and 500 MB: {'met' if max(first, again) < 2 and max(first_mb, again_mb) < 500 else 'MISSED'}",
    ]
    print("\n".join(lines))
    with open(os.path.join(WORK, "nft.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
