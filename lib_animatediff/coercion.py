"""Turning UI, JSON and infotext values into typed field values, with errors naming the field."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

_INT_TEXT = re.compile(r"[+-]?\d+")
MAX_INT_TEXT = 100  # characters: Python refuses to parse integers of more than 4300 digits
EXACT_FLOAT_INTEGER = 2**53  # floats above it stay floats (1e308 is not shown with 309 digits)


class ParamsError(ValueError):
    """A parameter value that cannot be used; names the field and the value."""

    def __init__(self, field: str, value: Any, problem: str) -> None:
        super().__init__(f"AnimateDiff {field}={value!r}: {problem}")
        self.field = field
        self.value = value


def as_int(field: str, value: Any) -> int:
    """An integer: ints, integral finite floats (``16.0``) and digit strings (``"16"``); not booleans."""
    if isinstance(value, bool):
        raise ParamsError(field, value, "expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and len(value) <= MAX_INT_TEXT and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    raise ParamsError(field, value, "expected an integer")


def as_number(field: str, value: Any) -> int | float:
    """A finite real number; integral values become ``int`` so infotext shows ``8``, not ``8.0``."""
    if isinstance(value, bool):
        raise ParamsError(field, value, "expected a number, got a boolean")
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ParamsError(field, value, "expected a number") from None
    if not isinstance(number, int | float):
        raise ParamsError(field, value, "expected a number")
    if not math.isfinite(number):
        raise ParamsError(field, value, "expected a finite number")
    if isinstance(number, int) or not number.is_integer() or abs(number) > EXACT_FLOAT_INTEGER:
        return number
    return int(number)


def as_bool(field: str, value: Any) -> bool:
    """A boolean, or the strings ``true``/``false`` in any case (infotext writes ``True``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ParamsError(field, value, "expected true or false")


def as_str(field: str, value: Any) -> str:
    """A string without NUL characters; ``None`` (an empty Gradio field) becomes ``""``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ParamsError(field, value, "expected a string")
    if "\x00" in value:
        raise ParamsError(field, value, "contains a NUL character")
    return value


def as_optional_str(field: str, value: Any) -> str | None:
    """Like :func:`as_str`, but empty becomes ``None``."""
    return as_str(field, value) or None


def choice(choices: Sequence[str]) -> Callable[[str, Any], str]:
    """A coercer accepting exactly one of ``choices``."""

    def coerce(field: str, value: Any) -> str:
        if value not in choices:
            raise ParamsError(field, value, f"expected one of {', '.join(choices)}")
        return value

    return coerce
