"""All-or-nothing outputs: a command that fails midway leaves no half-written output (issue 13).

Each test injects a failure late in one command (a disk-full ``OSError`` after some output files were already
made) and checks: exit 2 with one ``radtyper: error:`` line naming the file, and the output location exactly as
it was before (absent, or only its earlier content; no staging or temporary file left beside it).
"""

from __future__ import annotations

import errno

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from RadTyperLib.cli import main


def _disk_full(path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def _run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    _out, err = capsys.readouterr()
    return code, err


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("radtyper: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _tree(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name → content), hidden files included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _earlier(folder):
    """An output folder holding an earlier run's files; returns its content."""
    folder.mkdir()
    (folder / "notes.txt").write_text("kept\n")
    (folder / "labels.csv").write_text("patient,subtype\nold,S1\n")
    return _tree(folder)


# --- demo -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("existing", [False, True])
def test_demo_failing_midway_leaves_the_folder_as_it_was(tmp_path, capsys, monkeypatch, existing):
    from RadTyperLib import demo

    def half_then_fail(patient, out, log):
        (out / "features.csv").write_text("patient,lesion\ndemo,")  # half a table …
        raise _disk_full(out / "features.csv")  # … then the disk is full

    monkeypatch.setattr(demo, "write_features_and_reconstructions", half_then_fail)
    out = tmp_path / "demo"
    before = _earlier(out) if existing else None
    code, err = _run(capsys, "demo", "--out", out)
    assert code == 2 and "features.csv: No space left on device" in _error_line(err)
    assert [p.name for p in tmp_path.iterdir()] == (["demo"] if existing else [])
    if existing:
        assert _tree(out) == before  # no image.nrrd / lesions.csv of the failed run


# --- discover ---------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("one_torch_thread")
def test_discover_failing_midway_leaves_the_model_folder_as_it_was(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    import importlib

    discover_module = importlib.import_module("RadTyperLib.subtypes.discover")
    from RadTyperLib.subtypes.synthetic import planted_cohort

    table, _ = planted_cohort(60, 3, separation=2.0, factor_sd=0.5, seed=5)
    table.to_csv(tmp_path / "features.csv", index=False)

    def fail(cc, patients, d):
        d.mkdir(parents=True, exist_ok=True)
        (d / "cdf.csv").write_text("k,consensus_index")
        raise _disk_full(d / "summary.csv")

    monkeypatch.setattr(discover_module, "_write_consensus", fail)
    model = tmp_path / "model"
    before = _earlier(model)
    fast = ("--reps", 10, "--igp-permutations", 10, "--purity-repeats", 0, "--validation-fraction", 0)
    code, err = _run(capsys, "discover", tmp_path / "features.csv", "--out", model, "--k", 3, *fast)
    assert code == 2 and "summary.csv: No space left on device" in _error_line(err)
    assert _tree(model) == before  # model.json, classifier.joblib, labels.csv … of the failed run: none
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.csv", "model"]


# --- features with its companion files -----------------------------------------------------------------------
def _ball_case(tmp_path):
    z, y, x = np.indices((24, 32, 32), dtype=float)
    ball = ((z - 12) ** 2 + (y - 16) ** 2 + ((x - 16) / 1.3) ** 2 <= 36).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(ball), str(tmp_path / "mask.nrrd"))
    image = (-850.0 + 900.0 * ball + np.random.default_rng(0).normal(0, 20, ball.shape)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(image), str(tmp_path / "ct.nrrd"))
    return tmp_path / "ct.nrrd", tmp_path / "mask.nrrd"


def test_features_failing_on_the_last_file_keeps_the_earlier_table(tmp_path, capsys, monkeypatch):
    from RadTyperLib import coefficients

    image, mask = _ball_case(tmp_path)
    out = tmp_path / "features.csv"
    out.write_text("patient,lesion\nearlier,run\n")

    def fail(path, records):
        raise _disk_full(path)

    monkeypatch.setattr(coefficients, "save_coefficients", fail)
    argv = ("features", "--image", image, "--lesions", mask, "--no-radiomics", "--out", out)
    code, err = _run(capsys, *argv, "--coefficients", tmp_path / "coef.npz")
    assert code == 2 and "No space left on device" in _error_line(err)
    assert out.read_text() == "patient,lesion\nearlier,run\n"  # the new table is not half of a set
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nrrd", "features.csv", "mask.nrrd"]


# --- reconstruct with several degrees ---------------------------------------------------------------------
def test_reconstruct_several_degrees_failing_midway_writes_no_mesh(tmp_path, capsys, monkeypatch):
    pytest.importorskip("vtk")
    from RadTyperLib import render

    _ball_case(tmp_path)
    (tmp_path / "ct.nrrd").unlink()
    real, calls = render.write_mesh, []

    def second_fails(path, vertices, faces):
        calls.append(path)
        if len(calls) == 2:
            raise _disk_full(path)
        return real(path, vertices, faces)

    monkeypatch.setattr(render, "write_mesh", second_fails)
    argv = ("reconstruct", "--lesions", tmp_path / "mask.nrrd", "--lesion", "lesion_1", "--no-cache")
    code, err = _run(capsys, *argv, "--degree", "2,5,8", "--out", tmp_path / "mesh.vtk")
    assert code == 2 and "No space left on device" in _error_line(err)
    assert len(calls) == 2  # the degree-2 mesh was written (to a temporary file) before the failure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nrrd"]  # no mesh_l2.vtk, no temporary file
    # and without the failure every degree is there
    monkeypatch.setattr(render, "write_mesh", real)
    code, err = _run(capsys, *argv, "--degree", "2,5", "--out", tmp_path / "mesh.vtk")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nrrd", "mesh_l2.vtk", "mesh_l5.vtk"]


# --- report -----------------------------------------------------------------------------------------------
def test_report_failing_midway_leaves_no_calibration_figure(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    from RadTyperLib import report
    from RadTyperLib.subtypes.default_model import default_model_path

    made = []

    def fail(out_dir, _sections, **_options):
        made.extend(p.name for p in out_dir.iterdir())  # the model's calibration.png is already made
        (out_dir / "index.html").write_text("<html><body>half")
        raise _disk_full(out_dir / "index.html")

    monkeypatch.setattr(report, "write_html_report", fail)
    out = tmp_path / "report"
    code, err = _run(capsys, "report", "--model", default_model_path(), "--out", out)
    assert code == 2 and "index.html: No space left on device" in _error_line(err)
    assert "calibration.png" in made
    assert list(tmp_path.iterdir()) == []


# --- predict ----------------------------------------------------------------------------------------------
def test_predict_failing_midway_keeps_the_earlier_table(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    from RadTyperLib.io import read_feature_table
    from RadTyperLib.subtypes.default_model import default_model_path

    ref = read_feature_table(default_model_path() / "reference" / "features.csv.gz")
    patients = ref["patient"].drop_duplicates().head(3)
    ref[ref["patient"].isin(patients)].to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "pred.csv"
    out.write_text("patient,subtype\nold,S1\n")
    real = pd.DataFrame.to_csv

    def half_then_fail(self, path=None, *a, **k):
        with open(path, "w") as fh:
            fh.write("patient,sub")
        raise _disk_full(path)

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    code, err = _run(
        capsys, "predict", "--model", default_model_path(), "--features", tmp_path / "new.csv", "--out", out
    )
    monkeypatch.setattr(pd.DataFrame, "to_csv", real)
    assert code == 2 and "No space left on device" in _error_line(err)
    assert out.read_text() == "patient,subtype\nold,S1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv", "pred.csv"]


# --- seg train / eval / predict ---------------------------------------------------------------------------
@pytest.mark.usefixtures("one_torch_thread")
def test_seg_train_failing_midway_leaves_the_model_folder_as_it_was(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    from RadTyperLib.segmentation.unet.bundle import UNetBundle
    from RadTyperLib.segmentation.unet.synthetic import phantom_cohort

    manifest = phantom_cohort(
        tmp_path / "coh", 2, seed=4, spacing=(5.0, 5.0, 8.0), sites=("lung",), n_lesions=(1, 2)
    )

    def half_then_fail(self, directory):
        (directory / "weights.pt").write_bytes(b"\0" * 100)
        raise _disk_full(directory / "model.json")

    monkeypatch.setattr(UNetBundle, "save", half_then_fail)
    model = tmp_path / "model"
    before = _earlier(model)
    code, err = _run(
        capsys, "seg", "train", manifest, "--out", model, "--depth", "2", "--base-channels", "4", "--dilations",
        "1,2", "--patch-size", "32", "--batch-size", "2", "--steps-per-epoch", "1", "--epochs", "1",
        "--val-fraction", "0", "--threads", "1", "--quiet",
    )  # fmt: skip
    assert code == 2 and "model.json: No space left on device" in _error_line(err)
    assert _tree(model) == before  # no loss_curve.png / history.csv / weights of the failed run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coh", "model"]


@pytest.mark.usefixtures("one_torch_thread")
def test_seg_eval_failing_midway_leaves_no_table_or_segmentation(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    from test_unet_eval import oracle_cohort as make_oracle_cohort

    from RadTyperLib.segmentation.unet import evaluate

    manifest, model = make_oracle_cohort.__wrapped__(tmp_path, monkeypatch)
    real = evaluate.write_csv

    def second_fails(df, path, **k):
        if path.name == "lesions.csv":  # cases.csv and both segmentations are written by then
            raise _disk_full(path)
        return real(df, path, **k)

    monkeypatch.setattr(evaluate, "write_csv", second_fails)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = _run(
        capsys,
        "seg",
        "eval",
        manifest,
        "--model",
        model,
        "--out",
        tmp_path / "ev",
        "--save-seg",
        "--min-size-mm3",
        "0",
        "--quiet",
    )
    assert code == 2 and "lesions.csv: No space left on device" in _error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no ev/, no staging folder


@pytest.mark.usefixtures("one_torch_thread")
def test_seg_predict_failing_midway_keeps_the_earlier_segmentation(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    import nrrd
    from test_unet_infer import blob_image, install_oracle, random_bundle

    from RadTyperLib.io import write_image

    install_oracle(monkeypatch)
    img, _truth = blob_image()
    write_image(img, tmp_path / "img.nrrd")
    model = random_bundle().save(tmp_path / "model")
    out = tmp_path / "auto.seg.nrrd"
    out.write_bytes(b"earlier segmentation")

    def half_then_fail(filename, *a, **k):
        with open(filename, "wb") as fh:
            fh.write(b"NRRD0004\n")
        raise _disk_full(filename)

    monkeypatch.setattr(nrrd, "write", half_then_fail)
    code, err = _run(
        capsys,
        "seg",
        "predict",
        "--model",
        model,
        "--image",
        tmp_path / "img.nrrd",
        "--out",
        out,
        "--min-size-mm3",
        "0",
        "--modality",
        "CT",
        "--quiet",
    )
    assert code == 2 and "No space left on device" in _error_line(err)
    assert out.read_bytes() == b"earlier segmentation"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto.seg.nrrd", "img.nrrd", "model"]
