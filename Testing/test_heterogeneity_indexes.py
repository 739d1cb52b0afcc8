"""Heterogeneity indexes: CV, cosine distance, MTD/ATH (both definitions), patient/site records, bad input."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.heterogeneity import (
    ONE_LESION_REASON,
    HeterogeneityWarning,
    average_tumoral_heterogeneity,
    coefficient_of_variation,
    cosine_distance_matrix,
    default_features,
    max_tumoral_divergence,
    minmax_scale,
    patient_heterogeneity,
)
from RadTyperLib.heterogeneity.indexes import ZERO_MEAN_REASON, ZERO_SD_NOTE

FEATS = [f"radiomics_firstorder_F{j}" for j in range(8)]


def _table(values: np.ndarray, patient: str = "P1", sites=None) -> pd.DataFrame:
    t = pd.DataFrame(values, columns=FEATS[: values.shape[1]])
    t.insert(0, "lesion", [f"L{i}" for i in range(len(t))])
    t.insert(1, "site", sites if sites is not None else "lung")
    t["qc_error"] = ""
    t["patient"] = patient
    return t


# --------------------------------------------------------------------------------------------------------
# elementary definitions, hand-computed
# --------------------------------------------------------------------------------------------------------
def test_cosine_distance_hand_values_and_zero_vectors():
    x = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    d = cosine_distance_matrix(x)
    assert d[0, 1] == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-15)
    assert d[0, 2] == pytest.approx(1.0) and d[1, 2] == pytest.approx(1 - 1 / math.sqrt(2))
    assert d[3, 0] == d[0, 3] == 1.0  # zero vector vs non-zero: 1 (documented)
    assert d[3, 4] == 0.0  # two zero vectors: identical
    assert np.array_equal(np.diag(d), np.zeros(5)) and np.array_equal(d, d.T)
    with pytest.raises(InputError, match="NaN"):
        cosine_distance_matrix(np.array([[1.0, np.nan], [1.0, 2.0]]))


def test_mtd_and_both_ath_definitions():
    d = np.array([[0.0, 0.2, 0.6], [0.2, 0.0, 0.4], [0.6, 0.4, 0.0]])
    assert max_tumoral_divergence(d) == 0.6
    assert average_tumoral_heterogeneity(d) == pytest.approx(2 * 1.2 / 9)  # n×n mean incl. diagonal
    assert average_tumoral_heterogeneity(d, "pairs") == pytest.approx(1.2 / 3)  # mean pair distance
    # the two differ by exactly (n−1)/n
    assert average_tumoral_heterogeneity(d) == pytest.approx(
        2 / 3 * average_tumoral_heterogeneity(d, "pairs")
    )
    assert max_tumoral_divergence(np.zeros((1, 1))) == 0.0 == average_tumoral_heterogeneity(np.zeros((1, 1)))
    with pytest.raises(InputError, match="definition"):
        average_tumoral_heterogeneity(d, "mean")


def test_cv_hand_values_and_special_cases():
    t = pd.DataFrame(
        {
            "a": [1.0, 2.0, 3.0],  # sd 1, mean 2 → 0.5
            "b": [-1.0, -2.0, -3.0],  # absolute value → 0.5
            "c": [-1.0, 0.0, 1.0],  # mean 0 → undefined
            "d": [4.0, 4.0, 4.0],  # sd 0, mean 4 → CV 0 (noted)
            "e": [0.0, 0.0, 0.0],  # mean 0 → undefined
        }
    )
    cv = coefficient_of_variation(t, list(t.columns))
    assert cv["a"] == pytest.approx(0.5) and cv["b"] == pytest.approx(0.5)
    assert np.isnan(cv["c"]) and np.isnan(cv["e"]) and cv["d"] == 0.0
    assert cv.attrs["reasons"] == {"c": ZERO_MEAN_REASON, "d": ZERO_SD_NOTE, "e": ZERO_MEAN_REASON}
    one = coefficient_of_variation(t.iloc[:1], ["a"])
    assert np.isnan(one["a"]) and "1 lesion" in one.attrs["reasons"]["a"]


def test_minmax_scale_fitted_on_the_whole_table():
    t = pd.DataFrame({"x": [2.0, 4.0, 6.0], "k": [3.0, 3.0, 3.0]})
    s = minmax_scale(t, ["x", "k"])
    assert list(s["x"]) == [0.0, 0.5, 1.0] and list(s["k"]) == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------------------
# required properties
# --------------------------------------------------------------------------------------------------------
def test_identical_lesion_copies_have_zero_cv_and_zero_indexes():
    rng = np.random.default_rng(0)
    other = _table(rng.uniform(1, 100, (6, 8)), "ref")  # sets the cohort scaling
    lesion = rng.uniform(1, 100, 8)
    copies = _table(np.tile(lesion, (7, 1)), "copies")
    res = patient_heterogeneity(pd.concat([other, copies]), FEATS)
    rec = res["copies"]
    assert rec["status"] == "ok" and rec["n_lesions"] == 7
    assert max(rec["cv"].values()) < 1e-12 and rec["mean_cv"] < 1e-12
    assert rec["max_tumoral_divergence"] < 1e-12 and rec["average_tumoral_heterogeneity"] < 1e-12
    assert res["ref"]["max_tumoral_divergence"] > 0.01


def test_indexes_rise_with_the_size_of_a_controlled_perturbation():
    rng = np.random.default_rng(1)
    base = rng.uniform(50, 100, 8)
    directions = rng.normal(size=(6, 8))
    eps = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    tables = [_table(base + e * directions, f"P{i}") for i, e in enumerate(eps)]
    res = patient_heterogeneity(pd.concat(tables), FEATS)  # one cohort-wide scaling for all patients
    mtd = [res[f"P{i}"]["max_tumoral_divergence"] for i in range(len(eps))]
    ath = [res[f"P{i}"]["average_tumoral_heterogeneity"] for i in range(len(eps))]
    cv = [res[f"P{i}"]["mean_cv"] for i in range(len(eps))]
    assert mtd[0] < 1e-12 and ath[0] < 1e-12
    assert np.all(np.diff(mtd) > 0) and np.all(np.diff(ath) > 0) and np.all(np.diff(cv) > 0)
    assert 0 <= min(ath) and max(mtd) <= 1.0  # min-max scaling → distances in [0, 1]
    rec = res["P3"]
    assert rec["average_tumoral_heterogeneity"] == pytest.approx(5 / 6 * rec["average_pair_distance"])


def test_record_keys_and_json_ready():
    rng = np.random.default_rng(2)
    res = patient_heterogeneity(_table(rng.uniform(1, 9, (4, 3))), FEATS[:3])
    rec = res["P1"]
    for key in (
        "patient",
        "n_lesions",
        "lesions",
        "status",
        "reason",
        "max_tumoral_divergence",
        "average_tumoral_heterogeneity",
        "average_pair_distance",
        "mean_cv",
        "n_cv_features",
        "cv",
        "cv_notes",
        "sites",
        "ath_definition",
        "n_features",
    ):
        assert key in rec, key
    assert rec["sites"] == {"lung": 4} and rec["ath_definition"] == "nxn" and rec["n_features"] == 3
    json.dumps(res, allow_nan=False)
    pairs = patient_heterogeneity(_table(rng.uniform(1, 9, (4, 3))), FEATS[:3], definition="pairs")["P1"]
    assert pairs["average_tumoral_heterogeneity"] == pytest.approx(pairs["average_pair_distance"])


# --------------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------------
def test_one_lesion_patient_is_null_with_reason():
    rng = np.random.default_rng(3)
    t = pd.concat([_table(rng.uniform(1, 9, (3, 4)), "A"), _table(rng.uniform(1, 9, (1, 4)), "B")])
    res = patient_heterogeneity(t, FEATS[:4])
    b = res["B"]
    assert b["status"] == "undefined" and b["reason"] == ONE_LESION_REASON
    assert b["max_tumoral_divergence"] is None and b["average_tumoral_heterogeneity"] is None
    assert b["mean_cv"] is None and b["cv"] == {}
    assert res["A"]["status"] == "ok"
    json.dumps(res, allow_nan=False)  # null, not NaN


def test_zero_mean_and_zero_variance_features_in_a_patient():
    t = _table(np.array([[1.0, -1.0, 5.0], [2.0, 1.0, 5.0], [3.0, 0.0, 5.0]]))
    rec = patient_heterogeneity(t, FEATS[:3])["P1"]
    assert rec["cv"][FEATS[0]] == pytest.approx(0.5)
    assert rec["cv"][FEATS[1]] is None and rec["cv_notes"][FEATS[1]] == ZERO_MEAN_REASON
    assert rec["cv"][FEATS[2]] == 0.0 and rec["cv_notes"][FEATS[2]] == ZERO_SD_NOTE
    assert rec["mean_cv"] == pytest.approx(0.25) and rec["n_cv_features"] == 2


def test_nan_features_and_failed_lesions_are_dropped_with_a_warning():
    rng = np.random.default_rng(4)
    t = _table(rng.uniform(1, 9, (5, 4)))
    t.loc[1, FEATS[2]] = np.nan
    t.loc[4, FEATS[:4]] = np.nan  # failed extraction: every feature NaN
    with pytest.warns(HeterogeneityWarning) as caught:
        res = patient_heterogeneity(t, FEATS[:4])
    messages = " | ".join(str(w.message) for w in caught)
    assert "P1/L4" in messages and FEATS[2] in messages
    rec = res["P1"]
    assert rec["n_lesions"] == 4 and FEATS[2] not in rec["cv"] and rec["n_features"] == 3


def test_by_site_records_and_missing_sites():
    rng = np.random.default_rng(5)
    sites = ["lung", "lung", "liver", "liver", "liver", "bone"]
    t = _table(rng.uniform(1, 9, (6, 4)), sites=sites)
    res = patient_heterogeneity(t, FEATS[:4], by="site")["P1"]
    assert set(res["by_site"]) == {"lung", "liver", "bone"}
    assert res["by_site"]["liver"]["n_lesions"] == 3 and res["by_site"]["liver"]["status"] == "ok"
    assert res["by_site"]["bone"]["reason"] == ONE_LESION_REASON
    assert res["by_site"]["lung"]["max_tumoral_divergence"] <= res["max_tumoral_divergence"]
    bad = t.copy()
    bad.loc[[1, 4], "site"] = ["unspecified", np.nan]
    with pytest.raises(InputError, match=r"P1/L1, P1/L4"):
        patient_heterogeneity(bad, FEATS[:4], by="site")
    with pytest.raises(InputError, match="'site' column"):
        patient_heterogeneity(t.drop(columns="site"), FEATS[:4], by="site")
    # without by="site" missing sites are fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        patient_heterogeneity(bad, FEATS[:4])


def test_other_bad_input():
    rng = np.random.default_rng(6)
    t = _table(rng.uniform(1, 9, (3, 2)))
    with pytest.raises(InputError, match="duplicate lesion"):
        patient_heterogeneity(pd.concat([t, t.iloc[:1]]), FEATS[:2])
    with pytest.raises(InputError, match="no column"):
        patient_heterogeneity(t, ["radiomics_glcm_Nope"])
    with pytest.raises(InputError, match="unknown site"):
        patient_heterogeneity(t.assign(site="moon"), FEATS[:2])
    with pytest.raises(InputError, match="by must be"):
        patient_heterogeneity(t, FEATS[:2], by="organ")
    with pytest.raises(InputError, match="'lesion'"):
        patient_heterogeneity(t.drop(columns="lesion"), FEATS[:2])


def test_default_features_exclude_qc_ids_and_constant_columns():
    t = _table(np.array([[1.0, 2.0], [3.0, 2.0]]))
    t["qc_voxels"] = [5, 6]
    t["burden_volume_mm3"] = [10.0, 20.0]
    assert default_features(t) == [FEATS[0], "burden_volume_mm3"]
    assert "patient" in patient_heterogeneity(t)["P1"]  # features=None → default_features
