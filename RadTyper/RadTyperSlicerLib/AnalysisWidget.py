"""The RadTyper module panel: wires the widgets of ``Resources/UI/RadTyper.ui`` to ``RadTyperLogic``.

Settings live in the parameter node (bound to the widgets by their ``SlicerParameterName``); this class reacts
to buttons and to parameter changes, shows progress, and shows results. It computes nothing itself.
"""

import logging

import slicer
from slicer.i18n import tr as _

from .GuiHelpers import askCsvPath, reportErrors, setSubtypeViewText, showPlot, showTables

SHELLS = ("TC", "TIM", "PM5", "PM10")


class AnalysisWidget:
    """Controller of the RadTyper panel (``ui``: the .ui's child widgets; ``logic``: ``RadTyperLogic``)."""

    def __init__(self, ui, logic, resourcePath) -> None:
        self.ui = ui
        self.logic = logic
        self.resourcePath = resourcePath
        self.parameterNode = None
        self.poller = None
        self.cancelRequested = False
        self.busy = False
        self.lastDisplay = None
        self.lastCorner = None
        self.phasesText = ""

        self.ui.progressBar.hide()
        self.ui.cancelButton.hide()
        self.ui.computeButton.connect("clicked(bool)", self.onCompute)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.showTablesButton.connect("clicked(bool)", self.onShowTables)
        self.ui.exportCsvButton.connect("clicked(bool)", self.onExportCsv)
        self.ui.showRecoveryPlotButton.connect("clicked(bool)", self.onShowRecoveryPlot)
        self.ui.showCvTableButton.connect("clicked(bool)", self.onShowCvTable)
        self.ui.predictSubtypeButton.connect("clicked(bool)", self.onPredictSubtype)
        self.ui.phaseVolumesSelector.connect("checkedNodesChanged()", self.updatePhaseWidgets)
        self.updatePhaseWidgets()

    # --- parameter node -----------------------------------------------------------------------------------
    def setParameterNode(self, parameterNode) -> None:
        self.parameterNode = parameterNode
        self.lastDisplay = None
        self.lastCorner = None
        if parameterNode is None:  # scene closing: its subtype is gone from the views too
            setSubtypeViewText("")
            self.lastCorner = ""
        self.updateGui()

    def updateGui(self, caller=None, event=None) -> None:
        """Called whenever a parameter changes: buttons, display of the results, texts."""
        p = self.parameterNode
        ready = bool(p and p.inputVolume and p.inputSegmentation)
        self.ui.computeButton.enabled = ready and not self.busy
        self.ui.computeButton.toolTip = (
            _("Compute features, heterogeneity and the displays for the selected lesions")
            if ready
            else _("Select the input volume and the lesion segmentation")
        )
        self.ui.predictSubtypeButton.enabled = bool(p and p.lesionTable) and not self.busy
        self.ui.exportCsvButton.enabled = bool(p and (p.lesionTable or p.patientTable))
        self.ui.showTablesButton.enabled = self.ui.exportCsvButton.enabled
        if p is None:
            return
        self.applyDisplay()
        self.updateResultTexts()

    def phaseVolumes(self) -> list:
        """The checked extra phase volumes (a plain selector, read at Compute: no connector binds a list)."""
        return list(self.ui.phaseVolumesSelector.checkedNodes())

    def updatePhaseWidgets(self) -> None:
        """The input volume's phase name matters only when extra phases are checked."""
        self.ui.imagePhaseLineEdit.enabled = bool(self.phaseVolumes())

    def applyDisplay(self, force: bool = False) -> None:
        """Push degree and visibility settings into the scene (only what changed)."""
        p = self.parameterNode
        if p is None or p.inputSegmentation is None:
            return
        state = (
            p.inputSegmentation.GetID(),
            p.reconstructionDegree,
            p.showReconstruction,
            p.showOriginalSurface,
            p.showSliceOutlines,
            p.showShellTC,
            p.showShellTIM,
            p.showShellPM5,
            p.showShellPM10,
        )
        if state == self.lastDisplay and not force:
            return
        self.lastDisplay = state
        with reportErrors(_("Failed to update the display.")):
            self.logic.applyDisplay(p)

    def updateResultTexts(self) -> None:
        p = self.parameterNode
        lines = self.logic.analysis.heterogeneity_summary(p.patientTable)
        self.ui.heterogeneityLabel.text = (
            "\n".join(lines[:2]) if lines else _("Compute to see the inter-lesion heterogeneity.")
        )
        self.ui.iithLabel.text = "\n".join(lines[2:])
        shown = self.logic.analysis.shown_subtype(p.inputSegmentation) if p.inputSegmentation else None
        if shown is None:
            self.ui.subtypeLabel.text = "–"
            self.ui.subtypeProbabilitiesLabel.text = ""
            self.ui.subtypeProvenanceLabel.text = ""
            corner = ""
        else:
            self.ui.subtypeLabel.text = shown.label or shown.subtype
            self.ui.subtypeProbabilitiesLabel.text = ", ".join(
                f"{k}: {v:.2f}" for k, v in sorted(shown.probabilities.items(), key=lambda kv: -kv[1])
            )
            self.ui.subtypeProvenanceLabel.text = shown.provenance
            corner = shown.annotation
        corner = corner if p.showSubtypeInViews else ""
        if corner != self.lastCorner:
            self.lastCorner = corner
            setSubtypeViewText(corner)

    # --- compute ------------------------------------------------------------------------------------------
    def ensureRequirements(self) -> bool:
        from .Dependencies import ensurePythonRequirements

        return ensurePythonRequirements(self.resourcePath("RadTyperRequirements.txt"))

    def setBusy(self, busy: bool) -> None:
        self.busy = busy
        self.ui.progressBar.setVisible(busy)
        self.ui.cancelButton.setVisible(busy)
        self.ui.cancelButton.enabled = busy
        self.ui.computeButton.enabled = not busy
        if busy:
            self.ui.progressBar.value = 0
        self.updateGui()

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = round(100 * fraction)
        self.ui.statusLabel.text = message

    def onCompute(self) -> None:
        """Compute (in a background process unless switched off); the GUI stays usable."""
        if self.busy or not self.ensureRequirements():
            return
        p = self.parameterNode
        if p.computeRadiomics:
            from .Dependencies import ensureRadiomics

            ok = False
            with reportErrors(_("Radiomics features are not available."), statusLabel=self.ui.statusLabel):
                ensureRadiomics()
                ok = True
            if not ok:
                return
        self.cancelRequested = False
        self.phasesText = None  # stays None when the phase volumes are refused (the message is shown)
        with reportErrors(_("Invalid phase volumes."), statusLabel=self.ui.statusLabel):
            self.phasesText = self.describePhases(p)
        if self.phasesText is None:
            return
        self.ui.statusLabel.text = _("Starting…") + (" (" + self.phasesText + ")" if self.phasesText else "")
        if p.runInBackground:
            from .BackgroundProcess import JobPoller, pythonExecutable

            job = None
            with reportErrors(_("Failed to start the analysis."), statusLabel=self.ui.statusLabel):
                job = self.logic.startJob(p, phaseVolumes=self.phaseVolumes(), python=pythonExecutable())
            if job is None:
                return
            self.setBusy(True)
            self.poller = JobPoller(job, self.onProgress, self.onJobFinished, self.onJobFailed).start()
            return
        self.setBusy(True)
        try:
            with reportErrors(_("Failed to compute the results."), statusLabel=self.ui.statusLabel):
                outputs = self.logic.compute(
                    p,
                    phaseVolumes=self.phaseVolumes(),
                    progress=self.onProgressInProcess,
                    shouldCancel=self.shouldCancel,
                )
                self.showOutputs(outputs)
        finally:
            self.setBusy(False)

    def describePhases(self, p):
        """``"phases: pre = 'A' (input), post = 'B'"``, "" without extra phases; InputError when invalid."""
        from RadTyperMRML.phases import describe_phases, input_phase_name

        phases = self.logic.phaseNodes(p, self.phaseVolumes())
        if not phases:
            return ""
        return describe_phases(phases, p.inputVolume, input_phase_name(p.imagePhase))

    def onProgressInProcess(self, fraction: float, message: str) -> None:
        self.onProgress(fraction, message)
        slicer.app.processEvents()  # lets Cancel be clicked between lesions

    def shouldCancel(self) -> bool:
        return self.cancelRequested

    def onCancel(self) -> None:
        self.cancelRequested = True
        self.ui.cancelButton.enabled = False
        if self.poller is not None and self.poller.running:
            self.poller.cancel()
            self.poller = None
            self.ui.statusLabel.text = _("Cancelled.")
            self.setBusy(False)

    def onJobFinished(self, job) -> None:
        self.poller = None
        try:
            with reportErrors(_("Failed to load the results."), statusLabel=self.ui.statusLabel):
                # onto the nodes the job was started on, whatever is selected now
                outputs = self.logic.loadJob(self.parameterNode, job)
                self.showOutputs(outputs)
        finally:
            self.setBusy(False)

    def onJobFailed(self, job) -> None:
        self.poller = None
        self.setBusy(False)
        if job.state == "cancelled":  # Cancel, or the scene was closed
            self.ui.statusLabel.text = _("Cancelled.")
            return
        logging.error("RadTyper analysis process output:\n" + "\n".join(job.log))
        message = job.error or _("The analysis process failed.")
        self.ui.statusLabel.text = message
        slicer.util.errorDisplay(
            _("Failed to compute the results.") + "\n\n" + message, detailedText="\n".join(job.log)
        )

    def showOutputs(self, outputs) -> None:
        errors = outputs.error_lines()
        warnings = outputs.qc_lines()  # the command line's "radtyper: warning: lesion …" lines
        for line in warnings:
            logging.warning(line)
        self.ui.statusLabel.text = (
            _("Done.")
            + (" (" + self.phasesText + ")" if self.phasesText else "")
            + (" " + errors[-1] if errors else "")
            + (
                " " + _("{count} QC warning(s): hover here for the list.").format(count=len(warnings))
                if warnings
                else ""
            )
        )
        self.ui.statusLabel.toolTip = "\n".join(errors + warnings)
        self.applyDisplay(force=True)
        showTables(outputs.lesion_table)
        p = self.parameterNode
        from RadTyperMRML import optional_path

        if optional_path(p.subtypeBundle) is not None:
            self.predictSubtype(quiet=True)
        self.updateResultTexts()

    # --- results ------------------------------------------------------------------------------------------
    def onShowTables(self) -> None:
        showTables(self.parameterNode.lesionTable, self.parameterNode.patientTable)

    def onShowRecoveryPlot(self) -> None:
        chart = self.logic.analysis.output_node("recovery_chart", self.parameterNode.inputSegmentation)
        if chart is None:
            self.ui.statusLabel.text = _("Compute first: there is no recovery curve yet.")
            return
        showPlot(chart)

    def onShowCvTable(self) -> None:
        table = self.logic.analysis.output_node("cv_table", self.parameterNode.inputSegmentation)
        if table is None:
            self.ui.statusLabel.text = _("Compute first: there is no CV table yet.")
            return
        showTables(table)

    def onExportCsv(self) -> None:
        p = self.parameterNode
        table = p.lesionTable or p.patientTable
        path = askCsvPath(f"{table.GetName()}.csv")
        if not path:
            return
        with reportErrors(_("Failed to export the tables.")):
            written = self.logic.exportTables(p, path)
            self.ui.statusLabel.text = _("Written: {files}").format(files=", ".join(str(w) for w in written))

    def onPredictSubtype(self) -> None:
        self.predictSubtype(quiet=False)

    def predictSubtype(self, quiet: bool) -> None:
        """Predict with the selected bundle; ``quiet`` shows a failure in the panel instead of a popup."""
        from RadTyperLib.errors import RadTyperError

        try:
            self.logic.predictSubtype(self.parameterNode)
        except RadTyperError as exc:
            self.ui.subtypeLabel.text = "–"
            self.ui.subtypeProvenanceLabel.text = str(exc)
            if not quiet:
                slicer.util.errorDisplay(_("Failed to predict the subtype.") + f"\n\n{exc}")
        except Exception as exc:
            logging.exception("RadTyper subtype prediction failed")
            self.ui.subtypeProvenanceLabel.text = f"{type(exc).__name__}: {exc}"
            if not quiet:
                slicer.util.errorDisplay(_("Failed to predict the subtype.") + f"\n\n{exc}")
        self.lastCorner = None
        self.updateResultTexts()

    def cleanup(self) -> None:
        if self.poller is not None and self.poller.running:
            self.poller.cancel()
        self.poller = None
        setSubtypeViewText("")
