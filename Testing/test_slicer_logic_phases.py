"""The RadTyper panel's extra phase volumes (RadTyperMRML.phases) on slicer-core MRML nodes.

Checked volumes → ``{phase name: node}`` for ``AnalysisLogic.patient``: names sanitised to the phase-name
pattern, the input volume skipped, collisions and bad names refused with a message naming the volumes; the
mapping makes the multi-phase patient the background process receives as ``--image NAME=FILE``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("slicer")

import RadTyperMRML as bridge
from RadTyperLib.errors import InputError
from RadTyperLib.patient import PHASE_NAME
from RadTyperMRML.analysis_logic import AnalysisLogic
from RadTyperMRML.demo_data import load_demo_into_scene
from RadTyperMRML.phases import describe_phases, input_phase_name, phase_name_from, phase_nodes_from

pytestmark = pytest.mark.mrml


@pytest.mark.parametrize(
    ("node_name", "phase"),
    [
        ("post1", "post1"),
        ("DCE post 1", "DCE-post-1"),
        ("t1_ce", "t1-ce"),
        ("  T1 (post-contrast) #2 ", "T1-post-contrast-2"),
        ("2 min post", "p2-min-post"),
        ("_3", "p3"),
        ("Phase ä é", "Phase-a-e"),
        ("---", "phase"),
        ("", "phase"),
        ("Ü", "U"),
    ],
)
def test_phase_name_from_node_name(node_name, phase):
    assert phase_name_from(node_name) == phase
    assert PHASE_NAME.match(phase)


def test_phase_names_are_valid_for_any_node_name():
    """Over many random node names (any characters, long) the result always fits the pattern."""
    rng = np.random.default_rng(16)
    alphabet = [*"abcXYZ0129 _-.#()äßé/\\\t", "\u4e2d", "\U0001f600"]
    for _ in range(500):
        name = "".join(rng.choice(alphabet, size=int(rng.integers(0, 60))))
        phase = phase_name_from(name)
        assert PHASE_NAME.match(phase), (name, phase)
    assert len(phase_name_from("a" * 40 + "-b")) == 32
    assert phase_name_from("a" * 31 + "_b") == "a" * 31  # no trailing '-' after cutting at 32


def test_input_phase_name():
    assert input_phase_name("") == "image" and input_phase_name("  ") == "image" and input_phase_name(None)
    assert input_phase_name(" pre ") == "pre"
    with pytest.raises(InputError, match=r"Input volume's phase name 'pre_1'"):
        input_phase_name("pre_1")
    with pytest.raises(InputError, match="phase name '1pre'"):
        input_phase_name("1pre")


@pytest.fixture(scope="module")
def demo():
    """Demo patient in a scene + two post-contrast volumes on its grid and one on another grid."""
    import SimpleITK as sitk

    scene = bridge.create_scene()
    volume, seg, par = load_demo_into_scene(scene)
    image = sitk.Cast(bridge.volume_to_sitk(volume), sitk.sitkFloat32)
    post1 = bridge.sitk_to_volume(image * 1.5 + 100, scene, "DCE post 1")
    post2 = bridge.sitk_to_volume(image * 0.5, scene, "DCE post_2")
    moved = sitk.Image(image)
    moved.SetOrigin(tuple(o + 2.0 for o in image.GetOrigin()))
    other = bridge.sitk_to_volume(moved, scene, "moved")
    return scene, volume, seg, par, image, post1, post2, other


def test_checked_volumes_map_to_named_phases(demo):
    scene, volume, _seg, _par, _image, post1, post2, _other = demo
    # the input volume checked too (every phase of a series checked), a repeat, None: all skipped
    phases = phase_nodes_from([volume, post1, None, post2, post1], volume, "pre")
    assert list(phases) == ["DCE-post-1", "DCE-post-2"]
    assert phases["DCE-post-1"] is post1 and phases["DCE-post-2"] is post2
    # the same node fetched again from the scene (another wrapper) is still the input volume
    again = scene.GetNodeByID(volume.GetID())
    assert phase_nodes_from([again], volume, "pre") == {}
    assert phase_nodes_from(None, volume) == {} and phase_nodes_from([], volume, "") == {}
    assert describe_phases(phases, volume, "pre") == (
        f"phases: pre = '{volume.GetName()}' (input), DCE-post-1 = 'DCE post 1', DCE-post-2 = 'DCE post_2'"
    )


def test_colliding_or_bad_phases_are_refused(demo):
    scene, volume, seg, *_ = demo
    a = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "post 1")
    b = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "post_1")
    with pytest.raises(InputError, match=r"'post 1' and 'post_1' both get the phase name 'post-1'"):
        phase_nodes_from([a, b], volume, "pre")
    pre = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "pre")
    with pytest.raises(InputError, match=r"'pre' gets the phase name 'pre', which is the input volume's"):
        phase_nodes_from([pre], volume, "pre")
    image_named = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "image")
    with pytest.raises(InputError, match="input volume's"):
        phase_nodes_from([image_named], volume, "")  # blank input phase = "image"
    with pytest.raises(InputError, match="not a scalar volume"):
        phase_nodes_from([seg], volume, "pre")
    with pytest.raises(InputError, match="Input volume's phase name"):
        phase_nodes_from([a], volume, "pre phase")
    # without pyradiomics the phases would give no column at all: refused, not ignored
    with pytest.raises(InputError, match="need the radiomics features"):
        phase_nodes_from([a], volume, "pre", radiomics=False)
    assert phase_nodes_from([volume], volume, "pre", radiomics=False) == {}  # no extra phase: fine
    for node in (a, b, pre, image_named):
        scene.RemoveNode(node)


def test_mapping_makes_the_multiphase_patient(demo):
    """The panel's mapping feeds AnalysisLogic.patient: each phase's voxels, the input's phase name."""
    import SimpleITK as sitk

    _scene, volume, seg, par, image, post1, post2, other = demo
    logic = AnalysisLogic()
    phases = phase_nodes_from([post1, post2], volume, input_phase_name("pre"))
    patient = logic.patient(volume, seg, par, phase_nodes=phases, image_phase="pre")
    assert list(patient.all_phases()) == ["pre", "DCE-post-1", "DCE-post-2"]
    expected = sitk.GetArrayViewFromImage(image)
    np.testing.assert_allclose(
        sitk.GetArrayViewFromImage(patient.phases["DCE-post-1"]), expected * 1.5 + 100, rtol=1e-6
    )
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(patient.phases["DCE-post-2"]), expected * 0.5)
    assert patient.sources["image_DCE-post-1"] == "volume 'DCE post 1'"
    # a phase off the input volume's grid: the error names the phase, nothing is resampled
    with pytest.raises(InputError, match=r"phase 'moved'.*does not\s+resample"):
        logic.patient(
            volume, seg, par, phase_nodes=phase_nodes_from([other], volume, "pre"), image_phase="pre"
        )


# --- the module's logic entry points (RadTyper.py's RadTyperLogic, run on stand-in bases) ------------------
def radtyper_logic_class():
    """``RadTyperLogic`` executed from RadTyper.py with a plain base class (no Slicer application needed)."""
    import ast
    import pathlib
    import types

    import slicer

    source = pathlib.Path(__file__).resolve().parents[1] / "RadTyper" / "RadTyper.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RadTyperLogic")
    base = type("ScriptedLoadableModuleLogic", (), {"__init__": lambda self: None})
    namespace = {"ScriptedLoadableModuleLogic": base, "slicer": slicer, "pathlib": pathlib}
    module = types.ModuleType("radtyper_logic_under_test")
    module.__dict__.update(namespace)
    exec(compile(ast.Module([node], []), str(source), "exec"), module.__dict__)
    return module.RadTyperLogic


def test_module_logic_passes_the_checked_phases_to_the_analysis(demo):
    """RadTyperLogic.startJob/compute: checked volumes → phase_nodes, imagePhase → image_phase."""
    import types
    from unittest import mock

    _scene, volume, seg, par, _image, post1, _post2, _other = demo
    logic = radtyper_logic_class()()
    logic._analysis = mock.Mock()
    parameters = types.SimpleNamespace(
        inputVolume=volume,
        inputSegmentation=seg,
        parenchymaSegmentation=par,
        modality="auto",
        imagePhase="pre",
        spharmDegree=15,
        regionMode="2d",
        computeRadiomics=True,
        keepGoing=True,
        iithReference="",
    )
    logic.startJob(parameters, phaseVolumes=[volume, post1], python="py")
    kwargs = logic._analysis.start_job.call_args.kwargs
    assert kwargs["phase_nodes"] == {"DCE-post-1": post1} and kwargs["image_phase"] == "pre"
    assert logic._analysis.start_job.call_args.args == (volume, seg, par)
    logic._analysis.reset_mock()
    parameters.imagePhase = ""  # blank field = "image"; no phases checked = {}
    logic.startJob(parameters)
    kwargs = logic._analysis.start_job.call_args.kwargs
    assert kwargs["phase_nodes"] == {} and kwargs["image_phase"] == "image"
    # refused before anything starts
    logic._analysis.reset_mock()
    parameters.computeRadiomics = False
    with pytest.raises(InputError, match="need the radiomics features"):
        logic.startJob(parameters, phaseVolumes=[post1])
    with pytest.raises(InputError, match="need the radiomics features"):
        logic.compute(parameters, phaseVolumes=[post1])
    logic._analysis.start_job.assert_not_called()
    logic._analysis.compute.assert_not_called()
