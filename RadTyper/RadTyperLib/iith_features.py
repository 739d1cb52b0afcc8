"""Multi-phase, multi-region heterogeneity features for Su et al.'s IITH: ``iith_<phase>_<roi>_<class>_<feature>``.

Su et al. (Sci Adv 2023) extracted their 42 heterogeneity-related first-order and texture features "in the
precontrast and postcontrast phases from four ROIs" (1,968 candidates before the MAD > 1 filter). The paper's
main text names only one ROI ("the tumor region"); the other three are defined in Supplementary Methods that
are not available. RadTyper therefore uses its own four regions, those of Wu et al.'s regional-variation
features (:mod:`RadTyperLib.regions`, same ``--region-mode``), :data:`IITH_ROIS`:

* ``whole`` — the whole lesion (tumour mask);
* ``core`` — the tumour core TC (inside distance > half its maximum);
* ``margin`` — the invasive margin TIM (tumour minus core);
* ``ring`` — the 10 mm peritumoural ring: PM10 minus the tumour, inside the parenchyma (given or automatic).

For every phase (image) of the patient and every ROI, the heterogeneity-related features of
:data:`RadTyperLib.iith.IITH_FEATURES` (9 first-order + 35 texture) are computed with pyradiomics and the
default parameters of :mod:`RadTyperLib.pyradiomics_features` for that phase's modality (1 mm B-spline
resampling; CT bin width 10 HU; MR/PET: the image z-scored × 100, bin width 5 — each phase normalised on its
own, so the contrast uptake between phases does not shift the bins). That is 44 × 4 = 176 candidates per
phase (352 for a pre- and one post-contrast phase; the paper's 1,968 = 42 features × 4 ROIs × its phases and
possibly filtered images — 1,968 is not a multiple of 42 × 4, so the paper's exact design is not
reconstructible).

A ROI that pyradiomics cannot use (empty or a single voxel, e.g. no invasive margin on a 2-voxel-thick lesion)
gives NaN for its columns and counts in ``qc_iith_failed_rois``; ``radtyper iith`` then leaves those columns
out (non-finite values), as any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, LesionError

if TYPE_CHECKING:
    from .patient import Patient

#: The four ROIs (names used in the column names) and what they are.
IITH_ROIS: dict[str, str] = {
    "whole": "whole lesion",
    "core": "tumour core (TC)",
    "margin": "invasive margin (TIM = tumour minus core)",
    "ring": "10 mm peritumoural ring (PM10 minus the tumour, in the parenchyma)",
}
COLUMN_PREFIX = "iith_"
QC_FAILED_ROIS = "qc_iith_failed_rois"


def parse_rois(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"whole,core"`` or a list → a tuple of known ROI names in :data:`IITH_ROIS` order ("all" = every ROI)."""
    if text is None:
        return ()
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if items == ["all"]:
        return tuple(IITH_ROIS)
    unknown = [t for t in items if t not in IITH_ROIS]
    if unknown or not items:
        raise InputError(
            f"IITH ROI(s) {', '.join(unknown) or '(none)'}: use 'all' or a comma-separated list of "
            f"{', '.join(IITH_ROIS)}"
        )
    return tuple(r for r in IITH_ROIS if r in items)


def iith_params(modality: str) -> dict:
    """pyradiomics parameters: the defaults for ``modality`` restricted to the heterogeneity features."""
    from .iith import IITH_FEATURES
    from .pyradiomics_features import default_params

    params = default_params(modality)
    classes: dict[str, list[str]] = {}
    for f in IITH_FEATURES:
        classes.setdefault(f.feature_class, []).append(f.feature)
    params["featureClass"] = classes
    params["imageType"] = {"Original": {}}
    return params


def iith_column(phase: str, roi: str, feature_class: str, feature: str) -> str:
    """``iith_<phase>_<roi>_<class>_<feature>``, e.g. ``iith_post1_core_glcm_Contrast``."""
    return f"{COLUMN_PREFIX}{phase}_{roi}_{feature_class}_{feature}"


def iith_feature_names(phases: Sequence[str], rois: Sequence[str]) -> list[str]:
    """Every ``iith_*`` column for these phases and ROIs, in phase, ROI, feature order."""
    from .iith import IITH_FEATURES

    return [
        iith_column(p, r, f.feature_class, f.feature) for p in phases for r in rois for f in IITH_FEATURES
    ]


def roi_masks(
    tumour: np.ndarray, shells: Mapping[str, np.ndarray], rois: Sequence[str]
) -> dict[str, np.ndarray]:
    """The ROI masks of one lesion from its tumour mask and its TC / TIM / PM10 shells (full grid)."""
    tumour = np.asarray(tumour, dtype=bool)
    out: dict[str, np.ndarray] = {}
    for r in rois:
        if r == "whole":
            out[r] = tumour
        elif r == "core":
            out[r] = np.asarray(shells["TC"], dtype=bool)
        elif r == "margin":
            out[r] = np.asarray(shells["TIM"], dtype=bool)
        elif r == "ring":
            out[r] = np.asarray(shells["PM10"], dtype=bool) & ~tumour
        else:
            raise InputError(f"unknown IITH ROI '{r}'")
    return out


def lesion_iith_features(
    patient: Patient,
    tumour: np.ndarray,
    shells: Mapping[str, np.ndarray],
    rois: Sequence[str],
    *,
    lesion: str = "lesion",
) -> tuple[dict[str, float], dict[str, float]]:
    """(``iith_*`` features, QC) of one lesion over every phase of ``patient`` and the given ROIs.

    Raises:
        RadTyperError: pyradiomics is not installed. Per-ROI failures give NaN (see the module docstring).
    """
    from .iith import IITH_FEATURES
    from .pyradiomics_features import radiomics_features

    masks = roi_masks(tumour, shells, rois)
    values: dict[str, float] = {}
    failed = 0
    for phase, image in patient.all_phases().items():
        modality = patient.phase_modality(phase)
        params = iith_params(modality)
        for roi, mask in masks.items():
            try:
                res: dict[str, Any] = radiomics_features(
                    image, mask, params=params, lesion=f"{lesion} ({phase}, {roi})", modality=modality
                )
            except LesionError:
                res = {}
                failed += 1
            for f in IITH_FEATURES:
                values[iith_column(phase, roi, f.feature_class, f.feature)] = float(
                    res.get(f.column, float("nan"))
                )
    return values, {QC_FAILED_ROIS: float(failed)}


__all__ = [
    "COLUMN_PREFIX",
    "IITH_ROIS",
    "QC_FAILED_ROIS",
    "iith_column",
    "iith_feature_names",
    "iith_params",
    "lesion_iith_features",
    "parse_rois",
    "roi_masks",
]
