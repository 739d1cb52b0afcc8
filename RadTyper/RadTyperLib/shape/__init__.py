"""SPHARM shape pipeline and the 293 shape / burden features of Wu et al. (Nat Mach Intell 2021).

``compute_shape(mask, reference)`` runs, for one lesion:

1. mask clean-up (largest 26-connected component, cavities filled), Gaussian smoothing (σ ≥ one in-plane
   voxel, ≥ 0.5 mm, ≥ half the slice thickness), near-isotropic resampling for 2.5–6k vertices, marching
   cubes, genus-0 check and repair (:mod:`.mesh`);
2. bijective spherical parameterisation: conformalised mean-curvature flow, Möbius balancing and an L-BFGS
   area correction run to convergence (strongly regularised for compact lesions; latitude equalisation
   first for tube-like ones), every step guarded against inverted triangles (:mod:`.spheremap`);
3. least-squares SPHARM expansion to degree 15, weighted by vertex area (:mod:`.spharm`), *checked*
   (:mod:`.fitqc`): the degree is lowered until the least-squares system is well conditioned and the result
   passes the reconstruction-error and energy-range checks (``qc_degree_used``, ``qc_degree_reason``,
   ``qc_fit_condition``); a map with inverted triangles or a lesion with no sound fit at degree ≥ 2 raises
   :class:`~RadTyperLib.errors.LesionError` — never a number from a failed fit;
4. FOE alignment (exact parameter rotation + object rotation) and the features (:mod:`.descriptors`).

Deviations from SPHARM-MAT, all documented where they are made: marching cubes on a smoothed field instead
of the voxel-face surface; cMCF + area correction instead of CALD; area-weighted fit and mean radius (so
that results do not depend on how densely the mesh samples each region — this cut the rotation sensitivity
of the energies ~10×); burden/axis features from the moment-equivalent ellipsoid, because the FOE of an
ellipsoid under an equal-area map is not the ellipsoid (:mod:`.descriptors`).

All lengths are millimetres. The mesh and the coefficients are computed in the image's grid-aligned mm frame
(``continuous index × spacing``) and reported in physical LPS coordinates (``origin + D·p``; D orthonormal).
Lesions with fewer than :data:`MIN_VOXELS` voxels raise :class:`~RadTyperLib.errors.LesionError` (a handful of
voxels carries no shape); lesions whose mesh is too small for degree 15 (SPHARM-MAT's rule
``L ≤ floor(sqrt(n_vertices)/2)``) or whose fit is ill-conditioned get a reduced degree, reported in
``qc_degree_used``, ``qc_degree_reduced`` and ``qc_degree_reason`` ("vertices", "conditioning",
"reconstruction error", "energy range"), with the features of the missing degrees set to 0.

Features are parameterisation-dependent (methods.md §2.4): values from this pipeline are self-consistent
but differ from SPHARM-MAT's CALD numbers; never mix the two in one cohort.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import LesionError
from . import descriptors, fitqc, mesh, spharm, spheremap, voxelnoise
from .descriptors import BURDEN_FEATURE_NAMES, FEATURE_GROUPS, SHAPE_FEATURE_NAMES

__all__ = [
    "BURDEN_FEATURE_NAMES",
    "FEATURE_GROUPS",
    "FEATURE_NAMES",
    "MIN_VOXELS",
    "QC_RECON_NAMES",
    "SHAPE_FEATURE_NAMES",
    "ShapeResult",
    "compute_shape",
]

#: All 293 feature names: 288 shape descriptors then 5 burden features.
FEATURE_NAMES: tuple[str, ...] = SHAPE_FEATURE_NAMES + BURDEN_FEATURE_NAMES
#: Fewer voxels than this (after keeping the largest component) → LesionError.
MIN_VOXELS: int = 8
#: Names of the per-degree reconstruction errors in ``ShapeResult.qc``.
QC_RECON_NAMES: tuple[str, ...] = tuple(
    f"qc_recon_error_mm_l{l:02d}" for l in range(1, descriptors.FEATURE_DEGREE + 1)
)
#: Icosphere subdivision used by :meth:`ShapeResult.reconstruct` (2562 vertices, 5120 faces).
RECON_SUBDIVISIONS: int = 4


@dataclass
class ShapeResult:
    """Features, QC, coefficients and surfaces of one lesion.

    Attributes:
        features: the 293 features (288 ``shape_*`` then 5 ``burden_*``), in :data:`FEATURE_NAMES` order.
        qc: quality-control values (keys start with ``qc_``).
        coefficients: ``((L+1)², 3)`` complex SPHARM coefficients, mm, FOE-aligned (object centred on its
            surface centroid and rotated to the FOE axes; parameter sphere rotated likewise).
        coefficients_physical: ``((L+1)², 3)`` complex coefficients of the lesion surface in the patient's
            physical LPS frame (mm), unaligned; degree 0 carries the position.
        surface: (vertices (n, 3) LPS mm, faces (m, 3)) of the marching-cubes mesh, outward-oriented.
        sphere: (n, 3) unit vectors, the parameterisation of ``surface``'s vertices (the parameter of the
            ``coefficients_physical`` expansion; its triangles are positively oriented with the grid-frame
            faces, i.e. with ``surface``'s faces reversed when the image direction has det −1).
        degree: L of the coefficient arrays (the requested degree; rows above ``qc_degree_used`` are 0).
        lesion: the lesion's name.
    """

    features: dict[str, float]
    qc: dict[str, float | int]
    coefficients: np.ndarray
    coefficients_physical: np.ndarray
    surface: tuple[np.ndarray, np.ndarray]
    sphere: np.ndarray
    degree: int
    lesion: str = "lesion"
    _orientation_flip: bool = field(default=False, repr=False)

    def reconstruct(self, degree: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Lesion surface from the coefficients truncated at ``degree`` (1..L), on a fixed icosphere.

        Returns:
            (vertices (2562, 3) in LPS mm, faces (5120, 3) int, outward-oriented). The basis matrix is cached,
            so a call costs well under a millisecond (interactive degree slider).
        """
        d = self.degree if degree is None else int(degree)
        if not 1 <= d <= self.degree:
            raise ValueError(f"degree must be in 1..{self.degree}, got {degree}")
        y = spharm.icosphere_basis(self.degree, RECON_SUBDIVISIONS)
        verts = spharm.evaluate(self.coefficients_physical, y, d)
        faces = spharm.icosphere(RECON_SUBDIVISIONS)[1]
        if self._orientation_flip:
            faces = faces[:, ::-1]
        return verts, np.ascontiguousarray(faces)

    def feature_vector(self) -> np.ndarray:
        """The 293 features as an array in :data:`FEATURE_NAMES` order."""
        return np.array([self.features[n] for n in FEATURE_NAMES])


def _geometry(reference: sitk.Image, lesion: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spacing (x, y, z) mm, origin LPS mm, 3×3 direction) of ``reference``; LesionError if unusable."""
    if reference.GetDimension() != 3:
        raise LesionError(lesion, f"reference image must be 3-D, got {reference.GetDimension()}-D")
    spacing = np.array(reference.GetSpacing(), float)
    origin = np.array(reference.GetOrigin(), float)
    direction = np.array(reference.GetDirection(), float).reshape(3, 3)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise LesionError(lesion, "image direction matrix is not orthonormal (sheared grid)")
    return spacing, origin, direction


def _blas_single_thread() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread when threadpoolctl is available.

    The matrices here are small (≤ 6000 × 256); on a loaded machine multi-threaded OpenBLAS made the fit
    several times slower, and cohort runs parallelise over lesions anyway.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def compute_shape(
    mask_zyx: np.ndarray,
    reference: sitk.Image,
    *,
    degree: int = spharm.DEFAULT_DEGREE,
    lesion: str = "lesion",
    regularization: float = 0.0,
) -> ShapeResult:
    """SPHARM shape and burden features of one lesion.

    Args:
        mask_zyx: lesion mask ``[z, y, x]`` (non-zero = lesion) on ``reference``'s grid.
        reference: image giving the grid geometry (spacing, origin, direction; mm, LPS).
        degree: maximum SPHARM degree, 1..15 (features are always named up to 15; higher degrees are 0).
        lesion: lesion name used in error messages.
        regularization: Tikhonov weight of the fit (see :func:`spharm.fit`; 0 = plain least squares).

    Returns:
        A :class:`ShapeResult`.

    Raises:
        LesionError: empty mask, fewer than :data:`MIN_VOXELS` voxels, mask/reference size mismatch, sheared
            grid, or no genus-0 surface even after the strongest topology repair.
        ValueError: ``degree`` outside 1..15.
    """
    if not 1 <= int(degree) <= descriptors.FEATURE_DEGREE:
        raise ValueError(f"degree must be in 1..{descriptors.FEATURE_DEGREE}, got {degree}")
    with _blas_single_thread():
        return _compute_shape(mask_zyx, reference, int(degree), lesion, regularization)


def _compute_shape(
    mask_zyx: np.ndarray, reference: sitk.Image, degree: int, lesion: str, regularization: float
) -> ShapeResult:
    spacing, origin, direction = _geometry(reference, lesion)
    mask = np.asarray(mask_zyx)
    if mask.shape != tuple(reference.GetSize())[::-1]:
        raise LesionError(
            lesion, f"mask shape {mask.shape} (z, y, x) does not match the image size {reference.GetSize()}"
        )
    clean = mesh.clean_mask(mask, spacing)
    if clean.n_voxels == 0:
        raise LesionError(lesion, "empty mask (no voxel set)")
    if clean.n_voxels < MIN_VOXELS:
        raise LesionError(
            lesion,
            f"too small for shape analysis: {clean.n_voxels} voxel(s) "
            f"({clean.volume_mm3:.3g} mm³) in the largest component; at least {MIN_VOXELS} are needed",
        )
    try:
        surf = mesh.surface_from_mask(clean)
    except ValueError as exc:
        raise LesionError(lesion, str(exc)) from None
    v, f = surf.vertices, surf.faces

    smap = spheremap.spherical_map(v, f)
    if smap.flips > 0:
        raise LesionError(
            lesion,
            f"no bijective spherical map: {smap.flips} inverted triangle(s) remain on the sphere "
            f"(area-distortion cost {smap.adc:.3g}); shape features would be meaningless",
        )
    n_vert = len(v)
    l_vertices = int(min(degree, max(1, np.floor(np.sqrt(n_vert) / 2.0))))

    # area-weighted least squares: a quadrature of the L² fit over the surface, independent of how densely
    # marching cubes samples each region (that density depends on the surface orientation in the grid);
    # the degree is lowered until the system is well conditioned and the result passes the checks (fitqc)
    weights = spheremap.vertex_areas(v, f)
    radius = descriptors.mean_radius(v, weights)
    try:
        fit, _basis, errors = fitqc.checked_fit(
            smap.sphere,
            v,
            weights,
            l_vertices,
            radius,
            regularization=regularization,
            max_degree_errors=descriptors.FEATURE_DEGREE,
        )
    except ValueError as exc:
        raise LesionError(lesion, f"{exc} (area-distortion cost {smap.adc:.3g}, {n_vert} vertices)") from None
    coef_local = fit.coefficients
    l_used = fit.degree
    degree_reason = "vertices" if l_vertices < degree else ""
    if fit.degree < l_vertices:
        degree_reason = fit.reason

    # FOE alignment: rotate the parameter sphere (exact Wigner rotation, equal to refitting on the rotated
    # sphere points) and the object (c ↦ c Rᵀ), centred on the area centroid
    align = descriptors.foe_alignment(coef_local, v, weights)
    coef_al = spharm.rotate_parameter(coef_local, align.rotation_parameter) @ align.rotation_object.T
    coef_al[0] -= np.sqrt(4.0 * np.pi) * (align.rotation_object @ align.centre)

    foe_axes = descriptors.foe_semi_axes(coef_local)
    semi_axes = descriptors.moment_semi_axes(clean.mask, spacing)
    features = descriptors.shape_features(coef_al, radius, semi_axes)
    features.update(descriptors.burden_features(clean.volume_mm3, radius, semi_axes))
    features = {name: features[name] for name in FEATURE_NAMES}

    qc: dict[str, float | int] = {
        "qc_genus": int(surf.genus),
        "qc_euler": int(surf.euler),
        "qc_flipped_triangles": int(smap.flips),
        "qc_area_distortion": float(smap.adc),
        "qc_n_vertices": int(n_vert),
        "qc_degree_used": int(l_used),
        "qc_components": int(clean.n_components),
        "qc_discarded_volume_mm3": float(clean.discarded_volume_mm3),
        "qc_holes_filled_mm3": float(clean.holes_filled_mm3),
        **{name: float(e) for name, e in zip(QC_RECON_NAMES, errors, strict=True)},
        "qc_topology_repaired": int(surf.topology_repaired),
        "qc_foe_axis_gap": descriptors.foe_axis_gap(foe_axes),
        "qc_touches_border": int(clean.touches_border),
        # supplementary
        "qc_degree_reduced": int(l_used < degree),
        "qc_degree_reason": degree_reason,
        "qc_fit_condition": float(fit.condition),
        "qc_foe_semi_axis_1_mm": float(foe_axes[0]),
        "qc_foe_semi_axis_2_mm": float(foe_axes[1]),
        "qc_foe_semi_axis_3_mm": float(foe_axes[2]),
        "qc_n_voxels": int(clean.n_voxels),
        "qc_iso_spacing_mm": float(surf.iso_spacing_mm),
        "qc_smoothing_sigma_mm": float(np.max(surf.sigma_mm)),
        "qc_closing_mm": float(surf.closing_mm),
        "qc_mesh_pieces": int(surf.mesh_components),
        "qc_mesh_dropped_volume_mm3": float(surf.dropped_volume_mm3),
        "qc_area_distortion_conformal": float(smap.adc_conformal),
        "qc_cmcf_iterations": int(smap.cmcf_iterations),
        "qc_area_iterations": int(smap.area_iterations),
        "qc_area_converged": int(smap.area_converged),
        # energies within 10 × the voxel-noise floor: a sub-voxel shift moves them by > 2 % (voxelnoise)
        "qc_radius_voxels": float(radius / np.min(spacing)),
        "qc_energy_at_voxel_noise": voxelnoise.energies_at_floor(
            np.array([features[n] for n in descriptors.ENERGY_FEATURE_NAMES]), radius, spacing
        ),
    }

    # physical frame: p_LPS = origin + D p
    coef_phys = coef_local @ direction.T
    coef_phys[0] += np.sqrt(4.0 * np.pi) * origin
    v_phys = origin + v @ direction.T
    flip = bool(np.linalg.det(direction) < 0)
    f_phys = f[:, ::-1].copy() if flip else f
    return ShapeResult(
        features=features,
        qc=qc,
        coefficients=descriptors.pad_coefficients(coef_al, degree),
        coefficients_physical=descriptors.pad_coefficients(coef_phys, degree),
        surface=(v_phys, f_phys),
        sphere=smap.sphere,
        degree=degree,
        lesion=lesion,
        _orientation_flip=flip,
    )
