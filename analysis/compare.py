"""The findings: for each factor of the study, within each dataset, is each level better,
worse, practically equivalent or still undecided against the baseline, by how much, and
how many seeds would decide it.

How a comparison is made (the design comes from analysis.design):
- The unit is one run (one seed of one configuration). Runs that errored or did not finish
  are not results: they are left out and counted. A run that diverged or ended below chance +
  margin x (1 - chance) failed. Effects are estimated on the runs that trained, and on every
  run of a configuration that never trained (its accuracy at chance is its result).
- The effect of a level is a contrast of configuration means in metric ~ configuration + seed
  (stats.BlockModel): the configurations of the level against those of the reference that
  differ only in this factor, averaged over the levels of the factors it is averaged over.
  Seeds are blocks; configurations whose seed-to-seed spreads Bartlett's test cannot tell
  apart share one residual variance (moderated toward each one's own as far as they differ),
  a configuration that varies more keeps its own, and intervals take Satterthwaite's degrees
  of freedom.
- Within each stratum (dataset), each pair of factors is tested for interaction (a Wald test
  in the same model). Where a factor interacts, it is compared within each level of the
  factors it interacts with (simple effects); otherwise averaged over them.
- One family per study: m counts every test the study could make whatever the interaction
  tests find (each interaction test, each averaged comparison and each simple-effect
  comparison the design allows, in every stratum), so the data-driven choice of simple
  effects is inside the bound. Each test is at alpha / m (Bonferroni; or Šidák), intervals at
  1 - alpha / m, p adjusted by the same m: the chance of any false `better`, `worse` or
  `equivalent` verdict, or a false interaction, in the whole study stays at or under alpha.
  Where runs of a comparison failed, its level is split in half between the accuracy of the
  runs and Fisher's exact test of the failure rates (so its interval is at 1 - alpha / 2m).
- Verdict: `better` / `worse` when the failure rates differ (the level failing more often is
  worse), else when the interval excludes 0 (in the metric's better direction; the sentence
  says when the effect is smaller than the smallest effect that matters); `equivalent` when
  the two one-sided tests at the comparison's level put it inside +/- the smallest effect
  (TOST: the 1 - 2 alpha / m interval inside the band); else `inconclusive`; `not testable`
  when there is nothing to estimate a spread from.
- `seeds_needed` (inconclusive rows only): the seeds per configuration at which the same rule
  decides the comparison with probability 0.8, planned with the observed effect and an upper
  70% bound of its spread (stats.seeds_to_decide), at the level of the study extended with
  them (`--seeds N --resume`, study.extend): an extension is one more look, splitting the
  share of alpha of the look it extends.
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
from analysis.words import amount, resume_command, signed
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
    family: int = 0  # the tests the study could make (every stratum): the family alpha is spread over
    level: float = float("nan")  # each test's level: family_alpha / family, Bonferroni
    spreads: pd.DataFrame = field(default_factory=pd.DataFrame)  # each configuration's spread group
    spread: str = "grouped"
    # the command that adds seeds to the study, with {seeds} for the count (words.resume_command)
    more_seeds_command: str | None = None

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
            detail: bool = True, spread: str = "grouped") -> Analysis:
    """The comparisons of `results` and what they rest on.

    `smallest_effect` and `looks` default to what the study ran with (a seeds-on-demand study
    records both; see study.seeds_on_demand), else 0.01 and one look. The study's family is
    tested at the share of alpha its last look spends (`stats.look_alpha`, by the spending the
    run metadata names; alpha itself for one look), split with each extension (study.extend).
    `detail=False` skips the variance shares, failure table and importances (the findings
    alone, as `findings()` and the seeds-on-demand searcher need them). `spread="pooled"`
    pools one residual variance over each dataset's configurations (the model before spread
    groups; for comparison)."""
    if smallest_effect is None:
        smallest_effect = results.run.get("smallest_effect", DEFAULT_SMALLEST_EFFECT)
    looks = looks or results.run.get("looks") or 1
    _check(results, metric, smallest_effect, alpha, correction)
    look, spending = len(results.run.get("rounds") or []) or looks, results.run.get("spending", "equal")
    extensions = len(results.run.get("extensions") or [])
    # the share of alpha of the results' look, split with each extension of the study
    share = stats.look_alpha(alpha, look, looks, spending, results.run.get("fractions"))
    family_alpha, next_alpha = share / (1 + extensions), share / (2 + extensions)
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

    # first every stratum's model and its share of the family (the family's size sets the
    # level the interaction tests are read at), then the comparisons
    strata = [_Stratum(stratum_key, data, design, metric, testable=untestable is None, spread=spread)
              for stratum_key, data in _strata(runs, design.strata)]
    family = sum(s.family for s in strata)
    level = stats.per_comparison_level(family_alpha, family, correction)
    comparisons, interactions, shares, spreads = [], [], [], []
    for s in strata:
        for row in s.interactions:
            row["p_adjusted"] = stats.adjust([row["p"]], correction, m=family)[0]
            row["simple_effects"] = bool(row["p"] < level)
        comparisons += s.comparisons(design, metric)
        interactions += s.interactions
        spreads += s.spreads
        if untestable is None and names and detail:
            pairs = [(r["factor"], r["other"]) for r in s.interactions if r["simple_effects"]]
            trained = s.data[~s.data["did_not_train"]]
            table = stats.variance_shares(trained, names, metric, interactions=_unique_pairs(pairs))
            shares.append(table.assign(stratum=_label(s.key, {})))
    # seeds_needed plans for the study extended with them (study.extend): one more look
    next_level = stats.per_comparison_level(next_alpha, family, correction)
    table = _decide(pd.DataFrame(comparisons, columns=_COMPARISON_COLUMNS), metric, smallest_effect, level, family,
                    correction, next_level)
    importances = pd.DataFrame()
    if untestable and len(runs) and detail:
        importances = parameter_importances(runs, design.searched(runs), metric, METRICS[metric],
                                            categorical=set(names))
    return Analysis(metric, smallest_effect, alpha, correction, margin, design, runs, excluded, table,
                    pd.DataFrame(interactions, columns=_INTERACTION_COLUMNS),
                    pd.concat(shares, ignore_index=True) if shares else pd.DataFrame(
                        columns=["stratum", "source", "share", "ci_low", "ci_high"]),
                    _failures(runs, design, metric) if detail else pd.DataFrame(), importances, untestable, looks,
                    family_alpha, extensions, look, spending, family, level,
                    pd.DataFrame(spreads, columns=_SPREAD_COLUMNS), spread,
                    None if untestable else resume_command(results.run, results.folder))


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
_INTERACTION_COLUMNS = ["stratum", "factor", "other", "F", "p", "p_adjusted", "simple_effects"]
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


def family_size(data: pd.DataFrame, design: Design) -> tuple[int, list[str]]:
    """The tests one stratum could make, whatever its interaction tests find: per factor, each
    level against the baseline averaged over the others, plus within each combination of
    levels of every subset of the other varying factors (the simple effects an interaction
    would call for): (levels - 1) x product of (1 + levels of each other); plus one
    interaction test per pair of varying factors. Returns the count and the varying factors."""
    varying = [f.name for f in design.factors if data[f.name].nunique() > 1]
    count = 0
    for name in varying:
        product = math.prod(1 + data[other].nunique() for other in varying if other != name)
        count += (data[name].nunique() - 1) * product
    return count + math.comb(len(varying), 2), varying


class _Stratum:
    """One stratum (dataset): its model, interaction tests and configurations' spreads, and how
    many tests it adds to the study's family; `comparisons()` once the interactions are read."""

    def __init__(self, key: dict, data: pd.DataFrame, design: Design, metric: str, testable: bool, spread: str):
        self.key, self.data = key, data
        names = design.names
        self.modelled = modelled_runs(data, names, metric)
        self.family, varying = family_size(self.modelled, design) if testable else (0, [])
        # the seed is a block where configurations share seeds (every grid study)
        block = "seed" if len(self.modelled) and self.modelled.groupby("seed").size().max() > 1 else None
        self.model = stats.BlockModel(self.modelled, names, metric, block, spread=spread) if testable and names else None
        self.spreads, self.interactions = [], []
        if self.model is None or not self.model.fitted:
            return
        for config, index in self.model.labels.items():
            group = int(self.model.groups[index])
            self.spreads.append({"stratum": _label(key, {}), "configuration": ", ".join(map(str, config)),
                                 "runs": int(self.model.n_runs[index]), "group": group,
                                 "sd": math.sqrt(self.model.config_variances[index]),
                                 "df": float(self.model.group_dfs[group])})
        for i, a in enumerate(varying):
            for b in varying[i + 1:]:
                f_stat, p = self.model.interaction(names.index(a), names.index(b))
                self.interactions.append({"stratum": _label(key, {}), "factor": a, "other": b, "F": f_stat, "p": p})

    def comparisons(self, design: Design, metric: str) -> list[dict]:
        """Each level against the baseline: within each level of the factors it interacts with
        (simple effects), averaged over the others."""
        names, data, out = design.names, self.data, []
        for factor in design.factors:
            interacting = [r["other"] if r["factor"] == factor.name else r["factor"] for r in self.interactions
                           if r["simple_effects"] and factor.name in (r["factor"], r["other"])]
            interacting = [g for g in names if g in interacting]  # in the study's order
            cells = data.groupby(interacting, sort=False) if interacting else [((), data)]
            for cell_key, cell in cells:
                fixed = dict(zip(interacting, cell_key))
                reference = cell[cell[factor.name] == factor.baseline]
                for level in factor.levels:
                    if level == factor.baseline:
                        continue
                    runs = cell[cell[factor.name] == level]
                    row = _compare(runs, reference, factor.name, level, factor.baseline, names, metric, self.model,
                                   self.modelled)
                    if self.model is None:
                        row["note"] = ""
                    # the configurations this comparison rests on, as (*strata, *factors) tuples
                    involved = pd.concat([runs, reference])[[*design.strata, *names]].drop_duplicates()
                    row.update(metric=metric, factor=factor.name, level=level, reference=factor.baseline,
                               stratum=_label(self.key, fixed),
                               configurations=[tuple(r) for r in involved.itertuples(index=False)])
                    out.append(row)
        return out


def _compare(runs: pd.DataFrame, reference: pd.DataFrame, factor: str, level, baseline, names: list[str],
             metric: str, model: stats.BlockModel | None, modelled: pd.DataFrame) -> dict:
    """One level against the reference: the contrast of their configuration means, averaged
    over the levels of the factors it is averaged over, seed-blocked."""
    ok, ok_ref = modelled.loc[modelled.index.isin(runs.index)], modelled.loc[modelled.index.isin(reference.index)]
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
        out["note"] = "no runs to compare"
    else:
        out["note"] = "" if difference is not None else "no spread between seeds to test against"
    return out


def _decide(table: pd.DataFrame, metric: str, smallest_effect: float, level: float, family: int,
            correction: str, next_level: float) -> pd.DataFrame:
    """Intervals, adjusted p, verdict and seeds needed, each test at the study's per-test
    `level` (one family of `family` tests); a comparison with failed runs splits its level
    between the accuracy and Fisher's test of the failure rates. Seeds needed are planned at
    `next_level`, the level of the study extended with them."""
    higher_is_better = METRICS[metric]
    for column in ("ci_low", "ci_high", "confidence", "p", "p_adjusted", "unit_sd", "df", "seeds_needed",
                   "p_failures"):
        table[column] = np.nan
    table["verdict"], table["decided_by"] = "not testable", ""
    for i in table.index:
        row = table.loc[i]
        difference = row["difference"]
        failures = bool(row["failed"] or row["failed_ref"])
        part = level / 2 if failures else level  # each part's level; the halves add up to the comparison's
        p_failures = stats.fisher_test(row["failed"], row["runs"], row["failed_ref"], row["runs_ref"]) \
            if failures else np.nan
        table.at[i, "p_failures"] = p_failures
        failing_more = np.nan
        if failures and row["runs"] and row["runs_ref"]:
            failing_more = row["failed"] / row["runs"] > row["failed_ref"] / row["runs_ref"]
        fails_differ = bool(p_failures < part)  # NaN compares False
        if difference is not None:
            low, high = difference.interval(1 - part)
            table.loc[i, ["ci_low", "ci_high", "confidence", "p", "unit_sd", "df"]] = [
                low, high, 1 - part, difference.p, difference.unit_sd, difference.df]
        parts = [p for p in (difference.p if difference is not None else np.nan, p_failures) if math.isfinite(p)]
        if parts:
            # the comparison's p: its smaller part, Bonferroni over its parts, then over the family
            table.at[i, "p_adjusted"] = stats.adjust([min(1.0, min(parts) * (2 if failures else 1))], correction,
                                                     m=family)[0]
        if fails_differ:
            table.at[i, "verdict"], table.at[i, "decided_by"] = ("worse" if failing_more else "better"), "failures"
            continue
        if difference is None:
            continue
        tost_low, tost_high = difference.interval(1 - 2 * part)  # two one-sided tests at the part's level
        verdict = _verdict(low, high, tost_low, tost_high, smallest_effect, higher_is_better)
        table.at[i, "verdict"] = verdict
        table.at[i, "decided_by"] = "" if verdict == "inconclusive" else metric
        if verdict == "inconclusive":
            planned = next_level / 2 if failures else next_level
            table.at[i, "seeds_needed"] = stats.seeds_to_decide(difference.effect, difference.unit_sd,
                                                                difference.seeds, difference.df, planned,
                                                                smallest_effect)
    table["finding"] = [_sentence(row, metric, smallest_effect) for _, row in table.iterrows()]
    table["seeds_needed"] = table["seeds_needed"].astype("Int64")  # a count; empty where decided or not testable
    return table.drop(columns="difference")


def _verdict(low: float, high: float, tost_low: float, tost_high: float, smallest_effect: float,
             higher_is_better: bool) -> str:
    # a real difference is reported as one even when it is smaller than what matters (the
    # sentence says so); equivalence is TOST: the 1 - 2 level interval inside the band
    if low > 0:
        return "better" if higher_is_better else "worse"
    if high < 0:
        return "worse" if higher_is_better else "better"
    if -smallest_effect < tost_low and tost_high < smallest_effect:
        return "equivalent"
    return "inconclusive"


def seeds_phrase(seeds: int) -> str:
    return "more than a million" if seeds >= stats.MAX_SEEDS_NEEDED else f"about {seeds}"


def _sentence(row: pd.Series, metric: str, smallest_effect: float) -> str:
    """The comparison in words a reader can act on."""
    where = "" if row["stratum"] == "all" else f" ({row['stratum']})"
    pair = f"{row['level']} vs {row['reference']}{where}"
    interval = f"[{signed(row['ci_low'], metric)}, {signed(row['ci_high'], metric)}]"
    verdict = row["verdict"]
    counts = f"{row['failed']} of {row['runs']} runs vs {row['failed_ref']} of {row['runs_ref']}"
    if row["decided_by"] == "failures":
        text = f"{pair}: {verdict}: it fails {'more' if verdict == 'worse' else 'less'} often ({counts} failed, "                f"Fisher p = {row['p_failures']:.2g})"
        if math.isfinite(row["effect"]) and math.isfinite(row["ci_low"]):
            text += f"; {signed(row['effect'], metric)} {interval} on the runs compared"
        return text
    if verdict in ("better", "worse"):
        text = f"{pair}: {verdict} by {amount(abs(row['effect']), metric)} {interval}"
        if abs(row["effect"]) < smallest_effect:
            text += f", less than the smallest effect that matters ({amount(smallest_effect, metric)})"
    elif verdict == "equivalent":
        text = f"{pair}: equivalent, within ±{amount(smallest_effect, metric)} {interval}"
    elif verdict == "inconclusive":
        text = (f"{pair}: undecided, {signed(row['effect'], metric)} {interval}; "
                f"{seeds_phrase(int(row['seeds_needed']))} seeds per configuration would decide it")
    else:
        effect = "" if not math.isfinite(row["effect"]) else f" (observed {signed(row['effect'], metric)})"
        text = f"{pair}: not testable{effect}" + (f": {row['note']}" if row["note"] else "")
    if row["failed"] or row["failed_ref"]:
        if row["n"] and row["failed"] == row["runs"]:
            text += f"; every run of it failed ({counts}): their accuracy is the result compared"
        elif row["n_ref"] and row["failed_ref"] == row["runs_ref"]:
            text += f"; every run of the reference failed ({counts}): their accuracy is the result compared"
        else:
            text += f"; failed runs (left out of the effect; the rates do not differ significantly): {counts}"
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
