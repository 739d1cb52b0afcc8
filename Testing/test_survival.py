"""Survival: planted hazard ratio recovered by log-rank and Cox; C-index bootstrap; clinical-table checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.survival import (
    _pair_matrices,
    c_index_bootstrap,
    concordance,
    cox_model,
    cox_risk,
    join_clinical,
    kaplan_meier,
)

pytest.importorskip("lifelines")


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    """n = 400: exponential times, hazard 0.1/month (group A) vs HR = 2 (group B); uniform censoring; a noise
    covariate (age) and a 3-level stage with no effect."""
    rng = np.random.default_rng(20240611)
    n = 400
    group = np.where(rng.random(n) < 0.5, "B", "A")
    hazard = 0.1 * np.where(group == "B", 2.0, 1.0)
    t_event = rng.exponential(1 / hazard)
    t_censor = rng.uniform(0, 40, n)
    return pd.DataFrame(
        {
            "patient": [f"P{i:03d}" for i in range(n)],
            "time": np.minimum(t_event, t_censor),
            "event": (t_event <= t_censor).astype(int),
            "subtype": group,
            "age": rng.normal(62, 9, n),
            "stage": rng.choice(["I", "II", "III"], n),
        }
    )


def test_kaplan_meier_logrank_detects_planted_difference(planted):
    km = kaplan_meier(planted, "time", "event", "subtype")
    assert km["order"] == ["A", "B"] and km["n"] == 400
    assert km["logrank"]["p"] < 0.01 and km["logrank"]["df"] == 1
    a, b = km["groups"]["A"], km["groups"]["B"]
    assert a["n"] + b["n"] == 400 and a["events"] + b["events"] == km["events"]
    assert a["median"] > b["median"]  # group B dies faster
    # exponential medians: ln 2 / λ = 6.93 and 3.47 months (within sampling error)
    assert a["median"] == pytest.approx(np.log(2) / 0.1, rel=0.3)
    assert b["median"] == pytest.approx(np.log(2) / 0.2, rel=0.3)
    t = a["table"]
    assert list(t.columns) == ["time", "survival", "lower", "upper", "at_risk", "observed", "censored"]
    assert t["survival"].iloc[0] == 1.0 and np.all(np.diff(t["survival"]) <= 0)
    assert np.all((t["lower"] <= t["survival"] + 1e-12) & (t["survival"] <= t["upper"] + 1e-12))
    assert t["at_risk"].iloc[0] == a["n"] and int(t["observed"].sum()) == a["events"]


def test_kaplan_meier_multivariate_logrank_three_groups(planted):
    df = planted.copy()
    df["subtype"] = np.where(df["stage"] == "III", "C", df["subtype"])
    km = kaplan_meier(df, "time", "event", "subtype")
    assert km["order"] == ["A", "B", "C"]
    assert km["logrank"]["test"] == "multivariate log-rank" and km["logrank"]["df"] == 2
    assert {(p["a"], p["b"]) for p in km["pairwise"]} == {("A", "B"), ("A", "C"), ("B", "C")}


def test_cox_recovers_hazard_ratio_2(planted):
    cox = cox_model(planted, "time", "event", ["subtype", "age", "stage"], categorical=["subtype", "stage"])
    table = cox["table"]
    assert list(table.index) == ["age", "subtype=B", "stage=II", "stage=III"]
    assert cox["reference"] == {"subtype": "A", "stage": "I"}
    hr = table.loc["subtype=B"]
    assert hr["hr_lo"] < 2.0 < hr["hr_hi"]
    assert hr["p"] < 1e-4 and hr["hr"] == pytest.approx(np.exp(hr["coef"]))
    assert table.loc["age", "hr_lo"] < 1.0 < table.loc["age", "hr_hi"]  # no effect planted
    assert cox["likelihood_ratio"]["df"] == 4 and cox["n"] == 400
    # reference override: HR of A vs B ≈ 1/2
    flipped = cox_model(planted, "time", "event", ["subtype"], ["subtype"], reference={"subtype": "B"})
    assert flipped["table"].loc["subtype=A", "hr"] == pytest.approx(1 / hr["hr"], rel=0.05)


def test_cox_errors(planted):
    with pytest.raises(InputError, match=r"non-numeric.*declare it categorical"):
        cox_model(planted, "time", "event", ["stage"])
    with pytest.raises(InputError, match="reference level 'IV'"):
        cox_model(planted, "time", "event", ["stage"], ["stage"], reference={"stage": "IV"})
    df = planted.assign(const=1.0)
    with pytest.raises(InputError, match="const constant"):
        cox_model(df, "time", "event", ["const"])
    df = planted.copy()
    df.loc[3, "age"] = np.nan
    with pytest.raises(InputError, match="missing values in age"):
        cox_model(df, "time", "event", ["age"])


def test_c_index_bootstrap(planted):
    cox = cox_model(planted, "time", "event", ["subtype"], ["subtype"])
    c, lo, hi = c_index_bootstrap(planted, "time", "event", cox, n_boot=1000, seed=0)
    assert 0.0 <= lo <= c <= hi <= 1.0
    assert c == pytest.approx(cox["concordance"], abs=1e-9)  # same as lifelines' model concordance
    assert 0.55 < c < 0.75 and hi - lo < 0.12
    # same with a score column / array, and reproducible with the seed
    df = planted.assign(risk=cox_risk(cox, planted))
    assert c_index_bootstrap(df, "time", "event", "risk", n_boot=1000, seed=0) == (c, lo, hi)
    assert c_index_bootstrap(df, "time", "event", df["risk"].to_numpy(), n_boot=1000, seed=0) == (c, lo, hi)
    # a random score: C ≈ 0.5
    noise = np.random.default_rng(1).normal(size=len(planted))
    c0, lo0, hi0 = c_index_bootstrap(planted, "time", "event", noise, n_boot=500, seed=3)
    assert lo0 < 0.5 < hi0 and abs(c0 - 0.5) < 0.06


def test_bootstrap_pairs_match_lifelines_with_ties():
    rng = np.random.default_rng(5)
    for _ in range(5):
        n = 50
        t = rng.integers(1, 10, n).astype(float)
        e = rng.integers(0, 2, n)
        r = rng.integers(0, 4, n).astype(float)
        comparable, score = _pair_matrices(t, e, r)
        assert score.sum() / comparable.sum() == pytest.approx(concordance(t, e, r), abs=1e-12)
        idx = rng.integers(0, n, n)  # a bootstrap resample = pair weights w_i·w_j
        w = np.bincount(idx, minlength=n).astype(float)
        assert (w @ score @ w) / (w @ comparable @ w) == pytest.approx(
            concordance(t[idx], e[idx], r[idx]), abs=1e-12
        )


# --- clinical table ---------------------------------------------------------------------------------------
def _labels() -> pd.DataFrame:
    return pd.DataFrame({"patient": ["P1", "P2", "P3", "007"], "subtype": [1, 2, 1, 3]})


def test_join_clinical_ok(tmp_path):
    path = tmp_path / "clinical.csv"
    path.write_text(
        "patient,time,event,stage,subtype\n007,5.5,1,II,x\nP2,12,0,I,y\nP1,3,1,III,z\nP3,8.25,0,I,w\nP9,1,1,I,v\n"
    )
    joined = join_clinical(_labels(), path)
    assert list(joined["patient"]) == ["P1", "P2", "P3", "007"]  # labels' order, ids as text
    assert joined["time"].tolist() == [3.0, 12.0, 8.25, 5.5] and joined["event"].tolist() == [1, 0, 0, 1]
    assert joined["event"].dtype.kind == "i" and "subtype_clinical" in joined.columns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("patient,time,event\nP1,3,1\nP2,4,0\n", "no clinical data for 2 labelled patient(s): P3, 007"),
        ("patient,time,event\nP1,3,1\nP2,abc,0\nP3,1,1\n007,2,0\n", "non-numeric 'time' for P2='abc'"),
        (
            "patient,time,event\nP1,3,1\nP2,-4,0\nP3,1,1\n007,2,0\n",
            "'time' must be finite and ≥ 0; got P2=-4",
        ),
        (
            "patient,time,event\nP1,3,1\nP2,4,2\nP3,1,yes\n007,2,0\n",
            "'event' must be 0 (censored) or 1 (event); got P2='2', P3='yes'",
        ),
        ("patient,time,event\nP1,3,1\nP2,,0\nP3,1,1\n007,2,0\n", "missing 'time' for P2"),
        ("patient,time,event\nP1,3,1\nP1,4,0\nP3,1,1\n007,2,0\n", "listed twice: P1"),
        ("patient,months,event\nP1,3,1\n", "column(s) time not found"),
    ],
)
def test_join_clinical_errors(tmp_path, text, message):
    path = tmp_path / "clinical.csv"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        join_clinical(_labels(), path)
    assert message in str(info.value)


def test_join_clinical_drop_and_missing_file(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("patient,time,event\nP1,3,1\nP2,4,0\n")
    joined = join_clinical(_labels(), path, missing="drop")
    assert list(joined["patient"]) == ["P1", "P2"] and joined.attrs["dropped"] == ["P3", "007"]
    with pytest.raises(InputError, match="clinical table not found"):
        join_clinical(_labels(), tmp_path / "none.csv")


def test_kaplan_meier_rejects_bad_events():
    df = pd.DataFrame({"time": [1.0, 2.0, 3.0], "event": [1, 0, 5], "subtype": [1, 1, 2]})
    with pytest.raises(InputError, match="'event' must be 0"):
        kaplan_meier(df, "time", "event", "subtype")
