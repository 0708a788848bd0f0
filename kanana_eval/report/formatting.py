"""The one place that turns numbers into table text, so every report prints them alike.

New runs follow the Kanana 1.5 conventions: accuracies and pass rates as percent with two
decimals (0.6424 -> "64.24"), judge scores with two decimals. Rounding is half-up on the
shortest decimal form of the value (0.03125 -> "3.13"), not on its binary float.
Published numbers are never re-formatted: reports print their stored display text.

Two kinds of scale meet here: a run's `Scale` (what its value means) and the display scale
of a README column ("percent", "fraction", "judge_1_10", "wb_score"). A run's scale names the
display scale of the same spelling, so both are accepted wherever a scale is asked for.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from kanana_eval.core.errors import KananaError
from kanana_eval.results.records import Scale

PERCENT = "percent"  # display scale of the 1.5 tables for fractions
DECIMALS = {PERCENT: 2, Scale.JUDGE_1_10.value: 2, Scale.FRACTION.value: 3}
_PER_UNIT = {PERCENT: Decimal(100), Scale.FRACTION.value: Decimal(1)}


class ScaleError(KananaError):
    """A number cannot be shown in a column of another kind (a judge score in a percent column)."""


def scale_name(scale: str | Scale) -> str:
    """The plain name of a run or display scale ('judge_1_10'), for look-ups and messages."""
    return scale.value if isinstance(scale, Scale) else scale


def run_display_scale(scale: Scale) -> str:
    """How a new run prints a value of this scale: fractions as percent, judge scores as is."""
    return PERCENT if scale is Scale.FRACTION else scale.value


def convert(value: Decimal, from_scale: str | Scale, to_scale: str | Scale) -> Decimal:
    """Move a number between percent and fraction; judge scores only stay judge scores."""
    source, target = scale_name(from_scale), scale_name(to_scale)
    if source == target:
        return value
    if source in _PER_UNIT and target in _PER_UNIT:
        return value * _PER_UNIT[target] / _PER_UNIT[source]
    raise ScaleError(f"cannot show a {source} value in a {target} column")


def format_number(value: float, from_scale: str | Scale, to_scale: str | Scale) -> str:
    """A run's value as the column prints it: (0.6424, 'fraction', 'percent') -> '64.24'."""
    exact = convert(Decimal(repr(float(value))), from_scale, to_scale)
    return _quantize(exact, DECIMALS[scale_name(to_scale)])


def format_delta(
    run_display: str,
    published_display: str,
    run_scale: str | Scale,
    published_scale: str | Scale,
) -> str:
    """Run minus published, from the two printed numbers, signed: '+0.52', '-1.03', '0.00'."""
    run = Decimal(run_display)
    published = convert(Decimal(published_display), published_scale, run_scale)
    text = _quantize(run - published, DECIMALS[scale_name(run_scale)])
    return text if text.startswith("-") or Decimal(text) == 0 else f"+{text}"


def _quantize(value: Decimal, decimals: int) -> str:
    text = str(value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))
    return text[1:] if text.startswith("-") and Decimal(text) == 0 else text
