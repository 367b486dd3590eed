"""The block model the findings' effects come from: value ~ C(configuration) + C(seed), one
residual variance per configuration, fitted by weighted least squares in linear memory.

Measured (tests/test_analysis_model.py, benchmarks/findings_speed.py): equal to the paired,
Student's and Welch's t-tests and pingouin's interaction F where those apply; 10,080 runs in one
dataset in 1.9 s and 1.23 GB of process peak (no n x n matrix: the design has at most three
non-zeros a run, and leverages come from the inverse normal matrix).

The variances (`spread_clusters`): each configuration's own residual variance, with its share
of the residual degrees of freedom, from a fit reweighted by the previous variances (the first,
unweighted fit carries noisy configurations' noise into the quiet ones' residuals through the
shared seed effects). The configurations are split at most once into the quiet and the noisy:
Bartlett's test peels the noisiest off until the rest look alike, each configuration then goes
to the cluster under whose pooled variance its own is likelier, and the split stands only where
the pooled variances are SPLIT_RATIO apart. The noisy keep their own variances. The quiet are
moderated toward their scaled inverse-chi-square prior (limma's fitFDist, `prior_spread`),
(d0 s0^2 + d s^2) / (d0 + d) on d0 + d degrees of freedom, with a lower confidence bound of
d0 (`prior_df_bound`), and pooled where that bound exceeds their own degrees of freedom.
Calibrated by simulation (docs/statistics.md, "Checked by simulation"): per comparison, p below its level at 0.7-1.0x the
level under equal spreads and 1.2-1.5x under spreads drawn from a scaled inverse chi-square
with 4 df, at 3 and 5 seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse, special, stats
from scipy.linalg import cho_factor, cho_solve, pinvh
from scipy.sparse.csgraph import connected_components

SPREADS = ("grouped", "pooled")
FIT_ROUNDS = 4  # feasible GLS: weights from the previous fit's variances (stable after 3 in the simulations)


@dataclass(frozen=True)
class Difference:
    """A contrast of configuration means (a level minus its reference, averaged over the cells
    it spans), in the metric's units, with its standard error and (Satterthwaite) degrees of
    freedom. `unit_sd` is the spread of one seed's difference (se x sqrt(seeds)), what a
    seeds-needed computation scales; `seeds` the seeds per configuration it rests on;
    `of_runs` the estimate as a combination of the model's runs (for joint tests)."""

    effect: float
    se: float
    df: float
    unit_sd: float
    seeds: int
    of_runs: np.ndarray | None = None

    @property
    def p(self) -> float:
        return float(2 * stats.t.sf(abs(self.effect) / self.se, self.df))

    def interval(self, confidence: float) -> tuple[float, float]:
        half = float(stats.t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.effect - half, self.effect + half


class BlockModel:
    """value ~ C(configuration) + C(seed), a residual variance per configuration (module
    docstring), by weighted least squares on the sparse design (treatment coding: column 0
    the intercept, configuration c > 0 column c, seed s > 0 after them).

    Seeds are blocks: a seed sets initialisation and data order in every configuration, so
    runs with one seed share part of their noise. `spread="pooled"` forces one variance (the
    ordinary least-squares model); `known` gives each configuration's true variance (an oracle,
    for simulations); `peel_level` is Bartlett's level for peeling noisy configurations off
    (spread_clusters). Without shared seeds (`block=None`) the seed term is dropped."""

    def __init__(self, frame: pd.DataFrame, factors: list[str], value: str, block: str | None,
                 spread: str = "grouped", known: dict | None = None, peel_level: float | None = None):
        if spread not in SPREADS:
            raise ValueError(f"spread must be one of {SPREADS}, got {spread!r}")
        data = frame.dropna(subset=[value])
        keys = [tuple(row) for row in data[factors].itertuples(index=False)]
        self.labels = {key: i for i, key in enumerate(dict.fromkeys(keys))}
        self.y = data[value].astype(float).to_numpy()
        self.config = np.array([self.labels[k] for k in keys], dtype=int)
        self.blocked = bool(block) and data[block].nunique() > 1
        self.fitted = False
        k = len(self.labels)
        self.groups = np.zeros(k, dtype=int)
        if k < 2 or len(self.y) == 0:
            return
        self.n_runs = np.bincount(self.config, minlength=k)
        # each run's columns in treatment coding, -1 for none: the intercept, its configuration
        # (the first configuration's mean is the intercept's) and its seed (the first is too)
        self.columns = [np.zeros(len(self.y), dtype=int), np.where(self.config > 0, self.config, -1)]
        seeds = pd.factorize(data[block].astype(str))[0] if self.blocked else np.zeros(len(self.y), dtype=int)
        seed_count = int(seeds.max()) + 1
        if self.blocked:
            self.columns.append(np.where(seeds > 0, k - 1 + seeds, -1))
        self.p = k + seed_count - 1
        rank = k + seed_count - (self._components(seeds, seed_count) if self.blocked else 1)
        self.residual_df = float(len(self.y) - rank)
        if self.residual_df < 1:
            return
        self._fit(spread, known, peel_level)

    def _components(self, seeds: np.ndarray, seed_count: int) -> int:
        """Connected parts of the configuration-seed graph: each beyond the first costs the
        design a rank (the seed effects of a part are not comparable with another's)."""
        graph = sparse.coo_matrix((np.ones(len(self.y)), (self.config, len(self.labels) + seeds)),
                                  shape=(len(self.labels) + seed_count,) * 2)
        return connected_components(graph, directed=False)[0]

    def _design(self) -> sparse.csr_matrix:
        rows, cols = [], []
        for column in self.columns:
            used = column >= 0
            rows.append(np.flatnonzero(used))
            cols.append(column[used])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(self.y), self.p))

    def _solve(self, weights: np.ndarray) -> None:
        """Coefficients, the inverse normal matrix and each run's leverage at these weights."""
        X = self._design()
        normal = (X.T @ X.multiply(weights[:, None])).toarray()
        try:
            self.inverse = cho_solve(cho_factor(normal), np.eye(self.p))
        except np.linalg.LinAlgError:  # seeds split into unconnected parts: a generalised inverse
            self.inverse = pinvh(normal)
        self.coefficients = self.inverse @ (X.T @ (weights * self.y))
        self.residuals = self.y - X @ self.coefficients
        # leverage h_i = w_i x_i' C x_i, summed over the (at most three) columns a run loads
        quadratic = np.zeros(len(self.y))
        for a in self.columns:
            for b in self.columns:
                used = (a >= 0) & (b >= 0)
                quadratic[used] += self.inverse[a[used], b[used]]
        self.leverage = weights * quadratic
        self.weights = weights

    def own_spreads(self) -> tuple[np.ndarray, np.ndarray]:
        """Each configuration's residual variance and its share of the residual degrees of
        freedom (the sum of 1 - leverage over its runs): unbiased when the fit's weights are
        the true inverse variances, since then E[r_i^2] = variance_i (1 - h_i)."""
        k = len(self.labels)
        dfs = np.bincount(self.config, weights=1 - self.leverage, minlength=k)
        sums = np.bincount(self.config, weights=self.residuals ** 2, minlength=k)
        dfs = np.where(dfs > 1e-9, dfs, 0.0)
        return sums / np.maximum(dfs, 1e-12), dfs

    def _fit(self, spread: str, known: dict | None, peel_level: float | None) -> None:
        weights = np.ones(len(self.y))
        rounds = 1 if spread == "pooled" and known is None else FIT_ROUNDS
        self.known = known is not None
        for _ in range(rounds):
            self._solve(weights)
            own, own_dfs = self.own_spreads()
            if known is not None:
                spread_model = Spreads.known(np.array([known[key] for key in self.labels]))
            elif spread == "pooled":
                spread_model = Spreads.pooled(own, own_dfs)
            else:
                spread_model = spread_clusters(own, own_dfs, peel_level)
            variances = spread_model.variances
            if not variances.max() > 1e-12 * max(float(np.var(self.y)), 1e-12):
                return  # no residual spread (beside float rounding): nothing to test against
            # a configuration with no spread (every run at chance, say) keeps a floor, not an infinite weight
            variances = np.maximum(variances, 1e-9 * variances.max())
            weights = 1.0 / variances[self.config]
        self.own_variances, self.own_dfs = own, own_dfs  # from the fit the weights came from
        if rounds > 1:
            self._solve(weights)  # the coefficients at the last weights; the spreads are those the weights came from
        self.spreads = spread_model
        self.groups = spread_model.cluster
        self.config_variances = variances
        self.run_variances = variances[self.config]
        self.fitted = True

    # --- contrasts ---------------------------------------------------------------------------

    def _weights(self, cells: list[tuple[tuple, float]]) -> np.ndarray:
        """Coefficient weights of a contrast given as (configuration, weight) summing to zero."""
        weights = np.zeros(self.p)
        for key, w in cells:
            # configuration i > 0 has column i; the first one's mean is the intercept, column 0,
            # which a contrast (weights summing to zero) cancels
            if self.labels[key] > 0:
                weights[self.labels[key]] += w
        return weights

    def of_runs(self, coefficient_weights: np.ndarray) -> np.ndarray:
        """The estimate c'beta as a combination of the runs: w_i x_i' (C c)."""
        direction = self.inverse @ coefficient_weights
        combination = np.zeros(len(self.y))
        for column in self.columns:
            used = column >= 0
            combination[used] += direction[column[used]]
        return self.weights * combination

    def _contrast(self, cells: list[tuple[tuple, float]]) -> tuple[float, float, float, np.ndarray]:
        """Estimate, variance, Satterthwaite degrees of freedom and run combination of
        sum w x mean(configuration)."""
        of_runs = self.of_runs(self._weights(cells))
        parts = self.spreads.parts(np.bincount(self.config, weights=of_runs ** 2, minlength=len(self.labels)))
        # the variances are estimated from the same residuals, so their degrees of freedom
        # cannot add up to more than the model has
        df = satterthwaite_df(parts, self.spreads.component_dfs)
        df = df if self.known else min(df, self.residual_df)
        return float(of_runs @ self.y), float(parts.sum()), df, of_runs

    def contrast(self, pairs: list[tuple[tuple, tuple]]) -> Difference | None:
        """The mean over `pairs` of (configuration a minus configuration b); None where the
        model has no residual spread or a configuration has no run."""
        pairs = [(a, b) for a, b in pairs if a in self.labels and b in self.labels]
        if not self.fitted or not pairs:
            return None
        cells = [(key, sign / len(pairs)) for a, b in pairs for key, sign in ((a, 1.0), (b, -1.0))]
        effect, variance, df, of_runs = self._contrast(cells)
        if not variance > 0:
            return None
        seeds = int(min(self.n_runs[self.labels[key]] for key, _ in cells))
        se = math.sqrt(variance)
        return Difference(effect, se, df, se * math.sqrt(seeds), seeds, of_runs)

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
        L = np.array([self.of_runs(self._weights(r)) for r in rows])
        estimate = L @ self.y
        covariance = (L * self.run_variances) @ L.T
        q = np.linalg.matrix_rank(covariance)
        if q < 1:
            return float("nan"), float("nan")
        f_stat = float(estimate @ np.linalg.pinv(covariance) @ estimate) / int(q)
        df = min(self._contrast(r)[2] for r in rows)
        return f_stat, float(stats.f.sf(f_stat, q, df))


# --- the variances ----------------------------------------------------------------------------

@dataclass
class Spreads:
    """Each configuration's variance as a mix of variance components: its cluster's prior
    (or pooled) variance with weight `to_prior`, its own with the rest; the components'
    variances and degrees of freedom, for Satterthwaite's degrees of freedom of a contrast."""

    cluster: np.ndarray  # configuration -> cluster
    to_prior: np.ndarray  # configuration -> weight of its cluster's variance in its own
    prior: np.ndarray  # cluster -> its prior (or pooled) variance
    prior_dfs: np.ndarray  # cluster -> that variance's degrees of freedom
    own: np.ndarray  # configuration -> its own residual variance
    own_dfs: np.ndarray

    @property
    def variances(self) -> np.ndarray:
        return self.to_prior * self.prior[self.cluster] + (1 - self.to_prior) * self.own

    @property
    def component_dfs(self) -> np.ndarray:
        return np.concatenate([np.maximum(self.prior_dfs, 1e-9), np.maximum(self.own_dfs, 1e-9)])

    def parts(self, squares: np.ndarray) -> np.ndarray:
        """A contrast's variance split over the components, from the sum of its squared run
        weights in each configuration."""
        prior_parts = np.bincount(self.cluster, weights=squares * self.to_prior, minlength=len(self.prior))
        return np.concatenate([prior_parts * self.prior, squares * (1 - self.to_prior) * self.own])

    @classmethod
    def pooled(cls, own: np.ndarray, dfs: np.ndarray) -> Spreads:
        k = len(own)
        total = max(float(dfs.sum()), 1e-12)
        return cls(np.zeros(k, dtype=int), np.ones(k), np.array([float((own * dfs).sum()) / total]),
                   np.array([total]), own, dfs)

    @classmethod
    def known(cls, variances: np.ndarray) -> Spreads:
        k = len(variances)
        return cls(np.zeros(k, dtype=int), np.zeros(k), np.zeros(1), np.array([math.inf]), variances,
                   np.full(k, math.inf))


MIN_PRIOR_CLUSTER = 3  # configurations a prior is fitted from
MIN_OWN_DF = 0.01  # a configuration with fewer residual degrees of freedom (rounding) has no variance of its own
PRIOR_CONFIDENCE = 0.8
PEEL_LEVEL = 0.01  # Bartlett's test at which the noisiest configurations are peeled off the quiet cluster


def spread_clusters(own: np.ndarray, dfs: np.ndarray, level: float | None = None) -> Spreads:
    """The configurations' variances (module docstring): the quiet cluster moderated toward its
    prior, the noisy one (where there is one) each on its own. A configuration without degrees
    of freedom of its own (one run) takes the noisiest cluster's variance."""
    own, dfs = np.asarray(own, dtype=float), np.asarray(dfs, dtype=float)
    level = PEEL_LEVEL if level is None else level
    usable = np.flatnonzero((dfs > MIN_OWN_DF) & (own > 0))
    k = len(own)
    if len(usable) < 2:
        return Spreads.pooled(own, dfs)
    order = usable[np.argsort(own[usable], kind="stable")]
    kept = len(order)
    while kept > 1 and bartlett_p(own[order[:kept]], dfs[order[:kept]]) < level:
        kept -= 1
    parts = _two_clusters(own, dfs, order[:kept], order[kept:]) if kept < len(order) else [order]
    cluster = np.full(k, len(parts) - 1, dtype=int)  # no degrees of freedom: the noisiest cluster
    to_prior = np.ones(k)
    prior, prior_dfs = np.zeros(len(parts)), np.zeros(len(parts))
    for number, members in enumerate(parts):
        cluster[members] = number
        total = float(dfs[members].sum())
        prior[number], prior_dfs[number] = float((own[members] * dfs[members]).sum()) / total, total
        if number == 1:  # the noisy: each keeps its own (their spreads differ most, and matter most)
            to_prior[members] = 0.0
            continue
        if len(members) < MIN_PRIOR_CLUSTER:  # two variances are no prior: alike ones are pooled
            continue
        d0 = prior_df_bound(own[members], dfs[members])
        s0 = _prior_scale(own[members], dfs[members], d0)
        if d0 >= total:  # a prior surer than the cluster's own degrees of freedom: it is their pooled variance
            continue
        prior[number], prior_dfs[number] = s0, d0
        to_prior[members] = d0 / (d0 + dfs[members])
    return Spreads(cluster, to_prior, prior, prior_dfs, own, dfs)


SPLIT_RATIO = 35.0  # clusters whose pooled variances differ less are one (moderation handles the rest)


def _two_clusters(own: np.ndarray, dfs: np.ndarray, quiet: np.ndarray, noisy: np.ndarray) -> list[np.ndarray]:
    """The quiet and noisy clusters from Bartlett's peeling, refined: each configuration goes to
    the cluster under whose pooled variance its own is the more likely (chi-square), until
    nothing moves. Peeling stops at the first set Bartlett accepts, so a noisy configuration
    whose few degrees of freedom happened to give a small variance stays among the quiet ones
    (where it widens every quiet interval); the likelihood moves it. Clusters whose pooled
    variances differ less than SPLIT_RATIO are one."""
    members = np.concatenate([quiet, noisy])
    noisy_now = np.isin(members, noisy)
    for _ in range(10):
        pooled = [float((own[c] * dfs[c]).sum() / dfs[c].sum()) for c in (members[~noisy_now], members[noisy_now])]
        likelier = _log_scaled_chi2(own[members], dfs[members], pooled[1]) > \
            _log_scaled_chi2(own[members], dfs[members], pooled[0])
        if likelier.all() or not likelier.any() or (likelier == noisy_now).all():
            break
        noisy_now = likelier
    quiet, noisy = members[~noisy_now], members[noisy_now]
    pooled = [float((own[c] * dfs[c]).sum() / dfs[c].sum()) for c in (quiet, noisy)]
    if pooled[1] < SPLIT_RATIO * pooled[0]:
        return [members]
    return [quiet, noisy]


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


D0_GRID = np.geomspace(0.5, 2000, 60)


def _log_scaled_chi2(variances: np.ndarray, dfs: np.ndarray, scale) -> np.ndarray:
    """log density of a sample variance on `dfs` degrees of freedom whose true value is `scale`."""
    return stats.chi2.logpdf(dfs * variances / scale, dfs) + np.log(dfs / scale)


def _prior_scale(variances: np.ndarray, dfs: np.ndarray, d0: float) -> float:
    """The prior's scale s0^2 given its degrees of freedom d0 (limma's fitFDist moment)."""
    e = np.log(variances) - special.digamma(dfs / 2) + np.log(dfs / 2)
    if math.isinf(d0):
        return float((variances * dfs).sum() / dfs.sum())
    return float(np.exp(e.mean() + special.digamma(d0 / 2) - math.log(d0 / 2)))


def prior_df_bound(variances: np.ndarray, dfs: np.ndarray, confidence: float | None = None) -> float:
    """A lower confidence bound of the prior's degrees of freedom d0 (how alike the true
    variances are), by the profile of the F likelihood of the sample variances: the smallest d0
    on a grid whose likelihood ratio against the best is inside the one-sided `confidence`
    region. With a few degrees of freedom a configuration, spreads that vary around a common
    value (d0 = 4) and equal ones (d0 infinite) look alike, and the point estimate is infinite
    in about half the studies where d0 is 4; the bound keeps a configuration's own variance in
    its moderated one as far as the data cannot rule out that it differs (calibrated by
    simulation: tests/test_analysis_model.py)."""
    confidence = PRIOR_CONFIDENCE if confidence is None else confidence
    variances, dfs = np.asarray(variances, dtype=float), np.asarray(dfs, dtype=float)
    grid = np.append(D0_GRID, math.inf)
    log_lik = np.empty(len(grid))
    for i, d0 in enumerate(grid):
        scale = _prior_scale(variances, dfs, d0)
        if math.isinf(d0):
            log_lik[i] = float(_log_scaled_chi2(variances, dfs, scale).sum())
        else:
            log_lik[i] = float((stats.f.logpdf(variances / scale, dfs, d0) - math.log(scale)).sum())
    drop = float(stats.chi2.ppf(2 * confidence - 1, 1)) / 2
    inside = np.flatnonzero(log_lik >= log_lik.max() - drop)
    return float(grid[inside[0]])


def satterthwaite_df(parts: np.ndarray, dfs: np.ndarray) -> float:
    """Welch-Satterthwaite degrees of freedom of a variance that is a sum of independent parts,
    each estimated with its own degrees of freedom."""
    parts, dfs = np.asarray(parts, dtype=float), np.asarray(dfs, dtype=float)
    used = parts > 0
    if not used.any():
        return float("nan")
    return float(parts[used].sum() ** 2 / (parts[used] ** 2 / dfs[used]).sum())
