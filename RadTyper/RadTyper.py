"""RadTyper: per-lesion measurements of a patient with several lesions, written to a table.

Thin Slicer front end: the numerics live in ``RadTyperLib`` (no Slicer imports) and the MRML ⇄ core
conversions in ``RadTyperMRML.bridge``. Both, and every package that is not bundled with Slicer, are
imported inside the functions that use them, never at module scope.
"""

import logging
from typing import Annotated

import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

#
# RadTyper
#


class RadTyper(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("RadTyper")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["The RadTyper developers"]
        self.parent.helpText = _("""
RadTyper characterises every lesion of a patient (shape, margin, radiomics) and the heterogeneity between
lesions, toward imaging subtypes.
<p>What this version does: for the selected volume and lesion segmentation (one segment per lesion),
<b>Compute</b> writes a table with one row per lesion: its name, anatomical site (set in the RadTyper Lesions
module), volume in mm³ and centroid (LPS patient coordinates in mm, as in the radtyper command-line tables).
The optional parenchyma segmentation is checked against the volume but not used yet. SPHARM shape,
margin-shell and radiomics features come in later versions; the SPHARM degree setting is disabled until
then.</p>
<p>The first <b>Compute</b> offers to install the Python packages RadTyper needs.</p>
See the <a href="https://github.com/radtyper/SlicerRadTyper">project page</a>.
""")
        self.parent.acknowledgementText = _("""
RadTyper is developed by the RadTyper developers and released under the Apache License 2.0.
Its module layout follows the 3D Slicer scripted-module template by Jean-Christophe Fillion-Robin (Kitware),
Andras Lasso (PerkLab) and Steve Pieper (Isomics).
""")


#
# Python package dependencies
#


def installPythonRequirements(requirementsPath: str, requester: str = "RadTyper") -> None:
    """Make sure the packages listed in ``requirementsPath`` are installed, asking the user first.

    Call it where the packages are first needed (an Apply button), never at import time or in a constructor.
    On Slicer ≥ 5.12 this is ``slicer.packaging.pip_ensure`` (which skips installs under ``--testing``);
    on older Slicer it asks with a dialog and runs ``slicer.util.pip_install``.

    torch is never installed here: it will come from the PyTorch extension (``PyTorchUtils``) when a module
    needs it, so that the CUDA/CPU build matches the machine.

    Raises:
        RuntimeError: the user declined the installation.
    """
    try:
        from slicer import packaging
    except ImportError:  # Slicer < 5.12
        _installPythonRequirementsWithPip(requirementsPath, requester)
        return
    packaging.pip_ensure(packaging.load_requirements(requirementsPath), requester=requester)


def missingPythonRequirements(requirementsPath: str) -> list[str]:
    """Requirement lines of ``requirementsPath`` whose distribution is not installed (no version check)."""
    import importlib.metadata
    import re

    missing = []
    with open(requirementsPath, encoding="utf-8") as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            name = re.split(r"[\s<>=!~;\[@]", line, maxsplit=1)[0]
            try:
                importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                missing.append(line)
    return missing


def _installPythonRequirementsWithPip(requirementsPath: str, requester: str) -> None:
    """Fallback for Slicer without ``slicer.packaging``: confirm, then ``slicer.util.pip_install``."""
    missing = missingPythonRequirements(requirementsPath)
    if not missing:
        return
    if slicer.app.testingEnabled():
        logging.info(f"Testing mode is enabled: not installing {', '.join(missing)}")
        return
    message = _(
        "{requester} needs {count} Python package(s) that are not installed yet.\n\n"
        "This will modify Slicer's Python environment. Continue?"
    ).format(requester=requester, count=len(missing))
    if not slicer.util.confirmOkCancelDisplay(
        message,
        _("{requester} - Install Python Packages").format(requester=requester),
        detailedText="\n".join(missing),
    ):
        raise RuntimeError("User declined package installation")
    slicer.util.pip_install(missing)


#
# RadTyperParameterNode
#


@parameterNodeWrapper
class RadTyperParameterNode:
    """
    The parameters of the RadTyper module.

    inputVolume - The image (CT or MR) the lesions were drawn on.
    inputSegmentation - One segment per lesion.
    parenchymaSegmentation - Optional organ tissue (e.g. lung) around the lesions, for margin-shell features.
    outputTable - Receives one row per lesion.
    spharmDegree - Maximum degree of the SPHARM expansion (used once SPHARM features are computed).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: vtkMRMLSegmentationNode
    parenchymaSegmentation: vtkMRMLSegmentationNode
    outputTable: vtkMRMLTableNode
    spharmDegree: Annotated[int, WithinRange(1, 15)] = 15


#
# RadTyperWidget
#


class RadTyperWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._requirementsChecked = False

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RadTyper.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = RadTyperLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed; preselect the first volume and segmentation."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode
        if not self._parameterNode.inputSegmentation:
            firstSegmentationNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if firstSegmentationNode:
                self._parameterNode.inputSegmentation = firstSegmentationNode

    def setParameterNode(self, inputParameterNode: RadTyperParameterNode | None) -> None:
        """Set and observe the parameter node; widgets are bound by their SlicerParameterName property."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._parameterNode and self._parameterNode.inputVolume and self._parameterNode.inputSegmentation:
            self.ui.applyButton.toolTip = _("Compute the lesion table")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.toolTip = _("Select the input volume and the lesion segmentation")
            self.ui.applyButton.enabled = False

    def onApplyButton(self) -> None:
        """Compute the lesion table when the user clicks "Compute"."""
        with slicer.util.tryWithErrorDisplay(_("Failed to install the Python packages RadTyper needs.")):
            self._ensurePythonRequirements()
        with slicer.util.tryWithErrorDisplay(_("Failed to compute the lesion table."), waitCursor=True):
            parameters = self._parameterNode
            parameters.outputTable = self.logic.summarize(
                parameters.inputVolume,
                parameters.inputSegmentation,
                parenchymaNode=parameters.parenchymaSegmentation,
                outputTable=parameters.outputTable,  # None: a new table is created
            )
            self.logic.showTable(parameters.outputTable)

    def _ensurePythonRequirements(self) -> None:
        """Install the module's requirements once per session, at the first Compute (asks the user first)."""
        if not self._requirementsChecked:
            installPythonRequirements(self.resourcePath("requirements.txt"), requester="RadTyper")
            self._requirementsChecked = True


#
# RadTyperLogic
#


class RadTyperLogic(ScriptedLoadableModuleLogic):
    """Computations of the RadTyper module, usable without the GUI (Python console, tests, batch scripts).

    It converts MRML nodes to core values with ``RadTyperMRML.bridge``, computes with ``RadTyperLib`` and
    writes the results back to MRML nodes.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return RadTyperParameterNode(super().getParameterNode())

    def summarize(
        self,
        volumeNode: vtkMRMLScalarVolumeNode,
        segmentationNode: vtkMRMLSegmentationNode,
        parenchymaNode: vtkMRMLSegmentationNode | None = None,
        outputTable: vtkMRMLTableNode | None = None,
    ) -> vtkMRMLTableNode:
        """Write one row per lesion (``RadTyperLib.summary.SUMMARY_COLUMNS``) to a table node; return it.

        :param volumeNode: image the lesions were drawn on.
        :param segmentationNode: one segment per lesion; the site is the segment tag ``RadTyper.Site``
            (set in the RadTyper Lesions module).
        :param parenchymaNode: optional organ-tissue segmentation on the same image.
        :param outputTable: table to overwrite; a new table node is created when None.
        :raises ValueError: a required input is missing.
        :raises RadTyperLib.errors.RadTyperError: unusable inputs (the message names the lesion and problem).
        """
        if not volumeNode or not segmentationNode:
            raise ValueError("Input volume or lesion segmentation is missing")

        import pandas as pd

        from RadTyperLib.summary import SUMMARY_COLUMNS, lesion_summary
        from RadTyperMRML.bridge import dataframe_to_table, patient_from_nodes

        patient = patient_from_nodes(volumeNode, segmentationNode, parenchyma_node=parenchymaNode)
        rows = lesion_summary(patient)
        table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
        scene = volumeNode.GetScene()
        tableNode = dataframe_to_table(
            table, scene, scene.GenerateUniqueName("RadTyper lesions"), node=outputTable
        )
        logging.info(
            f"RadTyper: {len(rows)} lesion(s) of '{volumeNode.GetName()}' written to '{tableNode.GetName()}'"
        )
        return tableNode

    @staticmethod
    def showTable(tableNode: vtkMRMLTableNode) -> None:
        """Show ``tableNode`` in a layout that has a table view."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:  # no main window (e.g. --no-main-window)
            return
        tableLayouts = (
            slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView,
            slicer.vtkMRMLLayoutNode.SlicerLayout3DTableView,
            slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView,
        )
        if layoutManager.layout not in tableLayouts:
            layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(tableNode.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()


#
# RadTyperTest
#


class RadTyperTest(ScriptedLoadableModuleTest):
    """Self-test run by Slicer (Reload and Test, and the ``py_RadTyper`` CTest)."""

    def setUp(self):
        """Reset the state: a scene clear is enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_RadTyperSummarize()

    def test_RadTyperSummarize(self):
        """Two box lesions on a synthetic CT: the table has their names, sites, volumes and centroids."""
        import importlib.util

        import numpy as np

        if importlib.util.find_spec("pandas") is None:
            self.skipTest("pandas is not installed (install RadTyper's Resources/requirements.txt first)")

        self.delayDisplay("Starting the test")
        volumeNode, segmentationNode = makeTwoLesionScene()

        logic = RadTyperLogic()
        with self.assertRaises(ValueError):
            logic.summarize(volumeNode, None)

        tableNode = logic.summarize(volumeNode, segmentationNode)
        table = slicer.util.dataframeFromTable(tableNode)
        from RadTyperLib.summary import SUMMARY_COLUMNS

        self.assertEqual(list(table.columns), list(SUMMARY_COLUMNS))
        self.assertEqual(list(table["lesion"]), ["lesion 1", "lesion 2"])
        self.assertEqual(list(table["site"]), ["lung", "unspecified"])
        # Spacing 1 × 1 × 2 mm: box 1 = 4 × 4 × 3 voxels, box 2 = 2 × 3 × 2 voxels.
        np.testing.assert_allclose(table["volume_mm3"], [96.0, 24.0])
        # Box 1 covers i, j ∈ [2, 5], k ∈ [2, 4]: centre index (3.5, 3.5, 3) → RAS → LPS (x, y negated).
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        r, a, s = ijkToRas.MultiplyPoint((3.5, 3.5, 3.0, 1.0))[:3]
        expected = [-r, -a, s]
        np.testing.assert_allclose(
            table.loc[0, ["centroid_x_lps_mm", "centroid_y_lps_mm", "centroid_z_lps_mm"]].to_numpy(float),
            expected,
            atol=1e-6,
        )

        # Writing again into the same table replaces its content.
        logic.summarize(volumeNode, segmentationNode, outputTable=tableNode)
        self.assertEqual(tableNode.GetNumberOfRows(), 2)
        self.delayDisplay("Test passed")


def makeTwoLesionScene():
    """A 10 × 10 × 8 CT-like volume (spacing 1, 1, 2 mm; origin off zero) with two box-shaped lesions.

    Lesion 1 carries the site tag ``lung``; lesion 2 has no site. Used by the self-tests of both modules.
    """
    import numpy as np

    volumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "RadTyperTestCT")
    voxels = np.full((8, 10, 10), -800, dtype=np.int16)  # [k, j, i]
    volumeNode.SetSpacing(1.0, 1.0, 2.0)
    volumeNode.SetOrigin(-20.0, 15.0, 5.0)
    slicer.util.updateVolumeFromArray(volumeNode, voxels)

    labels = np.zeros(voxels.shape, dtype=np.uint8)
    labels[2:5, 2:6, 2:6] = 1
    labels[5:7, 6:9, 7:9] = 2
    labelmapNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    labelmapNode.CopyOrientation(volumeNode)
    slicer.util.updateVolumeFromArray(labelmapNode, labels)

    segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "RadTyperTestLesions")
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode)
    slicer.mrmlScene.RemoveNode(labelmapNode)
    segmentation = segmentationNode.GetSegmentation()
    for index, name in enumerate(("lesion 1", "lesion 2")):
        segmentation.GetNthSegment(index).SetName(name)
    from RadTyperLib.io import SITE_TAG

    segmentation.GetNthSegment(0).SetTag(SITE_TAG, "lung")
    return volumeNode, segmentationNode
