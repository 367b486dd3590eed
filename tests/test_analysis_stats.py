"""Descriptive statistics: variance shares add up and find the factor."""

import numpy as np
import pandas as pd
import pytest

from analysis import stats

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files


def test_variance_shares_add_up_and_find_the_factor():
    rng = np.random.default_rng(0)
    rows = [{"activation": a, "seed": s, "test_acc": 0.8 + 0.05 * (a == "gelu") + rng.normal(0, 0.005)}
            for a in ("relu", "gelu") for s in range(6)]
    shares = stats.variance_shares(pd.DataFrame(rows), ["activation"], "test_acc").set_index("source")
    assert shares["share"].sum() == pytest.approx(1.0)
    assert shares.loc["activation", "share"] > 0.9 and shares.loc["activation", "ci_low"] > 0.8
