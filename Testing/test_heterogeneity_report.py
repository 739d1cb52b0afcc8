"""heterogeneity_report: files, keys, feature choice, by-site, determinism, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.heterogeneity import ONE_LESION_REASON, STRATEGIES, heterogeneity_report
from RadTyperLib.heterogeneity.report import OUTPUT_FILES

RAD = [f"radiomics_firstorder_F{j}" for j in range(5)]


def _cohort(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = {
        "A": ["lung"] * 6 + ["liver"] * 3 + ["bone"] * 3,
        "B": ["lymph_node"] * 4 + ["lung"] * 2,
        "C": ["liver"],
    }
    rows = []
    for pid, sites in plan.items():
        centres = {s: rng.uniform(10, 100, len(RAD)) for s in dict.fromkeys(sites)}
        for i, s in enumerate(sites):
            v = centres[s] * rng.uniform(0.7, 1.3, len(RAD))
            row = {"lesion": f"{i:03d}", "site": s, **dict(zip(RAD, v, strict=True))}
            row.update(shape_c1=rng.uniform(0, 1), burden_volume_mm3=rng.uniform(100, 900), region_k=7.0)
            row.update(qc_voxels=int(rng.integers(10, 99)), qc_error="", patient=pid, modality="CT")
            rows.append(row)
    return pd.DataFrame(rows)


def test_report_files_and_keys(tmp_path):
    res = heterogeneity_report(_cohort(), tmp_path, n_draws=200, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUT_FILES)  # nothing temporary left
    text = (tmp_path / "heterogeneity.json").read_text(encoding="utf-8")
    assert "NaN" not in text
    data = json.loads(text)
    assert data["features"] == [*RAD, "shape_c1", "burden_volume_mm3"]  # region_k constant, qc_* excluded
    assert "no robustness information" in data["feature_selection"]
    for pid in ("A", "B"):
        rec = data["patients"][pid]
        assert 0 < rec["average_tumoral_heterogeneity"] < rec["max_tumoral_divergence"] <= 1
        assert rec["mean_cv"] > 0 and set(rec["sampling"]) == set(STRATEGIES)
        assert rec["recovery_curve"][-1]["k"] == min(15, rec["n_lesions"])
        assert set(rec["k75"]) == {"average_tumoral_heterogeneity", "max_tumoral_divergence", "both"}
    a = data["patients"]["A"]
    assert a["sites"] == {"lung": 6, "liver": 3, "bone": 3} and a["n_lesions"] == 12
    assert a["sampling"]["recist"]["mean_lesions_sampled"] == 4.0  # 2 lung + 2 liver, bone excluded
    c = data["patients"]["C"]
    assert c["status"] == "undefined" and c["reason"] == ONE_LESION_REASON
    assert c["max_tumoral_divergence"] is None and c["sampling"]["random2"]["status"] == "undefined"
    assert data["cohort"]["n_patients"] == 3 and data["cohort"]["n_lesions"] == 19
    assert data["cohort"]["sampling"]["random2"]["n_draws"] == 400  # A and B pooled
    assert res["patients"]["A"]["max_tumoral_divergence"] == a["max_tumoral_divergence"]
    assert set(res["files"]) == set(OUTPUT_FILES)

    het = pd.read_csv(tmp_path / "heterogeneity.csv", dtype={"patient": str})
    assert list(het["patient"]) == ["A", "B", "C"] and set(het["site"]) == {"all"}
    assert np.isnan(het.loc[2, "max_tumoral_divergence"]) and het.loc[2, "reason"] == ONE_LESION_REASON
    cv = pd.read_csv(tmp_path / "cv.csv")
    assert len(cv) == 3 * len(data["features"]) and list(cv.columns) == [
        "patient",
        "site",
        "feature",
        "cv",
        "note",
        "flag",
    ]
    samp = pd.read_csv(tmp_path / "sampling.csv")
    assert set(samp["patient"]) == {"A", "B", "C", "cohort"} and len(samp) == 4 * len(STRATEGIES)
    curves = pd.read_csv(tmp_path / "recovery_curves.csv", dtype={"patient": str})
    assert set(curves["patient"]) == {"A", "B", "cohort"}
    assert curves.loc[curves["patient"] == "B", "k"].max() == 6
    cohort = curves[curves["patient"] == "cohort"].set_index("k")
    assert list(cohort.index) == list(range(2, 13))  # up to the largest patient (A: 12 lesions)
    # k > 6: B contributes all its lesions (100 %), pooled with A's draws
    a7 = curves[(curves["patient"] == "A") & (curves["k"] == 7)].iloc[0]
    assert cohort.loc[7, "mtd_mean"] == pytest.approx((a7["mtd_mean"] + 100.0) / 2)
    assert cohort.loc[12, "ath_mean"] == pytest.approx(100.0)
    assert (tmp_path / "recovery_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_report_by_site_and_missing_sites(tmp_path):
    data = heterogeneity_report(_cohort(), tmp_path, by="site", n_draws=50)
    assert set(data["patients"]["A"]["by_site"]) == {"lung", "liver", "bone"}
    het = pd.read_csv(tmp_path / "heterogeneity.csv")
    assert len(het) == 3 + 3 + 2 + 1  # one "all" row per patient + one per patient × site
    bad = _cohort()
    bad.loc[bad.index[4], "site"] = "unspecified"
    with pytest.raises(InputError, match="A/004"):
        heterogeneity_report(bad, tmp_path / "x", by="site", n_draws=50)
    # without --by site the report still runs; per-site strategies are undefined for that patient
    data = heterogeneity_report(bad, tmp_path / "y", n_draws=50)
    assert data["patients"]["A"]["sampling"]["per_site2"]["status"] == "undefined"
    assert data["patients"]["A"]["sampling"]["random2"]["status"] == "ok"


def test_report_feature_choice(tmp_path):
    table = _cohort()
    data = heterogeneity_report(table, tmp_path / "l", features=RAD[:3], n_draws=20)
    assert data["features"] == RAD[:3] and data["feature_selection"].startswith("explicit list")
    ccc = pd.DataFrame({"feature": [*RAD, "shape_c1"], "robust": [True, True, False, True, False, False]})
    ccc.to_csv(tmp_path / "ccc.csv", index=False)
    data = heterogeneity_report(table, tmp_path / "r", robustness=tmp_path / "ccc.csv", n_draws=20)
    assert set(data["features"]) <= {RAD[0], RAD[1], RAD[3]} and data["features"]
    assert data["feature_selection"].startswith("robust")
    with pytest.raises(InputError, match="no column"):
        heterogeneity_report(table, tmp_path / "e", features=["radiomics_glcm_Missing"], n_draws=20)
    with pytest.raises(InputError, match="'robust' column"):
        heterogeneity_report(table, tmp_path / "e", robustness=ccc.drop(columns="robust"), n_draws=20)


def test_report_deterministic_and_independent_of_patient_order(tmp_path):
    table = _cohort()
    table.to_csv(tmp_path / "features.csv", index=False)
    a = heterogeneity_report(tmp_path / "features.csv", tmp_path / "a", n_draws=100, seed=3)
    b = heterogeneity_report(table.iloc[::-1], tmp_path / "b", n_draws=100, seed=3)
    c = heterogeneity_report(table, tmp_path / "c", n_draws=100, seed=4)
    assert a["patients"]["A"]["lesions"][0] == "000"  # ids read from CSV as text
    for pid in ("A", "B"):
        assert a["patients"][pid]["sampling"] == b["patients"][pid]["sampling"]
        assert a["patients"][pid]["max_tumoral_divergence"] == pytest.approx(
            b["patients"][pid]["max_tumoral_divergence"]
        )
    assert a["patients"]["A"]["sampling"] != c["patients"]["A"]["sampling"]
    ja = json.loads((tmp_path / "a" / "heterogeneity.json").read_text(encoding="utf-8"))
    again = heterogeneity_report(tmp_path / "features.csv", tmp_path / "a2", n_draws=100, seed=3)
    assert json.loads((tmp_path / "a2" / "heterogeneity.json").read_text(encoding="utf-8")) == ja
    assert again["cohort"] == a["cohort"]


def test_report_bad_input(tmp_path):
    with pytest.raises(InputError, match="not found"):
        heterogeneity_report(tmp_path / "missing.csv", tmp_path / "o")
    (tmp_path / "empty.csv").write_text("lesion,site\n", encoding="utf-8")
    with pytest.raises(InputError, match="no row"):
        heterogeneity_report(tmp_path / "empty.csv", tmp_path / "o")
    with pytest.raises(InputError, match="n_draws"):
        heterogeneity_report(_cohort(), tmp_path / "o", n_draws=0)
