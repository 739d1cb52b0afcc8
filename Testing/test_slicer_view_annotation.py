"""The subtype text in the slice views survives DataProbe, which owns and rewrites the corner annotation.

DataProbe's own ``drawCornerAnnotations`` / ``updateCornerAnnotation`` (from ../shared/slicer-reference, Slicer
5.10 and 5.12) run on a real vtk renderer holding a ``vtkCornerAnnotation`` and RadTyper's text actor: the
corners are rewritten (as after every slice scroll in Slicer), RadTyper's text and colour are unchanged.
"""

from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest
import vtk

from RadTyperMRML.view_annotation import ACTOR_NAME, TEXT_COLOR, find_text_actor, set_view_text, view_text

KIT = Path(__file__).resolve().parents[1].parent / "shared" / "slicer-reference"
ANNOTATIONS = "Modules/Scripted/DataProbe/DataProbeLib/SliceViewAnnotations.py"


def dataprobe_methods(release: str) -> dict:
    """DataProbe's corner-annotation methods, executed from Slicer's own source of ``release``."""
    path = KIT / release / ANNOTATIONS
    if not path.is_file():
        pytest.skip(f"Slicer reference kit not available ({path})")
    source = path.read_text(encoding="utf-8")
    cls = next(
        n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "SliceAnnotations"
    )
    fake_slicer = types.SimpleNamespace(
        app=types.SimpleNamespace(
            applicationLogic=lambda: types.SimpleNamespace(UseCustomFontFile=lambda prop: None)
        )
    )
    ns: dict = {"vtk": vtk, "slicer": fake_slicer}
    out = {}
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef) and fn.name in (
            "drawCornerAnnotations",
            "updateCornerAnnotation",
            "fitText",
        ):
            code = ast.get_source_segment(source, fn)
            exec(compile(ast.parse(code), str(path), "exec"), ns)
            out[fn.name] = ns[fn.name]
    assert set(out) == {"drawCornerAnnotations", "updateCornerAnnotation", "fitText"}
    return out


class FakeSliceView:
    def __init__(self, renderer, corner):
        self.width = 600
        self._corner = corner
        self.renders = 0

    def cornerAnnotation(self):
        return self._corner

    def scheduleRender(self):
        self.renders += 1


@pytest.mark.parametrize("release", ["5.10", "5.12"])
def test_dataprobe_rewrites_the_corners_but_not_radtypers_text(release):
    methods = dataprobe_methods(release)
    renderer = vtk.vtkRenderer()
    corner = vtk.vtkCornerAnnotation()
    renderer.AddViewProp(corner)
    corner.SetText(vtk.vtkCornerAnnotation.UpperRight, "RadTyper subtype: S2 (p = 0.81)")  # the old way
    set_view_text(renderer, "RadTyper subtype: S2 (p = 0.81)")

    view = FakeSliceView(renderer, corner)
    texts = [{}, {}, {"1-Label": {"text": "L: lesions", "category": "A"}}, {}]
    dataprobe = types.SimpleNamespace(
        sliceViewAnnotationsEnabled=True,
        sliceViews={"Red": view},
        fontSize=14,
        fontFamily="Times",
        cornerTexts=texts,
        annotationsDisplayAmount=0,
        fitText=methods["fitText"],
    )
    dataprobe.makeAnnotationText = lambda sliceLogic: methods["drawCornerAnnotations"](dataprobe, "Red")
    slice_logic = types.SimpleNamespace(
        GetBackgroundLayer=lambda: types.SimpleNamespace(
            GetSliceNode=lambda: types.SimpleNamespace(GetLayoutName=lambda: "Red")
        )
    )
    for _scroll in range(3):  # what every slice change triggers
        methods["updateCornerAnnotation"](dataprobe, slice_logic)

    # DataProbe owns the corners: the old corner text is gone, its own text is there
    assert corner.GetText(vtk.vtkCornerAnnotation.UpperRight) == ""
    assert corner.GetText(vtk.vtkCornerAnnotation.UpperLeft) == "L: lesions\n"
    # RadTyper's actor is untouched: same text, colour, still in the renderer
    actor = find_text_actor(renderer)
    assert actor is not None and actor.GetObjectName() == ACTOR_NAME
    assert view_text(renderer) == "RadTyper subtype: S2 (p = 0.81)"
    assert actor.GetTextProperty().GetColor() == pytest.approx(TEXT_COLOR)
    assert renderer.GetActors2D().IsItemPresent(actor)


def test_text_actor_is_reused_and_removed():
    renderer = vtk.vtkRenderer()
    assert view_text(renderer) == "" and set_view_text(renderer, "") is None
    first = set_view_text(renderer, "a")
    second = set_view_text(renderer, "b")
    assert first is second and view_text(renderer) == "b"
    assert renderer.GetActors2D().GetNumberOfItems() == 1
    set_view_text(renderer, "")
    assert find_text_actor(renderer) is None and renderer.GetActors2D().GetNumberOfItems() == 0
