"""Mask clean-up, resampling, marching cubes and topology repair (RadTyperLib.shape.mesh)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from RadTyperLib.shape import mesh

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_shape_synthetic import c_shape, grid_for, sphere, torus, voxelise

C = np.array([20.3, 19.8, 20.4])


def _surface(shape, extent: float = 40.0, spacing=(1.0, 1.0, 1.0)) -> mesh.SurfaceMesh:
    ref = grid_for(extent, spacing)
    return mesh.surface_from_mask(mesh.clean_mask(voxelise(shape, ref), np.array(spacing)))


def _min_angles_deg(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    out = []
    for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        e1, e2 = v[f[:, b]] - v[f[:, a]], v[f[:, c]] - v[f[:, a]]
        cos = np.einsum("ij,ij->i", e1, e2) / np.linalg.norm(e1, axis=1) / np.linalg.norm(e2, axis=1)
        out.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return np.min(out, axis=0)


def test_clean_mask_keeps_largest_26_component_and_reports_the_rest() -> None:
    m = np.zeros((20, 20, 20), bool)
    m[2:8, 2:8, 2:8] = True  # 216 voxels
    m[8, 8, 8] = True  # touches the cube only by a corner: same 26-component
    m[12:15, 12:15, 12:15] = True  # separate, 27 voxels
    cm = mesh.clean_mask(m, np.array([0.5, 1.0, 2.0]))
    assert cm.n_components == 2
    assert cm.n_voxels == 217
    assert cm.discarded_volume_mm3 == pytest.approx(27 * 1.0)
    assert tuple(cm.offset_zyx) == (2, 2, 2)
    assert not cm.touches_border


def test_clean_mask_fills_enclosed_cavities() -> None:
    m = np.zeros((20, 20, 20), bool)
    m[3:15, 3:15, 3:15] = True
    m[7:10, 7:10, 7:10] = False  # 27-voxel cavity
    cm = mesh.clean_mask(m, np.ones(3))
    assert cm.holes_filled_mm3 == pytest.approx(27.0)
    assert cm.n_voxels == 12**3


def test_clean_mask_border_and_empty() -> None:
    m = np.zeros((10, 10, 10), bool)
    m[0:3, 4:6, 4:6] = True
    assert mesh.clean_mask(m, np.ones(3)).touches_border
    empty = mesh.clean_mask(np.zeros((5, 5, 5)), np.ones(3))
    assert empty.n_voxels == 0 and empty.n_components == 0


def test_sphere_surface_is_closed_genus0_outward_with_target_size() -> None:
    s = _surface(sphere(C, 10.0))
    v, f = s.vertices, s.faces
    assert mesh.is_closed_manifold(f)
    assert s.euler == 2 and s.genus == 0 and not s.topology_repaired
    lo, hi = mesh.TARGET_VERTICES
    assert 0.7 * lo <= len(v) <= 1.3 * hi
    vol = mesh.enclosed_volume(v, f)
    assert vol == pytest.approx(4 / 3 * np.pi * 1000, rel=0.05)  # outward orientation and the right size
    r = np.linalg.norm(v - C, axis=1)
    assert np.abs(r - 10.0).max() < 0.8  # within one voxel of the continuous sphere
    assert _min_angles_deg(v, f).min() > 5.0  # tangential relaxation removed marching-cubes slivers


def test_iso_spacing_upsamples_small_and_coarsens_large_lesions() -> None:
    small = np.zeros((12, 12, 12), bool)
    small[4:8, 4:8, 4:8] = True
    h_small = mesh.choose_iso_spacing(small, np.array([0.8, 0.8, 0.8]))
    assert h_small == pytest.approx(0.8 / mesh.MAX_UPSAMPLE)
    big = voxelise(sphere([40, 40, 40], 30.0), grid_for(80.0))
    h_big = mesh.choose_iso_spacing(big, np.ones(3))
    assert h_big > 1.0
    assert mesh.staircase_area_mm2(big, np.ones(3)) / h_big**2 == pytest.approx(mesh.TARGET_VERTICES[1])


def test_smoothing_sigma_rules() -> None:
    np.testing.assert_allclose(mesh.smoothing_sigma(np.array([1.0, 1.0, 1.0]), 1.0), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(mesh.smoothing_sigma(np.array([0.7, 0.7, 5.0]), 0.7), [0.7, 0.7, 2.5])
    np.testing.assert_allclose(mesh.smoothing_sigma(np.array([0.4, 0.4, 0.4]), 0.4), [0.5, 0.5, 0.5])
    # thin lesions: at most half the inradius
    np.testing.assert_allclose(mesh.smoothing_sigma(np.array([1.0, 1.0, 1.0]), 1.0, 1.0), [0.5, 0.5, 0.5])


def test_torus_handle_is_repaired_to_genus_zero() -> None:
    s = _surface(torus(C, 8.0, 3.5))
    assert s.genus == 0 and s.euler == 2
    assert s.topology_repaired and s.closing_mm > 0
    assert s.attempts[0]["euler"] == 0  # the unrepaired surface is a torus


def test_c_shape_and_thick_slices_give_genus_zero_without_repair() -> None:
    s = _surface(c_shape(C))
    assert s.genus == 0 and not s.topology_repaired
    thick = _surface(sphere(C, 9.0), spacing=(0.8, 0.8, 5.0))
    assert thick.genus == 0
    assert thick.sigma_mm[2] == pytest.approx(2.5)


def test_tangential_relaxation_moves_vertices_along_the_surface_only() -> None:
    ref = grid_for(40.0)
    cm = mesh.clean_mask(voxelise(sphere(C, 10.0), ref), np.ones(3))
    s = mesh.surface_from_mask(cm)
    relaxed = mesh.tangential_relax(s.vertices, s.faces, iterations=5)
    dr = np.abs(np.linalg.norm(relaxed - C, axis=1) - np.linalg.norm(s.vertices - C, axis=1))
    assert dr.max() < 0.05  # mm: second-order displacement off the surface only


@pytest.mark.parametrize("size_zyx", [(2, 2, 2), (1, 1, 8), (1, 5, 5)])
def test_few_voxel_lesions_still_mesh(size_zyx: tuple[int, int, int]) -> None:
    m = np.zeros((12, 12, 12), bool)
    m[3 : 3 + size_zyx[0], 3 : 3 + size_zyx[1], 2 : 2 + size_zyx[2]] = True
    s = mesh.surface_from_mask(mesh.clean_mask(m, np.ones(3)))
    assert s.genus == 0 and mesh.is_closed_manifold(s.faces)
    assert s.iso_spacing_mm >= 1.0 / mesh.MAX_UPSAMPLE - 1e-9
