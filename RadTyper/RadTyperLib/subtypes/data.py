"""Per-patient feature matrix for subtype discovery and prediction, and the z-score scaler.

Wu et al. studied one tumour per patient (for the immunotherapy cohort: "the lesion with the largest size").
A RadTyper feature table has one row per lesion, so lesions are aggregated per patient:

* ``"largest"`` (default): the row of the patient's largest lesion by ``burden_volume_mm3`` (ties → first row
  in table order) — the paper's choice, and the features stay those of a real tumour;
* ``"mean"``: the mean of each feature over the patient's lesions (a "typical lesion"; mixes shapes).

Only lesions with all features finite are used. In discovery (``allow_missing=False``) a patient without any
complete lesion is dropped; one :class:`SubtypeWarning` names the patients concerned. In prediction
(``allow_missing=True``) such a patient is kept with the aggregate of its incomplete lesions (largest by
volume, NaN volumes last; or the NaN-ignoring mean): the classifier handles missing values natively; a
patient with no finite feature at all is dropped. Either case is named in a warning.

Patient ids come from the ``patient`` column; without it every row is its own patient, named by ``lesion``
(or ``row<i>``). Rows keep the order in which patients first appear in the table.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError

AGGREGATIONS: tuple[str, ...] = ("largest", "mean")
VOLUME = "burden_volume_mm3"


class SubtypeWarning(UserWarning):
    """Something in the data or a saved model the user should know about (dropped patients, versions…)."""


def wu_feature_names() -> tuple[str, ...]:
    """The 313 feature names of Wu et al. (288 shape, 5 burden, 20 regional variation), in table order."""
    from ..features import WU_FEATURE_NAMES

    return tuple(WU_FEATURE_NAMES)


#: Feature groups a subtype model can use: 288 SPHARM shape, 5 burden, 20 regional-variation features.
FEATURE_GROUPS: tuple[str, ...] = ("shape", "burden", "region")


def group_feature_names(groups: Sequence[str] = FEATURE_GROUPS) -> list[str]:
    """The feature names of the given groups, in table order (see :data:`FEATURE_GROUPS`)."""
    from ..regions import REGION_FEATURE_NAMES
    from ..shape import BURDEN_FEATURE_NAMES, SHAPE_FEATURE_NAMES

    by_group = {"shape": SHAPE_FEATURE_NAMES, "burden": BURDEN_FEATURE_NAMES, "region": REGION_FEATURE_NAMES}
    unknown = [g for g in groups if g not in by_group]
    if unknown:
        raise InputError(
            f"unknown feature group(s) {', '.join(unknown)}: choose from {', '.join(FEATURE_GROUPS)}"
        )
    return [f for g in FEATURE_GROUPS if g in groups for f in by_group[g]]


def feature_groups_of(names: Sequence[str]) -> dict[str, list[str]]:
    """The features of ``names`` per group (groups without any member are left out)."""
    out: dict[str, list[str]] = {}
    for g in FEATURE_GROUPS:
        members = set(group_feature_names((g,)))
        found = [f for f in names if f in members]
        if found:
            out[g] = found
    return out


def _short_list(items: Sequence[str], n: int = 12) -> str:
    items = list(items)
    head = ", ".join(items[:n])
    return head + (f", … ({len(items) - n} more)" if len(items) > n else "")


def check_feature_columns(table: pd.DataFrame, names: Sequence[str], what: str = "the model") -> None:
    """InputError naming the missing columns if ``table`` lacks any of ``names``."""
    missing = [f for f in names if f not in table.columns]
    if missing:
        raise InputError(
            f"{what} was trained on other features: {len(missing)} of its {len(names)} features are not "
            f"columns of the table: {_short_list(missing)}"
        )


def patient_ids(table: pd.DataFrame) -> pd.Series:
    """The patient id of every row (``patient``, else ``lesion``, else ``row<i>``), as text."""
    if "patient" in table.columns:
        ids = table["patient"]
    elif "lesion" in table.columns:
        ids = table["lesion"]
    else:
        ids = pd.Series([f"row{i}" for i in range(len(table))], index=table.index)
    if ids.isna().any():
        raise InputError(f"{int(ids.isna().sum())} rows have no patient id")
    return ids.astype(str)


#: Columns that, where a table has them, name the input a row was computed from.
SOURCE_COLUMNS: tuple[str, ...] = ("source_image", "image")


def check_one_input_per_patient(table: pd.DataFrame) -> None:
    """InputError when one patient id covers rows of two different inputs.

    Evidence: a lesion name repeated under one patient id (two feature tables of different patients, both
    named e.g. ``CT_image``, concatenated) or, where the table records it, two source images.
    """
    if table.empty:
        return
    ids = patient_ids(table)
    for col in SOURCE_COLUMNS:
        if col in table.columns:
            n = pd.DataFrame({"p": ids, "s": table[col].astype(str)}).groupby("p", sort=False)["s"].nunique()
            bad = n[n > 1]
            if len(bad):
                p = str(bad.index[0])
                srcs = sorted(set(table.loc[ids == p, col].astype(str)))
                raise InputError(
                    f"patient id '{p}' covers {len(srcs)} different inputs ({', '.join(srcs[:3])}): give each "
                    "patient its own id (radtyper features --patient-id ID)"
                )
    if "lesion" in table.columns and "patient" in table.columns:
        dup = pd.DataFrame({"p": ids, "l": table["lesion"].astype(str)}).duplicated()
        if dup.any():
            i = int(np.flatnonzero(dup.to_numpy())[0])
            p, les = ids.iloc[i], table["lesion"].astype(str).iloc[i]
            raise InputError(
                f"patient id '{p}' has two rows for lesion '{les}': the table mixes different inputs under one "
                "patient id (e.g. every case named after a generic file name); give each patient its own id "
                "(radtyper features --patient-id ID) or remove the duplicate rows"
            )


@dataclass
class PatientMatrix:
    """One row per patient: ``x`` (patients × features), the ids, the table row used (or −1 = mean)."""

    patients: list[str]
    x: np.ndarray
    feature_names: list[str]
    source_rows: np.ndarray
    meta: pd.DataFrame  # index = patient; per-patient columns such as cancer_type, modality, n_lesions
    dropped: list[str]

    def subset(self, rows: np.ndarray) -> PatientMatrix:
        """The patients at positions ``rows``."""
        rows = np.asarray(rows)
        pts = [self.patients[i] for i in rows]
        return PatientMatrix(
            pts, self.x[rows], self.feature_names, self.source_rows[rows], self.meta.loc[pts], []
        )


def _numeric_block(table: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    block = table.loc[:, list(names)]
    try:
        return block.apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        bad = [
            c for c in names if pd.to_numeric(block[c], errors="coerce").isna().sum() > block[c].isna().sum()
        ]
        raise InputError(f"non-numeric values in feature columns: {_short_list(bad)}") from exc


def _per_patient_text(table: pd.DataFrame, ids: pd.Series, column: str) -> pd.Series:
    """First non-missing value of a text column per patient (warns if a patient has several)."""
    vals = table[column].where(table[column].notna(), None)
    groups = pd.DataFrame({"p": ids.to_numpy(), "v": vals.to_numpy()}).dropna().groupby("p", sort=False)["v"]
    several = groups.nunique()
    several = several[several > 1]
    if len(several):
        warnings.warn(
            f"column '{column}' differs between lesions of {len(several)} patients "
            f"({_short_list([str(s) for s in several.index])}); the first value is used",
            SubtypeWarning,
            stacklevel=3,
        )
    return groups.first().astype(str)


def patient_matrix(
    table: pd.DataFrame,
    feature_names: Sequence[str] | None = None,
    aggregation: str = "largest",
    *,
    allow_missing: bool = False,
    meta_columns: Sequence[str] = ("cancer_type", "modality"),
) -> PatientMatrix:
    """Aggregate a per-lesion feature table to one row per patient (see the module docstring)."""
    if aggregation not in AGGREGATIONS:
        raise InputError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    names = list(wu_feature_names() if feature_names is None else feature_names)
    check_feature_columns(table, names, "the subtype analysis")
    if aggregation == "largest" and VOLUME not in table.columns:
        raise InputError(f"aggregation 'largest' needs the column {VOLUME}")
    if table.empty:
        raise InputError("the feature table has no row")
    ids = patient_ids(table).to_numpy()
    values = _numeric_block(table, names)
    volume = pd.to_numeric(table[VOLUME], errors="coerce").to_numpy() if VOLUME in table.columns else None
    complete = np.isfinite(values).all(axis=1)

    order = list(dict.fromkeys(ids.tolist()))
    rows_of: dict[str, list[int]] = {}
    for i, p in enumerate(ids):
        rows_of.setdefault(p, []).append(i)

    patients: list[str] = []
    xs: list[np.ndarray] = []
    src: list[int] = []
    dropped: list[str] = []
    partial: list[str] = []
    incomplete_kept: list[str] = []
    for p in order:
        rows = np.asarray(rows_of[p])
        good = rows[complete[rows]]
        if len(good) < len(rows) and len(good):
            partial.append(p)
        use = good
        if not len(good):
            if not allow_missing or not np.isfinite(values[rows]).any():
                dropped.append(p)
                continue
            use = rows
            incomplete_kept.append(p)
        if aggregation == "largest":
            vol = np.where(np.isfinite(volume[use]), volume[use], -np.inf)
            pick = int(use[int(np.argmax(vol))])
            xs.append(values[pick])
            src.append(pick)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                xs.append(np.nanmean(values[use], axis=0))
            src.append(-1 if len(use) > 1 else int(use[0]))
        patients.append(p)

    if dropped:
        warnings.warn(
            f"{len(dropped)} patients dropped: no lesion with all {len(names)} features finite "
            f"({_short_list(dropped)})",
            SubtypeWarning,
            stacklevel=2,
        )
    if partial:
        warnings.warn(
            f"{len(partial)} patients lost lesions with missing features; their other lesions are used "
            f"({_short_list(partial)})",
            SubtypeWarning,
            stacklevel=2,
        )
    if incomplete_kept:
        warnings.warn(
            f"{len(incomplete_kept)} patients have only lesions with missing features; they are predicted "
            f"from the incomplete features ({_short_list(incomplete_kept)})",
            SubtypeWarning,
            stacklevel=2,
        )
    if not patients:
        raise InputError("no patient left: every lesion has missing features")
    x = np.vstack(xs)
    meta = pd.DataFrame(index=pd.Index(patients, name="patient"))
    meta["n_lesions"] = [len(rows_of[p]) for p in patients]
    for col in meta_columns:
        if col in table.columns:
            meta[col] = _per_patient_text(table, pd.Series(ids), col).reindex(patients)
    return PatientMatrix(patients, x, names, np.asarray(src, dtype=np.intp), meta, dropped)


@dataclass
class Scaler:
    """z-score with the discovery set's mean and sample SD (ddof = 1, like R ``scale``); SD 0 → 1."""

    mean: np.ndarray
    sd: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        sd = x.std(axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1])
        sd = np.where(np.isfinite(sd) & (sd > 1e-12 * np.maximum(np.abs(mean), 1.0)), sd, 1.0)
        return cls(mean, sd)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.sd
