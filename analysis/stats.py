"""The statistics the findings are made of; every test, interval and power figure is a library call.

- `BlockModel`: configuration means with the seed as a block and a pooled residual (statsmodels
  OLS); its contrasts are the effect of a level against its reference with a t interval at any
  confidence;
- `seeds_for_power`: the seeds at which the observed spread gives power 0.8 at the smallest
  effect that matters (statsmodels' power classes);
- `family_confidence` / `adjust`: the interval level and adjusted p-values of a family of m
  comparisons, with one correction for both (Bonferroni or Šidák), so an interval excludes 0
  exactly when the adjusted p is below alpha;
- `interaction_test`: does one factor's effect depend on another's level (type-II ANOVA, statsmodels);
- `variance_shares`: each factor's share of the variance beside the seeds' share, with a
  bootstrap interval (scipy);
- failures: `mark_failures` (diverged, or within a margin of the dataset's majority-class rate),
  `failure_rate` (Wilson interval), `fisher_test`, `probability_of_improvement` (a failed run
  ranks below every trained one).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.formula.api import ols
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.proportion import proportion_confint

CORRECTIONS = ("bonferroni", "sidak")
DEFAULT_CHANCE_MARGIN = 0.05
POWER = 0.8


# --- comparisons in a block design ----------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """A contrast of configuration means (a level minus its reference, averaged over the cells
    it spans), in the metric's units. `unit_sd` is the spread of one seed's difference (what a
    power computation needs), `df` the residual degrees of freedom of the interval."""

    effect: float
    p: float
    unit_sd: float
    df: float
    result: object  # statsmodels' ContrastResults, which gives intervals at any confidence

    def interval(self, confidence: float) -> tuple[float, float]:
        low, high = np.asarray(self.result.conf_int(alpha=1 - confidence)).ravel()
        return float(low), float(high)


class BlockModel:
    """value ~ C(configuration) + C(seed), by least squares (statsmodels): every configuration's
    mean, the seed as a block (seeds set initialisation and data order in every configuration,
    so runs with one seed share part of their noise), and one residual variance pooled over the
    configurations, which gives a t interval its degrees of freedom at few seeds. Without
    shared seeds (`block=None`) it is the one-way model of the configurations."""

    def __init__(self, frame: pd.DataFrame, factors: list[str], value: str, block: str | None):
        data = frame.dropna(subset=[value])
        self.keys = [tuple(row) for row in data[factors].itertuples(index=False)]
        self.labels = {key: i for i, key in enumerate(dict.fromkeys(self.keys))}
        y = data[value].astype(float).to_numpy()
        self.blocked = bool(block) and data[block].nunique() > 1
        # the design matrix of y ~ C(cell) [+ C(block)] in treatment coding, built directly: a
        # formula would cost patsy's parsing on every model, and the searcher fits one per round
        columns = [np.ones(len(y)), *_dummies([self.labels[k] for k in self.keys])]
        if self.blocked:
            columns += _dummies(data[block].astype(str).tolist())
        self.model = None
        if len(self.labels) >= 2 and len(y) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # rank deficiency (a missing run) is handled by the pseudo-inverse
                model = OLS(y, np.column_stack(columns)).fit()
            # no residual spread (beside float rounding): nothing to test against
            if model.df_resid >= 1 and model.mse_resid > 1e-12 * max(np.var(y, ddof=1) if len(y) > 1 else 0, 1e-12):
                self.model = model

    def contrast(self, pairs: list[tuple[tuple, tuple]]) -> Difference | None:
        """The mean over `pairs` of (configuration a minus configuration b); None where the
        model has no residual spread or a configuration has no run."""
        pairs = [(a, b) for a, b in pairs if a in self.labels and b in self.labels]
        if self.model is None or not pairs:
            return None
        weights = np.zeros(len(self.model.params))
        for a, b in pairs:
            for key, sign in ((a, 1.0), (b, -1.0)):
                # configuration i > 0 has column i; the first one's mean is the intercept, column 0
                if self.labels[key] > 0:
                    weights[self.labels[key]] += sign / len(pairs)
        result = self.model.t_test(weights)
        unit_sd = math.sqrt(self.model.mse_resid * 2 / len(pairs))
        return Difference(float(np.ravel(result.effect)[0]), float(np.ravel(result.pvalue)[0]), unit_sd,
                          float(self.model.df_resid), result)


def _dummies(values: list) -> list[np.ndarray]:
    """Treatment-coded indicator columns of `values`, the first level seen as the reference."""
    index = {}
    codes = np.array([index.setdefault(v, len(index)) for v in values])
    return [(codes == i).astype(float) for i in range(1, len(index))]


def family_confidence(alpha: float, m: int, correction: str = "bonferroni") -> float:
    """The confidence of each of m intervals so that all hold together at 1 - alpha."""
    if correction == "sidak":
        return (1 - alpha) ** (1 / max(m, 1))
    return 1 - alpha / max(m, 1)


def adjust(pvalues: list[float], correction: str = "bonferroni") -> np.ndarray:
    """Adjusted p-values for a family (statsmodels), NaN kept as NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    valid = ~np.isnan(p)
    if valid.any():
        out[valid] = multipletests(p[valid], method=correction)[1]
    return out


def seeds_for_power(smallest_effect: float, unit_sd: float, alpha: float) -> float:
    """Seeds at which a two-sided t-test at `alpha` of a difference whose one-seed spread is
    `unit_sd` has power 0.8 for a difference of `smallest_effect` (statsmodels; its n - 1
    degrees of freedom make this a little conservative beside a pooled residual)."""
    if not unit_sd > 0:
        return float("nan")
    effect_size = smallest_effect / unit_sd
    power = TTestPower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the solver warns near its bounds; 2 is the floor anyway
        try:
            n = power.solve_power(effect_size=effect_size, alpha=alpha, power=POWER, alternative="two-sided")
        except (ValueError, RuntimeError):
            return float("nan")
    n = float(np.atleast_1d(n)[0])
    return max(2.0, n) if math.isfinite(n) else float("nan")


# --- designs ---------------------------------------------------------------------------------

def _safe_columns(frame: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, dict]:
    names = {c: f"x{i}" for i, c in enumerate(columns)}
    data = frame[columns].rename(columns=names).copy()
    for c in names.values():
        data[c] = data[c].astype(str)
    return data, names


def interaction_test(frame: pd.DataFrame, a: str, b: str, value: str, others: list[str] = (),
                     block: str | None = None) -> tuple[float, float]:
    """F and p of the a x b interaction in value ~ a * b + others (+ block), type-II ANOVA.
    (nan, nan) where the design leaves no residual degrees of freedom or no variation."""
    columns = [a, b, *others, *([block] if block else [])]
    data, names = _safe_columns(frame.dropna(subset=[value]), columns)
    data["y"] = frame.loc[data.index, value].astype(float)
    if data[names[a]].nunique() < 2 or data[names[b]].nunique() < 2 or np.ptp(data["y"]) == 0:
        return float("nan"), float("nan")
    terms = [f"C({names[a]}) * C({names[b]})", *[f"C({names[c]})" for c in [*others, *([block] if block else [])]
                                                if data[names[c]].nunique() > 1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank-deficient designs (a missing run) still give type-II tests
        model = ols("y ~ " + " + ".join(terms), data=data).fit()
        if model.df_resid < 1:
            return float("nan"), float("nan")
        table = anova_lm(model, typ=2)
    row = table.loc[f"C({names[a]}):C({names[b]})"]
    return float(row["F"]), float(row["PR(>F)"])


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
    diverged, or its `accuracy` is within `margin` of chance, the majority-class rate of the
    dataset's test set (`chance_acc`, written by the export; results without it only count
    divergence)."""
    out = trials[trials["status"].isin(["completed", "diverged"])].copy()
    if accuracy not in out:
        accuracy = "final_val_acc"
    chance = out["chance_acc"] if "chance_acc" in out else pd.Series(np.nan, index=out.index)
    near_chance = (out[accuracy].isna() | (out[accuracy] <= chance + margin)) & chance.notna()
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
