"""IGP (clusterRepro port) on a hand-made example and against a loop reference; purity; Cramér's V."""

from __future__ import annotations

import numpy as np
import pytest

from RadTyperLib.subtypes.validation import (
    centroids_of,
    cluster_purity,
    cramers_v,
    igp,
    igp_test,
    pairwise_correlation,
)


def test_igp_hand_example():
    """Permutations of (0, 1, 2): Pearson r ∈ {1, ±0.5, −1}, ties resolved to the first maximum (which.max).

    Centroids A = (0,1,2), B = (2,1,0). Data x1..x5 = (0,1,2), (0,2,1), (2,1,0), (1,2,0), (1,0,2).
    Classes A, A, B, B, A. Nearest neighbours: x1→x2, x2→x1, x3→x4, x4→x2 (tie with x3, first wins),
    x5→x1. IGP_A = 3/3, IGP_B = 1/2 (x4's neighbour is in A).
    """
    cents = np.array([[0, 1, 2], [2, 1, 0]], dtype=float)
    data = np.array([[0, 1, 2], [0, 2, 1], [2, 1, 0], [1, 2, 0], [1, 0, 2]], dtype=float)
    res = igp(data, cents)
    assert res.classes.tolist() == [0, 0, 1, 1, 0]
    assert res.size.tolist() == [3, 2]
    assert res.igp.tolist() == [1.0, 0.5]


def test_igp_empty_cluster_is_nan():
    cents = np.array([[0, 1, 2], [2, 1, 0], [0, 1, 2.0001]])
    data = np.array([[0, 1, 2], [0, 2, 1], [2, 1, 0], [1, 2, 0]], dtype=float)
    res = igp(data, cents)
    assert res.size[2] == 0 and np.isnan(res.igp[2])


def _reference_igp_test(data, cents, n_perm, seed):
    """Straight loop port of clusterRepro::clusterRepro (R conventions: p × n, p × K)."""
    D, C = data.T, cents.T

    def igp_r(D, C):
        n, k = D.shape[1], C.shape[1]
        cls = [int(np.argmax([np.corrcoef(D[:, i], C[:, j])[0, 1] for j in range(k)])) for i in range(n)]
        table = np.zeros((k, k))
        for i in range(n):
            r = [np.corrcoef(D[:, i], D[:, j])[0, 1] if j != i else -np.inf for j in range(n)]
            table[cls[i], cls[int(np.argmax(r))]] += 1
        with np.errstate(invalid="ignore"):
            return table.diagonal() / table.sum(1), table.sum(1)

    actual_igp, actual_size = igp_r(D, C)
    v = np.linalg.svd(C)[2].T
    cp = C @ v
    p, k = cp.shape
    rng = np.random.default_rng(seed)
    igps, sizes = [], []
    for _ in range(n_perm):
        mm = rng.random(p * k) + np.repeat(np.arange(1, k + 1) * 10, p)  # runif + rep(seq(n)*10, each p)
        flat = cp.T.ravel()[np.argsort(mm, kind="stable")]  # x[order(mm)], column-major
        new = flat.reshape(k, p).T @ v.T
        a, b = igp_r(D, new)
        igps += list(a)
        sizes += list(b)
    igps, sizes = np.array(igps), np.array(sizes)
    pv = []
    for i in range(k):
        same = igps[sizes == actual_size[i]]
        pv.append(np.nan if actual_size[i] == 0 or len(same) == 0 else np.mean(same >= actual_igp[i]))
    return actual_igp, actual_size, np.array(pv)


def test_igp_test_matches_loop_reference():
    rng = np.random.default_rng(1)
    cents = rng.normal(0, 2, (3, 6))
    labels = np.repeat(np.arange(3), 10)
    data = cents[labels] + rng.normal(0, 1.5, (30, 6))
    res = igp_test(data, cents, n_permutations=60, seed=7)
    ref_igp, ref_size, ref_p = _reference_igp_test(data, cents, 60, 7)
    np.testing.assert_allclose(res["igp"], ref_igp)
    np.testing.assert_array_equal(res["size"], ref_size)
    np.testing.assert_allclose(res["p_value"], ref_p)
    assert (res["number"] > 0).all()


def test_pairwise_correlation_complete_and_pairwise():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 7)), rng.normal(size=(3, 7))
    np.testing.assert_allclose(pairwise_correlation(a, b), np.corrcoef(a, b)[:4, 4:], atol=1e-12)
    a[0, 2] = np.nan
    r = pairwise_correlation(a, b)
    keep = np.arange(7) != 2
    assert r[0, 1] == pytest.approx(np.corrcoef(a[0, keep], b[1, keep])[0, 1], abs=1e-12)
    assert r[1, 1] == pytest.approx(np.corrcoef(a[1], b[1])[0, 1], abs=1e-12)


def test_centroids_of():
    x = np.array([[0.0, 1], [2, 3], [10, 10]])
    np.testing.assert_allclose(centroids_of(x, ["b", "b", "a"], ["b", "a"]), [[1, 2], [10, 10]])


def test_cluster_purity_hand_example():
    res = cluster_purity(["a", "a", "a", "b", "b", "c"], ["x", "x", "y", "y", "y", "y"])
    assert res["purity"] == pytest.approx(5 / 6)
    assert res["per_cluster"] == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 1.0})
    assert cluster_purity([1, 1, 2], [1, 1, 2])["purity"] == 1.0


def _vectors(table):
    a, b = [], []
    for i, row in enumerate(table):
        for j, count in enumerate(row):
            a += [f"r{i}"] * count
            b += [f"c{j}"] * count
    return a, b


@pytest.mark.parametrize(
    "table", [[[10, 20], [30, 40]], [[12, 5, 9, 1], [3, 14, 2, 8], [6, 6, 11, 4]]], ids=["2x2", "3x4"]
)
def test_cramers_v_equals_manual_formula(table):
    from scipy.stats import chi2

    t = np.array(table, dtype=float)
    n = t.sum()
    expected = np.outer(t.sum(1), t.sum(0)) / n
    x2 = ((t - expected) ** 2 / expected).sum()
    dof = (t.shape[0] - 1) * (t.shape[1] - 1)
    res = cramers_v(*_vectors(table))
    assert res["chi2"] == pytest.approx(x2, rel=1e-12)
    assert res["cramers_v"] == pytest.approx(np.sqrt(x2 / (n * (min(t.shape) - 1))), rel=1e-12)
    assert res["dof"] == dof and res["p_value"] == pytest.approx(chi2.sf(x2, dof), rel=1e-9)
    assert res["n"] == n


def test_cramers_v_2x2_value_and_degenerate():
    assert cramers_v(*_vectors([[10, 20], [30, 40]]))["cramers_v"] == pytest.approx(
        np.sqrt(0.79365079 / 100), 1e-6
    )
    res = cramers_v(["a", "a"], ["x", "y"])
    assert np.isnan(res["cramers_v"]) and res["dof"] == 0
