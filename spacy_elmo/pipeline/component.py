"""The spaCy component ``"elmo"``: runs the biLM over Docs and sets the ELMo extension attributes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional

import numpy as np
import srsly
import torch
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.util import minibatch
from spacy.vocab import Vocab
from thinc.api import get_current_ops

from ..bilm.model import BiLM
from ..bilm.model_dir import DIRECTORY_FILES, load_directory, save_directory
from ..bilm.outputs import DEFAULT_BATCH_SIZE
from ..bilm.precision import check_precision
from ..bilm.token_cache import DEFAULT_TOKEN_CACHE_SIZE
from ..hub.spec import ModelSpec
from ..util.atomic import check_output
from ..util.windows import MAX_LENGTH
from .checksums import CHECKSUMS_NAME, check_checksums, write_checksums
from .extensions import LAYERS, MIX_WEIGHTS, TOKEN_VECTORS, VECTOR, install_extensions
from .hooks import set_vector_hooks
from .sequence_cache import MB, SequenceCache, model_identity, sequence_key
from .sequences import sequence_ranges
from .settings import (
    Mix,
    check_mix_against_files,
    check_sequence_cache_mb,
    check_settings,
    component_mix_weights,
    model_spec,
)

# The one part the component serializes (the settings live in the pipeline's config): the biLM's files.
# ``exclude=["model"]`` skips it in to_disk / from_disk / to_bytes / from_bytes; other names are ignored.
MODEL_PART = "model"

DEFAULT_CONFIG = {
    "model": None,
    "options_file": None,
    "weight_file": None,
    "mix": "average",
    "max_length": MAX_LENGTH,
    "batch_size": DEFAULT_BATCH_SIZE,
    "store_layers": True,
    "set_vector_hooks": True,
    "precision": "fp32",
    "token_cache_size": DEFAULT_TOKEN_CACHE_SIZE,
    "sequence_cache_mb": 0,
}


@Language.factory(
    "elmo",
    default_config=DEFAULT_CONFIG,
    assigns=[f"doc._.{LAYERS}", f"doc._.{MIX_WEIGHTS}", f"doc._.{TOKEN_VECTORS}", f"token._.{VECTOR}"],
)
def make_elmo(
    nlp: Language,
    name: str,
    model: Optional[str],
    options_file: Optional[str],
    weight_file: Optional[str],
    mix: Mix,
    max_length: int,
    batch_size: int,
    store_layers: bool,
    set_vector_hooks: bool,
    precision: str,
    token_cache_size: int,
    sequence_cache_mb: float,
) -> "ElmoComponent":
    """ELMo contextual vectors: ``Doc._.elmo_layers``, ``Token/Span/Doc._.elmo`` and vector hooks."""
    return ElmoComponent(
        nlp.vocab,
        name,
        model=model,
        options_file=options_file,
        weight_file=weight_file,
        mix=mix,
        max_length=max_length,
        batch_size=batch_size,
        store_layers=store_layers,
        set_vector_hooks=set_vector_hooks,
        precision=precision,
        token_cache_size=token_cache_size,
        sequence_cache_mb=sequence_cache_mb,
    )


class ElmoComponent(Pipe):
    """Runs an ELMo biLM over each sentence (or window of ``max_length`` tokens) of the Docs.

    The biLM loads lazily from ``model`` (a released model's name or a model directory) or ``options_file`` /
    ``weight_file`` (paths or URLs; all ``None``: the bundled default model) the first time
    it is needed, unless ``from_disk`` / ``from_bytes`` supplied it; so the component works
    without ``initialize()`` (frozen components) and a saved pipeline never needs the original
    files, the network or the download cache.

    With ``sequence_cache_mb > 0`` the biLM's output per sequence is kept in a
    :class:`SequenceCache` of that many MiB (never saved; emptied when the model changes),
    so sequences seen again (``spacy train`` epochs) are not recomputed.
    """

    def __init__(
        self,
        vocab: Vocab,
        name: str = "elmo",
        *,
        model: Optional[str] = None,
        options_file: Optional[str] = None,
        weight_file: Optional[str] = None,
        mix: Mix = "average",
        max_length: int = 256,
        batch_size: int = DEFAULT_BATCH_SIZE,
        store_layers: bool = True,
        set_vector_hooks: bool = True,
        precision: str = "fp32",
        token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE,
        sequence_cache_mb: float = 0,
    ) -> None:
        check_settings(mix, max_length, batch_size, precision, token_cache_size)
        self.spec = model_spec(model, options_file, weight_file, mix)  # not ``self.model``: spaCy reserves that
        check_sequence_cache_mb(sequence_cache_mb)
        check_mix_against_files(mix, self.spec)
        self.vocab = vocab
        self.name = name
        self.mix = mix
        self.max_length = max_length
        self.batch_size = batch_size
        self.store_layers = store_layers
        self.set_vector_hooks = set_vector_hooks
        self.precision = check_precision(precision, "elmo: precision")
        self.token_cache_size = token_cache_size
        self.sequence_cache_mb = sequence_cache_mb
        self.sequence_cache = SequenceCache(int(sequence_cache_mb * MB)) if sequence_cache_mb > 0 else None
        self._bilm: Optional[BiLM] = None
        self._mix_weights: Optional[np.ndarray] = None
        self._pid = os.getpid()
        install_extensions()

    @property
    def bilm(self) -> BiLM:
        """The biLM, loaded from the configured files on first access."""
        return self.load()

    def load(self) -> BiLM:
        """Load the biLM from ``model`` or ``options_file`` / ``weight_file`` unless it is loaded already."""
        if self._bilm is None:
            self._set_bilm(self._load(self.spec))
        assert self._bilm is not None
        return self._bilm

    @property
    def n_layers(self) -> int:
        return self.bilm.n_layers

    @property
    def dim(self) -> int:
        return self.bilm.dim

    @property
    def mix_weights(self) -> np.ndarray:
        """The per-layer weights ``(n_layers,)`` of the mixed vectors."""
        self.load()
        assert self._mix_weights is not None  # set with the biLM
        return self._mix_weights

    def _load(self, spec: ModelSpec) -> BiLM:
        return spec.load(_device(), token_cache_size=self.token_cache_size)

    def _set_bilm(self, bilm: BiLM) -> None:
        self._mix_weights = component_mix_weights(self.mix, bilm.n_layers)
        self._bilm = bilm
        if self.sequence_cache is not None:
            self.sequence_cache.clear()

    def initialize(
        self, get_examples: Optional[Callable[[], Iterable]] = None, *, nlp: Optional[Language] = None
    ) -> None:
        """Load the biLM now (a missing or bad file fails here, naming the path)."""
        self.load()

    def __call__(self, doc: Doc) -> Doc:
        self.set_annotations([doc], self.predict([doc]))
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        """Process Docs in groups of ``batch_size`` Docs (spaCy passes ``nlp.pipe``'s batch size).

        Within a group the sequences of all Docs are sorted by length and fed to the
        biLM ``self.batch_size`` sequences at a time.
        """
        error_handler = self.get_error_handler()
        for docs in minibatch(stream, size=batch_size or self.batch_size):
            try:
                self.set_annotations(docs, self.predict(docs))
                yield from docs
            except Exception as error:
                error_handler(self.name, self, docs, error)

    def predict(self, docs: List[Doc]) -> List[np.ndarray]:
        """One float32 array ``(n_layers, len(doc), dim)`` per Doc."""
        bilm = self.bilm
        self._limit_threads_after_fork()
        ranges = [sequence_ranges(doc, self.max_length) for doc in docs]
        sequences: List[List[str]] = []
        for doc, doc_ranges in zip(docs, ranges):
            words = [token.text for token in doc]
            sequences.extend(words[start:end] for start, end in doc_ranges)
        outputs = iter(self._embed(bilm, sequences))
        layers = []
        for doc_ranges in ranges:
            parts = [next(outputs) for _ in doc_ranges]
            if not parts:
                layers.append(np.zeros((bilm.n_layers, 0, bilm.dim), dtype=np.float32))
            else:
                layers.append(parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1))
        return layers

    def _embed(self, bilm: BiLM, sequences: List[List[str]]) -> List[np.ndarray]:
        """The biLM's ``(n_layers, len(sequence), dim)`` per sequence, through the cache when there is one.

        The cache serves only a biLM in eval mode (no dropout), keyed on the precision and the
        token texts, and bound to the model's identity (weights, device).
        """

        def embed(indices: List[int]) -> List[np.ndarray]:
            batch = [sequences[i] for i in indices]
            return bilm.embed_sentences(batch, batch_size=self.batch_size, precision=self.precision)

        if self.sequence_cache is None or bilm.training:
            return embed(list(range(len(sequences))))
        self.sequence_cache.bind(model_identity(bilm))
        keys = [sequence_key(self.precision, words) for words in sequences]
        return self.sequence_cache.get_or_compute(keys, embed)

    def set_annotations(self, docs: Iterable[Doc], layers: List[np.ndarray]) -> None:
        weights = self.mix_weights
        for doc, doc_layers in zip(docs, layers):
            if self.store_layers:
                doc._.set(LAYERS, doc_layers)
                doc._.set(MIX_WEIGHTS, weights.copy())
                doc._.set(TOKEN_VECTORS, None)
            else:
                doc._.set(LAYERS, None)
                doc._.set(MIX_WEIGHTS, None)
                doc._.set(TOKEN_VECTORS, np.tensordot(weights, doc_layers, axes=1))
            if self.set_vector_hooks:
                set_vector_hooks(doc)

    def _limit_threads_after_fork(self) -> None:
        """In a process other than the creating one (``nlp.pipe(n_process>1)``) use one torch thread.

        A forked child that uses the parent's OpenMP thread pool can hang.
        """
        pid = os.getpid()
        if pid != self._pid:
            torch.set_num_threads(1)
            self._pid = pid

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = tuple()) -> None:
        """Write the biLM's files into ``path`` in its own format (bilm-tf: ``options.json`` + ``weights.hdf5``
        (+ ``vocab.txt``); ELMoForManyLangs: its directory layout), unless ``"model"`` is excluded.

        The files are checked first (none a directory, ``path`` writable: one ``ValueError`` naming the problem);
        saving into the directory the biLM was loaded from rewrites the same values, atomically."""
        path = Path(path)
        if MODEL_PART in exclude:
            path.mkdir(parents=True, exist_ok=True)
            return
        for name in (*DIRECTORY_FILES, CHECKSUMS_NAME):
            check_output(path / name)
        save_directory(self.bilm, path)
        write_checksums(path, DIRECTORY_FILES)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = tuple()) -> "ElmoComponent":
        """Load the biLM saved in ``path`` (its files checked against the checksums ``to_disk`` recorded); with
        ``"model"`` excluded keep the configured (lazily loaded) one."""
        if MODEL_PART in exclude:
            return self
        path = Path(path)
        check_checksums(path)
        self._set_bilm(load_directory(path, _device(), self.token_cache_size))
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        """The model files' bytes, msgpack-encoded (none with ``"model"`` excluded)."""
        if MODEL_PART in exclude:
            return srsly.msgpack_dumps({})
        with tempfile.TemporaryDirectory() as tmp:
            self.to_disk(tmp)
            names = (*DIRECTORY_FILES, CHECKSUMS_NAME)
            files = {name: (Path(tmp) / name).read_bytes() for name in names if (Path(tmp) / name).is_file()}
        return srsly.msgpack_dumps({"files": files})

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "ElmoComponent":
        """The biLM from :meth:`to_bytes`' data; kept as configured when ``"model"`` is excluded or not in the data."""
        msg = srsly.msgpack_loads(bytes_data)
        if MODEL_PART in exclude or "files" not in msg:
            return self
        files = msg["files"]
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                if name not in DIRECTORY_FILES and name != CHECKSUMS_NAME:
                    raise ValueError(f"elmo: unexpected file {name!r} in the serialized component")
                (Path(tmp) / name).write_bytes(data)
            return self.from_disk(tmp)


def _device() -> str:
    """``cuda:N`` when spaCy runs on a GPU (``spacy.require_gpu``) and torch sees it, else ``cpu``."""
    ops = get_current_ops()
    if ops.name == "cupy" and torch.cuda.is_available():
        return f"cuda:{getattr(ops, 'device_id', 0)}"
    return "cpu"
