"""Statistics against known answers and against the libraries they wrap; degenerate inputs."""

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as sps

from analysis import stats


def two_configs(x, y, factor="activation", value="test_acc"):
    return pd.DataFrame({factor: ["relu"] * len(x) + ["gelu"] * len(y), "seed": [*range(len(x)), *range(len(y))],
                         value: [*x, *y]})


def test_two_configurations_blocked_by_seed_are_a_paired_t_test():
    x, y = [0.90, 0.92, 0.91, 0.95, 0.93], [0.91, 0.94, 0.92, 0.97, 0.93]
    model = stats.BlockModel(two_configs(x, y), ["activation"], "test_acc", "seed")
    difference = model.contrast([(("gelu",), ("relu",))])
    paired = sps.ttest_rel(y, x)
    assert difference.effect == pytest.approx(np.mean(y) - np.mean(x))
    assert difference.p == pytest.approx(paired.pvalue)
    assert difference.df == 4
    assert difference.interval(0.9) == pytest.approx(tuple(paired.confidence_interval(0.9)))
    # one seed's difference has the spread of the paired differences
    assert difference.unit_sd == pytest.approx(np.std(np.subtract(y, x), ddof=1))


def test_without_blocks_it_is_students_t():
    x, y = [0.90, 0.92, 0.91, 0.95], [0.91, 0.94, 0.92, 0.97, 0.93]
    difference = stats.BlockModel(two_configs(x, y), ["activation"], "test_acc", None).contrast([(("gelu",), ("relu",))])
    assert difference.p == pytest.approx(sps.ttest_ind(y, x).pvalue)


def test_a_contrast_averages_over_the_cells_it_spans():
    rows = [{"activation": a, "batchnorm": b, "seed": s, "test_acc": 0.8 + 0.02 * (a == "gelu") + 0.01 * b + 0.001 * s
             + 0.002 * ((s * 7 + (a == "gelu") * 3 + b) % 5)} for a in ("relu", "gelu") for b in (0, 1) for s in range(4)]
    frame = pd.DataFrame(rows)
    model = stats.BlockModel(frame, ["activation", "batchnorm"], "test_acc", "seed")
    difference = model.contrast([(("gelu", 0), ("relu", 0)), (("gelu", 1), ("relu", 1))])
    means = frame.groupby("activation")["test_acc"].mean()
    assert difference.effect == pytest.approx(means["gelu"] - means["relu"])


def test_degenerate_inputs_give_no_difference():
    one_seed = stats.BlockModel(two_configs([0.9], [0.8]), ["activation"], "test_acc", "seed")
    assert one_seed.contrast([(("gelu",), ("relu",))]) is None
    constant = stats.BlockModel(two_configs([0.5, 0.5], [0.5, 0.5]), ["activation"], "test_acc", "seed")
    assert constant.contrast([(("gelu",), ("relu",))]) is None
    model = stats.BlockModel(two_configs([0.9, 0.91], [0.8, 0.82]), ["activation"], "test_acc", "seed")
    assert model.contrast([(("elu",), ("relu",))]) is None  # a configuration with no run


def test_family_intervals_and_adjusted_p_agree():
    assert stats.family_confidence(0.05, 4) == pytest.approx(1 - 0.0125)
    assert stats.family_confidence(0.05, 4, "sidak") == pytest.approx(0.95 ** 0.25)
    assert stats.adjust([0.01, 0.04, np.nan]).tolist()[:2] == pytest.approx([0.02, 0.08])
    assert np.isnan(stats.adjust([0.01, 0.04, np.nan])[2])
    # the interval at the family level excludes 0 exactly when the adjusted p is below alpha
    rng = np.random.default_rng(1)
    for _ in range(50):
        x = rng.normal(0.9, 0.01, 5)
        y = x + rng.normal(0.008, 0.006, 5)
        difference = stats.BlockModel(two_configs(x, y), ["activation"], "test_acc", "seed").contrast(
            [(("gelu",), ("relu",))])
        low, high = difference.interval(stats.family_confidence(0.05, 3))
        assert (low > 0 or high < 0) == (min(1.0, 3 * difference.p) < 0.05)


def test_seeds_for_power_is_statsmodels_power():
    from statsmodels.stats.power import TTestPower

    n = stats.seeds_for_power(0.01, 0.01, 0.05)
    assert TTestPower().power(effect_size=1.0, nobs=n, alpha=0.05) == pytest.approx(0.8, abs=1e-3)
    assert np.isnan(stats.seeds_for_power(0.01, 0.0, 0.05))


def test_interaction_test_agrees_with_pingouin():
    rng = np.random.default_rng(5)
    rows = [{"activation": a, "batchnorm": b, "test_acc": rng.normal(0.8 + 0.05 * (a == "gelu") * b, 0.02)}
            for a in ("relu", "gelu", "elu") for b in (False, True) for _ in range(5)]
    data = pd.DataFrame(rows)
    f_stat, p = stats.interaction_test(data, "activation", "batchnorm", "test_acc")
    theirs = pg.anova(data=data.assign(batchnorm=data["batchnorm"].astype(str)), dv="test_acc",
                      between=["activation", "batchnorm"], ss_type=2).set_index("Source")
    p_col = "p_unc" if "p_unc" in theirs else "p-unc"
    assert p == pytest.approx(theirs.loc["activation * batchnorm", p_col])
    assert f_stat == pytest.approx(theirs.loc["activation * batchnorm", "F"])


def test_fisher_and_wilson_known_answers():
    # gelu without batchnorm fails 6 of 10, relu 0 of 10: the table and its mirror image are the only
    # ones as extreme, each with probability C(10, 6) C(10, 0) / C(20, 6) = 210 / 38760
    assert stats.fisher_test(6, 10, 0, 10) == pytest.approx(2 * 210 / 38760)
    assert np.isnan(stats.fisher_test(0, 10, 0, 10)) and np.isnan(stats.fisher_test(10, 10, 10, 10))
    rate, low, high = stats.failure_rate(6, 10)
    # Wilson score interval for 6 / 10 at 95%
    z = sps.norm.ppf(0.975)
    centre, half = (0.6 + z * z / 20) / (1 + z * z / 10), z / (1 + z * z / 10) * np.sqrt(0.6 * 0.4 / 10 + z * z / 400)
    assert (rate, low, high) == pytest.approx((0.6, centre - half, centre + half))


def test_probability_of_improvement_ranks_failures_last():
    x = np.array([-np.inf, 0.9, 0.95])
    y = np.array([0.92, 0.92, 0.92])
    assert stats.probability_of_improvement(x, y, paired=True) == pytest.approx(1 / 3)
    assert stats.probability_of_improvement(x, y, paired=False) == pytest.approx(3 / 9)


def test_mark_failures_uses_the_exported_chance_rate_and_divergence():
    trials = pd.DataFrame([
        {"trainable": "mnist1d_cnn", "status": "completed", "test_acc": 0.14, "chance_acc": 0.1},
        {"trainable": "mnist1d_cnn", "status": "completed", "test_acc": 0.16, "chance_acc": 0.1},
        {"trainable": "twitter_pos_mlp", "status": "completed", "test_acc": 0.26, "chance_acc": 0.22},
        {"trainable": "mnist1d_cnn", "status": "diverged", "test_acc": 0.5, "chance_acc": 0.1},
        {"trainable": "mnist1d_cnn", "status": "error", "test_acc": None, "chance_acc": None},
        {"trainable": "mnist1d_cnn", "status": "unfinished", "test_acc": None, "chance_acc": None},
    ])
    marked = stats.mark_failures(trials)
    assert marked["did_not_train"].tolist() == [True, False, True, True]
    assert marked["failure"].tolist() == ["near chance", None, "near chance", "diverged"]
    assert stats.mark_failures(trials, margin=0.03)["did_not_train"].tolist() == [False, False, False, True]
    # results written before the chance column: only divergence counts
    assert stats.mark_failures(trials.drop(columns="chance_acc"))["did_not_train"].tolist() == [False, False, False, True]


def test_variance_shares_add_up_and_find_the_factor():
    rng = np.random.default_rng(0)
    rows = [{"activation": a, "seed": s, "test_acc": 0.8 + 0.05 * (a == "gelu") + rng.normal(0, 0.005)}
            for a in ("relu", "gelu") for s in range(6)]
    shares = stats.variance_shares(pd.DataFrame(rows), ["activation"], "test_acc").set_index("source")
    assert shares["share"].sum() == pytest.approx(1.0)
    assert shares.loc["activation", "share"] > 0.9 and shares.loc["activation", "ci_low"] > 0.8
