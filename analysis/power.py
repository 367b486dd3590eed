"""Power and seeds: the chance that a comparison is decided at n seeds by the findings' own
rule (`decision_power`), the seeds that make it 0.8 (`seeds_to_decide`), and the chance of a
decision given the trend so far (`conditional_power`, seeds on demand's futility rule).

Measured (tests/test_analysis_stats.py, tests/test_findings_simulated.py): decision_power equals
statsmodels' t-test power and a simulated TOST; a comparison rerun at its seeds_needed is
decided in about the promised 80% of studies.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

POWER = 0.8
# seeds needed plans with the spread's upper 70% confidence bound (calibrated by simulation: docs/statistics.md)
SPREAD_BOUND = 0.7


def decision_power(effect: float, unit_sd: float, seeds: np.ndarray, df: np.ndarray, level: float,
                   smallest_effect: float) -> np.ndarray:
    """The chance that a comparison is decided at `seeds` seeds per configuration when its true
    difference is `effect` and one seed's difference has spread `unit_sd`: the two-sided test
    at `level` rejects (better / worse), or the two one-sided tests at `level` put it inside
    +/- `smallest_effect` (equivalent), with an estimated spread of `df` degrees of freedom.
    Exact in the normal model: the estimated spread is integrated over its chi distribution
    (64 quantile nodes), and for each value the verdict's region for the estimate is a normal
    probability."""
    seeds, df = np.asarray(seeds, dtype=float)[:, None], np.asarray(df, dtype=float)[:, None]
    nodes = (np.arange(64) + 0.5) / 64
    se = unit_sd / np.sqrt(seeds)
    se_hat = se * np.sqrt(stats.chi2.ppf(nodes[None, :], df) / df)
    two_sided, one_sided = stats.t.ppf(1 - level / 2, df), stats.t.ppf(1 - level, df)
    norm = stats.norm.cdf

    def between(low, high):  # P(low < estimate < high)
        return np.clip(norm((high - effect) / se) - norm((low - effect) / se), 0, 1)

    different = 1 - between(-two_sided * se_hat, two_sided * se_hat)
    band = np.maximum(smallest_effect - one_sided * se_hat, 0)  # the estimate's region for equivalence
    equivalent = between(-band, band)
    both = between(two_sided * se_hat, np.maximum(band, two_sided * se_hat)) + \
        between(-np.maximum(band, two_sided * se_hat), -two_sided * se_hat)
    return (different + equivalent - both).mean(axis=1)


def conditional_power(effect: float, unit_sd: float, seeds: int, final_seeds: int, final_df: float, level: float,
                      smallest_effect: float) -> float:
    """The chance that a comparison is decided at `final_seeds` seeds per configuration, given
    its estimate at `seeds` (the current trend: the seeds still to come are taken to have the
    true difference `effect`, their spread `unit_sd` known). The final estimate is then normal
    about `effect` with sd unit_sd x sqrt(final - seeds) / final; it is decided where the
    two-sided test at `level` rejects or the two one-sided tests put it inside +/- the
    smallest effect, at the final standard error and `final_df` degrees of freedom. Seeds on
    demand stops adding seeds where this is small (futility: non-binding, alpha unchanged)."""
    if final_seeds <= seeds or not unit_sd > 0:
        return 0.0
    spread = unit_sd * math.sqrt(final_seeds - seeds) / final_seeds
    se = unit_sd / math.sqrt(final_seeds)
    two_sided = se * float(stats.t.ppf(1 - level / 2, final_df))
    band = max(smallest_effect - se * float(stats.t.ppf(1 - level, final_df)), 0.0)

    def beyond(x: float) -> float:  # P(|final estimate| > x)
        return float(stats.norm.sf((x - effect) / spread) + stats.norm.cdf((-x - effect) / spread))

    different = beyond(two_sided)
    equivalent = 1 - beyond(band) if band > 0 else 0.0
    both = max(beyond(two_sided) - beyond(band), 0.0) if band > two_sided else 0.0
    return min(1.0, different + equivalent - both)


MAX_SEEDS_NEEDED = 1_000_000


def seeds_to_decide(effect: float, unit_sd: float, seeds: int, df: float, level: float, smallest_effect: float,
                    power: float = POWER, bound: float = SPREAD_BOUND) -> int:
    """Seeds per configuration at which a comparison would be decided with probability `power`
    by the rule the findings apply (`decision_power`), planning with the observed effect and an
    upper `bound` confidence limit of the spread (chi-square, `df`), so that a spread that
    happened to look small does not promise too few. Degrees of freedom grow with the seeds as
    the model's do. Always a number: MAX_SEEDS_NEEDED where even that many would not do."""
    quantile = float(stats.chi2.ppf(1 - bound, df)) if df > 0 else 0.0
    if not (unit_sd > 0 and quantile > 0):  # a spread known from (next to) no degrees of freedom
        return MAX_SEEDS_NEEDED
    upper = unit_sd * math.sqrt(df / quantile)
    per_seed = df / max(seeds - 1, 1)  # the model's degrees of freedom per seed beyond the first

    def enough(n: np.ndarray) -> np.ndarray:
        return decision_power(effect, upper, n, np.maximum(per_seed * (n - 1), 1), level, smallest_effect) >= power

    # a coarse geometric grid finds the bracket (the chance of a decision grows with the seeds), then
    # the first whole number of seeds in it that is enough: every one at once in one vectorised
    # call where the bracket is short (each call's cost is scipy's, not the numbers'), by bisection
    # where it is long
    grid = np.unique(np.geomspace(seeds + 1, MAX_SEEDS_NEEDED, 48).round())
    reached = np.flatnonzero(enough(grid))
    if not len(reached):
        return MAX_SEEDS_NEEDED
    high = int(grid[reached[0]])
    low = int(grid[reached[0] - 1]) if reached[0] > 0 else seeds  # not enough (or the seeds it has)
    while high - low > 4096:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(np.array([middle]))[0] else (middle, high)
    candidates = np.arange(low + 1, high + 1)
    return int(candidates[np.flatnonzero(enough(candidates))[0]])
