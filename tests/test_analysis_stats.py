"""Statistics against known answers and against the libraries they wrap; degenerate inputs."""

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as sps

from analysis import stats

X = [1.0, 2.0, 3.0, 4.0, 5.0]
Y = [3.0, 4.0, 5.0, 6.0, 8.0]


def frame(groups: dict, factor="activation", value="final_val_acc", **extra) -> pd.DataFrame:
    rows = [{factor: k, value: v, **extra} for k, vs in groups.items() for v in vs]
    return pd.DataFrame(rows)


def test_pairwise_matches_hand_computed_values():
    table = stats.pairwise(frame({"a": X, "b": Y}), "activation", "final_val_acc", baseline="b")
    row = table.iloc[0]
    assert row["mean_diff"] == pytest.approx(3.0 - 5.2)
    # pooled sd sqrt((2.5 + 3.7) / 2); Hedges' correction 1 - 3 / (4 (n1 + n2) - 9)
    assert row["cohen_d"] == pytest.approx(-2.2 / np.sqrt(3.1))
    assert row["hedges_g"] == pytest.approx(-2.2 / np.sqrt(3.1) * (1 - 3 / 31))
    assert row["mwu_U"] == 4.5  # pairs with x > y count 1, ties 0.5: (2 > ... ) counted by hand
    assert row["cles"] == pytest.approx(4.5 / 25)
    assert row["cliffs_delta"] == pytest.approx(2 * 4.5 / 25 - 1)
    assert row["ci_low"] < row["mean_diff"] < row["ci_high"]


def test_exact_mann_whitney_of_separated_samples():
    row = stats.pairwise(frame({"a": [1, 2, 3], "b": [4, 5, 6]}), "activation", "final_val_acc", baseline="b").iloc[0]
    assert row["mwu_U"] == 0 and row["p_mwu"] == pytest.approx(0.1)  # 2 of C(6, 3) = 20 orderings
    assert row["cliffs_delta"] == -1 and row["cles"] == 0


def test_pairwise_agrees_with_scipy_on_a_fixed_dataset():
    rng = np.random.default_rng(7)
    data = {"relu": rng.normal(0.9, 0.02, 10), "gelu": rng.normal(0.88, 0.03, 10), "elu": rng.normal(0.9, 0.01, 10)}
    table = stats.pairwise(frame(data), "activation", "final_val_acc", baseline="relu", correction="bh")
    for _, row in table.iterrows():
        x, y = data[row["level"]], data["relu"]
        assert row["p_welch"] == pytest.approx(sps.ttest_ind(x, y, equal_var=False).pvalue)
        assert row["p_mwu"] == pytest.approx(sps.mannwhitneyu(x, y).pvalue)
    bh = sps.false_discovery_control(table["p_welch"].to_numpy(), method="bh")
    assert table["p_welch_corrected"].to_numpy() == pytest.approx(bh)


def test_corrections_known_answers():
    p = pd.Series([0.01, 0.04, 0.03])
    assert stats.correct(p, "holm").tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert stats.correct(p, "bh").tolist() == pytest.approx([0.03, 0.04, 0.04])
    assert stats.correct(pd.Series([0.02, np.nan]), "holm").tolist()[0] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="holm"):
        stats.correct(p, "sidak-ish")


def test_omnibus_agrees_with_scipy_and_pingouin():
    rng = np.random.default_rng(3)
    data = {k: rng.normal(m, s, 8) for k, m, s in [("a", 0.8, 0.01), ("b", 0.82, 0.05), ("c", 0.79, 0.02)]}
    table = stats.omnibus(frame(data), "activation", "final_val_acc").set_index("test")
    assert table.loc["Kruskal-Wallis H", "p"] == pytest.approx(sps.kruskal(*data.values()).pvalue)
    assert table.loc["one-way ANOVA F", "p"] == pytest.approx(sps.f_oneway(*data.values()).pvalue)
    welch = pg.welch_anova(data=frame(data), dv="final_val_acc", between="activation")
    assert table.loc["Welch ANOVA F", "p"] == pytest.approx(welch["p_unc"].iloc[0] if "p_unc" in welch else welch["p-unc"].iloc[0])


def test_two_way_anova_agrees_with_pingouin():
    rng = np.random.default_rng(5)
    rows = [{"activation": a, "batchnorm": b, "final_val_acc": rng.normal(0.8 + 0.05 * (a == "gelu") * b, 0.02)}
            for a in ("relu", "gelu", "elu") for b in (False, True) for _ in range(5)]
    data = pd.DataFrame(rows)
    ours = stats.two_way_anova(data, "activation", "batchnorm", "final_val_acc").set_index("term")
    theirs = pg.anova(data=data.assign(batchnorm=data["batchnorm"].astype(str)), dv="final_val_acc",
                      between=["activation", "batchnorm"], ss_type=2).set_index("Source")
    p_col = "p_unc" if "p_unc" in theirs else "p-unc"
    assert ours.loc["activation x batchnorm", "p"] == pytest.approx(theirs.loc["activation * batchnorm", p_col])
    assert ours.loc["activation", "F"] == pytest.approx(theirs.loc["activation", "F"])


def test_fisher_flags_gelu_without_batchnorm_failing_6_of_10():
    rows = []
    for activation in ("relu", "gelu"):
        for batchnorm in (False, True):
            for seed in range(10):
                fails = activation == "gelu" and not batchnorm and seed < 6
                rows.append({"trainable": "mnist1d_cnn", "activation": activation, "batchnorm": batchnorm, "seed": seed,
                             "status": "completed", "final_val_acc": 0.11 if fails else 0.9})
    marked = stats.mark_failures(pd.DataFrame(rows))
    table = stats.failure_rates(marked, ["activation", "batchnorm"]).set_index("level")
    cell = table.loc["gelu / False"]
    assert (cell["failed"], cell["n"]) == (6, 10)
    # hypergeometric by hand: C(34, 4) / C(40, 10), the only table as extreme
    assert cell["p_fisher"] == pytest.approx(46376 / 847660528)
    assert cell["p_fisher_corrected"] < 0.001
    assert table.drop("gelu / False")["failed"].sum() == 0


def test_mark_failures_uses_chance_per_dataset_and_divergence():
    trials = pd.DataFrame([
        {"trainable": "mnist1d_cnn", "status": "completed", "final_val_acc": 0.14},  # 10 classes: chance 0.1
        {"trainable": "mnist1d_cnn", "status": "completed", "final_val_acc": 0.16},
        {"trainable": "twitter_pos_mlp", "status": "completed", "final_val_acc": 0.08},  # 25 tags: chance 0.04
        {"trainable": "mnist1d_cnn", "status": "diverged", "final_val_acc": 0.5},
        {"trainable": "mnist1d_cnn", "status": "error", "final_val_acc": None},
    ])
    marked = stats.mark_failures(trials)
    assert marked["did_not_train"].tolist() == [True, False, True, True]
    assert marked["failure"].tolist() == ["near chance", None, "near chance", "diverged"]
    assert stats.mark_failures(trials, margin=0.03)["did_not_train"].tolist() == [False, False, False, True]


# --- degenerate inputs --------------------------------------------------------------------

def test_single_seed_is_not_testable_never_nan_as_result():
    data = frame({"relu": [0.9], "gelu": [0.8]})
    omni = stats.omnibus(data, "activation", "final_val_acc")
    assert omni["p"].isna().all() and (omni["note"] == "not testable: a group has fewer than 2 runs").all()
    pair = stats.pairwise(data, "activation", "final_val_acc", baseline="relu").iloc[0]
    assert np.isnan(pair["p_mwu"]) and pair["note"].startswith("not testable")
    assert np.isnan(pair["p_mwu_corrected"])


def test_one_level_only():
    data = frame({"relu": [0.9, 0.91, 0.92]})
    assert (stats.omnibus(data, "activation", "final_val_acc")["note"] == "not testable: fewer than 2 levels with results").all()
    assert stats.pairwise(data, "activation", "final_val_acc").empty
    anova = stats.two_way_anova(data.assign(batchnorm=True), "activation", "batchnorm", "final_val_acc")
    assert anova["note"].iloc[0] == "not testable: a factor has fewer than 2 levels"


def test_constant_values():
    data = frame({"relu": [0.5, 0.5], "gelu": [0.5, 0.5]})
    assert (stats.omnibus(data, "activation", "final_val_acc")["note"] == "not testable: all values are equal").all()
    row = stats.pairwise(data, "activation", "final_val_acc", baseline="relu").iloc[0]
    assert row["note"] == "not testable: all values are equal" and np.isnan(row["p_welch"])


def test_all_diverged():
    trials = pd.DataFrame([{"trainable": "mnist_mlp", "activation": a, "status": "diverged", "final_val_acc": np.nan}
                           for a in ("relu", "gelu") for _ in range(3)])
    marked = stats.mark_failures(trials)
    assert marked["did_not_train"].all()
    rates = stats.failure_rates(marked, "activation")
    assert (rates["rate"] == 1.0).all() and (rates["note"] == "not testable: every run failed").all()
    omni = stats.omnibus(marked, "activation", "final_val_acc")
    assert omni["p"].isna().all() and omni["note"].str.startswith("not testable").all()
