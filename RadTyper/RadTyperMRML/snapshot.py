"""Offscreen PNG of what a 3-D view would show of some model and segmentation nodes (no Slicer application).

Used by the tests (pixels prove that reconstructions and shells appear and that the visibility toggles
work) and for documentation screenshots. Visible model nodes are drawn with their display colour and opacity;
visible segments of segmentation nodes with their colour and 3-D opacity, from a closed surface made on a
copy of the segmentation (the node itself is not changed). Without ``DISPLAY`` the EGL window is used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from RadTyperLib.errors import InputError
from RadTyperLib.render import offscreen_vtk as _vtk

_CLOSED_SURFACE = "Closed surface"


def _model_props(node: Any, vtk: Any) -> list[Any]:
    display = node.GetDisplayNode()
    poly = node.GetPolyData()
    if display is None or poly is None or poly.GetNumberOfPoints() == 0:
        return []
    if not (display.GetVisibility() and display.GetVisibility3D()):
        return []
    mapper = vtk.vtkPolyDataMapper()
    mapper.SetInputData(poly)
    mapper.ScalarVisibilityOff()
    actor = vtk.vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*display.GetColor())
    actor.GetProperty().SetOpacity(display.GetOpacity())
    return [actor]


def _segmentation_props(node: Any, vtk: Any) -> list[Any]:
    import slicer

    display = node.GetDisplayNode()
    if display is None or not (display.GetVisibility() and display.GetVisibility3D()):
        return []
    segmentation = slicer.vtkSegmentation()
    segmentation.DeepCopy(node.GetSegmentation())
    if not segmentation.ContainsRepresentation(_CLOSED_SURFACE):
        segmentation.CreateRepresentation(_CLOSED_SURFACE)
    props = []
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        if not (display.GetSegmentVisibility(sid) and display.GetSegmentVisibility3D(sid)):
            continue
        segment = segmentation.GetSegment(sid)
        poly = segment.GetRepresentation(_CLOSED_SURFACE)
        if poly is None or poly.GetNumberOfPoints() == 0:
            continue
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputData(poly)
        mapper.ScalarVisibilityOff()
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*segment.GetColor())
        actor.GetProperty().SetOpacity(display.GetSegmentOpacity3D(sid) * display.GetOpacity3D())
        props.append(actor)
    return props


def render_nodes_png(
    path: str | os.PathLike[str],
    nodes: Sequence[Any],
    *,
    size: tuple[int, int] = (400, 400),
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    view_direction_ras: Sequence[float] = (0.35, 1.0, 0.45),
) -> Path:
    """Render the visible content of model / segmentation nodes into a PNG, camera fitted to it.

    ``view_direction_ras`` points from the scene towards the camera (default: from anterior, slightly right
    and above, as Slicer's 3-D view). Raises InputError when nothing is visible.
    """
    vtk = _vtk()
    props = []
    for node in nodes:
        if node is None:
            continue
        if node.IsA("vtkMRMLSegmentationNode"):
            props += _segmentation_props(node, vtk)
        elif node.IsA("vtkMRMLModelNode"):
            props += _model_props(node, vtk)
    if not props:
        raise InputError("render: none of the nodes has visible 3-D content")
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(*background)
    renderer.UseDepthPeelingOn()
    for prop in props:
        renderer.AddActor(prop)
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetAlphaBitPlanes(1)
    window.SetMultiSamples(0)
    window.SetSize(*size)
    window.AddRenderer(renderer)
    bounds = np.array(renderer.ComputeVisiblePropBounds(), dtype=float).reshape(3, 2)
    centre = bounds.mean(axis=1)
    radius = max(float(np.linalg.norm(bounds[:, 1] - bounds[:, 0])) / 2, 1.0)
    direction = np.asarray(view_direction_ras, dtype=float)
    direction /= np.linalg.norm(direction)
    camera = renderer.GetActiveCamera()
    camera.SetFocalPoint(*centre)
    camera.SetPosition(*(centre + direction * radius * 4.0))
    camera.SetViewUp(0.0, 0.0, 1.0)
    camera.SetViewAngle(30.0)
    renderer.ResetCameraClippingRange()
    from RadTyperLib.render import save_window_png

    return save_window_png(window, path)


def png_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """An (H, W, 3) uint8 array of a PNG (top row first)."""
    from RadTyperLib.render import png_pixels

    return np.ascontiguousarray(png_pixels(path)[..., :3])
