"""Per-lesion feature table: the 313 features of Wu et al., pyradiomics features and QC, one row per lesion.

Columns, in this order: ``lesion``, ``site``, the radiologist's ``lesion_*`` measures (volume in mL,
Feret and RECIST diameters, surface, sphericity; :mod:`RadTyperLib.measures`, never model features), the
288 ``shape_*`` and 5 ``burden_*`` features
(:mod:`RadTyperLib.shape`), the 20 ``region_*`` features (:mod:`RadTyperLib.regions`), optional
``radiomics_*`` columns, optional multi-phase IITH columns ``iith_<phase>_<roi>_<class>_<feature>``
(:mod:`RadTyperLib.iith_features`), the ``qc_*`` columns, then ``patient`` and ``modality`` (identification for
cohort tables). Names are defined once here and used by the CLI, the Slicer modules and saved models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .checks import NONFINITE_MARGIN_MM, nonfinite_near
from .errors import LesionError, RadTyperError
from .measures import LESION_MEASURE_NAMES, lesion_measures
from .patient import Lesion, Patient
from .regions import REGION_FEATURE_NAMES, RegionalResult, regional_features
from .shape import BURDEN_FEATURE_NAMES, SHAPE_FEATURE_NAMES, ShapeResult, compute_shape

#: The 313 features of Wu et al. in table order: 288 shape, 5 burden, 20 regional variation.
WU_FEATURE_NAMES: tuple[str, ...] = (*SHAPE_FEATURE_NAMES, *BURDEN_FEATURE_NAMES, *REGION_FEATURE_NAMES)
ID_COLUMNS: tuple[str, ...] = ("lesion", "site")
#: Identity of the feature pipeline that computed a row (column ``feature_pipeline``): subtype models store the
#: identity of their training features and flag predictions from features of another pipeline version.
FEATURE_PIPELINE_COLUMN = "feature_pipeline"
#: Version of the shape pipeline (SPHARM surface, spherical map, fit, descriptors). Raise it with every change
#: that alters the values of the shape or burden features; then rebuild the default subtype model
#: (``python Resources/Scripts/build_default_model.py``).
SHAPE_PIPELINE_VERSION = "2"
TRAILING_COLUMNS: tuple[str, ...] = ("patient", "modality", FEATURE_PIPELINE_COLUMN)
QC_ERROR = "qc_error"


def feature_pipeline_id() -> str:
    """The value of the ``feature_pipeline`` column: ``radtyper-shape/<SHAPE_PIPELINE_VERSION>``."""
    return f"radtyper-shape/{SHAPE_PIPELINE_VERSION}"


#: A given parenchyma mask is used for a lesion only when it covers at least this fraction of the lesion's
#: 10 mm margin ring; otherwise (the lesion lies in another organ) the automatic parenchyma is used and
#: ``qc_parenchyma_off_organ`` = 1.
MIN_RING_PARENCHYMA_FRACTION = 0.2

Progress = Callable[[float, str], None]


class Cancelled(RadTyperError):
    """The user cancelled a long computation."""


@dataclass
class LesionFeatures:
    """Everything computed for one lesion: its table row and the objects the GUI draws."""

    lesion: Lesion
    row: dict[str, float | str]
    shape: ShapeResult | None = None
    regions: RegionalResult | None = None
    error: str = ""


@dataclass
class FeatureSettings:
    """Settings of the per-lesion features (defaults = the papers')."""

    degree: int = 15  # maximal SPHARM degree
    region_mode: str = "2d"  # "2d" = paper-faithful per-slice shells; "3d" = documented variant
    radiomics: bool = True  # add the pyradiomics columns radiomics_<class>_<feature>
    radiomics_params: dict | None = None  # pyradiomics settings (None = Henry et al.'s defaults)
    keep_shells: bool = False  # keep the TC/TIM/PM5/PM10 masks (full grid: memory!) for display
    #: ROIs of the multi-phase IITH features ``iith_<phase>_<roi>_<class>_<feature>``
    #: (:mod:`RadTyperLib.iith_features`); None = all four when the patient has several phases, none for a
    #: single image; () = none. Needs ``radiomics``.
    iith_rois: tuple[str, ...] | None = None


def iith_rois_for(patient: Patient, s: FeatureSettings) -> tuple[str, ...]:
    """The IITH ROIs to compute for this patient under these settings (see ``FeatureSettings.iith_rois``)."""
    if not s.radiomics:
        return ()
    if s.iith_rois is None:
        from .iith_features import IITH_ROIS

        return tuple(IITH_ROIS) if patient.phases else ()
    return tuple(s.iith_rois)


def _mask_features(
    patient: Patient, mask: np.ndarray, les: Lesion, s: FeatureSettings
) -> tuple[dict[str, float], dict[str, float], ShapeResult, RegionalResult]:
    """Features and QC of one lesion mask (the lesion's own, or an eroded/dilated variant)."""
    shape = compute_shape(mask, patient.image, degree=s.degree, lesion=les.name)
    image = patient.image_array()
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)

    def regions_with(parenchyma: np.ndarray | None) -> RegionalResult:
        return regional_features(
            image,
            mask,
            patient.spacing,
            parenchyma,
            modality=patient.modality,
            mode=s.region_mode,
            keep_shells=keep,
            lesion=les.name,
        )

    rois = iith_rois_for(patient, s)
    keep = s.keep_shells or bool(rois)  # the IITH ROIs are made of the shells
    given = patient.parenchyma_array()
    regions = regions_with(given)
    off_organ = 0.0
    if given is not None and regions.qc["qc_ring_parenchyma_fraction"] < MIN_RING_PARENCHYMA_FRACTION:
        # The given mask is another organ's (e.g. lungs for a liver lesion): margins would hold only the
        # tumour. Use the documented automatic parenchyma around this lesion instead, and say so.
        regions = regions_with(None)
        off_organ = 1.0
    regions.qc["qc_parenchyma_off_organ"] = off_organ
    values = {**shape.features, **regions.features}
    qc = {**shape.qc, **regions.qc}
    if s.radiomics:
        from .pyradiomics_features import radiomics_features

        values.update(
            radiomics_features(
                patient.image, mask, params=s.radiomics_params, lesion=les.name, modality=patient.modality
            )
        )
    if rois:
        from .iith_features import lesion_iith_features

        iith_values, iith_qc = lesion_iith_features(patient, mask, regions.shells, rois, lesion=les.name)
        values.update(iith_values)
        qc.update(iith_qc)
    if not s.keep_shells:
        regions.shells = {}
    return values, qc, shape, regions


def lesion_features(
    patient: Patient, lesion: Lesion | str | int, settings: FeatureSettings | None = None
) -> LesionFeatures:
    """Compute the 313 features (+ radiomics) and QC of one lesion.

    Raises:
        LesionError: the lesion cannot be analysed; the message names it and says why.
    """
    s = settings or FeatureSettings()
    les = lesion if isinstance(lesion, Lesion) else patient.lesion(lesion)
    mask = patient.lesion_mask(les)
    n_bad = nonfinite_near(patient.image_array(), mask, patient.spacing)
    if n_bad:
        raise LesionError(
            les.name,
            f"the image has {n_bad} NaN or infinite voxel(s) in the lesion or within {NONFINITE_MARGIN_MM:g} mm "
            "of it; its features would be wrong (replace them in the image, or crop it)",
        )
    values, qc, shape, regions = _mask_features(patient, mask, les, s)
    qc["qc_image_nonfinite_voxels"] = float(patient.nonfinite_voxels())
    measures = lesion_measures(mask, patient.spacing)
    row: dict[str, float | str] = {
        "lesion": les.name,
        "site": les.site,
        **measures,
        **values,
        **qc,
        QC_ERROR: "",
    }
    row.update({"patient": patient.patient_id, "modality": patient.modality})
    row[FEATURE_PIPELINE_COLUMN] = feature_pipeline_id()
    return LesionFeatures(les, row, shape, regions)


def perturbation_tables(
    patient: Patient,
    settings: FeatureSettings | None = None,
    mm: float = 1.0,
    *,
    lesions: Sequence[str] | None = None,
    grid: str = "1mm",
) -> dict:
    """Feature tables of the lesions (default all) on their original, ``mm``-eroded and ``mm``-dilated masks.

    Returns ``{"original" | "eroded" | "dilated": DataFrame}`` in the table column order; the input of
    :func:`RadTyperLib.heterogeneity.robust.robust_features` (Lin's CCC ≥ 0.8 for both perturbations).
    ``grid`` "1mm" (Henry et al.: each lesion resampled to 1 mm voxels, the three masks there; "original" is
    then the resampled lesion) or "native" (the image grid); see :mod:`RadTyperLib.heterogeneity.robust`.
    """
    from .heterogeneity.robust import perturbed_feature_tables

    s = settings or FeatureSettings()

    def compute(p: Patient, mask: np.ndarray, name: str) -> dict[str, float]:
        values, _qc, _shape, _regions = _mask_features(p, mask, p.lesion(name), s)
        return values

    if lesions:
        patient = replace(patient, lesions=[patient.lesion(k) for k in lesions])
    tables = perturbed_feature_tables(patient, compute, mm, grid=grid)
    return {k: t[order_columns(t.columns)] for k, t in tables.items()}


_TEMPLATE_COLUMNS: dict[str, tuple[str, ...]] = {}


def table_columns(settings: FeatureSettings | None = None) -> tuple[str, ...]:
    """Every column of a computed lesion row under ``settings``, in table order.

    Taken from a computed row (a 6 mm sphere phantom, once per settings and process), so a failed lesion's
    row has exactly the columns of an analysed one whatever the pipeline adds.
    """
    import json

    import SimpleITK as sitk

    s = settings or FeatureSettings()
    key = json.dumps([s.degree, s.region_mode, s.radiomics, s.radiomics_params], sort_keys=True, default=str)
    if key not in _TEMPLATE_COLUMNS:
        z, y, x = np.mgrid[:32, :32, :32]
        inside = (z - 16) ** 2 + (y - 15.5) ** 2 + (x - 16.5) ** 2 <= 36
        image = sitk.GetImageFromArray(np.where(inside, 40.0, -800.0).astype(np.float32))
        labels = sitk.GetImageFromArray(inside.astype(np.uint8))
        labels.CopyInformation(image)
        probe = Patient(image, labels, [Lesion(1, "template")], modality="CT")
        try:
            row = lesion_features(probe, probe.lesions[0], replace(s, keep_shells=False, iith_rois=())).row
        except RadTyperError:  # pragma: no cover - the phantom always computes; keep the known columns
            row = dict.fromkeys([*ID_COLUMNS, *LESION_MEASURE_NAMES, *WU_FEATURE_NAMES, QC_ERROR])
            if s.radiomics:
                from .pyradiomics_features import radiomics_feature_names

                row.update(dict.fromkeys(radiomics_feature_names(s.radiomics_params)))
            row.update(dict.fromkeys(TRAILING_COLUMNS))
        _TEMPLATE_COLUMNS[key] = tuple(order_columns(row))
    return _TEMPLATE_COLUMNS[key]


def _failed_row(patient: Patient, les: Lesion, message: str, s: FeatureSettings) -> dict[str, float | str]:
    """A failed lesion's row: every column of an analysed row, NaN values, the reason in ``qc_error``."""
    row: dict[str, float | str] = dict.fromkeys(table_columns(s), float("nan"))
    rois = iith_rois_for(patient, s)
    if rois:  # the patient's own phases (the template row has none)
        from .iith_features import iith_feature_names

        row.update(dict.fromkeys(iith_feature_names(list(patient.all_phases()), rois), float("nan")))
    row.update({"lesion": les.name, "site": les.site, QC_ERROR: message})
    row.update({"patient": patient.patient_id, "modality": patient.modality})
    row[FEATURE_PIPELINE_COLUMN] = feature_pipeline_id()
    return row


def order_columns(columns: Sequence[str]) -> list[str]:
    """Table order: ids, lesion measures, shape, burden, region, radiomics, iith, other features, qc, trailing ids."""
    cols = list(dict.fromkeys(columns))
    known = set(ID_COLUMNS) | set(TRAILING_COLUMNS) | set(WU_FEATURE_NAMES) | set(LESION_MEASURE_NAMES)
    radiomics = [c for c in cols if c.startswith(("radiomics_", "iith_"))]
    qc = [c for c in cols if c.startswith("qc_")]
    rest = [c for c in cols if c not in known and c not in radiomics and c not in qc]
    present = set(cols)
    return [
        *[c for c in ID_COLUMNS if c in present],
        *[c for c in LESION_MEASURE_NAMES if c in present],
        *[c for c in WU_FEATURE_NAMES if c in present],
        *radiomics,
        *rest,
        *qc,
        *[c for c in TRAILING_COLUMNS if c in present],
    ]


def patient_features(
    patient: Patient,
    settings: FeatureSettings | None = None,
    *,
    lesions: Sequence[str] | None = None,
    keep_going: bool = False,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
):
    """Features of every lesion of a patient → (``pandas.DataFrame`` one row per lesion, results).

    With ``keep_going`` a lesion that cannot be analysed gets NaN features and its reason in ``qc_error``;
    otherwise its :class:`LesionError` is raised. ``progress(fraction, message)`` is called per lesion and
    ``should_cancel()`` is polled between lesions (raises :class:`Cancelled`).
    """
    import pandas as pd

    columns, results = patient_feature_rows(
        patient,
        settings,
        lesions=lesions,
        keep_going=keep_going,
        progress=progress,
        should_cancel=should_cancel,
    )
    table = pd.DataFrame([r.row for r in results])
    return table[columns], results


def patient_feature_rows(
    patient: Patient,
    settings: FeatureSettings | None = None,
    *,
    lesions: Sequence[str] | None = None,
    keep_going: bool = False,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[list[str], list[LesionFeatures]]:
    """:func:`patient_features` without pandas: (table columns in order, results; ``result.row`` is a row)."""
    s = settings or FeatureSettings()
    todo = [patient.lesion(k) for k in lesions] if lesions else list(patient.lesions)
    results: list[LesionFeatures] = []
    for i, les in enumerate(todo):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"cancelled after {i} of {len(todo)} lesions")
        if progress is not None:
            progress(i / len(todo), f"lesion '{les.name}' ({i + 1}/{len(todo)})")
        try:
            results.append(lesion_features(patient, les, s))
        except LesionError as exc:
            if not keep_going:
                raise
            results.append(LesionFeatures(les, _failed_row(patient, les, exc.problem, s), error=exc.problem))
    if progress is not None:
        progress(1.0, "done")
    columns = order_columns([k for r in results for k in r.row])
    return columns, results
