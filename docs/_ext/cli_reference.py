"""Sphinx extension: the CLI reference page is generated from the typer app, so it cannot drift.

``reference/cli.md`` holds an introduction and the line ``<!-- cli-reference -->``; when Sphinx reads that page,
the line is replaced by one section per command (usage, arguments, options with their defaults and help), taken
from the click command tree of ``spacy_elmo.cli.app``. ``tests/test_docs.py`` checks the generated text names
every command and option.
"""

from __future__ import annotations

from typing import Any, List

# typer >= 0.22 carries its own copy of click (``typer._click``); the command tree is read by duck typing so the
# extension works with either.
import typer

MARKER = "<!-- cli-reference -->"
PAGE = "reference/cli"


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


def _on_source_read(app: Any, docname: str, source: List[str]) -> None:
    if docname == PAGE:
        if MARKER not in source[0]:
            raise ValueError(f"{PAGE}.md: the line {MARKER} is missing")
        source[0] = source[0].replace(MARKER, cli_markdown())


def setup(app: Any) -> dict:
    app.connect("source-read", _on_source_read)
    return {"parallel_read_safe": True, "version": "1"}
