"""Bijective spherical parameterisation (RadTyperLib.shape.spheremap): cMCF, Möbius, area correction."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

from RadTyperLib.shape import mesh, spharm, spheremap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_shape_synthetic import c_shape, dumbbell, grid_for, lobulated, sphere, voxelise

C = np.array([22.3, 21.8, 22.4])
SHAPES = {
    "sphere": lambda: sphere(C, 10.0),
    "lobulated": lambda: lobulated(C, 10.0),
    "c_shape": lambda: c_shape(C),
    "dumbbell": lambda: dumbbell(C),
}


@functools.cache
def _mesh(name: str) -> tuple[np.ndarray, np.ndarray]:
    m = voxelise(SHAPES[name](), grid_for(44.0))
    s = mesh.surface_from_mask(mesh.clean_mask(m, np.ones(3)))
    return s.vertices, s.faces


@functools.cache
def _map(name: str) -> spheremap.SphereMap:
    return spheremap.spherical_map(*_mesh(name))


@pytest.mark.parametrize("name", list(SHAPES))
def test_map_is_bijective_no_flipped_triangles(name: str) -> None:
    _, f = _mesh(name)
    sm = _map(name)
    np.testing.assert_allclose(np.linalg.norm(sm.sphere, axis=1), 1.0, atol=1e-12)
    assert sm.flips == 0
    assert spheremap.count_flips(sm.sphere, f) == 0
    # all triangles positively oriented and their solid angles add up to 4π: a covering of degree 1, i.e. a
    # bijection (a vertex whose one-ring wound twice round it would add another 4π)
    solid = spheremap.spherical_triangle_areas(sm.sphere, f)
    assert np.all(solid > 0)
    assert solid.sum() == pytest.approx(4 * np.pi, rel=1e-9)
    print(f"{name}: ADC conformal {sm.adc_conformal:.2f} -> final {sm.adc:.3f}, flips {sm.flips}")


# Measured (2.4k vertices): sphere 1.00, lobulated 1.00, C-shape 2.1 (conformal 7.8), dumbbell 1.01 (conformal
# 12.3). The thresholds leave room for platform differences; radial projection flips 16-30 % of the
# triangles of the C-shape and the dumbbell (methods.md §2.4).
ADC_LIMITS = {"sphere": 1.05, "lobulated": 1.1, "c_shape": 3.0, "dumbbell": 1.5}


@pytest.mark.parametrize("name", list(SHAPES))
def test_area_correction_reduces_area_distortion(name: str) -> None:
    sm = _map(name)
    assert sm.adc <= sm.adc_conformal + 1e-9
    assert sm.adc < ADC_LIMITS[name]


def test_radial_projection_would_flip_the_c_shape() -> None:
    # documents why radial projection is not used: it is not bijective on non-star-shaped lesions
    v, f = _mesh("c_shape")
    radial = (v - v.mean(axis=0)) / np.linalg.norm(v - v.mean(axis=0), axis=1, keepdims=True)
    assert spheremap.count_flips(radial, f) > 0.05 * len(f)


def test_sphere_map_is_close_to_a_rotation_of_the_radial_map() -> None:
    v, _ = _mesh("sphere")
    u = _map("sphere").sphere
    radial = (v - C) / np.linalg.norm(v - C, axis=1, keepdims=True)
    # best rotation (orthogonal Procrustes)
    uu, _, vt = np.linalg.svd(radial.T @ u)
    rot = uu @ vt
    assert np.linalg.det(rot) > 0
    assert np.degrees(np.arccos(np.clip(np.sum((u @ rot.T) * radial, axis=1), -1, 1))).max() < 5.0


def test_count_flips_detects_reversed_orientation() -> None:
    u, f = spharm.icosphere(2)
    assert spheremap.count_flips(u, f) == 0
    assert spheremap.count_flips(u, f[:, ::-1]) == len(f)


def test_area_distortion_cost_is_one_for_equal_areas() -> None:
    u, f = spharm.icosphere(3)
    assert spheremap.area_distortion_cost(u * 7.0, f, u) == pytest.approx(1.0)
    warped = u * np.array([1.0, 1.0, 3.0])
    assert spheremap.area_distortion_cost(warped, f, u) > 1.1


def test_cotangent_stiffness_is_symmetric_psd_with_zero_row_sums() -> None:
    v, f = _mesh("lobulated")
    s = spheremap.cotangent_stiffness(v, f)
    assert abs(s - s.T).max() < 1e-12
    np.testing.assert_allclose(np.asarray(s.sum(axis=1)).ravel(), 0.0, atol=1e-9)
    x = np.random.default_rng(0).normal(size=len(v))
    assert x @ (s @ x) > 0


def test_mobius_moves_the_point_to_the_centre_and_keeps_the_sphere() -> None:
    u, f = spharm.icosphere(3)
    a = np.array([0.3, -0.2, 0.4])
    y = spheremap.mobius(u, a)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0)
    assert spheremap.count_flips(y, f) == 0
    # balancing undoes a Möbius distortion of a uniform distribution
    w = spheremap.vertex_areas(u, f)
    back = spheremap.mobius_balance(y, f, w)
    assert np.linalg.norm((w / w.sum()) @ back) < 1e-4


def test_area_correction_never_accepts_a_flipped_start() -> None:
    u, f = spharm.icosphere(2)
    bad = u.copy()
    bad[0] = -bad[0]
    assert spheremap.count_flips(bad, f) > 0
    out, it = spheremap.area_correct(u * np.array([1, 1, 2.0]), f, bad)
    assert it == 0 and np.array_equal(out, bad)


def test_latitude_equalisation_never_flips() -> None:
    v, f = _mesh("dumbbell")
    u, _ = spheremap.conformal_flow(v, f)
    w = spheremap.vertex_areas(v, f)
    for axis in np.eye(3):
        out, s = spheremap.latitude_equalise(u, f, w, axis)
        assert spheremap.count_flips(out, f) == 0
        assert 0.0 <= s <= 1.0


def test_flow_that_inverts_the_surface_is_retried_with_a_smaller_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v, f = _mesh("c_shape")
    u, _ = spheremap.conformal_flow(v, f, step=0.08)
    assert spheremap.count_flips(u, f) > 0  # this step turns the thin C inside out
    monkeypatch.setattr(spheremap, "CMCF_STEP", 0.08)
    sm = spheremap.spherical_map(v, f)
    assert sm.flips == 0
    assert spheremap.spherical_triangle_areas(sm.sphere, f).sum() == pytest.approx(4 * np.pi, rel=1e-9)


def test_untangle_repairs_a_few_inverted_triangles() -> None:
    u, f = spharm.icosphere(3)
    bad = u.copy()
    rng = np.random.default_rng(0)
    idx = rng.choice(len(u), 5, replace=False)
    bad[idx] = bad[idx] + 0.15 * rng.normal(size=(5, 3))
    bad /= np.linalg.norm(bad, axis=1, keepdims=True)
    assert spheremap.count_flips(bad, f) > 0
    fixed = spheremap.untangle(bad, f)
    assert spheremap.count_flips(fixed, f) == 0
