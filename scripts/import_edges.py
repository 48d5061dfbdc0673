#!/usr/bin/env python3
"""Print the import edges between pipeline's top-level packages, read from the source's AST.

    python scripts/import_edges.py [PACKAGE_DIR]      (default: pipeline/ beside this script)

One line per edge `from -> to  (N imports: module, ...)`; top-level modules (cli, frame, scheduler,
__main__) count as their own units. Lazy imports inside functions are included (they are edges
too), marked with `*` when every import on that edge is inside a function.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pipeline" or len(parts) < 2:
        return None
    return parts[1]


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(tree: ast.AST, this: str) -> list[tuple[str, bool]]:
    """(imported module, inside a function?) for every import statement."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative import: resolve against this module's package
                    base = this.split(".")[:-child.level] if child.level else []
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module or ""
                found.append((name, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def edges(root: Path) -> dict[tuple[str, str], list[tuple[str, bool]]]:
    out: dict[tuple[str, str], list[tuple[str, bool]]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        this = module_name(path, root)
        src = unit_of(this) or "?"
        for name, nested in imports_of(ast.parse(path.read_text(), str(path)), this):
            dst = unit_of(name)
            if dst and dst != src:
                out[(src, dst)].append((this, nested))
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "pipeline"
    found = edges(root.resolve())
    for (src, dst), uses in sorted(found.items()):
        modules = sorted({m for m, _ in uses})
        lazy = "*" if all(nested for _, nested in uses) else " "
        print(f"{src:>12} -> {dst:<12}{lazy} {len(uses):3d}  {', '.join(m.removeprefix('pipeline.') for m in modules)}")
    print(f"# {len(found)} edges between {len({u for e in found for u in e})} top-level units")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
