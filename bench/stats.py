"""Small statistics for noisy timings on a shared machine: medians, spread, ratios.

Absolute times drift while other jobs run, so the harness compares variants measured in
the same round (interleaved) and summarises the per-round ratios by their median, with the
interquartile range and the extremes as the spread.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Summary", "fit_line", "summarise"]


@dataclass(frozen=True)
class Summary:
    """Median of ``n`` samples with the quartiles and the extremes."""

    median: float
    q1: float
    q3: float
    low: float
    high: float
    n: int

    def spread(self, fmt: str = "{:.3f}") -> str:
        """'IQR a–b, range c–d (n=N)'."""
        if self.n < 2:
            return f"n={self.n}"
        return (f"IQR {fmt.format(self.q1)}–{fmt.format(self.q3)}, "
                f"range {fmt.format(self.low)}–{fmt.format(self.high)} (n={self.n})")


def summarise(samples: Sequence[float]) -> Summary:
    """Median, quartiles (inclusive method) and extremes of ``samples`` (at least one)."""
    if not samples:
        raise ValueError("summarise: expected at least one sample, got none")
    values = sorted(samples)
    if len(values) == 1:
        v = values[0]
        return Summary(v, v, v, v, v, 1)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(statistics.median(values), q1, q3, values[0], values[-1], len(values))


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares ``y = slope * x + intercept``; returns (slope, intercept, r²)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"fit_line: expected two equal-length series of at least 2 points, got {len(xs)}, {len(ys)}")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else 0.0
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = 1.0 - ss_res / ss_tot if ss_tot else 1.0
    return slope, intercept, r2
