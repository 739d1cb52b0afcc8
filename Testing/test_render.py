"""Mesh files and offscreen PNG rendering (VTK through EGL; skipped where no OpenGL context can be made)."""

from __future__ import annotations

import numpy as np
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.render import MeshView, png_pixels, read_mesh, render_panels_png, write_mesh


def octahedron(centre=(0.0, 0.0, 0.0), r=10.0):
    v = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float) * r + centre
    f = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return v, f


@pytest.mark.parametrize("suffix", [".vtk", ".vtp", ".stl", ".ply"])
def test_mesh_round_trip(tmp_path, suffix):
    v, f = octahedron((5.0, -3.0, 120.0))
    write_mesh(tmp_path / f"m{suffix}", v, f)
    v2, f2 = read_mesh(tmp_path / f"m{suffix}")
    assert len(f2) == 8
    # STL stores triangles with their own vertex copies; compare the vertex sets
    np.testing.assert_allclose(np.unique(v2.round(4), axis=0), np.unique(v.round(4), axis=0), atol=1e-4)


def test_bad_mesh_input(tmp_path):
    v, f = octahedron()
    with pytest.raises(InputError, match=r"unsupported mesh format '\.obj'"):
        write_mesh(tmp_path / "m.obj", v, f)
    with pytest.raises(InputError, match="refers to a vertex that does not exist"):
        write_mesh(tmp_path / "m.vtk", v, f + 10)
    assert list(tmp_path.iterdir()) == []


def test_render_panels_draws_each_mesh_in_its_panel(tmp_path):
    v, f = octahedron()
    red = MeshView(v, f, (1.0, 0.0, 0.0))
    path = tmp_path / "panels.png"
    try:
        render_panels_png(
            path, [[red], [], [MeshView(v * 0.5, f, (0.0, 0.0, 1.0))]], ["a", "b", "c"], panel_size=120
        )
    except Exception as exc:  # pragma: no cover - only without any OpenGL/EGL driver
        pytest.skip(f"offscreen rendering unavailable: {exc}")
    img = png_pixels(path)
    assert img.shape[1] == 360
    body = img[28:, :, :3].astype(int)  # below the title strip
    panels = [body[:, i * 120 : (i + 1) * 120] for i in range(3)]
    reddish = [((p[..., 0] > 120) & (p[..., 1] < 80) & (p[..., 2] < 80)).sum() for p in panels]
    bluish = [((p[..., 2] > 120) & (p[..., 0] < 80) & (p[..., 1] < 80)).sum() for p in panels]
    assert reddish[0] > 500 and reddish[1] == 0 and reddish[2] == 0
    assert bluish[2] > 100 and bluish[0] == 0
    # the half-size mesh covers about a quarter of the pixels of the full-size one (same camera)
    assert 0.15 < bluish[2] / reddish[0] < 0.4
