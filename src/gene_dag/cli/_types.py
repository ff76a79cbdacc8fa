"""Argument types shared by the subcommands: every number is checked when it is parsed.

argparse turns the ``ArgumentTypeError`` raised here into a one-line usage error
(exit 2) that names the option, before any data is read.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: Largest seed accepted: numpy's and torch's generators both take 64-bit seeds.
MAX_SEED = 2**63 - 1


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def bounded(
    kind: type = float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float | int]:
    """An argparse ``type=``: a finite ``kind`` (float or int) within the given bounds.

    Parameters
    ----------
    kind
        ``float`` (NaN and infinities are refused) or ``int``.
    low, high
        Bounds; ``None`` for none.
    low_open, high_open
        Exclude the bound itself.
    """

    def parse(text: str) -> float | int:
        value = _number(text, kind)
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if low_open else '>='} {low}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"{text} must be {'<' if high_open else '<='} {high}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


finite_float = bounded(float)
nonnegative_float = bounded(float, low=0.0)
positive_float = bounded(float, low=0.0, low_open=True)
nonnegative_int = bounded(int, low=0)
positive_int = bounded(int, low=1)
seed = bounded(int, low=0, high=MAX_SEED)
fraction = bounded(float, low=0.0, high=1.0)
open_fraction = bounded(float, low=0.0, high=1.0, low_open=True, high_open=True)


def auto_or(parse: Callable[[str], float | int]) -> Callable[[str], float | int | None]:
    """An argparse ``type=``: ``auto`` (None: chosen from the data) or what ``parse`` accepts."""

    def parse_auto(text: str) -> float | int | None:
        return None if text.strip().lower() == "auto" else parse(text)

    parse_auto.__name__ = parse.__name__
    return parse_auto
