"""Small Slicer GUI helpers shared by the two RadTyper modules: error messages, views, corner annotations."""

import contextlib
import logging
import traceback

import qt
import slicer
from slicer.i18n import tr as _


@contextlib.contextmanager
def reportErrors(message: str, *, waitCursor: bool = False, statusLabel=None):
    """Run a GUI action; show a failure as a message box instead of a traceback.

    RadTyper's own errors (bad input: no volume, empty segmentation, lesion outside the volume, a model made
    for other features …) are shown as their one-line message. Anything else is a bug: the message box gets
    the traceback as details and it is logged. The exception is not re-raised (a Qt slot has no caller).
    ``statusLabel`` (a QLabel) also receives the message.
    """
    from RadTyperLib.errors import RadTyperError

    if waitCursor:
        slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
    try:
        yield
    except RadTyperError as exc:
        _show(message, str(exc), None, statusLabel)
    except Exception as exc:
        logging.error(traceback.format_exc())
        _show(message, f"{type(exc).__name__}: {exc}", traceback.format_exc(), statusLabel)
    finally:
        if waitCursor:
            slicer.app.restoreOverrideCursor()


def _show(message: str, detail: str, details, statusLabel) -> None:
    if statusLabel is not None:
        statusLabel.text = f"{message} {detail}"
    kwargs = {"detailedText": details} if details else {}
    slicer.util.errorDisplay(f"{message}\n\n{detail}", **kwargs)


def showTables(*tableNodes) -> None:
    """Show the first table in a layout that has a table view."""
    nodes = [n for n in tableNodes if n is not None]
    layoutManager = slicer.app.layoutManager()
    if not nodes or layoutManager is None:
        return
    tableLayouts = (
        slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView,
        slicer.vtkMRMLLayoutNode.SlicerLayout3DTableView,
        slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView,
    )
    if layoutManager.layout not in tableLayouts:
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
    selection = slicer.app.applicationLogic().GetSelectionNode()
    selection.SetActiveTableID(nodes[0].GetID())
    slicer.app.applicationLogic().PropagateTableSelection()


def showPlot(chartNode) -> None:
    """Show a plot chart in a layout that has a plot view (Plots module)."""
    layoutManager = slicer.app.layoutManager()
    if chartNode is None or layoutManager is None:
        return
    plotLayouts = (
        slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView,
        slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView,
        slicer.vtkMRMLLayoutNode.SlicerLayoutOneUpPlotView,
        slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalPlotView,
    )
    if layoutManager.layout not in plotLayouts:
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
    slicer.app.applicationLogic().GetSelectionNode().SetActivePlotChartID(chartNode.GetID())
    slicer.app.applicationLogic().PropagatePlotChartSelection()


def _sliceRenderer(layoutManager, name):
    view = layoutManager.sliceWidget(name).sliceView()
    return view, view.renderWindow().GetRenderers().GetItemAsObject(0)


def setSubtypeViewText(text: str) -> int:
    """Show ``text`` at the top of every slice view ("" clears it); return the view count.

    Drawn by RadTyper's own text actor (``RadTyperMRML.view_annotation``), not the corner annotation that
    DataProbe rewrites at every slice change.
    """
    from RadTyperMRML.view_annotation import set_view_text

    layoutManager = slicer.app.layoutManager()
    if layoutManager is None:
        return 0
    names = layoutManager.sliceViewNames()
    for name in names:
        view, renderer = _sliceRenderer(layoutManager, name)
        set_view_text(renderer, text)
        view.scheduleRender()
    return len(names)


def subtypeViewText(viewName: str = "Red") -> str:
    """The RadTyper text shown in a slice view ("" when there is no such view or text)."""
    from RadTyperMRML.view_annotation import view_text

    layoutManager = slicer.app.layoutManager()
    widget = layoutManager.sliceWidget(viewName) if layoutManager is not None else None
    if widget is None:
        return ""
    return view_text(_sliceRenderer(layoutManager, viewName)[1])


def askCsvPath(defaultName: str) -> str:
    """A file dialog for a CSV file to write ("" when cancelled)."""
    return qt.QFileDialog.getSaveFileName(
        slicer.util.mainWindow(), _("Export table as CSV"), defaultName, _("CSV files (*.csv)")
    )
