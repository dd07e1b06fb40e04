#!/usr/bin/env python3
"""The benchmark's floor for template rendering: Python's Jinja2 renders the
same templates (templates/*.j2) from the same per-file contexts that dsrgen
wrote with `build --dump-contexts`, with the same settings (strict undefined,
trim_blocks, lstrip_blocks, trailing newline kept). This is what an Ansible
`template` task pays at the least.

    reference.py CONTEXTS.jsonl TEMPLATES_DIR [OUT_DIR]

Without OUT_DIR it renders in memory only. It prints the best of three times
in seconds, the number of files and of bytes.
"""
import json
import os
import sys
import time

import jinja2


def main():
    contexts_path, templates_dir = sys.argv[1], sys.argv[2]
    out_dir = sys.argv[3] if len(sys.argv) > 3 else None
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    with open(contexts_path, encoding="utf-8") as f:
        files = [json.loads(line) for line in f]
    templates = {}
    best = float("inf")
    size = 0
    rounds = 1 if out_dir else 3
    for _ in range(rounds):
        started = time.perf_counter()
        size = 0
        made = set()
        for item in files:
            name = item["template"]
            template = templates.get(name)
            if template is None:
                template = templates[name] = env.get_template(name + ".j2")
            text = template.render(item["context"])
            size += len(text.encode())
            if out_dir:
                path = os.path.join(out_dir, item["path"])
                folder = os.path.dirname(path)
                if folder not in made:
                    os.makedirs(folder, exist_ok=True)
                    made.add(folder)
                with open(path, "w", encoding="utf-8") as out:
                    out.write(text)
                os.chmod(path, item["mode"])
        best = min(best, time.perf_counter() - started)
    print(f"{best:.4f} {len(files)} {size}")


if __name__ == "__main__":
    main()
