"""Long analyses in a background process (RadTyperLib.jobs) and their loading into MRML nodes.

The job is what the Slicer module runs behind its progress bar: start → progress lines parsed → result
folder → table nodes; cancel → the process is gone and no result exists; a failing child reports its error.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.features import Cancelled, FeatureSettings
from RadTyperLib.jobs import (
    AnalysisFiles,
    BackgroundJob,
    analysis_command,
    format_progress,
    load_display,
    parse_progress,
    run_analysis,
    start_analysis_job,
    write_inputs,
)

SETTINGS = FeatureSettings(radiomics=False)


@pytest.fixture(scope="module")
def patient():
    from RadTyperLib.phantoms import make_patient

    return make_patient(0, patient_id="job test")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): check its state
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


# --- progress lines ---------------------------------------------------------------------------------------
def test_progress_lines_round_trip():
    assert format_progress(0.125, "lesion 'x' (1/8)") == "[ 12.5 %] lesion 'x' (1/8)"
    assert parse_progress("[ 12.5 %] lesion 'x' (1/8)") == (0.125, "lesion 'x' (1/8)")
    assert parse_progress("[100.0 %] done\n") == (1.0, "done")
    assert parse_progress("[  0.0 %] ") == (0.0, "")
    for line in ("features: 8 lesion(s)", "radtyper: error: bad", "[abc %] x", ""):
        assert parse_progress(line) is None
    assert format_progress(1.7, "clipped") == "[100.0 %] clipped"


# --- in this process --------------------------------------------------------------------------------------
def test_run_analysis_writes_a_complete_result_folder(patient, tmp_path):
    seen = []
    files = run_analysis(
        patient,
        tmp_path / "r",
        SETTINGS,
        lesions=["lung_1", "node_1"],
        progress=lambda f, m: seen.append((f, m)),
    )
    files.check()
    assert sorted(p.name for p in files.folder.iterdir()) == [
        "display.npz",
        "features.csv",
        "heterogeneity",
        "summary.json",
    ]
    summary = files.read_summary()
    assert summary["lesions"] == ["lung_1", "node_1"] and summary["errors"] == {}
    assert summary["heterogeneity"]["status"] == "ok" and summary["patient"] == "job test"
    assert [m for _f, m in seen] == [
        "lesion 'lung_1' (1/2)",
        "lesion 'node_1' (2/2)",
        "heterogeneity",
        "done",
    ]
    displays = load_display(files.display)
    assert [d.name for d in displays] == ["lung_1", "node_1"]
    d = displays[0]
    assert d.reconstructions.shape == (15, 2562, 3) and d.faces.shape == (5120, 3)
    assert set(d.shells) == {"TC", "TIM", "PM5", "PM10"}
    # shells are crops placed at their offset: PM10 contains the lesion
    full = np.zeros(patient.label_array().shape, bool)
    z, y, x = d.shell_offset_zyx
    sz, sy, sx = d.shells["PM10"].shape
    full[z : z + sz, y : y + sy, x : x + sx] = d.shells["PM10"]
    assert np.all(full[patient.lesion_mask("lung_1")])
    assert np.array_equal(d.reconstruction(99), d.reconstructions[-1]) and d.max_degree == 15
    with pytest.raises(InputError, match="exists already"):
        run_analysis(patient, files.folder, SETTINGS, lesions=["lung_1"])
    with pytest.raises(InputError, match="not a finished RadTyper analysis"):
        AnalysisFiles.of(tmp_path).check()


def test_cancel_between_lesions_leaves_nothing(patient, tmp_path):
    calls = []

    def should_cancel():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled, match="after 1 of 3"):
        run_analysis(
            patient,
            tmp_path / "r",
            SETTINGS,
            lesions=["lung_1", "lung_2", "lung_3"],
            should_cancel=should_cancel,
        )
    assert list(tmp_path.iterdir()) == []


# --- background process -----------------------------------------------------------------------------------
def test_command_line(patient, tmp_path):
    inputs = write_inputs(patient, tmp_path / "in")
    assert sorted(inputs) == ["image", "lesions", "parenchyma", "sites"]
    cmd = analysis_command(
        inputs,
        tmp_path / "out",
        FeatureSettings(degree=10, region_mode="3d", radiomics=False),
        modality="ct",
        patient_id="p",
        lesions=["a b"],
        python="py",
    )
    assert cmd[:3] == ["py", "-m", "RadTyperLib.jobs"]
    joined = " ".join(cmd)
    for part in (
        "--modality CT",
        "--patient-id p",
        "--degree 10",
        "--region-mode 3d",
        "--no-radiomics",
        "--keep-going",
    ):
        assert part in joined
    assert cmd[-2:] == ["--lesion", "a b"]
    with pytest.raises(InputError, match="custom pyradiomics settings"):
        analysis_command(inputs, tmp_path / "out", FeatureSettings(radiomics_params={"setting": {}}))


def test_background_job_reports_progress_and_its_result_loads_into_tables(patient, tmp_path):
    pytest.importorskip("slicer")
    import RadTyperMRML as bridge
    from RadTyperMRML.analysis_logic import AnalysisLogic

    scene = bridge.create_scene()
    volume = bridge.sitk_to_volume(patient.image, scene, "CT")
    seg = bridge.labels_to_segmentation(
        patient.labels, patient.lesions, scene, "lesions", reference_volume_node=volume
    )
    logic = AnalysisLogic()
    job = logic.start_job(
        volume, seg, settings=SETTINGS, lesions=["lung_1", "liver_2"], python=sys.executable
    )
    assert job.state == "running" and job.pid is not None
    fractions = []
    deadline = time.monotonic() + 240
    while job.poll() == "running" and time.monotonic() < deadline:
        fractions.append(job.fraction)
        time.sleep(0.05)
    assert job.state == "finished", "\n".join(job.log)
    assert job.fraction == 1.0 and job.returncode == 0
    progress = [parse_progress(line) for line in job.log if parse_progress(line) is not None]
    assert [m for _f, m in progress] == [
        "lesion 'lung_1' (1/2)",
        "lesion 'liver_2' (2/2)",
        "heterogeneity",
        "done",
    ]
    assert [f for f, _m in progress] == [0.0, 0.45, 0.9, 1.0]
    assert fractions == sorted(fractions)

    outputs = logic.load_results(job.result_dir, volume, seg)
    table = bridge.table_to_dataframe(outputs.lesion_table)
    assert list(table["lesion"]) == ["lung_1", "liver_2"] and table["patient"][0] == "CT"
    assert outputs.patient_table.GetNumberOfRows() == 1
    assert sorted(outputs.reconstructions) == ["liver_2", "lung_1"]
    assert outputs.shells.GetSegmentation().GetNumberOfSegments() == 8
    work = job.work_dir
    job.cleanup()
    assert not work.exists()


def test_cancel_kills_the_process_and_leaves_no_output(patient):
    job = start_analysis_job(patient, SETTINGS, python=sys.executable)  # all 8 lesions: several seconds
    deadline = time.monotonic() + 120
    while job.poll() == "running" and not job.log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.state == "running", "\n".join(job.log)
    pid, result, work = job.pid, job.result_dir, job.work_dir
    job.cancel()
    assert job.state == "cancelled" and job.returncode is not None and job.returncode != 0
    assert not _alive(pid)
    assert not result.exists() and not work.exists()
    assert job.poll() == "cancelled"


def test_a_failing_child_reports_its_error(tmp_path):
    inputs = {"image": tmp_path / "missing.nrrd", "lesions": tmp_path / "missing.seg.nrrd"}
    job = BackgroundJob(
        analysis_command(inputs, tmp_path / "out", SETTINGS, python=sys.executable),
        tmp_path / "out",
        work_dir=tmp_path / "work",
    )
    assert job.start().wait(timeout=120) == "failed"
    assert job.returncode == 2
    assert "missing.nrrd: file not found" in job.error
    assert not (tmp_path / "out").exists()


# A launcher like Slicer's PythonSlicer: it starts the real Python as its own child and waits for it.
_LAUNCHER = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; print('[  1.0 %] working', flush=True); time.sleep(300)"])
open(sys.argv[1], "w").write(str(child.pid))
sys.exit(child.wait())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups (Windows uses taskkill /T)")
def test_cancel_kills_the_whole_process_tree(tmp_path):
    """Cancel must not leave the launcher's child (the process doing the work) running."""
    pid_file = tmp_path / "grandchild.pid"
    job = BackgroundJob(
        [sys.executable, "-c", _LAUNCHER, str(pid_file)], tmp_path / "out", work_dir=tmp_path / "work"
    ).start()
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    while job.poll() == "running" and job.fraction == 0.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert job.fraction == pytest.approx(0.01)  # the grandchild's output reaches the job
    assert _alive(job.pid) and _alive(grandchild)
    job.cancel()
    assert job.state == "cancelled"
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(job.pid)
    assert not _alive(grandchild), "the launcher's child survived Cancel"


def test_process_options_isolate_the_child_and_hide_the_console(monkeypatch):
    from RadTyperLib import jobs

    assert jobs.process_group_options() == {"start_new_session": True} or sys.platform == "win32"
    monkeypatch.setattr(jobs.sys, "platform", "win32")
    flags = jobs.process_group_options()["creationflags"]
    assert flags & 0x08000000  # CREATE_NO_WINDOW: no console window in Slicer on Windows
    assert flags & 0x00000200  # CREATE_NEW_PROCESS_GROUP


# --- a job bound to its nodes (what the Slicer module polls) ----------------------------------------------
def _scene_with(patient, names=("lesions",)):
    import RadTyperMRML as bridge

    scene = bridge.create_scene()
    volume = bridge.sitk_to_volume(patient.image, scene, "CT")
    segs = [
        bridge.labels_to_segmentation(
            patient.labels, patient.lesions, scene, name, reference_volume_node=volume
        )
        for name in names
    ]
    return scene, volume, segs


def test_job_results_go_onto_the_nodes_it_was_started_on(patient):
    pytest.importorskip("slicer")
    from RadTyperMRML.analysis_logic import SOURCE_REFERENCE, AnalysisLogic

    scene, volume, (started_on, selected_later) = _scene_with(patient, ("first", "second"))
    logic = AnalysisLogic()
    job = logic.start_job(volume, started_on, settings=SETTINGS, lesions=["lung_1"], python=sys.executable)
    # the user selects another segmentation while the job runs: the GUI calls job.load() without nodes
    assert job.wait(timeout=240) == "finished", "\n".join(job.log)
    outputs = job.load()
    job.cleanup()
    assert outputs.lesion_table.GetNodeReferenceID(SOURCE_REFERENCE) == started_on.GetID()
    assert logic.output_node("lesion_table", started_on) is outputs.lesion_table
    assert logic.output_node("lesion_table", selected_later) is None
    assert scene.GetNodeByID(outputs.lesion_table.GetID()) is not None


def test_job_whose_nodes_left_the_scene_is_discarded(patient):
    pytest.importorskip("slicer")
    from RadTyperMRML.analysis_logic import AnalysisLogic

    scene, volume, (seg,) = _scene_with(patient)
    logic = AnalysisLogic()
    job = logic.start_job(volume, seg, settings=SETTINGS, lesions=["lung_1"], python=sys.executable)
    assert job.wait(timeout=240) == "finished", "\n".join(job.log)
    scene.RemoveNode(seg)
    with pytest.raises(InputError, match="no longer in the scene"):
        job.load()
    job.cleanup()
    assert logic.output_node("lesion_table", volume) is None


def test_closing_the_scene_cancels_the_job(patient):
    pytest.importorskip("slicer")
    from RadTyperMRML.analysis_logic import AnalysisLogic

    scene, volume, (seg,) = _scene_with(patient)
    job = AnalysisLogic().start_job(volume, seg, settings=SETTINGS, python=sys.executable)  # 8 lesions
    deadline = time.monotonic() + 120
    while job.poll() == "running" and not job.log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.state == "running", "\n".join(job.log)
    pid, work = job.pid, job.work_dir
    scene.Clear(0)  # File > Close Scene
    assert job.closed_by_scene and job.state == "cancelled"
    assert not _alive(pid) and not work.exists()
    with pytest.raises(InputError, match="did not finish"):
        job.load()
