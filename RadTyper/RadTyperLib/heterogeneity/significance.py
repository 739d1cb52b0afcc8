"""Significance of the inter-lesion heterogeneity (Henry et al. 2022, "Data analysis") and CV QC flags.

What the paper tests (seed 002, Methods): "The mean CV coefficient of each radiomics feature was tested for
non-nullity using a one sample t-test on the M cohort. Mean CV coefficients of each radiomics feature were
compared between cohorts M-oligo and M-multi using the Wilcoxon rank sum exact test. A Bonferroni correction
for multiple testing was performed and accordingly a p-value below 0.0015 was deemed significant." So the unit
of observation is one patient's CV of one feature, and the paper has two tests per feature:

* **per feature, over patients** (the paper's test): one-sample t-test of the patients' CVs against
  ``mu0`` (the paper: 0), two-sided as R's ``t.test``; RadTyper adds the exact Wilcoxon signed-rank test of
  the same CVs against ``mu0`` (zeros dropped, R's ``wilcox.test(exact=TRUE)`` without ties) as the
  non-parametric companion;
* **per feature, between two patient groups** (the paper: oligo- vs multi-metastatic): exact Wilcoxon
  rank-sum (Mann–Whitney) test of the two groups' CVs, when a group column is given.

Where the paper is vague, decided here (and written into the outputs):

* **per patient** (not in the paper, asked for by RadTyper's users: "is *this* patient heterogeneous?"):
  the same two one-sample tests on that patient's CVs over the features, i.e. a test of the patient's mean
  CV (Henry's patient summary). Features are correlated, so this p-value is a screening figure, not a
  calibrated one; the robust, decorrelated feature set (``radtyper robustness``) makes it closer to valid.
* **Bonferroni families**: the per-feature tests form one family of size m = number of features tested
  (per test), the per-patient tests one family of size m = number of patients; ``p_bonferroni =
  min(1, m·p)``, significant when ``p_bonferroni < alpha`` (default 0.05; the paper's 0.0015 is ≈ 0.05/33).
* **Against 0** a CV is never negative, so any measurable variation, noise included, tends to significance;
  ``mu0`` (``--cv-null``) tests against a minimal relevant CV instead (e.g. the CV of repeated scans).
* **No variation**: CVs all equal to ``mu0`` (e.g. identical lesions: every CV 0) have no t statistic
  (sd 0) and no non-zero difference for Wilcoxon: p = 1 by convention, with a note.
* **Sign-mixed features** (values of both signs in the patient's lesions, e.g. skewness, Imc1, correlation)
  whose |mean| < sd: the CV ``|sd/mean|`` then measures how close the mean is to 0, not the dispersion
  (``[−1, 1.2, 0.1]`` has CV 11.0). Such CVs are flagged (:data:`SIGN_MIXED_FLAG`) and left out of the tests;
  they stay in ``cv.csv`` and in the paper's ``mean_cv``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError

SIGN_MIXED_FLAG = "sign_mixed_small_mean"
#: Default significance level of the Bonferroni-corrected p-values.
DEFAULT_ALPHA = 0.05
NO_VARIATION_NOTE = "no variation about mu0 (every value equals mu0): p = 1 by convention"
TEST_DESCRIPTION: dict[str, str] = {
    "t_test": "one-sample t-test of the CVs against mu0, two-sided (R t.test); the paper's test",
    "wilcoxon_signed_rank": "exact Wilcoxon signed-rank test of the CVs against mu0, two-sided, zeros "
    "dropped (R wilcox.test(exact=TRUE) when there are no ties)",
    "wilcoxon_rank_sum": "exact Wilcoxon rank-sum (Mann-Whitney) test between the two groups' CVs, "
    "two-sided; the paper's oligo- vs multi-metastatic comparison",
}


def sign_mixed_small_mean(x: Sequence[float] | np.ndarray) -> bool:
    """True when ``x`` holds values of both signs and |mean| < sample SD (the CV is then not a dispersion)."""
    v = np.asarray(x, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2 or not (v.min() < 0.0 < v.max()):
        return False
    return bool(abs(v.mean()) < v.std(ddof=1))


def sign_mixed_flags(raw: np.ndarray) -> np.ndarray:
    """Per column of ``raw`` (rows = lesions): :func:`sign_mixed_small_mean`."""
    raw = np.atleast_2d(np.asarray(raw, dtype=float))
    return np.array([sign_mixed_small_mean(raw[:, j]) for j in range(raw.shape[1])], dtype=bool)


def one_sample_tests(values: Sequence[float] | np.ndarray, mu0: float = 0.0) -> dict[str, Any]:
    """One-sample two-sided t-test and exact Wilcoxon signed-rank test of ``values`` against ``mu0``.

    Returns ``n``, ``mean``, ``sd``, ``t``, ``df``, ``p_t_test``, ``w`` (signed-rank statistic V of R =
    sum of the positive ranks), ``n_nonzero``, ``p_wilcoxon`` and ``note`` (None or why p = 1 / NaN).
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    out: dict[str, Any] = {
        "n": n,
        "mean": float(x.mean()) if n else None,
        "sd": float(x.std(ddof=1)) if n > 1 else None,
        "t": None,
        "df": n - 1 if n > 1 else None,
        "p_t_test": None,
        "w": None,
        "n_nonzero": 0,
        "p_wilcoxon": None,
        "note": None,
    }
    if n < 2:
        out["note"] = f"{n} value(s): a test needs ≥ 2"
        return out
    diff = x - float(mu0)
    nonzero = diff[diff != 0.0]
    out["n_nonzero"] = int(nonzero.size)
    if np.all(diff == diff[0]):
        if diff[0] == 0.0:
            out.update(p_t_test=1.0, p_wilcoxon=1.0, t=0.0, w=0.0, note=NO_VARIATION_NOTE)
            return out
        # constant but ≠ mu0: t is infinite (R errors "data are essentially constant")
        out.update(t=math.copysign(math.inf, diff[0]), p_t_test=0.0, note="constant values ≠ mu0: t infinite")
    else:
        res = stats.ttest_1samp(x, float(mu0))
        out.update(t=float(res.statistic), p_t_test=float(res.pvalue))
    if nonzero.size == 0:
        out.update(w=0.0, p_wilcoxon=1.0)
    else:
        ranks = stats.rankdata(np.abs(nonzero))
        out["w"] = float(ranks[nonzero > 0].sum())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["p_wilcoxon"] = float(stats.wilcoxon(nonzero, method="exact").pvalue)
    return out


def rank_sum_test(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Exact two-sided Wilcoxon rank-sum (Mann–Whitney) test: ``n_a``, ``n_b``, ``u`` (= R's W), ``p``."""
    from scipy import stats

    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    out: dict[str, Any] = {"n_a": int(x.size), "n_b": int(y.size), "u": None, "p": None}
    if x.size == 0 or y.size == 0:
        return out
    res = stats.mannwhitneyu(x, y, alternative="two-sided", method="exact")
    out.update(u=float(res.statistic), p=float(res.pvalue))
    return out


def bonferroni(p: Sequence[float | None]) -> list[float | None]:
    """Bonferroni-adjusted p-values ``min(1, m·p)``; m = number of non-None p-values (the family size)."""
    m = sum(v is not None and not math.isnan(v) for v in p)
    return [None if v is None or math.isnan(v) else min(1.0, m * float(v)) for v in p]


def _cv_matrix(records: Mapping[str, Mapping[str, Any]], features: Sequence[str]) -> dict[str, dict]:
    """{patient: {feature: CV}} with undefined and sign-mixed-flagged CVs left out."""
    out: dict[str, dict] = {}
    for pid, rec in records.items():
        flags = set(rec.get("cv_flags", {}))
        out[pid] = {
            f: float(v)
            for f, v in (rec.get("cv") or {}).items()
            if f in features and v is not None and f not in flags and math.isfinite(float(v))
        }
    return out


def heterogeneity_tests(
    records: Mapping[str, Mapping[str, Any]],
    features: Sequence[str],
    *,
    mu0: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    groups: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Henry et al.'s tests on the per-patient CVs of :func:`~.indexes.patient_heterogeneity` records.

    ``groups`` maps patient → group label (exactly two labels) for the rank-sum comparison. Returns
    ``{"settings", "features": [row per feature], "patients": [row per patient]}``; each row carries the
    statistics, raw p-values, Bonferroni-adjusted p-values and ``significant_*`` booleans (None when no test
    was possible). See the module docstring for what is tested and the decisions taken.
    """
    if not (0.0 < alpha < 1.0):
        raise InputError(f"alpha must be in (0, 1), got {alpha:g}")
    if not math.isfinite(mu0) or mu0 < 0:
        raise InputError(f"the CV null value must be a finite number ≥ 0, got {mu0:g}")
    cvs = _cv_matrix(records, features)
    labels: list[str] = []
    if groups is not None:
        labels = sorted({str(g) for p, g in groups.items() if p in cvs})
        if len(labels) != 2:
            raise InputError(
                f"the group comparison needs exactly 2 patient groups, got {len(labels)}"
                + (f" ({', '.join(labels)})" if labels else "")
            )
    feature_rows: list[dict[str, Any]] = []
    for f in features:
        vals = [cv[f] for cv in cvs.values() if f in cv]
        n_flagged = sum(f in set(rec.get("cv_flags", {})) for rec in records.values())
        t = one_sample_tests(vals, mu0)
        if t["n"] < 2 and n_flagged:
            t["note"] = f"{t['n']} CV(s) left after {n_flagged} flagged {SIGN_MIXED_FLAG}: no test"
        row = {
            "feature": f,
            "n_patients": t["n"],
            "n_flagged_sign_mixed": n_flagged,
            "mean_cv": t["mean"],
            "sd_cv": t["sd"],
            "t": t["t"],
            "df": t["df"],
            "p_t_test": t["p_t_test"],
            "wilcoxon_v": t["w"],
            "p_wilcoxon_signed_rank": t["p_wilcoxon"],
            "note": t["note"],
        }
        if labels:
            a = [cvs[p][f] for p, g in groups.items() if str(g) == labels[0] and p in cvs and f in cvs[p]]
            b = [cvs[p][f] for p, g in groups.items() if str(g) == labels[1] and p in cvs and f in cvs[p]]
            r = rank_sum_test(a, b)
            row.update(
                {
                    f"mean_cv_{labels[0]}": float(np.mean(a)) if a else None,
                    f"mean_cv_{labels[1]}": float(np.mean(b)) if b else None,
                    "rank_sum_w": r["u"],
                    "p_wilcoxon_rank_sum": r["p"],
                }
            )
        feature_rows.append(row)
    patient_rows: list[dict[str, Any]] = []
    for pid, cv in cvs.items():
        rec = records[pid]
        t = one_sample_tests(list(cv.values()), mu0)
        patient_rows.append(
            {
                "patient": pid,
                "n_lesions": rec.get("n_lesions"),
                "n_features": t["n"],
                "n_flagged_sign_mixed": len(rec.get("cv_flags", {})),
                "mean_cv": t["mean"],
                "t": t["t"],
                "df": t["df"],
                "p_t_test": t["p_t_test"],
                "wilcoxon_v": t["w"],
                "p_wilcoxon_signed_rank": t["p_wilcoxon"],
                "note": t["note"] if rec.get("n_lesions", 0) >= 2 else "1 lesion: no CV, no test",
            }
        )
    tests = ["p_t_test", "p_wilcoxon_signed_rank"] + (["p_wilcoxon_rank_sum"] if labels else [])
    for rows, keys in ((feature_rows, tests), (patient_rows, tests[:2])):
        for key in keys:
            adj = bonferroni([r.get(key) for r in rows])
            short = key[2:]
            for r, v in zip(rows, adj, strict=True):
                r[f"p_bonferroni_{short}"] = v
                r[f"significant_{short}"] = None if v is None else bool(v < alpha)
    return {
        "settings": {
            "mu0": mu0,
            "alpha": alpha,
            "correction": "Bonferroni: features form one family (m = number of features with a test), "
            "patients another (m = number of patients with a test); p_bonferroni = min(1, m p)",
            "tests": {k: v for k, v in TEST_DESCRIPTION.items() if labels or k != "wilcoxon_rank_sum"},
            "groups": labels or None,
            "excluded": f"undefined CVs and CVs flagged {SIGN_MIXED_FLAG} (values of both signs, |mean| < sd)",
        },
        "features": feature_rows,
        "patients": patient_rows,
    }


__all__ = [
    "DEFAULT_ALPHA",
    "SIGN_MIXED_FLAG",
    "bonferroni",
    "heterogeneity_tests",
    "one_sample_tests",
    "rank_sum_test",
    "sign_mixed_flags",
    "sign_mixed_small_mean",
]
