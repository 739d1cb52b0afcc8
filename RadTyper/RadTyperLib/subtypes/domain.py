"""Domain of a subtype model: is a new patient like the patients the model was built from?

A subtype model only knows the kind of lesion it was trained on. Every prediction is checked
(:func:`check_domain`) and gets ``in_domain`` (true/false), ``domain_score`` (higher = further out) and
``domain_note`` (why it is out, or what could not be checked):

* **modality**: the patient's ``modality`` must be one the training patients had (e.g. CT);
* **site**: the site of the lesion used must be one of the training sites; when the model knows its sites,
  a lesion whose site is ``unspecified`` is outside too (it cannot be confirmed: give the site — ``--sites``
  or the segment's site tag); a model trained without sites does not check them;
* **feature groups**: every feature group the model uses (``shape``, ``burden``, ``region``) must be present
  for the patient — a group whose values are all missing is never treated as present (no imputation);
* **feature pipeline**: when the table records the ``feature_pipeline`` that computed it, it must be the
  model's (other versions of the shape pipeline give other numbers);
* **size range**: each burden feature (volume, radii, axes) within the training range, widened by a factor
  ``RANGE_FACTOR`` (÷/× 1.25) on each side — a 500 cm³ sarcoma is not a 1 cm³ nodule, whatever its shape;
* **feature distribution**: ``domain_score`` = mean Euclidean distance, in the model's z-score space, to the
  ``K`` nearest training patients, divided by the median of the same distance over the training patients
  (each left out of its own neighbourhood): 1 = a typical training patient. The patient is out when the
  score exceeds ``threshold``, the ``quantile`` (default 0.99) of the score over held-out patients — by
  default the training patients left out one at a time; the default model's threshold is re-calibrated on
  whole LIDC patients held out of the build.

The z-scores of the training patients are stored in the bundle (``domain_reference.npy``); no torch is
needed to check the domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Neighbours of the k-NN distance.
K = 5
#: Default quantile of held-out scores used as the threshold.
QUANTILE = 0.99
#: Burden features may exceed the training range by this factor on either side.
RANGE_FACTOR = 1.25
DOMAIN_REFERENCE_FILE = "domain_reference.npy"
UNSPECIFIED_SITE = "unspecified"


def knn_distance(
    z: np.ndarray, reference: np.ndarray, k: int = K, *, leave_one_out: bool = False
) -> np.ndarray:
    """Mean Euclidean distance of every row of ``z`` to its ``k`` nearest rows of ``reference``.

    Missing values (NaN) of ``z`` are left out of the distance (scaled up by the fraction used).
    ``leave_one_out``: ``z`` is ``reference``; each row's zero distance to itself is skipped.
    """
    z = np.asarray(z, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    out = np.empty(len(z))
    k_eff = min(k, len(ref) - (1 if leave_one_out else 0))
    for i, row in enumerate(z):
        ok = np.isfinite(row)
        if not ok.any():
            out[i] = np.inf
            continue
        d2 = ((ref[:, ok] - row[ok]) ** 2).sum(axis=1) * (len(row) / ok.sum())
        if leave_one_out:
            d2[i] = np.inf
        part = np.partition(d2, k_eff - 1)[:k_eff]
        out[i] = float(np.sqrt(part).mean())
    return out


def widened_range(lo: float, hi: float, factor: float = RANGE_FACTOR) -> tuple[float, float]:
    """The accepted interval of a burden feature: ×/÷ ``factor`` for positive ranges (sizes), else the range
    widened by (factor − 1) × its width on each side."""
    if lo > 0:
        return lo / factor, hi * factor
    pad = (factor - 1.0) * (hi - lo)
    return lo - pad, hi + pad


def build_domain(
    z_train: np.ndarray,
    raw_train: np.ndarray,
    feature_names: Sequence[str],
    feature_groups: dict[str, list[str]],
    *,
    modalities: Sequence[str] | None,
    sites: Sequence[str] | None,
    feature_pipeline: str | None,
    quantile: float = QUANTILE,
    k: int = K,
) -> tuple[dict[str, Any], np.ndarray]:
    """The ``domain`` record of a bundle and the reference z-matrix (float32) to store beside it."""
    from ..shape import BURDEN_FEATURE_NAMES

    z_train = np.asarray(z_train, dtype=np.float64)
    loo = knn_distance(z_train, z_train, k, leave_one_out=True)
    scale = float(np.median(loo)) or 1.0
    scores = loo / scale
    ranges = {}
    idx = {f: i for i, f in enumerate(feature_names)}
    for f in BURDEN_FEATURE_NAMES:
        if f in idx:
            col = np.asarray(raw_train[:, idx[f]], dtype=np.float64)
            col = col[np.isfinite(col)]
            if len(col):
                ranges[f] = [float(col.min()), float(col.max())]
    record = {
        "modalities": sorted({str(m).upper() for m in modalities}) if modalities else None,
        "sites": sorted({str(s) for s in sites if str(s) != UNSPECIFIED_SITE}) or None if sites else None,
        "feature_groups": {g: len(v) for g, v in feature_groups.items()},
        "feature_pipeline": feature_pipeline,
        "k": k,
        "scale": scale,
        "quantile": quantile,
        "threshold": float(np.quantile(scores, quantile)),
        "calibrated_on": f"{len(scores)} training patients, each left out of its own neighbourhood",
        "held_out_scores": _score_summary(scores),
        "burden_ranges": ranges,
        "range_factor": RANGE_FACTOR,
        "reference_file": DOMAIN_REFERENCE_FILE,
    }
    return record, z_train.astype(np.float32)


def _score_summary(scores: np.ndarray) -> dict[str, float]:
    s = np.asarray(scores, dtype=np.float64)
    return {
        q: float(np.quantile(s, v)) for q, v in (("median", 0.5), ("q90", 0.9), ("q99", 0.99), ("max", 1.0))
    }


def recalibrate(domain: dict[str, Any], scores: np.ndarray, what: str, quantile: float | None = None) -> dict:
    """The domain record with its threshold re-set to a quantile of ``scores`` of truly held-out patients."""
    q = float(domain.get("quantile", QUANTILE) if quantile is None else quantile)
    return {
        **domain,
        "quantile": q,
        "threshold": float(np.quantile(np.asarray(scores, dtype=np.float64), q)),
        "calibrated_on": what,
        "held_out_scores": _score_summary(scores),
    }


def check_domain(
    domain: dict[str, Any] | None,
    reference: np.ndarray | None,
    z: np.ndarray,
    raw: np.ndarray,
    feature_names: Sequence[str],
    feature_groups: dict[str, list[str]],
    *,
    modality: Sequence[Any],
    site: Sequence[Any],
    pipeline: Sequence[Any],
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(in_domain, domain_score, note) for every patient (rows of ``z`` / ``raw``); see the module docstring."""
    n = len(z)
    if domain is None or reference is None:
        return (
            np.zeros(n, dtype=bool),
            np.full(n, np.nan),
            ["the model has no domain description (built before RadTyper checked domains): not checked"] * n,
        )
    scores = knn_distance(z, reference, int(domain.get("k", K))) / float(domain["scale"])
    ok = scores <= float(domain["threshold"])
    notes: list[list[str]] = [[] for _ in range(n)]
    for i in range(n):
        if not ok[i]:
            notes[i].append(
                f"features unlike the training patients (domain score {scores[i]:.2f} > {domain['threshold']:.2f})"
            )
    idx = {f: j for j, f in enumerate(feature_names)}
    mods = domain.get("modalities")
    sites = domain.get("sites")
    want_pipe = domain.get("feature_pipeline")
    factor = float(domain.get("range_factor", RANGE_FACTOR))
    for i in range(n):
        m = modality[i]
        if mods:
            if m is None or (isinstance(m, float) and np.isnan(m)) or str(m) in ("", "nan", "None"):
                notes[i].append("modality not given: not checked")
            elif str(m).upper() not in mods:
                ok[i] = False
                notes[i].append(f"modality {str(m).upper()} (model: {', '.join(mods)})")
        st = site[i]
        if sites:
            if st is None or str(st) in ("", "nan", "None", UNSPECIFIED_SITE):
                ok[i] = False
                notes[i].append(f"site not given (model: {', '.join(sites)}; give the lesion's site)")
            elif str(st) not in sites:
                ok[i] = False
                notes[i].append(f"site {st} (model: {', '.join(sites)})")
        pp = pipeline[i]
        if want_pipe and pp is not None and str(pp) not in ("", "nan", "None") and str(pp) != want_pipe:
            ok[i] = False
            notes[i].append(f"features computed by {pp} (model: {want_pipe})")
        for g, members in feature_groups.items():
            cols = [idx[f] for f in members if f in idx]
            if cols and not np.isfinite(raw[i, cols]).any():
                ok[i] = False
                notes[i].append(f"no {g} features")
        for f, (lo, hi) in (domain.get("burden_ranges") or {}).items():
            if f not in idx:
                continue
            v = raw[i, idx[f]]
            low, high = widened_range(lo, hi, factor)
            if np.isfinite(v) and not low <= v <= high:
                ok[i] = False
                notes[i].append(f"{f} = {v:.4g} outside the training range {lo:.4g}…{hi:.4g}")
                break
    return ok, scores, ["; ".join(x) for x in notes]
