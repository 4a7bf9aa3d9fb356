"""Thinc architectures: ``spacy-elmo.ElmoListener.v1`` for the ``tok2vec`` slot of ``ner`` / ``textcat``.

The listener reads the biLM layers an upstream ``elmo`` component stored in ``Doc._.elmo_layers``
(float32 ``(n_layers, len(doc), elmo_dim)``), mixes them with the task-specific scalar mix of
Peters et al. (2018), eq. 1, ``gamma * sum_k softmax(s)_k * h_k``, learned together with the
downstream component, optionally concatenates a regular spaCy ``tok2vec`` (embedding + encoder),
and projects the concatenation to ``width`` with a maxout layer.

The biLM itself gets no gradient (as in the paper): the ``elmo`` component is frozen and listed in
``[training] annotating_components``, so the listener only needs the annotations on the Doc. Docs the
``elmo`` component has not annotated (``nlp.initialize()`` runs on raw docs) contribute zeros.
``n_layers`` / ``elmo_dim`` are read from the first annotated docs when not configured.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, cast

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, glorot_uniform_init
from thinc.types import Floats1d, Floats2d, Floats3d

from .extensions import LAYERS, TOKEN_VECTORS

MIX_NAME = "elmo_scalar_mix"
LISTENER_NAME = "elmo_listener"


@registry.architectures("spacy-elmo.ElmoListener.v1")
def elmo_listener_v1(
    width: int,
    tok2vec: Optional[Model[List[Doc], List[Floats2d]]] = None,
    n_layers: Optional[int] = None,
    elmo_dim: Optional[int] = None,
    dropout: float = 0.0,
    maxout_pieces: int = 2,
) -> Model[List[Doc], List[Floats2d]]:
    """Scalar-mixed ELMo layers (+ an optional ``tok2vec``), projected to ``width`` per token.

    :param width: output width ``nO``; each doc gives a ``(len(doc), width)`` array.
    :param tok2vec: a regular spaCy embedding + encoder whose output is concatenated with the ELMo mix.
    :param n_layers: the biLM's number of layers; None reads it from the first annotated docs (at initialize,
        or at the first annotated batch).
    :param elmo_dim: the biLM's layer width; None reads it from the first annotated docs.
    :param dropout: dropout rate on the mixed ELMo vectors during training (independent of
        ``[training] dropout``, which applies to the other layers).
    :param maxout_pieces: pieces of the output maxout; 1 gives a linear projection.
    """
    mix = elmo_scalar_mix(n_layers=n_layers, elmo_dim=elmo_dim, dropout=dropout)
    layers: List[Model] = [mix] if tok2vec is None else [mix, tok2vec]
    return Model(
        LISTENER_NAME,
        _listener_forward,
        init=_listener_init,
        layers=layers,
        dims={"nO": width, "nP": maxout_pieces, "nE": elmo_dim, "nT": None},
        params={"W_e": None, "W_t": None, "b": None},
    )


def elmo_scalar_mix(
    n_layers: Optional[int] = None, elmo_dim: Optional[int] = None, dropout: float = 0.0
) -> Model[List[Doc], Floats2d]:
    """``gamma * sum_k softmax(s)_k * h_k`` for the tokens of all docs, concatenated: ``(n_tokens, elmo_dim)``.

    Params: ``s`` ``(n_layers,)`` (zeros: equal weights at the start), ``gamma`` ``(1,)`` (one).
    Until the dims are known (no annotated doc seen and none configured) the output is ``(n_tokens, 0)``.
    """
    return Model(
        MIX_NAME,
        _mix_forward,
        init=_mix_init,
        dims={"n_layers": n_layers, "nO": elmo_dim},
        params={"s": None, "gamma": None},
        attrs={"elmo_dropout": dropout},
    )


def get_elmo_layers(doc: Doc) -> Optional[numpy.ndarray]:
    """The ``(n_layers, len(doc), elmo_dim)`` layers stored on ``doc`` by an ``elmo`` component, or None.

    Raises ``ValueError`` for a doc that carries only mixed vectors (``store_layers = false``).
    """
    if not Doc.has_extension(LAYERS):
        return None
    layers = doc._.get(LAYERS)
    if layers is None and Doc.has_extension(TOKEN_VECTORS):
        if doc._.get(TOKEN_VECTORS) is not None:
            raise ValueError(
                "ElmoListener needs Doc._.elmo_layers, but the elmo component only stored mixed vectors: "
                "set store_layers = true in [components.elmo]"
            )
    return layers


def get_scalar_mix_weights(model: Model) -> Optional[Tuple[numpy.ndarray, float]]:
    """The learned ``(softmax(s) (n_layers,), gamma)`` of the first scalar mix inside ``model``, or None."""
    for node in model.walk():
        if node.name == MIX_NAME and node.has_param("s"):
            s = model.ops.to_numpy(node.get_param("s"))
            gamma = float(model.ops.to_numpy(node.get_param("gamma"))[0])
            return _softmax(s), gamma
    return None


def _softmax(s: numpy.ndarray) -> numpy.ndarray:
    """Softmax over a 1-d array ``(n,)``."""
    e = numpy.exp(s - s.max())
    return e / e.sum()


def _mix_init(model: Model, X: Optional[List[Doc]] = None, Y: Any = None) -> None:
    _allocate_mix(model, X or [])


def _set_mix_dims(model: Model, layers: numpy.ndarray) -> None:
    """Take ``n_layers`` / ``nO`` from one doc's layers ``(n_layers, n_tokens, elmo_dim)``, or check them."""
    if layers.ndim != 3:
        raise ValueError(f"Doc._.elmo_layers must be (n_layers, n_tokens, dim), found shape {layers.shape}")
    for name, setting, value in (("n_layers", "n_layers", layers.shape[0]), ("nO", "elmo_dim", layers.shape[2])):
        if not model.has_dim(name):
            model.set_dim(name, int(value))
        elif model.get_dim(name) != value:
            raise ValueError(
                f"ElmoListener is set up for {setting}={model.get_dim(name)}, but Doc._.elmo_layers has shape "
                f"{layers.shape} (n_layers, n_tokens, elmo_dim): set {setting} = {value} or null"
            )


def _allocate_mix(model: Model, docs: List[Doc]) -> None:
    """Create ``s`` and ``gamma`` once the sizes are known (set in the config, or read from the first annotated doc)."""
    for doc in docs:
        layers = get_elmo_layers(doc)
        if layers is not None:
            _set_mix_dims(model, layers)
            break
    if model.has_dim("n_layers") and model.has_dim("nO") and not model.has_param("s"):
        model.set_param("s", model.ops.alloc1f(model.get_dim("n_layers")))
        model.set_param("gamma", model.ops.asarray1f([1.0]))


def _stack_layers(model: Model, docs: List[Doc]) -> Floats3d:
    """The docs' layers concatenated over tokens ``(n_layers, n_tokens, elmo_dim)``; zeros for unannotated docs."""
    n_layers, dim = model.get_dim("n_layers"), model.get_dim("nO")
    parts = []
    for doc in docs:
        layers = get_elmo_layers(doc)
        if layers is None:
            parts.append(numpy.zeros((n_layers, len(doc), dim), dtype="float32"))
            continue
        if layers.shape != (n_layers, len(doc), dim):
            raise ValueError(
                f"Doc._.elmo_layers has shape {layers.shape}, expected {(n_layers, len(doc), dim)} "
                f"(n_layers, len(doc), elmo_dim): the listener was set up for another biLM"
            )
        parts.append(layers)
    stacked = numpy.concatenate(parts, axis=1) if parts else numpy.zeros((n_layers, 0, dim), dtype="float32")
    return model.ops.asarray3f(cast(Floats3d, stacked))


def _mix_forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[Floats2d, Callable]:
    if not model.has_param("s"):
        _allocate_mix(model, docs)
    n_tokens = sum(len(doc) for doc in docs)
    if not model.has_param("s"):
        return model.ops.alloc2f(n_tokens, 0), lambda dY: []
    xp = model.ops.xp
    H = _stack_layers(model, docs)
    weights = model.ops.asarray1f(cast(Floats1d, _softmax(model.ops.to_numpy(model.get_param("s")))))
    gamma = model.get_param("gamma")[0]
    mixed = xp.tensordot(weights, H, axes=1)
    Y = gamma * mixed
    rate = model.attrs["elmo_dropout"]
    mask = model.ops.get_dropout_mask(Y.shape, rate) if is_train and rate > 0 else None
    if mask is not None:
        Y = Y * mask

    def backprop(dY: Floats2d) -> List[Doc]:
        if mask is not None:
            dY = dY * mask
        d_gamma = (dY * mixed).sum()
        d_weights = gamma * xp.tensordot(H, dY, axes=([1, 2], [0, 1]))
        d_s = weights * (d_weights - (weights * d_weights).sum())
        model.inc_grad("s", d_s.astype("float32"))
        model.inc_grad("gamma", model.ops.asarray1f([d_gamma]))
        return []

    return Y, backprop


def _listener_init(model: Model, X: Optional[List[Doc]] = None, Y: Any = None) -> None:
    mix = model.layers[0]
    mix.initialize(X=X)
    n_out = model.get_dim("nO") * model.get_dim("nP")
    if len(model.layers) > 1:
        tok2vec = model.layers[1]
        tok2vec.initialize(X=X)
        model.set_dim("nT", tok2vec.get_dim("nO"))
        model.set_param("W_t", glorot_uniform_init(model.ops, (n_out, model.get_dim("nT"))))
    if mix.has_dim("nO"):
        _allocate_elmo_projection(model, mix.get_dim("nO"))
    model.set_param("b", model.ops.alloc1f(n_out))


def _allocate_elmo_projection(model: Model, elmo_dim: int) -> None:
    if model.has_dim("nE") and model.get_dim("nE") != elmo_dim:
        raise ValueError(f"ElmoListener: elmo_dim is {model.get_dim('nE')} but the docs carry {elmo_dim}")
    if not model.has_param("W_e"):
        model.set_dim("nE", elmo_dim)
        n_out = model.get_dim("nO") * model.get_dim("nP")
        model.set_param("W_e", glorot_uniform_init(model.ops, (n_out, elmo_dim)))


def _listener_forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    ops = model.ops
    n_o, n_p = model.get_dim("nO"), model.get_dim("nP")
    lengths = [len(doc) for doc in docs]
    n_tokens = sum(lengths)
    X_e, backprop_mix = model.layers[0](docs, is_train)
    use_elmo = X_e.shape[1] > 0
    if use_elmo:
        _allocate_elmo_projection(model, X_e.shape[1])
    Z = ops.alloc2f(n_tokens, n_o * n_p) + model.get_param("b")
    if use_elmo:
        Z += ops.gemm(X_e, _param2d(model, "W_e"), trans2=True)
    backprop_tok2vec = None
    if len(model.layers) > 1:
        X_t_list, backprop_tok2vec = model.layers[1](docs, is_train)
        X_t = ops.flatten(X_t_list) if X_t_list else ops.alloc2f(0, model.get_dim("nT"))
        Z += ops.gemm(X_t, _param2d(model, "W_t"), trans2=True)
    best, which = ops.maxout(ops.reshape3f(Z, n_tokens, n_o, n_p))
    outputs = list(ops.unflatten(best, ops.asarray1i(lengths))) if docs else []

    def backprop(dYs: List[Floats2d]) -> List[Doc]:
        if not docs:
            return []
        dY = ops.flatten(dYs)
        dZ = ops.reshape2f(ops.backprop_maxout(dY, which, n_p), n_tokens, n_o * n_p)
        model.inc_grad("b", dZ.sum(axis=0))
        if use_elmo:
            model.inc_grad("W_e", ops.gemm(dZ, X_e, trans1=True))
            backprop_mix(ops.gemm(dZ, _param2d(model, "W_e")))
        if backprop_tok2vec is not None:
            model.inc_grad("W_t", ops.gemm(dZ, X_t, trans1=True))
            dX_t = ops.gemm(dZ, _param2d(model, "W_t"))
            backprop_tok2vec(list(ops.unflatten(dX_t, ops.asarray1i(lengths))))
        return []

    return outputs, backprop


def _param2d(model: Model, name: str) -> Floats2d:
    """A weight matrix of the listener (``W_e`` / ``W_t``: ``(nO * nP, n_in)``)."""
    return cast(Floats2d, model.get_param(name))
