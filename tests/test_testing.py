"""The testing procedure (analysis.testing) on the worked graphs of Bretz, Maurer, Brannath and
Posch (2009), its joint (max-t) critical values against Dunnett's tabled ones, and the alpha
spending of seeds on demand."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.model import BlockModel
from analysis.testing import Graph, Hypothesis, closed_test, joint_factor, look_alpha

pytestmark = pytest.mark.no_ray  # starts no Ray: runs beside the machine-wide files


def holm(m: int) -> Graph:
    transitions = np.full((m, m), 1 / (m - 1))
    np.fill_diagonal(transitions, 0)
    return Graph(np.full(m, 1 / m), transitions)


def singletons(pvalues) -> list[list[Hypothesis]]:
    return [[Hypothesis(p)] for p in pvalues]


def test_removing_a_node_passes_its_weight_and_joins_its_edges():
    """Bretz et al. (2009), Figure 2: Holm's procedure for three hypotheses. Rejecting H1 gives
    H2 and H3 weight 1/2 each and joins them with g23 = (1/2 + 1/2 x 1/2) / (1 - 1/4) = 1."""
    graph = holm(3)
    graph.remove(0)
    assert graph.active == [1, 2]
    assert graph.weights[1:] == pytest.approx([0.5, 0.5])
    assert graph.transitions[1, 2] == pytest.approx(1.0) and graph.transitions[2, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("pvalues, rejected", [
    ((0.01, 0.02, 0.04), [True, True, True]),  # 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05
    ((0.01, 0.03, 0.04), [True, False, False]),  # after H1: 0.03 > 0.025
    ((0.02, 0.03, 0.04), [False, False, False]),
])
def test_holm_as_a_graph(pvalues, rejected):
    hypotheses = singletons(pvalues)
    closed_test(hypotheses, holm(3), 0.05)
    assert [h[0].rejected for h in hypotheses] == rejected
    # the graph rejects what statsmodels' Holm does
    from statsmodels.stats.multitest import multipletests
    assert multipletests(pvalues, 0.05, "holm")[0].tolist() == rejected


def test_a_fixed_sequence_stops_at_its_first_acceptance():
    """Bretz et al. (2009), fixed sequence H1 -> H2 -> H3 with all of alpha on H1."""
    hypotheses = singletons((0.01, 0.04, 0.06))
    transitions = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0.0]])
    closed_test(hypotheses, Graph([1, 0, 0], transitions), 0.05)
    assert [h[0].rejected for h in hypotheses] == [True, True, False]
    assert [h[0].level for h in hypotheses] == pytest.approx([0.05, 0.05, 0.05])
    hypotheses = singletons((0.06, 0.01, 0.01))
    closed_test(hypotheses, Graph([1, 0, 0], transitions), 0.05)
    assert not any(h[0].rejected for h in hypotheses)  # nothing passes when H1 stands


def test_two_primaries_with_their_secondaries():
    """Bretz et al. (2009), Figure 6 (two primary hypotheses H1, H2 at alpha/2 each, each
    passing to its secondary, the secondaries passing to the other primary): with
    p = (0.01, 0.03, 0.02, 0.2), H1 is rejected at 0.025, passes 0.025 to H3 (0.02 <= 0.025),
    which passes it to H2 (0.03 <= 0.05); H4 stays."""
    transitions = np.zeros((4, 4))
    transitions[0, 2] = transitions[1, 3] = 1.0
    transitions[2, 1] = transitions[3, 0] = 1.0
    hypotheses = singletons((0.01, 0.03, 0.02, 0.2))
    closed_test(hypotheses, Graph([0.5, 0.5, 0, 0], transitions), 0.05)
    assert [h[0].rejected for h in hypotheses] == [True, True, True, False]
    assert hypotheses[3][0].level == pytest.approx(0.05)  # all of alpha reached H4, still not enough


def dunnett_contrasts(treatments: int, n: int = 40):
    """Each of `treatments` levels against a control in a one-way design of equal spreads, as the
    block model gives them (runs' combinations and variances)."""
    rng = np.random.default_rng(0)
    levels = ["control", *(f"t{i}" for i in range(treatments))]
    frame = pd.DataFrame({"arm": np.repeat(levels, n), "seed": np.arange(n * len(levels)),
                          "y": rng.normal(0, 1, n * len(levels))})
    model = BlockModel(frame, ["arm"], "y", None, spread="pooled")
    of_runs = np.array([model.contrast([((t,), ("control",))]).of_runs for t in levels[1:]])
    return of_runs, model.run_variances


@pytest.mark.parametrize("treatments, tabled", [(2, 2.212), (3, 2.349), (4, 2.442)])
def test_the_joint_critical_value_is_dunnetts(treatments, tabled):
    """Two-sided Dunnett critical values at alpha 0.05 with infinite degrees of freedom (Dunnett
    1955's table; multcomp's qmvnorm gives the same): the joint level each of k comparisons is
    tested at, as a normal quantile, within 0.02 of the table and never below it (the Monte
    Carlo errs conservative)."""
    of_runs, variances = dunnett_contrasts(treatments)
    factor = joint_factor(of_runs, variances, np.full(treatments, 0.05 / treatments))
    critical = sps.norm.isf(factor * 0.05 / treatments / 2)
    assert tabled <= critical <= tabled + 0.02
    assert factor > 1  # better than Bonferroni


def test_a_group_steps_down():
    """Three joint hypotheses: the smallest p is rejected at the joint level of three, and the
    others are then tested at the joint level of two (step-down), so a p between the two levels
    is rejected only in the second round, and the last is tested alone at all of alpha."""
    of_runs, variances = dunnett_contrasts(3)
    level_of_three = joint_factor(of_runs, variances, np.full(3, 0.05 / 3)) * 0.05 / 3
    level_of_two = joint_factor(of_runs[1:], variances, np.full(2, 0.05 / 2)) * 0.05 / 2
    between = (level_of_three + level_of_two) / 2
    hypotheses = [Hypothesis(p, of_runs=row) for p, row in zip((0.001, between, 0.5), of_runs)]
    closed_test([hypotheses], Graph([1.0], [[0.0]]), 0.05, variances)
    assert [h.rejected for h in hypotheses] == [True, True, False]
    assert hypotheses[1].level == pytest.approx(level_of_two) and hypotheses[2].level == pytest.approx(0.05)


def test_a_hypothesis_with_failures_splits_its_share():
    hypothesis = Hypothesis(0.03, p_failures=0.02)
    closed_test([[hypothesis]], Graph([1.0], [[0.0]]), 0.05)
    assert hypothesis.level == pytest.approx(0.025) and hypothesis.failures_level == pytest.approx(0.025)
    assert hypothesis.rejected  # by its failures: 0.02 <= 0.025


def test_alpha_spending_shares_add_up_to_alpha_and_keep_early_looks_strict():
    """Lan-DeMets O'Brien-Fleming spending at 4 equally spaced looks, two-sided alpha 0.05: the
    published cumulative alpha is 0.0001, 0.0056, 0.0236, 0.05 (e.g. gsDesign's sfLDOF)."""
    fractions = [0.25, 0.5, 0.75, 1.0]
    shares = [look_alpha(0.05, k, 4, "obrien-fleming", fractions) for k in range(1, 5)]
    assert np.cumsum(shares) == pytest.approx([0.0001, 0.0056, 0.0236, 0.05], abs=5e-5)
    assert [look_alpha(0.05, k, 4, "equal") for k in range(1, 5)] == [0.0125] * 4
    assert look_alpha(0.05, 1, 1, "obrien-fleming", [1.0]) == 0.05  # one look: all of alpha
