"""Read and write bilm-tf / AllenNLP ``weights.hdf5`` files.

Every dataset of the released format is mapped onto one parameter of
:class:`~spacy_elmo.bilm.model.BiLM` (the LSTM's ``W_0`` onto two: its input and
recurrent halves), together with the transposition between TensorFlow's
``x @ W`` layout and PyTorch's ``W @ x``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import h5py
import numpy as np
import torch

from ..util.hdf5 import atomic_hdf5

if TYPE_CHECKING:
    from .model import BiLM


@dataclass
class Dataset:
    """One hdf5 dataset: how to build it from parameters and how to load it back."""

    path: str
    shape: tuple[int, ...]
    params: tuple[torch.Tensor, ...]
    to_file: Callable[..., np.ndarray]
    to_params: Callable[[np.ndarray], tuple[np.ndarray, ...]]


def _transposed(path: str, param: torch.Tensor) -> Dataset:
    return Dataset(path, tuple(param.shape[::-1]), (param,), lambda w: w.T, lambda a: (a.T,))


def _plain(path: str, param: torch.Tensor) -> Dataset:
    return Dataset(path, tuple(param.shape), (param,), lambda w: w, lambda a: (a,))


def datasets(model: "BiLM") -> Iterator[Dataset]:
    """The datasets of ``model``'s weight file, in the released files' layout."""
    encoder = model.encoder
    embed = encoder.char_embedding.weight
    yield Dataset(
        "char_embed",
        (embed.shape[0] - 1, embed.shape[1]),
        (embed,),
        lambda w: w[1:],
        lambda a: (np.concatenate([np.zeros((1, a.shape[1]), a.dtype), a]),),
    )
    for i, conv in enumerate(encoder.convs):
        num, char_dim, width = conv.weight.shape
        yield Dataset(
            f"CNN/W_cnn_{i}",
            (1, width, char_dim, num),
            (conv.weight,),
            lambda w: w.transpose(2, 1, 0)[None],
            lambda a: (a[0].transpose(2, 1, 0),),
        )
        assert conv.bias is not None  # built with bias=True
        yield _plain(f"CNN/b_cnn_{i}", conv.bias)
    for k, highway in enumerate(encoder.highways):
        for name, layer in (("transform", highway.transform), ("carry", highway.carry)):
            yield _transposed(f"CNN_high_{k}/W_{name}", layer.weight)
            yield _plain(f"CNN_high_{k}/b_{name}", layer.bias)
    yield _transposed("CNN_proj/W_proj", encoder.projection.weight)
    yield _plain("CNN_proj/b_proj", encoder.projection.bias)
    for direction, layers in enumerate((model.lstm.forward_layers, model.lstm.backward_layers)):
        for k, cell in enumerate(layers):
            prefix = f"RNN_{direction}/RNN/MultiRNNCell/Cell{k}/LSTMCell"
            yield Dataset(
                f"{prefix}/W_0",
                (cell.input_dim + cell.hidden_dim, 4 * cell.cell_dim),
                (cell.input_weight, cell.state_weight),
                lambda w_in, w_state: np.concatenate([w_in, w_state], axis=1).T,
                partial(_split_w0, n=cell.input_dim),
            )
            yield _plain(f"{prefix}/B", cell.bias)
            yield _transposed(f"{prefix}/W_P_0", cell.projection)


def _split_w0(a: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """bilm-tf's ``W_0`` ``(input_dim + hidden_dim, 4 c)`` -> the input and recurrent weights ``(4 c, ...)``."""
    return a[:n].T, a[n:].T


def _extra_groups(model: "BiLM") -> list[str]:
    """Dataset paths that would mean the file holds a larger network than the options describe."""
    options = model.options
    return [
        f"CNN/W_cnn_{len(options.filters)}",
        f"CNN_high_{options.n_highway}",
        f"RNN_0/RNN/MultiRNNCell/Cell{options.n_layers}",
    ]


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def check_weights(model: "BiLM", weight_file: str | os.PathLike[str], options_source: str = "the options") -> None:
    """Check that ``weight_file`` holds every dataset of ``model`` with its shape and a float dtype, and nothing
    of a larger network, from the file's metadata alone (nothing is read): ``model`` may live on the ``meta``
    device, so a file and options that disagree are refused before the real biLM is allocated. ``ValueError``
    names any mismatch."""
    with _open(weight_file) as fin:
        _check(fin, model, Path(weight_file), options_source)


def load_weights(model: "BiLM", weight_file: str | os.PathLike[str], options_source: str = "the options") -> None:
    """Copy every dataset of ``weight_file`` into ``model``; ``ValueError`` names any mismatch (checked from the
    metadata before any dataset is read, so a dataset declaring a huge shape allocates nothing)."""
    with _open(weight_file) as fin:
        _check(fin, model, Path(weight_file), options_source)
        for ds in datasets(model):
            array = fin[ds.path][...].reshape(ds.shape)
            with torch.no_grad():
                for param, value in zip(ds.params, ds.to_params(array.astype(np.float32))):
                    param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _open(weight_file: str | os.PathLike[str]) -> h5py.File:
    path = Path(weight_file)
    if not path.is_file():
        raise ValueError(f"ELMo weight file not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 weight file ({err})") from None


def _check(fin: h5py.File, model: "BiLM", weight_file: Path, options_source: str) -> None:
    for path in _extra_groups(model):
        if path in fin:
            raise ValueError(
                f"{weight_file}: has '{path}', which {options_source} do not describe "
                f"(filters={len(model.options.filters)}, n_highway={model.options.n_highway}, "
                f"n_layers={model.options.n_layers}): options and weights do not match"
            )
    for ds in datasets(model):
        if ds.path not in fin or not isinstance(fin[ds.path], h5py.Dataset):
            raise ValueError(f"{weight_file}: dataset '{ds.path}' is missing (expected shape {ds.shape})")
        dataset = fin[ds.path]
        if dataset.shape != ds.shape and _squeezed(dataset.shape) != _squeezed(ds.shape):
            raise ValueError(
                f"{weight_file}: dataset '{ds.path}' has shape {dataset.shape}, expected {ds.shape} "
                f"from {options_source}"
            )
        if not np.issubdtype(dataset.dtype, np.floating):
            raise ValueError(f"{weight_file}: dataset '{ds.path}' has dtype {dataset.dtype}, expected float")


def save_weights(model: "BiLM", weight_file: str | Path) -> None:
    """Write ``model``'s parameters as a bilm-tf ``weights.hdf5`` (atomically)."""
    with atomic_hdf5(weight_file) as output:
        for ds in datasets(model):
            values = [p.detach().float().cpu().numpy() for p in ds.params]
            output.file.create_dataset(ds.path, data=np.ascontiguousarray(ds.to_file(*values), dtype=np.float32))
            output.check()
