"""Henry et al.'s significance tests of the CVs, the sign-mixed CV flag and the sampling reading columns."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.heterogeneity import heterogeneity_report, patient_heterogeneity
from RadTyperLib.heterogeneity.significance import (
    NO_VARIATION_NOTE,
    SIGN_MIXED_FLAG,
    bonferroni,
    heterogeneity_tests,
    one_sample_tests,
    rank_sum_test,
    sign_mixed_small_mean,
)

RAD = [f"radiomics_firstorder_F{j}" for j in range(6)]


def test_one_sample_tests_hand_computed():
    # x = (0.1, 0.2, 0.3): mean 0.2, sd 0.1, t = 0.2 / (0.1/√3) = 2√3, df 2. Student t with 2 df has the closed
    # CDF F(t) = 1/2 + t / (2√(t² + 2)), so p = 2(1 − F(2√3)) = 1 − 2√3/√14.
    r = one_sample_tests([0.1, 0.2, 0.3], 0.0)
    assert r["t"] == pytest.approx(2 * math.sqrt(3), rel=1e-12)
    assert r["df"] == 2
    assert r["p_t_test"] == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), rel=1e-10)  # 0.07418
    # exact signed rank: 3 positive differences, V = 1 + 2 + 3 = 6; P(V = 6) = 1/2³, two-sided p = 2/8
    assert r["w"] == 6.0 and r["p_wilcoxon"] == pytest.approx(0.25, abs=1e-12)
    # against mu0 = 1.5: differences (−0.5, 0.5, 1.5) (exact in binary) → ranks 1.5, 1.5, 3 → V = 4.5
    r = one_sample_tests([1.0, 2.0, 3.0], 1.5)
    assert r["t"] == pytest.approx(0.5 / (1.0 / math.sqrt(3)), rel=1e-12)
    assert r["w"] == pytest.approx(4.5)
    # five positive values: exact two-sided p = 2/2⁵
    assert one_sample_tests([0.3, 0.1, 0.5, 0.2, 0.4])["p_wilcoxon"] == pytest.approx(2 / 32, abs=1e-12)


def test_no_variation_and_too_few():
    r = one_sample_tests([0.0, 0.0, 0.0, 0.0])
    assert r["p_t_test"] == 1.0 and r["p_wilcoxon"] == 1.0 and r["note"] == NO_VARIATION_NOTE
    assert one_sample_tests([0.4])["p_t_test"] is None


def test_rank_sum_and_bonferroni_hand_computed():
    # complete separation of 2 vs 3 values: U = 0, one of C(5,2) = 10 arrangements per tail → p = 2/10
    r = rank_sum_test([0.1, 0.2], [0.3, 0.4, 0.5])
    assert r["u"] == 0.0 and r["p"] == pytest.approx(0.2, abs=1e-12)
    assert bonferroni([0.01, 0.02, None, 0.5]) == [0.03, 0.06, None, 1.0]


def test_sign_mixed_flag():
    x = [-1.0, 1.2, 0.1]
    assert abs(np.std(x, ddof=1) / np.mean(x)) == pytest.approx(11.0, rel=0.01)  # the example
    assert sign_mixed_small_mean(x)
    assert not sign_mixed_small_mean([1.0, 1.2, 0.9])  # one sign
    assert not sign_mixed_small_mean([-0.1, 5.0, 6.0])  # both signs but mean > sd


def _planted(seed: int) -> pd.DataFrame:
    """Patient 'het': 5 lesions whose features differ by ±30 %; 'same': 5 identical lesions."""
    rng = np.random.default_rng(seed)
    rows = []
    base = rng.uniform(50, 100, len(RAD))
    for i in range(5):
        rows.append(
            {
                "patient": "het",
                "lesion": f"h{i}",
                **dict(zip(RAD, base * rng.uniform(0.7, 1.3, 6), strict=True)),
            }
        )
        rows.append({"patient": "same", "lesion": f"s{i}", **dict(zip(RAD, base, strict=True))})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_heterogeneous_patient_is_significant(tmp_path, seed):
    res = heterogeneity_report(_planted(seed), tmp_path, n_draws=20, seed=0)
    by = {r["patient"]: r for r in res["tests"]["patients"]}
    # het: 6 CVs around 0.17 (U(0.7, 1.3) has sd 0.173), each estimated from 5 lesions: t ≈ 5–10, df 5
    assert by["het"]["significant_t_test"] is True and by["het"]["p_bonferroni_t_test"] < 0.01
    # exact signed rank of 6 positive CVs: p = 2/64, × 2 patients = 0.0625: not significant at 0.05
    assert by["het"]["p_wilcoxon_signed_rank"] == pytest.approx(2 / 64)
    assert by["same"]["significant_t_test"] is False and by["same"]["p_t_test"] == 1.0
    assert by["same"]["mean_cv"] == 0.0
    rows = pd.read_csv(tmp_path / "tests_patients.csv")
    assert set(rows["patient"]) == {"het", "same"}
    table = pd.read_csv(tmp_path / "heterogeneity.csv").set_index("patient")
    assert table.loc["het", "significant_t_test"] and not table.loc["same", "significant_t_test"]
    feats = pd.read_csv(tmp_path / "tests_features.csv")
    assert list(feats["feature"]) == RAD and (feats["n_patients"] == 2).all()


def test_feature_tests_over_patients_and_groups():
    rng = np.random.default_rng(3)
    rows = []
    for p in range(12):
        spread = 0.3 if p < 6 else 0.1  # 10 lesions: each CV within about ±25 % of its spread
        for i in range(10):
            v = 100 * (1 + spread * rng.standard_normal(len(RAD)))
            rows.append({"patient": f"P{p}", "lesion": f"L{i}", **dict(zip(RAD, v, strict=True))})
    table = pd.DataFrame(rows)
    recs = patient_heterogeneity(table)
    groups = {f"P{p}": ("multi" if p < 6 else "oligo") for p in range(12)}
    out = heterogeneity_tests(recs, RAD, groups=groups)
    for row in out["features"]:
        assert row["n_patients"] == 12 and row["significant_t_test"] is True
        # every multi CV > every oligo CV: complete separation of 6 vs 6 → exact p = 2/C(12, 6) = 2/924
        assert row["p_wilcoxon_rank_sum"] == pytest.approx(2 / 924, abs=1e-12)
        assert row["p_bonferroni_wilcoxon_rank_sum"] == pytest.approx(6 * 2 / 924)
        assert row["mean_cv_multi"] > row["mean_cv_oligo"]
    with pytest.raises(InputError, match="exactly 2 patient groups"):
        heterogeneity_tests(recs, RAD, groups=dict.fromkeys(groups, "x"))


def test_sign_mixed_cv_flagged_in_outputs(tmp_path, capsys):
    t = _planted(0)
    t["radiomics_firstorder_Skewness"] = [-1.0, 0.5, 1.2, 0.4, 0.1, 0.4, -0.2, 0.4, 0.2, 0.4]
    res = heterogeneity_report(t, tmp_path, n_draws=10, seed=0)
    assert res["patients"]["het"]["cv_flags"] == {"radiomics_firstorder_Skewness": SIGN_MIXED_FLAG}
    assert res["patients"]["same"]["cv_flags"] == {}
    assert any("radiomics_firstorder_Skewness" in w for w in res["cv_warnings"])
    cv = pd.read_csv(tmp_path / "cv.csv")
    flagged = cv[cv["flag"] == SIGN_MIXED_FLAG]
    assert list(zip(flagged["patient"], flagged["feature"], strict=True)) == [
        ("het", "radiomics_firstorder_Skewness")
    ]
    pt = {r["patient"]: r for r in res["tests"]["patients"]}
    assert pt["het"]["n_features"] == 6 and pt["het"]["n_flagged_sign_mixed"] == 1  # left out of the test


def test_sampling_csv_says_how_strategies_read(tmp_path):
    t = _planted(0).assign(site=["lung", "liver"] * 5)
    heterogeneity_report(t, tmp_path, n_draws=10, seed=0)
    s = pd.read_csv(tmp_path / "sampling.csv")
    for col in ("label", "sampled", "index_computed_on", "site_pooling", "n_lesions"):
        assert col in s.columns
    per_site = s[(s["strategy"] == "per_site3") & (s["patient"] == "het")].iloc[0]
    assert "within each site" in per_site["index_computed_on"] and per_site["site_pooling"] == "within"
    assert per_site["n_lesions"] == 5
    rand = s[s["strategy"] == "random2"].iloc[0]
    assert rand["index_computed_on"] == "the sampled lesions together"
    data = json.loads((tmp_path / "heterogeneity.json").read_text())
    assert data["tests"]["settings"]["mu0"] == 0.0
