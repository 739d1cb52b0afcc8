"""Evaluation metrics on hand-made masks with known values, detection counts, cohort evaluation, subtypes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch")

from test_unet_infer import blob_image, install_oracle, random_bundle  # noqa: E402

from RadTyperLib.errors import InputError  # noqa: E402
from RadTyperLib.io import write_image  # noqa: E402
from RadTyperLib.segmentation.unet.evaluate import (  # noqa: E402
    dice,
    evaluate_case,
    evaluate_cohort,
    hausdorff95_mm,
    size_class,
    subtype_agreement,
    summarize,
    surface_distances_mm,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cube(shape, lo, n):
    m = np.zeros(shape, bool)
    m[lo[0] : lo[0] + n, lo[1] : lo[1] + n, lo[2] : lo[2] + n] = True
    return m


@pytest.mark.parametrize(
    "axis, spacing_index", [(2, 0), (1, 1), (0, 2)]
)  # array axis (z, y, x) ↔ spacing (x, y, z)
def test_cubes_offset_by_one_voxel(axis, spacing_index):
    spacing = (0.7, 0.9, 2.5)
    a = cube((20, 20, 20), (5, 5, 5), 10)
    b = np.roll(a, 1, axis=axis)
    assert dice(a, b) == pytest.approx(0.9)  # overlap 9·10·10 of 1000 + 1000
    # no surface voxel is farther than one step along the shift axis from the other surface, and the face
    # left behind (10 × 10 of the ~600 surface voxels, > 5 %) is exactly one step away
    assert hausdorff95_mm(a, b, spacing) == pytest.approx(spacing[spacing_index])
    d = surface_distances_mm(a, b, spacing)
    assert d.max() == pytest.approx(spacing[spacing_index]) and d.size == 488


def test_hd95_and_dice_special_cases():
    sp = (1.0, 0.8, 3.0)
    a = np.zeros((5, 12, 12), bool)
    b = a.copy()
    a[2, 2, 6] = True
    b[2, 7, 6] = True  # 5 voxels along y = 4 mm
    assert dice(a, b) == 0.0 and hausdorff95_mm(a, b, sp) == pytest.approx(4.0)
    assert dice(a, a) == 1.0 and hausdorff95_mm(a, a, sp) == 0.0
    empty = np.zeros_like(a)
    assert dice(empty, empty) == 1.0 and np.isnan(hausdorff95_mm(a, empty, sp))
    # a lesion touching the image border: border voxels are surface voxels
    c = np.zeros((4, 4, 4), bool)
    c[:, :, :2] = True
    assert hausdorff95_mm(c, np.roll(c, 1, axis=2), (1.0, 1.0, 1.0)) == pytest.approx(1.0)
    with pytest.raises(InputError, match="masks of different shapes"):
        dice(a, np.zeros((2, 2, 2), bool))


def test_hd95_is_the_95th_percentile_of_pooled_distances():
    # a 20-voxel line and the same line with its last voxel 10 voxels away
    sp = (1.0, 1.0, 1.0)
    a = np.zeros((1, 30, 30), bool)
    a[0, 5, 5:25] = True
    b = a.copy()
    b[0, 5, 24] = False
    b[0, 15, 24] = True
    d = np.concatenate([surface_distances_mm(a, b, sp), surface_distances_mm(b, a, sp)])
    assert d.size == 40 and np.count_nonzero(d) == 2  # (5,24)→(5,23): 1 mm and (15,24)→(5,24): 10 mm
    assert hausdorff95_mm(a, b, sp) == pytest.approx(np.percentile(d, 95))
    assert hausdorff95_mm(a, b, sp) == pytest.approx(0.05 * 1.0)  # 95th percentile between 0 (38th) and 1 mm


def test_lesion_detection_counts_and_size_classes():
    shape = (30, 40, 40)
    truth = np.zeros(shape, np.uint16)
    pred = np.zeros(shape, np.uint16)
    truth[cube(shape, (0, 0, 0), 8)] = 1  # 512 mm³ = 0.512 cm³
    truth[cube(shape, (10, 10, 10), 13)] = 2  # 2197 mm³
    truth[cube(shape, (0, 25, 25), 5)] = 3  # 125 mm³, missed
    pred[cube(shape, (0, 0, 0), 8)] = 1  # exact
    pred[cube(shape, (11, 10, 10), 13)] = 2  # shifted by one slice: Dice 12/13
    pred[cube(shape, (25, 0, 30), 4)] = 3  # false positive
    ev = evaluate_case(truth, pred, (1.0, 1.0, 1.0), truth_names={1: "a", 2: "b", 3: "c"}, patient="P")
    c = ev.case
    assert (c["n_manual"], c["n_detected"], c["n_auto"], c["n_false_positive"]) == (3, 2, 3, 1)
    assert c["sensitivity"] == pytest.approx(2 / 3)
    inter = 512 + 12 * 169
    assert c["dice"] == pytest.approx(2 * inter / (512 + 2197 + 125 + 512 + 2197 + 64))
    rows = {r["lesion"]: r for r in ev.lesions}
    assert rows["a"]["dice"] == 1.0 and rows["a"]["hd95_mm"] == 0.0 and rows["a"]["size_class"] == "<1 cm3"
    assert rows["b"]["dice"] == pytest.approx(12 / 13) and rows["b"]["size_class"] == "1-10 cm3"
    assert rows["b"]["hd95_mm"] == pytest.approx(1.0) and rows["b"]["matched"] == "lesion_2"
    assert not rows["c"]["detected"] and rows["c"]["dice"] == 0.0 and np.isnan(rows["c"]["hd95_mm"])
    assert [d["true_positive"] for d in ev.detections] == [True, True, False]
    # a stricter overlap rule: lesion b overlaps by 12·169 voxels, a by 512
    strict = evaluate_case(truth, pred, (1.0, 1.0, 1.0), min_overlap_voxels=600)
    assert strict.case["n_detected"] == 1
    s = summarize([c], ev.lesions)
    assert s["lesion_sensitivity"] == pytest.approx(2 / 3) and s["false_positives_per_patient"] == 1.0
    assert s["dice_by_size"]["<1 cm3"] == {"n_lesions": 2, "mean_dice": 0.5, "sensitivity": 0.5}
    assert (
        s["dice_by_size"][">10 cm3"]["n_lesions"] == 0 and s["dice_by_size"][">10 cm3"]["mean_dice"] is None
    )
    assert [size_class(v) for v in (0.0, 0.99, 1.0, 10.0, 10.01)] == [
        "<1 cm3",
        "<1 cm3",
        "1-10 cm3",
        ">10 cm3",
        ">10 cm3",
    ]


def test_subtype_agreement_confusion_matrix():
    manual = {"p1": "S1", "p2": "S1", "p3": "S2", "p4": "S2", "p5": "S2", "p6": "S1"}
    auto = {"p1": "S1", "p2": "S2", "p3": "S2", "p4": "S2", "p5": "none", "p6": "S1"}
    r = subtype_agreement(manual, auto)
    assert r["n_patients"] == 6 and r["agreement"] == pytest.approx(4 / 6)
    assert r["confusion"] == {"S1": {"S1": 2, "S2": 1, "none": 0}, "S2": {"S1": 0, "S2": 2, "none": 1}}


# --- cohort evaluation with the oracle network -------------------------------------------------------------
def _write_case(tmp_path, name, blobs):
    img, truth = blob_image(shape=(16, 48, 48), spacing=(1.0, 1.0, 2.0), blobs=blobs)
    write_image(img, tmp_path / f"{name}_image.nrrd")
    lab = sitk.GetImageFromArray(truth)
    lab.CopyInformation(img)
    write_image(lab, tmp_path / f"{name}_label.nrrd")
    return [name, f"{name}_image.nrrd", f"{name}_label.nrrd", "CT"]


@pytest.fixture
def oracle_cohort(tmp_path, monkeypatch):
    install_oracle(monkeypatch)
    rows = [
        _write_case(tmp_path, "p1", [((8, 15, 15), 7.0), ((8, 34, 34), 5.0)]),
        _write_case(tmp_path, "p2", [((8, 24, 24), 9.0)]),
    ]
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient", "image", "lesions", "modality"])
        w.writerows(rows)
    model = random_bundle().save(tmp_path / "model")
    return manifest, model


def test_evaluate_cohort_writes_tables_and_summary(oracle_cohort, tmp_path):
    manifest, model = oracle_cohort
    out = tmp_path / "eval"
    res = evaluate_cohort(model, manifest, out, min_size_mm3=0, save_segmentations=True)
    assert {p.name for p in out.iterdir()} == {
        "cases.csv",
        "lesions.csv",
        "detections.csv",
        "summary.json",
        "segmentations",
    }
    assert sorted(p.name for p in (out / "segmentations").iterdir()) == ["p1.seg.nrrd", "p2.seg.nrrd"]
    s = json.loads((out / "summary.json").read_text())
    assert s["n_patients"] == 2 and s["n_manual_lesions"] == 3 and s["mean_dice"] == 1.0
    assert s["lesion_sensitivity"] == 1.0 and s["false_positives_per_patient"] == 0.0
    assert s["subtypes"] is None and s["subtypes_note"].startswith("skipped: no subtype model")
    assert list(res.cases["patient"]) == ["p1", "p2"] and list(res.cases["hd95_mm"]) == [0.0, 0.0]
    assert len(res.lesions) == 3 and res.lesions["detected"].all()


def test_evaluate_cohort_subtype_agreement(oracle_cohort, tmp_path):
    subtypes = pytest.importorskip("RadTyperLib.subtypes")
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = np.column_stack([rng.uniform(100, 8000, 40), rng.uniform(3, 12, 40)])
    labels = np.where(x[:, 0] > 2500, "large", "small")
    sub = subtypes.SubtypeModel(
        feature_names=["burden_volume_mm3", "burden_mean_radius_mm"],
        aggregation="largest",
        embedding="none",
        scaler=subtypes.Scaler.fit(x),
        subtypes=["large", "small"],
        classifier=LogisticRegression(max_iter=1000).fit(x, labels),
        sklearn_version=sklearn.__version__,
    ).save(tmp_path / "subtype-model")
    manifest, model = oracle_cohort
    out = tmp_path / "eval"
    res = evaluate_cohort(model, manifest, out, subtype_model=sub, min_size_mm3=0)
    s = json.loads((out / "summary.json").read_text())["subtypes"]
    assert s["agreement"] == 1.0 and s["n_patients"] == 2  # automatic = manual contours here
    assert list(res.subtypes["manual_subtype"]) == list(res.subtypes["auto_subtype"]) == ["small", "large"]
    with open(out / "subtype_confusion.csv", newline="") as fh:
        conf = list(csv.reader(fh))
    assert conf[0] == ["manual \\ automatic", "large", "small"]
    assert conf[1:] == [["large", "1", "0"], ["small", "0", "1"]]


def test_evaluate_cohort_refuses_a_model_of_another_modality(oracle_cohort, tmp_path):
    manifest, _ = oracle_cohort
    mr = random_bundle(modality="MR").save(tmp_path / "mr-model")
    with pytest.raises(InputError, match=r"model 'mr-model' was trained on MR images but patient 'p1'"):
        evaluate_cohort(mr, manifest, tmp_path / "eval")
