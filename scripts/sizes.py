#!/usr/bin/env python3
"""The house's size rules, checked: no source file over 600 lines (a unit
test module in its own `tests.rs` aside) and no function over 120 lines,
under `src/` and `crates/*/src/`. Prints each breach and exits 1 if any.

    python3 scripts/sizes.py

A function's length is counted from its `fn` line to the `}` that closes
it at the same indentation, as rustfmt lays code out."""
import pathlib, re, sys

MAX_FILE, MAX_FN = 600, 120
root = pathlib.Path(__file__).resolve().parent.parent
fn_start = re.compile(r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
breaches = []
files = sorted(root.glob("src/**/*.rs")) + sorted(root.glob("crates/*/src/**/*.rs"))
for path in files:
    lines = path.read_text().split("\n")
    rel = path.relative_to(root)
    if len(lines) - 1 > MAX_FILE and path.name != "tests.rs":
        breaches.append(f"{rel}: {len(lines) - 1} lines (at most {MAX_FILE})")
    for i, line in enumerate(lines):
        m = fn_start.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        indent = m.group(1)
        for j in range(i + 1, len(lines)):
            if lines[j] == indent + "}":
                if j - i + 1 > MAX_FN:
                    breaches.append(f"{rel}:{i + 1}: fn {m.group(7)} is {j - i + 1} lines (at most {MAX_FN})")
                break
for b in breaches:
    print(b)
print(f"sizes: {len(files)} files checked, {len(breaches)} over the limits")
sys.exit(1 if breaches else 0)
