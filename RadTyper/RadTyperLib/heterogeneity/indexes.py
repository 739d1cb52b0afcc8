"""Inter-lesion heterogeneity of one patient (Henry et al. 2022): CV, cosine distances, MTD and ATH.

Definitions (``docs/methods.md`` §3):

* **CV** of a feature over a patient's lesions: ``|sd / mean|`` with the sample SD (``ddof=1``), computed
  on the raw (unscaled) values. A mean of 0 (relative to the feature's magnitude, tolerance
  :data:`ZERO_MEAN_RTOL`) makes the CV undefined: reported as null with a reason. A feature identical in all
  lesions (sd = 0, mean ≠ 0) has the well-defined CV 0; it is reported as 0 with a note. One lesion: no CV.
* **Scaling**: before the cosine distance every feature is min–max scaled to [0, 1] with the minimum and
  maximum of the *whole table given* (the cohort), so that every distance lies in [0, 1] ("maximal value
  1.0" in the paper). A feature constant over the table scales to 0 (it adds nothing to any distance).
* **Cosine distance** ``d_ij = 1 − x_i·x_j / (‖x_i‖ ‖x_j‖)``, diagonal exactly 0, rounding clipped to
  [0, 2]. A zero vector (a lesion at the cohort minimum of every feature) has no direction: by convention
  its distance to another zero vector is 0 and to any non-zero vector 1 (the maximum for non-negative data).
* **MTD** (maximal tumoral divergence) = the largest off-diagonal ``d_ij``.
* **ATH** (average tumoral heterogeneity), ``definition="nxn"`` (default, Henry's): the mean of the full
  n×n matrix *including* its zero diagonal, ``(1/n²) Σ_i Σ_j d_ij = ((n−1)/n) · mean pair distance``; this
  is the definition that reproduces the (k−1)/k pattern of Table 2. ``definition="pairs"``: the mean of the
  n(n−1) off-diagonal entries (the mean pair distance). For one lesion both functions return 0; the
  patient-level API reports null with a reason instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..sites import normalize_site
from .significance import SIGN_MIXED_FLAG, sign_mixed_flags

#: Columns that identify a lesion; never features.
ID_COLUMNS: tuple[str, ...] = ("lesion", "site", "patient", "modality", "label")
#: Prefixes of the feature columns of a RadTyper table (qc_* columns are never features).
FEATURE_PREFIXES: tuple[str, ...] = ("shape_", "burden_", "region_", "radiomics_")
#: Patient id used when the table has no ``patient`` column.
DEFAULT_PATIENT = "patient"
#: |mean| ≤ ZERO_MEAN_RTOL × max|x| counts as a zero mean (CV undefined).
ZERO_MEAN_RTOL = 1e-12
ONE_LESION_REASON = "1 lesion: heterogeneity needs ≥ 2 lesions"
ONE_LESION_CV_REASON = "1 lesion: CV needs ≥ 2 lesions"
ZERO_MEAN_REASON = "mean is 0: CV undefined"
ZERO_SD_NOTE = "identical in all lesions (sd = 0): CV = 0"
DEFINITIONS: tuple[str, ...] = ("nxn", "pairs")


class HeterogeneityWarning(UserWarning):
    """Input was adapted (features or lesions dropped); the message lists what and why."""


# --- table helpers ----------------------------------------------------------------------------------------
def feature_columns(table: pd.DataFrame, prefixes: Sequence[str] = FEATURE_PREFIXES) -> list[str]:
    """Numeric columns whose name starts with one of ``prefixes`` (table order; ``qc_*`` excluded)."""
    return [
        c
        for c in table.columns
        if isinstance(c, str)
        and c.startswith(tuple(prefixes))
        and not c.startswith("qc_")
        and pd.api.types.is_numeric_dtype(table[c])
        and not pd.api.types.is_bool_dtype(table[c])
    ]


#: Note of a patient (or table) whose lesions have identical feature values.
IDENTICAL_NOTE = "the lesions have identical feature values: MTD = ATH = 0 (no inter-lesion heterogeneity)"


def default_features(table: pd.DataFrame) -> list[str]:
    """All numeric ``shape_*``, ``burden_*``, ``region_*``, ``radiomics_*`` columns not constant in ``table``.

    A column is constant when it has at most one distinct non-NaN value over the whole table.
    """
    return [c for c in feature_columns(table) if table[c].nunique(dropna=True) > 1]


def check_features(table: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """``features`` as a list, after checking that each is a numeric column of ``table``.

    Raises:
        InputError: a feature is missing or not numeric (the message names them).
    """
    feats = list(dict.fromkeys(features))
    if not feats:
        raise InputError("no feature to analyse: the feature list is empty")
    missing = [f for f in feats if f not in table.columns]
    if missing:
        raise InputError(f"feature table has no column(s): {', '.join(missing)}")
    bad = [f for f in feats if not pd.api.types.is_numeric_dtype(table[f]) or f in ID_COLUMNS]
    if bad:
        raise InputError(f"feature column(s) not numeric: {', '.join(bad)}")
    return feats


def patient_ids(table: pd.DataFrame) -> pd.Series:
    """The patient id of each row as str (``DEFAULT_PATIENT`` when the table has no ``patient`` column)."""
    if "patient" not in table.columns:
        return pd.Series(DEFAULT_PATIENT, index=table.index, dtype=object)
    ids = table["patient"]
    if ids.isna().any():
        rows = [str(r) for r in table.index[ids.isna()]]
        raise InputError(f"column 'patient' is empty in row(s) {', '.join(rows)}")
    return ids.astype(str)


def _lesion_names(table: pd.DataFrame) -> pd.Series:
    if "lesion" not in table.columns:
        raise InputError("feature table has no 'lesion' column")
    names = table["lesion"]
    if names.isna().any():
        raise InputError(
            f"column 'lesion' is empty in row(s) {', '.join(map(str, table.index[names.isna()]))}"
        )
    return names.astype(str)


def lesion_sites(table: pd.DataFrame) -> pd.Series:
    """Canonical site of each row (``unspecified`` when the column is absent or the value empty)."""
    if "site" not in table.columns:
        return pd.Series("unspecified", index=table.index, dtype=object)
    names = _lesion_names(table)
    return pd.Series(
        [
            normalize_site(None if pd.isna(v) else str(v), context=f"lesion '{n}'")
            for v, n in zip(table["site"], names, strict=True)
        ],
        index=table.index,
        dtype=object,
    )


def missing_site_message(table: pd.DataFrame, sites: pd.Series) -> str | None:
    """One line naming the lesions without a site (``unspecified`` counts as missing), or None."""
    bad = sites == "unspecified"
    if not bad.any():
        return None
    pids = patient_ids(table)[bad]
    names = _lesion_names(table)[bad]
    listed = [f"{p}/{n}" if "patient" in table.columns else n for p, n in zip(pids, names, strict=True)]
    return f"site missing (or 'unspecified') for lesion(s): {', '.join(listed)}"


def clean_table(table: pd.DataFrame, features: Sequence[str]) -> tuple[pd.DataFrame, list[str], dict]:
    """Remove NaN from the analysed block: failed lesions first, then incomplete features.

    1. A lesion whose features are *all* NaN (a failed extraction) is dropped.
    2. A feature still NaN (or ±inf) in any remaining lesion of the table is dropped for every patient, so
       that all patients are compared on the same features.

    Each step warns (:class:`HeterogeneityWarning`) with the names concerned. Returns (table, features,
    ``{"dropped_lesions": [...], "dropped_features": [...], "warnings": [...]}``).

    Raises:
        InputError: nothing is left.
    """
    feats = check_features(table, features)
    values = table[feats].to_numpy(dtype=float, copy=True)
    values[~np.isfinite(values)] = np.nan
    info: dict[str, list[str]] = {"dropped_lesions": [], "dropped_features": [], "warnings": []}
    failed = np.isnan(values).all(axis=1)
    if failed.any():
        pids = patient_ids(table)[failed]
        names = _lesion_names(table)[failed]
        info["dropped_lesions"] = [f"{p}/{n}" for p, n in zip(pids, names, strict=True)]
        msg = f"dropped {int(failed.sum())} lesion(s) with no feature value: {', '.join(info['dropped_lesions'])}"
        info["warnings"].append(msg)
        warnings.warn(msg, HeterogeneityWarning, stacklevel=3)
    values = values[~failed]
    complete = ~np.isnan(values).any(axis=0)
    incomplete = [f for f, ok in zip(feats, complete, strict=True) if not ok]
    if incomplete:
        info["dropped_features"] = incomplete
        msg = f"dropped {len(incomplete)} feature(s) with NaN/inf values: {', '.join(incomplete)}"
        info["warnings"].append(msg)
        warnings.warn(msg, HeterogeneityWarning, stacklevel=3)
    kept_feats = [f for f, ok in zip(feats, complete, strict=True) if ok]
    if not (~failed).any() or not kept_feats:
        raise InputError("no complete feature left after dropping NaN values (see the warnings)")
    rest = table.loc[~failed, [c for c in table.columns if c not in feats]]
    block = pd.DataFrame(values[:, complete], index=rest.index, columns=kept_feats)
    return pd.concat([rest, block], axis=1), kept_feats, info


def minmax_scale(table: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """Features min–max scaled to [0, 1] with the min and max of ``table`` (a constant column → 0)."""
    x = table[list(features)].to_numpy(dtype=float)
    lo, hi = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
    varies = hi > lo
    span = np.where(varies, hi - lo, 1.0)
    scaled = np.where(varies, np.clip((x - lo) / span, 0.0, 1.0), np.where(np.isnan(x), np.nan, 0.0))
    return pd.DataFrame(scaled, index=table.index, columns=list(features))


# --- coefficient of variation -----------------------------------------------------------------------------
def cv_values(x: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """CV of each column of ``x`` (rows = lesions) and {column: reason/note} for the special cases."""
    x = np.asarray(x, dtype=float)
    n, m = x.shape
    if n < 2:
        return np.full(m, np.nan), dict.fromkeys(range(m), ONE_LESION_CV_REASON)
    mean = x.mean(axis=0)
    sd = x.std(axis=0, ddof=1)
    scale = np.abs(x).max(axis=0)
    notes: dict[int, str] = {}
    cv = np.full(m, np.nan)
    for j in range(m):
        if scale[j] == 0 or abs(mean[j]) <= ZERO_MEAN_RTOL * scale[j]:
            notes[j] = ZERO_MEAN_REASON
        elif np.all(x[:, j] == x[0, j]):
            cv[j] = 0.0
            notes[j] = ZERO_SD_NOTE
        else:
            cv[j] = abs(sd[j] / mean[j])
    return cv, notes


def coefficient_of_variation(table: pd.DataFrame, features: Sequence[str]) -> pd.Series:
    """Absolute CV ``|sd/mean|`` (sd with ddof=1) of each feature over the rows (lesions) of ``table``.

    NaN marks an undefined CV; ``result.attrs["reasons"]`` maps such features (and those with sd = 0,
    whose CV is 0) to the reason. Compute it on raw values, not on min–max scaled ones.
    """
    feats = check_features(table, features)
    cv, notes = cv_values(table[feats].to_numpy(dtype=float))
    out = pd.Series(cv, index=feats, name="cv", dtype=float)
    out.attrs["reasons"] = {feats[j]: r for j, r in notes.items()}
    return out


# --- distances and indexes ------------------------------------------------------------------------------
def cosine_distance_matrix(x: np.ndarray) -> np.ndarray:
    """n×n cosine distance between the rows of ``x``; zero rows handled as in the module docstring.

    Raises:
        InputError: ``x`` is not 2-D or holds NaN/inf.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise InputError(f"cosine distance needs a 2-D array (lesions × features), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("cosine distance: feature values contain NaN or inf (drop them first)")
    norms = np.linalg.norm(x, axis=1)
    zero = norms == 0
    u = np.divide(x, norms[:, None], out=np.zeros_like(x), where=~zero[:, None])
    d = 1.0 - u @ u.T
    d[zero, :] = 1.0
    d[:, zero] = 1.0
    d[np.ix_(zero, zero)] = 0.0
    np.clip(d, 0.0, 2.0, out=d)
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    return d


def _check_square(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, dtype=float)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] == 0:
        raise InputError(f"distance matrix must be square and non-empty, got shape {d.shape}")
    return d


def max_tumoral_divergence(d: np.ndarray) -> float:
    """MTD: the largest off-diagonal distance (0 for a single lesion)."""
    d = _check_square(d)
    n = d.shape[0]
    if n < 2:
        return 0.0
    return float(d[~np.eye(n, dtype=bool)].max())


def average_tumoral_heterogeneity(d: np.ndarray, definition: str = "nxn") -> float:
    """ATH: ``"nxn"`` = mean of the full n×n matrix incl. the diagonal (Henry); ``"pairs"`` = mean pair distance.

    0 for a single lesion.
    """
    d = _check_square(d)
    if definition not in DEFINITIONS:
        raise InputError(f"unknown ATH definition '{definition}'; use one of: {', '.join(DEFINITIONS)}")
    n = d.shape[0]
    if n < 2:
        return 0.0
    total = float(d.sum() - np.trace(d))
    return total / (n * n) if definition == "nxn" else total / (n * (n - 1))


# --- patient level --------------------------------------------------------------------------------------
def _num(v: Any) -> float | None:
    """Float, or None for NaN/None (JSON-friendly)."""
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _group_record(
    raw: np.ndarray, scaled: np.ndarray, names: list[str], features: list[str], definition: str
) -> dict[str, Any]:
    n = len(names)
    rec: dict[str, Any] = {"n_lesions": n, "lesions": names, "status": "ok", "reason": None}
    if n < 2:
        rec.update(
            status="undefined",
            reason=ONE_LESION_REASON,
            max_tumoral_divergence=None,
            average_tumoral_heterogeneity=None,
            average_pair_distance=None,
            mean_cv=None,
            n_cv_features=0,
            cv={},
            cv_notes={},
            cv_flags={},
        )
        return rec
    d = cosine_distance_matrix(scaled)
    if np.all(raw == raw[0]):
        rec["note"] = IDENTICAL_NOTE
    cv, notes = cv_values(raw)
    defined = cv[~np.isnan(cv)]
    mixed = sign_mixed_flags(raw)
    rec.update(
        max_tumoral_divergence=max_tumoral_divergence(d),
        average_tumoral_heterogeneity=average_tumoral_heterogeneity(d, definition),
        average_pair_distance=average_tumoral_heterogeneity(d, "pairs"),
        mean_cv=float(defined.mean()) if defined.size else None,
        n_cv_features=int(defined.size),
        cv={f: _num(v) for f, v in zip(features, cv, strict=True)},
        cv_notes={features[j]: r for j, r in notes.items()},
        cv_flags={
            f: SIGN_MIXED_FLAG for f, m, v in zip(features, mixed, cv, strict=True) if m and np.isfinite(v)
        },
    )
    if not defined.size:
        rec["reason"] = "CV undefined for every feature (zero means)"
    return rec


def prepare(
    table: pd.DataFrame, features: Sequence[str] | None = None, *, by: str | None = None, scale: bool = True
) -> dict[str, Any]:
    """Validate and clean ``table`` once for the indexes and the sampling simulation.

    Returns ``{"table", "features", "raw", "scaled", "patients", "lesions", "sites", "info"}`` where raw /
    scaled are float arrays aligned with the cleaned table rows (scaled = min–max over the whole table).

    Raises:
        InputError: bad ``by``, missing lesion/feature columns, duplicate lesion names within a patient,
            unknown sites, or (``by="site"``) lesions without a site.
    """
    if by not in (None, "site"):
        raise InputError(f"by must be None or 'site', got {by!r}")
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise InputError("feature table is empty")
    table = table.reset_index(drop=True)
    names = _lesion_names(table)
    pids = patient_ids(table)
    dup = pd.Series(list(zip(pids, names, strict=True))).duplicated(keep=False)
    if dup.any():
        listed = sorted({f"{p}/{n}" for p, n, b in zip(pids, names, dup, strict=True) if b})
        raise InputError(f"duplicate lesion name(s) within a patient: {', '.join(listed)}")
    sites = lesion_sites(table)
    if by == "site":
        if "site" not in table.columns:
            raise InputError("--by site needs a 'site' column in the feature table")
        msg = missing_site_message(table, sites)
        if msg:
            raise InputError(f"by-site analysis: {msg}")
    feats = default_features(table) if features is None else list(features)
    identical = False
    if not feats and features is None and feature_columns(table):
        # every feature is constant over the table: the lesions are identical, MTD = ATH = 0 (a note says so)
        feats, identical = list(feature_columns(table)), True
    if not feats:
        raise InputError("no usable feature column (shape_*, burden_*, region_*, radiomics_*, not constant)")
    table = table.assign(site=sites)
    clean, feats, info = clean_table(table, feats)
    if identical:
        msg = IDENTICAL_NOTE
        info["warnings"].append(msg)
        warnings.warn(msg, HeterogeneityWarning, stacklevel=3)
    raw = clean[feats].to_numpy(dtype=float)
    scaled = minmax_scale(clean, feats).to_numpy(dtype=float) if scale else raw
    return {
        "table": clean,
        "features": feats,
        "raw": raw,
        "scaled": scaled,
        "patients": patient_ids(clean).to_numpy(),
        "lesions": _lesion_names(clean).to_numpy(),
        "sites": clean["site"].to_numpy(),
        "info": info,
    }


def heterogeneity_from_prepared(
    prep: dict[str, Any], *, by: str | None = None, definition: str = "nxn"
) -> dict:
    """:func:`patient_heterogeneity` on the output of :func:`prepare`."""
    if definition not in DEFINITIONS:
        raise InputError(f"unknown ATH definition '{definition}'; use one of: {', '.join(DEFINITIONS)}")
    feats = prep["features"]
    out: dict[str, dict[str, Any]] = {}
    for pid in dict.fromkeys(prep["patients"]):
        rows = np.flatnonzero(prep["patients"] == pid)
        names = [str(n) for n in prep["lesions"][rows]]
        sites = prep["sites"][rows]
        rec = {"patient": str(pid)}
        rec.update(_group_record(prep["raw"][rows], prep["scaled"][rows], names, feats, definition))
        rec["sites"] = {str(s): int((sites == s).sum()) for s in dict.fromkeys(sites)}
        rec["ath_definition"] = definition
        rec["n_features"] = len(feats)
        if by == "site":
            rec["by_site"] = {}
            for s in dict.fromkeys(sites):
                sel = rows[sites == s]
                sub = _group_record(
                    prep["raw"][sel],
                    prep["scaled"][sel],
                    [str(n) for n in prep["lesions"][sel]],
                    feats,
                    definition,
                )
                rec["by_site"][str(s)] = {"patient": str(pid), "site": str(s), **sub}
        out[str(pid)] = rec
    return out


def patient_heterogeneity(
    table: pd.DataFrame,
    features: Sequence[str] | None = None,
    by: str | None = None,
    *,
    definition: str = "nxn",
    scale: bool = True,
) -> dict[str, dict[str, Any]]:
    """Heterogeneity of each patient of a per-lesion feature table → ``{patient_id: record}``.

    ``features``: columns used (default :func:`default_features`). Min–max scaling (``scale=True``) is fitted
    on the whole ``table``. ``by="site"`` adds ``record["by_site"][site]`` records computed on the lesions of
    each site; every lesion must then have a site (``unspecified`` counts as missing → :class:`InputError`
    naming the lesions). NaN handling: see :func:`clean_table` (warns and drops).

    Each record has the keys ``patient``, ``n_lesions``, ``lesions``, ``status`` ("ok" | "undefined"),
    ``reason`` (None or one line), ``max_tumoral_divergence``, ``average_tumoral_heterogeneity``,
    ``average_pair_distance`` (the "pairs" mean), ``mean_cv``, ``n_cv_features``, ``cv`` ({feature: CV or
    None}), ``cv_notes`` ({feature: reason}), ``cv_flags`` ({feature: ``sign_mixed_small_mean``} for CVs of
    features with values of both signs and |mean| < sd, see :mod:`.significance`), ``sites`` ({site: count}), ``ath_definition``, ``n_features``.
    With one lesion the indexes, ``mean_cv`` are None and ``reason`` is :data:`ONE_LESION_REASON`.
    """
    return heterogeneity_from_prepared(
        prepare(table, features, by=by, scale=scale), by=by, definition=definition
    )
