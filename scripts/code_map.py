"""Print the package's import graph (which part imports which), its longest functions, and what
the faces (cli.py, api.py) import from the package: the review table of the layering.

    python scripts/code_map.py [--top 12]
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "viewfinder"


def part_of(module: str) -> str:
    """`viewfinder.query.search` -> `query`; top-level modules keep their own name."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else pieces[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of the package modules that `path` imports, at any depth (lazy ones too)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("viewfinder"):
            found.add(node.module)
    return found


def longest_functions(top: int) -> list[tuple[int, str]]:
    out = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append(
                    (node.end_lineno - node.lineno + 1, f"{path.relative_to(PACKAGE.parent)}: {node.name}")
                )
    return sorted(out, reverse=True)[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    graph: dict[str, set[str]] = defaultdict(set)
    faces: dict[str, set[str]] = defaultdict(set)
    modules: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        src = part_of(module_name(path))
        modules[module_name(path)] = imports_of(path)
        for target in imports_of(path):
            dst = part_of(target)
            if dst != src:
                graph[src].add(dst)
            if path.name in ("cli.py", "api.py") and path.parent == PACKAGE:
                faces[path.name].add(target)
    print("| part | imports |\n|---|---|")
    for src in sorted(graph):
        print(f"| {src} | {', '.join(sorted(graph[src]))} |")
    loops = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in graph.get(b, ())})
    print(f"\nimport loops between parts: {', '.join(f'{a} <-> {b}' for a, b in loops) or 'none'}")
    module_loops = sorted(
        {tuple(sorted((a, b))) for a in modules for b in modules[a] if a != b and a in modules.get(b, ())}
    )
    print(f"import loops between modules: {', '.join(f'{a} <-> {b}' for a, b in module_loops) or 'none'}")
    print("\nlongest functions (lines):")
    for n, name in longest_functions(args.top):
        print(f"  {n:4d}  {name}")
    print("\nwhat the faces import from the package:")
    for face, targets in sorted(faces.items()):
        print(f"  {face}: {', '.join(sorted(targets))}")


if __name__ == "__main__":
    main()
