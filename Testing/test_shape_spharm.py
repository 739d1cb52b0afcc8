"""SPHARM basis, least-squares fit, reconstruction and FOE algebra (RadTyperLib.shape.spharm / descriptors)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import sph_harm_y

from RadTyperLib.shape import descriptors, mesh, spharm

L = 15


def _random_sphere_points(n: int, seed: int = 0) -> np.ndarray:
    u = np.random.default_rng(seed).normal(size=(n, 3))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def _random_real_surface_coefficients(degree: int, seed: int = 1, decay: float = 1.0) -> np.ndarray:
    """Coefficients of a real surface: c = T a with a real (so c_{l,−m} = (−1)^m conj c_lm)."""
    ls, _ = spharm.degree_orders(degree)
    a = (
        np.random.default_rng(seed).normal(size=(spharm.n_coefficients(degree), 3))
        / (1.0 + ls[:, None]) ** decay
    )
    return spharm.complex_from_real(degree) @ a


def test_basis_columns_are_sph_harm_y_in_spharm_mat_order() -> None:
    u = _random_sphere_points(50)
    theta, phi = spharm.cartesian_to_angles(u)
    y = spharm.basis(theta, phi, L)
    assert y.shape == (50, 256)
    for l, m in [(0, 0), (1, -1), (1, 1), (3, -2), (3, 0), (3, 2), (15, -15), (15, 7)]:
        np.testing.assert_allclose(y[:, l * l + l + m], sph_harm_y(l, m, theta, phi), atol=1e-13)
    # theta is the polar angle from +z, phi the azimuth in [0, 2π)
    assert np.all((phi >= 0) & (phi < 2 * np.pi))
    np.testing.assert_allclose(np.cos(theta), u[:, 2])


def test_basis_is_orthonormal_on_a_quadrature_grid() -> None:
    # Gauss–Legendre in cos θ (32 nodes: exact to polynomial degree 63) × 64 uniform φ: exact for products of
    # two degree-15 harmonics.
    x, w = np.polynomial.legendre.leggauss(32)
    phi = np.arange(64) * 2 * np.pi / 64
    th, ph = np.meshgrid(np.arccos(x), phi, indexing="ij")
    weights = np.repeat(w, 64) * (2 * np.pi / 64)
    y = spharm.basis(th.ravel(), ph.ravel(), L)
    gram = (y.conj().T * weights) @ y
    assert np.abs(gram - np.eye(256)).max() < 1e-12


def test_conjugate_symmetry_with_condon_shortley_phase() -> None:
    y = spharm.basis_from_sphere(_random_sphere_points(100), L)
    ls, ms = spharm.degree_orders(L)
    pos = [spharm.lm_index(l, m) for l, m in zip(ls, ms, strict=True)]
    neg = [spharm.lm_index(l, -m) for l, m in zip(ls, ms, strict=True)]
    np.testing.assert_allclose(y[:, neg], ((-1.0) ** ms) * np.conj(y[:, pos]), atol=1e-14)
    # Condon–Shortley: Y_1^1 = −sqrt(3/8π) sin θ e^{iφ}
    u = np.array([[1.0, 0.0, 0.0]])
    assert spharm.basis_from_sphere(u, 1)[0, spharm.lm_index(1, 1)].real == pytest.approx(
        -np.sqrt(3 / (8 * np.pi))
    )


def test_real_basis_transform_is_unitary_and_real() -> None:
    t = spharm.complex_from_real(L)
    np.testing.assert_allclose(t.conj().T @ t, np.eye(256), atol=1e-14)
    y = spharm.basis_from_sphere(_random_sphere_points(200), L)
    assert np.abs((y @ t).imag).max() < 1e-14
    np.testing.assert_allclose(spharm.real_basis(y, L), (y @ t).real, atol=1e-14)


@pytest.mark.parametrize("points", ["random", "icosphere"])
def test_least_squares_recovers_band_limited_surface_exactly(points: str) -> None:
    c = _random_real_surface_coefficients(L)
    u = _random_sphere_points(1500, seed=4) if points == "random" else spharm.icosphere(4)[0]
    v = spharm.evaluate(c, spharm.basis_from_sphere(u, L))
    fitted = spharm.fit(u, v, L)
    assert np.abs(fitted - c).max() < 1e-10
    ls, ms = spharm.degree_orders(L)
    neg = [spharm.lm_index(l, -m) for l, m in zip(ls, ms, strict=True)]
    np.testing.assert_allclose(fitted[neg], ((-1.0) ** ms)[:, None] * fitted.conj(), atol=1e-12)
    err = spharm.reconstruction_errors(fitted, spharm.basis_from_sphere(u, L), v, L)
    assert err[-1] < 1e-10 and err[0] > 0.1


def test_tikhonov_damps_high_degrees_only() -> None:
    c = _random_real_surface_coefficients(L, decay=0.0)
    u = spharm.icosphere(4)[0]  # near-uniform sampling: little leakage between degrees
    v = spharm.evaluate(c, spharm.basis_from_sphere(u, L))
    plain = spharm.fit(u, v, L)
    damped = spharm.fit(u, v, L, regularization=1e-3)
    e_plain = np.array([np.linalg.norm(plain[l * l : (l + 1) ** 2]) for l in range(L + 1)])
    e_damped = np.array([np.linalg.norm(damped[l * l : (l + 1) ** 2]) for l in range(L + 1)])
    np.testing.assert_allclose(e_damped[:3], e_plain[:3], rtol=0.02)
    assert e_damped[L] < 0.9 * e_plain[L]


def test_icosphere_is_closed_outward_genus_zero() -> None:
    v, f = spharm.icosphere(4)
    assert v.shape == (2562, 3) and f.shape == (5120, 3)
    assert mesh.is_closed_manifold(f)
    assert mesh.euler_characteristic(len(v), f) == 2
    assert mesh.enclosed_volume(v, f) > 0
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)


def test_reconstruction_on_cached_icosphere_matches_the_direct_evaluation() -> None:
    """The cached icosphere basis and evaluate_at (no basis matrix) give the same surface at every degree
    (speed is measured by Resources/Scripts/benchmark_pipeline.py, not asserted here)."""
    c = _random_real_surface_coefficients(L)
    y = spharm.icosphere_basis(L, 4)  # first call builds the cache
    sphere = spharm.icosphere(4)[0]
    for d in range(1, L + 1):
        out = spharm.evaluate(c, y, d)
        np.testing.assert_allclose(out, spharm.evaluate_at(c, sphere, d), atol=1e-9)
    assert out.shape == (2562, 3)


def test_foe_matrix_of_a_linear_surface() -> None:
    # v(s) = A s is pure degree 1: the FOE matrix must return A and its singular values the semi-axes
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    a = q @ np.diag([4.0, 7.0, 11.0]) @ np.linalg.qr(rng.normal(size=(3, 3)))[0]
    u = _random_sphere_points(600, seed=3)
    c = spharm.fit(u, u @ a.T, 3)
    np.testing.assert_allclose(descriptors.foe_matrix(c), a, atol=1e-10)
    np.testing.assert_allclose(descriptors.foe_semi_axes(c), [4.0, 7.0, 11.0], atol=1e-10)
    # shapeScale (SPHARM-MAT) = semi-axis × 2√π/3 once the object is aligned to the FOE axes
    u_svd, _, _ = np.linalg.svd(a)
    aligned = c @ u_svd  # object rotation v ↦ Uᵀ v  ⇒  c ↦ c U
    np.testing.assert_allclose(
        np.sort(descriptors.shape_scale(aligned)),
        np.array([4.0, 7.0, 11.0]) * descriptors.SHAPESCALE_PER_SEMIAXIS,
        atol=1e-10,
    )


def test_energies_are_invariant_to_object_and_parameter_rotation() -> None:
    c = _random_real_surface_coefficients(8, seed=9)
    u = _random_sphere_points(800, seed=10)
    v = spharm.evaluate(c, spharm.basis_from_sphere(u, 8))
    rng = np.random.default_rng(11)
    r_obj = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    r_par = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    c2 = spharm.fit(u @ r_par.T, v @ r_obj.T, 8)
    e1 = [np.linalg.norm(c[l * l : (l + 1) ** 2]) for l in range(1, 9)]
    e2 = [np.linalg.norm(c2[l * l : (l + 1) ** 2]) for l in range(1, 9)]
    np.testing.assert_allclose(e2, e1, rtol=1e-9)


def test_feature_names_are_the_products_fixed_set() -> None:
    names = descriptors.SHAPE_FEATURE_NAMES
    assert len(names) == 288 and len(set(names)) == 288
    assert len(descriptors.COEF_FEATURE_NAMES) == 255
    assert (
        names[0] == "shape_coef_l01_mn1"
        and names[1] == "shape_coef_l01_m0"
        and names[2] == "shape_coef_l01_mp1"
    )
    for n in ("shape_coef_l03_mn2", "shape_coef_l03_m0", "shape_coef_l03_mp2", "shape_coef_l15_mn15"):
        assert n in names
    assert names[255:258] == ("shape_energy_l01", "shape_energy_l02", "shape_energy_l03")
    assert names[270] == "shape_entropy_l01" and names[284] == "shape_entropy_l15"
    assert names[-3:] == ("shape_axis_norm_1", "shape_axis_norm_2", "shape_axis_norm_3")
    assert descriptors.BURDEN_FEATURE_NAMES == (
        "burden_volume_mm3",
        "burden_mean_radius_mm",
        "burden_semiaxis_1_mm",
        "burden_semiaxis_2_mm",
        "burden_semiaxis_3_mm",
    )
    assert set(descriptors.FEATURE_GROUPS.values()) == {"irregularity", "symmetry", "burden"}
    assert len(descriptors.FEATURE_GROUPS) == 293


def test_entropy_and_energy_definitions() -> None:
    # one order per degree → entropy ≈ 0; equal energy over the 2l+1 orders → entropy ≈ log(2l+1)
    c = np.zeros((256, 3), complex)
    c[spharm.lm_index(2, 0), 0] = 2.0
    for m in range(-3, 4):
        c[spharm.lm_index(3, m), 1] = 1.0
    f = descriptors.shape_features(c, radius=2.0, semi_axes=np.array([1.0, 2.0, 3.0]))
    assert f["shape_energy_l02"] == pytest.approx(1.0)
    assert f["shape_energy_l03"] == pytest.approx(np.sqrt(7) / 2)
    assert f["shape_entropy_l02"] == pytest.approx(-np.log(1 + 1e-5))
    assert f["shape_entropy_l03"] == pytest.approx(-np.log(1 / 7 + 1e-5), rel=1e-6)
    assert f["shape_entropy_l05"] == 0.0 and f["shape_energy_l05"] == 0.0
    assert f["shape_coef_l02_m0"] == pytest.approx(1.0)
    assert [f[f"shape_axis_norm_{i}"] for i in (1, 2, 3)] == pytest.approx([0.5, 1.0, 1.5])


@pytest.mark.parametrize("proper", [True, False])
def test_parameter_rotation_equals_refit_on_rotated_points(proper: bool) -> None:
    c = _random_real_surface_coefficients(L, seed=12)
    u = _random_sphere_points(2000, seed=13)
    v = spharm.evaluate(c, spharm.basis_from_sphere(u, L))
    q = np.linalg.qr(np.random.default_rng(14).normal(size=(3, 3)))[0]
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1.0
    np.testing.assert_allclose(spharm.rotate_parameter(c, q), spharm.fit(u @ q.T, v, L), atol=1e-11)
