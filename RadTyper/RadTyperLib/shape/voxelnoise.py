"""Voxel-noise floor of the per-degree SPHARM energies: which energies measure the voxels (issue 12).

A lesion's mask is a staircase of voxels. The surface extraction (Gaussian-smoothed indicator), the map and
the fit remove most of it, but not all: a voxelised *sphere*, whose true shape is exactly degree 1, comes out
with energies ``shape_energy_l`` (l ≥ 2) of about 0.006 at 10 voxels of radius and 0.002 at 20, and these
change with every sub-voxel shift of the mask. The energies of a real lesion below a few times this floor
therefore measure the voxel grid as much as the lesion (measured: a 1–2 cm³ lesion on a 0.7 mm grid has its
energies above degree ~6 at the floor, and they change by 10–30 % between sub-voxel shifts).

:func:`energy_floor` gives the floor of each degree for a lesion's mean radius and voxel grid, interpolated
in the table that ``Resources/Scripts/calibrate_voxel_noise.py`` measures on exactly voxelised spheres
(:mod:`RadTyperLib.shape.voxel_noise_table`): root mean square of E_l over sub-voxel offsets for l ≥ 2, the
standard deviation of E_1 for l = 1. :func:`energies_at_floor` counts the energies below
:data:`SNR_MIN` × their floor (QC column ``qc_energy_at_voxel_noise``).
"""

from __future__ import annotations

import numpy as np

from .voxel_noise_table import ANISOTROPY, FLOOR, RHO

#: An energy below SNR_MIN × its degree's voxel-noise floor is "at the voxel noise": the noise's share of it
#: then moves it by more than about 2 % between sub-voxel shifts (features.md, "Voxel-noise floor").
SNR_MIN = 10.0

_LOG_FLOOR = np.log(np.maximum(np.asarray(FLOOR, float), 1e-12))  # (anisotropy, rho, degree)
_LOG_RHO = np.log(np.asarray(RHO, float))
_LOG_A = np.log(np.asarray(ANISOTROPY, float))


def _weights(x: float, grid: np.ndarray) -> tuple[int, float]:
    """Left index and weight of the right neighbour for linear interpolation of ``x`` in ``grid`` (clamped)."""
    x = float(np.clip(x, grid[0], grid[-1]))
    i = int(np.clip(np.searchsorted(grid, x) - 1, 0, len(grid) - 2))
    return i, (x - grid[i]) / (grid[i + 1] - grid[i])


def energy_floor(radius_mm: float, spacing_xyz: np.ndarray) -> np.ndarray:
    """Voxel-noise floor of the 15 per-degree energies (same units as ``shape_energy_l``: ÷ mean radius).

    Args:
        radius_mm: the lesion's mean radius (``burden_mean_radius_mm``).
        spacing_xyz: voxel sides (mm) of the mask's grid.

    Bilinear in (log radius / smallest side, log largest / smallest side) over the calibrated table; above
    its largest radius the floor falls as 1 / radius (as measured between 14 and 40 voxels); below its
    smallest radius and above its largest anisotropy the nearest entry is used (an underestimate there).
    """
    s = np.asarray(spacing_xyz, float)
    rho = float(radius_mm) / float(np.min(s))
    a = float(np.max(s) / np.min(s))
    ia, wa = _weights(np.log(a), _LOG_A)
    ir, wr = _weights(np.log(max(rho, 1e-12)), _LOG_RHO)
    f = (1 - wa) * ((1 - wr) * _LOG_FLOOR[ia, ir] + wr * _LOG_FLOOR[ia, ir + 1]) + wa * (
        (1 - wr) * _LOG_FLOOR[ia + 1, ir] + wr * _LOG_FLOOR[ia + 1, ir + 1]
    )
    floor = np.exp(f)
    if rho > RHO[-1]:
        floor = floor * (RHO[-1] / rho)
    return floor


def energies_at_floor(energies: np.ndarray, radius_mm: float, spacing_xyz: np.ndarray) -> int:
    """Number of per-degree energies below :data:`SNR_MIN` × their voxel-noise floor (0–15).

    Degrees not fitted (energy exactly 0 above ``qc_degree_used``) count as at the floor: they carry no
    information about the lesion either.
    """
    e = np.asarray(energies, float)
    return int(np.sum(e < SNR_MIN * energy_floor(radius_mm, spacing_xyz)[: len(e)]))
