"""Make tests/data/manylangs: random-weight ELMoForManyLangs model directories and the reference's outputs.

Runs the reference implementation itself (HIT-SCIR's ``elmoformanylangs``, PyPI 0.0.4.post2), which
the test suite does not need. In a throwaway environment that shares the main one's torch::

    python -m venv --system-site-packages /tmp/ref
    /tmp/ref/bin/pip install --no-deps elmoformanylangs==0.0.4.post2 overrides==3.1.0
    /tmp/ref/bin/python scripts/make_manylangs_fixture.py tests/data/manylangs

Writes two model directories (``words``: word embedding + characters, as the released models;
``chars``: characters only), each with the architecture file that ``config.json`` names, the
sentences (``sentences.json``) and ``Embedder(dir).sents2elmo(sentences, output_layer=-2)`` per
model (``reference_<model>.npz``, key ``"i"`` for sentence i: ``(3, n_tokens, 2 * projection_dim)``).
The reference's biLM carries its LSTM state from batch to batch, so every call starts from a
fresh ``Embedder`` and embeds all sentences in one batch (zero initial state, like ours).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from elmoformanylangs import Embedder
from elmoformanylangs.frontend import Model
from elmoformanylangs.modules.embedding_layer import EmbeddingLayer

MAX_CHARS = 12  # tokens are cut to 10 characters

ARCHITECTURE = {
    "encoder": {"name": "elmo", "projection_dim": 8, "cell_clip": 3, "proj_clip": 3, "dim": 16, "n_layers": 2},
    "token_embedder": {
        "name": "cnn",
        "activation": "relu",
        "filters": [[1, 4], [2, 4], [3, 8]],
        "n_highway": 2,
        "word_dim": 6,
        "char_dim": 5,
        "max_characters_per_token": MAX_CHARS,
    },
    "classifier": {"name": "sampled_softmax", "n_samples": 16},
    "dropout": 0.1,
}

RESERVED_CHARS = ["<oov>", "<pad>", "<bow>", "<eow>", "<bos>", "<eos>"]
CHARS = dict.fromkeys(  # distinct, in order
    list("abcdefghijklmnopqrstuvwxyzTDGZ.,!?'-äöüß")
    + list("我们喜欢自然语言处理。的是")
    + list("اللغةالعربيةجميلة")
    + ["\u3000"]  # written as a line holding the id alone: the reference reads it back as U+3000
).keys()
RESERVED_WORDS = ["<oov>", "<pad>", "<bos>", "<eos>"]
WORDS = "the quick brown fox . die des ! 我们 喜欢 语言 。 اللغة جميلة internatio donaudampf".split()

LONG = (
    "the quick brown fox jumps over the lazy dog . 我们 喜欢 自然 语言 处理 。 اللغة العربية جميلة "
    "international donaudampfschifffahrt ! ? "
).split()
SENTENCES = [
    "The quick brown fox jumps .".split(),
    "Die Größe des Hauses überrascht Zoë !".split(),
    "我们 喜欢 自然 语言 处理 。".split(),
    "اللغة العربية جميلة".split(),
    ["international", "donaudampfschifffahrtsgesellschaft", "internationalisation", "x" * 30],
    ["🙂", "Ω", "ÆØÅ", "\u3000", " ", "<eos>", ""],
    ["fox"],
    [],
    (LONG * 5)[:110],
]


def write_dic(path: Path, entries: list[str]) -> None:
    lines = [(f"{i}" if e.strip() == "" else f"{e}\t{i}") for i, e in enumerate(entries)]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def make_model(directory: Path, word_dim: int, seed: int) -> None:
    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    architecture = json.loads(json.dumps(ARCHITECTURE))
    architecture["token_embedder"]["word_dim"] = word_dim
    (directory / "cnn_tiny.json").write_text(json.dumps(architecture, indent=1) + "\n", encoding="utf-8")
    (directory / "config.json").write_text(json.dumps({"config_path": "cnn_tiny.json"}) + "\n", encoding="utf-8")
    chars = RESERVED_CHARS + list(CHARS)
    write_dic(directory / "char.dic", chars)
    char_ids = {c: i for i, c in enumerate(chars)}
    char_layer = EmbeddingLayer(architecture["token_embedder"]["char_dim"], char_ids, fix_emb=False)
    word_layer = None
    if word_dim:
        words = RESERVED_WORDS + WORDS
        write_dic(directory / "word.dic", words)
        word_layer = EmbeddingLayer(word_dim, {w: i for i, w in enumerate(words)}, fix_emb=False)
    model = Model(architecture, word_layer, char_layer)
    with torch.no_grad():  # random weights everywhere (biases too), large enough to reach the clips
        for param in model.parameters():
            param.uniform_(-0.6, 0.6)
    torch.save(model.token_embedder.state_dict(), directory / "token_embedder.pkl")
    torch.save(model.encoder.state_dict(), directory / "encoder.pkl")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sentences.json").write_text(json.dumps(SENTENCES, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    for name, word_dim, seed in (("words", 6, 0), ("chars", 0, 1)):
        make_model(out / name, word_dim, seed)
        outputs = Embedder(str(out / name), batch_size=64).sents2elmo(SENTENCES, output_layer=-2)
        arrays = {str(i): np.asarray(layers, dtype=np.float32) for i, layers in enumerate(outputs)}
        np.savez_compressed(out / f"reference_{name}.npz", **arrays)
        print(name, [a.shape for a in arrays.values()])


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/manylangs"))
