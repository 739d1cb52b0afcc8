"""The ``radtyper`` command line through its installed entry point: help, info, demo, and bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from RadTyperLib.cli import build_parser

BIN = Path(sys.executable).parent / "radtyper"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``radtyper`` script (falls back to ``python -m`` when not installed as a script)."""
    cmd = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "RadTyperLib.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_help_for_every_subcommand():
    assert run("--help").returncode == 0
    names = _subcommands()
    assert {"info", "demo"} <= set(names)
    for name in names:
        res = run(name, "--help")
        assert res.returncode == 0, (name, res.stderr)
        assert f"usage: radtyper {name}" in res.stdout


@pytest.fixture
def case(tmp_path, oblique_case):
    image, labels = oblique_case
    sitk.WriteImage(image, str(tmp_path / "img.nrrd"))
    sitk.WriteImage(labels, str(tmp_path / "mask.nii.gz"))
    (tmp_path / "sites.csv").write_text("lesion,site\nlesion_1,lung\nlesion_2,liver\nlesion_3,bone\n")
    return tmp_path


def test_info_reports_geometry_lesions_and_sites(case):
    res = run("info", str(case / "img.nrrd"), str(case / "mask.nii.gz"), str(case / "sites.csv"), "--json")
    assert res.returncode == 0, res.stderr
    image, mask, sites = json.loads(res.stdout)
    assert image["kind"] == "image" and image["spacing_mm"] == pytest.approx([0.7, 0.9, 2.5])
    assert [les["lesion"] for les in mask["lesions"]] == ["lesion_1", "lesion_2", "lesion_3"]
    assert mask["lesions"][1]["volume_mm3"] == pytest.approx(3 * 6 * 8 * 0.7 * 0.9 * 2.5, rel=1e-5)
    assert sites["sites"] == {"lesion_1": "lung", "lesion_2": "liver", "lesion_3": "bone"}
    text = run("info", "--image", str(case / "img.nrrd"), "--lesions", str(case / "mask.nii.gz"))
    assert text.returncode == 0 and "lesion_2" in text.stdout and "3 lesion(s)" in text.stdout


def test_info_whole_patient_applies_sites(case):
    res = run(
        "info", "--image", str(case / "img.nrrd"), "--lesions", str(case / "mask.nii.gz"),
        "--sites", str(case / "sites.csv"), "--json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    (patient,) = json.loads(res.stdout)
    assert patient["sites"] == ["bone", "liver", "lung"] and patient["modality"] in ("CT", "MR")


def _expect_error(res: subprocess.CompletedProcess, *fragments: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr  # one line, no traceback
    assert lines[0].startswith("radtyper: error: ")
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


def test_bad_input_gives_one_line_errors(case):
    _expect_error(run("info", str(case / "missing.nrrd")), "missing.nrrd: file not found")
    # geometry mismatch: a mask on another grid
    image = sitk.ReadImage(str(case / "img.nrrd"))
    other = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    other.SetSpacing((1.0, 1.0, 1.0))
    other[3, 3, 3] = 1
    sitk.WriteImage(other, str(case / "other.nrrd"))
    _expect_error(
        run("info", "--image", str(case / "img.nrrd"), "--lesions", str(case / "other.nrrd")),
        "other.nrrd: spacing",
        "img.nrrd",
    )
    # empty mask
    sitk.WriteImage(other * 0, str(case / "empty.nrrd"))
    _expect_error(run("info", str(case / "empty.nrrd")), "empty.nrrd: empty mask")
    # non-integer mask given as lesions
    half = sitk.Cast(sitk.ReadImage(str(case / "mask.nii.gz")), sitk.sitkFloat32) * 0.5
    sitk.WriteImage(half, str(case / "half.nrrd"))
    _expect_error(
        run("info", "--image", str(case / "img.nrrd"), "--lesions", str(case / "half.nrrd")),
        "half.nrrd: non-integer mask values",
    )
    # unknown site
    (case / "bad_sites.csv").write_text("lesion,site\nlesion_2,mars\n")
    _expect_error(
        run(
            "info",
            "--image",
            str(case / "img.nrrd"),
            "--lesions",
            str(case / "mask.nii.gz"),
            "--sites",
            str(case / "bad_sites.csv"),
        ),
        "lesion 'lesion_2': unknown site 'mars'",
    )


@pytest.mark.slow
def test_demo_writes_a_consistent_patient(tmp_path):
    out = tmp_path / "demo-out"
    res = run("demo", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "demo: subtype S" in res.stdout and "report/index.html" in res.stdout
    assert "OUTSIDE THE MODEL'S DOMAIN" in res.stdout  # the demo patient is not a lung nodule
    for name in (
        "image.nrrd",
        "image_mr.nrrd",
        "lesions.seg.nrrd",
        "parenchyma.nrrd",
        "sites.csv",
        "lesions.csv",
    ):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging leftovers
    rows = list(csv.DictReader((out / "lesions.csv").open()))
    assert len(rows) >= 6 and len({r["site"] for r in rows}) >= 3
    # the files load back as one valid patient whose volumes match the table
    from RadTyperLib.io import load_patient

    p = load_patient(out / "image.nrrd", out / "lesions.seg.nrrd", parenchyma=out / "parenchyma.nrrd")
    for row in rows:
        assert p.lesion(row["lesion"]).site == row["site"]
        assert p.lesion_volume_mm3(row["lesion"]) == pytest.approx(float(row["volume_mm3"]), rel=1e-6)
    assert p.modality == "CT" and np.percentile(p.image_array(), 1) < -500
    _check_demo_subtype_and_report(out)


def _check_demo_subtype_and_report(out: Path) -> None:
    """subtype.csv = the shipped default model's prediction from features.csv; report/ links real figures."""
    import re

    import pandas as pd

    from RadTyperLib.subtypes import default_model_path, load_bundle, predict

    model_dir = default_model_path()
    assert model_dir is not None, "the default subtype model is part of the repository"
    model = load_bundle(model_dir)
    sub = pd.read_csv(out / "subtype.csv", dtype={"patient": str})
    assert list(sub.columns) == [
        "patient", "subtype", *[f"p_{s}" for s in model.subtypes], "in_domain", "domain_score", "domain_note"
    ]  # fmt: skip
    assert sub["patient"].tolist() == ["demo"] and sub["subtype"].iloc[0] in model.subtypes
    probs = sub[[f"p_{s}" for s in model.subtypes]].iloc[0]
    assert probs.sum() == pytest.approx(1.0, abs=1e-5) and (probs >= 0).all()
    assert probs.idxmax() == f"p_{sub['subtype'].iloc[0]}"
    again = predict(model_dir, out / "features.csv")  # the same prediction through the API
    np.testing.assert_allclose(again[probs.index].to_numpy()[0], probs.to_numpy(), atol=1e-6)

    index = out / "report" / "index.html"
    text = index.read_text(encoding="utf-8")
    srcs = re.findall(r'<img src="([^"]+)"', text)
    names = ("consensus.png", "consensus_cdf.png", "subtypes.png", "profile.png", "heterogeneity.png")
    for name in (*names, "calibration.png"):
        assert name in srcs, name
    assert "figures/recovery_curves.png" in srcs
    for src in srcs:
        png = out / "report" / src
        assert png.is_file() and png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Demo patient: predicted subtype" in text and "not for clinical use" in text
    # the demo patient (phantoms in liver, bone, lung …) is outside the lung-nodule model: marked as such
    if not bool(sub["in_domain"].iloc[0]):
        assert "OUTSIDE THE MODEL&#x27;S DOMAIN" in text or "OUTSIDE THE MODEL'S DOMAIN" in text
    assert "Brier score" in text
    assert f"<td>{sub['subtype'].iloc[0]}</td>" in text
    labels = pd.read_csv(model_dir / "labels.csv")
    assert f"{len(labels)} patient(s) in {model.k} subtype(s)." in text
    profile = pd.read_csv(out / "report" / "profile.csv", index_col=0)
    assert list(profile.index) == model.subtypes and int(profile["n"].sum()) == len(labels)


def test_failed_demo_writes_nothing(tmp_path, monkeypatch):
    """A failure in the middle of the demo leaves no output folder (nor a staging folder) behind."""
    from RadTyperLib import demo

    def boom(*_a, **_k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(demo, "write_lesion_table", boom)
    with pytest.raises(RuntimeError):
        demo.run_demo(tmp_path / "out", log=lambda _m: None)
    assert list(tmp_path.iterdir()) == []
