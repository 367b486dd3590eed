"""Which differences are real: omnibus and pairwise tests, effect sizes, corrections, failure rates.

Every test is a library call (scipy, statsmodels, pingouin); this module picks
the groups, guards the degenerate cases and lays results out as tables. A group
with fewer than two runs, values that do not vary, or only failed runs gives a
row marked "not testable: <why>" with NaN statistics, never a NaN passed off as
a result.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pingouin as pg
from scipy import stats
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.oneway import anova_oneway

from trainables.data import DATASETS
from trainables.registry import TRAINABLES

CORRECTIONS = {"holm": "holm", "bh": "fdr_bh", "fdr_bh": "fdr_bh", "bonferroni": "bonferroni"}
DEFAULT_CHANCE_MARGIN = 0.05


def chance_accuracy(trainable: str) -> float:
    return 1.0 / DATASETS[TRAINABLES[trainable].dataset].num_classes


def mark_failures(trials: pd.DataFrame, margin: float = DEFAULT_CHANCE_MARGIN, metric: str = "final_val_acc") -> pd.DataFrame:
    """Add `did_not_train` and `failure`: diverged, or final accuracy within `margin` of chance.

    Errored trials have no result and are left out (they are counted in the status table).
    """
    out = trials[trials["status"] != "error"].copy()
    chance = out["trainable"].map(chance_accuracy)
    near_chance = out[metric].isna() | (out[metric] <= chance + margin)
    diverged = out["status"] == "diverged"
    out["chance"] = chance
    failure = pd.Series([None] * len(out), index=out.index, dtype=object)
    failure[near_chance] = "near chance"
    failure[diverged] = "diverged"
    out["failure"] = failure
    out["did_not_train"] = diverged | near_chance
    return out


def levels(frame: pd.DataFrame, factor: str) -> list:
    return sorted(frame[factor].dropna().unique().tolist(), key=lambda v: (str(type(v)), v))


# The level other levels are compared with, when the study has it: the usual default of each factor.
PREFERRED_BASELINES = {"activation": "relu", "batchnorm": False, "optimizer": "sgd", "regularization": "none",
                       "init": "default"}


def baseline_for(frame: pd.DataFrame, factor: str):
    present = levels(frame, factor)
    preferred = PREFERRED_BASELINES.get(factor)
    return preferred if preferred in present else present[0]


def _groups(frame: pd.DataFrame, factor: str, value: str) -> dict:
    return {level: frame.loc[frame[factor] == level, value].dropna().to_numpy(dtype=float) for level in levels(frame, factor)}


def _why_not_testable(groups: list[np.ndarray]) -> str | None:
    if len(groups) < 2:
        return "not testable: fewer than 2 levels with results"
    small = [len(g) for g in groups if len(g) < 2]
    if small:
        return "not testable: a group has fewer than 2 runs"
    if np.ptp(np.concatenate(groups)) == 0:
        return "not testable: all values are equal"
    return None


def summary(frame: pd.DataFrame, factors: list[str], value: str) -> pd.DataFrame:
    """mean, std, median, min, max and n of `value` per level (combination) of `factors`."""
    grouped = frame.groupby(factors, dropna=False)[value]
    table = grouped.agg(["mean", "std", "median", "min", "max", "count"]).rename(columns={"count": "n"})
    return table.reset_index()


def omnibus(frame: pd.DataFrame, factor: str, value: str) -> pd.DataFrame:
    """Kruskal-Wallis, one-way ANOVA and Welch's ANOVA across the levels of `factor`."""
    groups = {k: v for k, v in _groups(frame, factor, value).items() if len(v)}
    arrays = list(groups.values())
    why = _why_not_testable(arrays)
    rows = []
    for test in ("Kruskal-Wallis H", "one-way ANOVA F", "Welch ANOVA F"):
        row = {"factor": factor, "value": value, "test": test, "k": len(arrays), "n": int(sum(map(len, arrays))),
               "statistic": np.nan, "p": np.nan, "note": why or ""}
        if why is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                if test.startswith("Kruskal"):
                    result = stats.kruskal(*arrays)
                elif test.startswith("one-way"):
                    result = stats.f_oneway(*arrays)
                else:
                    values = np.concatenate(arrays)
                    labels = np.concatenate([[i] * len(a) for i, a in enumerate(arrays)])
                    result = anova_oneway(values, labels, use_var="unequal")
            row["statistic"], row["p"] = float(result.statistic), float(result.pvalue)
            if not np.isfinite(row["p"]):  # e.g. Welch with a zero-variance group
                row["note"] = "not testable: a group has zero variance"
                row["statistic"] = row["p"] = np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def two_way_anova(frame: pd.DataFrame, a: str, b: str, value: str) -> pd.DataFrame:
    """Type-II two-way ANOVA with interaction: value ~ C(a) * C(b) (statsmodels)."""
    data = frame[[a, b, value]].dropna().copy()
    data[a], data[b] = data[a].astype(str), data[b].astype(str)
    cells = data.groupby([a, b])[value]
    why = None
    if data[a].nunique() < 2 or data[b].nunique() < 2:
        why = "not testable: a factor has fewer than 2 levels"
    elif (cells.size() < 2).any() or len(cells) < data[a].nunique() * data[b].nunique():
        why = "not testable: a cell has fewer than 2 runs"
    elif np.ptp(data[value].to_numpy()) == 0:
        why = "not testable: all values are equal"
    if why:
        return pd.DataFrame([{"term": f"{a} x {b}", "sum_sq": np.nan, "df": np.nan, "F": np.nan, "p": np.nan, "note": why}])
    data = data.rename(columns={a: "factor_a", b: "factor_b", value: "y"})
    model = ols("y ~ C(factor_a) * C(factor_b)", data=data).fit()
    table = anova_lm(model, typ=2).reset_index().rename(columns={"index": "term", "PR(>F)": "p"})
    table["term"] = table["term"].replace({"C(factor_a)": a, "C(factor_b)": b,
                                           "C(factor_a):C(factor_b)": f"{a} x {b}", "Residual": "residual"})
    table["note"] = ""
    return table[["term", "sum_sq", "df", "F", "p", "note"]]


def _bootstrap_ci(x: np.ndarray, y: np.ndarray, seed: int, n_resamples: int) -> tuple[float, float]:
    diff = float(np.mean(x) - np.mean(y))
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return diff, diff
    result = stats.bootstrap((x, y), lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
                             vectorized=True, paired=False, n_resamples=n_resamples, confidence_level=0.95,
                             method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def correct(pvalues: pd.Series, method: str = "holm") -> pd.Series:
    """Multiple-comparison correction over the non-NaN p-values (statsmodels)."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; choose one of: {', '.join(CORRECTIONS)}")
    out = pd.Series(np.nan, index=pvalues.index)
    valid = pvalues.notna()
    if valid.any():
        out[valid] = multipletests(pvalues[valid].to_numpy(), method=CORRECTIONS[method])[1]
    return out


def pairwise(frame: pd.DataFrame, factor: str, value: str, baseline=None, correction: str = "holm",
             n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mann-Whitney U and Welch's t for each pair (or each level vs `baseline`), corrected,
    with Cohen's d, Hedges' g, Cliff's delta, common-language effect size and a bootstrap 95% CI
    of the mean difference (level minus reference)."""
    groups = _groups(frame, factor, value)
    if baseline is not None and baseline not in groups:
        raise ValueError(f"baseline {baseline!r} is not a level of {factor}; levels: {', '.join(map(str, groups))}")
    pairs = ([(level, baseline) for level in groups if level != baseline] if baseline is not None
             else list(itertools.combinations(groups, 2)))
    rows = []
    for level, reference in pairs:
        x, y = groups[level], groups[reference]
        row = {"factor": factor, "value": value, "level": level, "reference": reference, "n": len(x), "n_ref": len(y),
               "mean": np.mean(x) if len(x) else np.nan, "mean_ref": np.mean(y) if len(y) else np.nan}
        why = _why_not_testable([x, y])
        keys = ["mean_diff", "ci_low", "ci_high", "mwu_U", "p_mwu", "welch_t", "p_welch", "cohen_d", "hedges_g",
                "cliffs_delta", "cles"]
        row.update({k: np.nan for k in keys})
        row["note"] = why or ""
        if why is None:
            row["mean_diff"] = float(np.mean(x) - np.mean(y))
            row["ci_low"], row["ci_high"] = _bootstrap_ci(x, y, seed, n_resamples)
            mwu = stats.mannwhitneyu(x, y, alternative="two-sided")
            row["mwu_U"], row["p_mwu"] = float(mwu.statistic), float(mwu.pvalue)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                welch = stats.ttest_ind(x, y, equal_var=False)
            if np.isfinite(welch.pvalue):
                row["welch_t"], row["p_welch"] = float(welch.statistic), float(welch.pvalue)
            else:
                row["note"] = "Welch's t not testable: both groups have zero variance"
            if np.ptp(x) + np.ptp(y) > 0:
                row["cohen_d"] = float(pg.compute_effsize(x, y, eftype="cohen"))
                row["hedges_g"] = float(pg.compute_effsize(x, y, eftype="hedges"))
            effect = pg.mwu(x, y, alternative="two-sided")
            row["cliffs_delta"] = float(effect["RBC"].iloc[0])  # rank-biserial = Cliff's delta for two samples
            row["cles"] = float(effect["CLES"].iloc[0])
        rows.append(row)
    table = pd.DataFrame(rows, columns=["factor", "value", "level", "reference", "n", "n_ref", "mean", "mean_ref",
                                        "mean_diff", "ci_low", "ci_high", "mwu_U", "p_mwu", "welch_t", "p_welch",
                                        "cohen_d", "hedges_g", "cliffs_delta", "cles", "note"])
    table["p_mwu_corrected"] = correct(table["p_mwu"], correction)
    table["p_welch_corrected"] = correct(table["p_welch"], correction)
    table["correction"] = correction
    return table


def failure_rates(marked: pd.DataFrame, factor: str | list[str], correction: str = "holm") -> pd.DataFrame:
    """Did-not-train counts per level, each level against all others with Fisher's exact test."""
    factors = [factor] if isinstance(factor, str) else list(factor)
    key = marked[factors].astype(str).agg(" / ".join, axis=1)
    rows = []
    total_failed, total = int(marked["did_not_train"].sum()), len(marked)
    for level in sorted(key.unique()):
        inside = marked[key == level]
        failed, n = int(inside["did_not_train"].sum()), len(inside)
        rest_failed, rest_n = total_failed - failed, total - n
        row = {"factor": " x ".join(factors), "level": level, "n": n, "failed": failed,
               "rate": failed / n if n else np.nan, "rate_rest": rest_failed / rest_n if rest_n else np.nan,
               "odds_ratio": np.nan, "p_fisher": np.nan, "note": ""}
        if rest_n == 0:
            row["note"] = "not testable: only one level"
        elif total_failed in (0, total):
            row["note"] = "not testable: " + ("no run failed" if total_failed == 0 else "every run failed")
        else:
            odds, p = stats.fisher_exact([[failed, n - failed], [rest_failed, rest_n - rest_failed]])
            row["odds_ratio"], row["p_fisher"] = float(odds), float(p)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["p_fisher_corrected"] = correct(table["p_fisher"], correction)
    return table


def status_counts(trials: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    table = trials.groupby(factors, dropna=False)["status"].value_counts().unstack(fill_value=0)
    for status in ("completed", "diverged", "error"):
        if status not in table.columns:
            table[status] = 0
    return table.reset_index()


def optimizer_summary(trials: pd.DataFrame, epochs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Speed, robustness, stability and generalization gap per optimizer setting (DeepOBS-style)."""
    done = trials[trials["status"] != "error"]
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
