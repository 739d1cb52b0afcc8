"""Imaging intratumour heterogeneity (IITH) and the heterogeneity index (HI) of Su et al. 2023.

Su et al. (Sci Adv 9:eadf0837) cluster tumours into high and low IITH: heterogeneity-related pyradiomics
features → MAD > 1 filter → two views (first-order, texture) → R SNFtool ``standardNormalization`` →
``dist2`` → ``affinityMatrix(K=13, sigma=0.4)`` → ``SNF(K=13, t=20)`` → ``spectralClustering(W, 2)``. The
heterogeneity index is HI = Σ z(positive features) − Σ z(negative features); the cluster with the higher HI
is "high IITH".

This module holds

* :data:`IITH_FEATURES` — the heterogeneity-related features with their signs (a reconstruction, see
  there), matched to RadTyper's ``radiomics_<class>_<feature>`` columns;
* :func:`mad_filter` — R's scaled MAD filter;
* a NumPy port of SNFtool 2.3.1 (:func:`standard_normalization`, :func:`dist2`, :func:`affinity_matrix`,
  :func:`snf`, :func:`spectral_clustering`, :func:`estimate_number_of_clusters`), written line by line
  against the R source (CRAN SNFtool 2.3.1, files ``R/*.R``); no randomness anywhere;
* :func:`iith_cohort` (labels + HI for a cohort), :class:`IITHReference` / :func:`hi_from_reference` (HI of a
  new lesion relative to a saved cohort) and :func:`iith_report` (files for ``radtyper iith``).

Labels are 1-based, as SNFtool's ``spectralClustering`` returns them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from . import __version__
from .errors import InputError
from .io import atomic_path, to_jsonable

EPS = float(np.finfo(float).eps)  # R's .Machine$double.eps
R_MAD_CONSTANT = 1.4826  # R's mad(constant = 1.4826)
REFERENCE_FORMAT = "radtyper-iith-reference"
REFERENCE_VERSION = 1

FIRST_ORDER = "first_order"
TEXTURE = "texture"
VIEWS = (FIRST_ORDER, TEXTURE)


# --- feature set ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeterogeneityFeature:
    """One heterogeneity-related pyradiomics feature: class, name, sign (+1, −1 or 0) and SNF view."""

    feature_class: str  # pyradiomics class: firstorder, glcm, glrlm, glszm, gldm, ngtdm
    feature: str  # pyradiomics feature name, e.g. "Entropy"
    sign: int  # +1 positively, −1 negatively heterogeneity-related; 0: clustering only, not in HI

    @property
    def name(self) -> str:
        """``<class>_<feature>``, e.g. ``firstorder_Entropy``."""
        return f"{self.feature_class}_{self.feature}"

    @property
    def column(self) -> str:
        """RadTyper column name ``radiomics_<class>_<feature>``."""
        return f"radiomics_{self.name}"

    @property
    def view(self) -> str:
        """SNF view: ``first_order`` for first-order features, ``texture`` for the others."""
        return FIRST_ORDER if self.feature_class == "firstorder" else TEXTURE


def _features(cls: str, spec: str) -> tuple[HeterogeneityFeature, ...]:
    out = []
    for item in spec.split():
        sign = {"+": 1, "-": -1, "0": 0}[item[-1]]
        out.append(HeterogeneityFeature(cls, item[:-1], sign))
    return tuple(out)


#: Heterogeneity-related features and their signs. **A reconstruction**: Su et al.'s Table S1 (the 42
#: features: 9 first-order + 33 texture) is not retrievable. The list follows the paper's rule ("first-order
#: features characterising the variation in intensity values; texture features depicting heterogeneous or
#: homogeneous patterns", from the pyradiomics definitions) and keeps every feature the paper names (Range,
#: Variance, DifferenceEntropy, GLRLM GrayLevelNonUniformity, all +). It has 9 first-order and 35 texture
#: features (the paper: 33), i.e. it may hold two texture features Su et al. did not use.
#:
#: Signs not fixed by the sources, decided here:
#:
#: * ``Kurtosis`` +1: pyradiomics' kurtosis measures how much of the intensity mass lies in the tails
#:   (outlying voxels: necrosis, strong enhancement); a heavier tail is read as more heterogeneous.
#: * ``Skewness`` 0: its sign gives the direction of the asymmetry, not its amount, so it has no monotone
#:   relation to heterogeneity. It enters the first-order SNF view (clustering) but not the HI.
#:
#: Uniformity, GLCM JointEnergy/Idm/Idmn/Id/Idn/InverseVariance/MaximumProbability and NGTDM
#: Coarseness/Strength grow with homogeneity (−1); everything else grows with heterogeneity (+1).
IITH_FEATURES: tuple[HeterogeneityFeature, ...] = (
    *_features(
        "firstorder",
        "Entropy+ InterquartileRange+ MeanAbsoluteDeviation+ RobustMeanAbsoluteDeviation+ Range+ Variance+ "
        "Kurtosis+ Skewness0 Uniformity-",
    ),
    *_features(
        "glcm",
        "Contrast+ DifferenceAverage+ DifferenceEntropy+ DifferenceVariance+ JointEntropy+ SumEntropy+ "
        "ClusterTendency+ ClusterProminence+ SumSquares+ JointEnergy- Idm- Idmn- Id- Idn- InverseVariance- "
        "MaximumProbability-",
    ),
    *_features(
        "glrlm",
        "GrayLevelNonUniformity+ GrayLevelNonUniformityNormalized+ GrayLevelVariance+ RunEntropy+ "
        "RunLengthNonUniformity+",
    ),
    *_features(
        "glszm",
        "GrayLevelNonUniformity+ GrayLevelVariance+ ZoneEntropy+ SizeZoneNonUniformity+ ZoneVariance+",
    ),
    *_features(
        "gldm", "GrayLevelNonUniformity+ GrayLevelVariance+ DependenceEntropy+ DependenceNonUniformity+"
    ),
    *_features("ngtdm", "Coarseness- Contrast+ Busyness+ Complexity+ Strength-"),
)
_BY_NAME: dict[str, HeterogeneityFeature] = {f.name: f for f in IITH_FEATURES}


def heterogeneity_feature(column: str) -> HeterogeneityFeature | None:
    """The heterogeneity feature a ``radiomics_*`` or ``iith_*`` column holds, or None.

    Matches ``radiomics_<class>_<feature>``, ``radiomics_<anything>_<class>_<feature>`` (filtered image
    types; pyradiomics' own names end in ``<class>_<feature>``) and the multi-phase, multi-ROI columns
    ``iith_<phase>_<roi>_<class>_<feature>`` of :mod:`RadTyperLib.iith_features`.
    """
    if not column.startswith(("radiomics_", "iith_")):
        return None
    parts = column.split("_")
    if len(parts) < 3:
        return None
    return _BY_NAME.get(f"{parts[-2]}_{parts[-1]}")


def heterogeneity_columns(columns: Iterable[str]) -> dict[str, HeterogeneityFeature]:
    """The columns of a feature table that hold heterogeneity-related features, in table order.

    When the table has multi-phase, multi-ROI ``iith_*`` columns, only those are returned (the
    ``radiomics_*`` columns of the reference image's whole lesion repeat ``iith_<phase>_whole_*``).
    """
    out: dict[str, HeterogeneityFeature] = {}
    for c in columns:
        f = heterogeneity_feature(str(c))
        if f is not None:
            out[str(c)] = f
    if any(c.startswith("iith_") for c in out):
        out = {c: f for c, f in out.items() if c.startswith("iith_")}
    return out


def column_phase_roi(column: str) -> tuple[str, str] | None:
    """(phase, ROI) of an ``iith_<phase>_<roi>_<class>_<feature>`` column, else None."""
    parts = column.split("_")
    if column.startswith("iith_") and len(parts) == 5:
        return parts[1], parts[2]
    return None


# --- MAD filter -------------------------------------------------------------------------------------------
def feature_mad(table: Any, features: Sequence[str]) -> dict[str, float]:
    """R's ``mad(x)`` of each feature: 1.4826 × median|x − median(x)| (non-finite values left out).

    Uses R's constant 1.4826 exactly (``scipy.stats.median_abs_deviation(scale='normal')`` uses
    1/Φ⁻¹(¾) = 1.482602…, 1.5e-6 relative difference).
    """
    from scipy.stats import median_abs_deviation

    out: dict[str, float] = {}
    for f in features:
        x = np.asarray(table[f], dtype=float)
        x = x[np.isfinite(x)]
        out[f] = float(median_abs_deviation(x, scale=1.0 / R_MAD_CONSTANT)) if x.size else float("nan")
    return out


def mad_filter(table: Any, features: Sequence[str], threshold: float = 1.0) -> list[str]:
    """The features whose R-style scaled MAD is > ``threshold`` (Su et al.: MAD > 1), in the given order.

    The MAD is in the feature's own unit, so the filter is unit-dependent: it keeps features with a large
    numeric range (Variance, non-uniformities) and drops bounded ones (Idm, Uniformity, often Entropy)
    whatever their relative variability. ``table`` is anything indexable by column name (DataFrame, dict).
    """
    mads = feature_mad(table, features)
    return [f for f in features if np.isfinite(mads[f]) and mads[f] > threshold]


# --- SNFtool 2.3.1 port -----------------------------------------------------------------------------------
def standard_normalization(X: Any) -> np.ndarray:
    """SNFtool ``standardNormalization``: z-score each column (sd with n − 1; sd = 0 → 1)."""
    X = np.asarray(X, dtype=float)
    mean = X.mean(axis=0)  # mean <- apply(x, 2, mean)
    sd = X.std(axis=0, ddof=1) if X.shape[0] > 1 else np.zeros(X.shape[1])  # sd <- apply(x, 2, sd)
    sd = np.where(sd == 0, 1.0, sd)  # sd[sd==0] <- 1
    return (X - mean) / sd  # t((t(x) - mean) / sd)


def dist2(X: Any, C: Any | None = None) -> np.ndarray:
    """SNFtool ``dist2``: squared Euclidean distances between the rows of X and C (negatives → 0).

    Computed as R does (Σx² + Σc² − 2 x·c), so rounding matches; the result is *squared* and SNFtool
    feeds it to ``affinityMatrix`` as it is.
    """
    X = np.atleast_2d(np.asarray(X, dtype=float))
    C = X if C is None else np.atleast_2d(np.asarray(C, dtype=float))
    sumsq_x = np.sum(X**2, axis=1)  # sumsqX <- rowSums(X^2)
    sumsq_c = np.sum(C**2, axis=1)  # sumsqC <- rowSums(C^2)
    res = sumsq_x[:, None] + sumsq_c[None, :] - 2.0 * (X @ C.T)  # repmat(sumsqX) + t(repmat(sumsqC)) - XC
    res[res < 0] = 0.0  # res[res < 0] <- 0
    return res


def affinity_matrix(D: Any, K: int = 20, sigma: float = 0.5) -> np.ndarray:
    """SNFtool 2.3.1 ``affinityMatrix(diff, K, sigma)``: scaled exponential similarity kernel.

    With D symmetrised and its diagonal set to 0, μ_i = mean of the K smallest off-diagonal entries of row
    i (+ eps), Σ_ij = (μ_i + μ_j)/3 + D_ij/3 (+ eps) and W_ij = dnorm(D_ij; 0, σ·Σ_ij) =
    exp(−D_ij² / (2σ²Σ_ij²)) / (σ Σ_ij √(2π)). D is SNFtool's ``dist2``, a *squared* distance.
    (SNFtool ≤ 2.0.3 used 2(μ_i + μ_j)/3 + D_ij/3; 2.1 onwards, ported here, the formula above.)
    """
    D = np.asarray(D, dtype=float)
    n = D.shape[0]
    if D.ndim != 2 or D.shape[1] != n:
        raise ValueError(f"affinity_matrix: expected a square matrix, got shape {D.shape}")
    if not 1 <= K <= n - 1:
        raise ValueError(f"affinity_matrix: K must be in 1..{n - 1} for {n} samples, got {K}")
    D = (D + D.T) / 2.0  # diff <- (diff + t(diff)) / 2
    np.fill_diagonal(D, 0.0)  # diag(diff) <- 0
    sorted_rows = np.sort(D, axis=0).T  # sortedColumns <- t(apply(diff, 2, sort))
    nearest = sorted_rows[:, 1 : K + 1]  # sortedColumns[, 1:K+1]  (R: (1:K)+1 = 2..K+1, skips the 0)
    finite = np.isfinite(nearest)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(finite, nearest, 0.0).sum(axis=1) / finite.sum(axis=1)  # finiteMean
    means = means + EPS  # + .Machine$double.eps
    avg = (means[:, None] + means[None, :]) / 2.0  # outer(means, means, avg), avg = (x + y)/2
    sig = avg / 3.0 * 2.0 + D / 3.0 + EPS  # Sig <- outer(...)/3*2 + diff/3 + eps
    sig[sig <= EPS] = EPS  # Sig[Sig <= eps] <- eps
    sd = sigma * sig
    densities = np.exp(-0.5 * (D / sd) ** 2) / (sd * math.sqrt(2.0 * math.pi))  # dnorm(diff, 0, sigma*Sig)
    return (densities + densities.T) / 2.0  # W <- (densities + t(densities)) / 2


def snf_normalize(X: Any) -> np.ndarray:
    """SNFtool 2.3.1 ``SNF``'s inner ``normalize``: X_ij / (2 (Σ_k X_ik − X_ii)), diagonal ½.

    Each row then sums to 1 (½ on the diagonal, ½ spread over the others). A row whose off-diagonal sum
    is 0 is divided by 2 (R sets that sum to 1). The result is not symmetric; SNF symmetrises after it.
    """
    X = np.array(X, dtype=float)
    row_sum_mdiag = X.sum(axis=1) - np.diag(X)  # rowSums(X) - diag(X)
    row_sum_mdiag[row_sum_mdiag == 0] = 1.0  # row.sum.mdiag[row.sum.mdiag == 0] <- 1
    X = X / (2.0 * row_sum_mdiag[:, None])  # X/(2*(row.sum.mdiag)), R recycles the vector over rows
    np.fill_diagonal(X, 0.5)  # diag(X) <- 0.5
    return X


def dominate_set(X: Any, K: int = 20) -> np.ndarray:
    """SNFtool ``.dominateset``: keep the K largest entries of each row (the diagonal included), zero the
    rest, divide each row by its sum. Ties: R's stable ascending sort zeroes the earlier of equal entries.
    """
    X = np.asarray(X, dtype=float)
    n = X.shape[1]
    if not 1 <= K <= n - 1:
        raise ValueError(f"dominate_set: K must be in 1..{n - 1} for {n} samples, got {K}")
    A = X.copy()
    order = np.argsort(X, axis=1, kind="stable")  # sort(x, index.return=TRUE) (radix: stable)
    rows = np.arange(X.shape[0])[:, None]
    A[rows, order[:, : n - K]] = 0.0  # x[s$ix[1:(length(x)-KK)]] = 0
    return A / A.sum(axis=1, keepdims=True)  # normalize <- function(X) X / rowSums(X)


def snf_diffuse(Ws: Sequence[Any], K: int = 20, t: int = 20) -> list[np.ndarray]:
    """The per-view status matrices after ``t`` SNF iterations (SNFtool 2.3.1 ``SNF`` before averaging).

    P_v ← sym(normalize(W_v)); S_v = dominate_set(P_v, K); then t times, for all views at once:
    P_v ← sym(normalize(S_v · mean_{u≠v} P_u · S_vᵀ)), where sym(X) = (X + Xᵀ)/2.
    """
    if len(Ws) < 2:
        raise ValueError(f"SNF needs at least two views, got {len(Ws)}")
    if t < 1:
        raise ValueError(f"SNF needs t >= 1 iterations, got {t}")  # R's 1:0 would run twice
    P = [np.asarray(W, dtype=float) for W in Ws]
    n = P[0].shape[0]
    if any(p.shape != (n, n) for p in P):
        raise ValueError(f"SNF views must be square and of one size, got {[p.shape for p in P]}")
    m = len(P)
    for i in range(m):
        P[i] = snf_normalize(P[i])  # Wall[[i]] <- normalize(Wall[[i]])
        P[i] = (P[i] + P[i].T) / 2.0  # Wall[[i]] <- (Wall[[i]] + t(Wall[[i]]))/2
    S = [dominate_set(p, K) for p in P]  # newW[[i]] <- .dominateset(Wall[[i]], K)
    for _ in range(t):  # for (i in 1:t)
        nxt = []
        for j in range(m):
            others = sum(P[k] for k in range(m) if k != j) / (m - 1)  # sumWJ/(LW-1)
            nxt.append(S[j] @ others @ S[j].T)  # newW[[j]] %*% (sumWJ/(LW-1)) %*% t(newW[[j]])
        for j in range(m):
            P[j] = snf_normalize(nxt[j])  # Wall[[j]] <- normalize(nextW[[j]])
            P[j] = (P[j] + P[j].T) / 2.0  # Wall[[j]] <- (Wall[[j]] + t(Wall[[j]]))/2
    return P


def snf(Ws: Sequence[Any], K: int = 20, t: int = 20) -> np.ndarray:
    """SNFtool 2.3.1 ``SNF(Wall, K, t)``: fuse ≥ 2 affinity matrices into one similarity network.

    W = sym(normalize(mean_v P_v)) with P_v from :func:`snf_diffuse`; symmetric, diagonal ½, rows sum ≈ 1.
    """
    P = snf_diffuse(Ws, K, t)
    W = sum(P) / len(P)  # W <- W/LW
    W = snf_normalize(W)  # W <- normalize(W)
    return (W + W.T) / 2.0  # W <- (W + t(W)) / 2


def _normalized_laplacian(W: np.ndarray) -> np.ndarray:
    d = W.sum(axis=1)  # d <- rowSums(affinity)
    d[d == 0] = EPS  # d[d == 0] <- .Machine$double.eps
    L = np.diag(d) - W  # L <- D - affinity
    di = 1.0 / np.sqrt(d)  # Di <- diag(1 / sqrt(d))
    NL = di[:, None] * L * di[None, :]  # NL <- Di %*% L %*% Di
    return (NL + NL.T) / 2.0  # R's eigen() treats it as symmetric


def _row_normalize(U: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.sum(U**2, axis=1, keepdims=True))  # x / sqrt(sum(x^2))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = U / norms
    return np.nan_to_num(out, nan=0.0)  # an all-zero row (R: NaN) stays zero


def _discretisation_data(V: np.ndarray) -> np.ndarray:
    Y = np.zeros_like(V)  # .discretisationEigenVectorData: 1 at the first row maximum
    Y[np.arange(V.shape[0]), np.argmax(V, axis=1)] = 1.0
    return Y


def discretisation(eigenvectors: Any) -> np.ndarray:
    """SNFtool ``.discretisation``: Yu–Shi (2003) rotation of row-normalised eigenvectors to an indicator.

    Starts R with the row at position round(n/2) (R rounds half to even, as NumPy), adds the rows least
    aligned with the columns chosen so far, then alternates indicator = argmax(E·R) and R = V·Uᵀ from the
    SVD of indicatorᵀ·E, at most 20 times or until the Ncut value 2(n − Σ singular values) stops changing.
    Returns the n × k 0/1 indicator. Flipping the sign of an eigenvector does not change it.
    """
    E = _row_normalize(np.asarray(eigenvectors, dtype=float))
    n, k = E.shape
    R = np.zeros((k, k))
    R[:, 0] = E[int(np.round(n / 2)) - 1, :]  # R[,1] = t(eigenVectors[round(n/2),])
    c = np.zeros(n)
    for j in range(1, k):  # for (j in 2:k)
        c = c + np.abs(E @ R[:, j - 1])  # c = c + abs(eigenVectors %*% R[,j-1])
        R[:, j] = E[int(np.argmin(c)), :]  # first minimum
    last = 0.0
    discrete = _discretisation_data(E @ R)
    for _ in range(20):
        discrete = _discretisation_data(E @ R)
        U, S, Vt = np.linalg.svd(discrete.T @ E)  # svd(t(eigenDiscrete) %*% eigenVectors)
        ncut = 2.0 * (n - S.sum())
        if abs(ncut - last) < EPS:
            break
        last = ncut
        R = Vt.T @ U.T  # R = V %*% t(U)
    return discrete


def spectral_clustering(W: Any, k: int, type: int = 3) -> np.ndarray:
    """SNFtool ``spectralClustering(affinity, K, type)``: labels 1..k (int array), deterministic.

    type 3 (default, used by Su et al.): L_sym = D^{−1/2}(D − W)D^{−1/2}; the eigenvectors of the k
    eigenvalues smallest in absolute value; rows normalised to unit length; :func:`discretisation`; label =
    column of the row's 1. type 1: unnormalised L; type 2: random-walk D^{−1}L (as SNFtool).
    """
    W = np.asarray(W, dtype=float)
    n = W.shape[0]
    if not 2 <= k <= n:
        raise ValueError(f"spectral_clustering: k must be in 2..{n}, got {k}")
    if type == 3:
        w, V = np.linalg.eigh(_normalized_laplacian(W))
    else:
        d = W.sum(axis=1)
        d[d == 0] = EPS
        L = np.diag(d) - W
        if type == 1:
            w, V = np.linalg.eigh((L + L.T) / 2.0)
        elif type == 2:
            w, V = np.linalg.eig(L / d[:, None])
            w, V = w.real, V.real
        else:
            raise ValueError(f"spectral_clustering: type must be 1, 2 or 3, got {type}")
    desc = np.argsort(-w, kind="stable")  # R's eigen() lists eigenvalues in decreasing order
    w, V = w[desc], V[:, desc]
    idx = np.argsort(np.abs(w), kind="stable")[:k]  # sort(abs(eig$values), index.return=TRUE)$ix[1:K]
    U = V[:, idx]
    if type == 3:
        U = _row_normalize(U)  # U <- t(apply(U, 1, normalize))
    return np.argmax(discretisation(U), axis=1) + 1  # apply(eigDiscrete, 1, which.max)


def eigengaps(W: Any) -> np.ndarray:
    """Eigen-gaps of L_sym as in SNFtool ``estimateNumberOfClustersGivenGraph``: gap[k−1] = λ_{k+1} − λ_k.

    W is symmetrised with its diagonal set to 0 first; λ_1 ≤ λ_2 ≤ … are the eigenvalues of L_sym.
    """
    W = np.asarray(W, dtype=float)
    W = (W + W.T) / 2.0  # W <- (W + t(W))/2
    np.fill_diagonal(W, 0.0)  # diag(W) <- 0
    values = np.linalg.eigvalsh(_normalized_laplacian(W))  # ascending
    return np.abs(np.diff(values))  # eigengap <- abs(diff(eigs$values))


def estimate_number_of_clusters(W: Any, candidates: Iterable[int] = range(2, 6)) -> int:
    """The number of clusters with the largest eigen-gap (SNFtool's "Eigen-gap best"; first on ties).

    A big gap after the k smallest eigenvalues of the normalised Laplacian means k nearly disconnected
    groups. Su et al. chose k = 2 with the R package Spectrum (a related eigengap / multimodality
    heuristic); SNFtool's rotation-cost heuristic is not ported.
    """
    cands = [int(c) for c in candidates if int(c) > 1]
    gaps = eigengaps(W)
    n = gaps.size + 1
    cands = [c for c in cands if c <= n - 1]
    if not cands:
        raise ValueError(f"estimate_number_of_clusters: no candidate in 2..{n - 1}")
    return cands[int(np.argmax([gaps[c - 1] for c in cands]))]  # eigengap[NUMC] (R, 1-based)


# --- heterogeneity index ----------------------------------------------------------------------------------
def _hi(values: np.ndarray, means: np.ndarray, sds: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """HI per row of ``values`` (n × p): Σ_f sign_f (x_f − mean_f)/sd_f; sd = 0 → z = 0."""
    safe = np.where(sds > 0, sds, 1.0)
    z = np.where(sds > 0, (values - means) / safe, 0.0)
    return z @ signs


@dataclass
class IITHReference:
    """What a new lesion's HI is computed against: the cohort's mean and SD (ddof = 1) of each HI feature."""

    features: list[str]
    means: list[float]
    sds: list[float]
    signs: list[int]
    version: int = REFERENCE_VERSION
    n_lesions: int = 0
    cluster_hi: dict[str, float] = field(default_factory=dict)  # mean HI of the "high"/"low" clusters
    radtyper_version: str = __version__

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the reference as JSON (atomic)."""
        data = {"format": REFERENCE_FORMAT, **asdict(self)}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(to_jsonable(data), indent=2), encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IITHReference:
        """Read a reference written by :meth:`save`; InputError names the file and the problem."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: IITH reference file not found")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{p}: not a JSON file ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != REFERENCE_FORMAT:
            raise InputError(f"{p}: not a RadTyper IITH reference (format '{REFERENCE_FORMAT}' expected)")
        if int(data.get("version", -1)) > REFERENCE_VERSION:
            raise InputError(
                f"{p}: IITH reference version {data['version']} is newer than this RadTyper reads "
                f"({REFERENCE_VERSION})"
            )
        try:
            ref = cls(
                features=[str(f) for f in data["features"]],
                means=[float(v) for v in data["means"]],
                sds=[float(v) for v in data["sds"]],
                signs=[int(v) for v in data["signs"]],
                version=int(data["version"]),
                n_lesions=int(data.get("n_lesions", 0)),
                cluster_hi={str(k): float(v) for k, v in dict(data.get("cluster_hi", {})).items()},
                radtyper_version=str(data.get("radtyper_version", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{p}: malformed IITH reference ({exc!r})") from None
        if not len(ref.features) == len(ref.means) == len(ref.sds) == len(ref.signs):
            raise InputError(f"{p}: malformed IITH reference (lists of different lengths)")
        return ref


def hi_from_reference(row: Mapping[str, Any], reference: IITHReference) -> float:
    """HI of one lesion (a feature-table row: dict or pandas Series) relative to a reference cohort.

    For a lesion of the reference cohort this equals its cohort HI.

    Raises:
        InputError: features of the reference are missing from the row or not finite (all are listed).
    """
    missing = [f for f in reference.features if f not in row]
    if missing:
        raise InputError(f"IITH reference: the lesion lacks {len(missing)} feature(s): {', '.join(missing)}")
    values = []
    bad = []
    for f in reference.features:
        try:
            v = float(row[f])
        except (TypeError, ValueError):
            v = float("nan")
        if not np.isfinite(v):
            bad.append(f)
        values.append(v)
    if bad:
        raise InputError(f"IITH reference: non-finite value for feature(s): {', '.join(bad)}")
    hi = _hi(
        np.asarray(values)[None, :],
        np.asarray(reference.means),
        np.asarray(reference.sds),
        np.asarray(reference.signs, dtype=float),
    )
    return float(hi[0])


# --- cohort -----------------------------------------------------------------------------------------------
@dataclass
class IITHResult:
    """IITH of a cohort: per-lesion labels and HI, the fused network and what produced them."""

    table: Any  # pandas DataFrame: patient, lesion, cluster (1..k), iith (high/low), hi; input row order
    fused: np.ndarray  # SNF-fused similarity matrix (n × n), rows in the order of ``table``
    features: list[str]  # selected columns (MAD filter), used for clustering
    views: dict[str, list[str]]  # selected columns per SNF view
    hi_features: list[str]  # selected columns with sign ≠ 0, used for the HI
    reference: IITHReference
    cluster_hi: dict[int, float]  # mean HI per cluster
    high_cluster: int
    mads: dict[str, float]  # MAD of every candidate column
    excluded_features: dict[str, str]  # candidate column → why it was left out
    excluded_lesions: list[dict[str, str]]  # {"patient", "lesion", "reason"}
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def cluster_sizes(self) -> dict[int, int]:
        """Number of lesions per cluster."""
        labels = np.asarray(self.table["cluster"])
        return {int(c): int(np.sum(labels == c)) for c in sorted(set(labels.tolist()))}


def score_with_reference(table: pd.DataFrame, reference: IITHReference) -> pd.DataFrame:
    """HI of new lesions relative to a saved reference cohort, and their nearest IITH class.

    Returns columns ``patient``, ``lesion``, ``hi`` and ``iith``: "high" or "low" by the nearer of the
    reference clusters' mean HIs (midpoint rule; documented approximation of re-running SNF with the new
    lesion, which a single lesion cannot do). ``iith`` is empty when the reference has no cluster HIs.
    """
    import pandas as pd

    high, low = reference.cluster_hi.get("high"), reference.cluster_hi.get("low")
    rows = []
    for _, row in table.iterrows():
        hi = hi_from_reference(row, reference)
        label = ""
        if high is not None and low is not None:
            label = "high" if abs(hi - high) <= abs(hi - low) else "low"
        rows.append(
            {"patient": row.get("patient", ""), "lesion": row.get("lesion", ""), "hi": hi, "iith": label}
        )
    return pd.DataFrame(rows, columns=["patient", "lesion", "hi", "iith"])


def _require_radiomics(table: Any, source: str) -> dict[str, HeterogeneityFeature]:
    radiomics = [c for c in table.columns if str(c).startswith(("radiomics_", "iith_"))]
    if not radiomics:
        raise InputError(
            f"{source}: no radiomics_* columns; IITH needs the pyradiomics features: compute the features "
            "again with radiomics enabled (pyradiomics installed, radiomics not skipped)"
        )
    cand = heterogeneity_columns(table.columns)
    if not cand:
        raise InputError(
            f"{source}: none of the {len(radiomics)} radiomics columns is a heterogeneity-related feature "
            f"(e.g. {IITH_FEATURES[0].column}, {IITH_FEATURES[9].column})"
        )
    return cand


def iith_cohort(
    table: Any,
    *,
    features: Sequence[str] | None = None,
    K: int = 13,
    sigma: float = 0.4,
    t: int = 20,
    n_clusters: int = 2,
    mad_threshold: float | None = 1.0,
    source: str = "feature table",
) -> IITHResult:
    """High/low IITH and HI for every lesion of a cohort feature table (Su et al. 2023, SNFtool settings).

    Steps: heterogeneity columns (:func:`heterogeneity_columns`, or ``features`` as given) → lesions
    without any finite value left out → columns with a non-finite value left out → MAD > ``mad_threshold``
    (skipped when ``features`` is given or the threshold is None) → per view ``standard_normalization`` →
    ``dist2`` → ``affinity_matrix(K, sigma)`` → ``snf(K, t)`` → ``spectral_clustering(n_clusters)``. HI
    uses the selected features with a sign; z-scores with the cohort mean and SD (ddof = 1). The cluster
    with the highest mean HI is "high", the lowest "low" (others, when k > 2, "intermediate").
    If only one view has features, its affinity matrix is clustered without fusion (noted in ``notes``).

    Raises:
        InputError: no radiomics / heterogeneity columns, fewer than K + 1 lesions, no feature left.
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        table = pd.DataFrame(table)
    table = table.reset_index(drop=True)
    if K < 1 or t < 1 or n_clusters < 2 or not sigma > 0:
        raise InputError(
            f"IITH settings: need K >= 1, t >= 1, n_clusters >= 2, sigma > 0 (got {K}, {t}, "
            f"{n_clusters}, {sigma})"
        )
    if features is None:
        cand = _require_radiomics(table, source)
    else:
        missing = [f for f in features if f not in table.columns]
        if missing:
            raise InputError(f"{source}: missing feature column(s): {', '.join(missing)}")
        unknown = [f for f in features if heterogeneity_feature(f) is None]
        if unknown:
            raise InputError(
                f"{source}: not heterogeneity-related radiomics features (no sign known): {', '.join(unknown)}"
            )
        cand = {f: heterogeneity_feature(f) for f in dict.fromkeys(features)}  # type: ignore[misc]
    values = table[list(cand)].apply(pd.to_numeric, errors="coerce").astype(float)
    values = values.replace([np.inf, -np.inf], np.nan)

    blank = pd.Series([""] * len(table))
    patients = table["patient"].fillna("").astype(str) if "patient" in table.columns else blank
    lesions = table["lesion"].fillna("").astype(str) if "lesion" in table.columns else table.index.astype(str)
    lesions = pd.Series(list(lesions))
    excluded_lesions: list[dict[str, str]] = []
    keep_rows = values.notna().any(axis=1).to_numpy()
    for i in np.flatnonzero(~keep_rows):
        reason = "no finite heterogeneity feature (radiomics failed or skipped)"
        if "qc_error" in table.columns and str(table.at[i, "qc_error"]).strip() not in ("", "nan"):
            reason += f"; qc_error: {table.at[i, 'qc_error']}"
        excluded_lesions.append({"patient": patients[i], "lesion": lesions[i], "reason": reason})
    values = values[keep_rows].reset_index(drop=True)
    patients = patients[keep_rows].reset_index(drop=True)
    lesions = lesions[keep_rows].reset_index(drop=True)
    n = len(values)
    if n < K + 1:
        raise InputError(f"IITH needs at least {K + 1} lesions for K = {K}; got {n}")
    if n_clusters > n:
        raise InputError(f"IITH: {n_clusters} clusters asked for {n} lesions")

    excluded_features: dict[str, str] = {}
    finite_cols = []
    for c in cand:
        bad = int(values[c].isna().sum())
        if bad:
            excluded_features[c] = f"non-finite for {bad} of {n} lesions"
        else:
            finite_cols.append(c)
    mads = feature_mad(values, list(cand))
    if features is None and mad_threshold is not None:
        selected = mad_filter(values, finite_cols, mad_threshold)
        for c in finite_cols:
            if c not in selected:
                excluded_features[c] = f"MAD {mads[c]:.4g} <= {mad_threshold:g}"
    else:
        selected = finite_cols
    if not selected:
        n_bad = sum(r.startswith("non-finite") for r in excluded_features.values())
        raise InputError(
            f"{source}: no heterogeneity feature left for IITH ({len(cand)} candidates, {n_bad} with "
            f"non-finite values, the others with MAD <= {mad_threshold}; the MAD is in the feature's unit, "
            "so the filter drops features with a small numeric range)"
        )
    views = {v: [c for c in selected if cand[c].view == v] for v in VIEWS}
    notes: list[str] = []

    X = values[selected].to_numpy(dtype=float)
    affinities = []
    for v in VIEWS:
        if views[v]:
            Xv = standard_normalization(values[views[v]].to_numpy(dtype=float))
            affinities.append(affinity_matrix(dist2(Xv, Xv), K=K, sigma=sigma))
    if len(affinities) >= 2:
        fused = snf(affinities, K=K, t=t)
    else:
        only = next(v for v in VIEWS if views[v])
        notes.append(f"only the {only} view has selected features: its affinity matrix is clustered unfused")
        fused = affinities[0]
    labels = spectral_clustering(fused, n_clusters)

    hi_features = [c for c in selected if cand[c].sign != 0]
    signs = np.array([cand[c].sign for c in hi_features], dtype=float)
    H = X[:, [selected.index(c) for c in hi_features]]
    means = H.mean(axis=0)
    sds = H.std(axis=0, ddof=1)
    hi = _hi(H, means, sds, signs)
    if not hi_features:
        notes.append("no selected feature has a sign: HI is 0 for every lesion")

    cluster_hi = {int(c): float(hi[labels == c].mean()) for c in sorted(set(labels.tolist()))}
    ranked = sorted(cluster_hi, key=lambda c: (-cluster_hi[c], c))
    high, low = ranked[0], ranked[-1]
    names = {c: "intermediate" for c in ranked}
    names[high], names[low] = "high", "low"
    iith = [names[int(c)] for c in labels]

    out = pd.DataFrame(
        {"patient": patients, "lesion": lesions, "cluster": labels.astype(int), "iith": iith, "hi": hi}
    )
    reference = IITHReference(
        features=hi_features,
        means=[float(v) for v in means],
        sds=[float(v) for v in sds],
        signs=[int(s) for s in signs],
        n_lesions=n,
        cluster_hi={names[c]: cluster_hi[c] for c in (high, low)},
    )
    settings = {
        "K": K,
        "sigma": sigma,
        "t": t,
        "n_clusters": n_clusters,
        "mad_threshold": None if features is not None else mad_threshold,
        "spectral_clustering_type": 3,
        "method": "Su et al. 2023 (SNFtool 2.3.1 port)",
        "radtyper_version": __version__,
    }
    return IITHResult(
        table=out,
        fused=fused,
        features=list(selected),
        views=views,
        hi_features=hi_features,
        reference=reference,
        cluster_hi=cluster_hi,
        high_cluster=high,
        mads=mads,
        excluded_features=excluded_features,
        excluded_lesions=excluded_lesions,
        settings=settings,
        notes=notes,
    )


# --- report -----------------------------------------------------------------------------------------------
def patient_summary(result: IITHResult) -> dict[str, dict[str, Any]]:
    """Per patient: number of lesions, of high-IITH lesions, their fraction, mean and max HI."""
    out: dict[str, dict[str, Any]] = {}
    tab = result.table
    for pid, grp in tab.groupby("patient", sort=True):
        n_high = int((grp["iith"] == "high").sum())
        out[str(pid)] = {
            "n_lesions": len(grp),
            "n_high": n_high,
            "fraction_high": n_high / len(grp),
            "mean_hi": float(grp["hi"].mean()),
            "max_hi": float(grp["hi"].max()),
        }
    return out


def plot_fused(result: IITHResult, path: str | os.PathLike[str]) -> Path:
    """PNG heatmap of the fused similarity matrix, lesions ordered by cluster (high IITH first) and HI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: leaves the GUI backend alone
    from matplotlib.figure import Figure

    tab = result.table
    rank = {c: i for i, c in enumerate(sorted(result.cluster_hi, key=lambda c: -result.cluster_hi[c]))}
    order = sorted(range(len(tab)), key=lambda i: (rank[int(tab["cluster"][i])], -float(tab["hi"][i])))
    M = result.fused[np.ix_(order, order)].copy()
    np.fill_diagonal(M, np.nan)  # the ½ diagonal would flatten the colour scale
    off = M[np.isfinite(M)]
    vmax = float(np.percentile(off, 99)) if off.size else 1.0
    fig = Figure(figsize=(6.4, 6.9))
    FigureCanvasAgg(fig)
    ax_bar, ax = fig.subplots(2, 1, gridspec_kw={"height_ratios": [0.04, 1.0], "hspace": 0.03})
    colors = {"high": (0.84, 0.19, 0.15), "low": (0.19, 0.45, 0.71), "intermediate": (0.6, 0.6, 0.6)}
    ax_bar.imshow([[colors[tab["iith"][i]] for i in order]], aspect="auto", interpolation="nearest")
    ax_bar.set_axis_off()
    im = ax.imshow(M, cmap="viridis", vmin=0.0, vmax=vmax, interpolation="nearest", aspect="auto")
    sizes = [int(np.sum(tab["cluster"] == c)) for c in sorted(rank, key=rank.get)]
    edge = -0.5
    for s in sizes[:-1]:
        edge += s
        ax.axhline(edge, color="white", lw=1.0)
        ax.axvline(edge, color="white", lw=1.0)
    ax.set_xlabel("lesion (ordered by cluster, then HI)")
    ax.set_ylabel("lesion")
    ax_bar.set_title(
        f"SNF fused similarity — {len(tab)} lesions, "
        + ", ".join(
            f"cluster {c}: {result.cluster_sizes[c]} ({tab['iith'][tab['cluster'] == c].iloc[0]})"
            for c in sorted(rank, key=rank.get)
        ),
        fontsize=9,
    )
    fig.colorbar(im, ax=[ax_bar, ax], fraction=0.046, pad=0.02, label="similarity (diagonal hidden)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return Path(path)


def iith_report(
    features: Any,
    out_dir: str | os.PathLike[str],
    *,
    K: int = 13,
    sigma: float = 0.4,
    t: int = 20,
    n_clusters: int = 2,
    mad_threshold: float | None = 1.0,
) -> dict[str, Any]:
    """Run :func:`iith_cohort` on a feature CSV (or DataFrame) and write the ``radtyper iith`` outputs.

    Files in ``out_dir`` (each written atomically): ``iith.csv`` (patient, lesion, cluster, iith, hi),
    ``iith.json`` (settings, selected features, cluster sizes and HI, per-patient summary, exclusions),
    ``iith_reference.json`` (:class:`IITHReference`) and ``iith_fused.png``. Returns the JSON content
    with ``files`` (name → path) added.
    """
    import pandas as pd

    if isinstance(features, pd.DataFrame):
        table, source = features, "feature table"
    else:
        path = Path(features)
        if not path.is_file():
            raise InputError(f"{path}: feature table not found")
        try:
            table = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read as a CSV feature table ({exc})") from None
        source = str(path)
    result = iith_cohort(
        table, K=K, sigma=sigma, t=t, n_clusters=n_clusters, mad_threshold=mad_threshold, source=source
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": out / "iith.csv",
        "json": out / "iith.json",
        "reference": out / "iith_reference.json",
        "figure": out / "iith_fused.png",
    }
    with atomic_path(files["csv"]) as tmp:
        result.table.to_csv(tmp, index=False, float_format="%.10g")
    result.reference.save(files["reference"])
    plot_fused(result, files["figure"])
    cand = heterogeneity_columns(result.mads)
    summary: dict[str, Any] = {
        "source": source,
        "settings": result.settings,
        "n_lesions": len(result.table),
        "feature_matrix": _matrix_description(cand),
        "selected_features": [
            {"column": c, "view": cand[c].view, "sign": cand[c].sign, "mad": result.mads[c]}
            for c in result.features
        ],
        "views": result.views,
        "hi_features": result.hi_features,
        "excluded_features": result.excluded_features,
        "excluded_lesions": result.excluded_lesions,
        "cluster_sizes": result.cluster_sizes,
        "cluster_mean_hi": result.cluster_hi,
        "high_cluster": result.high_cluster,
        "eigengap_best_k": _safe_estimate(result.fused),
        "patients": patient_summary(result),
        "notes": [
            *result.notes,
            "IITH_FEATURES is a reconstruction: Su et al.'s Table S1 is not retrievable",
        ],
    }
    with atomic_path(files["json"]) as tmp:
        tmp.write_text(json.dumps(to_jsonable(summary), indent=2), encoding="utf-8")
    return {**summary, "files": {k: str(v) for k, v in files.items()}}


def _matrix_description(cand: Mapping[str, HeterogeneityFeature]) -> dict[str, Any]:
    """What the candidate matrix holds: source columns, phases, ROIs and counts (for iith.json)."""
    pr = [column_phase_roi(c) for c in cand]
    if all(x is None for x in pr):
        return {
            "source": "radiomics_* (the reference image, whole lesion)",
            "phases": None,
            "rois": ["whole"],
            "n_candidates": len(cand),
            "paper": "Su et al.: 42 features × 4 ROIs × pre/post-contrast phases = 1,968 candidates",
        }
    phases = list(dict.fromkeys(p for p, _ in pr if p))
    rois = list(dict.fromkeys(r for _, r in pr if r))
    return {
        "source": "iith_<phase>_<roi>_<class>_<feature>",
        "phases": phases,
        "rois": rois,
        "n_candidates": len(cand),
        "paper": "Su et al.: 42 features × 4 ROIs × pre/post-contrast phases = 1,968 candidates",
    }


def _safe_estimate(W: np.ndarray) -> int | None:
    try:
        return estimate_number_of_clusters(W)
    except ValueError:
        return None


__all__ = [
    "IITH_FEATURES",
    "HeterogeneityFeature",
    "IITHReference",
    "IITHResult",
    "affinity_matrix",
    "discretisation",
    "dist2",
    "dominate_set",
    "eigengaps",
    "estimate_number_of_clusters",
    "feature_mad",
    "heterogeneity_columns",
    "heterogeneity_feature",
    "hi_from_reference",
    "iith_cohort",
    "iith_report",
    "mad_filter",
    "patient_summary",
    "plot_fused",
    "snf",
    "snf_diffuse",
    "snf_normalize",
    "spectral_clustering",
    "standard_normalization",
]
