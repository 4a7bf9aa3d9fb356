"""The package's shape: layers without import cycles, one public ``load_bilm``, no test hooks in library code,
test modules that do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import spacy_elmo
import spacy_elmo.bilm

PACKAGE = Path(spacy_elmo.__file__).parent
TESTS = Path(__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The ``spacy_elmo`` modules ``path`` imports, at any depth (inside functions too), except those under
    ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("spacy_elmo"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.startswith("spacy_elmo"):
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_no_import_cycle_between_modules():
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {  # importing one's own package from inside it (``from . import x``) runs no new code
        name: {m for m in _imports(path) if m in modules and not (name + ".").startswith(m + ".")}
        for name, path in modules.items()
    }
    for name in graph:  # a package's __init__ is run by importing any of its modules: an edge to the parent
        parent = name.rpartition(".")[0]
        if parent in graph and parent != "spacy_elmo":
            for importer in graph:
                if name in graph[importer] and importer != parent and not importer.startswith(parent + "."):
                    graph[importer].add(parent)
    state: dict[str, int] = {}

    def cycle_from(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt]
            if nxt not in state and (found := cycle_from(nxt, [*stack, nxt])):
                return found
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = cycle_from(module, [module])
            assert cycle is None, " -> ".join(cycle)


def test_bilm_knows_nothing_above_it():
    for path in (PACKAGE / "bilm").rglob("*.py"):
        above = {m for m in _imports(path) if not m.startswith(("spacy_elmo.bilm", "spacy_elmo.util"))}
        assert above == set(), f"{path.name} imports {sorted(above)}"
        text = path.read_text(encoding="utf-8")
        for name in ("import spacy", "from spacy", "import ray", "import requests", "import pooch"):
            assert name not in text, f"{path.name}: {name}"


def test_util_is_the_bottom_layer():
    for path in (PACKAGE / "util").rglob("*.py"):
        assert {m for m in _imports(path) if not m.startswith("spacy_elmo.util")} == set(), path.name


def test_one_public_load_bilm():
    assert not hasattr(spacy_elmo.bilm, "load_bilm")
    assert spacy_elmo.load_bilm.__module__ == "spacy_elmo.hub.loading"


def test_no_test_hooks_in_the_package():
    for path in PACKAGE.rglob("*.py"):
        assert "SPACY_ELMO_TEST" not in path.read_text(encoding="utf-8"), path


def test_test_modules_do_not_import_each_other():
    for path in TESTS.glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                names = [node.module or ""] + [alias.name for alias in node.names]
                assert not any(n.startswith("test_") for n in names), f"{path.name} imports {names}"
