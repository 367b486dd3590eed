"""The testing procedure: which hypotheses of a study are rejected, each at which level, with the
chance of any false rejection in the study at most alpha (strong control).

A graph (Bretz, Maurer, Brannath and Posch 2009, Stat Med 28:586) of groups of hypotheses:
each group holds a weight (its share of alpha) and passes it along its edges once every
hypothesis in it is rejected (their Algorithm 1, `Graph.remove`). Inside a group the
hypotheses share its level equally and are tested jointly (a weighted max-t test, Bretz,
Posch et al. 2011, Biom J 53:894; the `multcomp` method of Hothorn, Bretz and Westfall 2008):
the contrasts' correlation comes from the fitted model, and the common critical value from a
multivariate t (`joint_factor`). Each round tests every group with weight at the level it
holds, rejects what falls below, removes those hypotheses (a group's remaining ones share its
level again: step-down) and passes on the weight of emptied groups, until nothing more is
rejected. A hypothesis with a second part (the failure rates' Fisher test) splits its share
in half between the parts; the Fisher part is tested on its own (Bonferroni).

Measured (tests/test_testing.py): the 2009 paper's worked graphs (Holm, fixed sequence, the
two primaries with secondaries); the max-t critical value against Dunnett's
(scipy.stats.dunnett) and the tabled two-sided values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

# multivariate normal draws for a joint critical value (fixed seed: reproducible): enough for
# about TAIL_DRAWS beyond it, between the bounds
JOINT_DRAWS = (20_000, 200_000)
TAIL_DRAWS = 5_000


@dataclass
class Hypothesis:
    """One hypothesis: `p` the two-sided p of its t part, and `of_runs` its estimate as a
    combination of the model's runs (None: tested alone); `p_failures` the p of its failure
    rates' test, where it has one."""

    p: float
    of_runs: np.ndarray | None = None
    p_failures: float = float("nan")
    # set by the procedure: whether it was rejected and the levels it was last tested at
    rejected: bool = False
    level: float = 0.0  # the t part's
    failures_level: float = 0.0  # the failure test's

    @property
    def has_failures(self) -> bool:
        return math.isfinite(self.p_failures)

    @property
    def total_level(self) -> float:
        return self.level + self.failures_level


@dataclass
class Graph:
    """Nodes (groups of hypotheses) with weights summing to at most 1 and a transition matrix
    whose rows sum to at most 1 (node i passes the fraction transitions[i, j] of its weight to j)."""

    weights: np.ndarray
    transitions: np.ndarray
    active: list = field(default_factory=list)

    def __post_init__(self):
        self.weights = np.asarray(self.weights, dtype=float).copy()
        self.transitions = np.asarray(self.transitions, dtype=float).copy()
        self.active = list(range(len(self.weights)))

    def remove(self, j: int) -> None:
        """Bretz et al. (2009), Algorithm 1: node j's weight goes along its edges, and each pair
        of remaining nodes is joined through j."""
        rest = [i for i in self.active if i != j]
        G = self.transitions
        for i in rest:
            self.weights[i] += self.weights[j] * G[j, i]
        updated = G.copy()
        for i in rest:
            for k in rest:
                if i == k:
                    continue
                denominator = 1 - G[i, j] * G[j, i]
                updated[i, k] = (G[i, k] + G[i, j] * G[j, k]) / denominator if denominator > 1e-12 else 0.0
        updated[j, :], updated[:, j], self.weights[j] = 0.0, 0.0, 0.0
        self.transitions, self.active = updated, rest


def closed_test(groups: list[list[Hypothesis]], graph: Graph, alpha: float, run_variances: np.ndarray | None = None) -> None:
    """Run the procedure (module docstring) over `groups` (the graph's nodes, in order); sets
    each hypothesis's `rejected`, `level` and `failures_level`."""
    open_ = [list(g) for g in groups]
    for i, members in enumerate(open_):
        if not members:
            graph.remove(i)
    while True:
        newly = []
        for i in list(graph.active):
            _set_levels(open_[i], alpha * graph.weights[i], run_variances)
            newly += [(i, h) for h in open_[i] if h.p <= h.level or h.p_failures <= h.failures_level]
        if not newly:
            return
        for i, h in newly:
            h.rejected = True
            open_[i] = [g for g in open_[i] if g is not h]
        for i in list(graph.active):
            if not open_[i]:
                graph.remove(i)


def _set_levels(members: list[Hypothesis], level: float, run_variances: np.ndarray | None) -> None:
    """Each member's levels in a group at `level`: an equal share each, halved with the failure
    test where a member has one; the t parts of members with run combinations share a joint
    critical value (weighted max-t), the others are Bonferroni."""
    if not members:
        return
    if level <= 0:  # a group holding no weight (yet) tests nothing
        for h in members:
            h.level, h.failures_level = 0.0, 0.0
        return
    share = level / len(members)
    t_shares = np.array([share / 2 if h.has_failures else share for h in members])
    joint = [i for i, h in enumerate(members) if h.of_runs is not None and math.isfinite(h.p)]
    factor = 1.0
    if len(joint) > 1 and run_variances is not None:
        factor = joint_factor(np.array([members[i].of_runs for i in joint]), run_variances, t_shares[joint])
    for i, h in enumerate(members):
        h.level = float(min(t_shares[i] * (factor if i in joint else 1.0), 1.0))
        h.failures_level = share / 2 if h.has_failures else 0.0


def joint_factor(of_runs: np.ndarray, run_variances: np.ndarray, shares: np.ndarray,
                 draws: int | None = None, seed: int = 0) -> float:
    """The c >= 1 at which P(some p_j <= c x share_j) = sum of shares for test statistics with
    the correlation of the contrasts `of_runs` (rows) under `run_variances`: the normal
    (Gaussian copula) joint distribution by Monte Carlo. Each member's t part is then tested
    at c x share_j with its own t distribution; a t statistic's shared estimated spread makes
    joint exceedances rarer than the normal copula says, so this errs conservative (measured
    in the simulations). The order statistic taken is a lower 99% confidence bound of the
    quantile, so the Monte Carlo error errs conservative too; c is never below Bonferroni's 1."""
    covariance = (of_runs * run_variances) @ of_runs.T
    scale = np.sqrt(np.diag(covariance))
    correlation = covariance / np.outer(scale, scale)
    if draws is None:
        low, high = JOINT_DRAWS
        draws = int(min(max(TAIL_DRAWS / float(np.sum(shares)), low), high))
    key = (np.round(correlation, 6).tobytes(), np.asarray(shares, dtype=float).tobytes(), draws, seed)
    if key not in _FACTORS:
        _FACTORS[key] = _joint_factor(correlation, np.asarray(shares, dtype=float), draws, seed)
    return _FACTORS[key]


_FACTORS: dict = {}
_NORMALS: dict = {}
NORMALS_BYTES = 300_000_000


def _standard_normal(draws: int, size: int, seed: int) -> np.ndarray:
    """The fixed-seed standard normal draws of a joint test of `size` members, drawn once: every
    group of that size reuses them (only their correlation differs)."""
    key = (draws, size, seed)
    if key not in _NORMALS:
        if sum(a.nbytes for a in _NORMALS.values()) + 4 * draws * size > NORMALS_BYTES:  # a bound on memory
            _NORMALS.clear()
        _NORMALS[key] = np.random.default_rng(seed).standard_normal((draws, size), dtype=np.float32)
    return _NORMALS[key]


def _joint_factor(correlation: np.ndarray, shares: np.ndarray, draws: int, seed: int) -> float:
    values, vectors = np.linalg.eigh(correlation)
    root = vectors * np.sqrt(np.clip(values, 0, None))
    z = np.abs(_standard_normal(draws, len(shares), seed) @ root.T)
    if np.all(shares == shares[0]):  # equal shares: the smallest p is the largest |z|
        smallest = 2 * special.ndtr(-z.max(axis=1)) / shares[0]
    else:
        smallest = (2 * special.ndtr(-z) / shares).min(axis=1)
    probability = float(shares.sum())
    expected = probability * draws
    rank = int(math.floor(expected - 2.326 * math.sqrt(expected * (1 - probability))))
    if rank < 1:
        return 1.0
    return max(1.0, float(np.partition(smallest, rank - 1)[rank - 1]))


SPENDINGS = ("obrien-fleming", "equal")


def look_alpha(alpha: float, look: int, looks: int, spending: str = "equal", fractions=None) -> float:
    """The share of alpha that look `look` (1-based) of `looks` planned looks spends.

    "equal": alpha / looks at every look. "obrien-fleming": the Lan-DeMets O'Brien-Fleming-like
    spending function alpha(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t)) at the looks' information
    fractions t (`fractions`, the planned seeds at each look over the most), the look's share
    alpha(t_k) - alpha(t_{k-1}): strict early, most of alpha at the last look. The shares add up
    to alpha over the planned looks, so by the union bound any wrong verdict at any look stays
    at or under alpha."""
    if spending == "equal" or looks <= 1:
        return alpha / max(looks, 1)
    if spending != "obrien-fleming":
        raise ValueError(f"unknown alpha spending {spending!r}; choose one of {SPENDINGS}")
    look = min(max(look, 1), looks)
    z = stats.norm.ppf(1 - alpha / 2)

    def spent(k: int) -> float:
        return 0.0 if k == 0 else float(2 - 2 * stats.norm.cdf(z / math.sqrt(fractions[k - 1])))

    return spent(look) - spent(look - 1)
