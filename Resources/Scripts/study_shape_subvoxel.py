#!/usr/bin/env python
"""Voxel noise of the per-degree energies: sub-voxel shifts vs 3-D rotations on a 0.7 mm grid (issue 12).

    python Resources/Scripts/study_shape_subvoxel.py [--lesions lung1,brain2] [--spacing 0.7] [--out FILE.md]

Each lesion (real masks of 1–2 cm³ from ../shared/data) is resampled (trilinear interpolation of the 0/1
indicator, ≥ 0.5; :func:`RadTyperLib.perturb.resample_mask`) onto an isotropic ``--spacing`` grid:

* *reference*: no shift, no rotation;
* *shift k*: the same lesion moved by a sub-voxel fraction of the output grid (four fixed shifts) — the same
  shape, only voxelised differently;
* *rotation k*: the lesion rotated in 3-D (four fixed angle triples) on the same grid.

``lobulated`` (a lesion id) is a smooth synthetic 1.6 cm³ lesion voxelised exactly at each shift / rotation:
there the masks differ only by voxelisation, with no staircase of a source grid.

For every variant: ``median_l |E_l − E_l,ref| / E_l,ref`` over the 15 per-degree energies ``shape_energy_l*``.
The issue's targets: the mean over shifts ≤ 2 %, and the mean over rotations ≤ 1.25 × the mean over shifts.
``resolved``: the number of degrees whose reference energy is ≥ ``voxelnoise.SNR_MIN`` × its voxel-noise floor
(the floor of the grid the pipeline sees); ``shift_resolved`` / ``rot_resolved``: the same medians over those
degrees only; below the table, per degree: energy / floor and the mean change over shifts and rotations.
Prints a markdown table (per lesion, per variant) and the summary. ``--surface antialias|sdf`` and
``--sigma-factor`` swap in the surface alternatives measured in Resources/Docs/features.md (study only).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

try:
    import RadTyperLib  # noqa: F401
except ImportError:  # run from a source checkout without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "RadTyper"))

from RadTyperLib.io import read_lesions
from RadTyperLib.perturb import resample_mask
from RadTyperLib.shape import compute_shape, voxelnoise
from RadTyperLib.shape.descriptors import ENERGY_FEATURE_NAMES

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
#: Sub-voxel shifts, in voxels of the output grid (x, y, z).
SHIFTS = ((0.37, -0.21, 0.44), (0.5, 0.5, 0.5), (-0.29, 0.41, -0.13), (0.23, 0.0, -0.47))
#: 3-D rotations about the grid x, y, z axes (degrees).
ROTATIONS = ((25.0, -40.0, 60.0), (-33.0, 17.0, -71.0), (48.0, 29.0, 12.0), (0.0, 90.0, 45.0))


def _variant_field(kind: str, rms: float, post_sigma: float):
    """A replacement for :func:`RadTyperLib.shape.mesh._field` (the alternatives measured in features.md).

    ``antialias``: ITK's AntiAliasBinaryImageFilter (SPHARM-PDM SegPostProcess; max RMS change ``rms``,
    ≤ 200 iterations) on the native grid, level set mapped to 0.5 + φ/8 (φ: ±4 voxels narrow band);
    ``sdf``: signed Maurer distance map (mm) mapped likewise; then an optional Gaussian of ``post_sigma`` × the
    pipeline's σ; trilinear resampling and marching cubes at 0.5 as the default pipeline.
    """
    from scipy import ndimage as ndi

    from RadTyperLib.shape import mesh

    def field(mask, spacing_xyz, h, sigma_mm, closing_mm):
        spacing = np.asarray(spacing_xyz, float)
        margin_mm = 4.0 * float(np.max(sigma_mm)) + closing_mm + 3.0 * h + 5.0 * float(np.max(spacing))
        pad_vox = np.ceil(margin_mm / spacing[::-1]).astype(int)
        m = np.pad(mask, [(p, p) for p in pad_vox])
        if closing_mm > 0:
            m = mesh._closing_mm(m, spacing, closing_mm)
        img = sitk.GetImageFromArray(m.astype(np.uint8))
        img.SetSpacing([float(v) for v in spacing])
        if kind == "antialias":
            flt = sitk.AntiAliasBinaryImageFilter()
            flt.SetMaximumRMSError(rms)
            flt.SetNumberOfIterations(200)
            f = 0.5 + sitk.GetArrayFromImage(flt.Execute(img)).astype(np.float32) / 8.0
        else:
            d = sitk.SignedMaurerDistanceMap(
                img, insideIsPositive=True, squaredDistance=False, useImageSpacing=True
            )
            f = (0.5 + sitk.GetArrayFromImage(d) / (8.0 * float(np.max(spacing)))).astype(np.float32)
        if post_sigma > 0:
            s = post_sigma * np.asarray(sigma_mm)
            f = ndi.gaussian_filter(f, sigma=s[::-1] / spacing[::-1], mode="nearest")
        lo_mm = -(pad_vox[::-1] * spacing) + 0.5 * h
        hi_mm = (np.array(m.shape[::-1]) - 1 - pad_vox[::-1]) * spacing - 0.5 * h
        n = np.floor((hi_mm - lo_mm) / h).astype(int) + 1
        axes = [lo_mm[d] + h * np.arange(n[d]) for d in range(3)]
        wz, wy, wx = (
            mesh._interp_matrix(axes[d] / spacing[d] + pad_vox[::-1][d], f.shape[2 - d]) for d in (2, 1, 0)
        )
        g = np.einsum("az,zyx->ayx", wz, f, optimize=True)
        g = np.einsum("by,ayx->abx", wy, g, optimize=True)
        g = np.einsum("cx,abx->abc", wx, g, optimize=True)
        return np.pad(g, 1), lo_mm - h

    return field


def lesion_path(name: str) -> Path:
    """Mask file of a lesion id: pyradiomics case (lung1, brain2, ...) or LIDC ``<nodule>_r<reader>``."""
    if name.startswith("LIDC"):
        nod, r = name.rsplit("_r", 1)
        return DATA / "lidc" / nod / f"reader{r}.nrrd"
    return DATA / "pyradiomics-cases" / f"{name}_label.nrrd"


def energies(mask: np.ndarray, ref: sitk.Image) -> np.ndarray:
    return energies_floor(mask, ref)[0]


def energies_floor(mask: np.ndarray, ref: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """The 15 per-degree energies and their voxel-noise floor (:func:`voxelnoise.energy_floor`)."""
    res = compute_shape(mask, ref)
    e = np.array([res.features[n] for n in ENERGY_FEATURE_NAMES])
    return e, voxelnoise.energy_floor(res.features["burden_mean_radius_mm"], np.array(ref.GetSpacing()))


def _summary(rows: dict[str, float], e0: np.ndarray, f0: np.ndarray, shifted: list, rotated: list) -> None:
    """Per-variant medians over all 15 energies and over the energies above the voxel-noise floor."""
    resolved = e0 >= voxelnoise.SNR_MIN * f0
    rows["resolved"] = float(resolved.sum())
    for tag, es in (("shift", shifted), ("rot", rotated)):
        rel = [np.abs(e - e0) / e0 for e in es]
        for k, r in enumerate(rel):
            rows[f"{tag}{k + 1}"] = float(np.median(r)) * 100
        rows[f"{tag}_mean"] = float(np.mean([np.median(r) for r in rel])) * 100
        rows[f"{tag}_resolved"] = (
            float(np.mean([np.median(r[resolved]) for r in rel])) * 100 if resolved.any() else float("nan")
        )
        rows[f"{tag}_per_degree"] = np.mean(rel, axis=0) * 100  # type: ignore[assignment]
    rows["snr"] = e0 / f0  # type: ignore[assignment]


def lobulated_mask(spacing: float, shift_vox=(0.0, 0.0, 0.0), angles_deg=(0.0, 0.0, 0.0)) -> tuple:
    """Exact voxelisation of a smooth lobulated lesion (1.6 cm³: radius 6.5 mm × (1 + Σ 6 Gaussian lobes of
    amplitude 0.15–0.3), seed 3) on a ``spacing`` grid, moved by ``shift_vox`` voxels and rotated (grid axes).
    """
    from RadTyperLib.perturb import grid_rotation

    rng = np.random.default_rng(3)
    dirs = rng.normal(size=(6, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    amps = 0.3 * rng.uniform(0.5, 1.0, 6)
    n = int(np.ceil(28.0 / spacing)) + 1
    centre = np.array([14.3, 13.8, 14.4]) + np.asarray(shift_vox) * spacing
    zz, yy, xx = np.meshgrid(*(np.arange(n) * spacing,) * 3, indexing="ij")
    q = np.stack([xx, yy, zz], axis=-1).reshape(-1, 3) - centre
    q = q @ grid_rotation(angles_deg)  # rotate the shape by R: sample the original at Rᵀ p
    rho = np.linalg.norm(q, axis=1)
    d = q / np.maximum(rho, 1e-12)[:, None]
    bumps = np.exp(-np.sum((d[:, None, :] - dirs[None]) ** 2, axis=2) / 0.35) @ amps
    mask = (rho <= 6.5 * (1.0 + bumps)).reshape(n, n, n)
    ref = sitk.Image(n, n, n, sitk.sitkUInt8)
    ref.SetSpacing((spacing,) * 3)
    return mask, ref


def study_synthetic(spacing: float) -> dict[str, float]:
    m0, r0 = lobulated_mask(spacing)
    e0, f0 = energies_floor(m0, r0)
    rows: dict[str, float] = {"volume_cm3": float(m0.sum()) * spacing**3 / 1000.0}
    shifted = [energies(*lobulated_mask(spacing, sh)) for sh in SHIFTS]
    rotated = [energies(*lobulated_mask(spacing, angles_deg=ang)) for ang in ROTATIONS]
    _summary(rows, e0, f0, shifted, rotated)
    return rows


def study(name: str, spacing: float) -> dict[str, float]:
    if name == "lobulated":
        return study_synthetic(spacing)
    labels, lesions = read_lesions(lesion_path(name))
    mask = sitk.GetArrayFromImage(labels) == lesions[0].label
    s_in = np.array(labels.GetSpacing(), float)
    out = (spacing, spacing, spacing)
    m0, r0 = resample_mask(mask, labels, spacing=out)
    e0, f0 = energies_floor(m0, r0)
    rows: dict[str, float] = {"volume_cm3": float(m0.sum()) * spacing**3 / 1000.0}
    shifted = [
        energies(*resample_mask(mask, labels, spacing=out, shift_voxels=np.asarray(sh) * spacing / s_in))
        for sh in SHIFTS
    ]
    rotated = [energies(*resample_mask(mask, labels, spacing=out, angles_deg=ang)) for ang in ROTATIONS]
    _summary(rows, e0, f0, shifted, rotated)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lesions", default="lung1,brain2", help="comma-separated lesion ids")
    ap.add_argument("--spacing", type=float, default=0.7, help="isotropic output grid (mm)")
    ap.add_argument("--out", type=Path, help="also write the table here")
    ap.add_argument(
        "--surface",
        choices=("pipeline", "antialias", "sdf"),
        default="pipeline",
        help="surface extraction: the pipeline's (Gaussian-smoothed indicator) or a measured alternative",
    )
    ap.add_argument("--rms", type=float, default=0.01, help="antialias: maximum RMS change")
    ap.add_argument(
        "--post-sigma", type=float, default=0.0, help="alternatives: Gaussian, × the pipeline's σ"
    )
    ap.add_argument("--sigma-factor", type=float, default=1.0, help="pipeline: multiply its smoothing σ")
    args = ap.parse_args(argv)
    from RadTyperLib.shape import mesh

    if args.surface != "pipeline":
        mesh._field = _variant_field(args.surface, args.rms, args.post_sigma)
    if args.sigma_factor != 1.0:
        base = mesh.smoothing_sigma
        mesh.smoothing_sigma = lambda s, h, r=np.inf: base(s, h, r) * args.sigma_factor
    t0 = time.time()
    names = [n for n in args.lesions.split(",") if n]
    results = {n: study(n, args.spacing) for n in names}
    cols = ["volume_cm3", *[f"shift{k + 1}" for k in range(len(SHIFTS))], "shift_mean"]
    cols += [*[f"rot{k + 1}" for k in range(len(ROTATIONS))], "rot_mean"]
    cols += ["resolved", "shift_resolved", "rot_resolved"]
    lines = [
        f"median over l = 1..15 of |ΔE_l|/E_l (%), {args.spacing} mm isotropic grid; *_resolved: median over the "
        f"`resolved` degrees whose energy is ≥ {voxelnoise.SNR_MIN:g} × its voxel-noise floor",
        "",
        "| lesion | " + " | ".join(cols) + " | rot/shift |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for n, r in results.items():
        ratio = r["rot_mean"] / max(r["shift_mean"], 1e-12)
        lines.append(f"| {n} | " + " | ".join(f"{r[c]:.2f}" for c in cols) + f" | {ratio:.2f} |")
    lines.append("")
    lines.append(
        "per degree l = 1..15: energy / voxel-noise floor; mean |ΔE_l|/E_l (%) over shifts; over rotations"
    )
    for n, r in results.items():
        lines.append(f"- {n}: SNR " + " ".join(f"{v:.0f}" for v in r["snr"]))
        lines.append("  shift " + " ".join(f"{v:.1f}" for v in r["shift_per_degree"]))
        lines.append("  rotation " + " ".join(f"{v:.1f}" for v in r["rot_per_degree"]))
    lines.append("")
    lines.append(f"_({time.time() - t0:.0f} s)_")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
