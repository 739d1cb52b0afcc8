"""``radtyper features / reconstruct / robustness / heterogeneity / iith`` end to end on the demo patient."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from test_cli import run

from RadTyperLib.features import WU_FEATURE_NAMES
from RadTyperLib.io import load_patient, write_patient
from RadTyperLib.measures import LESION_MEASURE_NAMES
from RadTyperLib.phantoms import make_patient
from RadTyperLib.render import read_mesh


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return write_patient(make_patient(0), out)


@pytest.fixture(scope="module")
def features_csv(demo_files, tmp_path_factory):
    """Features of three lesions, with their 1 mm eroded / dilated variants, without pyradiomics (speed)."""
    out = tmp_path_factory.mktemp("features") / "features.csv"
    res = run(
        "features", "--image", str(demo_files["image"]), "--lesions", str(demo_files["lesions"]),
        "--parenchyma", str(demo_files["parenchyma"]), "--sites", str(demo_files["sites"]),
        "--out", str(out), "--no-radiomics", "--perturb-mm", "1", "--quiet", "--patient-id", "demo",
        "--lesion", "lung_1", "--lesion", "liver_1", "--lesion", "node_1",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return out


def test_features_table_layout_and_values(features_csv, demo_files):
    table = pd.read_csv(features_csv)
    cols = list(table.columns)
    assert cols[:2] == ["lesion", "site"]
    assert cols[2:8] == list(LESION_MEASURE_NAMES)  # the radiologist's measures, beside the 313
    cols = cols[:2] + cols[8:]
    assert cols[2 : 2 + 313] == list(WU_FEATURE_NAMES)
    assert sum(c.startswith("shape_") for c in cols) == 288
    assert sum(c.startswith("burden_") for c in cols) == 5
    assert sum(c.startswith("region_") for c in cols) == 20
    assert not any(c.startswith("radiomics_") for c in cols)
    qc = [c for c in cols if c.startswith("qc_")]
    assert cols[2 + 313 : 2 + 313 + len(qc)] == qc and cols[-3:] == [
        "patient",
        "modality",
        "feature_pipeline",
    ]
    assert list(table["lesion"]) == ["lung_1", "liver_1", "node_1"]
    assert list(table["site"]) == ["lung", "liver", "lymph_node"]
    # burden volume = voxel count × voxel volume of the lesion (cleaned mask: these lesions are solid)
    patient = load_patient(demo_files["image"], demo_files["lesions"])
    for _, row in table.iterrows():
        assert row["burden_volume_mm3"] == pytest.approx(patient.lesion_volume_mm3(row["lesion"]), rel=1e-6)
    assert (table["qc_flipped_triangles"] == 0).all() and (table["qc_genus"] == 0).all()
    # the lung lesion uses the given lung parenchyma; the liver lesion falls back (another organ), flagged
    assert table.loc[0, "qc_parenchyma_auto"] == 0 and table.loc[1, "qc_parenchyma_off_organ"] == 1
    assert table[list(WU_FEATURE_NAMES)].notna().all().all()
    # lesion_volume_ml = the mask as drawn (= radtyper info's volume); these solid lesions: = burden volume
    for _, row in table.iterrows():
        assert row["lesion_volume_ml"] * 1000 == pytest.approx(
            patient.lesion_volume_mm3(row["lesion"]), rel=1e-9
        )
        assert row["lesion_feret_mm"] >= row["lesion_recist_long_mm"] >= row["lesion_recist_short_mm"] > 0


def test_perturbed_tables_have_the_same_columns(features_csv):
    base = pd.read_csv(features_csv)
    ero = pd.read_csv(features_csv.with_name("features.eroded.csv"))
    dil = pd.read_csv(features_csv.with_name("features.dilated.csv"))
    assert list(ero["lesion"]) == list(base["lesion"]) == list(dil["lesion"])
    # a 1 mm erosion shrinks and a dilation grows every lesion
    assert (ero["burden_volume_mm3"] < base["burden_volume_mm3"]).all()
    assert (dil["burden_volume_mm3"] > base["burden_volume_mm3"]).all()
    # default --perturb-grid 1mm: the unperturbed lesions on the 1 mm grid are the CCC's reference
    ref = pd.read_csv(features_csv.with_name("features.reference.csv"))
    assert list(ref["lesion"]) == list(base["lesion"]) and (ref["qc_perturb_grid"] == "1mm").all()
    assert (ero["burden_volume_mm3"] < ref["burden_volume_mm3"]).all()
    assert (dil["burden_volume_mm3"] > ref["burden_volume_mm3"]).all()
    np.testing.assert_allclose(ref["burden_volume_mm3"], base["burden_volume_mm3"], rtol=0.1)


def test_robustness_and_heterogeneity_commands(features_csv, tmp_path):
    res = run("robustness", "--features", str(features_csv), "--out", str(tmp_path / "rob"))
    assert res.returncode == 0, res.stderr
    ccc = pd.read_csv(tmp_path / "rob" / "ccc.csv", index_col="feature")
    assert {"ccc_eroded", "ccc_dilated", "robust"} <= set(ccc.columns)
    # volume follows a 1 mm perturbation closely across lesions of very different sizes
    assert ccc.loc["burden_volume_mm3", "ccc_eroded"] > 0.8
    kept = (tmp_path / "rob" / "robust_features.txt").read_text().split()
    assert kept and set(kept) <= set(ccc.index[ccc["robust"]])

    res = run("heterogeneity", "--features", str(features_csv), "--out", str(tmp_path / "het"), "--by", "site",
              "--draws", "50")  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "het" / "heterogeneity.json").read_text())
    rec = report["patients"]["demo"]
    assert 0 < rec["average_tumoral_heterogeneity"] <= rec["max_tumoral_divergence"] <= 1
    assert (tmp_path / "het" / "recovery_curves.png").stat().st_size > 1000


def test_iith_on_too_few_lesions_is_a_clear_error(features_csv, tmp_path):
    res = run("iith", "--features", str(features_csv), "--out", str(tmp_path / "iith"))
    assert res.returncode == 2
    assert res.stderr.startswith("radtyper: error: ") and len(res.stderr.strip().splitlines()) == 1


def test_reconstruct_writes_meshes_in_patient_space(demo_files, tmp_path):
    patient = load_patient(demo_files["image"], demo_files["lesions"])
    centre = patient.lesion_centroid_mm("liver_2")
    errors = []
    for degree, suffix in ((1, ".vtk"), (5, ".stl"), (15, ".ply")):
        out = tmp_path / f"liver_2_L{degree}{suffix}"
        res = run("reconstruct", "--lesions", str(demo_files["lesions"]), "--lesion", "liver_2",
                  "--degree", str(degree), "--out", str(out))  # fmt: skip
        assert res.returncode == 0, res.stderr
        errors.append(float(res.stdout.split("mean surface error ")[1].split(" mm")[0]))
        verts, faces = read_mesh(out)
        assert len(faces) > 1000
        # the reconstruction sits on the lesion: its centre within one voxel diagonal of the mask centre
        assert np.linalg.norm(verts.mean(axis=0) - centre) < 3.5
    assert errors[0] > errors[1] > errors[2]  # error falls with the degree (dumbbell: large at L = 1)


def test_bad_input_names_the_lesion(demo_files, tmp_path):
    image = sitk.ReadImage(str(demo_files["image"]))
    labels = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    labels.CopyInformation(image)
    labels[50, 60, 40] = 1  # a 1-voxel lesion
    labels[100:110, 80:90, 30:36] = 2
    sitk.WriteImage(labels, str(tmp_path / "tiny.nrrd"))
    base = ["features", "--image", str(demo_files["image"]), "--lesions", str(tmp_path / "tiny.nrrd"),
            "--no-radiomics", "--quiet"]  # fmt: skip
    res = run(*base, "--out", str(tmp_path / "f.csv"))
    assert res.returncode == 2 and "lesion 'lesion_1'" in res.stderr and not (tmp_path / "f.csv").exists()
    res = run(*base, "--out", str(tmp_path / "g.csv"), "--keep-going")
    assert res.returncode == 0 and "warning: lesion 'lesion_1'" in res.stderr
    table = pd.read_csv(tmp_path / "g.csv")
    assert table.loc[0, "qc_error"] and np.isnan(table.loc[0, "burden_volume_mm3"])
    assert table.loc[1, "burden_volume_mm3"] == pytest.approx(10 * 10 * 6 * 1.5 * 1.5 * 2.5)
    res = run("reconstruct", "--lesions", str(tmp_path / "tiny.nrrd"), "--lesion", "9", "--degree", "3",
              "--out", str(tmp_path / "m.obj"))  # fmt: skip
    assert res.returncode == 2 and "must end with one of" in res.stderr
