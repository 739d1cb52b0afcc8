"""What a radiologist reads about a lesion: volume in mL, diameters, surface, sphericity (``lesion_*`` columns).

These columns stand beside the 313 features of Wu et al. (they never enter the subtype models or the
heterogeneity indexes, whose feature prefixes are ``shape_``, ``burden_``, ``region_``, ``radiomics_``).
All are computed on the lesion mask **as drawn** (every voxel of the label, all pieces), like ``radtyper
info`` and Slicer's Segment Statistics; the SPHARM features use the cleaned largest component instead.

* ``lesion_volume_ml``: voxel count × voxel volume / 1000 (mL = cm³).
* ``lesion_surface_mm2``: area of the marching-cubes surface (level 0.5) of the binary mask on the voxel
  grid (mm², the same surface as pyradiomics' ``SurfaceArea``). On a staircase mask it exceeds the smooth
  object's area (≈ +5–10 % for a voxelised sphere of 10+ voxels radius).
* ``lesion_sphericity``: ``π^(1/3) (6 V)^(2/3) / A`` with V and A the volume and area of that same surface
  (isoperimetric quotient; 1 = sphere, in (0, 1] for every closed surface). ≈ 0.9 for a voxelised sphere.
* ``lesion_feret_mm``: maximal 3-D diameter (Feret), the largest distance between two points of that surface
  (mm, physical: anisotropic voxels and oblique grids handled).
* ``lesion_recist_long_mm``: RECIST 1.1 longest diameter: the longest in-plane diameter over all image slices
  (the acquisition plane: axial for an axial CT; the largest distance between two points of the slice's
  contour at level 0.5, all pieces of the lesion in that slice).
* ``lesion_recist_short_mm``: the lesion's extent perpendicular to that longest diameter, in the same slice
  (the caliper width across the long axis, as a radiologist measures the perpendicular short axis).

The order ``lesion_feret_mm ≥ lesion_recist_long_mm ≥ lesion_recist_short_mm > 0`` always holds (tested).
"""

from __future__ import annotations

import numpy as np

#: The radiologist-facing columns, in table order (prefix ``lesion_``, beside the paper's features).
LESION_MEASURE_NAMES: tuple[str, ...] = (
    "lesion_volume_ml",
    "lesion_feret_mm",
    "lesion_recist_long_mm",
    "lesion_recist_short_mm",
    "lesion_surface_mm2",
    "lesion_sphericity",
)


def _max_distance(points: np.ndarray) -> tuple[float, np.ndarray]:
    """(largest pairwise distance, the unit vector between the two points) of (n, d) points (n ≥ 1)."""
    pts = np.unique(np.asarray(points, float), axis=0)
    if len(pts) > 3:
        from scipy.spatial import ConvexHull, QhullError

        try:
            pts = pts[ConvexHull(pts).vertices]
        except (QhullError, ValueError):  # coplanar / collinear points: keep them all
            pass
    if len(pts) < 2:
        return 0.0, np.eye(pts.shape[1])[0]
    best, pair = -1.0, (0, 1)
    for start in range(0, len(pts), 512):  # blocks: bounded memory for large hulls
        block = pts[start : start + 512]
        d2 = ((block[:, None, :] - pts[None, :, :]) ** 2).sum(axis=-1)
        i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
        if d2[i, j] > best:
            best, pair = float(d2[i, j]), (start + i, j)
    vec = pts[pair[1]] - pts[pair[0]]
    norm = float(np.linalg.norm(vec))
    return float(np.sqrt(best)), (vec / norm if norm > 0 else np.eye(pts.shape[1])[0])


def _crop(mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    return np.pad(mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))], 1)


def _recist(mask_zyx: np.ndarray, spacing_xyz: np.ndarray) -> tuple[float, float]:
    """(longest in-plane diameter, perpendicular extent) over the slices (mm)."""
    from skimage.measure import find_contours

    sx, sy = float(spacing_xyz[0]), float(spacing_xyz[1])
    best_long, best_short = 0.0, 0.0
    for k in np.flatnonzero(mask_zyx.any(axis=(1, 2))):
        sl = _crop(mask_zyx[k]).astype(np.float32)
        contours = find_contours(sl, 0.5)
        if not contours:
            continue
        pts = np.concatenate(contours) * np.array([sy, sx])  # (row = y, col = x) mm
        long, u = _max_distance(pts)
        if long > best_long:
            perp = np.array([-u[1], u[0]])
            proj = pts @ perp
            best_long, best_short = long, float(proj.max() - proj.min())
    return best_long, min(best_short, best_long)


def lesion_measures(
    mask_zyx: np.ndarray, spacing_xyz, direction: np.ndarray | None = None
) -> dict[str, float]:
    """The :data:`LESION_MEASURE_NAMES` of a boolean ``[z, y, x]`` mask (voxel size ``spacing_xyz`` mm).

    ``direction`` (3×3, orthonormal) does not change lengths; it is accepted for symmetry with the other
    per-lesion functions. An empty mask gives NaN everywhere.
    """
    from skimage.measure import marching_cubes, mesh_surface_area

    mask = np.asarray(mask_zyx, bool)
    sp = np.asarray(spacing_xyz, float)
    n = int(mask.sum())
    if n == 0:
        return dict.fromkeys(LESION_MEASURE_NAMES, float("nan"))
    volume_mm3 = n * float(np.prod(sp))
    crop = _crop(mask).astype(np.float32)
    verts, faces, _normals, _values = marching_cubes(crop, 0.5, spacing=(sp[2], sp[1], sp[0]))
    area = float(mesh_surface_area(verts, faces))
    tri = verts[faces]
    mesh_volume = abs(float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0)
    sphericity = float(np.pi ** (1 / 3) * (6.0 * mesh_volume) ** (2 / 3) / area) if area > 0 else float("nan")
    feret, _ = _max_distance(verts)
    long, short = _recist(mask, sp)
    return {
        "lesion_volume_ml": volume_mm3 / 1000.0,
        "lesion_feret_mm": max(feret, long),
        "lesion_recist_long_mm": long,
        "lesion_recist_short_mm": short,
        "lesion_surface_mm2": area,
        "lesion_sphericity": sphericity,
    }
