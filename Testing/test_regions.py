"""Regional-variation features: compareHist port, margin shells, histograms, parenchyma fallback, QC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from RadTyperLib.errors import InputError, LesionError
from RadTyperLib.regions import (
    CT_RANGE_HU,
    REGION_FEATURE_NAMES,
    REGION_QC_NAMES,
    auto_parenchyma,
    compare_hist,
    histogram_range,
    lesion_histogram,
    margin_shells,
    regional_features,
)

METHODS = ("correl", "chisqr", "intersect", "bhattacharyya")


def _all4(h1, h2) -> tuple[float, ...]:
    return tuple(compare_hist(h1, h2, m) for m in METHODS)


def _ball(shape, centre_zyx, radius_mm, spacing_xyz):
    """Bool ball of ``radius_mm`` around ``centre_zyx`` (voxel index) on an anisotropic grid."""
    sx, sy, sz = spacing_xyz
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cz, cy, cx = centre_zyx
    return ((xx - cx) * sx) ** 2 + ((yy - cy) * sy) ** 2 + ((zz - cz) * sz) ** 2 <= radius_mm**2


# --------------------------------------------------------------------------------------------------------
# compare_hist
# --------------------------------------------------------------------------------------------------------
def test_compare_hist_hand_computed():
    h1 = [0.5, 0.5, 0.0, 0.0]
    h2 = [0.5, 0.25, 0.25, 0.0]
    # CORREL, N = 4, s1 = s2 = 1: ΣH1H2 = .25 + .125 = .375 → num = .375 − 1/4 = .125;
    # ΣH1² − 1/4 = .5 − .25 = .25; ΣH2² − 1/4 = (.25 + .0625 + .0625) − .25 = .125;
    # d = .125 / sqrt(.25 · .125) = .125 / .1767767 = 1/√2.
    assert compare_hist(h1, h2, "correl") == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    # CHISQR(H1, H2): bins with H1 > 0 only: (.5−.5)²/.5 + (.5−.25)²/.5 = 0 + .0625/.5 = .125
    # (bin 2, where H2 = .25 but H1 = 0, is skipped).
    assert compare_hist(h1, h2, "chisqr") == pytest.approx(0.125, abs=1e-12)
    # Asymmetric: CHISQR(H2, H1) = 0 + .0625/.25 + .0625/.25 = .5.
    assert compare_hist(h2, h1, "chisqr") == pytest.approx(0.5, abs=1e-12)
    # INTERSECT: min(.5,.5) + min(.5,.25) + 0 + 0 = .75.
    assert compare_hist(h1, h2, "intersect") == pytest.approx(0.75, abs=1e-12)
    # BHATTACHARYYA: Σ sqrt(H1H2) = sqrt(.25) + sqrt(.125) = .5 + .35355339 = .85355339; s1s2 = 1
    # → sqrt(1 − .85355339) = sqrt(.14644661) = .38268343 (= sin 22.5°).
    assert compare_hist(h1, h2, "bhattacharyya") == pytest.approx(math.sin(math.radians(22.5)), abs=1e-12)


def test_compare_hist_normalisers_and_epsilon_rules():
    # Un-normalised: H1 = [2, 0], H2 = [1, 1]: Σ sqrt = sqrt(2); s1s2 = 4 → 1/sqrt(4) = .5
    # → sqrt(1 − .70710678) = .54119610.
    assert compare_hist([2, 0], [1, 1], "bhattacharyya") == pytest.approx(math.sqrt(1 - math.sqrt(2) / 2))
    # s1s2 = 1e-8 ≤ FLT_EPSILON (1.19e-7) → normaliser 1: sqrt(1 − sqrt(1e-4·1e-4)) = sqrt(.9999) = .99995,
    # although the two histograms are identical.
    assert compare_hist([1e-4, 0], [1e-4, 0], "bhattacharyya") == pytest.approx(math.sqrt(1 - 1e-4), rel=1e-6)
    # A uniform H1 has zero variance → CORREL denominator 0 → OpenCV returns 1.
    assert compare_hist([0.25] * 4, [0.7, 0.1, 0.1, 0.1], "correl") == 1.0
    # Inputs are cast to float32 first (like the authors): 0.1 is stored as 0.100000001490116...
    assert compare_hist([0.1, 0.9], [0.1, 0.9], "intersect") == pytest.approx(
        float(np.float32(0.1)) + float(np.float32(0.9)), abs=0
    )
    with pytest.raises(InputError):
        compare_hist([1, 0], [1, 0], "kl")
    with pytest.raises(InputError):
        compare_hist([1, 0], [1, 0, 0], "correl")


def test_compare_hist_edge_cases():
    pdf = lesion_histogram(np.array([-900, -850, -100, 40, 40, 45]), CT_RANGE_HU)
    empty = np.zeros(100)
    # Empty H1: CORREL denom 0 → 1; CHISQR skips all bins → 0; INTERSECT 0; BHATT normaliser 1, Σ=0 → 1.
    assert _all4(empty, pdf) == (1.0, 0.0, 0.0, 1.0)
    # Empty H2: CHISQR = Σ H1²/H1 = Σ H1 = 6/(6 + 1e-10) ≈ 1.
    c, chi, inter, bh = _all4(pdf, empty)
    assert (c, inter, bh) == (1.0, 0.0, 1.0)
    assert chi == pytest.approx(1.0, abs=1e-6)
    # Identical PDFs → (1, 0, 1, 0).
    c, chi, inter, bh = _all4(pdf, pdf)
    assert c == pytest.approx(1.0, abs=1e-9)
    assert chi == pytest.approx(0.0, abs=1e-12)
    assert inter == pytest.approx(1.0, abs=1e-6)
    assert bh == pytest.approx(0.0, abs=1e-6)
    # Disjoint supports → intersect 0, Bhattacharyya 1, CHISQR = Σ H1 = 1.
    a = lesion_histogram(np.full(10, -900.0), CT_RANGE_HU)
    b = lesion_histogram(np.full(10, 40.0), CT_RANGE_HU)
    assert compare_hist(a, b, "intersect") == 0.0
    assert compare_hist(a, b, "bhattacharyya") == pytest.approx(1.0, abs=1e-12)
    assert compare_hist(a, b, "chisqr") == pytest.approx(1.0, abs=1e-6)
    # Two single-bin spikes in 100 bins: CORREL = (0 − 1/100) / (1 − 1/100) = −1/99.
    assert compare_hist(a, b, "correl") == pytest.approx(-1 / 99, abs=1e-6)


def test_compare_hist_matches_opencv_when_available():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    codes = {
        "correl": cv2.HISTCMP_CORREL,
        "chisqr": cv2.HISTCMP_CHISQR,
        "intersect": cv2.HISTCMP_INTERSECT,
        "bhattacharyya": cv2.HISTCMP_BHATTACHARYYA,
    }
    for _ in range(5):
        h1 = lesion_histogram(rng.normal(-300, 300, 500), CT_RANGE_HU).astype(np.float32)
        h2 = lesion_histogram(rng.normal(0, 200, 300), CT_RANGE_HU).astype(np.float32)
        h1[rng.random(100) < 0.3] = 0
        for h2x in (h2, np.zeros(100, np.float32)):
            for m, code in codes.items():
                assert compare_hist(h1, h2x, m) == pytest.approx(cv2.compareHist(h1, h2x, code), abs=1e-6)


def test_lesion_histogram_semantics():
    # 15-HU bins over [−1000, 500]; 600 HU and NaN are dropped; 500 (right edge) is kept as np.histogram.
    h = lesion_histogram(np.array([-1000, -986, -985, 500, 600, np.nan]), CT_RANGE_HU)
    assert h.shape == (100,)
    assert h[0] == pytest.approx(2 / (4 + 1e-10))  # −1000 and −986 in [−1000, −985)
    assert h[1] == pytest.approx(1 / (4 + 1e-10))
    assert h[99] == pytest.approx(1 / (4 + 1e-10))
    assert h.sum() == pytest.approx(1.0, abs=1e-9)
    assert not lesion_histogram(np.array([700.0]), CT_RANGE_HU).any()


# --------------------------------------------------------------------------------------------------------
# Shells
# --------------------------------------------------------------------------------------------------------
def _reference_2d(mask, spacing_xyz, lung, r_mm):
    """The authors' margin_3D_histogram loop, verbatim in spirit, on the full (uncropped) slices."""
    core = np.zeros_like(mask)
    outer = np.zeros_like(mask)
    for k in range(mask.shape[0]):
        t = mask[k]
        if not t.any():
            continue
        d = ndi.distance_transform_edt(t)
        core[k] = d > d.max() / 2
        outer[k] = ndi.distance_transform_edt(1 - t) <= round(r_mm / spacing_xyz[0])
    return core, mask & ~core, outer & (lung | mask)


def test_shells_2d_partition_and_pixel_ring_thickness():
    sp = (0.75, 0.6, 2.0)  # round(5/0.75) = round(6.67) = 7 px; round(10/0.75) = round(13.3) = 13 px
    shape = (12, 90, 80)
    centre = (6, 45, 40)
    t = _ball(shape, centre, 9.0, sp)
    sh = margin_shells(t, sp)
    tc, tim, pm5, pm10 = sh["TC"], sh["TIM"], sh["PM5"], sh["PM10"]
    assert not (tc & tim).any()
    assert np.array_equal(tc | tim, t)
    assert tc[centre] and tim.sum() > tc.sum() > 0
    for k in range(shape[0]):  # the in-slice boundary belongs to TIM
        edge = t[k] & ~ndi.binary_erosion(t[k])
        assert not (edge & tc[k]).any()
    assert not (pm5 & ~pm10).any()
    assert not (t & ~pm5).any()  # paper: PM contains the tumour
    assert not (pm10 & ~t.any(axis=(1, 2))[:, None, None]).any()  # 2-D: PM only on tumour slices
    # Along the row and column through the centre, PM_r reaches exactly R pixels past the tumour,
    # in x and (pixel units, x-spacing conversion, as the authors) in y.
    k, cy, cx = centre
    for pm, rpx in ((pm5, 7), (pm10, 13)):
        row_t, row_p = np.flatnonzero(t[k, cy]), np.flatnonzero(pm[k, cy])
        assert (row_t.min() - row_p.min(), row_p.max() - row_t.max()) == (rpx, rpx)
        col_t, col_p = np.flatnonzero(t[k, :, cx]), np.flatnonzero(pm[k, :, cx])
        assert (col_t.min() - col_p.min(), col_p.max() - col_t.max()) == (rpx, rpx)
    # The cropped computation equals the authors' loop on the full slices.
    lung = np.ones(shape, bool)
    for r, name in ((5.0, "PM5"), (10.0, "PM10")):
        core, inner, outer = _reference_2d(t, sp, lung, r)
        assert np.array_equal(core, tc) and np.array_equal(inner, tim) and np.array_equal(outer, sh[name])


def test_shells_restricted_to_parenchyma_half_space():
    sp = (1.0, 1.0, 1.5)
    shape = (14, 60, 60)
    t = _ball(shape, (7, 30, 30), 7.0, sp)
    par = np.zeros(shape, bool)
    par[:, :, :30] = True  # parenchyma on the low-x side only
    for mode in ("2d", "3d"):
        sh = margin_shells(t, sp, par, mode=mode)
        beyond = sh["PM10"] & ~par
        assert beyond.any() and not (beyond & ~t).any()  # non-parenchyma side: only tumour voxels
        assert (sh["PM10"] & par & ~t).sum() > 100  # the ring is there on the parenchyma side
        ring = margin_shells(t, sp, par, mode=mode, pure_ring=True)
        assert not (ring["PM10"] & t).any()
        assert np.array_equal(ring["PM10"], sh["PM10"] & ~t)
    # Reference implementation agrees with a given lung mask too.
    sh = margin_shells(t, sp, par)
    assert np.array_equal(_reference_2d(t, sp, par, 10.0)[2], sh["PM10"])


def test_shells_3d_ring_thickness_in_mm_anisotropic():
    sp = (0.7, 0.9, 2.0)
    shape = (30, 70, 80)
    centre = (15, 35, 40)
    t = _ball(shape, centre, 8.0, sp)
    sh = margin_shells(t, sp, mode="3d")
    assert np.array_equal(sh["TC"] | sh["TIM"], t) and not (sh["TC"] & sh["TIM"]).any()
    # TC = 3-D inside distance > half its maximum: about the inner half of the radius.
    zz, yy, xx = np.nonzero(sh["TC"])
    rad = np.sqrt(((xx - 40) * sp[0]) ** 2 + ((yy - 35) * sp[1]) ** 2 + ((zz - 15) * sp[2]) ** 2)
    assert rad.max() <= 4.0 + max(sp)
    assert not (sh["PM5"] & ~sh["PM10"]).any()
    k, cy, cx = centre
    lines = {
        sp[0]: (t[k, cy], sh["PM5"][k, cy], sh["PM10"][k, cy]),
        sp[1]: (t[k, :, cx], sh["PM5"][k, :, cx], sh["PM10"][k, :, cx]),
        sp[2]: (t[:, cy, cx], sh["PM5"][:, cy, cx], sh["PM10"][:, cy, cx]),
    }
    for s, (lt, l5, l10) in lines.items():
        for line, r in ((l5, 5.0), (l10, 10.0)):
            ti, pi = np.flatnonzero(lt), np.flatnonzero(line)
            for ext in (ti.min() - pi.min(), pi.max() - ti.max()):
                assert abs(ext * s - r) < s  # ring thickness = r within one voxel on every axis
                assert ext == math.floor(r / s + 1e-9)


# --------------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------------
SP = (0.8, 0.8, 1.0)
SHAPE = (36, 76, 76)
CENTRE = (18, 38, 38)


def _phantom(sigma_mm: float = 0.0, noise: float = 15.0, seed: int = 0):
    """+40 HU ball (r = 10 mm) in −850 HU lung; edge blurred with a Gaussian of ``sigma_mm``."""
    t = _ball(SHAPE, CENTRE, 10.0, SP)
    img = np.where(t, 40.0, -850.0)
    if sigma_mm:
        img = ndi.gaussian_filter(img, (sigma_mm / SP[2], sigma_mm / SP[1], sigma_mm / SP[0]))
    img = img + np.random.default_rng(seed).normal(0, noise, SHAPE)
    return img, t


def test_feature_names_and_order():
    assert len(REGION_FEATURE_NAMES) == 20
    assert REGION_FEATURE_NAMES[:5] == (
        "region_tc_tim_correl",
        "region_tc_tim_chisqr",
        "region_tc_tim_intersect",
        "region_tc_tim_bhattacharyya",
        "region_tc_pm5_correl",
    )
    assert REGION_FEATURE_NAMES[-1] == "region_tim_pm10_bhattacharyya"
    img, t = _phantom()
    res = regional_features(img, t, SP, np.ones(SHAPE, bool))
    assert tuple(res.features) == REGION_FEATURE_NAMES
    assert tuple(res.qc) == REGION_QC_NAMES
    assert all(isinstance(v, float) and math.isfinite(v) for v in res.row().values())
    # Argument order of the authors: compareHist(h_TC, h_TIM) etc.
    h = res.histograms
    assert res.features["region_tc_tim_chisqr"] == compare_hist(h["TC"], h["TIM"], "chisqr")
    assert res.features["region_tc_pm10_chisqr"] == compare_hist(h["TC"], h["PM10"], "chisqr")
    assert res.features["region_tim_pm5_chisqr"] == compare_hist(h["TIM"], h["PM5"], "chisqr")
    for name in ("TC", "TIM", "PM5", "PM10"):
        assert np.array_equal(res.shells[name], margin_shells(t, SP, np.ones(SHAPE, bool))[name])
        assert res.qc[f"qc_voxels_{name.lower()}"] == res.shells[name].sum()
    assert res.bin_range == CT_RANGE_HU and res.bin_edges[1] - res.bin_edges[0] == pytest.approx(15.0)


def test_homogeneous_tumour_in_identical_parenchyma():
    t = _ball(SHAPE, CENTRE, 10.0, SP)
    img = np.random.default_rng(1).normal(40, 10, SHAPE)
    for mode in ("2d", "3d"):
        f = regional_features(img, t, SP, np.ones(SHAPE, bool), mode=mode).features
        for pair in ("tc_tim", "tc_pm5", "tc_pm10", "tim_pm5", "tim_pm10"):
            assert f[f"region_{pair}_correl"] > 0.99
            assert f[f"region_{pair}_chisqr"] < 0.02
            assert f[f"region_{pair}_intersect"] > 0.95
            assert f[f"region_{pair}_bhattacharyya"] < 0.05


def test_bright_tumour_in_dark_lung():
    img, t = _phantom()
    res = regional_features(img, t, SP, np.ones(SHAPE, bool))
    f, qc = res.features, res.qc
    assert f["region_tc_tim_intersect"] > 0.9
    assert f["region_tc_pm10_intersect"] < 0.5 * f["region_tc_tim_intersect"]
    # Sharp edge, disjoint intensities: TIM-PM overlap = the tumour's share of PM (PM contains the tumour):
    # intersect = |T|/|PM5| and Bhattacharyya = sqrt(1 − sqrt(|T|/|PM5|)).
    frac = (qc["qc_voxels_tc"] + qc["qc_voxels_tim"]) / qc["qc_voxels_pm5"]
    assert f["region_tim_pm5_intersect"] == pytest.approx(frac, abs=0.01)
    assert f["region_tim_pm5_bhattacharyya"] == pytest.approx(math.sqrt(1 - math.sqrt(frac)), abs=0.01)
    assert f["region_tc_pm5_intersect"] > f["region_tc_pm10_intersect"]


def test_blurred_margin_raises_tumour_parenchyma_overlap():
    sharp, t = _phantom(0.0)
    blurred, _ = _phantom(3.0)
    par = np.ones(SHAPE, bool)
    # Tumour-free ring (pure_ring): the blurred edge puts intermediate HU on both sides of the contour.
    fs = regional_features(sharp, t, SP, par, pure_ring=True).features
    fb = regional_features(blurred, t, SP, par, pure_ring=True).features
    assert fs["region_tim_pm5_intersect"] < 0.005
    assert fb["region_tim_pm5_intersect"] > fs["region_tim_pm5_intersect"] + 0.02
    assert fb["region_tim_pm5_bhattacharyya"] < fs["region_tim_pm5_bhattacharyya"] - 0.01
    # Paper mode (PM contains the tumour): blur separates TIM from TC and weakens TIM–PM correlation.
    ps = regional_features(sharp, t, SP, par).features
    pb = regional_features(blurred, t, SP, par).features
    assert pb["region_tc_tim_intersect"] < ps["region_tc_tim_intersect"] - 0.3
    assert pb["region_tim_pm5_correl"] < ps["region_tim_pm5_correl"]


def test_mr_robust_range_and_explicit_range():
    t = _ball(SHAPE, CENTRE, 10.0, SP)
    rng = np.random.default_rng(2)
    img = np.where(t, 500.0, 300.0) + rng.normal(0, 20, SHAPE)
    par = np.ones(SHAPE, bool)
    res = regional_features(img, t, SP, par, modality="MR")
    union = res.shells["TC"] | res.shells["TIM"] | res.shells["PM10"]
    lo, hi = np.percentile(img[union], [1, 99])
    assert res.bin_range == pytest.approx((lo, hi))
    assert histogram_range(img, res.shells, "MR") == pytest.approx((lo, hi))
    assert histogram_range(img, res.shells, "ct") == CT_RANGE_HU
    assert res.qc["qc_hist_out_of_range_fraction"] == pytest.approx(0.02, abs=0.002)
    res2 = regional_features(img, t, SP, par, modality="MR", bin_range=(0.0, 1000.0))
    assert res2.bin_range == (0.0, 1000.0) and res2.qc["qc_hist_out_of_range_fraction"] == 0.0
    with pytest.raises(InputError):
        regional_features(img, t, SP, par, bin_range=(5.0, 5.0))


def test_out_of_range_tumour_is_flagged_not_silent():
    t = _ball(SHAPE, CENTRE, 10.0, SP)
    img = np.where(t, 900.0, -850.0)  # e.g. a calcified lesion above the 500 HU bin limit
    res = regional_features(img, t, SP, np.ones(SHAPE, bool))
    n_t = t.sum()
    assert res.qc["qc_empty_hist"] == 2  # TC and TIM
    assert res.qc["qc_hist_out_of_range_fraction"] == pytest.approx(n_t / res.qc["qc_voxels_pm10"])
    f = res.features
    assert (f["region_tc_pm5_correl"], f["region_tc_pm5_chisqr"], f["region_tc_pm5_intersect"]) == (
        1.0,
        0.0,
        0.0,
    )
    assert f["region_tc_pm5_bhattacharyya"] == 1.0


# --------------------------------------------------------------------------------------------------------
# Parenchyma fallback
# --------------------------------------------------------------------------------------------------------
def _chest(seed: int = 4):
    """Chest-like CT: air −1000 outside, body +40, two lungs −850, a +40 HU tumour in the right lung."""
    sp = (1.0, 1.0, 2.0)
    shape = (40, 128, 160)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((xx - 80) / 70.0) ** 2 + ((yy - 64) / 50.0) ** 2 <= 1
    lungs = (((xx - 50) / 25.0) ** 2 + ((yy - 60) / 32.0) ** 2 + ((zz - 20) / 25.0) ** 2 <= 1) | (
        ((xx - 110) / 25.0) ** 2 + ((yy - 60) / 32.0) ** 2 + ((zz - 20) / 25.0) ** 2 <= 1
    )
    t = _ball(shape, (20, 60, 50), 8.0, sp)
    img = np.full(shape, -1000.0)
    img[np.broadcast_to(body, shape)] = 40.0
    img[lungs] = -850.0
    img[t] = 40.0
    img += np.random.default_rng(seed).normal(0, 20, shape)
    return img, t, sp, lungs, np.broadcast_to(body, shape)


def test_auto_parenchyma_finds_lung_on_ct():
    img, t, sp, lungs, _ = _chest()
    par, method = auto_parenchyma(img, sp, "CT", t)
    assert method == "auto_lung_ct"
    near = (ndi.distance_transform_edt(~t, sampling=sp[::-1]) <= 10.0) & ~t
    assert par[near & lungs].mean() > 0.99  # the lung around the lesion is found ...
    # ... and nothing else, up to the one-voxel notches the closing fills on the digital lung edge.
    assert not (par & ~ndi.binary_dilation(lungs)).any() and (par & ~lungs).sum() < 0.01 * par.sum()
    res = regional_features(img, t, sp)
    assert res.qc["qc_parenchyma_auto"] == 1 and res.parenchyma_method == "auto_lung_ct"
    ring = res.shells["PM10"] & ~t
    assert ring.sum() > 1000 and lungs[ring].all()
    assert res.qc["qc_ring_parenchyma_fraction"] == pytest.approx(1.0)


def test_auto_parenchyma_soft_tissue_lesion_on_ct():
    img, _, sp, lungs, body = _chest()
    t = _ball(img.shape, (20, 100, 80), 6.0, sp)  # between the lungs, away from them by > 10 mm
    img[t] = 60.0
    res = regional_features(img, t, sp)
    assert res.qc["qc_parenchyma_auto"] == 2 and res.parenchyma_method == "auto_tissue_ct"
    ring = res.shells["PM10"] & ~t
    assert ring.any() and body[ring].all() and not lungs[ring].any()


def test_auto_parenchyma_mr_like():
    _, t, sp, _, body = _chest()
    rng = np.random.default_rng(5)
    mr = np.where(body, 300.0, 0.0)
    mr[t] = 500.0
    mr = np.abs(mr + rng.normal(0, 20, mr.shape))
    t2 = _ball(mr.shape, (20, 104, 80), 6.0, sp)  # near the body surface: the ring reaches background
    mr[t2] = 500.0
    res = regional_features(mr, t2, sp, modality="MR")
    assert res.qc["qc_parenchyma_auto"] == 2 and res.parenchyma_method == "auto_tissue_intensity"
    ring = res.shells["PM10"] & ~t2
    # Background noise is excluded, up to noisy voxels touching the body surface (opening keeps those).
    assert ring.sum() > 1000 and ndi.binary_dilation(body)[ring].all() and body[ring].mean() > 0.995
    assert 0.5 < res.qc["qc_ring_parenchyma_fraction"] < 1.0


# --------------------------------------------------------------------------------------------------------
# QC, edge cases, errors, speed
# --------------------------------------------------------------------------------------------------------
def test_border_clipping_flag():
    sp = (1.0, 1.0, 2.0)
    shape = (20, 50, 50)
    img = np.random.default_rng(6).normal(40, 10, shape)
    par = np.ones(shape, bool)
    centred = _ball(shape, (10, 25, 25), 5.0, sp)
    assert regional_features(img, centred, sp, par).qc["qc_shell_clipped"] == 0
    assert regional_features(img, centred, sp, par, mode="3d").qc["qc_shell_clipped"] == 0
    near_x = _ball(shape, (10, 25, 12), 5.0, sp)  # 7 px from the x border < R = 10 px
    assert regional_features(img, near_x, sp, par).qc["qc_shell_clipped"] == 1
    near_z = _ball(shape, (3, 25, 25), 5.0, sp)  # 2 slices from z border: 3-D shell clipped, 2-D not
    assert regional_features(img, near_z, sp, par).qc["qc_shell_clipped"] == 0
    assert regional_features(img, near_z, sp, par, mode="3d").qc["qc_shell_clipped"] == 1
    sh = regional_features(img, near_x, sp, par).shells
    assert sh["PM10"][:, :, 0].any()  # the ring is cut by the border, not wrapped or lost


def test_tiny_lesion_gives_valid_numbers_and_empty_tim_flag():
    sp = (1.0, 1.0, 2.5)
    shape = (5, 30, 30)
    img = np.random.default_rng(7).normal(-850, 20, shape)
    t = np.zeros(shape, bool)
    t[2, 14:16, 14:16] = True
    img[t] = 40.0
    for mode in ("2d", "3d"):
        res = regional_features(img, t, sp, np.ones(shape, bool), mode=mode)
        assert res.qc["qc_empty_tim"] == 1 and res.qc["qc_voxels_tim"] == 0 and res.qc["qc_voxels_tc"] == 4
        assert res.qc["qc_empty_hist"] == 1
        f = res.features
        assert all(math.isfinite(v) for v in f.values())
        # compareHist(h_TC, empty): (1, ≈1, 0, 1); compareHist(empty, h_PM): (1, 0, 0, 1).
        tc_tim = tuple(f[f"region_tc_tim_{m}"] for m in METHODS)
        assert tc_tim[0] == 1.0 and tc_tim[1] == pytest.approx(1.0, abs=1e-6) and tc_tim[2:] == (0.0, 1.0)
        assert tuple(f[f"region_tim_pm10_{m}"] for m in METHODS) == (1.0, 0.0, 0.0, 1.0)


def test_bad_input_errors_name_the_lesion():
    img, t = _phantom()
    with pytest.raises(LesionError, match=r"'L7'.*empty mask"):
        regional_features(img, np.zeros(SHAPE, bool), SP, lesion="L7")
    with pytest.raises(LesionError, match=r"'L7'"):
        margin_shells(np.zeros(SHAPE, bool), SP, lesion="L7")
    with pytest.raises(InputError, match=r"'L7'.*shape"):
        regional_features(img[:-1], t, SP, lesion="L7")
    with pytest.raises(InputError, match=r"'L7'.*parenchyma"):
        regional_features(img, t, SP, np.ones((2, 2, 2), bool), lesion="L7")
    with pytest.raises(LesionError, match=r"'L7'.*finite"):
        regional_features(np.full(SHAPE, np.nan), t, SP, lesion="L7")
    with pytest.raises(InputError, match="spacing"):
        regional_features(img, t, (0.8, 0.0, 1.0), lesion="L7")
    with pytest.raises(InputError, match="mode"):
        regional_features(img, t, SP, mode="4d")
    # A label map (non-bool) is accepted: nonzero = tumour.
    res = regional_features(img, t.astype(np.uint8) * 3, SP, np.ones(SHAPE, bool))
    assert res.qc["qc_voxels_tc"] + res.qc["qc_voxels_tim"] == t.sum()


def test_50_cm3_lesion_is_processed_in_a_cropped_box():
    sp = (0.7, 0.7, 1.25)
    shape = (120, 300, 300)
    radius = (50000 * 3 / (4 * np.pi)) ** (1 / 3)  # 22.85 mm → 50 cm³
    t = _ball(shape, (60, 150, 150), radius, sp)
    assert t.sum() * np.prod(sp) / 1000 == pytest.approx(50, rel=0.01)
    img = np.where(t, 40, -850).astype(np.int16)
    par = np.ones(shape, bool)
    for mode in ("2d", "3d"):  # timing is measured by Resources/Scripts/benchmark_features.py, not here
        res = regional_features(img, t, sp, par, mode=mode)
        box = res.bbox
        assert all(b.stop - b.start < n for b, n in zip(box[1:], shape[1:], strict=True))
