"""The docs cannot drift: README's and the docs' Python examples run, and the reference pages name every CLI
command and option, every component setting and every argument of the listener and the callback.

Examples run in a scratch directory that holds the tiny parity model as ``options.json`` + ``weights.hdf5`` and a
``sentences.txt``; the blocks of one page run in order in one namespace (as a reader would run them). A block that
needs the network, a GPU, a Ray cluster or a big released model is marked in the Markdown with a comment on the
line before it, ``<!-- skip: needs network -->``, and is skipped with that reason. Downloads are switched off
(``SPACY_ELMO_OFFLINE=1``), so an unmarked example that needs one fails instead of reaching the network.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from .helpers import PARITY

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md"] + sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
#: at least this many examples must run: the test cannot pass by silently running none
MIN_EXAMPLES = 12

_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_SKIP = re.compile(r"<!--\s*skip:\s*(.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Example:
    page: Path
    index: int
    line: int
    code: str
    skip: Optional[str]

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _examples(page: Path) -> List[Example]:
    text = page.read_text(encoding="utf-8")
    found = []
    for index, match in enumerate(_FENCE.finditer(text)):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        line = text.count("\n", 0, match.start()) + 1
        found.append(Example(page, index, line, match.group(1), skip.group(1) if skip else None))
    return found


EXAMPLES = [example for page in PAGES for example in _examples(page)]
_namespaces: Dict[Path, Dict[str, Any]] = {}
_ran: Dict[Path, int] = {}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("doc-examples")
    shutil.copy(PARITY / "options.json", directory / "options.json")
    shutil.copy(PARITY / "weights.hdf5", directory / "weights.hdf5")
    (directory / "sentences.txt").write_text("I ate an apple .\nHello world\n", encoding="utf-8")
    return directory


def _run(example: Example) -> None:
    namespace = _namespaces.setdefault(example.page, {"__name__": "__doc_example__"})
    exec(compile(example.code, example.name, "exec"), namespace)


# spaCy's W109 (hooks lost through serialization) is what the troubleshooting page demonstrates
@pytest.mark.filterwarnings("ignore:\\[W109\\]:UserWarning")
@pytest.mark.parametrize("example", EXAMPLES, ids=[example.name for example in EXAMPLES])
def test_example_runs(example: Example, scratch: Path, monkeypatch) -> None:
    if example.skip:
        pytest.skip(example.skip)
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")
    # the earlier runnable blocks of the page first (when this one was selected alone), as a reader runs them
    for earlier in EXAMPLES:
        if earlier.page == example.page and earlier.index < example.index and earlier.skip is None:
            if _ran.get(example.page, -1) < earlier.index:
                _run(earlier)
                _ran[example.page] = earlier.index
    _run(example)
    _ran[example.page] = example.index


def test_the_docbin_example_runs_on_its_own(scratch: Path, monkeypatch) -> None:
    """The component guide's stored-Docs example, read alone (a reader jumping to that section), runs."""
    page = DOCS / "guides" / "spacy-component.md"
    (example,) = [e for e in EXAMPLES if e.page == page and "DocBin" in e.code]
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")
    exec(compile(example.code, example.name, "exec"), {"__name__": "__doc_example__"})


def _github_slug(heading: str) -> str:
    """The anchor GitHub (and MyST, ``myst_heading_anchors``) gives a heading: lower case, punctuation dropped,
    spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_heading_anchors_resolve_on_github_and_in_the_site() -> None:
    """Every relative link with an anchor names a heading (levels 1-3) of its page by its GitHub slug, which the
    built site has too; docutils' own ids (``allennlp-s`` for ``AllenNLP's``) work in the site only."""
    link = re.compile(r"\]\(([^)#\s]+\.md)#([^)\s]+)\)")
    checked = 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target, anchor in link.findall(text):
            path = (page.parent / target).resolve()
            outside_code = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
            headings = re.findall(r"^#{1,3} (.+)$", outside_code, flags=re.M)
            assert anchor in {_github_slug(h) for h in headings}, f"{page.relative_to(ROOT)}: {target}#{anchor}"
            checked += 1
    assert checked >= 6


def test_enough_examples_run() -> None:
    runnable = [example for example in EXAMPLES if example.skip is None]
    skipped = [example for example in EXAMPLES if example.skip]
    assert len(runnable) >= MIN_EXAMPLES, (
        f"only {len(runnable)} runnable Python examples in README.md and docs/ ({len(skipped)} skipped); "
        f"expected at least {MIN_EXAMPLES}"
    )
    readme = [example for example in runnable if example.page.name == "README.md"]
    assert len(readme) == 3, f"README.md should have its 3 quickstarts runnable, found {len(readme)}"


def _cli_reference() -> Any:
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "_ext" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    """docs/reference/cli.md in the repository is what the command line defines (readable without a docs build)."""
    module = _cli_reference()
    committed = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert committed == module.page(), module.STALE


@pytest.mark.slow  # runs the script in subprocesses
def test_cli_reference_script_regenerates_a_stale_page(tmp_path: Path) -> None:
    """``scripts/gen_cli_reference.py --check`` fails on a page that lost an option; without --check it rewrites it."""
    for name in ("scripts/gen_cli_reference.py", "docs/_ext/cli_reference.py", "docs/reference/cli.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    page = tmp_path / "docs" / "reference" / "cli.md"
    page.write_text(page.read_text(encoding="utf-8").replace("| `--max-queue` |", "| `--queue` |"), encoding="utf-8")

    def script(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(tmp_path / "scripts" / "gen_cli_reference.py"), *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)

    stale = script("--check")
    assert (stale.returncode, stale.stderr) == (
        1,
        "error: cli.md is not what the command line defines now: run python scripts/gen_cli_reference.py\n",
    )
    assert (script().returncode, script("--check").stdout) == (0, "docs/reference/cli.md is current\n")
    assert page.read_text(encoding="utf-8") == (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")


def test_cli_reference_names_every_command_and_option() -> None:
    import typer

    from spacy_elmo.cli import app

    module = _cli_reference()
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert module.MARKER in page
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="spacy-elmo")
    names = group.list_commands(ctx)
    assert set(names) >= {"embed", "embed-dir", "pretrain", "adapt", "serve", "download", "models", "info"}
    for name in names:
        assert f"## `spacy-elmo {name}`" in page, name
        for param in group.get_command(ctx, name).params:
            if param.param_type_name == "argument":
                assert f"| `{param.name.upper()}` |" in page, (name, param.name)
            else:
                for opt in param.opts + param.secondary_opts:
                    assert f"`{opt}" in page or f" / {opt}" in page, (name, opt)
    assert "`--debug`" in page


def test_cli_reference_says_pretrain_needs_options_or_init_from(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from spacy_elmo.cli import app

    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    pretrain = page.split("## `spacy-elmo pretrain`")[1].split("\n## ")[0]
    assert (
        "| `--options` | options.json giving the architecture of a new biLM (this or --init-from is required) |"
        in pretrain
    )
    assert "(or --options) |" in pretrain
    corpus = tmp_path / "train.txt"
    corpus.write_text("a b c\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["pretrain", str(corpus), str(tmp_path / "out"), "--heldout", str(corpus)])
    assert result.exit_code == 1
    assert "give either an options file (a new biLM) or init_from (a trained one to continue)" in result.output


def test_component_reference_has_every_setting() -> None:
    from spacy_elmo.pipeline.component import DEFAULT_CONFIG

    page = (DOCS / "reference" / "component.md").read_text(encoding="utf-8")
    for key, default in DEFAULT_CONFIG.items():
        if default is None or isinstance(default, bool):
            shown = {None: "null", True: "true", False: "false"}[default]
        else:
            shown = f'"{default}"' if isinstance(default, str) else str(default)
        assert f"\n{key} = {shown}\n" in page, f"{key} = {shown} is not in the config block of component.md"
        assert f"`{key}`" in page, f"setting {key} has no row in component.md"


def test_component_reference_has_every_attribute_it_sets() -> None:
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("elmo")
    assigns = nlp.get_pipe_meta("elmo").assigns
    page = (DOCS / "reference" / "component.md").read_text(encoding="utf-8")
    assert len(assigns) == 4
    for attribute in assigns:
        level, name = attribute.split("._.")
        assert f"`{level.capitalize()}._.{name}`" in page or f"`Span._.{name}`, `Doc._.{name}`" in page, attribute


def test_config_reference_has_every_argument() -> None:
    from spacy_elmo.pipeline.architectures import elmo_listener_v1
    from spacy_elmo.pipeline.warm_cache import warm_sequence_cache

    page = (DOCS / "reference" / "config.md").read_text(encoding="utf-8")
    for function in (elmo_listener_v1, warm_sequence_cache):
        for name, param in inspect.signature(function).parameters.items():
            assert f"| `{name}` |" in page, f"{function.__name__}: argument {name} is not in config.md"
            if param.default is not inspect.Parameter.empty and param.default is not None:
                assert f"`{param.default!r}`".replace("'", '"') in page, (name, param.default)
