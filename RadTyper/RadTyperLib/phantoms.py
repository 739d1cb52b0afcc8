"""Synthetic patients ("phantoms") for the tests and the ``radtyper demo``.

Two levels:

* :func:`shape_mask` voxelises one continuous lesion shape (sphere, ellipsoid, lobulated, spiculated, C-shape,
  dumbbell) on its own grid, optionally rotated, for unit tests of the shape features;
  :func:`analytic_volume_mm3` gives the exact volume of the kinds that have one.
* :func:`make_patient` / :func:`make_phantom` build a whole CT-like (or MR-like) torso with body outline, fat,
  muscle, two lungs with vessels, heart, aorta, trachea, liver and spine, and insert lesions described by
  :class:`LesionSpec` (default: :func:`default_lesions`, 8 lesions at 4 sites covering every shape, both
  margins and all textures). :func:`RadTyperLib.io.write_patient` saves one (NRRD + ``.seg.nrrd`` + ``sites.csv``).

Coordinates: numpy arrays are ``[z, y, x]``; spacing, sizes and positions are ``(x, y, z)`` in mm. Lesion
positions are given in the phantom's *anatomical frame*: LPS axes (x → patient left, y → posterior,
z → superior), origin at the centre of the volume. For ``oblique=False`` this is exactly the physical frame of
the returned images; for ``oblique=True`` the voxel arrays are identical and physical = ``R @ anatomical``
with ``R`` = :data:`OBLIQUE_ROTATION` (the image direction matrix).

Everything is deterministic: all randomness comes from ``np.random.default_rng`` streams keyed by the seed
(no global RNG). Lesion and organ *masks* do not depend on the seed (shape randomness uses
:attr:`LesionSpec.shape_seed`); the seed changes the noise, the tissue texture and the lesion textures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation
from scipy.special import erfc

from .errors import InputError, LesionError
from .patient import Lesion, Patient
from .sites import normalize_site

#: Shape kinds understood by :func:`shape_mask` and :class:`LesionSpec`.
SHAPE_KINDS: tuple[str, ...] = ("sphere", "ellipsoid", "lobulated", "spiculated", "c_shape", "dumbbell")
MARGINS: tuple[str, ...] = ("sharp", "blurred")
TEXTURES: tuple[str, ...] = ("homogeneous", "heterogeneous", "necrotic")
MODALITIES: tuple[str, ...] = ("CT", "MR")

#: Default voxel size (x, y, z) in mm of :func:`make_patient`: 200 × 160 × 80 voxels.
DEFAULT_SPACING: tuple[float, float, float] = (1.5, 1.5, 2.5)
#: Extent (x, y, z) in mm of the phantom volume, whatever the spacing.
FIELD_OF_VIEW_MM: tuple[float, float, float] = (300.0, 240.0, 200.0)
#: Euler angles (degrees, extrinsic x-y-z) of the direction matrix of ``make_patient(oblique=True)``.
OBLIQUE_EULER_DEG: tuple[float, float, float] = (12.0, -9.0, 25.0)
#: The direction matrix of the oblique phantom (columns = LPS directions of the image axes).
OBLIQUE_ROTATION: np.ndarray = Rotation.from_euler("xyz", OBLIQUE_EULER_DEG, degrees=True).as_matrix()

#: Lesion colours (RGB in [0, 1]) assigned in spec order, cycling.
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.902, 0.098, 0.294),
    (0.235, 0.706, 0.294),
    (0.000, 0.510, 0.784),
    (0.961, 0.510, 0.188),
    (0.569, 0.118, 0.706),
    (0.275, 0.941, 0.941),
    (0.941, 0.196, 0.902),
    (0.824, 0.961, 0.235),
    (0.980, 0.745, 0.831),
    (0.000, 0.502, 0.502),
)

#: Organ mask (key of :attr:`Phantom.organs`) a lesion of each site must lie in.
SITE_ORGAN: dict[str, str] = {"lung": "lung", "liver": "liver", "lymph_node": "mediastinum", "bone": "spine"}

RotationLike = Any  # None | 3×3 rotation matrix | 3 Euler angles in degrees (extrinsic x-y-z)


# ================================================================================================
# Continuous shapes
# ================================================================================================
def rotation_matrix(rotation: RotationLike) -> np.ndarray:
    """3×3 rotation matrix from None (identity), a 3×3 matrix, or 3 Euler angles (degrees, extrinsic xyz)."""
    if rotation is None:
        return np.eye(3)
    r = np.asarray(rotation, dtype=float)
    if r.shape == (3,):
        return Rotation.from_euler("xyz", r, degrees=True).as_matrix()
    if r.shape == (3, 3):
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
            raise ValueError("rotation matrix must be orthonormal with determinant +1")
        return r
    raise ValueError(f"rotation must be a 3×3 matrix or 3 Euler angles in degrees, got shape {r.shape}")


def _fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly evenly spread unit vectors, shape (n, 3)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    s = np.sqrt(1.0 - z * z)
    return np.stack([s * np.cos(phi), s * np.sin(phi), z], axis=1)


def _legendre(l: int, t: np.ndarray) -> np.ndarray:
    """Legendre polynomial P_l(t) for l = 2, 3, 4."""
    if l == 2:
        return 0.5 * (3.0 * t * t - 1.0)
    if l == 3:
        return 0.5 * (5.0 * t**3 - 3.0 * t)
    if l == 4:
        return (35.0 * t**4 - 30.0 * t * t + 3.0) / 8.0
    raise ValueError(f"degree {l} not supported")


def _scalar(kind: str, size_mm: float | Sequence[float]) -> float:
    arr = np.atleast_1d(np.asarray(size_mm, dtype=float))
    if arr.size != 1:
        raise ValueError(f"{kind}: size_mm must be one number (a radius in mm), got {size_mm!r}")
    value = float(arr[0])
    if not value > 0:
        raise ValueError(f"{kind}: size_mm must be > 0, got {value}")
    return value


class _Shape:
    """A continuous solid in its local frame (mm, centred at 0); ``inside`` tests points."""

    def __init__(self, kind: str, size_mm: float | Sequence[float], seed: int = 0, **params: float) -> None:
        if kind not in SHAPE_KINDS:
            raise ValueError(f"unknown shape kind '{kind}'; use one of: {', '.join(SHAPE_KINDS)}")
        self.kind = kind
        p = dict(params)
        if kind == "ellipsoid":
            axes = np.broadcast_to(np.asarray(size_mm, dtype=float), (3,)).astype(float)
            if np.any(axes <= 0):
                raise ValueError(f"ellipsoid: semi-axes must be > 0, got {size_mm!r}")
            self.axes = axes
            self.bound = float(axes.max())
        else:
            r = _scalar(kind, size_mm)
            self.r = r
            self.bound = r
        if kind == "lobulated":
            self.amplitude = float(p.pop("amplitude", 0.2))
            n_lobes = int(p.pop("n_lobes", 3))
            if not 0 <= self.amplitude < 1:
                raise ValueError("lobulated: amplitude must be in [0, 1)")
            rng = np.random.default_rng([int(seed), 101])
            dirs = rng.normal(size=(n_lobes, 3))
            self.lobe_dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
            self.lobe_degrees = [int(d) for d in rng.integers(2, 5, size=n_lobes)]
            self.lobe_weights = rng.uniform(0.5, 1.0, size=n_lobes) * rng.choice([-1.0, 1.0], size=n_lobes)
            f = self._lobe_field(_fibonacci_sphere(4000))
            self.lobe_scale = float(np.abs(f).max()) or 1.0
            self.bound = self.r * (1.0 + self.amplitude)
        elif kind == "spiculated":
            n = int(p.pop("n_spikes", 8))
            self.spike_length = float(p.pop("spike_length_mm", self.r))
            self.spike_radius = float(p.pop("spike_radius_mm", 0.25 * self.r))
            self.spike_start = 0.7 * self.r
            rng = np.random.default_rng([int(seed), 202])
            q = rng.normal(size=4)
            rot = Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()
            self.spike_dirs = _fibonacci_sphere(n) @ rot.T if n > 0 else np.zeros((0, 3))
            self.bound = self.r + self.spike_length
        elif kind == "c_shape":
            self.minor = float(p.pop("minor_radius_mm", 0.4 * self.r))
            self.arc = math.radians(float(p.pop("arc_deg", 270.0)))
            if not 0 < self.minor < self.r:
                raise ValueError("c_shape: need 0 < minor_radius_mm < major radius (size_mm)")
            if not 0 < self.arc < 2 * math.pi:
                raise ValueError("c_shape: arc_deg must be in (0, 360)")
            half = self.arc / 2
            self.ends = np.array(
                [[self.r * math.cos(s * half), self.r * math.sin(s * half), 0.0] for s in (-1, 1)]
            )
            self.bound = self.r + self.minor
        elif kind == "dumbbell":
            self.separation = float(p.pop("separation_mm", 3.0 * self.r))
            self.neck = float(p.pop("neck_radius_mm", 0.4 * self.r))
            if not 0 < self.neck < self.r:
                raise ValueError("dumbbell: need 0 < neck_radius_mm < bulb radius (size_mm)")
            if self.separation <= 0:
                raise ValueError("dumbbell: separation_mm must be > 0")
            self.bound = self.separation / 2 + self.r
        if p:
            raise ValueError(f"{kind}: unknown parameter(s): {', '.join(sorted(p))}")

    def _lobe_field(self, u: np.ndarray) -> np.ndarray:
        """Sum of zonal spherical harmonics (degrees 2–4, random axes) at unit vectors ``u`` (..., 3)."""
        f = np.zeros(u.shape[:-1])
        for d, l, w in zip(self.lobe_dirs, self.lobe_degrees, self.lobe_weights, strict=True):
            f += w * _legendre(l, u @ d)
        return f

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Boolean: are the local points (mm, broadcastable arrays) inside the solid?"""
        k = self.kind
        if k == "sphere":
            return x * x + y * y + z * z <= self.r**2
        if k == "ellipsoid":
            a, b, c = self.axes
            return (x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2 <= 1.0
        if k == "lobulated":
            rho = np.sqrt(x * x + y * y + z * z)
            safe = np.where(rho > 0, rho, 1.0)
            u = np.stack(np.broadcast_arrays(x / safe, y / safe, z / safe), axis=-1)
            radius = self.r * (1.0 + self.amplitude * self._lobe_field(u) / self.lobe_scale)
            return rho <= radius
        if k == "spiculated":
            rr = x * x + y * y + z * z
            out = rr <= self.r**2
            t_apex = self.r + self.spike_length
            for d in self.spike_dirs:
                t = x * d[0] + y * d[1] + z * d[2]
                rho2 = np.maximum(rr - t * t, 0.0)
                allowed = self.spike_radius * (t_apex - t) / (t_apex - self.spike_start)
                out |= (t >= self.spike_start) & (t <= t_apex) & (rho2 <= allowed * allowed)
            return out
        if k == "c_shape":
            s = np.sqrt(x * x + y * y)
            ring = (s - self.r) ** 2 + z * z <= self.minor**2
            out = ring & (np.abs(np.arctan2(y, x)) <= self.arc / 2)
            for e in self.ends:
                out |= (x - e[0]) ** 2 + (y - e[1]) ** 2 + z * z <= self.minor**2
            return out
        # dumbbell along local x
        h = self.separation / 2
        yz = y * y + z * z
        out = ((x - h) ** 2 + yz <= self.r**2) | ((x + h) ** 2 + yz <= self.r**2)
        return out | ((np.abs(x) <= h) & (yz <= self.neck**2))


def analytic_volume_mm3(kind: str, size_mm: float | Sequence[float], **params: float) -> float:
    """Exact volume (mm³) of a shape of :func:`shape_mask` (same ``size_mm`` and ``params``).

    * sphere: 4/3 π r³.
    * ellipsoid: 4/3 π a b c.
    * c_shape: (arc/360°) · 2π² R ρ² (torus arc) + 4/3 π ρ³ (the two hemispherical end caps); valid when the
      caps do not touch across the gap (2 R sin(gap/2) > 2ρ).
    * dumbbell: 2 · 4/3 π r³ + π n² (d − 2r) + 2π[(n² − r²)(r − h) + (r³ − h³)/3] with d the bulb separation,
      n the neck radius, h = √(r² − n²) (neck cylinder minus the parts inside the bulbs); needs d > 2r.

    Raises:
        ValueError: lobulated and spiculated shapes have no closed form; invalid parameters.
    """
    shape = _Shape(kind, size_mm, **params)
    if kind == "sphere":
        return 4.0 / 3.0 * math.pi * shape.r**3
    if kind == "ellipsoid":
        return 4.0 / 3.0 * math.pi * float(np.prod(shape.axes))
    if kind == "c_shape":
        gap = 2 * math.pi - shape.arc
        if 2 * shape.r * math.sin(gap / 2) <= 2 * shape.minor:
            raise ValueError("c_shape: end caps overlap across the gap; no simple closed form")
        return (
            shape.arc / (2 * math.pi) * 2 * math.pi**2 * shape.r * shape.minor**2
            + 4 / 3 * math.pi * shape.minor**3
        )
    if kind == "dumbbell":
        r, n, d = shape.r, shape.neck, shape.separation
        if d <= 2 * r:
            raise ValueError("dumbbell: bulbs overlap (separation_mm <= 2 r); no simple closed form")
        h = math.sqrt(r * r - n * n)
        cap_ring = math.pi * ((n * n - r * r) * (r - h) + (r**3 - h**3) / 3.0)
        return 2 * 4 / 3 * math.pi * r**3 + math.pi * n * n * (d - 2 * r) + 2 * cap_ring
    raise ValueError(f"{kind}: no closed-form volume (only sphere, ellipsoid, c_shape, dumbbell)")


def shape_bounding_radius_mm(kind: str, size_mm: float | Sequence[float], **params: float) -> float:
    """Radius (mm) of a ball around the shape centre containing the whole shape, whatever the rotation."""
    return _Shape(kind, size_mm, **params).bound


def _voxelise(
    shape: _Shape,
    rot: np.ndarray,
    center: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    spacing: np.ndarray,
    supersample: int = 1,
) -> np.ndarray:
    """Boolean ``[z, y, x]`` mask of ``shape`` (rotated by ``rot``, centred at ``center``) on the voxel centres
    ``xs, ys, zs`` (1-D, mm); with ``supersample`` = k, a voxel is inside when more than half of its k³
    sub-points are (ties: the voxel centre decides)."""
    ss = int(supersample)
    if ss < 1:
        raise ValueError("supersample must be >= 1")
    offsets = ((np.arange(ss) + 0.5) / ss - 0.5)[:, None] * spacing[None, :]  # (ss, 3)
    shape_zyx = (zs.size, ys.size, xs.size)
    count = np.zeros(shape_zyx, dtype=np.uint16)
    for oz in offsets[:, 2]:
        dz = (zs + oz - center[2])[:, None, None]
        for oy in offsets[:, 1]:
            dy = (ys + oy - center[1])[None, :, None]
            for ox in offsets[:, 0]:
                dx = (xs + ox - center[0])[None, None, :]
                # local = Rᵀ (p − c): local_j = Σ_i R[i, j] d_i
                lx = rot[0, 0] * dx + rot[1, 0] * dy + rot[2, 0] * dz
                ly = rot[0, 1] * dx + rot[1, 1] * dy + rot[2, 1] * dz
                lz = rot[0, 2] * dx + rot[1, 2] * dy + rot[2, 2] * dz
                count += shape.inside(lx, ly, lz)
    twice = 2 * count.astype(np.int64)
    inside = twice > ss**3
    if ss % 2 == 0:  # ties (exactly half of the sub-points inside) go to the voxel centre
        tie = twice == ss**3
        if tie.any():
            inside |= tie & _voxelise(shape, rot, center, xs, ys, zs, spacing, 1)
    return inside


def shape_mask(
    kind: str,
    size_mm: float | Sequence[float],
    spacing: Sequence[float],
    *,
    grid_shape: Sequence[int] | None = None,
    center_mm: Sequence[float] | None = None,
    rotation: RotationLike = None,
    seed: int = 0,
    supersample: int = 1,
    **params: float,
) -> np.ndarray:
    """Voxelise one lesion shape: boolean ``[z, y, x]`` mask.

    Voxel (i, j, k) has its centre at ``(i, j, k) * spacing`` mm (an image with origin 0, identity direction).

    Args:
        kind: one of :data:`SHAPE_KINDS`.
        size_mm: sphere / lobulated / spiculated: radius; ellipsoid: semi-axes (a, b, c) along local x, y, z
            (one number = all three); c_shape: major (ring) radius R; dumbbell: bulb radius r. mm.
        spacing: voxel size (x, y, z) in mm.
        grid_shape: ``(nz, ny, nx)``; default: just large enough for the shape in any rotation plus a margin
            of ≥ 2 voxels, odd along each axis so that the default centre is a voxel centre.
        center_mm: shape centre (x, y, z) in mm; default: the centre of the grid.
        rotation: applied to the continuous shape before voxelisation (world = R · local + centre); a 3×3
            matrix or 3 Euler angles in degrees (extrinsic x-y-z, scipy convention).
        seed: shape randomness (lobe axes of "lobulated", spike directions of "spiculated").
        supersample: k > 1 tests k³ sub-points per voxel and keeps the voxel when more than half are inside
            (a majority vote: less aliasing of thin parts such as spikes; the volume error of a smooth solid is
            already ~0.5 % at 10 voxels per radius with voxel centres); 1 = voxel centres only.
        params: lobulated: ``amplitude`` (max relative radius change, 0.2), ``n_lobes`` (3 zonal harmonics of
            degrees 2–4); spiculated: ``n_spikes`` (8), ``spike_length_mm`` (r: apex at 2r from the centre),
            ``spike_radius_mm`` (cone base radius, r/4); c_shape: ``minor_radius_mm`` (tube radius, 0.4 R),
            ``arc_deg`` (270; the arc is in the local xy-plane with its gap centred on local −x, rounded end
            caps); dumbbell: ``separation_mm`` (bulb centre distance along local x, 3r), ``neck_radius_mm``
            (0.4 r).
    """
    shape = _Shape(kind, size_mm, seed=seed, **params)
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or np.any(sp <= 0):
        raise ValueError(f"spacing must be 3 positive numbers (x, y, z) in mm, got {spacing!r}")
    rot = rotation_matrix(rotation)
    if grid_shape is None:
        half = np.ceil((shape.bound + 2.0 * sp) / sp).astype(int)
        n_xyz = 2 * half + 1
    else:
        if len(grid_shape) != 3:
            raise ValueError("grid_shape must be (nz, ny, nx)")
        n_xyz = np.asarray(grid_shape, dtype=int)[::-1]
    center = (n_xyz - 1) / 2.0 * sp if center_mm is None else np.asarray(center_mm, dtype=float)
    xs, ys, zs = (np.arange(n) * s for n, s in zip(n_xyz, sp, strict=True))
    return _voxelise(shape, rot, center, xs, ys, zs, sp, supersample)


# ================================================================================================
# Lesion specifications
# ================================================================================================
@dataclass(frozen=True)
class LesionSpec:
    """One synthetic lesion.

    Attributes:
        name: unique lesion name (e.g. "lung_1").
        site: anatomical site (any name :func:`RadTyperLib.sites.normalize_site` accepts; stored canonical).
        shape: one of :data:`SHAPE_KINDS`.
        size_mm: as in :func:`shape_mask`.
        center_mm: centre (x, y, z) in mm in the phantom's anatomical frame (LPS axes, origin at the volume
            centre; = physical LPS for a non-oblique phantom).
        margin: "sharp" (intensity step at the mask boundary) or "blurred" (infiltrative margin: the lesion
            intensity continues outside the mask and fades like a step blurred by a Gaussian of ``blur_mm``,
            w(d) = erfc(d / (σ√2)) at distance d mm outside the boundary; the mask stays the sharp shape and
            the mean inside the mask is unchanged).
        texture: "homogeneous" (fine-grained, ~1 voxel), "heterogeneous" (blobs of ~2.5 mm) or "necrotic"
            (heterogeneous rim + a core of ``necrotic_hu``: voxels deeper than (1 − necrotic_fraction) of the
            lesion's maximal depth).
        mean: mean intensity inside the mask (the rim for necrotic lesions), HU for CT.
        texture_sd: SD of the lesion texture (HU), before scanner noise; the texture has exactly this mean and
            SD over the lesion (rim) voxels.
        blur_mm: Gaussian σ (mm) of a blurred margin.
        rotation_deg: Euler angles (degrees, extrinsic x-y-z) of the shape.
        params: shape parameters (see :func:`shape_mask`).
        shape_seed: shape randomness (lobes, spike directions); independent of the patient seed.
        necrotic_fraction: depth fraction of the necrotic core (0–1).
        necrotic_hu: CT value of the necrotic core (HU).
        mr_mean: mean of the lesion in the MR variant (a.u.); None = a site default (:data:`MR_LESION_MEAN`).
    """

    name: str
    site: str
    shape: str
    size_mm: float | tuple[float, float, float]
    center_mm: tuple[float, float, float]
    margin: str = "sharp"
    texture: str = "homogeneous"
    mean: float = 40.0
    texture_sd: float = 10.0
    blur_mm: float = 3.0
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    params: Mapping[str, float] = field(default_factory=dict)
    shape_seed: int = 0
    necrotic_fraction: float = 0.5
    necrotic_hu: float = 10.0
    mr_mean: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "site", normalize_site(self.site, context=f"lesion '{self.name}'"))
        if self.shape not in SHAPE_KINDS:
            raise ValueError(f"lesion '{self.name}': unknown shape '{self.shape}'; use one of {SHAPE_KINDS}")
        if self.margin not in MARGINS:
            raise ValueError(f"lesion '{self.name}': margin must be one of {MARGINS}, got '{self.margin}'")
        if self.texture not in TEXTURES:
            raise ValueError(f"lesion '{self.name}': texture must be one of {TEXTURES}, got '{self.texture}'")
        if len(self.center_mm) != 3:
            raise ValueError(f"lesion '{self.name}': center_mm must be (x, y, z)")
        if not 0 < self.necrotic_fraction < 1:
            raise ValueError(f"lesion '{self.name}': necrotic_fraction must be in (0, 1)")
        if self.blur_mm <= 0 or self.texture_sd < 0:
            raise ValueError(f"lesion '{self.name}': blur_mm must be > 0 and texture_sd >= 0")
        self.make_shape()  # validates size and params

    def make_shape(self) -> _Shape:
        """The continuous shape (validated)."""
        return _Shape(self.shape, self.size_mm, seed=self.shape_seed, **dict(self.params))

    def bounding_radius_mm(self) -> float:
        """Radius (mm) of a ball around ``center_mm`` holding the whole mask."""
        return self.make_shape().bound


#: MR (T1-like, a.u.) lesion means by site when :attr:`LesionSpec.mr_mean` is None.
MR_LESION_MEAN: dict[str, float] = {"lung": 420.0, "liver": 320.0, "lymph_node": 400.0, "bone": 260.0}
_MR_LESION_FALLBACK = 400.0
#: MR intensity (a.u.) per CT HU used to scale the lesion texture SD of the MR variant.
MR_TEXTURE_PER_HU = 1.5
#: MR value of a necrotic core, as a fraction of the lesion's MR mean (T1-hypointense necrosis).
MR_NECROTIC_RATIO = 0.35


def default_lesions() -> list[LesionSpec]:
    """The 8 default lesions of :func:`make_patient`: 3 lung, 3 liver, 1 mediastinal node, 1 vertebral.

    Every shape kind, both margins and all three textures appear; diameters 12–30 mm.
    """
    spec = LesionSpec
    return [
        # lung: CT ~30-40 HU nodules in -850 HU lung
        spec("lung_1", "lung", "sphere", 6.0, (-72.0, -25.0, 62.0), mean=35.0, texture_sd=10.0),
        spec(
            "lung_2",
            "lung",
            "spiculated",
            7.0,
            (72.0, 0.0, 45.0),
            texture="heterogeneous",
            mean=40.0,
            texture_sd=25.0,
            params={"n_spikes": 8, "spike_length_mm": 7.0, "spike_radius_mm": 2.0},
            shape_seed=2,
        ),
        spec(
            "lung_3",
            "lung",
            "lobulated",
            9.0,
            (-62.0, 15.0, 5.0),
            margin="blurred",
            blur_mm=3.0,
            mean=20.0,
            texture_sd=12.0,
            params={"amplitude": 0.25, "n_lobes": 3},
            shape_seed=3,
        ),
        # liver (60 HU): necrotic enhancing rim, hypodense lesions
        spec(
            "liver_1",
            "liver",
            "ellipsoid",
            (15.0, 11.0, 9.0),
            (-60.0, -20.0, -60.0),
            texture="necrotic",
            mean=85.0,
            texture_sd=15.0,
            rotation_deg=(0.0, 10.0, 30.0),
            necrotic_fraction=0.5,
            necrotic_hu=10.0,
        ),
        spec(
            "liver_2",
            "liver",
            "dumbbell",
            6.0,
            (-25.0, 15.0, -70.0),
            mean=25.0,
            texture_sd=10.0,
            rotation_deg=(0.0, 0.0, 60.0),
            params={"separation_mm": 18.0, "neck_radius_mm": 2.5},
        ),
        spec(
            "liver_3",
            "liver",
            "c_shape",
            8.0,
            (-75.0, 20.0, -52.0),
            margin="blurred",
            blur_mm=3.0,
            texture="heterogeneous",
            mean=30.0,
            texture_sd=20.0,
            rotation_deg=(30.0, 20.0, 0.0),
            params={"minor_radius_mm": 3.5},
        ),
        # mediastinal node in -90 HU fat; lytic lesion in a 700 HU vertebral body
        spec(
            "node_1",
            "lymph_node",
            "ellipsoid",
            (7.0, 5.0, 6.0),
            (-4.0, 18.0, 72.0),
            mean=45.0,
            texture_sd=8.0,
        ),
        spec(
            "bone_1",
            "bone",
            "sphere",
            7.0,
            (0.0, 58.0, 32.0),
            texture="heterogeneous",
            mean=150.0,
            texture_sd=30.0,
        ),
    ]


# ================================================================================================
# Anatomy
# ================================================================================================
# Tissue classes of the anatomy map.
AIR, FAT, MUSCLE, SOFT, LUNG, VESSEL, LIVER, BONE, DISC, AORTA, HEART, TRACHEA, CSF, MED_FAT = range(14)
TISSUE_NAMES: tuple[str, ...] = (
    "air",
    "fat",
    "muscle",
    "soft_tissue",
    "lung",
    "lung_vessel",
    "liver",
    "bone",
    "disc",
    "aorta",
    "heart",
    "trachea",
    "csf",
    "mediastinal_fat",
)
#: Mean intensity per tissue class: CT in HU, MR (T1-like) in a.u.
TISSUE_MEAN: dict[str, np.ndarray] = {
    "CT": np.array([-1000, -100, 45, 35, -850, 40, 60, 700, 80, 150, 40, -1000, 10, -90], dtype=np.float32),
    "MR": np.array([0, 1100, 380, 450, 40, 120, 600, 750, 300, 100, 420, 0, 150, 1050], dtype=np.float32),
}
#: SD of the smooth (σ = 2 mm) tissue texture per class: CT HU, MR a.u.
TISSUE_TEXTURE_SD: dict[str, np.ndarray] = {
    "CT": np.array([0, 8, 6, 8, 25, 10, 6, 60, 5, 5, 5, 0, 3, 8], dtype=np.float32),
    "MR": np.array([0, 30, 15, 20, 10, 15, 15, 40, 10, 10, 15, 0, 5, 30], dtype=np.float32),
}
CT_NOISE_SD = 12.0  # HU, scanner noise (slightly correlated)
MR_NOISE_SD = 12.0  # a.u., σ of each Gaussian channel of the Rician noise
PSF_SIGMA_MM = 0.7  # blur of the anatomy (not the lesions) before noise
_TEXTURE_SIGMA_MM = {"homogeneous": 0.6, "heterogeneous": 2.5, "necrotic": 1.5}

# Pulmonary vessels: (hilum, periphery) in anatomical mm; radius 3.5 mm at the hilum → 1.2 mm at the tip.
_VESSELS = (
    ((-25.0, 0.0, 45.0), (-100.0, -10.0, 90.0)),
    ((-25.0, 0.0, 45.0), (-95.0, 30.0, 20.0)),
    ((-25.0, 0.0, 45.0), (-70.0, -45.0, 20.0)),
    ((25.0, 0.0, 45.0), (95.0, -20.0, 85.0)),
    ((25.0, 0.0, 45.0), (95.0, 30.0, 15.0)),
    ((25.0, 0.0, 45.0), (60.0, -40.0, 90.0)),
)


def _grid_axes(spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates (mm, anatomical frame, centred on 0) along x, y, z."""
    n = np.maximum(np.round(np.asarray(FIELD_OF_VIEW_MM) / spacing).astype(int), 8)
    return tuple(
        ((np.arange(k) - (k - 1) / 2.0) * s).astype(np.float32) for k, s in zip(n, spacing, strict=True)
    )


def _anatomy(xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Tissue class map ``[z, y, x]`` (uint8) and organ masks of the torso."""
    X = xs[None, None, :]
    Y = ys[None, :, None]
    Z = zs[:, None, None]
    shape = (zs.size, ys.size, xs.size)

    def ell2(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
        return ((X - cx) / ax) ** 2 + ((Y - cy) / ay) ** 2

    def ell3(c: Sequence[float], a: Sequence[float]) -> np.ndarray:
        return ((X - c[0]) / a[0]) ** 2 + ((Y - c[1]) / a[1]) ** 2 + ((Z - c[2]) / a[2]) ** 2

    full = np.ones(shape, dtype=bool)
    body = full & (ell2(0, 0, 140, 105) <= 1)
    inner = full & (ell2(0, 0, 128, 93) <= 1)
    paraspinal = (np.abs(X) <= 45) & (Y >= 42)
    cavity = full & (ell2(0, 0, 116, 81) <= 1) & ~paraspinal
    thorax = Z > -25
    spine_cyl = full & (ell2(0, 58, 17, 17) <= 1)
    vertebra = ((Z + 100.0) % 30.0) < 24.0
    canal = full & (ell2(0, 88, 7, 7) <= 1)
    arch = full & (ell2(0, 88, 12, 12) <= 1) & ~canal & vertebra
    aorta = full & (ell2(22, 35, 11, 11) <= 1)
    trachea = (ell2(0, -5, 9, 9) <= 1) & (Z > 35)
    heart = cavity & (ell3((15, -35, 5), (48, 40, 42)) <= 1)
    organ_keep_out = heart | (ell2(22, 35, 15, 15) <= 1) | (ell2(0, 58, 21, 21) <= 1)
    right = ell3((-62, -2, 55), (46, 66, 95)) <= 1
    left = ell3((62, -2, 60), (46, 66, 90)) <= 1
    lung = cavity & (right | left) & ~organ_keep_out & ~(np.abs(X) < 20)
    near_lung = (ell3((-62, -2, 55), (50, 70, 99)) <= 1) | (ell3((62, -2, 60), (50, 70, 94)) <= 1)
    liver = cavity & (ell3((-45, -5, -55), (70, 65, 55)) <= 1) & ~near_lung & ~organ_keep_out

    tissue = np.zeros(shape, dtype=np.uint8)
    tissue[body] = FAT
    tissue[inner] = MUSCLE
    tissue[cavity] = SOFT
    tissue[cavity & thorax] = MED_FAT
    tissue[liver] = LIVER
    tissue[heart] = HEART
    tissue[lung] = LUNG
    vessels = _vessel_mask(xs, ys, zs) & lung
    tissue[vessels] = VESSEL
    tissue[aorta] = AORTA
    tissue[np.broadcast_to(trachea, shape) & cavity] = TRACHEA
    tissue[spine_cyl] = DISC
    spine = (spine_cyl & vertebra) | arch
    tissue[spine] = BONE
    tissue[canal] = CSF
    mediastinum = (tissue == MED_FAT) & (np.abs(X) < 45) & (Y < 45)
    organs = {"body": body, "lung": lung, "liver": liver, "spine": spine, "mediastinum": mediastinum}
    return tissue, organs


def _vessel_mask(xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """Tapered tubes along :data:`_VESSELS` (boolean ``[z, y, x]``)."""
    out = np.zeros((zs.size, ys.size, xs.size), dtype=bool)
    r0, r1 = 3.5, 1.2
    for a, b in _VESSELS:
        a_, b_ = np.asarray(a), np.asarray(b)
        lo, hi = np.minimum(a_, b_) - r0, np.maximum(a_, b_) + r0
        sl = tuple(
            slice(int(np.searchsorted(ax, lo[i])), int(np.searchsorted(ax, hi[i], side="right")))
            for i, ax in ((2, zs), (1, ys), (0, xs))
        )
        z, y, x = zs[sl[0]][:, None, None], ys[sl[1]][None, :, None], xs[sl[2]][None, None, :]
        d = b_ - a_
        L2 = float(d @ d)
        t = np.clip(((x - a_[0]) * d[0] + (y - a_[1]) * d[1] + (z - a_[2]) * d[2]) / L2, 0.0, 1.0)
        dist2 = (x - a_[0] - t * d[0]) ** 2 + (y - a_[1] - t * d[1]) ** 2 + (z - a_[2] - t * d[2]) ** 2
        radius = r0 + (r1 - r0) * t
        out[sl] |= dist2 <= radius * radius
    return out


# ================================================================================================
# Patient
# ================================================================================================
@dataclass
class Phantom:
    """A synthetic patient with its ground truth.

    Attributes:
        patient: the :class:`~RadTyperLib.patient.Patient` (parenchyma = lung fields, lung lesions included).
        specs: the lesion specifications, in label order (label = index + 1).
        organs: boolean ``[z, y, x]`` masks "body", "lung", "liver", "spine", "mediastinum" (see
            :data:`SITE_ORGAN`).
        necrotic_cores: boolean ``[z, y, x]`` core mask of each necrotic lesion, by lesion name.
        tissue: tissue class map ``[z, y, x]`` (uint8, index into :data:`TISSUE_NAMES`).
        rotation: the direction matrix (identity unless oblique); physical = rotation @ anatomical.
    """

    patient: Patient
    specs: list[LesionSpec]
    organs: dict[str, np.ndarray]
    necrotic_cores: dict[str, np.ndarray]
    tissue: np.ndarray
    rotation: np.ndarray


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *key])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: np.ndarray) -> np.ndarray:
    """Gaussian-correlated noise with unit SD (float32)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    if np.any(sigma_vox > 0):
        noise = ndimage.gaussian_filter(noise, sigma=sigma_vox, mode="reflect", truncate=3.0)
        sd = float(noise.std())
        noise /= sd if sd > 0 else 1.0
    return noise


def make_phantom(
    seed: int = 0,
    *,
    modality: str = "CT",
    lesions: Sequence[LesionSpec] | None = None,
    spacing: Sequence[float] = DEFAULT_SPACING,
    oblique: bool = False,
    patient_id: str = "demo",
) -> Phantom:
    """Build a synthetic patient and its ground truth (see :func:`make_patient`)."""
    mod = modality.upper()
    if mod not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got '{modality}'")
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or np.any(sp <= 0):
        raise ValueError(f"spacing must be 3 positive numbers (x, y, z) in mm, got {spacing!r}")
    specs = list(default_lesions() if lesions is None else lesions)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError(
            f"duplicate lesion names: {', '.join(sorted({n for n in names if names.count(n) > 1}))}"
        )
    mod_key = MODALITIES.index(mod)

    xs, ys, zs = _grid_axes(sp)
    shape = (zs.size, ys.size, xs.size)
    sp_zyx = sp[::-1]
    tissue, organs = _anatomy(xs, ys, zs)

    # --- background anatomy: class means + smooth tissue texture, PSF-blurred ------------------------
    tex = _smooth_noise(_rng(seed, 1), shape, 2.0 / sp_zyx)
    img = TISSUE_MEAN[mod][tissue] + TISSUE_TEXTURE_SD[mod][tissue] * tex
    del tex
    img = ndimage.gaussian_filter(img, sigma=PSF_SIGMA_MM / sp_zyx, truncate=3.0)

    # --- lesions ------------------------------------------------------------------------------------
    labels = np.zeros(shape, dtype=np.uint16)
    cores: dict[str, np.ndarray] = {}
    axes_zyx = (zs, ys, xs)
    for idx, spec in enumerate(specs, start=1):
        shp = spec.make_shape()
        rot = rotation_matrix(spec.rotation_deg)
        c = np.asarray(spec.center_mm, dtype=float)
        pad = shp.bound + (4.0 * spec.blur_mm if spec.margin == "blurred" else 0.0) + 2.0 * float(sp.max())
        box = []
        for ax, ci in zip(axes_zyx, c[::-1], strict=True):
            lo = int(np.searchsorted(ax, ci - pad))
            hi = int(np.searchsorted(ax, ci + pad, side="right"))
            box.append(slice(lo, hi))
        box_t = tuple(box)
        m = _voxelise(shp, rot, c, xs[box_t[2]], ys[box_t[1]], zs[box_t[0]], sp)
        if not m.any():
            raise LesionError(spec.name, f"no voxel inside the phantom volume at {spec.center_mm} mm")
        shape_extent = shp.bound + float(sp.max())
        if np.any(c - shape_extent < np.array([xs[0], ys[0], zs[0]])) or np.any(
            c + shape_extent > np.array([xs[-1], ys[-1], zs[-1]])
        ):
            raise LesionError(spec.name, "extends outside the phantom volume")
        sub = labels[box_t]
        clash = sub[m]
        if np.any(clash):
            other = specs[int(clash[clash > 0][0]) - 1].name
            raise InputError(f"lesion '{spec.name}' overlaps lesion '{other}'")
        if not organs["body"][box_t][m].all():
            raise LesionError(spec.name, "extends outside the body")
        sub[m] = idx

        # intensity field of the lesion over the box
        region = m
        core = np.zeros_like(m)
        if spec.texture == "necrotic":
            depth = ndimage.distance_transform_edt(m, sampling=sp_zyx)
            core = depth > (1.0 - spec.necrotic_fraction) * depth.max()
            region = m & ~core
            full_core = np.zeros(shape, dtype=bool)
            full_core[box_t] = core
            cores[spec.name] = full_core
        t = _smooth_noise(_rng(seed, 100 + idx), m.shape, _TEXTURE_SIGMA_MM[spec.texture] / sp_zyx)
        if region.any():
            vals = t[region]
            sd = float(vals.std())
            t = (t - float(vals.mean())) / (sd if sd > 0 else 1.0)
        if mod == "CT":
            mean, tsd, core_val = spec.mean, spec.texture_sd, spec.necrotic_hu
        else:
            mean = (
                spec.mr_mean
                if spec.mr_mean is not None
                else MR_LESION_MEAN.get(spec.site, _MR_LESION_FALLBACK)
            )
            tsd, core_val = spec.texture_sd * MR_TEXTURE_PER_HU, MR_NECROTIC_RATIO * mean
        lesion_img = (mean + tsd * t).astype(np.float32)
        lesion_img[core] = core_val
        if spec.margin == "blurred":
            outside = ndimage.distance_transform_edt(~m, sampling=sp_zyx)
            d = np.maximum(outside - 0.5 * float(sp.min()), 0.0)
            w = np.where(m, 1.0, erfc(d / (spec.blur_mm * math.sqrt(2.0)))).astype(np.float32)
        else:
            w = m.astype(np.float32)
        img[box_t] = img[box_t] * (1.0 - w) + lesion_img * w

    # --- acquisition: noise (+ bias field for MR) ----------------------------------------------------
    noise_rng = _rng(seed, 2, mod_key)
    if mod == "CT":
        img += CT_NOISE_SD * _smooth_noise(noise_rng, shape, 0.6 * np.ones(3))
        arr = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
    else:
        coeffs = noise_rng.uniform(-1.0, 1.0, size=(3, 2))
        bias = [
            np.exp(0.08 * a * u + 0.04 * b * (u * u - 1.0 / 3.0))
            for (a, b), u in zip(
                coeffs,
                (2 * zs / FIELD_OF_VIEW_MM[2], 2 * ys / FIELD_OF_VIEW_MM[1], 2 * xs / FIELD_OF_VIEW_MM[0]),
                strict=True,
            )
        ]
        img *= (bias[0][:, None, None] * bias[1][None, :, None] * bias[2][None, None, :]).astype(np.float32)
        n1 = noise_rng.standard_normal(shape, dtype=np.float32)
        img += MR_NOISE_SD * n1
        del n1
        n2 = noise_rng.standard_normal(shape, dtype=np.float32)
        arr = np.sqrt(img * img + (MR_NOISE_SD * n2) ** 2).astype(np.float32)

    # --- images ---------------------------------------------------------------------------------------
    rot = OBLIQUE_ROTATION.copy() if oblique else np.eye(3)
    center_index_mm = np.array([(xs.size - 1) / 2, (ys.size - 1) / 2, (zs.size - 1) / 2]) * sp
    origin = -(rot @ center_index_mm)

    def to_image(a: np.ndarray) -> sitk.Image:
        im = sitk.GetImageFromArray(a)
        im.SetSpacing(tuple(float(s) for s in sp))
        im.SetOrigin(tuple(float(o) for o in origin))
        im.SetDirection(tuple(float(v) for v in rot.ravel()))
        return im

    lesion_objs = [
        Lesion(label=i, name=s.name, site=s.site, color=PALETTE[(i - 1) % len(PALETTE)])
        for i, s in enumerate(specs, start=1)
    ]
    patient = Patient(
        image=to_image(arr),
        labels=to_image(labels),
        lesions=lesion_objs,
        parenchyma=to_image(organs["lung"].astype(np.uint8)),
        patient_id=patient_id,
        modality=mod,
    )
    return Phantom(patient, specs, organs, cores, tissue, rot)


def make_patient(
    seed: int = 0,
    *,
    modality: str = "CT",
    lesions: Sequence[LesionSpec] | None = None,
    spacing: Sequence[float] = DEFAULT_SPACING,
    oblique: bool = False,
    patient_id: str = "demo",
) -> Patient:
    """A synthetic torso patient with lesions.

    CT (int16 HU): air −1000, subcutaneous fat −100, muscle 45, mediastinal fat −90, heart 40, aorta 150,
    lungs −850 (texture SD 25, vessel tubes 40), liver 60, vertebrae 700 (discs 80), scanner noise SD 12.
    MR (float32, T1-like a.u. ~0–1500): fat bright (~1100), liver 600, muscle 380, lung ~40, lesions
    :data:`MR_LESION_MEAN`; smooth multiplicative bias field (a product of per-axis
    exp(linear + quadratic) factors: typically ±15 %, at most ±35 % in the corners) and Rician noise (σ 12).

    Args:
        seed: noise and texture seed; masks (anatomy and lesions) do not depend on it.
        modality: "CT" or "MR"; the same seed gives identical masks in both.
        lesions: lesion specs (label = position + 1); default :func:`default_lesions`.
        spacing: voxel size (x, y, z) mm; the field of view is fixed (:data:`FIELD_OF_VIEW_MM`).
        oblique: direction matrix :data:`OBLIQUE_ROTATION` instead of identity; same voxel arrays.
        patient_id: stored on the Patient.

    Raises:
        InputError: two lesions overlap or share a name.
        LesionError: a lesion lies (partly) outside the body or the volume.
    """
    return make_phantom(
        seed, modality=modality, lesions=lesions, spacing=spacing, oblique=oblique, patient_id=patient_id
    ).patient


def make_mr_patient(seed: int = 0, **kwargs: Any) -> Patient:
    """Shortcut for ``make_patient(seed, modality="MR", ...)``."""
    return make_patient(seed, modality="MR", **kwargs)
