#!/usr/bin/env python3
"""ARCHITECTURE.md checked against the tree: every folder of `src/` and of
`crates/*/src/` is named in it (as `name/` with its parent's path, or the
folder's path from `src/`), and every file that declares per-thread state
(`thread_local!`) is listed in its table of per-thread state, by its path
from `src/` (or from the crate's `src/`). Prints what is missing and exits 1
if anything is.

    python3 scripts/map.py"""
import pathlib, sys

root = pathlib.Path(__file__).resolve().parent.parent
doc = (root / "ARCHITECTURE.md").read_text()
section = doc.split("## Threads and per-thread state", 1)[-1].split("\n## ", 1)[0]
missing = []
for src in [root / "src", *sorted(root.glob("crates/*/src"))]:
    for d in sorted(p for p in src.rglob("*") if p.is_dir()):
        rel = d.relative_to(src).as_posix()
        names = {f"{rel}/", f"src/{rel}/", f"`{d.name}/`"}
        if not any(n in doc for n in names):
            missing.append(f"folder {d.relative_to(root)}/ is not named in ARCHITECTURE.md")
    for f in sorted(src.rglob("*.rs")):
        if "thread_local!" in f.read_text() and f.relative_to(src).as_posix() not in section:
            missing.append(f"{f.relative_to(root)} declares per-thread state not listed in ARCHITECTURE.md")
for m in missing:
    print(m)
print(f"map: {len(missing)} missing from ARCHITECTURE.md")
sys.exit(1 if missing else 0)
