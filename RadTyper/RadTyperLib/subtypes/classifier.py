"""Subtype classifier for new patients: gradient-boosted trees on the raw 313 features.

Wu et al. trained an XGBoost multiclass model (R xgboost 1.1.1.1) from the 313 raw features to the subtype,
bypassing the autoencoder and the clustering. RadTyper uses scikit-learn's
:class:`~sklearn.ensemble.HistGradientBoostingClassifier`, the same model family (histogram-based gradient
boosting of regression trees with a multinomial log-loss), because:

* no extra heavy dependency: scikit-learn is already needed, whereas the xgboost wheel pulls a 469 MB CUDA
  (nccl) package on Linux;
* native missing-value support (NaN goes to the learned side of each split), like xgboost — new patients with
  a failed regional feature are still predicted;
* multiclass probabilities (``predict_proba``) for the ``p_<subtype>`` columns;
* fast on CPU for cohorts of thousands of patients, deterministic with ``random_state``.

Settings (:class:`ClassifierSettings`): 100 boosting iterations, learning rate 0.1, ≤ 15 leaves per tree,
≥ 10 patients per leaf, 63 histogram bins per feature, L2 0, no early stopping (every iteration is kept, so
no internal random split) — fixed, documented values rather than a tuned grid (the paper's are in its
unavailable Supplementary Methods). Split finding dominates the cost (∝ features × bins × leaves): 63 bins
and 15 leaves make a fit ~4× faster than scikit-learn's defaults (255, 31), which matters for the 25 fits
of the purity cross-validation.
``threads`` caps the OpenMP threads, 1 by default: for cohorts of up to a few thousand patients the
threads gain little, and on a busy machine OpenMP's spinning threads can slow a fit down tens of times
(measured: 150 s instead of 2 s on a loaded 2-core machine); parallelise the cross-validation folds with
``n_jobs`` instead. ``None`` = scikit-learn's default (all cores).
Trees ignore monotone rescaling, so raw features need no standardisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np


@dataclass
class ClassifierSettings:
    """HistGradientBoostingClassifier parameters."""

    max_iter: int = 100
    learning_rate: float = 0.1
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 10
    max_bins: int = 63
    l2_regularization: float = 0.0
    seed: int = 0
    threads: int | None = 1  # OpenMP threads while fitting/predicting (None = scikit-learn's default)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_classifier(settings: ClassifierSettings | None = None):
    """An unfitted, seeded HistGradientBoostingClassifier."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    s = settings or ClassifierSettings()
    return HistGradientBoostingClassifier(
        max_iter=s.max_iter,
        learning_rate=s.learning_rate,
        max_leaf_nodes=s.max_leaf_nodes,
        min_samples_leaf=s.min_samples_leaf,
        max_bins=s.max_bins,
        l2_regularization=s.l2_regularization,
        early_stopping=False,
        random_state=s.seed,
    )


def train_classifier(x: np.ndarray, labels: Sequence[str], settings: ClassifierSettings | None = None):
    """Fit the classifier on raw features ``x`` (patients × features) and subtype names ``labels``."""
    s = settings or ClassifierSettings()
    clf = make_classifier(s)
    with _threads(s.threads):
        clf.fit(np.asarray(x, dtype=np.float64), np.asarray(labels).astype(str))
    return clf


def _threads(n: int | None):
    """Context limiting the OpenMP threads to ``n`` (no-op for None)."""
    import contextlib

    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="openmp")


def predict_labels(clf, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Most probable class of every row (under the thread cap)."""
    return np.asarray(clf.classes_)[np.argmax(predict_proba(clf, x, threads), axis=1)]


def predict_proba(clf, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """``clf.predict_proba`` under the thread cap."""
    with _threads(threads):
        return clf.predict_proba(np.asarray(x, dtype=np.float64))


def _fit_predict(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, s: ClassifierSettings) -> np.ndarray:
    return predict_labels(train_classifier(x, y, s), x_test, s.threads)


def purity_cv(
    x: np.ndarray,
    labels: Sequence[str],
    *,
    n_splits: int = 5,
    n_repeats: int = 10,
    groups: Sequence[str] | None = None,
    settings: ClassifierSettings | None = None,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Cluster purity by repeated stratified k-fold CV (Wu et al.: train on 4/5, predict the held-out 1/5).

    Per repeat every patient is predicted once (out of fold); purity (:func:`.validation.cluster_purity`,
    predicted vs discovered labels), per-cluster purity and accuracy are computed over all patients, and
    per value of ``groups`` (e.g. cancer type) when given. Reported: mean, min and max over the repeats.
    ``n_jobs`` > 1 fits the folds in joblib worker processes (one OpenMP thread each); the result does not
    depend on it.
    """
    from sklearn.model_selection import RepeatedStratifiedKFold

    from .validation import cluster_purity

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(labels).astype(str)
    counts = {c: int((y == c).sum()) for c in sorted(set(y.tolist()))}
    folds = min(n_splits, min(counts.values()))
    if folds < 2:
        return {"skipped": f"a subtype has fewer than 2 patients ({counts})"}
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=n_repeats, random_state=seed)
    preds = np.empty((n_repeats, len(y)), dtype=object)
    splits = list(cv.split(x, y))
    s = settings or ClassifierSettings()
    if n_jobs == 1:
        fold_preds = [_fit_predict(x[tr], y[tr], x[te], s) for tr, te in splits]
    else:
        from joblib import Parallel, delayed

        s1 = replace(s, threads=1)
        fold_preds = Parallel(n_jobs=n_jobs)(
            delayed(_fit_predict)(x[tr], y[tr], x[te], s1) for tr, te in splits
        )
    for i, ((_, te), pred) in enumerate(zip(splits, fold_preds, strict=True)):
        preds[i // folds, te] = pred
    group_arr = None if groups is None else np.asarray(groups).astype(str)
    reps: list[dict[str, Any]] = []
    for r in range(n_repeats):
        pred = preds[r].astype(str)
        rec = cluster_purity(pred, y)
        rec["accuracy"] = float(np.mean(pred == y))
        if group_arr is not None:
            rec["by_group"] = {
                g: cluster_purity(pred[group_arr == g], y[group_arr == g])["purity"]
                for g in sorted(set(group_arr.tolist()))
            }
        reps.append(rec)

    def stats(vals: list[float]) -> dict[str, float]:
        if not vals:
            return {"mean": float("nan"), "min": float("nan"), "max": float("nan")}
        return {"mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals))}

    names = sorted(counts)
    out: dict[str, Any] = {
        "n_splits": folds,
        "n_repeats": n_repeats,
        "purity": stats([r["purity"] for r in reps]),
        "accuracy": stats([r["accuracy"] for r in reps]),
        "per_cluster": {
            c: stats([r["per_cluster"][c] for r in reps if c in r["per_cluster"]]) for c in names
        },
    }
    if group_arr is not None:
        out["by_group"] = {g: stats([r["by_group"][g] for r in reps]) for g in reps[0]["by_group"]}
    return out
