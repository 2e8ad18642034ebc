"""The package's layout: no import cycle, imports one way between the stages, and no import of a
package module hidden inside a function (outside the entry points, which load stages lazily so that
`mlmtune --help` stays fast)."""

from __future__ import annotations

import ast

from import_graph import PACKAGE, SRC, cycles, graph, layer_of, module_files, upward

ENTRY_POINTS = {"mlmtune", "mlmtune.cli"}  # the Python API and the command line: stages imported on use


def test_the_import_graph_has_no_cycle():
    found = cycles(graph())
    assert found == [], f"import cycles: {found}"


def test_imports_run_one_way_between_the_stages():
    edges = graph()
    assert all(layer_of(m) is not None for m in edges), [m for m in edges if layer_of(m) is None]
    assert upward(edges) == []


def test_a_cycle_is_found_where_there_is_one(tmp_path):
    """The checker itself: two modules that import each other inside functions are a cycle."""
    package = tmp_path / PACKAGE
    (package / "a").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a" / "__init__.py").write_text("")
    (package / "a" / "one.py").write_text("def f():\n    from .two import g\n")
    (package / "a" / "two.py").write_text("def g():\n    from . import one\n")
    (package / "b.py").write_text("from .a import one\n")
    assert cycles(graph(tmp_path)) == [["mlmtune.a.one", "mlmtune.a.two"]]


def test_no_package_module_is_imported_inside_a_function():
    """A function-level import of a package module hides a cycle or a module in the wrong place;
    heavy third-party imports (torch, transformers, matplotlib, ...) may be lazy."""
    hidden = []
    for name, path in module_files().items():
        if name in ENTRY_POINTS or any(name.startswith(e + ".") for e in ENTRY_POINTS if e != PACKAGE):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in top and (
                    node.level > 0 or (node.module or "").split(".")[0] == PACKAGE):
                hidden.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert hidden == []
