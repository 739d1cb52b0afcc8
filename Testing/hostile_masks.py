"""Seeded random hostile lesion masks and the physical-range check of a lesion's features (issue 13).

:func:`hostile_case` draws one case from a seed: a mask of one of :data:`KINDS` (tiny, thin plates, needles,
rings, many components, hollow balls, holes, border-touching blobs, random blobs) on an isotropic,
anisotropic or oblique grid, inside a CT-like image. :func:`check_row` returns the list of violations of a
computed row (non-finite values, values outside their physical range); empty = the row is sound. Used by
``Testing/test_hostile_inputs.py`` (CI portion) and ``Resources/Scripts/hostile_inputs.py`` (large run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

KINDS: tuple[str, ...] = (
    "tiny",
    "plate",
    "needle",
    "ring",
    "components",
    "hollow",
    "holes",
    "border",
    "blob",
)
SPACINGS: tuple[tuple[float, float, float], ...] = (
    (1.0, 1.0, 1.0),
    (0.7, 0.7, 5.0),
    (0.5, 0.5, 3.0),
    (2.0, 1.0, 1.0),
    (0.8, 0.8, 2.5),
)


@dataclass
class HostileCase:
    seed: int
    kind: str
    spacing: tuple[float, float, float]
    oblique: bool
    image: sitk.Image
    labels: sitk.Image

    @property
    def label(self) -> str:
        sp = "x".join(f"{s:g}" for s in self.spacing)
        return f"seed {self.seed}: {self.kind}, spacing {sp} mm{', oblique' if self.oblique else ''}"


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _coords(shape: tuple[int, int, int], spacing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, y, x = np.indices(shape, dtype=float)
    return z * spacing[2], y * spacing[1], x * spacing[0]


def _mask(kind: str, rng: np.random.Generator, shape, spacing) -> np.ndarray:
    z, y, x = _coords(shape, spacing)
    ext = np.array([shape[0] * spacing[2], shape[1] * spacing[1], shape[2] * spacing[0]])
    c = ext / 2 + rng.uniform(-0.1, 0.1, 3) * ext
    dz, dy, dx = z - c[0], y - c[1], x - c[2]
    pts = np.stack([dz, dy, dx], axis=-1)
    rot = _rotation(rng)
    local = pts @ rot  # random orientation of the object
    r = np.linalg.norm(pts, axis=-1)
    if kind == "tiny":
        m = np.zeros(shape, bool)
        centre = np.array(shape) // 2
        for _ in range(int(rng.integers(1, 13))):
            m[tuple(np.clip(centre + rng.integers(-1, 2, 3), 0, np.array(shape) - 1))] = True
        return m
    if kind == "plate":
        half = rng.uniform(4, 14)
        thick = rng.uniform(0.2, 1.5) * min(spacing)
        return (
            (np.abs(local[..., 0]) <= thick)
            & (np.abs(local[..., 1]) <= half)
            & (np.abs(local[..., 2]) <= half)
        )
    if kind == "needle":
        length = rng.uniform(6, 18)
        return (np.hypot(local[..., 1], local[..., 2]) <= rng.uniform(0.3, 1.2) * max(spacing)) & (
            np.abs(local[..., 0]) <= length
        )
    if kind == "ring":
        big, small = rng.uniform(6, 12), rng.uniform(1.5, 4)
        rho = np.hypot(local[..., 1], local[..., 2])
        return np.hypot(rho - big, local[..., 0]) <= small
    if kind == "components":
        m = np.zeros(shape, bool)
        for _ in range(int(rng.integers(2, 9))):
            cc = rng.uniform(0.2, 0.8, 3) * ext
            m |= (z - cc[0]) ** 2 + (y - cc[1]) ** 2 + (x - cc[2]) ** 2 <= rng.uniform(1.0, 5.0) ** 2
        return m
    if kind == "hollow":
        outer = rng.uniform(6, 12)
        return (r <= outer) & (r >= outer - rng.uniform(1.0, 3.0))
    if kind == "holes":
        m = r <= rng.uniform(7, 12)
        for _ in range(int(rng.integers(1, 6))):
            hc = rng.uniform(-4, 4, 3)
            m &= (dz - hc[0]) ** 2 + (dy - hc[1]) ** 2 + (dx - hc[2]) ** 2 > rng.uniform(0.5, 2.5) ** 2
        return m
    if kind == "border":
        axis = int(rng.integers(0, 3))
        cc = c.copy()
        cc[axis] = rng.choice([0.0, ext[axis]]) + rng.uniform(-3, 3)
        return (z - cc[0]) ** 2 + (y - cc[1]) ** 2 + (x - cc[2]) ** 2 <= rng.uniform(5, 12) ** 2
    if kind == "blob":
        from scipy import ndimage

        noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.0, 3.0))
        m = (noise > np.quantile(noise, rng.uniform(0.93, 0.995))) & (r <= rng.uniform(8, 15))
        return m
    raise ValueError(kind)


def hostile_case(seed: int) -> HostileCase:
    """One random case (deterministic for a seed); the mask may be empty-ish, thin or cut by the border."""
    rng = np.random.default_rng([13, seed])
    kind = KINDS[seed % len(KINDS)]
    spacing = SPACINGS[int(rng.integers(len(SPACINGS)))]
    oblique = bool(rng.random() < 0.4)
    fov = rng.uniform(36, 60)  # mm
    shape = tuple(int(max(4, math.ceil(fov / s))) for s in (spacing[2], spacing[1], spacing[0]))
    mask = _mask(kind, rng, shape, spacing)
    if not mask.any():  # keep one voxel so the case is a lesion at all
        mask[tuple(np.array(shape) // 2)] = True
    img = (-820.0 + 25.0 * rng.standard_normal(shape)).astype(np.float32)
    img[mask] = 30.0 + 15.0 * rng.standard_normal(int(mask.sum()))
    image = sitk.GetImageFromArray(img)
    image.SetSpacing(spacing)
    image.SetOrigin(tuple(float(v) for v in rng.uniform(-100, 100, 3)))
    if oblique:
        image.SetDirection(tuple(float(v) for v in _rotation(rng).ravel()))
    labels = sitk.GetImageFromArray(mask.astype(np.uint8))
    labels.CopyInformation(image)
    return HostileCase(seed, kind, spacing, oblique, image, labels)


def check_row(row: dict, voxel_count: int, voxel_mm3: float, box_diag_mm: float) -> list[str]:
    """Violations of physical ranges in a computed lesion row (empty list: sound)."""
    bad: list[str] = []

    def val(k: str) -> float:
        return float(row[k])

    for k, v in row.items():
        if k.startswith(("shape_", "burden_", "region_", "lesion_", "radiomics_")):
            try:
                f = float(v)
            except (TypeError, ValueError):
                bad.append(f"{k} not a number ({v!r})")
                continue
            if not math.isfinite(f):
                bad.append(f"{k} = {f}")
    if bad:
        return bad
    tol = 1e-9

    def check(cond: bool, text: str) -> None:
        if not cond:
            bad.append(text)

    check(0 < val("burden_volume_mm3") <= voxel_count * voxel_mm3 * 8 + tol, "burden_volume_mm3 out of range")
    check(0 < val("burden_mean_radius_mm") <= box_diag_mm, "burden_mean_radius_mm out of range")
    axes = [val(f"burden_semiaxis_{i}_mm") for i in (1, 2, 3)]
    check(0 <= axes[0] <= axes[1] <= axes[2] <= box_diag_mm, f"semi-axes {axes}")
    for k in row:
        if k.startswith(("shape_coef_", "shape_energy_", "shape_axis_norm_")):
            check(val(k) >= 0, f"{k} < 0")
        if k.startswith("shape_entropy_l"):
            l = int(k[-2:])
            check(-1e-4 <= val(k) <= math.log(2 * l + 1) + 1e-6, f"{k} = {val(k)}")
        if k.startswith("region_") and k.endswith("_correl"):
            check(-1 - tol <= val(k) <= 1 + tol, f"{k} = {val(k)}")
        if k.startswith("region_") and k.endswith(("_intersect", "_bhattacharyya")):
            check(-tol <= val(k) <= 1 + tol, f"{k} = {val(k)}")
        if k.startswith("region_") and k.endswith("_chisqr"):
            check(val(k) >= -tol, f"{k} = {val(k)}")
    check(
        abs(val("lesion_volume_ml") - voxel_count * voxel_mm3 / 1000) <= 1e-9 * max(1.0, voxel_count),
        "lesion_volume_ml differs from the voxel count",
    )
    check(
        box_diag_mm + 1e-6
        >= val("lesion_feret_mm")
        >= val("lesion_recist_long_mm") - 1e-9
        >= val("lesion_recist_short_mm") - 2e-9
        > 0,
        "diameters not ordered feret ≥ long ≥ short > 0",
    )
    check(val("lesion_surface_mm2") > 0, "lesion_surface_mm2 ≤ 0")
    check(0 < val("lesion_sphericity") <= 1 + 1e-9, f"lesion_sphericity = {val('lesion_sphericity')}")
    return bad
