"""Consensus clustering with ConsensusClusterPlus semantics (Monti et al. 2003; Wilkerson & Hayes 2010).

Settings of Wu et al. (ConsensusClusterPlus 1.52.0): ``clusterAlg="pam"``, ``distance="pearson"``
(d(i, j) = 1 − Pearson r between *samples* over the features), ``pItem=0.8``, ``pFeature=1``, k = 2..10;
the paper used ``reps=10000`` (default here 1000).

* Each repetition draws ``floor(n·pItem)`` items without replacement (sorted) and runs PAM for every k on
  the sub-matrix of the full distance matrix (with pFeature = 1 the sample–sample distances do not depend on
  the other samples, so this equals ConsensusClusterPlus recomputing them). PAM is exact BUILD + SWAP
  (:mod:`.pam`) in float32; one BUILD serves all k.
* Consensus ``M_ij`` = #(subsamples where i and j fell in the same cluster) / #(subsamples containing both);
  0 where never co-sampled; diagonal 1.
* CDF (as ConsensusClusterPlus ``CDF``): histogram of the lower-triangle consensus values on 100 bins
  over [0, 1] (right-closed bins, like R ``hist``), cumulated; area under the CDF = Σ CDF(bin)·0.01;
  Δ-area(2) = area(2), Δ-area(k) = (area(k) − area(k−1)) / area(k−1).
* PAC (Șenbabaoğlu et al. 2014) = F(0.9) − F(0.1) with F the empirical CDF of the lower-triangle values:
  the proportion of ambiguous pairs; lower = more stable.
* k rule (``k_rule``):

  - ``"pac"`` (default) = the lowest **local minimum** of PAC: candidates are the k whose next k is less stable
    (PAC(k + 1) > PAC(k) + ``PAC_TIE``; a plateau PAC(k) ≈ PAC(k + 1) moves on to the finest k that is as
    stable). If some candidates are unambiguous (PAC ≤ ``PAC_CLEAN``), the smallest of them, replaced by a
    larger unambiguous one whose Δ-area is ≥ ``DELTA_AREA_THRESHOLD`` (Monti's criterion: splitting real
    groups adds consensus area, splitting one group in two clean halves adds little) — nested, well-separated
    groups: e.g. PAC(2) = PAC(4) = 0 when four groups form two pairs, merged at k = 2 and always split at k =
    4 (Δ-area(4) = 0.19), but 3 groups with PAC(3) = 0.009, PAC(4) = 0.020 and Δ-area(4) = 0.08 stay at k = 3.
    Otherwise the smallest candidate whose PAC is within ``PAC_TOLERANCE`` (10 %, relative) of the lowest
    candidate PAC (estimates from few repetitions are noisy: prefer the simpler partition; e.g. PAC 0.083 at k
    = 4 and 0.080 at k = 6 → 4). Without any local minimum — PAC keeps falling up to the largest k, the
    signature of data without clusters (tiny clusters make most pairs never co-clustered, so PAC drifts down
    with k) — the k with minimal PAC is taken and ``pac_local_minimum`` is False (discovery then flags
    ``weak_structure``). Why not the plain minimum: on AE codes of small cohorts with 20–100 repetitions, PAC
    of structureless data falls monotonically with k (minimum always at k = 10), and on weakly separated
    planted cohorts that drift overtakes the true k's dip (e.g. 5 planted groups of 24: PAC 0.21 at k = 5,
    0.17 at k = 10); see ``Resources/Docs/default-subtype-model.md`` §k selection.
  - ``"pac_min"`` = the k with minimal PAC (ties within ``PAC_TIE`` → the larger k): the rule of earlier
    versions, kept for comparison.
  - ``"delta"`` = the Δ-area elbow: the smallest k whose next Δ-area is below ``DELTA_AREA_THRESHOLD``
    (ConsensusClusterPlus' advice "choose k where the area stops increasing appreciably"). Reported, not
    recommended: the area under the CDF grows with k in the same way for structureless data.

  All three are always reported.
* Final labels: ``hclust(as.dist(1 − M), "average")`` cut at k — scipy average linkage + ``cut_tree``
  (exactly k clusters). Clusters are numbered by decreasing size (ties: order of first appearance).

Repetitions run in chunks, optionally in parallel (joblib processes); every subsample is drawn up front from
one ``numpy`` generator seeded with ``seed``, so the result does not depend on ``n_jobs``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .pam import pam_path

DEFAULT_KS: tuple[int, ...] = tuple(range(2, 11))
CDF_BREAKS: int = 100
PAC_BOUNDS: tuple[float, float] = (0.1, 0.9)
DELTA_AREA_THRESHOLD: float = 0.1
#: PAC differences below this are ties (exact plateaus such as PAC = 0 at two successive k).
PAC_TIE: float = 1e-3
#: Local PAC minima within this fraction (10 %) of the lowest one are "as stable": the smallest k is chosen.
PAC_TOLERANCE: float = 0.1
#: Local PAC minima at or below this are unambiguous partitions: the largest such k is chosen.
PAC_CLEAN: float = 0.02
K_RULES: tuple[str, ...] = ("pac", "pac_min", "delta")

Progress = Callable[[float, str], None]


@dataclass
class ConsensusResult:
    """Everything a consensus clustering produced (``labels[k]`` numbered 0..k−1 by decreasing size)."""

    ks: list[int]
    consensus: dict[int, np.ndarray]
    labels: dict[int, np.ndarray]
    pac: dict[int, float]
    area: dict[int, float]
    delta_area: dict[int, float]
    cdf_x: np.ndarray
    cdf: dict[int, np.ndarray]
    k_pac: int
    k_delta: int
    chosen_k: int
    k_rule: str
    settings: dict = field(default_factory=dict)
    k_min_pac: int | None = None  # the plain PAC minimum (rule "pac_min")
    pac_local_minimum: bool = True  # False: PAC falls up to the largest k (no cluster structure)

    def summary(self) -> dict:
        """JSON-able per-k table and the k choices."""
        return {
            "ks": self.ks,
            "pac": {str(k): self.pac[k] for k in self.ks},
            "cdf_area": {str(k): self.area[k] for k in self.ks},
            "delta_area": {str(k): self.delta_area[k] for k in self.ks},
            "cluster_sizes": {str(k): np.bincount(self.labels[k], minlength=k).tolist() for k in self.ks},
            "k_pac": self.k_pac,
            "k_min_pac": self.k_min_pac if self.k_min_pac is not None else self.k_pac,
            "pac_local_minimum": self.pac_local_minimum,
            "k_delta_area": self.k_delta,
            "chosen_k": self.chosen_k,
            "k_rule": self.k_rule,
            "settings": self.settings,
        }


def correlation_distance(x: np.ndarray) -> np.ndarray:
    """1 − Pearson r between the rows (samples) of ``x`` over its columns; a constant row has r = 0."""
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt((xc * xc).sum(axis=1))
    ok = norm > 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0)))
    xn = np.zeros_like(xc)
    xn[ok] = xc[ok] / norm[ok, None]
    r = np.clip(xn @ xn.T, -1.0, 1.0)
    d = 1.0 - r
    np.fill_diagonal(d, 0.0)
    return d


def _chunk_labels(d: np.ndarray, subsamples: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """PAM labels (reps × len(ks) × n_sub, int8) of each subsample of one chunk."""
    from threadpoolctl import threadpool_limits

    out = np.empty((len(subsamples), len(ks), subsamples.shape[1]), dtype=np.int8)
    with threadpool_limits(1):
        for r, idx in enumerate(subsamples):
            res = pam_path(d[np.ix_(idx, idx)], ks, single_thread=False)
            for j, k in enumerate(ks):
                out[r, j] = res[k].labels
    return out


def _order_by_size(labels: np.ndarray, k: int) -> np.ndarray:
    sizes = np.bincount(labels, minlength=k)
    first = np.array([np.flatnonzero(labels == c)[0] if sizes[c] else len(labels) for c in range(k)])
    order = sorted(range(k), key=lambda c: (-sizes[c], first[c]))
    remap = np.empty(k, dtype=np.intp)
    remap[order] = np.arange(k)
    return remap[labels]


def hierarchical_labels(consensus: np.ndarray, k: int) -> np.ndarray:
    """Average-linkage clustering of 1 − M cut into exactly k clusters, numbered by decreasing size."""
    from scipy.cluster.hierarchy import cut_tree, linkage
    from scipy.spatial.distance import squareform

    n = consensus.shape[0]
    if k >= n:
        return np.arange(n)
    dist = 1.0 - np.asarray(consensus, dtype=np.float64)
    dist = (dist + dist.T) / 2.0
    np.fill_diagonal(dist, 0.0)
    z = linkage(squareform(np.clip(dist, 0.0, None), checks=False), method="average")
    return _order_by_size(cut_tree(z, n_clusters=k).ravel().astype(np.intp), k)


def cdf_stats(consensus: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(CDF at the 100 right bin edges, area under the CDF, PAC) of the lower-triangle consensus values."""
    v = consensus[np.tril_indices(consensus.shape[0], -1)].astype(np.float64)
    edges = np.linspace(0.0, 1.0, CDF_BREAKS + 1)
    # right-closed bins (a, b], the first one [0, b] — R hist(..., right = TRUE, include.lowest = TRUE)
    bins = np.clip(np.searchsorted(edges, v, side="left") - 1, 0, CDF_BREAKS - 1)
    counts = np.bincount(bins, minlength=CDF_BREAKS)
    cdf = np.cumsum(counts) / max(len(v), 1)
    area = float(np.sum(cdf * np.diff(edges)))
    lo, hi = PAC_BOUNDS
    pac = float(np.mean((v > lo) & (v <= hi))) if len(v) else float("nan")
    return cdf, area, pac


def pac_local_minima(pac: dict[int, float]) -> list[int]:
    """The k (in increasing order) whose next k has a higher PAC (by more than ``PAC_TIE``); see module doc."""
    ks = sorted(pac)
    return [a for a, b in itertools.pairwise(ks) if pac[b] > pac[a] + PAC_TIE]


def choose_k_pac(pac: dict[int, float], delta: dict[int, float] | None = None) -> tuple[int, bool]:
    """(k chosen by the ``"pac"`` rule, whether PAC has a local minimum) — see the module docstring.

    ``delta`` (Δ-area per k) arbitrates between unambiguous local minima; without it the largest one wins.
    """
    ks = sorted(pac)
    minima = pac_local_minima(pac)
    if not minima:
        best = min(pac.values())
        return max(k for k in ks if pac[k] <= best + PAC_TIE), False
    clean = [k for k in minima if pac[k] <= PAC_CLEAN]
    if clean:  # nested, well-separated groups: the finest unambiguous partition that adds consensus area
        chosen = clean[0]
        for k in clean[1:]:
            if delta is None or delta[k] >= DELTA_AREA_THRESHOLD:
                chosen = k
        return chosen, True
    best = min(pac[k] for k in minima)
    return min(k for k in minima if pac[k] <= best * (1.0 + PAC_TOLERANCE) + PAC_TIE), True


def choose_k(pac: dict[int, float], delta: dict[int, float]) -> tuple[int, int]:
    """(k of the ``"pac"`` rule; smallest k whose next Δ-area < threshold, else the largest k)."""
    ks = sorted(pac)
    k_pac, _ = choose_k_pac(pac, delta)
    k_delta = ks[-1]
    for a, b in itertools.pairwise(ks):
        if delta[b] < DELTA_AREA_THRESHOLD:
            k_delta = a
            break
    return k_pac, k_delta


def choose_k_min_pac(pac: dict[int, float]) -> int:
    """The k with minimal PAC, ties within ``PAC_TIE`` → the larger k (rule ``"pac_min"``)."""
    best = min(pac.values())
    return max(k for k in sorted(pac) if pac[k] <= best + PAC_TIE)


def consensus_cluster(
    data: np.ndarray | None = None,
    *,
    distance: np.ndarray | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    reps: int = 1000,
    p_item: float = 0.8,
    seed: int = 0,
    k: int | None = None,
    k_rule: str = "pac",
    n_jobs: int = 1,
    chunk_size: int = 25,
    progress: Progress | None = None,
) -> ConsensusResult:
    """Consensus clustering of the rows of ``data`` (samples × features; Pearson distance) or of ``distance``.

    ``k`` forces the final number of clusters (the rules are still reported). ``n_jobs`` > 1 (or −1 = all
    cores) runs chunks of ``chunk_size`` repetitions in joblib worker processes.
    """
    if (data is None) == (distance is None):
        raise ValueError("give either data or distance")
    d = correlation_distance(data) if distance is None else np.asarray(distance, dtype=np.float64)
    n = d.shape[0]
    ks = sorted({int(x) for x in ks})
    n_sub = int(np.floor(n * p_item))
    if not 0 < p_item <= 1:
        raise ValueError(f"p_item must be in (0, 1], got {p_item}")
    if ks[0] < 2 or ks[-1] > n_sub - 1:
        raise ValueError(f"k must lie in 2..{n_sub - 1} for {n} items and p_item={p_item}, got {ks}")
    if k_rule not in K_RULES:
        raise ValueError(f"k_rule must be one of {K_RULES}, got {k_rule!r}")
    if k is not None and k not in ks:
        raise ValueError(f"forced k={k} is not among ks={ks}")
    if reps < 1:
        raise ValueError("reps must be ≥ 1")

    rng = np.random.default_rng(seed)
    subsamples = np.sort(np.stack([rng.choice(n, n_sub, replace=False) for _ in range(reps)]), axis=1)
    d32 = d.astype(np.float32)
    chunks = [subsamples[i : i + chunk_size] for i in range(0, reps, chunk_size)]
    if n_jobs == 1:
        parts = []
        for i, ch in enumerate(chunks):
            parts.append(_chunk_labels(d32, ch, ks))
            if progress is not None:
                progress(
                    (i + 1) / len(chunks), f"consensus: {min((i + 1) * chunk_size, reps)}/{reps} subsamples"
                )
    else:
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=n_jobs)(delayed(_chunk_labels)(d32, ch, ks) for ch in chunks)
        if progress is not None:
            progress(1.0, f"consensus: {reps}/{reps} subsamples")
    labels_all = np.concatenate(parts)  # reps × nk × n_sub

    # co-sampling and co-clustering counts by indicator products (exact in float32 below 2^24 reps)
    sampled = np.zeros((n, reps), dtype=np.float32)
    sampled[subsamples.T, np.arange(reps)[None, :]] = 1.0
    count = sampled @ sampled.T
    consensus: dict[int, np.ndarray] = {}
    block = max(1, 4_000_000 // (n * max(ks)))
    for j, kk in enumerate(ks):
        together = np.zeros((n, n), dtype=np.float32)
        for start in range(0, reps, block):
            stop = min(reps, start + block)
            h = np.zeros((n, (stop - start) * kk), dtype=np.float32)
            cols = (np.arange(stop - start)[:, None] * kk + labels_all[start:stop, j, :]).astype(np.intp)
            h[subsamples[start:stop], cols] = 1.0
            together += h @ h.T
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(count > 0, together / np.maximum(count, 1.0), 0.0).astype(np.float32)
        np.fill_diagonal(m, 1.0)
        consensus[kk] = m

    cdf: dict[int, np.ndarray] = {}
    area: dict[int, float] = {}
    pac: dict[int, float] = {}
    for kk in ks:
        cdf[kk], area[kk], pac[kk] = cdf_stats(consensus[kk])
    delta = {}
    for i, kk in enumerate(ks):
        delta[kk] = area[kk] if i == 0 else (area[kk] - area[ks[i - 1]]) / area[ks[i - 1]]
    k_pac, k_delta = choose_k(pac, delta)
    _, local_min = choose_k_pac(pac, delta)
    k_min = choose_k_min_pac(pac)
    chosen = k if k is not None else {"pac": k_pac, "pac_min": k_min, "delta": k_delta}[k_rule]
    labels = {kk: hierarchical_labels(consensus[kk], kk) for kk in ks}
    settings = {
        "reps": reps,
        "p_item": p_item,
        "p_feature": 1.0,
        "cluster_alg": "pam",
        "distance": "pearson" if distance is None else "precomputed",
        "final_linkage": "average",
        "seed": seed,
        "forced_k": k,
        "cdf_breaks": CDF_BREAKS,
        "pac_bounds": list(PAC_BOUNDS),
        "delta_area_threshold": DELTA_AREA_THRESHOLD,
        "pac_tie": PAC_TIE,
        "pac_tolerance": PAC_TOLERANCE,
        "pac_clean": PAC_CLEAN,
    }
    return ConsensusResult(
        ks=ks,
        consensus=consensus,
        labels=labels,
        pac=pac,
        area=area,
        delta_area=delta,
        cdf_x=np.linspace(0.0, 1.0, CDF_BREAKS + 1)[1:],
        cdf=cdf,
        k_pac=k_pac,
        k_delta=k_delta,
        k_min_pac=k_min,
        pac_local_minimum=local_min,
        chosen_k=chosen,
        k_rule=k_rule if k is None else "forced",
        settings=settings,
    )
