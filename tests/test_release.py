"""Release metadata: ``spacy-elmo --version``, the one version in the package, CHANGELOG.md's newest entry."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

import spacy_elmo
from spacy_elmo.cli import app

ROOT = Path(__file__).parent.parent
#: a version heading of Keep a Changelog: ``## [1.2.3] - 2026-12-01`` (or ``- Unreleased`` until it is released)
VERSION_HEADING = re.compile(r"^## \[(\d+\.\d+\.\d+[^\]]*)\] - (\d{4}-\d{2}-\d{2}|Unreleased)$", re.MULTILINE)


def test_version_option_prints_the_package_version_and_exits():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"spacy-elmo {spacy_elmo.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", spacy_elmo.__version__)


def test_version_option_runs_before_a_command_and_its_arguments():
    result = CliRunner().invoke(app, ["--version", "embed"])
    assert result.exit_code == 0 and result.output == f"spacy-elmo {spacy_elmo.__version__}\n"


def test_pyproject_takes_the_version_from_the_package():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.MULTILINE)
    assert 'version = { attr = "spacy_elmo.__version__" }' in pyproject
    assert not re.search(r"^version = \"", pyproject, re.MULTILINE), "a second, static version in [project]"


def test_changelog_newest_version_is_the_package_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = VERSION_HEADING.findall(changelog)
    assert headings, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' (or '- Unreleased') heading"
    newest = headings[0][0]
    assert newest == spacy_elmo.__version__, (
        f"CHANGELOG.md's newest entry is {newest}, the package is {spacy_elmo.__version__}"
    )
    versions = [version for version, _ in headings]
    assert len(set(versions)) == len(versions), f"a version appears twice in CHANGELOG.md: {versions}"
    assert [date for _, date in headings[1:]].count("Unreleased") == 0, "only the newest entry may be unreleased"
