"""Partitioning around medoids (PAM: BUILD + SWAP, Kaufman & Rousseeuw) on a precomputed distance matrix.

Exact PAM, vectorised with numpy. SWAP evaluates, in every iteration, the change of the total deviation
``ΔTD(i, c)`` of *every* (medoid i, non-medoid c) pair and performs the best swap if it lowers TD — the
original algorithm's best-improvement rule. The pairs are evaluated with the FastPAM1 decomposition
(Schubert & Rousseeuw 2019): with ``dn``/``ds`` the distances of each object to its nearest/second-nearest
medoid and ``C_i`` the objects whose nearest medoid is i,

    ΔTD(i, c) = Σ_o min(d(c,o), dn(o)) − TD + Σ_{o∈C_i} [min(d(c,o), ds(o)) − min(d(c,o), dn(o))],

i.e. two n×n element-wise passes and one (n×n)·(n×k) product per iteration instead of k·n² object loops.
This is *not* an approximation: it returns the same swap as the textbook O(k·n²)-per-pair loop (ties aside:
the first (c, i) in row-major order wins). PAM is a local search: the result is swap-optimal (no single
medoid/non-medoid exchange lowers the cost), usually but not necessarily the global optimum.

BUILD is greedy: the first medoid minimises the total distance, each next one maximises the decrease of TD,
so BUILD(k) = the first k medoids of BUILD(k_max); :func:`pam_path` reuses one BUILD for several k.
Ties are broken by the lowest index throughout, so results are deterministic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: A swap is made only if it lowers TD (recomputed in float64) by more than this fraction of TD.
REL_TOL: float = 1e-12


@dataclass
class PamResult:
    """Medoids (indices into the distance matrix), labels 0..k−1 (label j = medoid j), cost = TD."""

    medoids: np.ndarray
    labels: np.ndarray
    cost: float
    n_swaps: int


def _check(d: np.ndarray, k: int) -> np.ndarray:
    d = np.asarray(d)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"PAM needs a square distance matrix, got shape {d.shape}")
    if not 1 <= k <= d.shape[0]:
        raise ValueError(f"k must be in 1..{d.shape[0]}, got {k}")
    if not np.issubdtype(d.dtype, np.floating):
        d = d.astype(np.float64)
    return d


def pam_build(d: np.ndarray, k: int) -> np.ndarray:
    """Greedy BUILD: k medoid indices in the order they were chosen."""
    d = _check(d, k)
    n = d.shape[0]
    medoids = [int(np.argmin(d.sum(axis=1)))]
    near = d[medoids[0]].copy()
    chosen = np.zeros(n, dtype=bool)
    chosen[medoids[0]] = True
    for _ in range(1, k):
        gain = np.maximum(near[None, :] - d, 0.0).sum(axis=1)
        gain[chosen] = -np.inf
        m = int(np.argmax(gain))
        medoids.append(m)
        chosen[m] = True
        np.minimum(near, d[m], out=near)
    return np.asarray(medoids, dtype=np.intp)


def _nearest_two(d: np.ndarray, medoids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index into ``medoids`` of the nearest medoid, its distance, distance of the second nearest)."""
    dm = d[medoids]  # k × n
    nearest = np.argmin(dm, axis=0)
    cols = np.arange(d.shape[0])
    dn = dm[nearest, cols]
    # a medoid belongs to itself even if another medoid is at distance 0 (duplicate objects)
    nearest[medoids] = np.arange(len(medoids))
    dn[medoids] = 0.0
    if len(medoids) == 1:
        ds = np.full(d.shape[0], np.inf, dtype=d.dtype)
    else:
        masked = dm.copy()
        masked[nearest, cols] = np.inf
        ds = masked.min(axis=0)
    return nearest, dn, ds


def pam_swap(d: np.ndarray, medoids: np.ndarray, max_iter: int = 1000) -> tuple[np.ndarray, int]:
    """SWAP phase from the given medoids → (swap-optimal medoids, number of swaps made).

    The candidate swap is chosen with ΔTD computed in the matrix's dtype (float32 is ~2× faster); it is
    accepted only if the total deviation recomputed in float64 decreases, so TD decreases strictly and the
    loop cannot cycle on rounding noise.
    """
    d = _check(d, len(medoids))
    medoids = np.array(medoids, dtype=np.intp)
    k = len(medoids)
    n = d.shape[0]
    if k == n:
        return medoids, 0
    is_medoid = np.zeros(n, dtype=bool)
    is_medoid[medoids] = True
    onehot = np.zeros((n, k), dtype=d.dtype)
    a = np.empty_like(d)
    b = np.empty_like(d)
    rows = np.arange(n)
    swaps = 0
    nearest, dn, ds = _nearest_two(d, medoids)
    td = float(dn.sum(dtype=np.float64))
    for _ in range(max_iter):
        np.minimum(d, dn[None, :], out=a)  # rows: candidates c, columns: objects o
        np.minimum(d, ds[None, :], out=b)
        b -= a
        onehot[:] = 0.0
        onehot[rows, nearest] = 1.0
        delta = b @ onehot  # c × k
        delta += (a.sum(axis=1) - d.dtype.type(td))[:, None]
        delta[is_medoid] = np.inf
        c, i = divmod(int(np.argmin(delta)), k)
        if not delta[c, i] < 0:
            break
        trial = medoids.copy()
        trial[i] = c
        t_nearest, t_dn, t_ds = _nearest_two(d, trial)
        t_td = float(t_dn.sum(dtype=np.float64))
        if not t_td < td - REL_TOL * td:
            break
        is_medoid[medoids[i]] = False
        is_medoid[c] = True
        medoids, nearest, dn, ds, td = trial, t_nearest, t_dn, t_ds, t_td
        swaps += 1
    return medoids, swaps


def assign(d: np.ndarray, medoids: np.ndarray) -> tuple[np.ndarray, float]:
    """Labels (nearest medoid; ties → first medoid; a medoid → itself) and total deviation."""
    nearest, dn, _ = _nearest_two(np.asarray(d), np.asarray(medoids, dtype=np.intp))
    return nearest.astype(np.intp), float(dn.sum())


def _single_thread(enabled: bool):
    """One BLAS thread: the (n×n)·(n×k) products are small, and threads only add overhead (or worse)."""
    if not enabled:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def pam(d: np.ndarray, k: int, *, max_iter: int = 1000, single_thread: bool = True) -> PamResult:
    """PAM (BUILD + SWAP) of a precomputed n×n distance matrix into k clusters."""
    d = _check(d, k)
    with _single_thread(single_thread):
        medoids, swaps = pam_swap(d, pam_build(d, k), max_iter=max_iter)
        labels, cost = assign(d, medoids)
    return PamResult(medoids, labels, cost, swaps)


def pam_path(
    d: np.ndarray, ks: Iterable[int], *, max_iter: int = 1000, single_thread: bool = True
) -> dict[int, PamResult]:
    """PAM for several k sharing one greedy BUILD (identical to calling :func:`pam` for each k).

    ``single_thread`` limits BLAS to one thread during the call (the caller may already have done so).
    """
    ks = sorted({int(k) for k in ks})
    d = _check(d, ks[-1])
    out: dict[int, PamResult] = {}
    with _single_thread(single_thread):
        build = pam_build(d, ks[-1])
        for k in ks:
            medoids, swaps = pam_swap(d, build[:k], max_iter=max_iter)
            labels, cost = assign(d, medoids)
            out[k] = PamResult(medoids, labels, cost, swaps)
    return out
