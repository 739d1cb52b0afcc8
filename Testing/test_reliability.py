"""Every bad input gets a clear answer, nothing is left half-done (issue 13).

Each test pins one decided behaviour of the README's "Errors and warnings" section: nested labels, NaN voxels,
non-integer masks, huge label counts, 4-D images, lesions at the border, ``--out`` under a file, all-or-nothing
reports, failure counts, ``--keep-going`` rows, heterogeneity of identical / single lesions, legacy column
names, the torch-free autoencoder reader and the radiologist's lesion measures.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from RadTyperLib.cli import main
from RadTyperLib.errors import InputError
from RadTyperLib.features import FeatureSettings, patient_features, table_columns
from RadTyperLib.io import load_patient, read_feature_table
from RadTyperLib.measures import LESION_MEASURE_NAMES, lesion_measures

SPACING = (1.0, 1.0, 2.0)
SHAPE = (24, 64, 64)  # z, y, x


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (-850.0 + 20.0 * rng.standard_normal(SHAPE)).astype(np.float32)


def _ball(centre_zyx, radius_mm: float) -> np.ndarray:
    z, y, x = np.indices(SHAPE, dtype=float)
    d2 = ((z - centre_zyx[0]) * SPACING[2]) ** 2 + ((y - centre_zyx[1]) * SPACING[1]) ** 2
    return d2 + ((x - centre_zyx[2]) * SPACING[0]) ** 2 <= radius_mm**2


def _write(path, array, like=None):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(SPACING)
    img.SetOrigin((-30.0, 12.0, 5.0))
    sitk.WriteImage(img, str(path))
    return path


def _case(tmp_path, labels: np.ndarray, image: np.ndarray | None = None):
    img = _image() if image is None else image
    for v in np.unique(labels[labels > 0]):
        img[labels == v] = 40.0 + 5.0 * np.random.default_rng(int(v)).standard_normal(
            int((labels == v).sum())
        )
    return _write(tmp_path / "ct.nrrd", img), _write(tmp_path / "mask.nrrd", labels.astype(np.uint16))


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("radtyper: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- inputs -------------------------------------------------------------------------------------------------
def test_nested_labels_are_refused_with_the_labels_named(tmp_path, capsys):
    labels = np.zeros(SHAPE, np.uint16)
    labels[_ball((12, 32, 32), 14)] = 1
    labels[_ball((12, 32, 32), 9)] = 2
    labels[_ball((12, 32, 32), 4)] = 3  # one lesion drawn as three shells
    image, mask = _case(tmp_path, labels)
    for argv in (
        ("info", mask),
        ("features", "--image", image, "--lesions", mask, "--out", tmp_path / "f.csv"),
    ):
        code, _out, err = _run(capsys, *argv, *(("--no-radiomics",) if argv[0] == "features" else ()))
        line = _error_line(err)
        assert code == 2 and "nested lesion labels" in line and str(mask) in line
        assert "'lesion_2' inside 'lesion_1'" in line and "'lesion_3' inside 'lesion_2'" in line
    assert not (tmp_path / "f.csv").exists()


def test_side_by_side_lesions_are_not_nested(tmp_path):
    labels = np.zeros(SHAPE, np.uint16)
    labels[_ball((12, 20, 20), 6)] = 1
    labels[_ball((12, 44, 44), 6)] = 2
    image, mask = _case(tmp_path, labels)
    assert [les.name for les in load_patient(image, mask).lesions] == ["lesion_1", "lesion_2"]


def test_nan_voxels_warn_and_fail_only_the_lesion_near_them(tmp_path, capsys):
    labels = np.zeros(SHAPE, np.uint16)
    labels[_ball((12, 18, 18), 6)] = 1
    labels[_ball((12, 46, 46), 6)] = 2
    image, mask = _case(tmp_path, labels)
    img = sitk.GetArrayFromImage(sitk.ReadImage(str(image)))
    img[11:13, 14:20, 16] = np.nan  # 12 NaN voxels inside lesion 1
    img[0, 63, 0] = np.inf  # far from both (> 12 mm)
    _write(image, img)
    img_written = sitk.GetArrayFromImage(sitk.ReadImage(str(image)))
    n_bad = int((~np.isfinite(img_written)).sum())
    assert n_bad == 13
    out = tmp_path / "f.csv"
    code, _o, err = _run(
        capsys, "features", "--image", image, "--lesions", mask, "--out", out, "--no-radiomics"
    )
    line = _error_line(err)
    assert code == 2 and "lesion 'lesion_1'" in line and "NaN or infinite voxel(s)" in line
    assert f"{image}: {n_bad} NaN or infinite voxel(s)" in err  # the image-level warning
    assert not out.exists()
    code, _o, err = _run(
        capsys,
        "features",
        "--image",
        image,
        "--lesions",
        mask,
        "--out",
        out,
        "--no-radiomics",
        "--keep-going",
    )
    assert code == 0 and "radtyper: warning: lesion 'lesion_1': the image has 12 NaN" in err
    t = read_feature_table(out)
    ok = t.set_index("lesion").loc["lesion_2"]
    assert ok["qc_image_nonfinite_voxels"] == n_bad and ok["qc_error"] != ok["qc_error"]  # NaN = empty
    feats = ok[[c for c in t.columns if c.startswith(("shape_", "burden_", "region_", "lesion_"))]]
    assert np.isfinite(feats.to_numpy(dtype=float)).all()


def test_non_integer_mask_is_refused(tmp_path, capsys):
    labels = _ball((12, 32, 32), 6).astype(np.float32) * 0.7  # a probability map
    image = _write(tmp_path / "ct.nrrd", _image())
    mask = _write(tmp_path / "prob.nrrd", labels)
    code, _o, err = _run(capsys, "info", "--image", image, "--lesions", mask)
    line = _error_line(err)
    assert code == 2 and str(mask) in line and "non-integer mask values (e.g. 0.7)" in line
    assert "threshold a probability map first" in line


def test_huge_label_count_is_refused(tmp_path, capsys):
    labels = np.arange(np.prod(SHAPE), dtype=np.uint32).reshape(SHAPE) % 5000  # e.g. an image given as mask
    image = _write(tmp_path / "ct.nrrd", _image())
    mask = _write(tmp_path / "many.nrrd", labels)
    code, _o, err = _run(capsys, "info", "--image", image, "--lesions", mask)
    line = _error_line(err)
    assert code == 2 and "4999 distinct labels; at most 1000 lesions" in line and str(mask) in line


def test_4d_image_is_refused(tmp_path, capsys):
    series = sitk.JoinSeries([sitk.GetImageFromArray(_image(s)) for s in range(3)])  # 3 DCE phases
    path = tmp_path / "dce.nrrd"
    sitk.WriteImage(series, str(path))
    labels = np.zeros(SHAPE, np.uint16)
    labels[_ball((12, 32, 32), 6)] = 1
    mask = _write(tmp_path / "mask.nrrd", labels)
    code, _o, err = _run(capsys, "info", "--image", path, "--lesions", mask)
    line = _error_line(err)
    assert code == 2 and "4-D image (3 volumes of 64×64×24" in line and "extract the phase" in line


def test_lesion_at_the_border_is_flagged_on_screen(tmp_path, capsys):
    labels = np.zeros(SHAPE, np.uint16)
    labels[_ball((12, 32, 2), 7)] = 1  # cut by the x = 0 border
    image, mask = _case(tmp_path, labels)
    out = tmp_path / "f.csv"
    code, _o, err = _run(
        capsys, "features", "--image", image, "--lesions", mask, "--out", out, "--no-radiomics"
    )
    assert code == 0
    assert "radtyper: warning: lesion 'lesion_1': touches the image border" in err
    assert "radtyper: warning: lesion 'lesion_1': its 10 mm margin shell is clipped" in err
    row = read_feature_table(out).iloc[0]
    assert row["qc_touches_border"] == 1 and row["qc_shell_clipped"] == 1


def test_out_under_a_file_is_refused_before_computing(tmp_path, capsys):
    labels = np.zeros(SHAPE, np.uint16)
    labels[_ball((12, 32, 32), 6)] = 1
    image, mask = _case(tmp_path, labels)
    blocker = tmp_path / "results"
    blocker.write_text("a file\n")
    for argv in (
        ("features", "--image", image, "--lesions", mask, "--out", blocker / "f.csv"),
        ("heterogeneity", "--features", tmp_path / "x.csv", "--out", blocker / "het"),
        ("demo", "--out", blocker),
    ):
        code, out, err = _run(capsys, *argv)
        line = _error_line(err)
        assert code == 2 and ("is a file" in line) and not out, (argv, err)
        assert "[" not in err  # no progress line: nothing was computed


# --- all-or-nothing outputs ---------------------------------------------------------------------------------
def test_failed_report_leaves_no_figure_behind(tmp_path, capsys):
    from RadTyperLib.subtypes.default_model import default_model_path

    table = pd.DataFrame({"patient": ["new1", "new2"], "lesion": ["a", "b"], "burden_volume_mm3": [1.0, 2.0]})
    table.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "report"
    code, _o, err = _run(
        capsys, "report", "--model", default_model_path(), "--features", tmp_path / "new.csv", "--out", out
    )
    assert code == 2 and "no patient of the feature table has a subtype label" in _error_line(err)
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "new.csv"]


def test_keep_going_failed_row_has_every_column(tmp_path):
    labels = np.zeros(SHAPE, np.uint16)
    labels[_ball((12, 20, 20), 6)] = 1
    labels[12, 44, 44] = 2  # one voxel: too small for shape analysis
    image, mask = _case(tmp_path, labels)
    patient = load_patient(image, mask)
    s = FeatureSettings(radiomics=False)
    table, results = patient_features(patient, s, keep_going=True)
    assert [bool(r.error) for r in results] == [False, True]
    assert tuple(table.columns) == table_columns(s)
    alone, _ = patient_features(patient, s, lesions=["lesion_2"], keep_going=True)
    assert tuple(alone.columns) == table_columns(s)  # also when every lesion of the table failed
    assert "too small" in alone["qc_error"].iloc[0]


# --- heterogeneity ------------------------------------------------------------------------------------------
def test_identical_lesions_have_zero_heterogeneity_with_a_note(tmp_path, capsys):
    t = pd.DataFrame({"lesion": ["a", "b", "c"], "patient": "p1", "shape_x": 1.5, "region_y": -2.0})
    t.to_csv(tmp_path / "t.csv", index=False)
    code, out, err = _run(capsys, "heterogeneity", "--features", tmp_path / "t.csv", "--out", tmp_path / "h")
    assert code == 0 and "MTD 0.000, ATH 0.000" in out and "identical feature values" in out
    assert "radtyper: warning: the lesions have identical feature values" in err
    rec = pd.read_csv(tmp_path / "h" / "heterogeneity.csv").iloc[0]
    assert rec["max_tumoral_divergence"] == 0.0 and rec["average_tumoral_heterogeneity"] == 0.0


def test_single_lesion_patients_give_no_warning_and_a_labelled_plot(tmp_path, capsys):
    t = pd.DataFrame(
        {"lesion": ["a", "b"], "patient": ["p1", "p2"], "shape_x": [1.0, 2.0], "shape_y": [3.0, 1.0]}
    )
    t.to_csv(tmp_path / "t.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a matplotlib "no artists" warning would fail here
        code, out, _err = _run(
            capsys,
            "heterogeneity",
            "--features",
            tmp_path / "t.csv",
            "--out",
            tmp_path / "h",
            "--draws",
            "20",
        )
    assert code == 0 and out.count("heterogeneity needs ≥ 2 lesions") == 2
    png = (tmp_path / "h" / "recovery_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


# --- renamed columns and the torch-free model --------------------------------------------------------------
def test_old_semiaxis_column_names_are_read_with_the_new_names(tmp_path):
    t = pd.DataFrame({"lesion": ["a"], "burden_axis_1_mm": [3.0], "burden_axis_3_mm": [9.0]})
    t.to_csv(tmp_path / "old.csv", index=False)
    got = read_feature_table(tmp_path / "old.csv")
    assert list(got.columns) == ["lesion", "burden_semiaxis_1_mm", "burden_semiaxis_3_mm"]


def test_default_model_predicts_from_renamed_columns():
    from RadTyperLib.subtypes.bundle import load_bundle
    from RadTyperLib.subtypes.default_model import default_model_path

    model = load_bundle(default_model_path())
    assert "burden_semiaxis_1_mm" in model.feature_names and "burden_axis_1_mm" not in model.feature_names
    ref = read_feature_table(default_model_path() / "reference" / "features.csv.gz")
    assert "burden_semiaxis_2_mm" in ref.columns
    pred = model.predict(ref.head(40))
    labels = pd.read_csv(default_model_path() / "labels.csv", dtype=str).set_index("patient")["subtype"]
    agree = (pred.set_index("patient")["subtype"] == labels.reindex(pred["patient"]).to_numpy()).mean()
    assert agree >= 0.9  # the training patients keep their subtypes (not a model-quality test)


def test_autoencoder_weights_read_without_torch_equal_torch_load():
    from RadTyperLib.subtypes.autoencoder import encode, read_torch_state
    from RadTyperLib.subtypes.default_model import default_model_path

    path = default_model_path() / "autoencoder.pt"
    state = read_torch_state(path)
    torch = pytest.importorskip("torch")
    ref = torch.load(str(path), map_location="cpu", weights_only=True)
    assert list(state) == list(ref)
    for k, v in ref.items():
        assert state[k].dtype == v.numpy().dtype and np.array_equal(state[k], v.numpy())
    z = np.random.default_rng(0).standard_normal((5, state["encoder.0.weight"].shape[1]))
    with torch.no_grad():
        net = torch.nn.Sequential(
            torch.nn.Linear(z.shape[1], 150), torch.nn.ReLU(), torch.nn.Linear(150, 10)
        ).double()
        net.load_state_dict(
            {f"{i}.{p}": ref[f"encoder.{i}.{p}"].double() for i in (0, 2) for p in ("weight", "bias")}
        )
        expected = net(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(encode(state, z), expected, rtol=1e-12, atol=1e-12)


def test_non_tensor_pickle_is_refused(tmp_path):
    import pickle
    import zipfile

    from RadTyperLib.subtypes.autoencoder import read_torch_state

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": print}))
    with pytest.raises(InputError, match=r"unexpected object builtins\.print"):
        read_torch_state(path)


# --- lesion measures ----------------------------------------------------------------------------------------
def test_lesion_measures_of_a_voxelised_sphere_and_ellipsoid():
    z, y, x = np.mgrid[:60, :60, :60]
    ball = (z - 30) ** 2 + (y - 30) ** 2 + (x - 30) ** 2 <= 20**2
    m = lesion_measures(ball, (1.0, 1.0, 1.0))
    assert list(m) == list(LESION_MEASURE_NAMES)
    assert m["lesion_volume_ml"] == pytest.approx(4 / 3 * np.pi * 20**3 / 1000, rel=0.01)
    # voxel union of a 20 mm-radius ball: 41 voxels across, faces at ±20.5 mm
    assert m["lesion_feret_mm"] == pytest.approx(41.0, abs=0.5)
    assert m["lesion_recist_long_mm"] == pytest.approx(41.0, abs=0.5)
    assert m["lesion_recist_short_mm"] == pytest.approx(41.0, abs=1.0)
    assert m["lesion_surface_mm2"] == pytest.approx(4 * np.pi * 20.5**2, rel=0.06)  # staircase surface
    assert 0.88 <= m["lesion_sphericity"] <= 0.95
    # ellipsoid semi-axes 30 (x) × 10 (y) × 20 (z) mm on 1 × 1 × 5 mm voxels: RECIST 61 × 21 mm
    z, y, x = np.mgrid[:20, :100, :100]
    ell = ((x - 50) / 30.0) ** 2 + ((y - 50) / 10.0) ** 2 + (((z - 10) * 5) / 20.0) ** 2 <= 1
    m = lesion_measures(ell, (1.0, 1.0, 5.0))
    assert m["lesion_recist_long_mm"] == pytest.approx(61.0, abs=0.5)
    assert m["lesion_recist_short_mm"] == pytest.approx(21.0, abs=0.5)
    assert m["lesion_feret_mm"] >= m["lesion_recist_long_mm"] > m["lesion_recist_short_mm"]
    assert m["lesion_sphericity"] < 0.8


def test_lesion_measures_are_in_the_table_beside_the_paper_features(tmp_path):
    from RadTyperLib.features import WU_FEATURE_NAMES
    from RadTyperLib.heterogeneity.indexes import default_features
    from RadTyperLib.subtypes.data import wu_feature_names

    assert len(WU_FEATURE_NAMES) == 313 and not any(n.startswith("lesion_") for n in WU_FEATURE_NAMES)
    assert not any(n.startswith("lesion_") for n in wu_feature_names())
    labels = np.zeros(SHAPE, np.uint16)
    labels[_ball((12, 32, 32), 8)] = 1
    labels[_ball((12, 14, 14), 5)] = 2
    image, mask = _case(tmp_path, labels)
    table, _ = patient_features(load_patient(image, mask), FeatureSettings(radiomics=False))
    assert list(table.columns[2:8]) == list(LESION_MEASURE_NAMES)
    row = table.iloc[0]
    assert row["lesion_volume_ml"] == pytest.approx(
        labels.astype(bool).sum() and (labels == 1).sum() * 2.0 / 1000
    )
    assert not any(c.startswith("lesion_") for c in default_features(table))
