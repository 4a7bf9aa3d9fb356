"""Measure AllenNLP 2.10.1's ELMo from the main interpreter, by running ``allennlp_runner.py`` in the
venv made by ``allennlp_setup.sh`` (AllenNLP is never imported here).

    python = find_allennlp_python()
    if python is not None:
        result = measure_allennlp(python, options, weights, sentences, batch_size=32, repeats=3, threads=1)
        print(result["tokens_per_s"])
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

RUNNER = Path(__file__).resolve().with_name("allennlp_runner.py")
DEFAULT_PYTHON = "/tmp/allennlp-venv/bin/python"


def find_allennlp_python(default: str = DEFAULT_PYTHON) -> str | None:
    """``default`` if it is an interpreter with the ``allennlp`` package installed, else None."""
    if not (os.path.isfile(default) and os.access(default, os.X_OK)):
        return None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('allennlp') is None)"
    try:
        found = subprocess.run([default, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None
    return default if found else None


def measure_allennlp(
    python: str,
    options_file: str | os.PathLike,
    weight_file: str | os.PathLike,
    sentences: list[list[str]],
    batch_size: int,
    repeats: int,
    threads: int,
    dump: Path | None = None,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """Time AllenNLP's biLM on ``sentences`` (``batch_size`` per call, in order, LSTM states reset per
    batch; best and median of ``repeats`` passes after one warm-up batch) with ``threads`` torch threads.

    Returns the runner's JSON: allennlp, torch, threads, tokens, best_s, median_s, tokens_per_s,
    median_tokens_per_s. With ``dump``, the per-sentence ``(n_layers, n_tokens, dim)`` float32 outputs
    are saved there as ``s0, s1, ...``. Raises RuntimeError (with the runner's stderr tail) on failure.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="allennlp-bench-") as tmp:
        sentences_file = Path(tmp) / "sentences.json"
        sentences_file.write_text(json.dumps(sentences, ensure_ascii=False), encoding="utf-8")
        command = [
            python, str(RUNNER),
            "--options", str(options_file),
            "--weights", str(weight_file),
            "--sentences", str(sentences_file),
            "--batch-size", str(batch_size),
            "--repeats", str(repeats),
            "--threads", str(threads),
        ]  # fmt: skip
        if dump is not None:
            command += ["--dump", str(dump)]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"AllenNLP runner timed out after {timeout:.0f} s: {' '.join(command)}") from exc
        except OSError as exc:
            raise RuntimeError(f"cannot run the AllenNLP runner with {python}: {exc}") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        stderr_tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"AllenNLP runner failed (exit {proc.returncode}):\n{stderr_tail}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"AllenNLP runner printed no JSON result; last line: {lines[-1]!r}") from exc
