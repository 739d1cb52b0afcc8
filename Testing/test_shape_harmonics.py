"""The SciPy-independent spherical harmonics (``RadTyperLib.shape.harmonics``) against SciPy and identities."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

from RadTyperLib.shape.harmonics import legendre_normalized, spherical_harmonics
from RadTyperLib.shape.spharm import basis, lm_index


def _angles(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    theta = np.arccos(rng.uniform(-1, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    # the poles, the equator and φ = 0 exactly
    theta = np.concatenate([theta, [0.0, np.pi, np.pi / 2, 1e-9, np.pi - 1e-9]])
    phi = np.concatenate([phi, [0.3, 1.7, 0.0, 2.0, 5.0]])
    return theta, phi


def _scipy_basis(theta: np.ndarray, phi: np.ndarray, degree: int) -> np.ndarray:
    """SciPy's Y_l^m in RadTyper's column order, with whichever function this SciPy has."""
    out = np.empty((theta.size, (degree + 1) ** 2), complex)
    if hasattr(scipy.special, "sph_harm_y"):  # SciPy >= 1.15: sph_harm_y(l, m, polar, azimuth)
        for l in range(degree + 1):
            for m in range(-l, l + 1):
                out[:, lm_index(l, m)] = scipy.special.sph_harm_y(l, m, theta, phi)
    elif hasattr(scipy.special, "sph_harm"):  # SciPy < 1.15: sph_harm(m, l, azimuth, polar)
        for l in range(degree + 1):
            for m in range(-l, l + 1):
                out[:, lm_index(l, m)] = scipy.special.sph_harm(m, l, phi, theta)
    else:
        pytest.skip("this SciPy has neither sph_harm_y nor sph_harm")
    return out


@pytest.mark.parametrize("degree", [0, 1, 2, 15, 20])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_scipy(degree, seed):
    theta, phi = _angles(400, seed)
    ours = spherical_harmonics(theta, phi, degree)
    ref = _scipy_basis(theta, phi, degree)
    if not hasattr(scipy.special, "sph_harm_y"):
        # SciPy < 1.15's sph_harm takes sin θ as sqrt(1 − cos²θ): 0 instead of 1e-9 at θ = 1e-9, an absolute
        # error of ~3e-10 in Y_1^{±1} there. Ours computes sin θ directly; compare away from that case.
        keep = (np.sin(theta) == 0) | (np.sin(theta) > 1e-6)
        ours, ref = ours[keep], ref[keep]
    assert ours.shape == ref.shape and ours.shape[1] == (degree + 1) ** 2
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_matches_sph_harm_y_all_when_present():
    if not hasattr(scipy.special, "sph_harm_y_all"):
        pytest.skip("SciPy < 1.15 has no sph_harm_y_all")
    theta, phi = _angles(300, 3)
    degree = 15
    y = scipy.special.sph_harm_y_all(degree, degree, theta, phi)
    ls = np.concatenate([np.full(2 * l + 1, l) for l in range(degree + 1)])
    ms = np.concatenate([np.arange(-l, l + 1) for l in range(degree + 1)])
    np.testing.assert_allclose(spherical_harmonics(theta, phi, degree), y[ls, ms, :].T, rtol=0, atol=1e-12)


def test_orthonormal_by_gauss_legendre_quadrature():
    """∫ Y_l^m conj(Y_l'^m') dΩ = δ: exact for a (L+1)-point Gauss–Legendre × 2(L+1)-point φ grid (L = 40)."""
    degree = 40
    x, w = np.polynomial.legendre.leggauss(degree + 1)
    n_phi = 2 * degree + 2
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    theta_grid, phi_grid = np.meshgrid(np.arccos(x), phi, indexing="ij")
    weights = np.repeat(w, n_phi) * (2 * np.pi / n_phi)
    y = spherical_harmonics(theta_grid.ravel(), phi_grid.ravel(), degree)
    gram = (y * weights[:, None]).T @ y.conj()
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-12)


def test_symmetry_and_pole_values():
    theta, phi = _angles(50, 4)
    y = spherical_harmonics(theta, phi, 15)
    for l in range(16):
        for m in range(1, l + 1):
            np.testing.assert_allclose(
                y[:, lm_index(l, -m)], (-1) ** m * np.conj(y[:, lm_index(l, m)]), atol=0
            )
    # at the north pole only m = 0 survives: Y_l^0(0) = sqrt((2l+1)/4π)
    pole = spherical_harmonics(np.array([0.0]), np.array([0.0]), 15)[0]
    for l in range(16):
        for m in range(-l, l + 1):
            expected = np.sqrt((2 * l + 1) / (4 * np.pi)) if m == 0 else 0.0
            assert abs(pole[lm_index(l, m)] - expected) < 1e-13


def test_legendre_rejects_negative_degree_and_spharm_uses_it():
    with pytest.raises(ValueError):
        legendre_normalized(np.zeros(1), np.ones(1), -1)
    theta, phi = _angles(20, 5)
    np.testing.assert_array_equal(basis(theta, phi, 6), spherical_harmonics(theta, phi, 6))
    with pytest.raises(ValueError, match="differ in length"):
        spherical_harmonics(np.zeros(3), np.zeros(2), 2)
