"""Power and seeds needed against statsmodels' t-test power, a simulated TOST and a Monte Carlo of
the current trend."""

import numpy as np
import pytest
from scipy import stats as sps

from analysis import power as stats

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files


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
