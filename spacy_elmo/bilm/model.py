"""The ELMo bidirectional language model and its loading / saving."""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from pathlib import Path
from typing import ContextManager, Sequence

import numpy as np
import torch
from torch import nn

from ..util.atomic import write_text
from ..util.text import read_lines
from . import int8, kernels
from .chars import check_sentences
from .encoder import CharCNNEncoder
from .lstm import BiLstmStack
from .options import BiLMOptions
from .outputs import DEFAULT_BATCH_SIZE
from .precision import Precision
from .state import CarriedState
from .token_cache import DEFAULT_TOKEN_CACHE_SIZE, TokenCache, check_token_cache_size
from .token_ids import ByteTokenIds, TokenIds
from .weights import check_weights, load_weights, save_weights

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "data" / "default"
# A saved biLM's files (bilm-tf / AllenNLP names); the vocabulary only when the model has one.
OPTIONS_NAME, WEIGHTS_NAME, VOCAB_NAME = "options.json", "weights.hdf5", "vocab.txt"
MODEL_FILES = (OPTIONS_NAME, WEIGHTS_NAME, VOCAB_NAME)
HEAD_NAME = "lm_head.pt"  # the trained softmax, exported beside the biLM so that training can continue


class BiLM(nn.Module):
    """ELMo's biLM: a context-free character CNN layer and ``n_layers`` biLSTM layers.

    ``token_ids`` maps tokens to the rows of ids the token layer reads (default: AllenNLP's
    UTF-8 byte characters; ELMoForManyLangs models: their vocabularies, with a word embedding of
    ``word_dim`` beside the character CNN). ``forward`` takes such ids without sentence markers and returns every
    layer: layer 0 the token layer duplicated to ``2 * projection_dim`` (as AllenNLP
    does), layers 1..L the biLSTM outputs with forward and backward halves concatenated.

    ``token_cache_size`` word types keep their token layer in an LRU cache (:class:`TokenCache`)
    used when autograd is off; 0 disables it.
    """

    bos_ids: torch.Tensor  # buffers: the character ids of the sentence markers
    eos_ids: torch.Tensor

    def __init__(
        self,
        options: BiLMOptions,
        vocab: list[str] | None = None,
        dropout: float = 0.0,
        token_cache_size: int = 0,
        token_ids: TokenIds | None = None,
        word_dim: int = 0,
    ) -> None:
        super().__init__()
        self.options = options
        self.vocab = vocab
        self.token_ids = token_ids if token_ids is not None else ByteTokenIds(options.max_chars)
        self.token_cache: TokenCache | None = None
        self.set_token_cache_size(token_cache_size)
        self.encoder = CharCNNEncoder(options, self.token_ids.n_char_ids, self.token_ids.n_word_ids, word_dim)
        self.lstm = BiLstmStack(
            dim=options.projection_dim,
            cell_dim=options.lstm_dim,
            n_layers=options.n_layers,
            cell_clip=options.cell_clip,
            proj_clip=options.proj_clip,
            use_skip_connections=options.use_skip_connections,
            dropout=dropout,
        )
        self.register_buffer("bos_ids", torch.tensor(self.token_ids.bos()), persistent=False)
        self.register_buffer("eos_ids", torch.tensor(self.token_ids.eos()), persistent=False)

    @property
    def n_layers(self) -> int:
        """Number of output layers (token layer + biLSTM layers)."""
        return self.options.n_output_layers

    @property
    def dim(self) -> int:
        return self.options.output_dim

    @property
    def device(self) -> torch.device:
        return self.encoder.projection.weight.device

    @property
    def token_cache_size(self) -> int:
        return self.token_cache.size if self.token_cache is not None else 0

    def set_token_cache_size(self, size: int) -> None:
        """Keep the token layer of up to ``size`` word types (0: no cache); drops what was cached."""
        size = check_token_cache_size(size)
        self.token_cache = TokenCache(size) if size else None

    def add_boundaries(self, char_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(batch, tokens, chars)`` -> ``(batch, tokens + 2, chars)``: ``<S>`` first, ``</S>`` after each sentence."""
        return with_boundaries(char_ids, lengths, self.bos_ids, self.eos_ids)

    def token_layer(self, char_ids: torch.Tensor) -> torch.Tensor:
        """The context-free token vectors ``(batch, time, projection_dim)`` of ``(batch, time, width)`` ids,
        zero at padded positions; only real tokens go through the CNN (or come from the token cache)."""
        mask = char_ids.gt(0).any(-1)
        ids = char_ids[mask]
        if self.token_cache is not None and not torch.is_grad_enabled():
            encoded = self.token_cache(self.encoder, ids)
        else:
            encoded = self.encoder(ids)
        return encoded.new_zeros(*mask.shape, encoded.shape[-1]).masked_scatter(mask.unsqueeze(-1), encoded)

    def layers_with_markers(
        self, char_ids: torch.Tensor, lengths: torch.Tensor, carry: CarriedState | None = None
    ) -> list[torch.Tensor]:
        """All layers for ids that already hold the sentence markers.

        ``char_ids`` ``(batch, time, chars)``, ``lengths`` ``(batch,)`` counting the markers.
        Returns ``n_layers`` tensors ``(batch, time, dim)``, zero at padded positions.
        With ``carry`` (stateful use) each row's LSTM starts from the state ``carry`` holds for
        it, and ``carry`` is updated with the final states.
        """
        if len(lengths) == 0:
            return [char_ids.new_zeros(*char_ids.shape[:2], self.dim, dtype=torch.float32)] * self.n_layers
        return self.layers_from_tokens(self.token_layer(char_ids), lengths, carry)

    def layers_from_tokens(
        self, tokens: torch.Tensor, lengths: torch.Tensor, carry: CarriedState | None = None
    ) -> list[torch.Tensor]:
        """All layers from token vectors ``(batch, time, projection_dim)`` (markers included, ``lengths``
        counting them): ``n_layers`` tensors ``(batch, time, dim)``, zero at padded positions; ``carry``:
        see :meth:`layers_with_markers`."""
        lengths = lengths.cpu()
        order = torch.argsort(lengths, descending=True, stable=True)
        sorted_lengths = lengths[order]
        on_device = order.to(tokens.device)
        sorted_tokens = tokens[on_device]
        if carry is None:
            lstm_layers = self.lstm(sorted_tokens, sorted_lengths)
        else:
            initial = carry.initial(self.lstm, len(lengths), order, tokens.device)
            lstm_layers, final = self.lstm.forward_stateful(sorted_tokens, sorted_lengths, initial)
            carry.update(final, order)
        layers = [torch.cat([sorted_tokens, sorted_tokens], dim=-1), *lstm_layers]
        inverse = torch.argsort(on_device)
        return [layer[inverse] for layer in layers]

    def forward(self, char_ids: torch.Tensor, carry: CarriedState | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``char_ids`` ``(batch, tokens, width)`` from :attr:`token_ids` without markers (0 = padded token);
        ``carry``: see :meth:`layers_with_markers`.

        Returns the layers ``(n_layers, batch, tokens, dim)`` and the mask ``(batch, tokens)``.
        """
        width = self.token_ids.width
        if char_ids.dim() != 3 or char_ids.shape[-1] != width or char_ids.is_floating_point():
            raise ValueError(
                f"character ids must be an integer tensor of shape (batch, tokens, {width}), "
                f"found {str(char_ids.dtype).replace('torch.', '')} {tuple(char_ids.shape)}"
            )
        mask = char_ids.gt(0).any(-1)
        lengths = mask.sum(-1)
        with_markers = self.add_boundaries(char_ids, lengths)
        layers = self.layers_with_markers(with_markers, lengths + 2, carry)
        stripped = torch.stack([layer[:, 1:-1] for layer in layers])
        return stripped * mask.unsqueeze(-1).to(stripped.dtype), mask

    def embed_sentences(
        self, sentences: Sequence[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE, precision: Precision = "fp32"
    ) -> list[np.ndarray]:
        """One float32 array ``(n_layers, n_tokens, dim)`` per tokenized sentence.

        Sentences are batched by length; the result for a sentence does not depend
        on the other sentences or on earlier calls. ``precision``: ``"fp32"``, ``"bf16"`` (autocast) or
        ``"int8"`` (int8 products, CPU); what runs where a CPU lacks the kernels: ``kernels.resolve_precision``.
        """
        check_sentences(sentences)
        precision = kernels.resolve_precision(precision, self.device)
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        results: list[np.ndarray] = [np.empty(0)] * len(sentences)
        if precision == "bf16":
            arithmetic: ContextManager[object] = torch.autocast(self.device.type, dtype=torch.bfloat16)
        else:
            arithmetic = int8.products() if precision == "int8" else nullcontext()
        with torch.inference_mode(), arithmetic:
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                ids = self.token_ids.batch([sentences[i] for i in index]).to(self.device)
                layers = self(ids)[0].float().cpu().numpy()
                for k, i in enumerate(index):
                    results[i] = np.ascontiguousarray(layers[:, k, : len(sentences[i])])
        return results

    def save(self, directory: str | Path) -> None:
        """Write ``options.json`` + ``weights.hdf5`` (+ ``vocab.txt``) in the bilm-tf / AllenNLP format."""
        if not isinstance(self.token_ids, ByteTokenIds) or self.encoder.word_embedding is not None:
            raise ValueError(
                f"cannot save to {directory}: the bilm-tf format holds only biLMs over UTF-8 byte characters "
                "without a word embedding (this is an ELMoForManyLangs model: spacy_elmo.bilm.model_dir.save_directory "
                "writes it in its own layout)"
            )
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_weights(self, directory / WEIGHTS_NAME)
        write_text(directory / OPTIONS_NAME, json.dumps(self.options.to_json(), indent=1) + "\n")
        if self.vocab is not None:
            write_text(directory / VOCAB_NAME, "".join(f"{word}\n" for word in self.vocab))


def with_boundaries(x: torch.Tensor, lengths: torch.Tensor, first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """``(batch, tokens, ...)`` -> ``(batch, tokens + 2, ...)``: ``first`` before each row and ``last`` after its
    ``lengths`` items (character ids of ``<S>`` / ``</S>``, or their token vectors); zero elsewhere past the end."""
    batch, tokens = x.shape[:2]
    out = x.new_zeros(batch, tokens + 2, *x.shape[2:])
    out[:, 1:-1] = x
    out[:, 0] = first
    out[torch.arange(batch, device=x.device), lengths.to(x.device) + 1] = last
    return out


def read_vocab(path: str | Path) -> list[str]:
    """A bilm-tf ``vocab.txt``: one token per line, ``<S>``, ``</S>``, ``<UNK>`` among them (UTF-8, a leading
    byte-order mark dropped)."""
    words = (line.rstrip("\n") for _, _, line in read_lines(path))
    return [w for w in words if w]


def load_local(
    options_file: str | os.PathLike[str],
    weight_file: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE,
) -> BiLM:
    """Load a biLM from local bilm-tf / AllenNLP files (names, directories and URLs: ``spacy_elmo.load_bilm``).

    A ``vocab.txt`` beside the weight file is read too (needed only to go on training).
    ``token_cache_size``: word types whose token layer is cached for inference (0: none).
    """
    check_token_cache_size(token_cache_size)
    device = resolve_device(device)
    options = BiLMOptions.read(options_file)
    vocab_file = Path(weight_file).with_name(VOCAB_NAME)
    vocab = read_vocab(vocab_file) if vocab_file.is_file() else None
    with torch.device("meta"):  # shapes only: the weight file is checked against them before anything is allocated
        skeleton = BiLM(options)
    check_weights(skeleton, weight_file, options_source=str(options_file))
    model = BiLM(options, vocab=vocab, token_cache_size=token_cache_size)
    load_weights(model, weight_file, options_source=str(options_file))
    return model.to(device).eval()


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``...; a clear error when CUDA is asked for but absent."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available on this machine")
    return device
