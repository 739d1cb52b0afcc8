"""RadTyper Lesions: prepare the lesions of a patient — one segment per lesion, named, with its site and QC.

Thin Slicer front end in the style of the scripted-module template and KitwareMedical/SlicerNNUnet: this file
holds the module, its parameter node, a thin widget, the logic entry points and the self-test. The panel's
behaviour is in ``RadTyperLesionsLib``, the MRML logic in ``RadTyperMRML.lesions_logic`` (Qt-free, tested
with plain pytest) and the numerics (seeded segmentation, parenchyma, QC) in ``RadTyperLib``; they are
imported inside the functions that use them, never at module scope.
"""

from typing import Annotated

import slicer
import vtk
from slicer import (
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSegmentEditorNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

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
        # RadTyper: shared core library, MRML logic and helpers; Segmentations / Markups: node classes and widgets
        self.parent.dependencies = ["RadTyper", "Segmentations", "Markups"]
        self.parent.contributors = ["The RadTyper developers"]
        self.parent.helpText = _("""
Prepares the lesions of a patient for RadTyper: one segment per lesion, named, coloured and tagged with its
anatomical site.
<p><b>Lesions</b>: every lesion with its site, volume (mm³), number of connected pieces and QC flags
(touches the image border, holes, too small, disconnected; empty / outside the volume / overlapping). Click a
lesion to centre the slice views on it; rename, set the site (stored on the segment as the tag
<code>RadTyper.Site</code>) or delete it.</p>
<p><b>One-click segmentation</b>: place a point inside a lesion and a new segment is grown from it with a
training-free method; <b>Segment all marked lesions</b> does it for every point. Existing segments are
never changed.</p>
<p><b>Draw and edit</b>: the Segment Editor with all of Slicer's effects. <b>Parenchyma</b>: compute the
tissue around the lesions used by the margin shells, or pick a segmentation.</p>
<p>Requires 3D Slicer 5.10 or 5.12 (or the Preview release). The U-Net needs the PyTorch extension.</p>
See the <a href="https://github.com/radtyper/SlicerRadTyper">project page</a>.
""")
        self.parent.acknowledgementText = _("""
RadTyper is developed by the RadTyper developers and released under the Apache License 2.0.
Its module layout follows the 3D Slicer scripted-module template by Jean-Christophe Fillion-Robin (Kitware),
Andras Lasso (PerkLab) and Steve Pieper (Isomics), and KitwareMedical/SlicerNNUnet.
""")


#
# RadTyperLesionsParameterNode
#


@parameterNodeWrapper
class RadTyperLesionsParameterNode:
    """
    Every setting of the RadTyper Lesions module (saved with the scene).

    inputVolume - The image (CT or MR) the lesions are drawn on.
    inputSegmentation - One segment per lesion.
    modality - auto, CT, MR or PET (one-click segmentation, parenchyma).
    seedPoints - Points placed on lesions for the one-click segmentation.
    segmentationMethod - classical (training-free) or unet (the U-Net model below) for marked points.
    unetModel - Folder of a U-Net model trained with 'radtyper seg train' (for unet and "Auto-segment all");
        "" = none (bound by RadTyper's ctkPathLineEdit-to-str connector, registered by the RadTyper module).
    segmentOnPlace - Segment each point as soon as it is placed.
    parenchymaSegmentation - Organ tissue around the lesions for the margin shells.
    segmentEditorNode - State of the embedded Segment Editor (internal, not shown).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: vtkMRMLSegmentationNode
    modality: Annotated[str, Choice(["auto", "CT", "MR", "PET"])] = "auto"
    seedPoints: vtkMRMLMarkupsFiducialNode
    segmentationMethod: Annotated[str, Choice(["classical", "unet"])] = "classical"
    unetModel: str = ""
    segmentOnPlace: bool = True
    parenchymaSegmentation: vtkMRMLSegmentationNode
    segmentEditorNode: vtkMRMLSegmentEditorNode


#
# RadTyperLesionsWidget
#


class RadTyperLesionsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Loads the .ui, binds it to the parameter node and hands the events to ``RadTyperLesionsLib``."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self.panel = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        from RadTyperLesionsLib.LesionsWidget import LesionsWidget

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RadTyperLesions.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self.logic = RadTyperLesionsLogic()
        # As Slicer's Segment Editor module: the editor gets its segment editor node before the scene, so that
        # the selections it makes when the scene is set are stored in that node.
        self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(
            self.logic.segmentEditorNode(self.logic.getParameterNode())
        )
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.panel = LesionsWidget(self.ui, self.logic, self.resourcePath)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        if self.panel:
            self.panel.cleanup()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()
        self.panel.enter()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        self.panel.exit()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.panel.updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.setParameterNode(None)
        self.panel.sceneStartClose()

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Parameter node of the scene; preselect the first volume and segmentation and its parenchyma."""
        self.setParameterNode(self.logic.getParameterNode())
        self.logic.setDefaultParameters(self._parameterNode)

    def setParameterNode(self, inputParameterNode) -> None:
        """Set and observe the parameter node; widgets are bound by their SlicerParameterName property."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.panel.updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.panel.updateGui)
        self.panel.setParameterNode(self._parameterNode)


#
# RadTyperLesionsLogic
#


class RadTyperLesionsLogic(ScriptedLoadableModuleLogic):
    """Entry points of the module, usable without the GUI (Python console, tests, batch scripts).

    Each method maps the parameter node to ``RadTyperMRML.lesions_logic.LesionsLogic`` (Qt-free).
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._lesions = None

    def getParameterNode(self):
        return RadTyperLesionsParameterNode(super().getParameterNode())

    @property
    def lesions(self):
        """The Qt-free lesion logic."""
        if self._lesions is None:
            from RadTyperMRML.lesions_logic import LesionsLogic

            self._lesions = LesionsLogic()
        return self._lesions

    def setDefaultParameters(self, parameters) -> None:
        """First volume and segmentation of the scene and the segmentation's recorded parenchyma."""
        if not parameters.inputVolume:
            parameters.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not parameters.inputSegmentation:
            parameters.inputSegmentation = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
        if parameters.inputSegmentation and not parameters.parenchymaSegmentation:
            parameters.parenchymaSegmentation = self.lesions.parenchyma_of(parameters.inputSegmentation)

    @staticmethod
    def segmentEditorNode(parameters):
        """The segment editor node of the embedded editor (created in the scene on first use)."""
        if parameters.segmentEditorNode is None:
            parameters.segmentEditorNode = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLSegmentEditorNode", "RadTyperLesions segment editor"
            )
        return parameters.segmentEditorNode

    def lesionRows(self, parameters) -> list:
        """The lesion table rows (``RadTyperMRML.lesions_logic.LesionRow``)."""
        return self.lesions.lesion_rows(parameters.inputVolume, parameters.inputSegmentation)

    def jumpToLesion(self, parameters, segmentId: str):
        """Centre the slice views on a lesion."""
        return self.lesions.jump_to_lesion(parameters.inputVolume, parameters.inputSegmentation, segmentId)

    def segmentPoints(self, parameters, *, site: str | None = None, lastOnly: bool = False) -> list:
        """One new segment per placed point (only the last point with ``lastOnly``)."""
        points, labels = self.lesions.points_from_markups(parameters.seedPoints)
        if lastOnly:
            points, labels = points[-1:], labels[-1:]
        return self.lesions.add_lesions_from_points(
            parameters.inputVolume,
            parameters.inputSegmentation,
            points,
            names=labels,
            site=site,
            modality=parameters.modality,
            method=parameters.segmentationMethod,
            unet_model=parameters.unetModel,
        )

    def autoSegmentAll(self, parameters, *, site: str | None = None, progress=None, shouldCancel=None):
        """ "Auto-segment all lesions" with the U-Net: new segments only (``AutoSegmentOutcome``)."""
        return self.lesions.auto_segment_all(
            parameters.inputVolume,
            parameters.inputSegmentation,
            parameters.unetModel,
            modality=parameters.modality,
            site=site,
            progress=progress,
            should_cancel=shouldCancel,
        )

    def computeParenchyma(self, parameters):
        """The automatic parenchyma into the selected parenchyma segmentation (or a new one)."""
        return self.lesions.compute_parenchyma(
            parameters.inputVolume,
            parameters.inputSegmentation,
            node=parameters.parenchymaSegmentation,
            modality=parameters.modality,
        )


#
# RadTyperLesionsTest
#


class RadTyperLesionsTest(ScriptedLoadableModuleTest):
    """Self-test run by Slicer (Reload and Test, and the ``py_RadTyperLesions`` CTest) on the demo patient."""

    def setUp(self):
        """Reset the state: a scene clear is enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_RadTyperLesionsTable()
        self.setUp()
        self.test_RadTyperLesionsOneClick()

    def _demo(self):
        """The demo patient, after installing the module's requirements (from wheels) when missing."""
        import os

        from RadTyperSlicerLib.DemoData import loadDemoPatient
        from RadTyperSlicerLib.Dependencies import installForTesting

        here = os.path.dirname(__file__)
        installForTesting(os.path.join(here, "Resources", "RadTyperLesionsRequirements.txt"))

        return loadDemoPatient()

    def test_RadTyperLesionsTable(self):
        """Demo patient: 8 lesions with their sites, volumes (mm³) and QC; site, rename, jump, bad input."""
        import numpy as np

        from RadTyperLib.errors import InputError

        volumeNode, segmentationNode, _parenchyma = self._demo()
        logic = RadTyperLesionsLogic()
        parameters = logic.getParameterNode()
        parameters.inputVolume = volumeNode
        parameters.inputSegmentation = segmentationNode
        rows = logic.lesionRows(parameters)
        self.assertEqual([r.name for r in rows][:3], ["lung_1", "lung_2", "lung_3"])
        self.assertEqual([r.site for r in rows][:4], ["lung", "lung", "lung", "liver"])
        # voxel volumes (1.5 × 1.5 × 2.5 mm voxels) of the generated lesions
        np.testing.assert_allclose(
            [r.volume_mm3 for r in rows], [911.25, 1631.25, 3150.0, 6221.25, 1912.5, 1608.75, 866.25, 1462.5]
        )
        self.assertEqual([r.components for r in rows], [1, 2, 1, 1, 1, 1, 1, 1])
        self.assertEqual(rows[1].flags, ["disconnected"])
        self.assertFalse(any(r.problem for r in rows))

        sid = rows[6].segment_id
        self.assertEqual(logic.lesions.set_lesion_site(segmentationNode, sid, "Nodal"), "lymph_node")
        with self.assertRaises(InputError):
            logic.lesions.set_lesion_site(segmentationNode, sid, "elbow")
        with self.assertRaises(InputError):
            logic.lesions.rename_lesion(segmentationNode, sid, "lung_1")
        centre = logic.jumpToLesion(parameters, sid)
        np.testing.assert_allclose(centre, rows[6].centre_ras)
        red = slicer.app.layoutManager().sliceWidget("Red") if slicer.app.layoutManager() else None
        if red is not None:
            np.testing.assert_allclose(red.mrmlSliceNode().GetSliceOffset(), centre[2], atol=1.5)

        parameters.inputVolume = None
        with self.assertRaisesRegex(InputError, "No input volume"):
            logic.lesionRows(parameters)
        self.delayDisplay("Test passed")

    def test_RadTyperLesionsOneClick(self):
        """Delete lung_3, click its centre: a new segment covers it; the other segments are unchanged."""
        import numpy as np

        from RadTyperMRML.bridge import segment_on_volume_grid

        volumeNode, segmentationNode, _parenchyma = self._demo()
        logic = RadTyperLesionsLogic()
        self.assertTrue(logic.lesions.seeded_available(), "one-click segmentation is missing")
        parameters = logic.getParameterNode()
        parameters.inputVolume = volumeNode
        parameters.inputSegmentation = segmentationNode
        rows = logic.lesionRows(parameters)
        lung3 = next(r for r in rows if r.name == "lung_3")
        box, truth, _n, _out = segment_on_volume_grid(segmentationNode, lung3.segment_id, volumeNode)
        logic.lesions.delete_lesion(segmentationNode, lung3.segment_id)

        def snapshot():
            out = {}
            segmentation = segmentationNode.GetSegmentation()
            for i in range(segmentation.GetNumberOfSegments()):
                s = segmentation.GetNthSegmentID(i)
                b, m, _n, _o = segment_on_volume_grid(segmentationNode, s, volumeNode)
                out[s] = (
                    segmentation.GetSegment(s).GetName(),
                    tuple((x.start, x.stop) for x in b),
                    m.tobytes(),
                )
            return out

        before = snapshot()
        points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "lesion points")
        points.AddControlPoint(*lung3.centre_ras, "lung_3 again")
        parameters.seedPoints = points
        outcomes = logic.segmentPoints(parameters, site="lung")
        self.assertEqual(len(outcomes), 1)
        self.assertIsNotNone(outcomes[0].segment_id)
        after = snapshot()
        new = set(after) - set(before)
        self.assertEqual(new, {outcomes[0].segment_id})
        self.assertEqual({k: after[k] for k in before}, before)
        nb, mask, _n, _o = segment_on_volume_grid(segmentationNode, outcomes[0].segment_id, volumeNode)
        full = np.zeros(volumeNode.GetImageData().GetDimensions()[::-1], bool)
        full[nb] = mask
        ref = np.zeros_like(full)
        ref[box] = truth
        dice = 2 * np.count_nonzero(full & ref) / (np.count_nonzero(full) + np.count_nonzero(ref))
        self.assertGreater(dice, 0.7)
        self.assertEqual(logic.lesions.lesion_site(segmentationNode, outcomes[0].segment_id), "lung")
        self.delayDisplay("Test passed")
