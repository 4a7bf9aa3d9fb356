"""Stateful mode: AllenNLP's / bilm-tf's LSTM state carried from one batch to the next, per row."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from spacy_elmo import Elmo, ElmoEmbedder, batch_to_ids, load_bilm

STATEFUL = Path(__file__).parent / "data" / "allennlp_stateful"
OPTIONS, WEIGHTS = STATEFUL / "options.json", STATEFUL / "lm_weights.hdf5"


pytestmark = pytest.mark.usefixtures("one_thread")


def reference_batches() -> tuple[list[list[list[str]]], list[list[np.ndarray]]]:
    """The 10 batches of 3 sentences and bilm-tf's top layer ``(n_tokens, 32)`` for each sentence."""
    sentences = json.loads((STATEFUL / "sentences.json").read_text(encoding="utf-8"))
    expected = []
    for k in range(3):
        with h5py.File(STATEFUL / f"lm_embeddings_{k}.hdf5", "r") as f:
            expected.append([np.concatenate([f[str(i)][0], f[str(i)][1]], axis=-1) for i in range(10)])
    batches = [[sentences[k][i].split() for k in range(3)] for i in range(10)]
    return batches, [[expected[k][i] for k in range(3)] for i in range(10)]


def max_diffs(embedder: ElmoEmbedder) -> list[float]:
    batches, expected = reference_batches()
    diffs = []
    for batch, want in zip(batches, expected):
        got = embedder.embed_batch(batch)
        diffs.append(max(float(np.abs(g[-1] - w).max()) for g, w in zip(got, want)))
    return diffs


def test_stateful_embedder_matches_bilm_tf_over_all_batches():
    embedder = ElmoEmbedder(str(OPTIONS), str(WEIGHTS), stateful=True)
    diffs = max_diffs(embedder)
    assert max(diffs) <= 1e-5, diffs
    embedder.reset_states()
    assert max_diffs(embedder) == diffs  # reset: the same numbers again


def test_stateless_embedder_matches_batch_0_only():
    diffs = max_diffs(ElmoEmbedder(str(OPTIONS), str(WEIGHTS)))
    assert diffs[0] <= 1e-5
    assert min(diffs[1:]) > 1e-3  # the reference carried the state; stateless does not


def test_stateful_elmo_module_matches_bilm_tf():
    batches, expected = reference_batches()
    elmo = Elmo(str(OPTIONS), str(WEIGHTS), dropout=0.0, scalar_mix_parameters=[-1e4, -1e4, 1e4], stateful=True)
    for batch, want in zip(batches, expected):
        out = elmo(batch_to_ids(batch))["elmo_representations"][0]
        for row, w in zip(out, want):
            np.testing.assert_allclose(row[: len(w)].numpy(), w, rtol=0, atol=1e-5)


def test_stateful_embed_file_carries_the_state_from_batch_to_batch(tmp_path):
    batches, expected = reference_batches()
    source = tmp_path / "in.txt"
    source.write_text("".join(" ".join(s) + "\n" for batch in batches for s in batch), encoding="utf-8")
    embedder = ElmoEmbedder(str(OPTIONS), str(WEIGHTS), stateful=True)
    embedder.embed_file(source, tmp_path / "out.hdf5", "top", batch_size=3)
    with h5py.File(tmp_path / "out.hdf5", "r") as f:
        for i, want in enumerate(w for batch in expected for w in batch):
            np.testing.assert_allclose(f[str(i)][()], want, rtol=0, atol=1e-5)


# ---- a step-by-step reference of AllenNLP's semantics, for any batch sizes and skip connections ----


def reference_top_layers(bilm, batches: list[list[list[str]]]) -> list[list[np.ndarray]]:
    """Each row alone, token by token, carrying (state, memory) per row, layer and direction."""
    states: dict[int, list] = {}
    n_layers = len(bilm.lstm.forward_layers)
    results = []
    for batch in batches:
        out = []
        for row, sentence in enumerate(batch):
            ids = batch_to_ids([sentence])
            with_markers = bilm.add_boundaries(ids, torch.tensor([len(sentence)]))
            with torch.no_grad():
                x = bilm.encoder(with_markers[0])  # (n + 2, dim)
                carried = states.get(row) or [[None, None] for _ in range(n_layers)]
                layer_input = [x, x]
                for k in range(n_layers):
                    outs = []
                    for d, cells in enumerate((bilm.lstm.forward_layers, bilm.lstm.backward_layers)):
                        seq = layer_input[d] if d == 0 else layer_input[d].flip(0)
                        y, carried[k][d] = run_cell(cells[k], seq, carried[k][d])
                        y = y if d == 0 else y.flip(0)
                        if bilm.options.use_skip_connections and k > 0:
                            y = y + layer_input[d]
                        outs.append(y)
                    layer_input = outs
                states[row] = carried
            out.append(torch.cat(layer_input, -1)[1:-1].numpy())
        results.append(out)
    return results


def run_cell(cell, seq: torch.Tensor, carried):
    h = torch.zeros(cell.hidden_dim) if carried is None else carried[0]
    c = torch.zeros(cell.cell_dim) if carried is None else carried[1]
    outputs = []
    for x in seq:
        i, j, f, o = (cell.input_weight @ x + cell.state_weight @ h + cell.gate_bias()).chunk(4)
        c = (torch.sigmoid(i) * torch.tanh(j) + torch.sigmoid(f) * c).clamp(-cell.cell_clip, cell.cell_clip)
        h = (cell.projection @ (torch.sigmoid(o) * torch.tanh(c))).clamp(-cell.proj_clip, cell.proj_clip)
        outputs.append(h)
    return torch.stack(outputs), (h, c)


@pytest.fixture(params=[True, False], ids=["skip", "no-skip"])
def model_files(request, tmp_path):
    options = json.loads(OPTIONS.read_text())
    options["lstm"]["use_skip_connections"] = request.param
    (tmp_path / "options.json").write_text(json.dumps(options))
    return str(tmp_path / "options.json"), str(WEIGHTS)


def test_stateful_rows_follow_allennlp_across_growing_and_shrinking_batches(model_files):
    batches, _ = reference_batches()
    words = [s[:9] for batch in batches for s in batch]
    # 2 rows, then 4 (rows 2-3 start from zero), then 1 (rows 1-3 keep their states), then 4, an empty row
    plan = [words[0:2], words[2:6], words[6:7], [words[7], [], words[8], words[9]], words[10:13]]
    embedder = ElmoEmbedder(*model_files, stateful=True)
    expected = reference_top_layers(embedder.bilm, plan)
    for batch, want in zip(plan, expected):
        got = embedder.embed_batch(batch)
        for g, w in zip(got, want):
            assert g.shape[1] == w.shape[0]
            np.testing.assert_allclose(g[-1], w, rtol=0, atol=2e-5)
    # the stateless mode equals the reference with the state reset before every batch
    stateless = ElmoEmbedder(*model_files)
    for batch in plan:
        for g, w in zip(stateless.embed_batch(batch), reference_top_layers(stateless.bilm, [batch])[0]):
            np.testing.assert_allclose(g[-1], w, rtol=0, atol=2e-5)


def test_reset_states_with_a_mask_resets_only_those_rows():
    batches, _ = reference_batches()
    embedder = ElmoEmbedder(str(OPTIONS), str(WEIGHTS), stateful=True)
    fresh = ElmoEmbedder(str(OPTIONS), str(WEIGHTS), stateful=True)
    embedder.embed_batch(batches[0])
    embedder.reset_states(torch.tensor([True, False, False]))
    got = embedder.embed_batch(batches[1])
    np.testing.assert_allclose(got[0], fresh.embed_batch(batches[1])[0], rtol=0, atol=1e-6)
    fresh.reset_states()
    fresh.embed_batch(batches[0])
    for g, w in zip(got[1:], fresh.embed_batch(batches[1])[1:]):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)
    before = embedder._carry.value
    assert embedder.embed_batch([[]])[0].shape == (3, 0, 32)
    assert embedder._carry.value is before  # AllenNLP does not run a lone empty sentence
    with pytest.raises(ValueError, match=r"the mask must have shape \(3,\)"):
        embedder.reset_states(torch.tensor([True]))


def test_stateful_elmo_trains_and_the_bilm_stays_stateless():
    elmo = Elmo(str(OPTIONS), str(WEIGHTS), dropout=0.0, requires_grad=True, stateful=True)
    ids = batch_to_ids([["a", "b"], ["c"]])
    first = elmo(ids)["elmo_representations"][0]
    first.sum().backward()
    assert elmo.bilm.encoder.projection.weight.grad.abs().sum() > 0
    second = elmo(ids)["elmo_representations"][0]
    assert (second - first).abs().max() > 1e-4  # the state carried over
    bilm = load_bilm(str(OPTIONS), str(WEIGHTS))
    a, b = bilm.embed_sentences([["a", "b"]]), bilm.embed_sentences([["a", "b"]])
    np.testing.assert_array_equal(a[0], b[0])
