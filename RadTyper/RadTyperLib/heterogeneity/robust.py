"""Segmentation-robust, non-redundant features (Henry et al. 2022): 1-mm erosion/dilation, Lin's CCC, clustering.

Recipe: compute every feature on the original, the eroded and the dilated mask of each lesion (ball of
radius 1 mm), keep a feature when Lin's concordance correlation coefficient across lesions is ≥ 0.8 between
the original and *both* perturbed versions, then cluster the robust features on ``1 − |Pearson r|`` and keep
one representative per cluster.

Perturbation grid (``grid``, :data:`PERTURB_GRIDS`):

* ``"1mm"`` (default, Henry et al.'s): each lesion is cropped with a :data:`CROP_MARGIN_MM` margin, the image
  resampled to 1 × 1 × 1 mm (B-spline), the lesion mask resampled by linear interpolation of its indicator
  thresholded at 0.5 (the parenchyma mask by nearest neighbour), then eroded / dilated by 1 mm = one
  6-connected voxel layer. The *original* features used for the CCC are computed on that same 1 mm crop
  (``"original"`` table; the CLI writes it as ``<out>.reference.csv``), so the CCC compares like with like.
* ``"native"``: erosion / dilation on the image's own grid with the radius raised to the finest voxel
  spacing (:func:`perturb_mask`); on 5 mm-slice CT nothing changes along z. Kept for comparison.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InputError, LesionError
from .indexes import ID_COLUMNS, HeterogeneityWarning, check_features

if TYPE_CHECKING:
    from ..patient import Patient

#: CCC threshold of the paper (both erosion and dilation).
CCC_THRESHOLD = 0.8
#: Default redundancy cut: features whose clusters correlate with |r| ≥ 0.9 (average linkage) are merged.
CORRELATION_THRESHOLD = 0.9
#: Henry's 8 representatives (pyradiomics names), preferred when they are in a cluster.
HENRY_FEATURES: tuple[str, ...] = (
    "90Percentile",
    "LargeDependenceHighGrayLevelEmphasis",
    "LargeDependenceEmphasis",
    "DependenceVariance",
    "Imc1",
    "Sphericity",
    "Maximum2DDiameterSlice",
    "VoxelVolume",
)
PERTURBATIONS: tuple[str, ...] = ("original", "eroded", "dilated")
#: Perturbation grids: Henry's 1 mm isotropic resampling (default) or the image's native grid.
PERTURB_GRIDS: tuple[str, ...] = ("1mm", "native")
#: Margin (mm) of the crop around a lesion resampled to 1 mm: 10 mm shells + 1 mm dilation + room for the
#: automatic parenchyma and pyradiomics' padding.
CROP_MARGIN_MM = 20.0
_TOL_MM = 1e-6


# --- Lin's CCC ------------------------------------------------------------------------------------------
def lins_ccc(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Lin's concordance correlation coefficient with population moments.

    ``ρc = 2 s_xy / (s_x² + s_y² + (x̄ − ȳ)²)``. Pairs with a NaN/inf on either side are dropped; fewer
    than 3 remaining pairs → NaN. Both series constant and equal → 1.0 (perfect agreement); both constant
    but different → 0.0.
    """
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise InputError(f"lins_ccc: x and y differ in length ({a.size} vs {b.size})")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 3:
        return float("nan")
    ma, mb = a.mean(), b.mean()
    sxy = np.mean((a - ma) * (b - mb))
    den = a.var() + b.var() + (ma - mb) ** 2
    if den == 0:
        return 1.0
    return float(2.0 * sxy / den)


# --- mask perturbation ------------------------------------------------------------------------------------
def perturb_mask(
    mask_zyx: np.ndarray, spacing_xyz: Sequence[float], mm: float = 1.0, op: str = "erode"
) -> np.ndarray:
    """Erode or dilate a ``[z, y, x]`` mask by a ball of radius ``max(mm, finest spacing)`` (physical units).

    Exact Euclidean morphology via distance transforms on the anisotropic grid: a voxel stays after erosion
    when every voxel centre within the radius is in the mask (distance to the background > radius); a voxel
    joins after dilation when a mask voxel lies within the radius. Henry et al. perturbed by 1 mm after
    resampling to 1 mm voxels, i.e. by one 6-connected voxel layer: on a 1 mm grid this is exactly that;
    on a coarser grid a ball of 1 mm would hold no neighbour and change nothing, so the radius is raised to
    the finest voxel spacing (one layer in that direction). Outside the array counts as background
    (a lesion cut by the field of view is eroded from that side too). An erosion that removes every voxel
    returns an *empty* mask: the caller flags the lesion (see :func:`perturbed_feature_tables`).
    """
    mask = np.asarray(mask_zyx).astype(bool)
    if mask.ndim != 3:
        raise InputError(f"perturb_mask needs a 3-D [z, y, x] mask, got {mask.ndim}-D")
    spacing = [float(s) for s in spacing_xyz]
    if len(spacing) != 3 or not all(s > 0 and math.isfinite(s) for s in spacing):
        raise InputError(f"spacing must be 3 positive numbers (x, y, z) in mm, got {spacing_xyz!r}")
    if op not in ("erode", "dilate"):
        raise InputError(f"op must be 'erode' or 'dilate', got {op!r}")
    if not (math.isfinite(mm) and mm >= 0):
        raise InputError(f"perturbation radius must be ≥ 0 mm, got {mm!r}")
    if mm == 0 or not mask.any():
        return mask.copy()
    from scipy import ndimage as ndi

    sampling = spacing[::-1]
    mm = max(mm, min(spacing))  # see the docstring: a perturbation must move the surface by ≥ 1 voxel
    margin = np.array([math.ceil(mm / s) + 1 for s in sampling])
    idx = np.argwhere(mask)
    lo = idx.min(axis=0) - margin
    hi = idx.max(axis=0) + 1 + margin
    sub = np.zeros(tuple(hi - lo), dtype=bool)
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(hi, mask.shape)
    dst = tuple(slice(a - b, c - b) for a, b, c in zip(src_lo, lo, src_hi, strict=True))
    src = tuple(slice(a, c) for a, c in zip(src_lo, src_hi, strict=True))
    sub[dst] = mask[src]
    if op == "erode":
        res = ndi.distance_transform_edt(sub, sampling=sampling) > mm + _TOL_MM
    else:
        res = ndi.distance_transform_edt(~sub, sampling=sampling) <= mm + _TOL_MM
    out = np.zeros_like(mask)
    out[src] = res[dst]
    return out


def isotropic_lesion_patient(
    patient: Patient, lesion: Any, spacing_mm: float = 1.0, margin_mm: float = CROP_MARGIN_MM
) -> Patient:
    """One lesion of ``patient`` on an isotropic ``spacing_mm`` grid: a crop (lesion box + ``margin_mm``),
    image (and every further phase) resampled with B-spline (float32), lesion indicator with linear
    interpolation thresholded at 0.5 (label 1), parenchyma by nearest neighbour. Same direction; the crop's
    outer voxel edges are kept.

    Raises:
        LesionError: the resampled lesion mask is empty (lesion smaller than about one 1 mm voxel).
    """
    import SimpleITK as sitk

    from ..patient import Lesion
    from ..patient import Patient as _Patient

    les = lesion if not isinstance(lesion, (str, int)) else patient.lesion(lesion)
    mask = np.asarray(patient.lesion_mask(les), dtype=bool)
    idx = np.argwhere(mask)
    sp_zyx = np.array(patient.spacing[::-1], dtype=float)
    pad = np.ceil(margin_mm / sp_zyx).astype(int)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + 1 + pad, mask.shape)
    crop = (slice(int(lo[2]), int(hi[2])), slice(int(lo[1]), int(hi[1])), slice(int(lo[0]), int(hi[0])))

    def cut(img: Any) -> Any:
        return img[crop[0], crop[1], crop[2]]  # SimpleITK slicing (x, y, z) keeps the geometry

    img_c = cut(patient.image)
    ind = sitk.GetImageFromArray(mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(np.float32))
    ind.CopyInformation(img_c)
    sp = np.array(img_c.GetSpacing(), dtype=float)
    size = np.array(img_c.GetSize(), dtype=float)
    d = np.array(img_c.GetDirection(), dtype=float).reshape(3, 3)
    new_sp = np.full(3, float(spacing_mm))
    new_size = [max(1, math.ceil(n * s / spacing_mm - 1e-6)) for n, s in zip(size, sp, strict=True)]
    edge = np.array(img_c.GetOrigin(), dtype=float) - d @ (0.5 * sp)
    new_origin = edge + d @ (0.5 * new_sp)

    def resample(img: Any, interp: int, default: float, pixel: int) -> Any:
        return sitk.Resample(
            img,
            [int(v) for v in new_size],
            sitk.Transform(),
            interp,
            [float(v) for v in new_origin],
            [float(v) for v in new_sp],
            [float(v) for v in d.ravel()],
            float(default),
            pixel,
        )

    arr = sitk.GetArrayViewFromImage(img_c)
    image = resample(
        sitk.Cast(img_c, sitk.sitkFloat32), sitk.sitkBSpline, float(np.min(arr)), sitk.sitkFloat32
    )
    m = sitk.GetArrayFromImage(resample(ind, sitk.sitkLinear, 0.0, sitk.sitkFloat32)) > 0.5
    if not m.any():
        raise LesionError(les.name, f"empty mask after resampling to {spacing_mm:g} mm voxels")
    labels = sitk.GetImageFromArray(m.astype(np.uint8))
    labels.CopyInformation(image)
    paren = None
    if patient.parenchyma is not None:
        paren = resample(cut(patient.parenchyma), sitk.sitkNearestNeighbor, 0.0, sitk.sitkUInt8)
    phases = {}
    for name, img in patient.phases.items():  # further co-registered phases: same crop and interpolation
        ph = cut(img)
        low = float(np.min(sitk.GetArrayViewFromImage(ph)))
        phases[name] = resample(sitk.Cast(ph, sitk.sitkFloat32), sitk.sitkBSpline, low, sitk.sitkFloat32)
    return _Patient(
        image=image,
        labels=labels,
        lesions=[Lesion(1, les.name, les.site)],
        parenchyma=paren,
        patient_id=patient.patient_id,
        modality=patient.modality,
        sources={**patient.sources, "image": f"{patient.sources.get('image', 'image')} (1 mm crop)"},
        phases=phases,
        image_phase=patient.image_phase,
        phase_modalities=dict(patient.phase_modalities),
    )


def perturbed_feature_tables(
    patient: Patient,
    compute_fn: Callable[[Patient, np.ndarray, str], dict[str, float]],
    mm: float = 1.0,
    *,
    grid: str = "1mm",
) -> dict[str, pd.DataFrame]:
    """Per-lesion features on the original, eroded and dilated masks → ``{"original"|"eroded"|"dilated": table}``.

    ``compute_fn(patient, mask_zyx, lesion_name)`` returns the feature dict of one lesion for one mask.
    ``grid`` "1mm" (default: every lesion resampled to 1 mm, :func:`isotropic_lesion_patient`, and the three
    masks there) or "native" (the image grid; see the module docstring). Each table has the columns
    ``lesion``, ``site``, the features, ``qc_error``, ``patient``, ``modality``, ``qc_perturb_grid``.
    An empty perturbed mask (erosion of a thin lesion) or a :class:`LesionError` from ``compute_fn`` gives a
    row of NaN with the reason in ``qc_error`` (Lin's CCC then skips that lesion); other errors propagate.
    Note: the dilated mask of a lesion may reach into a touching lesion; each lesion is processed alone.
    """
    if grid not in PERTURB_GRIDS:
        raise InputError(f"perturbation grid must be one of {', '.join(PERTURB_GRIDS)}, got {grid!r}")
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in PERTURBATIONS}
    for les in patient.lesions:
        work, error = patient, ""
        if grid == "1mm":
            try:
                work = isotropic_lesion_patient(patient, les, 1.0)
            except LesionError as exc:
                error = exc.problem
        masks: dict[str, np.ndarray] = {}
        if not error:
            base = np.array(work.lesion_mask(work.lesion(les.name)), dtype=bool)
            masks = {
                "original": base,
                "eroded": perturb_mask(base, work.spacing, mm, "erode"),
                "dilated": perturb_mask(base, work.spacing, mm, "dilate"),
            }
        for kind in PERTURBATIONS:
            row: dict[str, Any] = {"lesion": les.name, "site": les.site}
            m = masks.get(kind)
            if error:
                row["qc_error"] = error
            elif not m.any():
                row["qc_error"] = (
                    f"{kind} mask is empty ({mm:g} mm {'erosion' if kind == 'eroded' else 'change'})"
                )
            else:
                try:
                    row.update(compute_fn(work, m, les.name))
                    row["qc_error"] = ""
                except LesionError as exc:
                    row["qc_error"] = exc.problem
            rows[kind].append(row)
    out: dict[str, pd.DataFrame] = {}
    for kind, rr in rows.items():
        t = pd.DataFrame(rr)
        feats = [c for c in t.columns if c not in ("lesion", "site", "qc_error")]
        t = t[["lesion", "site", *feats, "qc_error"]]
        t["qc_perturb_grid"] = grid
        t["patient"] = patient.patient_id
        t["modality"] = patient.modality
        out[kind] = t
    return out


# --- CCC table ----------------------------------------------------------------------------------------
def _keyed(table: pd.DataFrame, keys: list[str], what: str) -> pd.DataFrame:
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise InputError(f"{what} table has no column(s): {', '.join(missing)}")
    t = table.copy()
    for k in keys:
        t[k] = t[k].astype(str)
    dup = t.duplicated(keys, keep=False)
    if dup.any():
        listed = sorted({"/".join(r) for r in t.loc[dup, keys].itertuples(index=False)})
        raise InputError(f"{what} table: duplicate lesion(s): {', '.join(listed)}")
    return t.set_index(keys)


def _numeric_features(table: pd.DataFrame) -> list[str]:
    return [
        c
        for c in table.columns
        if isinstance(c, str)
        and c not in ID_COLUMNS
        and not c.startswith("qc_")
        and pd.api.types.is_numeric_dtype(table[c])
        and not pd.api.types.is_bool_dtype(table[c])
    ]


def ccc_table(
    original: pd.DataFrame,
    eroded: pd.DataFrame,
    dilated: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    threshold: float = CCC_THRESHOLD,
) -> pd.DataFrame:
    """Lin's CCC of each feature between original and eroded / dilated values across lesions.

    Lesions are matched on (``patient``, ``lesion``) when all three tables have ``patient``, else on
    ``lesion``; a lesion missing from a perturbed table counts as NaN (skipped). ``features`` default: the
    numeric columns shared by the three tables, ids and ``qc_*`` excluded. Returns a table indexed by feature
    with ``ccc_eroded``, ``ccc_dilated``, ``n_eroded``, ``n_dilated`` (lesion pairs used) and ``robust``
    (both CCC ≥ ``threshold``; NaN → False).
    """
    keys = (
        ["patient", "lesion"]
        if all("patient" in t.columns for t in (original, eroded, dilated))
        else ["lesion"]
    )
    o = _keyed(original, keys, "original")
    e = _keyed(eroded, keys, "eroded").reindex(o.index)
    d = _keyed(dilated, keys, "dilated").reindex(o.index)
    if features is None:
        feats = [f for f in _numeric_features(original) if f in e.columns and f in d.columns]
    else:
        feats = check_features(original, features)
        for what, t in (("eroded", eroded), ("dilated", dilated)):
            try:
                check_features(t, feats)
            except InputError as exc:
                raise InputError(f"{what} table: {exc}") from exc
    if not feats:
        raise InputError("no numeric feature shared by the original, eroded and dilated tables")
    rows = []
    for f in feats:
        x = o[f].to_numpy(dtype=float)
        ye = e[f].to_numpy(dtype=float)
        yd = d[f].to_numpy(dtype=float)
        ce, cd = lins_ccc(x, ye), lins_ccc(x, yd)
        rows.append(
            {
                "feature": f,
                "ccc_eroded": ce,
                "ccc_dilated": cd,
                "n_eroded": int((np.isfinite(x) & np.isfinite(ye)).sum()),
                "n_dilated": int((np.isfinite(x) & np.isfinite(yd)).sum()),
                "robust": bool(ce >= threshold and cd >= threshold),
            }
        )
    return pd.DataFrame(rows).set_index("feature")


# --- redundancy ------------------------------------------------------------------------------------------
def short_name(feature: str) -> str:
    """Feature name without its family prefix (``radiomics_glcm_Imc1`` → ``Imc1``)."""
    m = re.match(r"^radiomics_[^_]+_(.+)$", feature)
    if m:
        return m.group(1)
    for p in ("shape_", "burden_", "region_"):
        if feature.startswith(p):
            return feature[len(p) :]
    return feature


def interpretability_key(feature: str) -> tuple[int, int, str]:
    """Ranking of representatives: Henry's 8 first, then shorter short name, then alphabetical (full name)."""
    s = short_name(feature)
    return (0 if s in HENRY_FEATURES else 1, len(s), feature)


def decorrelate(
    table: pd.DataFrame,
    features: Sequence[str],
    threshold: float | None = CORRELATION_THRESHOLD,
    n_clusters: int | None = None,
) -> tuple[list[str], dict[str, list[str]]]:
    """One representative per cluster of correlated features → (kept, {representative: members}).

    Hierarchical clustering of the distance ``1 − |Pearson r|`` (pairwise-complete over the rows of
    ``table``) with *average* linkage, cut at distance ``1 − threshold`` (default: clusters whose average
    |r| ≥ 0.9 are merged) or into ``n_clusters`` clusters (give one of the two). Representative = first by
    :func:`interpretability_key`. Features constant (or all NaN) over the table carry no information: they
    are dropped with a :class:`HeterogeneityWarning`. An undefined correlation counts as r = 0.
    """
    feats = check_features(table, features)
    if n_clusters is not None:
        threshold = None
        if int(n_clusters) < 1:
            raise InputError(f"n_clusters must be ≥ 1, got {n_clusters}")
    elif threshold is None or not (0.0 <= float(threshold) <= 1.0):
        raise InputError(f"correlation threshold must be in [0, 1], got {threshold!r}")
    x = table[feats].astype(float)
    constant = [f for f in feats if x[f].nunique(dropna=True) <= 1]
    if constant:
        warnings.warn(
            f"decorrelate: dropped {len(constant)} constant feature(s): {', '.join(constant)}",
            HeterogeneityWarning,
            stacklevel=2,
        )
    feats = [f for f in feats if f not in constant]
    if not feats:
        return [], {}
    if len(feats) == 1:
        return feats, {feats[0]: feats}
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    r = x[feats].corr(method="pearson", min_periods=3).to_numpy()
    r = np.nan_to_num(r, nan=0.0)
    dist = np.clip(1.0 - np.abs(r), 0.0, 1.0)
    np.fill_diagonal(dist, 0.0)
    z = linkage(squareform(0.5 * (dist + dist.T), checks=False), method="average")
    if n_clusters is not None:
        labels = fcluster(z, t=int(n_clusters), criterion="maxclust")
    else:
        labels = fcluster(z, t=1.0 - float(threshold) + 1e-12, criterion="distance")
    groups: dict[int, list[str]] = {}
    for f, lab in zip(feats, labels, strict=True):
        groups.setdefault(int(lab), []).append(f)
    clusters = {}
    for members in groups.values():
        ranked = sorted(members, key=interpretability_key)
        clusters[ranked[0]] = ranked
    kept = sorted(clusters, key=feats.index)
    return kept, {k: clusters[k] for k in kept}


@dataclass
class RobustResult:
    """Outcome of :func:`robust_features`."""

    ccc: pd.DataFrame  # per feature: ccc_eroded, ccc_dilated, n_eroded, n_dilated, robust
    robust: list[str]  # CCC ≥ threshold for both perturbations
    kept: list[str]  # robust and non-redundant (one per cluster)
    clusters: dict[str, list[str]] = field(default_factory=dict)  # representative -> members
    threshold: float = CCC_THRESHOLD
    correlation_threshold: float | None = CORRELATION_THRESHOLD


def robust_features(
    original: pd.DataFrame,
    eroded: pd.DataFrame,
    dilated: pd.DataFrame,
    threshold: float = CCC_THRESHOLD,
    *,
    features: Sequence[str] | None = None,
    correlation_threshold: float | None = CORRELATION_THRESHOLD,
    n_clusters: int | None = None,
) -> RobustResult:
    """CCC filter (both ≥ ``threshold``) then :func:`decorrelate` on the original values of the robust ones."""
    table = ccc_table(original, eroded, dilated, features, threshold=threshold)
    robust = [f for f in table.index if table.at[f, "robust"]]
    if robust:
        kept, clusters = decorrelate(original, robust, threshold=correlation_threshold, n_clusters=n_clusters)
    else:
        kept, clusters = [], {}
    return RobustResult(
        table, robust, kept, clusters, threshold, None if n_clusters else correlation_threshold
    )
