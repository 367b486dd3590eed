"""The statistics the findings are made of: scipy and statsmodels for the distributions,
tests and corrections; the few formulas no library has are small functions here, each tested
against a case computed by hand or by the library it generalises.

- `BlockModel`: configuration means with the seed as a block and one residual variance per
  group of configurations of compatible spread (`config_spreads`, `spread_groups` with
  `bartlett_p`, `group_variances`), weighted least squares; its contrasts are the effect of a
  level against its reference with a t interval (Satterthwaite's degrees of freedom,
  `satterthwaite_df`) at any confidence, and its Wald tests the interactions;
- `per_comparison_level` / `family_confidence` / `adjust`: the level, the interval confidence
  and adjusted p-values of a family of m tests, with one correction for all (Bonferroni or
  Šidák), so an interval excludes 0 exactly when the adjusted p is below alpha;
- `decision_power` / `seeds_to_decide`: the chance that a comparison is decided at n seeds by
  the findings' own rule, and the seeds that make it 0.8;
- `variance_shares`: each factor's share of the variance beside the seeds' share, with a
  bootstrap interval (scipy);
- failures: `mark_failures` (diverged, or below a share of the room above the dataset's
  majority-class rate), `failure_rate` (Wilson interval), `fisher_test`,
  `probability_of_improvement` (a failed run ranks below every trained one).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats
from scipy.optimize import nnls
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

CORRECTIONS = ("bonferroni", "sidak")
DEFAULT_CHANCE_MARGIN = 0.05
POWER = 0.8


# --- comparisons in a block design ----------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """A contrast of configuration means (a level minus its reference, averaged over the cells
    it spans), in the metric's units, with its standard error and (Satterthwaite) degrees of
    freedom. `unit_sd` is the spread of one seed's difference (se x sqrt(seeds)), what a
    seeds-needed computation scales; `seeds` the seeds per configuration it rests on."""

    effect: float
    se: float
    df: float
    unit_sd: float
    seeds: int

    @property
    def p(self) -> float:
        return float(2 * stats.t.sf(abs(self.effect) / self.se, self.df))

    def interval(self, confidence: float) -> tuple[float, float]:
        half = float(stats.t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.effect - half, self.effect + half


SPREADS = ("grouped", "pooled")
SPREAD_TEST_LEVEL = 0.05  # Bartlett's test: configurations whose spreads it cannot tell apart share one variance


class BlockModel:
    """value ~ C(configuration) + C(seed) with a residual variance per group of configurations of
    compatible spread, by weighted least squares.

    Seeds are blocks (a seed sets initialisation and data order in every configuration, so runs
    with one seed share part of their noise). Configurations differ in how much their runs vary
    from seed to seed (a saturating activation near chance varies by tens of points, ReLU by a
    fraction of one), so one variance pooled over all of them would make the quiet comparisons'
    intervals too wide and the noisy ones' too narrow. With `spread="grouped"` the
    configurations are split into groups whose spreads Bartlett's test cannot tell apart
    (`spread_groups`); each group's variance is estimated without bias from the residuals
    (`group_variances`) and moderated toward each configuration's own as far as the group's
    spreads differ more than sampling explains (`moderation_weights`), the fit is weighted by
    them, and a contrast's standard error sums its variance components with Satterthwaite's
    degrees of freedom. One group of alike spreads is the ordinary pooled least-squares model
    (with two configurations, the paired t-test); two configurations without shared seeds in
    two groups are Welch's t-test.
    `spread="pooled"` forces one group. Without shared seeds (`block=None`) the seed term is
    dropped."""

    def __init__(self, frame: pd.DataFrame, factors: list[str], value: str, block: str | None,
                 spread: str = "grouped", spread_level: float = SPREAD_TEST_LEVEL):
        if spread not in SPREADS:
            raise ValueError(f"spread must be one of {SPREADS}, got {spread!r}")
        data = frame.dropna(subset=[value])
        self.keys = [tuple(row) for row in data[factors].itertuples(index=False)]
        self.labels = {key: i for i, key in enumerate(dict.fromkeys(self.keys))}
        y = data[value].astype(float).to_numpy()
        config = np.array([self.labels[k] for k in self.keys], dtype=int)
        self.blocked = bool(block) and data[block].nunique() > 1
        # the design matrix of y ~ C(configuration) [+ C(block)] in treatment coding, built
        # directly: a formula would cost patsy's parsing on every model, and the searcher fits
        # one per round
        columns = [np.ones(len(y)), *_dummies(config.tolist())]
        if self.blocked:
            columns += _dummies(data[block].astype(str).tolist())
        self.fitted = False
        self.groups = np.zeros(len(self.labels), dtype=int)  # configuration -> spread group
        self.variances = np.array([])  # per group
        if len(self.labels) < 2 or len(y) == 0:
            return
        X = np.column_stack(columns)
        residual_df = len(y) - np.linalg.matrix_rank(X)
        if residual_df < 1:
            return
        self.residual_df = float(residual_df)
        self.n_runs = np.bincount(config, minlength=len(self.labels))
        weights = np.ones(len(y))
        for iteration in range(3):  # feasible GLS: weights from the group variances of the previous fit
            projector = np.linalg.pinv(X.T @ (X * weights[:, None])) @ (X * weights[:, None]).T
            residual_maker = np.eye(len(y)) - X @ projector
            if spread == "grouped" and iteration < 2:
                # grouped on the residuals of the previous weights: once the noisy configurations
                # weigh less, the seeds' shared part comes from the quiet ones, and their
                # residuals no longer carry the noisy ones' noise
                self.groups = spread_groups(*config_spreads(residual_maker, y, config), spread_level)
            groups_of_runs = self.groups[config]
            variances, group_dfs = group_variances(residual_maker, y, groups_of_runs, int(self.groups.max()) + 1)
            if not variances.max() > 1e-12 * max(float(np.var(y)), 1e-12):
                return  # no residual spread (beside float rounding): nothing to test against
            # a group with no spread (every run of it at chance, say) keeps a floor, not an infinite weight
            variances = np.maximum(variances, 1e-9 * variances.max())
            weights = 1.0 / variances[groups_of_runs]
        self.variances, self.group_dfs = variances, np.maximum(group_dfs, 1e-9)
        self.projector, self.y = projector, y  # coefficients = projector @ y
        # each configuration's variance: its group's, moderated toward its own spread as far as
        # the group's configurations vary more than sampling explains (moderation_weights)
        k = len(variances)
        own, own_dfs = config_spreads(residual_maker, y, config)
        to_group = np.ones(len(self.labels))  # the weight of the group's variance in each configuration's
        if spread == "grouped":
            for g in range(k):
                members = np.flatnonzero(self.groups == g)
                if len(members) >= 3:
                    to_group[members] = moderation_weights(own[members], own_dfs[members])
        self.config_variances = to_group * variances[self.groups] + (1 - to_group) * own
        # the variance components (group variances, then configurations' own) and each run's
        # loading on them, for Satterthwaite's degrees of freedom of any contrast
        self.component_variances = np.concatenate([variances, own])
        self.component_dfs = np.concatenate([self.group_dfs, np.maximum(own_dfs, 1e-9)])
        self.loadings = np.zeros((len(y), k + len(self.labels)))
        self.loadings[np.arange(len(y)), groups_of_runs] = to_group[config]
        self.loadings[np.arange(len(y)), k + config] = 1 - to_group[config]
        self.run_variances = self.config_variances[config]  # = loadings @ component_variances
        self.fitted = True

    def _weights(self, cells: list[tuple[tuple, float]]) -> np.ndarray:
        """Coefficient weights of a contrast given as (configuration, weight) summing to zero."""
        weights = np.zeros(self.projector.shape[0])
        for key, w in cells:
            # configuration i > 0 has column i; the first one's mean is the intercept, column 0,
            # which a contrast (weights summing to zero) cancels
            if self.labels[key] > 0:
                weights[self.labels[key]] += w
        return weights

    def _contrast(self, cells: list[tuple[tuple, float]]) -> tuple[float, float, float]:
        """Estimate, variance and Satterthwaite degrees of freedom of sum w x mean(configuration)."""
        of_runs = self._weights(cells) @ self.projector  # the estimate as a combination of the runs
        parts = (of_runs ** 2 @ self.loadings) * self.component_variances
        # the components are estimated from the same residuals, so their degrees of freedom
        # cannot add up to more than the model has
        df = min(satterthwaite_df(parts, self.component_dfs), self.residual_df)
        return float(of_runs @ self.y), float(parts.sum()), df

    def contrast(self, pairs: list[tuple[tuple, tuple]]) -> Difference | None:
        """The mean over `pairs` of (configuration a minus configuration b); None where the
        model has no residual spread or a configuration has no run."""
        pairs = [(a, b) for a, b in pairs if a in self.labels and b in self.labels]
        if not self.fitted or not pairs:
            return None
        cells = [(key, sign / len(pairs)) for a, b in pairs for key, sign in ((a, 1.0), (b, -1.0))]
        effect, variance, df = self._contrast(cells)
        if not variance > 0:
            return None
        seeds = int(min(self.n_runs[self.labels[key]] for key, _ in cells))
        se = math.sqrt(variance)
        return Difference(effect, se, df, se * math.sqrt(seeds), seeds)

    def interaction(self, a: int, b: int) -> tuple[float, float]:
        """F and p of the interaction of the factors at positions a and b of the model's
        configuration key: every (level - baseline) x (level - baseline) difference of
        differences, averaged over the levels of the other factors where all four
        configurations have runs; the first level seen of each factor is its baseline."""
        keys = list(self.labels)
        levels_a, levels_b = list(dict.fromkeys(k[a] for k in keys)), list(dict.fromkeys(k[b] for k in keys))
        rest = [i for i in range(len(keys[0])) if i not in (a, b)] if keys else []
        contexts = list(dict.fromkeys(tuple(k[i] for i in rest) for k in keys))

        def key(level_a, level_b, context):
            values = dict(zip(rest, context)) | {a: level_a, b: level_b}
            return tuple(values[i] for i in range(len(keys[0])))

        rows = []
        for i in levels_a[1:]:
            for j in levels_b[1:]:
                quads = []
                for context in contexts:
                    quad = [(key(i, j, context), 1.0), (key(i, levels_b[0], context), -1.0),
                            (key(levels_a[0], j, context), -1.0), (key(levels_a[0], levels_b[0], context), 1.0)]
                    if all(k in self.labels for k, _ in quad):
                        quads.append(quad)
                if quads:
                    rows.append([(k, w / len(quads)) for quad in quads for k, w in quad])
        return self.wald_test(rows)

    def wald_test(self, rows: list[list[tuple[tuple, float]]]) -> tuple[float, float]:
        """F and p of the hypothesis that every contrast in `rows` is 0 (an interaction, say):
        the Wald statistic over the rows with the model's variances; its denominator degrees of
        freedom are the smallest Satterthwaite df of a row (conservative). (nan, nan) where no
        row is estimable."""
        rows = [r for r in rows if all(key in self.labels for key, _ in r)]
        if not self.fitted or not rows:
            return float("nan"), float("nan")
        L = np.array([self._weights(r) for r in rows]) @ self.projector  # rows as combinations of the runs
        estimate = L @ self.y
        covariance = (L * self.run_variances) @ L.T
        q = np.linalg.matrix_rank(covariance)
        if q < 1:
            return float("nan"), float("nan")
        f_stat = float(estimate @ np.linalg.pinv(covariance) @ estimate) / int(q)
        df = min(self._contrast(r)[2] for r in rows)
        return f_stat, float(stats.f.sf(f_stat, q, df))


def config_spreads(residual_maker: np.ndarray, y: np.ndarray, config: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each configuration's residual variance (its sum of squared residuals over its share of
    the residual degrees of freedom, the sum of R_ii over its runs) and that share: what
    Bartlett's test compares when the configurations are grouped."""
    residuals = residual_maker @ y
    dfs = np.bincount(config, weights=np.diag(residual_maker))
    sums = np.bincount(config, weights=residuals ** 2)
    return sums / np.maximum(dfs, 1e-12), np.where(dfs > 1e-9, dfs, 0.0)


def trigamma_inverse(x: float) -> float:
    """The y with trigamma(y) = x, by Newton's method on 1 / trigamma (Smyth 2004, as limma's
    trigammaInverse); scipy has trigamma (polygamma(1, .)) but not its inverse."""
    if x > 1e7:
        return 1 / math.sqrt(x)
    if x < 1e-6:
        return 1 / x
    y = 0.5 + 1 / x
    for _ in range(50):
        tri = float(special.polygamma(1, y))
        step = tri * (1 - tri / x) / float(special.polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


def prior_spread(variances: np.ndarray, dfs: np.ndarray) -> tuple[float, float]:
    """The scaled inverse-chi-square prior of a set of variances (its degrees of freedom d0 and
    scale s0^2), by the moments of their logarithms (Smyth 2004, limma's fitFDist): the spread
    of log variances beyond what sampling with `dfs` degrees of freedom explains says how
    different the true variances are. d0 is infinite where sampling explains all of it."""
    variances, dfs = np.asarray(variances, dtype=float), np.asarray(dfs, dtype=float)
    e = np.log(variances) - special.digamma(dfs / 2) + np.log(dfs / 2)
    excess = float(np.var(e, ddof=1) - np.mean(special.polygamma(1, dfs / 2)))
    if excess <= 0:
        return math.inf, float(math.exp(e.mean()))
    d0 = 2 * trigamma_inverse(excess)
    return d0, float(math.exp(e.mean() + special.digamma(d0 / 2) - math.log(d0 / 2)))


def moderation_weights(variances: np.ndarray, dfs: np.ndarray) -> np.ndarray:
    """How much of each configuration's variance is its group's: d0 / (d0 + df), the weight of
    the prior in Smyth's moderated variance (d0 s0^2 + df s^2) / (d0 + df). 1 for every
    configuration where the group's spreads are as alike as sampling allows (the pooled model);
    less where they differ more, so a configuration a little noisier than its group is not
    given the group's narrower interval."""
    usable = (np.asarray(dfs) > 0) & (np.asarray(variances) > 0)
    if usable.sum() < 3:
        return np.ones(len(variances))
    d0, _ = prior_spread(np.asarray(variances)[usable], np.asarray(dfs)[usable])
    if math.isinf(d0):
        return np.ones(len(variances))
    return d0 / (d0 + np.asarray(dfs, dtype=float))


def bartlett_p(variances: np.ndarray, dfs: np.ndarray) -> float:
    """Bartlett's test that groups with these sample variances (and degrees of freedom) share
    one variance; scipy.stats.bartlett takes raw samples, the spreads here are residual ones."""
    variances, dfs = np.asarray(variances, dtype=float), np.asarray(dfs, dtype=float)
    k, total = len(variances), dfs.sum()
    if k < 2 or not (variances > 0).all():
        return 0.0 if k >= 2 else 1.0
    pooled = float((dfs * variances).sum() / total)
    statistic = total * math.log(pooled) - float((dfs * np.log(variances)).sum())
    statistic /= 1 + ((1 / dfs).sum() - 1 / total) / (3 * (k - 1))
    return float(stats.chi2.sf(statistic, k - 1))


def spread_groups(variances: np.ndarray, dfs: np.ndarray, level: float = SPREAD_TEST_LEVEL) -> np.ndarray:
    """Configurations grouped by compatible spread: sorted by variance, the quiet group is the
    largest set of the quietest configurations that Bartlett's test accepts at `level` (the
    noisiest are peeled off one at a time until it does), and each configuration peeled off
    keeps a variance of its own. Pooling among the noisy ones would be a second choice made
    from the same data, one that puts a configuration that happened to look less noisy beside
    a noisier one and its interval too narrow; a configuration peeled off was chosen for
    looking noisy, the safe side. A configuration with no degrees of freedom of its own (one
    run) joins the noisiest group. Returns each configuration's group number, 0 the quiet one."""
    variances, dfs = np.asarray(variances, dtype=float), np.asarray(dfs, dtype=float)
    known = np.flatnonzero(dfs > 0)
    if len(known) == 0:
        return np.zeros(len(variances), dtype=int)
    floor = 1e-12 * max(float(variances[known].max()), 1e-300)
    spread = np.maximum(variances, floor)
    members = known[np.argsort(variances[known], kind="stable")]
    kept = len(members)
    while kept > 1 and bartlett_p(spread[members[:kept]], dfs[members[:kept]]) < level:
        kept -= 1
    groups = np.full(len(variances), len(members) - kept, dtype=int)
    groups[members[:kept]] = 0
    for number, peeled in enumerate(members[kept:], start=1):
        groups[peeled] = number
    return groups


def group_variances(residual_maker: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased variances of k groups of runs and their residual degrees of freedom.

    With residuals r = R y, E[sum of r_i^2 over group g] = sum over groups h of
    (sum of R_ij^2, i in g, j in h) x variance_h, whatever the variances: solving these k
    equations (non-negative least squares, scipy) removes what the other groups' noise adds to
    a group's residuals through the shared seed and configuration estimates. A group's degrees
    of freedom are its share of the residual ones (sum of R_ii over its runs)."""
    residuals = residual_maker @ y
    indicator = np.eye(k)[groups]
    expected = indicator.T @ (residual_maker ** 2) @ indicator
    sums = indicator.T @ residuals ** 2
    variances, _ = nnls(expected, sums)
    return variances, indicator.T @ np.diag(residual_maker)


def satterthwaite_df(parts: np.ndarray, dfs: np.ndarray) -> float:
    """Welch-Satterthwaite degrees of freedom of a variance that is a sum of independent parts,
    each estimated with its own degrees of freedom."""
    parts, dfs = np.asarray(parts, dtype=float), np.asarray(dfs, dtype=float)
    used = parts > 0
    if not used.any():
        return float("nan")
    return float(parts[used].sum() ** 2 / (parts[used] ** 2 / dfs[used]).sum())


def _dummies(values: list) -> list[np.ndarray]:
    """Treatment-coded indicator columns of `values`, the first level seen as the reference."""
    index = {}
    codes = np.array([index.setdefault(v, len(index)) for v in values])
    return [(codes == i).astype(float) for i in range(1, len(index))]


def per_comparison_level(alpha: float, m: int, correction: str = "bonferroni") -> float:
    """The level of each of m tests so that the chance of any false rejection stays at alpha."""
    if correction == "sidak":
        return 1 - (1 - alpha) ** (1 / max(m, 1))
    return alpha / max(m, 1)


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


def family_confidence(alpha: float, m: int, correction: str = "bonferroni") -> float:
    """The confidence of each of m intervals so that all hold together at 1 - alpha."""
    return 1 - per_comparison_level(alpha, m, correction)


def adjust(pvalues: list[float], correction: str = "bonferroni", m: int | None = None) -> np.ndarray:
    """p-values adjusted for a family of m tests (default: as many as given; statsmodels' own
    adjustment then), NaN kept as NaN. A larger m counts tests of the family that are not in
    the list (comparisons a study could have made: see analysis.compare)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    valid = ~np.isnan(p)
    if not valid.any():
        return out
    if m is None or m == valid.sum():
        out[valid] = multipletests(p[valid], method=correction)[1]
    elif correction == "sidak":
        out[valid] = 1 - (1 - p[valid]) ** m
    else:
        out[valid] = np.minimum(1.0, m * p[valid])
    return out


SPREAD_BOUND = 0.7  # seeds needed plans with the spread's upper 70% confidence bound (calibrated by simulation: README)


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


# --- designs ---------------------------------------------------------------------------------

def _safe_columns(frame: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, dict]:
    names = {c: f"x{i}" for i, c in enumerate(columns)}
    data = frame[columns].rename(columns=names).copy()
    for c in names.values():
        data[c] = data[c].astype(str)
    return data, names


def variance_shares(frame: pd.DataFrame, factors: list[str], value: str, interactions: list[tuple[str, str]] = (),
                    n_resamples: int = 199, seed: int = 0) -> pd.DataFrame:
    """Each factor's (and each listed interaction's) share of the total sum of squares of
    `value`, beside the seeds' share (what is left: runs of one configuration differ only in
    their seed), from value ~ factors + interactions; 95% intervals by a percentile bootstrap
    over runs (scipy.stats.bootstrap). Sequential (type-I) sums of squares add up to the total
    in every resample, so each share stays in [0, 1]; in a balanced design they equal type II."""
    data, names = _safe_columns(frame.dropna(subset=[value]), factors)
    data["y"] = frame.loc[data.index, value].astype(float).to_numpy()
    used = [f for f in factors if data[names[f]].nunique() > 1]
    terms = [f"C({names[f]})" for f in used] + [f"C({names[a]}):C({names[b]})" for a, b in interactions
                                                  if a in used and b in used]
    labels = used + [f"{a} x {b}" for a, b in interactions if a in used and b in used] + ["seeds (residual)"]
    if not terms or len(data) <= len(terms) + 1 or np.ptp(data["y"]) == 0:
        return pd.DataFrame(columns=["source", "share", "ci_low", "ci_high"])
    formula = "y ~ " + " + ".join(terms)

    def shares(rows: np.ndarray) -> np.ndarray:
        sample = data.iloc[np.asarray(rows, dtype=int)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                table = anova_lm(ols(formula, data=sample).fit(), typ=1)
            except (ValueError, np.linalg.LinAlgError):
                return np.full(len(labels), np.nan)
        total = float(((sample["y"] - sample["y"].mean()) ** 2).sum())
        if total == 0:
            return np.full(len(labels), np.nan)
        wanted = [*terms, "Residual"]
        return np.array([table["sum_sq"].get(t, np.nan) / total for t in wanted])

    point = shares(np.arange(len(data)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = stats.bootstrap((np.arange(len(data)),), shares, vectorized=False, n_resamples=n_resamples,
                               method="percentile", rng=np.random.default_rng(seed))
    # a resample can miss a cell, leaving a share undefined: the interval is over those it defines
    low, high = np.nanpercentile(boot.bootstrap_distribution, [2.5, 97.5], axis=-1)
    return pd.DataFrame({"source": labels, "share": point, "ci_low": low, "ci_high": high})


# --- failures --------------------------------------------------------------------------------

def mark_failures(trials: pd.DataFrame, margin: float = DEFAULT_CHANCE_MARGIN, accuracy: str = "test_acc") -> pd.DataFrame:
    """Runs with a result (completed or diverged), with `did_not_train` and `failure`: the run
    diverged, or its `accuracy` ended below chance + margin x (1 - chance), chance being the
    majority-class rate of the dataset's test set (`chance_acc`, written by the export;
    results without it only count divergence). The margin is a share of the room above
    chance: on a test set whose majority class is 90%, 95% accuracy is a model that trained."""
    out = trials[trials["status"].isin(["completed", "diverged"])].copy()
    if accuracy not in out:
        accuracy = "final_val_acc"
    chance = out["chance_acc"] if "chance_acc" in out else pd.Series(np.nan, index=out.index)
    near_chance = (out[accuracy].isna() | (out[accuracy] < chance + margin * (1 - chance))) & chance.notna()
    diverged = out["status"] == "diverged"
    failure = pd.Series([None] * len(out), index=out.index, dtype=object)
    failure[near_chance] = "near chance"
    failure[diverged] = "diverged"
    out["failure"] = failure
    out["did_not_train"] = diverged | near_chance
    return out


def failure_rate(failed: int, n: int) -> tuple[float, float, float]:
    """Rate and its 95% Wilson interval (statsmodels)."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = proportion_confint(failed, n, alpha=0.05, method="wilson")
    return failed / n, float(low), float(high)


def fisher_test(failed: int, n: int, failed_ref: int, n_ref: int) -> float:
    """Fisher's exact test of two failure rates; NaN where no run or every run failed."""
    if n == 0 or n_ref == 0 or failed + failed_ref in (0, n + n_ref):
        return float("nan")
    return float(stats.fisher_exact([[failed, n - failed], [failed_ref, n_ref - failed_ref]]).pvalue)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, paired: bool) -> float:
    """P(a run of the level beats a run of the reference), ties counting half: over pairs where
    paired, over all pairs of runs otherwise (Mann-Whitney U / (n x m), scipy). Callers pass
    failed runs as -inf so that they rank below every trained run."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return float("nan")
    if paired:
        return float(np.mean((x > y) + 0.5 * (x == y)))
    return float(stats.mannwhitneyu(x, y, alternative="two-sided").statistic / (len(x) * len(y)))


# --- descriptive tables ----------------------------------------------------------------------

def levels(frame: pd.DataFrame, factor: str) -> list:
    return sorted(frame[factor].dropna().unique().tolist(), key=lambda v: (str(type(v)), v))


def summary(frame: pd.DataFrame, factors: list[str], value: str) -> pd.DataFrame:
    """mean, std, median, min, max and n of `value` per level (combination) of `factors`."""
    grouped = frame.groupby(factors, dropna=False, sort=False)[value]
    table = grouped.agg(["mean", "std", "median", "min", "max", "count"]).rename(columns={"count": "n"})
    return table.reset_index()


def status_counts(trials: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    table = trials.groupby(factors, dropna=False)["status"].value_counts().unstack(fill_value=0)
    for status in ("completed", "diverged", "error", "unfinished"):
        if status not in table.columns:
            table[status] = 0
    return table.reset_index()


def optimizer_summary(trials: pd.DataFrame, epochs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Speed, robustness, stability and generalization gap per optimizer setting (DeepOBS-style)."""
    done = trials[trials["status"].isin(["completed", "diverged"])]
    grouped = done.groupby(by, dropna=False)
    table = grouped.agg(n=("trial_id", "count"), train_time_s=("train_time_s", "mean"),
                        test_acc_mean=("test_acc", "mean"), test_acc_std=("test_acc", "std")).reset_index()
    gap = (done["final_train_acc"] - done["final_val_acc"]).groupby([done[c] for c in by], dropna=False).mean()
    table["generalization_gap"] = gap.to_numpy()
    # stability: across seeds, how much the training loss of the same epoch varies; averaged over epochs
    ep = epochs[epochs["trial_id"].isin(done["trial_id"])]
    per_epoch_var = ep.groupby([*by, "epoch"], dropna=False)["train_loss"].var()
    stability = per_epoch_var.groupby(level=list(range(len(by))), dropna=False).mean()
    table["loss_variance_across_seeds"] = [stability.get(tuple(r) if len(by) > 1 else r[0], np.nan)
                                           for r in table[by].itertuples(index=False)]
    return table


def learning_curves(epochs: pd.DataFrame, factor: str, metric: str) -> pd.DataFrame:
    """Median and inter-quartile range across seeds of `metric` per level and epoch."""
    grouped = epochs.groupby([factor, "epoch"])[metric]
    return grouped.agg(median="median", q25=lambda s: s.quantile(0.25), q75=lambda s: s.quantile(0.75),
                       n="count").reset_index()
