"""Shared pytest fixtures: small images with oblique geometry, and the path of the real data (may be absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

#: ../shared/data beside the repository root (absent on a user's fresh clone: tests using it skip).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def rotation_matrix(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation about x, then y, then z (radians)."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_image(array_zyx: np.ndarray, spacing=(0.7, 0.9, 2.5), origin=(-12.5, 30.0, 7.25), direction=None):
    """A SimpleITK image from a [z,y,x] array with the given geometry (oblique by default)."""
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    d = rotation_matrix(0.3, -0.2, 0.5) if direction is None else np.asarray(direction, dtype=float)
    img.SetDirection(tuple(d.ravel()))
    return img


@pytest.fixture
def oblique_case():
    """An int16 image with three box/ball lesions (labels 1..3) on an oblique, anisotropic grid."""
    shape = (12, 30, 34)
    rng = np.random.default_rng(7)
    image = rng.normal(40, 10, shape).astype(np.int16)
    labels = np.zeros(shape, np.uint16)
    zz, yy, xx = np.indices(shape)
    labels[(xx - 10) ** 2 + (yy - 12) ** 2 + ((zz - 5) * 3) ** 2 <= 36] = 1
    labels[2:5, 20:26, 22:30] = 2
    labels[8:10, 3:5, 28:31] = 3
    return make_image(image), make_image(labels)


@pytest.fixture
def shared_data() -> Path:
    """The real data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available ({SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for a test module (small shared test machines), restored afterwards.

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")`` in modules that run networks.
    """
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _private_coefficient_cache(tmp_path_factory):
    """Tests (and the CLI they start) never write the user's coefficient cache (~/.cache/radtyper)."""
    import os

    old = os.environ.get("RADTYPER_CACHE_DIR")
    os.environ["RADTYPER_CACHE_DIR"] = str(tmp_path_factory.mktemp("radtyper-cache"))
    yield
    if old is None:
        os.environ.pop("RADTYPER_CACHE_DIR", None)
    else:
        os.environ["RADTYPER_CACHE_DIR"] = old
