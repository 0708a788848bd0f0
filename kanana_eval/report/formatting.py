"""The one place that turns numbers into table text, so every report prints them alike.

New runs follow the Kanana 1.5 conventions: accuracies and pass rates as percent with two
decimals (0.6424 -> "64.24"), judge scores with two decimals. Rounding is half-up on the
shortest decimal form of the value (0.03125 -> "3.13"), not on its binary float.
Published numbers are never re-formatted: reports print their stored display text.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from kanana_eval.core.errors import KananaError

DECIMALS = {"percent": 2, "judge_1_10": 2, "fraction": 3}
_PER_UNIT = {"percent": Decimal(100), "fraction": Decimal(1)}


class ScaleError(KananaError):
    """A number cannot be shown in a column of another kind (a judge score in a percent column)."""


def convert(value: Decimal, from_scale: str, to_scale: str) -> Decimal:
    """Move a number between percent and fraction; judge scores only stay judge scores."""
    if from_scale == to_scale:
        return value
    if from_scale in _PER_UNIT and to_scale in _PER_UNIT:
        return value * _PER_UNIT[to_scale] / _PER_UNIT[from_scale]
    raise ScaleError(f"cannot show a {from_scale} value in a {to_scale} column")


def format_number(value: float, from_scale: str, to_scale: str) -> str:
    """A run's value as the column prints it: format_number(0.6424, 'fraction', 'percent') == '64.24'."""
    exact = convert(Decimal(repr(float(value))), from_scale, to_scale)
    return _quantize(exact, DECIMALS[to_scale])


def format_delta(
    run_display: str, published_display: str, run_scale: str, published_scale: str
) -> str:
    """Run minus published, from the two printed numbers, signed: '+0.52', '-1.03', '0.00'."""
    run = Decimal(run_display)
    published = convert(Decimal(published_display), published_scale, run_scale)
    text = _quantize(run - published, DECIMALS[run_scale])
    return text if text.startswith("-") or Decimal(text) == 0 else f"+{text}"


def _quantize(value: Decimal, decimals: int) -> str:
    text = str(value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))
    return text[1:] if text.startswith("-") and Decimal(text) == 0 else text
