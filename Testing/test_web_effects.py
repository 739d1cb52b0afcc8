"""Which Segment Editor effects of trame-slicer work with the project's pins (slicer-core 5.11, vtk 9.6.0).

The page of ``radtyper view`` is built (no server started, no browser) on the demo patient and each effect of
trame-slicer is applied through trame-slicer's own effect API on a lesion of the demo (the same calls its
toolbar makes, with the mouse strokes given as world / display coordinates); the voxel count of the lesion
must change the way the effect says, and undo must restore it. ``Resources/Docs/web.md`` has the table.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trame_slicer", reason="needs the web extra (pip install 'radtyper[web]')")
pytestmark = pytest.mark.mrml


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    import os
    import sys

    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        from RadTyperWeb.app import RadTyperViewApp
        from RadTyperWeb.session import PatientSource

        app = RadTyperViewApp([PatientSource.demo_patient()], tmp_path_factory.mktemp("out"))
        assert app.load(PatientSource.demo_patient())
    finally:
        sys.argv = argv
    return app


def _lesion(app, name):
    editor = app.slicer_app.segmentation_editor
    sid = app.session.segment_id_of(name)
    editor.set_active_segment_id(sid)
    return editor, sid


def _count(editor, sid) -> int:
    return int(np.count_nonzero(editor.get_segment_labelmap(sid, as_numpy_array=True)))


def _undo(app) -> None:
    app._editor_logic._undo_stack.undo()


def _centre(app, name):
    return app.session.lesions_logic.lesion_centre_ras(
        app.session.volume, app.session.segmentation, app.session.segment_id_of(name)
    )


def _sphere(radius_mm: float):
    import vtk

    source = vtk.vtkSphereSource()
    source.SetRadius(radius_mm)
    source.SetThetaResolution(24)
    source.SetPhiResolution(24)
    source.Update()
    return source.GetOutput()


def _points(*xyz):
    import vtk

    pts = vtk.vtkPoints()
    for p in xyz:
        pts.InsertNextPoint(*p)
    return pts


def test_paint_and_erase(page):
    from trame_slicer.segmentation import SegmentationEffectErase, SegmentationEffectPaint

    editor, sid = _lesion(page, "lung_1")
    n0 = _count(editor, sid)
    centre = np.array(_centre(page, "lung_1"))
    paint = editor.set_active_effect_type(SegmentationEffectPaint)
    paint.paint_glyph_at_world_coordinates(_sphere(4.0), _points(centre + np.array([12.0, 0.0, 0.0])))
    n1 = _count(editor, sid)
    assert n1 > n0  # a 4 mm ball painted beside the nodule
    _undo(page)
    assert _count(editor, sid) == n0
    erase = editor.set_active_effect_type(SegmentationEffectErase)
    erase.paint_glyph_at_world_coordinates(_sphere(3.0), _points(centre))
    assert 0 < _count(editor, sid) < n0
    _undo(page)
    assert _count(editor, sid) == n0


def test_threshold_islands_smoothing(page):
    from trame_slicer.segmentation import (
        SegmentationEffectIslands,
        SegmentationEffectSmoothing,
        SegmentationEffectThreshold,
    )

    editor, sid = _lesion(page, "lung_2")  # two pieces in the demo
    n0 = _count(editor, sid)
    islands = editor.set_active_effect_type(SegmentationEffectIslands)
    islands.keep_largest_island()
    n1 = _count(editor, sid)
    assert 0 < n1 < n0
    _undo(page)
    assert _count(editor, sid) == n0

    smoothing = editor.set_active_effect_type(SegmentationEffectSmoothing)
    smoothing.apply_opening(3.0, sid)  # opening removes thin spicules
    assert _count(editor, sid) < n0
    _undo(page)
    assert _count(editor, sid) == n0

    editor, sid = _lesion(page, "lung_1")
    n0 = _count(editor, sid)
    threshold = editor.set_active_effect_type(SegmentationEffectThreshold)
    threshold.set_threshold_min_max_values((-200.0, 3000.0))  # every non-lung voxel of the CT
    threshold.apply()
    assert _count(editor, sid) > 100 * n0
    _undo(page)
    assert _count(editor, sid) == n0


def test_logical_operators(page):
    from trame_slicer.segmentation import SegmentationEffectLogicalOperators

    editor, sid = _lesion(page, "lung_1")
    other = page.session.segment_id_of("lung_3")
    n0, n_other = _count(editor, sid), _count(editor, other)
    ops = editor.set_active_effect_type(SegmentationEffectLogicalOperators)
    ops.add(other)
    assert _count(editor, sid) == n0 + n_other  # disjoint lesions
    _undo(page)
    ops.clear()
    assert _count(editor, sid) == 0
    _undo(page)
    assert _count(editor, sid) == n0


def test_scissors_and_draw(page):
    from trame_slicer.segmentation import SegmentationEffectDraw, SegmentationEffectScissors
    from trame_slicer.segmentation.scissors_effect_parameters import ScissorsEffectFillMode

    editor, sid = _lesion(page, "liver_1")
    page.session.jump_to("liver_1")  # the axial view shows the lesion's centre slice
    view = next(v for v in page._views("slice") if v.get_singleton_tag() == "Red")
    view.render_window().SetSize(400, 400)
    view.render()
    n0 = _count(editor, sid)
    # a square around the view centre, in display pixels (the lesion is at the centre after the jump)
    square = _points((150.0, 150.0, 0.0), (250.0, 150.0, 0.0), (250.0, 250.0, 0.0), (150.0, 250.0, 0.0))
    scissors = editor.set_active_effect_type(SegmentationEffectScissors)
    scissors.set_fill_mode(ScissorsEffectFillMode.ERASE_INSIDE)
    scissors.apply_points_display_coordinates(square, view)
    assert _count(editor, sid) < n0
    _undo(page)
    assert _count(editor, sid) == n0
    draw = editor.set_active_effect_type(SegmentationEffectDraw)
    draw.apply_points_display_coordinates(square, view)  # fills the square on the lesion's centre slice
    assert _count(editor, sid) > n0
    _undo(page)
    assert _count(editor, sid) == n0


def test_one_click_in_the_axial_view_adds_the_lesion(page):
    """The click handler of the page: display pixel → RAS (slice node XYToRAS) → seeded segmentation."""
    editor, sid = _lesion(page, "lung_3")
    n_truth = _count(editor, sid)
    page.session.jump_to("lung_3")  # the slice views are centred on the nodule
    page.session.segmentation.GetSegmentation().RemoveSegment(sid)
    view = next(v for v in page._views("slice") if v.get_singleton_tag() == "Red")
    w, h, _ = view.get_view_node().GetDimensions()

    class Click:
        def GetEventPosition(self):
            return (w // 2, h // 2)

    names_before = [r["name"] for r in page.session.lesion_rows()]
    page.state.rt_click_mode = True
    page._click_handler(view)(Click(), "LeftButtonPressEvent")
    rows = page.session.lesion_rows()
    assert len(rows) == len(names_before) + 1
    added = rows[-1]
    assert added["name"] not in names_before and not page.state.rt_click_mode
    # the nodule is found again (the seeded method may add part of its blurred rim)
    assert added["volume_ml"] * 1000 >= 0.8 * n_truth * float(np.prod(page.session.volume.GetSpacing()))
    page.state.rt_click_mode = False
    page._click_handler(view)(Click(), "LeftButtonPressEvent")  # click mode off: nothing happens
    assert len(page.session.lesion_rows()) == len(rows)
