"""The import graph of pez and pez_app, read from the source (every import, module-level or inside
a function): prints its cycles, any import of the app by the core and any import of the test
fixtures (pez.testing) by the core's library modules; exits 1 when there is one.

    python scripts/import_graph.py

A module's edges go to what it names: `from .models import load_clip` is an edge to pez.models,
`from . import flux_replica` one to pez.testing.flux_replica. The implicit import of a parent
package (pez.models.clip runs pez/__init__.py first) is not an edge, as in import-linter.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pez", "pez_app")
CORE, APP, FIXTURES = "pez", "pez_app", "pez.testing"
FRONT_ENDS = ("pez.cli",)  # may offer the fixtures ("random:tiny" for smoke runs); the app is pez_app


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that `name` (at `path`) imports."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import mod` names the submodule; `from mod import thing` names the module
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` names a.b.c; fall back to its package
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    loops = cycles(graph)
    upward = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if a.split(".")[0] == CORE and b.split(".")[0] == APP
    )
    library = [m for m in graph if m.split(".")[0] == CORE and not m.startswith(FIXTURES) and m not in FRONT_ENDS]
    fixtures = sorted(f"{a} -> {b}" for a in library for b in graph[a] if b.startswith(FIXTURES))
    edges = sum(len(t) for t in graph.values())
    print(
        f"{len(known)} modules, {edges} imports; {len(loops)} cycle(s); {len(upward)} import(s) of {APP} by {CORE}; "
        f"{len(fixtures)} import(s) of {FIXTURES} by the core's library"
    )
    for loop in loops:
        print("cycle:", " <-> ".join(loop))
    for edge in upward:
        print("core imports the app:", edge)
    for edge in fixtures:
        print("core imports the test fixtures:", edge)
    return 1 if loops or upward or fixtures else 0


if __name__ == "__main__":
    sys.exit(main())
