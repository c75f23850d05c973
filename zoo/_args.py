"""Checks of the Python API's scalar arguments: one-line :class:`~zoo.errors.InvalidInputError` s, not raw
``TypeError`` s from deep inside numpy or torch. Light: imports nothing heavy."""

from __future__ import annotations

import math
import operator
from typing import Any

from zoo.errors import InvalidInputError


def _tail(hint: str) -> str:
    return f"; {hint}" if hint else "."


def as_whole(value: Any) -> int | None:
    """``value`` as an ``int`` when it is a whole number (Python or numpy integer), else ``None``. A bool is not one."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def whole(name: str, value: Any, minimum: int | None = None, hint: str = "") -> int:
    """``value`` as an ``int`` (Python or numpy integers; not bools, floats or strings), at least ``minimum``."""
    number = as_whole(value)
    if number is None:
        least = f" of at least {minimum}" if minimum is not None else ""
        raise InvalidInputError(f"{name} must be a whole number{least}, got {value!r} ({type(value).__name__}){_tail(hint)}")
    if minimum is not None and number < minimum:
        raise InvalidInputError(f"{name} must be at least {minimum}, got {number}{_tail(hint)}")
    return number


def real(name: str, value: Any, low: float | None = None, high: float | None = None, *, open_low: bool = False,
         open_high: bool = False, hint: str = "") -> float:
    """``value`` as a finite ``float`` (not a bool or a string) within ``low``/``high`` (open or closed ends)."""
    if low is not None and high is not None:
        where = f"a finite number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    elif low is not None:
        where = f"a finite number {'>' if open_low else '>='} {low:g}"
    elif high is not None:
        where = f"a finite number {'<' if open_high else '<='} {high:g}"
    else:
        where = "a finite number"
    if isinstance(value, (bool, str, bytes)) or type(value).__name__ == "bool_":
        raise InvalidInputError(f"{name} must be {where}, got {value!r} ({type(value).__name__}){_tail(hint)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be {where}, got {value!r} ({type(value).__name__}){_tail(hint)}") from None
    bad = (not math.isfinite(number) or (low is not None and (number <= low if open_low else number < low))
           or (high is not None and (number >= high if open_high else number > high)))
    if bad:
        raise InvalidInputError(f"{name} must be {where}, got {value!r}{_tail(hint)}")
    return number
