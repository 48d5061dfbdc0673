"""Prints what the layout of pipeline/ looks like: top-level module count, the largest classes and
functions, and the import edges between top-level packages (from the AST, imports inside functions too).

    python3 scripts/layout_report.py [ROOT]      # ROOT: a checkout (default: this one)
"""
from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path


def top_level_unit(module: str) -> str:
    """pipeline.app.daemon -> app; pipeline.cli -> cli (a top-level module is its own unit)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def report(root: Path) -> None:
    package = root / "pipeline"
    files = sorted(package.rglob("*.py"))
    top_modules = [p for p in package.glob("*.py") if p.name != "__init__.py"]
    top_packages = [p for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    print(f"top level: {len(top_modules)} modules, {len(top_packages)} packages")
    classes, functions = [], []
    edges: Counter[tuple[str, str]] = Counter()
    for path in files:
        tree = ast.parse(path.read_text())
        name = module_name(root, path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                fields = {t.attr for n in ast.walk(node) if isinstance(n, (ast.Assign, ast.AnnAssign))
                          for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                          if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
                classes.append((node.end_lineno - node.lineno + 1, len(fields), f"{name}.{node.name}"))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline.") and node.level == 0:
                src, dst = top_level_unit(name), top_level_unit(node.module)
                if src != dst:
                    edges[(src, dst)] += 1
    print("largest classes (lines, self fields):")
    for lines, nfields, qual in sorted(classes, reverse=True)[:5]:
        print(f"  {lines:4d} lines {nfields:3d} fields  {qual}")
    print("largest functions (lines):")
    for lines, qual in sorted(functions, reverse=True)[:5]:
        print(f"  {lines:4d}  {qual}")
    units = sorted({u for e in edges for u in e})
    print(f"import edges between top-level units: {len(edges)}")
    for src in units:
        dsts = sorted(d for (s, d) in edges if s == src)
        if dsts:
            print(f"  {src} -> {', '.join(dsts)}")


if __name__ == "__main__":
    report(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]))
