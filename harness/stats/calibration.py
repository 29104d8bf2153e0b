"""Calibration of stated confidence: the RMS calibration error HLE reports (CAIS ``calib_err``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["CALIBRATION_BIN", "rms_calibration_error"]

#: Items per bin (CAIS: beta = 100).
CALIBRATION_BIN = 100


def rms_calibration_error(pairs: Sequence[tuple[float, bool]], beta: int = CALIBRATION_BIN) -> float | None:
    """RMS calibration error of ``(confidence in 0..1, correct)`` pairs, None without any.

    Items sorted by confidence are cut into bins of ``beta`` (the last bin takes the remainder;
    fewer than ``beta`` items make one bin); the error is the root of the size-weighted mean of
    the squared gap between a bin's mean confidence and its accuracy.
    """
    if not pairs:
        return None
    ordered = sorted(pairs)
    n = len(ordered)
    edges = [i * beta for i in range(max(1, n // beta))] + [n]
    total = 0.0
    for lo, hi in zip(edges, edges[1:], strict=False):
        part = ordered[lo:hi]
        if part:
            gap = sum(c for c, _ in part) / len(part) - sum(1 for _, ok in part if ok) / len(part)
            total += len(part) / n * gap * gap
    return math.sqrt(total)
