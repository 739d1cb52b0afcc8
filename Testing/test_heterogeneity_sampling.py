"""Sampling simulation: the exact (k−1)/k law, Monte-Carlo agreement, strategies, curves, determinism, plot.

Derivation tested here. Let D be the n×n cosine-distance matrix (zero diagonal) of all lesions and
P = (1/(n(n−1))) Σ_{i≠j} d_ij the mean pair distance, so ATH_nxn(all) = ((n−1)/n)·P and ATH_pairs(all) = P.
For a subset S of k lesions drawn uniformly without replacement, each of its k(k−1) ordered pairs is a
uniformly drawn ordered pair of distinct lesions, so E[Σ_{i≠j∈S} d_ij] = k(k−1)·P and

    E[ATH_nxn(S)]   = k(k−1)P / k²      = ((k−1)/k) · P = ((k−1)/k)·(n/(n−1)) · ATH_nxn(all)
    E[ATH_pairs(S)] = k(k−1)P / (k(k−1)) = P = ATH_pairs(all)                (unbiased)

Hence the expected (uncapped) n×n recovery of k random lesions is 100·((k−1)/k)·(n/(n−1)) %: 50 % and 66.7 %
for k = 2, 3 when n is large — Henry's Table 2 (48 %, 67 %, with capping at 100 lowering the mean); relative
to the pairs mean of all lesions it is exactly (k−1)/k.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.heterogeneity import (
    average_tumoral_heterogeneity,
    cosine_distance_matrix,
    k_for_recovery,
    max_tumoral_divergence,
    plot_recovery_curves,
    recovery_curves,
    simulate_sampling,
)
from RadTyperLib.heterogeneity.sampling import draw_subsets, subset_indexes


def _distances(n: int, seed: int = 0, m: int = 8) -> np.ndarray:
    x = np.random.default_rng(seed).random((n, m))
    return cosine_distance_matrix((x - x.min(0)) / (x.max(0) - x.min(0)))


def _clustered(seed: int = 0):
    """A patient like Henry's patient A: lesions cluster by site (bone apart)."""
    rng = np.random.default_rng(seed)
    sites = np.array(["lung"] * 20 + ["liver"] * 6 + ["bone"] * 8 + ["pleura"] * 2 + ["soft_tissue"])
    centres = {s: rng.random(8) for s in dict.fromkeys(sites)}
    x = np.array([centres[s] + 0.15 * rng.standard_normal(8) for s in sites])
    return cosine_distance_matrix((x - x.min(0)) / (x.max(0) - x.min(0))), sites


# --------------------------------------------------------------------------------------------------------
# the law, exactly (all subsets enumerated) and by Monte Carlo
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 5])
def test_expected_subset_ath_exact_by_enumeration(k):
    n = 11
    d = _distances(n, seed=k)
    pairs_all = average_tumoral_heterogeneity(d, "pairs")
    nxn_all = average_tumoral_heterogeneity(d, "nxn")
    subsets = list(itertools.combinations(range(n), k))
    e_nxn = np.mean([average_tumoral_heterogeneity(d[np.ix_(s, s)], "nxn") for s in subsets])
    e_pairs = np.mean([average_tumoral_heterogeneity(d[np.ix_(s, s)], "pairs") for s in subsets])
    assert e_nxn == pytest.approx((k - 1) / k * pairs_all, rel=1e-12)
    assert e_nxn == pytest.approx((k - 1) / k * n / (n - 1) * nxn_all, rel=1e-12)
    assert e_pairs == pytest.approx(pairs_all, rel=1e-12)


@pytest.mark.parametrize("n", [6, 30])
def test_monte_carlo_recovery_agrees_with_the_law(n):
    d = _distances(n, seed=n)
    n_draws = 4000
    sims = simulate_sampling(d, None, ("random2", "random3"), n_draws=n_draws, seed=1, cap=False)
    pairs = simulate_sampling(
        d, None, ("random2", "random3"), n_draws=n_draws, seed=2, cap=False, definition="pairs"
    )
    for k, name in ((2, "random2"), (3, "random3")):
        expected = 100 * (k - 1) / k * n / (n - 1)
        r = sims[name].ath
        se = r.std(ddof=1) / np.sqrt(n_draws)
        assert abs(r.mean() - expected) < 4 * se, (name, r.mean(), expected, se)
        rp = pairs[name].ath
        assert abs(rp.mean() - 100.0) < 4 * rp.std(ddof=1) / np.sqrt(n_draws)
        # MTD of a subset never exceeds the MTD of all lesions, even uncapped
        assert sims[name].mtd.max() <= 100.0 + 1e-9


def test_capping_and_single_lesion_subsets():
    d = _distances(9, seed=3)
    capped = simulate_sampling(d, None, ("random2",), n_draws=2000, seed=4)["random2"].ath
    uncapped = simulate_sampling(d, None, ("random2",), n_draws=2000, seed=4, cap=False)["random2"].ath
    assert capped.max() == 100.0 and uncapped.max() > 100.0  # a far-apart pair exceeds the n×n ATH of all
    assert np.array_equal(np.minimum(uncapped, 100.0), capped)
    sel = np.zeros((3, 9), bool)
    sel[1, 4] = True  # one lesion
    sel[2, [1, 5]] = True
    ath, mtd = subset_indexes(d, sel)
    assert ath[0] == ath[1] == mtd[0] == mtd[1] == 0.0
    assert mtd[2] == d[1, 5] and ath[2] == pytest.approx(d[1, 5] / 2)


# --------------------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------------------
def test_strategy_selections():
    _, sites = _clustered()
    rng = np.random.default_rng(0)
    for strategy, k in (("per_site2", 2), ("per_site3", 3)):
        sel = draw_subsets(strategy, sites, 200, rng)
        for s in dict.fromkeys(sites):
            counts = sel[:, sites == s].sum(axis=1)
            assert (counts == min(k, int((sites == s).sum()))).all()
    rec = draw_subsets("recist", sites, 200, rng)
    assert not rec[:, sites == "bone"].any() and (rec.sum(axis=1) == 2 + 2 + 2 + 1).all()
    rec5 = draw_subsets("recist", sites, 200, rng, recist_max_total=5)
    assert (rec5.sum(axis=1) == 5).all() and not rec5[:, sites == "bone"].any()
    assert (draw_subsets("random3", sites, 50, rng).sum(axis=1) == 3).all()
    with pytest.raises(InputError, match="unknown sampling strategy"):
        draw_subsets("biopsy", sites, 5, rng)


def test_union_versus_within_site_pooling():
    """Within (default): far lower than a random pair, the pattern of Henry's Table 2 (11 % vs 27 %).
    Union: ≥ a random pair."""
    d, sites = _clustered()
    union = simulate_sampling(d, sites, n_draws=500, seed=0, site_pooling="union")
    within = simulate_sampling(d, sites, n_draws=500, seed=0)
    assert union["per_site2"].mtd.mean() > union["random2"].mtd.mean()
    assert within["per_site2"].mtd.mean() < within["random2"].mtd.mean() / 2
    assert within["per_site3"].mtd.mean() > within["per_site2"].mtd.mean()
    s = union["recist"].summary()
    assert s["status"] == "ok" and s["n_draws"] == 500 and s["mean_lesions_sampled"] == 7.0
    lo, hi = s["average_tumoral_heterogeneity"]["ci95"]
    assert 0 <= lo <= s["average_tumoral_heterogeneity"]["mean"] <= hi <= 100


def test_undefined_cases_have_reasons():
    d, sites = _clustered()
    missing = sites.copy()
    missing[3] = "unspecified"
    res = simulate_sampling(d, missing, n_draws=50, seed=0)
    assert res["random2"].summary()["status"] == "ok"
    assert res["per_site2"].summary()["status"] == "undefined"
    assert "site missing" in res["per_site2"].summary()["reason"]
    one = simulate_sampling(np.zeros((1, 1)), ["lung"], n_draws=10)["random2"].summary()
    assert (
        one["status"] == "undefined" and "1 lesion" in one["reason"] and one["max_tumoral_divergence"] is None
    )
    same = simulate_sampling(np.zeros((4, 4)), None, ("random2",), n_draws=10)["random2"].summary()
    assert "identical" in same["reason"]
    with pytest.raises(InputError, match="site_pooling"):
        simulate_sampling(d, sites, site_pooling="mean")


def test_determinism_with_a_seed():
    d, sites = _clustered()
    a = simulate_sampling(d, sites, n_draws=300, seed=42)
    b = simulate_sampling(d, sites, n_draws=300, seed=42)
    c = simulate_sampling(d, sites, n_draws=300, seed=43)
    for s in a:
        assert np.array_equal(a[s].ath, b[s].ath) and np.array_equal(a[s].mtd, b[s].mtd)
    assert not np.array_equal(a["random2"].ath, c["random2"].ath)
    assert recovery_curves(d, seed=7, n_draws=100).equals(recovery_curves(d, seed=7, n_draws=100))


# --------------------------------------------------------------------------------------------------------
# recovery curves
# --------------------------------------------------------------------------------------------------------
def test_recovery_curves_k_limited_to_n_and_complete_at_k_equal_n():
    d = _distances(7, seed=9)
    c = recovery_curves(d, n_draws=300, seed=0)
    assert list(c["k"]) == [2, 3, 4, 5, 6, 7]
    last = c.iloc[-1]
    assert last["ath_mean"] == pytest.approx(100.0) and last["mtd_mean"] == pytest.approx(100.0)
    assert (np.diff(c["mtd_mean"]) > 0).all()  # more lesions, more of the MTD
    assert (c["ath_lo"] <= c["ath_mean"]).all() and (c["ath_mean"] <= c["ath_hi"]).all()
    k = k_for_recovery(c)
    assert k["max_tumoral_divergence"] == int(c.loc[c["mtd_mean"] >= 75, "k"].min())
    assert k["both"] == max(k["max_tumoral_divergence"], k["average_tumoral_heterogeneity"])
    d_full = _distances(40, seed=1)
    c40 = recovery_curves(d_full, n_draws=200, seed=0)
    assert list(c40["k"]) == list(range(2, 16))


def test_k_for_recovery_hand_table():
    import pandas as pd

    t = pd.DataFrame({"k": [2, 3, 4, 5], "ath_mean": [50, 70, 76, 90], "mtd_mean": [30, 60, 74, 80]})
    assert k_for_recovery(t) == {"average_tumoral_heterogeneity": 4, "max_tumoral_divergence": 5, "both": 5}
    assert k_for_recovery(t, level=95)["both"] is None


def test_plot_recovery_curves_writes_png(tmp_path):
    d, _ = _clustered()
    curves = {"A": recovery_curves(d, n_draws=100), "cohort": recovery_curves(d, n_draws=100, seed=1)}
    out = plot_recovery_curves(curves, str(tmp_path / "curves.png"))
    data = (tmp_path / "curves.png").read_bytes()
    assert out.endswith("curves.png") and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left
    assert max_tumoral_divergence(d) <= 1.0
