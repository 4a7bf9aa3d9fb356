"""A typed ``nn.ModuleList``: torch's items are plain ``nn.Module`` to a type checker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Iterable, Iterator, TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


class ModuleList(nn.ModuleList, Generic[M]):
    """``nn.ModuleList`` of one kind of module; only the annotations differ (same state dict, same behaviour)."""

    if TYPE_CHECKING:

        def __init__(self, modules: Iterable[M] | None = None) -> None: ...

        def __iter__(self) -> Iterator[M]: ...

        def __getitem__(self, idx: int) -> M: ...  # type: ignore[override]  # slices are not used
