"""argparse types for the `agentnet` CLI: bounded numbers, times with a zone, JSON objects.

A value is checked here, before anything is sent, against what it means and what the wire can
carry: an int64 field takes no number past 2**63 - 1, a protobuf Timestamp no time past the year
9999, a Struct no JSON nested deeper than protobuf decodes, and a number of seconds is finite and
above 0 (NaN or infinity would turn a timeout off). A refused value is argparse's one-line error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import Any

INT64_MAX = 2**63 - 1
# JSON nesting a message can carry, counted like the server's max_payload_depth (the top object is
# level 1, each value inside one more). protobuf refuses to decode a Struct nested much deeper (about
# 34 levels, less inside the events that carry it), and the server's own limit is 16 by default.
MAX_PAYLOAD_DEPTH = 32
TIME_EXAMPLE = "e.g. 2026-12-01T18:00:00+08:00 or 2026-12-01T10:00:00Z"

_INTEGER = re.compile(r"\s*[+-]?[0-9][0-9_]*\s*")


def _show(text: str) -> str:
    """The value as given, shortened so that the error stays one readable line."""
    return repr(text if len(text) <= 24 else text[:20] + "...")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        if _INTEGER.fullmatch(text):  # Python refuses integers of more than 4300 digits
            raise argparse.ArgumentTypeError(f"{_show(text)} is too large") from None
        raise argparse.ArgumentTypeError(f"{_show(text)} is not an integer") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_show(text)} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{_show(text)} is not a finite number")
    return value


def int_range(low: int, high: int = INT64_MAX) -> Callable[[str], int]:
    """An integer from `low` to `high` (by default the largest int64: what seqs and versions are)."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {'> 0' if low == 1 else f'>= {low}'}, got {_show(text)}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {_show(text)}")
        return value

    return parse


def _float_above(low: float, inclusive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = _float(text)
        if value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {low:g}, got {_show(text)}")
        return value

    return parse


positive_int = int_range(1)
nonneg_int = int_range(0)
# Seconds, rates: finite (NaN and infinity are refused) and above 0 (or at least 0).
positive_float = _float_above(0.0, inclusive=False)
nonneg_float = _float_above(0.0, inclusive=True)


def iso_time(text: str) -> dt.datetime | None:
    """An ISO 8601 time with a zone that a protobuf Timestamp holds ("" means none)."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_show(text)} is not an ISO 8601 time ({TIME_EXAMPLE})") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{_show(text)} needs a time zone ({TIME_EXAMPLE})")
    try:
        value.astimezone(dt.UTC)
    except OverflowError:
        raise argparse.ArgumentTypeError(
            f"{_show(text)} is out of range: in UTC it must fall between 0001-01-01 and 9999-12-31"
        ) from None
    return value


class _NotJson(ValueError):
    """A number or constant in a JSON text that a message cannot carry."""


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"the number {_show(text)} is too large for a JSON number (a 64-bit float)")
    return value


def _wire_int(text: str) -> int:
    try:
        value = int(text)
        float(value)  # a message carries JSON numbers as 64-bit floats
    except (ValueError, OverflowError):
        raise _NotJson(f"the number {_show(text)} is too large for a JSON number (a 64-bit float)") from None
    return value


def _struct_problem(value: Any, limit: int) -> str:
    """What keeps `value` from being a Struct ("" when nothing): nesting more than `limit` levels
    (the top is level 1, each value inside one more), or text that is not UTF-8 (an escaped lone
    surrogate such as "\\ud800")."""
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > limit:
            return f"is nested more than {limit} levels deep, deeper than a message can carry"
        texts = [item] if isinstance(item, str) else list(item) if isinstance(item, dict) else []
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return f"holds text that is not valid Unicode ({_show(text)}: a lone surrogate)"
        if isinstance(item, dict):
            todo.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)
    return ""


def json_object(text: str) -> dict[str, Any]:
    """A JSON object a message can carry as its payload (a protobuf Struct)."""
    too_deep = f"is nested more than {MAX_PAYLOAD_DEPTH} levels deep, deeper than a message can carry"
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_finite, parse_int=_wire_int)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"is not valid JSON: {exc}") from None
    except _NotJson as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except RecursionError:
        raise argparse.ArgumentTypeError(too_deep) from None
    if not isinstance(value, dict):
        kind = "an array" if isinstance(value, list) else "a string" if isinstance(value, str) else "a value"
        raise argparse.ArgumentTypeError(f"must be a JSON object ({{...}}), not {kind}")
    problem = _struct_problem(value, MAX_PAYLOAD_DEPTH)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value
