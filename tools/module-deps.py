#!/usr/bin/env python3
"""Which top-level modules of src/ use which (by `crate::<module>` paths), and
every pair that uses each other (a cycle). Exit status 1 when there is a cycle.

    python3 tools/module-deps.py          # the cycles
    python3 tools/module-deps.py --all    # and every module's dependencies
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def module_of(path: pathlib.Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return parts[0]


def main() -> int:
    deps: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.rs")):
        module = module_of(path)
        if module in ("lib", "main"):
            continue
        text = path.read_text(encoding="utf-8")
        # `use crate::{a, b::c}` groups too.
        used = set(PATH.findall(text))
        for group in re.findall(r"\buse crate::\{([^}]*)\}", text):
            used |= {item.strip().split("::")[0] for item in group.split(",") if item.strip()}
        deps.setdefault(module, set()).update(used - {module})
    if "--all" in sys.argv:
        for module in sorted(deps):
            print(f"{module}: {', '.join(sorted(deps[module])) or '-'}")
    cycles = sorted(
        (a, b) for a in deps for b in deps[a] if a < b and a in deps.get(b, set())
    )
    for a, b in cycles:
        print(f"cycle: {a} <-> {b}")
    if not cycles:
        print("no module cycle")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
