"""The package's import layering: no import cycle, and importing a library module has no side effects.

The cycle test reads the source (``ast``), it imports nothing. A module's edges are its module-level imports
of ``lzn_lightning`` modules, class bodies and module-level ``if``/``try`` blocks included. Left out: imports
inside functions (they run when called, once the modules are loaded) and under ``if TYPE_CHECKING:`` (never
run).

Package ``__init__`` files and their re-exports: ``from lzn_lightning.data import LZNDataModule`` is an edge
to the package ``lzn_lightning.data`` (its ``__init__``), whose own imports of its submodules are its edges in
turn, so a re-export that leads back to the importer is a cycle. ``from lzn_lightning.data import files``
names a submodule, so it is an edge to ``lzn_lightning.data.files``. Importing ``a.b.c`` first runs the
parents' ``__init__`` files; that is no edge here: a parent is always loaded before its children, and a
package ``__init__`` importing its own submodules (the re-export pattern) would otherwise be a cycle with
each of them.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "lzn_lightning"
# Where each part of the package lives in the repository (pyproject.toml maps modalities/ into the package).
SOURCES = {PACKAGE: ROOT / "src" / PACKAGE, f"{PACKAGE}.modalities": ROOT / "modalities"}


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for prefix, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((prefix, *parts))] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ModuleLevelImports(ast.NodeVisitor):
    """The modules named by the imports that run when the module is imported."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package = module, is_package
        self.names: list[str] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        pass  # runs when called, not on import

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        self.names += [alias.name for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # a relative import: resolve it against this module's package
            here = self.module.split(".")
            anchor = here if self.is_package else here[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        # ``from pkg import name``: ``pkg.name`` when a submodule (then ``pkg`` is only its parent), else
        # ``pkg`` (resolved against the package's modules in :func:`import_graph`)
        self.names += [base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level."""
    modules = package_modules()
    graph = {}
    for name, path in modules.items():
        visitor = _ModuleLevelImports(name, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(), str(path)))
        targets = set()
        for imported in visitor.names:
            if imported in modules:
                targets.add(imported)
            elif imported.rpartition(".")[0] in modules:  # ``from module import function``: the module
                targets.add(imported.rpartition(".")[0])
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (depth-first search, sorted for a stable answer)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_module_level_imports_are_read_as_documented() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import lzn_lightning.cli\n"
        "from lzn_lightning.data import files, LZNDataModule\n"
        "if TYPE_CHECKING:\n    import lzn_lightning.module\n"
        "def f():\n    import lzn_lightning.recipes\n"
        "class C:\n    from lzn_lightning import ema\n"
    )
    visitor = _ModuleLevelImports("lzn_lightning.x", is_package=False)
    visitor.visit(ast.parse(source))
    assert set(visitor.names) >= {"lzn_lightning.cli", "lzn_lightning.data.files", "lzn_lightning.ema"}
    assert not {"lzn_lightning", "lzn_lightning.module", "lzn_lightning.recipes"} & set(visitor.names)


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "lzn_lightning.modalities.text" in graph  # it read the whole package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cli_layers() -> None:
    """The CLI's layers import downwards only: cli -> subcommands -> recipes -> lightning_cli."""
    graph = import_graph()
    assert "lzn_lightning.lightning_cli" in graph["lzn_lightning.recipes"]
    assert "lzn_lightning.data" in graph["lzn_lightning.recipes"]  # a re-export: an edge to the package
    assert graph["lzn_lightning.cli"] == set()  # it imports its subcommands when they run
    for upper in ("lzn_lightning.cli", "lzn_lightning.recipes", "lzn_lightning.check_data"):
        assert upper not in graph["lzn_lightning.lightning_cli"]
    # the core's data modules do not depend on the text plug-in
    for name in ("captions", "synthetic", "vader"):
        assert not any(m.startswith("lzn_lightning.modalities") for m in graph[f"lzn_lightning.data.{name}"])


def test_nothing_imports_the_console_script() -> None:
    """``lzn_lightning.cli`` is the top layer: no module of the package imports it, not even inside a function
    (as ``check_data`` and ``reference_import`` once did, a cycle the module-level graph does not show)."""
    importers = []
    for name, path in package_modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
            if "lzn_lightning.cli" in names and name != "lzn_lightning.__main__":
                importers.append(name)
    assert importers == []


def _fresh_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True
    )


@pytest.mark.slow  # a fresh interpreter that imports torch and Lightning (~8 s)
def test_importing_recipes_leaves_hugging_face_online() -> None:
    """``import lzn_lightning.recipes`` (say in a notebook) leaves Hugging Face access as the user set it."""
    code = "import os, lzn_lightning.recipes; print(os.environ.get('HF_HUB_OFFLINE'))"
    assert _fresh_python(code).stdout.split() == ["None"], (
        "importing lzn_lightning.recipes set HF_HUB_OFFLINE"
    )


@pytest.mark.slow  # a fresh interpreter that imports torch and Lightning (~8 s)
def test_lzn_entry_point_sets_offline_before_anything_reads_it() -> None:
    """``lzn`` (its entry point) defaults to offline, before huggingface_hub reads the setting at its import,
    and records that the user did not ask for it (``USER_HF_OFFLINE``: reference_import and pretrained)."""
    code = (
        "import os, sys\n"
        "import lzn_lightning.cli\n"
        "print('huggingface_hub' in sys.modules)\n"  # what `lzn` has loaded when its entry point runs
        "sys.argv = ['lzn', '--help']\n"
        "lzn_lightning.cli.entry()\n"
        "from huggingface_hub import constants\n"
        "print(os.environ.get('HF_HUB_OFFLINE'), constants.HF_HUB_OFFLINE,\n"
        "      lzn_lightning.cli.USER_HF_OFFLINE)\n"
    )
    lines = _fresh_python(code).stdout.splitlines()
    assert lines[0] == "False", "huggingface_hub was imported before lzn's entry point could set its default"
    assert lines[-1] == "1 True False"
