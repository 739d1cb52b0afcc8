"""RadTyper Web without a browser: the session logic on Slicer's MRML classes (slicer-core), the
recovery-curve SVG and the ``radtyper view`` command-line checks."""

from __future__ import annotations

import csv
import socket
import time

import numpy as np
import pytest
import SimpleITK as sitk

from RadTyperLib.errors import InputError
from RadTyperLib.measures import lesion_measures
from RadTyperWeb.plots import recovery_svg

slicer = pytest.importorskip("slicer", reason="needs the slicer-core wheel (mrml extra)")
pytestmark = pytest.mark.mrml


# --- recovery curve SVG -----------------------------------------------------------------------------------
def test_recovery_svg_draws_both_series():
    pts = [{"k": k, "ath_mean": 50 + 10 * i, "mtd_mean": 40 + 12 * i} for i, k in enumerate(range(2, 7))]
    svg = recovery_svg(pts)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 10
    assert recovery_svg([]) == ""


# --- the session ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_session(tmp_path_factory):
    from RadTyperMRML import create_scene
    from RadTyperWeb.session import PatientSource, ViewerSession

    session = ViewerSession(create_scene(), tmp_path_factory.mktemp("web-out"))
    session.load(PatientSource.demo_patient())
    return session


def test_demo_lesion_table(demo_session):
    from RadTyperMRML.demo_data import demo_patient

    rows = demo_session.lesion_rows()
    patient = demo_patient()
    assert [r["name"] for r in rows] == [les.name for les in patient.lesions]
    voxel_ml = float(np.prod(patient.spacing)) / 1000.0
    counts = patient.voxel_counts()
    for row, les in zip(rows, patient.lesions, strict=True):
        assert row["site"] == les.site
        assert row["volume_ml"] == pytest.approx(counts[les.label] * voxel_ml, abs=5.01e-4)  # rounded to 1 µL
        mask = patient.lesion_mask(les)
        assert row["diameter_mm"] == pytest.approx(
            lesion_measures(mask, patient.spacing)["lesion_feret_mm"], abs=0.05
        )
        assert row["review"] == "unreviewed"
    # QC flags come from the lesions logic: the demo's lung_2 has two pieces
    assert "disconnected" in next(r for r in rows if r["name"] == "lung_2")["flags"]


def test_features_file_lists_failed_lesions_and_qc_warnings(demo_session):
    """A features file with a ``--keep-going`` failed row: the failure and the QC warnings are both listed."""
    import pandas as pd

    frame = pd.DataFrame(
        [
            {"lesion": "a", "qc_error": "", "qc_energy_at_voxel_noise": 14, "qc_radius_voxels": 4.4},
            {
                "lesion": "b",
                "qc_error": "too small for shape analysis: 3 voxel(s)",
                "qc_energy_at_voxel_noise": 0,
            },
        ]
    )
    view = demo_session.analyse_features(frame)
    assert view.errors == {"b": "too small for shape analysis: 3 voxel(s)"}
    assert view.qc_lines[0] == "Lesion 'b' not analysed: too small for shape analysis: 3 voxel(s)"
    assert len(view.qc_lines) == 2
    assert view.qc_lines[1].startswith("Lesion 'a': shape detail at the voxel noise: 14 of the 15")


def test_jump_moves_every_slice_view_to_the_lesion(demo_session):
    scene = demo_session.scene
    for tag in ("Red", "Green", "Yellow"):
        if scene.GetSingletonNode(tag, "vtkMRMLSliceNode") is None:
            node = slicer.vtkMRMLSliceNode()
            node.SetName(tag)
            node.SetLayoutName(tag)
            node.SetSingletonTag(tag)
            node.SetOrientation({"Red": "Axial", "Green": "Coronal", "Yellow": "Sagittal"}[tag])
            scene.AddNode(node)
    centre = np.array(demo_session.jump_to("liver_1"))
    assert demo_session.selected == "liver_1"
    for tag in ("Red", "Green", "Yellow"):
        node = scene.GetSingletonNode(tag, "vtkMRMLSliceNode")
        m = node.GetSliceToRAS()
        origin = np.array([m.GetElement(i, 3) for i in range(3)])
        normal = np.array([m.GetElement(i, 2) for i in range(3)])
        assert abs(np.dot(origin - centre, normal)) < 1e-6  # the slice plane passes through the centre
    with pytest.raises(InputError, match="not in the segmentation"):
        demo_session.jump_to("no_such_lesion")


def test_review_csv_and_save_never_overwrite(demo_session, tmp_path):
    from RadTyperLib.io import read_seg_nrrd
    from RadTyperMRML.demo_data import demo_patient

    row = demo_session.set_review("lung_3", status="flagged", comment="margin\nunclear")
    assert row["comment"] == "margin unclear"
    demo_session.set_review("liver_1", status="accepted")
    demo_session.set_review("lung_3", comment="checked on coronal")
    rows = {r["lesion"]: r for r in csv.DictReader(demo_session.review.path.open(encoding="utf-8"))}
    assert rows["lung_3"]["status"] == "flagged" and rows["lung_3"]["comment"] == "checked on coronal"
    assert rows["liver_1"]["status"] == "accepted" and rows["liver_1"]["patient"] == "RadTyper demo"
    with pytest.raises(InputError, match="review status"):
        demo_session.set_review("lung_3", status="maybe")
    assert {r["name"]: r["review"] for r in demo_session.lesion_rows()}["lung_3"] == "flagged"

    target = tmp_path / "reviewed.seg.nrrd"
    assert demo_session.save_segmentation(target) == target
    _labels, lesions = read_seg_nrrd(target)
    patient = demo_patient()
    assert [les.name for les in lesions] == [les.name for les in patient.lesions]
    assert [les.site for les in lesions] == [les.site for les in patient.lesions]
    before = target.read_bytes()
    with pytest.raises(InputError, match="exists already"):
        demo_session.save_segmentation(target)
    assert target.read_bytes() == before
    with pytest.raises(InputError, match=r"seg\.nrrd"):
        demo_session.save_segmentation(tmp_path / "x.nii.gz")
    assert not (tmp_path / "x.nii.gz").exists()


def _write_patient_files(folder, *, other_grid: bool = False):
    from RadTyperLib.io import write_image, write_seg_nrrd
    from RadTyperLib.patient import Lesion

    image = sitk.GetImageFromArray(np.full((20, 40, 40), -800, dtype=np.int16))
    image.SetSpacing((1.0, 1.0, 2.0))
    arr = sitk.GetArrayFromImage(image)
    z, y, x = np.mgrid[:20, :40, :40]
    ball = (x - 20) ** 2 + (y - 20) ** 2 + (2 * (z - 10)) ** 2 <= 36
    arr[ball] = 40
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((1.0, 1.0, 2.0))
    labels = sitk.GetImageFromArray(ball.astype(np.uint8))
    labels.CopyInformation(image)
    if other_grid:
        labels.SetSpacing((0.8, 1.0, 2.0))
    write_image(image, folder / "image.nrrd")
    write_seg_nrrd(folder / "lesions.seg.nrrd", labels, [Lesion(1, "nodule", "lung", (0.9, 0.3, 0.2))])
    return folder / "image.nrrd", folder / "lesions.seg.nrrd"


def test_bad_inputs_leave_the_session_unchanged(demo_session, tmp_path):
    from RadTyperWeb.session import PatientSource

    (tmp_path / "broken.nrrd").write_bytes(b"NRRD0004\nnot an image\n")
    image, lesions = _write_patient_files(tmp_path, other_grid=True)
    before = [r["name"] for r in demo_session.lesion_rows()]
    with pytest.raises(InputError, match=r"broken\.nrrd"):
        demo_session.load(PatientSource("x", image=tmp_path / "broken.nrrd", lesions=lesions))
    with pytest.raises(InputError, match=r"lesions\.seg\.nrrd"):
        demo_session.load(PatientSource("y", image=image, lesions=lesions))
    with pytest.raises(InputError, match=r"missing\.nrrd"):
        demo_session.load(PatientSource("z", image=tmp_path / "missing.nrrd", lesions=lesions))
    assert demo_session.patient_id == "RadTyper demo"
    assert [r["name"] for r in demo_session.lesion_rows()] == before


def test_cohort_folder_lists_the_manifest_patients(tmp_path):
    from RadTyperLib.cohort import CaseSpec, write_manifest
    from RadTyperWeb.session import read_cohort

    with pytest.raises(InputError, match=r"manifest\.csv"):
        read_cohort(tmp_path)
    image, lesions = _write_patient_files(tmp_path)
    write_manifest(
        tmp_path / "manifest.csv",
        [CaseSpec("P1", str(image), str(lesions)), CaseSpec("P 2", str(image), str(lesions), modality="CT")],
    )
    (tmp_path / "patients").mkdir()
    (tmp_path / "patients" / "P1.csv").write_text("lesion,site\nnodule,lung\n", encoding="utf-8")
    sources = read_cohort(tmp_path)
    assert [s.patient for s in sources] == ["P1", "P 2"]
    assert sources[0].features == tmp_path / "patients" / "P1.csv" and sources[1].features is None
    assert sources[0].image == image and sources[1].modality == "CT"


def test_one_click_adds_a_lesion_and_refuses_air(tmp_path):
    from RadTyperLib.errors import LesionError
    from RadTyperLib.phantoms import make_patient
    from RadTyperMRML import create_scene
    from RadTyperWeb.session import PatientSource, ViewerSession

    patient = make_patient(0, modality="CT", patient_id="click")
    from RadTyperLib.io import write_patient

    files = write_patient(patient, tmp_path / "in")
    session = ViewerSession(create_scene(), tmp_path / "out")
    session.load(PatientSource("click", image=files["image"], lesions=files["lesions"]))
    rows = session.lesion_rows()
    target = next(r for r in rows if r["name"] == "lung_3")  # a solid lung nodule: high contrast
    centre_ras = session.lesions_logic.lesion_centre_ras(session.volume, session.segmentation, target["id"])
    session.segmentation.GetSegmentation().RemoveSegment(target["id"])  # as if it had not been drawn
    outcome = session.add_lesion_at(centre_ras)
    rows_after = session.lesion_rows()
    assert len(rows_after) == len(rows)
    added = next(r for r in rows_after if r["name"] == outcome.name)
    assert added["volume_ml"] == pytest.approx(outcome.volume_mm3 / 1000, abs=1e-3)
    # the new segment covers the nodule that was removed (the seeded method may add a blurred rim)
    from RadTyperMRML.bridge import segment_on_volume_grid

    box, mask, _n, _out = segment_on_volume_grid(session.segmentation, added["id"], session.volume)
    grown = np.zeros(sitk.GetArrayViewFromImage(patient.labels).shape, dtype=bool)
    grown[box] = mask
    truth = patient.lesion_mask(next(les for les in patient.lesions if les.name == "lung_3"))
    assert np.count_nonzero(grown & truth) >= 0.8 * np.count_nonzero(truth)
    lps_corner = np.array(patient.image.GetOrigin())
    with pytest.raises(LesionError):
        session.add_lesion_at((-lps_corner[0] - 1, -lps_corner[1] - 1, lps_corner[2] + 1))  # air outside
    assert len(session.lesion_rows()) == len(rows)
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.slow
def test_compute_then_degree_slider_and_shells(tmp_path):
    """Background analysis → reconstruction models; the degree swaps the stored vertices (no refit)."""
    from vtk.util import numpy_support

    from RadTyperMRML import create_scene
    from RadTyperMRML.analysis_logic import DEGREE_ARRAY
    from RadTyperWeb.session import PatientSource, ViewerSession

    session = ViewerSession(create_scene(), tmp_path)
    session.load(PatientSource.demo_patient())
    session.start_compute(radiomics=False)
    t_end = time.monotonic() + 600
    while session.poll_compute() == "running" and time.monotonic() < t_end:
        time.sleep(0.2)
    a = session.analysis
    assert a.source == "computed" and not a.errors
    assert a.subtype is not None and a.subtype.subtype.startswith("S")
    assert sum(a.subtype.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert a.subtype.domain  # "domain: not checked" unless the model reports in_domain
    assert any("MTD" in line for line in a.heterogeneity_lines)
    assert a.recovery and a.recovery[-1]["ath_mean"] == pytest.approx(100.0)
    # the QC warnings of the command line, one line per warning (the demo's small lesions: voxel noise)
    assert any(line.startswith("Lesion 'liver_1': shape detail at the voxel noise") for line in a.qc_lines)
    session.select("liver_1")
    node = session.reconstruction_node()
    assert session.max_degree() == 15
    poly = node.GetPolyData()
    for degree in (1, 4, 15):
        assert session.set_degree(degree) == degree
        shown = numpy_support.vtk_to_numpy(poly.GetPoints().GetData())
        stored = numpy_support.vtk_to_numpy(poly.GetPointData().GetArray(DEGREE_ARRAY.format(degree)))
        np.testing.assert_array_equal(shown, stored)
    d1 = numpy_support.vtk_to_numpy(poly.GetPointData().GetArray(DEGREE_ARRAY.format(1)))
    d15 = numpy_support.vtk_to_numpy(poly.GetPointData().GetArray(DEGREE_ARRAY.format(15)))
    assert np.abs(d1 - d15).max() > 0.5  # the degrees differ (mm)
    # only the selected lesion is shown; one shell of it toggles
    models = session.analysis_logic.reconstruction_models(session.segmentation)
    assert [n for n, m in models.items() if m.GetDisplayNode().GetVisibility()] == ["liver_1"]
    assert session.set_shell("PM10", True) == 1
    shells = session.shells_node()
    visible = [
        shells.GetSegmentation().GetNthSegment(i).GetName()
        for i in range(shells.GetSegmentation().GetNumberOfSegments())
        if shells.GetDisplayNode().GetSegmentVisibility(shells.GetSegmentation().GetNthSegmentID(i))
    ]
    assert sorted(visible) == ["liver_1 PM10"]
    # the same features given as a file (--features / a cohort's rows): the same subtype, no Compute
    from RadTyperMRML.bridge import table_to_dataframe

    table = session.analysis_logic.output_node("lesion_table", session.segmentation)
    features_csv = tmp_path / "features.csv"
    table_to_dataframe(table).to_csv(features_csv, index=False)
    other = ViewerSession(create_scene(), tmp_path / "other")
    from RadTyperLib.io import write_patient
    from RadTyperMRML.demo_data import demo_patient

    files = write_patient(demo_patient(), tmp_path / "demo-files")
    other.load(
        PatientSource("RadTyper demo", image=files["image"], lesions=files["lesions"], features=features_csv)
    )
    assert other.analysis.source == "features file"
    assert other.analysis.subtype.subtype == a.subtype.subtype
    assert other.analysis.subtype.probabilities == pytest.approx(a.subtype.probabilities, abs=1e-6)
    assert any("MTD" in line for line in other.analysis.heterogeneity_lines)
    assert other.analysis.qc_lines == a.qc_lines  # the same warnings from the file's QC columns
    # cancel: nothing left behind
    job = session.start_compute(radiomics=False)
    assert session.cancel_compute() and job.state == "cancelled" and not job.work_dir.exists()


# --- command line -----------------------------------------------------------------------------------------
def test_view_command_line_errors(capsys):
    from RadTyperLib.cli import main

    assert main(["view", "--demo", "--image", "a.nrrd", "--lesions", "b.nrrd", "--no-browser"]) == 2
    assert "give exactly one of" in capsys.readouterr().err
    assert main(["view", "--image", "a.nrrd", "--no-browser"]) == 2
    assert "--image and --lesions go together" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["view", "--demo", "--no-browser", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"radtyper: error: port {port} on 127.0.0.1 is in use")
    assert main(["view", "--cohort", "/nonexistent/cohort", "--no-browser"]) == 2
    assert "cohort folder not found" in capsys.readouterr().err


def test_view_without_the_web_extra_says_so(monkeypatch, capsys):
    import builtins

    from RadTyperLib.cli import main

    real_import = builtins.__import__

    def no_trame(name, *args, **kwargs):
        if name.split(".")[0] in ("trame", "trame_slicer"):
            raise ImportError(f"No module named '{name}'", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_trame)
    assert main(["view", "--demo", "--no-browser"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'radtyper[web]'" in err[0]
