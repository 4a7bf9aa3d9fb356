#!/usr/bin/env bash
# Install the LOWER BOUNDS of the dependencies in pyproject.toml together, with the CPU torch the project tests on,
# check that each resolved to its declared bound, and run the test suite there.
#
#   scripts/check_lower_bounds.sh                 # the quick suite (-m "not slow")
#   scripts/check_lower_bounds.sh tests -q        # pytest arguments replace the default: here the full suite
#
# PYTHON picks the interpreter (default: python); VENV the environment's folder, kept (default: a temporary one).
# The optional extras (ray, project) are not installed (ray's newest pandas would lift numpy to 2).
# uv resolves the direct dependencies to their lowest allowed versions (--resolution lowest-direct) and the
# transitive ones to their newest, as a user pinning our bounds would get; wheels only (--only-binary), since a
# bound that needs compiling on a supported Python is not a bound users can install. torch is held at 2.13.0 (the
# local CPU build), so the lowest torch is not what this checks (CONTRIBUTING.md, "Dependency ranges").
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
python=${PYTHON:-python}
if [ -n "${VENV:-}" ]; then
    venv=$VENV
else
    venv=$(mktemp -d)/lower-bounds && trap 'rm -rf "$(dirname "$venv")"' EXIT
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -qq torch==2.13.0 uv
overrides=$(mktemp)
echo "torch==2.13.0" > "$overrides"
find_links=()
[ -n "${PIP_FIND_LINKS:-}" ] && find_links=(--find-links "$PIP_FIND_LINKS")  # where torch's CPU wheel lies
"$venv/bin/uv" pip install -qq --python "$venv/bin/python" --resolution lowest-direct --only-binary :all: \
    --override "$overrides" "${find_links[@]}" -r pyproject.toml --extra test
"$venv/bin/uv" pip install -qq --python "$venv/bin/python" --no-deps -e .
rm -f "$overrides"
"$venv/bin/python" - <<'PY'
"""Each dependency of [project] and of the test extra is installed at its declared lower bound."""
import re
import sys
from importlib.metadata import version

from packaging.version import Version  # pytest's dependency

try:
    import tomllib
except ImportError:  # Python < 3.11: pytest brings tomli there
    import tomli as tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
wrong = []
for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
    name, bound = re.match(r"([A-Za-z0-9_.\-]+)[^>]*>=([^,;\s]+)", requirement).groups()
    found = version(name).split("+")[0]
    print(f"{name}=={found}" + ("" if name == "torch" else f" (bound {bound})"))
    if name != "torch" and Version(found) != Version(bound):
        wrong.append(f"{name}: declared >={bound}, installed {found} (no wheel of {bound} for this Python?)")
print(f"Python {sys.version.split()[0]}")
if wrong:
    sys.exit("lower bounds that do not install:\n  " + "\n  ".join(wrong))
PY
if [ $# -eq 0 ]; then
    set -- tests -q -m "not slow"
fi
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
