"""Checks of the Python API's scalar arguments: one-line :class:`~zoo.errors.InvalidInputError` s, not raw
``TypeError`` s from deep inside numpy or torch. Light: imports nothing heavy."""

from __future__ import annotations

import math
import operator
from typing import Any

from zoo.errors import InvalidInputError


def whole(name: str, value: Any, minimum: int | None = None, hint: str = "") -> int:
    """``value`` as an ``int`` (Python or numpy integers; not bools, floats or strings), at least ``minimum``."""
    if isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}{'; ' + hint if hint else '.'}")
    try:
        number = operator.index(value)
    except TypeError:
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}{'; ' + hint if hint else '.'}") from None
    if minimum is not None and number < minimum:
        raise InvalidInputError(f"{name} must be at least {minimum}, got {number}{'; ' + hint if hint else '.'}")
    return number


def real(name: str, value: Any, *, low: float | None = None, high: float | None = None, open_low: bool = False,
         open_high: bool = False, hint: str = "") -> float:
    """``value`` as a finite ``float`` (not a bool or a string) within ``low``/``high`` (open or closed ends)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and type(value).__module__ != "numpy":
        raise InvalidInputError(f"{name} must be a number, got {value!r}{'; ' + hint if hint else '.'}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}{'; ' + hint if hint else '.'}") from None
    bad_low = low is not None and (number <= low if open_low else number < low)
    bad_high = high is not None and (number >= high if open_high else number > high)
    if not math.isfinite(number) or bad_low or bad_high:
        lo = "" if low is None else f"{'(' if open_low else '['}{low:g}"
        hi = "" if high is None else f"{high:g}{')' if open_high else ']'}"
        where = f" in {lo or '(-inf'}, {hi or 'inf)'}" if (low is not None or high is not None) else ""
        raise InvalidInputError(f"{name} must be a finite number{where}, got {value!r}{'; ' + hint if hint else '.'}")
    return number
