"""The CLI reference page, generated from the typer app so that it cannot drift, and a Sphinx check that it is current.

``docs/reference/cli.md`` is an introduction, the line ``<!-- cli-reference -->`` and one section per command
(usage, arguments, options with their defaults and help), taken from the click command tree of
``spacy_elmo.cli.app``. It is written into the repository (readable on GitHub, not only in the built site) by
``python scripts/gen_cli_reference.py``; the docs build (this module as a Sphinx extension) and
``tests/test_docs.py`` fail while the committed page differs from what the app gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

# typer >= 0.22 carries its own copy of click (``typer._click``); the command tree is read by duck typing so the
# extension works with either.
import typer

MARKER = "<!-- cli-reference -->"
PAGE = "reference/cli"
PATH = Path(__file__).resolve().parent.parent / "reference" / "cli.md"
INTRO = """# Command line: `spacy-elmo`

`spacy-elmo COMMAND [OPTIONS] ARGS` (also `python -m spacy_elmo`). This page is generated from the command
line's own definition (`python scripts/gen_cli_reference.py`; the tests and the docs build check it is
current), so it lists exactly what this version accepts; `spacy-elmo COMMAND --help` prints the same.
"""
STALE = f"{PATH.name} is not what the command line defines now: run python scripts/gen_cli_reference.py"


def _default(param: Any) -> str:
    if getattr(param, "is_flag", False):
        return ""
    default = param.default
    if param.required:
        return " (required)"
    if default is None or default == ():
        return ""
    if callable(default):
        return ""
    return f" (default: `{default}`)"


def _metavar(param: Any) -> str:
    name = param.name.upper()
    if param.nargs == -1:
        name += "..."
    return name if param.required else f"[{name}]"


def _help(param: Any) -> str:
    text = getattr(param, "help", None) or ""
    return " ".join(text.split())


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def command_markdown(group: Any) -> str:
    """Markdown for every command of ``group``: heading, synopsis, arguments and options tables."""
    ctx = group.context_class(group, info_name="spacy-elmo")
    lines: List[str] = []
    globals_ = [p for p in group.params if p.param_type_name == "option"]
    if globals_:
        lines += ["## Global options", "", "| option | meaning |", "| --- | --- |"]
        lines += [f"| `{' / '.join(p.opts)}` | {_escape(_help(p))}{_default(p)} |" for p in globals_]
        lines.append("")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        usage = " ".join(["[OPTIONS]"] + [_metavar(p) for p in command.params if p.param_type_name == "argument"])
        lines += [f"## `spacy-elmo {name}`", "", " ".join((command.help or "").split()), ""]
        lines += ["```text", f"spacy-elmo {name} {usage}", "```", ""]
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        options = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
        if arguments:
            lines += ["| argument | meaning |", "| --- | --- |"]
            for p in arguments:
                assert p.name is not None
                lines.append(f"| `{p.name.upper()}` | {_escape(_help(p))}{_default(p)} |")
            lines.append("")
        if options:
            lines += ["| option | meaning |", "| --- | --- |"]
            for p in options:
                decls = " / ".join(p.opts + p.secondary_opts)
                lines.append(f"| `{decls}` | {_escape(_help(p))}{_default(p)} |")
            lines.append("")
    return "\n".join(lines)


def cli_markdown() -> str:
    from spacy_elmo.cli import app

    group = typer.main.get_command(app)
    return command_markdown(group)


def page() -> str:
    """The whole Markdown page: the introduction, the marker line, every command."""
    return f"{INTRO}\n{MARKER}\n\n{cli_markdown()}"


def _on_source_read(app: Any, docname: str, source: List[str]) -> None:
    if docname == PAGE and source[0] != page():
        raise ValueError(STALE)


def setup(app: Any) -> dict:
    app.connect("source-read", _on_source_read)
    return {"parallel_read_safe": True, "version": "1"}
