#!/usr/bin/env python
"""Calibrate the voxel-noise floor of the per-degree SPHARM energies on voxelised spheres (issue 12).

    python Resources/Scripts/calibrate_voxel_noise.py [--shifts 6] [--jobs 2] [--write]

A sphere's surface is exactly degree 1 (x, y, z are degree-1 harmonics of the parameter sphere), so every
energy ``shape_energy_l`` with l ≥ 2 that the pipeline reports for a voxelised sphere is voxel noise: the
staircase of the mask that the surface extraction, map and fit could not remove. For each grid
(``ρ`` = sphere radius / smallest voxel side, anisotropy ``a`` = largest / smallest side — 1, 2, 4, 8, 12 — the
largest side along z) the sphere is voxelised exactly at ``--shifts`` random sub-voxel offsets (seed 0) and run through
:func:`RadTyperLib.shape.compute_shape`. The floor of degree l ≥ 2 is the root mean square of E_l over the
offsets; for l = 1 (a signal for every lesion) it is the standard deviation of E_1 over the offsets.

Prints the table; ``--write`` writes it to ``RadTyper/RadTyperLib/shape/voxel_noise_table.py`` (the module
:mod:`RadTyperLib.shape.voxelnoise` reads). Takes about 30 s on 2 free cores (270 spheres; minutes under load).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
try:
    import RadTyperLib  # noqa: F401
except ImportError:  # run from a source checkout without installation
    sys.path.insert(0, str(ROOT / "RadTyper"))

#: Sphere radius / smallest voxel side.
RHO = (3.0, 4.0, 5.0, 7.0, 10.0, 14.0, 20.0, 28.0, 40.0)
#: Largest / smallest voxel side (the largest along z, as thick-slice CT and MR).
ANISOTROPY = (1.0, 2.0, 4.0, 8.0, 12.0)
TABLE = ROOT / "RadTyper" / "RadTyperLib" / "shape" / "voxel_noise_table.py"


def sphere_energies(rho: float, aniso: float, shift: tuple[float, float, float]) -> np.ndarray:
    """The 15 per-degree energies of a sphere of radius ``rho`` voxels, exactly voxelised (NaN if refused)."""
    import SimpleITK as sitk

    from RadTyperLib.errors import LesionError
    from RadTyperLib.shape import compute_shape
    from RadTyperLib.shape.descriptors import ENERGY_FEATURE_NAMES

    sp = np.array([1.0, 1.0, aniso])
    n = (np.ceil(2 * rho / sp) + 6).astype(int)
    c = (n - 1) / 2 * sp + np.asarray(shift) * sp
    ax = [np.arange(n[d]) * sp[d] for d in range(3)]
    z, y, x = np.meshgrid(ax[2], ax[1], ax[0], indexing="ij")
    mask = ((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= rho * rho).astype(np.uint8)
    ref = sitk.Image([int(v) for v in n], sitk.sitkUInt8)
    ref.SetSpacing([float(s) for s in sp])
    try:
        res = compute_shape(mask, ref)
    except LesionError:
        return np.full(15, np.nan)
    return np.array([res.features[k] for k in ENERGY_FEATURE_NAMES])


def write_table(floor: np.ndarray, n_shifts: int) -> None:
    """Write ``floor`` (anisotropy × radius × degree) as the module :mod:`RadTyperLib.shape.voxel_noise_table`."""
    blocks = []
    for ia in range(len(ANISOTROPY)):
        lines = [f"        ({', '.join(f'{v:.3e}' for v in floor[ia, ir])})," for ir in range(len(RHO))]
        blocks.append("    (\n" + "\n".join(lines) + "\n    ),")
    TABLE.write_text(
        '"""Voxel-noise floor of the per-degree SPHARM energies (generated; do not edit).\n\n'
        "Written by ``python Resources/Scripts/calibrate_voxel_noise.py --write`` "
        f"({n_shifts} sub-voxel offsets per grid, seed 0).\n"
        "``FLOOR[a][r][l - 1]``: anisotropy ``ANISOTROPY[a]``, radius ``RHO[r]`` smallest voxel sides, degree l.\n"
        '"""\n\n'
        f"RHO = {RHO!r}\nANISOTROPY = {ANISOTROPY!r}\n# fmt: off\nFLOOR = (\n"
        + "\n".join(blocks)
        + "\n)\n# fmt: on\n"
    )


def _job(args: tuple[float, float, tuple[float, float, float]]) -> np.ndarray:
    return sphere_energies(*args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shifts", type=int, default=6)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--write", action="store_true", help=f"write {TABLE.relative_to(ROOT)}")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    shifts = [tuple(float(v) for v in rng.uniform(-0.5, 0.5, 3)) for _ in range(args.shifts)]
    jobs = [(r, a, s) for a in ANISOTROPY for r in RHO for s in shifts]
    with ProcessPoolExecutor(args.jobs) as pool:
        out = np.array(list(pool.map(_job, jobs, chunksize=1)))
    e = out.reshape(len(ANISOTROPY), len(RHO), len(shifts), 15)
    floor = np.empty((len(ANISOTROPY), len(RHO), 15))
    with np.errstate(invalid="ignore"):
        floor[..., 0] = np.nanstd(e[..., 0], axis=2)
        floor[..., 1:] = np.sqrt(np.nanmean(e[..., 1:] ** 2, axis=2))
    refused = int(np.isnan(e[..., 0]).sum())
    for ia, a in enumerate(ANISOTROPY):
        for ir, r in enumerate(RHO):
            print(f"a {a:3.0f} ρ {r:4.0f}: " + " ".join(f"{v:.4f}" for v in floor[ia, ir]))
    print(f"{len(jobs)} spheres, {refused} refused")
    # a grid point whose every sphere was refused (a sphere thinner than a slice) takes the floor of the next
    # larger radius on the same anisotropy
    for ia in range(len(ANISOTROPY)):
        for ir in range(len(RHO) - 2, -1, -1):
            if np.isnan(floor[ia, ir]).any():
                print(
                    f"a {ANISOTROPY[ia]:g} ρ {RHO[ir]:g}: no sphere with features; the floor of ρ {RHO[ir + 1]:g} is used"
                )
                floor[ia, ir] = floor[ia, ir + 1]
    if np.isnan(floor).any():
        raise SystemExit("a grid point has no sphere with features: the table would have holes")
    if args.write:
        write_table(floor, len(shifts))
        print(f"written: {TABLE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
