"""PAM (BUILD + SWAP): optimal cost on tiny problems (brute force), swap-optimality, determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from RadTyperLib.subtypes.pam import assign, pam, pam_build, pam_path


def _dist(x: np.ndarray) -> np.ndarray:
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def _cost(d: np.ndarray, medoids) -> float:
    return float(d[:, list(medoids)].min(axis=1).sum())


def _brute_force(d: np.ndarray, k: int) -> float:
    return min(_cost(d, c) for c in itertools.combinations(range(d.shape[0]), k))


@pytest.mark.parametrize("seed", range(12))
def test_pam_optimal_on_tiny_clustered_problems(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 4))
    centres = rng.uniform(-10, 10, (k, 2))
    x = np.vstack([c + rng.normal(0, 1.0, (int(rng.integers(2, 4)), 2)) for c in centres])
    d = _dist(x)
    res = pam(d, k)
    assert res.cost == pytest.approx(_brute_force(d, k), abs=1e-12)
    assert res.cost == pytest.approx(_cost(d, res.medoids), abs=1e-12)


def test_pam_swap_optimal_and_mostly_globally_optimal_on_random_tiny_problems():
    """PAM is a local search: always swap-optimal; on random 5–9-point problems nearly always optimal."""
    rng = np.random.default_rng(0)
    optimal = 0
    trials = 150
    for _ in range(trials):
        n, k = int(rng.integers(5, 10)), int(rng.integers(2, 4))
        d = _dist(rng.normal(size=(n, 2)))
        res = pam(d, k)
        m = list(res.medoids)
        for i, c in itertools.product(range(k), range(n)):  # no single swap improves
            if c not in m:
                trial = m.copy()
                trial[i] = c
                assert _cost(d, trial) >= res.cost - 1e-12
        assert res.cost <= _cost(d, pam_build(d, k)) + 1e-12
        optimal += res.cost <= _brute_force(d, k) + 1e-12
    assert optimal / trials >= 0.85


def test_pam_labels_medoids_and_determinism():
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(c, 0.3, (15, 3)) for c in (0.0, 5.0, 10.0)])
    d = _dist(x)
    a, b = pam(d, 3), pam(d, 3)
    assert np.array_equal(a.medoids, b.medoids) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.labels[a.medoids], np.arange(3))
    assert len(set(a.labels[:15])) == len(set(a.labels[15:30])) == len(set(a.labels[30:])) == 1
    labels, cost = assign(d, a.medoids)
    assert np.array_equal(labels, a.labels) and cost == pytest.approx(a.cost)


def test_pam_path_equals_separate_runs_and_float32():
    rng = np.random.default_rng(5)
    d = _dist(rng.normal(size=(60, 4)))
    path = pam_path(d, range(2, 7))
    for k, res in path.items():
        single = pam(d, k)
        assert np.array_equal(res.medoids, single.medoids) and res.cost == pytest.approx(single.cost)
    r32 = pam(d.astype(np.float32), 4)
    assert r32.cost == pytest.approx(path[4].cost, rel=1e-5)


def test_pam_duplicates_and_bad_input():
    d = np.zeros((4, 4))
    res = pam(d, 2)
    assert res.cost == 0.0 and len(set(res.medoids.tolist())) == 2
    with pytest.raises(ValueError):
        pam(np.zeros((3, 4)), 2)
    with pytest.raises(ValueError):
        pam(d, 5)
