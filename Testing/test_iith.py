"""IITH (Su et al. 2023): feature list, MAD filter, the SNFtool port checked by hand and against SNFtool
2.3.1 numbers, HI and its reference, the cohort pipeline on a planted two-group cohort, the report files."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pandas as pd
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.iith import (
    IITH_FEATURES,
    IITHReference,
    affinity_matrix,
    dist2,
    dominate_set,
    estimate_number_of_clusters,
    feature_mad,
    heterogeneity_columns,
    heterogeneity_feature,
    hi_from_reference,
    iith_cohort,
    iith_report,
    mad_filter,
    snf,
    snf_diffuse,
    snf_normalize,
    spectral_clustering,
    standard_normalization,
)


# --- feature list -----------------------------------------------------------------------------------------
def test_feature_list_names_signs_and_views():
    by = {f.name: f for f in IITH_FEATURES}
    assert len(by) == len(IITH_FEATURES) == 44  # 9 first-order + 35 texture (paper: 9 + 33)
    assert sum(f.view == "first_order" for f in IITH_FEATURES) == 9
    assert {f.feature_class for f in IITH_FEATURES} == {
        "firstorder",
        "glcm",
        "glrlm",
        "glszm",
        "gldm",
        "ngtdm",
    }
    # named in the paper as positively related
    for name in (
        "firstorder_Range",
        "firstorder_Variance",
        "glcm_DifferenceEntropy",
        "glrlm_GrayLevelNonUniformity",
    ):
        assert by[name].sign == +1
    for name in (
        "firstorder_Uniformity",
        "glcm_Idm",
        "glcm_JointEnergy",
        "ngtdm_Coarseness",
        "ngtdm_Strength",
    ):
        assert by[name].sign == -1
    assert by["firstorder_Kurtosis"].sign == +1 and by["firstorder_Skewness"].sign == 0
    assert by["firstorder_Entropy"].column == "radiomics_firstorder_Entropy"
    assert by["glcm_Contrast"].view == "texture"


@pytest.mark.skipif(importlib.util.find_spec("radiomics") is None, reason="pyradiomics not installed")
def test_feature_names_exist_in_pyradiomics():
    from radiomics import getFeatureClasses

    classes = getFeatureClasses()
    for f in IITH_FEATURES:
        names = classes[f.feature_class].getFeatureNames()  # name → deprecated?
        assert f.feature in names and not names[f.feature], f.name


def test_column_matching_exact_suffix():
    assert heterogeneity_feature("radiomics_glcm_Id").name == "glcm_Id"
    assert heterogeneity_feature("radiomics_glcm_Idn").name == "glcm_Idn"  # not glcm_Id
    assert heterogeneity_feature("radiomics_original_ngtdm_Contrast").name == "ngtdm_Contrast"
    assert heterogeneity_feature("radiomics_wavelet-LLH_firstorder_Entropy").view == "first_order"
    assert heterogeneity_feature("radiomics_firstorder_Mean") is None
    assert heterogeneity_feature("shape_glcm_Contrast") is None
    cols = heterogeneity_columns(
        ["lesion", "radiomics_glcm_Contrast", "region_x", "radiomics_firstorder_Range"]
    )
    assert list(cols) == ["radiomics_glcm_Contrast", "radiomics_firstorder_Range"]


# --- MAD filter -------------------------------------------------------------------------------------------
def test_mad_filter_hand_values():
    table = {
        # median 3, |x − 3| = 2,1,0,1,97 → median 1 → MAD = 1.4826 > 1: kept (the outlier does not count)
        "a": [1.0, 2.0, 3.0, 4.0, 100.0],
        # median 11, |x − 11| = 1,.5,0,.5,1 → .5 → MAD = 0.7413: dropped
        "b": [10.0, 10.5, 11.0, 11.5, 12.0],
        # median 0, |x| = 0,0,0,5,5 → 0 → MAD = 0 although SD > 0: dropped
        "c": [0.0, 0.0, 0.0, 5.0, 5.0],
        # even n: median 5, |x − 5| = 3,1,1,3 → 2 → MAD = 2.9652
        "d": [2.0, 4.0, 6.0, 8.0],
    }
    mads = feature_mad(table, list(table))
    assert mads["a"] == pytest.approx(1.4826, rel=1e-12)
    assert mads["b"] == pytest.approx(0.7413, rel=1e-12)
    assert mads["c"] == 0.0
    assert mads["d"] == pytest.approx(2.9652, rel=1e-12)
    assert mad_filter(table, ["a", "b", "c", "d"]) == ["a", "d"]
    assert mad_filter(table, ["d", "a"], threshold=2.9) == ["d"]
    assert mad_filter(table, ["d"], threshold=3.0) == []
    from scipy.stats import median_abs_deviation

    assert mads["d"] == pytest.approx(median_abs_deviation(table["d"], scale="normal"), rel=2e-6)


# --- SNFtool port: by hand ----------------------------------------------------------------------------------
def test_standard_normalization_and_dist2():
    X = np.array([[1.0, 5.0], [2.0, 5.0], [6.0, 5.0]])
    Z = standard_normalization(X)
    assert np.allclose(Z[:, 0], (X[:, 0] - 3.0) / math.sqrt(7.0))  # mean 3, sd (n − 1) = √7
    assert np.all(Z[:, 1] == 0.0)  # constant column: sd 0 → 1
    D = dist2(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 4.0]]))
    assert np.allclose(D, [[0, 2, 25], [25, 13, 0]])  # squared, not square-rooted


def test_affinity_matrix_by_hand():
    # five 1-D points, K = 2, sigma = 0.5; D = squared distances (dist2)
    x = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    D = dist2(x, x)
    assert np.allclose(D[0], [0, 1, 9, 36, 100]) and np.allclose(D[3], [36, 25, 9, 0, 16])
    # μ_i = mean of the 2 smallest off-diagonal distances of row i:
    #   μ0 = (1+9)/2 = 5, μ1 = (1+4)/2 = 2.5, μ2 = (4+9)/2 = 6.5, μ3 = (9+16)/2 = 12.5, μ4 = (16+49)/2 = 32.5
    # Σ_ij = (μ_i + μ_j + D_ij)/3;  W_ij = exp(−D_ij² / (2 (σΣ_ij)²)) / (σ Σ_ij √(2π))
    #   W00: Σ = 10/3,  sd = 5/3:        1/(5/3 · 2.506628)                    = 0.239365368
    #   W11: Σ = 5/3,   sd = 5/6:        1/(5/6 · 2.506628)                    = 0.478730736
    #   W01: Σ = 8.5/3 = 2.833333, sd = 1.416667: exp(−1/4.013889)/3.551057   = 0.219505020
    #   W12: Σ = 13/3 = 4.333333,  sd = 2.166667: exp(−16/9.388889)/5.431027  = 0.033497970
    #   W23: Σ = 28/3 = 9.333333,  sd = 4.666667: exp(−81/43.55556)/11.69760  = 0.013312159
    #   W34: Σ = 61/3 = 20.33333,  sd = 10.16667: exp(−256/206.7222)/25.48405 = 0.011373949
    #   W04: Σ = 137.5/3 = 45.83333, sd = 22.91667: exp(−10000/1050.347)/57.44356 = 1.2764036e-06
    W = affinity_matrix(D, K=2, sigma=0.5)
    hand = {
        (0, 0): 0.239365368,
        (1, 1): 0.478730736,
        (0, 1): 0.219505020,
        (1, 2): 0.033497970,
        (2, 3): 0.013312159,
        (3, 4): 0.011373949,
        (0, 4): 1.2764036e-06,
    }
    for (i, j), w in hand.items():
        assert W[i, j] == pytest.approx(w, rel=1e-7), (i, j)
        assert W[j, i] == W[i, j]
    assert np.array_equal(W, W.T)
    with pytest.raises(ValueError, match="K must be"):
        affinity_matrix(D, K=5)


def _hand_views():
    # two 4 × 4 views; off-diagonal row sums are 4, the diagonal (7) is replaced by ½
    W1 = np.array([[7, 2, 1, 1], [2, 7, 1, 1], [1, 1, 7, 2], [1, 1, 2, 7]], dtype=float)  # pairs (0,1), (2,3)
    W2 = np.array([[7, 1, 2, 1], [1, 7, 1, 2], [2, 1, 7, 1], [1, 2, 1, 7]], dtype=float)  # pairs (0,2), (1,3)
    return W1, W2


def test_snf_one_iteration_by_hand():
    W1, W2 = _hand_views()
    # normalize: X_ij / (2 · 4) → 2/8 = .25, 1/8 = .125, diagonal ½ (already symmetric)
    P1 = snf_normalize(W1)
    assert np.allclose(P1, [[0.5, 0.25, 0.125, 0.125], [0.25, 0.5, 0.125, 0.125],
                            [0.125, 0.125, 0.5, 0.25], [0.125, 0.125, 0.25, 0.5]])  # fmt: skip
    assert np.allclose(P1.sum(axis=1), 1.0)
    # dominate set K = 2: keep ½ and .25 of each row, divide by .75
    S1 = dominate_set(P1, 2)
    assert np.allclose(S1, np.array([[2, 1, 0, 0], [1, 2, 0, 0], [0, 0, 2, 1], [0, 0, 1, 2]]) / 3)
    assert np.allclose(S1.sum(axis=1), 1.0) and np.all((S1 > 0).sum(axis=1) == 2)
    # one iteration: S1·P2·S1ᵀ = [[24,21,14,13],[21,24,13,14],[14,13,24,21],[13,14,21,24]] / 72
    #   (e.g. S1·P2 row 0 = ⅔·P2[0] + ⅓·P2[1] = [9, 6, 5, 4]/24); off-diagonal row sum 48/72 →
    #   normalize: a/72 / (2·48/72) = a/96, diagonal ½
    P1_1, P2_1 = snf_diffuse([W1, W2], K=2, t=1)
    assert np.allclose(P1_1 * 96, [[48, 21, 14, 13], [21, 48, 13, 14], [14, 13, 48, 21], [13, 14, 21, 48]])
    assert np.allclose(P2_1 * 96, [[48, 14, 21, 13], [14, 48, 13, 21], [21, 13, 48, 14], [13, 21, 14, 48]])
    # fused: mean → off-diagonal row sum ½ → normalize leaves it: × 192 = [[96,35,35,26], …]
    # (SNFtool 2.3.1 in R, SNF(list(W1, W2), 2, 1) * 192, prints exactly this matrix)
    F = snf([W1, W2], K=2, t=1)
    assert np.allclose(F * 192, [[96, 35, 35, 26], [35, 96, 26, 35], [35, 26, 96, 35], [26, 35, 35, 96]])
    assert np.array_equal(F, F.T)


def test_two_obvious_groups_and_matrix_properties():
    a = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.3]])
    b = np.array([[1.0], [1.2], [0.9], [7.0], [7.5], [7.2]])
    Ws = [affinity_matrix(dist2(v, v), K=2, sigma=0.5) for v in (a, b)]
    F = snf(Ws, K=2, t=20)
    assert np.array_equal(F, F.T)
    assert np.allclose(np.diag(F), 0.5)
    assert np.all(F[:3, 3:] < 1e-11) and np.all(F[:3, 1:3] > 0.2)
    # SNFtool 2.3.1: F[0, 1] = 0.254155621865916, labels 1 1 1 2 2 2
    assert F[0, 1] == pytest.approx(0.254155621865916, rel=1e-12)
    assert spectral_clustering(F, 2).tolist() == [1, 1, 1, 2, 2, 2]
    for W in Ws:  # affinity: symmetric and positive
        assert np.array_equal(W, W.T) and np.all(W > 0)


def test_deterministic_and_sign_free():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (10, 3)), rng.normal(3, 1, (10, 3))])
    W = affinity_matrix(dist2(X, X), K=5)
    F1 = snf([W, W**1.5], K=5, t=20)
    F2 = snf([W, W**1.5], K=5, t=20)
    assert np.array_equal(F1, F2)
    assert np.array_equal(spectral_clustering(F1, 2), spectral_clustering(F2, 2))
    assert sorted(np.bincount(spectral_clustering(F1, 2))[1:].tolist()) == [10, 10]


# --- SNFtool port: against SNFtool 2.3.1 (R 4.2, CRAN sources) ----------------------------------------------
X1_R = [[0.0, 1.4, 1.2], [-0.5, -0.3, -0.5], [0.6, -0.1, 0.7], [-1.8, 1.6, -0.1], [0.7, -0.1, -0.4],
        [0.5, 0.8, -0.2], [-0.2, 0.7, -0.9], [-1.5, 0.4, -0.7], [-0.4, 0.7, 1.0], [0.3, 0.0, 1.5],
        [2.4, 1.3, 0.8], [1.9, 2.2, 1.2], [2.0, 2.5, 1.3], [0.7, 1.8, 1.7], [2.6, 0.2, 0.8], [0.7, -0.2, 1.6]]  # fmt: skip
X2_R = [[0.3, -0.4, 0.8, 0.5], [0.4, 0.2, 0.6, -0.8], [0.4, 0.4, -1.1, 0.2], [-0.2, 0.5, -0.3, 0.0],
        [0.2, -0.5, 0.4, -0.1], [0.3, -0.3, 0.7, 0.4], [-0.1, 0.4, 0.8, 1.1], [-0.9, 0.5, 0.3, -0.1],
        [-0.2, 0.8, -1.3, 1.2], [2.1, -2.1, -0.3, -0.7], [1.0, 1.0, 2.0, -1.2], [0.2, 0.2, 1.6, 1.0],
        [0.1, -0.2, 0.0, 0.4], [0.1, -0.1, 0.3, 0.5], [0.6, -1.8, -0.5, 1.8], [0.6, -1.9, 1.3, 1.1]]  # fmt: skip


def _r_views(K: int, sigma: float) -> list[np.ndarray]:
    out = []
    for X in (X1_R, X2_R):
        Z = standard_normalization(np.array(X))
        out.append(affinity_matrix(dist2(Z, Z), K=K, sigma=sigma))
    return out


def test_matches_snftool_2_3_1():
    # R: Z <- standardNormalization(X); W <- affinityMatrix(dist2(Z, Z), K, sigma); SNF(list(W1, W2), K, t)
    W1, W2 = _r_views(5, 0.5)
    assert W1[0, :4] == pytest.approx(
        [5.8049403841919012e-01, 7.8898530598338476e-05, 4.7254323992532554e-03, 8.8975236967854289e-03],
        rel=1e-12,
    )
    F = snf([W1, W2], K=5, t=10)
    assert F[0, :4] == pytest.approx(
        [0.5, 0.017821124375528588, 0.025237079890960488, 0.022864397664242926], rel=1e-12
    )
    assert F[15, 12:] == pytest.approx(
        [0.011016258726706911, 0.011905576658347130, 0.108744311543379490, 0.5], rel=1e-12
    )
    assert F.sum(axis=1)[:3] == pytest.approx(
        [1.0055903689275829, 1.0059910737236957, 1.0062581331478109], rel=1e-12
    )
    assert spectral_clustering(F, 2).tolist() == [1, 1, 2, 1, 1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 2, 2]
    assert spectral_clustering(F, 3).tolist() == [2, 2, 3, 1, 2, 2, 2, 1, 3, 3, 2, 2, 2, 2, 3, 3]
    assert estimate_number_of_clusters(F) == 2  # estimateNumberOfClustersGivenGraph: "Eigen-gap best" 2
    F = snf(_r_views(13, 0.4), K=13, t=20)  # Su et al.'s settings
    assert F[0, :4] == pytest.approx(
        [0.5, 0.023324045037936052, 0.025118088949820781, 0.027944266263643294], rel=1e-12
    )
    assert spectral_clustering(F, 2).tolist() == [1, 1, 2, 1, 1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 2, 2]


def test_estimate_number_of_clusters_three_groups():
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(c, 0.3, (12, 2)) for c in ((0, 0), (6, 0), (0, 6))])
    W = affinity_matrix(dist2(X, X), K=8, sigma=0.5)
    F = snf([W, W], K=8, t=10)
    assert estimate_number_of_clusters(F, range(2, 6)) == 3
    labels = spectral_clustering(F, 3)
    assert all(len(set(labels[i : i + 12].tolist())) == 1 for i in (0, 12, 24))


@pytest.mark.skipif(importlib.util.find_spec("snf") is None, reason="snfpy not installed (not a dependency)")
def test_affinity_matches_snfpy():
    import snf as snfpy

    X = np.array(X1_R)
    (A,) = [snfpy.make_affinity(X, metric="sqeuclidean", K=5, mu=0.5)]
    Z = standard_normalization(X)
    assert np.allclose(A, affinity_matrix(dist2(Z, Z), K=5, sigma=0.5), rtol=1e-10)


# --- synthetic cohort with planted groups -------------------------------------------------------------------
def _texture_features(img: np.ndarray, bin_width: float = 25.0) -> dict[str, float]:
    """pyradiomics-like first-order and GLCM features of a 3-D patch (numpy; GLCM at offset (0, 0, 1))."""
    x = img.ravel()
    binned = np.floor(img / bin_width) - np.floor(x.min() / bin_width) + 1
    _, counts = np.unique(binned, return_counts=True)
    p = counts / counts.sum()
    p10, p25, p75, p90 = np.percentile(x, [10, 25, 75, 90])
    mid = x[(x >= p10) & (x <= p90)]
    m, s = x.mean(), x.std()
    i, j = binned[:, :, :-1].ravel(), binned[:, :, 1:].ravel()
    i, j = np.concatenate([i, j]), np.concatenate([j, i])  # symmetric GLCM
    levels = int(binned.max())
    P = np.zeros((levels + 1, levels + 1))
    np.add.at(P, (i.astype(int), j.astype(int)), 1.0)
    P /= P.sum()
    ii, jj = np.indices(P.shape)
    nz = P > 0
    return {
        "radiomics_firstorder_Entropy": float(-(p * np.log2(p)).sum()),
        "radiomics_firstorder_InterquartileRange": float(p75 - p25),
        "radiomics_firstorder_MeanAbsoluteDeviation": float(np.abs(x - m).mean()),
        "radiomics_firstorder_RobustMeanAbsoluteDeviation": float(np.abs(mid - mid.mean()).mean()),
        "radiomics_firstorder_Range": float(x.max() - x.min()),
        "radiomics_firstorder_Variance": float(x.var()),
        "radiomics_firstorder_Kurtosis": float(((x - m) ** 4).mean() / s**4),
        "radiomics_firstorder_Skewness": float(((x - m) ** 3).mean() / s**3),
        "radiomics_firstorder_Uniformity": float((p**2).sum()),
        "radiomics_glcm_Contrast": float((P * (ii - jj) ** 2).sum())
        * 100,  # × 100: units as a real GLCM scale
        "radiomics_glcm_DifferenceAverage": float((P * np.abs(ii - jj)).sum()) * 10,
        "radiomics_glcm_JointEntropy": float(-(P[nz] * np.log2(P[nz])).sum()),
        "radiomics_glcm_JointEnergy": float((P**2).sum()),
        "radiomics_glcm_Idm": float((P / (1 + (ii - jj) ** 2)).sum()),
        "radiomics_glrlm_GrayLevelNonUniformity": float((counts**2).sum() / counts.sum()),
    }


def _planted_cohort(n_per_group: int = 20, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """Lesions with homogeneous (SD ≈ 15) or heterogeneous (SD ≈ 35) textures; truth 1 = heterogeneous."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for g, sd in ((0, 15.0), (1, 35.0)):
        for k in range(n_per_group):
            size = int(rng.integers(8, 13))
            img = rng.normal(300 + rng.normal(0, 20), sd * rng.uniform(0.85, 1.15), (size, size, size))
            row = {"lesion": f"lesion_{k + 1}", "site": "breast", **_texture_features(img)}
            row |= {"qc_error": "", "patient": f"P{g}{k // 2:02d}", "modality": "MR"}
            rows.append(row)
            truth.append(g)
    order = rng.permutation(len(rows))  # groups interleaved
    return pd.DataFrame([rows[i] for i in order]), np.array(truth)[order]


@pytest.fixture(scope="module")
def cohort():
    table, truth = _planted_cohort()
    return table, truth, iith_cohort(table)


def test_planted_groups_recovered_and_high_cluster_is_heterogeneous(cohort):
    from sklearn.metrics import adjusted_rand_score

    table, truth, res = cohort
    assert adjusted_rand_score(truth, res.table["cluster"]) >= 0.9
    high = res.table["iith"].to_numpy() == "high"
    assert np.mean(high == (truth == 1)) >= 0.95
    assert res.cluster_hi[res.high_cluster] > max(
        v for c, v in res.cluster_hi.items() if c != res.high_cluster
    )
    assert res.table["hi"][truth == 1].mean() > res.table["hi"][truth == 0].mean()
    assert res.views["first_order"] and res.views["texture"]
    assert set(res.features) == set(res.views["first_order"]) | set(res.views["texture"])
    assert "radiomics_firstorder_Skewness" not in res.hi_features
    # MAD > 1 drops the bounded features (Uniformity, JointEnergy, Idm ∈ [0, 1])
    for c in ("radiomics_firstorder_Uniformity", "radiomics_glcm_JointEnergy", "radiomics_glcm_Idm"):
        assert c not in res.features and c in res.excluded_features
    assert np.array_equal(res.fused, res.fused.T)
    assert res.table[["patient", "lesion"]].equals(table[["patient", "lesion"]].astype(str))


def test_hi_is_signed_sum_of_z_scores(cohort):
    table, _, res = cohort
    z = 0.0
    for c in res.hi_features:
        x = table[c].to_numpy(dtype=float)
        z = z + heterogeneity_feature(c).sign * (x - x.mean()) / x.std(ddof=1)
    assert np.allclose(res.table["hi"], z, rtol=1e-12, atol=1e-12)


def test_hi_with_negative_features_given_explicitly(cohort):
    table, truth, _ = cohort
    cols = ["radiomics_firstorder_Variance", "radiomics_firstorder_Uniformity", "radiomics_glcm_Idm",
            "radiomics_glcm_Contrast", "radiomics_firstorder_Skewness"]  # fmt: skip
    res = iith_cohort(table, features=cols)  # given features: no MAD filter
    assert res.features == cols and res.settings["mad_threshold"] is None
    assert res.hi_features == cols[:4]  # Skewness (sign 0) clusters but is not in the HI
    z = {c: (table[c] - table[c].mean()) / table[c].std(ddof=1) for c in cols}
    hand = z[cols[0]] - z[cols[1]] - z[cols[2]] + z[cols[3]]
    assert np.allclose(res.table["hi"], hand, rtol=1e-12, atol=1e-12)
    assert res.reference.signs == [1, -1, -1, 1]
    assert res.table["hi"][truth == 1].mean() > res.table["hi"][truth == 0].mean()


def test_deterministic_cohort(cohort):
    table, _, res = cohort
    again = iith_cohort(table.copy())
    assert np.array_equal(again.fused, res.fused)
    assert again.table.equals(res.table)


def test_hi_from_reference_equals_cohort_hi(cohort, tmp_path):
    table, _, res = cohort
    path = res.reference.save(tmp_path / "ref.json")
    ref = IITHReference.load(path)
    assert ref == res.reference
    for i in (0, 7, len(table) - 1):
        assert hi_from_reference(table.iloc[i], ref) == pytest.approx(
            res.table["hi"][i], rel=1e-12, abs=1e-12
        )
    row = table.iloc[0].to_dict()
    gone = ref.features[:2]
    for f in gone:
        del row[f]
    with pytest.raises(InputError, match="lacks 2 feature") as err:
        hi_from_reference(row, ref)
    assert all(f in str(err.value) for f in gone)
    row = table.iloc[0].to_dict() | {ref.features[0]: float("nan")}
    with pytest.raises(InputError, match="non-finite"):
        hi_from_reference(row, ref)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not a RadTyper IITH reference"):
        IITHReference.load(tmp_path / "bad.json")


# --- errors -----------------------------------------------------------------------------------------------
def test_too_small_cohort_and_missing_radiomics(cohort):
    table, _, _ = cohort
    with pytest.raises(InputError, match=r"IITH needs at least 14 lesions for K = 13; got 13"):
        iith_cohort(table.iloc[:13])
    no_radiomics = table[[c for c in table.columns if not c.startswith("radiomics_")]]
    with pytest.raises(InputError, match="compute the features again with radiomics enabled"):
        iith_cohort(no_radiomics)
    other = no_radiomics.assign(radiomics_firstorder_Mean=1.0)
    with pytest.raises(InputError, match="heterogeneity-related"):
        iith_cohort(other)
    bounded = table[["lesion", "patient", "radiomics_firstorder_Uniformity", "radiomics_glcm_Idm"]]
    with pytest.raises(InputError, match=r"no heterogeneity feature left .* MAD <= 1"):
        iith_cohort(bounded)
    with pytest.raises(InputError, match="missing feature column"):
        iith_cohort(table, features=["radiomics_glcm_Contrast", "radiomics_glcm_Nope"])


def test_failed_lesions_and_features_are_left_out(cohort):
    table, _, _ = cohort
    t = table.copy()
    rad = [c for c in t.columns if c.startswith("radiomics_")]
    t.loc[3, rad] = np.nan
    t.loc[3, "qc_error"] = "radiomics failed"
    t.loc[5, "radiomics_glcm_Contrast"] = np.nan
    res = iith_cohort(t)
    assert len(res.table) == len(t) - 1
    assert res.excluded_lesions[0]["lesion"] == t.loc[3, "lesion"]
    assert "radiomics failed" in res.excluded_lesions[0]["reason"]
    assert res.excluded_features["radiomics_glcm_Contrast"].startswith("non-finite for 1")


# --- report -----------------------------------------------------------------------------------------------
def test_iith_report_files(cohort, tmp_path):
    table, _, res = cohort
    csv_in = tmp_path / "features.csv"
    table.to_csv(csv_in, index=False)
    out = tmp_path / "iith"
    summary = iith_report(csv_in, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "iith.csv",
        "iith.json",
        "iith_fused.png",
        "iith_reference.json",
    ]
    tab = pd.read_csv(out / "iith.csv", dtype={"patient": str, "lesion": str})
    assert list(tab.columns) == ["patient", "lesion", "cluster", "iith", "hi"]
    assert np.allclose(tab["hi"], res.table["hi"], rtol=1e-9, atol=1e-9)
    assert (tab["iith"] == res.table["iith"]).all()
    data = json.loads((out / "iith.json").read_text())
    assert data["settings"]["K"] == 13 and data["settings"]["sigma"] == 0.4 and data["settings"]["t"] == 20
    assert sum(data["cluster_sizes"].values()) == len(table)
    assert {f["column"] for f in data["selected_features"]} == set(res.features)
    assert set(data["patients"]) == set(table["patient"])
    p = next(iter(data["patients"].values()))
    assert set(p) == {"n_lesions", "n_high", "fraction_high", "mean_hi", "max_hi"}
    assert summary["files"]["csv"].endswith("iith.csv")
    assert (out / "iith_fused.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ref = IITHReference.load(out / "iith_reference.json")  # from the CSV: last digits may differ
    assert ref.features == res.reference.features and ref.signs == res.reference.signs
    assert np.allclose(ref.means, res.reference.means, rtol=1e-12) and np.allclose(ref.sds, res.reference.sds)
    with pytest.raises(InputError, match="not found"):
        iith_report(tmp_path / "nope.csv", out)


def test_single_new_lesion_scored_against_a_saved_reference(tmp_path):
    """CLI: a cohort run saves a reference; one new lesion then gets its HI and nearest class from it."""
    import subprocess
    import sys

    table, _ = _planted_cohort()
    table.to_csv(tmp_path / "cohort.csv", index=False)
    cohort = iith_report(table, tmp_path / "cohort")
    ref = IITHReference.load(tmp_path / "cohort" / "iith_reference.json")
    one = table.iloc[[3]]
    one.to_csv(tmp_path / "one.csv", index=False)
    res = subprocess.run(
        [sys.executable, "-m", "RadTyperLib.cli", "iith", "--features", str(tmp_path / "one.csv"),
         "--out", str(tmp_path / "one"), "--reference", str(tmp_path / "cohort" / "iith_reference.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    scored = pd.read_csv(tmp_path / "one" / "iith.csv")
    cohort_rows = pd.read_csv(tmp_path / "cohort" / "iith.csv")
    expected = cohort_rows.loc[cohort_rows["lesion"] == one["lesion"].iloc[0], "hi"].iloc[0]
    assert scored.loc[0, "hi"] == pytest.approx(expected, abs=1e-6)  # same HI as in its cohort run
    assert scored.loc[0, "iith"] in ("high", "low") and ref.cluster_hi and cohort["cluster_sizes"]
