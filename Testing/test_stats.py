"""Unit tests of RadTyperLib.stats (ICC, group summaries) and RadTyperLib.perturb (elastic perturbation,
rotation / shift / scale resampling of masks), on small synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from RadTyperLib import perturb
from RadTyperLib.shape.descriptors import moment_semi_axes
from RadTyperLib.stats import (
    ICC_KINDS,
    group_summary,
    icc,
    icc_3_1,
    icc_features,
    icc_result,
    relative_change,
)

# ------------------------------------------------------------------------------------------------------
# ICC
# ------------------------------------------------------------------------------------------------------
#: 5 subjects × 2 raters. Hand computation (n = 5, k = 2):
#:   grand mean 3.3; row means 1.5 2 3.5 4.5 5; column means 3.0 3.6
#:   SSR = 2·(3.24 + 1.69 + 0.04 + 1.44 + 2.89) = 18.6    MSR = 18.6/4 = 4.65
#:   SSC = 5·(0.09 + 0.09) = 0.9                           MSC = 0.9/1 = 0.9
#:   SST = 20.1;  SSE = 20.1 − 18.6 − 0.9 = 0.6            MSE = 0.6/4 = 0.15
#:   MSW = (0.9 + 0.6)/(5·1) = 0.3
#:   ICC(3,1) = (4.65 − 0.15)/(4.65 + 0.15) = 4.5/4.8 = 0.9375
#:   ICC(2,1) = 4.5/(4.65 + 0.15 + 2·(0.9 − 0.15)/5) = 4.5/5.1 = 0.882353
#:   ICC(1,1) = (4.65 − 0.3)/(4.65 + 0.3) = 4.35/4.95 = 0.878788
#:   ICC(3,k) = 4.5/4.65 = 0.967742;  ICC(1,k) = 4.35/4.65 = 0.935484;  ICC(2,k) = 4.5/(4.65 + 0.15) = 0.9375
TABLE_5X2 = np.array([[1, 2], [2, 2], [3, 4], [4, 5], [5, 5]], float)
HAND = {
    "3,1": 0.9375,
    "2,1": 4.5 / 5.1,
    "1,1": 4.35 / 4.95,
    "3,k": 4.5 / 4.65,
    "1,k": 4.35 / 4.65,
    "2,k": 0.9375,
}

#: Shrout & Fleiss (1979), Table 2: 6 targets × 4 judges, and their Table 4 values (2 decimals).
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float
)
SHROUT_FLEISS_ICC = {"1,1": 0.17, "2,1": 0.29, "3,1": 0.71, "1,k": 0.44, "2,k": 0.62, "3,k": 0.91}


@pytest.mark.parametrize("kind", ICC_KINDS)
def test_icc_equals_the_hand_computed_5x2_table(kind: str) -> None:
    assert icc(TABLE_5X2, kind) == pytest.approx(HAND[kind], abs=1e-12)


def test_icc_anova_numbers_and_f_test() -> None:
    r = icc_result(TABLE_5X2, "3,1")
    assert (r.msr, r.msc, r.mse, r.msw) == pytest.approx((4.65, 0.9, 0.15, 0.3), abs=1e-12)
    assert r.f == pytest.approx(31.0) and (r.df1, r.df2) == (4, 4)
    assert r.p < 0.01
    assert r.ci[0] < r.value < r.ci[1] <= 1.0


@pytest.mark.parametrize("kind", ICC_KINDS)
def test_icc_reproduces_shrout_fleiss_table_4(kind: str) -> None:
    assert round(icc(SHROUT_FLEISS, kind), 2) == SHROUT_FLEISS_ICC[kind]
    r = icc_result(SHROUT_FLEISS, kind)
    assert r.ci[0] < r.value < r.ci[1]


def test_icc_3_1_of_two_raters_is_2sxy_over_sum_of_variances() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    y = 0.8 * x + rng.normal(scale=0.5, size=40) + 3.0
    expected = 2 * np.cov(x, y)[0, 1] / (x.var(ddof=1) + y.var(ddof=1))
    assert icc_3_1(x, y) == pytest.approx(expected, rel=1e-12)


def test_icc_is_one_for_identical_columns() -> None:
    x = np.array([1.0, 4.0, 2.5, 7.0, 3.0])
    for kind in ICC_KINDS:
        assert icc(np.column_stack([x, x, x]), kind) == pytest.approx(1.0)


def test_consistency_icc_ignores_a_constant_offset_of_one_rater() -> None:
    shifted = TABLE_5X2 + np.array([0.0, 10.0])
    assert icc(shifted, "3,1") == pytest.approx(icc(TABLE_5X2, "3,1"), abs=1e-12)
    assert icc(shifted, "3,k") == pytest.approx(icc(TABLE_5X2, "3,k"), abs=1e-12)
    assert icc(shifted, "2,1") < 0.2 < icc(TABLE_5X2, "2,1")  # absolute agreement is penalised


def test_icc_drops_rows_with_nan() -> None:
    with_nan = np.vstack([TABLE_5X2, [np.nan, 3.0], [2.0, np.inf]])
    for kind in ICC_KINDS:
        assert icc(with_nan, kind) == pytest.approx(HAND[kind], abs=1e-12)
    assert icc_3_1([1, 2, np.nan, 4, 5], [2, 2, 9, 5, 5]) == pytest.approx(
        icc(TABLE_5X2[[0, 1, 3, 4]], "3,1")
    )


def test_icc_undefined_cases() -> None:
    assert np.isnan(icc([[1.0, 2.0]]))  # one subject
    assert np.isnan(icc(np.zeros((5, 2))))  # nothing varies
    with pytest.raises(ValueError, match="at least 2 raters"):
        icc(np.ones((5, 1)))
    with pytest.raises(ValueError, match="unknown ICC kind"):
        icc(TABLE_5X2, "4,1")
    with pytest.raises(ValueError, match="differ in length"):
        icc_3_1([1, 2, 3], [1, 2])


def test_icc_features_matches_rows_by_index_and_skips_text() -> None:
    a = pd.DataFrame(
        {"f": TABLE_5X2[:, 0], "g": [1.0, 2, 3, 4, 5], "name": list("abcde")}, index=list("ABCDE")
    )
    b = pd.DataFrame({"g": [1.0, 2, 3, 4, 5], "f": TABLE_5X2[:, 1]}, index=list("ABCDE"))
    ic = icc_features([a, b.iloc[::-1]])  # order of the rows does not matter
    assert list(ic.index) == ["f", "g"]
    assert ic["f"] == pytest.approx(0.9375) and ic["g"] == pytest.approx(1.0)


def test_group_summary() -> None:
    values = {"a1": 0.95, "a2": 0.85, "a3": np.nan, "b1": 0.99, "c1": 0.5}
    groups = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "c1": "C"}
    s = group_summary(values, groups, threshold=0.9, order=["B", "A", "C"])
    assert list(s.index) == ["B", "A", "C", "all"]
    assert s.loc["A", "n"] == 3 and s.loc["A", "n_defined"] == 2
    assert s.loc["A", "median"] == pytest.approx(0.9) and s.loc["A", "frac_ge"] == pytest.approx(0.5)
    assert s.loc["all", "median"] == pytest.approx(0.9) and s.loc["all", "frac_ge"] == pytest.approx(0.5)
    assert s.loc["B", "min"] == pytest.approx(0.99)


def test_relative_change() -> None:
    assert relative_change([3.0, 4.0], [3.0, 4.5]) == pytest.approx(0.1)
    assert np.isnan(relative_change([0.0], [1.0]))


# ------------------------------------------------------------------------------------------------------
# perturbations
# ------------------------------------------------------------------------------------------------------
def ball(
    shape_zyx: tuple[int, int, int], radius_mm: float, spacing_xyz=(1.0, 1.0, 1.0), axes=None
) -> np.ndarray:
    """Bool [z, y, x] ellipsoid/ball centred in the array (semi-axes ``axes`` mm along x, y, z)."""
    sx, sy, sz = spacing_xyz
    k, j, i = np.indices(shape_zyx, dtype=float)
    c = [(n - 1) / 2 for n in shape_zyx]
    ax = (radius_mm,) * 3 if axes is None else axes
    return ((i - c[2]) * sx / ax[0]) ** 2 + ((j - c[1]) * sy / ax[1]) ** 2 + (
        (k - c[0]) * sz / ax[2]
    ) ** 2 <= 1.0


def image_like(
    mask: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None
) -> sitk.Image:
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in origin])
    if direction is not None:
        img.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    return img


def test_elastic_perturbation_is_deterministic_for_a_seed() -> None:
    m = ball((40, 40, 40), 12.0)
    a = perturb.elastic_perturb(m, (1, 1, 1), seed=5)
    b = perturb.elastic_perturb(m, (1, 1, 1), seed=5)
    c = perturb.elastic_perturb(m, (1, 1, 1), seed=6)
    assert np.array_equal(a.mask, b.mask) and a.rms_voxels == b.rms_voxels
    assert not np.array_equal(a.mask, c.mask)
    assert np.array_equal(
        perturb.elastic_perturb(m, (1, 1, 1), rms_voxels=0.0).mask, m
    )  # zero field: unchanged


@pytest.mark.parametrize("rms", [0.5, 1.0, 2.0])
def test_elastic_perturbation_moves_the_contour_by_the_requested_rms(rms: float) -> None:
    """Field RMS near the contour ≈ requested; the voxelised contour moves by the expected amount.

    The normal component of an isotropic Gaussian field of vector RMS ρ has σ = ρ/√3. Re-thresholding moves
    the contour of a voxel mask by whole voxels: a voxel column flips k voxels when |u·n| > k − ½, so the
    symmetric difference per unit area is about Σ_k 2(1 − Φ((k − ½)/σ)) (0.40 for ρ = 1, 0.89 for ρ = 2;
    the continuous E|u·n| = σ√(2/π) would be 0.46 and 0.92). Small fields move oblique contours more than
    this axis-aligned estimate (0.16 measured for ρ = ½ vs 0.08), so ρ = ½ is only bracketed.
    """
    from scipy.stats import norm

    r = 12.0
    m = ball((44, 44, 44), r)
    vals = [perturb.elastic_perturb(m, (1, 1, 1), rms_voxels=rms, seed=s) for s in range(4)]
    assert np.mean([v.rms_voxels for v in vals]) == pytest.approx(rms, rel=0.15)
    area = 4 * np.pi * r**2
    moved = np.mean([np.count_nonzero(v.mask ^ m) / area for v in vals])
    sigma = rms / np.sqrt(3)
    quantised = sum(2 * (1 - norm.cdf((k - 0.5) / sigma)) for k in range(1, 20))
    if rms >= 1:
        assert moved == pytest.approx(quantised, rel=0.25), (moved, quantised)
    else:
        assert quantised < moved < sigma * np.sqrt(2 / np.pi)
    # volume: no systematic erosion or dilation
    dv = np.mean([np.count_nonzero(v.mask) for v in vals]) / np.count_nonzero(m) - 1
    assert abs(dv) < 0.02


def test_elastic_perturbation_in_mm_on_an_anisotropic_grid() -> None:
    sp = (0.7, 0.7, 2.5)
    m = ball((20, 60, 60), 14.0, sp)
    v = perturb.elastic_perturb(m, sp, rms_mm=1.0, seed=1)
    assert v.rms_mm == pytest.approx(1.0, rel=0.2)
    assert abs(np.count_nonzero(v.mask) / np.count_nonzero(m) - 1) < 0.03
    w = perturb.elastic_perturb(m, sp, rms_voxels=1.0, seed=1)  # 1 voxel of each axis: larger along z
    assert w.rms_mm > v.rms_mm
    assert 0.8 < w.dice < 1.0 and 0.8 < v.dice < 1.0


def test_displacement_field_rms_and_smoothness() -> None:
    u = perturb.smooth_displacement_field((48, 48, 48), (1, 1, 1), rms_voxels=1.0, sigma_mm=3.0, rng=0)
    inner = u[:, 8:-8, 8:-8, 8:-8]  # away from the reflecting border
    assert np.sqrt(np.mean(np.sum(inner * inner, axis=0))) == pytest.approx(1.0, rel=0.05)
    # Gaussian-smoothed white noise with σ has correlation exp(−d²/(4σ²)) at lag d
    c = np.corrcoef(u[0, :, :, :-3].ravel(), u[0, :, :, 3:].ravel())[0, 1]
    assert c == pytest.approx(np.exp(-9 / 36), abs=0.08)


def test_rotate_mask_keeps_the_volume_of_a_sphere() -> None:
    sp = (0.8, 0.8, 0.8)
    m = ball((36, 36, 36), 10.0, sp)
    ref = image_like(m, sp, origin=(-3.0, 7.0, 11.0))
    v0 = np.count_nonzero(m)
    for angles in [(0, 0, 37), (25, -40, 60), (-70, 15, 110)]:
        out, out_ref = perturb.rotate_mask(m, ref, angles)
        assert np.prod(out_ref.GetSpacing()) == pytest.approx(np.prod(sp))
        assert np.count_nonzero(out) == pytest.approx(v0, rel=0.02), angles
        assert not out[0].any() and not out[-1].any()  # the grid holds the whole lesion
    same, _ = perturb.rotate_mask(m, ref, (0, 0, 0))
    assert np.array_equal(np.argwhere(same) - np.argwhere(same)[0], np.argwhere(m) - np.argwhere(m)[0])


def physical_centroid(mask: np.ndarray, ref: sitk.Image) -> np.ndarray:
    idx = np.argwhere(mask)[:, ::-1].astype(float)
    d = np.array(ref.GetDirection()).reshape(3, 3)
    return np.array(ref.GetOrigin()) + (idx * np.array(ref.GetSpacing())) @ d.T


def test_rotation_is_about_the_centroid_in_the_grid_frame() -> None:
    """An x-elongated ellipsoid rotated 90° about the grid z axis becomes y-elongated, centroid fixed."""
    m = ball((20, 40, 40), 0, axes=(12.0, 5.0, 4.0))
    direction = perturb.grid_rotation((10, 20, 30))  # oblique image
    ref = image_like(m, (1, 1, 1), origin=(5.0, -2.0, 3.0), direction=direction)
    out, out_ref = perturb.rotate_mask(m, ref, (0, 0, 90))
    assert np.allclose(physical_centroid(out, out_ref).mean(0), physical_centroid(m, ref).mean(0), atol=0.3)
    idx = np.argwhere(out).astype(float)
    ext = idx.max(0) - idx.min(0)  # z, y, x extents in voxels
    assert ext[1] > 20 and ext[2] < 12
    assert moment_semi_axes(out, np.ones(3)) == pytest.approx(moment_semi_axes(m, np.ones(3)), rel=0.03)


def test_resample_shift_and_spacing() -> None:
    m = ball((24, 24, 24), 8.0)
    ref = image_like(m, (1.0, 1.0, 1.0))
    out, out_ref = perturb.resample_mask(m, ref, shift_voxels=(2.0, 0.0, -1.0))
    delta = physical_centroid(out, out_ref).mean(0) - physical_centroid(m, ref).mean(0)
    assert delta == pytest.approx([2.0, 0.0, -1.0], abs=1e-6)
    fine, fine_ref = perturb.resample_mask(m, ref, spacing=(0.6, 0.6, 0.6))
    assert fine_ref.GetSpacing() == (0.6, 0.6, 0.6)
    assert np.count_nonzero(fine) * 0.6**3 == pytest.approx(np.count_nonzero(m), rel=0.03)
    d, _ = perturb.resample_mask(m, ref, angles_deg=(0, 0, 30), method="distance")
    assert np.count_nonzero(d) == pytest.approx(np.count_nonzero(m), rel=0.03)
    with pytest.raises(ValueError, match="method"):
        perturb.resample_mask(m, ref, method="cubic")
    with pytest.raises(ValueError, match="empty"):
        perturb.resample_mask(np.zeros_like(m), ref)


def test_exact_translations_and_scaling() -> None:
    m = ball((20, 20, 20), 5.0)
    rolled = perturb.roll_mask(m, (2, -1, 3))
    assert np.array_equal(np.argwhere(rolled), np.argwhere(m) + np.array([3, -1, 2]))
    with pytest.raises(ValueError, match="out of the array"):
        perturb.roll_mask(m, (15, 0, 0))
    ref = image_like(m, (0.5, 0.7, 2.0), origin=(1.0, 2.0, 3.0), direction=perturb.grid_rotation((0, 0, 90)))
    padded, pref = perturb.pad_mask(m, ref, 2)
    assert padded.shape == (24, 24, 24) and pref.GetSize() == (24, 24, 24)
    assert physical_centroid(padded, pref).mean(0) == pytest.approx(physical_centroid(m, ref).mean(0))
    moved = perturb.shift_origin(ref, (1.0, -1.0, 0.5))
    assert moved.GetOrigin() == pytest.approx((2.0, 1.0, 3.5)) and moved.GetSpacing() == ref.GetSpacing()
    big = perturb.scale_image_geometry(ref, 1.5)
    assert big.GetSpacing() == pytest.approx((0.75, 1.05, 3.0)) and big.GetOrigin() == ref.GetOrigin()
    assert np.array_equal(sitk.GetArrayFromImage(big), sitk.GetArrayFromImage(ref))
    assert perturb.scale_image_geometry(ref, 2.0, scale_origin=True).GetOrigin() == pytest.approx(
        (2.0, 4.0, 6.0)
    )
    with pytest.raises(ValueError):
        perturb.scale_image_geometry(ref, 0.0)


def test_signed_distance_thresholds_back_to_the_mask() -> None:
    m = ball((16, 16, 16), 5.0)
    sdf = perturb.signed_distance(m, (1.0, 1.0, 2.0))
    assert np.array_equal(sdf < 0, m)
    assert sdf[m].max() <= -1.0 and sdf[~m].min() >= 1.0
