"""The findings: for each factor of the study, within each dataset, is each level better,
worse, practically equivalent or still undecided against the baseline, by how much, and
how many seeds would decide it.

How a comparison is made (the design comes from analysis.design):
- The unit is one run (one seed of one configuration). Runs that errored or did not finish
  are not results: they are left out and counted. A run that diverged or stayed at chance
  failed: the effects are estimated on the runs that trained, and each comparison counts its
  failures beside (with Fisher's exact test), as does the failures table.
- Within each stratum (dataset), the factor's interaction with every other factor is tested
  (type-II ANOVA with the seed as a block). Where it interacts (p < alpha), the factor is
  compared within each level of the other (simple effects); otherwise averaged over it.
- The effect of a level is a contrast of configuration means in metric ~ configuration + seed
  (stats.BlockModel): the configurations of the level against those of the reference that
  differ only in this factor, averaged over the levels of the factors it is averaged over.
  Seeds are blocks (they set initialisation and data order in every configuration), and the
  residual variance is pooled over the stratum's configurations; with two configurations this
  is the paired t-test. Without shared seeds the block term is dropped.
- Each factor is one family: with m comparisons, every interval is at 1 - alpha/m (Bonferroni;
  or Šidák) and p-values are adjusted the same way, so an interval excludes 0 exactly when the
  adjusted p is below alpha.
- Verdict: `better` / `worse` when the interval excludes 0 (in the metric's better direction;
  the sentence says when the effect is smaller than the smallest effect that matters);
  `equivalent` when the interval holds 0 and lies inside +/- the smallest effect; else
  `inconclusive`; `not testable` when there is nothing to estimate a spread from.
- `seeds_needed`: the seeds per configuration at which a t-test at the family's
  per-comparison level has power 0.8 for the smallest effect, given the spread observed; for
  an inconclusive comparison at least one seed more than it has.
- Optuna searches and one-seed studies get no tests (no seed-to-seed spread to test against):
  their rows are `not testable`; the report shows parameter importances instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import stats
from analysis.design import Design, study_design
from analysis.importance import parameter_importances
from analysis.load import Results, load_results
from trainables.errors import UserError

FINDINGS_COLUMNS = ["metric", "factor", "level", "reference", "stratum", "n", "n_ref", "effect", "ci_low", "ci_high",
                    "p_adjusted", "verdict", "seeds_needed"]
VERDICTS = ("better", "worse", "equivalent", "inconclusive", "not testable")
# metric -> whether higher is better; accuracies are fractions, reported in points (x 100)
METRICS = {"test_acc": True, "final_val_acc": True, "best_val_acc": True, "test_loss": False, "final_val_loss": False}
DEFAULT_METRIC = "test_acc"
DEFAULT_SMALLEST_EFFECT = 0.01
DEFAULT_ALPHA = 0.05


@dataclass
class Analysis:
    """Everything the findings rest on; `findings()` is the table users act on."""

    metric: str
    smallest_effect: float
    alpha: float
    correction: str
    margin: float  # a run within this much of chance accuracy failed
    design: Design
    runs: pd.DataFrame  # runs with a result, marked with did_not_train / failure
    excluded: dict  # status -> runs left out (error, unfinished)
    comparisons: pd.DataFrame  # the findings columns plus detail (paired, df, sd, p, finding, ...)
    interactions: pd.DataFrame
    shares: pd.DataFrame
    failures: pd.DataFrame
    importances: pd.DataFrame = field(default_factory=pd.DataFrame)
    untestable_because: str | None = None  # why the study gets no tests at all (Optuna, one seed)
    looks: int = 1  # planned looks of a seeds-on-demand study: each is tested at alpha / looks

    def findings(self) -> pd.DataFrame:
        return self.comparisons[FINDINGS_COLUMNS].reset_index(drop=True)


def findings(results: Results | str | Path, metric: str = DEFAULT_METRIC, baseline: dict | None = None,
             smallest_effect: float | None = None, **options) -> pd.DataFrame:
    """One row per comparison (columns FINDINGS_COLUMNS): the answer to the study's question.

    `results` is a results folder or what `analysis.load.load_results` returned; `baseline`
    maps a factor to the level its others are compared with ({"activation": "gelu"})."""
    if not isinstance(results, Results):
        results = load_results(results)
    return analyse(results, metric, baseline, smallest_effect, **options).findings()


# --- the analysis -----------------------------------------------------------------------------

def _check(results: Results, metric: str, smallest_effect: float, alpha: float, correction: str) -> None:
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    if metric not in results.trials:
        raise UserError(f"the results have no {metric} column; choose one of: "
                        f"{', '.join(m for m in METRICS if m in results.trials)}")
    if not (isinstance(smallest_effect, (int, float)) and math.isfinite(smallest_effect) and smallest_effect >= 0):
        raise UserError(f"--smallest-effect must be a non-negative number in the metric's units, got {smallest_effect}; "
                        "e.g. 0.01 for one accuracy point")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be between 0 and 1, got {alpha}; e.g. 0.05")
    if correction not in stats.CORRECTIONS:
        raise UserError(f"unknown correction {correction!r}; choose one of: {', '.join(stats.CORRECTIONS)}")


def analyse(results: Results, metric: str = DEFAULT_METRIC, baseline: dict | None = None,
            smallest_effect: float | None = None, alpha: float = DEFAULT_ALPHA,
            correction: str = "bonferroni", margin: float = stats.DEFAULT_CHANCE_MARGIN, looks: int | None = None,
            detail: bool = True) -> Analysis:
    """The comparisons of `results` and what they rest on.

    `smallest_effect` and `looks` default to what the study ran with (a seeds-on-demand study
    records both; see study.seeds_on_demand), else 0.01 and one look. With L looks, each
    factor's family is tested at alpha / L, the share of alpha each planned look spends.
    `detail=False` skips the variance shares, failure table and importances (the findings
    alone, as the seeds-on-demand searcher needs them after every round)."""
    if smallest_effect is None:
        smallest_effect = results.run.get("smallest_effect", DEFAULT_SMALLEST_EFFECT)
    looks = looks or results.run.get("looks") or 1
    _check(results, metric, smallest_effect, alpha, correction)
    design = study_design(results, {k: str(v) for k, v in (baseline or {}).items()})
    trials = results.trials
    excluded = {s: int((trials["status"] == s).sum()) for s in ("error", "unfinished")}
    runs = stats.mark_failures(trials, margin=margin)
    names = design.names
    untestable = None
    if design.search == "optuna":
        untestable = "an Optuna search samples configurations adaptively, one seed each: nothing to test over seeds"
    elif _one_seed_each(runs, [*design.strata, *names]):
        untestable = "each configuration has one seed: no seed-to-seed spread to test against"

    comparisons, interactions, shares = [], [], []
    for stratum_key, data in _strata(runs, design.strata):
        found = _compare_stratum(data, design, stratum_key, metric, alpha, testable=untestable is None)
        comparisons += found["comparisons"]
        interactions += found["interactions"]
        if untestable is None and names and detail:
            pairs = [(r["factor"], r["other"]) for r in found["interactions"] if r["simple_effects"]]
            trained = data[~data["did_not_train"]]
            table = stats.variance_shares(trained, names, metric, interactions=_unique_pairs(pairs))
            shares.append(table.assign(stratum=_label(stratum_key, {})))
    table = _decide(pd.DataFrame(comparisons, columns=_COMPARISON_COLUMNS), metric, smallest_effect, alpha / looks,
                    correction)
    importances = pd.DataFrame()
    if untestable and len(runs) and detail:
        importances = parameter_importances(runs, design.searched(runs), metric, METRICS[metric],
                                            categorical=set(names))
    return Analysis(metric, smallest_effect, alpha, correction, margin, design, runs, excluded, table,
                    pd.DataFrame(interactions, columns=["stratum", "factor", "other", "F", "p", "simple_effects"]),
                    pd.concat(shares, ignore_index=True) if shares else pd.DataFrame(
                        columns=["stratum", "source", "share", "ci_low", "ci_high"]),
                    _failures(runs, design, metric) if detail else pd.DataFrame(), importances, untestable, looks)


def _one_seed_each(runs: pd.DataFrame, config_columns: list[str]) -> bool:
    if runs.empty or not config_columns:
        return len(runs) <= 1
    return runs.groupby(config_columns, dropna=False)["seed"].nunique().max() <= 1


def _strata(runs: pd.DataFrame, strata: tuple[str, ...]):
    if not strata:
        yield {}, runs
        return
    for key, data in runs.groupby(list(strata), sort=False):
        yield dict(zip(strata, key)), data  # grouped by a list: keys are tuples


def _label(stratum: dict, cell: dict) -> str:
    parts = [f"{k}={v}" for k, v in {**stratum, **cell}.items()]
    return ", ".join(parts) if parts else "all"


def _unique_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen, out = set(), []
    for a, b in pairs:
        if frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            out.append((a, b))
    return out


_COMPARISON_COLUMNS = ["metric", "factor", "level", "reference", "stratum", "n", "n_ref", "effect", "design",
                       "seeds", "failed", "failed_ref", "runs", "runs_ref", "note", "configurations", "difference"]


def _compare_stratum(data: pd.DataFrame, design: Design, stratum: dict, metric: str, alpha: float,
                     testable: bool) -> dict:
    """Every comparison of one stratum. The effects are estimated on the runs that trained
    (a failed run's accuracy says it failed, not how good the configuration is when it trains);
    failures are counted beside each comparison and tested in their own table."""
    comparisons, interactions = [], []
    names = design.names
    trained = data[~data["did_not_train"]].dropna(subset=[metric])
    varying = [f.name for f in design.factors if trained[f.name].nunique() > 1]
    # the seed is a block where configurations share seeds (every grid study)
    block = "seed" if trained.groupby("seed").size().max() > 1 else None
    model = stats.BlockModel(trained, names, metric, block) if testable and names else None
    for factor in design.factors:
        others = [g for g in varying if g != factor.name]
        interacting = []
        if testable and factor.name in varying:
            for other in others:
                f_stat, p = stats.interaction_test(trained, factor.name, other, metric,
                                                   others=[o for o in others if o != other], block=block)
                present = bool(p < alpha)
                interactions.append({"stratum": _label(stratum, {}), "factor": factor.name, "other": other,
                                     "F": f_stat, "p": p, "simple_effects": present})
                if present:
                    interacting.append(other)
        averaged = [g for g in names if g != factor.name and g not in interacting]
        cells = data.groupby(interacting, sort=False) if interacting else [((), data)]
        for cell_key, cell in cells:
            fixed = dict(zip(interacting, cell_key))
            reference = cell[cell[factor.name] == factor.baseline]
            for level in factor.levels:
                if level == factor.baseline:
                    continue
                runs = cell[cell[factor.name] == level]
                row = _compare(runs, reference, factor.name, level, factor.baseline, averaged, names, metric, model)
                if not testable:
                    row["note"] = ""
                # the configurations this comparison rests on, as (*strata, *factors) tuples
                involved = pd.concat([runs, reference])[[*design.strata, *names]].drop_duplicates()
                row.update(metric=metric, factor=factor.name, level=level, reference=factor.baseline,
                           stratum=_label(stratum, fixed),
                           configurations=[tuple(r) for r in involved.itertuples(index=False)])
                comparisons.append(row)
    return {"comparisons": comparisons, "interactions": interactions}


def _compare(runs: pd.DataFrame, reference: pd.DataFrame, factor: str, level, baseline, averaged: list[str],
             names: list[str], metric: str, model: stats.BlockModel | None) -> dict:
    """One level against the reference: the contrast of their configuration means, averaged
    over the levels of the factors it is averaged over, seed-blocked."""
    ok, ok_ref = runs[~runs["did_not_train"]].dropna(subset=[metric]), reference[~reference["did_not_train"]].dropna(subset=[metric])
    out = {"n": len(ok), "n_ref": len(ok_ref), "runs": len(runs), "runs_ref": len(reference),
           "failed": int(runs["did_not_train"].sum()), "failed_ref": int(reference["did_not_train"].sum()),
           "seeds": min(ok["seed"].nunique(), ok_ref["seed"].nunique())}
    # configurations of the level and of the reference that differ only in this factor
    references = {tuple(r) for r in ok_ref[names].itertuples(index=False)}
    pairs = []
    for key in dict.fromkeys(tuple(r) for r in ok[names].itertuples(index=False)):
        partner = tuple(baseline if n == factor else v for n, v in zip(names, key))
        if partner in references:
            pairs.append((key, partner))
    out["effect"] = float(ok[metric].mean() - ok_ref[metric].mean()) if len(ok) and len(ok_ref) else np.nan
    difference = model.contrast(pairs) if model is not None else None
    if difference is not None:
        out["effect"] = difference.effect
    out["design"] = "" if difference is None else "seed-blocked" if model.blocked else "unblocked"
    out["difference"] = difference
    if not len(runs) or not len(reference):
        out["note"] = "no runs of " + ("this level" if not len(runs) else "the reference")
    elif not pairs:
        out["note"] = "no runs that trained to compare"
    else:
        out["note"] = "" if difference is not None else "no spread between seeds to test against"
    return out


def _decide(table: pd.DataFrame, metric: str, smallest_effect: float, alpha: float, correction: str) -> pd.DataFrame:
    """Family-wise intervals, adjusted p, verdict and seeds needed; one family per factor."""
    higher_is_better = METRICS[metric]
    for column in ("ci_low", "ci_high", "p", "p_adjusted", "unit_sd", "df", "seeds_needed", "p_failures"):
        table[column] = np.nan
    table["verdict"] = "not testable"
    for _, family in table.groupby("factor", sort=False):
        tested = [i for i in family.index if table.at[i, "difference"] is not None]
        if not tested:
            continue
        confidence = stats.family_confidence(alpha, len(tested), correction)
        adjusted = stats.adjust([table.at[i, "difference"].p for i in tested], correction)
        for i, p_adjusted in zip(tested, adjusted):
            difference = table.at[i, "difference"]
            low, high = difference.interval(confidence)
            table.loc[i, ["ci_low", "ci_high", "p", "p_adjusted", "unit_sd", "df"]] = [
                low, high, difference.p, p_adjusted, difference.unit_sd, difference.df]
            verdict = _verdict(low, high, smallest_effect, higher_is_better)
            table.at[i, "verdict"] = verdict
            needed = stats.seeds_for_power(smallest_effect, difference.unit_sd, 1 - confidence)
            if math.isfinite(needed):
                seeds = math.ceil(needed)
                if verdict == "inconclusive":
                    seeds = max(seeds, int(table.at[i, "seeds"]) + 1)
                table.at[i, "seeds_needed"] = seeds
    table["p_failures"] = [stats.fisher_test(r["failed"], r["runs"], r["failed_ref"], r["runs_ref"])
                           for _, r in table.iterrows()]
    table["finding"] = [_sentence(row, metric, smallest_effect, alpha) for _, row in table.iterrows()]
    table["seeds_needed"] = table["seeds_needed"].astype("Int64")  # a count; empty where not testable
    return table.drop(columns="difference")


def _verdict(low: float, high: float, smallest_effect: float, higher_is_better: bool) -> str:
    # a real difference is reported as one even when it is smaller than what matters (the
    # sentence says so); equivalence is for intervals that hold 0 and stay inside the band
    if low > 0:
        return "better" if higher_is_better else "worse"
    if high < 0:
        return "worse" if higher_is_better else "better"
    if -smallest_effect < low and high < smallest_effect:
        return "equivalent"
    return "inconclusive"


def _amount(value: float, metric: str) -> str:
    return f"{100 * value:.1f} points" if metric.endswith("acc") else f"{value:.3g}"


def signed(value: float, metric: str) -> str:
    """A difference as a reader sees it: accuracy in signed points, other metrics in their units."""
    if not math.isfinite(value):
        return ""
    return f"{100 * value:+.1f}" if metric.endswith("acc") else f"{value:+.3g}"


def _sentence(row: pd.Series, metric: str, smallest_effect: float, alpha: float) -> str:
    """The comparison in words a reader can act on."""
    where = "" if row["stratum"] == "all" else f" ({row['stratum']})"
    pair = f"{row['level']} vs {row['reference']}{where}"
    interval = f"[{signed(row['ci_low'], metric)}, {signed(row['ci_high'], metric)}]"
    verdict = row["verdict"]
    if verdict in ("better", "worse"):
        text = f"{pair}: {verdict} by {_amount(abs(row['effect']), metric)} {interval}"
        if abs(row["effect"]) < smallest_effect:
            text += f", less than the smallest effect that matters ({_amount(smallest_effect, metric)})"
    elif verdict == "equivalent":
        text = f"{pair}: equivalent, within ±{_amount(smallest_effect, metric)} {interval}"
    elif verdict == "inconclusive":
        text = (f"{pair}: undecided, {signed(row['effect'], metric)} {interval}; "
                f"about {int(row['seeds_needed'])} seeds per configuration would decide it"
                if math.isfinite(row["seeds_needed"]) else f"{pair}: undecided")
    else:
        effect = "" if not math.isfinite(row["effect"]) else f" (observed {signed(row['effect'], metric)})"
        text = f"{pair}: not testable{effect}" + (f": {row['note']}" if row["note"] else "")
    if row["failed"] or row["failed_ref"]:
        counts = f"{row['failed']} of {row['runs']} runs vs {row['failed_ref']} of {row['runs_ref']}"
        if row["p_failures"] < alpha:
            more = "more" if row["failed"] / row["runs"] > row["failed_ref"] / row["runs_ref"] else "less"
            text += f"; but it fails {more} often: {counts} (Fisher p = {row['p_failures']:.2g})"
        else:
            text += f"; failed runs (left out of the effect): {counts}"
    return text


# --- failures ---------------------------------------------------------------------------------

def _failures(runs: pd.DataFrame, design: Design, metric: str) -> pd.DataFrame:
    """Per stratum, factor and level: failure rate (Wilson 95%), Fisher's exact test against the
    reference level (one test for a two-level factor), the metric of the runs that trained, and
    the probability that a run beats a reference run when a failed run ranks below every trained
    one (paired by seed and the other factors' levels where every run has its partner)."""
    rows = []
    for stratum_key, data in _strata(runs, design.strata):
        ranked = data[metric].where(~data["did_not_train"], -np.inf if METRICS[metric] else np.inf)
        ranked = ranked if METRICS[metric] else -ranked
        data = data.assign(_ranked=ranked)
        for factor in design.factors:
            others = [g for g in design.names if g != factor.name]
            reference = data[data[factor.name] == factor.baseline]
            family = []
            for level in factor.levels:
                runs_of = data[data[factor.name] == level]
                n, failed = len(runs_of), int(runs_of["did_not_train"].sum())
                rate, low, high = stats.failure_rate(failed, n)
                row = {"stratum": _label(stratum_key, {}), "factor": factor.name, "level": level, "n": n,
                       "failed": failed, "rate": rate, "rate_low": low, "rate_high": high,
                       "trained_mean": runs_of.loc[~runs_of["did_not_train"], metric].mean(),
                       "p_fisher": np.nan, "p_improvement": np.nan}
                if level != factor.baseline:
                    n_ref, failed_ref = len(reference), int(reference["did_not_train"].sum())
                    row["p_fisher"] = stats.fisher_test(failed, n, failed_ref, n_ref)
                    keys = [*others, "seed"]
                    pairs = runs_of[[*keys, "_ranked"]].merge(reference[[*keys, "_ranked"]], on=keys,
                                                              suffixes=("", "_ref"))
                    paired = len(pairs) == n == n_ref
                    x, y = (pairs["_ranked"], pairs["_ranked_ref"]) if paired else (runs_of["_ranked"], reference["_ranked"])
                    row["p_improvement"] = stats.probability_of_improvement(x.to_numpy(), y.to_numpy(), paired)
                family.append(row)
            adjusted = stats.adjust([r["p_fisher"] for r in family])
            for row, p in zip(family, adjusted):
                row["p_fisher_adjusted"] = p
            rows += family
    return pd.DataFrame(rows, columns=["stratum", "factor", "level", "n", "failed", "rate", "rate_low", "rate_high",
                                       "p_fisher", "p_fisher_adjusted", "trained_mean", "p_improvement"])
