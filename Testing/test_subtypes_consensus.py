"""Consensus clustering: planted clusters recovered, noise ambiguous, CDF/PAC definitions, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from RadTyperLib.subtypes.consensus import (
    DELTA_AREA_THRESHOLD,
    choose_k,
    consensus_cluster,
    correlation_distance,
    hierarchical_labels,
)
from RadTyperLib.subtypes.consensus import cdf_stats as cdf_of


def _planted(n_per: int = 30, k: int = 3, p: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (k, p))
    y = np.repeat(np.arange(k), n_per)
    return centres[y] + rng.normal(0, 1.0, (len(y), p)), y


@pytest.fixture(scope="module")
def planted_result():
    x, y = _planted()
    return consensus_cluster(x, ks=range(2, 7), reps=40, seed=1), y


def test_planted_clusters_recovered(planted_result):
    from sklearn.metrics import adjusted_rand_score

    res, y = planted_result
    assert res.chosen_k == res.k_pac == 3
    assert adjusted_rand_score(y, res.labels[3]) == 1.0
    assert res.pac[3] < 0.02 and all(res.pac[k] > res.pac[3] for k in res.ks if k > 3)
    assert np.bincount(res.labels[3]).tolist() == [30, 30, 30]


def test_consensus_matrix_properties(planted_result):
    res, _ = planted_result
    for k in res.ks:
        m = res.consensus[k]
        assert m.shape == (90, 90) and np.allclose(m, m.T)
        assert np.all(np.diag(m) == 1.0) and m.min() >= 0.0 and m.max() <= 1.0
    summary = res.summary()
    assert summary["chosen_k"] == 3 and set(summary["pac"]) == {"2", "3", "4", "5", "6"}


def test_noise_has_high_pac():
    x = np.random.default_rng(4).normal(size=(90, 10))
    res = consensus_cluster(x, ks=range(2, 7), reps=30, seed=0)
    assert min(res.pac.values()) > 0.2


def test_determinism_and_n_jobs_invariance():
    x, _ = _planted(n_per=15, seed=2)
    a = consensus_cluster(x, ks=[2, 3, 4], reps=12, seed=5)
    b = consensus_cluster(x, ks=[2, 3, 4], reps=12, seed=5, n_jobs=2, chunk_size=5)
    c = consensus_cluster(x, ks=[2, 3, 4], reps=12, seed=6)
    for k in (2, 3, 4):
        assert np.array_equal(a.consensus[k], b.consensus[k])
        assert np.array_equal(a.labels[k], b.labels[k])
    assert any(not np.array_equal(a.consensus[k], c.consensus[k]) for k in (2, 3, 4))


def test_cdf_area_and_pac_definitions():
    """ConsensusClusterPlus CDF: right-closed 0.01 bins; area = Σ CDF·0.01; PAC = F(0.9) − F(0.1)."""
    m = np.eye(4)
    vals = [0.0, 0.05, 0.5, 0.9, 0.95, 1.0]  # lower triangle, row by row
    m[np.tril_indices(4, -1)] = vals
    m = np.tril(m) + np.tril(m, -1).T
    cdf, area, pac = cdf_of(m)
    edges = np.linspace(0, 1, 101)[1:]
    expected_cdf = np.array([np.mean(np.array(vals) <= e + 1e-12) for e in edges])
    np.testing.assert_allclose(cdf, expected_cdf)
    assert area == pytest.approx(np.sum(expected_cdf) * 0.01)
    assert pac == pytest.approx(2 / 6)  # 0.5 and 0.9 lie in (0.1, 0.9]


def test_choose_k_rules():
    pac = {2: 0.3, 3: 0.0, 4: 0.0005, 5: 0.1}
    delta = {2: 0.5, 3: 0.3, 4: 0.2, 5: DELTA_AREA_THRESHOLD / 2}
    assert choose_k(pac, delta) == (4, 4)  # PAC tie → larger k; Δ-area(5) small → 4


def test_forced_k_and_hierarchical_labels():
    x, _ = _planted(n_per=10, seed=3)
    res = consensus_cluster(x, ks=[2, 3, 4], reps=10, seed=0, k=2)
    assert res.chosen_k == 2 and res.k_rule == "forced"
    block = np.kron(np.eye(2), np.ones((3, 3)))
    labels = hierarchical_labels(block[[0, 3, 1, 4, 2, 5]][:, [0, 3, 1, 4, 2, 5]], 2)
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_correlation_distance():
    x = np.array([[1.0, 2, 3], [2, 4, 6], [3, 2, 1], [5, 5, 5]])
    d = correlation_distance(x)
    assert d[0, 1] == pytest.approx(0.0) and d[0, 2] == pytest.approx(2.0)
    assert d[3, 0] == pytest.approx(1.0) and np.all(np.diag(d) == 0)


def test_bad_arguments():
    x, _ = _planted(n_per=5)
    with pytest.raises(ValueError):
        consensus_cluster(x, ks=[2, 20], reps=5)
    with pytest.raises(ValueError):
        consensus_cluster(x, ks=[2, 3], reps=5, k=4)
    with pytest.raises(ValueError):
        consensus_cluster(x, ks=[2, 3], reps=5, k_rule="gap")
