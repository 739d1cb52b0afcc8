"""Synthetic lesion masks for the SPHARM shape tests (own voxeliser; independent of RadTyperLib.phantoms).

Shapes are continuous implicit functions ``inside(points_mm) -> bool`` in physical LPS mm; a mask is the set
of voxels whose *centre* is inside (what a delineation gives), on a grid with any spacing, origin and
(orthonormal) direction. The other ``test_shape_*.py`` files import these helpers; the tests here check the
voxeliser itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import SimpleITK as sitk

Shape = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------------------------
# geometry helpers
# ------------------------------------------------------------------------------------------------------
def reference_image(
    size_xyz: tuple[int, int, int],
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    direction: np.ndarray | None = None,
) -> sitk.Image:
    """Empty uint8 image with the given geometry (size in x, y, z order)."""
    img = sitk.Image([int(s) for s in size_xyz], sitk.sitkUInt8)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in origin])
    d = np.eye(3) if direction is None else np.asarray(direction, float)
    img.SetDirection(d.ravel().tolist())
    return img


def voxel_centres(reference: sitk.Image) -> np.ndarray:
    """Physical LPS position (mm) of every voxel centre, shape (z, y, x, 3)."""
    nx, ny, nz = reference.GetSize()
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    d = np.array(reference.GetDirection(), float).reshape(3, 3)
    s = np.array(reference.GetSpacing(), float)
    o = np.array(reference.GetOrigin(), float)
    return o + (ijk * s) @ d.T


def voxelise(shape: Shape, reference: sitk.Image) -> np.ndarray:
    """Bool ``[z, y, x]`` mask of the voxels whose centre lies inside ``shape``."""
    p = voxel_centres(reference)
    return shape(p.reshape(-1, 3)).reshape(p.shape[:3])


def grid_for(
    extent_mm: float, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), **kw: object
) -> sitk.Image:
    """Reference image covering a cube of side ``extent_mm`` starting at the origin."""
    size = tuple(int(np.ceil(extent_mm / s)) + 1 for s in spacing)
    return reference_image(size, spacing, **kw)  # type: ignore[arg-type]


def rotation_matrix(seed: int) -> np.ndarray:
    """A reproducible random proper rotation (QR of a Gaussian matrix)."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def transformed(shape: Shape, rotation: np.ndarray, centre: np.ndarray, shift: np.ndarray) -> Shape:
    """``shape`` rotated by ``rotation`` about ``centre`` and then translated by ``shift`` (mm)."""
    c = np.asarray(centre, float)
    t = np.asarray(shift, float)
    return lambda p: shape((p - c - t) @ rotation + c)


# ------------------------------------------------------------------------------------------------------
# shapes (centre c in mm)
# ------------------------------------------------------------------------------------------------------
def sphere(c: np.ndarray, r: float) -> Shape:
    c = np.asarray(c, float)
    return lambda p: np.sum((p - c) ** 2, axis=1) <= r * r


def ellipsoid(c: np.ndarray, axes: tuple[float, float, float], rotation: np.ndarray | None = None) -> Shape:
    """Semi-axes ``axes`` along the columns of ``rotation`` (default: x, y, z)."""
    c = np.asarray(c, float)
    a = np.asarray(axes, float)
    rot = np.eye(3) if rotation is None else rotation
    return lambda p: np.sum((((p - c) @ rot) / a) ** 2, axis=1) <= 1.0


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def dumbbell(c: np.ndarray, ball: float = 6.0, length: float = 24.0, neck: float = 2.5) -> Shape:
    """Two balls (radius ``ball``) whose centres are ``length`` apart along x, joined by a rod of radius ``neck``."""
    c = np.asarray(c, float)
    half = np.array([length / 2, 0.0, 0.0])
    a = c - half
    b = c + half
    return lambda p: (
        (np.linalg.norm(p - a, axis=1) <= ball)
        | (np.linalg.norm(p - b, axis=1) <= ball)
        | (_segment_distance(p, a, b) <= neck)
    )


def c_shape(c: np.ndarray, major: float = 10.0, tube: float = 3.5, arc_deg: float = 270.0) -> Shape:
    """Tube of radius ``tube`` around a circular arc (radius ``major``, ``arc_deg`` degrees) with round ends."""
    c = np.asarray(c, float)
    end1 = np.array([major, 0.0, 0.0])
    end2 = major * np.array([np.cos(np.radians(arc_deg)), np.sin(np.radians(arc_deg)), 0.0])

    def inside(p: np.ndarray) -> np.ndarray:
        q = p - c
        ang = np.degrees(np.arctan2(q[:, 1], q[:, 0])) % 360.0
        d_arc = np.hypot(np.hypot(q[:, 0], q[:, 1]) - major, q[:, 2])
        d_end = np.minimum(np.linalg.norm(q - end1, axis=1), np.linalg.norm(q - end2, axis=1))
        d = np.where(ang <= arc_deg, np.minimum(d_arc, d_end), d_end)
        return d <= tube

    return inside


def torus(c: np.ndarray, major: float = 8.0, tube: float = 3.5) -> Shape:
    """Ring torus around the z axis (genus 1)."""
    c = np.asarray(c, float)
    return lambda p: np.hypot(np.hypot((p - c)[:, 0], (p - c)[:, 1]) - major, (p - c)[:, 2]) <= tube


def lobulated(
    c: np.ndarray, r: float = 10.0, amplitude: float = 0.25, seed: int = 3, n_lobes: int = 6
) -> Shape:
    """Star-shaped lesion: radius ``r·(1 + Σ_k a_k exp(−|d − d_k|²/0.35))`` over random directions d_k."""
    c = np.asarray(c, float)
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(n_lobes, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    amps = amplitude * rng.uniform(0.5, 1.0, n_lobes)

    def inside(p: np.ndarray) -> np.ndarray:
        q = p - c
        rho = np.linalg.norm(q, axis=1)
        d = q / np.maximum(rho, 1e-12)[:, None]
        bumps = np.exp(-np.sum((d[:, None, :] - dirs[None]) ** 2, axis=2) / 0.35) @ amps
        return rho <= r * (1.0 + bumps)

    return inside


# ------------------------------------------------------------------------------------------------------
# tests of the helpers
# ------------------------------------------------------------------------------------------------------
def test_voxelised_ellipsoid_volume_matches() -> None:
    ref = grid_for(40.0)
    m = voxelise(ellipsoid([20, 20, 20], (6, 9, 13), rotation_matrix(1)), ref)
    assert m.sum() == pytest.approx(4 / 3 * np.pi * 6 * 9 * 13, rel=0.03)


def test_voxel_centres_follow_direction_and_origin() -> None:
    d = rotation_matrix(5)
    ref = reference_image((4, 5, 6), (0.5, 1.0, 2.0), (10.0, -3.0, 7.0), d)
    p = voxel_centres(ref)
    assert np.allclose(p[0, 0, 0], [10.0, -3.0, 7.0])
    assert np.allclose(p[2, 1, 3], ref.TransformContinuousIndexToPhysicalPoint((3.0, 1.0, 2.0)))


def test_rotation_matrix_is_proper() -> None:
    r = rotation_matrix(7)
    assert np.allclose(r.T @ r, np.eye(3)) and np.linalg.det(r) == pytest.approx(1.0)
