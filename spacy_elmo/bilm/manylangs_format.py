"""Read ELMoForManyLangs (HIT-SCIR) model directories into a :class:`~spacy_elmo.bilm.model.BiLM`.

A directory holds ``config.json`` (whose ``config_path`` names the architecture file),
``char.dic`` and ``word.dic`` (``token<TAB>id`` per line), ``token_embedder.pkl`` and
``encoder.pkl`` (PyTorch state dicts of the reference's ``ConvTokenEmbedder`` and ``ElmobiLm``).
The architecture is ours: a word embedding beside the character CNN + highway, then the
projection, under the biLSTM with projections and clipping. The weights are mapped onto our
parameters: AllenNLP-style highway layers (``g x + (1 - g) f(A x)``) onto bilm-tf's form (carry
gate negated), LSTM gates (input, forget, candidate, output) into our (input, candidate, forget,
output) order with the forget bias of +1 that our cells add at run time taken out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..util.atomic import atomic_path, write_text
from ..util.checks import is_int
from .model import BiLM
from .options import BiLMOptions
from .token_ids import BOS, BOW, EOS, EOW, OOV, PAD, VocabTokenIds

CONFIG_NAME, CHAR_DIC, WORD_DIC = "config.json", "char.dic", "word.dic"
TOKEN_EMBEDDER_NAME, ENCODER_NAME = "token_embedder.pkl", "encoder.pkl"
ARCHITECTURE_NAME = "architecture.json"  # what save_manylangs names the architecture file
MANYLANGS_FILES = (CONFIG_NAME, ARCHITECTURE_NAME, CHAR_DIC, WORD_DIC, TOKEN_EMBEDDER_NAME, ENCODER_NAME)

# The architecture files the reference ships in ``elmoformanylangs/configs`` (both files hold the
# same architecture); released models name them in ``config_path`` without including them.
_RELEASED_ARCHITECTURE: dict[str, Any] = {
    "encoder": {"name": "elmo", "projection_dim": 512, "cell_clip": 3, "proj_clip": 3, "dim": 4096, "n_layers": 2},
    "token_embedder": {
        "name": "cnn",
        "activation": "relu",
        "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]],
        "n_highway": 2,
        "word_dim": 100,
        "char_dim": 50,
        "max_characters_per_token": 50,
    },
    "classifier": {"name": "sampled_softmax", "n_samples": 8192},
    "dropout": 0.1,
}
SHIPPED_CONFIGS: dict[str, dict[str, Any]] = {
    "cnn_0_100_512_4096_sample.json": _RELEASED_ARCHITECTURE,
    "cnn_50_100_512_4096_sample.json": _RELEASED_ARCHITECTURE,
}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON file ({err})") from None


def read_architecture(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """The architecture that ``config.json``'s ``config_path`` names, and where it came from.

    Looked up as the reference does: the path relative to the directory, then its file name in
    the directory, then the configs the reference ships (carried here as :data:`SHIPPED_CONFIGS`).
    """
    directory = Path(directory)
    config_file = directory / CONFIG_NAME
    if not config_file.is_file():
        raise ValueError(f"{config_file}: not found (an ELMoForManyLangs model directory has one)")
    config = _read_json(config_file)
    config_path = config.get("config_path") if isinstance(config, dict) else None
    if not isinstance(config_path, str) or not config_path:
        raise ValueError(f"{config_file}: expected an object with a 'config_path' string, found {config!r:.80}")
    name = os.path.basename(config_path.replace("\\", "/"))
    for candidate in (directory / config_path, directory / name):
        if candidate.is_file():
            return _read_json(candidate), str(candidate)
    if name in SHIPPED_CONFIGS:
        return SHIPPED_CONFIGS[name], f"the reference's configs/{name}"
    raise ValueError(
        f"{config_file}: config_path {config_path!r} is neither in the directory nor one of the reference's "
        f"configs {sorted(SHIPPED_CONFIGS)}"
    )


def parse_architecture(config: Any, source: str) -> tuple[BiLMOptions, int]:
    """The biLM options and the word embedding's width (0: none) of an ELMoForManyLangs architecture."""

    def fail(msg: str) -> ValueError:
        return ValueError(f"{source}: {msg}")

    if not isinstance(config, dict):
        raise fail(f"expected a JSON object, found {type(config).__name__}")
    embedder, encoder = config.get("token_embedder"), config.get("encoder")
    if not isinstance(embedder, dict) or not isinstance(encoder, dict):
        raise fail("expected 'token_embedder' and 'encoder' objects")
    if str(embedder.get("name", "")).lower() != "cnn":
        raise fail(f"unsupported token_embedder {embedder.get('name')!r}: only 'cnn' (the released models') is")
    if str(encoder.get("name", "")).lower() != "elmo":
        raise fail(f"unsupported encoder {encoder.get('name')!r}: only 'elmo' (the released models') is")
    word_dim, char_dim = embedder.get("word_dim"), embedder.get("char_dim")
    if not is_int(word_dim) or word_dim < 0:
        raise fail(f"token_embedder.word_dim must be an integer >= 0, found {word_dim!r}")
    if not is_int(char_dim) or char_dim <= 0:
        raise fail(f"unsupported token_embedder.char_dim {char_dim!r}: models without characters are not supported")
    options = {
        "lstm": {
            "projection_dim": encoder.get("projection_dim"),
            "dim": encoder.get("dim"),
            "n_layers": encoder.get("n_layers"),
            "cell_clip": encoder.get("cell_clip"),
            "proj_clip": encoder.get("proj_clip"),
            "use_skip_connections": True,
        },
        "char_cnn": {
            "activation": embedder.get("activation"),
            "filters": embedder.get("filters"),
            "n_highway": embedder.get("n_highway"),
            "embedding": {"dim": char_dim},
            "max_characters_per_token": embedder.get("max_characters_per_token"),
        },
    }
    return BiLMOptions.from_json(options, source=source), word_dim


def read_dic(path: Path) -> dict[str, int]:
    """``char.dic`` / ``word.dic`` parsed as the reference does: lines split as ``codecs`` splits them,
    stripped, ``token<TAB>id``; a line left with the id alone (its token was whitespace) is U+3000."""
    if not path.is_file():
        raise ValueError(f"{path}: not found (an ELMoForManyLangs model directory has one)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable UTF-8 vocabulary ({err})") from None
    vocab: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.strip().split("\t")
        if len(fields) == 1:
            fields.insert(0, "\u3000")
        if len(fields) != 2 or not fields[1].isdigit():
            raise ValueError(f"{path}: line {number} is {line!r:.60}, expected 'token<TAB>id'")
        vocab[fields[0]] = int(fields[1])
    return vocab


def _check_vocab(vocab: dict[str, int], path: Path, required: tuple[str, ...]) -> None:
    missing = [token for token in required if token not in vocab]
    if missing:
        raise ValueError(f"{path}: the reserved entries {missing} are missing")
    if vocab and max(vocab.values()) >= len(vocab):
        raise ValueError(f"{path}: ids must lie in [0, {len(vocab) - 1}] (one per entry), found {max(vocab.values())}")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A pickle holding a plain ``{name: tensor}`` state dict, loaded with ``weights_only=True``."""
    if not path.is_file():
        raise ValueError(f"{path}: not found (an ELMoForManyLangs model directory has one)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a bad or unsafe pickle
        text = str(err).strip()
        if "weights only load failed" in text.lower():
            raise ValueError(
                f"{path}: refused: this pickle needs more than plain tensors to load (it could run code), and only "
                "a plain PyTorch state dict is read"
            ) from None
        first = text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(err).__name__
        raise ValueError(f"{path}: not a plain PyTorch state dict ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ValueError(f"{path}: not a plain PyTorch state dict of tensors (found {type(state).__name__})")
    return state


class _StateReader:
    """Takes tensors out of one state dict, checking each shape; :meth:`done` rejects leftovers."""

    def __init__(self, path: Path, state: dict[str, torch.Tensor], source: str) -> None:
        self.path, self.state, self.source = path, dict(state), source

    def take(self, key: str, shape: tuple[int, ...], what: str = "") -> torch.Tensor:
        if key not in self.state:
            raise ValueError(f"{self.path}: tensor '{key}' is missing (expected shape {shape})")
        tensor = self.state.pop(key)
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{self.path}: tensor '{key}' has shape {tuple(tensor.shape)}, expected {shape}"
                f"{what or ' from ' + self.source}"
            )
        return tensor.float()

    def done(self) -> None:
        if self.state:
            raise ValueError(
                f"{self.path}: tensors {sorted(self.state)[:4]} are not part of the model {self.source} describes"
            )


def _padded(table: torch.Tensor) -> torch.Tensor:
    """An embedding table with a zero row 0 in front (ids are shifted by +1; 0 = padded token)."""
    return torch.cat([table.new_zeros(1, table.shape[1]), table])


def _load_token_embedder(
    model: BiLM, reader: _StateReader, n_chars: int, n_words: int, chars_file: Path, words_file: Path
) -> None:
    options, encoder = model.options, model.encoder
    copies: list[tuple[torch.Tensor, torch.Tensor]] = []
    if encoder.word_embedding is not None:
        word_dim = encoder.word_embedding.embedding_dim
        table = reader.take("word_emb_layer.embedding.weight", (n_words, word_dim), f" ({words_file} has {n_words})")
        copies.append((encoder.word_embedding.weight, _padded(table)))
    table = reader.take(
        "char_emb_layer.embedding.weight", (n_chars, options.char_dim), f" ({chars_file} has {n_chars})"
    )
    copies.append((encoder.char_embedding.weight, _padded(table)))
    for i, ((width, num), conv) in enumerate(zip(options.filters, encoder.convs)):
        copies.append((conv.weight, reader.take(f"convolutions.{i}.weight", (num, options.char_dim, width))))
        assert conv.bias is not None  # built with bias=True
        copies.append((conv.bias, reader.take(f"convolutions.{i}.bias", (num,))))
    d = options.n_filters
    for k, highway in enumerate(encoder.highways):
        weight = reader.take(f"highways._layers.{k}.weight", (2 * d, d))
        bias = reader.take(f"highways._layers.{k}.bias", (2 * d,))
        # AllenNLP: g x + (1 - g) relu(A x), g = sigmoid(B x); ours: t relu(A x) + (1 - t) x, t = 1 - g
        copies += [(highway.transform.weight, weight[:d]), (highway.transform.bias, bias[:d])]
        copies += [(highway.carry.weight, -weight[d:]), (highway.carry.bias, -bias[d:])]
    copies.append((encoder.projection.weight, reader.take("projection.weight", tuple(encoder.projection.weight.shape))))
    copies.append((encoder.projection.bias, reader.take("projection.bias", (options.projection_dim,))))
    reader.done()
    _copy(copies)


def _gate_order(c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The permutation between the reference's gate rows (input, forget, candidate, output) and ours (input,
    candidate, forget, output): its own inverse; and the forget bias of +1 our cells add, in our order."""
    order = torch.cat(
        [torch.arange(0, c), torch.arange(2 * c, 3 * c), torch.arange(c, 2 * c), torch.arange(3 * c, 4 * c)]
    )
    forget_bias = torch.zeros(4 * c)
    forget_bias[2 * c : 3 * c] = 1.0
    return order, forget_bias


def _load_encoder(model: BiLM, reader: _StateReader) -> None:
    options = model.options
    c, h = options.lstm_dim, options.projection_dim
    order, forget_bias = _gate_order(c)
    copies: list[tuple[torch.Tensor, torch.Tensor]] = []
    for direction, layers in (("forward", model.lstm.forward_layers), ("backward", model.lstm.backward_layers)):
        for k, cell in enumerate(layers):
            prefix = f"{direction}_layer_{k}"
            copies += [
                (cell.input_weight, reader.take(f"{prefix}.input_linearity.weight", (4 * c, h))[order]),
                (cell.state_weight, reader.take(f"{prefix}.state_linearity.weight", (4 * c, h))[order]),
                (cell.bias, reader.take(f"{prefix}.state_linearity.bias", (4 * c,))[order] - forget_bias),
                (cell.projection, reader.take(f"{prefix}.state_projection.weight", (h, c))),
            ]
    reader.done()
    _copy(copies)


def _copy(copies: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for param, value in copies:
            param.copy_(value)


def load_manylangs(directory: str | os.PathLike[str], token_cache_size: int = 0) -> BiLM:
    """The biLM of an ELMoForManyLangs model directory, on the CPU in eval mode.

    Every problem is a one-line ``ValueError`` naming the file: a missing file, a vocabulary
    without its reserved entries, a tensor whose shape disagrees with the architecture or the
    vocabulary sizes, a pickle that is not a plain state dict, an unsupported variant.
    """
    directory = Path(directory)
    architecture, source = read_architecture(directory)
    options, word_dim = parse_architecture(architecture, source)
    chars_file, words_file = directory / CHAR_DIC, directory / WORD_DIC
    chars = read_dic(chars_file)
    _check_vocab(chars, chars_file, (BOW, EOW, BOS, EOS, OOV, PAD))
    words = None
    if word_dim:
        words = read_dic(words_file)
        _check_vocab(words, words_file, (OOV, PAD))
    embedder_state = load_state_dict(directory / TOKEN_EMBEDDER_NAME)
    encoder_state = load_state_dict(directory / ENCODER_NAME)
    token_ids = VocabTokenIds(chars, words, options.max_chars)
    model = BiLM(options, token_cache_size=token_cache_size, token_ids=token_ids, word_dim=word_dim)
    described = f"the architecture in {source}"
    embedder_reader = _StateReader(directory / TOKEN_EMBEDDER_NAME, embedder_state, described)
    _load_token_embedder(model, embedder_reader, len(chars), len(words or ()), chars_file, words_file)
    _load_encoder(model, _StateReader(directory / ENCODER_NAME, encoder_state, described))
    return model.eval()


def architecture_of(model: BiLM) -> dict[str, Any]:
    """The ELMoForManyLangs architecture of ``model`` (the keys the reference reads at inference)."""
    o = model.options
    return {
        "encoder": {
            "name": "elmo",
            "projection_dim": o.projection_dim,
            "cell_clip": o.cell_clip or 0,
            "proj_clip": o.proj_clip or 0,
            "dim": o.lstm_dim,
            "n_layers": o.n_layers,
        },
        "token_embedder": {
            "name": "cnn",
            "activation": o.activation,
            "filters": [list(f) for f in o.filters],
            "n_highway": o.n_highway,
            "word_dim": model.encoder.word_dim,
            "char_dim": o.char_dim,
            "max_characters_per_token": o.max_chars,
        },
        "dropout": 0.0,
    }


def _state_dicts(model: BiLM) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The reference's ``token_embedder`` and ``encoder`` state dicts of ``model`` (the inverse of loading)."""
    encoder = model.encoder
    embedder: dict[str, torch.Tensor] = {}
    if encoder.word_embedding is not None:
        embedder["word_emb_layer.embedding.weight"] = encoder.word_embedding.weight[1:]
    embedder["char_emb_layer.embedding.weight"] = encoder.char_embedding.weight[1:]
    for i, conv in enumerate(encoder.convs):
        assert conv.bias is not None  # built with bias=True
        embedder[f"convolutions.{i}.weight"], embedder[f"convolutions.{i}.bias"] = conv.weight, conv.bias
    for k, highway in enumerate(encoder.highways):
        embedder[f"highways._layers.{k}.weight"] = torch.cat([highway.transform.weight, -highway.carry.weight])
        embedder[f"highways._layers.{k}.bias"] = torch.cat([highway.transform.bias, -highway.carry.bias])
    embedder["projection.weight"], embedder["projection.bias"] = encoder.projection.weight, encoder.projection.bias
    order, forget_bias = _gate_order(model.options.lstm_dim)
    lstm: dict[str, torch.Tensor] = {}
    for direction, layers in (("forward", model.lstm.forward_layers), ("backward", model.lstm.backward_layers)):
        for k, cell in enumerate(layers):
            prefix = f"{direction}_layer_{k}"
            lstm[f"{prefix}.input_linearity.weight"] = cell.input_weight[order]
            lstm[f"{prefix}.state_linearity.weight"] = cell.state_weight[order]
            lstm[f"{prefix}.state_linearity.bias"] = (cell.bias.cpu() + forget_bias)[order]
            lstm[f"{prefix}.state_projection.weight"] = cell.projection

    def plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: value.detach().float().cpu().contiguous().clone() for key, value in state.items()}

    return plain(embedder), plain(lstm)


def save_manylangs(model: BiLM, directory: str | os.PathLike[str]) -> None:
    """Write ``model`` (loaded from an ELMoForManyLangs directory) as such a directory, each file atomically:
    ``config.json`` naming ``architecture.json``, the vocabularies and the two state dicts."""
    token_ids = model.token_ids
    if not isinstance(token_ids, VocabTokenIds):
        raise ValueError(f"cannot save to {directory} as ELMoForManyLangs: the biLM has no character vocabulary")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text(directory / ARCHITECTURE_NAME, json.dumps(architecture_of(model), indent=1) + "\n")
    write_text(directory / CONFIG_NAME, json.dumps({"config_path": ARCHITECTURE_NAME}) + "\n")
    for name, vocab in ((CHAR_DIC, token_ids.chars), (WORD_DIC, token_ids.words)):
        if vocab is not None:
            write_text(directory / name, "".join(f"{key}\t{i}\n" for key, i in sorted(vocab.items(), key=_by_id)))
    for name, state in zip((TOKEN_EMBEDDER_NAME, ENCODER_NAME), _state_dicts(model)):
        with atomic_path(directory / name) as tmp:
            torch.save(state, tmp)


def _by_id(item: tuple[str, int]) -> int:
    return item[1]
