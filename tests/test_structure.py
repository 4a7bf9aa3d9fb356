"""The package's shape: the layers docs/architecture.md draws, no import cycles, one public ``load_bilm``, no
test hooks in library code, test modules that do not import each other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import spacy_elmo
import spacy_elmo.bilm

PACKAGE = Path(spacy_elmo.__file__).parent
TESTS = Path(__file__).parent
ARCHITECTURE = TESTS.parent / "docs" / "architecture.md"


def _layers() -> list[list[str]]:
    """The rows of the diagram in docs/architecture.md, top first: each row's parts (``"serve"``, ``"cli"``)."""
    diagram = re.search(r"```text\n(.*?)```", ARCHITECTURE.read_text(encoding="utf-8"), re.S)
    assert diagram, f"{ARCHITECTURE}: no diagram"
    rows = []
    for line in diagram.group(1).splitlines():
        if line and not line[0].isspace():
            names = line.split("  ")[0].split(", ")
            rows.append([name.strip().removesuffix("/").removesuffix(".py") for name in names])
    return rows


def _listed_files() -> list[Path]:
    """The files the diagram names under a package (indented lines)."""
    diagram = ARCHITECTURE.read_text(encoding="utf-8").split("```text")[1].split("```")[0]
    files, package = [], ""
    for line in diagram.splitlines():
        if line and not line[0].isspace():
            package = line.split("  ")[0].split(", ")[0].strip()
        elif line.strip().split("  ")[0].endswith(".py"):
            files.append(PACKAGE / package / line.strip().split("  ")[0])
    return files


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


def _part(module: str) -> str:
    """``spacy_elmo.serve.app`` -> ``serve``; ``spacy_elmo`` itself -> ``""``."""
    return module.split(".")[1] if "." in module else ""


def test_every_import_points_down_the_layers_the_architecture_page_draws():
    rank = {part: depth for depth, row in enumerate(_layers()) for part in row}
    parts = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in PACKAGE.rglob("*.py")}
    assert parts - {"__init__"} == set(rank), "every part of the package is in one row of the diagram"
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if module == "spacy_elmo":
            continue  # the package's front door re-exports the public API
        part = _part(module)
        for imported in _imports(path):
            target = _part(imported)  # the package root (``__version__``) is imported by everything
            if target in rank and target != part:
                assert rank[target] > rank[part], f"{module} imports {imported}: not from a row below {part}"


def test_the_files_the_architecture_page_names_exist():
    files = _listed_files()
    assert files and [f for f in files if not f.is_file()] == []


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


def test_module_names_cannot_be_confused():
    """No file name in two packages, and no two names that differ only by underscores."""
    names = [path.name for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    squashed = {name.replace("_", "") for name in set(names)}
    assert len(squashed) == len(set(names)), sorted(names)


def test_code_tells_what_it_does_not_its_history():
    """No issue numbers, no "seed recipe" and no "session(s)" (but pytest's ``scope="session"``) in the code."""
    history = re.compile(r"issue ?#?\d|\(#\d+\)|seed.recipe|\bsessions?\b", re.I)
    roots = [PACKAGE, TESTS, TESTS.parent / "scripts", TESTS.parent / "benchmarks"]
    found = [
        f"{path.relative_to(TESTS.parent)}:{number}: {line.strip()}"
        for root in roots
        for path in root.rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if history.search(line.replace('scope="session"', "")) and path != Path(__file__)
    ]
    assert found == []


def test_scripts_benchmarks_and_examples_import_names_that_exist():
    """A rename in the package must not leave a script, benchmark, example or docs extension importing the old name:
    every ``spacy_elmo`` module they import exists and has the names taken from it."""
    import importlib.util

    repo = TESTS.parent
    missing = []
    for root in ("scripts", "benchmarks", "examples", "docs", "tests"):
        for path in (repo / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("spacy_elmo"):
                    modules = [(node.module, [alias.name for alias in node.names])]
                elif isinstance(node, ast.Import):
                    modules = [(a.name, []) for a in node.names if a.name.startswith("spacy_elmo")]
                else:
                    continue
                for module_name, names in modules:
                    where = f"{path.relative_to(repo)}:{node.lineno}"
                    try:
                        module = importlib.import_module(module_name)
                    except ImportError as error:
                        missing.append(f"{where}: {error}")
                        continue
                    for name in names:
                        if not hasattr(module, name) and importlib.util.find_spec(f"{module_name}.{name}") is None:
                            missing.append(f"{where}: {module_name} has no {name}")
    assert missing == []
