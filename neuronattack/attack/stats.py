"""Success rates and mean shifts with honest uncertainty."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial rate; (0, 1) when there are no trials.

    Wilson rather than the normal approximation because attack rates sit near 0 with small n,
    where the normal interval leaves [0, 1] or collapses to a point.
    """
    if trials == 0:
        return 0.0, 1.0
    rate = successes / trials
    denominator = 1 + z**2 / trials
    centre = (rate + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / trials + z**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_summary(successes: int, trials: int) -> dict:
    low, high = wilson_interval(successes, trials)
    return {"successes": successes, "trials": trials,
            "rate": successes / trials if trials else None, "ci95": [low, high]}


BOOTSTRAP_RESAMPLES = 10_000


def bootstrap_mean_difference(values: Sequence[float], baseline: Sequence[float], seed: int = 0,
                              resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95
                              ) -> dict:
    """mean(values) − mean(baseline) with a seeded percentile bootstrap interval.

    The two samples are resampled independently (each with replacement, at its own size), so it
    holds when they differ in size or pairing, as valid images of two arms do. Empty samples give
    ``None`` everywhere.
    """
    a, b = np.asarray(values, np.float64), np.asarray(baseline, np.float64)
    if a.size == 0 or b.size == 0:
        return {"mean": None, "ci95": [None, None], "n": int(a.size), "n_baseline": int(b.size)}
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, a.size, (resamples, a.size))].mean(axis=1)  # [resamples]
    means_b = b[rng.integers(0, b.size, (resamples, b.size))].mean(axis=1)  # [resamples]
    tail = (1 - level) / 2
    low, high = np.quantile(means_a - means_b, [tail, 1 - tail])
    return {"mean": float(a.mean() - b.mean()), "ci95": [float(low), float(high)],
            "n": int(a.size), "n_baseline": int(b.size)}


def bootstrap_mean(values: Sequence[float], seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES,
                   level: float = 0.95) -> dict:
    """mean(values) with a seeded percentile bootstrap interval (``None`` for no values)."""
    return bootstrap_mean_difference(values, [0.0], seed, resamples, level) | {"n_baseline": 0}


def separated(interval: Sequence[float | None], other: Sequence[float | None]) -> bool:
    """True when ``interval`` lies wholly above ``other`` (both [low, high])."""
    return None not in (*interval, *other) and interval[0] > other[1]
