"""The reference cohort, the Fig. 3c subtype profile and the default subtype model shipped with RadTyper."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.subtypes import (
    DEFAULT_MODEL_PROVENANCE,
    DEFAULT_MODEL_VERSION,
    default_model_path,
    default_model_provenance,
    load_bundle,
    load_default_model,
    subtype_profile,
)
from RadTyperLib.subtypes.default_model import BUILD_COMMAND, DEFAULT_MODEL_SEED, build_synthetic_model
from RadTyperLib.subtypes.reference import PROFILES, agreement, reference_patient, sample_lesion

pytest.importorskip("sklearn")

MODEL = default_model_path()
needs_model = pytest.mark.skipif(MODEL is None, reason="no default subtype model in this checkout")
#: Held-out LIDC nodules: fraction of reader pairs whose contours get the same subtype. The issue asks for
#: ≥ 0.85 (Wu et al.: 83.5 % automatic vs manual); the shipped model measures 0.854 (356 pairs, 95 % CI about
#: ±0.04: the target is within the sampling error), so the test guards against a clear regression.
MIN_READER_AGREEMENT = 0.80
#: Adjusted Rand index of the synthetic reference model's subtypes with the planted profiles: the reduced rebuild
#: of the slow test. Spread over cohort seeds 0-4 (study_test_spread.py --test default-model-reduced; another
#: machine's floating-point order acts as another seed): 0.544-0.785 (chance: 0; P2 and P3 overlap by design).
MIN_ARI_REDUCED = 0.45


# --- reference cohort -------------------------------------------------------------------------------------
def test_profiles_mimic_the_published_subtype_descriptions():
    """Draw many lesions per profile (no image): sizes, margins and shapes follow the documented design."""
    draws = {
        p.name: [sample_lesion(p, np.random.default_rng([9, i]))[1] for i in range(150)] for p in PROFILES
    }
    med = {k: np.median([d["radius_mm"] for d in v]) for k, v in draws.items()}
    blur = {k: np.median([d["blur_mm"] for d in v]) for k, v in draws.items()}
    spic = {k: np.mean([d["shape"] == "spiculated" for d in v]) for k, v in draws.items()}
    assert med["P1"] < med["P2"] < med["P4"] < med["P3"]  # small, intermediate, large, large
    assert blur["P1"] < 1.0 < blur["P2"] < 2.5 < blur["P3"] and 1.0 < blur["P4"] < 2.5  # sharp … blurred
    assert spic["P4"] == 1.0 and all(0.0 < spic[k] < 0.25 for k in ("P1", "P2", "P3"))  # atypical few
    for p in PROFILES:
        radii = [d["radius_mm"] for d in draws[p.name]]
        assert p.radius_range_mm[0] <= min(radii) and max(radii) <= p.radius_range_mm[1]
        assert {d["profile"] for d in draws[p.name]} == {p.name}
    nuisance = {k: np.mean([d["texture"] == "homogeneous" for d in v]) for k, v in draws.items()}
    assert max(nuisance.values()) - min(nuisance.values()) < 0.2  # texture: the same in every profile


def test_reference_patient_is_deterministic_and_inside_the_lung():
    a, ta = reference_patient(6, seed=3)
    b, tb = reference_patient(6, seed=3)
    _, tc = reference_patient(7, seed=3)
    assert ta == tb and ta["profile"] == PROFILES[6 % 4].name and tc["profile"] == PROFILES[7 % 4].name
    np.testing.assert_array_equal(a.image_array(), b.image_array())
    np.testing.assert_array_equal(a.label_array(), b.label_array())
    assert ta != tc and a.patient_id == "REF0006" and len(a.lesions) == 1
    mask = a.lesion_mask(a.lesions[0])
    lung = a.parenchyma_array().astype(bool)
    assert lung[mask].mean() > 0.95  # the lesion sits in the lung (spicules may touch the chest wall)
    assert np.median(a.image_array()[mask]) > -200 and np.median(a.image_array()[lung & ~mask]) < -600


def test_agreement():
    rec = agreement(["S1", "S1", "S2", "S2", "S3"], ["P3", "P3", "P1", "P1", "P1"])
    assert rec["subtype_to_profile"] == {"S1": "P3", "S2": "P1"} and rec["matched_fraction"] == 0.8
    assert 0 < rec["adjusted_rand"] < 1 and rec["table"]["S3"] == {"P1": 1, "P3": 0}


# --- the shipped model: LIDC-IDRI lung nodules ------------------------------------------------------------
@needs_model
def test_shipped_bundle_states_its_domain_and_provenance():
    from RadTyperLib.features import feature_pipeline_id

    model = load_default_model()
    assert model.directory == MODEL and model.k >= 2
    assert list(model.feature_groups) == ["shape", "burden"] and len(model.feature_names) == 293
    text = model.provenance
    for phrase in (
        "LIDC-IDRI",
        "lung nodules",
        "shape and burden only",
        "not the paper's trained model",
        "not for clinical use",
    ):
        assert phrase in text and phrase in DEFAULT_MODEL_PROVENANCE
    assert (
        f"v{DEFAULT_MODEL_VERSION}" in text and BUILD_COMMAND in text and f"seed {DEFAULT_MODEL_SEED}" in text
    )
    assert default_model_provenance() == text
    # the features of this checkout's pipeline: a pipeline change without a rebuild fails here
    assert model.feature_pipeline == feature_pipeline_id()
    assert model.domain["modalities"] == ["CT"] and model.domain["sites"] == ["lung"]
    assert "held out of the build" in model.domain["calibrated_on"]
    cal = model.calibration
    assert cal["temperature"] > 0 and cal["calibrated"]["brier"] < cal["chance_brier"]
    info = model.training["default_model"]
    assert info["version"] == DEFAULT_MODEL_VERSION and info["seed"] == DEFAULT_MODEL_SEED
    assert info["build_command"].startswith(BUILD_COMMAND)
    build = json.loads((MODEL / "build.json").read_text())
    assert build["k"] == model.k and build["seed"] == DEFAULT_MODEL_SEED
    labels = pd.read_csv(MODEL / "labels.csv")
    assert len(labels) == build["n_discovery_nodules"]


@needs_model
def test_shipped_model_held_out_readers_agree():
    """Held-out LIDC patients: a nodule gets the same subtype from its readers' contours (most pairs)."""
    build = json.loads((MODEL / "build.json").read_text())
    agree = build["reader_agreement"]
    assert agree["reader_pairs"] >= 100 and agree["pair_agreement"] >= MIN_READER_AGREEMENT
    assert agree["pair_agreement"] > agree["chance_agreement"]
    pred = pd.read_csv(MODEL / "heldout_predictions.csv", dtype={"patient": str})
    heldout = set(pred["lidc_patient"])
    discovery = set(
        pd.read_csv(MODEL / "reference" / "features.csv.gz", usecols=["lidc_patient"])["lidc_patient"]
    )
    assert not heldout & discovery  # whole patients held out
    # recomputed from the per-contour predictions
    from RadTyperLib.subtypes.default_model import reader_agreement

    assert reader_agreement(pred)["pair_agreement"] == pytest.approx(agree["pair_agreement"])


@needs_model
def test_shipped_model_ratings_are_tested():
    """The readers' ratings per subtype come with a Kruskal–Wallis statistic and p for every rating."""
    from scipy.stats import kruskal

    tests = pd.read_csv(MODEL / "ratings_tests.csv")
    assert set(tests["rating"]) >= {"malignancy", "spiculation", "lobulation", "sphericity", "margin"}
    key = tests[tests["rating"].isin(["malignancy", "spiculation", "lobulation", "sphericity", "margin"])]
    assert np.isfinite(key["H"]).all() and key["p_value"].between(0, 1).all()  # (a constant rating: NaN)
    pred = pd.read_csv(MODEL / "heldout_predictions.csv", dtype={"patient": str})
    held = pd.read_csv(MODEL / "reference" / "heldout.csv.gz", dtype={"patient": str})
    first = pred.merge(held[["patient", "rating_malignancy"]], on="patient")
    first = first.sort_values(["nodule", "reader"]).groupby("nodule").head(1)
    groups = [g["rating_malignancy"].to_numpy() for _, g in first.groupby("subtype")]
    h, p = kruskal(*groups)
    row = tests.set_index("rating").loc["malignancy"]
    assert row["H"] == pytest.approx(h, rel=1e-3) and row["p_value"] == pytest.approx(p, rel=1e-2)


@needs_model
def test_shipped_files_are_small():
    files = [p for p in MODEL.rglob("*") if p.is_file()]
    assert {
        "model.json",
        "classifier.joblib",
        "autoencoder.pt",
        "discovery.json",
        "build.json",
        "domain_reference.npy",
        "calibration.png",
    } <= {p.name for p in files}
    total = sum(p.stat().st_size for p in files)
    assert total < 5_000_000, f"{total / 1e6:.2f} MB"
    assert max(p.stat().st_size for p in files) < 2_000_000


@needs_model
def test_shipped_model_flags_the_demo_patient():
    """The demo patient (synthetic phantoms in liver, bone, lung …): a subtype, marked outside the domain."""
    from RadTyperLib.features import FeatureSettings, patient_features
    from RadTyperLib.phantoms import make_patient

    table, _ = patient_features(make_patient(0), FeatureSettings(radiomics=False))
    model = load_default_model()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        pred = model.predict(table)
    cols = [f"p_{s}" for s in model.subtypes]
    assert list(pred.columns) == ["patient", "subtype", *cols, "in_domain", "domain_score", "domain_note"]
    assert pred["patient"].tolist() == ["demo"]
    p = pred[cols].iloc[0]
    assert p.sum() == pytest.approx(1.0, abs=1e-9) and (p >= 0).all()
    assert pred["subtype"].iloc[0] == model.subtypes[int(np.argmax(p.to_numpy()))]
    assert not pred["in_domain"].iloc[0] and pred["domain_note"].iloc[0]


@needs_model
def test_shipped_model_reproduces_its_labels():
    """The classifier predicts the discovery nodules' discovered subtypes (training fit)."""
    model = load_default_model()
    features = pd.read_csv(MODEL / "reference" / "features.csv.gz", dtype={"patient": str})
    labels = pd.read_csv(MODEL / "labels.csv", dtype={"patient": str})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = model.predict(features).merge(labels, on="patient", suffixes=("", "_discovered"))
    assert len(pred) == len(labels)
    assert (pred["subtype"] == pred["subtype_discovered"]).mean() >= 0.95


@needs_model
def test_other_sklearn_version_refits_the_classifier_exactly(monkeypatch, tmp_path: Path):
    """Another scikit-learn version: no pickle is loaded, the classifier is retrained from the bundle's own
    training data with the recorded parameters — and predicts exactly as the shipped one (max |Δp| = 0)."""
    import shutil

    import sklearn

    pickled = load_bundle(MODEL, refit=False)
    features = MODEL / "reference" / "features.csv.gz"
    expected = pickled.predict(features)
    # another major version, and a classifier file that cannot be unpickled at all
    copy = tmp_path / "model"
    shutil.copytree(MODEL, copy)
    (copy / "classifier.joblib").write_bytes(b"not a pickle")
    meta = json.loads((copy / "model.json").read_text())
    meta["classifier"].pop("sha256", None)
    (copy / "model.json").write_text(json.dumps(meta))
    monkeypatch.setattr(sklearn, "__version__", "99.0.0")
    with pytest.warns(Warning, match="refitted on the bundle's training data"):
        refitted = load_bundle(copy)
    got = refitted.predict(features)
    cols = [c for c in expected.columns if c.startswith("p_")]
    assert got["subtype"].tolist() == expected["subtype"].tolist()
    assert np.abs(got[cols].to_numpy() - expected[cols].to_numpy()).max() < 1e-12
    # without its training data the same bundle is refused with a clear message
    (copy / "labels.csv").unlink()
    with pytest.raises(InputError, match="another major version"):
        load_bundle(copy)


def test_no_default_model_is_a_clear_error(monkeypatch):
    import RadTyperLib.subtypes.default_model as dm

    monkeypatch.setattr(dm, "default_model_path", lambda: None)
    with pytest.raises(InputError, match=r"build it with 'python Resources/Scripts/build_default_model\.py'"):
        dm.load_default_model()
    assert dm.default_model_provenance() == DEFAULT_MODEL_PROVENANCE


# --- rebuild (slow) ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_reduced_rebuild_recovers_the_planted_profiles(tmp_path: Path):
    """The synthetic reference model (a test fixture: planted profiles with known truth) on a reduced cohort:
    discovery recovers the planted profiles, the folder is a complete, loadable model, and the Fig. 3c profile
    of the real features with the planted profiles as labels has the designed signs."""
    pytest.importorskip("torch")
    record = build_synthetic_model(
        tmp_path / "m",
        n_per_profile=20,
        seed=DEFAULT_MODEL_SEED,
        reps=100,
        k=4,
        discover_settings={"igp_permutations": 200, "purity_repeats": 1},
        command="test",
    )
    assert record["n_patients"] == 80 and record["failed_patients"] == [] and record["k"] == 4
    agree = record["agreement_with_profiles"]
    assert agree["adjusted_rand"] >= MIN_ARI_REDUCED
    assert agree["matched_fraction"] >= 0.65  # seeds 0-4: 0.750-0.913 (4 balanced profiles: chance ~0.3)
    spiculated = next(s for s, p in agree["subtype_to_profile"].items() if p == "P4")
    assert (
        agree["table"][spiculated]["P4"] >= 15
    )  # the irregular profile is recovered almost whole: seeds 17-20
    model = load_bundle(tmp_path / "m")
    assert "not for clinical use" in model.provenance and model.training["default_model"]["seed"] == 0
    truth = pd.read_csv(tmp_path / "m" / "reference" / "truth.csv", dtype={"patient": str})
    assert truth["profile"].value_counts().to_dict() == {"P1": 20, "P2": 20, "P3": 20, "P4": 20}
    profile = pd.read_csv(tmp_path / "m" / "profile.csv", index_col=0)
    assert profile["irregularity"].idxmax() == spiculated
    features = pd.read_csv(tmp_path / "m" / "reference" / "features.csv.gz", dtype={"patient": str})
    prof = subtype_profile(features, truth.rename(columns={"profile": "subtype"})[["patient", "subtype"]])
    g = prof.groups
    assert list(g.index) == ["P1", "P2", "P3", "P4"] and g["n"].sum() == len(truth)
    assert g["burden"].idxmin() == "P1" and g.loc["P2", "burden"] < min(
        g.loc["P3", "burden"], g.loc["P4", "burden"]
    )
    assert g["margin_sharpness"].idxmax() == "P1" and g["margin_sharpness"].idxmin() == "P3"
    assert g["irregularity"].idxmax() == "P4" and (g.loc[["P1", "P2", "P3"], "irregularity"] < 0).all()
