"""sin, cos, atan2 and hypot from IEEE +, -, *, / and sqrt only: the same bits on every CPU.

Why: numpy picks its transcendental kernels at run time by CPU (SVML on AVX-512, its own
AVX2/FMA3 kernels, scalar libm otherwise), and they differ in the last bit. The world is
drawn by thresholding these functions (stripes, rays, blob outlines, stuff borders), so a
one-ulp difference flips a pixel: the same seed gave a different `data/world` on a machine
without AVX-512 (float32 arctan2 differs between numpy's X86_V4 and X86_V3 kernels). The
basic operations and sqrt are correctly rounded by IEEE 754 whatever the SIMD width, and
each step below is a separate ufunc call (no fused multiply-add), so these functions give
identical bits everywhere. Accuracy is about 1e-15 in float64; they are for drawing, not
for numerics.
"""

from __future__ import annotations

import numpy as np

TWO_PI = 2.0 * np.pi
HALF_PI = 0.5 * np.pi
QUARTER_PI = 0.25 * np.pi
TAN_PI_8 = 0.41421356237309503  # sqrt(2) - 1: atan's argument is folded below this

# Taylor coefficients, highest power first (Horner order).
# sin(r) = r * sum_k (-1)^k r^(2k) / (2k+1)!, for |r| <= pi/2: the x^25 term is < 1e-19.
_SIN_COEFFS = tuple(
    (-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 2, dtype=np.float64)))
    for k in reversed(range(12))
)
# atan(t) = t * sum_k (-1)^k t^(2k) / (2k+1), for |t| <= tan(pi/8): t^45 / 45 < 1e-19.
_ATAN_COEFFS = tuple((-1.0) ** k / (2 * k + 1) for k in reversed(range(23)))


def _odd_series(x: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    """x * P(x^2) by Horner's rule, one ufunc per step (in place: the world's render
    spends most of its time here, and the steps and their order, so the bits, are the
    same as `acc = acc * x2 + c`)."""
    x2 = x * x
    acc = x2 * coeffs[0]  # == full(coeffs[0]) * x2: IEEE multiplication commutes
    for c in coeffs[1:-1]:
        acc += c
        acc *= x2
    acc += coeffs[-1]
    acc *= x
    return acc


def sin(x) -> np.ndarray:
    """sin(x) in float64, bit-identical on every CPU."""
    x = np.asarray(x, np.float64)
    r = x - np.rint(x / TWO_PI) * TWO_PI  # [-pi, pi]
    # sin(pi - r) = sin(r): fold into [-pi/2, pi/2], where the series converges fast.
    r = np.where(r > HALF_PI, np.pi - r, r)
    r = np.where(r < -HALF_PI, -np.pi - r, r)
    return _odd_series(r, _SIN_COEFFS)


def cos(x) -> np.ndarray:
    """cos(x) = sin(x + pi/2), float64, bit-identical on every CPU."""
    return sin(np.asarray(x, np.float64) + HALF_PI)


def arctan2(y, x) -> np.ndarray:
    """atan2(y, x) in (-pi, pi], float64, bit-identical on every CPU; atan2(0, 0) = 0."""
    y = np.asarray(y, np.float64)
    x = np.asarray(x, np.float64)
    ay, ax = np.abs(y), np.abs(x)
    big = np.maximum(ay, ax)
    small = np.minimum(ay, ax)
    t = np.divide(small, big, out=np.zeros_like(big), where=big > 0)  # [0, 1]
    # atan(t) = pi/4 + atan((t - 1) / (t + 1)) keeps the series argument below tan(pi/8).
    folded = t > TAN_PI_8
    u = np.where(folded, (t - 1.0) / (t + 1.0), t)
    a = _odd_series(u, _ATAN_COEFFS)
    a = np.where(folded, a + QUARTER_PI, a)  # atan(small / big) in [0, pi/4]
    a = np.where(ay > ax, HALF_PI - a, a)  # first-quadrant angle in [0, pi/2]
    a = np.where(x < 0, np.pi - a, a)
    return np.where(y < 0, -a, a)


def hypot(y, x) -> np.ndarray:
    """sqrt(x^2 + y^2) in float64 (sqrt is correctly rounded, so portable)."""
    y = np.asarray(y, np.float64)
    x = np.asarray(x, np.float64)
    return np.sqrt(x * x + y * y)
