#!/usr/bin/env python
"""Throughput of the ELMo biLM: tokens/s, achieved GFLOP/s against the machine's
measured matrix-product throughput, peak RSS, bf16-vs-fp32 deviation; optionally RSS growth
while streaming 10,000 Docs through ``nlp.pipe``.

    python benchmarks/bench_bilm.py              # full table (a few minutes on 2 CPU cores)
    python benchmarks/bench_bilm.py --quick      # short run
    python benchmarks/bench_bilm.py --device cuda --quick   # GPU; needs only torch, h5py, numpy
    python benchmarks/bench_bilm.py --memory-check          # 10,000 Docs through nlp.pipe
    python benchmarks/bench_bilm.py --kernels plain         # force a kernel path (SPACY_ELMO_KERNELS)

Models: "original" is the released ELMo architecture (2x4096_512_2048cnn_2xhighway) with random
weights; "default" is the bundled model (or ``--options/--weights``), skipped when absent.
Paths: "bare" is ``BiLM.embed_sentences``; "pipe" is ``nlp.pipe`` over pre-tokenized Docs with the
``"elmo"`` component alone in a blank English pipeline (skipped without spaCy or the component). Each row's time is
the best of ``--repeats`` runs over the same sentences after one warm-up batch (the median is printed too); the load
average is read at the end of each row. Model FLOPs are counted analytically (see ``model_flops``).
The synthetic cases run without the token cache; per case the precisions alternate run by run.
The running-text rows (``--text``, default
``corpus/pretrain/heldout.txt``) embed its first ``--text-tokens`` tokens once per timed run, without and
with the token cache (empty at the start of each run), and, when a venv with AllenNLP 2.10.1 is found
(``benchmarks/allennlp_setup.sh``), AllenNLP on the same weights and sentences in its own process.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import types
from functools import partial
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
try:  # spacy_elmo's package init imports tqdm (AllenNLP API); a GPU box may have only torch/h5py/numpy
    import tqdm  # noqa: F401
except ImportError:
    sys.modules["tqdm"] = types.SimpleNamespace(tqdm=lambda it=None, *a, **k: it)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from machine import (  # noqa: E402
    cpu_flags,
    load_average,  # noqa: E402
    release_memory,
    reset_peak_rss,
    rss_mb,
)
from spacy_elmo import load_bilm  # noqa: E402
from spacy_elmo.bilm import BiLM, BiLMOptions, kernels, onednn  # noqa: E402
from spacy_elmo.bilm.model import DEFAULT_MODEL_DIR  # noqa: E402
from spacy_elmo.bilm.token_cache import DEFAULT_TOKEN_CACHE_SIZE  # noqa: E402
from spacy_elmo.hub.releases import MODELS  # noqa: E402


def onednn_on(device: torch.device) -> bool:
    return onednn.available() and device.type == "cpu"


ORIGINAL = MODELS["original"].options  # 2x4096_512_2048cnn_2xhighway, built with random weights here
PARITY = ROOT / "tests" / "data" / "elmo_parity"

# (label, batch size, min tokens, max tokens, sentences in a full run, in a quick run)
CASES = [
    ("bs=1, 5-45 tok", 1, 5, 45, 16, 4),
    ("bs=16, 5-45 tok", 16, 5, 45, 64, 16),
    ("bs=64, 5-45 tok", 64, 5, 45, 128, 64),
    ("bs=32, 20-30 tok", 32, 20, 30, 96, 32),  # the target case
]


# --------------------------------------------------------------------------- workload


def vocabulary(size: int = 5000, seed: int = 0) -> list[str]:
    """A fixed set of pseudo-words with English-like lengths (a fixed set keeps spaCy's StringStore bounded)."""
    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [26 - i for i in range(26)]
    lengths = [1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 7, 7, 8, 9, 10, 12]
    words = {"".join(rng.choices(letters, weights, k=rng.choice(lengths))) for _ in range(size * 2)}
    return sorted(words)[:size]


def make_sentences(n: int, lo: int, hi: int, seed: int, words: list[str]) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(words) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


def running_text(path: Path, tokens: int) -> list[list[str]]:
    """The first lines of a tokenized text file (one sentence per line) up to ``tokens`` tokens."""
    sentences, total = [], 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            words = line.split()
            if words:
                sentences.append(words)
                total += len(words)
            if total >= tokens:
                break
    return sentences


# --------------------------------------------------------------------------- FLOPs


def model_flops(options: BiLMOptions) -> dict[str, float]:
    """Multiply-adds x 2 per position, by part. A sentence of n tokens is n + 2 positions (with
    <S> and </S>); the recurrent product is counted for n + 1 of them, the first step's state being
    zero (and skipped). Elementwise work (gates, highway gates, max-pooling) is not counted."""
    P, C, F = options.projection_dim, options.lstm_dim, options.n_filters
    conv = sum(2 * w * options.char_dim * num * (options.max_chars - w + 1) for w, num in options.filters)
    highway = options.n_highway * 2 * (2 * F * F)
    projection = 2 * F * P
    per_direction_layer_in = 2 * P * 4 * C + 2 * C * P  # input product + projection
    per_direction_layer_rec = 2 * P * 4 * C  # recurrent product
    lstm_in = 2 * options.n_layers * per_direction_layer_in
    lstm_rec = 2 * options.n_layers * per_direction_layer_rec
    return {"cnn": conv, "highway": highway, "projection": projection, "lstm": lstm_in, "recurrent": lstm_rec}


def sentences_flops(options: BiLMOptions, sentences: list[list[str]]) -> float:
    parts = model_flops(options)
    per_position = parts["cnn"] + parts["highway"] + parts["projection"] + parts["lstm"]
    return sum((len(s) + 2) * per_position + (len(s) + 1) * parts["recurrent"] for s in sentences)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device, dtype, m, k, n, method, budget_s: float) -> float:
    """Best-of GFLOP/s of ``(m, k) x (k, n)``: ``torch.matmul`` or oneDNN with a pre-packed weight; for
    ``torch.int8`` oneDNN's int8 product of already quantized rows with a quantized weight (GOP/s)."""
    if dtype == torch.int8:
        from spacy_elmo.bilm import int8

        q = int8.quantize_rows(torch.randn(m, k))[0]
        weight = int8.quantize_weight(torch.randn(n, k))
        return best_rate(lambda: int8.product(q, weight), 2.0 * m * k * n, device, budget_s)
    x = torch.randn(m, k, device=device).to(dtype)
    w = torch.randn(k, n, device=device).to(dtype)
    if method == "torch.matmul":
        fn = lambda: torch.matmul(x, w)  # noqa: E731
    else:
        packed = onednn.pack(w.t(), dtype)
        fn = lambda: onednn.linear(x, packed)  # noqa: E731
    return best_rate(fn, 2.0 * m * k * n, device, budget_s)


def best_rate(fn, flops: float, device, budget_s: float) -> float:
    """Best of 5 timed batches of ``fn`` (after two warm-up calls), as G(FL)OP/s."""
    with torch.inference_mode():
        fn(), fn()
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        once = max(time.perf_counter() - t, 1e-6)
        reps = max(1, min(200, int(budget_s / 5 / once)))
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            sync(device)
            best = min(best, (time.perf_counter() - t) / reps)
    return flops / best / 1e9


def matmul_bound(device, models: dict, quick: bool) -> dict[str, float]:
    """Print the matrix-product throughput table; return the bound (best GFLOP/s measured) per precision."""
    shapes = [("square 2048", 2048, 2048, 2048)]
    for name, options in models.items():
        P, C, F = options.projection_dim, options.lstm_dim, options.n_filters
        shapes += [
            (f"{name}: LSTM input, 864 pos", 864, P, 4 * C),
            (f"{name}: LSTM recurrent, 32 seq", 32, P, 4 * C),
            (f"{name}: LSTM projection, 32 seq", 32, C, P),
            (f"{name}: highway, 864 tok", 864, F, 2 * F),
        ]
    methods = ["torch.matmul"]
    if onednn_on(device):
        methods.append("oneDNN packed")
    budget = 0.3 if quick else 1.0
    bound = {}
    print(f"\nMatrix-product throughput, GFLOP/s (best of 5; load {load_average()[0]} at start)")
    columns = [(p, d, m) for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16)) for m in methods]
    columns.append(("int8", torch.int8, "oneDNN int8"))
    print(f"{'shape (m x k x n)':44} " + " ".join(f"{p + ' ' + m:>22}" for p, _, m in columns))
    for label, m, k, n in shapes:
        cells = []
        for prec, dtype, method in columns:
            if kernels.runs_as(prec, device) != prec or (method != "torch.matmul" and not onednn.supports(dtype)):
                cells.append(f"{'n/a: no kernels':>22}")  # bf16 runs as fp32 here, or no oneDNN bf16 / int8
                continue
            try:
                g = matmul_gflops(device, dtype, m, k, n, method, budget)
                bound[prec] = max(bound.get(prec, 0.0), g)
                cells.append(f"{g:22.1f}")
            except Exception as err:  # noqa: BLE001 - a missing kernel is a table cell, not a failure
                cells.append(f"{'error: ' + type(err).__name__:>22}")
        print(f"{label + f' ({m}x{k}x{n})':44} " + " ".join(cells))
    print(
        f"bound (best measured): fp32 {bound.get('fp32', float('nan')):.1f} GFLOP/s, "
        f"bf16 {bound.get('bf16', float('nan')):.1f} GFLOP/s, int8 {bound.get('int8', float('nan')):.1f} GOP/s "
        f"(oneDNN int8 product of quantized rows); load {load_average()[0]} at end"
    )
    return bound


# --------------------------------------------------------------------------- runs


def time_runs(run, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


class Row:
    header = (
        f"{'model':9} {'path':5} {'prec':5} {'case':17} {'sents':>5} {'tokens':>6} {'tok/s':>8} {'(median)':>8} "
        f"{'GFLOP/s':>8} {'of bound':>8} {'peak RSS MB':>11} {'load':>5}"
    )

    @staticmethod
    def print(
        model, path, prec, case, sentences=None, best=None, median=None, gflop=None, bound=None, rss=None, note=""
    ):
        if best is None:
            print(f"{model:9} {path:5} {prec:5} {case:17} skipped: {note}")
            return
        tokens = sum(map(len, sentences))
        frac = f"{100 * gflop / bound:7.1f}%" if bound else f"{'n/a':>8}"
        print(
            f"{model:9} {path:5} {prec:5} {case:17} {len(sentences):5d} {tokens:6d} {tokens / best:8.1f} "
            f"{tokens / median:8.1f} {gflop:8.1f} {frac} {rss:11.0f} {load_average()[0]:>5}"
            + (f"  {note}" if note else "")
        )


def pretokenized(nlp, sentences: list) -> Iterator:
    """Docs of the pre-tokenized ``sentences`` (no tokenizer time in the figures)."""
    from spacy.tokens import Doc

    return (Doc(nlp.vocab, words=sentence) for sentence in sentences)


def pipe_all(nlp, sentences: list, batch: int) -> None:
    list(nlp.pipe(pretokenized(nlp, sentences), batch_size=batch))


def bench_bare(name, bilm, cases, precisions, repeats, bound, device):
    """Per case, the precisions' timed runs interleaved (run r of each precision, then run r + 1...), so that a
    change in the machine's load hits them alike; RSS is the peak over all of them."""
    for label, batch, sentences in cases:
        for prec in precisions:
            bilm.embed_sentences(sentences[:batch], batch_size=batch, precision=prec)  # warm-up (packs weights)
        release_memory()
        exact = reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times: dict[str, list[float]] = {prec: [] for prec in precisions}
        for _ in range(repeats):
            for prec in precisions:
                run = partial(bilm.embed_sentences, sentences, batch_size=batch, precision=prec)
                times[prec].append(time_runs(run, 1)[0])
        best = {prec: min(t) for prec, t in times.items()}
        for prec in precisions:
            gflop = sentences_flops(bilm.options, sentences) / best[prec] / 1e9
            note = "" if exact else "RSS = process peak"
            if device.type == "cuda":
                note += f"GPU peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MB"
            Row.print(
                name,
                "bare",
                prec,
                label,
                sentences,
                best[prec],
                statistics.median(times[prec]),
                gflop,
                bound.get(kernels.runs_as(prec, device)),
                rss_mb(field="VmHWM"),
                note,
            )
        if "int8" in best:
            ratios = ", ".join(f"{best[p] / best['int8']:.2f}x {p}" for p in precisions if p != "int8")
            print(f"{'':9} {'':5} {'int8':5} {label:17} speed-up: {ratios}")


def bench_text(name, bilm, sentences, precisions, repeats, bound, device, batch=32, allennlp=None):
    """Running text, one pass per timed run: without the token cache, then with it starting empty each run.

    ``allennlp``: ``(python, options_file, weight_file)`` to time AllenNLP 2.10.1 on the same sentences."""
    label = f"text, bs={batch}"
    results = {}
    for prec in precisions:
        for size in (0, DEFAULT_TOKEN_CACHE_SIZE):
            bilm.set_token_cache_size(0)
            bilm.embed_sentences(sentences[:batch], batch_size=batch, precision=prec)  # warm-up (packs weights)
            release_memory()
            exact = reset_peak_rss()

            def run(size: int = size, sentences: list = sentences, batch: int = batch, prec: str = prec) -> None:
                bilm.set_token_cache_size(size)  # empty at the start of every pass
                bilm.embed_sentences(sentences, batch_size=batch, precision=prec)

            best, median = time_runs(run, repeats)
            gflop = sentences_flops(bilm.options, sentences) / best / 1e9
            results[prec, size] = best
            note = f"token cache {size}" + (f" ({len(bilm.token_cache)} types after the pass)" if size else "")
            note += "" if exact else "; RSS = process peak"
            Row.print(
                name,
                "bare",
                prec,
                label,
                sentences,
                best,
                median,
                gflop,
                bound.get(kernels.runs_as(prec, device)),
                rss_mb(field="VmHWM"),
                note,
            )
        ratio = results[prec, 0] / results[prec, DEFAULT_TOKEN_CACHE_SIZE]
        print(f"{'':9} {'':5} {prec:5} {label:17} token cache speed-up: {ratio:.2f}x")
    bilm.set_token_cache_size(0)
    if allennlp is not None:
        from allennlp_harness import measure_allennlp

        python, options_file, weight_file = allennlp
        try:
            out = measure_allennlp(
                python, options_file, weight_file, sentences, batch, repeats, torch.get_num_threads()
            )
        except (RuntimeError, OSError) as err:
            Row.print(name, "alnlp", "fp32", label, note=str(err).splitlines()[-1][:120])
            return
        best, median = out["best_s"], out["median_s"]
        gflop = sentences_flops(bilm.options, sentences) / best / 1e9
        Row.print(
            name,
            "alnlp",
            "fp32",
            label,
            sentences,
            best,
            median,
            gflop,
            bound.get("fp32"),
            float("nan"),
            f"AllenNLP {out['allennlp']} (own process); ours fp32 uncached is "
            f"{best / results['fp32', 0]:.2f}x its speed"
            if ("fp32", 0) in results
            else "",
        )


def load_spacy():
    """``(spacy, None)`` or ``(None, reason)``."""
    try:
        import spacy
    except ImportError:
        return None, "spaCy not installed"
    try:
        import spacy_elmo.pipeline  # noqa: F401 - registers the "elmo" factory
    except Exception as err:  # noqa: BLE001
        return None, f"no 'elmo' component ({type(err).__name__}: {err})"
    return spacy, None


def make_nlp(spacy, model_dir: Path, batch: int, prec: str, token_cache_size: int = 0):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "elmo",
        config={
            "options_file": str(model_dir / "options.json"),
            "weight_file": str(model_dir / "weights.hdf5"),
            "batch_size": batch,
            "precision": prec,
            "token_cache_size": token_cache_size,
        },
    )
    return nlp


def bench_pipe(name, model_dir, options, cases, precisions, repeats, bound, device):
    spacy, reason = load_spacy() if device.type == "cpu" else (None, "nlp.pipe rows run on CPU only")
    for prec in precisions:
        for label, batch, sentences in cases:
            if spacy is None:
                Row.print(name, "pipe", prec, label, note=reason)
                continue
            try:
                nlp = make_nlp(spacy, model_dir, batch, prec)
                list(nlp.pipe(pretokenized(nlp, sentences[:batch]), batch_size=batch))  # warm-up: loads, packs weights
            except Exception as err:  # noqa: BLE001
                Row.print(name, "pipe", prec, label, note=f"{type(err).__name__}: {err}")
                continue
            release_memory()
            exact = reset_peak_rss()
            best, median = time_runs(partial(pipe_all, nlp, sentences, batch), repeats)
            gflop = sentences_flops(options, sentences) / best / 1e9
            Row.print(
                name,
                "pipe",
                prec,
                label,
                sentences,
                best,
                median,
                gflop,
                bound.get(kernels.runs_as(prec, device)),
                rss_mb(field="VmHWM"),
                "" if exact else "RSS = process peak",
            )
            del nlp
            release_memory()


def deviation(bilm: BiLM, sentences) -> str:
    a = bilm.embed_sentences(sentences, batch_size=32, precision="fp32")
    b = bilm.embed_sentences(sentences, batch_size=32, precision="bf16")
    diff = max(float(np.abs(x - y).max()) for x, y in zip(a, b))
    scale = max(float(np.abs(x).max()) for x in a)
    per_layer = [max(float(np.abs(x[k] - y[k]).max()) for x, y in zip(a, b)) for k in range(a[0].shape[0])]
    return f"max |bf16 - fp32| = {diff:.3g} (largest |fp32| value {scale:.3g}); per layer " + ", ".join(
        f"{d:.3g}" for d in per_layer
    )


def parity_deviation(device) -> str | None:
    if not (PARITY / "expected.npz").is_file():
        return None
    import json

    bilm = load_bilm(PARITY / "options.json", PARITY / "weights.hdf5", device=device)
    sentences = json.loads((PARITY / "sentences.json").read_text(encoding="utf-8"))
    expected = np.load(PARITY / "expected.npz")
    out = []
    for prec in ("fp32", "bf16"):
        got = bilm.embed_sentences(sentences, precision=prec)
        out.append(f"{prec} {max(float(np.abs(g - expected[f's{i}']).max()) for i, g in enumerate(got)):.3g}")
    return "parity fixture, max |ours - AllenNLP|: " + ", ".join(out) + "; " + deviation(bilm, sentences)


# --------------------------------------------------------------------------- memory check


def memory_check(args, device) -> None:
    spacy, reason = load_spacy()
    print("\nMemory check: 10,000 Docs through nlp.pipe")
    if spacy is None:
        print(f"skipped: {reason}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.options:
            model_dir = Path(tmp) / "model"
            model_dir.mkdir()
            for src, dst in ((args.options, "options.json"), (args.weights, "weights.hdf5")):
                os.symlink(Path(src).resolve(), model_dir / dst)
            which = f"{args.options}"
        elif (DEFAULT_MODEL_DIR / "weights.hdf5").is_file():
            model_dir, which = DEFAULT_MODEL_DIR, "the bundled default model"
        else:
            small = BiLMOptions(((1, 32), (2, 32), (3, 64)), 1, 16, 64, 256, 2)
            model_dir, which = Path(tmp) / "small", "a small random model (no default model installed)"
            torch.manual_seed(0)
            BiLM(small).save(model_dir)
        nlp = make_nlp(spacy, model_dir, 64, args.memory_precision, DEFAULT_TOKEN_CACHE_SIZE)
        words = vocabulary()
        texts = (" ".join(s) for s in make_sentences(10_000, 5, 30, 7, words))  # tokenized by spaCy
        marks, start = [], time.perf_counter()
        for i, doc in enumerate(nlp.pipe(texts, batch_size=64), 1):
            assert doc._.elmo_layers is not None
            if i % 1000 == 0:
                gc.collect()
                marks.append(rss_mb())
        elapsed = time.perf_counter() - start
    print(f"model: {which}; precision {args.memory_precision}; {elapsed:.0f} s; load {load_average()[0]}")
    print("RSS after each 1,000 Docs (MB): " + " ".join(f"{m:.0f}" for m in marks))
    print(f"RSS growth between the first and the last thousand: {marks[-1] - marks[0]:+.1f} MB")


# --------------------------------------------------------------------------- main


def parse_args() -> tuple[argparse.Namespace, torch.device]:
    """The command line, checked; ``--kernels`` and ``--threads`` take effect here."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer sentences, one timed run per row")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--options", help="options.json of the model to benchmark instead of the bundled default")
    parser.add_argument("--weights", help="weights.hdf5 to go with --options")
    parser.add_argument("--models", default="original,default", help="comma list of: original, default")
    parser.add_argument("--paths", default="bare,pipe", help="comma list of: bare, pipe")
    parser.add_argument("--precisions", default="fp32,bf16,int8", help="comma list of: fp32, bf16, int8")
    parser.add_argument("--cases", default=None, help="comma list of case numbers 1-4 (default: all)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 3, --quick 1)")
    parser.add_argument("--no-bound", action="store_true", help="skip the matrix-product measurement")
    parser.add_argument("--memory-check", action="store_true", help="only the 10,000-Doc nlp.pipe RSS check")
    parser.add_argument("--memory-precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument(
        "--text",
        default=str(ROOT / "corpus" / "pretrain" / "heldout.txt"),
        help="tokenized running text for the token-cache rows (one sentence per line)",
    )
    parser.add_argument("--text-tokens", type=int, default=20_000, help="tokens of --text to embed per pass")
    parser.add_argument(
        "--allennlp",
        default="auto",
        help="python of a venv with AllenNLP 2.10.1 (benchmarks/allennlp_setup.sh), auto, or none",
    )
    parser.add_argument(
        "--kernels",
        choices=("auto", "plain", "onednn"),
        default=None,
        help="force a kernel path (sets SPACY_ELMO_KERNELS)",
    )
    args = parser.parse_args()
    if args.kernels:
        os.environ["SPACY_ELMO_KERNELS"] = args.kernels
    if (args.options is None) != (args.weights is None):
        parser.error("give both --options and --weights")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, device


def print_machine(device: torch.device) -> None:
    print(f"torch {torch.__version__}, python {platform.python_version()}, {torch.get_num_threads()} threads")
    print(f"CPU: {kernels.cpu_name()} ({os.cpu_count()} logical CPUs; {cpu_flags()})")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    print(f"oneDNN fast path: {'on' if onednn_on(device) else 'off'}; load {load_average()[0]}")
    described = kernels.describe()
    print(
        f"kernels: mode {described['kernel_mode']}, capability {described['cpu_capability']}, features "
        f"{described['cpu_features']}, oneDNN fp32 {described['onednn_fp32']}, bf16 {described['onednn_bf16']}; "
        f"int8 kernel {described['int8_kernel']}; precision bf16 runs as {kernels.runs_as('bf16', device)}, int8 as "
        f"{kernels.runs_as('int8', device)}"
    )


def models_to_run(args: argparse.Namespace, device: torch.device) -> dict[str, tuple]:
    """name -> (options, loader, files or None) of the models asked for; the small model first (RSS)."""
    wanted = args.models.split(",")
    models: dict[str, tuple] = {}
    if "default" in wanted:
        options_file = Path(args.options) if args.options else DEFAULT_MODEL_DIR / "options.json"
        weight_file = Path(args.weights) if args.weights else DEFAULT_MODEL_DIR / "weights.hdf5"
        name = "custom" if args.options else "default"
        if weight_file.is_file() and options_file.is_file():
            models[name] = (
                BiLMOptions.read(options_file),
                lambda: load_bilm(options_file, weight_file, device=device, token_cache_size=0),
                (options_file, weight_file),
            )
        else:
            print(f"\n{name} model: skipped ({weight_file} not found; --options/--weights point elsewhere)")

    if "original" in wanted:

        def original():
            torch.manual_seed(0)
            return BiLM(ORIGINAL).to(device).eval()

        models["original"] = (ORIGINAL, original, None)
    return models


def allennlp_python(args: argparse.Namespace, device: torch.device) -> str | None:
    """The python of a venv with AllenNLP for the comparison rows (CPU only), or None."""
    if args.allennlp == "none" or device.type != "cpu":
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from allennlp_harness import find_allennlp_python

    allennlp = find_allennlp_python() if args.allennlp == "auto" else args.allennlp
    print(f"AllenNLP: {allennlp or 'not found (benchmarks/allennlp_setup.sh makes a venv for it)'}")
    return allennlp


def bench_model(name, model, paths, cases, precisions, repeats, bound, device, text, allennlp, words, notes) -> None:
    """The rows of one model: bare (and running text) and pipe; its bf16 deviation goes to ``notes``."""
    options, loader, files = model
    if "bare" in paths:
        bilm = loader()
        bench_bare(name, bilm, cases, precisions, repeats, bound, device)
        if text is not None:
            with tempfile.TemporaryDirectory() as tmp:
                if allennlp and files is None:
                    bilm.save(tmp)
                on_disk = files or (Path(tmp) / "options.json", Path(tmp) / "weights.hdf5")
                bench_text(
                    name,
                    bilm,
                    text,
                    precisions,
                    repeats,
                    bound,
                    device,
                    allennlp=(allennlp, *on_disk) if allennlp else None,
                )
        target = cases[-1][2] if cases else make_sentences(32, 20, 30, 3, words)
        notes.append(f"{name}: {deviation(bilm, target[:64])}")
        del bilm
        release_memory()
    if "pipe" in paths:
        with tempfile.TemporaryDirectory() as tmp:
            if files is None:
                spacy_ok = device.type == "cpu" and load_spacy()[0] is not None
                model_dir = Path(tmp)
                if spacy_ok:
                    bilm = loader()
                    bilm.save(model_dir)
                    del bilm
                    release_memory()
            else:
                model_dir = Path(tmp)
                os.symlink(files[0].resolve(), model_dir / "options.json")
                os.symlink(files[1].resolve(), model_dir / "weights.hdf5")
            bench_pipe(name, model_dir, options, cases, precisions, repeats, bound, device)


def main() -> None:
    args, device = parse_args()
    print_machine(device)
    if args.memory_check:
        memory_check(args, device)
        return
    repeats = args.repeats or (1 if args.quick else 3)
    precisions = args.precisions.split(",")
    paths = args.paths.split(",")
    words = vocabulary()
    picked = [CASES[int(i) - 1] for i in args.cases.split(",")] if args.cases else CASES
    cases = [
        (label, batch, make_sentences(n_quick if args.quick else n_full, lo, hi, seed=k, words=words))
        for k, (label, batch, lo, hi, n_full, n_quick) in enumerate(picked)
    ]

    models = models_to_run(args, device)
    bound = {} if args.no_bound else matmul_bound(device, {n: m[0] for n, m in models.items()}, args.quick)
    for name, (options, _, _) in models.items():
        parts = model_flops(options)
        print(
            f"\n{name}: {sum(parts.values()) / 1e6:.1f} MFLOP per token ("
            + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in parts.items())
            + ")"
        )

    text = running_text(Path(args.text), args.text_tokens) if Path(args.text).is_file() else None
    if text is None:
        print(f"\nrunning-text rows: skipped ({args.text} not found; `spacy project run corpus` makes it)")
    allennlp = allennlp_python(args, device)

    print("\n" + Row.header)
    notes: list[str] = []
    for name, model in models.items():
        bench_model(name, model, paths, cases, precisions, repeats, bound, device, text, allennlp, words, notes)
    parity = parity_deviation(device)
    if parity:
        notes.append(parity)
    print("\nbf16 deviation:")
    for note in notes:
        print("  " + note)
    print(f"\nload {load_average()[0]} at end")


if __name__ == "__main__":
    main()
