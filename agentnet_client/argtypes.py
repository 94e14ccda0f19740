"""argparse types for numbers with a lower bound, for the `agentnet` CLI."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _number(kind: type[int] | type[float], positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(f"must be {'>' if positive else '>='} 0, got {text}")
        return value

    return parse


positive_int = _number(int, positive=True)
nonneg_int = _number(int, positive=False)
positive_float = _number(float, positive=True)
nonneg_float = _number(float, positive=False)
