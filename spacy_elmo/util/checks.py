"""Checks of plain values read from JSON, configs and the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import TypeGuard


def is_int(value: object) -> TypeGuard[int]:
    """An ``int`` and not a ``bool`` (JSON / config values: ``true`` is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """An ``int`` or ``float`` and not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
