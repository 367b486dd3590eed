"""The statistics the findings are made of; every test, interval and power figure is a library call.

- `paired_difference` / `welch_difference`: the effect of a level against its reference with a
  t-based interval at a chosen confidence (scipy's t-tests), on per-block differences where the
  runs are paired (same seed, same other factors), by Welch's t where they are not;
- `seeds_for_power`: the pairs (or runs per level) at which the observed spread gives power 0.8
  at the smallest effect that matters (statsmodels' power classes);
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
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.stats.proportion import proportion_confint

CORRECTIONS = ("bonferroni", "sidak")
DEFAULT_CHANCE_MARGIN = 0.05
POWER = 0.8


# --- one comparison --------------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """A level minus its reference, in the metric's units; `sd` is the spread the interval uses
    (of the paired differences, or the pooled runs' for Welch), `df` its degrees of freedom."""

    effect: float
    p: float
    sd: float
    df: float
    result: object  # scipy's TtestResult, which gives intervals at any confidence

    def interval(self, confidence: float) -> tuple[float, float]:
        ci = self.result.confidence_interval(confidence_level=confidence)
        return float(ci.low), float(ci.high)


def paired_difference(differences: np.ndarray) -> Difference | None:
    """One-sample t on per-block differences (level run minus its paired reference run).
    None where it cannot be estimated: fewer than 2 pairs, or differences that do not vary."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or np.ptp(d) == 0:
        return None
    result = stats.ttest_1samp(d, 0.0)
    return Difference(float(d.mean()), float(result.pvalue), float(d.std(ddof=1)), float(result.df), result)


def welch_difference(x: np.ndarray, y: np.ndarray) -> Difference | None:
    """Welch's t for unpaired runs of a level (x) and its reference (y)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or len(y) < 2 or np.ptp(x) + np.ptp(y) == 0:
        return None
    result = stats.ttest_ind(x, y, equal_var=False)
    pooled = math.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
    return Difference(float(x.mean() - y.mean()), float(result.pvalue), pooled, float(result.df), result)


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


def seeds_for_power(smallest_effect: float, sd: float, alpha: float, paired: bool) -> float:
    """Pairs (paired) or runs per level (unpaired) at which a two-sided t-test at `alpha` has
    power 0.8 for a difference of `smallest_effect`, given the observed spread `sd`."""
    if not sd > 0:
        return float("nan")
    effect_size = smallest_effect / sd
    power = TTestPower() if paired else TTestIndPower()
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
    model = ols("y ~ " + " + ".join(terms), data=data).fit()
    if model.df_resid < 1:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = anova_lm(model, typ=2)
    row = table.loc[f"C({names[a]}):C({names[b]})"]
    return float(row["F"]), float(row["PR(>F)"])


def variance_shares(frame: pd.DataFrame, factors: list[str], value: str, interactions: list[tuple[str, str]] = (),
                    n_resamples: int = 199, seed: int = 0) -> pd.DataFrame:
    """Each factor's (and each listed interaction's) share of the total sum of squares of
    `value`, beside the seeds' share (what is left: runs of one configuration differ only in
    their seed), from value ~ factors + interactions (type-II ANOVA); 95% intervals by a
    percentile bootstrap over runs (scipy.stats.bootstrap)."""
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
                table = anova_lm(ols(formula, data=sample).fit(), typ=2)
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
