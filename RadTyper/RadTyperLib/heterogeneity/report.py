"""One call for the whole heterogeneity analysis of a per-lesion feature table (CLI ``radtyper heterogeneity``).

Feature choice (``features``):

* a list: exactly these columns;
* ``"robust"`` (default) with ``robustness`` given (a :class:`~.robust.RobustResult`, a CCC table with a
  boolean ``robust`` column indexed by feature — as written by :func:`~.robust.ccc_table` — or its CSV):
  the robust features present in the table, then :func:`~.robust.decorrelate` (one per cluster, |r| ≥ 0.9);
  with a RobustResult its ``kept`` list is used as it is;
* ``"robust"`` without robustness information, or ``None``: every numeric ``shape_*``, ``burden_*``,
  ``region_*``, ``radiomics_*`` column (never ``qc_*``) that is not constant over the table.

Outputs in ``out_dir`` (each written atomically): ``heterogeneity.json`` (everything), ``heterogeneity.csv``
(one row per patient, plus one per patient × site with ``by="site"``), ``cv.csv`` (patient × site × feature
CV, long format, with the reason when undefined and ``flag`` = ``sign_mixed_small_mean`` for CVs of
sign-mixed features), ``sampling.csv`` (patient × strategy, plus the pooled "cohort" rows; the columns
``sampled``, ``index_computed_on`` and ``site_pooling`` say how each strategy is read), ``recovery_curves.csv``,
``recovery_curves.png``, and Henry et al.'s significance tests (:mod:`.significance`): ``tests_features.csv``
(one row per feature: t-test and exact Wilcoxon of the patients' CVs, optional rank-sum between two groups,
Bonferroni over features) and ``tests_patients.csv`` (one row per patient, Bonferroni over patients).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import InputError
from ..io import atomic_path, read_feature_table, to_jsonable, write_csv
from .indexes import cosine_distance_matrix, heterogeneity_from_prepared, prepare
from .robust import RobustResult, decorrelate
from .sampling import (
    DEFAULT_KS,
    RECOVERY_LEVEL,
    STRATEGIES,
    STRATEGY_LABELS,
    curve_table,
    k_for_recovery,
    plot_recovery_curves,
    pool_draws,
    recovery_curve_draws,
    saturate_curve_draws,
    simulate_sampling,
    summarize,
)
from .significance import DEFAULT_ALPHA, SIGN_MIXED_FLAG, heterogeneity_tests

OUTPUT_FILES: tuple[str, ...] = (
    "heterogeneity.json",
    "heterogeneity.csv",
    "cv.csv",
    "sampling.csv",
    "recovery_curves.csv",
    "recovery_curves.png",
    "tests_features.csv",
    "tests_patients.csv",
)
COHORT = "cohort"
_MAX_PLOTTED_PATIENTS = 10


def _robust_list(robustness: Any) -> tuple[list[str] | None, bool]:
    """(features flagged robust, already decorrelated?) from the accepted robustness forms."""
    if robustness is None:
        return None, False
    if isinstance(robustness, RobustResult):
        return list(robustness.kept), True
    if isinstance(robustness, (str, os.PathLike)):
        path = Path(robustness)
        if not path.is_file():
            raise InputError(f"robustness table not found: {path}")
        robustness = pd.read_csv(path)
    if isinstance(robustness, pd.DataFrame):
        t = robustness.set_index("feature") if "feature" in robustness.columns else robustness
        if "robust" not in t.columns:
            raise InputError("robustness table needs a 'robust' column (see ccc_table)")
        flags = t["robust"].astype(str).str.strip().str.lower().isin(("true", "1", "yes"))
        return [str(f) for f in t.index[flags]], False
    raise InputError(
        f"robustness must be a RobustResult, a CCC table or its CSV, got {type(robustness).__name__}"
    )


def select_features(
    table: pd.DataFrame, features: str | Sequence[str] | None = "robust", robustness: Any = None
) -> tuple[list[str] | None, str]:
    """(feature list or None = default columns, one-line description of the choice)."""
    if features is None:
        return (
            None,
            "all numeric feature columns (shape_*, burden_*, region_*, radiomics_*), constant ones dropped",
        )
    if isinstance(features, str):
        if features != "robust":
            raise InputError(f"features must be 'robust', None or a list of columns, got {features!r}")
        robust, done = _robust_list(robustness)
        if robust is None:
            return None, (
                "all numeric feature columns (shape_*, burden_*, region_*, radiomics_*), constant ones dropped "
                "(no robustness information given)"
            )
        present = [f for f in robust if f in table.columns]
        if not present:
            raise InputError("none of the robust features is a column of the feature table")
        if done:
            return present, f"robust and non-redundant features given ({len(present)})"
        kept, _ = decorrelate(table, present)
        return (
            kept,
            f"robust (CCC ≥ 0.8) then one per correlation cluster (|r| ≥ 0.9): {len(kept)} of {len(present)}",
        )
    return list(features), f"explicit list ({len(list(features))} features)"


def _index_row(rec: dict[str, Any], site: str) -> dict[str, Any]:
    keys = (
        "n_lesions",
        "status",
        "reason",
        "max_tumoral_divergence",
        "average_tumoral_heterogeneity",
        "average_pair_distance",
        "mean_cv",
        "n_cv_features",
    )
    row = {"patient": rec["patient"], "site": site, **{k: rec.get(k) for k in keys}}
    row["n_cv_flagged"] = len(rec.get("cv_flags", {}))
    t = rec.get("tests", {}) if site == "all" else {}
    for key in ("p_t_test", "p_bonferroni_t_test", "significant_t_test", "p_wilcoxon_signed_rank"):
        row[key] = t.get(key)
    for key in ("p_bonferroni_wilcoxon_signed_rank", "significant_wilcoxon_signed_rank"):
        row[key] = t.get(key)
    return row


def _patient_groups(table: pd.DataFrame, column: str) -> dict[str, str]:
    """{patient: group} from a table column; one group per patient (else InputError)."""
    from .indexes import patient_ids

    if column not in table.columns:
        raise InputError(f"group column '{column}' is not in the feature table")
    out: dict[str, str] = {}
    for pid, g in zip(patient_ids(table), table[column], strict=True):
        g = "" if pd.isna(g) else str(g).strip()
        if not g:
            raise InputError(f"patient {pid}: empty value in group column '{column}'")
        if out.setdefault(str(pid), g) != g:
            raise InputError(f"patient {pid}: two values in group column '{column}' ({out[str(pid)]}, {g})")
    return out


def _cv_rows(rec: dict[str, Any], site: str, features: list[str]) -> list[dict[str, Any]]:
    notes = rec.get("cv_notes", {})
    flags = rec.get("cv_flags", {})
    if not rec["cv"]:
        return [
            {
                "patient": rec["patient"],
                "site": site,
                "feature": f,
                "cv": None,
                "note": rec["reason"],
                "flag": None,
            }
            for f in features
        ]
    return [
        {
            "patient": rec["patient"],
            "site": site,
            "feature": f,
            "cv": rec["cv"].get(f),
            "note": notes.get(f),
            "flag": flags.get(f),
        }
        for f in features
    ]


#: What each sampling strategy picks, in words (sampling.csv column ``sampled``).
SAMPLED: dict[str, str] = {
    "random2": "2 random lesions of the patient (all when fewer)",
    "random3": "3 random lesions of the patient (all when fewer)",
    "per_site2": "at most 2 random lesions of every site",
    "per_site3": "at most 3 random lesions of every site",
    "recist": "at most 2 random lesions of every site, bone excluded",
}


def _index_computed_on(strategy: str, site_pooling: str) -> str:
    """sampling.csv column ``index_computed_on``: which lesions the subsample's index is computed on."""
    if strategy.startswith("random"):
        return "the sampled lesions together"
    if site_pooling == "within":
        return (
            "within each site on that site's sampled lesions, then averaged over the patient's sites (a site "
            "with one lesion counts 0): recovery stays < 100 % even when every lesion is sampled"
        )
    return "the union of the lesions sampled at every site"


def heterogeneity_report(
    features_csv_or_df: str | os.PathLike[str] | pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    by: str | None = None,
    features: str | Sequence[str] | None = "robust",
    n_draws: int = 500,
    seed: int = 0,
    robustness: Any = None,
    definition: str = "nxn",
    cap: bool = True,
    site_pooling: str = "within",
    recist_max_total: int | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    cv_null: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    groups: str | None = None,
) -> dict[str, Any]:
    """Indexes, CV, sampling simulation and recovery curves of every patient → the JSON content (+ ``files``).

    ``by="site"`` adds per-site indexes (every lesion needs a site). Henry et al.'s significance tests
    (:mod:`.significance`) run on the per-patient CVs: ``cv_null`` is the null value of the CV (paper: 0),
    ``alpha`` the level of the Bonferroni-adjusted p-values, ``groups`` a column of the table that gives each
    patient one of two group labels (e.g. oligo / multi) for the exact rank-sum comparison. Sampling uses one generator per patient
    seeded from (``seed``, patient id) and draws over the patient's lesions sorted by name, so a patient's
    sampling results depend neither on the other patients nor on the row order. See the
    module docstring for ``features``/``robustness`` and :mod:`.sampling` for the simulation options.

    Raises:
        InputError: unreadable table, unknown columns, missing sites with ``by="site"``, bad options.
    """
    if n_draws < 1:
        raise InputError(f"n_draws must be ≥ 1, got {n_draws}")
    table = read_feature_table(features_csv_or_df)
    feats, selection = select_features(table, features, robustness)
    prep = prepare(table, feats, by=by)
    records = heterogeneity_from_prepared(prep, by=by, definition=definition)
    group_of = _patient_groups(prep["table"], groups) if groups else None
    tests = heterogeneity_tests(records, prep["features"], mu0=cv_null, alpha=alpha, groups=group_of)
    by_patient = {r["patient"]: r for r in tests["patients"]}
    cv_warnings = []
    for pid, rec in records.items():
        t = by_patient.get(pid, {})
        rec["tests"] = {k: v for k, v in t.items() if k != "patient"}
        if rec.get("cv_flags"):
            cv_warnings.append(
                f"patient {pid}: the CV of {len(rec['cv_flags'])} feature(s) with values of both signs and "
                f"|mean| < sd is not a dispersion (flag {SIGN_MIXED_FLAG} in cv.csv; left out of the tests): "
                + ", ".join(sorted(rec["cv_flags"]))
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    sampling_draws, curve_draws = [], []
    max_n = max(r["n_lesions"] for r in records.values())
    cohort_ks = [int(k) for k in ks if int(k) <= max_n]
    for pid, rec in records.items():
        rows = np.flatnonzero(prep["patients"] == pid)
        rows = rows[np.argsort(prep["lesions"][rows].astype(str), kind="stable")]  # independent of row order
        d = cosine_distance_matrix(prep["scaled"][rows])
        rng = np.random.default_rng([int(seed), zlib.crc32(pid.encode("utf-8"))])
        sims = simulate_sampling(
            d,
            prep["sites"][rows],
            STRATEGIES,
            n_draws=n_draws,
            seed=rng,
            cap=cap,
            definition=definition,
            site_pooling=site_pooling,
            recist_max_total=recist_max_total,
        )
        curves = recovery_curve_draws(d, ks, n_draws=n_draws, seed=rng, cap=cap, definition=definition)
        sampling_draws.append(sims)
        curve_draws.append(saturate_curve_draws(curves, cohort_ks, rec["n_lesions"]))
        curve = curve_table(curves)
        rec["sampling"] = {s: r.summary() for s, r in sims.items()}
        rec["recovery_curve"] = curve.to_dict(orient="records")
        rec["k75"] = k_for_recovery(curve, RECOVERY_LEVEL)

    pooled = pool_draws(sampling_draws)
    pooled_curve = curve_table(pool_draws(curve_draws))
    cohort = {
        "n_patients": len(records),
        "n_lesions": int(sum(r["n_lesions"] for r in records.values())),
        "sampling": {s: summarize(s, r.ath, r.mtd, r.n_sampled, r.reason) for s, r in pooled.items()},
        "recovery_curve": pooled_curve.to_dict(orient="records"),
        "k75": k_for_recovery(pooled_curve, RECOVERY_LEVEL),
        "pooling": (
            "draws of all patients pooled (mean and 2.5–97.5 percentiles); a patient with fewer than k lesions "
            "contributes all its lesions (100 %)"
        ),
    }
    result: dict[str, Any] = {
        "radtyper_version": __version__,
        "method": "Henry et al. 2022 (Sci Rep, doi:10.1038/s41598-022-20931-z): CV, cosine-distance MTD/ATH, sampling simulation",
        "settings": {
            "by": by,
            "ath_definition": definition,
            "scaling": "min-max to [0, 1] fitted on the whole table",
            "n_draws": n_draws,
            "seed": seed,
            "cap_recovery_at_100": cap,
            "site_pooling": site_pooling,
            "recist_max_total": recist_max_total,
            "ks": [int(k) for k in ks],
            "recovery_level_percent": RECOVERY_LEVEL,
        },
        "feature_selection": selection,
        "features": prep["features"],
        "dropped_features": prep["info"]["dropped_features"],
        "dropped_lesions": prep["info"]["dropped_lesions"],
        "warnings": prep["info"]["warnings"],
        "cv_warnings": cv_warnings,
        "tests": tests,
        "patients": records,
        "cohort": cohort,
    }

    index_rows, cv_rows, sampling_rows, curve_rows = [], [], [], []
    for pid, rec in records.items():
        index_rows.append(_index_row(rec, "all"))
        cv_rows += _cv_rows(rec, "all", prep["features"])
        for site, srec in rec.get("by_site", {}).items():
            index_rows.append(_index_row(srec, site))
            cv_rows += _cv_rows(srec, site, prep["features"])
        for row in rec["recovery_curve"]:
            curve_rows.append({"patient": pid, **row})
    for pid, summaries in [*((p, r["sampling"]) for p, r in records.items()), (COHORT, cohort["sampling"])]:
        for s, summ in summaries.items():
            flat = {"patient": pid, "strategy": s, "status": summ["status"], "reason": summ["reason"]}
            flat["label"] = STRATEGY_LABELS.get(s, s)
            flat["sampled"] = SAMPLED.get(s, "")
            flat["index_computed_on"] = _index_computed_on(s, site_pooling)
            flat["site_pooling"] = site_pooling if s.startswith(("per_site", "recist")) else None
            flat["n_lesions"] = records[pid]["n_lesions"] if pid in records else cohort["n_lesions"]
            flat["mean_lesions_sampled"] = summ["mean_lesions_sampled"]
            for key, short in (("average_tumoral_heterogeneity", "ath"), ("max_tumoral_divergence", "mtd")):
                v = summ[key] or {"mean": None, "ci95": [None, None]}
                flat.update(
                    {f"{short}_mean": v["mean"], f"{short}_lo": v["ci95"][0], f"{short}_hi": v["ci95"][1]}
                )
            sampling_rows.append(flat)
    for row in cohort["recovery_curve"]:
        curve_rows.append({"patient": COHORT, **row})

    files = {name: out / name for name in OUTPUT_FILES}
    write_csv(pd.DataFrame(index_rows), files["heterogeneity.csv"])
    write_csv(
        pd.DataFrame(cv_rows, columns=["patient", "site", "feature", "cv", "note", "flag"]), files["cv.csv"]
    )
    write_csv(pd.DataFrame(tests["features"]), files["tests_features.csv"])
    write_csv(pd.DataFrame(tests["patients"]), files["tests_patients.csv"])
    write_csv(pd.DataFrame(sampling_rows), files["sampling.csv"])
    write_csv(
        pd.DataFrame(curve_rows, columns=["patient", *pooled_curve.columns]), files["recovery_curves.csv"]
    )
    plotted: dict[str, pd.DataFrame] = {}
    if len(records) <= _MAX_PLOTTED_PATIENTS:
        plotted.update(
            {pid: pd.DataFrame(r["recovery_curve"]) for pid, r in records.items() if r["recovery_curve"]}
        )
    if len(records) > 1 or not plotted:
        plotted[COHORT] = pooled_curve
    plot_recovery_curves(
        plotted, str(files["recovery_curves.png"]), title="Heterogeneity recovered by random sampling"
    )
    result = to_jsonable(result)
    with atomic_path(files["heterogeneity.json"]) as tmp:
        tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    result["files"] = {name: str(p) for name, p in files.items()}
    return result
