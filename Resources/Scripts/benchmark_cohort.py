"""Throughput of the cohort extraction (lesions per minute) with 1 and more local worker processes.

    python Resources/Scripts/benchmark_cohort.py [--patients 6] [--lesions 4] [--workers 1 2] [--no-radiomics]

Builds ``--patients`` synthetic CT patients (:func:`RadTyperLib.phantoms.make_patient`, default spacing
1.5 × 1.5 × 2.5 mm, the first ``--lesions`` of the default lesions: sphere, spiculated, lobulated and
necrotic ellipsoid …), writes them and a manifest to a temporary folder, then runs
:func:`RadTyperLib.cohort.extract_cohort` once per worker count into a fresh output folder (radiomics on
unless ``--no-radiomics``) and prints wall time, lesions/minute and the speed-up over the first count. The
tables of all runs are checked to be equal. The machine load (1-min load average) is printed: with
other jobs running, parallel speed-ups shrink.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

try:
    import RadTyperLib  # noqa: F401
except ImportError:  # run from a source checkout without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "RadTyper"))

import pandas as pd

from RadTyperLib.cohort import CaseSpec, extract_cohort, write_manifest
from RadTyperLib.features import FeatureSettings
from RadTyperLib.io import write_patient
from RadTyperLib.phantoms import default_lesions, make_patient


def _burn(n: int = 8_000_000) -> float:
    """Seconds for a pure-Python loop (one CPU)."""
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - t0


def cpu_scaling(workers: int) -> float:
    """Parallel efficiency of this machine: time of one loop alone / mean time of ``workers`` at once (median of 3)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ratios = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_burn, [1000] * workers))  # start the workers
        for _ in range(3):  # median of 3: one sample moves a lot on a shared machine
            alone = pool.submit(_burn).result()
            together = list(pool.map(_burn, [8_000_000] * workers))
            ratios.append(alone / (sum(together) / len(together)))
    return sorted(ratios)[1]


def build_cohort(root: Path, n_patients: int, n_lesions: int) -> Path:
    """Write ``n_patients`` synthetic patients and their manifest under ``root``."""
    lesions = default_lesions()[:n_lesions]
    cases = []
    for i in range(n_patients):
        pid = f"SYN{i:03d}"
        files = write_patient(make_patient(i, lesions=lesions, patient_id=pid), root / pid)
        cases.append(
            CaseSpec(
                pid,
                str(files["image"]),
                str(files["lesions"]),
                str(files["parenchyma"]),
                str(files["sites"]),
                "CT",
                "synthetic",
            )
        )
    return write_manifest(root / "manifest.csv", cases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--lesions", type=int, default=4, help="lesions per patient (1-8)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-radiomics", action="store_true")
    args = parser.parse_args(argv)
    settings = FeatureSettings(radiomics=not args.no_radiomics)
    print(
        f"cohort benchmark: {args.patients} patients × {args.lesions} lesions, radiomics "
        f"{'off' if args.no_radiomics else 'on'}, {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}"
    )
    if hasattr(os, "getloadavg"):
        print(f"  load average before: {os.getloadavg()[0]:.1f}")
    for w in sorted({w for w in args.workers if w > 1}):
        print(
            f"  CPU parallel efficiency with {w} processes (pure-Python loop): {cpu_scaling(w):.2f} (1 = ideal)"
        )
    with tempfile.TemporaryDirectory(prefix="radtyper-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        manifest = build_cohort(root / "data", args.patients, args.lesions)
        print(f"  synthetic cohort written in {time.perf_counter() - t0:.1f} s")
        tables: list[pd.DataFrame] = []
        base = None
        for run, w in enumerate(args.workers):
            t0 = time.perf_counter()
            result = extract_cohort(
                manifest, root / f"out{run}_w{w}", settings=settings, workers=w, quiet=True
            )
            wall = time.perf_counter() - t0
            n = len(result.features)
            rate = 60.0 * n / wall
            base = base or rate
            failed = len(result.failures)
            print(
                f"  workers={w}: {n} lesions in {wall:6.1f} s → {rate:6.1f} lesions/min "
                f"(×{rate / base:.2f}){f', {failed} failure(s)' if failed else ''}"
            )
            tables.append(result.features)
        for t in tables[1:]:
            pd.testing.assert_frame_equal(t, tables[0])
        print("  tables identical across worker counts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
