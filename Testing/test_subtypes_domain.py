"""Domain check, calibrated probabilities and one-input-per-patient rule of subtype predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.subtype_display import OUT_OF_DOMAIN, subtype_annotation, subtype_headline
from RadTyperLib.subtypes.calibration import apply_temperature, brier, fit_temperature, reliability
from RadTyperLib.subtypes.data import check_one_input_per_patient
from RadTyperLib.subtypes.domain import build_domain, check_domain, knn_distance

pytest.importorskip("sklearn")


# --- calibration --------------------------------------------------------------------------------------------
def test_temperature_keeps_the_subtype_and_sums_to_one():
    p = np.random.default_rng(0).dirichlet(np.ones(4), 50)
    for t in (0.3, 1.0, 2.5):
        q = apply_temperature(p, t)
        np.testing.assert_allclose(q.sum(axis=1), 1.0)
        assert (q.argmax(axis=1) == p.argmax(axis=1)).all()
    # T > 1 softens: the top probability never grows
    assert (apply_temperature(p, 2.5).max(axis=1) <= p.max(axis=1) + 1e-12).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_temperature_recovers_a_known_over_confidence(seed):
    """Labels drawn from softmax(l); the classifier reports softmax(3 l): the fitted T is ≈ 3."""
    rng = np.random.default_rng(seed)
    classes = ["A", "B", "C"]
    logits = rng.normal(0, 1.5, (6000, 3))
    true_p = apply_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 1.0)
    y = np.array([rng.choice(classes, p=row) for row in true_p])
    over = apply_temperature(true_p, 1 / 3)
    t = fit_temperature(over, y, classes)
    assert 2.6 <= t <= 3.4
    assert brier(apply_temperature(over, t), y, classes) < brier(over, y, classes)
    rel = reliability(apply_temperature(over, t), y, classes)
    assert rel["ece"] < 0.03 and sum(b["n"] for b in rel["bins"]) == 6000


def test_brier_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    y = np.array(["A", "B"])
    expected = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.9**2 + 0.8**2)) / 2
    assert brier(p, y, ["A", "B", "C"]) == pytest.approx(expected)


# --- domain ---------------------------------------------------------------------------------------------
def test_knn_distance_leave_one_out():
    ref = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    d = knn_distance(ref, ref, k=1, leave_one_out=True)
    np.testing.assert_allclose(d, [1.0, 1.0, 2.0])
    np.testing.assert_allclose(knn_distance(np.array([[3.0, 4.0]]), ref, k=1), [np.sqrt(13.0)])


def _domain(n=200, seed=0):
    rng = np.random.default_rng(seed)
    names = ["burden_volume_mm3", "shape_energy_l02", "shape_energy_l03"]
    raw = np.column_stack([rng.lognormal(7, 0.5, n), rng.normal(0, 1, n), rng.normal(0, 1, n)])
    mean, sd = raw.mean(0), raw.std(0, ddof=1)
    groups = {"burden": names[:1], "shape": names[1:]}
    dom, ref = build_domain(
        (raw - mean) / sd,
        raw,
        names,
        groups,
        modalities=["CT"],
        sites=["lung"],
        feature_pipeline="radtyper-shape/1",
    )
    return dom, ref, raw, mean, sd, names, groups


def test_domain_threshold_is_the_held_out_quantile():
    dom, ref, raw, _mean, _sd, _names, _groups = _domain()
    loo = knn_distance(ref, ref, dom["k"], leave_one_out=True) / dom["scale"]
    assert dom["threshold"] == pytest.approx(np.quantile(loo, 0.99), rel=1e-5)
    assert np.median(loo) == pytest.approx(1.0)
    assert dom["modalities"] == ["CT"] and dom["sites"] == ["lung"]
    assert dom["burden_ranges"]["burden_volume_mm3"] == pytest.approx([raw[:, 0].min(), raw[:, 0].max()])


def test_check_domain_flags_each_reason():
    dom, ref, raw, mean, sd, names, groups = _domain()
    typical = np.median(raw, axis=0)
    rows = np.vstack([typical] * 7)
    rows[3, 0] = raw[:, 0].max() * 3  # far larger than any training lesion
    rows[4, 1:] = np.nan  # no shape features
    rows[5, 1:] = [40.0, -40.0]  # unlike any training patient
    ok, score, note = check_domain(
        dom,
        ref,
        (rows - mean) / sd,
        rows,
        names,
        groups,
        modality=["CT", "MR", "CT", "CT", "CT", "CT", None],
        site=["lung", "lung", "liver", "lung", "lung", "lung", "unspecified"],
        pipeline=["radtyper-shape/1"] * 6 + ["radtyper-shape/0"],
    )
    assert ok.tolist() == [True, False, False, False, False, False, False]
    assert note[0] == "" and score[0] < dom["threshold"]
    assert "modality MR" in note[1] and "site liver" in note[2] and "outside the training range" in note[3]
    assert "no shape features" in note[4] and score[5] > dom["threshold"] and "unlike" in note[5]
    assert "radtyper-shape/0" in note[6] and "modality not given" in note[6] and "site not given" in note[6]


def test_no_domain_record_is_never_in_domain():
    ok, score, note = check_domain(
        None,
        None,
        np.zeros((2, 1)),
        np.zeros((2, 1)),
        ["a"],
        {},
        modality=[None] * 2,
        site=[None] * 2,
        pipeline=[None] * 2,
    )
    assert not ok.any() and np.isnan(score).all() and "no domain description" in note[0]


# --- display ------------------------------------------------------------------------------------------------
def test_display_marks_out_of_domain():
    row = {"patient": "P", "subtype": "S2", "p_S1": 0.1, "p_S2": 0.9, "in_domain": True, "domain_note": ""}
    assert (
        subtype_headline(row) == "S2 (p = 0.90)"
        and subtype_annotation(row) == "RadTyper subtype: S2 (p = 0.90)"
    )
    for value in (False, "False", "false", None, float("nan")):
        out = {**row, "in_domain": value, "domain_note": "modality MR (model: CT)"}
        assert OUT_OF_DOMAIN in subtype_headline(out) and "modality MR" in subtype_headline(out)
        assert OUT_OF_DOMAIN in subtype_annotation(out)
    assert OUT_OF_DOMAIN in subtype_headline({"subtype": "S1", "p_S1": 1.0})  # no domain column at all


# --- one input per patient -------------------------------------------------------------------------------
def test_two_inputs_under_one_patient_id_are_refused():
    a = pd.DataFrame({"lesion": ["label_1", "label_2"], "patient": ["CT_image"] * 2})
    check_one_input_per_patient(a)
    with pytest.raises(InputError, match="patient id 'CT_image' has two rows for lesion 'label_1'"):
        check_one_input_per_patient(pd.concat([a, a]))
    b = a.assign(image=["STS_001/CT_image.nii.gz", "STS_002/CT_image.nii.gz"])
    with pytest.raises(InputError, match="covers 2 different inputs"):
        check_one_input_per_patient(b)


# --- end to end: discover → predict ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from RadTyperLib.subtypes import discover
    from RadTyperLib.subtypes.synthetic import planted_cohort

    table, _truth = planted_cohort(240, 3, separation=1.5, factor_sd=0.5, seed=3)
    table["site"] = "lung"
    table["feature_pipeline"] = "radtyper-shape/1"
    out = tmp_path_factory.mktemp("model")
    res = discover(
        table,
        out,
        embedding="none",
        reps=30,
        ks=(2, 3, 4, 5),
        igp_permutations=0,
        purity_repeats=0,
        clf_max_iter=30,
        seed=0,
    )
    return table, out, res


def test_bundle_records_domain_and_calibration(model):
    _table, out, _res = model
    meta = json.loads((out / "model.json").read_text())
    assert (
        meta["feature_groups"] == ["shape", "burden", "region"]
        and meta["feature_pipeline"] == "radtyper-shape/1"
    )
    assert meta["domain"]["modalities"] == ["CT"] and meta["domain"]["sites"] == ["lung"]
    assert meta["domain"]["sha256"] and (out / "domain_reference.npy").is_file()
    cal = meta["calibration"]
    assert cal["n"] == 240 and cal["temperature"] > 0
    assert 0 <= cal["calibrated"]["brier"] < cal["chance_brier"]
    assert sum(b["n"] for b in cal["calibrated"]["reliability"]) == 240


def test_predict_columns_and_domain(model):
    from RadTyperLib.subtypes import load_bundle, predict

    table, out, res = model
    pred = predict(out, table)
    k = res["k"]
    p_cols = [f"p_S{i + 1}" for i in range(k)]
    assert list(pred.columns) == ["patient", "subtype", *p_cols, "in_domain", "domain_score", "domain_note"]
    np.testing.assert_allclose(pred[p_cols].sum(axis=1), 1.0)
    # training patients: in the domain but for the ≈1 % above the held-out 99 % quantile
    assert pred["in_domain"].mean() >= 0.97
    # calibrated = the classifier's probabilities at the bundle's temperature
    bundle = load_bundle(out)
    raw = bundle.classifier.predict_proba(table[bundle.feature_names].to_numpy())
    order = [list(bundle.classifier.classes_).index(s) for s in bundle.subtypes]
    np.testing.assert_allclose(
        pred[p_cols].to_numpy(), apply_temperature(raw[:, order], bundle.temperature), atol=1e-9
    )

    shifted = table.copy()
    feats = [c for c in bundle.feature_names if c.startswith("shape_")]
    shifted[feats] = shifted[feats] + 8 * bundle.scaler.sd[[bundle.feature_names.index(f) for f in feats]]
    assert not predict(out, shifted)["in_domain"].any()
    assert not predict(out, table.assign(modality="MR"))["in_domain"].any()
    assert not predict(out, table.assign(site="liver"))["in_domain"].any()
    other = predict(out, table.assign(feature_pipeline="radtyper-shape/0"))
    assert not other["in_domain"].any() and other["domain_note"].str.contains("radtyper-shape/0").all()
    with pytest.warns(UserWarning, match="does not say which pipeline"):
        predict(out, table.drop(columns="feature_pipeline"))


def test_predict_refuses_two_inputs_under_one_id(model):
    from RadTyperLib.subtypes import predict

    table, out, _ = model
    two = pd.concat(
        [
            table.iloc[:1],
            table.iloc[1:2].assign(lesion=table["lesion"].iloc[0], patient=table["patient"].iloc[0]),
        ]
    )
    with pytest.raises(InputError, match="has two rows for lesion"):
        predict(out, two)


def test_region_group_absent_is_a_clear_error(tmp_path):
    from RadTyperLib.subtypes import discover
    from RadTyperLib.subtypes.synthetic import planted_cohort

    table, _ = planted_cohort(40, 2, seed=0)
    shape_only = table.drop(columns=[c for c in table.columns if c.startswith("region_")])
    with pytest.raises(InputError, match=r"no region features.*--feature-groups shape,burden"):
        discover(shape_only, tmp_path, embedding="none", reps=5)
