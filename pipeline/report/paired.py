"""The paired rule for a claim "A beats B" over world seeds: a one-sided paired t-test on the
per-seed differences d_s = A_s − B_s.

Each world seed draws its own world, CLIP, proposal net and pairs, so every row of a seed
moves together; the report's strict rule (pipeline/report/summary.py) compares the means
against the rows' spreads, which are mostly that shared seed effect. The per-seed
differences remove it. With n seeds, t = mean(d) / (sd(d) / √n), sd with n − 1 degrees of
freedom, and the claim holds at level ALPHA when P(T ≥ t) < ALPHA for Student's t with
n − 1 degrees of freedom. Each check is tested on its own (no correction for the report's
many checks: at ALPHA = 0.05 about one check in twenty passes by chance when A and B do
not differ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ALPHA = 0.05


def student_t_sf(t: float, df: int) -> float:
    """P(T ≥ t) for Student's t with integer `df` ≥ 1 degrees of freedom, by the finite
    series for A(t|ν) = P(|T| < t) (Abramowitz & Stegun 26.7.3 and 26.7.4): with
    θ = atan(t/√ν), for odd ν A = 2/π·(θ + sinθ·cosθ·Σ_{k<(ν−1)/2} c_k cos^{2k}θ),
    c_0 = 1, c_k = c_{k−1}·2k/(2k+1); for even ν A = sinθ·Σ_{k<ν/2} e_k cos^{2k}θ,
    e_0 = 1, e_k = e_{k−1}·(2k−1)/(2k)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    term, total = 1.0, 1.0
    if df % 2:
        for k in range(1, (df - 1) // 2):
            term *= c2 * 2 * k / (2 * k + 1)
            total += term
        inside = 2 / math.pi * (theta + (math.sin(theta) * math.cos(theta) * total
                                         if df > 1 else 0.0))
    else:
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        inside = math.sin(theta) * total
    upper = (1 - inside) / 2  # P(T ≥ |t|)
    return upper if t >= 0 else 1 - upper


def paired_t(better: Sequence[float], worse: Sequence[float]) -> tuple[float, float]:
    """(t, one-sided p) of the paired test that `better` exceeds `worse` seed by seed.
    Differences that are all equal give t = ±inf (p 0 or 1), or t = 0 (p 0.5) when all
    are zero."""
    if len(better) != len(worse) or len(better) < 2:
        raise ValueError(f"a paired test needs two equal-length samples of at least 2 seeds, "
                         f"got {len(better)} and {len(worse)}")
    d = [a - b for a, b in zip(better, worse)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if sd == 0.0:
        t = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    else:
        t = mean / (sd / math.sqrt(n))
    return t, student_t_sf(t, n - 1)


def paired_verdict(t: float, p: float, alpha: float = ALPHA) -> str:
    """'reproduced' when A > B at level alpha, 'opposite' when B > A at that level (the
    other one-sided test, p' = 1 − p), else 'not significant'."""
    if p < alpha:
        return "reproduced"
    if 1 - p < alpha:
        return "opposite"
    return "not significant"
