"""Failed runs: Fisher's test and Wilson's interval against hand-worked answers, the probability of
improvement, and which runs count as failed."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import failures as stats

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files


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
