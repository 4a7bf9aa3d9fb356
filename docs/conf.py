"""Sphinx configuration: MyST Markdown pages, autodoc for the Python API, the CLI reference generated from the app.

Offline by design: no intersphinx, nothing fetched at build time. CI builds with ``-W`` (warnings are errors).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import spacy_elmo  # noqa: E402

project = "spacy-elmo"
author = "spacy-elmo contributors"
release = spacy_elmo.__version__
version = release
copyright = "spacy-elmo contributors, MIT licence"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "cli_reference",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "README.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# CLI flags in prose stay `--flag`, never an en dash
smartquotes = False

autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# The API page documents the Ray backend and the HTTP service, whose packages are optional extras: autodoc imports
# them as mocks, so the docs extra alone builds every entry (and a full environment renders the same page).
autodoc_mock_imports = ["orjson", "pyarrow", "ray", "starlette", "uvicorn", "prometheus_client"]
# Docstrings name torch / numpy / spaCy types that this offline build cannot link (no intersphinx).
nitpicky = False

html_theme = "furo"
html_title = f"spacy-elmo {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
