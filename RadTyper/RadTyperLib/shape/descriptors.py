"""First-order-ellipsoid (FOE) alignment and the 293 SPHARM shape / burden features of Wu et al. 2021.

Definitions follow the authors' ``spharm_coeff.m`` (methods.md §1.4), computed from the FOE-aligned
coefficients ``c`` (``(L+1)² × 3`` complex, mm), ``a = |c|`` elementwise and the mesh ``radius`` = mean
distance of the surface to its centroid (mm; vertex-area-weighted mean over the mesh vertices, see
:func:`mean_radius`):

* ``shape_coef_lXX_m{0|pK|nK}`` (255): ``sqrt(Σ_d a_{lm,d}²) / radius``, l = 1..15, m = −l..l — the
  spectrum of the shape (paper group *irregularity*: boundary detail at each spatial frequency);
* ``shape_energy_lXX`` (15): ``‖a_{l,·,·}‖_F / radius`` — energy per degree; exactly invariant to object
  and parameter rotations (*irregularity*: high degrees = rough / lobulated / spiculated boundary);
* ``shape_entropy_lXX`` (15): ``−Σ_m p_m log(p_m + 1e-5)``, ``p_m = Σ_d a_{lm,d}² / Σ_{m,d} a_{lm,d}²``
  (``energy_skewness`` in the code; *symmetry*: how the energy of degree l spreads over orders, i.e.
  directions); 0 when degree l carries no energy;
* ``shape_axis_norm_1..3`` (3): lesion semi-axes / radius, ascending (*symmetry*: directionally dependent
  expansion; 1, 1, 1 for a sphere);
* ``burden_volume_mm3`` (cleaned mask: voxel count × voxel volume on the original grid, largest component
  with enclosed cavities filled), ``burden_mean_radius_mm`` (= radius), ``burden_semiaxis_1..3_mm`` (semi-axes,
  ascending) (5, *burden*).

Semi-axes — derivation and choice. The degree-1 part of the expansion is linear in the sphere point s:
``v₁(s) = A s`` with (k = sqrt(3/(4π)), using ``Y_1^0 = k s_z``, ``Y_1^{±1} = ∓k (s_x ± i s_y)/√2`` and
``c_{1,−1} = −conj(c_{11})``)

    A[:, x] = −√2 k Re c₁₁,   A[:, y] = √2 k Im c₁₁,   A[:, z] = k c₁₀.

The first-order ellipsoid (FOE) is ``{A s : |s| = 1}``; its semi-axes are the singular values σ of A.
SPHARM-MAT's ``shapeScale(d) = sqrt(Σ_{m=−1..1} a_{1m,d}²/3)`` equals ``‖A_{d,·}‖/(k√3) = σ_d·2√π/3`` once the
object is rotated to the FOE axes, whatever the parameter rotation — i.e. 1.1816 × the FOE semi-axis. For the
*natural* parameterisation of an ellipsoid, s ↦ (a s_x, b s_y, c s_z), A = diag(a, b, c) and σ = (a, b, c)
exactly; but σ is the least-squares linear fit ``(3/Area)∫ v s(v)ᵀ dA`` and therefore depends on the
parameterisation: with an equal-area map (ours, and SPHARM-MAT's CALD aims at one) the FOE of an ellipsoid
is *not* the ellipsoid — measured (ADC ≤ 1.007): semi-axes (7, 9, 11) → σ (7.26, 8.86, 10.42), (6, 9, 13) →
(6.38, 8.74, 12.00), (4, 6, 16) → (4.26, 5.84, 14.15), i.e. up to −12 % on the long axis, and no constant
rescaling of shapeScale fixes this. The burden axes and ``shape_axis_norm`` are therefore the semi-axes of
the *moment-equivalent* solid ellipsoid (:func:`moment_semi_axes`, ``sqrt(5 λ_i)`` of the voxel covariance):
parameterisation-independent, rotation-invariant, and equal to a, b, c for a voxelised ellipsoid within
voxelisation error (≤ 1 % at 1 mm). The FOE semi-axes σ (and thus SPHARM-MAT's shapeScale = σ·2√π/3) are
still reported in ``qc_foe_semi_axis_*_mm`` and drive the alignment below.

FOE alignment (Brechbühler et al. 1995, SPHARM-MAT ``align_FOE``; re-implemented from the description):
``A = U Σ Wᵀ`` (σ descending). The object is rotated by ``R = P Uᵀ`` and the parameter sphere by
``Q = P Wᵀ`` (s ↦ Q s), after which A = diag: the longest FOE axis along z and at the north pole of the
parameter sphere, the middle one along x (meridian φ = 0), the shortest along y (P is the cyclic permutation
(long, middle, short) → (z, x, y)). The coefficients are then re-fitted on the rotated sphere points — the
exact equivalent of a Wigner-D rotation. Remaining ambiguity: the sign of each axis pair (u_i, w_i); it is
fixed by making the area-weighted third moment of the aligned surface along each axis non-negative (with an
even number of flips so that both rotations stay proper; the axis with the weakest skewness gives way).
When two FOE axes are nearly equal (spheroids, spheres) the rotation about the third axis is undetermined
and the order-resolved features (coefficient magnitudes, entropies) become unstable; ``qc_foe_axis_gap``
(relative gap between the two closest semi-axes) measures this. Energies, axes and burden are unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import spharm

#: Degree of the product's fixed feature set.
FEATURE_DEGREE: int = 15
#: Constant in the order entropy (``spharm_coeff.m``).
ENTROPY_EPS: float = 1e-5
_K1 = float(np.sqrt(3.0 / (4.0 * np.pi)))
#: SPHARM-MAT's shapeScale = this factor × FOE semi-axis.
SHAPESCALE_PER_SEMIAXIS: float = float(2.0 * np.sqrt(np.pi) / 3.0)
#: Cyclic permutation (SVD order long, middle, short) → (z, x, y).
_P = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def _order_name(m: int) -> str:
    return "m0" if m == 0 else (f"mp{m}" if m > 0 else f"mn{-m}")


#: The 255 coefficient-magnitude columns, ordered l = 1..15, m = −l..l.
COEF_FEATURE_NAMES: tuple[str, ...] = tuple(
    f"shape_coef_l{l:02d}_{_order_name(m)}" for l in range(1, FEATURE_DEGREE + 1) for m in range(-l, l + 1)
)
ENERGY_FEATURE_NAMES: tuple[str, ...] = tuple(f"shape_energy_l{l:02d}" for l in range(1, FEATURE_DEGREE + 1))
ENTROPY_FEATURE_NAMES: tuple[str, ...] = tuple(
    f"shape_entropy_l{l:02d}" for l in range(1, FEATURE_DEGREE + 1)
)
AXIS_FEATURE_NAMES: tuple[str, ...] = ("shape_axis_norm_1", "shape_axis_norm_2", "shape_axis_norm_3")
#: The 288 shape descriptors, in their fixed order.
SHAPE_FEATURE_NAMES: tuple[str, ...] = (
    COEF_FEATURE_NAMES + ENERGY_FEATURE_NAMES + ENTROPY_FEATURE_NAMES + AXIS_FEATURE_NAMES
)
#: The 5 burden features, in their fixed order.
BURDEN_FEATURE_NAMES: tuple[str, ...] = (
    "burden_volume_mm3",
    "burden_mean_radius_mm",
    "burden_semiaxis_1_mm",
    "burden_semiaxis_2_mm",
    "burden_semiaxis_3_mm",
)
#: Paper group of every feature (Wu et al.: irregularity, symmetry, burden).
FEATURE_GROUPS: dict[str, str] = {
    **dict.fromkeys(COEF_FEATURE_NAMES, "irregularity"),
    **dict.fromkeys(ENERGY_FEATURE_NAMES, "irregularity"),
    **dict.fromkeys(ENTROPY_FEATURE_NAMES, "symmetry"),
    **dict.fromkeys(AXIS_FEATURE_NAMES, "symmetry"),
    **dict.fromkeys(BURDEN_FEATURE_NAMES, "burden"),
}


# ------------------------------------------------------------------------------------------------------
# first-order ellipsoid
# ------------------------------------------------------------------------------------------------------
def foe_matrix(coefficients: np.ndarray) -> np.ndarray:
    """3×3 real matrix A of the degree-1 part ``v₁(s) = A s`` (rows: x, y, z of the object; columns: s)."""
    c10 = coefficients[spharm.lm_index(1, 0)]
    c11 = coefficients[spharm.lm_index(1, 1)]
    a = np.empty((3, 3))
    a[:, 0] = -np.sqrt(2.0) * _K1 * c11.real
    a[:, 1] = np.sqrt(2.0) * _K1 * c11.imag
    a[:, 2] = _K1 * c10.real
    return a


def foe_semi_axes(coefficients: np.ndarray) -> np.ndarray:
    """FOE semi-axes (singular values of :func:`foe_matrix`), ascending, in the coefficients' unit."""
    return np.sort(np.linalg.svd(foe_matrix(coefficients), compute_uv=False))


def mean_radius(vertices: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean distance (mm) of the surface to its centroid: ``Σ w_i |v_i − c| / Σ w_i``, ``c = Σ w_i v_i / Σ w_i``.

    SPHARM-MAT averages over the vertices of its (uniform) voxel-face mesh; with vertex-area weights the same
    quantity is the average over the surface, independent of how densely marching cubes samples each region.
    """
    w = np.ones(len(vertices)) if weights is None else np.asarray(weights, float)
    c = (w[:, None] * vertices).sum(axis=0) / w.sum()
    return float(w @ np.linalg.norm(vertices - c, axis=1) / w.sum())


def moment_semi_axes(mask: np.ndarray, spacing_xyz: np.ndarray) -> np.ndarray:
    """Semi-axes (mm, ascending) of the solid ellipsoid with the lesion's second moments.

    The lesion is the union of its voxel boxes (bool ``[z, y, x]`` mask, voxel size ``spacing_xyz`` mm); its
    covariance is that of the voxel centres plus ``s_d²/12`` on the grid axes (the within-voxel variance). A
    solid ellipsoid with semi-axes a_i has covariance eigenvalues ``a_i²/5``, hence ``a_i = sqrt(5 λ_i)``.
    """
    sp = np.asarray(spacing_xyz, float)
    p = np.argwhere(mask)[:, ::-1].astype(float) * sp  # x, y, z in mm
    cov = np.cov(p.T, bias=True) + np.diag(sp**2 / 12.0)
    return np.sqrt(5.0 * np.clip(np.sort(np.linalg.eigvalsh(cov)), 0.0, None))


def foe_axis_gap(semi_axes: np.ndarray) -> float:
    """Relative gap between the two closest semi-axes: ``min_i (σ_{i+1} − σ_i)/σ_{i+1}`` (ascending σ)."""
    s = np.sort(np.asarray(semi_axes, float))
    if s[-1] <= 0:
        return 0.0
    gaps = (s[1:] - s[:-1]) / np.maximum(s[1:], 1e-300)
    return float(gaps.min())


@dataclass
class FoeAlignment:
    """Object rotation R (v ↦ R(v − centre)), parameter rotation Q (s ↦ Q s), centre (mm), semi-axes."""

    rotation_object: np.ndarray
    rotation_parameter: np.ndarray
    centre: np.ndarray
    semi_axes_desc: np.ndarray


def foe_alignment(
    coefficients: np.ndarray, vertices: np.ndarray, vertex_weights: np.ndarray | None = None
) -> FoeAlignment:
    """Rotations that bring the FOE to canonical position (see the module docstring for conventions).

    Args:
        coefficients: unaligned coefficients ``(K, 3)``.
        vertices: mesh vertices (n, 3) in the same frame, used to fix the axis signs (third moments).
        vertex_weights: area weights of the vertices (default uniform).
    """
    a = foe_matrix(coefficients)
    u, sig, wt = np.linalg.svd(a)
    w = wt.T
    if np.linalg.det(u) < 0:  # keep the object rotation proper (A unchanged)
        u[:, 2] *= -1.0
        w[:, 2] *= -1.0
    wts = np.ones(len(vertices)) if vertex_weights is None else np.asarray(vertex_weights, float)
    centre = (wts[:, None] * vertices).sum(axis=0) / wts.sum()
    x = (vertices - centre) @ u  # coordinates along the SVD axes
    m3 = (wts[:, None] * x**3).sum(axis=0) / wts.sum() / np.maximum(sig, 1e-300) ** 3
    signs = np.where(m3 >= 0, 1.0, -1.0)
    if np.prod(signs) < 0:
        signs[int(np.argmin(np.abs(m3)))] *= -1.0
    u = u * signs
    w = w * signs
    return FoeAlignment(
        rotation_object=_P @ u.T, rotation_parameter=_P @ w.T, centre=centre, semi_axes_desc=sig
    )


# ------------------------------------------------------------------------------------------------------
# features
# ------------------------------------------------------------------------------------------------------
def pad_coefficients(coefficients: np.ndarray, degree: int = FEATURE_DEGREE) -> np.ndarray:
    """Zero-pad (or truncate) coefficients to ``(degree+1)²`` rows."""
    k = spharm.n_coefficients(degree)
    out = np.zeros((k, 3), dtype=complex)
    n = min(k, len(coefficients))
    out[:n] = coefficients[:n]
    return out


def shape_features(aligned: np.ndarray, radius: float, semi_axes: np.ndarray) -> dict[str, float]:
    """The 288 shape descriptors from FOE-aligned coefficients (mm), the mesh radius (mm) and FOE semi-axes."""
    a = np.abs(pad_coefficients(aligned))
    mag = np.sqrt(np.sum(a * a, axis=1))  # per (l, m)
    feats: dict[str, float] = {}
    for name, val in zip(COEF_FEATURE_NAMES, mag[1:] / radius, strict=True):
        feats[name] = float(val)
    energies, entropies = [], []
    for l in range(1, FEATURE_DEGREE + 1):
        block = a[l * l : (l + 1) ** 2]
        e2 = float(np.sum(block * block))
        energies.append(np.sqrt(e2) / radius)
        if e2 > 0:
            p = np.sum(block * block, axis=1) / e2
            entropies.append(float(-np.sum(p * np.log(p + ENTROPY_EPS))))
        else:
            entropies.append(0.0)
    feats.update(zip(ENERGY_FEATURE_NAMES, map(float, energies), strict=True))
    feats.update(zip(ENTROPY_FEATURE_NAMES, entropies, strict=True))
    axes = np.sort(np.asarray(semi_axes, float))
    feats.update(zip(AXIS_FEATURE_NAMES, map(float, axes / radius), strict=True))
    return feats


def shape_scale(aligned: np.ndarray) -> np.ndarray:
    """SPHARM-MAT ``shapeScale`` (x, y, z) of aligned coefficients: ``sqrt(Σ_m |c_{1m,d}|²/3)`` (mm)."""
    a = np.abs(aligned[1:4])
    return np.sqrt(np.sum(a * a, axis=0) / 3.0)


def burden_features(volume_mm3: float, radius: float, semi_axes: np.ndarray) -> dict[str, float]:
    """The 5 burden features (mm³, mm)."""
    axes = np.sort(np.asarray(semi_axes, float))
    return dict(
        zip(
            BURDEN_FEATURE_NAMES,
            [float(volume_mm3), float(radius), float(axes[0]), float(axes[1]), float(axes[2])],
            strict=True,
        )
    )
