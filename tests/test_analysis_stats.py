"""Statistics against known answers and against the libraries they wrap; degenerate inputs."""

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as sps

from analysis import stats

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files


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
    assert difference.df == pytest.approx(4)
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


def test_two_configurations_of_different_spread_without_blocks_are_welchs_t_test():
    x, y = [0.90, 0.92, 0.91, 0.95], [0.80, 0.99, 0.85, 0.97, 0.93]
    frame = two_configs(x, y).assign(seed=[*range(4), *range(10, 15)])
    # spread_level 1: Bartlett always "rejects", so each configuration keeps its own variance
    model = stats.BlockModel(frame, ["activation"], "test_acc", None, spread_level=1.0)
    difference = model.contrast([(("gelu",), ("relu",))])
    welch = sps.ttest_ind(y, x, equal_var=False)
    assert list(model.groups) == [0, 1]
    assert difference.p == pytest.approx(welch.pvalue) and difference.df == pytest.approx(welch.df)
    assert difference.interval(0.9) == pytest.approx(tuple(welch.confidence_interval(0.9)))


def test_equal_spreads_share_one_variance_and_the_model_is_the_pooled_one():
    rng = np.random.default_rng(0)
    rows = [{"activation": a, "seed": s, "test_acc": 0.9 + 0.01 * s + rng.normal(0, 0.005)}
            for a in ("relu", "gelu", "elu", "silu") for s in range(6)]
    grouped = stats.BlockModel(pd.DataFrame(rows), ["activation"], "test_acc", "seed")
    pooled = stats.BlockModel(pd.DataFrame(rows), ["activation"], "test_acc", "seed", spread="pooled")
    assert set(grouped.groups) == {0}
    a, b = (m.contrast([(("gelu",), ("relu",))]) for m in (grouped, pooled))
    assert (a.effect, a.se, a.df) == pytest.approx((b.effect, b.se, b.df))
    assert a.df == pytest.approx(15)  # (4 - 1) x (6 - 1): the two-way model's residual df


def test_a_noisy_configuration_keeps_its_own_variance():
    rng = np.random.default_rng(4)
    sds = {"relu": 0.002, "gelu": 0.002, "elu": 0.002, "silu": 0.002, "sigmoid": 0.05}
    rows = [{"activation": a, "seed": s, "test_acc": 0.9 + 0.01 * s + rng.normal(0, sd)}
            for a, sd in sds.items() for s in range(5)]
    model = stats.BlockModel(pd.DataFrame(rows), ["activation"], "test_acc", "seed")
    assert list(model.groups) == [0, 0, 0, 0, 1]
    quiet = model.contrast([(("gelu",), ("relu",))])
    noisy = model.contrast([(("sigmoid",), ("relu",))])
    # the quiet comparison's spread is the quiet configurations' own, the noisy one's its own
    assert 0.001 < quiet.unit_sd < 0.006 and 0.02 < noisy.unit_sd < 0.1
    pooled = stats.BlockModel(pd.DataFrame(rows), ["activation"], "test_acc", "seed", spread="pooled")
    assert pooled.contrast([(("gelu",), ("relu",))]).unit_sd > 3 * quiet.unit_sd


def test_group_variances_of_three_configurations_are_grubbs_estimators():
    """Seeds as items, configurations as instruments: with three configurations the unbiased
    variances are Grubbs' (1948), sigma_a^2 = (V_ab + V_ac - V_bc) / 2, V the variance over seeds
    of a difference of two configurations."""
    rng = np.random.default_rng(7)
    seeds, sds = 20, (0.01, 0.02, 0.04)
    shared = rng.normal(0, 0.05, seeds)
    y = np.array([[0.9 + shared[s] + rng.normal(0, sd) for s in range(seeds)] for sd in sds])
    V = {(a, b): np.var(y[a] - y[b], ddof=1) for a in range(3) for b in range(3) if a != b}
    grubbs = [(V[0, 1] + V[0, 2] - V[1, 2]) / 2, (V[0, 1] + V[1, 2] - V[0, 2]) / 2, (V[0, 2] + V[1, 2] - V[0, 1]) / 2]
    config, block = np.repeat(np.arange(3), seeds), np.tile(np.arange(seeds), 3)
    X = np.column_stack([np.ones(3 * seeds), *(config == c for c in (1, 2)), *(block == s for s in range(1, seeds))])
    residual_maker = np.eye(3 * seeds) - X @ np.linalg.pinv(X)
    variances, dfs = stats.group_variances(residual_maker, y.ravel(), config, 3)
    assert min(grubbs) > 0 and variances == pytest.approx(grubbs)
    assert dfs.sum() == pytest.approx((3 - 1) * (seeds - 1))


def test_the_prior_of_a_set_of_variances_known_answers():
    # trigamma(1) = pi^2 / 6, trigamma(1/2) = pi^2 / 2
    assert stats.trigamma_inverse(np.pi ** 2 / 6) == pytest.approx(1.0)
    assert stats.trigamma_inverse(np.pi ** 2 / 2) == pytest.approx(0.5)
    # variances whose logs vary as sampling with 4 df alone would: no prior spread, d0 infinite
    from scipy.special import digamma, polygamma
    spread = float(np.sqrt(polygamma(1, 2.0)))
    alike = np.exp(np.array([-1.0, 0.0, 1.0]) * spread * 0.5)
    d0, _ = stats.prior_spread(alike, [4, 4, 4])
    assert d0 == np.inf and (stats.moderation_weights(alike, [4, 4, 4]) == 1).all()
    # three variances 1, e^1.5, e^3 with 4 df each: log spread var 2.25 minus trigamma(2) leaves
    # trigamma(d0 / 2); computed by hand from limma's fitFDist moments
    variances = np.exp([0.0, 1.5, 3.0])
    excess = 2.25 - float(polygamma(1, 2.0))
    d0, s0 = stats.prior_spread(variances, [4, 4, 4])
    assert float(polygamma(1, d0 / 2)) == pytest.approx(excess)
    e_mean = 1.5 - float(digamma(2.0)) + np.log(2.0)
    assert s0 == pytest.approx(np.exp(e_mean + digamma(d0 / 2) - np.log(d0 / 2)))
    assert stats.moderation_weights(variances, [4, 4, 4]) == pytest.approx(np.full(3, d0 / (d0 + 4)))


def test_bartlett_and_satterthwaite_known_answers():
    rng = np.random.default_rng(8)
    samples = [rng.normal(0, sd, n) for sd, n in ((1, 5), (2, 7), (1.5, 4))]
    variances = [np.var(x, ddof=1) for x in samples]
    assert stats.bartlett_p(variances, [len(x) - 1 for x in samples]) == pytest.approx(sps.bartlett(*samples).pvalue)
    assert stats.satterthwaite_df([1.0, 1.0], [4, 4]) == pytest.approx(8)
    assert stats.satterthwaite_df([3.0, 1.0], [2, 10]) == pytest.approx(16 / (9 / 2 + 1 / 10))


def test_decision_power_is_the_t_tests_power_and_the_tosts():
    from statsmodels.stats.power import TTestPower
    from statsmodels.stats.weightstats import ttost_paired

    # no equivalence band: the two-sided t-test's power (statsmodels' noncentral t)
    for effect, n in ((0.5, 10), (1.0, 6), (0.3, 40)):
        ours = stats.decision_power(effect, 1.0, [n], [n - 1], 0.01, 0.0)[0]
        assert ours == pytest.approx(TTestPower().power(effect_size=effect, nobs=n, alpha=0.01), abs=0.01)
    # no effect: the chance that TOST (statsmodels' ttost_paired) calls it equivalent, by simulation
    rng = np.random.default_rng(9)
    n, delta, level = 8, 0.01, 0.05
    hits = 0
    for _ in range(4000):
        x = rng.normal(0.9, 0.01, n)
        y = x + rng.normal(0.0, 0.007, n)
        hits += ttost_paired(y, x, -delta, delta)[0] < level
    ours = stats.decision_power(0.0, 0.007, [n], [n - 1], level, delta)[0]
    assert ours == pytest.approx(hits / 4000, abs=0.03)


def test_seeds_to_decide_is_never_nan_and_grows_with_the_spread():
    small = stats.seeds_to_decide(0.01, 0.005, 3, 2, 0.05, 0.01)
    large = stats.seeds_to_decide(0.01, 0.02, 3, 2, 0.05, 0.01)
    assert 3 < small < large
    # planned with an upper bound of the spread: at least what the spread alone would ask
    at_the_bound = stats.decision_power(0.01, 0.005, [small], [2 * (small - 1) / 2], 0.05, 0.01)[0]
    assert at_the_bound >= 0.8
    assert stats.seeds_to_decide(0.0, 0.01, 3, 2, 0.05, 0.0) == stats.MAX_SEEDS_NEEDED  # nothing can decide it


def test_interaction_test_agrees_with_pingouin():
    rng = np.random.default_rng(5)
    rows = [{"activation": a, "batchnorm": b, "test_acc": rng.normal(0.8 + 0.05 * (a == "gelu") * b, 0.02)}
            for a in ("relu", "gelu", "elu") for b in (False, True) for _ in range(5)]
    data = pd.DataFrame(rows)
    model = stats.BlockModel(data, ["activation", "batchnorm"], "test_acc", None, spread="pooled")
    f_stat, p = model.interaction(0, 1)
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
    # below chance + 0.05 x (1 - chance): 0.145 on MNIST-1D, 0.259 on POS tags
    assert marked["did_not_train"].tolist() == [True, False, False, True]
    assert marked["failure"].tolist() == ["near chance", None, None, "diverged"]
    assert stats.mark_failures(trials, margin=0.03)["did_not_train"].tolist() == [False, False, False, True]
    # an imbalanced test set (90% majority class): 95% is a model that trained, 90.3% is not
    imbalanced = pd.DataFrame([{"status": "completed", "test_acc": a, "chance_acc": 0.9} for a in (0.95, 0.903)])
    assert stats.mark_failures(imbalanced)["did_not_train"].tolist() == [False, True]
    # results written before the chance column: only divergence counts
    assert stats.mark_failures(trials.drop(columns="chance_acc"))["did_not_train"].tolist() == [False, False, False, True]


def test_variance_shares_add_up_and_find_the_factor():
    rng = np.random.default_rng(0)
    rows = [{"activation": a, "seed": s, "test_acc": 0.8 + 0.05 * (a == "gelu") + rng.normal(0, 0.005)}
            for a in ("relu", "gelu") for s in range(6)]
    shares = stats.variance_shares(pd.DataFrame(rows), ["activation"], "test_acc").set_index("source")
    assert shares["share"].sum() == pytest.approx(1.0)
    assert shares.loc["activation", "share"] > 0.9 and shares.loc["activation", "ci_low"] > 0.8


@pytest.mark.parametrize("effect, unit_sd", [(0.0, 0.02), (0.004, 0.015), (0.012, 0.01), (0.001, 0.004)])
def test_conditional_power_is_the_chance_of_a_decision_given_the_seeds_so_far(effect, unit_sd):
    """Monte Carlo of the current trend: the seeds still to come differ by `effect` with spread
    `unit_sd`; the final estimate pools them with the 4 seeds seen (mean `effect`), and is decided
    by the two-sided test or the two one-sided tests at the final standard error."""
    rng = np.random.default_rng(3)
    seeds, final, level, smallest, df = 4, 16, 0.01, 0.01, 30.0
    future = rng.normal(effect, unit_sd, (200_000, final - seeds)).sum(axis=1)
    estimate = (seeds * effect + future) / final
    se = unit_sd / np.sqrt(final)
    different = np.abs(estimate) > sps.t.ppf(1 - level / 2, df) * se
    equivalent = np.abs(estimate) < smallest - sps.t.ppf(1 - level, df) * se
    simulated = np.mean(different | equivalent)
    assert stats.conditional_power(effect, unit_sd, seeds, final, df, level, smallest) == \
        pytest.approx(simulated, abs=0.005)
    assert stats.conditional_power(effect, unit_sd, final, final, df, level, smallest) == 0.0  # nothing to add


def test_alpha_spending_shares_add_up_to_alpha_and_keep_early_looks_strict():
    """Lan-DeMets O'Brien-Fleming spending at 4 equally spaced looks, two-sided alpha 0.05: the
    published cumulative alpha is 0.0001, 0.0056, 0.0236, 0.05 (e.g. gsDesign's sfLDOF)."""
    fractions = [0.25, 0.5, 0.75, 1.0]
    shares = [stats.look_alpha(0.05, k, 4, "obrien-fleming", fractions) for k in range(1, 5)]
    assert np.cumsum(shares) == pytest.approx([0.0001, 0.0056, 0.0236, 0.05], abs=5e-5)
    assert [stats.look_alpha(0.05, k, 4, "equal") for k in range(1, 5)] == [0.0125] * 4
    assert stats.look_alpha(0.05, 1, 1, "obrien-fleming", [1.0]) == 0.05  # one look: all of alpha
