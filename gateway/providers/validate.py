"""Type checks for decoded client JSON, raising `invalid_request` errors that name the field."""

from __future__ import annotations

import math
from typing import Any

from gateway.errors import invalid


def expect_dict(value: object, where: str, required: bool = True) -> dict[str, Any]:
    if value is None and not required:
        return None  # type: ignore[return-value]
    if not isinstance(value, dict):
        raise invalid(f"'{where}' must be an object.", where)
    return value


def expect_list(value: object, where: str, required: bool = False) -> list[Any] | None:
    if value is None:
        if required:
            raise invalid(f"'{where}' is required.", where)
        return None
    if not isinstance(value, list):
        raise invalid(f"'{where}' must be an array.", where)
    return value


def expect_str(value: object, where: str, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise invalid(f"'{where}' is required.", where)
        return None
    if not isinstance(value, str):
        raise invalid(f"'{where}' must be a string.", where)
    return value


def expect_bool(value: object, where: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise invalid(f"'{where}' must be a boolean.", where)


def expect_int(
    value: object, where: str, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    if value is None:
        return None
    # bool is an int subclass in Python, but `true` is not a number to our clients.
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"'{where}' must be an integer.", where)
    if minimum is not None and value < minimum:
        raise invalid(f"'{where}' must be at least {minimum}.", where)
    if maximum is not None and value > maximum:
        raise invalid(f"'{where}' must be at most {maximum}.", where)
    return value


def expect_number(value: object, where: str, minimum: float, maximum: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(f"'{where}' must be a number.", where)
    if not minimum <= value <= maximum:
        raise invalid(f"'{where}' must be between {minimum} and {maximum}.", where)
    return value
