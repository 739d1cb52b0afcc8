"""RadTyper Lesions: list the lesions of a segmentation and tag each one with its anatomical site.

Thin Slicer front end over ``RadTyperLib`` (numerics, site vocabulary) and ``RadTyperMRML.bridge``
(MRML ⇄ core conversion); both are imported inside the functions that use them, never at module scope.
"""

import logging

import numpy as np
import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

#: Columns of the lesion table in the module panel: (header, key of the rows returned by ``lesionSummary``).
LESION_TABLE_COLUMNS = (
    ("Lesion", "lesion"),
    ("Site", "site"),
    ("Volume (mm³)", "volume_mm3"),
    ("Components", "components"),
)


#
# RadTyperLesions
#


class RadTyperLesions(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("RadTyper Lesions")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = ["RadTyper"]  # shares RadTyper's core library and package installer
        self.parent.contributors = ["The RadTyper developers"]
        self.parent.helpText = _("""
Lists the lesions of a patient, one segment per lesion, and records the anatomical site of each lesion.
<p><b>Refresh</b> shows every lesion with its site, volume (mm³) and number of connected components (a lesion
drawn in several disconnected pieces shows more than 1). Select a lesion, choose a site and press
<b>Set site</b>: the site is stored on the segment as the tag <code>RadTyper.Site</code>, which RadTyper and
the radtyper command line read (also from saved .seg.nrrd files).</p>
<p>Draw or edit the lesions in the Segment Editor.</p>
See the <a href="https://github.com/radtyper/SlicerRadTyper">project page</a>.
""")
        self.parent.acknowledgementText = _("""
RadTyper is developed by the RadTyper developers and released under the Apache License 2.0.
Its module layout follows the 3D Slicer scripted-module template by Jean-Christophe Fillion-Robin (Kitware),
Andras Lasso (PerkLab) and Steve Pieper (Isomics).
""")


#
# RadTyperLesionsParameterNode
#


@parameterNodeWrapper
class RadTyperLesionsParameterNode:
    """
    The parameters of the RadTyper Lesions module.

    inputVolume - The image (CT or MR) the lesions are drawn on.
    inputSegmentation - One segment per lesion.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: vtkMRMLSegmentationNode


#
# RadTyperLesionsWidget
#


class RadTyperLesionsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
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
        self._listedSegmentation = None  # segmentation node whose lesions the table shows

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RadTyperLesions.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = RadTyperLesionsLogic()

        self.ui.siteComboBox.addItems(list(self.logic.siteNames()))

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.refreshButton.connect("clicked(bool)", self.onRefreshButton)
        self.ui.setSiteButton.connect("clicked(bool)", self.onSetSiteButton)
        self.ui.lesionTableWidget.connect("itemSelectionChanged()", self.onLesionSelectionChanged)

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
        self._fillLesionTable([])

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

    def setParameterNode(self, inputParameterNode: RadTyperLesionsParameterNode | None) -> None:
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
        parameters = self._parameterNode
        if (
            parameters
            and self._listedSegmentation
            and parameters.inputSegmentation != self._listedSegmentation
        ):
            self._fillLesionTable([])  # the table described another segmentation
        if parameters and parameters.inputVolume and parameters.inputSegmentation:
            self.ui.refreshButton.toolTip = _("List the lesions of the segmentation")
            self.ui.refreshButton.enabled = True
        else:
            self.ui.refreshButton.toolTip = _("Select the input volume and the lesion segmentation")
            self.ui.refreshButton.enabled = False

    def onRefreshButton(self) -> None:
        """List the lesions of the selected segmentation in the table."""
        with slicer.util.tryWithErrorDisplay(_("Failed to install the Python packages RadTyper needs.")):
            self._ensurePythonRequirements()
        with slicer.util.tryWithErrorDisplay(_("Failed to list the lesions."), waitCursor=True):
            parameters = self._parameterNode
            rows = self.logic.lesionSummary(parameters.inputVolume, parameters.inputSegmentation)
            self._listedSegmentation = parameters.inputSegmentation
            self._fillLesionTable(rows)

    def onSetSiteButton(self) -> None:
        """Store the chosen site on the selected lesion's segment."""
        with slicer.util.tryWithErrorDisplay(_("Failed to set the lesion site.")):
            row = self._selectedRow()
            if row is None:
                raise ValueError(_("Select a lesion in the table first."))
            table = self.ui.lesionTableWidget
            segmentId = table.item(row, 0).data(qt.Qt.UserRole)
            site = self.logic.setLesionSite(
                self._listedSegmentation, segmentId, self.ui.siteComboBox.currentText
            )
            table.item(row, 1).setText(site)

    def onLesionSelectionChanged(self) -> None:
        """Show the selected lesion's site in the site box; Set site needs a selected lesion."""
        row = self._selectedRow()
        self.ui.setSiteButton.enabled = row is not None
        if row is not None:
            index = self.ui.siteComboBox.findText(self.ui.lesionTableWidget.item(row, 1).text())
            if index >= 0:
                self.ui.siteComboBox.currentIndex = index

    def _selectedRow(self) -> int | None:
        rows = {index.row() for index in self.ui.lesionTableWidget.selectionModel().selectedRows()}
        return min(rows) if rows else None

    def _fillLesionTable(self, rows: list[dict]) -> None:
        table = self.ui.lesionTableWidget
        table.clearContents()
        table.setRowCount(len(rows))
        for r, lesion in enumerate(rows):
            for c, (_header, key) in enumerate(LESION_TABLE_COLUMNS):
                value = lesion[key]
                item = qt.QTableWidgetItem(f"{value:.1f}" if key == "volume_mm3" else str(value))
                if key == "lesion":
                    item.setData(qt.Qt.UserRole, lesion["segmentId"])
                if key in ("volume_mm3", "components"):
                    item.setTextAlignment(qt.Qt.AlignRight | qt.Qt.AlignVCenter)
                if key == "components" and value > 1:
                    item.setToolTip(
                        _("This lesion is drawn in {count} disconnected pieces.").format(count=value)
                    )
                table.setItem(r, c, item)
        table.resizeColumnsToContents()
        if not rows:
            self._listedSegmentation = None
        self.onLesionSelectionChanged()

    def _ensurePythonRequirements(self) -> None:
        """Install RadTyper's requirements once per session, at the first Refresh (asks the user first)."""
        if not self._requirementsChecked:
            import RadTyper

            RadTyper.installPythonRequirements(self.resourcePath("requirements.txt"), requester="RadTyper")
            self._requirementsChecked = True


#
# RadTyperLesionsLogic
#


class RadTyperLesionsLogic(ScriptedLoadableModuleLogic):
    """Lesion listing and site tagging, usable without the GUI (Python console, tests, batch scripts)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return RadTyperLesionsParameterNode(super().getParameterNode())

    @staticmethod
    def siteNames() -> tuple[str, ...]:
        """The accepted anatomical sites (RadTyperLib's controlled vocabulary)."""
        from RadTyperLib.sites import SITES

        return SITES

    def lesionSummary(
        self, volumeNode: vtkMRMLScalarVolumeNode, segmentationNode: vtkMRMLSegmentationNode
    ) -> list[dict]:
        """One dict per lesion: ``segmentId``, ``lesion`` (name), ``site``, ``volume_mm3``, ``components``.

        (plus the other ``RadTyperLib.summary.SUMMARY_COLUMNS``); ``components`` is the number of
        26-connected pieces of the lesion mask (1 for a single blob).

        :raises ValueError: a required input is missing.
        :raises RadTyperLib.errors.RadTyperError: unusable inputs (the message names the lesion and problem).
        """
        if not volumeNode or not segmentationNode:
            raise ValueError("Input volume or lesion segmentation is missing")

        from RadTyperLib.summary import lesion_summary
        from RadTyperMRML.bridge import patient_from_nodes

        patient = patient_from_nodes(volumeNode, segmentationNode)
        segmentation = segmentationNode.GetSegmentation()
        rows = lesion_summary(patient)
        for row in rows:
            row["segmentId"] = self._segmentIdOfLesion(segmentation, row["lesion"])
        logging.info(f"RadTyper Lesions: {len(rows)} lesion(s) in '{segmentationNode.GetName()}'")
        return rows

    @staticmethod
    def lesionSite(segmentationNode: vtkMRMLSegmentationNode, segmentId: str) -> str:
        """The site tag of a segment (``unspecified`` when it has none)."""
        from RadTyperLib.io import SITE_TAG

        segment = _segment(segmentationNode, segmentId)
        value = vtk.reference("")
        return str(value) if segment.GetTag(SITE_TAG, value) and str(value) else "unspecified"

    @staticmethod
    def setLesionSite(segmentationNode: vtkMRMLSegmentationNode, segmentId: str, site: str) -> str:
        """Store ``site`` (synonyms and case tolerated) on the segment as tag ``RadTyper.Site``.

        :returns: the canonical site name that was stored.
        :raises RadTyperLib.errors.InputError: ``site`` is not a known site (the message lists them).
        """
        from RadTyperLib.io import SITE_TAG
        from RadTyperLib.sites import normalize_site

        segment = _segment(segmentationNode, segmentId)
        canonical = normalize_site(site, context=f"lesion '{segment.GetName()}'")
        segment.SetTag(SITE_TAG, canonical)
        return canonical

    @staticmethod
    def _segmentIdOfLesion(segmentation, lesionName: str) -> str:
        """Segment ID of the lesion named ``lesionName`` (lesions are named after their segments)."""
        if segmentation.GetSegment(lesionName) is not None:
            return lesionName
        segmentId = segmentation.GetSegmentIdBySegmentName(lesionName)
        if not segmentId:
            raise ValueError(f"No segment named '{lesionName}' in the segmentation")
        return segmentId


def _segment(segmentationNode, segmentId: str):
    if not segmentationNode:
        raise ValueError("No lesion segmentation is selected")
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
    if segment is None:
        raise ValueError(f"Segment '{segmentId}' is not in '{segmentationNode.GetName()}' (was it removed?)")
    return segment


#
# RadTyperLesionsTest
#


class RadTyperLesionsTest(ScriptedLoadableModuleTest):
    """Self-test run by Slicer (Reload and Test, and the ``py_RadTyperLesions`` CTest)."""

    def setUp(self):
        """Reset the state: a scene clear is enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_RadTyperLesionsSummaryAndSites()

    def test_RadTyperLesionsSummaryAndSites(self):
        """Two box lesions: names, sites, volumes and component counts; a site set, read back and refused."""
        from RadTyper import makeTwoLesionScene
        from RadTyperLib.errors import InputError

        self.delayDisplay("Starting the test")
        volumeNode, segmentationNode = makeTwoLesionScene()
        logic = RadTyperLesionsLogic()

        with self.assertRaises(ValueError):
            logic.lesionSummary(None, segmentationNode)

        rows = logic.lesionSummary(volumeNode, segmentationNode)
        self.assertEqual([row["lesion"] for row in rows], ["lesion 1", "lesion 2"])
        self.assertEqual([row["site"] for row in rows], ["lung", "unspecified"])
        np.testing.assert_allclose([row["volume_mm3"] for row in rows], [96.0, 24.0])
        self.assertEqual([row["components"] for row in rows], [1, 1])

        secondId = rows[1]["segmentId"]
        self.assertEqual(logic.setLesionSite(segmentationNode, secondId, "Hepatic"), "liver")
        self.assertEqual(logic.lesionSite(segmentationNode, secondId), "liver")
        self.assertEqual(
            [row["site"] for row in logic.lesionSummary(volumeNode, segmentationNode)], ["lung", "liver"]
        )
        with self.assertRaises(InputError):
            logic.setLesionSite(segmentationNode, secondId, "elbow")

        from RadTyperLib.summary import count_components

        mask = np.zeros((5, 5, 5), dtype=bool)
        mask[0, 0, 0] = mask[1, 1, 1] = mask[3:5, 3:5, 3:5] = True  # corner-touching voxels: one piece
        self.assertEqual(count_components(mask), 2)
        self.delayDisplay("Test passed")
