"""The fast spherical parameterisation (issue 15) against the original algorithm, on the same masks.

``spherical_map(reference=True)`` runs the original solvers (a fresh sparse LU at every cMCF step, plain L-BFGS
area correction stopped at a relative energy decrease of 1e-7); the default reuses the cMCF factorisation as a
CG preconditioner and, for compact lesions, preconditions the area correction with the Sobolev metric and runs
it to 1e-9. Both minimise the same energy, so features may differ only by how far the original optimiser
stopped from the minimiser, and by the original's own sensitivity: on STS_004 (a few near-degenerate parameter
triangles, plain L-BFGS on both paths) cMCF solutions that differ by 1e-12 already move one degree's energy by
1.5 %. Measured over 33 real masks (the 8 STS CT masks with an image, the 5 pyradiomics cases, 20 LIDC
nodules) and 3 synthetic shapes: energy vector ≤ 1.3e-3 (relative; LIDC-IDRI-0057, where the original stopped
after 689 iterations), one degree's energy ≤ 1.5 %, coefficient magnitudes ≤ 1.4e-3 of the largest, order entropies ≤ 0.045 nats. The
tolerances below (also in Resources/Docs/features.md) leave about 2× room and stay below the pipeline's own
reproducibility under a 3-D rotation of the mask (energy vector ≤ 1.8 % on all 14 real lesions studied).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from RadTyperLib.shape import FEATURE_NAMES, compute_shape, descriptors, mesh, spharm, spheremap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_shape_synthetic import c_shape, dumbbell, grid_for, lobulated, voxelise

#: Tolerances of the fast path against the original algorithm (documented in features.md).
ENERGY_VECTOR_REL = 3e-3  # ‖ΔE‖ / ‖E‖ over the 15 per-degree energies
ENERGY_DEGREE_REL = 0.03  # |ΔE_l| ≤ 3 % of E_l + 1e-4 ‖E‖ (tiny odd-degree energies of symmetric shapes)
COEF_REL = 4e-3  # |Δ| of a coefficient magnitude relative to the largest one
ENTROPY_ABS = 0.08  # order entropies (nats; range 0 … ln(2l+1))
ADC_REL = 2e-3  # area-distortion cost

C = np.array([22.3, 21.8, 22.4])
SYNTHETIC = {
    "lobulated": lambda: lobulated(C, 10.0),
    "c_shape": lambda: c_shape(C),
    "dumbbell": lambda: dumbbell(C),
}
ENERGY = [FEATURE_NAMES.index(n) for n in descriptors.ENERGY_FEATURE_NAMES]
ENTROPY = [FEATURE_NAMES.index(n) for n in descriptors.ENTROPY_FEATURE_NAMES]
COEF = [FEATURE_NAMES.index(n) for n in descriptors.COEF_FEATURE_NAMES]
OTHER = [
    i
    for i, n in enumerate(FEATURE_NAMES)
    if n in descriptors.AXIS_FEATURE_NAMES or n in descriptors.BURDEN_FEATURE_NAMES
]


def _both(mask: np.ndarray, ref: sitk.Image, monkeypatch: pytest.MonkeyPatch):
    fast = compute_shape(mask, ref)
    original = spheremap.spherical_map
    monkeypatch.setattr(spheremap, "spherical_map", functools.partial(original, reference=True))
    try:
        old = compute_shape(mask, ref)
    finally:
        monkeypatch.setattr(spheremap, "spherical_map", original)
    return old, fast


def _assert_close(old, new, name: str) -> None:
    a, b = old.feature_vector(), new.feature_vector()
    ea, eb = a[ENERGY], b[ENERGY]
    vec = np.linalg.norm(ea - eb) / np.linalg.norm(ea)
    assert vec <= ENERGY_VECTOR_REL, f"{name}: energy vector moved {vec:.2e}"
    assert np.all(np.abs(ea - eb) <= ENERGY_DEGREE_REL * ea + 1e-4 * np.linalg.norm(ea)), name
    coef = np.abs(a[COEF] - b[COEF]).max() / np.abs(a[COEF]).max()
    assert coef <= COEF_REL, f"{name}: coefficient magnitudes moved {coef:.2e}"
    assert np.abs(a[ENTROPY] - b[ENTROPY]).max() <= ENTROPY_ABS, name
    # axes and burden do not depend on the map: identical
    np.testing.assert_allclose(a[OTHER], b[OTHER], rtol=1e-12, err_msg=name)
    assert new.qc["qc_flipped_triangles"] == 0
    assert new.qc["qc_area_distortion"] == pytest.approx(old.qc["qc_area_distortion"], rel=ADC_REL)
    assert new.qc["qc_area_distortion_conformal"] == pytest.approx(
        old.qc["qc_area_distortion_conformal"], rel=1e-6
    )
    for key in ("qc_n_vertices", "qc_degree_used", "qc_cmcf_iterations"):
        assert new.qc[key] == old.qc[key], key
    for key in ("qc_recon_error_mm_l05", "qc_recon_error_mm_l15"):
        assert new.qc[key] == pytest.approx(old.qc[key], rel=0.02), key
    print(f"{name}: energy vector {vec:.1e}, coefficients {coef:.1e}, area iterations "
          f"{old.qc['qc_area_iterations']} → {new.qc['qc_area_iterations']}")  # fmt: skip


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_fast_map_matches_original_on_synthetic_shapes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = grid_for(44.0)
    mask = voxelise(SYNTHETIC[name](), grid)
    old, new = _both(mask, grid, monkeypatch)
    _assert_close(old, new, name)


REAL = [
    ("pyradiomics-cases/lung1_label.nrrd", False),
    ("ibsi-sts/STS_002/CT_mask.nii.gz", False),
    ("ibsi-sts/STS_008/CT_mask.nii.gz", True),
    ("pyradiomics-cases/lung2_label.nrrd", True),
]


@pytest.mark.realdata
@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if slow else p for p, slow in REAL])
def test_fast_map_matches_original_on_real_ct_masks(
    path: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    label = sitk.ReadImage(str(shared_data / path))
    mask = sitk.GetArrayFromImage(label) > 0
    old, new = _both(mask, label, monkeypatch)
    _assert_close(old, new, path)


def test_preconditioned_area_correction_reaches_the_minimiser() -> None:
    """Run to a 100× tighter tolerance the fast path moves the energies by < 1e-5 (it has converged)."""
    grid = grid_for(44.0)
    m = voxelise(SYNTHETIC["lobulated"](), grid)
    s = mesh.surface_from_mask(mesh.clean_mask(m, np.ones(3)))
    v, f = s.vertices, s.faces
    u0, _ = spheremap.conformal_flow(v, f)
    u0 = spheremap.mobius_balance(u0, f, spheremap.vertex_areas(v, f))
    a, it_a = spheremap.area_correct(v, f, u0)
    b, _ = spheremap.area_correct(v, f, u0, tol=1e-11)
    assert it_a < 40  # the plain L-BFGS needs ~60 here, ~100–650 on real lesions

    def energies(u: np.ndarray) -> np.ndarray:
        w = spheremap.vertex_areas(v, f)
        c = spharm.fit(u, v, 15, weights=w)
        al = descriptors.foe_alignment(c, v, w)
        c = spharm.rotate_parameter(c, al.rotation_parameter) @ al.rotation_object.T
        return np.array([np.linalg.norm(c[l * l : (l + 1) ** 2]) for l in range(1, 16)])

    ea, eb = energies(a), energies(b)
    assert np.linalg.norm(ea - eb) / np.linalg.norm(eb) < 1e-5


def test_cmcf_with_reused_factorisation_equals_direct_solves() -> None:
    grid = grid_for(44.0)
    m = voxelise(SYNTHETIC["c_shape"](), grid)
    s = mesh.surface_from_mask(mesh.clean_mask(m, np.ones(3)))
    a, na = spheremap.conformal_flow(s.vertices, s.faces)
    b, nb = spheremap.conformal_flow(s.vertices, s.faces, reuse_factorisation=False)
    assert na == nb
    np.testing.assert_allclose(a, b, atol=1e-9)


@pytest.mark.parametrize("degree", [1, 15, 20])
def test_recurrence_basis_equals_scipy(degree: int) -> None:
    from scipy.special import sph_harm_y_all

    rng = np.random.default_rng(degree)
    u = rng.normal(size=(500, 3))
    u[:4] = [[0, 0, 1], [0, 0, -1], [1, 0, 0], [0, -1, 0]]  # poles and the equator
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    theta, phi = spharm.cartesian_to_angles(u)
    ls, ms = spharm.degree_orders(degree)
    expected = sph_harm_y_all(degree, degree, theta, phi)[ls, ms, :].T
    np.testing.assert_allclose(spharm.basis(theta, phi, degree), expected, rtol=0, atol=1e-12)


def test_normal_equation_fit_equals_svd_least_squares() -> None:
    grid = grid_for(44.0)
    m = voxelise(SYNTHETIC["c_shape"](), grid)
    s = mesh.surface_from_mask(mesh.clean_mask(m, np.ones(3)))
    u = spheremap.spherical_map(s.vertices, s.faces).sphere
    w = spheremap.vertex_areas(s.vertices, s.faces)
    sw = np.sqrt(w / w.mean())
    r = spharm.real_basis(spharm.basis_from_sphere(u, 15), 15) * sw[:, None]
    v = s.vertices * sw[:, None]
    expected = np.linalg.lstsq(r, v, rcond=None)[0]
    np.testing.assert_allclose(
        spharm._least_squares(r, v), expected, rtol=0, atol=1e-10 * np.abs(expected).max()
    )
    # an ill-conditioned system falls back to SVD least squares
    bad = np.hstack([r[:, :10], r[:, :1] * (1 + 1e-9)])
    np.testing.assert_allclose(
        spharm._least_squares(bad, v), np.linalg.lstsq(bad, v, rcond=None)[0], rtol=0, atol=1e-6
    )


def test_evaluate_at_equals_the_basis_matrix_product() -> None:
    rng = np.random.default_rng(3)
    c = rng.normal(size=(256, 3)) + 1j * rng.normal(size=(256, 3))
    v, _ = spharm.icosphere(3)
    for d in (1, 6, 15):
        np.testing.assert_allclose(
            spharm.evaluate_at(c, v, d), spharm.evaluate(c, spharm.basis_from_sphere(v, 15), d), atol=1e-12
        )
