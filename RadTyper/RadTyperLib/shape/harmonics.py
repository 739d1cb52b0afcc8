"""Complex spherical harmonics ``Y_l^m(θ, φ)`` for every (l, m) up to a degree, from a stable recurrence.

RadTyper runs inside 3D Slicer, whose bundled SciPy differs per release (Slicer 5.10: SciPy 1.13.1, which has
``scipy.special.sph_harm`` but not ``sph_harm_y_all``; Slicer 5.12: SciPy 1.17.1, where ``sph_harm`` is
gone). The SPHARM basis therefore does not depend on any SciPy version: it is computed here with numpy only.

Convention (SPHARM-MAT ``calculate_SPHARM_basis``, SciPy ``sph_harm_y(l, m, θ, φ)``):
``Y_l^m(θ, φ) = sqrt((2l+1)/(4π)·(l−m)!/(l+m)!) P_l^m(cos θ) e^{imφ}`` with the Condon–Shortley phase in
``P_l^m``, ``Y_l^{−m} = (−1)^m conj(Y_l^m)``; θ is the polar angle from +z in [0, π], φ the azimuth.

The fully normalised associated Legendre functions ``N_l^m = sqrt((2l+1)/(4π)·(l−m)!/(l+m)!) P_l^m`` are
built with the standard three-term recurrence in l at fixed m (no factorials, no large intermediate
values), which is accurate to ~1e-14 for the degrees used here (L ≤ 15, tested to L = 40):

* ``N_0^0 = 1/sqrt(4π)``,
* ``N_m^m = −sqrt((2m+1)/(2m))·sin θ·N_{m−1}^{m−1}`` (diagonal, Condon–Shortley phase),
* ``N_{m+1}^m = sqrt(2m+3)·cos θ·N_m^m``,
* ``N_l^m = a_lm (cos θ·N_{l−1}^m − b_lm N_{l−2}^m)``, ``a_lm = sqrt((4l²−1)/(l²−m²))``,
  ``b_lm = sqrt(((l−1)²−m²)/(4(l−1)²−1))``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def legendre_by_order(
    cos_theta: np.ndarray, sin_theta: np.ndarray, degree: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(m, N)`` for m = 0..L, where ``N[l − m]`` = ``N_l^m`` (l = m..L; shape ``(L − m + 1, n)``).

    One order at a time: callers that assemble a basis or evaluate a series block by block (SPHARM fit and
    reconstruction) never hold the full ``(L+1, L+1, n)`` table.
    """
    x = np.asarray(cos_theta, float).ravel()
    s = np.asarray(sin_theta, float).ravel()
    L = int(degree)
    if L < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    nmm = np.full(x.size, 1.0 / np.sqrt(4.0 * np.pi))
    for m in range(L + 1):
        if m > 0:
            nmm = -np.sqrt((2.0 * m + 1.0) / (2.0 * m)) * s * nmm
        p = np.empty((L - m + 1, x.size))
        p[0] = nmm
        if m < L:
            p[1] = np.sqrt(2.0 * m + 3.0) * x * nmm
        for l in range(m + 2, L + 1):
            a = np.sqrt((4.0 * l * l - 1.0) / (l * l - m * m))
            b = np.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1.0))
            p[l - m] = a * (x * p[l - m - 1] - b * p[l - m - 2])
        yield m, p


def legendre_normalized(cos_theta: np.ndarray, sin_theta: np.ndarray, degree: int) -> np.ndarray:
    """``N_l^m`` for 0 ≤ m ≤ l ≤ ``degree`` as an array ``(L+1, L+1, n)`` (entry ``[l, m]``; zero for m > l)."""
    x = np.asarray(cos_theta, float).ravel()
    L = int(degree)
    if L < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    out = np.zeros((L + 1, L + 1, x.size))
    for m, p in legendre_by_order(cos_theta, sin_theta, L):
        out[m:, m] = p
    return out


def spherical_harmonics(theta: np.ndarray, phi: np.ndarray, degree: int) -> np.ndarray:
    """Complex matrix ``(n, (L+1)²)`` whose column ``l² + l + m`` is ``Y_l^m(θ, φ)`` (l ≤ L, −l ≤ m ≤ l).

    ``theta`` (polar angle, radians) and ``phi`` (azimuth, radians) are 1-D arrays of the same length.
    """
    theta = np.asarray(theta, float).ravel()
    phi = np.asarray(phi, float).ravel()
    if theta.shape != phi.shape:
        raise ValueError(f"theta and phi differ in length ({theta.size} vs {phi.size})")
    L = int(degree)
    out = np.empty((theta.size, (L + 1) ** 2), dtype=np.complex128)
    e = np.exp(1j * np.outer(phi, np.arange(L + 1)))  # e^{imφ}, (n, L+1)
    # sin θ ≥ 0 on [0, π]; computing it directly (not sqrt(1 − cos²)) keeps full precision near the poles
    for m, p in legendre_by_order(np.cos(theta), np.sin(theta), L):
        ls = np.arange(m, L + 1)
        block = p.T * e[:, m : m + 1]
        out[:, ls * ls + ls + m] = block
        if m:
            out[:, ls * ls + ls - m] = (-1.0) ** m * np.conj(block)
    return out
