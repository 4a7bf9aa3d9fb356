#!/usr/bin/env python
"""Which products pay in int8: end-to-end tokens/s with one kind of product at a time in int8, against fp32.

    python benchmarks/int8_products.py                      # bundled model and the original architecture
    python benchmarks/int8_products.py --models default --tokens 3000 --rounds 5
    python benchmarks/int8_products.py --shapes                # one product at a time, by shape

``--shapes``: microseconds per product ``(rows, in) x (out, in)`` in float32 (``F.linear``) and through
:func:`spacy_elmo.bilm.int8.linear` (row quantization included), from tiny to the original architecture's sizes:
where int8 stops costing more than it saves (the sizes :func:`~spacy_elmo.bilm.int8.pays` uses).

For each model it lists the products ``precision="int8"`` can quantize (kind, weight ``(out, in)``, whether
:func:`spacy_elmo.bilm.int8.pays` selects it), then times ``embed_sentences`` (batch 32, running text) with:
fp32; int8 as shipped (the products ``pays`` selects); int8 for every product of every size; and each kind of
product alone in int8 (every size). Configurations run interleaved, round after round, on a fresh model each time
(so packs are rebuilt), and the best round counts; the ratio is to fp32 of the same rounds. A kind whose row is
below 1.0 costs more in int8 than it saves at this model's sizes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_bilm import best_rate  # noqa: E402  (benchmarks/, beside this file)
from int8_accuracy import model  # noqa: E402

from machine import cpu_flags, cpu_model, load_text  # noqa: E402
from spacy_elmo.bilm import int8  # noqa: E402
from tests.helpers import running_text  # noqa: E402

SHIPPED = (int8.PRODUCTS, int8.MIN_IN, int8.MIN_WEIGHT, int8.MIN_STEP_WEIGHT)


def products_of(name: str) -> list[tuple[str, tuple[int, int], bool]]:
    """The (kind, weight shape, selected) of each product the model packs for int8, in packing order."""
    seen: list[tuple[str, tuple[int, int], bool]] = []
    pays = int8.pays

    def recording(product: str, weight: torch.Tensor) -> bool:
        selected = pays(product, weight)
        seen.append((product or "(float only)", tuple(weight.shape), selected))
        return selected

    int8.pays = recording
    try:
        model(name).embed_sentences([["a", "short", "sentence"]], precision="int8")
    finally:
        int8.pays = pays
    return seen


def tokens_per_second(name: str, sentences: list[list[str]], config: tuple | None) -> float:
    """``embed_sentences`` rate of a fresh model: fp32 (``config`` None) or int8 under ``config``
    (PRODUCTS, MIN_IN, MIN_WEIGHT, MIN_STEP_WEIGHT)."""
    bilm = model(name)
    if config is None:
        precision = "fp32"
    else:
        precision = "int8"
        int8.PRODUCTS, int8.MIN_IN, int8.MIN_WEIGHT, int8.MIN_STEP_WEIGHT = config
    try:
        bilm.embed_sentences(sentences[:8], batch_size=32, precision=precision)  # packs and oneDNN primitives
        start = time.perf_counter()
        bilm.embed_sentences(sentences, batch_size=32, precision=precision)
        return sum(map(len, sentences)) / (time.perf_counter() - start)
    finally:
        int8.PRODUCTS, int8.MIN_IN, int8.MIN_WEIGHT, int8.MIN_STEP_WEIGHT = SHIPPED


#: (rows, in, out): 32 rows = one time step of a batch of 32 sentences; 800 rows = their tokens at once
SHAPES = [
    (32, 32, 512),
    (32, 128, 32),
    (32, 128, 512),
    (32, 256, 1024),
    (32, 128, 4096),
    (32, 512, 2048),
    (32, 4096, 512),
    (32, 1024, 4096),
    (32, 512, 16384),
    (800, 32, 512),
    (800, 96, 1024),
    (800, 1024, 128),
    (800, 128, 4096),
    (800, 1024, 2048),
    (800, 512, 16384),
]


def print_shapes() -> None:
    """fp32 vs int8 time of one product per shape (``bench_bilm.best_rate``: best of 5 timed runs)."""
    print(f"{'rows x in x out':>20} {'fp32 us':>9} {'int8 us':>9} {'fp32 / int8':>11} {'pays':>5}")
    cpu = torch.device("cpu")
    for rows, inputs, outputs in SHAPES:
        x, weight, bias = torch.randn(rows, inputs), torch.randn(outputs, inputs), torch.randn(outputs)
        quantized = int8.quantize_weight(weight)
        calls = (
            lambda x=x, weight=weight, bias=bias: torch.nn.functional.linear(x, weight, bias),
            lambda x=x, quantized=quantized, bias=bias: int8.linear(x, quantized, bias),
        )
        # a rate of 1 "flop" per call: its inverse is the seconds of one call
        times = [1e6 / (best_rate(call, 1.0, cpu, budget_s=0.5) * 1e9) for call in calls]
        shape = f"{rows} x {inputs} x {outputs}"
        kind = "recurrent" if rows <= 32 else "lstm_input"  # one step's batch of rows, or all tokens at once
        pays = "yes" if int8.pays(kind, weight) else "no"
        print(f"{shape:>20} {times[0]:9.1f} {times[1]:9.1f} {times[0] / times[1]:11.2f} {pays:>5}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="default,original")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", action="store_true", help="only the product-by-shape table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.shapes:
        print(f"CPU {cpu_model()} ({cpu_flags()}); int8 kernel {int8.kernel()}; {args.threads} thread(s)")
        print_shapes()
        print(f"load {load_text()}")
        return
    sentences = running_text(args.tokens)
    print(
        f"CPU {cpu_model()} ({cpu_flags()}); int8 kernel {int8.kernel()}; {args.threads} thread(s); "
        f"load {load_text()}; {sum(map(len, sentences))} tokens; shipped rule: in >= {int8.MIN_IN} and "
        f"out x in >= {int8.MIN_WEIGHT} ({int8.MIN_STEP_WEIGHT} for a time step's products)"
    )
    for name in args.models.split(","):
        print(f"\n{name}: products (kind, weight out x in, int8 as shipped)")
        for kind, shape, selected in products_of(name):
            print(f"  {kind:18} {shape[0]:6} x {shape[1]:<6} {'int8' if selected else 'fp32'}")
        configs: dict[str, tuple | None] = {
            "fp32": None,
            "int8 as shipped": SHIPPED,
            "int8 every product": (int8.PRODUCTS, 0, 0, 0),
        }
        configs.update({f"only {kind}": (frozenset({kind}), 0, 0, 0) for kind in sorted(int8.PRODUCTS)})
        rates: dict[str, list[float]] = {label: [] for label in configs}
        for _ in range(args.rounds):
            for label, config in configs.items():
                rates[label].append(tokens_per_second(name, sentences, config))
        best_fp32 = max(rates["fp32"])
        for label in configs:
            print(f"  {label:24} {max(rates[label]):9.1f} tokens/s  x{max(rates[label]) / best_fp32:.3f}", flush=True)
    print(f"load after: {load_text()}")


if __name__ == "__main__":
    main()
