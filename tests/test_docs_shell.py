"""The docs' shell blocks run as written: every ```bash block of README.md and docs/ runs in a scratch copy of the
repository (its git-tracked files), as tests/test_docs.py runs the Python blocks.

The blocks of one page run in order in one copy, as a reader runs them, with ``bash -e`` (a failing command
fails the block). What a block runs on:

- ``spacy-elmo`` and ``python`` import the copy (``PYTHONPATH``); downloads are switched off
  (``SPACY_ELMO_OFFLINE=1``, an empty ``SPACY_ELMO_CACHE``), so a block that needs one fails instead of reaching
  the network; ``curl`` fails on an HTTP error status (a ``.curlrc`` with ``--fail``).
- ``pip`` is tests/pip_check.py: it installs nothing but checks that what the block installs is installed here and
  that each extra it names exists and brings what it needs; a block whose packages this environment lacks is
  skipped (CI installs every extra the docs name).
- State a page says comes from a step that needs the network (the data of ``spacy project run data``, the
  pretraining corpus) is made by the test, small, at the paths the page names (``SETUP`` below).

Comment lines right before a block's fence steer it (several may stand there, one per line):

- ``<!-- skip: REASON -->``: not run, counted as skipped. A reason starting with one of ``CANNOT_RUN`` (a real
  download, a GPU, a cluster, hours of training) is a block that cannot run here; any other reason counts
  against the share of blocks that could run and do (at least ``MIN_SHARE``).
- ``<!-- quick: OLD => NEW -->``: run with every OLD replaced by NEW, the quick settings of a long step. What NEW
  adds must be written in the page's text (the quick settings are documented, not hidden in a comment).
- ``<!-- server: PATH -->``: the block's last command is a server; it is started in the background and the
  page's next blocks run once ``GET PATH`` answers 200; then it gets SIGTERM and must exit 0. The page's port
  8000 is replaced by a free one.

Slow: the blocks train, pretrain, adapt and serve: about 110 s of CPU time, run one after the other with one
thread each (11 minutes wall on 2 cores shared with other jobs at load average 10).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md"] + sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
#: skip reasons of blocks that cannot run here (anything else is a block that could run and does not)
CANNOT_RUN = ("needs network", "needs a GPU", "needs a Ray cluster", "takes hours")
#: at least this many shell blocks run, and at least this share of those that could
MIN_RUN = 10
MIN_SHARE = 0.8
BLOCK_TIMEOUT = 600

_FENCE = re.compile(r"^```(?:bash|sh|shell|console)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_DIRECTIVE = re.compile(r"^<!--\s*(skip|quick|server):\s*(.+?)\s*-->\s*$")
_COMMENT = re.compile(r"<!--.*?-->", re.S)


@dataclass
class Block:
    page: Path
    index: int
    line: int
    code: str
    skip: Optional[str] = None
    quick: List[Tuple[str, str]] = field(default_factory=list)
    server: Optional[str] = None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _blocks(page: Path) -> List[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for index, match in enumerate(_FENCE.finditer(text)):
        block = Block(page, index, text.count("\n", 0, match.start()) + 1, match.group(1))
        for before in reversed(text[: match.start()].rstrip("\n").split("\n")):
            directive = _DIRECTIVE.match(before.strip())
            if directive is None:
                break
            kind, value = directive.groups()
            if kind == "skip":
                block.skip = value
            elif kind == "server":
                block.server = value
            else:
                old, sep, new = value.partition(" => ")
                assert sep, f"{block.name}: a quick directive is 'OLD => NEW', found {value!r}"
                block.quick.append((old, new))
        found.append(block)
    return found


BLOCKS = [block for page in PAGES for block in _blocks(page)]


@dataclass
class Workspace:
    directory: Path
    env: Dict[str, str]
    port: int
    ran: int = -1
    server: Optional[subprocess.Popen] = None
    outputs: Dict[int, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _copy_tracked(destination: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _environment(directory: Path, tools: Path) -> Dict[str, str]:
    tools.mkdir()
    pip = tools / "pip"
    pip.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "pip_check.py"}" "$@"\n')
    pip.chmod(0o755)
    (tools / ".curlrc").write_text("--fail\n--silent\n--show-error\n--max-time 60\n")
    (tools / "cache").mkdir()
    env = dict(os.environ)
    env.update(
        PATH=os.pathsep.join([str(tools), str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=str(directory),
        SPACY_ELMO_OFFLINE="1",
        SPACY_ELMO_CACHE=str(tools / "cache"),
        CURL_HOME=str(tools),
        OMP_NUM_THREADS="1",  # the CI machine has 2 cores; the blocks' commands are tiny
        PYTHONUNBUFFERED="1",
    )
    env.pop("SPACY_CONFIG_OVERRIDES", None)
    return env


# ---- the state pages say earlier (network) steps leave -------------------------------------------------------


def _ner_data(directory: Path) -> None:
    """corpus/ner/{train,dev,test}.spacy, as `spacy project run data` writes them (here: six tweets)."""
    import spacy
    from spacy.tokens import DocBin

    from .helpers import ner_docs

    (directory / "corpus" / "ner").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        DocBin(docs=ner_docs(spacy.blank("en"))).to_disk(directory / "corpus" / "ner" / f"{split}.spacy")


def _text(path: Path, seed: int, lines: int) -> None:
    import random

    from .helpers import tiny_sentence

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(tiny_sentence(rng) + "\n" for _ in range(lines)), encoding="utf-8")


def _pretraining_data(directory: Path) -> None:
    """corpus/pretrain/{train,heldout}.txt as scripts/prepare_corpus.py writes them; my/{train,heldout}.txt and
    general.txt, the domain and general text the adaptation examples name."""
    _text(directory / "corpus" / "pretrain" / "train.txt", 0, 200)
    _text(directory / "corpus" / "pretrain" / "heldout.txt", 1, 20)
    _text(directory / "my" / "train.txt", 2, 40)
    _text(directory / "my" / "heldout.txt", 3, 10)
    _text(directory / "general.txt", 4, 40)


SETUP: Dict[str, Callable[[Path], None]] = {
    "docs/guides/training.md": _ner_data,
    "docs/guides/pretraining.md": _pretraining_data,
}


# ---- running ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory):
    made: Dict[Path, Workspace] = {}

    def get(page: Path) -> Workspace:
        if page not in made:
            root = tmp_path_factory.mktemp("doc-shell")
            directory = root / "repo"
            _copy_tracked(directory)
            setup = SETUP.get(str(page.relative_to(ROOT)))
            if setup is not None:
                setup(directory)
            made[page] = Workspace(directory, _environment(directory, root / "tools"), _free_port())
        return made[page]

    yield get
    for workspace in made.values():
        if workspace.server is not None and workspace.server.poll() is None:
            workspace.server.kill()
            workspace.server.wait()


def _code(block: Block, workspace: Workspace) -> str:
    code = block.code
    for old, new in block.quick:
        assert old in code, f"{block.name}: the quick setting replaces {old!r}, which the block does not have"
        code = code.replace(old, new)
    if any(b.server for b in BLOCKS if b.page == block.page):
        code = code.replace("8000", str(workspace.port))
    return code


def _log(workspace: Workspace) -> str:
    return (workspace.directory.parent / "server.log").read_text(errors="replace")[-3000:]


def _wait_ready(url: str, workspace: Workspace, seconds: float = 300) -> None:
    server = workspace.server
    assert server is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited with {server.returncode}: {_log(workspace)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 within {seconds} s")


def _stop(workspace: Workspace, name: str) -> None:
    server, workspace.server = workspace.server, None
    assert server is not None
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError(f"{name}: the server did not stop within 60 s of SIGTERM") from None
    assert server.returncode == 0, f"{name}: the server exited {server.returncode} on SIGTERM: {_log(workspace)}"


def _run(block: Block, workspace: Workspace) -> str:
    code = _code(block, workspace)
    if block.server:
        lines = [line for line in code.rstrip().split("\n")]
        code, command = "\n".join(lines[:-1]), lines[-1]
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", code],
        cwd=workspace.directory,
        env=workspace.env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
    )
    missing = re.findall(r"^pip_check: (.+ is not installed.*)$", result.stderr, flags=re.M)
    if result.returncode != 0 and missing:  # an environment without that extra (the lower-bounds check's)
        pytest.skip(f"{block.name} installs what this environment lacks: {'; '.join(missing)}")
    assert result.returncode == 0, (
        f"{block.name} failed (exit {result.returncode}):\n{code}\n--- stdout\n{result.stdout[-3000:]}"
        f"\n--- stderr\n{result.stderr[-5000:]}"
    )
    if block.server:
        workspace.server = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=workspace.directory,
            env=workspace.env,
            stdout=subprocess.DEVNULL,
            stderr=(workspace.directory.parent / "server.log").open("w"),
        )
        _wait_ready(f"http://127.0.0.1:{workspace.port}{block.server}", workspace)
    return result.stdout + result.stderr


def _runnable(page: Path) -> List[Block]:
    return [block for block in BLOCKS if block.page == page and block.skip is None]


@pytest.mark.slow  # the blocks run in subprocesses: they train, pretrain, adapt and serve
@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_shell_block_runs(block: Block, workspaces) -> None:
    if block.skip:
        pytest.skip(block.skip)
    workspace = workspaces(block.page)
    # the earlier runnable blocks of the page first (when this one was selected alone), as a reader runs them
    for earlier in _runnable(block.page):
        if earlier.index < block.index and workspace.ran < earlier.index:
            workspace.outputs[earlier.index] = _run(earlier, workspace)
            workspace.ran = earlier.index
    workspace.outputs[block.index] = _run(block, workspace)
    workspace.ran = block.index
    check = CHECKS.get(block.name.rsplit(":", 1)[0])
    if check is not None:
        check(block, workspace)
    if block.index == _runnable(block.page)[-1].index and workspace.server is not None:
        _stop(workspace, block.name)


# ---- what pages promise about the output ----------------------------------------------------------------


def _training_output(block: Block, workspace: Workspace) -> None:
    if "spacy train" in block.code:
        assert (workspace.directory / "runs" / "ner_elmo" / "model-best" / "elmo").is_dir()
        assert "ENTS_F" in workspace.outputs[block.index] or "NER F" in workspace.outputs[block.index]


def _training_metrics(block: Block, workspace: Workspace) -> None:
    """pretrain and adapt log a summary line and print the final metrics as JSON, metrics.json's "final" (as the page
    says)."""
    import json

    output = workspace.outputs[block.index]
    for match in re.finditer(r"spacy-elmo (?:pretrain|adapt) \S+ (?:\S+ )?(runs/\w+)", _code(block, workspace)):
        metrics = json.loads((workspace.directory / match.group(1) / "metrics.json").read_text())
        assert json.dumps(metrics["final"], indent=1) in output, match.group(0)
    assert "held-out perplexity" in output


def _embed_dir_resumes(block: Block, workspace: Workspace) -> None:
    """The second embed-dir run finds the file finished (the page: "again: nothing left to do")."""
    if "embed-dir" in block.code:
        summaries = re.findall(r"^\d+ files embedded, .*$", workspace.outputs[block.index], flags=re.M)
        assert [s.split(";")[0] for s in summaries] == [
            "1 files embedded, 0 skipped (finished before), 0 failed",
            "0 files embedded, 1 skipped (finished before), 0 failed",
        ], summaries
        assert (workspace.directory / "vectors" / "sentences.hdf5").is_file()


CHECKS: Dict[str, Callable[[Block, Workspace], None]] = {
    "docs/guides/embedding.md": _embed_dir_resumes,
    "docs/guides/training.md": _training_output,
    "docs/guides/pretraining.md": _training_metrics,
}


# ---- the count ----------------------------------------------------------------------------------------------


def _prose(page: Path) -> str:
    return " ".join(_COMMENT.sub("", page.read_text(encoding="utf-8")).split())


def test_quick_settings_are_documented() -> None:
    for block in BLOCKS:
        for old, new in block.quick:
            added = " ".join(new.replace(old, "").split())
            assert added in _prose(block.page), f"{block.name}: the quick setting {added!r} is not in the page's text"


def test_enough_shell_blocks_run() -> None:
    runnable = [block for block in BLOCKS if block.skip is None]
    cannot = [block for block in BLOCKS if block.skip and block.skip.startswith(CANNOT_RUN)]
    could = len(BLOCKS) - len(cannot)
    assert len(runnable) >= MIN_RUN, f"only {len(runnable)} shell blocks run; expected at least {MIN_RUN}"
    assert len(runnable) >= MIN_SHARE * could, (
        f"{len(runnable)} of the {could} shell blocks that could run do; at least {MIN_SHARE:.0%} must: "
        + ", ".join(f"{b.name} ({b.skip})" for b in BLOCKS if b.skip and b not in cannot)
    )
