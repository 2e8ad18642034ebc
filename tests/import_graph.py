"""The import graph of src/mlmtune, imports inside functions included, and its cycles.

    python tests/import_graph.py          # prints the modules caught in import cycles, and the edges
    python tests/import_graph.py --layers # also the imports that go against the layer order

Every `import` and `from ... import` anywhere in a module (top level or inside a function) is an edge
to the mlmtune module it names; `from . import x` is an edge to the submodule x when there is one,
else to the package that defines x. A cycle is a strongly connected component of two or more
modules. tests/test_layout.py asserts there is none and that imports run one way between layers.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "mlmtune"


def module_files(src: Path = SRC) -> dict[str, Path]:
    """Module name -> file, for every .py below src/mlmtune (a package is its __init__.py)."""
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name>` written in `module`."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The mlmtune modules `module` imports anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(name: str) -> None:
        while name and name not in modules:  # `mlmtune.data.blocks.Blocks` -> its module
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node.level, node.module)
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                add(full if full in modules else target)
    return found


def graph(src: Path = SRC) -> dict[str, set[str]]:
    modules = module_files(src)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


# Layers, top to bottom: a module may import its own layer's and lower layers' modules only. The
# package's __init__ (the Python API) and __main__ sit on top.
LAYERS = [
    ["mlmtune", "mlmtune.__main__"],
    ["mlmtune.cli"],
    ["mlmtune.serve"],
    ["mlmtune.training"],
    ["mlmtune.run"],
    ["mlmtune.eval"],
    ["mlmtune.model", "mlmtune.data"],
    ["mlmtune.config", "mlmtune.errors", "mlmtune.version"],
]


def layer_of(module: str) -> int | None:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix))
    return None if best is None else best[0]


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a lower layer to a higher one (each a place where a function lives in the wrong module)."""
    out = []
    for source, targets in sorted(edges.items()):
        a = layer_of(source)
        for target in sorted(targets):
            b = layer_of(target)
            if a is not None and b is not None and b < a:
                out.append((source, target))
    return out


def main(argv: list[str]) -> int:
    edges = graph()
    found = cycles(edges)
    n_edges = sum(len(t) for t in edges.values())
    print(f"{len(edges)} modules, {n_edges} import edges (inside functions included)")
    print(f"{len(found)} import cycles (strongly connected components), {sum(map(len, found))} modules in them")
    for component in found:
        print("  cycle: " + ", ".join(component))
    if "--layers" in argv:
        wrong = upward(edges)
        print(f"{len(wrong)} imports against the layer order")
        for source, target in wrong:
            print(f"  {source} -> {target}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
