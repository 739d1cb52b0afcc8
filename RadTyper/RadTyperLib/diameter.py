"""Longest diameter of a lesion (mm): the largest distance between two of its voxels.

Used by the lesion tables of the browser application (``radtyper view``) and of the Slicer modules. The
distance is measured between voxel centres in physical space (spacing in mm; the direction matrix is a
rotation and does not change distances), over the convex hull of the lesion's boundary voxels, so it is
exact for the voxel set and costs O(hull²) instead of O(voxels²). A lesion of one voxel has diameter 0; a
sphere of radius r voxels gives 2r spacings within one voxel of the discretisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def longest_diameter_mm(mask_zyx: np.ndarray, spacing_xyz: Sequence[float]) -> float:
    """Largest centre-to-centre distance (mm) between two voxels of a boolean ``[z, y, x]`` mask.

    Returns NaN for an empty mask. ``spacing_xyz`` is the voxel size (x, y, z) in mm, as SimpleITK gives it.
    """
    from scipy import ndimage as ndi

    mask = np.asarray(mask_zyx, dtype=bool)
    if not mask.any():
        return float("nan")
    boundary = mask & ~ndi.binary_erosion(mask)
    idx = np.argwhere(boundary).astype(np.float64)  # z, y, x
    pts = idx[:, ::-1] * np.asarray(spacing_xyz, dtype=np.float64)[:3]
    if len(pts) > 4:
        pts = _hull_points(pts)
    best = 0.0
    for start in range(0, len(pts), 512):  # blocks keep the pairwise matrix small
        block = pts[start : start + 512]
        d2 = ((block[:, None, :] - pts[None, :, :]) ** 2).sum(axis=2)
        best = max(best, float(d2.max()))
    return float(np.sqrt(best))


def _hull_points(pts: np.ndarray) -> np.ndarray:
    """The vertices of the convex hull (all points when they are flat or collinear)."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        return pts[ConvexHull(pts).vertices]
    except (QhullError, ValueError):  # flat (one slice) or degenerate: 2-D hull or all points
        return pts
