"""Cohort extraction: manifest, failures, crash-safe rerun after SIGKILL, process pool and Dask = in-process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from RadTyperLib.cohort import (
    CaseSpec,
    extract_cohort,
    patient_file_stem,
    read_cohort_table,
    read_manifest,
)
from RadTyperLib.errors import InputError
from RadTyperLib.features import Cancelled, FeatureSettings
from RadTyperLib.io import write_patient
from RadTyperLib.patient import Lesion, Patient
from RadTyperLib.phantoms import LesionSpec, make_patient

SETTINGS = FeatureSettings(radiomics=False)
SPACING = (2.0, 2.0, 3.0)
LUNG = LesionSpec("lung_1", "lung", "sphere", 6.0, (-72.0, -25.0, 62.0), mean=35.0)
LIVER = LesionSpec("liver_1", "liver", "ellipsoid", (9.0, 7.0, 6.0), (-60.0, -20.0, -60.0), mean=85.0)
NODE = LesionSpec("node_1", "lymph_node", "ellipsoid", (7.0, 5.0, 6.0), (-4.0, 18.0, 72.0), mean=45.0)
GOOD_LESIONS = {"P1": 2, "P2": 2, "P3": 1}  # P3 also has a 1-voxel lesion "tiny" (fails)


def _with_tiny_lesion(p: Patient) -> Patient:
    """Add a 1-voxel lesion (label 2) 8 slices away from lesion 1."""
    arr = sitk.GetArrayFromImage(p.labels)
    z, y, x = np.argwhere(arr == 1)[0]
    arr[z + 8, y, x] = 2
    labels = sitk.GetImageFromArray(arr)
    labels.CopyInformation(p.labels)
    return Patient(p.image, labels, [*p.lesions, Lesion(2, "tiny", "lung")], p.parenchyma, p.patient_id)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    """3 synthetic patients + 1 whose mask file is missing; manifest with relative paths."""
    root = tmp_path_factory.mktemp("cohort")
    specs = {"P1": [LUNG, LIVER], "P2": [LIVER, NODE], "P3": [NODE]}
    rows = ["patient,image,lesions,parenchyma,sites,modality,cancer_type"]
    for i, (pid, lesions) in enumerate(specs.items()):
        p = make_patient(i, lesions=lesions, spacing=SPACING, patient_id=pid)
        if pid == "P3":
            p = _with_tiny_lesion(p)
        write_patient(p, root / "data" / pid)
        d = f"data/{pid}"
        rows.append(f"{pid},{d}/image.nrrd,{d}/lesions.seg.nrrd,{d}/parenchyma.nrrd,{d}/sites.csv,CT,NSCLC")
    rows.append("P4,data/P1/image.nrrd,data/P4/missing.seg.nrrd,,,auto,BRCA")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    t0 = time.perf_counter()
    reference = extract_cohort(manifest, root / "reference", settings=SETTINGS, workers=1, quiet=True)
    return {"root": root, "manifest": manifest, "reference": reference, "t_ref": time.perf_counter() - t0}


# --- manifest ---------------------------------------------------------------------------------------------
def test_read_manifest_resolves_relative_paths(cohort):
    cases = read_manifest(cohort["manifest"])
    assert [c.patient for c in cases] == ["P1", "P2", "P3", "P4"]
    c1 = cases[0]
    assert Path(c1.image) == (cohort["root"] / "data/P1/image.nrrd").resolve()
    assert Path(c1.parenchyma).is_file() and Path(c1.sites).is_file()
    assert (c1.modality, c1.cancer_type, c1.line) == ("CT", "NSCLC", 2)
    assert cases[3].parenchyma is None and cases[3].sites is None and cases[3].modality == "auto"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("patient,image\nA,a.nrrd\n", "line 1: missing required column(s) lesions"),
        (
            "patient,image,lesions\nA,a.nrrd,m.nrrd\nB,b.nrrd,n.nrrd\nA,c.nrrd,o.nrrd\n",
            "line 4: patient 'A' already listed on line 2",
        ),
        ("patient,image,lesions\nA,a.nrrd,\n", "line 2: empty 'lesions'"),
        ("patient,image,lesions,modality\nA,a.nrrd,m.nrrd,XR\n", "line 2: modality 'XR'"),
        ("patient,image,lesions,parenchym\nA,a.nrrd,m.nrrd,p.nrrd\n", "unknown column(s) 'parenchym'"),
        ("patient,image,lesions\n", "lists no patient"),
        ("Patient,Image,Lesions\nA,a.nrrd,m.nrrd,extra\n", "line 2: 4 cells, the header has 3"),
    ],
)
def test_read_manifest_errors(tmp_path, text, message):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=None) as info:
        read_manifest(path)
    assert message in str(info.value)
    assert "m.csv" in str(info.value)


def test_patient_file_stem_is_safe_and_unique():
    assert patient_file_stem("TCGA-05-4244") == "TCGA-05-4244"
    a, b = patient_file_stem("a/b"), patient_file_stem("a b")
    assert "/" not in a and " " not in b and a != b
    assert not patient_file_stem("..").startswith(".")


# --- extraction -------------------------------------------------------------------------------------------
def test_extract_all_lesions_and_logs_failures(cohort):
    ref = cohort["reference"]
    t = ref.features
    assert ref.computed == ["P1", "P2", "P3"] and ref.skipped == [] and ref.failed_patients == ["P4"]
    assert list(t["patient"].unique()) == ["P1", "P2", "P3"]  # manifest order
    assert t.groupby("patient").size().to_dict() == {"P1": 2, "P2": 2, "P3": 2}
    assert list(t.columns[-4:]) == ["patient", "modality", "feature_pipeline", "cancer_type"]
    assert set(t["cancer_type"]) == {"NSCLC"} and set(t["modality"]) == {"CT"}
    good = t[t["qc_error"] == ""]
    assert len(good) == sum(GOOD_LESIONS.values())
    feats = [c for c in t.columns if c.startswith(("shape_", "burden_", "region_"))]
    assert len(feats) == 313 and np.isfinite(good[feats].to_numpy(float)).mean() > 0.95
    tiny = t[t["lesion"] == "tiny"].iloc[0]
    assert tiny["patient"] == "P3" and "too small" in tiny["qc_error"] and np.isnan(tiny["burden_volume_mm3"])
    # failures.csv: the 1-voxel lesion and the patient whose mask file is missing
    fails = pd.read_csv(ref.paths["failures"], keep_default_na=False)
    assert list(fails.columns) == ["patient", "lesion", "reason"]
    assert fails[["patient", "lesion"]].values.tolist() == [["P3", "tiny"], ["P4", ""]]
    assert "missing.seg.nrrd: file not found" in fails["reason"].iloc[1]
    # files: one per finished patient, none for the failed one; features.csv = returned table
    out = cohort["root"] / "reference"
    assert sorted(p.name for p in (out / "patients").iterdir()) == ["P1.csv", "P2.csv", "P3.csv"]
    pd.testing.assert_frame_equal(read_cohort_table(out / "features.csv"), t)


def test_rerun_skips_finished_patients_and_refuses_other_settings(cohort, tmp_path):
    out = cohort["root"] / "reference"
    stats = {p.name: p.stat() for p in (out / "patients").iterdir()}
    again = extract_cohort(cohort["manifest"], out, settings=SETTINGS, quiet=True)
    assert again.skipped == ["P1", "P2", "P3"] and again.computed == []
    assert again.failed_patients == ["P4"]  # a patient that could not be loaded is retried
    for p in (out / "patients").iterdir():
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == (stats[p.name].st_ino, stats[p.name].st_mtime_ns)
    pd.testing.assert_frame_equal(again.features, cohort["reference"].features)
    with pytest.raises(InputError, match="other feature settings \\(degree\\)"):
        extract_cohort(cohort["manifest"], out, settings=FeatureSettings(radiomics=False, degree=10))


def test_progress_callback(cohort, tmp_path):
    cases = read_manifest(cohort["manifest"])[:1]
    calls: list[tuple[float, str]] = []
    extract_cohort(cases, tmp_path / "out", settings=SETTINGS, progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("lesion 'lung_1' done" in m for _, m in calls)
    assert any("P1.csv" in m for _, m in calls)


def test_cancel_keeps_finished_patients(cohort, tmp_path):
    messages: list[str] = []
    out = tmp_path / "cancelled"
    with pytest.raises(Cancelled, match="cancelled after 1 of 4 patient"):
        extract_cohort(
            cohort["manifest"],
            out,
            settings=SETTINGS,
            progress=lambda f, m: messages.append(m),
            should_cancel=lambda: any("P1.csv" in m for m in messages),
        )
    assert [p.name for p in (out / "patients").iterdir()] == ["P1.csv"]
    assert not (out / "features.csv").exists()
    assert [m for m in messages if "lesion" in m and "done" in m] == [
        "P1: lesion 'lung_1' done (1/2)",
        "P1: lesion 'liver_1' done (2/2)",
    ]


def test_killed_extraction_resumes_without_recomputing(cohort, tmp_path):
    """SIGKILL the extraction after the first patient file appears; the rerun completes the rest only."""
    out = tmp_path / "killed"
    code = (
        "from RadTyperLib.cohort import extract_cohort\n"
        "from RadTyperLib.features import FeatureSettings\n"
        f"extract_cohort({str(cohort['manifest'])!r}, {str(out)!r}, "
        "settings=FeatureSettings(radiomics=False), workers=1, quiet=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pdir = out / "patients"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if pdir.is_dir() and any(
                p.suffix == ".csv" and not p.name.startswith(".") for p in pdir.iterdir()
            ):
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"extraction ended before the kill: {proc.communicate()[1][-2000:]!r}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "features.csv").exists()
    finished = sorted(p for p in pdir.glob("*.csv") if not p.name.startswith("."))
    assert 1 <= len(finished) < 3
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished}
    for p in finished:  # complete files only (atomic rename)
        assert len(read_cohort_table(p)) == 2

    resumed = extract_cohort(cohort["manifest"], out, settings=SETTINGS, workers=1, quiet=True)
    done_before = [p.removesuffix(".csv") for p in before]
    assert resumed.skipped == done_before
    assert resumed.computed == [p for p in ["P1", "P2", "P3"] if p not in done_before]
    for name, stamp in before.items():
        p = pdir / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp  # not rewritten
    assert not [p for p in pdir.iterdir() if p.name.startswith(".")]  # no temporary file left
    pd.testing.assert_frame_equal(read_cohort_table(out / "features.csv"), cohort["reference"].features)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "failures.csv"), pd.read_csv(cohort["reference"].paths["failures"])
    )


@pytest.mark.parametrize("workers", [2, 3])
def test_more_workers_give_the_same_table(cohort, tmp_path, workers):
    """Bit-identical to the 1-worker run. 2 workers: P1-P3 are whole-patient tasks; 3 workers: P1, P2 whole,
    P3 split into lesion tasks (the tail), so both kinds of task are compared."""
    result = extract_cohort(
        cohort["manifest"], tmp_path / "w", settings=SETTINGS, workers=workers, quiet=True
    )
    assert result.computed == ["P1", "P2", "P3"]
    assert result.n_lesions_computed == cohort["reference"].n_lesions_computed == 6
    pd.testing.assert_frame_equal(result.features, cohort["reference"].features, check_exact=True)
    pd.testing.assert_frame_equal(result.failures, cohort["reference"].failures, check_exact=True)
    for name in ("P1", "P2", "P3"):  # the files themselves, byte for byte
        a = (tmp_path / "w" / "patients" / f"{name}.csv").read_bytes()
        assert a == (cohort["reference"].paths["patients"] / f"{name}.csv").read_bytes()


def test_tasks_run_with_one_thread_and_restore_the_limits():
    from threadpoolctl import threadpool_info

    from RadTyperLib.cohort import _limited

    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(2, before))
    try:
        with _limited(True):
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info())
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == max(2, before)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def test_dask_cluster_gives_the_same_table(cohort, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        result = extract_cohort(
            cohort["manifest"],
            tmp_path / "dask",
            settings=SETTINGS,
            dask_address=cluster.scheduler_address,
            quiet=True,
        )
    assert result.computed == ["P1", "P2", "P3"]
    pd.testing.assert_frame_equal(result.features, cohort["reference"].features)


def test_dask_unreachable_scheduler_is_an_input_error(cohort, tmp_path):
    pytest.importorskip("distributed")
    with pytest.raises(InputError, match="cannot connect to the Dask scheduler"):
        extract_cohort(
            cohort["manifest"],
            tmp_path / "x",
            settings=SETTINGS,
            dask_address="tcp://127.0.0.1:9",
            dask_timeout=2,
            quiet=True,
        )


def test_case_specs_accepted_and_bad_workers(cohort, tmp_path):
    case = CaseSpec("X", "/nonexistent/image.nrrd", "/nonexistent/mask.nrrd")
    result = extract_cohort([case], tmp_path / "x", settings=SETTINGS, quiet=True)
    assert result.failed_patients == ["X"] and result.features.empty
    assert list(result.features.columns) == ["lesion", "site", "patient", "modality", "cancer_type"]
    with pytest.raises(InputError, match="workers"):
        extract_cohort([case], tmp_path / "y", settings=SETTINGS, workers=0, quiet=True)


# --- multi-phase manifests (IITH) ---------------------------------------------------------------------------
def test_manifest_phase_columns(tmp_path):
    from RadTyperLib.cohort import write_manifest

    path = tmp_path / "m.csv"
    path.write_text("patient,image,lesions,phase,image_post1,image_post-2\nA,a.nrrd,m.nrrd,pre,b.nrrd,\n")
    (case,) = read_manifest(path)
    assert case.phase == "pre" and case.phases == (("post1", str((tmp_path / "b.nrrd").resolve())),)
    write_manifest(tmp_path / "w.csv", [case])
    assert read_manifest(tmp_path / "w.csv") == [case]
    path.write_text("patient,image,lesions,image_post_1\nA,a.nrrd,m.nrrd,b.nrrd\n")
    with pytest.raises(InputError, match=r"m.csv, line 1: column 'image_post_1': phase name"):
        read_manifest(path)
    path.write_text("patient,image,lesions,phase\nA,a.nrrd,m.nrrd,pre contrast\n")
    with pytest.raises(InputError, match=r"m.csv, line 2: phase name"):
        read_manifest(path)


def test_extract_multiphase_cohort(tmp_path):
    pytest.importorskip("radiomics")
    from RadTyperLib.io import write_image
    from RadTyperLib.phantoms_dce import make_dce_patient

    p = make_dce_patient((150.0,), pitch_mm=36.0).patient
    files = {k: write_image(img, tmp_path / f"{k}.nrrd") for k, img in p.all_phases().items()}
    write_image(p.labels, tmp_path / "lesions.nrrd")
    write_image(p.parenchyma, tmp_path / "paren.nrrd")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "patient,image,lesions,parenchyma,modality,phase,image_post\n"
        f"D,{files['pre']},lesions.nrrd,paren.nrrd,MR,pre,{files['post'].name}\n"
    )
    res = extract_cohort(manifest, tmp_path / "out", settings=FeatureSettings(), workers=1, quiet=True)
    t = res.features
    cols = [c for c in t.columns if c.startswith("iith_")]
    assert len(cols) == 2 * 4 * 44 and {c.split("_")[1] for c in cols} == {"pre", "post"}
    assert t[cols].notna().all().all() and len(res.failures) == 0


_WORKER_FILE_SCRIPT = """
import os, sys
sys.path.insert(0, sys.argv[1])
from concurrent.futures import ProcessPoolExecutor
from RadTyperLib import cohort
ctx = cohort._pool_context("auto")
with ProcessPoolExecutor(1, mp_context=ctx) as pool:
    got = pool.submit(eval, "__import__('os').path.realpath(__import__('RadTyperLib.cohort').cohort.__file__)")
    print(ctx.get_start_method(), got.result() == os.path.realpath(cohort.__file__))
"""


@pytest.mark.parametrize("pythonpath", [True, False])
def test_pool_workers_import_this_radtyperlib(pythonpath):
    """forkserver (Python < 3.13) ignores a sys.path changed at run time: the pool must then use spawn, never
    a worker running another copy of RadTyperLib (e.g. an installed one)."""
    tree = str(Path(__file__).resolve().parents[1] / "RadTyper")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = tree
    out = subprocess.run(
        [sys.executable, "-c", _WORKER_FILE_SCRIPT, tree],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout.split()
    assert out[1] == "True", out
    if pythonpath and "forkserver" in __import__("multiprocessing").get_all_start_methods():
        assert out[0] == "forkserver"
