#!/usr/bin/env python
"""Benchmark of the SPHARM shape pipeline (RadTyperLib.shape.compute_shape) against pyradiomics.

For a small (~1 cm³), medium (~15 cm³) and large (~100 cm³) synthetic lobulated lesion in a full-size
CT-like volume (512 × 512 × 120 voxels of 0.75 × 0.75 × 1.25 mm), and for the pyradiomics ``lung2`` case when ../shared/data is present, prints:
wall time and peak traced memory (tracemalloc: numpy buffers included) of ``compute_shape``, the main QC
values, and the wall time of pyradiomics' 107 default features (``RadiomicsFeatureExtractor()`` with its
default settings: original image, all feature classes) on the same image and mask, and the ratio
shape / pyradiomics (target ≤ 1.5).

Usage:  python Resources/Scripts/benchmark_shape.py [--repeat N] [--no-radiomics]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from RadTyperLib.shape import compute_shape

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SPACING = (0.75, 0.75, 1.25)
FULL_SIZE = (512, 512, 120)  # x, y, z


def lobulated_lesion(volume_cm3: float, seed: int = 0) -> tuple[sitk.Image, sitk.Image]:
    """Full-size CT-like image (HU, 512 × 512 × 120) and label map with one lobulated lesion of ~``volume_cm3``.

    The lesion has a heterogeneous texture (smoothed noise, ~80 HU std, like lung2's 97 HU) in noisy lung
    (−800 HU): pyradiomics then sees a realistic number of grey levels (default bin width 25 HU), and both
    pipelines get a full-size volume as in practice.
    """
    from scipy.ndimage import gaussian_filter

    r = (3.0 * volume_cm3 * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0) / 1.08  # bumps add ~25 % volume
    extent = 2.0 * r * 1.5 + 10.0
    size = [int(np.ceil(extent / s)) for s in SPACING]
    k, j, i = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    p = np.stack([i * SPACING[0], j * SPACING[1], k * SPACING[2]], axis=-1) - extent / 2.0
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(6, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    amps = 0.25 * rng.uniform(0.5, 1.0, 6)
    rho = np.linalg.norm(p, axis=-1)
    d = p / np.maximum(rho, 1e-9)[..., None]
    bumps = np.exp(-np.sum((d[..., None, :] - dirs) ** 2, axis=-1) / 0.35) @ amps
    lesion = rho <= r * (1.0 + bumps)
    texture = gaussian_filter(rng.normal(0.0, 1.0, lesion.shape), 1.5)
    texture *= 80.0 / texture.std()

    full = (FULL_SIZE[2], FULL_SIZE[1], FULL_SIZE[0])
    hu = (-800.0 + rng.normal(0.0, 30.0, full)).astype(np.int16)
    mask = np.zeros(full, np.uint8)
    o = [(full[a] - lesion.shape[a]) // 2 for a in range(3)]
    sl = tuple(slice(o[a], o[a] + lesion.shape[a]) for a in range(3))
    hu[sl] = np.where(lesion, 20.0 + texture + rng.normal(0.0, 30.0, lesion.shape), hu[sl]).astype(np.int16)
    mask[sl] = lesion
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(SPACING)
    image.SetOrigin((-192.0, -192.0, -75.0))
    label = sitk.GetImageFromArray(mask)
    label.CopyInformation(image)
    return image, label


def time_shape(label: sitk.Image, repeat: int) -> tuple[float, float, dict]:
    """Best-of-``repeat`` wall time (s) and peak traced memory (MiB) of compute_shape."""
    mask = sitk.GetArrayFromImage(label) > 0
    compute_shape(mask, label)  # warm-up: imports, cached icosphere basis
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = compute_shape(mask, label)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    compute_shape(mask, label)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return min(times), peak / 2**20, res.qc


def time_radiomics(image: sitk.Image, label: sitk.Image, repeat: int) -> float:
    """Best-of-``repeat`` wall time (s) of pyradiomics' default 107 features."""
    import logging

    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = extractor.execute(image, label)
        times.append(time.perf_counter() - t0)
    n = sum(1 for k in out if not k.startswith("diagnostics"))
    if n != 107:
        print(f"  (pyradiomics returned {n} features)")
    return min(times)


def crop_to_lesion(image: sitk.Image, label: sitk.Image, margin: int = 10) -> tuple[sitk.Image, sitk.Image]:
    """Image and label cropped to the lesion's bounding box plus ``margin`` voxels."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(label)
    x0, y0, z0, nx, ny, nz = stats.GetBoundingBox(1)
    lo = [max(0, a - margin) for a in (x0, y0, z0)]
    hi = [min(s, a + n + margin) for s, a, n in zip(label.GetSize(), (x0, y0, z0), (nx, ny, nz), strict=True)]
    size = [h - lo_ for h, lo_ in zip(hi, lo, strict=True)]
    return sitk.RegionOfInterest(image, size, lo), sitk.RegionOfInterest(label, size, lo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-radiomics", action="store_true")
    args = ap.parse_args()

    cases: list[tuple[str, sitk.Image, sitk.Image]] = []
    for name, vol in (("small", 1.0), ("medium", 15.0), ("large", 100.0)):
        img, lab = lobulated_lesion(vol)
        cases.append((name, img, lab))
    lung2 = DATA / "pyradiomics-cases"
    if (lung2 / "lung2_label.nrrd").exists():
        cases.append(
            (
                "lung2",
                sitk.ReadImage(str(lung2 / "lung2_image.nrrd")),
                sitk.ReadImage(str(lung2 / "lung2_label.nrrd")),
            )
        )

    header = (
        f"{'lesion':8s} {'cm3':>7s} {'verts':>6s} {'shape s':>8s} {'peak MiB':>9s} {'ADC':>6s} "
        f"{'err15 mm':>8s} {'pyrad s':>8s} {'ratio':>6s} {'pyrad crop s':>12s} {'ratio':>6s}"
    )
    print(header)
    print("-" * len(header))
    for name, img, lab in cases:
        vol = float(np.count_nonzero(sitk.GetArrayViewFromImage(lab))) * float(np.prod(lab.GetSpacing()))
        t_shape, peak, qc = time_shape(lab, args.repeat)
        t_rad = t_crop = float("nan")
        if not args.no_radiomics:
            t_rad = time_radiomics(img, lab, args.repeat)
            t_crop = time_radiomics(*crop_to_lesion(img, lab), args.repeat)
        print(
            f"{name:8s} {vol / 1000:7.2f} {qc['qc_n_vertices']:6d} {t_shape:8.2f} {peak:9.1f} "
            f"{qc['qc_area_distortion']:6.3f} {qc['qc_recon_error_mm_l15']:8.3f} {t_rad:8.2f} "
            f"{t_shape / t_rad:6.2f} {t_crop:12.2f} {t_shape / t_crop:6.2f}"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS: {rss:.0f} MiB")
    print(
        "shape s: best-of-N wall time of compute_shape on the full-size mask; pyrad s: pyradiomics' 107 default "
        "features on the full-size image; pyrad crop s: the same on the lesion's bounding box + 10 voxels "
        "(pure feature computation, without pyradiomics' whole-image overhead)."
    )


if __name__ == "__main__":
    main()
