"""The paired rule of the paper-tables report: Student's t tail and the one-sided paired
t-test over seeds (pipeline/report/paired.py)."""

import math

import numpy as np
import pytest

from pipeline.report.ablations import TABLES
from pipeline.report.paired import paired_t, paired_verdict, student_t_sf
from pipeline.report.summary import claim_verdict
from tests.test_paper_tables import fake_runs


def t_tail_by_integration(t: float, df: int) -> float:
    """P(T ≥ t) another way: the density integrated numerically from t to
    infinite (x = tan u, so the range is finite), by the midpoint rule."""
    def density(x):
        return (math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
                * (1 + x * x / df) ** (-(df + 1) / 2))
    edges = np.linspace(math.atan(t), math.pi / 2, 200001)
    u = (edges[:-1] + edges[1:]) / 2  # midpoint rule: tan(π/2) itself is never needed
    return float(np.sum(density(np.tan(u)) / np.cos(u) ** 2) * (edges[1] - edges[0]))


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("t", [-1.5, 0.0, 0.4, 1.3, 2.7, 6.0])
def test_the_t_tail_matches_the_integrated_density(t, df):
    assert student_t_sf(t, df) == pytest.approx(t_tail_by_integration(t, df), abs=2e-6)


@pytest.mark.parametrize("df, t95", [(1, 6.313752), (2, 2.919986), (3, 2.353363),
                                     (4, 2.131847), (10, 1.812461)])
def test_the_t_tail_is_five_percent_at_the_printed_critical_values(df, t95):
    assert student_t_sf(t95, df) == pytest.approx(0.05, abs=1e-6)
    assert student_t_sf(-t95, df) == pytest.approx(0.95, abs=1e-6)


def test_paired_t_is_the_textbook_formula():
    a, b = [0.52, 0.47, 0.61, 0.40, 0.55], [0.50, 0.46, 0.57, 0.41, 0.50]
    d = np.subtract(a, b)
    t_formula = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    t, p = paired_t(a, b)
    assert t == pytest.approx(t_formula) and p == pytest.approx(student_t_sf(t_formula, 4))
    assert paired_t(b, a)[1] == pytest.approx(1 - p)


def test_the_paired_rule_sees_through_what_the_seed_shares():
    """Rows far apart from seed to seed, A above B by about a point on every seed: inside the
    spread rule, reproduced by the paired one; and the other way round, opposite."""
    world = (0.30, 0.45, 0.38, 0.52, 0.41)  # the seed's shared effect
    gaps = (0.010, 0.012, 0.008, 0.011, 0.009)
    t = TABLES[3]
    claim = t.claims[0]  # MPT only > base CLIP

    def value(e, s):
        return world[s] + (gaps[s] if e == "mpt_only" else 0.0)

    runs = fake_runs(value, seeds=range(5))
    v = claim_verdict(t, claim, runs, "world_full", list(range(5)))
    assert v.verdict == "within spread" and v.paired == "reproduced" and v.paired_p < 0.001
    flipped = claim_verdict(t, claim, fake_runs(lambda e, s: value(e, s) - 2 * gaps[s] * (
        e == "mpt_only"), seeds=range(5)), "world_full", list(range(5)))
    assert flipped.paired == "opposite"


def test_degenerate_differences_and_the_verdict_words():
    assert paired_t([1.0, 2.0], [0.0, 1.0]) == (math.inf, 0.0)
    assert paired_t([1.0, 2.0], [1.0, 2.0]) == (0.0, 0.5)
    assert paired_verdict(2.0, 0.04) == "reproduced"
    assert paired_verdict(-2.0, 0.97) == "opposite"
    assert paired_verdict(0.5, 0.3) == "not significant"
    with pytest.raises(ValueError, match="at least 2 seeds"):
        paired_t([0.5], [0.4])
