"""The package's layout: every module imports, no import cycles, no module over 300 lines.

The import graph is read from each module's source with `ast`: every `import` / `from ... import`
of a numpyro_diffprior module, at any depth (imports inside functions count: a cycle hidden in
function-level imports is still a cycle). Left out on purpose:
- the implicit imports of parent packages (importing `a.b.c` runs `a/__init__` and
  `a/b/__init__`): a package `__init__` that re-exports its submodules would otherwise form a
  cycle with each of them;
- the lazy re-exports of `numpyro_diffprior/__init__.py` (`_LAZY`, names resolved on first
  attribute access through importlib, not import statements);
- deprecated shims (modules whose docstring starts with "Deprecated:"): they only re-export
  names from their new home, nothing in the package imports them, and they warn on import;
  `test_deprecated_shims_warn_and_reexport` checks them.
"""

from __future__ import annotations

import ast
import importlib
import pathlib
import sys
import warnings

import pytest

import numpyro_diffprior

ROOT = pathlib.Path(numpyro_diffprior.__file__).resolve().parent
MAX_LINES = 300
REASON = "Over 300 lines:"


def _modules() -> dict[str, tuple[pathlib.Path, bool]]:
    """{dotted name: (path, is a package __init__)} of every module of the package."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


MODULES = _modules()


def _docstring(path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


DEPRECATED = {
    name for name, (path, _) in MODULES.items() if _docstring(path).startswith("Deprecated:")
}


def _resolve(name: str) -> str | None:
    """The package module that `import name` loads last (its longest known prefix)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """{module: package modules it imports anywhere in its source}, shims left out."""
    graph = {}
    for name, (path, is_pkg) in MODULES.items():
        if name in DEPRECATED:
            continue
        package = name if is_pkg else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(_resolve(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for a in node.names:  # `from pkg import submodule` imports the submodule
                    full = f"{module}.{a.name}"
                    targets.add(full if full in MODULES else _resolve(module))
        graph[name] = {t for t in targets if t and t != name and t not in DEPRECATED}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle [a, b, ..., a] of the directed graph, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize("name", sorted(set(MODULES) - DEPRECATED))
def test_every_module_imports(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # nothing imports a deprecated path
        importlib.import_module(name)


def test_no_import_cycles():
    graph = import_graph()
    assert "numpyro_diffprior.prior" in graph and graph["numpyro_diffprior.checkpoints"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_sees_function_level_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    graph = import_graph()  # emulator.recipe's build_emulator imports spectra inside a function
    assert (
        "numpyro_diffprior.cosmology.spectra"
        in graph["numpyro_diffprior.cosmology.emulator.recipe"]
    )


def test_no_module_over_300_lines_without_a_reason():
    too_long = []
    for name, (path, _) in MODULES.items():
        lines = len(path.read_text().splitlines())
        reasons = [ln for ln in _docstring(path).splitlines() if ln.startswith(REASON)]
        if lines > MAX_LINES and not reasons:
            too_long.append(f"{name} ({lines} lines)")
    assert not too_long, f"over {MAX_LINES} lines, no {REASON!r} line in the docstring: {too_long}"


@pytest.mark.parametrize("name", sorted(DEPRECATED))
def test_deprecated_shims_warn_and_reexport(name):
    """A shim warns on import and defines nothing itself: every function or class it offers
    lives in the new module (so pickles made before the move load the new classes)."""
    sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning, match=name.rpartition(".")[2]):
        module = importlib.import_module(name)
    offered = [getattr(module, n) for n in dir(module) if callable(getattr(module, n))]
    offered = [obj for obj in offered if hasattr(obj, "__module__") and obj is not warnings.warn]
    assert offered, f"{name} re-exports nothing"
    assert all(obj.__module__ != name for obj in offered)
