"""Reproducibility and association statistics: IGP (clusterRepro), cluster purity, Cramér's V.

Conventions: matrices are *samples × features* (rows = patients), centroids *clusters × features*; the R
package ``clusterRepro`` uses the transposes. Cluster labels are any hashable values.

**IGP** (Kapp & Tibshirani 2007), a port of ``clusterRepro::IGP.clusterRepro``:
class(i) = argmax_k Pearson r(x_i, centroid_k) (pairwise-complete observations; first maximum);
nn(i) = argmax_{j≠i} Pearson r(x_i, x_j); IGP_k = #{i: class(i) = k and class(nn(i)) = k} / #{class(i) = k},
Size_k = #{class(i) = k}; IGP_k is NaN when Size_k = 0 (R: 0/0). Departure: a sample whose correlations are
all undefined (constant row) gets class −1 and is left out (R would stop with an error).

**p-values** as ``clusterRepro::clusterRepro``: SVD of the features × clusters centroid matrix C = U S Vᵀ,
C' = C V; each permutation permutes the entries of every column of C' independently, back-rotates
(C'' Vᵀ) and recomputes IGP/Size with these null centroids; p_k = #(null IGPs ≥ IGP_k among null clusters
whose Size equals Size_k) / #(such null clusters) — NaN when there is none or Size_k = 0 (``number`` says how
many null clusters were compared).

**Purity** (Manning et al. 2008) of predicted labels ω against reference labels c:
purity = (1/N) Σ_k max_j |ω_k ∩ c_j|; per cluster purity_k = max_j |ω_k ∩ c_j| / |ω_k| (k = predicted label).

**Cramér's V** = sqrt(χ² / (n (min(r, c) − 1))) with Pearson χ² without continuity correction:
``scipy.stats.contingency.association(table, method="cramer")`` and
``scipy.stats.chi2_contingency(table, correction=False)`` for χ² and p.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


# --- correlations ------------------------------------------------------------------------------------------
def pairwise_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between every row of ``a`` and every row of ``b`` over pairwise-complete columns.

    Equals R ``cor(t(a), t(b), use = "pairwise.complete.obs")``; NaN where fewer than 2 common values or a
    zero variance.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ma = np.isfinite(a)
    mb = np.isfinite(b)
    if ma.all() and mb.all():
        ac = a - a.mean(axis=1, keepdims=True)
        bc = b - b.mean(axis=1, keepdims=True)
        na = np.sqrt((ac * ac).sum(axis=1))
        nb = np.sqrt((bc * bc).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (ac @ bc.T) / np.outer(na, nb)
        r[~np.isfinite(r)] = np.nan
        return np.clip(r, -1.0, 1.0)
    fa, fb = ma.astype(np.float64), mb.astype(np.float64)
    a0, b0 = np.where(ma, a, 0.0), np.where(mb, b, 0.0)
    cnt = fa @ fb.T
    sa, sb = a0 @ fb.T, fa @ b0.T
    saa, sbb = (a0 * a0) @ fb.T, fa @ (b0 * b0).T
    sab = a0 @ b0.T
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sa * sb / cnt
        va = saa - sa * sa / cnt
        vb = sbb - sb * sb / cnt
        r = cov / np.sqrt(va * vb)
    r[
        (cnt < 2)
        | ~np.isfinite(r)
        | (va <= 1e-14 * np.maximum(saa, 1e-300))
        | (vb <= 1e-14 * np.maximum(sbb, 1e-300))
    ] = np.nan
    return np.clip(r, -1.0, 1.0)


def _argmax_first(r: np.ndarray) -> np.ndarray:
    """Row-wise index of the first maximum ignoring NaN (R ``which.max``); −1 for an all-NaN row."""
    filled = np.where(np.isnan(r), -np.inf, r)
    idx = np.argmax(filled, axis=1)
    idx[np.isnan(r).all(axis=1)] = -1
    return idx


# --- IGP ---------------------------------------------------------------------------------------------------
@dataclass
class IgpResult:
    """Class of every sample (index into the centroids, −1 = undefined), IGP and Size per centroid."""

    classes: np.ndarray
    igp: np.ndarray
    size: np.ndarray


def nearest_neighbours(data: np.ndarray) -> np.ndarray:
    """Index of each row's most correlated other row (−1 if undefined)."""
    r = pairwise_correlation(data, data)
    np.fill_diagonal(r, np.nan)
    return _argmax_first(r)


def _igp_from(classes: np.ndarray, nn: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    ok = (classes >= 0) & (nn >= 0)
    ok[ok] &= classes[nn[ok]] >= 0
    table = np.zeros((n_clusters, n_clusters), dtype=np.int64)
    np.add.at(table, (classes[ok], classes[nn[ok]]), 1)
    size = table.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        igp = np.diag(table) / size
    return igp, size


def igp(data: np.ndarray, centroids: np.ndarray) -> IgpResult:
    """In-group proportion of ``data`` (samples × features) w.r.t. ``centroids`` (clusters × features)."""
    data = np.asarray(data, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    if data.ndim != 2 or centroids.ndim != 2 or data.shape[1] != centroids.shape[1]:
        raise ValueError(f"data {data.shape} and centroids {centroids.shape} need the same feature columns")
    classes = _argmax_first(pairwise_correlation(data, centroids))
    value, size = _igp_from(classes, nearest_neighbours(data), centroids.shape[0])
    return IgpResult(classes, value, size)


def centroids_of(data: np.ndarray, labels: Sequence[Any], order: Sequence[Any] | None = None) -> np.ndarray:
    """Mean row of each cluster (clusters × features), in ``order`` (default: sorted labels)."""
    labels = np.asarray(labels)
    order = sorted(set(labels.tolist())) if order is None else list(order)
    return np.stack([np.nanmean(np.asarray(data, dtype=np.float64)[labels == c], axis=0) for c in order])


def igp_test(
    data: np.ndarray, centroids: np.ndarray, n_permutations: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """IGP with clusterRepro's permutation p-values → ``igp``, ``size``, ``p_value``, ``number``, ``classes``."""
    data = np.asarray(data, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64).T  # features × clusters, as in R
    p, k = c.shape
    actual = igp(data, centroids)
    nn = nearest_neighbours(data)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    v = vt.T
    c_prime = c @ v
    rng = np.random.default_rng(seed)
    null_igp = np.empty((n_permutations, k))
    null_size = np.empty((n_permutations, k), dtype=np.int64)
    cols = np.arange(k)[None, :]
    for t in range(n_permutations):
        # R permuteCol: order(runif(p·K) + 10·column) — uniforms filled column by column, sorted per column
        perm = np.argsort(rng.random(p * k).reshape(k, p).T, axis=0, kind="stable")
        null = (c_prime[perm, cols] @ v.T).T
        classes = _argmax_first(pairwise_correlation(data, null))
        null_igp[t], null_size[t] = _igp_from(classes, nn, k)
    flat_igp, flat_size = null_igp.ravel(), null_size.ravel()
    p_value = np.full(k, np.nan)
    number = np.zeros(k, dtype=np.int64)
    for i in range(k):
        if actual.size[i] == 0:
            continue
        same = flat_igp[flat_size == actual.size[i]]
        if len(same):
            p_value[i] = float(np.mean(same >= actual.igp[i]))
            number[i] = len(same)
    return {
        "igp": actual.igp,
        "size": actual.size,
        "p_value": p_value,
        "number": number,
        "classes": actual.classes,
    }


# --- purity ------------------------------------------------------------------------------------------------
def cluster_purity(predicted: Sequence[Any], reference: Sequence[Any]) -> dict[str, Any]:
    """Overall and per-(predicted)-cluster purity of ``predicted`` against ``reference``."""
    from sklearn.metrics.cluster import contingency_matrix

    predicted = np.asarray(predicted).astype(str)
    reference = np.asarray(reference).astype(str)
    if len(predicted) != len(reference) or len(predicted) == 0:
        raise ValueError("purity needs two non-empty label vectors of equal length")
    table = contingency_matrix(predicted, reference)  # rows: sorted predicted labels
    names = sorted(set(predicted.tolist()))
    best = table.max(axis=1)
    return {
        "purity": float(best.sum() / table.sum()),
        "per_cluster": {n: float(b / s) for n, b, s in zip(names, best, table.sum(axis=1), strict=True)},
        "n": int(table.sum()),
    }


# --- Cramér's V --------------------------------------------------------------------------------------------
def cramers_v(a: Sequence[Any], b: Sequence[Any]) -> dict[str, Any]:
    """Cramér's V between two categorical vectors, with Pearson χ² (no Yates correction), dof and p."""
    import pandas as pd
    from scipy.stats import chi2_contingency
    from scipy.stats.contingency import association

    table = pd.crosstab(
        pd.Series(np.asarray(a).astype(str), name="a"), pd.Series(np.asarray(b).astype(str), name="b")
    )
    out: dict[str, Any] = {
        "table": {str(r): {str(c): int(table.loc[r, c]) for c in table.columns} for r in table.index},
        "n": int(table.values.sum()),
    }
    if min(table.shape) < 2:
        out.update(cramers_v=float("nan"), chi2=float("nan"), dof=0, p_value=float("nan"))
        return out
    chi2, p, dof, _ = chi2_contingency(table.values, correction=False)
    out.update(
        cramers_v=float(association(table.values, method="cramer", correction=False)),
        chi2=float(chi2),
        dof=int(dof),
        p_value=float(p),
    )
    return out
