"""Time the 107 default pyradiomics features (Henry et al. settings) on pyradiomics' five test cases.

    python Resources/Scripts/benchmark_radiomics.py                  # cases from ../shared/data/pyradiomics-cases
    python Resources/Scripts/benchmark_radiomics.py --cases DIR -n 5 # another folder, best of 5 runs

Prints, per case: lesion volume (cm³), voxels after 1 mm resampling, best and median wall time of
:func:`RadTyperLib.pyradiomics_features.radiomics_features` (image already in memory; first call excluded).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from RadTyperLib.pyradiomics_features import radiomics_features

CASES = ("brain1", "brain2", "breast1", "lung1", "lung2")
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "pyradiomics-cases"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=DEFAULT_DIR, help="folder of <case>_image/_label.nrrd")
    parser.add_argument("-n", type=int, default=3, help="timed runs per case (default 3)")
    args = parser.parse_args()

    radiomics_features(*_load(args.cases, "breast1"), lesion="warm-up")
    print(f"{'case':8s} {'cm3':>7s} {'voxels@1mm':>10s} {'best s':>7s} {'median s':>8s}")
    for case in CASES:
        image, mask = _load(args.cases, case)
        times = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            feats = radiomics_features(image, mask, lesion=case)
            times.append(time.perf_counter() - t0)
        volume_cm3 = mask.sum() * float(np.prod(image.GetSpacing())) / 1000
        print(
            f"{case:8s} {volume_cm3:7.2f} {feats['radiomics_shape_VoxelVolume']:10.0f} "
            f"{min(times):7.2f} {statistics.median(times):8.2f}"
        )


def _load(folder: Path, case: str) -> tuple[sitk.Image, np.ndarray]:
    image = sitk.ReadImage(str(folder / f"{case}_image.nrrd"))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{case}_label.nrrd")))
    return image, labels == 1


if __name__ == "__main__":
    main()
