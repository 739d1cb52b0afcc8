"""The Sample Data demo patient is written without pynrrd (Slicer does not bundle it) and loads in Slicer's
own segmentation storage node (slicer-core) with names, colours and site tags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]

_BLOCKED = """
import sys
for name in ("nrrd", "pandas", "skimage", "sklearn", "matplotlib", "lifelines", "trimesh", "radiomics"):
    sys.modules[name] = None  # import fails: not bundled with Slicer
from RadTyperMRML.demo_data import write_demo_files
print(sorted(p.name for p in write_demo_files(sys.argv[1]).values()))
"""


def test_demo_files_are_written_with_slicers_bundled_packages_only(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "RadTyper")}
    run = subprocess.run(
        [sys.executable, "-c", _BLOCKED, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "RadTyperDemo_lesions.seg.nrrd" in run.stdout

    from RadTyperLib.io import read_seg_nrrd
    from RadTyperMRML.demo_data import demo_patient

    patient = demo_patient()
    labels, lesions = read_seg_nrrd(tmp_path / "RadTyperDemo_lesions.seg.nrrd")
    assert [(x.name, x.site) for x in lesions] == [(x.name, x.site) for x in patient.lesions]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(patient.labels))
    np.testing.assert_allclose(labels.GetOrigin(), patient.labels.GetOrigin())
    np.testing.assert_allclose(labels.GetDirection(), patient.labels.GetDirection())


@pytest.mark.mrml
def test_slicers_storage_node_reads_the_demo_segmentation(tmp_path):
    slicer = pytest.importorskip("slicer")
    import vtk

    from RadTyperMRML import create_scene
    from RadTyperMRML.demo_data import demo_patient, write_demo_files

    files = write_demo_files(tmp_path)
    scene = create_scene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(files["lesions"]))
    assert storage.ReadData(node)
    segmentation = node.GetSegmentation()
    patient = demo_patient()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == [x.name for x in patient.lesions]
    tag = vtk.reference("")
    segmentation.GetNthSegment(0).GetTag("RadTyper.Site", tag)
    assert str(tag) == patient.lesions[0].site
    assert isinstance(slicer.vtkMRMLSegmentationNode, type)


_LESIONS_WITHOUT_PACKAGES = """
import sys
for name in ("nrrd", "pandas", "skimage", "sklearn", "matplotlib", "lifelines", "trimesh", "radiomics",
             "threadpoolctl"):
    sys.modules[name] = None  # not bundled with Slicer
import RadTyperMRML as bridge
from RadTyperMRML.demo_data import load_demo_into_scene
from RadTyperMRML.lesions_logic import LesionsLogic

scene = bridge.create_scene()
volume, seg, _par = load_demo_into_scene(scene)
logic = LesionsLogic()
rows = logic.lesion_rows(volume, seg)
lung3 = next(r for r in rows if r.name == "lung_3")
logic.delete_lesion(seg, lung3.segment_id)
[outcome] = logic.add_lesions_from_points(volume, seg, [lung3.centre_ras], names=["again"], site="lung")
parenchyma = logic.compute_parenchyma(volume, seg)
print(len(rows), outcome.segment_id is not None, parenchyma.GetSegmentation().GetNumberOfSegments())
"""


@pytest.mark.mrml
def test_lesions_module_works_with_slicers_bundled_packages_only():
    """Lesion table, one-click segmentation and parenchyma need nothing beyond Slicer's numpy/SciPy/SimpleITK."""
    pytest.importorskip("slicer")
    env = {**os.environ, "PYTHONPATH": str(REPO / "RadTyper")}
    run = subprocess.run(
        [sys.executable, "-c", _LESIONS_WITHOUT_PACKAGES],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["8", "True", "1"]
    requirements = (REPO / "RadTyperLesions" / "Resources" / "RadTyperLesionsRequirements.txt").read_text()
    assert not [line for line in requirements.splitlines() if line.split("#")[0].strip()]
