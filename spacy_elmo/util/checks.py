"""Checks of plain values read from JSON, configs and the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from typing_extensions import TypeGuard


def is_int(value: object) -> TypeGuard[int]:
    """An ``int`` and not a ``bool`` (JSON / config values: ``true`` is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """An ``int`` or ``float`` and not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """:raises ValueError: naming the setting ``name``, the ``choices`` and ``value`` unless it is one of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, found {value!r}")
