"""Evaluation of automatic against manual lesion contours (``radtyper seg eval``).

Metrics (lengths in mm, volumes in cm³ = 1000 mm³):

* **Dice** of two binary masks, 2|A∩B| / (|A| + |B|); 1 when both are empty.
* **Hausdorff 95** (mm): the 95th percentile of the pooled surface distances in both directions (each
  surface voxel of A to the nearest surface voxel of B, and vice versa — MedPy's ``hd95``). Surface voxels:
  mask voxels with a face neighbour outside the mask (or on the image border). Distances use the voxel
  spacing (anisotropy exact). NaN when either mask is empty.
* **Lesion-wise detection**: every manual lesion (one label) is *detected* when at least
  ``min_overlap_voxels`` of its voxels are automatic lesion voxels; its per-lesion Dice / HD95 compare it
  with the union of the automatic lesions that overlap it. An automatic lesion overlapping no manual lesion is
  a **false positive**. Sensitivity = detected / manual lesions (pooled over the cohort, and per patient).
* **Dice by lesion size**: per-lesion Dice grouped by the manual lesion volume: < 1 cm³, 1–10 cm³, > 10 cm³
  (Wu et al. report Dice > 0.9 for lesions > 10 cm³).
* **Subtype agreement** (with a subtype model bundle, :mod:`RadTyperLib.subtypes`): the features of each
  patient are computed on the manual and on the automatic lesions (the largest lesion only when the model
  aggregates by the largest lesion), the subtype is predicted from both, and the agreement (fraction of
  patients with the same subtype) and the confusion matrix manual × automatic (like Wu et al. Fig. 6f) are
  reported. A patient without automatic lesion is counted under the automatic subtype ``none``.

:func:`evaluate_cohort` writes into its output folder ``cases.csv`` (one row per patient), ``lesions.csv``
(one row per manual lesion), ``detections.csv`` (one row per automatic lesion), ``summary.json`` and, with a
subtype model, ``subtypes.csv`` and ``subtype_confusion.csv``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ...errors import InputError, LesionError
from ...features import Cancelled, Progress
from ...io import atomic_path, staged_folder, to_jsonable, write_csv

#: Lesion size classes (manual volume, cm³): (name, lower bound inclusive, upper bound exclusive).
SIZE_CLASSES: tuple[tuple[str, float, float], ...] = (
    ("<1 cm3", 0.0, 1.0),
    ("1-10 cm3", 1.0, 10.0),
    (">10 cm3", 10.0, float("inf")),
)
NO_LESION_SUBTYPE = "none"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean masks of the same shape (1.0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise InputError(f"masks of different shapes {a.shape} and {b.shape}")
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.count_nonzero(a & b)) / s


def _surface(m: np.ndarray) -> np.ndarray:
    return m & ~ndimage.binary_erosion(
        m, structure=ndimage.generate_binary_structure(m.ndim, 1), border_value=0
    )


def surface_distances_mm(a: np.ndarray, b: np.ndarray, spacing_xyz: Sequence[float]) -> np.ndarray:
    """Distance (mm) from every surface voxel of ``a`` to the nearest surface voxel of ``b`` ([z, y, x] masks)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if not a.any() or not b.any():
        return np.empty(0)
    both = a | b
    lo = np.maximum(np.argwhere(both).min(axis=0) - 1, 0)
    hi = np.minimum(np.argwhere(both).max(axis=0) + 2, a.shape)
    sl = tuple(slice(int(l), int(h)) for l, h in zip(lo, hi, strict=True))
    # the crop keeps one empty voxel around both masks except at the image border, where the border
    # voxels are surface voxels either way: surfaces of the crop = surfaces of the full masks
    sa, sb = _surface(a[sl]), _surface(b[sl])
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=tuple(float(s) for s in spacing_xyz)[::-1])
    return dist_to_b[sa]


def hausdorff95_mm(a: np.ndarray, b: np.ndarray, spacing_xyz: Sequence[float]) -> float:
    """95th percentile (mm) of the pooled symmetric surface distances (MedPy ``hd95``); NaN if a mask is empty."""
    d_ab = surface_distances_mm(a, b, spacing_xyz)
    d_ba = surface_distances_mm(b, a, spacing_xyz)
    if not d_ab.size or not d_ba.size:
        return float("nan")
    return float(np.percentile(np.concatenate([d_ab, d_ba]), 95))


def size_class(volume_cm3: float) -> str:
    """The :data:`SIZE_CLASSES` name of a lesion volume (cm³)."""
    for name, lo, hi in SIZE_CLASSES:
        if lo <= volume_cm3 < hi:
            return name
    return SIZE_CLASSES[-1][0]


@dataclass
class CaseEvaluation:
    """Evaluation of one patient: a case row, one row per manual lesion, one per automatic lesion."""

    case: dict[str, Any]
    lesions: list[dict[str, Any]]
    detections: list[dict[str, Any]]


def evaluate_case(
    truth: np.ndarray,
    pred: np.ndarray,
    spacing_xyz: Sequence[float],
    *,
    truth_names: dict[int, str] | None = None,
    pred_names: dict[int, str] | None = None,
    patient: str = "",
    min_overlap_voxels: int = 1,
) -> CaseEvaluation:
    """Compare manual (``truth``) and automatic (``pred``) integer label maps ``[z, y, x]`` of one patient.

    Each non-zero value is one lesion; names default to ``lesion_<value>``. See the module docstring.
    """
    truth, pred = np.asarray(truth), np.asarray(pred)
    if truth.shape != pred.shape:
        raise InputError(
            f"patient '{patient}': manual {truth.shape} and automatic {pred.shape} label maps differ"
        )
    voxel_cm3 = float(np.prod(spacing_xyz)) / 1000.0
    t_all, p_all = truth > 0, pred > 0
    t_vals = [int(v) for v in np.unique(truth) if v]
    p_vals = [int(v) for v in np.unique(pred) if v]
    tn = truth_names or {}
    pn = pred_names or {}
    lesion_rows: list[dict[str, Any]] = []
    matched_pred: set[int] = set()
    for v in t_vals:
        m = truth == v
        overlap_vals, counts = np.unique(pred[m], return_counts=True)
        hits = [int(o) for o, c in zip(overlap_vals, counts, strict=True) if o]
        n_overlap = int(sum(c for o, c in zip(overlap_vals, counts, strict=True) if o))
        detected = n_overlap >= min_overlap_voxels
        matched = np.isin(pred, hits) if hits else np.zeros_like(m)
        matched_pred.update(hits)
        vol = float(m.sum()) * voxel_cm3
        lesion_rows.append(
            {
                "patient": patient,
                "lesion": tn.get(v, f"lesion_{v}"),
                "label": v,
                "volume_cm3": vol,
                "size_class": size_class(vol),
                "detected": bool(detected),
                "dice": dice(m, matched),
                "hd95_mm": hausdorff95_mm(m, matched, spacing_xyz) if hits else float("nan"),
                "matched": ";".join(pn.get(h, f"lesion_{h}") for h in hits),
            }
        )
    det_rows = []
    for v in p_vals:
        m = pred == v
        det_rows.append(
            {
                "patient": patient,
                "lesion": pn.get(v, f"lesion_{v}"),
                "label": v,
                "volume_cm3": float(m.sum()) * voxel_cm3,
                "true_positive": v in matched_pred,
            }
        )
    n_det = sum(r["detected"] for r in lesion_rows)
    n_fp = sum(not r["true_positive"] for r in det_rows)
    case = {
        "patient": patient,
        "dice": dice(t_all, p_all),
        "hd95_mm": hausdorff95_mm(t_all, p_all, spacing_xyz),
        "n_manual": len(t_vals),
        "n_detected": n_det,
        "sensitivity": n_det / len(t_vals) if t_vals else float("nan"),
        "n_auto": len(p_vals),
        "n_false_positive": n_fp,
        "manual_volume_cm3": float(t_all.sum()) * voxel_cm3,
        "auto_volume_cm3": float(p_all.sum()) * voxel_cm3,
    }
    return CaseEvaluation(case, lesion_rows, det_rows)


def _nanmean(values: Sequence[float]) -> float | None:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else None


def summarize(cases: Sequence[dict[str, Any]], lesions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Cohort summary: mean/median Dice, mean HD95, pooled sensitivity, false positives per patient, Dice by size."""
    dices = [c["dice"] for c in cases]
    n_manual = sum(c["n_manual"] for c in cases)
    by_size = {}
    for name, _lo, _hi in SIZE_CLASSES:
        rows = [r for r in lesions if r["size_class"] == name]
        by_size[name] = {
            "n_lesions": len(rows),
            "mean_dice": _nanmean([r["dice"] for r in rows]),
            "sensitivity": (sum(r["detected"] for r in rows) / len(rows)) if rows else None,
        }
    return {
        "n_patients": len(cases),
        "n_manual_lesions": n_manual,
        "n_auto_lesions": sum(c["n_auto"] for c in cases),
        "mean_dice": _nanmean(dices),
        "median_dice": float(np.median(dices)) if dices else None,
        "mean_hd95_mm": _nanmean([c["hd95_mm"] for c in cases]),
        "lesion_sensitivity": (sum(c["n_detected"] for c in cases) / n_manual) if n_manual else None,
        "false_positives_per_patient": (sum(c["n_false_positive"] for c in cases) / len(cases))
        if cases
        else None,
        "mean_lesion_dice": _nanmean([r["dice"] for r in lesions]),
        "dice_by_size": by_size,
    }


# --- subtype agreement ------------------------------------------------------------------------------------
def _largest_lesion(patient) -> str:
    counts = patient.voxel_counts()
    return max(patient.lesions, key=lambda les: (counts.get(les.label, 0), -les.label)).name


def subtype_features(patient, model) -> Any:
    """Feature table (pandas) of the lesions of ``patient`` the subtype ``model`` needs (largest, or all)."""
    from ...features import FeatureSettings, patient_features

    radiomics = any(str(f).startswith("radiomics_") for f in model.feature_names)
    settings = FeatureSettings(radiomics=radiomics)
    lesions = [_largest_lesion(patient)] if model.aggregation == "largest" else None
    table, _ = patient_features(patient, settings, lesions=lesions, keep_going=True)
    return table


def subtype_agreement(manual_subtypes: dict[str, str], auto_subtypes: dict[str, str]) -> dict[str, Any]:
    """Agreement fraction and confusion matrix (manual rows × automatic columns) of per-patient subtypes."""
    patients = [p for p in manual_subtypes if p in auto_subtypes]
    rows = sorted({manual_subtypes[p] for p in patients})
    cols = sorted({auto_subtypes[p] for p in patients} | set(rows))
    matrix = {r: dict.fromkeys(cols, 0) for r in rows}
    for p in patients:
        matrix[manual_subtypes[p]][auto_subtypes[p]] += 1
    same = sum(manual_subtypes[p] == auto_subtypes[p] for p in patients)
    return {
        "n_patients": len(patients),
        "agreement": same / len(patients) if patients else None,
        "confusion": matrix,
    }


# --- cohort -----------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """Outcome of :func:`evaluate_cohort` (tables as pandas DataFrames)."""

    cases: Any
    lesions: Any
    detections: Any
    summary: dict[str, Any]
    subtypes: Any | None = None
    paths: dict[str, Path] = field(default_factory=dict)


def evaluate_cohort(
    model: str | os.PathLike[str] | Any,
    manifest: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> EvalResult:
    """Segment every manifest case with the U-Net ``model`` and compare with the manual lesions.

    All or nothing: the files are made in a staging folder beside ``out_dir`` and moved into it only when the
    whole evaluation succeeded (a failure or cancellation leaves ``out_dir`` as it was). Options and errors: see
    :func:`_evaluate_into`.
    """
    if out_dir is None:
        return _evaluate_into(model, manifest, None, **options)
    target = Path(out_dir)
    with staged_folder(target) as stage:
        result = _evaluate_into(model, manifest, stage, **options)
    result.paths = {k: target / p.relative_to(stage) for k, p in result.paths.items()}
    return result


def _evaluate_into(
    model: str | os.PathLike[str] | Any,
    manifest: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    subtype_model: str | os.PathLike[str] | Any | None = None,
    threshold: float | None = None,
    min_size_mm3: float | None = None,
    min_overlap_voxels: int = 1,
    device: str = "auto",
    save_segmentations: bool = False,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> EvalResult:
    """Segment every manifest case with the U-Net ``model`` and compare with the manual lesions.

    Args:
        model: U-Net model folder or :class:`~.bundle.UNetBundle`.
        manifest: cohort manifest (patient, image, lesions[, modality, parenchyma, …]).
        out_dir: output folder (see the module docstring); None = write nothing.
        subtype_model: optional subtype model bundle (``radtyper discover``) for the subtype agreement.
        threshold, min_size_mm3: inference settings (default: the model's).
        save_segmentations: also write ``segmentations/<patient>.seg.nrrd`` (automatic lesions).
        progress, should_cancel: per-case progress and cancellation.

    Raises:
        InputError: bad manifest, unreadable images, model for another modality.
    """
    import pandas as pd

    from ...cohort import patient_file_stem, read_manifest
    from ...io import load_patient, write_seg_nrrd
    from ...patient import Patient
    from .bundle import load_unet_bundle
    from .infer import segment_lesions

    t0 = time.perf_counter()
    bundle = load_unet_bundle(model)
    specs = read_manifest(manifest)
    sub_model = None
    if subtype_model is not None:
        from ...subtypes import load_bundle

        sub_model = load_bundle(subtype_model)
    out = Path(out_dir) if out_dir is not None else None
    case_rows, lesion_rows, det_rows = [], [], []
    manual_st: dict[str, str] = {}
    auto_st: dict[str, str] = {}
    subtype_rows: list[dict[str, Any]] = []
    n = len(specs)
    for i, spec in enumerate(specs):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"evaluation cancelled after {i} of {n} patients")
        if progress is not None:
            progress(i / n, f"patient {spec.patient} ({i + 1}/{n})")
        truth = load_patient(
            spec.image,
            spec.lesions,
            parenchyma=spec.parenchyma,
            modality=spec.modality,
            patient_id=spec.patient,
        )

        def sub_progress(f: float, msg: str, i: int = i, pid: str = spec.patient) -> None:
            if progress is not None:
                progress((i + 0.9 * f) / n, f"patient {pid}: {msg}")

        res = segment_lesions(
            truth.image,
            bundle,
            modality=spec.modality,
            threshold=threshold,
            min_size_mm3=min_size_mm3,
            device=device,
            progress=sub_progress,
            should_cancel=should_cancel,
            source=f"patient '{spec.patient}' ({spec.image})",
        )
        t_lab = np.asarray(truth.label_array())
        ev = evaluate_case(
            t_lab,
            res.labels,
            truth.image.GetSpacing(),
            truth_names={les.label: les.name for les in truth.lesions},
            pred_names=dict(enumerate(res.names, start=1)),
            patient=spec.patient,
            min_overlap_voxels=min_overlap_voxels,
        )
        ev.case["threshold"] = res.threshold
        ev.case["min_size_mm3"] = res.min_size_mm3
        ev.case["seconds"] = round(res.elapsed_s, 2)
        case_rows.append(ev.case)
        lesion_rows.extend(ev.lesions)
        det_rows.extend(ev.detections)
        if out is not None and save_segmentations and not res.empty:
            write_seg_nrrd(
                out / "segmentations" / f"{patient_file_stem(spec.patient)}.seg.nrrd",
                res.label_image(truth.image),
                res.lesions(),
            )
        if sub_model is not None:
            row: dict[str, Any] = {"patient": spec.patient}
            try:
                manual_table = subtype_features(truth, sub_model)
                row["manual_subtype"] = str(sub_model.predict(manual_table)["subtype"].iloc[0])
            except (LesionError, InputError) as exc:
                row["manual_subtype"] = None
                row["note"] = f"manual features failed: {exc}"
            if res.empty:
                row["auto_subtype"] = NO_LESION_SUBTYPE
            else:
                auto_patient = Patient(
                    image=truth.image,
                    labels=res.label_image(truth.image),
                    lesions=res.lesions(),
                    parenchyma=truth.parenchyma,
                    patient_id=spec.patient,
                    modality=truth.modality,
                )
                try:
                    auto_table = subtype_features(auto_patient, sub_model)
                    row["auto_subtype"] = str(sub_model.predict(auto_table)["subtype"].iloc[0])
                except (LesionError, InputError) as exc:
                    row["auto_subtype"] = None
                    row["note"] = f"automatic features failed: {exc}"
            subtype_rows.append(row)
            if row.get("manual_subtype") is not None and row.get("auto_subtype") is not None:
                manual_st[spec.patient] = row["manual_subtype"]
                auto_st[spec.patient] = row["auto_subtype"]

    summary = summarize(case_rows, lesion_rows)
    summary["model"] = str(bundle.directory or bundle.name)
    summary["modality"] = bundle.modality
    summary["threshold"] = threshold if threshold is not None else bundle.threshold
    summary["min_size_mm3"] = min_size_mm3 if min_size_mm3 is not None else bundle.min_size_mm3
    summary["detection_rule"] = (
        f"a manual lesion is detected when ≥ {min_overlap_voxels} of its voxels are automatic"
    )
    if sub_model is not None:
        summary["subtypes"] = {
            "model": str(getattr(sub_model, "directory", "") or ""),
            **subtype_agreement(manual_st, auto_st),
        }
    else:
        summary["subtypes"] = None
        summary["subtypes_note"] = "skipped: no subtype model given (--subtype-model)"
    summary["elapsed_s"] = round(time.perf_counter() - t0, 2)

    cases_df = pd.DataFrame(case_rows)
    lesions_df = pd.DataFrame(
        lesion_rows,
        columns=[
            "patient",
            "lesion",
            "label",
            "volume_cm3",
            "size_class",
            "detected",
            "dice",
            "hd95_mm",
            "matched",
        ],
    )
    det_df = pd.DataFrame(det_rows, columns=["patient", "lesion", "label", "volume_cm3", "true_positive"])
    sub_df = pd.DataFrame(subtype_rows) if sub_model is not None else None
    paths: dict[str, Path] = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        paths["cases"] = write_csv(cases_df, out / "cases.csv", float_format="%.6g")
        paths["lesions"] = write_csv(lesions_df, out / "lesions.csv", float_format="%.6g")
        paths["detections"] = write_csv(det_df, out / "detections.csv", float_format="%.6g")
        if sub_df is not None:
            paths["subtypes"] = write_csv(sub_df, out / "subtypes.csv")
            conf = summary["subtypes"]["confusion"]
            conf_df = pd.DataFrame(conf).T.rename_axis("manual \\ automatic").reset_index()
            paths["subtype_confusion"] = write_csv(conf_df, out / "subtype_confusion.csv")
        with atomic_path(out / "summary.json") as tmp:
            tmp.write_text(json.dumps(to_jsonable(summary), indent=1, allow_nan=False), encoding="utf-8")
        paths["summary"] = out / "summary.json"
    if progress is not None:
        progress(1.0, "done")
    return EvalResult(cases_df, lesions_df, det_df, summary, sub_df, paths)
