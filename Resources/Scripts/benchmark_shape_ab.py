#!/usr/bin/env python
"""Side-by-side time per lesion of two shape pipelines (e.g. main's and this branch's): CPU seconds, ratio.

    python Resources/Scripts/benchmark_shape_ab.py OLD/RadTyper NEW/RadTyper [--rounds 3]

Each round runs ``compute_shape`` on the same lesions in a fresh subprocess per pipeline (alternating
A, B, A, B, ... so that machine load hits both alike) and records the *CPU time* of every call
(``time.process_time``, one BLAS thread: robust to other processes on a shared machine). Lesions: the
pyradiomics lung1 / lung2 / brain2 masks, four LIDC reader-1 masks (../shared/data; when present) and three
synthetic lobulated lesions (1, 15, 100 cm³ at 0.75 × 0.75 × 1.25 mm, as benchmark_shape.py). Prints the
median CPU time per lesion for each pipeline and the ratio NEW / OLD (issue 12 target: ≤ 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data"
LIDC = ("LIDC-IDRI-0033_n0", "LIDC-IDRI-0398_n10", "LIDC-IDRI-0404_n3", "LIDC-IDRI-0546_n0")


def _lesions() -> list[tuple[str, np.ndarray, object]]:
    import SimpleITK as sitk

    out = []
    for name in ("lung1", "lung2", "brain2"):
        p = DATA / "pyradiomics-cases" / f"{name}_label.nrrd"
        if p.exists():
            img = sitk.ReadImage(str(p))
            out.append((name, sitk.GetArrayFromImage(img) > 0, img))
    for nod in LIDC:
        p = DATA / "lidc" / nod / "reader1.nrrd"
        if p.exists():
            img = sitk.ReadImage(str(p))
            out.append((nod, sitk.GetArrayFromImage(img) > 0, img))
    sys.path.insert(0, str(HERE))
    from benchmark_shape import lobulated_lesion

    for vol in (1.0, 15.0, 100.0):
        _, lab = lobulated_lesion(vol)
        arr = sitk.GetArrayFromImage(lab) > 0
        idx = np.argwhere(arr)
        lo, hi = np.maximum(idx.min(0) - 4, 0), idx.max(0) + 5
        crop = arr[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        ref = sitk.Image(*crop.shape[::-1], sitk.sitkUInt8)
        ref.SetSpacing(lab.GetSpacing())
        out.append((f"lobulated_{vol:g}cm3", crop, ref))
    return out


def worker(pipeline: str) -> None:
    import time

    sys.path.insert(0, pipeline)  # before anything imports RadTyperLib (benchmark_shape does)
    from RadTyperLib.shape import compute_shape

    lesions = _lesions()

    res = {}
    for name, mask, ref in lesions:
        t = time.process_time()
        compute_shape(mask, ref, lesion=name)
        res[name] = time.process_time() - t
    print(json.dumps(res))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="RadTyper folder of the reference pipeline")
    ap.add_argument("new", help="RadTyper folder of the pipeline under test")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": ""}
    times: dict[str, list[dict]] = {"old": [], "new": []}
    for _ in range(args.rounds):
        for key in ("old", "new"):
            cmd = [sys.executable, __file__, args.old, args.new, "--worker", getattr(args, key)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            times[key].append(json.loads(out.strip().splitlines()[-1]))
    names = list(times["old"][0])
    print("| lesion | old CPU s | new CPU s | new / old |\n|---|---|---|---|")
    ratios = []
    for n in names:
        a = float(np.median([t[n] for t in times["old"]]))
        b = float(np.median([t[n] for t in times["new"]]))
        ratios.append(b / a)
        print(f"| {n} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
    ta = sum(float(np.median([t[n] for t in times["old"]])) for n in names)
    tb = sum(float(np.median([t[n] for t in times["new"]])) for n in names)
    print(
        f"\ntotal: old {ta:.1f} s, new {tb:.1f} s, ratio {tb / ta:.3f}; median per-lesion ratio "
        f"{np.median(ratios):.3f}, max {max(ratios):.3f} ({args.rounds} rounds, median CPU time per lesion)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
