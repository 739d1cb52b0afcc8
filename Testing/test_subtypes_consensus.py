"""Consensus clustering: planted clusters recovered, noise ambiguous, CDF/PAC definitions, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from RadTyperLib.subtypes.consensus import (
    DELTA_AREA_THRESHOLD,
    choose_k,
    choose_k_min_pac,
    choose_k_pac,
    consensus_cluster,
    correlation_distance,
    hierarchical_labels,
    pac_local_minima,
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_pac_falls_with_k_and_has_no_local_minimum(seed):
    """Structureless data: PAC only drifts down as k grows (tiny clusters) — the plain minimum sits at the
    largest k; the PAC rule finds no local minimum, which discovery reports as weak structure."""
    x = np.random.default_rng(10 + seed).normal(size=(80, 10))
    res = consensus_cluster(x, ks=range(2, 11), reps=20, seed=seed)
    assert res.k_min_pac == 10 and res.pac[10] < res.pac[2]
    assert res.pac_local_minimum is False and res.summary()["pac_local_minimum"] is False
    assert res.chosen_k == res.k_pac == 10


def test_planted_k_where_the_plain_pac_minimum_fails():
    """4 planted clusters of 20 (10-D, centres N(0, 1.5²)), 20 repetitions: PAC(3) = 0.000 < PAC(4) = 0.012
    (two clusters always merge at k = 3) — the plain minimum chooses 3; the PAC rule takes the finest
    unambiguous local minimum, 4, and recovers the clusters exactly."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(4)
    centres = rng.normal(0, 1.5, (4, 10))
    y = np.repeat(np.arange(4), 20)
    x = centres[y] + rng.normal(0, 1.0, (80, 10))
    res = consensus_cluster(x, ks=range(2, 11), reps=20, seed=4)
    assert res.pac[3] < 0.005 < res.pac[4] < 0.02 < 0.1 < res.pac[5]
    assert res.k_min_pac == 3 and adjusted_rand_score(y, res.labels[3]) < 0.8
    assert res.chosen_k == res.k_pac == 4 and res.pac_local_minimum is True
    assert adjusted_rand_score(y, res.labels[4]) >= 0.9
    assert consensus_cluster(x, ks=range(2, 11), reps=20, seed=4, k_rule="pac_min").chosen_k == 3


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
    assert choose_k(pac, delta) == (4, 4)  # PAC plateau → larger k; Δ-area(5) small → 4
    assert choose_k_min_pac(pac) == 4


def test_pac_rule_cases():
    """The "pac" rule on hand-made PAC curves (values as measured on planted / noise cohorts)."""
    # drift (5 planted groups, AE codes, 20 repetitions): the dip at the true k = 5 is overtaken by the
    # tiny clusters of large k → local minima 2 and 5, the lowest is 5; the plain minimum is 10
    drift = {2: 0.62, 3: 0.70, 4: 0.48, 5: 0.21, 6: 0.24, 7: 0.24, 8: 0.21, 9: 0.17, 10: 0.17}
    assert pac_local_minima(drift) == [2, 5]
    assert choose_k_pac(drift) == (5, True) and choose_k_min_pac(drift) == 10
    # two local minima within 10 %: the smaller k (noisy estimates, simpler partition)
    close = {2: 0.71, 3: 0.42, 4: 0.083, 5: 0.096, 6: 0.080, 7: 0.098, 8: 0.138, 9: 0.140, 10: 0.143}
    assert choose_k_pac(close) == (4, True) and choose_k_min_pac(close) == 6
    # ... but not beyond 10 %
    assert choose_k_pac({**close, 4: 0.095})[0] == 6
    # nested, well-separated groups: PAC(2) = PAC(4) = 0 → the finest unambiguous partition
    nested = {2: 0.0, 3: 0.055, 4: 0.0, 5: 0.11, 6: 0.15}
    assert choose_k_pac(nested) == (4, True)
    assert choose_k_pac(nested, {2: 0.39, 3: 0.66, 4: 0.19, 5: 0.04, 6: 0.04}) == (4, True)
    # ... unless the finer one adds little consensus area (one real group split in two clean halves)
    split = {2: 0.030, 3: 0.009, 4: 0.020, 5: 0.123, 6: 0.142}
    assert choose_k_pac(split, {2: 0.48, 3: 0.42, 4: 0.077, 5: 0.05, 6: 0.035}) == (3, True)
    assert choose_k(split, {2: 0.48, 3: 0.42, 4: 0.077, 5: 0.05, 6: 0.035})[0] == 3
    # monotone decrease (noise): no local minimum, the plain minimum, flagged
    noise = {k: 0.9 - 0.08 * k for k in range(2, 11)}
    assert pac_local_minima(noise) == [] and choose_k_pac(noise) == (10, False)


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
    assert consensus_cluster(x, ks=[2, 3], reps=5, k_rule="delta").k_rule == "delta"
