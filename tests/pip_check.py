"""Stand-in for ``pip`` when tests/test_docs_shell.py runs the docs' shell blocks: it installs nothing, but
checks that what a block asks for is already installed in this environment (so the block's next commands run
on what it installs) and that every extra it names exists in pyproject.toml, with each requirement of the extra,
and of the extras those requirements ask for (``ray[serve]``: grpcio, ...), installed at a version that fits.

Usage as pip's: ``pip install torch==2.13.0``, ``pip install -e ".[serve]"``, ``pip install "spacy-elmo[ray]"``.
Exit code 1 with one line per missing or unknown requirement, else 0.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import List, Optional, Set

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _installed(name: str) -> Optional[Version]:
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None


def _project_requirements(extras: Set[str], problems: List[str]) -> List[Requirement]:
    found = [Requirement(text) for text in PROJECT["dependencies"]]
    optional = PROJECT["optional-dependencies"]
    for extra in sorted(extras):
        if extra not in optional:
            problems.append(f'spacy-elmo has no extra "{extra}" (pyproject.toml has {", ".join(sorted(optional))})')
            continue
        for text in optional[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == "spacy-elmo":
                found += _project_requirements(set(requirement.extras), problems)
            else:
                found.append(requirement)
    return found


def _check(requirement: Requirement, problems: List[str], seen: Set[str], wanted_by: str = "") -> None:
    """``requirement`` installed at a fitting version, and the requirements of each extra it asks for."""
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        return
    key = f"{canonicalize_name(requirement.name)}[{','.join(sorted(requirement.extras))}]"
    if key in seen:
        return
    seen.add(key)
    version = _installed(requirement.name)
    if version is None:
        problems.append(f"{requirement} is not installed" + (f" (asked for by {wanted_by})" if wanted_by else ""))
        return
    # a local build such as 2.13.0+cpu satisfies ==2.13.0, as pip treats it
    if requirement.specifier and not requirement.specifier.contains(Version(version.public), prereleases=True):
        problems.append(f"{requirement}: {requirement.name} {version} is installed")
    for name in requirement.extras:
        for text in metadata.requires(requirement.name) or []:
            nested = Requirement(text)
            if nested.marker is not None and nested.marker.evaluate({"extra": name}):
                nested.marker = None  # evaluated for this extra (python_version and the like included)
                _check(nested, problems, seen, wanted_by=f"{requirement.name}[{name}]")


def main(argv: List[str]) -> int:
    if not argv or argv[0] != "install":
        print(f"pip_check: only 'pip install' is checked here, not: pip {' '.join(argv)}", file=sys.stderr)
        return 1
    problems: List[str] = []
    requirements: List[Requirement] = []
    for arg in argv[1:]:
        if arg.startswith("-"):
            continue
        if arg == "." or arg.startswith(".["):
            extras = set(arg[2:-1].split(",")) if arg.startswith(".[") else set()
            requirements += _project_requirements(extras - {""}, problems)
            continue
        requirement = Requirement(arg)
        if canonicalize_name(requirement.name) == "spacy-elmo":
            requirements += _project_requirements(set(requirement.extras), problems)
        else:
            requirements.append(requirement)
    seen: Set[str] = set()
    for requirement in requirements:
        _check(requirement, problems, seen)
    for problem in problems:
        print(f"pip_check: {problem}", file=sys.stderr)
    if not problems:
        print(f"pip_check: already installed: {' '.join(argv[1:])} ({len(seen)} requirements checked)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
