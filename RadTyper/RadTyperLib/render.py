"""Meshes to files (.vtk, .vtp, .stl, .ply) and offscreen PNG renderings with VTK (imported lazily).

Offscreen rendering needs no display: without ``DISPLAY`` the EGL render window is selected (the Debian
packages libegl1, libegl-mesa0 and libgl1-mesa-dri provide a software EGL). Vertices are in LPS mm.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

MESH_SUFFIXES = (".vtk", ".vtp", ".stl", ".ply")


@dataclass
class MeshView:
    """One mesh to draw: vertices (N, 3) mm, triangles (M, 3), RGB colour in [0, 1], opacity."""

    vertices: np.ndarray
    faces: np.ndarray
    color: tuple[float, float, float] = (0.85, 0.55, 0.45)
    opacity: float = 1.0


def offscreen_vtk():
    """The vtk module, with the EGL render window selected when there is no display (offscreen)."""
    if not os.environ.get("DISPLAY") and "VTK_DEFAULT_OPENGL_WINDOW" not in os.environ:
        os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = "vtkEGLRenderWindow"
    import vtk  # lazy: heavy, only needed for meshes and rendering

    return vtk


def to_polydata(vertices: np.ndarray, faces: np.ndarray):
    """A ``vtkPolyData`` of triangles with point normals."""
    vtk = offscreen_vtk()
    from vtk.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray

    v = np.ascontiguousarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise InputError(f"mesh: expected vertices (N, 3) and triangles (M, 3), got {v.shape} and {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise InputError("mesh: a triangle refers to a vertex that does not exist")
    points = vtk.vtkPoints()
    points.SetData(numpy_to_vtk(v, deep=True))
    offsets = np.arange(0, 3 * len(f) + 1, 3, dtype=np.int64)
    polys = vtk.vtkCellArray()
    polys.SetData(numpy_to_vtkIdTypeArray(offsets, deep=True), numpy_to_vtkIdTypeArray(f.ravel(), deep=True))
    pd = vtk.vtkPolyData()
    pd.SetPoints(points)
    pd.SetPolys(polys)
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputData(pd)
    normals.SplittingOff()
    normals.ConsistencyOn()
    normals.Update()
    return normals.GetOutput()


def write_mesh(path: str | os.PathLike[str], vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Write a triangle mesh; the format follows the suffix (.vtk, .vtp, .stl, .ply). Atomic."""
    from .io import atomic_path

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise InputError(f"{p}: unsupported mesh format '{suffix}'; use one of {', '.join(MESH_SUFFIXES)}")
    vtk = offscreen_vtk()
    writer = {
        ".vtk": vtk.vtkPolyDataWriter,
        ".vtp": vtk.vtkXMLPolyDataWriter,
        ".stl": vtk.vtkSTLWriter,
        ".ply": vtk.vtkPLYWriter,
    }[suffix]()
    with atomic_path(p) as tmp:
        writer.SetFileName(str(tmp))
        writer.SetInputData(to_polydata(vertices, faces))
        if suffix in (".stl", ".ply"):
            writer.SetFileTypeToBinary()
        if not writer.Write():
            raise InputError(f"{p}: could not write the mesh")
    return p


def read_mesh(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a triangle mesh written by :func:`write_mesh` → (vertices, faces)."""
    vtk = offscreen_vtk()
    from vtk.util.numpy_support import vtk_to_numpy

    p = Path(path)
    reader = {
        ".vtk": vtk.vtkPolyDataReader,
        ".vtp": vtk.vtkXMLPolyDataReader,
        ".stl": vtk.vtkSTLReader,
        ".ply": vtk.vtkPLYReader,
    }[p.suffix.lower()]()
    reader.SetFileName(str(p))
    reader.Update()
    pd = reader.GetOutput()
    verts = vtk_to_numpy(pd.GetPoints().GetData()).astype(float)
    cells = vtk_to_numpy(pd.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    return verts, cells


def render_panels_png(
    path: str | os.PathLike[str],
    panels: Sequence[Sequence[MeshView]],
    titles: Sequence[str] = (),
    *,
    panel_size: int = 220,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> Path:
    """Render a row of panels (each a list of meshes) offscreen into one PNG; all panels share one camera.

    The camera looks at the union of all meshes from an oblique direction, so panels are comparable
    (e.g. a lesion's SPHARM reconstruction at degrees 1, 2, 5, 10, 15 beside its surface).
    """
    vtk = offscreen_vtk()
    n = len(panels)
    if n == 0:
        raise InputError("render: nothing to draw")
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(panel_size * n, panel_size + (28 if titles else 0))
    all_points = np.vstack([np.asarray(m.vertices) for panel in panels for m in panel])
    centre = (all_points.max(axis=0) + all_points.min(axis=0)) / 2
    radius = float(np.linalg.norm(all_points.max(axis=0) - all_points.min(axis=0))) / 2 or 1.0
    for i, panel in enumerate(panels):
        ren = vtk.vtkRenderer()
        ren.SetViewport(i / n, 0.0, (i + 1) / n, 1.0)
        ren.SetBackground(*background)
        for mesh in panel:
            mapper = vtk.vtkPolyDataMapper()
            mapper.SetInputData(to_polydata(mesh.vertices, mesh.faces))
            actor = vtk.vtkActor()
            actor.SetMapper(mapper)
            actor.GetProperty().SetColor(*mesh.color)
            actor.GetProperty().SetOpacity(mesh.opacity)
            actor.GetProperty().SetSpecular(0.2)
            actor.GetProperty().SetAmbient(0.25)
            ren.AddActor(actor)
        if i < len(titles):
            text = vtk.vtkTextActor()
            text.SetInput(titles[i])
            text.GetTextProperty().SetFontSize(15)
            text.GetTextProperty().SetColor(0.1, 0.1, 0.1)
            text.GetTextProperty().SetJustificationToCentered()
            text.SetPosition(panel_size / 2, panel_size + 6)
            ren.AddViewProp(text)
        cam = ren.GetActiveCamera()
        cam.SetFocalPoint(*centre)
        # LPS: look from anterior-right-superior so the lesion is seen obliquely, superior up.
        cam.SetPosition(*(centre + radius * 4.2 * np.array([-0.55, -0.75, 0.37])))
        cam.SetViewUp(0.0, 0.0, 1.0)
        cam.SetViewAngle(30.0)
        ren.ResetCameraClippingRange()
        window.AddRenderer(ren)
    return save_window_png(window, path)


def save_window_png(window, path: str | os.PathLike[str]) -> Path:
    """Render an offscreen ``vtkRenderWindow``, write what it shows to a PNG (atomic) and release it."""
    from .io import atomic_path

    vtk = offscreen_vtk()
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    p = Path(path)
    with atomic_path(p) as tmp:
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(str(tmp))
        writer.SetInputData(grab.GetOutput())
        writer.Write()
    window.Finalize()
    return p


def png_pixels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PNG into an (H, W, C) uint8 array (for tests that check what was drawn)."""
    vtk = offscreen_vtk()
    from vtk.util.numpy_support import vtk_to_numpy

    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    img = reader.GetOutput()
    w, h, _ = img.GetDimensions()
    arr = vtk_to_numpy(img.GetPointData().GetScalars())
    return arr.reshape(h, w, -1)[::-1]
