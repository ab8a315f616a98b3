"""argparse ``type=`` converters shared by kcnn's command lines: numbers within bounds.

Each converter raises ``argparse.ArgumentTypeError("expected …, received '…'")``, which
:class:`kcnn.cli.base.Parser` turns into one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import math


def bounded(convert, accepted: str, *, minimum=None, maximum=None, exclusive_minimum=False,
            exclusive_maximum=False):
    """An argparse type: ``convert(text)`` (``int`` or ``float``), finite, within the bounds.

    ``accepted`` describes the accepted values in the error message, e.g. "a positive integer".
    """
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        too_low = value is not None and minimum is not None and (
            value <= minimum if exclusive_minimum else value < minimum)
        too_high = value is not None and maximum is not None and (
            value >= maximum if exclusive_maximum else value > maximum)
        if value is None or not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"expected {accepted}, received {text!r}")
        return value

    return parse


positive_int = bounded(int, "a positive integer", minimum=1)
non_negative_int = bounded(int, "a non-negative integer", minimum=0)
positive_float = bounded(float, "a positive finite number", minimum=0, exclusive_minimum=True)
non_negative_float = bounded(float, "a finite number >= 0", minimum=0)
open_fraction = bounded(float, "a number between 0 and 1, both excluded", minimum=0, maximum=1,
                        exclusive_minimum=True, exclusive_maximum=True)
port = bounded(int, "a port from 0 to 65535", minimum=0, maximum=65535)
