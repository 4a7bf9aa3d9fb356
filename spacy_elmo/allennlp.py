"""AllenNLP-compatible ELMo API: ``Elmo``, ``batch_to_ids``, ``ElmoEmbedder``.

Code written for ``allennlp.modules.elmo`` / ``allennlp.commands.elmo`` runs unchanged
after switching its imports to ``spacy_elmo``. Differences from AllenNLP:

- Stateless by default: outputs do not depend on earlier batches, every sentence starts
  from a zero state (AllenNLP's values after a state reset). AllenNLP's biLM carries its
  LSTM state from one batch to the next; ``Elmo(..., stateful=True)`` and
  ``ElmoEmbedder(..., stateful=True)`` do the same (``reset_states()`` forgets it), for
  reproducing AllenNLP's / bilm-tf's numbers exactly.
- Files and URLs: options and weights are local paths or URLs (downloaded once into the cache, see
  :mod:`spacy_elmo.hub`); ``None, None`` loads the bundled default model, a name alone
  (``Elmo("small")``) a released model.
- Without autograd, the token layer of recent word types comes from an LRU cache
  (``token_cache_size``), besides AllenNLP's ``vocab_to_cache``.
"""

from __future__ import annotations

import itertools
import os
import warnings
from typing import Iterable, Iterator, Sequence, cast

import numpy as np
import torch
from torch import nn

from .bilm import BiLM, ScalarMix, batch_char_ids
from .bilm.model import with_boundaries
from .bilm.outputs import DEFAULT_BATCH_SIZE, OutputFormat, check_batch_size
from .bilm.state import CarriedState
from .bilm.token_cache import DEFAULT_TOKEN_CACHE_SIZE
from .bilm.token_ids import ByteTokenIds
from .embed.writer import PathOrFile, embed_file
from .hub import load_bilm
from .util.checks import is_int


def batch_to_ids(batch: Sequence[Sequence[str]]) -> torch.Tensor:
    """AllenNLP's character ids of tokenized sentences: int64 ``(batch, max_tokens, 50)``, 0 for padding."""
    return batch_char_ids(batch)


class _Stateful:
    """``stateful=True``: the LSTM state carried per batch row from call to call (AllenNLP's behaviour)."""

    _carry: CarriedState | None

    @property
    def stateful(self) -> bool:
        return self._carry is not None

    def reset_states(self, mask: torch.Tensor | None = None) -> None:
        """Stateful mode: forget the carried LSTM states (``mask``: only those of the rows where it is true)."""
        if self._carry is not None:
            self._carry.reset(mask)


class Elmo(nn.Module, _Stateful):
    """AllenNLP's ``Elmo`` module: ``num_output_representations`` trainable scalar mixes of the biLM layers.

    ``forward(inputs, word_inputs=None)`` takes character ids ``(batch, tokens, 50)`` (from ``batch_to_ids``;
    more leading dimensions are allowed) and returns ``{"elmo_representations": [(batch, tokens, dim)] * n, "mask":
    (batch, tokens) bool}``; with ``keep_sentence_boundaries`` the ``<S>`` / ``</S>`` positions are kept
    (``tokens + 2``). Dropout is applied after mixing. ``scalar_mix_parameters`` (pre-softmax, one per
    layer) fixes the mix weights and gamma = 1. With ``requires_grad=False`` the biLM is frozen and runs
    without autograd. ``module`` passes an already loaded ``BiLM`` instead of the two files.
    A model with its own vocabularies (ELMoForManyLangs, ``Elmo(directory)``) reads the ids of
    ``elmo.bilm.token_ids.batch(sentences)`` instead of ``batch_to_ids``'s.
    ``stateful=True``: AllenNLP's behaviour, each batch row's LSTM continues from that row's state
    at the end of the previous call (``reset_states()`` starts again from zero).

    ``vocab_to_cache`` (a list of words, index 0 for padding) computes their token layer once, as AllenNLP
    does: ``forward`` then also takes ``word_inputs`` ``(batch, tokens)``, indices into that list (0 =
    padding), and looks the token layer up instead of running the character CNN (ids outside the list fall
    back to the characters, as in AllenNLP).
    """

    word_embedding: torch.Tensor | None  # buffer: the token layer of vocab_to_cache (with <S>, </S>)

    def __init__(
        self,
        options_file: str | os.PathLike | None = None,
        weight_file: str | os.PathLike | None = None,
        num_output_representations: int = 1,
        requires_grad: bool = False,
        do_layer_norm: bool = False,
        dropout: float = 0.5,
        vocab_to_cache: list[str] | None = None,
        keep_sentence_boundaries: bool = False,
        scalar_mix_parameters: Sequence[float] | None = None,
        module: BiLM | None = None,
        stateful: bool = False,
    ) -> None:
        super().__init__()
        n = num_output_representations
        if not is_int(n) or n < 1:
            raise ValueError(f"num_output_representations must be an int >= 1, found {num_output_representations!r}")
        if module is not None:
            if options_file is not None or weight_file is not None:
                raise ValueError("pass either module or options_file / weight_file, not both")
            self.bilm = module
        else:
            self.bilm = load_bilm(options_file, weight_file, "cpu")
        self.bilm.requires_grad_(requires_grad)
        self.requires_grad = requires_grad
        self.keep_sentence_boundaries = keep_sentence_boundaries
        n_layers = self.bilm.n_layers
        if scalar_mix_parameters is not None and len(scalar_mix_parameters) != n_layers:
            raise ValueError(
                f"scalar_mix_parameters has {len(scalar_mix_parameters)} values; this biLM has {n_layers} layers"
            )
        for k in range(n):
            mix = ScalarMix(n_layers, do_layer_norm, scalar_mix_parameters, trainable=scalar_mix_parameters is None)
            self.add_module(f"scalar_mix_{k}", mix)
        self._dropout = nn.Dropout(p=dropout)
        self._carry = CarriedState() if stateful else None
        self.register_buffer("word_embedding", None if vocab_to_cache is None else self._cache_words(vocab_to_cache))

    def _cache_words(self, words: Sequence[str]) -> torch.Tensor:
        """Token-layer vectors ``(2 + len(words), projection_dim)``: ``<S>``, ``</S>``, then ``words``."""
        if isinstance(words, str) or not all(isinstance(w, str) for w in words):
            raise TypeError("vocab_to_cache must be a list of strings (index 0 is the padding token)")
        bilm = self.bilm
        word_ids = bilm.token_ids.batch([[w] for w in words]).reshape(len(words), -1)
        ids = torch.cat([torch.stack([bilm.bos_ids, bilm.eos_ids]), word_ids])
        with torch.no_grad():
            return torch.cat([bilm.encoder(ids[k : k + 1024]) for k in range(0, len(ids), 1024)]).float()

    @property
    def scalar_mixes(self) -> list[ScalarMix]:
        """One ``ScalarMix`` per output representation (modules ``scalar_mix_0``, ``scalar_mix_1``, ...)."""
        return [cast(ScalarMix, module) for name, module in self.named_children() if name.startswith("scalar_mix_")]

    def get_output_dim(self) -> int:
        """Width of each representation (``2 * projection_dim``)."""
        return self.bilm.dim

    def forward(
        self, inputs: torch.Tensor, word_inputs: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Character ids ``(..., tokens, 50)`` (and, with ``vocab_to_cache``, word ids ``(..., tokens)``)
        -> mixed representations ``(..., tokens, dim)`` and mask."""
        ids = self._check_ids(inputs)
        leading = ids.shape[:-2]
        ids = ids.flatten(0, -3)  # (batch, tokens, chars)
        words = self._cached_words(word_inputs, ids.shape[:2])
        with torch.set_grad_enabled(self.requires_grad and torch.is_grad_enabled()):
            if words is None:
                mask = ids.gt(0).any(-1)
                lengths = mask.sum(-1)
                with_markers = self.bilm.add_boundaries(ids, lengths)
                mask_with_markers = with_markers.gt(0).any(-1)
                layers = self.bilm.layers_with_markers(with_markers, lengths + 2, self._carry)
            else:
                mask = words.gt(0)
                lengths = mask.sum(-1)
                tokens, mask_with_markers = self._word_layer(words, mask, lengths)
                layers = self.bilm.layers_from_tokens(tokens, lengths + 2, self._carry)
        representations = []
        for mix in self.scalar_mixes:
            # AllenNLP mixes (and layer-normalises) with the sentence markers in, then strips them.
            mixed = mix(layers, mask_with_markers)
            if not self.keep_sentence_boundaries:
                mixed = mixed[:, 1:-1] * mask.unsqueeze(-1).to(mixed.dtype)
            representations.append(self._dropout(mixed).unflatten(0, leading))
        out_mask = mask_with_markers if self.keep_sentence_boundaries else mask
        return {"elmo_representations": representations, "mask": out_mask.unflatten(0, leading)}

    def _cached_words(self, word_inputs: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
        """``word_inputs`` as ``(batch, tokens)`` ids to look up, or None to run the character CNN:
        without ``vocab_to_cache`` (with a warning) or when an id lies outside the cached list."""
        if word_inputs is None:
            return None
        if self.word_embedding is None:
            warnings.warn(
                "word_inputs were passed to Elmo, which has no vocab_to_cache: they are ignored", stacklevel=2
            )
            return None
        if not isinstance(word_inputs, torch.Tensor) or word_inputs.is_floating_point():
            raise TypeError(f"word_inputs must be an integer tensor (batch, tokens), found {word_inputs!r:.60}")
        words = word_inputs.reshape(-1, word_inputs.shape[-1]) if word_inputs.dim() > 2 else word_inputs
        if words.shape != shape:
            raise ValueError(
                f"word_inputs {tuple(word_inputs.shape)} do not match the character ids' (batch, tokens) {tuple(shape)}"
            )
        n_words = len(self.word_embedding) - 2
        if words.numel() and (words.min() < 0 or words.max() >= n_words):
            return None  # AllenNLP backs off to the characters for words it has not cached
        return words.long()

    def _word_layer(
        self, words: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached token vectors ``(batch, tokens + 2, projection_dim)`` with ``<S>`` / ``</S>`` around each
        sentence, and their mask ``(batch, tokens + 2)``."""
        table = self.word_embedding
        assert table is not None  # only called with words from _cached_words
        tokens = with_boundaries(table[words + 2] * mask.unsqueeze(-1).to(table.dtype), lengths, table[0], table[1])
        mask_with_markers = torch.arange(words.shape[1] + 2, device=words.device) < (lengths + 2).unsqueeze(-1)
        return tokens, mask_with_markers

    def _check_ids(self, inputs: object) -> torch.Tensor:
        max_chars, n_ids = self.bilm.token_ids.width, self.bilm.encoder.n_ids
        build = (
            "batch_to_ids(sentences)" if isinstance(self.bilm.token_ids, ByteTokenIds) else "elmo.bilm.token_ids.batch"
        )
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(
                f"Elmo expects character ids as a torch tensor (batch, tokens, {max_chars}), "
                f"found {type(inputs).__name__}; build them with {build}"
            )
        if (
            inputs.dim() < 3
            or inputs.shape[-1] != max_chars
            or inputs.is_floating_point()
            or inputs.is_complex()
            or inputs.dtype == torch.bool
        ):
            raise ValueError(
                f"character ids must be an integer tensor of shape (batch, tokens, {max_chars}), found "
                f"{str(inputs.dtype).replace('torch.', '')} {tuple(inputs.shape)}; "
                f"build them with {build}"
            )
        if inputs.numel() and (inputs.min() < 0 or inputs.max() >= n_ids):
            raise ValueError(
                f"character ids must lie in [0, {n_ids - 1}], found values in "
                f"[{int(inputs.min())}, {int(inputs.max())}]; build them with {build}"
            )
        return inputs.long()


def _check_tokens(tokens: object) -> None:
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        hint = ": split it into tokens first, e.g. text.split()" if isinstance(tokens, str) else ""
        raise TypeError(f"expected a list of token strings, found {type(tokens).__name__}{hint}")


class ElmoEmbedder(_Stateful):
    """AllenNLP's ``ElmoEmbedder``: raw biLM layers as numpy arrays ``(n_layers, n_tokens, dim)``.

    ``None, None`` loads the bundled default model; ``cuda_device`` -1 is the CPU, N >= 0 the GPU ``cuda:N``;
    ``token_cache_size``: word types whose token layer is cached (0: none).
    ``stateful=True``: AllenNLP's behaviour, each batch row continues from that row's LSTM state at the
    end of the previous batch (``reset_states()`` starts again from zero); batches run as given.
    """

    def __init__(
        self,
        options_file: str | os.PathLike | None = None,
        weight_file: str | os.PathLike | None = None,
        cuda_device: int = -1,
        stateful: bool = False,
        token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE,
    ) -> None:
        self.cuda_device = cuda_device
        device = f"cuda:{cuda_device}" if cuda_device >= 0 else "cpu"
        self.bilm = load_bilm(options_file, weight_file, device, token_cache_size=token_cache_size)
        self._carry = CarriedState() if stateful else None

    def batch_to_embeddings(self, batch: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Layers ``(batch, n_layers, max_tokens, dim)`` (zero at padding) and mask ``(batch, max_tokens)``."""
        with torch.no_grad():
            layers, mask = self.bilm(batch_to_ids(batch).to(self.bilm.device), self._carry)
        return layers.transpose(0, 1), mask

    def embed_sentence(self, sentence: Sequence[str]) -> np.ndarray:
        """float32 ``(n_layers, len(sentence), dim)``."""
        _check_tokens(sentence)
        return self.embed_batch([sentence])[0]

    def embed_batch(self, batch: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """One float32 array ``(n_layers, n_tokens, dim)`` per sentence (stateful: the batch as one biLM batch)."""
        if not self.stateful:
            return self.bilm.embed_sentences(batch, batch_size=max(len(batch), 1))
        for sentence in batch:
            _check_tokens(sentence)
        if len(batch) == 1 and len(batch[0]) == 0:  # as AllenNLP: a lone empty sentence leaves the state alone
            return [np.zeros((self.bilm.n_layers, 0, self.bilm.dim), dtype=np.float32)]
        layers, mask = self.batch_to_embeddings(batch)
        lengths = mask.sum(1).tolist()
        return [np.ascontiguousarray(layers[i, :, :n].float().cpu().numpy()) for i, n in enumerate(lengths)]

    def embed_sentences(
        self, sentences: Iterable[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[np.ndarray]:
        """Lazily embed ``batch_size`` sentences at a time; yields ``(n_layers, n_tokens, dim)`` per sentence."""
        check_batch_size(batch_size)
        iterator = iter(sentences)
        while batch := list(itertools.islice(iterator, batch_size)):
            yield from self.embed_batch(batch)

    def embed_file(
        self,
        input_file: PathOrFile,
        output_file_path: str | os.PathLike,
        output_format: OutputFormat = "all",
        batch_size: int = DEFAULT_BATCH_SIZE,
        forget_sentences: bool = False,
        use_sentence_keys: bool = False,
    ) -> None:
        """Embed a file of one whitespace-tokenized sentence per line into hdf5; see ``embed_file``."""
        embed_file(
            self.bilm,
            input_file,
            output_file_path,
            output_format,
            batch_size,
            forget_sentences,
            use_sentence_keys,
            embed_batch=self.embed_batch if self.stateful else None,
        )
