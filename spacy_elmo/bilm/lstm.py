"""The biLM's recurrent part: LSTM cells with a projected (and clipped) state, stacked in both directions.

Gates are kept in TensorFlow's order (input, candidate, forget, output) so that
bilm-tf's ``W_0`` / ``B`` datasets map onto the parameters without permutation;
TensorFlow's constant forget bias of +1.0 is added at run time, not stored.

Sequences in a batch must be sorted by length, longest first: at step ``t`` only
the sequences longer than ``t`` are computed, so padding costs nothing and the
result for a sentence does not depend on what else is in the batch.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

FORGET_BIAS = 1.0


class ProjectedLstm(nn.Module):
    """One direction of one layer: ``(batch, time, input_dim) -> (batch, time, hidden_dim)``."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        cell_dim: int,
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

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``inputs`` ``(batch, time, input_dim)`` sorted by ``lengths`` (descending, on CPU)."""
        batch, steps, _ = inputs.shape
        bias = self.bias.clone()
        bias[2 * self.cell_dim : 3 * self.cell_dim] += FORGET_BIAS
        # All time steps' input products in one matrix product; only the recurrence loops.
        input_gates = F.linear(inputs, self.input_weight, bias)
        active = (lengths.unsqueeze(0) > torch.arange(steps).unsqueeze(1)).sum(1).tolist()
        state = inputs.new_zeros(batch, self.hidden_dim)
        memory = inputs.new_zeros(batch, self.cell_dim)
        outputs = []
        for t in range(steps):
            n = active[t]
            if n == 0:
                break
            state, memory = state[:n], memory[:n]
            gates = input_gates[:n, t] + F.linear(state, self.state_weight)
            i, j, f, o = gates.chunk(4, dim=-1)
            memory = torch.sigmoid(i) * torch.tanh(j) + torch.sigmoid(f) * memory
            if self.cell_clip:
                memory = memory.clamp(-self.cell_clip, self.cell_clip)
            state = F.linear(torch.sigmoid(o) * torch.tanh(memory), self.projection)
            if self.proj_clip:
                state = state.clamp(-self.proj_clip, self.proj_clip)
            outputs.append(F.pad(state, (0, 0, 0, batch - n)))
        out = torch.stack(outputs, dim=1)
        return F.pad(out, (0, 0, 0, steps - out.shape[1]))


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of ``(batch, time, dim)`` within its own length; padding stays in place."""
    steps = x.shape[1]
    positions = torch.arange(steps, device=x.device).unsqueeze(0)
    lengths = lengths.to(x.device).unsqueeze(1)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class BiLstmStack(nn.Module):
    """Stacked forward and backward projected LSTMs, with a residual connection
    between layers (bilm-tf's ``use_skip_connections``) and dropout on each layer's input.

    ``(batch, time, dim) -> [(batch, time, 2 * dim)] * n_layers``, forward half first.
    """

    def __init__(
        self,
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
        self.forward_layers = nn.ModuleList(
            ProjectedLstm(dim, dim, cell_dim, cell_clip, proj_clip) for _ in range(n_layers)
        )
        self.backward_layers = nn.ModuleList(
            ProjectedLstm(dim, dim, cell_dim, cell_clip, proj_clip) for _ in range(n_layers)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        lengths = lengths.cpu()
        forward_seq = inputs
        backward_seq = reverse_padded(inputs, lengths)
        layers = []
        for k, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            forward_out = fwd(self.dropout(forward_seq), lengths)
            backward_out = bwd(self.dropout(backward_seq), lengths)
            if self.use_skip_connections and k > 0:
                forward_out = forward_out + forward_seq
                backward_out = backward_out + backward_seq
            forward_seq, backward_seq = forward_out, backward_out
            layers.append(torch.cat([forward_seq, reverse_padded(backward_seq, lengths)], dim=-1))
        return layers
