"""Bjøntegaard delta rate: the average bitrate difference between two rate-distortion curves at
equal quality, over the quality range both cover.

Definition used here (stated because variants differ): each curve is log(bytes) as a function of
quality (dB), interpolated *piecewise-linearly* between measured points (robust with few, unevenly
spaced points, unlike the original cubic fit); the mean of log-rate over the overlapping quality range
is compared: BD-rate = exp(mean_test − mean_anchor) − 1 (negative: the test curve needs fewer bytes).
"""

from __future__ import annotations

import numpy as np


def _curve(rates, quality):
    r, q = np.asarray(rates, float), np.asarray(quality, float)
    order = np.argsort(q)
    q, lr = q[order], np.log(r[order])
    # a rate-distortion curve is monotone: keep the running minimum rate for each quality level
    lr = np.minimum.accumulate(lr[::-1])[::-1]
    return q, lr


def bd_rate(anchor_rates, anchor_quality, test_rates, test_quality, samples: int = 200,
            quality_range: tuple[float, float] | None = None) -> float | None:
    """Relative rate difference of ``test`` against ``anchor`` (e.g. -0.4 = 40 % fewer bytes);
    None when the curves share no quality range. ``quality_range``: only this part of the overlap
    (e.g. 25-35 dB)."""
    qa, la = _curve(anchor_rates, anchor_quality)
    qt, lt = _curve(test_rates, test_quality)
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if quality_range is not None:
        lo, hi = max(lo, quality_range[0]), min(hi, quality_range[1])
    if not hi > lo:
        return None
    grid = np.linspace(lo, hi, samples)
    return float(np.exp(np.interp(grid, qt, lt).mean() - np.interp(grid, qa, la).mean()) - 1.0)
