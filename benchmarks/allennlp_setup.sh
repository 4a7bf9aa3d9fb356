#!/usr/bin/env bash
# Create a venv with AllenNLP 2.10.1 for benchmarks/allennlp_runner.py (the AllenNLP column of the benchmark).
#
#   benchmarks/allennlp_setup.sh [DIR]        # DIR defaults to /tmp/allennlp-venv
#
# AllenNLP 2.10.1's pinned dependencies (torch<1.13, transformers, ...) do not install on Python 3.11,
# so it is installed with --no-deps into a venv that sees the base interpreter's packages
# (--system-site-packages: torch, h5py, numpy, spacy), plus three tiny pure-Python packages its
# imports need. The heavy imports it does not use on the ELMo path (transformers, torchvision,
# fairscale, huggingface_hub, lmdb, cached_path) are stubbed by allennlp_runner.py at run time, so a
# bare `import allennlp` fails in this venv by design; `allennlp_runner.py --check` is the test.
# The base interpreter is $PYTHON (default: python3). Idempotent: does nothing when the check passes.
set -euo pipefail

DIR="${1:-/tmp/allennlp-venv}"
BASE_PYTHON="${PYTHON:-python3}"
RUNNER="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/allennlp_runner.py"
PACKAGES=(allennlp==2.10.1 dill==0.4.1 base58==2.1.1 more-itertools==11.2.1)

die() { echo "allennlp_setup: $*" >&2; exit 1; }

if [[ -x "$DIR/bin/python" ]] && versions=$("$DIR/bin/python" "$RUNNER" --check 2>/dev/null); then
    echo "allennlp_setup: $DIR already set up: $versions"
    exit 0
fi

"$BASE_PYTHON" -c "import torch, h5py, numpy, spacy" 2>/dev/null \
    || die "$BASE_PYTHON lacks torch, h5py, numpy or spacy (the venv reuses them); set PYTHON=<interpreter>"
"$BASE_PYTHON" -m venv --system-site-packages "$DIR" || die "could not create the venv at $DIR"
"$DIR/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${PACKAGES[@]}" \
    || die "pip install --no-deps ${PACKAGES[*]} into $DIR failed (is the package registry reachable?)"

torch_file=$("$DIR/bin/python" -c "import torch; print(torch.__file__)")
[[ "$torch_file" != "$DIR"/* ]] || die "a torch was installed into $DIR ($torch_file); remove $DIR and rerun"
versions=$("$DIR/bin/python" "$RUNNER" --check) \
    || die "AllenNLP's ELMo does not import in $DIR (see the traceback above)"

echo "allennlp_setup: installed into $DIR (with --no-deps):"
"$DIR/bin/python" -m pip list --local --disable-pip-version-check --format=freeze | sed 's/^/  /'
echo "allennlp_setup: stubbed at run time: transformers torchvision fairscale huggingface_hub lmdb cached_path"
echo "allennlp_setup: ok: $versions"
