"""The findings' promises, checked by simulation on planted studies written through the real
Parquet export: coverage and power when configurations differ in spread, the power kept when
they do not, the study-wide error rate of a null study, TOST equivalence, and seeds_needed
that decides what it says it will. Every simulation has a fixed seed; the numbers each one
measures are recorded in the README's analysis section."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.weightstats import ttost_paired

from analysis import findings
from analysis.compare import analyse
from analysis.load import load_results

from synthetic import make_study, write_synthetic

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files

ACTIVATIONS = ["relu", "gelu", "elu", "silu", "mish", "leaky_relu", "tanh", "sigmoid"]
QUIET, NOISY = 0.005, 0.05  # seed-to-seed spread: 0.5 points (the ReLU family), 5 points (saturating)
EFFECT = {"gelu": 0.01}  # +1 point for a quiet level; every other level as good as relu


def planted(tmp_path, name: str, rng, spreads: dict, seeds: int = 5, axes: dict | None = None, mean=None):
    axes = axes or {"activation": ACTIVATIONS}
    study = make_study(name, {"trainable": "mnist1d_cnn", "epochs": 1}, axes, seeds=seeds)
    mean = mean or (lambda p: 0.9 + EFFECT.get(p["activation"], 0.0))
    folder = write_synthetic(tmp_path / name, study, mean, sd=lambda p: spreads.get(p["activation"], QUIET),
                             seed_sd=0.01, rng_seed=rng)
    return load_results(folder)


def covered(table: pd.DataFrame) -> bool:
    truth = table["level"].map(lambda level: EFFECT.get(level, 0.0))
    return bool(((table["ci_low"] <= truth) & (truth <= table["ci_high"])).all())


def gelu_found(table: pd.DataFrame) -> bool:
    return table.set_index("level").loc["gelu", "verdict"] == "better"


def test_unequal_spread_keeps_family_wise_coverage_and_finds_a_quiet_effect(tmp_path):
    """Six configurations at 0.5 points of seed spread, tanh and sigmoid at 5, 5 seeds, 120 studies:
    every interval of a study covers its true effect in >= 90% of studies (the intervals are at
    the levels of a step-down max-t test, about 95% together; measured 0.917), and gelu's +1 point
    reads better in >= 50% (the pooled model: 0%)."""
    rng = np.random.default_rng(17)
    coverage, power, pooled_coverage, pooled_power, studies = 0, 0, 0, 0, 120
    for i in range(studies):
        results = planted(tmp_path, f"u{i}", rng, {"tanh": NOISY, "sigmoid": NOISY})
        table, pooled = (analyse(results, detail=False, spread=s).findings() for s in ("grouped", "pooled"))
        coverage += covered(table)
        power += gelu_found(table)
        pooled_coverage += covered(pooled)
        pooled_power += gelu_found(pooled)
    print(f"unequal spread: coverage {coverage / studies:.3f} (pooled {pooled_coverage / studies:.3f}), "
          f"+1 point found {power / studies:.3f} (pooled {pooled_power / studies:.3f})")
    assert coverage / studies >= 0.9 and power / studies >= 0.5
    assert pooled_power / studies < 0.1  # the failure this model is for


def test_equal_spread_keeps_the_pooled_models_power(tmp_path):
    """Every configuration at 0.5 points: the model finds the +1 point effect in >= 90% of the
    studies where the pooled model does (the same 120 studies analysed both ways)."""
    rng = np.random.default_rng(18)
    grouped, pooled, studies = 0, 0, 120
    for i in range(studies):
        results = planted(tmp_path, f"e{i}", rng, {})
        grouped += gelu_found(analyse(results, detail=False).findings())
        pooled += gelu_found(analyse(results, detail=False, spread="pooled").findings())
    print(f"equal spread: +1 point found {grouped / studies:.3f}, pooled {pooled / studies:.3f}")
    assert pooled > 0.3 * studies and grouped >= 0.9 * pooled


def test_a_null_two_factor_study_keeps_the_study_wide_error_rate(tmp_path):
    """A 4 x 2 design with no effect anywhere (two noisy activations), 5 seeds: at most alpha of
    studies have any false better / worse. 250 studies: a one-sided binomial test sees a 10%
    rate in 92% of such runs (its 95% bound for 5% is 18 studies)."""
    rng = np.random.default_rng(19)
    axes = {"activation": ["relu", "gelu", "tanh", "sigmoid"], "batchnorm": [False, True]}
    wrong, studies = 0, 250
    for i in range(studies):
        results = planted(tmp_path, f"n{i}", rng, {"tanh": NOISY, "sigmoid": 0.02}, axes=axes, mean=lambda p: 0.9)
        verdicts = findings(results)["verdict"]
        wrong += verdicts.isin(["better", "worse"]).any()
    bound = sps.binom.ppf(0.95, studies, 0.05)
    print(f"null 4 x 2: {wrong} of {studies} studies with a false verdict (one-sided 95% bound at 5%: {bound:.0f})")
    assert wrong <= bound


def test_equivalence_is_tost_at_the_comparisons_level(tmp_path):
    """Two configurations, no effect, 8 seeds, 0.7 points of spread of a seed's difference: the
    verdict is `equivalent` exactly when statsmodels' paired TOST at alpha rejects both
    one-sided nulls (one comparison: a family of one), except where the two-sided test finds a
    difference first (`better` / `worse`, the sentence saying it is below the smallest effect)."""
    rng = np.random.default_rng(20)
    study = make_study("tost", {"trainable": "mnist1d_cnn", "epochs": 1}, {"activation": ["relu", "gelu"]}, seeds=8)
    agree, equivalent, studies = 0, 0, 40
    for i in range(studies):
        results = load_results(write_synthetic(tmp_path / f"t{i}", study, lambda p: 0.9, sd=0.005, seed_sd=0.01,
                                               rng_seed=rng))
        table = findings(results)
        runs = results.trials.sort_values("seed")
        x = runs.loc[runs["activation"] == "relu", "test_acc"].to_numpy()
        y = runs.loc[runs["activation"] == "gelu", "test_acc"].to_numpy()
        theirs = ttost_paired(y, x, -0.01, 0.01)[0] < 0.05
        verdict = table.iloc[0]["verdict"]
        ours = verdict == "equivalent"
        agree += theirs == ours or (verdict in ("better", "worse") and theirs)
        equivalent += ours
    print(f"TOST: {equivalent} of {studies} null comparisons equivalent, agreeing with statsmodels in {agree}")
    assert agree == studies and equivalent > studies / 2


def test_seeds_needed_decides_what_it_promises(tmp_path):
    """A 3-seed study whose gelu is +1 point (the smallest effect that matters) with 1 point of
    seed spread per configuration, rerun with the seeds its seeds_needed says, its first 3 seeds
    kept, and tested as the extension is (one more look): the comparison is then decided in about
    the promised 80% of studies, at least 75%."""
    rng = np.random.default_rng(21)
    study = make_study("promise", {"trainable": "mnist1d_cnn", "epochs": 1}, {"activation": ["relu", "gelu"]},
                       seeds=3)
    promised, decided = 0, 0
    for i in range(100):
        shared, own = rng.normal(0, 0.01, 500), rng.normal(0, 0.01, (2, 500))
        def values(p, seed, shared=shared, own=own):
            gelu = int(p["activation"] == "gelu")
            return 0.9 + 0.01 * gelu + shared[seed] + own[gelu, seed]
        first = findings(load_results(write_synthetic(tmp_path / f"p{i}", study, None, values=values))).iloc[0]
        if first["verdict"] != "inconclusive":
            continue
        assert pd.notna(first["seeds_needed"])  # never NaN on an open comparison
        seeds = int(first["seeds_needed"])
        more = make_study("promise", study.fixed, study.axes, seeds=seeds)
        # the study extended with them (--seeds N --resume) is tested as one more look
        again = findings(load_results(write_synthetic(tmp_path / f"q{i}", more, None, values=values)), looks=2).iloc[0]
        promised += 1
        decided += again["verdict"] != "inconclusive"
        assert pd.isna(again["seeds_needed"]) or again["verdict"] == "inconclusive"  # blank once decided
    print(f"seeds needed: {decided} of {promised} open comparisons decided at the seeds promised")
    assert promised >= 50 and decided / promised >= 0.75
