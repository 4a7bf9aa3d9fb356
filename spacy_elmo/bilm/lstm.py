"""The biLM's recurrent part: LSTM cells with a projected (and clipped) state, stacked in both directions.

Gates are kept in TensorFlow's order (input, candidate, forget, output) so that
bilm-tf's ``W_0`` / ``B`` datasets map onto the parameters without permutation;
TensorFlow's constant forget bias of +1.0 is added at run time, not stored.

Sequences run in a time-major *packed* layout (as in ``torch.nn.utils.rnn.PackedSequence``):
with the batch sorted by length, longest first, step ``t`` holds the ``n_t`` sequences
longer than ``t`` as rows ``offset_t .. offset_t + n_t`` of one ``(n_positions, dim)``
matrix. Padding is never computed, the per-step slices are contiguous, and the backward
direction is the same layout with every sequence read back to front, so both directions
share the step sizes. Consequently the result for a sentence does not depend on what else
is in the batch.

Three execution paths compute the same function:

- with autograd (training, CPU or CUDA): both directions in one batched product per step
  (``torch.bmm`` on the stacked ``(2, ...)`` weights), functional gate math;
- without autograd on CPU, when this CPU runs the dtype through oneDNN (see :mod:`.kernels`): the
  weights pre-packed once for oneDNN per dtype (see :mod:`.onednn`; cached until a parameter
  changes), the input-to-hidden products of all steps in a few large products, only the
  recurrent product in the loop, fused there with the addition of the input gates, the
  projection fused with its clip, in-place gate math with ``tanh`` written through
  ``sigmoid`` (``tanh(x) = 2 sigmoid(2x) - 1``, the factors 2 folded exactly into the packed
  weights), and the cell state kept in float32 also under bfloat16 autocast;
- without autograd elsewhere (CUDA, or CPU without oneDNN): the batched path of training,
  in place into preallocated buffers.

Stateful use (:meth:`BiLstmStack.forward_stateful`, AllenNLP's state carried across batches)
starts every row from a given state and returns the final states; it always takes the batched
path (with or without autograd), the oneDNN path is stateless only.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence, Tuple

import torch
from torch import nn

from . import int8, kernels, onednn
from .modules import ModuleList

FORGET_BIAS = 1.0


class ProjectedLstm(nn.Module):
    """The parameters of one direction of one layer (run by :class:`BiLstmStack`).

    ``forward`` runs this direction alone: ``(batch, time, input_dim) -> (batch, time, hidden_dim)``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        cell_dim: int,
        *,
        cell_clip: float | None = None,
        proj_clip: float | None = None,
    ) -> None:
        super().__init__()
        self.input_dim, self.hidden_dim, self.cell_dim = input_dim, hidden_dim, cell_dim
        self.cell_clip, self.proj_clip = cell_clip, proj_clip
        self.input_weight = nn.Parameter(torch.empty(4 * cell_dim, input_dim))
        self.state_weight = nn.Parameter(torch.empty(4 * cell_dim, hidden_dim))
        self.bias = nn.Parameter(torch.zeros(4 * cell_dim))
        self.projection = nn.Parameter(torch.empty(hidden_dim, cell_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in (self.input_weight, self.state_weight, self.projection):
            nn.init.xavier_uniform_(weight)
        nn.init.zeros_(self.bias)

    def gate_bias(self) -> torch.Tensor:
        """The bias with TensorFlow's forget bias added (differentiable)."""
        c = self.cell_dim
        offset = torch.zeros_like(self.bias)
        offset[2 * c : 3 * c] = FORGET_BIAS
        return self.bias + offset

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``inputs`` ``(batch, time, input_dim)`` sorted by ``lengths`` (descending)."""
        plan = Plan.build(lengths, inputs.shape[1], inputs.device)
        packed = inputs.reshape(-1, inputs.shape[-1])[plan.forward_index]
        stacked = [(self.input_weight, self.state_weight, self.gate_bias(), self.projection)]
        out = _run_batched(packed.unsqueeze(0), stacked, plan, self.cell_clip, self.proj_clip)[0][0]
        return plan.unpack(out, plan.forward_index, inputs.shape[0], inputs.shape[1])


class Plan(NamedTuple):
    """The packed layout of a length-sorted batch."""

    steps: list[tuple[int, int]]  # (offset, n) per time step
    forward_index: torch.Tensor  # packed row -> flat (batch * time) position, read forwards
    backward_index: torch.Tensor  # the same, each sequence read back to front

    @staticmethod
    def build(lengths: torch.Tensor, time: int, device: torch.device) -> "Plan":
        lengths = lengths.cpu()
        if len(lengths) > 1 and bool((lengths[1:] > lengths[:-1]).any()):
            raise ValueError("sequences must be sorted by length, longest first")
        t = torch.arange(time)
        valid = t.unsqueeze(1) < lengths.unsqueeze(0)  # (time, batch)
        counts = valid.sum(1).tolist()
        steps, offset = [], 0
        for n in counts:
            if n == 0:
                break
            steps.append((offset, n))
            offset += n
        step_of, seq_of = valid.nonzero(as_tuple=True)  # time-major order
        forward_index = seq_of * time + step_of
        backward_index = seq_of * time + (lengths[seq_of] - 1 - step_of)
        return Plan(steps, forward_index.to(device), backward_index.to(device))

    @staticmethod
    def unpack(packed: torch.Tensor, index: torch.Tensor, batch: int, time: int) -> torch.Tensor:
        """Rows of a packed ``(n_positions, dim)`` matrix back to ``(batch, time, dim)``, zero padding."""
        out = packed.new_zeros(batch * time, packed.shape[-1])
        out[index] = packed
        return out.view(batch, time, -1)


class LstmState(NamedTuple):
    """The recurrent state of each row of a batch: the projected state and the cell memory.

    For a stack: ``state`` ``(n_layers, 2, batch, hidden_dim)``, ``memory`` ``(n_layers, 2, batch,
    cell_dim)`` (direction 0 forward, 1 backward); for one layer the same without the first axis.
    A forward direction's final state is the one after a row's last token, a backward
    direction's the one after its first token (AllenNLP's ``final_state``).
    """

    state: torch.Tensor
    memory: torch.Tensor


Weights = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # input, state, bias, projection


def _run_batched(
    inputs: torch.Tensor,
    weights: Sequence[Weights],
    plan: Plan,
    cell_clip: float | None,
    proj_clip: float | None,
    initial: LstmState | None = None,
) -> tuple[torch.Tensor, LstmState | None]:
    """``len(weights)`` directions at once: packed ``(d, n_positions, input_dim) -> (d, n_positions, hidden)``.

    Each direction's ``(input_weight, state_weight, bias, projection)``; the products are
    batched over directions. Functional under autograd, in place into buffers without it.
    With ``initial`` (``(d, batch, ...)``, rows in the batch's order) every row starts from its
    state instead of zero, and the final states are returned too (else ``None``).
    """
    w_in = torch.stack([w[0] for w in weights]).transpose(1, 2)  # (d, in, 4c)
    w_state = torch.stack([w[1] for w in weights]).transpose(1, 2)  # (d, h, 4c)
    bias = torch.stack([w[2] for w in weights]).unsqueeze(1)  # (d, 1, 4c)
    w_proj = torch.stack([w[3] for w in weights]).transpose(1, 2)  # (d, c, h)
    directions, positions, _ = inputs.shape
    if positions == 0:
        return inputs.new_zeros(directions, 0, w_proj.shape[2]), initial
    input_gates = torch.baddbmm(bias, inputs, w_in)  # all steps' input products at once
    # under autocast: the loop's weights in the compute dtype once, not cast again at every step
    w_state, w_proj = w_state.to(input_gates.dtype), w_proj.to(input_gates.dtype)
    steps = _steps_autograd if torch.is_grad_enabled() else _steps_in_place
    return steps(input_gates, w_state, w_proj, plan, cell_clip, proj_clip, initial)


def _steps_autograd(
    input_gates: torch.Tensor,
    w_state: torch.Tensor,
    w_proj: torch.Tensor,
    plan: Plan,
    cell_clip: float | None,
    proj_clip: float | None,
    initial: LstmState | None,
) -> tuple[torch.Tensor, LstmState | None]:
    """The recurrence of :func:`_run_batched` under autograd: functional, one new tensor per step."""
    batch = plan.steps[0][1]
    outputs, ends = [], []
    state: torch.Tensor | None = None
    memory: torch.Tensor | None = None
    if initial is not None:
        state, memory = initial.state.to(input_gates.dtype), initial.memory
    # one split, not a slice per step: a slice's backward fills a zero tensor of the whole input
    step_gates = input_gates.split([n for _, n in plan.steps], dim=1)
    for t, (gates, (_, n)) in enumerate(zip(step_gates, plan.steps)):
        if state is not None:
            gates = torch.baddbmm(gates, state[:, :n], w_state)
        i, j, f, o = gates.chunk(4, dim=-1)
        memory = torch.sigmoid(i) * torch.tanh(j) + (0 if memory is None else torch.sigmoid(f) * memory[:, :n])
        if cell_clip:
            memory = memory.clamp(-cell_clip, cell_clip)
        state = torch.bmm(torch.sigmoid(o) * torch.tanh(memory), w_proj)
        if proj_clip:
            state = state.clamp(-proj_clip, proj_clip)
        outputs.append(state)
        if initial is not None:  # rows n_next .. n end at this step
            n_next = plan.steps[t + 1][1] if t + 1 < len(plan.steps) else 0
            ends.append((state[:, n_next:n], memory[:, n_next:n]))
    final = None
    if initial is not None:  # rows end in reverse order; rows of length 0 keep their state
        assert state is not None  # there was at least one step
        ends = ends[::-1] + [(initial.state[:, batch:].to(state.dtype), initial.memory[:, batch:])]
        final = LstmState(torch.cat([e[0] for e in ends], dim=1), torch.cat([e[1] for e in ends], dim=1))
    return torch.cat(outputs, dim=1), final


def _steps_in_place(
    input_gates: torch.Tensor,
    w_state: torch.Tensor,
    w_proj: torch.Tensor,
    plan: Plan,
    cell_clip: float | None,
    proj_clip: float | None,
    initial: LstmState | None,
) -> tuple[torch.Tensor, LstmState | None]:
    """The recurrence of :func:`_run_batched` without autograd: gate math in place, the cell state in
    float32, outputs written into one preallocated buffer."""
    directions, positions, _ = input_gates.shape
    cell_dim, hidden_dim = w_proj.shape[1], w_proj.shape[2]
    batch = plan.steps[0][1]
    out = input_gates.new_empty(directions, positions, hidden_dim)
    state: torch.Tensor | None
    last: torch.Tensor | None
    if initial is None:
        memory = torch.zeros(directions, batch, cell_dim, dtype=torch.float32, device=input_gates.device)
        state = last = None
    else:
        memory = initial.memory.float().clone()
        state = initial.state.to(input_gates.dtype)
        last = state.clone()
    hidden = input_gates.new_empty(directions, batch, cell_dim)
    for offset, n in plan.steps:
        gates = input_gates[:, offset : offset + n]
        if state is not None:
            gates = torch.baddbmm(gates, state[:, :n], w_state)
        mem, h = memory[:, :n], hidden[:, :n]
        i, j, f, o = gates.chunk(4, dim=-1)
        i.sigmoid_(), j.tanh_(), f.sigmoid_(), o.sigmoid_()
        mem.mul_(f).addcmul_(i, j)
        if cell_clip:
            mem.clamp_(-cell_clip, cell_clip)
        torch.mul(torch.tanh(mem), o, out=h)
        state = torch.bmm(h, w_proj)
        if proj_clip:
            state.clamp_(-proj_clip, proj_clip)
        out[:, offset : offset + n] = state
        if last is not None:
            last[:, :n] = state
    return out, (None if last is None else LstmState(last, memory))


class _Packed(NamedTuple):
    """One direction's weights pre-packed for oneDNN in one dtype, rescaled (by powers of two,
    so exactly) for cheaper gate math: the candidate gate's rows doubled, so that one sigmoid
    over all gates gives ``tanh(j) = 2 sigmoid(2 j) - 1``; the projection doubled, so that the
    cell state can be kept doubled (``m = 2 c``) and ``tanh(c) = 2 (sigmoid(m) - 1/2)``.
    (PyTorch's float32 ``tanh`` on CPU costs ~7 sigmoids.)"""

    input_weight: torch.Tensor | int8.QuantizedWeight
    bias: torch.Tensor
    state_weight: torch.Tensor | int8.QuantizedWeight
    projection: torch.Tensor | int8.QuantizedWeight


def _pack(cell: ProjectedLstm, dtype: torch.dtype) -> _Packed:
    """With ``torch.int8`` the per-channel weight scales absorb the factors 2 (the int8 values are unchanged)."""
    c = cell.cell_dim
    scale = torch.ones(4 * c, 1, device=cell.bias.device)
    scale[c : 2 * c] = 2.0
    return _Packed(
        onednn.pack(cell.input_weight * scale, dtype, "lstm_input"),
        (cell.gate_bias() * scale[:, 0]).to(onednn.value_dtype(dtype)).contiguous(),
        onednn.pack(cell.state_weight * scale, dtype, "recurrent"),
        onednn.pack(cell.projection * 2.0, dtype, "lstm_projection"),
    )


def _run_onednn(
    inputs: list[torch.Tensor], packed: list[_Packed], plan: Plan, cell_clip: float | None, proj_clip: float | None
) -> list[torch.Tensor]:
    """Inference on CPU, one direction after the other within each step: packed ``(n_positions, input_dim)``
    per direction -> ``(n_positions, hidden)`` per direction.

    A step of ``n`` rows computes its products over ``onednn.step_rows(n) >= n`` rows (to bound
    the number of distinct shapes); the extra rows hold finite leftovers and are never read back.
    """
    dtype = packed[0].bias.dtype
    positions = inputs[0].shape[0]
    rows = onednn.step_rows(plan.steps[0][1]) if plan.steps else 0
    # all steps' input products at once (in fixed-size blocks), bias included
    gates = [onednn.RowBlocks(x.to(dtype), p.input_weight, p.bias, spare=rows) for x, p in zip(inputs, packed)]
    cell_dim = packed[0].bias.shape[0] // 4
    hidden_dim = onednn.out_features(packed[0].projection)
    outs = [torch.empty(positions, hidden_dim, dtype=dtype) for _ in inputs]
    memories = [torch.zeros(rows, cell_dim) for _ in inputs]  # 2 * cell state, float32
    scratch = torch.empty(rows, cell_dim)
    hidden = torch.zeros(rows, cell_dim, dtype=dtype)
    states: list[torch.Tensor | None] = [None] * len(inputs)
    for offset, n in plan.steps:
        m_rows = onednn.step_rows(n)
        for d, p in enumerate(packed):
            g = gates[d](offset, m_rows)  # rows offset .. offset + n are read at this step only: free to overwrite
            previous = states[d]
            if previous is not None:
                g = onednn.linear_add(previous[:m_rows], p.state_weight, g)
            g = g[:n].sigmoid_() if g.dtype == torch.float32 else torch.sigmoid(g[:n].float())
            i, j, f, o = g.chunk(4, dim=1)  # j holds sigmoid(2 j)
            m = memories[d][:n]
            m.mul_(f).addcmul_(i, j, value=4.0).add_(i, alpha=-2.0)  # m = f m + 2 i tanh(j)
            if cell_clip:
                m.clamp_(-2.0 * cell_clip, 2.0 * cell_clip)
            s = scratch[:n]
            torch.sigmoid(m, out=s).sub_(0.5)  # tanh(c) / 2
            torch.mul(s, o, out=hidden[:n])
            state = onednn.linear(hidden[:m_rows], p.projection, clip=proj_clip)
            outs[d][offset : offset + n] = state[:n]
            states[d] = state
    return outs


class BiLstmStack(nn.Module):
    """Stacked forward and backward projected LSTMs, with a residual connection
    between layers (bilm-tf's ``use_skip_connections``) and dropout on each layer's input.

    ``(batch, time, dim) -> [(batch, time, 2 * dim)] * n_layers``, forward half first;
    the batch must be sorted by length, longest first.
    """

    def __init__(
        self,
        *,
        dim: int,
        cell_dim: int,
        n_layers: int,
        cell_clip: float | None = None,
        proj_clip: float | None = None,
        use_skip_connections: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.use_skip_connections = use_skip_connections
        self.forward_layers = ModuleList(
            ProjectedLstm(dim, dim, cell_dim, cell_clip=cell_clip, proj_clip=proj_clip) for _ in range(n_layers)
        )
        self.backward_layers = ModuleList(
            ProjectedLstm(dim, dim, cell_dim, cell_clip=cell_clip, proj_clip=proj_clip) for _ in range(n_layers)
        )
        self.dropout = nn.Dropout(dropout)

    def __getstate__(self) -> dict:
        return onednn.drop_cache(self.__dict__)

    def _packed(self, dtype: torch.dtype) -> list[list[_Packed]]:
        """oneDNN copies of the weights in ``dtype``, rebuilt whenever a parameter changed."""
        pairs = list(zip(self.forward_layers, self.backward_layers))
        return onednn.cached(self, dtype, lambda: [[_pack(cell, dtype) for cell in pair] for pair in pairs])

    @property
    def _clips(self) -> tuple[float | None, float | None]:
        return self.forward_layers[0].cell_clip, self.forward_layers[0].proj_clip

    def zero_state(self, batch: int, device: torch.device) -> LstmState:
        """The zero state of ``batch`` rows: ``(n_layers, 2, batch, ...)``."""
        cell = self.forward_layers[0]
        n = len(self.forward_layers)
        return LstmState(
            torch.zeros(n, 2, batch, cell.hidden_dim, device=device),
            torch.zeros(n, 2, batch, cell.cell_dim, device=device),
        )

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        plan = Plan.build(lengths, inputs.shape[1], inputs.device)
        dtype = onednn.compute_dtype(inputs)
        if kernels.use_onednn(inputs, dtype):
            packed = self._packed(dtype)
            run = lambda k, xs: _run_onednn(xs, packed[k], plan, *self._clips)  # noqa: E731
        else:
            run = lambda k, xs: self._run_layer(k, xs, plan)[0]  # noqa: E731
        return self._layers(inputs, plan, run)

    def forward_stateful(
        self, inputs: torch.Tensor, lengths: torch.Tensor, initial: LstmState
    ) -> tuple[list[torch.Tensor], LstmState]:
        """``forward`` from the rows' ``initial`` states (``(n_layers, 2, batch, ...)``, sorted like the
        batch); also returns the final states, detached (the batched path, as AllenNLP's ``ElmoLstm``)."""
        plan = Plan.build(lengths, inputs.shape[1], inputs.device)
        finals: list[LstmState] = []

        def run(k: int, xs: list[torch.Tensor]) -> list[torch.Tensor]:
            outs, final = self._run_layer(k, xs, plan, LstmState(initial.state[k], initial.memory[k]))
            assert final is not None  # returned whenever an initial state is given
            finals.append(final)
            return outs

        layers = self._layers(inputs, plan, run)
        state = torch.stack([f.state for f in finals]).float().detach()
        return layers, LstmState(state, torch.stack([f.memory for f in finals]).float().detach())

    def _run_layer(
        self, k: int, xs: list[torch.Tensor], plan: Plan, initial: LstmState | None = None
    ) -> tuple[list[torch.Tensor], LstmState | None]:
        cells = (self.forward_layers[k], self.backward_layers[k])
        weights = [(c.input_weight, c.state_weight, c.gate_bias(), c.projection) for c in cells]
        out, final = _run_batched(torch.stack(xs), weights, plan, *self._clips, initial)
        return list(out.unbind(0)), final

    def _layers(
        self, inputs: torch.Tensor, plan: Plan, run: Callable[[int, list[torch.Tensor]], list[torch.Tensor]]
    ) -> list[torch.Tensor]:
        """Every layer ``(batch, time, 2 * dim)``; ``run(k, [forward, backward])`` runs layer ``k`` on packed inputs."""
        batch, time, dim = inputs.shape
        flat = inputs.reshape(batch * time, dim)
        seqs = [flat[plan.forward_index], flat[plan.backward_index]]  # packed, backward read back to front
        layers = []
        for k in range(len(self.forward_layers)):
            outs = run(k, [self.dropout(x) for x in seqs])
            if self.use_skip_connections and k > 0:
                outs = [out + x.to(out.dtype) for out, x in zip(outs, seqs)]
            seqs = outs
            layer = seqs[0].new_zeros(batch * time, 2 * dim)
            layer[plan.forward_index, :dim] = seqs[0]
            layer[plan.backward_index, dim:] = seqs[1]
            layers.append(layer.view(batch, time, 2 * dim))
        return layers
