"""Checked SPHARM fit (RadTyperLib.shape.fitqc): conditioning limits the degree, results are checked."""

from __future__ import annotations

import numpy as np
import pytest

from RadTyperLib.shape import fitqc, spharm


def _crowded(points: np.ndarray, factor: float) -> np.ndarray:
    """The same points with every polar angle divided by ``factor`` (all crowded into a polar cap)."""
    theta, phi = spharm.cartesian_to_angles(points)
    t = theta / factor
    return np.column_stack([np.sin(t) * np.cos(phi), np.sin(t) * np.sin(phi), np.cos(t)])


def test_equal_area_quadrature_is_well_conditioned_at_degree_15() -> None:
    u = spharm.icosphere(4)[0]  # 2562 near-uniform points, equal weights ≈ a quadrature of the sphere
    y = spharm.basis_from_sphere(u, 15)
    g = fitqc.normal_matrix(y, 15, np.ones(len(u)))
    np.testing.assert_allclose(np.diag(g).mean(), 1.0, atol=0.05)  # normalised: G ≈ I
    assert fitqc.condition(g, 15) < 2.0
    assert fitqc.stable_degree(g, 15) == (15, pytest.approx(fitqc.condition(g, 15)))


@pytest.mark.parametrize("factor", [1.2, 1.3, 1.5])
def test_crowded_map_lowers_the_degree_and_the_fit_stays_sound(factor: float) -> None:
    truth = spharm.icosphere(4)[0]
    u = _crowded(truth, factor)  # a map that left part of the sphere empty
    y = spharm.basis_from_sphere(u, 15)
    w = np.ones(len(u))
    g = fitqc.normal_matrix(y, 15, w)
    assert fitqc.condition(g, 15) > 1e6  # plain least squares at degree 15 would be ill-posed
    L, cond = fitqc.stable_degree(g, 15)  # measured: 8, 5, 3
    assert 2 <= L < 15 and cond <= fitqc.MAX_CONDITION
    assert fitqc.condition(g, L + 1) > fitqc.MAX_CONDITION  # the largest degree that passes
    v = 5.0 * truth + np.array([1.0, -2.0, 3.0])  # a 5-mm sphere, parameterised by the crowded map
    fit, _y, errors = fitqc.checked_fit(u, v, w, 15, radius=5.0)
    assert fit.degree <= L and fit.reason == "conditioning" and fit.condition <= fitqc.MAX_CONDITION
    assert np.all(np.isfinite(fit.coefficients)) and errors.max() <= 5.0
    energy = np.linalg.norm(np.abs(fit.coefficients[1:])) / 5.0
    assert energy <= fitqc.energy_bound(v, w, 5.0)


def test_check_fit_flags_blow_ups_and_non_finite_values() -> None:
    u = spharm.icosphere(3)[0]
    v = 4.0 * u
    w = np.ones(len(u))
    y = spharm.basis_from_sphere(u, 6)
    coef = spharm.fit(u, v, 6, basis_matrix=y, weights=w)
    errors = spharm.reconstruction_errors(coef, y, v, 15, weights=w)
    bound = fitqc.energy_bound(v, w, 4.0)
    assert fitqc.check_fit(coef, errors, 4.0, bound) == ("", "")
    # sqrt(4π) ≈ 3.54 for a sphere, inside the bound 1.5·sqrt(4π)
    assert np.linalg.norm(np.abs(coef[1:])) / 4.0 == pytest.approx(np.sqrt(4 * np.pi), rel=0.01)
    blown = coef.copy()
    blown[20] += 1e9  # a degree-4 coefficient of 1e9 mm: the blow-up
    code, msg = fitqc.check_fit(blown, spharm.reconstruction_errors(blown, y, v, 15, weights=w), 4.0, bound)
    assert code == "reconstruction error" and "mean radius" in msg
    assert fitqc.check_fit(coef, errors + 10.0, 4.0, bound)[0] == "reconstruction error"
    big = coef * 2.0  # twice the sphere: errors of one radius are allowed, energy 7.1 > 5.3 is not
    assert fitqc.check_fit(big, errors, 4.0, bound)[0] == "energy range"
    nan = coef.copy()
    nan[3, 0] = np.nan
    assert fitqc.check_fit(nan, errors, 4.0, bound)[0] == "non-finite"


def test_no_sound_degree_raises_value_error() -> None:
    truth = spharm.icosphere(3)[0]
    u = _crowded(truth, 3.0)  # everything within 60° of a pole: only degree 1 is well conditioned
    w = np.ones(len(u))
    with pytest.raises(
        ValueError, match="no sound SPHARM fit at any degree ≥ 2: least-squares system ill-cond"
    ):
        fitqc.checked_fit(u, 4.0 * truth, w, 15, radius=4.0)
