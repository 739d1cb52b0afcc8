"""Per-subtype imaging profile of a discovered model, as Wu et al. 2021 summarise their subtypes (Fig. 3c).

Wu et al. found four groups of features that distinguish the subtypes — tumour volume (burden), regional
variation at the tumour–parenchyma interface (margin sharpness), shape irregularity and shape symmetry —
and summarised every subtype by them (Fig. 3b/c: subtype 1 small with a sharp margin, 2 intermediate with a
moderately well-defined margin, 3 large with a blurred margin, 4 large, moderately well-defined margin and
the most irregular shape). :func:`subtype_profile` computes the same summary for any labelled cohort:

1. one row per patient (:func:`.data.patient_matrix`, largest lesion by default, like discovery);
2. z-scores of each feature over all those patients;
3. per subtype, the mean z-score of each feature of :data:`PROFILE_GROUPS` and, per group, the mean of the
   signed member means (sign +1 or −1 so that **+ = larger / sharper / more irregular / more symmetric**).

Groups (feature columns of :mod:`RadTyperLib.features`, see ``Resources/Docs/features.md``):

* ``burden``: ``burden_volume_mm3``, ``burden_mean_radius_mm`` (+);
* ``margin_sharpness``: invasive margin vs the 5 mm and 10 mm parenchymal margins, TIM–PM5 and TIM–PM10:
  Bhattacharyya and χ² distances (+), correlation and intersection (−) — dissimilar histograms across the
  tumour–parenchyma interface = a sharp transition (the bundle's ``margin_sharpness`` uses TIM–PM5 only);
* ``irregularity``: SPHARM energies of degrees 8–15, ``shape_energy_l08`` … ``_l15`` (+; boundary detail:
  lobulation, spiculation);
* ``symmetry``: the moment-ellipsoid axes over the mean radius, ``shape_axis_norm_1`` (shortest, +) and
  ``shape_axis_norm_3`` (longest, −): + = closer to a sphere, less directional expansion.

The group values are unitless (mean z-scores within this cohort): they rank the subtypes of one cohort,
they are not comparable between cohorts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

_MARGIN = {
    f"region_{pair}_{measure}": sign
    for pair in ("tim_pm5", "tim_pm10")
    for measure, sign in (("bhattacharyya", 1.0), ("chisqr", 1.0), ("correl", -1.0), ("intersect", -1.0))
}

#: Fig. 3c feature groups: feature → sign (+1: a larger value = larger / sharper / more irregular / rounder).
PROFILE_GROUPS: dict[str, dict[str, float]] = {
    "burden": {"burden_volume_mm3": 1.0, "burden_mean_radius_mm": 1.0},
    "margin_sharpness": _MARGIN,
    "irregularity": {f"shape_energy_l{lv:02d}": 1.0 for lv in range(8, 16)},
    "symmetry": {"shape_axis_norm_1": 1.0, "shape_axis_norm_3": -1.0},
}


@dataclass
class SubtypeProfile:
    """Result of :func:`subtype_profile`.

    ``groups``: DataFrame subtypes × (``n`` + one column per group); ``features``: DataFrame subtypes × member
    features (mean z-scores, unsigned); ``groups_used``: the member features found per group.
    """

    groups: Any
    features: Any
    groups_used: dict[str, list[str]]

    def group_names(self) -> list[str]:
        """The group columns of :attr:`groups` (without ``n``)."""
        return [c for c in self.groups.columns if c != "n"]


def _natural(values: Any) -> list[str]:
    """Labels in natural order: numerically when they all parse as numbers, else S2 before S10."""
    import re

    vals = [str(v) for v in dict.fromkeys(values)]
    try:
        return sorted(vals, key=float)
    except ValueError:
        return sorted(vals, key=lambda v: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", v)])


def _label_series(labels: Any, patients: Sequence[str]) -> Any:
    """Labels as a Series indexed by patient from a DataFrame (patient, subtype), a CSV path, or a mapping."""
    import pandas as pd

    if isinstance(labels, str | os.PathLike):
        labels = pd.read_csv(labels, dtype={"patient": str})
    if isinstance(labels, pd.DataFrame):
        if not {"patient", "subtype"} <= set(labels.columns):
            raise InputError("labels table: needs the columns 'patient' and 'subtype'")
        return labels.assign(patient=labels["patient"].astype(str)).set_index("patient")["subtype"]
    if isinstance(labels, pd.Series):
        return labels.set_axis(labels.index.astype(str))
    if isinstance(labels, Mapping):
        return pd.Series({str(k): v for k, v in labels.items()})
    arr = np.asarray(labels)
    if len(arr) != len(patients):
        raise InputError(f"{len(arr)} labels for {len(patients)} patients")
    return pd.Series(arr, index=list(patients))


def subtype_profile(
    features: Any,
    labels: Any,
    *,
    groups: Mapping[str, Mapping[str, float]] = PROFILE_GROUPS,
    aggregation: str = "largest",
    subtypes: Sequence[str] | None = None,
) -> SubtypeProfile:
    """Per-subtype profile (module docstring) of a per-lesion (or per-patient) feature table.

    ``features``: DataFrame or CSV with ``patient`` and the feature columns; ``labels``: a DataFrame or CSV
    with ``patient, subtype`` (e.g. a discover folder's ``labels.csv``), a Series/mapping patient → subtype, or
    one label per patient in table order. Patients without a label are ignored. ``subtypes`` fixes the row
    order (default: natural order of the labels).

    Raises:
        InputError: none of the groups' features is in the table, or no patient has a label.
    """
    import pandas as pd

    from ..io import read_feature_table
    from .data import patient_matrix

    table = read_feature_table(features)
    present = {g: [f for f in members if f in table.columns] for g, members in groups.items()}
    names = list(dict.fromkeys(f for fs in present.values() for f in fs))
    if not names:
        raise InputError("none of the profile features is in the table (needs the 313 RadTyper features)")
    pm = patient_matrix(table, names, aggregation, allow_missing=True, meta_columns=())
    lab = _label_series(labels, pm.patients).reindex(pm.patients)
    keep = lab.notna().to_numpy()
    if not keep.any():
        raise InputError("no patient of the feature table has a subtype label")
    x = pm.x[keep]
    lab = lab[keep].astype(str)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(x, axis=0)
        sd = np.nanstd(x, axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1])
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, np.nan)
    z = pd.DataFrame((x - mean) / sd, columns=pm.feature_names, index=lab.index)
    if subtypes is None:
        subtypes = _natural(lab.unique())
    order = [str(s) for s in subtypes]
    by = z.groupby(lab.to_numpy())
    feats = by.mean().reindex(order)
    counts = lab.value_counts().reindex(order).fillna(0).astype(int)
    out = pd.DataFrame({"n": counts.to_numpy()}, index=pd.Index(order, name="subtype"))
    for g, members in present.items():
        if not members:
            out[g] = np.nan
            continue
        signed = pd.concat([feats[f] * float(groups[g][f]) for f in members], axis=1)
        out[g] = signed.mean(axis=1, skipna=True).to_numpy()
    feats.index.name = "subtype"
    return SubtypeProfile(out, feats, {g: list(v) for g, v in present.items()})


def profile_markdown(profile: SubtypeProfile, digits: int = 2) -> str:
    """The group table as GitHub Markdown (for documentation)."""
    cols = ["n", *profile.group_names()]
    lines = [
        "| subtype | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for s, row in profile.groups.iterrows():
        cells = [str(int(row["n"]))] + [
            "" if not np.isfinite(row[c]) else f"{row[c]:+.{digits}f}" for c in cols[1:]
        ]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
