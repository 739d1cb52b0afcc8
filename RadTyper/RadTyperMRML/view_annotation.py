"""RadTyper's own text in a view (the predicted subtype), drawn by a text actor that RadTyper owns.

Slicer's DataProbe (``DataProbeLib/SliceViewAnnotations.py``) owns the slice views' ``vtkCornerAnnotation``:
on every slice change it rewrites the text of all four corners and resets the font. Text written there is
lost at the first scroll. RadTyper therefore adds its own ``vtkTextActor`` (object name
:data:`ACTOR_NAME`) to the view's renderer, at the top centre, away from DataProbe's corners; DataProbe never
touches it. Only ``vtk`` is used: the Slicer panel passes each slice view's renderer, tests pass a plain one.
"""

from __future__ import annotations

from typing import Any

import vtk

ACTOR_NAME = "RadTyper.SubtypeAnnotation"
#: Amber, readable on CT and MR grey levels.
TEXT_COLOR = (1.0, 0.85, 0.2)
FONT_SIZE = 14


def find_text_actor(renderer: Any) -> Any:
    """RadTyper's text actor in ``renderer`` (None when there is none)."""
    actors = renderer.GetActors2D()
    actors.InitTraversal()
    for _ in range(actors.GetNumberOfItems()):
        actor = actors.GetNextActor2D()
        if isinstance(actor, vtk.vtkTextActor) and actor.GetObjectName() == ACTOR_NAME:
            return actor
    return None


def set_view_text(renderer: Any, text: str) -> Any:
    """Show ``text`` at the top centre of the view ("" removes it); return the actor (None when removed)."""
    actor = find_text_actor(renderer)
    if not text:
        if actor is not None:
            renderer.RemoveViewProp(actor)
        return None
    if actor is None:
        actor = vtk.vtkTextActor()
        actor.SetObjectName(ACTOR_NAME)
        actor.SetTextScaleModeToNone()
        actor.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        actor.SetPosition(0.5, 0.97)
        prop = actor.GetTextProperty()
        prop.SetJustificationToCentered()
        prop.SetVerticalJustificationToTop()
        prop.SetFontSize(FONT_SIZE)
        prop.SetColor(*TEXT_COLOR)
        prop.SetShadow(1)
        prop.BoldOn()
        actor.PickableOff()
        renderer.AddViewProp(actor)
    actor.SetInput(text)
    return actor


def view_text(renderer: Any) -> str:
    """The text RadTyper shows in the view ("" when none)."""
    actor = find_text_actor(renderer)
    return (actor.GetInput() or "") if actor is not None else ""
