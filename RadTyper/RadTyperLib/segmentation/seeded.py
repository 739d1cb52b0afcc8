"""One-click lesion segmentation: adaptive region growing from a seed point (no training, CT and MR).

Method (lengths in mm, CT intensities in HU, MR in the image's own units; parameters in :class:`SeededParams`):

1. **ROI** — an index-aligned box of half-width ``max_radius_mm`` around the seed voxel (clipped to the image);
   everything below runs inside it. Voxels of ``existing_labels`` are excluded from the growth (the user's
   segments are never changed; only a new mask is returned).
2. **Denoising** — Gaussian, σ = ``smooth_mm`` (per axis; skipped along axes where σ < 0.3 voxel, e.g. thick
   slices). For large lesions σ becomes ``adaptive_smooth_fraction`` × the median edge distance of step 4
   (≤ ``max_smooth_mm``; when that exceeds 1.25 × ``smooth_mm`` and ≤ 25 % of the rays are open) and steps 3–4
   are repeated.
3. **Lesion statistics** — median ``m`` and robust SD ``s`` (1.4826 × MAD, at least ``ct_floor_hu`` on CT or
   ``mr_relative_floor`` × m on MR) of the smoothed values in a ball of ``seed_radius_mm`` around the seed.
   A CT seed below :data:`AIR_HU` (air) or ``ct_min_lesion_hu`` (lung parenchyma), or an MR seed at background
   level raises "no lesion at this point".
4. **Contrast to the adjacent tissue** — ``n_rays`` rays leave the seed in evenly spread physical directions.
   Along each, the lesion edge is where the profile leaves ``m ± edge_k·s`` for ``edge_run_mm``; the adjacent
   tissue value is the plateau past the edge (10th / 90th percentile of the next ``beyond_mm``, so that the
   partial-volume ramp does not count as tissue). Each ray's bound lies ``contrast_fraction`` of the way from
   ``m`` to its adjacent value (f = 0.5: the half-contrast, 50 % partial-volume boundary), median-filtered over
   the ``ray_neighbours`` nearest rays; rays without an edge on a side use the global bound of that side (from
   the median adjacent value over the rays; a side with no adjacent tissue at all gets
   ``m ∓ max(f·c_other, wide_k·s)``). So a nodule touching lung and chest-wall fat gets a lung-side bound near
   −400 HU and a fat-side bound near −30 HU.
5. **Region growing** — the face-connected component containing the seed of the voxels between the
   direction-dependent bounds (each voxel takes the bounds of the ray nearest to its direction from the seed;
   voxels of existing segments excluded).
6. **Morphology** — hole filling, closing with a ball of ``closing_mm``, hole filling. No opening at first
   (an opening would also cut the lesion's own thin parts, e.g. a dumbbell's neck).
7. **Leak control** — a region reaching a face of the ROI box (or of the image: on images cropped around the
   lesion the box is the image) is a leak: retry with openings by balls of ``leak_openings_mm`` (Euclidean
   distance transforms, exact in mm on anisotropic grids), keeping only the part attached to the seed — they
   cut bridges into vessels and adjacent organs — then with bounds closer to ``m`` (``leak_fractions``). An
   attempt is accepted when it does not leak and keeps ≥ ``star_min_fraction`` of the volume expected from the
   ray edges (step 8), so that a strong opening cannot reduce the lesion to a fragment.
8. **Fallback** — if every attempt fails, the first one is cut to a smooth star-shaped surface: a robust
   (Tukey-reweighted) least-squares fit of degree ``star_degree`` to the log edge distances of the rays (leak
   paths are outliers), enlarged by ``star_margin``. The result is flagged ``qc_leak_suspected`` (typically a
   lesion isointense to an adjacent organ, e.g. a sarcoma in muscle): the user should check it.

Known limits: a click in a necrotic / cystic core returns the core only (click on the solid rim instead: the
enclosed core is then filled); lesions isointense to their surroundings leak (flagged, cut to the ray fit) or
stop at internal texture; blurred (infiltrative) margins are cut at half contrast, outside a sharp reference
contour; lesions of contrast-to-noise ratio below ~2 get ragged borders.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError, LesionError
from ..patient import check_same_geometry

#: CT seeds darker than this (HU) are air: "no lesion at this point".
AIR_HU = -900.0
#: Default smallest accepted lesion volume (mm³): about a 3 mm sphere.
MIN_VOLUME_MM3 = 15.0
#: MR seeds darker than this fraction of the ROI's 99th percentile are background.
MR_BACKGROUND_FRACTION = 0.05


@dataclass(frozen=True)
class SeededParams:
    """Tuning parameters of :func:`segment_from_point` (lengths in mm; see the module docstring). Defaults
    were tuned on the synthetic CT/MR phantoms and the real pyradiomics / IBSI cases
    (``Resources/Scripts/benchmark_seeded.py``)."""

    smooth_mm: float = 0.75  # Gaussian σ of the denoising
    adaptive_smooth_fraction: float = 0.1  # large lesions: σ = this × median edge distance ...
    max_smooth_mm: float = 2.0  # ... at most this
    seed_radius_mm: float = 3.0  # ball for the lesion statistics
    ct_floor_hu: float = 10.0  # smallest lesion SD on CT (HU)
    ct_min_lesion_hu: float = -750.0  # CT seeds darker than this are lung parenchyma: "no lesion here"
    mr_relative_floor: float = 0.06  # smallest lesion SD on MR, fraction of the seed median
    n_rays: int = 98  # rays for the contrast estimate
    edge_k: float = 2.5  # the profile leaves m ± edge_k·s ...
    edge_run_mm: float = 1.5  # ... for at least this long: edge
    beyond_mm: float = 5.0  # adjacent tissue: extreme (10th / 90th percentile) of this window past the edge
    ray_neighbours: int = 6  # per-ray bounds: median over the ray and this many nearest rays
    contrast_fraction: float = 0.5  # bound = m ± f·contrast
    wide_k: float = 3.0  # side without adjacent tissue: at least m ± wide_k·s
    opening_mm: float = 0.0  # first attempt: no opening (keeps thin necks of the lesion itself) ...
    closing_mm: float = 1.0
    leak_openings_mm: tuple[float, ...] = (1.5, 3.0, 4.5, 6.0)  # ... these when the region leaks
    leak_fractions: tuple[float, ...] = (0.35, 0.25)
    star_fallback: bool = True  # cut a leaking result to the star-shaped fit of the ray edges
    star_degree: int = 2  # polynomial degree of that fit (2: ellipsoid-like)
    star_margin: float = 1.15  # radial margin of the cut
    star_min_fraction: float = 0.25  # accept an attempt only if ≥ this × the fitted volume
    border_is_leak: bool = True  # reaching the image border (not only the ROI box) counts as a leak


@dataclass
class SeededResult:
    """One segmented lesion.

    Attributes:
        mask_zyx: boolean ``[z, y, x]`` mask on the image grid (all False when ``skipped``).
        volume_mm3: mask volume (mm³).
        method: short description of what produced the mask.
        qc: quality values: ``qc_modality``, ``qc_seed_intensity`` / ``qc_seed_sd`` (m, s), ``qc_threshold_lo``
            / ``qc_threshold_hi`` (global bounds; per-direction bounds lie between them and the seed value or
            beyond), ``qc_neighbour_lo`` / ``qc_neighbour_hi`` (adjacent tissue, None if not seen),
            ``qc_rays_open`` (rays that reached the ROI border inside the lesion band), ``qc_smooth_mm``,
            ``qc_contrast_fraction``, ``qc_opening_mm``, ``qc_attempts``, ``qc_touches_roi_border``,
            ``qc_leak_suspected``, ``qc_star_limited`` (cut to the ray fit), ``qc_runtime_s``.
        roi: ``(index_xyz, size_xyz)`` of the region of interest in image voxel indices.
        name: the lesion name given.
        seed_index_xyz: the seed voxel.
        skipped: why this point produced no mask (only from :func:`segment_from_points`), else None.
    """

    mask_zyx: np.ndarray
    volume_mm3: float
    method: str
    qc: dict[str, Any] = field(default_factory=dict)
    roi: tuple[tuple[int, int, int], tuple[int, int, int]] = ((0, 0, 0), (0, 0, 0))
    name: str = "lesion"
    seed_index_xyz: tuple[int, int, int] = (0, 0, 0)
    skipped: str | None = None


# ================================================================================================
# Morphology (exact Euclidean balls in mm, via distance transforms)
# ================================================================================================
def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _ball_offsets(radius_mm: float, sp_zyx: np.ndarray) -> np.ndarray:
    """Integer ``[z, y, x]`` offsets of the voxels within ``radius_mm`` (at least the centre voxel)."""
    h = np.floor(radius_mm / sp_zyx).astype(int)
    g = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in h], indexing="ij"), axis=-1).reshape(-1, 3)
    return g[((g * sp_zyx) ** 2).sum(axis=1) <= radius_mm**2 + 1e-9]


def _bbox(mask: np.ndarray, pad: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of ``mask`` padded by ``pad`` voxels per axis, clipped to the array."""
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _depth(mask: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Distance (mm) of each mask voxel to the nearest background voxel; outside the array is background."""
    return ndimage.distance_transform_edt(np.pad(mask, 1), sampling=sp)[1:-1, 1:-1, 1:-1]


def _dilate(mask: np.ndarray, r_mm: float, sp: np.ndarray) -> np.ndarray:
    """Dilation by a ball of ``r_mm``."""
    if r_mm <= 0 or not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask, sampling=sp) <= r_mm


def _component_at(mask: np.ndarray, seed: tuple[int, int, int], sp: np.ndarray) -> np.ndarray:
    """The face-connected component of ``mask`` containing ``seed``, or the one nearest to it (mm)."""
    if not mask.any():
        return mask
    lab, _ = ndimage.label(mask)
    k = int(lab[seed])
    if k == 0:
        idx = np.argwhere(lab > 0)
        d2 = (((idx - np.asarray(seed)) * sp) ** 2).sum(axis=1)
        k = int(lab[tuple(idx[int(np.argmin(d2))])])
    return lab == k


class _Opener:
    """Openings of one region by balls of several radii, keeping the part attached to the seed.

    The depth map (distance transform) of the region is computed once, in the region's bounding box. For a
    radius r, the eroded component at (or nearest to) the seed is dilated back by r (a true opening of that
    component) and intersected with the region: bridges thinner than 2·r are cut and what lies beyond them is
    dropped, while the lesion's own surface is kept.
    """

    def __init__(self, region: np.ndarray, seed: tuple[int, int, int], sp: np.ndarray, max_r: float) -> None:
        self.region, self.sp = region, sp
        pad = np.ceil(max_r / sp).astype(int) + 2
        self.box = _bbox(region, pad)
        self.sub = region[self.box]
        self.seed = tuple(int(s - b.start) for s, b in zip(seed, self.box, strict=True))
        self.depth = _depth(self.sub, sp)

    def open(self, r_mm: float) -> np.ndarray:
        """The opening by a ball of ``r_mm`` restricted to the seed's part (empty if the seed is cut off)."""
        out = np.zeros_like(self.region)
        core = self.depth > r_mm
        if r_mm <= 0:
            out[self.box] = _component_at(self.sub, self.seed, self.sp)
            return out
        if not core.any():
            return out
        kept = _dilate(_component_at(core, self.seed, self.sp), r_mm, self.sp) & self.sub
        if kept[self.seed]:  # else the seed lies in a part thinner than the ball: this opening fails
            out[self.box] = _component_at(kept, self.seed, self.sp)
        return out


def _close(mask: np.ndarray, r_mm: float, sp: np.ndarray) -> np.ndarray:
    """Closing by a ball of ``r_mm`` (never removes a voxel)."""
    if r_mm <= 0 or not mask.any():
        return mask
    pad = np.ceil(r_mm / sp).astype(int) + 2
    box = _bbox(mask, pad)
    sub = np.pad(mask[box], [(int(q), int(q)) for q in pad])
    closed = ~_dilate(~_dilate(sub, r_mm, sp), r_mm, sp)
    inner = tuple(slice(int(q), int(q) + (b.stop - b.start)) for q, b in zip(pad, box, strict=True))
    out = mask.copy()
    out[box] |= closed[inner]
    return out


def _touches_faces(mask: np.ndarray, faces: list[tuple[int, int]]) -> bool:
    """Does ``mask`` reach one of these faces of its array? Faces are (axis, 0 | -1)."""
    return any(np.take(mask, side, axis=axis).any() for axis, side in faces)


ALL_FACES: list[tuple[int, int]] = [(a, s) for a in range(3) for s in (0, -1)]


# ================================================================================================
# Rays: lesion edge and adjacent tissue per direction
# ================================================================================================
@dataclass
class _Rays:
    """Per-ray edge and adjacent tissue (NaN where a ray found no edge)."""

    u_idx: np.ndarray  # (n, 3) ray directions in ROI index space [z, y, x] (unit length in mm)
    edge_mm: np.ndarray  # (n,) distance of the edge from the seed
    adjacent: np.ndarray  # (n,) adjacent tissue value
    at_border: np.ndarray  # (n,) the ray reached the ROI border without an edge
    n_lo: float | None  # global adjacent tissue darker than the lesion (median over rays), or None
    n_hi: float | None  # ... brighter than the lesion

    @property
    def n_open(self) -> int:
        return int(np.sum(np.isnan(self.edge_mm) & self.at_border))


def _first_run(flags: np.ndarray, run: int) -> int:
    """Index of the first of ``run`` consecutive True values, or -1."""
    if flags.size < run:
        return -1
    csum = np.concatenate([[0], np.cumsum(flags)])
    hits = np.flatnonzero(csum[run:] - csum[:-run] == run)
    return int(hits[0]) if hits.size else -1


def _cast_rays(
    sm: np.ndarray,
    occupied: np.ndarray,
    seed: tuple[int, int, int],
    sp: np.ndarray,
    direction: np.ndarray,
    m: float,
    s: float,
    max_radius_mm: float,
    p: SeededParams,
) -> _Rays:
    """Sample the smoothed ROI along ``p.n_rays`` rays from the seed; find each ray's edge and adjacent tissue."""
    step = 0.5 * float(sp.min())
    t = np.arange(0.0, max_radius_mm + 1e-9, step)
    u = _fibonacci_sphere(p.n_rays)  # physical (LPS) unit vectors
    u_idx = (u @ direction)[:, ::-1]  # Dᵀu: unit vectors in mm along the index axes, [z, y, x] order
    pts = np.asarray(seed, dtype=float)[None, None, :] + t[None, :, None] * (u_idx / sp)[:, None, :]
    inside = np.all((pts >= -0.5) & (pts <= np.asarray(sm.shape) - 0.5), axis=2)
    coords = pts.reshape(-1, 3).T
    prof = ndimage.map_coordinates(sm, coords, order=1, mode="nearest").reshape(pts.shape[:2])
    occ = ndimage.map_coordinates(occupied.astype(np.uint8), coords, order=0, mode="nearest")
    valid = inside & (occ.reshape(pts.shape[:2]) == 0)
    n_valid = np.where(valid.all(axis=1), t.size, np.argmin(valid, axis=1))
    run = max(2, round(p.edge_run_mm / step))
    beyond = round(p.beyond_mm / step)
    edge = np.full(p.n_rays, np.nan)
    adjacent = np.full(p.n_rays, np.nan)
    at_border = np.zeros(p.n_rays, dtype=bool)
    for i in range(p.n_rays):
        n = int(n_valid[i])
        e = _first_run(np.abs(prof[i, :n] - m) > p.edge_k * s, run)
        if e < 0:
            at_border[i] = n == t.size or not inside[i, n]
            continue
        seg = prof[i, e : min(e + beyond + 1, n)]
        v = float(np.percentile(seg, 10 if np.median(seg) < m else 90))
        if abs(v - m) > p.edge_k * s:
            edge[i], adjacent[i] = t[e], v
    n_min = max(3, int(0.1 * p.n_rays))
    lower, upper = adjacent[adjacent < m], adjacent[adjacent > m]
    return _Rays(
        u_idx=u_idx,
        edge_mm=edge,
        adjacent=adjacent,
        at_border=at_border,
        n_lo=float(np.median(lower)) if lower.size >= n_min else None,
        n_hi=float(np.median(upper)) if upper.size >= n_min else None,
    )


def _global_bounds(m: float, s: float, rays: _Rays, f: float, p: SeededParams) -> tuple[float, float]:
    """Bounds from the median adjacent tissue on each side."""
    c_lo = None if rays.n_lo is None else m - rays.n_lo
    c_hi = None if rays.n_hi is None else rays.n_hi - m
    wide = p.wide_k * s
    if c_lo is not None and c_hi is not None:
        return m - f * c_lo, m + f * c_hi
    if c_lo is not None:
        return m - f * c_lo, m + max(f * c_lo, wide)
    if c_hi is not None:
        return m - max(f * c_hi, wide), m + f * c_hi
    return m - wide, m + wide


def _ray_bounds(
    m: float, s: float, rays: _Rays, f: float, p: SeededParams
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per-ray (lo, hi) bounds, median-filtered over neighbouring rays, and the global bounds."""
    g_lo, g_hi = _global_bounds(m, s, rays, f, p)
    a = rays.adjacent
    lo = np.where(a < m, m - f * (m - a), g_lo)  # NaN compares False → global
    hi = np.where(a > m, m + f * (a - m), g_hi)
    k = min(p.ray_neighbours + 1, a.size)
    nn = np.argsort(-(rays.u_idx @ rays.u_idx.T), axis=1)[:, :k]
    return np.median(lo[nn], axis=1), np.median(hi[nn], axis=1), g_lo, g_hi


def _nearest_ray(
    shape: tuple[int, ...], seed: tuple[int, int, int], sp: np.ndarray, rays: _Rays
) -> np.ndarray:
    """Index of the ray nearest in direction to each ROI voxel as seen from the seed (uint16 array).

    Directions are binned on a (polar, azimuth) grid of ~1.4° whose bins know their nearest ray, so the cost
    per voxel is two trigonometric calls instead of a dot product with every ray.
    """
    n_pol, n_az = 128, 256
    pol = (np.arange(n_pol) + 0.5) * math.pi / n_pol
    az = (np.arange(n_az) + 0.5) * 2 * math.pi / n_az - math.pi
    pp, aa = np.meshgrid(pol, az, indexing="ij")
    bins = np.stack([np.cos(pp), np.sin(pp) * np.sin(aa), np.sin(pp) * np.cos(aa)], axis=-1).reshape(-1, 3)
    lut = np.argmax(bins @ rays.u_idx.T, axis=1).astype(np.uint16)  # bins in [z, y, x] like u_idx
    z = ((np.arange(shape[0]) - seed[0]) * sp[0]).astype(np.float32)[:, None, None]
    y = ((np.arange(shape[1]) - seed[1]) * sp[1]).astype(np.float32)[None, :, None]
    x = ((np.arange(shape[2]) - seed[2]) * sp[2]).astype(np.float32)[None, None, :]
    r = np.sqrt(z * z + y * y + x * x)
    cos_pol = np.divide(z, r, out=np.ones(shape, np.float32), where=r > 0)
    ip = np.minimum((np.arccos(np.clip(cos_pol, -1, 1)) * (n_pol / math.pi)).astype(np.int32), n_pol - 1)
    ia = ((np.arctan2(y, x) + math.pi) * (n_az / (2 * math.pi))).astype(np.int32)
    ia = np.minimum(np.broadcast_to(ia, shape), n_az - 1)
    return lut[ip * n_az + ia]


def _real_sh_basis(u: np.ndarray, degree: int) -> np.ndarray:
    """Real polynomial basis of degree ≤ ``degree`` on unit vectors (n, 3) (spans the spherical harmonics)."""
    z, y, x = u[:, 0], u[:, 1], u[:, 2]
    cols = [np.ones_like(x)]
    if degree >= 1:
        cols += [x, y, z]
    if degree >= 2:
        cols += [x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1]
    if degree >= 3:
        cols += [x * (x * x - 3 * y * y), y * (3 * x * x - y * y), z * (x * x - y * y), x * y * z]
        cols += [x * (5 * z * z - 1), y * (5 * z * z - 1), z * (5 * z * z - 3)]
    return np.stack(cols, axis=1)


def _star_fit(rays: _Rays, p: SeededParams) -> np.ndarray | None:
    """Per-ray lesion radius (mm) from a robust low-degree fit of the edge distances (a smooth star-shaped
    surface), or None when fewer than 20 rays found an edge. Edges far beyond the fit (leak paths) get no
    weight; rays without an edge get the fitted value."""
    ok = np.isfinite(rays.edge_mm)
    if ok.sum() < 20:
        return None
    basis = _real_sh_basis(rays.u_idx, p.star_degree)
    y = np.log(np.maximum(rays.edge_mm, 0.5))
    w = ok.astype(float)
    coef = np.zeros(basis.shape[1])
    for _ in range(5):  # iteratively reweighted least squares (Tukey biweight on log-distance residuals)
        sw = np.sqrt(w)
        coef = np.linalg.lstsq(basis * sw[:, None], np.where(ok, y, 0.0) * sw, rcond=None)[0]
        res = np.where(ok, y - basis @ coef, 0.0)
        scale = max(1.4826 * float(np.median(np.abs(res[ok]))), 0.05)
        r = res / (4.685 * scale)
        w = np.where(ok & (np.abs(r) < 1), (1 - r * r) ** 2, 0.0)
    return np.exp(basis @ coef)


def _seed_distance(shape: tuple[int, ...], seed: tuple[int, int, int], sp: np.ndarray) -> np.ndarray:
    """Distance (mm) of every ROI voxel from the seed."""
    z = ((np.arange(shape[0]) - seed[0]) * sp[0]).astype(np.float32)[:, None, None]
    y = ((np.arange(shape[1]) - seed[1]) * sp[1]).astype(np.float32)[None, :, None]
    x = ((np.arange(shape[2]) - seed[2]) * sp[2]).astype(np.float32)[None, None, :]
    return np.sqrt(z * z + y * y + x * x)


# ================================================================================================
# Public API
# ================================================================================================
def _physical_to_index(image: sitk.Image, point: Sequence[float]) -> tuple[int, int, int]:
    """Nearest voxel index (x, y, z) of a physical LPS point; InputError outside the image."""
    pt = [float(v) for v in point]
    if len(pt) != 3 or not all(math.isfinite(v) for v in pt):
        raise InputError(f"seed point must be 3 finite LPS coordinates in mm, got {point!r}")
    cidx = image.TransformPhysicalPointToContinuousIndex(pt)
    idx = tuple(math.floor(c + 0.5) for c in cidx)
    size = image.GetSize()
    if any(i < 0 or i >= n for i, n in zip(idx, size, strict=True)):
        raise InputError(
            f"seed point ({pt[0]:.1f}, {pt[1]:.1f}, {pt[2]:.1f}) mm (LPS) lies outside the image "
            f"(voxel index {idx}, image size {size})"
        )
    return idx  # type: ignore[return-value]


def _detect_modality(image: sitk.Image, modality: str) -> str:
    mod = modality.upper()
    if mod in ("CT", "MR"):
        return mod
    if mod != "AUTO":
        raise InputError(f"modality must be 'auto', 'CT' or 'MR', got '{modality}'")
    mm = sitk.MinimumMaximumImageFilter()
    mm.Execute(image)
    return "CT" if mm.GetMinimum() <= -500 else "MR"


def segment_from_point(
    image: sitk.Image,
    point_lps_mm: Sequence[float],
    *,
    modality: str = "auto",
    max_radius_mm: float = 60.0,
    min_volume_mm3: float = MIN_VOLUME_MM3,
    existing_labels: sitk.Image | None = None,
    lesion: str = "lesion",
    params: SeededParams | None = None,
) -> SeededResult:
    """Segment the lesion under a clicked point (method: module docstring).

    Args:
        image: 3-D scalar CT (HU) or MR image.
        point_lps_mm: the click, physical LPS coordinates (mm), inside the lesion.
        modality: "CT", "MR" or "auto" (CT when the image minimum is ≤ −500).
        max_radius_mm: half-width of the search box around the click (the largest lesion radius expected), mm.
        min_volume_mm3: smaller results raise LesionError.
        existing_labels: label map on the image grid; its non-zero voxels are never included (not modified).
        lesion: name used in messages and stored in the result.
        params: tuning parameters (default :class:`SeededParams`).

    Raises:
        InputError: the point lies outside the image; unusable image / labels / arguments.
        LesionError: no lesion at this point (air / background, inside an existing segment), or the result is
            empty or smaller than ``min_volume_mm3``.
    """
    t0 = time.perf_counter()
    p = params or SeededParams()
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("seeded segmentation needs a 3-D scalar image")
    if not max_radius_mm > 0:
        raise InputError(f"max_radius_mm must be > 0, got {max_radius_mm}")
    seed_xyz = _physical_to_index(image, point_lps_mm)
    mod = _detect_modality(image, modality)
    size_xyz = np.asarray(image.GetSize())
    sp_xyz = np.asarray(image.GetSpacing(), dtype=float)
    sp = sp_xyz[::-1].copy()  # [z, y, x]
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)

    # --- ROI ------------------------------------------------------------------------------------------
    half = np.ceil(max_radius_mm / sp_xyz).astype(int)
    lo_xyz = np.maximum(np.asarray(seed_xyz) - half, 0)
    hi_xyz = np.minimum(np.asarray(seed_xyz) + half + 1, size_xyz)
    roi_sl = tuple(slice(int(a), int(b)) for a, b in zip(lo_xyz[::-1], hi_xyz[::-1], strict=True))
    roi = (tuple(int(v) for v in lo_xyz), tuple(int(v) for v in hi_xyz - lo_xyz))
    # reaching a face of the ROI box is a leak, image borders included: on images cropped around the lesion
    # (common for research data) the ROI is the whole image and a leak stops at the image border
    inner_faces = (
        ALL_FACES
        if p.border_is_leak
        else [
            (axis, side)
            for axis, (a, b, n) in enumerate(zip(lo_xyz[::-1], hi_xyz[::-1], size_xyz[::-1], strict=True))
            for side, is_inner in ((0, a > 0), (-1, b < n))
            if is_inner
        ]
    )
    arr = sitk.GetArrayViewFromImage(image)[roi_sl].astype(np.float32)
    occupied = np.zeros(arr.shape, dtype=bool)
    seed = tuple(int(v) for v in (np.asarray(seed_xyz) - lo_xyz)[::-1])  # [z, y, x] in the ROI
    if existing_labels is not None:
        check_same_geometry(image, existing_labels, "image", "existing labels")
        labels_roi = sitk.GetArrayViewFromImage(existing_labels)[roi_sl]
        occupied = labels_roi != 0
        if occupied[seed]:
            raise LesionError(
                lesion,
                f"the point lies inside an existing segment (label {int(labels_roi[seed])}); "
                "nothing new to segment there",
            )
    allowed = ~occupied

    # --- denoising, lesion statistics, adjacent tissue -------------------------------------------------
    def ball(radius_mm: float) -> np.ndarray:
        o = _ball_offsets(radius_mm, sp) + np.asarray(seed)
        o = o[np.all((o >= 0) & (o < np.asarray(arr.shape)), axis=1)]
        return o[allowed[tuple(o.T)]]

    # seed balls, largest first; the smallest holds ≥ 7 voxels (a small lesion: a 3 mm ball spills over)
    small = float(sp.min())
    while len(ball(small)) < 7 and small < p.seed_radius_mm:
        small *= 1.25
    balls = [ball(r) for r in np.geomspace(p.seed_radius_mm, min(small, p.seed_radius_mm), 3)]
    offs = balls[0]

    def analyse(sigma_mm: float) -> tuple[np.ndarray, float, float, _Rays]:
        sigma = sigma_mm / sp
        sigma = np.where(sigma >= 0.3, sigma, 0.0)
        sm = ndimage.gaussian_filter(arr, sigma=sigma, truncate=3.0) if np.any(sigma > 0) else arr
        nonlocal offs
        stats = []
        for o in balls:
            vals = sm[tuple(o.T)]
            m_r = float(np.median(vals))
            floor = p.ct_floor_hu if mod == "CT" else max(p.mr_relative_floor * abs(m_r), 1e-6)
            stats.append((m_r, max(1.4826 * float(np.median(np.abs(vals - m_r))), floor)))
        # the largest ball whose median agrees with the smallest one's (a ball across the lesion border
        # shifts the median towards the surrounding tissue)
        k = next(i for i, (m_r, _) in enumerate(stats) if abs(m_r - stats[-1][0]) <= stats[-1][1])
        (m, s), offs = stats[k], balls[k]
        if mod == "CT" and m < AIR_HU:
            raise LesionError(
                lesion,
                f"no lesion at this point: the seed intensity is {m:.0f} HU (air, below {AIR_HU:.0f} HU)",
            )
        if mod == "CT" and m < p.ct_min_lesion_hu:
            raise LesionError(
                lesion,
                f"no lesion at this point: the seed intensity is {m:.0f} HU (lung parenchyma, below "
                f"{p.ct_min_lesion_hu:.0f} HU)",
            )
        if mod == "MR" and m < MR_BACKGROUND_FRACTION * float(np.percentile(arr, 99)):
            raise LesionError(
                lesion, f"no lesion at this point: the seed intensity {m:.4g} is at background (air) level"
            )
        return sm, m, s, _cast_rays(sm, occupied, seed, sp, direction, m, s, max_radius_mm, p)

    smooth_used = p.smooth_mm
    sm, m, s, rays = analyse(smooth_used)
    edges = rays.edge_mm[np.isfinite(rays.edge_mm)]
    if edges.size and rays.n_open <= 0.25 * p.n_rays:  # large lesion: smooth more, analyse again
        sigma2 = min(p.adaptive_smooth_fraction * float(np.median(edges)), p.max_smooth_mm)
        if sigma2 > 1.25 * smooth_used:
            smooth_used = sigma2
            sm, m, s, rays = analyse(smooth_used)
    nearest = _nearest_ray(arr.shape, seed, sp, rays)

    # --- growth, morphology, leak control ---------------------------------------------------------------
    def grow(f: float) -> tuple[np.ndarray, float, float]:
        lo_r, hi_r, g_lo, g_hi = _ray_bounds(m, s, rays, f, p)
        cand = (sm >= lo_r[nearest]) & (sm <= hi_r[nearest]) & allowed
        if not cand[seed]:  # the seed voxel itself is an outlier: start from the in-band seed-ball voxels
            cand[tuple(offs[cand[tuple(offs.T)]].T)] = True
            cand[seed] = True
        return _component_at(cand, seed, sp), g_lo, g_hi

    def finish(region: np.ndarray) -> np.ndarray:
        out = ndimage.binary_fill_holes(region)
        out = _close(out, p.closing_mm, sp) & allowed
        return ndimage.binary_fill_holes(out) & allowed

    # a smooth star-shaped fit of the ray edges: the expected lesion size, and the limit of a leaking region
    star = _star_fit(rays, p)
    star_volume = None if star is None else float(np.mean(star**3)) * 4.0 * math.pi / 3.0
    radii = (p.opening_mm, *p.leak_openings_mm)
    attempts = 0
    voxel_mm3 = float(np.prod(sp_xyz))
    result: tuple[np.ndarray, float, float, float, float] | None = None  # region, lo, hi, f, r
    default: tuple[np.ndarray, float, float, float, float] | None = None
    for f in (p.contrast_fraction, *p.leak_fractions):
        raw, g_lo, g_hi = grow(f)
        opener = _Opener(raw, seed, sp, max(radii))
        raw_leaks = _touches_faces(raw, inner_faces)
        for r in radii:
            attempts += 1
            opened = opener.open(r)
            if not opened.any():
                continue
            if default is None:
                default = (opened, g_lo, g_hi, f, r)
            if not _touches_faces(opened, inner_faces):
                region = finish(opened)
                big_enough = (  # an opening must not reduce a leaking region to a fragment
                    not raw_leaks
                    or star_volume is None
                    or float(region.sum()) * voxel_mm3 >= p.star_min_fraction * star_volume
                )
                if not _touches_faces(region, inner_faces) and big_enough:
                    result = (region, g_lo, g_hi, f, r)
                    break
            if not raw_leaks:
                break  # stronger openings of a region that does not leak change nothing useful
        if result is not None:
            break
    leak = result is None
    star_limited = False
    if result is None:  # every attempt leaked (or shrank to a fragment): the default one, flagged ...
        if default is None:  # only possible with opening_mm > 0: the seed lies in a too thin structure
            raise LesionError(lesion, "no lesion found at this point (nothing survives the opening)")
        region0 = default[0]
        star_limited = star is not None and p.star_fallback
        if star_limited:  # ... cut to the star-shaped fit of the ray edges
            finite = np.isfinite(rays.edge_mm)
            limit = (
                np.where(finite, np.minimum(np.where(finite, rays.edge_mm, 0), star), star) * p.star_margin
            )
            region0 = _component_at(
                region0 & (_seed_distance(arr.shape, seed, sp) <= limit[nearest]), seed, sp
            )
        result = (finish(region0), *default[1:])
    region, lo, hi, used_f, used_open = result

    if not region.any():
        raise LesionError(lesion, f"no lesion found at this point (empty region; bounds {lo:.4g}–{hi:.4g})")
    volume = float(region.sum()) * voxel_mm3
    if volume < min_volume_mm3:
        raise LesionError(
            lesion,
            f"the region grown from this point is only {volume:.1f} mm³ (< {min_volume_mm3:g} mm³): "
            "no lesion at this point, or the lesion is too small / too faint",
        )
    mask = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=bool)
    mask[roi_sl] = region
    qc: dict[str, Any] = {
        "qc_modality": mod,
        "qc_seed_intensity": m,
        "qc_seed_sd": s,
        "qc_threshold_lo": float(lo),
        "qc_threshold_hi": float(hi),
        "qc_neighbour_lo": rays.n_lo,
        "qc_neighbour_hi": rays.n_hi,
        "qc_rays_open": rays.n_open,
        "qc_smooth_mm": smooth_used,
        "qc_contrast_fraction": used_f,
        "qc_opening_mm": used_open,
        "qc_attempts": attempts,
        "qc_touches_roi_border": _touches_faces(region, ALL_FACES),
        "qc_leak_suspected": leak,
        "qc_star_limited": star_limited,
        "qc_runtime_s": time.perf_counter() - t0,
    }
    method = (
        f"seeded region growing ({mod}; bounds {lo:.4g}–{hi:.4g}, opening {used_open:g} mm"
        f"{', cut to the ray fit' if star_limited else ''}{', LEAK SUSPECTED' if leak else ''})"
    )
    return SeededResult(
        mask_zyx=mask,
        volume_mm3=volume,
        method=method,
        qc=qc,
        roi=roi,  # type: ignore[arg-type]
        name=lesion,
        seed_index_xyz=seed_xyz,
    )


def segment_from_points(
    image: sitk.Image,
    points: Sequence[Sequence[float]],
    *,
    names: Sequence[str] | None = None,
    existing_labels: sitk.Image | None = None,
    **kw: Any,
) -> list[SeededResult]:
    """Segment every marked lesion in turn ("segment all marked lesions").

    Each point is segmented with :func:`segment_from_point`, excluding the voxels of ``existing_labels`` and of
    the results already obtained, so the masks never overlap. One result per point, in order: a point that
    falls inside an earlier result (a duplicate click), or that raises :class:`LesionError` (air, too small),
    gives a result with an empty mask and ``skipped`` set to the reason. InputError (point outside the image,
    bad labels) is raised.

    Args:
        points: physical LPS points (mm).
        names: one lesion name per point (default "lesion_1", ...).
        existing_labels: the user's segments (label map on the image grid); never modified.
        kw: passed on to :func:`segment_from_point`.
    """
    names = [f"lesion_{i}" for i in range(1, len(points) + 1)] if names is None else list(names)
    if len(names) != len(points):
        raise InputError(f"{len(names)} names for {len(points)} points")
    shape = sitk.GetArrayViewFromImage(image).shape
    taken = np.zeros(shape, dtype=np.uint8)
    if existing_labels is not None:
        check_same_geometry(image, existing_labels, "image", "existing labels")
        taken = (sitk.GetArrayViewFromImage(existing_labels) != 0).astype(np.uint8)
    results: list[SeededResult] = []
    for k, (pt, name) in enumerate(zip(points, names, strict=True)):
        seed_xyz = _physical_to_index(image, pt)
        seed_zyx = seed_xyz[::-1]
        empty = np.zeros(shape, dtype=bool)
        owner = next((r for r in results if r.skipped is None and r.mask_zyx[seed_zyx]), None)
        if owner is not None:
            reason = f"point {k + 1} lies inside lesion '{owner.name}' segmented from an earlier point"
            results.append(
                SeededResult(empty, 0.0, "skipped", name=name, seed_index_xyz=seed_xyz, skipped=reason)
            )
            continue
        labels_img = sitk.GetImageFromArray(taken)
        labels_img.CopyInformation(image)
        try:
            res = segment_from_point(image, pt, existing_labels=labels_img, lesion=name, **kw)
        except LesionError as exc:
            results.append(
                SeededResult(empty, 0.0, "skipped", name=name, seed_index_xyz=seed_xyz, skipped=str(exc))
            )
            continue
        taken[res.mask_zyx] = 1
        results.append(res)
    return results
