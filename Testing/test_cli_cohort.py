"""``radtyper cohort extract / discover / predict / report`` end to end through the installed entry point."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_cli import run

from RadTyperLib.io import write_patient
from RadTyperLib.phantoms import LesionSpec, make_patient
from RadTyperLib.subtypes.synthetic import planted_cohort


def test_cohort_extract_writes_every_patient_and_resumes(tmp_path):
    lesions = [
        LesionSpec("lung_1", "lung", "sphere", 6.0, (-60.0, 10.0, 20.0)),
        LesionSpec("lung_2", "lung", "ellipsoid", (5.0, 7.0, 6.0), (60.0, 10.0, 10.0)),
    ]
    rows = ["patient,image,lesions,parenchyma,sites,modality,cancer_type"]
    for i in range(2):
        files = write_patient(make_patient(i, lesions=lesions, patient_id=f"P{i}"), tmp_path / f"P{i}")
        rows.append(f"P{i},P{i}/image.nrrd,P{i}/lesions.seg.nrrd,P{i}/parenchyma.nrrd,P{i}/sites.csv,CT,lung")
        assert files["image"].is_file()
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    res = run("cohort", "extract", str(tmp_path / "manifest.csv"), "--out", str(out), "--no-radiomics")
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(out / "features.csv")
    assert list(table["patient"]) == ["P0", "P0", "P1", "P1"] and set(table["cancer_type"]) == {"lung"}
    assert "2 patient(s) computed" in res.stdout
    again = run("cohort", "extract", str(tmp_path / "manifest.csv"), "--out", str(out), "--no-radiomics")
    assert again.returncode == 0 and "0 patient(s) computed, 2 already done" in again.stdout
    pd.testing.assert_frame_equal(pd.read_csv(out / "features.csv"), table)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    d = tmp_path_factory.mktemp("planted")
    table, truth = planted_cohort(120, 3, separation=1.5, seed=3)
    table.to_csv(d / "features.csv", index=False)
    return d, table, truth


def test_discover_predict_report(planted):
    d, table, truth = planted
    model = d / "model"
    # k is fixed here: choosing k from PAC is tested on larger cohorts in test_subtypes_discover.py
    res = run("discover", str(d / "features.csv"), "--out", str(model), "--reps", "20", "--k", "3",
              "--purity-repeats", "1", "--igp-permutations", "100")  # fmt: skip
    assert res.returncode == 0, res.stderr
    discovery = json.loads((model / "discovery.json").read_text())
    assert discovery["k"] == 3 and len(discovery["consensus"]["pac"]) == 9  # k = 2…10 all evaluated
    labels = pd.read_csv(model / "labels.csv")
    from sklearn.metrics import adjusted_rand_score

    patients = table.drop_duplicates("patient")["patient"].to_numpy()
    truth_by_patient = dict(zip(patients, truth, strict=True))
    assert adjusted_rand_score([truth_by_patient[p] for p in labels["patient"]], labels["subtype"]) >= 0.9

    res = run(
        "predict", "--model", str(model), "--features", str(d / "features.csv"), "--out", str(d / "p.csv")
    )
    assert res.returncode == 0, res.stderr
    pred = pd.read_csv(d / "p.csv")
    assert list(pred.columns[:2]) == ["patient", "subtype"]
    probs = pred[[c for c in pred.columns if c.startswith("p_")]]
    assert probs.shape[1] == 3 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    merged = pred.merge(labels, on="patient", suffixes=("_pred", "_disc"))
    assert (merged["subtype_pred"] == merged["subtype_disc"]).mean() >= 0.9

    rng = np.random.default_rng(0)
    clinical = pd.DataFrame({"patient": labels["patient"], "time": rng.exponential(12, len(labels)),
                             "event": rng.integers(0, 2, len(labels)), "age": rng.normal(60, 8, len(labels))})  # fmt: skip
    clinical.to_csv(d / "clinical.csv", index=False)
    res = run("report", "--out", str(d / "report"), "--model", str(model), "--features", str(d / "features.csv"),
              "--clinical", str(d / "clinical.csv"), "--covariates", "age")  # fmt: skip
    assert res.returncode == 0, res.stderr
    html = (d / "report" / "index.html").read_text()
    for png in ("consensus.png", "consensus_cdf.png", "km.png", "subtypes.png"):
        assert png in html and (d / "report" / png).stat().st_size > 1000, png


def test_predict_with_other_features_is_a_clear_error(planted, tmp_path):
    d, table, _ = planted
    model = d / "model"
    if not model.exists():
        pytest.skip("needs the model of test_discover_predict_report")
    table.drop(columns=["shape_energy_l02"]).to_csv(tmp_path / "f.csv", index=False)
    res = run(
        "predict",
        "--model",
        str(model),
        "--features",
        str(tmp_path / "f.csv"),
        "--out",
        str(tmp_path / "p.csv"),
    )
    assert res.returncode == 2 and "shape_energy_l02" in res.stderr and not (tmp_path / "p.csv").exists()
