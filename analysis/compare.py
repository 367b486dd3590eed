"""The findings: for each factor of the study, within each dataset, is each level better,
worse, practically equivalent or still undecided against the baseline, by how much, and
how many seeds would decide it.

The method is stated once, in the documentation's Statistics page (docs/statistics.md); this
module carries it out: `analyse` marks failed runs (analysis.failures), fits each dataset's
block model (analysis.model), builds the dataset's testing graph (`_test_stratum`, weights
PRIMARY_WEIGHT and the rest) and runs it (analysis.testing), then decides each row
(`_decide_row`) and plans the seeds an open one needs (analysis.power). `findings` is the
table alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import stats
from analysis.design import Design, study_design
from analysis.failures import DEFAULT_CHANCE_MARGIN, failure_rate, fisher_test, mark_failures, probability_of_improvement
from analysis.importance import parameter_importances
from analysis.load import Results, load_results
from analysis.model import BlockModel
from analysis.outcomes import DEFAULT_OUTCOME, OUTCOMES, compared_scale, is_relative, outcome, outcome_values
from analysis.power import seeds_to_decide
from analysis.testing import Graph, Hypothesis, closed_test, look_alpha
from analysis.words import sentence
from common.errors import UserError

FINDINGS_COLUMNS = ["metric", "factor", "level", "reference", "stratum", "n", "n_ref", "effect", "ci_low", "ci_high",
                    "p_adjusted", "test_level", "verdict", "seeds_needed"]
VERDICTS = ("better", "worse", "equivalent", "inconclusive", "not testable")
# metric (an outcome, analysis.outcomes) -> whether higher is better
METRICS = {name: chosen.higher_is_better for name, chosen in OUTCOMES.items()}
DEFAULT_METRIC = DEFAULT_OUTCOME
DEFAULT_SMALLEST_EFFECT = 0.01
DEFAULT_ALPHA = 0.05


@dataclass
class Analysis:
    """Everything the findings rest on; `findings()` is the table users act on."""

    metric: str
    smallest_effect: float
    alpha: float
    margin: float  # a run that ended below chance + margin x (1 - chance) failed
    design: Design
    runs: pd.DataFrame  # runs with a result, marked with did_not_train / failure
    excluded: dict  # status -> runs left out (error, unfinished)
    comparisons: pd.DataFrame  # the findings columns plus detail (paired, df, sd, p, finding, ...)
    interactions: pd.DataFrame
    shares: pd.DataFrame
    failures: pd.DataFrame
    importances: pd.DataFrame = field(default_factory=pd.DataFrame)
    untestable_because: str | None = None  # why the study gets no tests at all (Optuna, one seed)
    looks: int = 1  # planned looks of a seeds-on-demand study (study.seeds_on_demand)
    family_alpha: float = float("nan")  # the share of alpha these results are tested at (their look's)
    extensions: int = 0  # times the study was extended with more seeds (study.extend)
    look: int = 1  # the look the results are at (a seeds-on-demand study's rounds)
    spending: str = "equal"  # how a seeds-on-demand study spends alpha over its looks
    strata: int = 0  # the strata (datasets) tested: each tests its graph at family_alpha / strata
    spreads: pd.DataFrame = field(default_factory=pd.DataFrame)  # each configuration's spread group
    spread: str = "grouped"
    # the command that adds seeds to the study, with {seeds} for the count (the study records it in
    # hpstudy.run; results of format 1 do not)
    more_seeds_command: str | None = None
    target: float | None = None  # a convergence outcome's validation accuracy to reach
    devices: tuple = ()  # a time outcome's devices, where the runs ran on more than one (compared within each)

    def findings(self) -> pd.DataFrame:
        return self.comparisons[FINDINGS_COLUMNS].reset_index(drop=True)


def findings(results: Results | str | Path, metric: str = DEFAULT_METRIC, baseline: dict | None = None,
             smallest_effect: float | None = None, **options) -> pd.DataFrame:
    """One row per comparison (columns FINDINGS_COLUMNS): the answer to the study's question.

    `results` is a results folder or what `analysis.load.load_results` returned; `baseline`
    maps a factor to the level its others are compared with ({"activation": "gelu"})."""
    if not isinstance(results, Results):
        results = load_results(results)
    options.setdefault("detail", False)  # the findings alone: no variance shares, failure table or importances
    return analyse(results, metric, baseline, smallest_effect, **options).findings()


# --- the analysis -----------------------------------------------------------------------------

def _check(smallest_effect: float, alpha: float) -> None:
    if not (isinstance(smallest_effect, (int, float)) and math.isfinite(smallest_effect) and smallest_effect >= 0):
        raise UserError(f"--smallest-effect must be a non-negative number in the metric's units, got {smallest_effect}; "
                        "e.g. 0.01 for one accuracy point")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be between 0 and 1, got {alpha}; e.g. 0.05")


def analyse(results: Results, metric: str = DEFAULT_METRIC, baseline: dict | None = None,
            smallest_effect: float | None = None, alpha: float = DEFAULT_ALPHA,
            margin: float = DEFAULT_CHANCE_MARGIN, looks: int | None = None,
            detail: bool = True, spread: str = "grouped", target: float | None = None) -> Analysis:
    """The comparisons of `results` and what they rest on.

    `smallest_effect` and `looks` default to what the study ran with (a seeds-on-demand study
    records both; see study.seeds_on_demand), else 0.01 and one look. The study's family is
    tested at the share of alpha its last look spends (`look_alpha`, by the spending the
    run metadata names; alpha itself for one look), split with each extension (study.extend).
    `detail=False` skips the variance shares, failure table and importances (the findings
    alone, as `findings()` and the seeds-on-demand searcher need them). `spread="pooled"`
    pools one residual variance over each dataset's configurations (the model before spread
    groups; for comparison). `metric` is any outcome of analysis.outcomes (`target`: the
    validation accuracy a convergence outcome waits for); a relative one (times) is compared on
    the log scale and its effects are ratios - 1, its smallest effect a share (default 5%)."""
    chosen = outcome(metric, target)
    if smallest_effect is None:  # a seeds-on-demand study records the one it ran with, for test accuracy
        smallest_effect = results.run.get("smallest_effect", DEFAULT_SMALLEST_EFFECT) if metric == DEFAULT_METRIC \
            else chosen.smallest_effect
    looks = looks or results.run.get("looks") or 1
    _check(smallest_effect, alpha)
    # format 1: a seeds-on-demand study from before spending functions spent alpha equally
    look, spending = len(results.run.get("rounds") or []) or looks, results.run.get("spending", "equal")
    extensions = len(results.run.get("extensions") or [])
    # the share of alpha of the results' look, split with each extension of the study
    share = look_alpha(alpha, look, looks, spending, results.run.get("fractions"))
    family_alpha, next_alpha = share / (1 + extensions), share / (2 + extensions)
    design = study_design(results, {k: str(v) for k, v in (baseline or {}).items()})
    values, not_reached = outcome_values(results.trials, results.epochs, chosen, target)
    trials = results.trials.assign(**{metric: values})
    devices = ()  # a time outcome's devices, where there are several
    if chosen.machine_dependent and "device" in trials:
        devices = tuple(sorted(trials["device"].dropna().unique()))
        devices = devices if len(devices) > 1 else ()
    if devices:  # times of different machines are not compared with each other
        design = replace(design, strata=(*design.strata, "device"))
    band = compared_scale(chosen, smallest_effect)  # the smallest effect on the compared scale
    excluded = {s: int((trials["status"] == s).sum()) for s in ("error", "unfinished")}
    runs = mark_failures(trials, margin=margin, near_chance_fails=chosen.near_chance_fails, not_reached=not_reached)
    names = design.names
    untestable = None
    if design.search == "optuna":
        untestable = "an Optuna search samples configurations adaptively, one seed each: nothing to test over seeds"
    elif _one_seed_each(runs, [*design.strata, *names]):
        untestable = "each configuration has one seed: no seed-to-seed spread to test against"

    strata = [_Stratum(stratum_key, data, design, metric, testable=untestable is None, spread=spread)
              for stratum_key, data in _strata(runs, design.strata)]
    # the strata (datasets) share the family's alpha equally; each tests its own graph
    tested = [s for s in strata if s.model is not None and s.model.fitted] or strata
    stratum_alpha = family_alpha / max(len(tested), 1)
    comparisons, interactions, shares, spreads = [], [], [], []
    for s in strata:
        rows = s.comparisons(design, metric)
        _test_stratum(s, rows, stratum_alpha)
        for row in s.interactions:
            hypothesis = row.pop("hypothesis")
            row["level"] = hypothesis.level if hypothesis else np.nan
            row["p_adjusted"] = min(1.0, alpha * row["p"] / row["level"]) if hypothesis and row["level"] > 0 \
                else np.nan
            row["simple_effects"] = bool(hypothesis and hypothesis.rejected)
        comparisons += rows
        interactions += s.interactions
        spreads += s.spreads
        if untestable is None and names and detail:
            pairs = [(r["factor"], r["other"]) for r in s.interactions if r["simple_effects"]]
            trained = s.data[~s.data["did_not_train"]]
            table = stats.variance_shares(trained, names, metric, interactions=_unique_pairs(pairs))
            shares.append(table.assign(stratum=_label(s.key, {})))
    interacting = {(r["stratum"], frozenset((r["factor"], r["other"]))) for r in interactions if r["simple_effects"]}
    # seeds_needed plans for the study extended with them (study.extend): one more look
    table = _decide(pd.DataFrame(comparisons, columns=_COMPARISON_COLUMNS), metric, band, alpha,
                    next_alpha / family_alpha, interacting)
    if chosen.kind == "relative":  # effects on the log scale -> ratios - 1
        table[["effect", "ci_low", "ci_high"]] = np.expm1(table[["effect", "ci_low", "ci_high"]].astype(float))
    table["finding"] = [sentence(row, metric, smallest_effect) for _, row in table.iterrows()]
    importances = pd.DataFrame()
    if untestable and len(runs) and detail:
        importances = parameter_importances(runs, design.searched(runs), metric, METRICS[metric],
                                            categorical=set(names))
    return Analysis(metric, smallest_effect, alpha, margin, design, runs, excluded, table,
                    pd.DataFrame(interactions, columns=_INTERACTION_COLUMNS),
                    pd.concat(shares, ignore_index=True) if shares else pd.DataFrame(
                        columns=["stratum", "source", "share", "ci_low", "ci_high"]),
                    _failures(runs, design, metric) if detail else pd.DataFrame(), importances, untestable, looks,
                    family_alpha, extensions, look, spending, len(tested) if untestable is None else 0,
                    pd.DataFrame(spreads, columns=_SPREAD_COLUMNS), spread,
                    None if untestable else results.run.get("resume_command"), target, devices)


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
                       "seeds", "failed", "failed_ref", "runs", "runs_ref", "note", "configurations", "difference",
                       "within", "stratum_key", "hypothesis", "p_failures"]
_INTERACTION_COLUMNS = ["stratum", "factor", "other", "F", "p", "level", "p_adjusted", "simple_effects"]
_SPREAD_COLUMNS = ["stratum", "configuration", "runs", "group", "sd", "df"]


def modelled_runs(data: pd.DataFrame, names: list[str], metric: str) -> pd.DataFrame:
    """The runs an effect is estimated on: those that trained, and every run of a configuration
    none of whose runs trained (sigmoid stuck at chance: its accuracy is its result, and
    leaving it out would leave nothing to compare). A failed run's missing accuracy counts as
    chance, where the results know it."""
    trained = ~data["did_not_train"]
    never = data.groupby(names, dropna=False)["did_not_train"].transform("all") if names else trained & False
    chosen = data[trained | never].copy()
    if metric.endswith("acc") and "chance_acc" in chosen:
        chosen[metric] = chosen[metric].fillna(chosen["chance_acc"].where(chosen["did_not_train"]))
    return chosen.dropna(subset=[metric])


class _Stratum:
    """One stratum (dataset): its model, interaction tests and configurations' spreads, and
    every comparison it could report: each factor's levels against the baseline averaged over
    the others, and within each level of each other factor (simple effects)."""

    def __init__(self, key: dict, data: pd.DataFrame, design: Design, metric: str, testable: bool, spread: str):
        self.key, self.data = key, data
        names = design.names
        self.modelled = modelled_runs(data, names, metric)
        self.varying = [f.name for f in design.factors if data[f.name].nunique() > 1] if testable else []
        # the seed is a block where configurations share seeds (every grid study)
        block = "seed" if len(self.modelled) and self.modelled.groupby("seed").size().max() > 1 else None
        self.model = BlockModel(self.modelled, names, metric, block, spread=spread) if testable and names else None
        self.spreads, self.interactions = [], []
        if self.model is None or not self.model.fitted:
            return
        variances = self.model.config_variances
        for config, index in self.model.labels.items():
            cluster = int(self.model.groups[index])
            self.spreads.append({"stratum": _label(key, {}), "configuration": ", ".join(map(str, config)),
                                 "runs": int(self.model.n_runs[index]), "group": cluster,
                                 "sd": math.sqrt(variances[index]), "df": float(self.model.spreads.own_dfs[index])})
        for i, a in enumerate(self.varying):
            for b in self.varying[i + 1:]:
                f_stat, p = self.model.interaction(names.index(a), names.index(b))
                self.interactions.append({"stratum": _label(key, {}), "factor": a, "other": b, "F": f_stat, "p": p})

    def comparisons(self, design: Design, metric: str) -> list[dict]:
        """Each level against the baseline averaged over the other factors (`within` None),
        then within each level of each other varying factor (`within` that factor)."""
        configs = _configurations(self.data, self.modelled, design.names, metric)
        strata_values = tuple(self.key[s] for s in design.strata)
        out = []
        for factor in design.factors:
            out += self._compare_within(factor, None, None, configs, strata_values, design, metric)
            others = [other for other in self.varying if other != factor.name] if factor.name in self.varying else []
            for other in others:
                position = design.names.index(other)
                for level in dict.fromkeys(key[position] for key in configs):
                    out += self._compare_within(factor, other, level, configs, strata_values, design, metric)
        return out

    def _compare_within(self, factor, within: str | None, within_level, configs: dict, strata_values: tuple,
                        design: Design, metric: str) -> list[dict]:
        names, out = design.names, []
        position = names.index(factor.name)
        if within is not None:
            at = names.index(within)
            configs = {key: c for key, c in configs.items() if key[at] == within_level}
        cell = configs
        reference = {key: c for key, c in cell.items() if key[position] == factor.baseline}
        for level in factor.levels:
            if level == factor.baseline:
                continue
            chosen = {key: c for key, c in cell.items() if key[position] == level}
            if within is not None and not chosen and not reference:
                continue
            row = _compare(chosen, reference, position, factor.baseline, self.model)
            if self.model is None:
                row["note"] = ""
            row.update(metric=metric, factor=factor.name, level=level, reference=factor.baseline,
                       stratum=_label(self.key, {} if within is None else {within: within_level}), within=within,
                       stratum_key=_label(self.key, {}),
                       # the configurations this comparison rests on, as (*strata, *factors) tuples
                       configurations=[(*strata_values, *key) for key in (*chosen, *reference)])
            out.append(row)
        return out


def _configurations(data: pd.DataFrame, modelled: pd.DataFrame, names: list[str], metric: str) -> dict:
    """Per configuration (the tuple of its factors' levels, in order of appearance): its runs,
    failed runs, modelled runs, their seeds and the sum of their metric."""
    keys = pd.Series([tuple(r) for r in data[names].itertuples(index=False)], index=data.index)
    modelled_keys = keys.loc[modelled.index]
    configs = {}
    for key, failed in zip(keys, data["did_not_train"]):
        c = configs.setdefault(key, {"runs": 0, "failed": 0, "n": 0, "seeds": set(), "sum": 0.0})
        c["runs"] += 1
        c["failed"] += int(failed)
    for key, seed, value in zip(modelled_keys, modelled["seed"], modelled[metric]):
        c = configs[key]
        c["n"] += 1
        c["seeds"].add(seed)
        c["sum"] += float(value)
    return configs


def _compare(chosen: dict, reference: dict, position: int, baseline, model: BlockModel | None) -> dict:
    """One level against the reference (their configurations, from `_configurations`): the
    contrast of their configuration means, averaged over the levels of the factors it is
    averaged over, seed-blocked."""
    def total(configs, field):
        return sum(c[field] for c in configs.values())

    n, n_ref = total(chosen, "n"), total(reference, "n")
    seeds = set().union(*(c["seeds"] for c in chosen.values()))
    seeds_ref = set().union(*(c["seeds"] for c in reference.values()))
    out = {"n": n, "n_ref": n_ref, "runs": total(chosen, "runs"), "runs_ref": total(reference, "runs"),
           "failed": total(chosen, "failed"), "failed_ref": total(reference, "failed"),
           "seeds": min(len(seeds), len(seeds_ref))}
    # configurations of the level and of the reference that differ only in this factor
    pairs = []
    for key, c in chosen.items():
        partner = (*key[:position], baseline, *key[position + 1:])
        if c["n"] and partner in reference and reference[partner]["n"]:
            pairs.append((key, partner))
    out["effect"] = total(chosen, "sum") / n - total(reference, "sum") / n_ref if n and n_ref else np.nan
    difference = model.contrast(pairs) if model is not None else None
    if difference is not None:
        out["effect"] = difference.effect
    out["design"] = "" if difference is None else "seed-blocked" if model.blocked else "unblocked"
    out["difference"] = difference
    if not out["runs"] or not out["runs_ref"]:
        out["note"] = "no runs of " + ("this level" if not out["runs"] else "the reference")
    elif not pairs:
        out["note"] = "no runs to compare"
    else:
        out["note"] = "" if difference is not None else "no spread between seeds to test against"
    return out


# --- the testing procedure --------------------------------------------------------------------

# the graph of one stratum (analysis.testing): the averaged comparisons hold most of alpha; each
# pair of factors' interaction test and its simple effects a small share, so that an effect a
# lone noisy configuration hides on average is still decided where it is clear; a rejected
# interaction passes its share to its simple effects, emptied simple effects theirs to the
# averaged comparisons, and emptied averaged comparisons theirs to the interactions
PRIMARY_WEIGHT = 0.8
SIMPLE_EFFECT_CONFIDENCE = 0.8  # an averaged `equivalent` needs each simple effect's interval at this inside the band


def _hypothesis(row: dict) -> Hypothesis | None:
    """The row's hypothesis: its accuracy part (where the model estimates it) and its failure
    rates' Fisher test (where runs failed); None where it has neither."""
    difference = row["difference"]
    failures = bool(row["failed"] or row["failed_ref"])
    p_failures = fisher_test(row["failed"], row["runs"], row["failed_ref"], row["runs_ref"]) \
        if failures else float("nan")
    row["p_failures"] = p_failures
    if difference is None and not math.isfinite(p_failures):
        return None
    if difference is None:
        return Hypothesis(float("nan"), p_failures=p_failures)
    return Hypothesis(difference.p, of_runs=difference.of_runs, p_failures=p_failures)


def _test_stratum(stratum: _Stratum, rows: list[dict], alpha: float) -> None:
    """The stratum's graph over its rows and interactions, tested at `alpha`; sets each row's
    and interaction's hypothesis (with its levels and whether it was rejected)."""
    for row in rows:
        row["hypothesis"] = _hypothesis(row)
    pairs = [frozenset((r["factor"], r["other"])) for r in stratum.interactions]
    for r in stratum.interactions:
        r["hypothesis"] = Hypothesis(r["p"]) if math.isfinite(r["p"]) else None
    primary = [r["hypothesis"] for r in rows if r["within"] is None and r["hypothesis"] is not None]
    interaction_nodes = [[r["hypothesis"]] if r["hypothesis"] is not None else [] for r in stratum.interactions]
    simple_nodes = [[r["hypothesis"] for r in rows if r["within"] is not None and r["hypothesis"] is not None
                     and frozenset((r["factor"], r["within"])) == pair] for pair in pairs]
    k = len(pairs)
    size = 1 + 2 * k
    weights, transitions = np.zeros(size), np.zeros((size, size))
    weights[0] = PRIMARY_WEIGHT if k else 1.0
    for i in range(k):
        interaction, simple = 1 + i, 1 + k + i
        weights[interaction] = weights[simple] = (1 - PRIMARY_WEIGHT) / (2 * k)
        transitions[0, interaction] = 1 / k
        transitions[interaction, simple] = 1.0
        transitions[simple, 0] = 1.0
    run_variances = stratum.model.run_variances if stratum.model is not None and stratum.model.fitted else None
    closed_test([primary, *interaction_nodes, *simple_nodes], Graph(weights, transitions), alpha, run_variances)


def _decide(table: pd.DataFrame, metric: str, smallest_effect: float, alpha: float, next_scale: float,
            interacting: set) -> pd.DataFrame:
    """Intervals, adjusted p, verdict and seeds needed of each row from its hypothesis as the
    procedure left it: its interval at 1 - the level its accuracy part was last tested at
    (within the metric's range), `better` / `worse` where rejected, `equivalent` by two
    one-sided tests at that level where nothing argues against it (failure rates that differ
    in the sample, a simple effect beyond the band). Seeds needed are planned at the row's
    level x `next_scale` (the study extended with them: one more look). The rows kept are the
    averaged comparisons, and the simple effects where their interaction was rejected or they
    decide what their averaged row does not."""
    simple = {key: rows for key, rows in table[table["within"].notna()].groupby(["stratum_key", "factor", "level"],
                                                                                 sort=False)}
    decided = [_decide_row(row, simple, metric, smallest_effect, alpha) for _, row in table.iterrows()]
    table = table.assign(**pd.DataFrame(decided, index=table.index, columns=_DECISION_COLUMNS))
    simple = {key: table.loc[rows.index] for key, rows in simple.items()}  # with their decisions
    table["depends_on"] = [_depends_on(row, simple, smallest_effect, interacting) for _, row in table.iterrows()]
    interaction_found = np.array([(row["stratum_key"], frozenset((row["factor"], row["within"]))) in interacting
                                  for _, row in table.iterrows()], dtype=bool)
    averaged = {(r["stratum_key"], r["factor"], r["level"]): r["verdict"] for _, r in table.iterrows()
                if pd.isna(r["within"])}
    # a decided simple effect says something its averaged row does not (sigmoid worse without
    # batchnorm, where a noisy cell leaves the average open)
    adds = np.array([r["verdict"] in ("better", "worse")
                     and averaged.get((r["stratum_key"], r["factor"], r["level"])) != r["verdict"]
                     for _, r in table.iterrows()], dtype=bool)
    keep = table["within"].isna() | adds | interaction_found
    table = table[keep].copy()
    for i in table.index[table["verdict"] == "inconclusive"]:
        difference = table.at[i, "difference"]
        table.at[i, "seeds_needed"] = seeds_to_decide(difference.effect, difference.unit_sd, difference.seeds,
                                                      difference.df, table.at[i, "hypothesis"].level * next_scale,
                                                      smallest_effect)
    table["seeds_needed"] = table["seeds_needed"].astype("Int64")  # a count; empty where decided or not testable
    return table.drop(columns=["difference", "hypothesis"]).reset_index(drop=True)


_DECISION_COLUMNS = ["ci_low", "ci_high", "confidence", "p", "p_adjusted", "unit_sd", "df", "test_level",
                     "failures_level", "verdict", "decided_by", "why", "seeds_needed"]


def _decide_row(row: pd.Series, simple: dict, metric: str, smallest_effect: float, alpha: float) -> dict:
    """One row's decision columns (_decide); `simple` maps (stratum_key, factor, level) to the
    simple effects of an averaged row."""
    out = dict.fromkeys(_DECISION_COLUMNS, np.nan) | {"verdict": "not testable", "decided_by": "", "why": ""}
    hypothesis, difference = row["hypothesis"], row["difference"]
    if hypothesis is None:
        return out
    out["test_level"] = hypothesis.total_level
    out["failures_level"] = hypothesis.failures_level if hypothesis.has_failures else np.nan
    ratios = [p / level for p, level in ((hypothesis.p, hypothesis.level),
                                         (hypothesis.p_failures, hypothesis.failures_level))
              if math.isfinite(p) and level > 0]
    out["p_adjusted"] = min(1.0, alpha * min(ratios)) if ratios else np.nan
    if hypothesis.has_failures and hypothesis.p_failures <= hypothesis.failures_level:
        failing_more = row["failed"] / row["runs"] > row["failed_ref"] / row["runs_ref"]
        out["verdict"], out["decided_by"] = ("worse" if failing_more else "better"), "failures"
    if difference is None:
        return out
    level = hypothesis.level
    low, high = difference.interval(1 - level)
    if metric.endswith("acc"):  # a difference of accuracies lies in [-1, 1]
        low, high = max(low, -1.0), min(high, 1.0)
    out.update(ci_low=low, ci_high=high, confidence=1 - level, p=difference.p, unit_sd=difference.unit_sd,
               df=difference.df)
    if out["decided_by"] == "failures":
        return out
    tost_low, tost_high = difference.interval(1 - 2 * level)  # two one-sided tests at the level
    # not rejected by its failures (above), so rejected by its accuracy part
    verdict = _verdict(hypothesis.rejected, difference.effect, tost_low, tost_high, smallest_effect, METRICS[metric])
    if verdict == "equivalent":
        out["why"] = _not_equivalent_because(row, simple, smallest_effect)
        verdict = "inconclusive" if out["why"] else verdict
    out["verdict"], out["decided_by"] = verdict, ("" if verdict == "inconclusive" else metric)
    return out


def _simple_effects(row: pd.Series, simple: dict) -> pd.DataFrame:
    """The simple effects of an averaged row (its level within each level of each other
    factor); none for a simple effect's row."""
    if not pd.isna(row["within"]):
        return pd.DataFrame(columns=["within", "effect", "difference"])
    return simple.get((row["stratum_key"], row["factor"], row["level"]),
                      pd.DataFrame(columns=["within", "effect", "difference"]))


def _not_equivalent_because(row: pd.Series, simple: dict, smallest_effect: float) -> str:
    """Why a row the two one-sided tests put inside the band is not `equivalent`, or ''."""
    rate = row["failed"] / row["runs"] if row["runs"] else 0.0
    rate_ref = row["failed_ref"] / row["runs_ref"] if row["runs_ref"] else 0.0
    if row["runs"] and row["runs_ref"] and rate != rate_ref:
        more = "it fails" if rate > rate_ref else "the reference fails"
        return f"{more} more often ({row['failed']} of {row['runs']} runs vs {row['failed_ref']} of {row['runs_ref']})"
    # equivalent on average is read as no effect that matters anywhere: each simple effect's 80%
    # interval must stay inside the band too (a crossover, +1.2 with batchnorm and -1.2 without,
    # averages to an equivalent 0)
    beyond = [r["within"] for _, r in _simple_effects(row, simple).iterrows()
              if r["difference"] is not None and not _inside(r["difference"], smallest_effect)]
    if beyond:
        return f"its effect may depend on {', '.join(dict.fromkeys(beyond))}"
    return ""


def _inside(difference, smallest_effect: float) -> bool:
    low, high = difference.interval(SIMPLE_EFFECT_CONFIDENCE)
    return -smallest_effect < low and high < smallest_effect


def _depends_on(row: pd.Series, simple: dict, smallest_effect: float, interacting: set) -> str:
    """For an averaged row: the factors its effect was found to depend on (a rejected
    interaction), or whose simple effects go opposite ways beyond the band."""
    others = []
    for other, cells in _simple_effects(row, simple).groupby("within", sort=False):
        crossing = (cells["effect"] >= smallest_effect).any() and (cells["effect"] <= -smallest_effect).any()
        if (row["stratum_key"], frozenset((row["factor"], other))) in interacting or crossing:
            others.append(other)
    return ", ".join(others)


def _verdict(rejected: bool, effect: float, tost_low: float, tost_high: float, smallest_effect: float,
             higher_is_better: bool) -> str:
    # a real difference is reported as one even when it is smaller than what matters (the
    # sentence says so); equivalence is TOST: the 1 - 2 level interval inside the band
    if rejected:
        return "better" if (effect > 0) == higher_is_better else "worse"
    if -smallest_effect < tost_low and tost_high < smallest_effect:
        return "equivalent"
    return "inconclusive"


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
                rate, low, high = failure_rate(failed, n)
                trained = runs_of.loc[~runs_of["did_not_train"], metric].mean()
                trained = np.exp(trained) if is_relative(metric) else trained  # the log's mean: a geometric mean
                row = {"stratum": _label(stratum_key, {}), "factor": factor.name, "level": level, "n": n,
                       "failed": failed, "rate": rate, "rate_low": low, "rate_high": high,
                       "trained_mean": trained,
                       "p_fisher": np.nan, "p_improvement": np.nan}
                if level != factor.baseline:
                    n_ref, failed_ref = len(reference), int(reference["did_not_train"].sum())
                    row["p_fisher"] = fisher_test(failed, n, failed_ref, n_ref)
                    keys = [*others, "seed"]
                    pairs = runs_of[[*keys, "_ranked"]].merge(reference[[*keys, "_ranked"]], on=keys,
                                                              suffixes=("", "_ref"))
                    paired = len(pairs) == n == n_ref
                    x, y = (pairs["_ranked"], pairs["_ranked_ref"]) if paired else (runs_of["_ranked"], reference["_ranked"])
                    row["p_improvement"] = probability_of_improvement(x.to_numpy(), y.to_numpy(), paired)
                family.append(row)
            adjusted = stats.adjust([r["p_fisher"] for r in family])
            for row, p in zip(family, adjusted):
                row["p_fisher_adjusted"] = p
            rows += family
    return pd.DataFrame(rows, columns=["stratum", "factor", "level", "n", "failed", "rate", "rate_low", "rate_high",
                                       "p_fisher", "p_fisher_adjusted", "trained_mean", "p_improvement"])
