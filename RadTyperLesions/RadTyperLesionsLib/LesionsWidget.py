"""The RadTyper Lesions panel: wires ``Resources/UI/RadTyperLesions.ui`` to ``RadTyperLesionsLogic``.

Lesion table (click a row: slice views centred on the lesion, segment selected in the editor), rename / set
site / delete, one-click segmentation from placed points, the embedded Segment Editor (every Slicer effect),
and the automatic parenchyma. Settings live in the parameter node; the work is done by
``RadTyperMRML.lesions_logic`` (Qt-free).
"""

import qt
import slicer
from RadTyperSlicerLib.GuiHelpers import reportErrors
from slicer.i18n import tr as _
from slicer.util import VTKObservationMixin

#: Lesion table columns: (header, LesionRow attribute).
COLUMNS = (
    ("Lesion", "name"),
    ("Site", "site"),
    ("Volume (mm³)", "volume_mm3"),
    ("Components", "components"),
    ("QC", "qc"),
)
_SEGMENTATION_EVENTS = ("SegmentAdded", "SegmentRemoved", "SegmentModified", "SourceRepresentationModified")


class LesionsWidget(VTKObservationMixin):
    """Controller of the RadTyper Lesions panel (``ui``: the .ui's child widgets; ``logic``: the module logic)."""

    def __init__(self, ui, logic, resourcePath) -> None:
        VTKObservationMixin.__init__(self)
        self.ui = ui
        self.logic = logic
        self.resourcePath = resourcePath
        self.parameterNode = None
        self.rows = []
        self.observedSegmentation = None
        self.observedPoints = None
        self.busy = False
        self.cancelRequested = False

        sites = list(self.logic.lesions.site_names())
        self.ui.siteComboBox.addItems(sites)
        self.ui.newLesionSiteComboBox.addItems(sites)
        self.ui.newLesionSiteComboBox.currentIndex = sites.index("unspecified")

        self.refreshTimer = qt.QTimer()
        self.refreshTimer.setSingleShot(True)
        self.refreshTimer.setInterval(300)
        self.refreshTimer.connect("timeout()", self.refresh)

        editor = self.ui.segmentEditorWidget
        editor.setSourceVolumeNodeSelectorVisible(False)
        # As Slicer's Segment Editor module: undo, and the effect list refreshed when an extension registers
        # an effect after this panel was built.
        editor.setMaximumNumberOfUndoStates(10)
        self.effectFactory = None
        try:
            import qSlicerSegmentationsEditorEffectsPythonQt as effects
        except ImportError:  # Segmentations module disabled
            effects = None
        if effects is not None:
            self.effectFactory = effects.qSlicerSegmentEditorEffectFactory().instance()
            self.effectFactory.connect("effectRegistered(QString)", self.onEffectRegistered)

        self.ui.refreshButton.connect("clicked(bool)", self.refresh)
        self.ui.lesionTableWidget.connect("itemSelectionChanged()", self.onLesionSelectionChanged)
        self.ui.setSiteButton.connect("clicked(bool)", self.onSetSite)
        self.ui.renameButton.connect("clicked(bool)", self.onRename)
        self.ui.deleteButton.connect("clicked(bool)", self.onDelete)
        self.ui.segmentLastPointButton.connect("clicked(bool)", self.onSegmentLastPoint)
        self.ui.segmentAllPointsButton.connect("clicked(bool)", self.onSegmentAllPoints)
        self.ui.computeParenchymaButton.connect("clicked(bool)", self.onComputeParenchyma)
        self.ui.autoSegmentAllButton.connect("clicked(bool)", self.onAutoSegmentAll)
        self.ui.autoSegmentCancelButton.connect("clicked(bool)", self.onAutoSegmentCancel)

    def onEffectRegistered(self, name=None) -> None:
        self.ui.segmentEditorWidget.updateEffectList()

    # --- parameter node -----------------------------------------------------------------------------------
    def setParameterNode(self, parameterNode) -> None:
        self.parameterNode = parameterNode
        if parameterNode is not None:
            # the editor node is set before anything else (Slicer's Segment Editor sets it before the scene)
            self.ui.segmentEditorWidget.setMRMLSegmentEditorNode(self.logic.segmentEditorNode(parameterNode))
        self.updateGui()

    def updateGui(self, caller=None, event=None) -> None:
        """Called whenever a parameter changes: editor inputs, observed nodes, enabled buttons."""
        p = self.parameterNode
        volume = p.inputVolume if p else None
        segmentation = p.inputSegmentation if p else None
        points = p.seedPoints if p else None
        editor = self.ui.segmentEditorWidget
        if p is not None and editor.segmentationNode() != segmentation:
            editor.setSegmentationNode(segmentation)
        if p is not None and editor.sourceVolumeNode() != volume:
            editor.setSourceVolumeNode(volume)
        self.observeSegmentation(segmentation)
        self.observePoints(points)
        ready = bool(volume and segmentation) and not self.busy
        self.ui.refreshButton.enabled = ready
        self.ui.computeParenchymaButton.enabled = ready
        hasPoints = bool(points and points.GetNumberOfControlPoints())
        self.ui.segmentLastPointButton.enabled = ready and hasPoints
        self.ui.segmentAllPointsButton.enabled = ready and hasPoints
        from RadTyperMRML import optional_path

        hasModel = bool(p and optional_path(p.unetModel) is not None)
        self.ui.autoSegmentAllButton.enabled = ready and hasModel
        self.ui.autoSegmentCancelButton.enabled = self.busy
        self.onLesionSelectionChanged(jump=False)

    def observeSegmentation(self, segmentation) -> None:
        if segmentation is self.observedSegmentation:
            return
        if self.observedSegmentation is not None:
            for name in _SEGMENTATION_EVENTS:
                if hasattr(slicer.vtkSegmentation, name):
                    self.removeObserver(
                        self.observedSegmentation, getattr(slicer.vtkSegmentation, name), self.scheduleRefresh
                    )
        self.observedSegmentation = segmentation
        if segmentation is not None:
            for name in _SEGMENTATION_EVENTS:
                if hasattr(slicer.vtkSegmentation, name):
                    self.addObserver(
                        segmentation, getattr(slicer.vtkSegmentation, name), self.scheduleRefresh
                    )
            self.scheduleRefresh()

    def observePoints(self, points) -> None:
        if points is self.observedPoints:
            return
        event = slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent
        if self.observedPoints is not None:
            self.removeObserver(self.observedPoints, event, self.onPointPlaced)
        self.observedPoints = points
        if points is not None:
            self.addObserver(points, event, self.onPointPlaced)

    def scheduleRefresh(self, caller=None, event=None) -> None:
        self.refreshTimer.start()

    # --- lesion table -------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """List the lesions of the selected segmentation (also after every change of its segments)."""
        p = self.parameterNode
        if p is None or not (p.inputVolume and p.inputSegmentation):
            self.fillTable([])
            return
        rows = []
        with reportErrors(_("Failed to list the lesions.")):
            rows = self.logic.lesionRows(p)
        self.fillTable(rows)

    def fillTable(self, rows) -> None:
        selected = self.selectedSegmentId()
        self.rows = rows
        table = self.ui.lesionTableWidget
        table.blockSignals(True)
        table.clearContents()
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            values = row.as_dict()
            for c, (_header, key) in enumerate(COLUMNS):
                value = values[key]
                text = f"{value:.1f}" if key == "volume_mm3" else str(value)
                item = qt.QTableWidgetItem(text)
                if key == "name":
                    item.setData(qt.Qt.UserRole, row.segment_id)
                    item.setData(qt.Qt.DecorationRole, qt.QColor.fromRgbF(*row.color))
                if key in ("volume_mm3", "components"):
                    item.setTextAlignment(qt.Qt.AlignRight | qt.Qt.AlignVCenter)
                if key == "qc" and text:
                    item.setForeground(qt.QBrush(qt.QColor("darkorange")))
                    item.setToolTip(text)
                table.setItem(r, c, item)
            if row.segment_id == selected:
                table.selectRow(r)
        table.resizeColumnsToContents()
        table.blockSignals(False)
        self.onLesionSelectionChanged(jump=False)

    def selectedRow(self):
        rows = {index.row() for index in self.ui.lesionTableWidget.selectionModel().selectedRows()}
        return min(rows) if rows else None

    def selectedSegmentId(self):
        row = self.selectedRow()
        item = self.ui.lesionTableWidget.item(row, 0) if row is not None else None
        return item.data(qt.Qt.UserRole) if item is not None else None

    def onLesionSelectionChanged(self, jump: bool = True) -> None:
        """Enable the edit buttons; centre the slice views on the selected lesion and select its segment."""
        segmentId = self.selectedSegmentId()
        for button in (self.ui.setSiteButton, self.ui.renameButton, self.ui.deleteButton):
            button.enabled = segmentId is not None and not self.busy
        if segmentId is None:
            return
        row = self.selectedRow()
        index = self.ui.siteComboBox.findText(self.ui.lesionTableWidget.item(row, 1).text())
        if index >= 0:
            self.ui.siteComboBox.currentIndex = index
        if jump:
            self.ui.segmentEditorWidget.setCurrentSegmentID(segmentId)
            with reportErrors(_("Failed to show the lesion.")):
                self.logic.jumpToLesion(self.parameterNode, segmentId)

    def onSetSite(self) -> None:
        with reportErrors(_("Failed to set the lesion site.")):
            self.logic.lesions.set_lesion_site(
                self.parameterNode.inputSegmentation,
                self.selectedSegmentId(),
                self.ui.siteComboBox.currentText,
            )
        self.refresh()

    def onRename(self) -> None:
        segmentId = self.selectedSegmentId()
        segment = self.parameterNode.inputSegmentation.GetSegmentation().GetSegment(segmentId)
        name = qt.QInputDialog.getText(
            slicer.util.mainWindow(),
            _("Rename lesion"),
            _("New name:"),
            qt.QLineEdit.Normal,
            segment.GetName(),
        )
        if not name:
            return
        with reportErrors(_("Failed to rename the lesion.")):
            self.logic.lesions.rename_lesion(self.parameterNode.inputSegmentation, segmentId, name)
        self.refresh()

    def onDelete(self) -> None:
        segmentId = self.selectedSegmentId()
        segmentation = self.parameterNode.inputSegmentation
        name = segmentation.GetSegmentation().GetSegment(segmentId).GetName()
        if not slicer.util.confirmYesNoDisplay(_("Delete lesion '{name}' (its segment)?").format(name=name)):
            return
        with reportErrors(_("Failed to delete the lesion.")):
            self.logic.lesions.delete_lesion(segmentation, segmentId)
        self.refresh()

    # --- one-click segmentation ---------------------------------------------------------------------------
    def onPointPlaced(self, caller=None, event=None) -> None:
        if self.parameterNode is not None and self.parameterNode.segmentOnPlace and not self.busy:
            qt.QTimer.singleShot(0, self.onSegmentLastPoint)  # after the markups node finished its update
        self.updateGui()

    def onSegmentLastPoint(self) -> None:
        self.segmentPoints(lastOnly=True)

    def onSegmentAllPoints(self) -> None:
        self.segmentPoints(lastOnly=False)

    def ensureRequirements(self) -> bool:
        """Install RadTyper's Python packages on first use (asks the user first); False if that failed."""
        from RadTyperSlicerLib.Dependencies import ensurePythonRequirements

        return ensurePythonRequirements(self.resourcePath("RadTyperLesionsRequirements.txt"))

    def segmentPoints(self, lastOnly: bool) -> None:
        if self.busy or not self.ensureRequirements():
            return
        if self.parameterNode.segmentationMethod == "unet" and not self.ensureTorch():
            return
        self.busy = True
        self.ui.autoSegmentationStatusLabel.text = _("Segmenting…")
        slicer.app.processEvents()
        outcomes = []
        try:
            with reportErrors(
                _("One-click segmentation failed."),
                waitCursor=True,
                statusLabel=self.ui.autoSegmentationStatusLabel,
            ):
                outcomes = self.logic.segmentPoints(
                    self.parameterNode, site=self.ui.newLesionSiteComboBox.currentText, lastOnly=lastOnly
                )
        finally:
            self.busy = False
        if outcomes:
            lines = [
                _("'{name}': {volume:.0f} mm³").format(name=o.name, volume=o.volume_mm3)
                if o.segment_id
                else _("'{name}' skipped: {reason}").format(name=o.name, reason=o.skipped)
                for o in outcomes
            ]
            self.ui.autoSegmentationStatusLabel.text = "\n".join(lines)
        self.refresh()
        self.updateGui()

    def ensureTorch(self) -> bool:
        """torch from the PyTorch extension (it asks before installing); False (message shown) if missing."""
        from RadTyperSlicerLib.Dependencies import ensureTorch

        ok = False
        with reportErrors(_("The U-Net needs PyTorch."), statusLabel=self.ui.autoSegmentationStatusLabel):
            ensureTorch()
            ok = True
        return ok

    # --- U-Net: auto-segment all lesions ------------------------------------------------------------------
    def onAutoSegmentAll(self) -> None:
        """Run the U-Net on the whole volume with a progress bar and Cancel (events processed per batch)."""
        if self.busy or not self.ensureRequirements() or not self.ensureTorch():
            return
        self.busy = True
        self.cancelRequested = False
        bar = self.ui.autoSegmentProgressBar
        bar.value = 0
        bar.visible = True
        self.ui.autoSegmentationStatusLabel.text = _("Auto-segmenting all lesions…")
        self.updateGui()

        def progress(fraction: float, message: str = "") -> None:
            bar.value = round(100 * fraction)
            if message:
                self.ui.autoSegmentationStatusLabel.text = message
            slicer.app.processEvents()

        def shouldCancel() -> bool:
            slicer.app.processEvents()
            return self.cancelRequested

        outcome = None
        try:
            from RadTyperLib.features import Cancelled

            with reportErrors(
                _("Automatic segmentation failed."), statusLabel=self.ui.autoSegmentationStatusLabel
            ):
                try:
                    outcome = self.logic.autoSegmentAll(
                        self.parameterNode,
                        site=self.ui.newLesionSiteComboBox.currentText,
                        progress=progress,
                        shouldCancel=shouldCancel,
                    )
                except Cancelled:
                    self.ui.autoSegmentationStatusLabel.text = _("Cancelled: no segment was added.")
        finally:
            self.busy = False
            bar.visible = False
        if outcome is not None:
            if outcome.empty:
                self.ui.autoSegmentationStatusLabel.text = "\n".join(outcome.messages)
            else:
                lines = [
                    _("'{name}': {volume:.0f} mm³").format(name=n, volume=v)
                    for n, v in zip(outcome.names, outcome.volumes_mm3, strict=True)
                ]
                header = _(
                    "{n} new segment(s) from the U-Net ({seconds:.0f} s): check, edit or delete them."
                ).format(n=len(outcome.names), seconds=outcome.elapsed_s)
                self.ui.autoSegmentationStatusLabel.text = "\n".join([header, *lines, *outcome.messages])
        self.refresh()
        self.updateGui()

    def onAutoSegmentCancel(self) -> None:
        self.cancelRequested = True

    # --- parenchyma ---------------------------------------------------------------------------------------
    def onComputeParenchyma(self) -> None:
        if not self.ensureRequirements():
            return
        with reportErrors(_("Failed to compute the parenchyma."), waitCursor=True):
            node = self.logic.computeParenchyma(self.parameterNode)
            self.parameterNode.parenchymaSegmentation = node

    # --- module enter / exit ------------------------------------------------------------------------------
    def enter(self) -> None:
        self.ui.segmentEditorWidget.installKeyboardShortcuts()
        self.scheduleRefresh()

    def exit(self) -> None:
        """Leaving the module: no more observation of the segmentation and points, editor as Slicer's own."""
        self.refreshTimer.stop()
        self.observeSegmentation(None)
        self.observePoints(None)
        self.refreshTimer.stop()  # observeSegmentation(None) schedules a refresh
        editor = self.ui.segmentEditorWidget
        editor.setActiveEffect(None)
        editor.uninstallKeyboardShortcuts()
        editor.removeViewObservations()

    def sceneStartClose(self) -> None:
        """The scene is closing: the editor lets go of the segmentation, as Slicer's Segment Editor does."""
        self.observeSegmentation(None)
        self.observePoints(None)
        self.refreshTimer.stop()
        editor = self.ui.segmentEditorWidget
        editor.setActiveEffect(None)
        editor.setSegmentationNode(None)
        editor.removeViewObservations()
        self.fillTable([])

    def cleanup(self) -> None:
        self.refreshTimer.stop()
        if self.effectFactory is not None:
            self.effectFactory.disconnect("effectRegistered(QString)", self.onEffectRegistered)
        self.removeObservers()
