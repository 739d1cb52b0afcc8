"""The Slicer-only panels on stand-ins for Qt, with Slicer's own ``VTKObservationMixin`` (from the kit) and real
MRML nodes (slicer-core): what they observe, how the embedded Segment Editor is set up, and the U-Net's torch.

Qt widgets are mocks (their calls are recorded); the observation bookkeeping is Slicer's own code of 5.12, on
real VTK objects, so "stops observing" means no VTK observer is left on the nodes.
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from pathlib import Path
from unittest import mock

import pytest

slicer = pytest.importorskip("slicer")
pytestmark = pytest.mark.mrml

REPO = Path(__file__).resolve().parents[1]
KIT_UTIL = REPO.parent / "shared" / "slicer-reference" / "5.12" / "Base" / "Python" / "slicer" / "util.py"
SEGMENT_EVENTS = ("SegmentAdded", "SegmentRemoved", "SegmentModified", "SourceRepresentationModified")


class FakeTimer:
    """qt.QTimer stand-in: records start/stop."""

    def __init__(self):
        self.started = 0
        self.active = False

    def setSingleShot(self, value):
        pass

    def setInterval(self, value):
        pass

    def connect(self, signal, slot):
        self.slot = slot

    def start(self):
        self.started += 1
        self.active = True

    def stop(self):
        self.active = False

    def isActive(self):
        return self.active

    @staticmethod
    def singleShot(msec, slot):
        slot()


class FakeFactory:
    def __init__(self):
        self.slots = []

    def instance(self):
        return self

    def connect(self, signal, slot):
        self.slots.append((signal, slot))

    def disconnect(self, signal, slot):
        self.slots.remove((signal, slot))


@pytest.fixture
def panel_env(monkeypatch):
    """Stand-in qt, slicer.util (Slicer's VTKObservationMixin), slicer.i18n, slicer.app; LesionsWidget module."""
    if not KIT_UTIL.is_file():
        pytest.skip(f"Slicer reference kit not available ({KIT_UTIL})")
    source = KIT_UTIL.read_text(encoding="utf-8")
    node = next(
        n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "VTKObservationMixin"
    )
    util = types.ModuleType("slicer.util")
    exec(compile(ast.Module([node], []), str(KIT_UTIL), "exec"), util.__dict__)
    util.errorDisplay = mock.Mock()
    util.confirmYesNoDisplay = mock.Mock(return_value=True)
    util.mainWindow = mock.Mock()
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    qt = mock.MagicMock()
    qt.QTimer = FakeTimer
    factory = FakeFactory()
    effects = types.ModuleType("qSlicerSegmentationsEditorEffectsPythonQt")
    effects.qSlicerSegmentEditorEffectFactory = lambda: factory
    for name, module in {
        "qt": qt,
        "slicer.util": util,
        "slicer.i18n": i18n,
        "qSlicerSegmentationsEditorEffectsPythonQt": effects,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slicer, "util", util, raising=False)
    monkeypatch.setattr(slicer, "i18n", i18n, raising=False)
    monkeypatch.setattr(slicer, "app", mock.MagicMock(), raising=False)
    monkeypatch.syspath_prepend(str(REPO / "RadTyperLesions"))
    for name in (
        "RadTyperLesionsLib.LesionsWidget",
        "RadTyperSlicerLib.GuiHelpers",
        "RadTyperSlicerLib.Dependencies",
    ):
        sys.modules.pop(name, None)
    module = importlib.import_module("RadTyperLesionsLib.LesionsWidget")
    yield types.SimpleNamespace(module=module, factory=factory)
    for name in (
        "RadTyperLesionsLib.LesionsWidget",
        "RadTyperSlicerLib.GuiHelpers",
        "RadTyperSlicerLib.Dependencies",
    ):
        sys.modules.pop(name, None)


@pytest.fixture
def scene_nodes():
    from RadTyperMRML import create_scene

    scene = create_scene()
    return types.SimpleNamespace(
        scene=scene,
        volume=scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode"),
        seg=scene.AddNewNodeByClass("vtkMRMLSegmentationNode"),
        points=scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode"),
        editor_node=scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode"),
    )


def make_panel(env, nodes):
    ui = mock.MagicMock()
    logic = mock.MagicMock()
    logic.lesions.site_names.return_value = ["lung", "liver", "unspecified"]
    logic.segmentEditorNode.return_value = nodes.editor_node
    logic.lesionRows.return_value = []
    panel = env.module.LesionsWidget(ui, logic, lambda name: f"/resources/{name}")
    params = types.SimpleNamespace(
        inputVolume=nodes.volume,
        inputSegmentation=nodes.seg,
        seedPoints=nodes.points,
        unetModel="",
        segmentOnPlace=True,
        segmentationMethod="classical",
        modality="auto",
    )
    return panel, ui, logic, params


def vtk_observed(nodes) -> bool:
    seg_events = [getattr(slicer.vtkSegmentation, e) for e in SEGMENT_EVENTS]
    return any(nodes.seg.HasObserver(e) for e in seg_events) or nodes.points.HasObserver(
        slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent
    )


def test_lesions_panel_stops_observing_when_the_user_leaves(panel_env, scene_nodes):
    panel, ui, _logic, params = make_panel(panel_env, scene_nodes)
    panel.setParameterNode(params)
    assert vtk_observed(scene_nodes) and len(panel.Observations) == len(SEGMENT_EVENTS) + 1
    panel.exit()
    assert panel.Observations == [] and not vtk_observed(scene_nodes)
    assert not panel.refreshTimer.isActive()
    started = panel.refreshTimer.started
    scene_nodes.seg.GetSegmentation().AddEmptySegment("new", "new")  # an edit elsewhere: no refresh
    assert panel.refreshTimer.started == started
    ui.segmentEditorWidget.removeViewObservations.assert_called()
    ui.segmentEditorWidget.uninstallKeyboardShortcuts.assert_called()
    panel.setParameterNode(params)  # entering again (initializeParameterNode) observes again
    assert vtk_observed(scene_nodes)
    scene_nodes.seg.GetSegmentation().AddEmptySegment("other", "other")
    assert panel.refreshTimer.started > started
    panel.cleanup()
    assert not vtk_observed(scene_nodes)


def test_embedded_segment_editor_is_set_up_like_slicers(panel_env, scene_nodes):
    panel, ui, _logic, params = make_panel(panel_env, scene_nodes)
    editor = ui.segmentEditorWidget
    editor.setMaximumNumberOfUndoStates.assert_called_with(10)
    # effects registered later (another extension) refresh the effect list
    [(signal, slot)] = panel_env.factory.slots
    assert signal == "effectRegistered(QString)"
    slot("SomeEffect")
    editor.updateEffectList.assert_called_once()
    # the editor node comes first, from the logic
    panel.setParameterNode(params)
    editor.setMRMLSegmentEditorNode.assert_called_with(scene_nodes.editor_node)
    # scene close: the editor lets go of the segmentation, the panel of its nodes
    editor.reset_mock()
    panel.sceneStartClose()
    editor.setSegmentationNode.assert_called_with(None)
    editor.removeViewObservations.assert_called()
    assert not vtk_observed(scene_nodes)
    panel.cleanup()
    assert panel_env.factory.slots == []


def test_module_sets_the_editor_node_before_the_scene():
    """RadTyperLesionsWidget.setup: setMRMLSegmentEditorNode before uiWidget.setMRMLScene (as SegmentEditor.py)."""
    source = (REPO / "RadTyperLesions" / "RadTyperLesions.py").read_text(encoding="utf-8")
    setup = next(
        f
        for c in ast.parse(source).body
        if isinstance(c, ast.ClassDef) and c.name == "RadTyperLesionsWidget"
        for f in c.body
        if isinstance(f, ast.FunctionDef) and f.name == "setup"
    )
    text = ast.get_source_segment(source, setup)
    assert 0 < text.index("setMRMLSegmentEditorNode") < text.index("uiWidget.setMRMLScene")


def test_unet_segmentation_asks_the_pytorch_extension_for_torch(panel_env, scene_nodes, monkeypatch):
    calls = []
    fake_torch = types.ModuleType("torch")

    class FakeLogic:
        def torchInstalled(self):
            return False

        def installTorch(self, askConfirmation=False, torchVersionRequirement=None, **kwargs):
            calls.append((askConfirmation, torchVersionRequirement))
            return fake_torch

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=FakeLogic))
    panel, _ui, logic, params = make_panel(panel_env, scene_nodes)
    panel.setParameterNode(params)
    monkeypatch.setattr(panel, "ensureRequirements", lambda: True)
    logic.segmentPoints.return_value = []
    params.segmentationMethod = "unet"
    panel.onSegmentAllPoints()
    assert calls == [(True, ">=2.1")]
    logic.segmentPoints.assert_called_once()
    panel.onAutoSegmentAll()
    assert len(calls) == 2
    logic.autoSegmentAll.assert_called_once()
    # the classical method needs no torch
    params.segmentationMethod = "classical"
    panel.onSegmentAllPoints()
    assert len(calls) == 2


def test_unet_without_the_pytorch_extension_is_a_clear_message(panel_env, scene_nodes, monkeypatch):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    panel, _ui, logic, params = make_panel(panel_env, scene_nodes)
    panel.setParameterNode(params)
    monkeypatch.setattr(panel, "ensureRequirements", lambda: True)
    params.segmentationMethod = "unet"
    panel.onSegmentAllPoints()
    logic.segmentPoints.assert_not_called()
    message = panel_env.module.slicer.util.errorDisplay.call_args[0][0]
    assert "PyTorch extension" in message and "Extensions Manager" in message


def test_torch_provider_uses_installed_torch_without_asking(monkeypatch):
    from RadTyperMRML.lesions_logic import ComponentMissingError
    from RadTyperMRML.torch_provider import ensure_torch

    fake_torch = types.ModuleType("torch")
    logic = mock.Mock()
    logic.torchInstalled.return_value = True
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=lambda: logic))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert ensure_torch() is fake_torch
    logic.installTorch.assert_not_called()
    logic.torchInstalled.return_value = False
    logic.installTorch.return_value = None  # the user declined
    with pytest.raises(ComponentMissingError, match="PyTorch was not installed"):
        ensure_torch()


def test_analysis_panel_reads_the_extra_phase_selector_at_compute(panel_env, scene_nodes, monkeypatch):
    """The checkable phase selector is a plain widget read at Compute; a refused mapping starts nothing."""
    from RadTyperLib.errors import InputError

    sys.modules.pop("RadTyperSlicerLib.AnalysisWidget", None)
    module = importlib.import_module("RadTyperSlicerLib.AnalysisWidget")
    try:
        monkeypatch.setattr(module, "showTables", mock.Mock())
        monkeypatch.setattr(module, "setSubtypeViewText", mock.Mock())
        ui, logic = mock.MagicMock(), mock.MagicMock()
        logic.analysis.heterogeneity_summary.return_value = []
        logic.analysis.shown_subtype.return_value = None
        ui.phaseVolumesSelector.checkedNodes.return_value = []
        panel = module.AnalysisWidget(ui, logic, lambda name: f"/resources/{name}")
        ui.phaseVolumesSelector.connect.assert_called_with("checkedNodesChanged()", panel.updatePhaseWidgets)
        assert ui.imagePhaseLineEdit.enabled is False  # no phase checked: its name is not used
        post = scene_nodes.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "DCE post 1")
        ui.phaseVolumesSelector.checkedNodes.return_value = [post]
        panel.updatePhaseWidgets()
        assert ui.imagePhaseLineEdit.enabled is True
        params = types.SimpleNamespace(
            inputVolume=scene_nodes.volume,
            inputSegmentation=scene_nodes.seg,
            imagePhase="pre",
            computeRadiomics=False,
            runInBackground=False,
            subtypeBundle="",
            showSubtypeInViews=True,
            lesionTable=None,
            patientTable=None,
        )
        panel.parameterNode = params
        panel.ensureRequirements = lambda: True
        panel.applyDisplay = mock.Mock()
        logic.phaseNodes.return_value = {"DCE-post-1": post}
        logic.compute.return_value.error_lines.return_value = []
        logic.compute.return_value.qc_lines.return_value = []
        panel.onCompute()
        logic.phaseNodes.assert_called_with(params, [post])
        assert logic.compute.call_args.kwargs["phaseVolumes"] == [post]
        done = f"Done. (phases: pre = '{scene_nodes.volume.GetName()}' (input), DCE-post-1 = 'DCE post 1')"
        assert ui.statusLabel.text == done
        # QC warnings of analysed lesions and failed lesions: counted on the status line, listed in its tooltip
        warning = "Lesion 'a': shape detail at the voxel noise: 9 of the 15 SPHARM energies …"
        failed = "Lesion 'b' not analysed: too small for shape analysis"
        logic.compute.return_value.error_lines.return_value = [failed]
        logic.compute.return_value.qc_lines.return_value = [warning]
        panel.onCompute()
        assert ui.statusLabel.text == f"{done} {failed} 1 QC warning(s): hover here for the list."
        assert ui.statusLabel.toolTip == f"{failed}\n{warning}"
        # a refused mapping (e.g. two volumes with one phase name): one message, nothing computed
        logic.reset_mock()
        logic.phaseNodes.side_effect = InputError("Phase volumes 'a' and 'b' both get the phase name 'a'")
        panel.onCompute()
        logic.compute.assert_not_called()
        logic.startJob.assert_not_called()
        assert "both get the phase name" in ui.statusLabel.text
        panel_env.module.slicer.util.errorDisplay.assert_called()
    finally:
        sys.modules.pop("RadTyperSlicerLib.AnalysisWidget", None)
