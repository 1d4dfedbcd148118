"""Compare a computed value with a number as a paper printed it.

A printed number carries its own precision: "34e6" means 33.5e6 to 34.5e6, "151.99e6" means
151.985e6 to 151.995e6. ``printed_error`` gives the relative error against the printed value and
``within_printed`` checks the value rounds to what was printed, with a relative slack for figures
whose printed digits exceed what the paper itself computed consistently.
"""

from __future__ import annotations

from decimal import Decimal


def half_unit(printed: str) -> float:
    """Half of one unit in the last printed digit: '151.99e6' -> 0.005e6."""
    mantissa, _, exponent = printed.lower().partition("e")
    places = -Decimal(mantissa).as_tuple().exponent
    return 0.5 * 10.0 ** (-places) * 10.0 ** int(exponent or 0)


def printed_error(value: float, printed: str) -> float:
    """Relative error of ``value`` against the printed number."""
    reference = float(printed)
    return (value - reference) / reference


def within_printed(value: float, printed: str, rel_slack: float = 0.0) -> bool:
    """True when ``value`` rounds to ``printed``, or lies within ``rel_slack`` of it."""
    reference = float(printed)
    return abs(value - reference) <= half_unit(printed) + rel_slack * abs(reference) + 1e-12 * abs(reference)
