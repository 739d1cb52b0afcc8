"""U-Net inference: every lesion of a volume, or within an ROI box, or around clicked points.

Pipeline of :func:`segment_lesions` (lengths in mm, volumes in mm³, points in physical LPS mm):

1. **Modality check** — the image's modality (declared, or guessed from intensities by
   :func:`RadTyperLib.io.guess_modality`) must be the model's; otherwise an InputError says so.
2. **Region** — the whole volume, an ROI box (two opposite LPS corners; the index box covering it), or one
   box of half-width ``point_radius_mm`` around each clicked point. The network sees the region plus
   ``context_mm`` of surroundings in-plane; results outside the region are discarded.
3. **Slices** — each slice of the region (third index axis), with ``context_slices`` neighbours on each side
   for 2.5-D models (clamped at the volume ends), is normalised (:mod:`.normalize`; MR percentiles of the
   whole volume) and resampled in-plane to the model's pixel size when it differs by > 5 % (linear).
4. **Network, tiled** — slices are padded (bottom/right, value 0) to a multiple of 2^depth. A slice whose
   padded size fits ``max_tile_pixels`` runs whole (several slices per batch while they fit); a larger one
   runs as tiles whose core is surrounded by ``tile_margin`` pixels (default: the receptive radius of the
   network, :func:`~.network.receptive_radius`, rounded up to a multiple of 2^depth), tile origins on
   multiples of 2^depth. Because the output at a pixel depends on nothing farther than the receptive radius,
   tiled probabilities equal untiled ones (up to float rounding); memory is bounded by the tile size, not
   by the slice size. A smaller ``tile_margin`` is faster but no longer exact.
5. **Probabilities → lesions** — sigmoid, resampled back to the image grid, thresholded
   (``p ≥ threshold``), voxels of ``exclude`` (e.g. the user's existing segments) removed, 3-D connected
   components (face connectivity) → one lesion per component; components below ``min_size_mm3`` are
   dropped. Around clicked points only the components reaching within ``snap_mm`` of a point are kept.
   Lesions are numbered by decreasing volume: label i = ``lesion_i``.

Memory: the image, one label map and a boolean mask on the image grid, plus one batch of slices (the full
probability map only with ``keep_probability``).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ...errors import InputError
from ...features import Cancelled, Progress
from ...io import guess_modality
from ...patient import Lesion
from .bundle import UNetBundle, load_unet_bundle
from .network import import_torch, pad_multiple, receptive_radius
from .normalize import apply_range, canonical_modality

#: In-plane pixel sizes within this relative difference are not resampled.
SPACING_TOLERANCE = 0.05
#: Default half-width (mm) of the box searched around a clicked point.
POINT_RADIUS_MM = 50.0
#: Default distance (mm) within which a component must come to a clicked point to be kept.
SNAP_MM = 5.0
#: Default in-plane context (mm) around an ROI / point box given to the network.
CONTEXT_MM = 20.0

#: (z0, z1, y0, y1, x0, x1): a half-open index box on the ``[z, y, x]`` array.
IndexBox = tuple[int, int, int, int, int, int]


@dataclass
class AutoSegResult:
    """Lesions found by :func:`segment_lesions`.

    Attributes:
        labels: uint16 ``[z, y, x]`` label map on the image grid; 0 = background, value i = ``names[i-1]``.
        names: lesion names ``lesion_1`` … in label order (decreasing volume).
        volumes_mm3: lesion volumes (mm³) in label order.
        threshold: probability threshold used.
        min_size_mm3: minimum lesion volume used (mm³).
        n_removed_small: components dropped as smaller than ``min_size_mm3``.
        messages: human-readable notes (no lesion found, a point without lesion, …).
        probability: float32 ``[z, y, x]`` probabilities on the image grid (0 outside the region), when
            asked with ``keep_probability``; else None.
        elapsed_s: wall time of the whole call (s).
        max_input_pixels: largest network input (slices × pixels) of one forward pass: the memory bound.
        forward_passes: number of network forward passes.
    """

    labels: np.ndarray
    names: list[str]
    volumes_mm3: list[float]
    threshold: float
    min_size_mm3: float
    n_removed_small: int = 0
    messages: list[str] = field(default_factory=list)
    probability: np.ndarray | None = None
    elapsed_s: float = 0.0
    max_input_pixels: int = 0
    forward_passes: int = 0

    @property
    def empty(self) -> bool:
        """True when no lesion was found."""
        return not self.names

    def lesions(self) -> list[Lesion]:
        """The lesions as :class:`~RadTyperLib.patient.Lesion` (label i = ``names[i-1]``)."""
        from ...io import default_color

        return [
            Lesion(label=i, name=n, color=default_color(i - 1)) for i, n in enumerate(self.names, start=1)
        ]

    def label_image(self, reference: sitk.Image) -> sitk.Image:
        """The label map as a SimpleITK image with the geometry of ``reference`` (the segmented image)."""
        img = sitk.GetImageFromArray(self.labels)
        img.CopyInformation(reference)
        return img


# --- geometry helpers -------------------------------------------------------------------------------------
def _check_image(image: sitk.Image, source: str) -> None:
    if not isinstance(image, sitk.Image):
        raise InputError(f"{source}: expected a SimpleITK image, got {type(image).__name__}")
    if image.GetDimension() != 3:
        raise InputError(f"{source}: expected a 3-D image, got {image.GetDimension()}-D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{source}: expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components"
        )


def roi_index_box(image: sitk.Image, roi_lps_mm: Sequence[float], source: str = "ROI") -> IndexBox:
    """Index box ``(z0, z1, y0, y1, x0, x1)`` (half-open) covering an LPS box given by two opposite corners
    ``(x1, y1, z1, x2, y2, z2)`` in mm, clipped to the image.

    Raises:
        InputError: not 6 finite numbers, or the box does not overlap the image.
    """
    vals = np.asarray(list(roi_lps_mm), dtype=float)
    if vals.shape != (6,) or not np.all(np.isfinite(vals)):
        raise InputError(f"{source}: expected 6 numbers x1,y1,z1,x2,y2,z2 (LPS mm), got {list(roi_lps_mm)}")
    a, b = vals[:3], vals[3:]
    lo_mm, hi_mm = np.minimum(a, b), np.maximum(a, b)
    corners = [
        image.TransformPhysicalPointToContinuousIndex(tuple(float(c) for c in corner))
        for corner in itertools.product(*zip(lo_mm, hi_mm, strict=True))
    ]
    idx = np.asarray(corners)  # (8, 3) continuous (i, j, k)
    lo = np.floor(idx.min(axis=0) + 0.5).astype(int)  # every voxel the box overlaps
    hi = np.floor(idx.max(axis=0) + 0.5).astype(int) + 1
    size = np.asarray(image.GetSize())
    lo_c, hi_c = np.clip(lo, 0, size), np.clip(hi, 0, size)
    if np.any(hi_c <= lo_c):
        raise InputError(
            f"{source}: the box {lo_mm.round(2).tolist()}…{hi_mm.round(2).tolist()} mm (LPS) does not overlap "
            "the image"
        )
    return (int(lo_c[2]), int(hi_c[2]), int(lo_c[1]), int(hi_c[1]), int(lo_c[0]), int(hi_c[0]))


def point_index_box(
    image: sitk.Image, point_lps_mm: Sequence[float], radius_mm: float, source: str
) -> IndexBox:
    """Index box of half-width ``radius_mm`` around a physical point (LPS mm)."""
    p = np.asarray(list(point_lps_mm), dtype=float)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise InputError(f"{source}: expected 3 numbers x,y,z (LPS mm), got {list(point_lps_mm)}")
    r = float(radius_mm)
    return roi_index_box(image, (*(p - r), *(p + r)), source)


def _box_union(boxes: Sequence[IndexBox]) -> IndexBox:
    arr = np.asarray(boxes)
    return (
        int(arr[:, 0].min()),
        int(arr[:, 1].max()),
        int(arr[:, 2].min()),
        int(arr[:, 3].max()),
        int(arr[:, 4].min()),
        int(arr[:, 5].max()),
    )


# --- modality ---------------------------------------------------------------------------------------------
def check_modality(
    bundle: UNetBundle, image: sitk.Image, modality: str = "auto", source: str = "image"
) -> str:
    """The image modality (declared or guessed) after checking that it is the model's.

    Raises:
        InputError: the model was trained on another modality (the message says which and what to do).
    """
    if str(modality).strip().lower() in ("", "auto"):
        mod = guess_modality(image)
        how = "guessed from its intensities; declare the modality if this is wrong"
    else:
        mod = canonical_modality(modality, source)
        how = "declared"
    if mod != bundle.modality:
        raise InputError(
            f"model '{bundle.name}' was trained on {bundle.modality} images but {source} is {mod} ({how}): "
            f"use a {mod} model"
        )
    return mod


# --- in-plane resampling ----------------------------------------------------------------------------------
def needs_resampling(spacing_yx: Sequence[float], target_mm: float | None) -> bool:
    """True when the in-plane pixel size (y, x mm) differs from the model's by more than 5 %."""
    if target_mm is None:
        return False
    return any(abs(float(s) - target_mm) > SPACING_TOLERANCE * target_mm for s in spacing_yx)


def resampled_shape(
    shape_yx: Sequence[int], spacing_yx: Sequence[float], target_mm: float
) -> tuple[int, int]:
    """Size of a slice resampled to ``target_mm`` pixels (first pixel centres coincide)."""
    return tuple(
        max(1, round((n - 1) * s / target_mm) + 1) for n, s in zip(shape_yx, spacing_yx, strict=True)
    )  # type: ignore[return-value]


def resample_slices(
    arr: np.ndarray, spacing_yx: Sequence[float], target_mm: float, out_shape: Sequence[int] | None = None
) -> np.ndarray:
    """Linear in-plane resampling of ``arr[..., y, x]`` from ``spacing_yx`` to square ``target_mm`` pixels.

    With ``out_shape`` the inverse direction is meant: ``arr`` is on the ``target_mm`` grid and is resampled
    to ``out_shape`` pixels of ``spacing_yx``. Edges are clamped (no zero fill).
    """
    a = np.asarray(arr, dtype=np.float32)
    lead = a.shape[:-2]
    flat = a.reshape((-1, *a.shape[-2:]))
    if out_shape is None:
        shape = resampled_shape(a.shape[-2:], spacing_yx, target_mm)
        scale = [target_mm / float(s) for s in spacing_yx]
    else:
        shape = tuple(int(v) for v in out_shape)
        scale = [float(s) / target_mm for s in spacing_yx]
    out = np.empty((flat.shape[0], *shape), dtype=np.float32)
    for i in range(flat.shape[0]):
        out[i] = ndimage.affine_transform(flat[i], scale, output_shape=shape, order=1, mode="nearest")
    return out.reshape((*lead, *shape))


# --- the network on slices --------------------------------------------------------------------------------
def resolve_device(device: str = "auto") -> str:
    """``cuda`` when available and asked for (``auto``), else ``cpu``."""
    torch = import_torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device '{device}' asked for, but no CUDA GPU is available")
    return device


def _axis_tiles(n: int, core: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(core0, core1, win0, win1) along one axis of length ``n`` (all multiples of 2^depth except at n)."""
    out = []
    for c0 in range(0, n, core):
        c1 = min(n, c0 + core)
        out.append((c0, c1, max(0, c0 - margin), min(n, c1 + margin)))
    return out


class SlicePredictor:
    """Runs a bundle's network on batches of normalised slices ``(B, C, H, W)`` → probabilities ``(B, H, W)``.

    Attributes ``max_window_pixels`` and ``n_forward`` record the largest network input (pixels per slice ×
    slices) and the number of forward passes, for memory checks.
    """

    def __init__(
        self,
        bundle: UNetBundle,
        *,
        device: str = "auto",
        max_tile_pixels: int | None = None,
        tile_margin: int | None = None,
        net: Any = None,
    ) -> None:
        self.bundle = bundle
        self.device = resolve_device(device)
        self.net = net if net is not None else bundle.network(self.device)
        self.multiple = bundle.config.multiple
        self.max_tile_pixels = int(max_tile_pixels or bundle.max_tile_pixels)
        if self.max_tile_pixels < self.multiple**2:
            raise InputError(
                f"max_tile_pixels must be at least {self.multiple**2}, got {self.max_tile_pixels}"
            )
        margin = receptive_radius(bundle.config) if tile_margin is None else int(tile_margin)
        self.margin = pad_multiple(margin, self.multiple) if margin > 0 else 0
        self.max_window_pixels = 0
        self.n_forward = 0

    def _forward(self, x: np.ndarray) -> np.ndarray:
        torch = import_torch()
        self.max_window_pixels = max(self.max_window_pixels, int(x.shape[0] * x.shape[-1] * x.shape[-2]))
        self.n_forward += 1
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
            return torch.sigmoid(self.net(t))[:, 0].float().cpu().numpy()

    def core_sizes(self, hp: int, wp: int) -> tuple[int, int]:
        """Tile core sizes (rows, columns) for a padded slice of ``hp × wp`` pixels."""
        m, budget, margin = self.multiple, self.max_tile_pixels, self.margin
        if hp * wp <= budget:
            return hp, wp
        # whole rows when they fit, else square cores
        if hp * min(wp, m + 2 * margin) <= budget:
            core_x = (budget // hp - 2 * margin) // m * m
            if core_x >= m:
                return hp, min(core_x, wp)
        if wp * min(hp, m + 2 * margin) <= budget:
            core_y = (budget // wp - 2 * margin) // m * m
            if core_y >= m:
                return min(core_y, hp), wp
        side = math.isqrt(budget)
        core = max(m, (side - 2 * margin) // m * m)
        return min(core, hp), min(core, wp)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of lesion for each pixel of each slice of ``x`` (B, C, H, W) float32."""
        b, c, h, w = x.shape
        if c != self.bundle.config.in_channels:
            raise InputError(f"the model expects {self.bundle.config.in_channels} channels, got {c}")
        hp, wp = pad_multiple(h, self.multiple), pad_multiple(w, self.multiple)
        xp = np.zeros((b, c, hp, wp), dtype=np.float32)
        xp[:, :, :h, :w] = x
        out = np.empty((b, hp, wp), dtype=np.float32)
        if hp * wp <= self.max_tile_pixels:
            per = max(1, self.max_tile_pixels // (hp * wp))
            for s in range(0, b, per):
                out[s : s + per] = self._forward(xp[s : s + per])
            return out[:, :h, :w]
        core_y, core_x = self.core_sizes(hp, wp)
        for i in range(b):
            for cy0, cy1, wy0, wy1 in _axis_tiles(hp, core_y, self.margin if core_y < hp else 0):
                for cx0, cx1, wx0, wx1 in _axis_tiles(wp, core_x, self.margin if core_x < wp else 0):
                    prob = self._forward(xp[i : i + 1, :, wy0:wy1, wx0:wx1])[0]
                    out[i, cy0:cy1, cx0:cx1] = prob[cy0 - wy0 : cy1 - wy0, cx0 - wx0 : cx1 - wx0]
        return out[:, :h, :w]


def _slice_stack(arr: np.ndarray, z: int, k: int, ys: slice, xs: slice) -> np.ndarray:
    """Slices z−k … z+k (clamped to the volume) of the in-plane window, shape (2k+1, h, w)."""
    nz = arr.shape[0]
    idx = [min(max(z + d, 0), nz - 1) for d in range(-k, k + 1)]
    return np.stack([np.asarray(arr[i, ys, xs]) for i in idx])


def iter_probability_slices(
    image: sitk.Image,
    bundle: UNetBundle,
    box: IndexBox | None = None,
    *,
    context_mm: float = CONTEXT_MM,
    predictor: SlicePredictor | None = None,
    device: str = "auto",
    max_tile_pixels: int | None = None,
    tile_margin: int | None = None,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
    progress_span: tuple[float, float] = (0.0, 1.0),
):
    """Yield ``(z, prob)`` for every slice ``z`` of ``box`` (whole image when None); ``prob`` is float32
    ``(y1−y0, x1−x0)`` on the image grid. No modality check here (see :func:`segment_lesions`)."""
    arr = sitk.GetArrayViewFromImage(image)
    nz, ny, nx = arr.shape
    z0, z1, y0, y1, x0, x1 = box if box is not None else (0, nz, 0, ny, 0, nx)
    sx, sy = (float(v) for v in image.GetSpacing()[:2])
    k = bundle.config.context_slices
    lo, hi = bundle.normalization.volume_range(arr)
    pred = predictor or SlicePredictor(
        bundle, device=device, max_tile_pixels=max_tile_pixels, tile_margin=tile_margin
    )
    whole = box is None or (y0, y1, x0, x1) == (0, ny, 0, nx)
    cy, cx = (0, 0) if whole else (math.ceil(context_mm / sy), math.ceil(context_mm / sx))
    ey0, ey1, ex0, ex1 = max(0, y0 - cy), min(ny, y1 + cy), max(0, x0 - cx), min(nx, x1 + cx)
    h, w = ey1 - ey0, ex1 - ex0
    resample = needs_resampling((sy, sx), bundle.spacing_mm)
    shape_net = resampled_shape((h, w), (sy, sx), bundle.spacing_mm) if resample else (h, w)
    per_batch = max(
        1,
        pred.max_tile_pixels
        // (pad_multiple(shape_net[0], pred.multiple) * pad_multiple(shape_net[1], pred.multiple)),
    )
    zs = list(range(z0, z1))
    p0, p1 = progress_span
    for start in range(0, len(zs), per_batch):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"segmentation cancelled after {start} of {len(zs)} slices")
        if progress is not None:
            progress(p0 + (p1 - p0) * start / max(1, len(zs)), f"U-Net: slice {start + 1}/{len(zs)}")
        chunk = zs[start : start + per_batch]
        x = np.stack([_slice_stack(arr, z, k, slice(ey0, ey1), slice(ex0, ex1)) for z in chunk])
        x = apply_range(x, lo, hi)
        if resample:
            x = resample_slices(x, (sy, sx), bundle.spacing_mm)
        prob = pred.predict(x)
        if resample:
            prob = resample_slices(prob, (sy, sx), bundle.spacing_mm, out_shape=(h, w))
        for z, p in zip(chunk, prob, strict=True):
            yield z, p[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]


def predict_probability(
    image: sitk.Image,
    model: str | os.PathLike[str] | UNetBundle,
    *,
    modality: str = "auto",
    roi_lps_mm: Sequence[float] | None = None,
    device: str = "auto",
    max_tile_pixels: int | None = None,
    tile_margin: int | None = None,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Lesion probability, float32 ``[z, y, x]`` on the image grid (0 outside the ROI box when one is given)."""
    _check_image(image, "image")
    bundle = load_unet_bundle(model)
    check_modality(bundle, image, modality)
    box = roi_index_box(image, roi_lps_mm) if roi_lps_mm is not None else None
    arr_shape = sitk.GetArrayViewFromImage(image).shape
    out = np.zeros(arr_shape, dtype=np.float32)
    _, _, y0, y1, x0, x1 = box if box is not None else (0, arr_shape[0], 0, arr_shape[1], 0, arr_shape[2])
    for z, p in iter_probability_slices(
        image,
        bundle,
        box,
        device=device,
        max_tile_pixels=max_tile_pixels,
        tile_margin=tile_margin,
        progress=progress,
        should_cancel=should_cancel,
    ):
        out[z, y0:y1, x0:x1] = p
    if progress is not None:
        progress(1.0, "done")
    return out


# --- lesions ----------------------------------------------------------------------------------------------
def components(
    mask: np.ndarray, spacing_xyz: Sequence[float], min_size_mm3: float
) -> tuple[np.ndarray, list[float], int]:
    """Face-connected components of ``mask`` ≥ ``min_size_mm3``, numbered 1… by decreasing volume.

    Returns (uint16 label map, volumes mm³ in label order, number of components dropped as too small).
    """
    voxel_mm3 = float(np.prod(spacing_xyz))
    lab, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, np.uint16), [], 0
    counts = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    volumes = counts * voxel_mm3
    keep = np.flatnonzero(volumes >= float(min_size_mm3))
    order = keep[np.argsort(-volumes[keep], kind="stable")]
    if len(order) >= np.iinfo(np.uint16).max:
        raise InputError(f"{len(order)} lesions found: too many for a label map (threshold too low?)")
    lut = np.zeros(n + 1, dtype=np.uint16)
    lut[order + 1] = np.arange(1, len(order) + 1, dtype=np.uint16)
    return lut[lab], [float(volumes[i]) for i in order], int(n - len(keep))


def _point_ball(
    image: sitk.Image, point: Sequence[float], radius_mm: float
) -> tuple[IndexBox, np.ndarray] | None:
    """Index box and boolean ball of voxels within ``radius_mm`` of a physical point (None if outside)."""
    size = np.asarray(image.GetSize())
    sp = np.asarray(image.GetSpacing(), dtype=float)
    c = np.asarray(image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in point)))
    r_vox = radius_mm / sp
    lo = np.clip(np.floor(c - r_vox).astype(int), 0, size)
    hi = np.clip(np.ceil(c + r_vox).astype(int) + 1, 0, size)
    if np.any(hi <= lo):
        return None
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    kk, jj, ii = np.meshgrid(*(np.arange(lo[a], hi[a]) for a in (2, 1, 0)), indexing="ij")
    d_idx = np.stack([ii - c[0], jj - c[1], kk - c[2]], axis=-1) * sp
    dist = np.linalg.norm(d_idx @ direction.T, axis=-1)
    ball = dist <= radius_mm
    if not ball.any():
        return None
    return (int(lo[2]), int(hi[2]), int(lo[1]), int(hi[1]), int(lo[0]), int(hi[0])), ball


def segment_lesions(
    image: sitk.Image,
    model: str | os.PathLike[str] | UNetBundle,
    *,
    modality: str = "auto",
    roi_lps_mm: Sequence[float] | None = None,
    points_lps_mm: Sequence[Sequence[float]] | None = None,
    threshold: float | None = None,
    min_size_mm3: float | None = None,
    exclude: np.ndarray | None = None,
    point_radius_mm: float = POINT_RADIUS_MM,
    snap_mm: float = SNAP_MM,
    context_mm: float = CONTEXT_MM,
    device: str = "auto",
    max_tile_pixels: int | None = None,
    tile_margin: int | None = None,
    keep_probability: bool = False,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
    source: str = "image",
) -> AutoSegResult:
    """Segment every lesion of ``image`` (or in an ROI, or at clicked points) with a U-Net model.

    Args:
        image: 3-D scalar image (CT in HU, MR/PET in their units).
        model: model folder (``radtyper seg train``) or a loaded :class:`~.bundle.UNetBundle`.
        modality: ``CT``, ``MR``, ``PET`` or ``auto`` (guessed from intensities); must match the model's.
        roi_lps_mm: optional box ``(x1, y1, z1, x2, y2, z2)``: two opposite corners in LPS mm.
        points_lps_mm: optional clicked points ``[(x, y, z), …]`` in LPS mm: only the lesions at these
            points are returned (searched in a box of half-width ``point_radius_mm``; a component must reach
            within ``snap_mm`` of the point). Combined with ``roi_lps_mm`` the boxes are clipped to the ROI.
        threshold: probability threshold (default: the model's).
        min_size_mm3: smallest lesion kept, mm³ (default: the model's).
        exclude: boolean ``[z, y, x]`` mask of voxels never labelled (e.g. the user's existing segments).
        device: ``auto`` (GPU when available), ``cpu`` or ``cuda``.
        max_tile_pixels, tile_margin: memory bound of one network input and tile overlap (see module doc).
        keep_probability: also return the probability map (float32, image grid).
        progress: ``progress(fraction, message)``; should_cancel: polled per batch of slices (raises
            :class:`~RadTyperLib.features.Cancelled`).
        source: name of the image in messages (e.g. its file name).

    Returns:
        :class:`AutoSegResult`: label map on the image grid + names (``lesion_1`` = largest) + volumes. An
        image without lesion gives an empty result with a message, not an error.

    Raises:
        InputError: model for another modality, bad ROI/points/threshold, ``exclude`` of another shape.
    """
    t0 = time.perf_counter()
    _check_image(image, source)
    bundle = load_unet_bundle(model)
    check_modality(bundle, image, modality, source)
    thr = bundle.threshold if threshold is None else float(threshold)
    if not 0.0 < thr < 1.0:
        raise InputError(f"probability threshold must be in (0, 1), got {thr}")
    min_mm3 = bundle.min_size_mm3 if min_size_mm3 is None else float(min_size_mm3)
    if not min_mm3 >= 0:
        raise InputError(f"minimum lesion size must be ≥ 0 mm³, got {min_mm3}")
    arr_shape = sitk.GetArrayViewFromImage(image).shape
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != arr_shape:
            raise InputError(
                f"exclude mask shape {exclude.shape} differs from the image {arr_shape} ([z, y, x])"
            )

    roi_box = roi_index_box(image, roi_lps_mm) if roi_lps_mm is not None else None
    full: IndexBox = (0, arr_shape[0], 0, arr_shape[1], 0, arr_shape[2])
    region = roi_box or full
    boxes: list[IndexBox]
    balls: list[tuple[IndexBox, np.ndarray] | None] = []
    messages: list[str] = []
    if points_lps_mm is not None:
        pts = [tuple(float(v) for v in p) for p in points_lps_mm]
        if not pts:
            raise InputError("no point given (points_lps_mm is empty)")
        boxes = []
        for i, p in enumerate(pts, start=1):
            b = point_index_box(image, p, point_radius_mm, f"point {i} ({', '.join(f'{v:g}' for v in p)}) mm")
            b = _intersect(b, region)
            if b is None:
                raise InputError(f"point {i} ({', '.join(f'{v:g}' for v in p)}) mm lies outside the ROI")
            boxes.append(b)
            balls.append(_point_ball(image, p, snap_mm))
    else:
        boxes = [region]

    torch_pred = SlicePredictor(
        bundle, device=device, max_tile_pixels=max_tile_pixels, tile_margin=tile_margin
    )
    mask = np.zeros(arr_shape, dtype=bool)
    prob_full = np.zeros(arr_shape, dtype=np.float32) if keep_probability else None
    done_slices = 0
    total_slices = sum(b[1] - b[0] for b in boxes)
    for b in boxes:
        z0, z1, y0, y1, x0, x1 = b
        span = (0.95 * done_slices / total_slices, 0.95 * (done_slices + z1 - z0) / total_slices)
        for z, p in iter_probability_slices(
            image,
            bundle,
            b,
            context_mm=context_mm,
            predictor=torch_pred,
            progress=progress,
            should_cancel=should_cancel,
            progress_span=span,
        ):
            mask[z, y0:y1, x0:x1] |= p >= thr
            if prob_full is not None:
                np.maximum(prob_full[z, y0:y1, x0:x1], p, out=prob_full[z, y0:y1, x0:x1])
        done_slices += z1 - z0
    if exclude is not None:
        mask &= ~exclude

    if progress is not None:
        progress(0.96, "connected components")
    ub = _box_union(boxes)
    sub = (slice(ub[0], ub[1]), slice(ub[2], ub[3]), slice(ub[4], ub[5]))
    spacing = image.GetSpacing()
    lab_sub, volumes, n_small = components(mask[sub], spacing, min_mm3)
    if points_lps_mm is not None:
        lab_sub, volumes = _keep_at_points(lab_sub, volumes, ub, balls, pts, snap_mm, messages)
    labels = np.zeros(arr_shape, dtype=np.uint16)
    labels[sub] = lab_sub
    names = [f"lesion_{i}" for i in range(1, len(volumes) + 1)]
    if not names:
        where = (
            "at the given point(s)"
            if points_lps_mm is not None
            else "in the ROI"
            if roi_box
            else "in the image"
        )
        messages.append(
            f"no lesion found {where} (probability ≥ {thr:g}, volume ≥ {min_mm3:g} mm³"
            + (f"; {n_small} smaller component(s) dropped" if n_small else "")
            + ")"
        )
    if progress is not None:
        progress(1.0, f"{len(names)} lesion(s)")
    return AutoSegResult(
        labels=labels,
        names=names,
        volumes_mm3=volumes,
        threshold=thr,
        min_size_mm3=min_mm3,
        n_removed_small=n_small,
        messages=messages,
        probability=prob_full,
        elapsed_s=time.perf_counter() - t0,
        max_input_pixels=torch_pred.max_window_pixels,
        forward_passes=torch_pred.n_forward,
    )


def _intersect(a: IndexBox, b: IndexBox) -> IndexBox | None:
    lo = [max(a[i], b[i]) for i in (0, 2, 4)]
    hi = [min(a[i], b[i]) for i in (1, 3, 5)]
    if any(h <= l for l, h in zip(lo, hi, strict=True)):
        return None
    return (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])


def _keep_at_points(
    lab: np.ndarray,
    volumes: list[float],
    origin_box: IndexBox,
    balls: list[tuple[IndexBox, np.ndarray] | None],
    points: list[tuple[float, ...]],
    snap_mm: float,
    messages: list[str],
) -> tuple[np.ndarray, list[float]]:
    """Keep the components reaching within ``snap_mm`` of a point; renumber 1… by decreasing volume."""
    keep: set[int] = set()
    for i, (ball, p) in enumerate(zip(balls, points, strict=True), start=1):
        hit: set[int] = set()
        if ball is not None:
            (z0, z1, y0, y1, x0, x1), m = ball
            oz, oy, ox = origin_box[0], origin_box[2], origin_box[4]
            # clip the ball's box to the label sub-array
            bz0, by0, bx0 = max(z0, oz), max(y0, oy), max(x0, ox)
            bz1, by1, bx1 = min(z1, origin_box[1]), min(y1, origin_box[3]), min(x1, origin_box[5])
            if bz1 > bz0 and by1 > by0 and bx1 > bx0:
                vals = lab[bz0 - oz : bz1 - oz, by0 - oy : by1 - oy, bx0 - ox : bx1 - ox]
                mm = m[bz0 - z0 : bz1 - z0, by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
                hit = {int(v) for v in np.unique(vals[mm]) if v}
        if not hit:
            messages.append(
                f"point {i} ({', '.join(f'{v:g}' for v in p)}) mm: no lesion within {snap_mm:g} mm"
            )
        keep |= hit
    order = sorted(keep, key=lambda v: (-volumes[v - 1], v))
    lut = np.zeros(len(volumes) + 1, dtype=np.uint16)
    for new, old in enumerate(order, start=1):
        lut[old] = new
    return lut[lab], [volumes[v - 1] for v in order]
