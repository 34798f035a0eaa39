"""The package's shape: no import cycles, core modules that import no component or machinery, a short loop file.

Imports are read from the source, function-level imports and ``if TYPE_CHECKING:`` blocks included: a cycle hidden
behind a late import or a type annotation is still a cycle in the design.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "fairadv"
CORE = {"fairadv.errors", "fairadv.policy", "fairadv.recipe", "fairadv.registry", "fairadv.stats",
        "fairadv.validators", "fairadv.schema", "fairadv.coercion", "fairadv.recipe_tables", "fairadv.recipe_extends",
        "fairadv.files"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """The fairadv modules ``path`` imports (``from a.b import c`` means the module a.b.c if there is one)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                         for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {name for name in found if name in MODULES}


GRAPH = {name: imported_modules(path) - {name} for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first = last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := dfs(start)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_core_modules_import_only_core_modules():
    """registry, recipe, policy, stats, errors and validators never reach train/, evaluation/, the CLI or a
    component package (the registries import those by name, on first use)."""
    reached, todo = set(), list(CORE)
    while todo:
        for imported in GRAPH[todo.pop()]:
            if imported not in reached:
                reached.add(imported)
                todo.append(imported)
    assert reached <= CORE, sorted(reached - CORE)


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Import each module as the first fairadv module of a process: an order-dependent import fails here."""
    script = (
        "import importlib, sys\n"
        f"for name in {sorted(MODULES)!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'fairadv' or m.startswith('fairadv.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_training_loop_fits_in_one_sitting():
    assert len((PACKAGE / "train" / "engine.py").read_text().splitlines()) <= 300


RUN_FOLDER_NAMES = re.compile(r"recipe\.toml|metrics\.jsonl|policy\.jsonl|summary\.json|eval\.json|trackers\.json"
                              r"|provenance\.json|last\.pt|best\.pt|^checkpoints$")
LAYOUT_OWNER = "fairadv.run_folder"


def spelled_names(path: Path) -> list[str]:
    """The string literals of ``path`` (f-string pieces included, docstrings not) that name a run-folder file."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [f"{path.name}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and RUN_FOLDER_NAMES.search(node.value)]


def test_only_run_folder_spells_a_run_folder_file_name():
    """``recipe.toml``, the logs, ``checkpoints/{last,best}.pt``, ``summary.json``, ``eval.json`` and
    ``trackers.json`` are named in code (messages and help texts included) by `fairadv.run_folder` alone; the
    others ask it for a path. Docstrings may name them: they explain, they do not decide."""
    found = [hit for name, path in MODULES.items() if name != LAYOUT_OWNER for hit in spelled_names(path)]
    assert not found, found
    assert spelled_names(MODULES[LAYOUT_OWNER]), "the owner itself must spell the names (is the pattern stale?)"


def package_of(module: str) -> str:
    """``fairadv.train.engine`` -> ``fairadv.train``; a top-level module (``fairadv.build``) is its own node."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else module


PACKAGE_GRAPH = {package_of(name): set() for name in MODULES}
for _name, _imports in GRAPH.items():
    PACKAGE_GRAPH[package_of(_name)] |= {package_of(i) for i in _imports} - {package_of(_name)}


def test_the_package_graph_has_no_cycle():
    """train/ and evaluation/ (and every other pair of packages and top-level modules) never import each other in
    both directions, counting function-level imports: ``evaluation`` builds and loads through ``fairadv.build`` and
    ``fairadv.trained``, below both."""
    assert find_cycle(PACKAGE_GRAPH) is None, " -> ".join(find_cycle(PACKAGE_GRAPH) or [])


def test_evaluation_does_not_import_train():
    assert "fairadv.train" not in PACKAGE_GRAPH["fairadv.evaluation"]
