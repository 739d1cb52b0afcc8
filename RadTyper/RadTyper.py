"""RadTyper: per-lesion features, inter-lesion heterogeneity, SPHARM reconstructions, margin shells and subtype.

Thin Slicer front end in the style of the scripted-module template and KitwareMedical/SlicerNNUnet: this file
holds the module, its parameter node, a thin widget, the logic entry points and the self-test. The panel's
behaviour is in ``RadTyperSlicerLib`` (Slicer-side), the MRML logic in ``RadTyperMRML`` (Qt-free, tested with
plain pytest) and all numerics in ``RadTyperLib``. Those packages, and every package not bundled with Slicer,
are imported inside the functions that use them, never at module scope.
"""

import pathlib
from typing import Annotated

import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import (
    Choice,
    GuiConnector,
    WithinRange,
    parameterNodeGuiConnector,
    parameterNodeWrapper,
)
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
RadTyper characterises every lesion of a patient (SPHARM shape, margin shells, radiomics) and the
heterogeneity between the lesions, toward imaging subtypes.
<p><b>Compute</b> analyses the selected lesion segmentation (one segment per lesion, prepared in
<i>RadTyper Lesions</i>) in a background process (progress bar, <b>Cancel</b>): a table with one row per
lesion (313 features + radiomics + QC), one row per patient (maximal tumoral divergence, average tumoral
heterogeneity, feature CV; IITH when a cohort reference is given), each lesion's SPHARM reconstruction in
the 3D view and as an outline in the slice views (the degree slider re-renders it), the original surfaces,
and the margin shells TC / TIM / PM5 / PM10 as segments. The recovery curve is shown with the Plots module.
The lesion segmentation itself is never modified.</p>
<p><b>Extra phases</b> (optional): further co-registered images of the patient (e.g. DCE-MRI post-contrast
phases) on the input volume's voxel grid, each a phase named after its volume; with them the features include
the multi-phase IITH columns <i>iith_&lt;phase&gt;_*</i>, the input volume being the phase named in
<b>Input volume's phase</b>. RadTyper never resamples: resample a phase onto the input volume first.</p>
<p><b>Subtype</b>: a model bundle (the one shipped with RadTyper is selected at start) predicts the patient's
imaging subtype and its probabilities, shown here and in the corner of the slice views with the model's
provenance; a patient outside the model's domain is marked as such. The shipped default model is built from
the radiologists' lung-nodule contours of <b>LIDC-IDRI</b> (CT, shape and burden only): it is <b>not the
paper's trained model</b> and <b>not for clinical use</b>; train your own with <i>radtyper discover</i>.</p>
<p>Try it on the <i>RadTyper demo patient</i> of the Sample Data module. The first <b>Compute</b> offers to
install the Python packages RadTyper needs.</p>
<p>Requires 3D Slicer 5.10 or 5.12 (or the Preview release). Radiomics features need the pyradiomics
package built into the Extensions Manager package; everything else works without it.</p>
See the <a href="https://github.com/radtyper/SlicerRadTyper">project page</a>.
""")
        self.parent.acknowledgementText = _("""
RadTyper is developed by the RadTyper developers and released under the Apache License 2.0.
Its module layout follows the 3D Slicer scripted-module template by Jean-Christophe Fillion-Robin (Kitware),
Andras Lasso (PerkLab) and Steve Pieper (Isomics), and KitwareMedical/SlicerNNUnet.
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Add the RadTyper demo patient to the Sample Data module (generated locally on first use)."""
    from RadTyperSlicerLib.DemoData import registerSampleData as register

    register()


#
# Optional file and folder paths
#


@parameterNodeGuiConnector
class RadTyperPathLineEditToStrConnector(GuiConnector):
    """Binds a ``ctkPathLineEdit`` to a ``str`` parameter: an unset path is "" and shows as an empty field.

    Slicer's own connector binds ``pathlib.Path``, whose unset value ``Path("")`` is ``Path(".")`` and shows
    as "." in the field. The RadTyper Lesions module (which depends on this module, so loads after it) uses
    this connector too.
    """

    @staticmethod
    def canRepresent(widget, datatype) -> bool:
        return datatype is str and type(widget).__name__ == "ctkPathLineEdit"

    @staticmethod
    def create(widget, datatype):
        if RadTyperPathLineEditToStrConnector.canRepresent(widget, datatype):
            return RadTyperPathLineEditToStrConnector(widget)
        return None

    def __init__(self, widget) -> None:
        super().__init__()
        self._widget = widget

    def _connect(self):
        self._widget.currentPathChanged.connect(self.changed)

    def _disconnect(self):
        self._widget.currentPathChanged.disconnect(self.changed)

    def widget(self):
        return self._widget

    def read(self) -> str:
        return str(self._widget.currentPath or "")

    def write(self, value) -> None:
        text = "" if value is None or str(value) in ("", ".") else str(value)
        if self._widget.currentPath != text:
            self._widget.currentPath = text


#
# RadTyperParameterNode
#


@parameterNodeWrapper
class RadTyperParameterNode:
    """
    Every setting of the RadTyper module (saved with the scene).

    inputVolume - The image (CT or MR) the lesions were drawn on.
    inputSegmentation - One segment per lesion (only read).
    parenchymaSegmentation - Optional organ tissue (e.g. lung) for the margin shells; empty = automatic.
    modality - auto, CT, MR or PET.
    imagePhase - Phase name of the input volume when extra phase volumes are checked ("" = image). The extra
        phase volumes themselves are a plain checkable selector read at Compute (no connector binds a node
        list in Slicer 5.10/5.12), mapped to phases by ``RadTyperMRML.phases``.
    spharmDegree - Maximal SPHARM degree of the shape features.
    regionMode - Margin shells per axial slice (2d, as the paper) or in 3-D.
    computeRadiomics - Add the pyradiomics features.
    keepGoing - A lesion that fails gets an empty row instead of stopping the analysis.
    runInBackground - Compute in a background process (the GUI stays responsive).
    iithReference - Optional iith_reference.json of a cohort (HI per lesion); "" = none.
    lesionTable, patientTable - The result tables (filled by Compute).
    reconstructionDegree - Degree of the SPHARM reconstructions shown.
    showReconstruction, showSliceOutlines, showOriginalSurface - What the views show of the lesions.
    showShellTC, showShellTIM, showShellPM5, showShellPM10 - Margin shells shown.
    subtypeBundle - Folder of the subtype model bundle ("" = none).
    showSubtypeInViews - Write the predicted subtype in the slice views.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: vtkMRMLSegmentationNode
    parenchymaSegmentation: vtkMRMLSegmentationNode
    modality: Annotated[str, Choice(["auto", "CT", "MR", "PET"])] = "auto"
    imagePhase: str = "image"
    spharmDegree: Annotated[int, WithinRange(1, 15)] = 15
    regionMode: Annotated[str, Choice(["2d", "3d"])] = "2d"
    computeRadiomics: bool = True
    keepGoing: bool = True
    runInBackground: bool = True
    iithReference: str = ""
    lesionTable: vtkMRMLTableNode
    patientTable: vtkMRMLTableNode
    reconstructionDegree: Annotated[int, WithinRange(1, 15)] = 15
    showReconstruction: bool = True
    showSliceOutlines: bool = True
    showOriginalSurface: bool = False
    showShellTC: bool = True
    showShellTIM: bool = True
    showShellPM5: bool = False
    showShellPM10: bool = False
    subtypeBundle: str = ""
    showSubtypeInViews: bool = True


#
# RadTyperWidget
#


class RadTyperWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Loads the .ui, binds it to the parameter node and hands the events to ``RadTyperSlicerLib``."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self.panel = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        from RadTyperSlicerLib.AnalysisWidget import AnalysisWidget

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/RadTyper.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = RadTyperLogic()
        self.panel = AnalysisWidget(self.ui, self.logic, self.resourcePath)

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

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.panel.updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Parameter node of the scene; first volume/segmentation, their parenchyma and the shipped model."""
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
# RadTyperLogic
#


class RadTyperLogic(ScriptedLoadableModuleLogic):
    """Entry points of the module, usable without the GUI (Python console, tests, batch scripts).

    Each method maps the parameter node to ``RadTyperMRML.analysis_logic.AnalysisLogic`` (Qt-free); all
    computation happens there and in ``RadTyperLib``.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._analysis = None

    def getParameterNode(self):
        return RadTyperParameterNode(super().getParameterNode())

    @property
    def analysis(self):
        """The Qt-free analysis logic."""
        if self._analysis is None:
            from RadTyperMRML.analysis_logic import AnalysisLogic

            self._analysis = AnalysisLogic()
        return self._analysis

    def setDefaultParameters(self, parameters) -> None:
        """First volume and segmentation of the scene, the segmentation's parenchyma, the shipped model."""
        from RadTyperMRML import optional_path
        from RadTyperMRML.lesions_logic import LesionsLogic

        if not parameters.inputVolume:
            parameters.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not parameters.inputSegmentation:
            parameters.inputSegmentation = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
        if parameters.inputSegmentation and not parameters.parenchymaSegmentation:
            parameters.parenchymaSegmentation = LesionsLogic.parenchyma_of(parameters.inputSegmentation)
        if optional_path(parameters.subtypeBundle) is None:
            bundle = self.analysis.default_bundle_path()
            if bundle is not None:
                parameters.subtypeBundle = str(bundle)

    @staticmethod
    def featureSettings(parameters):
        from RadTyperLib.features import FeatureSettings

        return FeatureSettings(
            degree=int(parameters.spharmDegree),
            region_mode=parameters.regionMode,
            radiomics=bool(parameters.computeRadiomics),
        )

    @staticmethod
    def phaseNodes(parameters, phaseVolumes=None) -> dict:
        """``{phase name: volume node}`` of the extra phase volumes (``RadTyperMRML.phases``; {} = none)."""
        from RadTyperMRML.phases import phase_nodes_from

        return phase_nodes_from(
            phaseVolumes,
            parameters.inputVolume,
            parameters.imagePhase,
            radiomics=bool(parameters.computeRadiomics),
        )

    def compute(self, parameters, *, lesions=None, phaseVolumes=None, progress=None, shouldCancel=None):
        """Run the analysis in this process; the result tables go into the parameter node.

        ``phaseVolumes``: further co-registered volumes (e.g. DCE-MRI post-contrast phases), each a phase
        named after its node, the input volume being the phase ``parameters.imagePhase``.
        """
        from RadTyperMRML.phases import input_phase_name

        outputs = self.analysis.compute(
            parameters.inputVolume,
            parameters.inputSegmentation,
            parameters.parenchymaSegmentation,
            settings=self.featureSettings(parameters),
            modality=parameters.modality,
            lesions=lesions,
            keep_going=parameters.keepGoing,
            iith_reference=parameters.iithReference,
            progress=progress,
            should_cancel=shouldCancel,
            phase_nodes=self.phaseNodes(parameters, phaseVolumes),
            image_phase=input_phase_name(parameters.imagePhase),
        )
        return self._adopt(parameters, outputs)

    def startJob(self, parameters, *, lesions=None, phaseVolumes=None, python=None):
        """Start the analysis in a background process (``RadTyperLib.jobs.BackgroundJob``); see compute."""
        from RadTyperMRML.phases import input_phase_name

        return self.analysis.start_job(
            parameters.inputVolume,
            parameters.inputSegmentation,
            parameters.parenchymaSegmentation,
            settings=self.featureSettings(parameters),
            modality=parameters.modality,
            lesions=lesions,
            keep_going=parameters.keepGoing,
            python=python,
            phase_nodes=self.phaseNodes(parameters, phaseVolumes),
            image_phase=input_phase_name(parameters.imagePhase),
        )

    def loadJob(self, parameters, job):
        """Show a finished background analysis on the volume and segmentation it was started on.

        The parameter node's result tables are set only when that segmentation is still the selected one.
        """
        outputs = job.load(iith_reference=parameters.iithReference, degree=parameters.reconstructionDegree)
        _volume, segmentation = job.nodes
        if parameters.inputSegmentation is segmentation:
            return self._adopt(parameters, outputs)
        return outputs

    def _adopt(self, parameters, outputs):
        parameters.lesionTable = outputs.lesion_table
        parameters.patientTable = outputs.patient_table
        self.applyDisplay(parameters)
        return outputs

    def applyDisplay(self, parameters) -> None:
        """Reconstruction degree and the visibility of reconstructions, outlines, surfaces and shells."""
        segmentation = parameters.inputSegmentation
        self.analysis.set_reconstruction_degree(segmentation, parameters.reconstructionDegree)
        self.analysis.set_models_visibility(
            segmentation,
            reconstruction=parameters.showReconstruction,
            surface=parameters.showOriginalSurface,
            slice_outlines=parameters.showSliceOutlines,
        )
        for shell in ("TC", "TIM", "PM5", "PM10"):
            self.analysis.set_shell_visibility(segmentation, shell, getattr(parameters, f"showShell{shell}"))

    def predictSubtype(self, parameters):
        """Predict the subtype with the selected bundle from the lesion table; shown in the scene."""
        return self.analysis.predict_subtype(
            parameters.subtypeBundle,
            parameters.lesionTable,
            segmentation_node=parameters.inputSegmentation,
        )

    def exportTables(self, parameters, path) -> list:
        """Write the lesion table to ``path`` and the patient table beside it (``<name>_patient.csv``)."""
        out = pathlib.Path(path)
        written = []
        if parameters.lesionTable:
            written.append(self.analysis.export_csv(parameters.lesionTable, out))
        if parameters.patientTable:
            written.append(
                self.analysis.export_csv(parameters.patientTable, out.with_name(f"{out.stem}_patient.csv"))
            )
        return written


#
# RadTyperTest
#


class RadTyperTest(ScriptedLoadableModuleTest):
    """Self-test run by Slicer (Reload and Test, and the ``py_RadTyper`` CTest) on the demo patient."""

    def setUp(self):
        """Reset the state: a scene clear is enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_RadTyperAnalysis()
        self.setUp()
        self.test_RadTyperBadInput()

    def _installRequirements(self) -> None:
        """Install the module's requirements (from wheels) when missing: the test runs, never skips."""
        from RadTyperSlicerLib.Dependencies import installForTesting

        installForTesting(self.resourcePath("RadTyperRequirements.txt"))

    def resourcePath(self, filename: str) -> str:
        import os

        return os.path.join(os.path.dirname(__file__), "Resources", filename)

    def test_RadTyperAnalysis(self):
        """Demo patient → features of 3 lesions → tables, reconstructions (degree slider), shells, subtype."""
        import numpy as np

        self._installRequirements()
        from RadTyperSlicerLib.DemoData import loadDemoPatient
        from RadTyperSlicerLib.GuiHelpers import subtypeViewText

        self.delayDisplay("Loading the demo patient")
        volumeNode, segmentationNode, parenchymaNode = loadDemoPatient()
        self.assertEqual(segmentationNode.GetSegmentation().GetNumberOfSegments(), 8)

        slicer.util.selectModule("RadTyper")
        widget = slicer.util.getModuleWidget("RadTyper")
        logic = widget.logic
        parameters = logic.getParameterNode()
        parameters.inputVolume = volumeNode
        parameters.inputSegmentation = segmentationNode
        parameters.parenchymaSegmentation = parenchymaNode
        parameters.computeRadiomics = False
        parameters.reconstructionDegree = 15

        self.delayDisplay("Computing the features of three lesions")
        outputs = logic.compute(parameters, lesions=["lung_1", "lung_3", "liver_1"])
        self.assertEqual(parameters.lesionTable.GetNumberOfRows(), 3)
        table = slicer.util.dataframeFromTable(parameters.lesionTable)
        self.assertEqual(list(table["lesion"]), ["lung_1", "lung_3", "liver_1"])
        # burden volume = voxel count × 1.5 × 1.5 × 2.5 mm³ of each generated lesion
        np.testing.assert_allclose(table["burden_volume_mm3"], [911.25, 3150.0, 6221.25], rtol=1e-6)
        self.assertEqual(int(table["qc_degree_used"].min()), 15)
        heterogeneity = slicer.util.dataframeFromTable(parameters.patientTable)
        self.assertGreater(float(heterogeneity["max_tumoral_divergence"][0]), 0.0)
        self.assertLessEqual(float(heterogeneity["max_tumoral_divergence"][0]), 1.0)

        self.delayDisplay("Moving the degree slider")
        models = outputs.reconstructions
        self.assertEqual(sorted(models), ["liver_1", "lung_1", "lung_3"])
        ids = {name: node.GetID() for name, node in models.items()}
        before = slicer.util.arrayFromModelPoints(models["lung_3"]).copy()
        self.assertEqual(before.shape, (2562, 3))
        widget.ui.reconstructionDegreeSliderWidget.value = 1
        slicer.app.processEvents()
        self.assertEqual(parameters.reconstructionDegree, 1)
        after = slicer.util.arrayFromModelPoints(models["lung_3"])
        self.assertEqual(after.shape, (2562, 3))
        self.assertGreater(np.abs(after - before).max(), 0.5)  # the degree-1 ellipsoid differs from degree 15
        now = {
            name: node.GetID()
            for name, node in logic.analysis.reconstruction_models(segmentationNode).items()
        }
        self.assertEqual(now, ids)

        self.delayDisplay("Margin shells")
        shells = outputs.shells.GetSegmentation()
        self.assertEqual(shells.GetNumberOfSegments(), 12)
        widget.ui.showShellPM10CheckBox.checked = True
        slicer.app.processEvents()
        pm10 = logic.analysis.shell_segment_ids(segmentationNode, "PM10")
        self.assertEqual(len(pm10), 3)
        self.assertTrue(all(outputs.shells.GetDisplayNode().GetSegmentVisibility(s) for s in pm10))

        self.delayDisplay("Subtype")
        self.assertIsNotNone(
            logic.analysis.default_bundle_path(), "the default subtype model is not installed"
        )
        parameters.subtypeBundle = str(logic.analysis.default_bundle_path())
        widget.panel.predictSubtype(quiet=False)
        shown = logic.analysis.shown_subtype(segmentationNode)
        self.assertIsNotNone(shown)
        self.assertAlmostEqual(sum(shown.probabilities.values()), 1.0, places=3)
        self.assertEqual(widget.ui.subtypeLabel.text, shown.label or shown.subtype)
        if slicer.app.layoutManager() is not None:
            self.assertEqual(subtypeViewText("Red"), shown.annotation)
        self.delayDisplay("Test passed")

    def test_RadTyperBadInput(self):
        """No volume, an empty segmentation: clear RadTyper errors, not crashes."""
        self._installRequirements()
        from RadTyperLib.errors import InputError

        logic = RadTyperLogic()
        parameters = logic.getParameterNode()
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        parameters.inputSegmentation = segmentationNode
        with self.assertRaisesRegex(InputError, "No input volume"):
            logic.compute(parameters)
        parameters.inputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        with self.assertRaises(InputError):
            logic.compute(parameters)
        self.delayDisplay("Test passed")
