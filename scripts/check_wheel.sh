#!/usr/bin/env bash
# Release check: build the sdist and the wheel (the wheel from the sdist, so both must be complete), `twine check`
# them, install the wheel NOT editable into a new virtual environment, and run the main job from there, outside
# the checkout: `spacy-elmo embed` on the bundled model. Catches package data missing from the wheel.
#
#   scripts/check_wheel.sh            # builds into a temporary folder, removed at the end
#   KEEP=DIR scripts/check_wheel.sh   # builds into DIR and keeps it (dist/, venv/, the embeddings)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONPATH  # the installed wheel, never the checkout, must be what runs
if [ -n "${KEEP:-}" ]; then
    work=$KEEP && mkdir -p "$work"
else
    work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
fi
SECONDS=0

# from the tracked files only (as a fresh clone has them): a stale *.egg-info in the checkout would add files
# that the package-data settings leave out
mkdir -p "$work/src" && git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work/src"
python -m build --outdir "$work/dist" "$work/src" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
twine check --strict "$work/dist"/*

python -m venv "$work/venv"
py=$work/venv/bin/python
"$py" -m pip install -qq torch==2.13.0  # first, so the wheel's torch>=2.1 takes it and pulls no CUDA build
"$py" -m pip install -qq "$work/dist"/*.whl
"$py" -c "import torch; assert torch.__version__ == '2.13.0+cpu', f'torch {torch.__version__}, not the CPU build'"
echo "check_wheel: built, checked and installed in ${SECONDS}s"

cd "$work"
"$py" - "$repo" <<'PY'
"""The installed package is the wheel's, at the package's version, with every file of the bundled model."""
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import spacy_elmo

repo = Path(sys.argv[1])
installed = Path(spacy_elmo.__file__).parent
assert "site-packages" in installed.parts, f"spacy_elmo imported from {installed}, not from the installed wheel"
assert version("spacy-elmo") == spacy_elmo.__version__, (version("spacy-elmo"), spacy_elmo.__version__)
command = str(Path(sys.executable).parent / "spacy-elmo")
printed = subprocess.run([command, "--version"], capture_output=True, text=True, check=True).stdout
assert printed == f"spacy-elmo {spacy_elmo.__version__}\n", printed
tracked = subprocess.run(
    ["git", "-C", str(repo), "ls-files", "spacy_elmo/data"], capture_output=True, text=True, check=True
).stdout.split()
missing = [name for name in tracked if not (installed.parent / name).is_file()]
assert not missing, f"package data missing from the wheel: {missing}"
print(f"spacy-elmo {spacy_elmo.__version__} installed from the wheel in {installed}, {len(tracked)} data files")
PY
"$work/venv/bin/spacy-elmo" embed "$repo/examples/sentences.txt" "$work/embeddings.hdf5"
"$py" - "$repo/examples/sentences.txt" "$work/embeddings.hdf5" <<'PY'
"""One dataset per input line, (3 layers, tokens, 256) for the bundled model, and the sentence_to_index map."""
import json
import sys

import h5py
import numpy as np

lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
with h5py.File(sys.argv[2], "r") as f:
    assert sorted(f.keys()) == sorted([str(i) for i in range(len(lines))] + ["sentence_to_index"]), list(f.keys())
    for i, line in enumerate(lines):
        layers = f[str(i)][()]
        assert layers.shape == (3, len(line.split()), 256), (i, layers.shape)
        assert layers.dtype == np.float32 and np.isfinite(layers).all() and np.abs(layers).sum() > 0
    index = json.loads(f["sentence_to_index"][0])
    assert index == {line: str(i) for i, line in enumerate(lines)}, index
print(f"embed from the wheel: {len(lines)} sentences, datasets (3, tokens, 256) and sentence_to_index as expected")
PY
echo "check_wheel: $(ls "$work/dist" | tr '\n' ' ')passed in ${SECONDS}s"
