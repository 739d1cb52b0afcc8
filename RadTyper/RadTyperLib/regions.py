"""Margin shells and the 20 regional-variation features of Wu et al. (Nat Mach Intell 2021).

Regions (per lesion), as in the authors' ``python/main.py::margin_3D_histogram`` (WuLabMDA/PanCancer):

* **TC** — tumour core: voxels whose distance to the tumour boundary is more than half the maximum distance.
* **TIM** — tumour invasive margin: the rest of the tumour (``T & ~TC``).
* **PM5 / PM10** — parenchymal margin: everything within 5 / 10 mm of the tumour, **the tumour included**,
  restricted to ``parenchyma ∪ tumour``. The paper calls the regions "non-overlapping", but the authors'
  code includes the tumour in PM; we follow the code (``pure_ring=True`` gives the tumour-free variant that
  matches the paper's wording: a deviation from the code, not from the paper).

Two geometries (``mode``):

* ``"2d"`` (default, paper-faithful): per axial slice that contains tumour, 2-D Euclidean distance
  transforms in **pixel** units; the margin radius is converted with the x-spacing only,
  ``round(r / spacing_x)`` pixels (Python's round-half-to-even, as the authors), and applied in x and y
  alike. Slices without tumour have empty regions (no z dilation). On slices where the tumour is 1–2 pixels
  thick the in-slice distance is constant, so the whole slice section is TC and TIM is empty there.
* ``"3d"`` (documented variant): 3-D distance transforms in mm (``sampling=spacing``); TC = inside distance
  > half its 3-D maximum; PM_r = outside distance ≤ r mm (1e-9 mm tolerance), same parenchyma rule.

Histograms: 100 bins; CT over [−1000, 500] HU (15-HU bins, hard-coded by the authors); values outside the
range are dropped (``np.histogram`` semantics), then ``h / (h.sum() + 1e-10)``. For MR and every other
modality the authors' code has no range; we use a per-lesion robust range, the [1st, 99th] percentile of the
finite intensities in TC ∪ TIM ∪ PM10 (so about 2 % of those voxels fall outside it by construction), unless
``bin_range`` is given explicitly. Histograms are compared with a numpy port of OpenCV ``compareHist``
(``compare_hist``), arguments in the authors' order: (h_TC, h_TIM), (h_TC, h_PM), (h_TIM, h_PM).

Parenchyma fallback (no mask given), ``auto_parenchyma``; computed only in the lesion's neighbourhood (the
lesion bounding box + 10 mm + 5 voxels), False elsewhere:

* CT: "outside air" = connected components of HU < −500 that touch the image border and whose median is
  < −950 HU (found on a grid subsampled to ≈3 mm). Lung candidates = −950 < HU < −300 outside that air,
  opened once (removes the skin's partial-volume layer), components ≥ 500 mm³ kept, closed once and holes
  filled per axial slice (takes in vessels). If lung covers ≥ 20 % of the 10-mm 3-D ring around the lesion
  the lung mask is used (method ``"auto_lung_ct"``, ``qc_parenchyma_auto = 1``); otherwise "surrounding
  non-air tissue": HU > −500 outside the air (``"auto_tissue_ct"``, ``qc_parenchyma_auto = 2``).
* MR and other modalities: non-air tissue = intensity > ½ × Otsu threshold of the whole image's finite
  intensities (half of Otsu keeps every tissue class when the image has little background), opened once
  with the 6-neighbour cross to drop background-noise speckle (``"auto_tissue_intensity"``,
  ``qc_parenchyma_auto = 2``).

Units: spacing ``(x, y, z)`` in mm; arrays indexed ``[z, y, x]``; CT intensities in HU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .errors import InputError, LesionError

#: Margin radii (mm) of the parenchymal shells PM5 and PM10.
MARGINS_MM: tuple[float, float] = (5.0, 10.0)
#: Histogram range for CT (HU) and number of bins, as hard-coded by the authors.
CT_RANGE_HU: tuple[float, float] = (-1000.0, 500.0)
N_BINS = 100
#: Robust range for non-CT modalities: these percentiles of TC ∪ TIM ∪ PM10.
ROBUST_PERCENTILES: tuple[float, float] = (1.0, 99.0)
#: Shell names returned by ``margin_shells``.
SHELL_NAMES: tuple[str, ...] = ("TC", "TIM", "PM5", "PM10")
#: (feature pair, first histogram, second histogram) in output order; first = compareHist's H1.
REGION_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("tc_tim", "TC", "TIM"),
    ("tc_pm5", "TC", "PM5"),
    ("tc_pm10", "TC", "PM10"),
    ("tim_pm5", "TIM", "PM5"),
    ("tim_pm10", "TIM", "PM10"),
)
REGION_MEASURES: tuple[str, ...] = ("correl", "chisqr", "intersect", "bhattacharyya")
#: The 20 feature column names, ``region_{pair}_{measure}``.
REGION_FEATURE_NAMES: tuple[str, ...] = tuple(
    f"region_{pair}_{measure}" for pair, _, _ in REGION_PAIRS for measure in REGION_MEASURES
)
#: QC column names (all numeric).
REGION_QC_NAMES: tuple[str, ...] = (
    "qc_parenchyma_auto",
    "qc_shell_clipped",
    "qc_voxels_tc",
    "qc_voxels_tim",
    "qc_voxels_pm5",
    "qc_voxels_pm10",
    "qc_empty_tim",
    "qc_empty_hist",
    "qc_hist_out_of_range_fraction",
    "qc_ring_parenchyma_fraction",
)
#: ``qc_parenchyma_auto`` codes.
PARENCHYMA_GIVEN, PARENCHYMA_AUTO_LUNG, PARENCHYMA_AUTO_TISSUE = 0, 1, 2

# Automatic parenchyma settings (CT in HU).
LUNG_HU: tuple[float, float] = (-950.0, -300.0)
AIR_CONNECT_HU = -500.0  # outside air: components below this ...
AIR_MEDIAN_HU = -950.0  # ... touching the border, with a median below this
TISSUE_HU = -500.0  # CT non-air tissue: above this
MIN_LUNG_COMPONENT_MM3 = 500.0
MIN_LUNG_RING_FRACTION = 0.2
AIR_GRID_MM = 3.0

DBL_EPSILON = float(np.finfo(np.float64).eps)
FLT_EPSILON = float(np.finfo(np.float32).eps)
_DIST_TOL_MM = 1e-9


# --------------------------------------------------------------------------------------------------------
# OpenCV compareHist
# --------------------------------------------------------------------------------------------------------
def compare_hist(h1: np.ndarray | Sequence[float], h2: np.ndarray | Sequence[float], method: str) -> float:
    """Numpy port of OpenCV ``compareHist`` (``imgproc/src/histogram.cpp``) for dense histograms.

    Both histograms are cast to float32 first (the authors pass float32 arrays; OpenCV requires CV_32F),
    then accumulated in float64 like OpenCV. With s1 = ΣH1, s2 = ΣH2, N bins:

    * ``"correl"``: (ΣH1H2 − s1s2/N) / sqrt(d), d = (ΣH1² − s1²/N)(ΣH2² − s2²/N); **1.0** when |d| ≤
      DBL_EPSILON (e.g. an empty or uniform histogram). d is the squared denominator, as in OpenCV.
    * ``"chisqr"`` (asymmetric): Σ (H1 − H2)² / H1 over the bins with |H1| > DBL_EPSILON.
    * ``"intersect"``: Σ min(H1, H2).
    * ``"bhattacharyya"``: sqrt(max(0, 1 − Σsqrt(H1H2) / sqrt(s1s2))); the normaliser is 1 when
      |s1s2| ≤ FLT_EPSILON (an empty histogram gives 1).

    Edge cases: empty H1 → (1, 0, 0, 1); empty H2 with a PDF H1 → (1, ΣH1 ≈ 1, 0, 1).
    """
    a32 = np.asarray(h1, dtype=np.float32).ravel()
    b32 = np.asarray(h2, dtype=np.float32).ravel()
    if a32.shape != b32.shape:
        raise InputError(f"compare_hist: histograms differ in size ({a32.size} vs {b32.size} bins)")
    if a32.size == 0:
        raise InputError("compare_hist: empty histograms (0 bins)")
    a = a32.astype(np.float64)
    b = b32.astype(np.float64)
    m = method.lower()
    if m == "correl":
        scale = 1.0 / a.size
        s1, s2 = a.sum(), b.sum()
        num = float(np.dot(a, b)) - s1 * s2 * scale
        denom2 = (float(np.dot(a, a)) - s1 * s1 * scale) * (float(np.dot(b, b)) - s2 * s2 * scale)
        return float(num / math.sqrt(denom2)) if abs(denom2) > DBL_EPSILON else 1.0
    if m == "chisqr":
        diff = (a32 - b32).astype(np.float64)  # OpenCV subtracts the floats, then promotes
        keep = np.abs(a) > DBL_EPSILON
        return float(np.sum(diff[keep] ** 2 / a[keep]))
    if m == "intersect":
        return float(np.sum(np.minimum(a, b)))
    if m == "bhattacharyya":
        result = float(np.sum(np.sqrt(a * b)))
        s12 = float(a.sum() * b.sum())
        norm = 1.0 / math.sqrt(s12) if abs(s12) > FLT_EPSILON else 1.0
        return float(math.sqrt(max(1.0 - result * norm, 0.0)))
    raise InputError(f"compare_hist: unknown method '{method}' (use one of {', '.join(REGION_MEASURES)})")


# --------------------------------------------------------------------------------------------------------
# Histograms
# --------------------------------------------------------------------------------------------------------
def lesion_histogram(values: np.ndarray, bin_range: tuple[float, float], bins: int = N_BINS) -> np.ndarray:
    """Normalised histogram (PDF, sums to ≈1) of ``values`` over ``bin_range``, as the authors.

    ``np.histogram(values, bins, range)`` (values outside the range and non-finite values are dropped),
    then ``h / (h.sum() + 1e-10)`` — all zeros when nothing falls in the range. Returns float64.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    h, _ = np.histogram(v, bins=bins, range=(float(bin_range[0]), float(bin_range[1])))
    h = h.astype(np.float64)
    return h / (h.sum() + 1e-10)


def histogram_range(
    image_zyx: np.ndarray, shells: Mapping[str, np.ndarray], modality: str = "CT"
) -> tuple[float, float]:
    """Bin range of the region histograms: CT (−1000, 500) HU; otherwise the per-lesion robust range.

    The robust range is the [1st, 99th] percentile of the finite intensities in TC ∪ TIM ∪ PM10
    (``shells`` as returned by ``margin_shells``, same grid as ``image_zyx``); a degenerate range (constant
    intensities) is widened to ±0.5 around the value.
    """
    if _is_ct(modality):
        return CT_RANGE_HU
    region = (
        np.asarray(shells["TC"], bool) | np.asarray(shells["TIM"], bool) | np.asarray(shells["PM10"], bool)
    )
    return _robust_range(np.asarray(image_zyx)[region])


def _robust_range(values: np.ndarray) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(x) for x in np.percentile(v, ROBUST_PERCENTILES))
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return (lo, hi)


def _is_ct(modality: str) -> bool:
    return str(modality).strip().upper() == "CT"


# --------------------------------------------------------------------------------------------------------
# Shells
# --------------------------------------------------------------------------------------------------------
def _pixel_radius(r_mm: float, spacing_x: float) -> int:
    """The authors' mm → pixel conversion: ``round(r / spacing_x)`` (round half to even)."""
    return round(float(r_mm) / float(spacing_x))


def _check_spacing(spacing_xyz: Sequence[float], lesion: str) -> tuple[float, float, float]:
    try:
        sp = tuple(float(s) for s in spacing_xyz)
    except (TypeError, ValueError):
        raise InputError(f"lesion '{lesion}': spacing must be 3 numbers (x, y, z) in mm") from None
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise InputError(f"lesion '{lesion}': spacing must be 3 positive numbers (x, y, z) in mm, got {sp}")
    return sp  # type: ignore[return-value]


def _check_mode(mode: str) -> str:
    m = str(mode).lower()
    if m not in ("2d", "3d"):
        raise InputError(f"regional features: mode must be '2d' or '3d', got '{mode}'")
    return m


def _as_mask(mask_zyx: np.ndarray, lesion: str, what: str = "mask") -> np.ndarray:
    m = np.asarray(mask_zyx)
    if m.ndim != 3:
        raise InputError(f"lesion '{lesion}': {what} must be a 3-D [z, y, x] array, got {m.ndim}-D")
    return m if m.dtype == bool else m != 0


def _bbox(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Bounding box (z, y, x slices) of a bool mask, or None when empty (``any`` reductions: fast)."""
    zs = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if zs.size == 0:
        return None
    slab = mask[zs[0] : zs[-1] + 1]
    ys = np.flatnonzero(slab.any(axis=(0, 2)))
    xs = np.flatnonzero(slab.any(axis=(0, 1)))
    return (
        slice(int(zs[0]), int(zs[-1]) + 1),
        slice(int(ys[0]), int(ys[-1]) + 1),
        slice(int(xs[0]), int(xs[-1]) + 1),
    )


def _margin_voxels(
    spacing_xyz: tuple[float, float, float], mode: str, extra: int = 2
) -> tuple[int, int, int]:
    """Crop margin (z, y, x) in voxels covering the 10-mm shell in both modes, + ``extra`` voxels."""
    sx, sy, sz = spacing_xyz
    r = max(MARGINS_MM)
    rpx = _pixel_radius(r, sx)
    my = max(math.ceil(r / sy), rpx) + extra
    mx = max(math.ceil(r / sx), rpx) + extra
    mz = (0 if mode == "2d" else math.ceil(r / sz)) + extra
    return (mz, my, mx)


def _expand(box: tuple[slice, ...], margin: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(box, margin, shape, strict=True)
    )


def margin_shell_clipped(
    box: tuple[slice, ...], shape: Sequence[int], spacing_xyz: tuple[float, float, float], mode: str = "2d"
) -> bool:
    """True when a lesion whose ``[z, y, x]`` bounding box is ``box`` (in an image of ``shape``) has its 10 mm
    margin shell cut by the image border (``qc_shell_clipped``); used by the Slicer lesion table."""
    return bool(_shell_clipped(box, shape, spacing_xyz, mode))


def _shell_clipped(
    box: tuple[slice, ...], shape: Sequence[int], spacing_xyz: tuple[float, float, float], mode: str
) -> bool:
    """True when the 10-mm shell would reach beyond the image border (so it is cut by the border).

    2-D mode (in-plane only), R = round(10 / spacing_x) pixels: a tumour pixel with index < R or ≥ n − R
    along y or x. 3-D mode, along each axis a: a tumour voxel with (index + 1)·s_a ≤ 10 mm or
    (n − index)·s_a ≤ 10 mm (the nearest outside voxel lies within the shell).
    """
    r = max(MARGINS_MM)
    sx, sy, sz = spacing_xyz
    if mode == "2d":
        rpx = _pixel_radius(r, sx)
        return any(box[a].start < rpx or box[a].stop - 1 >= shape[a] - rpx for a in (1, 2))
    for a, s in zip((0, 1, 2), (sz, sy, sx), strict=True):
        if (box[a].start + 1) * s <= r + _DIST_TOL_MM or (
            shape[a] - (box[a].stop - 1)
        ) * s <= r + _DIST_TOL_MM:
            return True
    return False


def _edt_inside(t: np.ndarray, sampling: Sequence[float] | None = None) -> np.ndarray:
    """Distance to the nearest non-tumour voxel (scipy EDT; the image border is not background).

    Only when the tumour fills the whole array (no background at all) is it padded with background, since
    scipy's EDT is undefined then.
    """
    if t.all():
        pad = ndi.distance_transform_edt(np.pad(t, 1, constant_values=False), sampling=sampling)
        return pad[tuple(slice(1, -1) for _ in range(t.ndim))]
    return ndi.distance_transform_edt(t, sampling=sampling)


def _shells_in_box(
    tumour: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    parenchyma: np.ndarray | None,
    mode: str,
    pure_ring: bool,
) -> tuple[dict[str, np.ndarray], float]:
    """TC, TIM, PM5, PM10 on a cropped grid; also the parenchyma fraction of the 10-mm ring (0 if no ring)."""
    sx, sy, sz = spacing_xyz
    tc = np.zeros_like(tumour)
    pm = {r: np.zeros_like(tumour) for r in MARGINS_MM}
    if mode == "2d":
        rpx = {r: _pixel_radius(r, sx) for r in MARGINS_MM}
        for k in np.flatnonzero(tumour.any(axis=(1, 2))):
            t = tumour[k]
            d_in = _edt_inside(t)
            tc[k] = d_in > d_in.max() / 2.0
            d_out = ndi.distance_transform_edt(~t)
            for r in MARGINS_MM:
                pm[r][k] = d_out <= rpx[r]
    else:
        sampling = (sz, sy, sx)
        d_in = _edt_inside(tumour, sampling)
        tc = d_in > d_in.max() / 2.0
        d_out = ndi.distance_transform_edt(~tumour, sampling=sampling)
        for r in MARGINS_MM:
            pm[r] = d_out <= r + _DIST_TOL_MM
    tim = tumour & ~tc
    ring10 = pm[max(MARGINS_MM)] & ~tumour
    n_ring = int(ring10.sum())
    if parenchyma is None:
        ring_frac = 1.0 if n_ring else 0.0
    else:
        ring_frac = float((ring10 & parenchyma).sum() / n_ring) if n_ring else 0.0
        allowed = parenchyma | tumour
        for r in MARGINS_MM:
            pm[r] &= allowed
    if pure_ring:
        for r in MARGINS_MM:
            pm[r] &= ~tumour
    shells = {"TC": tc, "TIM": tim, "PM5": pm[MARGINS_MM[0]], "PM10": pm[MARGINS_MM[1]]}
    return shells, ring_frac


def margin_shells(
    mask_zyx: np.ndarray,
    spacing_xyz: Sequence[float],
    parenchyma_zyx: np.ndarray | None = None,
    *,
    mode: str = "2d",
    pure_ring: bool = False,
    lesion: str = "lesion",
) -> dict[str, np.ndarray]:
    """Bool ``[z, y, x]`` masks "TC", "TIM", "PM5", "PM10" of one lesion (full image grid).

    ``spacing_xyz`` in mm. ``parenchyma_zyx`` None means no restriction (every voxel counts as parenchyma);
    the automatic fallback needs the image and lives in ``regional_features`` / ``auto_parenchyma``.
    ``mode`` "2d" (paper) or "3d"; ``pure_ring=True`` removes the tumour from PM5/PM10 (the paper's
    "non-overlapping" wording; a deviation from the authors' code, which includes the tumour). Distance transforms run on the bounding box + (10 mm + 2 voxels). See the module docstring.

    Raises:
        LesionError: empty mask. InputError: bad dimensions, shapes or spacing.
    """
    mode = _check_mode(mode)
    sp = _check_spacing(spacing_xyz, lesion)
    tumour = _as_mask(mask_zyx, lesion)
    par = None if parenchyma_zyx is None else _as_mask(parenchyma_zyx, lesion, "parenchyma mask")
    if par is not None and par.shape != tumour.shape:
        raise InputError(
            f"lesion '{lesion}': parenchyma mask shape {par.shape} differs from the mask shape {tumour.shape}"
        )
    box = _bbox(tumour)
    if box is None:
        raise LesionError(lesion, "empty mask (no voxel in the lesion)")
    crop = _expand(box, _margin_voxels(sp, mode), tumour.shape)
    shells_c, _ = _shells_in_box(tumour[crop], sp, None if par is None else par[crop], mode, pure_ring)
    out = {}
    for name in SHELL_NAMES:
        full = np.zeros(tumour.shape, dtype=bool)
        full[crop] = shells_c[name]
        out[name] = full
    return out


# --------------------------------------------------------------------------------------------------------
# Automatic parenchyma
# --------------------------------------------------------------------------------------------------------
def _outside_air_ct(image: np.ndarray, spacing_xyz: tuple[float, float, float]) -> tuple[np.ndarray, tuple]:
    """Outside-air mask on a grid subsampled to ≈``AIR_GRID_MM``, and the strides (z, y, x)."""
    sx, sy, sz = spacing_xyz
    strides = tuple(max(1, int(AIR_GRID_MM // s)) for s in (sz, sy, sx))
    sub = np.asarray(image[:: strides[0], :: strides[1], :: strides[2]], dtype=np.float32)
    low = sub < AIR_CONNECT_HU  # NaN -> False
    lab, n = ndi.label(low)
    if n == 0:
        return np.zeros(sub.shape, bool), strides
    faces = [lab[0], lab[-1], lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]]
    border = np.unique(np.concatenate([f.ravel() for f in faces]))
    border = border[border > 0]
    if border.size == 0:
        return np.zeros(sub.shape, bool), strides
    medians = np.asarray(ndi.median(sub, lab, border), dtype=float)
    air_labels = border[medians < AIR_MEDIAN_HU]
    return np.isin(lab, air_labels), strides


def _map_coarse(coarse: np.ndarray, strides: tuple, box: tuple[slice, ...]) -> np.ndarray:
    """Nearest-lower mapping of a subsampled mask onto a full-resolution box."""
    idx = [
        np.minimum(np.arange(s.start, s.stop) // st, n - 1)
        for s, st, n in zip(box, strides, coarse.shape, strict=True)
    ]
    return coarse[np.ix_(*idx)]


def _otsu_threshold(image: np.ndarray) -> float:
    """Otsu threshold of the finite intensities (subsampled to ≤ ~2 M voxels)."""
    from skimage.filters import threshold_otsu

    arr = np.asarray(image)
    step = max(1, round((arr.size / 2e6) ** (1 / 3)))
    v = np.asarray(arr[::step, ::step, ::step], dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0 or v.min() == v.max():
        return -np.inf
    return float(threshold_otsu(v))


def _auto_parenchyma_box(
    image: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    modality: str,
    tumour: np.ndarray,
    box: tuple[slice, ...],
) -> tuple[np.ndarray, str, int]:
    """Automatic parenchyma inside ``box`` (the lesion's neighbourhood): (mask, method name, qc code)."""
    sx, sy, sz = spacing_xyz
    vals = np.asarray(image[box], dtype=np.float64)
    t = tumour[box]
    if not _is_ct(modality):
        thr = 0.5 * _otsu_threshold(image)
        with np.errstate(invalid="ignore"):
            tissue = vals > thr  # NaN -> False
        padded = np.pad(tissue, 1, mode="edge")  # opening removes background-noise speckle
        tissue = ndi.binary_opening(padded, structure=ndi.generate_binary_structure(3, 1))[1:-1, 1:-1, 1:-1]
        return tissue, "auto_tissue_intensity", PARENCHYMA_AUTO_TISSUE
    coarse, strides = _outside_air_ct(image, spacing_xyz)
    body = ~_map_coarse(coarse, strides, box)
    with np.errstate(invalid="ignore"):
        cand = (vals > LUNG_HU[0]) & (vals < LUNG_HU[1]) & body
    cross = ndi.generate_binary_structure(3, 1)
    cand = ndi.binary_opening(cand, structure=cross)
    lab, n = ndi.label(cand)
    lung = np.zeros_like(cand)
    if n:
        sizes = np.bincount(lab.ravel())[1:] * (sx * sy * sz)
        keep = np.flatnonzero(sizes >= MIN_LUNG_COMPONENT_MM3) + 1
        if keep.size:
            lung = np.isin(lab, keep)
            padded = np.pad(lung, 1, mode="edge")
            lung = ndi.binary_closing(padded, structure=cross)[1:-1, 1:-1, 1:-1]
            for k in range(lung.shape[0]):
                lung[k] = ndi.binary_fill_holes(lung[k])
            lung &= ~t
    # Fraction of the 10-mm 3-D ring (outside the tumour, inside the box) that is lung.
    d_out = ndi.distance_transform_edt(~t, sampling=(sz, sy, sx))
    ring = (d_out <= max(MARGINS_MM) + _DIST_TOL_MM) & ~t
    frac = float(lung[ring].mean()) if ring.any() else 0.0
    if frac >= MIN_LUNG_RING_FRACTION:
        return lung, "auto_lung_ct", PARENCHYMA_AUTO_LUNG
    with np.errstate(invalid="ignore"):
        tissue = (vals > TISSUE_HU) & body
    return tissue, "auto_tissue_ct", PARENCHYMA_AUTO_TISSUE


def auto_parenchyma(
    image_zyx: np.ndarray,
    spacing_xyz: Sequence[float],
    modality: str,
    mask_zyx: np.ndarray,
    *,
    lesion: str = "lesion",
) -> tuple[np.ndarray, str]:
    """Automatic parenchyma mask around one lesion: (bool ``[z, y, x]`` mask, method name).

    Computed in the lesion bounding box + (10 mm + 5 voxels), False elsewhere. CT: lung (−950 < HU < −300
    outside the outside air, cleaned) when it covers ≥ 20 % of the 10-mm ring → ``"auto_lung_ct"``, else
    non-air tissue HU > −500 → ``"auto_tissue_ct"``. Other modalities: intensity > ½·Otsu, opened →
    ``"auto_tissue_intensity"``. See the module docstring.
    """
    sp = _check_spacing(spacing_xyz, lesion)
    image = np.asarray(image_zyx)
    tumour = _as_mask(mask_zyx, lesion)
    if image.shape != tumour.shape:
        raise InputError(
            f"lesion '{lesion}': mask shape {tumour.shape} differs from image shape {image.shape}"
        )
    box = _bbox(tumour)
    if box is None:
        raise LesionError(lesion, "empty mask (no voxel in the lesion)")
    roi = _expand(box, _margin_voxels(sp, "3d", extra=5), tumour.shape)
    par_roi, method, _ = _auto_parenchyma_box(image, sp, modality, tumour, roi)
    out = np.zeros(tumour.shape, dtype=bool)
    out[roi] = par_roi
    return out, method


# --------------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------------
@dataclass
class RegionalResult:
    """Regional-variation features of one lesion.

    ``features``: the 20 ``region_*`` values (``REGION_FEATURE_NAMES`` order). ``qc``: numeric ``qc_*``
    values (``REGION_QC_NAMES``): ``qc_parenchyma_auto`` 0 given / 1 auto lung / 2 auto non-air tissue;
    ``qc_shell_clipped`` 1 when the 10-mm shell reaches the image border; ``qc_voxels_{tc,tim,pm5,pm10}``;
    ``qc_empty_tim`` 1 when TIM is empty; ``qc_empty_hist`` number of the 4 histograms with no voxel in the
    bin range; ``qc_hist_out_of_range_fraction`` fraction of TC ∪ TIM ∪ PM10 voxels outside the bin range
    (or non-finite); ``qc_ring_parenchyma_fraction`` fraction of the 10-mm ring (outside the tumour) that is
    parenchyma. ``shells``: bool ``[z, y, x]`` masks TC, TIM, PM5, PM10 on the full image
    grid (empty dict with ``keep_shells=False``). ``histograms``: the 4 normalised histograms;
    ``bin_edges``: their common edges (HU for CT). ``parenchyma_method``: "given", "auto_lung_ct",
    "auto_tissue_ct" or "auto_tissue_intensity". ``bbox``: the cropped box (slices z, y, x) the work used.
    """

    features: dict[str, float]
    qc: dict[str, float]
    shells: dict[str, np.ndarray] = field(default_factory=dict)
    histograms: dict[str, np.ndarray] = field(default_factory=dict)
    bin_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bin_range: tuple[float, float] = CT_RANGE_HU
    parenchyma_method: str = "given"
    mode: str = "2d"
    bbox: tuple[slice, ...] = ()

    def row(self) -> dict[str, float]:
        """Features then QC values, one flat dict."""
        return {**self.features, **self.qc}


def regional_features(
    image_zyx: np.ndarray,
    mask_zyx: np.ndarray,
    spacing_xyz: Sequence[float],
    parenchyma_zyx: np.ndarray | None = None,
    *,
    modality: str = "CT",
    mode: str = "2d",
    bin_range: tuple[float, float] | None = None,
    bins: int = N_BINS,
    pure_ring: bool = False,
    keep_shells: bool = True,
    lesion: str = "lesion",
) -> RegionalResult:
    """The 20 regional-variation features (+ QC) of one lesion.

    ``image_zyx``: intensities (HU for CT); ``mask_zyx``: the lesion (nonzero = tumour);
    ``spacing_xyz``: (x, y, z) mm; ``parenchyma_zyx``: organ mask or None → ``auto_parenchyma``.
    ``bin_range`` overrides the modality rule (CT (−1000, 500) HU; else [P1, P99] of TC ∪ TIM ∪ PM10).

    Empty regions never give NaN: an empty histogram yields OpenCV's edge values (empty H1 →
    correl 1, chisqr 0, intersect 0, bhattacharyya 1; empty H2 → 1, ≈1, 0, 1) and ``qc_empty_tim`` /
    ``qc_empty_hist`` say so.

    Raises:
        LesionError: empty mask; no finite intensity in the lesion. InputError: shapes, spacing, range.
    """
    mode = _check_mode(mode)
    sp = _check_spacing(spacing_xyz, lesion)
    image = np.asarray(image_zyx)
    tumour = _as_mask(mask_zyx, lesion)
    if image.shape != tumour.shape:
        raise InputError(
            f"lesion '{lesion}': mask shape {tumour.shape} differs from image shape {image.shape} "
            "(mask and image must share one voxel grid)"
        )
    par = None if parenchyma_zyx is None else _as_mask(parenchyma_zyx, lesion, "parenchyma mask")
    if par is not None and par.shape != tumour.shape:
        raise InputError(
            f"lesion '{lesion}': parenchyma mask shape {par.shape} differs from image shape {image.shape}"
        )
    if bin_range is not None:
        lo, hi = (float(x) for x in bin_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise InputError(
                f"lesion '{lesion}': bin range must be two finite numbers lo < hi, got {bin_range}"
            )
    if int(bins) < 1:
        raise InputError(f"lesion '{lesion}': bins must be ≥ 1, got {bins}")
    box = _bbox(tumour)
    if box is None:
        raise LesionError(lesion, "empty mask (no voxel in the lesion)")

    crop = _expand(box, _margin_voxels(sp, mode), tumour.shape)
    t_c = tumour[crop]
    vals = np.asarray(image[crop], dtype=np.float64)
    finite = np.isfinite(vals)
    if not finite[t_c].any():
        raise LesionError(lesion, "no finite image value inside the lesion (all-NaN image?)")

    if par is not None:
        par_c, method, auto_code = par[crop], "given", PARENCHYMA_GIVEN
    else:
        roi = _expand(box, _margin_voxels(sp, "3d", extra=5), tumour.shape)
        par_roi, method, auto_code = _auto_parenchyma_box(image, sp, modality, tumour, roi)
        # crop lies inside roi (the roi margin is at least as large on every axis)
        inner = tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(crop, roi, strict=True))
        par_c = par_roi[inner]

    shells_c, ring_frac = _shells_in_box(t_c, sp, par_c, mode, pure_ring)

    if bin_range is not None:
        rng = (lo, hi)
    elif _is_ct(modality):
        rng = CT_RANGE_HU
    else:
        union = shells_c["TC"] | shells_c["TIM"] | shells_c["PM10"]
        rng = _robust_range(vals[union])
    edges = np.linspace(rng[0], rng[1], int(bins) + 1)

    hists: dict[str, np.ndarray] = {}
    n_empty = 0
    for name in SHELL_NAMES:
        h = lesion_histogram(vals[shells_c[name]], rng, int(bins))
        n_empty += int(not h.any())
        hists[name] = h

    features = {
        f"region_{pair}_{m}": compare_hist(hists[a], hists[b], m)
        for pair, a, b in REGION_PAIRS
        for m in REGION_MEASURES
    }

    union = shells_c["TC"] | shells_c["TIM"] | shells_c["PM10"]
    u = vals[union]
    with np.errstate(invalid="ignore"):
        counted = np.isfinite(u) & (u >= rng[0]) & (u <= rng[1])
    out_frac = float(1.0 - counted.mean()) if u.size else 0.0

    qc: dict[str, float] = {
        "qc_parenchyma_auto": float(auto_code),
        "qc_shell_clipped": float(_shell_clipped(box, tumour.shape, sp, mode)),
        "qc_voxels_tc": float(shells_c["TC"].sum()),
        "qc_voxels_tim": float(shells_c["TIM"].sum()),
        "qc_voxels_pm5": float(shells_c["PM5"].sum()),
        "qc_voxels_pm10": float(shells_c["PM10"].sum()),
        "qc_empty_tim": float(not shells_c["TIM"].any()),
        "qc_empty_hist": float(n_empty),
        "qc_hist_out_of_range_fraction": out_frac,
        "qc_ring_parenchyma_fraction": ring_frac,
    }

    shells: dict[str, np.ndarray] = {}
    if keep_shells:
        for name in SHELL_NAMES:
            full = np.zeros(tumour.shape, dtype=bool)
            full[crop] = shells_c[name]
            shells[name] = full
    return RegionalResult(
        features=features,
        qc=qc,
        shells=shells,
        histograms=hists,
        bin_edges=edges,
        bin_range=(float(rng[0]), float(rng[1])),
        parenchyma_method=method,
        mode=mode,
        bbox=crop,
    )
