"""Lesion mask → closed genus-0 triangle mesh (mask clean-up, near-isotropic resampling, marching cubes).

Coordinates here are *grid-aligned millimetres*: ``p = (i·sx, j·sy, k·sz)`` for continuous voxel index
``(i, j, k)`` (x, y, z order) of the original image. They differ from physical LPS coordinates only by the
image origin and the (orthonormal) direction matrix: ``LPS = origin + D @ p``, so every length, area and
angle is the same in both frames. Arrays are indexed ``[z, y, x]``.

Recipe (methods.md §2.4, steps 1–2):

1. keep the largest 26-connected component; fill enclosed cavities (``ndi.binary_fill_holes``, background
   6-connected); crop;
2. Gaussian smoothing of the 0/1 indicator on the original grid with per-axis σ_d (mm)
   ``σ_d = max(0.5 mm, 1·min_d s_d, 0.5·s_d, 0.5·h)`` (s_d the voxel size along axis d, h the iso spacing
   below): at least the recipe's 0.5 mm and one in-plane voxel (removes the voxel staircase, whose
   orientation-dependent ripples otherwise make low-degree energies vary with the lesion's orientation in the
   grid), half a voxel along thick-slice axes (removes the 5-mm staircase) and half the output spacing when
   the output grid is coarser than the image (anti-aliasing); capped at half the lesion's inradius (largest
   voxel-to-background distance) so that lesions a few voxels thick keep an indicator above 0.5;
3. trilinear resampling onto an isotropic grid of spacing h chosen so that marching cubes gives
   ``TARGET_VERTICES`` (the smallest voxel size when that lands inside the range; never finer than
   ``min(s)/MAX_UPSAMPLE``);
4. ``skimage.measure.marching_cubes`` at 0.5 on the zero-padded field, outward-oriented faces, duplicate
   vertices merged; three tangential relaxation steps remove the slivers marching cubes leaves
   (:func:`tangential_relax`);
5. topology check: closed, consistently oriented 2-manifold, one component, Euler characteristic
   V − E + F = 2 (genus 0). When it fails, the lesion is repaired by 1.5× smoothing and then a morphological
   closing (ball, radius ``CLOSING_STEPS`` × the smallest voxel size, computed with Euclidean distance
   transforms on the original grid) of growing radius, up to the lesion's extent; the first genus-0 result
   is kept (``topology_repaired``, ``closing_mm``). Mesh pieces split off by the smoothing are dropped (their
   enclosed volume is recorded; more than 5 % of the lesion volume makes the repair go on). If no closing
   gives genus 0, :func:`surface_from_mask` raises ValueError (a LesionError for the caller).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse import csgraph

#: Range of marching-cubes vertex counts aimed at (SPHARM-MAT needs ≥ (2L)² = 900 for L = 15).
TARGET_VERTICES: tuple[int, int] = (2500, 6000)
#: The iso spacing is never finer than ``min(voxel size) / MAX_UPSAMPLE`` (bounds the work on tiny lesions;
#: lesions of a few voxels then give fewer vertices and a reduced SPHARM degree).
MAX_UPSAMPLE: float = 4.0
#: Smallest Gaussian σ (mm) applied to the indicator before the 0.5 iso-surface.
SIGMA_MIN_MM: float = 0.5
#: σ is at least this many of the smallest voxel size (removes the voxel staircase; with 0.5 voxel the
#: degree-2 energy of a 10-mm lobulated lesion varied by 17 % between rotated voxelisations, with 1 voxel 5 %).
SIGMA_MIN_VOXELS: float = 1.0
#: Per-axis σ is at least this fraction of the voxel size along that axis (and of the iso spacing).
SIGMA_VOXEL_FRACTION: float = 0.5
#: ... and at most this fraction of the lesion's inradius (mm), so that thin lesions do not vanish.
SIGMA_MAX_INRADIUS: float = 0.5
#: Tangential relaxation steps applied to the final marching-cubes mesh (mesh quality, see tangential_relax).
RELAX_ITERATIONS: int = 3
#: Morphological closing radii tried by the topology repair, in multiples of the smallest voxel size.
CLOSING_STEPS: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0)
#: A mesh piece split off by smoothing is dropped silently when it holds less than this fraction of the
#: enclosed volume; larger losses make the repair continue.
MAX_DROPPED_FRACTION: float = 0.05


# ------------------------------------------------------------------------------------------------------
# mask clean-up
# ------------------------------------------------------------------------------------------------------
@dataclass
class CleanMask:
    """A cleaned, cropped lesion mask (bool ``[z, y, x]``) and what the clean-up changed.

    ``offset_zyx`` is the index of the crop's first voxel in the original array; volumes are in mm³ on the
    original grid.
    """

    mask: np.ndarray
    offset_zyx: np.ndarray
    spacing_xyz: np.ndarray
    n_components: int
    discarded_volume_mm3: float
    holes_filled_mm3: float
    touches_border: bool

    @property
    def n_voxels(self) -> int:
        """Number of voxels of the cleaned mask."""
        return int(np.count_nonzero(self.mask))

    @property
    def volume_mm3(self) -> float:
        """Volume of the cleaned mask in mm³ (voxel count × voxel volume)."""
        return self.n_voxels * float(np.prod(self.spacing_xyz))


def clean_mask(mask_zyx: np.ndarray, spacing_xyz: np.ndarray) -> CleanMask:
    """Largest 26-connected component, enclosed cavities filled, cropped to its bounding box.

    Args:
        mask_zyx: lesion mask, any dtype (non-zero = lesion), indexed ``[z, y, x]``.
        spacing_xyz: voxel size (x, y, z) in mm.

    Returns:
        The cleaned mask; an empty input gives an empty mask with ``n_components == 0``.
    """
    full = np.asarray(mask_zyx)
    spacing = np.asarray(spacing_xyz, dtype=float)
    vox = float(np.prod(spacing))
    if full.ndim != 3:
        raise ValueError(f"expected a 3-D mask, got shape {full.shape}")
    # bounding box from axis projections (cheap on full-size CT masks)
    ranges = []
    for axis in range(3):
        proj = np.flatnonzero(np.any(full, axis=tuple(a for a in range(3) if a != axis)))
        if proj.size == 0:
            return CleanMask(np.zeros((0, 0, 0), bool), np.zeros(3, int), spacing, 0, 0.0, 0.0, False)
        ranges.append((int(proj[0]), int(proj[-1]) + 1))
    lo = np.array([r[0] for r in ranges])
    hi = np.array([r[1] for r in ranges])
    touches = bool(np.any(lo == 0) or np.any(hi == np.array(full.shape)))
    sub = full[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] != 0
    labels, n = ndi.label(sub, structure=np.ones((3, 3, 3), bool))
    discarded = 0.0
    if n > 1:
        counts = np.bincount(labels.ravel())
        counts[0] = 0
        keep = int(np.argmax(counts))
        discarded = float(counts.sum() - counts[keep]) * vox
        sub = labels == keep
    filled = ndi.binary_fill_holes(sub)
    holes = float(np.count_nonzero(filled) - np.count_nonzero(sub)) * vox
    idx2 = np.argwhere(filled)
    lo2 = idx2.min(axis=0)
    hi2 = idx2.max(axis=0) + 1
    crop = filled[lo2[0] : hi2[0], lo2[1] : hi2[1], lo2[2] : hi2[2]].copy()
    return CleanMask(crop, lo + lo2, spacing, int(n), discarded, holes, touches)


# ------------------------------------------------------------------------------------------------------
# mesh topology helpers
# ------------------------------------------------------------------------------------------------------
def unique_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges ``(E, 2)`` (sorted vertex pairs) and how many faces use each."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e.sort(axis=1)
    edges, counts = np.unique(e, axis=0, return_counts=True)
    return edges, counts


def euler_characteristic(n_vertices: int, faces: np.ndarray) -> int:
    """V − E + F of a triangle mesh."""
    edges, _ = unique_edges(faces)
    return int(n_vertices - len(edges) + len(faces))


def face_components(n_vertices: int, faces: np.ndarray) -> np.ndarray:
    """Connected-component label of every vertex (vertices joined by face edges)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    adj = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_vertices, n_vertices))
    _, lab = csgraph.connected_components(adj, directed=False)
    return lab


def is_closed_manifold(faces: np.ndarray) -> bool:
    """True when every edge is shared by exactly two faces with opposite orientations."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    _, counts = unique_edges(faces)
    if not np.all(counts == 2):
        return False
    # consistent orientation: each directed edge appears exactly once
    directed = np.unique(e, axis=0)
    return len(directed) == len(e)


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area of every triangle (units of ``vertices`` squared)."""
    v0, v1, v2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(v1 - v0, v2 - v0), axis=1)


def enclosed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume enclosed by a closed mesh (positive for outward-oriented faces)."""
    v0, v1, v2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return float(np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() / 6.0)


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop unreferenced vertices and renumber faces."""
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces]


def merge_duplicate_vertices(
    vertices: np.ndarray, faces: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices closer than ``tol`` (rounded grid) and drop faces that become degenerate."""
    key = np.round(vertices / tol).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    v = vertices[first]
    f = inverse[faces]
    good = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    f = f[good]
    # a face and its exact reverse (two slivers glued back to back) cancel out
    return compact(v, f)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals."""
    n = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    vn = np.zeros_like(vertices)
    for c in range(3):
        np.add.at(vn, faces[:, c], n)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-300)


def tangential_relax(
    vertices: np.ndarray, faces: np.ndarray, iterations: int = RELAX_ITERATIONS, step: float = 0.5
) -> np.ndarray:
    """Move each vertex towards the mean of its neighbours, *within its tangent plane* (mesh quality).

    Marching cubes leaves slivers (triangles with angles < 1°) where the iso-surface passes close to grid
    nodes; conformal maps copy their shape onto the sphere, where they limit every area-correction step.
    Three tangential umbrella steps raise the smallest angle above ~20° while moving the surface itself only
    to second order (normal components are removed).
    """
    n = len(vertices)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(float)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    v = np.asarray(vertices, float)
    for _ in range(iterations):
        d = (adj @ v) / deg[:, None] - v
        nn = vertex_normals(v, faces)
        d -= np.sum(d * nn, axis=1, keepdims=True) * nn
        v = v + step * d
    return v


# ------------------------------------------------------------------------------------------------------
# surface extraction
# ------------------------------------------------------------------------------------------------------
@dataclass
class SurfaceMesh:
    """Closed triangle mesh of a lesion in grid-aligned mm (x, y, z) with outward-oriented faces."""

    vertices: np.ndarray
    faces: np.ndarray
    iso_spacing_mm: float
    sigma_mm: np.ndarray
    closing_mm: float = 0.0
    topology_repaired: bool = False
    euler: int = 2
    genus: int = 0
    mesh_components: int = 1
    dropped_volume_mm3: float = 0.0
    attempts: list[dict] = field(default_factory=list)

    @property
    def n_vertices(self) -> int:
        """Number of mesh vertices."""
        return len(self.vertices)


def staircase_area_mm2(mask: np.ndarray, spacing_xyz: np.ndarray) -> float:
    """Area (mm²) of the voxel-face surface of a bool ``[z, y, x]`` mask (≈ 1.5 × the true area)."""
    sx, sy, sz = (float(s) for s in spacing_xyz)
    p = np.pad(mask, 1).astype(np.int8)
    fz = np.count_nonzero(np.diff(p, axis=0))
    fy = np.count_nonzero(np.diff(p, axis=1))
    fx = np.count_nonzero(np.diff(p, axis=2))
    return fx * sy * sz + fy * sx * sz + fz * sx * sy


def choose_iso_spacing(
    mask: np.ndarray, spacing_xyz: np.ndarray, target: tuple[int, int] | None = None
) -> float:
    """Isotropic spacing (mm): the smallest voxel size unless that gives a vertex count outside ``target``.

    Marching cubes on an isotropic grid of spacing h crosses about ``Σ_d ∫|n_d| dA / h²`` grid edges, i.e.
    close to the staircase (voxel-face) area divided by h²; that estimate picks h.
    """
    h0 = float(np.min(spacing_xyz))
    area = staircase_area_mm2(mask, spacing_xyz)
    n0 = area / h0**2
    lo, hi = TARGET_VERTICES if target is None else target
    if n0 > hi:
        return float(np.sqrt(area / hi))
    if n0 < lo:
        return max(float(np.sqrt(area / lo)), h0 / MAX_UPSAMPLE)
    return h0


def smoothing_sigma(spacing_xyz: np.ndarray, h: float, inradius_mm: float = np.inf) -> np.ndarray:
    """Per-axis Gaussian σ (mm): ``min(max(0.5 mm, 1·min(s), 0.5·s_d, 0.5·h), 0.5·inradius)``.

    ``inradius_mm`` is the largest distance (mm) from a lesion voxel to the background; the cap keeps the
    smoothed indicator above 0.5 inside lesions only a few voxels thick (see the module docstring).
    """
    s = np.asarray(spacing_xyz, float)
    iso = max(SIGMA_MIN_MM, SIGMA_MIN_VOXELS * float(np.min(s)), SIGMA_VOXEL_FRACTION * h)
    return np.minimum(np.maximum(iso, SIGMA_VOXEL_FRACTION * s), SIGMA_MAX_INRADIUS * inradius_mm)


def inradius_mm(mask: np.ndarray, spacing_xyz: np.ndarray) -> float:
    """Largest Euclidean distance (mm) from a voxel of ``mask`` to the nearest background voxel."""
    sampling = np.asarray(spacing_xyz, float)[::-1]
    return float(ndi.distance_transform_edt(np.pad(mask, 1), sampling=sampling).max())


def _closing_mm(mask: np.ndarray, spacing_xyz: np.ndarray, radius_mm: float) -> np.ndarray:
    """Morphological closing by a ball of ``radius_mm`` on an anisotropic grid (mask must be padded)."""
    sampling = np.asarray(spacing_xyz, float)[::-1]
    dil = ndi.distance_transform_edt(~mask, sampling=sampling) <= radius_mm
    return ndi.distance_transform_edt(dil, sampling=sampling) > radius_mm


def _interp_matrix(coords: np.ndarray, n_in: int) -> np.ndarray:
    """Dense (len(coords), n_in) matrix of 1-D linear-interpolation weights (zero outside the samples)."""
    w = np.zeros((len(coords), n_in), dtype=np.float32)
    i0 = np.floor(coords).astype(int)
    t = (coords - i0).astype(np.float32)
    rows = np.arange(len(coords))
    for idx, wt in ((i0, 1.0 - t), (i0 + 1, t)):
        ok = (idx >= 0) & (idx < n_in)
        w[rows[ok], idx[ok]] += wt[ok]
    return w


def _field(
    mask: np.ndarray, spacing_xyz: np.ndarray, h: float, sigma_mm: np.ndarray, closing_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed indicator resampled on the isotropic grid; returns (field ``[z,y,x]``, grid origin (x,y,z) mm).

    The grid origin is in the crop's grid-aligned mm frame (voxel (0,0,0) of the crop at 0).
    """
    spacing = np.asarray(spacing_xyz, float)
    margin_mm = 4.0 * float(np.max(sigma_mm)) + closing_mm + 3.0 * h + float(np.max(spacing))
    pad_vox = np.ceil(margin_mm / spacing[::-1]).astype(int)  # z, y, x
    m = np.pad(mask, [(p, p) for p in pad_vox])
    if closing_mm > 0:
        m = _closing_mm(m, spacing, closing_mm)
    f = ndi.gaussian_filter(m.astype(np.float32), sigma=sigma_mm[::-1] / spacing[::-1], mode="constant")
    # isotropic grid covering the lesion bounding box + margin (in crop mm, x y z)
    lo_mm = -(pad_vox[::-1] * spacing) + 0.5 * h
    hi_mm = (np.array(m.shape[::-1]) - 1 - pad_vox[::-1]) * spacing - 0.5 * h
    n = np.floor((hi_mm - lo_mm) / h).astype(int) + 1
    axes = [lo_mm[d] + h * np.arange(n[d]) for d in range(3)]  # x, y, z in crop mm
    # continuous index into the padded array: (p / s) + pad; trilinear = separable linear interpolation
    wz, wy, wx = (_interp_matrix(axes[d] / spacing[d] + pad_vox[::-1][d], f.shape[2 - d]) for d in (2, 1, 0))
    g = np.einsum("az,zyx->ayx", wz, f, optimize=True)
    g = np.einsum("by,ayx->abx", wy, g, optimize=True)
    g = np.einsum("cx,abx->abc", wx, g, optimize=True)
    g = np.pad(g, 1)  # guarantees a closed iso-surface
    return g, lo_mm - h


def _mc(g: np.ndarray, origin_mm: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes at 0.5; vertices (x, y, z) mm, faces oriented outward, duplicates merged."""
    from skimage.measure import marching_cubes

    if g.max() <= 0.5:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    verts, faces, _, _ = marching_cubes(g, 0.5, spacing=(h, h, h), allow_degenerate=False)
    v = verts[:, ::-1].astype(float) + origin_mm
    f = faces.astype(np.int64)
    v, f = merge_duplicate_vertices(v, f, tol=1e-6 * h)
    if len(f) and enclosed_volume(v, f) < 0:
        f = f[:, ::-1].copy()
    return v, f


def _largest_piece(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Keep the mesh component with the largest enclosed volume; returns (v, f, n_pieces, dropped mm³)."""
    lab = face_components(len(v), f)
    n = int(lab.max()) + 1 if len(lab) else 0
    if n <= 1:
        return v, f, n, 0.0
    flab = lab[f[:, 0]]
    vols = np.array([enclosed_volume(v, f[flab == c]) for c in range(n)])
    keep = int(np.argmax(vols))
    dropped = float(np.sum(np.abs(vols)) - abs(vols[keep]))
    vk, fk = compact(v, f[flab == keep])
    return vk, fk, n, dropped


def surface_from_mask(
    clean: CleanMask,
    *,
    target_vertices: tuple[int, int] | None = None,
    min_vertices: int = 900,
) -> SurfaceMesh:
    """Closed genus-0 marching-cubes surface of a cleaned mask (grid-aligned mm of the crop + its offset).

    Raises:
        ValueError: no genus-0 surface could be obtained even after the largest closing (the caller turns it
            into a LesionError).
    """
    spacing = np.asarray(clean.spacing_xyz, float)
    h = choose_iso_spacing(
        clean.mask, spacing, TARGET_VERTICES if target_vertices is None else target_vertices
    )
    h_min = float(np.min(spacing)) / MAX_UPSAMPLE
    offset_mm = clean.offset_zyx[::-1] * spacing
    extent_mm = float(np.max(np.array(clean.mask.shape[::-1]) * spacing))
    r_in = inradius_mm(clean.mask, spacing)
    base_sigma = smoothing_sigma(spacing, h, r_in)
    # repair schedule: (sigma factor, closing radius mm)
    schedule: list[tuple[float, float]] = [(1.0, 0.0), (1.5, 0.0)]
    for k in CLOSING_STEPS:
        r = k * float(np.min(spacing))
        if r > extent_mm:
            break
        schedule.append((1.5, r))
    schedule.append((1.5, extent_mm))
    attempts: list[dict] = []
    fallback: SurfaceMesh | None = None
    vol_mask = clean.volume_mm3
    for i, (fac, rc) in enumerate(schedule):
        sigma = base_sigma * fac
        v, f = np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        for _ in range(10):
            g, origin = _field(clean.mask, spacing, h, sigma, rc)
            if g.max() <= 0.5:  # smoothing erased a very thin lesion: smooth less
                sigma = 0.5 * sigma
                continue
            v, f = _mc(g, origin, h)
            if len(v) >= min_vertices or h <= h_min * 1.0001:
                break
            # tiny lesion: refine the iso grid (never finer than h_min)
            h = max(h_min, h * np.sqrt(len(v) / (1.2 * min_vertices)))
            sigma = np.minimum(sigma, smoothing_sigma(spacing, h, r_in) * fac)
        if len(f) == 0:
            attempts.append({"sigma_factor": fac, "closing_mm": rc, "result": "empty"})
            continue
        v, f, pieces, dropped = _largest_piece(v, f)
        manifold = is_closed_manifold(f)
        chi = euler_characteristic(len(v), f)
        genus = (2 - chi) // 2
        attempts.append(
            {"sigma_factor": fac, "closing_mm": rc, "euler": chi, "pieces": pieces, "manifold": manifold}
        )
        mesh = SurfaceMesh(
            vertices=tangential_relax(v, f) + offset_mm,
            faces=f,
            iso_spacing_mm=h,
            sigma_mm=sigma,
            closing_mm=rc,
            topology_repaired=i > 0,
            euler=chi,
            genus=genus,
            mesh_components=pieces,
            dropped_volume_mm3=dropped,
            attempts=attempts,
        )
        if manifold and chi == 2:
            if dropped <= MAX_DROPPED_FRACTION * max(vol_mask, 1e-12):
                return mesh
            if fallback is None:
                fallback = mesh
    if fallback is not None:
        return fallback
    eulers = sorted({a["euler"] for a in attempts if "euler" in a})
    if not eulers:
        raise ValueError("no surface: the smoothed mask has no 0.5 iso-surface")
    raise ValueError(
        f"no genus-0 surface: marching-cubes Euler characteristic(s) {eulers} (2 needed) after smoothing ×1.5 "
        f"and morphological closing up to {schedule[-1][1]:.1f} mm"
    )
