#!/usr/bin/env python
"""Benchmark of the one-click seeded segmentation (RadTyperLib.segmentation.segment_from_point).

Clicks once inside every lesion and prints Dice against the reference mask, volumes, the QC flags and the
runtime, for: the synthetic CT and MR demo patients (``make_patient(seed)``; click = the mask voxel nearest to
the lesion's centroid, or its deepest voxel for the C-shape and the dumbbell) and, when ../shared/data is present, the pyradiomics cases (lung1, lung2, brain1,
brain2, breast1) and the IBSI soft-tissue-sarcoma CT and MR T1 images (same click rule).

Usage:  python Resources/Scripts/benchmark_seeded.py [--seeds 0 1] [--no-real] [--max-radius 60]
        [--random-clicks 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from RadTyperLib.errors import RadTyperError
from RadTyperLib.patient import index_to_physical, physical_centroid
from RadTyperLib.phantoms import make_phantom
from RadTyperLib.segmentation import segment_from_point

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def click_point(mask_zyx: np.ndarray, image: sitk.Image, deepest: bool = False) -> np.ndarray:
    """Physical point (LPS mm) of the mask voxel nearest to the mask's physical centroid, or (``deepest``) of
    the voxel farthest from the mask boundary (a click in the thick part of a C-shape / dumbbell)."""
    if deepest:
        depth = ndimage.distance_transform_edt(np.pad(mask_zyx, 1), sampling=image.GetSpacing()[::-1])
        k = np.unravel_index(int(np.argmax(depth[1:-1, 1:-1, 1:-1])), mask_zyx.shape)
        return index_to_physical(np.asarray(k[::-1], dtype=float), image)
    c = physical_centroid(mask_zyx, image)
    idx = np.argwhere(mask_zyx)[:, ::-1]
    pts = index_to_physical(idx.astype(float), image)
    return pts[int(np.argmin(((pts - c) ** 2).sum(axis=1)))]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def synthetic_cases(seeds: list[int]) -> Iterator[tuple[str, sitk.Image, np.ndarray, bool]]:
    for seed in seeds:
        for mod in ("CT", "MR"):
            ph = make_phantom(seed, modality=mod)
            pat = ph.patient
            for les, spec in zip(pat.lesions, ph.specs, strict=True):
                deep = spec.shape in ("c_shape", "dumbbell")
                yield f"synthetic {mod} s{seed} {les.name}", pat.image, pat.lesion_mask(les), deep


def real_cases() -> Iterator[tuple[str, sitk.Image, np.ndarray, bool]]:
    pr = DATA / "pyradiomics-cases"
    for case in ("lung1", "lung2", "brain1", "brain2", "breast1"):
        img = pr / f"{case}_image.nrrd"
        if img.exists():
            mask = sitk.GetArrayFromImage(sitk.ReadImage(str(pr / f"{case}_label.nrrd"))) > 0
            yield case, sitk.ReadImage(str(img)), mask, False
    for d in sorted((DATA / "ibsi-sts").glob("STS_*")):
        for mod, stem in (("CT", "CT"), ("MR", "MR_T1")):
            img = d / f"{stem}_image.nii.gz"
            if img.exists():
                mask = sitk.GetArrayFromImage(sitk.ReadImage(str(d / f"{stem}_mask.nii.gz"))) > 0
                yield f"{d.name} {mod}", sitk.ReadImage(str(img)), mask, False


def random_clicks(
    mask_zyx: np.ndarray, image: sitk.Image, n: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``n`` physical points of random mask voxels at least 3 mm (or half the maximal depth) inside."""
    depth = ndimage.distance_transform_edt(np.pad(mask_zyx, 1), sampling=image.GetSpacing()[::-1])[
        1:-1, 1:-1, 1:-1
    ]
    cand = np.argwhere(depth >= min(3.0, 0.5 * float(depth.max())))
    pick = cand[rng.choice(len(cand), size=min(n, len(cand)), replace=False)]
    return [index_to_physical(k[::-1].astype(float), image) for k in pick]


def _fmt(v: object) -> str:
    return "-" if v is None else f"{v:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="phantom seeds")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--max-radius", type=float, default=60.0, help="max_radius_mm")
    ap.add_argument(
        "--random-clicks", type=int, default=0, help="also click N random inner voxels per lesion"
    )
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    cases: list = []
    if not args.no_synthetic:
        cases.append(synthetic_cases(args.seeds))
    if not args.no_real and DATA.is_dir():
        cases.append(real_cases())
    print(
        f"{'case':28s} {'dice':>6s} {'ref cm3':>8s} {'seg cm3':>8s} {'lo':>7s} {'hi':>7s} {'open':>5s} "
        f"{'leak':>5s} {'time s':>6s} {'seed':>6s} {'n_lo':>6s} {'n_hi':>6s} {'σ mm':>5s}"
        + ("  random clicks: Dice" if args.random_clicks else "")
    )
    for gen in cases:
        for name, image, ref, deep in gen:
            pt = click_point(ref, image, deep)
            t0 = time.perf_counter()
            try:
                r = segment_from_point(image, pt, max_radius_mm=args.max_radius)
            except RadTyperError as exc:
                print(f"{name:28s} ERROR {exc}")
                continue
            dt = time.perf_counter() - t0
            q = r.qc
            line = (
                f"{name:28s} {dice(r.mask_zyx, ref):6.3f} {ref.sum() * np.prod(image.GetSpacing()) / 1e3:8.2f} "
                f"{r.volume_mm3 / 1e3:8.2f} {q['qc_threshold_lo']:7.0f} {q['qc_threshold_hi']:7.0f} "
                f"{q['qc_opening_mm']:5.1f} {q['qc_leak_suspected']!s:>5s} {dt:6.2f} "
                f"{q['qc_seed_intensity']:6.0f} {_fmt(q['qc_neighbour_lo']):>6s} {_fmt(q['qc_neighbour_hi']):>6s} "
                f"{q['qc_smooth_mm']:5.2f}"
            )
            if args.random_clicks:
                ds = []
                for p in random_clicks(ref, image, args.random_clicks, rng):
                    try:
                        ds.append(
                            dice(segment_from_point(image, p, max_radius_mm=args.max_radius).mask_zyx, ref)
                        )
                    except RadTyperError:
                        ds.append(0.0)
                line += "  " + " ".join(f"{d:.2f}" for d in ds) + f"  (median {np.median(ds):.2f})"
            print(line, flush=True)


if __name__ == "__main__":
    main()
