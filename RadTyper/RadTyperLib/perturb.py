"""Contour perturbations and rigid / scaling re-samplings of lesion masks (robustness and invariance studies).

* :func:`elastic_perturb` — random smooth ("elastic") deformation of a mask, the analogue of the contour
  perturbation of Wu et al. 2021 (Matlab ``affine3d`` elastic deformation; amplitude not published). A
  displacement field is drawn as Gaussian white noise on the voxel grid, smoothed per component with an
  isotropic Gaussian of ``sigma_mm`` (physical; σ_d = sigma_mm / s_d voxels along axis d) and rescaled so
  that the RMS of the displacement vector, measured in voxels of each axis (u_d / s_d), is ``rms_voxels``;
  the mask's 0/1 indicator is warped with it (trilinear interpolation) and re-thresholded at 0.5. The
  default, 1 voxel RMS with σ = :data:`DEFAULT_SIGMA_MM`, mimics a second delineation that wanders by about
  one voxel (in-plane pixel, slice) with a correlation length of a few millimetres; on a 5-mm-slice grid
  that is ~2.9 mm RMS along z. ``rms_mm`` gives an isotropic field instead (1 mm: Dice 0.63–0.99, median
  0.894 on the 35 real lesions of ``Resources/Scripts/study_shape_robustness.py``; 1 voxel: 0.51–0.99,
  median 0.885).
* :func:`resample_mask` / :func:`rotate_mask` — the mask rotated about its centroid (arbitrary angles) and
  optionally shifted, resampled on a grid large enough to hold it (linear interpolation of the 0/1
  indicator thresholded at 0.5, or of the signed distance thresholded at 0).
* :func:`roll_mask`, :func:`shift_origin`, :func:`pad_mask`, :func:`scale_image_geometry` — exact
  translations (integer voxel roll, origin change, padding) and the ×s spacing change (a lesion scaled by s,
  same voxels).

Arrays are ``[z, y, x]``; spacings, origins and angles are (x, y, z). Rotation angles are about the image's
grid axes (i, j, k) — for an axial series (0, 0, θ) is an in-plane rotation about the slice normal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

__all__ = [
    "DEFAULT_SIGMA_MM",
    "ElasticPerturbation",
    "elastic_perturb",
    "grid_rotation",
    "pad_mask",
    "resample_mask",
    "roll_mask",
    "rotate_mask",
    "scale_image_geometry",
    "shift_origin",
    "signed_distance",
    "smooth_displacement_field",
]

#: Correlation scale (mm) of the elastic displacement field: the Gaussian σ applied to the white noise.
DEFAULT_SIGMA_MM: float = 3.0


# ------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------
def _spacing(spacing_xyz: Sequence[float]) -> np.ndarray:
    s = np.asarray(spacing_xyz, dtype=float)
    if s.shape != (3,) or not np.all(np.isfinite(s) & (s > 0)):
        raise ValueError(f"spacing must be 3 positive numbers (x, y, z), got {spacing_xyz!r}")
    return s


def _mask3d(mask_zyx: np.ndarray) -> np.ndarray:
    m = np.asarray(mask_zyx) != 0
    if m.ndim != 3:
        raise ValueError(f"expected a 3-D [z, y, x] mask, got {m.ndim}-D")
    return m


def signed_distance(mask_zyx: np.ndarray, spacing_xyz: Sequence[float]) -> np.ndarray:
    """Signed distance (mm) between voxel centres: > 0 outside (to the nearest lesion voxel), < 0 inside.

    Thresholding it at 0 gives the mask back exactly. On an isotropic grid its linear interpolation crosses 0
    half-way between an inside and an outside voxel centre; on a thick-slice grid it does not (the distance
    to the nearest voxel of the other side is mostly in-plane), see :func:`elastic_perturb`.
    """
    m = _mask3d(mask_zyx)
    sampling = _spacing(spacing_xyz)[::-1]
    if not m.any():
        return np.full(m.shape, np.inf)
    out = ndi.distance_transform_edt(~m, sampling=sampling)
    inside = ndi.distance_transform_edt(m, sampling=sampling) if (~m).any() else np.full(m.shape, np.inf)
    return np.where(m, -inside, out)


def _bbox(mask: np.ndarray, margin: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(mask)
    return idx.min(axis=0) - np.asarray(margin), idx.max(axis=0) + 1 + np.asarray(margin)


def _crop_padded(mask: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``mask[lo:hi]`` with zero padding where the box leaves the array."""
    sub = np.zeros(tuple(hi - lo), dtype=mask.dtype)
    src_lo, src_hi = np.maximum(lo, 0), np.minimum(hi, mask.shape)
    sub[tuple(slice(a - b, c - b) for a, b, c in zip(src_lo, lo, src_hi, strict=True))] = mask[
        tuple(slice(a, c) for a, c in zip(src_lo, src_hi, strict=True))
    ]
    return sub


def _paste(shape: tuple[int, ...], sub: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_crop_padded`: ``sub`` placed at ``lo`` in a zero array of ``shape`` (clipped)."""
    out = np.zeros(shape, dtype=sub.dtype)
    hi = lo + np.asarray(sub.shape)
    src_lo, src_hi = np.maximum(lo, 0), np.minimum(hi, shape)
    out[tuple(slice(a, c) for a, c in zip(src_lo, src_hi, strict=True))] = sub[
        tuple(slice(a - b, c - b) for a, b, c in zip(src_lo, lo, src_hi, strict=True))
    ]
    return out


# ------------------------------------------------------------------------------------------------------
# elastic perturbation
# ------------------------------------------------------------------------------------------------------
def smooth_displacement_field(
    shape_zyx: Sequence[int],
    spacing_xyz: Sequence[float],
    *,
    rms_voxels: float = 1.0,
    sigma_mm: float = DEFAULT_SIGMA_MM,
    rng: np.random.Generator | int | None = None,
    rms_mm: float | None = None,
) -> np.ndarray:
    """Random smooth displacement field ``(3, z, y, x)`` in *voxels* of each axis (components z, y, x).

    Each component is Gaussian white noise smoothed with σ = ``sigma_mm`` (per-axis σ in voxels
    ``sigma_mm / s_d``, reflecting boundaries), then scaled to an RMS of ``rms_voxels / √3``, so that the RMS
    length of the displacement vector (in voxel units) is ``rms_voxels``; with ``rms_mm``
    instead, component d is scaled to ``rms_mm / (√3 s_d)`` voxels (an isotropic field of RMS length
    ``rms_mm`` millimetres). Multiply component d by ``s_d`` for millimetres. The scaling uses the exact
    standard deviation of the smoothed noise (product of the kernels' L2 norms), so the RMS holds in
    expectation at every voxel; within ~2σ of the array border the reflecting boundary raises it — make the
    array that much larger than the region of interest.
    """
    s = _spacing(spacing_xyz)
    if rms_mm is not None:
        if not (np.isfinite(rms_mm) and rms_mm >= 0):
            raise ValueError(f"rms_mm must be ≥ 0, got {rms_mm!r}")
        scale = rms_mm / np.sqrt(3.0) / s[::-1]
    elif not (np.isfinite(rms_voxels) and rms_voxels >= 0):
        raise ValueError(f"rms_voxels must be ≥ 0, got {rms_voxels!r}")
    else:
        scale = np.full(3, rms_voxels / np.sqrt(3.0))
    if not (np.isfinite(sigma_mm) and sigma_mm > 0):
        raise ValueError(f"sigma_mm must be > 0, got {sigma_mm!r}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    shape = tuple(int(n) for n in shape_zyx)
    sig_vox = sigma_mm / s[::-1]
    field = np.empty((3, *shape))
    # standard deviation of smoothed unit white noise away from the borders: Π_d ‖kernel_d‖₂ (separable)
    std = 1.0
    for sv in sig_vox:
        delta = np.zeros(2 * int(4.0 * sv + 0.5) + 3)
        delta[len(delta) // 2] = 1.0
        std *= float(np.linalg.norm(ndi.gaussian_filter1d(delta, sv, mode="constant")))
    for c in range(3):
        g = ndi.gaussian_filter(gen.standard_normal(shape), sig_vox, mode="reflect")
        field[c] = g * (scale[c] / std)
    return field


@dataclass
class ElasticPerturbation:
    """Result of :func:`elastic_perturb`.

    Attributes:
        mask: the perturbed ``[z, y, x]`` bool mask (same shape as the input).
        rms_voxels: realised RMS displacement (voxels of each axis) over the lesion's boundary band (voxels
            next to the contour: |signed distance| ≤ the largest voxel size).
        rms_mm: the same in millimetres.
        dice: Dice overlap between the original and the perturbed mask.
        sigma_mm: the field's smoothing σ (mm).
    """

    mask: np.ndarray
    rms_voxels: float
    rms_mm: float
    dice: float
    sigma_mm: float


def elastic_perturb(
    mask_zyx: np.ndarray,
    spacing_xyz: Sequence[float],
    *,
    rms_voxels: float = 1.0,
    sigma_mm: float = DEFAULT_SIGMA_MM,
    seed: int | np.random.Generator | None = 0,
    method: str = "linear",
    rms_mm: float | None = None,
) -> ElasticPerturbation:
    """Random elastic perturbation of a lesion mask (see the module docstring); deterministic for a seed.

    The mask is sampled at ``x + u(x)`` (``u`` from :func:`smooth_displacement_field` on the lesion box plus
    a margin of ``3·rms + 2`` voxels and ``2σ``), i.e. the contour moves by −u locally. ``rms_mm`` (instead
    of ``rms_voxels``) asks for an isotropic field of that RMS length in millimetres. ``method``:
    ``"linear"`` (default) — trilinear interpolation of the 0/1 indicator, ≥ 0.5; ``"distance"`` — of the
    signed distance map (:func:`signed_distance`), < 0. The indicator is the unbiased choice on thick-slice
    grids: the voxel-centre distance map there is dominated by the in-plane distance, so its zero crossing
    between two slices sits next to the inside slice and any z displacement erodes the lesion (−30 % volume
    on a 3-slice nodule at 5 mm). Voxels pushed outside the image are lost.
    """
    m = _mask3d(mask_zyx)
    s = _spacing(spacing_xyz)
    if method not in ("linear", "distance"):
        raise ValueError(f"method must be 'linear' or 'distance', got {method!r}")
    if not m.any():
        return ElasticPerturbation(m.copy(), 0.0, 0.0, float("nan"), float(sigma_mm))
    rms_axis = np.full(3, rms_voxels) if rms_mm is None else rms_mm / s[::-1]  # z, y, x voxels (bound)
    move = np.ceil(3.0 * rms_axis).astype(int) + 2
    field_margin = np.ceil(2.0 * sigma_mm / s[::-1]).astype(int)
    lo, hi = _bbox(m, move)
    sub = _crop_padded(m, lo, hi)
    sdf = signed_distance(sub, s)
    big = np.asarray(sub.shape) + 2 * field_margin
    u = smooth_displacement_field(big, s, rms_voxels=rms_voxels, sigma_mm=sigma_mm, rng=seed, rms_mm=rms_mm)
    u = u[(slice(None), *(slice(f, f + n) for f, n in zip(field_margin, sub.shape, strict=True)))]
    coords = np.indices(sub.shape, dtype=float) + u
    if method == "linear":
        val = ndi.map_coordinates(sub.astype(np.float32), coords, order=1, mode="constant", cval=0.0)
        warped = val >= 0.5 - 1e-6
    else:
        warped = ndi.map_coordinates(sdf, coords, order=1, mode="nearest") < 0.0
    out = _paste(m.shape, warped, lo)

    band = np.abs(sdf) <= float(np.max(s))  # voxels next to the contour
    uv = u[:, band]
    rms_v = float(np.sqrt(np.mean(np.sum(uv * uv, axis=0))))
    realised_mm = float(np.sqrt(np.mean(np.sum((uv * s[::-1, None]) ** 2, axis=0))))
    dice = 2.0 * np.count_nonzero(out & m) / (np.count_nonzero(out) + np.count_nonzero(m))
    return ElasticPerturbation(out, rms_v, realised_mm, float(dice), float(sigma_mm))


# ------------------------------------------------------------------------------------------------------
# rigid transforms and resampling
# ------------------------------------------------------------------------------------------------------
def grid_rotation(angles_deg: Sequence[float]) -> np.ndarray:
    """Rotation matrix about the grid x, then y, then z axis (degrees): ``Rz @ Ry @ Rx``."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=float))
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def resample_mask(
    mask_zyx: np.ndarray,
    reference: sitk.Image,
    *,
    angles_deg: Sequence[float] = (0.0, 0.0, 0.0),
    shift_voxels: Sequence[float] = (0.0, 0.0, 0.0),
    spacing: Sequence[float] | None = None,
    method: str = "linear",
    margin_voxels: int = 3,
) -> tuple[np.ndarray, sitk.Image]:
    """The lesion rotated about its centroid by ``angles_deg`` (grid axes) and shifted, on a fresh grid.

    Args:
        mask_zyx: lesion mask on ``reference``'s grid.
        reference: image giving the geometry (spacing, origin, direction).
        angles_deg: rotation about the grid x, y, z axes through the lesion centroid (:func:`grid_rotation`).
        shift_voxels: translation (x, y, z) in voxels of ``reference`` (fractions re-voxelise the lesion).
        spacing: spacing of the output grid (default: ``reference``'s). The output keeps the direction and
            lies on the input lattice (origin = reference origin + integer multiples of ``spacing``), so with
            no rotation, no shift and the same spacing the mask comes back unchanged.
        method: ``"linear"`` — trilinear interpolation of the 0/1 indicator, ≥ 0.5 (an output point exactly
            on a voxel face, value 0.5, counts as inside: an integer up-sampling factor, whose points fall on
            the faces, therefore dilates the staircase by one output layer on half of its faces; prefer a
            non-integer ratio); ``"distance"`` — trilinear interpolation of the signed distance map, < 0
            (biased on thick-slice grids, see :func:`elastic_perturb`).
        margin_voxels: empty voxels kept around the transformed lesion box.

    Returns:
        (bool mask ``[z, y, x]``, reference image of the output grid (uint8, empty)).
    """
    m = _mask3d(mask_zyx)
    if not m.any():
        raise ValueError("empty mask")
    if method not in ("linear", "distance"):
        raise ValueError(f"method must be 'linear' or 'distance', got {method!r}")
    s_in = np.array(reference.GetSpacing(), float)
    s_out = s_in if spacing is None else _spacing(spacing)
    d = np.array(reference.GetDirection(), float).reshape(3, 3)
    o = np.array(reference.GetOrigin(), float)
    r = grid_rotation(angles_deg)

    # the lesion box (+2 voxels of background) as an image on the input lattice
    lo, hi = _bbox(m, [2, 2, 2])
    sub = _crop_padded(m, lo, hi)
    if method == "linear":
        src = sitk.GetImageFromArray(sub.astype(np.float32))
        outside = 0.0
    else:
        sdf = signed_distance(sub, s_in)
        src = sitk.GetImageFromArray(sdf.astype(np.float32))
        outside = float(sdf.max())
    src.SetSpacing([float(v) for v in s_in])
    src.SetDirection([float(v) for v in d.ravel()])
    src.SetOrigin([float(v) for v in o + d @ (lo[::-1] * s_in)])

    # grid-frame mm (index × spacing); centroid of the voxel centres
    centre = np.argwhere(m)[:, ::-1].mean(axis=0) * s_in
    shift_mm = np.asarray(shift_voxels, float) * s_in
    corners_idx = np.array(
        [[a, b, c] for a in (lo[2], hi[2] - 1) for b in (lo[1], hi[1] - 1) for c in (lo[0], hi[0] - 1)]
    )
    corners = (corners_idx * s_in - centre) @ r.T + centre + shift_mm
    first = np.floor(corners.min(axis=0) / s_out).astype(int) - margin_voxels
    last = np.ceil(corners.max(axis=0) / s_out).astype(int) + margin_voxels
    out_ref = sitk.Image([int(n) for n in last - first + 1], sitk.sitkUInt8)
    out_ref.SetSpacing([float(v) for v in s_out])
    out_ref.SetDirection([float(v) for v in d.ravel()])
    out_ref.SetOrigin([float(v) for v in o + d @ (first * s_out)])

    # output point q ← input point R⁻¹(q − c − shift) + c, in physical coordinates (R_phys = D R Dᵀ)
    a = d @ r.T @ d.T
    tx = sitk.AffineTransform(3)
    tx.SetMatrix([float(v) for v in a.ravel()])
    tx.SetCenter([float(v) for v in o + d @ centre])
    tx.SetTranslation([float(v) for v in -(a @ (d @ shift_mm))])
    res = sitk.Resample(src, out_ref, tx, sitk.sitkLinear, outside, sitk.sitkFloat32)
    val = sitk.GetArrayFromImage(res)
    out = val >= 0.5 - 1e-6 if method == "linear" else val < 0.0
    return out, out_ref


def rotate_mask(
    mask_zyx: np.ndarray,
    reference: sitk.Image,
    angles_deg: Sequence[float],
    *,
    spacing: Sequence[float] | None = None,
    method: str = "linear",
) -> tuple[np.ndarray, sitk.Image]:
    """The lesion rotated about its centroid by ``angles_deg`` (grid x, y, z axes), resampled on a grid large
    enough to hold it (see :func:`resample_mask`). Returns (mask, reference of the new grid)."""
    return resample_mask(mask_zyx, reference, angles_deg=angles_deg, spacing=spacing, method=method)


def pad_mask(mask_zyx: np.ndarray, reference: sitk.Image, pad_voxels: int) -> tuple[np.ndarray, sitk.Image]:
    """The mask with ``pad_voxels`` empty voxels added on every side, and the matching reference (origin moved
    back along each grid axis): the same lesion at the same physical place on a larger array."""
    n = int(pad_voxels)
    m = np.pad(_mask3d(mask_zyx), n)
    d = np.array(reference.GetDirection(), float).reshape(3, 3)
    ref = sitk.Image([int(v) for v in m.shape[::-1]], sitk.sitkUInt8)
    ref.SetSpacing(reference.GetSpacing())
    ref.SetDirection(reference.GetDirection())
    origin = np.array(reference.GetOrigin(), float) - d @ (n * np.array(reference.GetSpacing(), float))
    ref.SetOrigin([float(v) for v in origin])
    return m, ref


def roll_mask(mask_zyx: np.ndarray, shift_voxels_xyz: Sequence[int]) -> np.ndarray:
    """The mask moved by whole voxels (x, y, z); raises ValueError when the lesion would leave the array."""
    m = _mask3d(mask_zyx)
    sh = np.asarray([int(v) for v in shift_voxels_xyz])[::-1]
    idx = np.argwhere(m)
    if idx.size and (np.any(idx.min(axis=0) + sh < 0) or np.any(idx.max(axis=0) + sh >= m.shape)):
        raise ValueError(f"rolling by {tuple(shift_voxels_xyz)} voxels moves the lesion out of the array")
    return np.roll(m, tuple(sh), axis=(0, 1, 2))


def shift_origin(image: sitk.Image, shift_mm: Sequence[float]) -> sitk.Image:
    """A copy of ``image`` with its origin moved by ``shift_mm`` (physical LPS mm): a pure translation."""
    out = sitk.Image(image)
    out.SetOrigin([float(a) + float(b) for a, b in zip(image.GetOrigin(), shift_mm, strict=True)])
    return out


def scale_image_geometry(image: sitk.Image, factor: float, *, scale_origin: bool = False) -> sitk.Image:
    """A copy of ``image`` with the spacing multiplied by ``factor`` (same voxels: the lesion scaled by s).

    Lengths then scale by ``factor``, areas by ``factor²`` and volumes by ``factor³``; normalised shape
    features should not change. ``scale_origin`` also scales the origin (scaling about the LPS origin).
    """
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be > 0, got {factor!r}")
    out = sitk.Image(image)
    out.SetSpacing([float(v) * factor for v in image.GetSpacing()])
    if scale_origin:
        out.SetOrigin([float(v) * factor for v in image.GetOrigin()])
    return out
