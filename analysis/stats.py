"""Descriptive statistics of a study: each factor's share of the variance beside the seeds'
(`variance_shares`, with a bootstrap interval, statsmodels and scipy), per-level summaries,
status counts, optimizer summaries and learning curves; `adjust` for a family of p-values
(statsmodels). The findings' model, testing procedure, power and failures have modules of
their own: analysis.model, analysis.testing, analysis.power, analysis.failures."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests


def adjust(pvalues: list[float], method: str = "bonferroni") -> np.ndarray:
    """p-values adjusted for the family given (statsmodels' multipletests), NaN kept as NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    valid = ~np.isnan(p)
    if valid.any():
        out[valid] = multipletests(p[valid], method=method)[1]
    return out


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
