#!/usr/bin/env python
"""Time AllenNLP 2.10.1's ELMo biLM (``_ElmoBiLm``) the way ``ElmoEmbedder.embed_sentences`` ran it.

Run with the interpreter of the venv made by ``benchmarks/allennlp_setup.sh`` (AllenNLP installed
without its dependencies); ``benchmarks/allennlp_harness.py`` calls it from the main interpreter.

    python allennlp_runner.py --options O --weights W --sentences S.json \
        --batch-size 32 --repeats 3 --threads 1 [--dump out.npz]
    python allennlp_runner.py --check      # import AllenNLP's ELMo, print versions

Sentences are embedded in the given order, ``--batch-size`` per call: ``batch_to_ids`` -> biLM ->
``remove_sentence_boundaries`` -> one ``(n_layers, n_tokens, dim)`` numpy view per sentence. The
biLM's LSTM states are reset before every batch (AllenNLP carries them across batches otherwise), so
outputs are stateless and comparable with spacy_elmo. One warm-up batch, then ``--repeats`` timed
passes over all sentences; prints one line of JSON. ``--dump`` saves the last pass's arrays as
``s0, s1, ...`` (float32).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

# Imported by allennlp's package inits but unused by the ELMo path: replaced by stand-ins.
STUBBED = ("transformers", "torchvision", "fairscale", "huggingface_hub", "lmdb", "cached_path")


class _Placeholder:
    """Stand-in for any name of a stubbed module: subclassable, but using it fails loudly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"{type(self).__module__}.{type(self).__name__} is a stub (not installed)")


class _StubModule(types.ModuleType):
    """A package whose every attribute is a fresh ``_Placeholder`` subclass."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__path__: list[str] = []

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = type(name, (_Placeholder,), {"__module__": self.__name__})
        setattr(self, name, placeholder)
        return placeholder


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``_StubModule``s for ``STUBBED`` packages and their submodules, installed or not."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name.partition(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _StubModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _local_cached_path(url_or_filename: str | os.PathLike, **kwargs: Any) -> str:
    """The only part of the ``cached-path`` package ELMo uses: resolving a local file."""
    path = Path(url_or_filename)
    if not path.is_file():
        raise FileNotFoundError(f"{url_or_filename}: not a local file (downloads are stubbed out)")
    return str(path)


def import_allennlp_elmo() -> types.SimpleNamespace:
    """Install the stubs, then import AllenNLP's ELMo pieces."""
    sys.meta_path.insert(0, _StubFinder())
    cached_path = importlib.import_module("cached_path")
    cached_path.cached_path = _local_cached_path
    import allennlp
    from allennlp.modules.elmo import _ElmoBiLm, batch_to_ids
    from allennlp.nn.util import remove_sentence_boundaries

    return types.SimpleNamespace(
        version=allennlp.__version__,
        ElmoBiLm=_ElmoBiLm,
        batch_to_ids=batch_to_ids,
        remove_sentence_boundaries=remove_sentence_boundaries,
    )


def embed_batch(alnlp: types.SimpleNamespace, bilm: Any, batch: list[list[str]]) -> list[Any]:
    """ElmoEmbedder.batch_to_embeddings + embed_batch, with the LSTM states reset first."""
    import numpy as np
    import torch

    bilm._elmo_lstm.reset_states()
    output = bilm(alnlp.batch_to_ids(batch))
    without_bos_eos = [alnlp.remove_sentence_boundaries(a, output["mask"]) for a in output["activations"]]
    activations = torch.cat([layer.unsqueeze(1) for layer, _ in without_bos_eos], dim=1)
    lengths = without_bos_eos[0][1].sum(dim=1).tolist()
    return [
        activations[i, :, :length, :].numpy()
        if length
        else np.zeros((activations.size(1), 0, activations.size(-1)), dtype=np.float32)
        for i, length in enumerate(lengths)
    ]


def embed_all(alnlp: types.SimpleNamespace, bilm: Any, sentences: list[list[str]], batch_size: int) -> list[Any]:
    """All sentences, ``batch_size`` per call, in the given order."""
    out: list[Any] = []
    for start in range(0, len(sentences), batch_size):
        out.extend(embed_batch(alnlp, bilm, sentences[start : start + batch_size]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only import AllenNLP's ELMo and print versions")
    parser.add_argument("--options", type=Path)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--sentences", type=Path, help="JSON list of token lists")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dump", type=Path, help="write the last pass's per-sentence arrays here (.npz)")
    args = parser.parse_args()

    if not args.check:
        missing = [f"--{name}" for name in ("options", "weights", "sentences") if getattr(args, name) is None]
        if missing:
            parser.error(f"missing {', '.join(missing)}")
        if args.batch_size < 1 or args.repeats < 1 or args.threads < 1:
            parser.error("--batch-size, --repeats and --threads must be >= 1")

    alnlp = import_allennlp_elmo()
    import numpy as np
    import torch

    if args.check:
        print(json.dumps({"allennlp": alnlp.version, "torch": torch.__version__}))
        return

    torch.set_num_threads(args.threads)
    sentences = json.loads(args.sentences.read_text(encoding="utf-8"))
    if not sentences:
        parser.error(f"{args.sentences}: no sentences")
    n_tokens = sum(len(s) for s in sentences)
    bilm = alnlp.ElmoBiLm(str(args.options), str(args.weights)).eval()

    times = []
    with torch.no_grad():
        embed_batch(alnlp, bilm, sentences[: args.batch_size])  # warm-up
        for _ in range(args.repeats):
            start = time.perf_counter()
            arrays = embed_all(alnlp, bilm, sentences, args.batch_size)
            times.append(time.perf_counter() - start)

    if args.dump is not None:
        np.savez(args.dump, **{f"s{i}": a.astype(np.float32) for i, a in enumerate(arrays)})
    best, median = min(times), statistics.median(times)
    print(
        json.dumps(
            {
                "allennlp": alnlp.version,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "tokens": n_tokens,
                "best_s": best,
                "median_s": median,
                "tokens_per_s": n_tokens / best,
                "median_tokens_per_s": n_tokens / median,
            }
        )
    )


if __name__ == "__main__":
    main()
