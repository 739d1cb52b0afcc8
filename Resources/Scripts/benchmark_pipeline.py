#!/usr/bin/env python
"""RadTyper's full per-lesion features against plain pyradiomics, side by side, plus patient and cohort scaling.

    python Resources/Scripts/benchmark_pipeline.py [--repeat 3] [--sections lesions,reconstruct,patient,cohort]
        [--lesions STS_002,lung1] [--patient-sizes 1,10,100] [--cohort-patients 12]

Sections (all whole processes, timed from outside: start-up, imports and file reading included):

* ``lesions``: on the real CT lesions of ``../shared/data`` (IBSI STS CT cases with an image, pyradiomics' lung1 and
  lung2; synthetic lobulated lesions of 1, 15 and 100 cm³ in a 512 × 512 × 120 CT when the folder is absent):
  ``radtyper features`` (288 shape + 5 burden + 20 regional + 107 pyradiomics features + QC, CSV written) against
  plain pyradiomics (``RadiomicsFeatureExtractor(<RadTyper's default parameter file>).execute(image, mask)``:
  1 mm B-spline resampling, bin width 10, the 107 default features) in a fresh Python process. The two commands
  alternate (A B A B …) ``--repeat`` times; the table gives the medians, the median of the pairwise ratios
  A/B and each command's peak RSS.
* ``reconstruct``: a 50 mm lesion: ``radtyper features --coefficients`` once, then the in-process time of one
  reconstruction at a new degree from the saved file (load + evaluate + write the mesh), and the whole
  ``radtyper reconstruct --coefficients`` call against a call that refits.
* ``patient``: one synthetic CT with 1, 10 or 100 small lesions: ``radtyper features`` + ``radtyper heterogeneity``;
  time per lesion and the ratio to one lesion (target: 100 lesions ≤ 110 × one lesion).
* ``cohort``: ``radtyper cohort extract`` of ``--cohort-patients`` synthetic patients (4 lesions each) with 1 and 2
  worker processes, alternated ``--repeat`` times: wall time, patients/min, CPU seconds of all processes (workers
  and forkserver included) per patient, the load average before and after each run; the throughput ratio (target
  ≥ 1.6 on 2 free cores), the CPU-efficiency ratio (CPU s per patient 1 worker / 2 workers, independent of the
  load) and the machine's own parallel efficiency before and after; the tables of all runs must be identical.

The machine (CPUs, load average before and after each section) and thread settings are printed: on a shared
machine every figure moves with the load, ratios of alternated runs much less than absolute times.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "RadTyper"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PY = sys.executable
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT / "RadTyper"), os.environ.get("PYTHONPATH", "")]),
}

PYRADIOMICS_SCRIPT = """
import sys, logging
import radiomics
from radiomics import featureextractor
logging.getLogger("radiomics").setLevel(logging.ERROR)
ext = featureextractor.RadiomicsFeatureExtractor(sys.argv[1])
out = ext.execute(sys.argv[2], sys.argv[3], label=int(sys.argv[4]))
n = sum(1 for k in out if not k.startswith("diagnostics"))
assert n == 107, n
"""


# --- process timing ---------------------------------------------------------------------------------------
LAST_CPU: list[float] = [0.0]  # user + system CPU seconds of the last run_timed child


def run_timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall s, peak RSS MiB) of one child process (its CPU seconds in ``LAST_CPU[0]``); raises when it fails."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env or ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(
                f"{' '.join(cmd[:6])} … failed ({proc.returncode}): {err.read().decode()[-500:]}"
            )
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024.0


def load() -> str:
    """1-, 5- and 15-minute load averages."""
    return (
        "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else ""
    )


def machine() -> None:
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s)"
    )
    print(f"python {sys.version.split()[0]}; {load()}")
    threads = {
        k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    print("thread settings: " + ", ".join(f"{k}={v}" for k, v in threads.items()))
    try:
        from threadpoolctl import threadpool_info

        pools = {f"{p['internal_api']}:{p['num_threads']}" for p in threadpool_info()}
        print(
            f"thread pools (numpy/scipy): {', '.join(sorted(pools))}; RadTyper's shape step limits BLAS to 1"
        )
    except ImportError:
        pass
    import radiomics

    from RadTyperLib import __version__

    print(
        f"RadTyper {__version__}, pyradiomics {radiomics.__version__}, SimpleITK {sitk.Version_VersionString()}"
    )


# --- cases ------------------------------------------------------------------------------------------------
def real_cases(names: list[str] | None) -> list[tuple[str, Path, Path]]:
    cases = []
    for i in range(1, 11):
        d = DATA / "ibsi-sts" / f"STS_{i:03d}"
        if (d / "CT_image.nii.gz").is_file() and (d / "CT_mask.nii.gz").is_file():
            cases.append((f"STS_{i:03d}", d / "CT_image.nii.gz", d / "CT_mask.nii.gz"))
    for c in ("lung1", "lung2"):
        d = DATA / "pyradiomics-cases"
        if (d / f"{c}_image.nrrd").is_file():
            cases.append((c, d / f"{c}_image.nrrd", d / f"{c}_label.nrrd"))
    return [c for c in cases if not names or c[0] in names]


def phantom_cases(tmp: Path) -> list[tuple[str, Path, Path]]:
    from benchmark_shape import lobulated_lesion

    cases = []
    for vol in (1.0, 15.0, 100.0):
        img, lab = lobulated_lesion(vol)
        ip, lp = tmp / f"phantom{vol:g}_image.nrrd", tmp / f"phantom{vol:g}_label.nrrd"
        sitk.WriteImage(img, str(ip), True)
        sitk.WriteImage(lab, str(lp), True)
        cases.append((f"phantom {vol:g} cm³", ip, lp))
    return cases


def lesion_volume_cm3(mask_path: Path) -> float:
    lab = sitk.ReadImage(str(mask_path))
    return (
        float(np.count_nonzero(sitk.GetArrayViewFromImage(lab))) * float(np.prod(lab.GetSpacing())) / 1000.0
    )


# --- sections ---------------------------------------------------------------------------------------------
def section_lesions(args: argparse.Namespace, tmp: Path) -> None:
    from RadTyperLib.pyradiomics_features import DEFAULT_PARAMS_PATH

    cases = real_cases(args.lesions) or phantom_cases(tmp)
    src = "real CT lesions of ../shared/data" if real_cases(args.lesions) else "synthetic phantoms"
    script = tmp / "plain_pyradiomics.py"
    script.write_text(PYRADIOMICS_SCRIPT)
    print(f"\n== per lesion: radtyper features (all features + QC) vs plain pyradiomics (107), {src}")
    print(f"   {args.repeat} alternated repetitions each, medians; {load()}")
    head = (
        f"{'lesion':10s} {'cm3':>6s} | {'wall s: radtyper':>16s} {'pyradiomics':>11s} {'ratio':>6s} | "
        f"{'CPU s: radtyper':>15s} {'pyradiomics':>11s} {'ratio':>6s} | {'peak MiB: radtyper':>18s} {'pyrad':>6s}"
    )
    print(head)
    print("-" * len(head))
    ratios, cpu_ratios = [], []
    for name, image, mask in cases:
        out = tmp / "features.csv"
        a_cmd = [PY, "-m", "RadTyperLib.cli", "features", "--image", str(image), "--lesions", str(mask),
                 "--out", str(out), "--quiet"]  # fmt: skip
        b_cmd = [PY, str(script), str(DEFAULT_PARAMS_PATH), str(image), str(mask), "1"]
        a, b, ca, cb, ma, mb = [], [], [], [], [], []
        for _ in range(args.repeat):
            t, m = run_timed(a_cmd)
            a.append(t)
            ca.append(LAST_CPU[0])
            ma.append(m)
            t, m = run_timed(b_cmd)
            b.append(t)
            cb.append(LAST_CPU[0])
            mb.append(m)
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        cpu_ratio = statistics.median(x / y for x, y in zip(ca, cb, strict=True))
        ratios.append(ratio)
        cpu_ratios.append(cpu_ratio)
        print(
            f"{name:10s} {lesion_volume_cm3(mask):6.1f} | {statistics.median(a):16.2f} {statistics.median(b):11.2f} "
            f"{ratio:6.2f} | {statistics.median(ca):15.2f} {statistics.median(cb):11.2f} {cpu_ratio:6.2f} | "
            f"{max(ma):18.0f} {max(mb):6.0f}",
            flush=True,
        )
    print(f"median ratio radtyper / pyradiomics over {len(ratios)} lesions: wall {statistics.median(ratios):.2f}, "
          f"CPU {statistics.median(cpu_ratios):.2f} (target ≤ 1.5, aim ≤ 1.0); {load()}")  # fmt: skip
    print("(ratios are medians of the pairwise ratios of alternated runs; CPU = user + system seconds of the "
          "process, less sensitive than wall time to other jobs on a loaded machine)")  # fmt: skip


def _ellipsoid_case(tmp: Path, diameter_mm: float = 50.0) -> tuple[Path, Path]:
    """A CT-like image (1 × 1 × 2 mm) with one lobulated lesion of ~``diameter_mm``."""
    size = (96, 96, 40)
    zz, yy, xx = np.indices(size[::-1], dtype=float)
    p = np.stack([xx - 48, yy - 48, (zz - 20) * 2.0], axis=-1)
    r = np.linalg.norm(p, axis=-1)
    u = p / np.maximum(r, 1e-9)[..., None]
    radius = diameter_mm / 2.0 * (1.0 + 0.12 * u[..., 0] * u[..., 1] + 0.08 * u[..., 2] ** 2)
    mask = (r <= radius).astype(np.uint8)
    rng = np.random.default_rng(1)
    image = np.where(mask > 0, 30.0, -750.0) + rng.normal(0, 25, mask.shape)
    img = sitk.GetImageFromArray(image.astype(np.int16))
    img.SetSpacing((1.0, 1.0, 2.0))
    lab = sitk.GetImageFromArray(mask)
    lab.CopyInformation(img)
    ip, lp = tmp / "fifty_image.nrrd", tmp / "fifty_label.nrrd"
    sitk.WriteImage(img, str(ip), True)
    sitk.WriteImage(lab, str(lp), True)
    return ip, lp


def section_reconstruct(args: argparse.Namespace, tmp: Path) -> None:
    image, mask = _ellipsoid_case(tmp)
    coef = tmp / "coef.npz"
    print(
        f"\n== reconstruct from saved coefficients: 50 mm lesion ({lesion_volume_cm3(mask):.1f} cm³); {load()}"
    )
    run_timed([PY, "-m", "RadTyperLib.cli", "features", "--image", str(image), "--lesions", str(mask), "--out",
               str(tmp / "f.csv"), "--quiet", "--no-radiomics", "--coefficients", str(coef)])  # fmt: skip
    code = f"""
import time
t0 = time.perf_counter()
from RadTyperLib.coefficients import load_coefficients
from RadTyperLib.render import write_mesh
import RadTyperLib.shape
t_import = time.perf_counter() - t0
times = []
write_mesh({str(tmp / "warm.vtk")!r}, *RadTyperLib.shape.spharm.icosphere(1))  # vtk's own import, not counted
for degree in (7, 3, 12):  # the first builds the icosphere (cached for the process)
    t0 = time.perf_counter()
    rec = load_coefficients({str(coef)!r})["lesion_1"]
    v, f = rec.reconstruct(degree)
    t1 = time.perf_counter()
    write_mesh({str(tmp / "r.vtk")!r}, v, f)
    times += [t1 - t0, time.perf_counter() - t1]
print(f"{{t_import:.3f}} " + " ".join(f"{{t:.4f}}" for t in times))
"""
    vals = []
    for _ in range(args.repeat):
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
        vals.append([float(x) for x in out.split()])
    med = np.median(np.array(vals), axis=0)
    print(f"in-process (imports {med[0] * 1000:.0f} ms not counted): load the .npz + evaluate a new degree: "
          f"{med[1] * 1000:.1f} ms for the first in a process (icosphere built), then {med[3] * 1000:.1f} / "
          f"{med[5] * 1000:.1f} ms (target < 50 ms); writing the .vtk {med[2] * 1000:.1f} / {med[4] * 1000:.1f} / "
          f"{med[6] * 1000:.1f} ms")  # fmt: skip
    base = [PY, "-m", "RadTyperLib.cli", "reconstruct", "--lesions", str(mask), "--lesion", "1", "--no-cache",
            "--degree", "1,5,15", "--out", str(tmp / "m.vtk")]  # fmt: skip
    a, b = [], []
    for _ in range(args.repeat):
        a.append(run_timed([*base, "--coefficients", str(coef)])[0])
        b.append(run_timed(base)[0])
    print(f"whole 'radtyper reconstruct --degree 1,5,15' process: from saved coefficients "
          f"{statistics.median(a):.2f} s, refitting {statistics.median(b):.2f} s")  # fmt: skip


def _many_lesion_patient(tmp: Path, n: int) -> tuple[Path, Path]:
    """One CT (1.5 × 1.5 × 2 mm, 100 lesion slots on a 5 × 5 × 4 lattice) with the first ``n`` lesions set."""
    rng = np.random.default_rng(7)
    size = (100, 100, 80)  # x, y, z voxels: 150 × 150 × 160 mm
    image = -750.0 + rng.normal(0, 30, size[::-1])
    labels = np.zeros(size[::-1], np.uint16)
    zz, yy, xx = np.indices(size[::-1], dtype=float)
    k = 0
    for iz in range(4):
        for iy in range(5):
            for ix in range(5):
                if k >= n:
                    break
                c = np.array([15 + 30 * ix, 15 + 30 * iy, 20 + 40 * iz], float)  # mm
                axes = rng.uniform(5.0, 9.0, 3)
                inside = (
                    ((xx * 1.5 - c[0]) / axes[0]) ** 2
                    + ((yy * 1.5 - c[1]) / axes[1]) ** 2
                    + ((zz * 2.0 - c[2]) / axes[2]) ** 2
                ) <= 1.0
                labels[inside] = k + 1
                image[inside] = 30.0 + rng.normal(0, 40, int(inside.sum()))
                k += 1
    img = sitk.GetImageFromArray(image.astype(np.int16))
    img.SetSpacing((1.5, 1.5, 2.0))
    lab = sitk.GetImageFromArray(labels)
    lab.CopyInformation(img)
    ip, lp = tmp / f"patient{n}_image.nrrd", tmp / f"patient{n}_labels.nrrd"
    sitk.WriteImage(img, str(ip), True)
    sitk.WriteImage(lab, str(lp), True)
    return ip, lp


def section_patient(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n== patient of N lesions (one 150 × 150 × 160 mm CT, lesions 0.5–2.5 cm³): features + heterogeneity; "
          f"{load()}")  # fmt: skip
    per = {}
    for n in args.patient_sizes:
        image, labels = _many_lesion_patient(tmp, n)
        out = tmp / f"p{n}.csv"
        reps = args.repeat if n <= 10 else 1
        walls, feats, hets = [], [], []
        for _ in range(reps):
            t1, m1 = run_timed([PY, "-m", "RadTyperLib.cli", "features", "--image", str(image), "--lesions",
                                str(labels), "--out", str(out), "--quiet"])  # fmt: skip
            t2, m2 = 0.0, 0.0
            if n >= 2:  # one lesion has no inter-lesion heterogeneity (the command says so and exits 2)
                t2, m2 = run_timed([PY, "-m", "RadTyperLib.cli", "heterogeneity", "--features", str(out),
                                    "--out", str(tmp / f"h{n}")])  # fmt: skip
            walls.append(t1 + t2)
            feats.append(t1)
            hets.append(t2)
        wall = statistics.median(walls)
        per[n] = wall
        print(f"{n:4d} lesion(s): {wall:7.1f} s = features {statistics.median(feats):6.1f} s + heterogeneity "
              f"{statistics.median(hets):5.1f} s ({reps} run(s), median); {wall / n:6.2f} s per lesion, "
              f"× {wall / per[min(per)]:.1f} one lesion, peak {max(m1, m2):.0f} MiB; {load()}", flush=True)  # fmt: skip
    if 1 in per and 100 in per:
        print(f"100 lesions cost {per[100] / per[1]:.1f} × one lesion (target ≤ 110)")


COHORT_RUNNER = """
import sys
from RadTyperLib.cli import main
rc = main(sys.argv[1:])
try:  # stop this process's forkserver (if any) and wait for it: its workers' CPU seconds are then counted
    import multiprocessing.forkserver as fs
    fs._forkserver._stop()
except Exception:
    pass
sys.exit(rc)
"""


def section_cohort(args: argparse.Namespace, tmp: Path) -> None:
    from benchmark_cohort import build_cohort, cpu_scaling

    n_pat = args.cohort_patients
    print(
        f"\n== cohort extract: {n_pat} synthetic patients × 4 lesions (radiomics on), 1 vs 2 workers; {load()}"
    )
    eff_before = cpu_scaling(2)
    print(
        f"machine's own parallel efficiency with 2 processes (pure-Python loop): {eff_before:.2f} (1 = ideal)"
    )
    manifest = build_cohort(tmp / "cohort", n_pat, 4)
    rates: dict[int, list[float]] = {}
    cpus: dict[int, list[float]] = {}
    tables: dict[int, bytes] = {}
    for w in (1, 2) * max(1, args.repeat):
        out = tmp / f"cohort_out_w{w}"
        shutil.rmtree(out, ignore_errors=True)
        before = load()
        wall, _ = run_timed([PY, "-c", COHORT_RUNNER, "cohort", "extract", str(manifest), "--out", str(out),
                             "--workers", str(w)])  # fmt: skip
        rates.setdefault(w, []).append(60.0 * n_pat / wall)
        cpus.setdefault(w, []).append(LAST_CPU[0])
        table = (out / "features.csv").read_bytes()
        if tables.setdefault(w, table) != table or tables.get(1, table) != table:
            raise RuntimeError("the cohort table differs between runs")
        print(f"workers={w}: {wall:6.1f} s → {rates[w][-1]:5.2f} patients/min, {LAST_CPU[0]:6.1f} CPU s of all "
              f"processes = {LAST_CPU[0] / n_pat:.2f} CPU s per patient; before: {before}; after: {load()}",
              flush=True)  # fmt: skip
    eff_after = cpu_scaling(2)
    print("features.csv byte-identical in every run (1 and 2 workers)")
    throughput = statistics.median(rates[2]) / statistics.median(rates[1])
    cpu_ratio = statistics.median(cpus[1]) / statistics.median(cpus[2])
    print(f"throughput 2 workers / 1 worker: {throughput:.2f} (target ≥ 1.6 with 2 free cores); machine's parallel "
          f"efficiency {eff_before:.2f} before, {eff_after:.2f} after")  # fmt: skip
    print(f"CPU efficiency (CPU s per patient, 1 worker / 2 workers): {cpu_ratio:.2f} (1 = no parallel overhead; "
          "independent of the load); on 2 free cores the throughput ratio would be at most "
          f"{2.0 * min(1.0, cpu_ratio):.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="alternated repetitions (medians)")
    ap.add_argument("--sections", default="lesions,reconstruct,patient,cohort")
    ap.add_argument(
        "--lesions", type=lambda s: s.split(","), help="only these real lesions (e.g. STS_002,lung1)"
    )
    ap.add_argument("--patient-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[1, 10, 100])
    ap.add_argument("--cohort-patients", type=int, default=12)
    ap.add_argument(
        "--tree",
        type=Path,
        help="time the RadTyper of another checkout (its RadTyper/ folder goes first on PYTHONPATH), "
        "e.g. to compare before and after a change",
    )
    args = ap.parse_args(argv)
    if args.tree is not None:
        ENV["PYTHONPATH"] = os.pathsep.join([str(args.tree.resolve() / "RadTyper"), ENV["PYTHONPATH"]])
        print(f"RadTyper under test: {args.tree.resolve() / 'RadTyper'}")
    machine()
    sections = {
        "lesions": section_lesions,
        "reconstruct": section_reconstruct,
        "patient": section_patient,
        "cohort": section_cohort,
    }
    with tempfile.TemporaryDirectory(prefix="radtyper-bench-") as tmp:
        for name in args.sections.split(","):
            sections[name](args, Path(tmp))
    print(f"\ndone; {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
