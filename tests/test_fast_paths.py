"""The biLM's execution paths agree: autograd (training), plain no-grad, oneDNN inference on CPU."""

from __future__ import annotations

import copy
import pickle
import random

import pytest
import torch

from spacy_elmo.bilm import BiLM, BiLMOptions, batch_char_ids, kernels, onednn

OPTIONS = BiLMOptions(
    filters=((1, 8), (2, 8), (3, 16)), n_highway=2, char_dim=8, projection_dim=16, lstm_dim=32, n_layers=2
)
needs_onednn = pytest.mark.skipif(not onednn.available(), reason="PyTorch built without oneDNN")
needs_onednn_bf16 = pytest.mark.skipif(
    not onednn.supports(torch.bfloat16), reason=f"no oneDNN bf16 kernels: {onednn.why_not(torch.bfloat16)}"
)


@pytest.fixture(scope="module")
def bilm() -> BiLM:
    torch.manual_seed(0)
    return BiLM(OPTIONS).eval()


def _sentences(n: int, max_len: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    word = lambda: "".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 9)))  # noqa: E731
    return [[word() for _ in range(rng.randint(0, max_len))] for _ in range(n)]


def _run(bilm: BiLM, ids: torch.Tensor, path: str, bf16: bool = False) -> torch.Tensor:
    grad = torch.enable_grad() if path == "autograd" else torch.inference_mode()
    with kernels.forced("onednn" if path == "onednn" else "plain"), grad:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return bilm(ids)[0].detach().float()


# batches: small; > 64 sequences (padded per-step rows); > 256 positions (several row blocks); one long sequence
BATCHES = [(9, 12), (100, 40), (1, 300)]


@pytest.mark.parametrize("n, max_len", BATCHES)
def test_plain_paths_agree(bilm, n, max_len):
    ids = batch_char_ids(_sentences(n, max_len, seed=n))
    reference = _run(bilm, ids, "autograd")
    assert (_run(bilm, ids, "plain") - reference).abs().max() < 1e-5
    bf16 = _run(bilm, ids, "plain", bf16=True)
    assert 0 < (bf16 - reference).abs().max() < 0.05 * reference.abs().max()


@pytest.mark.parametrize("n, max_len", BATCHES)
@needs_onednn
def test_onednn_fp32_agrees(bilm, n, max_len):
    ids = batch_char_ids(_sentences(n, max_len, seed=n))
    assert (_run(bilm, ids, "onednn") - _run(bilm, ids, "autograd")).abs().max() < 1e-5


@pytest.mark.parametrize("n, max_len", BATCHES)
@needs_onednn_bf16
def test_onednn_bf16_is_close(bilm, n, max_len):
    ids = batch_char_ids(_sentences(n, max_len, seed=n))
    reference = _run(bilm, ids, "autograd")
    bf16 = _run(bilm, ids, "onednn", bf16=True)
    assert 0 < (bf16 - reference).abs().max() < 0.05 * reference.abs().max()


def test_training_path_gives_gradients_with_dropout():
    torch.manual_seed(0)
    model = BiLM(OPTIONS, dropout=0.2).train()
    sentences = _sentences(6, 10, seed=1)
    ids = batch_char_ids(sentences)
    layers, _ = model(ids)
    layers.sum().backward()
    for cell in (*model.lstm.forward_layers, *model.lstm.backward_layers):
        for param in (cell.input_weight, cell.state_weight, cell.bias, cell.projection):
            assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


def test_batched_gradients_equal_the_sum_over_sentences():
    # the packed layout (per-step splits of the input products, shared step sizes) must route every
    # sentence's gradient to the same parameters as when the sentence runs alone
    torch.manual_seed(0)
    model = BiLM(OPTIONS).double().train()
    sentences = _sentences(7, 9, seed=3)
    sentences[2] = []

    def gradients(batch: list[list[str]]) -> list[torch.Tensor]:
        model.zero_grad()
        layers, _ = model(batch_char_ids(batch))
        (layers * torch.linspace(-1, 1, layers.shape[-1], dtype=layers.dtype)).sum().backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]

    together = gradients(sentences)
    alone = [gradients([s]) for s in sentences if s]
    for k, grad in enumerate(together):
        expected = sum(g[k] for g in alone)
        assert (grad - expected).abs().max() < 1e-10 * max(1.0, expected.abs().max().item())
    assert max(g.abs().max().item() for g in together) > 1e-3


@needs_onednn
def test_packed_weights_follow_parameter_updates(bilm):
    model = copy.deepcopy(bilm)  # also: the packed-weight cache does not break deepcopy / pickle
    pickle.dumps(model)
    ids = batch_char_ids(_sentences(4, 8, seed=2))
    before = _run(model, ids, "onednn")
    with torch.no_grad():
        model.lstm.forward_layers[1].state_weight.mul_(1.5)
        model.encoder.highways[0].carry.bias.add_(0.5)
    after = _run(model, ids, "onednn")
    assert (after - _run(model, ids, "autograd")).abs().max() < 1e-5
    assert (after - before).abs().max() > 1e-3
