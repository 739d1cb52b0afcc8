"""Calibrated subtype probabilities: temperature scaling fitted on out-of-fold (held-out) patients.

The gradient-boosted classifier is over-confident: trained to separate the clusters it was given, it says
p = 0.99 for patients it has never seen. :func:`calibrate` measures and corrects that:

1. **out-of-fold probabilities**: stratified ``folds``-fold cross-validation over the training patients —
   every patient's probabilities come from a classifier that did not see it;
2. **temperature scaling** (Guo et al. 2017): p_T ∝ p^(1/T), i.e. softmax(log p / T); T > 1 softens,
   the most probable subtype is unchanged. T minimises the negative log-likelihood of the out-of-fold
   probabilities (bounded search over log T);
3. the calibration reported: multi-class **Brier score** (mean over patients of Σ_c (p_c − y_c)², 0 = perfect,
   (k−1)/k = uniform guess), log-loss, expected calibration error (ECE, 10 equal-width confidence bins) and
   the **reliability curve** (per bin: mean confidence, accuracy, n) — before and after scaling. The
   after-values are *cross-fitted*: the patients are split in two halves, T is fitted on one half and scored
   on the other, and vice versa, so that they are not optimistic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-12
N_BINS = 10


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities p (rows sum to 1) → softmax(log p / T); T = 1 leaves them unchanged."""
    p = np.clip(np.asarray(proba, dtype=np.float64), EPS, 1.0)
    if temperature == 1.0:
        return p / p.sum(axis=1, keepdims=True)
    logits = np.log(p) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def _onehot(y: np.ndarray, classes: list[str]) -> np.ndarray:
    idx = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(y), len(classes)))
    out[np.arange(len(y)), [idx[v] for v in y]] = 1.0
    return out


def brier(proba: np.ndarray, y: np.ndarray, classes: list[str]) -> float:
    """Multi-class Brier score: mean over rows of Σ_c (p_c − 1[y = c])²."""
    return float(np.mean(np.sum((proba - _onehot(y, classes)) ** 2, axis=1)))


def log_loss(proba: np.ndarray, y: np.ndarray, classes: list[str]) -> float:
    """Mean negative log-probability of the true class."""
    p = np.clip(np.sum(proba * _onehot(y, classes), axis=1), EPS, 1.0)
    return float(-np.mean(np.log(p)))


def reliability(proba: np.ndarray, y: np.ndarray, classes: list[str], n_bins: int = N_BINS) -> dict[str, Any]:
    """Reliability curve of the top-class confidence (equal-width bins) and the ECE."""
    conf = proba.max(axis=1)
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    correct = (pred == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        m = which == b
        if not m.any():
            continue
        c, a = float(conf[m].mean()), float(correct[m].mean())
        ece += m.mean() * abs(c - a)
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "confidence": c,
                "accuracy": a,
                "n": int(m.sum()),
            }
        )
    return {"bins": bins, "ece": float(ece), "accuracy": float(correct.mean())}


def fit_temperature(proba: np.ndarray, y: np.ndarray, classes: list[str]) -> float:
    """T minimising the log-loss of softmax(log p / T), searched over T in [0.05, 100]."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda lt: log_loss(apply_temperature(proba, float(np.exp(lt))), y, classes),
        bounds=(np.log(0.05), np.log(100.0)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(res.x))


def _summary(proba: np.ndarray, y: np.ndarray, classes: list[str]) -> dict[str, Any]:
    rel = reliability(proba, y, classes)
    return {
        "brier": brier(proba, y, classes),
        "log_loss": log_loss(proba, y, classes),
        "ece": rel["ece"],
        "accuracy": rel["accuracy"],
        "reliability": rel["bins"],
    }


def out_of_fold_proba(
    x: np.ndarray, labels: np.ndarray, classes: list[str], settings: Any, folds: int, seed: int
) -> np.ndarray:
    """Probabilities of every patient from a classifier trained without it (stratified k-fold)."""
    from sklearn.model_selection import StratifiedKFold

    from .classifier import predict_proba, train_classifier

    y = np.asarray(labels).astype(str)
    proba = np.zeros((len(y), len(classes)))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for tr, te in cv.split(x, y):
        clf = train_classifier(x[tr], y[tr], settings)
        p = predict_proba(clf, x[te], threads=getattr(settings, "threads", 1))
        cols = [str(c) for c in clf.classes_]
        for j, c in enumerate(cols):
            proba[np.ix_(te, [classes.index(c)])] = p[:, [j]]
    return proba


def calibrate(
    x: np.ndarray, labels: np.ndarray, classes: list[str], settings: Any, *, folds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Out-of-fold temperature scaling → the ``calibration`` record of a bundle (see the module docstring)."""
    y = np.asarray(labels).astype(str)
    counts = [int((y == c).sum()) for c in classes]
    folds = min(folds, min(counts))
    if folds < 2:
        return {
            "method": "none",
            "temperature": 1.0,
            "skipped": f"a subtype has fewer than 2 patients {counts}",
        }
    proba = out_of_fold_proba(np.asarray(x, dtype=np.float64), y, classes, settings, folds, seed)
    t_all = fit_temperature(proba, y, classes)
    # cross-fitted evaluation of the scaled probabilities: T from one half, scored on the other
    half = np.random.default_rng(seed + 1).permutation(len(y)) < len(y) // 2
    scaled = np.empty_like(proba)
    for part in (half, ~half):
        t = fit_temperature(proba[~part], y[~part], classes)
        scaled[part] = apply_temperature(proba[part], t)
    return {
        "method": "temperature scaling on out-of-fold probabilities",
        "temperature": t_all,
        "folds": folds,
        "n": len(y),
        "uncalibrated": _summary(proba, y, classes),
        "calibrated": _summary(scaled, y, classes),
        "chance_brier": float((len(classes) - 1) / len(classes)),
    }
