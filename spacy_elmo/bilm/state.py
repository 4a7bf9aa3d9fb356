"""LSTM state carried from one batch to the next, per batch row: AllenNLP's stateful ``_ElmoBiLm``.

As AllenNLP's ``_EncoderBase`` (``_get_initial_states`` / ``_update_states``): row ``i`` of a
batch continues from the final state of row ``i`` of the previous batches; rows beyond any
earlier batch start from zero; after a smaller batch the rows it did not have keep their
states. (Every row of a biLM batch holds at least the sentence markers, so every row present
is updated.)
"""

from __future__ import annotations

from typing import Optional

import torch

from .lstm import BiLstmStack, LstmState


class CarriedState:
    """The stored per-row states of one stateful user (an ``Elmo`` or ``ElmoEmbedder``)."""

    def __init__(self) -> None:
        self.value: Optional[LstmState] = None  # (n_layers, 2, rows, ...), rows in batch order

    def reset(self, mask: Optional[torch.Tensor] = None) -> None:
        """Forget all states, or (``mask``: bool ``(rows,)``) those of the rows where ``mask`` is true."""
        if mask is None or self.value is None:
            self.value = None
            return
        rows = self.value.state.shape[2]
        if mask.shape != (rows,):
            raise ValueError(
                f"reset_states: the mask must have shape ({rows},) (the stored rows), found {tuple(mask.shape)}"
            )
        keep = (~mask.bool()).to(self.value.state.device).view(1, 1, rows, 1)
        self.value = LstmState(self.value.state * keep, self.value.memory * keep)

    def initial(self, lstm: BiLstmStack, batch: int, order: torch.Tensor, device: torch.device) -> LstmState:
        """The initial states of a batch of ``batch`` rows, sorted by ``order``; grows the store with zero rows."""
        zeros = lstm.zero_state(batch, device)
        if self.value is None:
            return zeros
        stored = self.value.state.shape[2]
        if batch > stored:
            self.value = LstmState(*(torch.cat([v, z[:, :, stored:]], dim=2) for v, z in zip(self.value, zeros)))
        index = order.to(device)
        return LstmState(*(v[:, :, :batch].index_select(2, index) for v in self.value))

    def update(self, final: LstmState, order: torch.Tensor) -> None:
        """Store a batch's final states (sorted by ``order``) for its rows; other rows keep theirs."""
        inverse = torch.argsort(order).to(final.state.device)
        unsorted = LstmState(*(v.index_select(2, inverse) for v in final))
        if self.value is None:
            self.value = unsorted
            return
        batch = unsorted.state.shape[2]
        self.value = LstmState(*(torch.cat([new, old[:, :, batch:]], dim=2) for new, old in zip(unsorted, self.value)))
