"""Success rates with honest uncertainty."""

from __future__ import annotations

import math


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
