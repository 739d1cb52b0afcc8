"""``radtyper seg train | predict | eval`` end to end through ``RadTyperLib.cli.main``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch")

from test_unet_infer import blob_image, index_to_lps, install_oracle, random_bundle  # noqa: E402

from RadTyperLib.cli import main  # noqa: E402
from RadTyperLib.io import read_seg_nrrd, write_image  # noqa: E402
from RadTyperLib.segmentation.unet.synthetic import phantom_cohort  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def blob_files(tmp_path):
    img, truth = blob_image()
    write_image(img, tmp_path / "img.nrrd")
    empty, _ = blob_image(blobs=[])
    write_image(empty, tmp_path / "empty.nrrd")
    return img, truth, tmp_path


def test_help_texts(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["seg", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "train" in text and "predict" in text and "eval" in text and "dilated bottleneck" in text
    for cmd, words in (
        ("train", ["--val-fraction", "--context", "loss_curve.png"]),
        ("predict", ["--roi", "--point", "--min-size-mm3", "memory-bounded"]),
        ("eval", ["--subtype-model", "Hausdorff 95", "summary.json"]),
    ):
        with pytest.raises(SystemExit):
            main(["seg", cmd, "--help"])
        out = capsys.readouterr().out
        assert all(w in out for w in words), (cmd, out)


def test_train_then_eval_end_to_end(tmp_path, capsys):
    manifest = phantom_cohort(
        tmp_path / "coh", 3, seed=4, spacing=(5.0, 5.0, 8.0), sites=("lung",), n_lesions=(2, 3)
    )
    model = tmp_path / "model"
    rc = main(
        [
            "seg", "train", str(manifest), "--out", str(model), "--depth", "2", "--base-channels", "4",
            "--dilations", "1,2", "--patch-size", "32", "--batch-size", "2", "--steps-per-epoch", "3",
            "--epochs", "2", "--val-fraction", "0.34", "--threads", "1", "--quiet",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "seg train: 2 training / 1 validation patient(s), 2 epoch(s)" in out
    assert (model / "model.json").is_file() and (model / "loss_curve.png").is_file()
    meta = json.loads((model / "model.json").read_text())
    assert meta["architecture"]["depth"] == 2 and meta["spacing_mm"] == 5.0 and meta["modality"] == "CT"

    rc = main(["seg", "eval", str(manifest), "--model", str(model), "--out", str(tmp_path / "ev"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "seg eval: 3 patient(s): mean Dice" in out and "subtype agreement skipped" in out
    with open(tmp_path / "ev" / "cases.csv", newline="") as fh:
        assert [r["patient"] for r in csv.DictReader(fh)] == ["phantom_001", "phantom_002", "phantom_003"]


def predict(model, image, out, *extra):
    """``radtyper seg predict`` argument list."""
    return ["seg", "predict", "--model", str(model), "--image", str(image), "--out", str(out), *extra]


def test_predict_writes_named_segments(blob_files, monkeypatch, capsys):
    install_oracle(monkeypatch)
    img, truth, d = blob_files
    model = random_bundle().save(d / "model")
    out = d / "auto.seg.nrrd"
    rc = main(predict(model, d / "img.nrrd", out, "--modality", "CT", "--min-size-mm3", "300", "--quiet"))
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "seg predict: 2 lesion(s) (1 smaller than 300 mm³ dropped)" in text
    labels, lesions = read_seg_nrrd(out)
    assert [les.name for les in lesions] == ["lesion_1", "lesion_2"]
    assert np.array_equal(sitk.GetArrayFromImage(labels) > 0, (truth == 1) | (truth == 2))
    assert labels.GetSpacing() == pytest.approx(img.GetSpacing())

    # at a clicked point (blob 2), and within an ROI (blob 3)
    p = ",".join(f"{v:.4f}" for v in index_to_lps(img, (12, 40, 50)))
    rc = main(predict(model, d / "img.nrrd", out, f"--point={p}", "--modality", "CT", "--min-size-mm3", "0"))
    assert rc == 0 and "seg predict: 1 lesion(s)" in capsys.readouterr().out
    labels, _ = read_seg_nrrd(out)
    assert np.array_equal(sitk.GetArrayFromImage(labels) > 0, truth == 2)
    corners = np.array([index_to_lps(img, (z, y, x)) for z in (2, 8) for y in (38, 52) for x in (8, 22)])
    roi = ",".join(f"{v:.4f}" for v in (*corners.min(0), *corners.max(0)))
    rc = main(predict(model, d / "img.nrrd", out, f"--roi={roi}", "--modality", "CT", "--min-size-mm3", "0"))
    assert rc == 0 and "seg predict: 1 lesion(s)" in capsys.readouterr().out
    labels, _ = read_seg_nrrd(out)
    assert np.array_equal(sitk.GetArrayFromImage(labels) > 0, truth == 3)


def test_predict_on_an_image_without_lesion_writes_nothing(blob_files, monkeypatch, capsys):
    install_oracle(monkeypatch)
    _, _, d = blob_files
    model = random_bundle().save(d / "model")
    out = d / "none.seg.nrrd"
    rc = main(predict(model, d / "empty.nrrd", out, "--modality", "CT"))
    cap = capsys.readouterr()
    assert rc == 0 and not out.exists()
    assert "seg predict: no lesion found in the image (probability ≥ 0.5, volume ≥ 50 mm³)" in cap.err
    assert f"nothing written to {out}" in cap.out


def test_bad_input_is_one_error_line(blob_files, capsys, tmp_path):
    _, _, d = blob_files
    mr = random_bundle(modality="MR").save(d / "mr")
    rc = main(predict(mr, d / "img.nrrd", d / "x.seg.nrrd", "--modality", "CT"))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("radtyper: error: model 'mr' was trained on MR images but ")
    assert "img.nrrd is CT (declared): use a CT model" in err
    rc = main(predict(mr, d / "img.nrrd", d / "x.nrrd"))
    assert (
        rc == 2 and "--out must be a Slicer segmentation file ending in .seg.nrrd" in capsys.readouterr().err
    )
    rc = main(predict(mr, d / "img.nrrd", d / "x.seg.nrrd", "--point", "1,2"))
    assert (
        rc == 2 and "--point: expected 3 comma-separated numbers, got 2 in '1,2'" in capsys.readouterr().err
    )
    rc = main(predict(d / "nowhere", d / "img.nrrd", d / "x.seg.nrrd"))
    assert rc == 2 and "U-Net model folder not found" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("patient,image,lesions\np1,missing.nrrd,missing_label.nrrd\n")
    rc = main(["seg", "train", str(bad), "--out", str(tmp_path / "m"), "--quiet"])
    assert rc == 2 and "missing.nrrd: file not found" in capsys.readouterr().err
    rc = main(["seg", "train", str(bad), "--out", str(tmp_path / "m"), "--dilations", "1,x"])
    assert rc == 2 and "--dilations: expected comma-separated integers" in capsys.readouterr().err
