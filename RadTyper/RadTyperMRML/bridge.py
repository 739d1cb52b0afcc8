"""Conversions between Slicer MRML nodes and RadTyper's core values (SimpleITK images, Lesions, DataFrames).

Geometry: MRML stores volumes in RAS (IJKToRAS = origin, spacing, direction), SimpleITK and the core
library in LPS. Converting flips the sign of the first two physical axes: ``x_lps = F @ x_ras`` with
``F = diag(-1, -1, 1)``, for both the origin and the direction matrix (columns = image axes). Spacing
(mm) and voxel order are unchanged; numpy arrays of both sides are indexed ``[k, j, i]`` = ``[z, y, x]``.

Every function takes its scene or nodes explicitly and uses only MRML / VTK classes, never
``slicer.util``, ``slicer.app`` or ``slicer.mrmlScene``: the same code runs inside the Slicer application
and on plain CPython with the ``slicer-core`` wheel.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from RadTyperLib.errors import InputError, LesionError
from RadTyperLib.io import SITE_TAG, default_color
from RadTyperLib.patient import Lesion, Patient

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

_FLIP = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS (its own inverse)
_BINARY_LABELMAP = "Binary labelmap"
_IDENTITY_TOLERANCE = 1e-9  # parent transforms closer than this to identity are accepted
_LATTICE_TOLERANCE = 1e-4  # voxels: segment grid is "the same lattice" as the reference within this


# --------------------------------------------------------------------------------------------------------
# scene
# --------------------------------------------------------------------------------------------------------
class _SceneLogics:
    """Keeps the logics of a scene made by :func:`create_scene` alive (VTK objects die with their owner)."""

    def __init__(self, scene: slicer.vtkMRMLScene) -> None:
        self.application = slicer.vtkSlicerApplicationLogic()
        self.application.SetMRMLScene(scene)
        self.colors = self.application.GetColorLogic()
        self.colors.SetMRMLScene(scene)
        self.colors.AddDefaultColorNodes()
        # vtkSlicerVolumesLogic finds the colour logic by this name.
        self.application.SetModuleLogic("Colors", self.colors)
        self.modules: dict[str, Any] = {"Colors": self.colors}
        for name, cls in (
            ("Volumes", slicer.vtkSlicerVolumesLogic),
            ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
            ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic),
        ):
            logic = cls()
            logic.SetMRMLScene(scene)
            logic.SetMRMLApplicationLogic(self.application)
            self.application.SetModuleLogic(name, logic)
            self.modules[name] = logic


_SCENE_LOGICS: dict[int, _SceneLogics] = {}


def _release_scene_logics(key: int) -> None:
    # Dropping the logics drops their references to the scene, which can then be deleted. (Detaching them
    # with SetMRMLScene(None) first would make the Segmentations logic warn about a missing scene.)
    _SCENE_LOGICS.pop(key, None)


def optional_path(value: Any) -> Path | None:
    """A path parameter as a Path, or None when it is unset.

    An unset ``pathlib.Path`` field of a ``parameterNodeWrapper`` reads back as ``Path(".")``; "" and None
    are unset too.
    """
    if value is None or str(value) in ("", "."):
        return None
    return Path(value)


def create_scene() -> slicer.vtkMRMLScene:
    """A headless MRML scene with the application, colour (default colour nodes), Volumes, Segmentations and
    SubjectHierarchy logics registered, for tests and batch code.

    The logics live as long as the returned Python object; get one with :func:`scene_logic`.
    """
    scene = slicer.vtkMRMLScene()
    key = id(scene)
    _SCENE_LOGICS[key] = _SceneLogics(scene)
    weakref.finalize(scene, _release_scene_logics, key)
    return scene


def scene_logic(scene: slicer.vtkMRMLScene, module: str) -> Any:
    """The logic registered by :func:`create_scene`: ``"Application"``, ``"Colors"``, ``"Volumes"``,
    ``"Segmentations"`` or ``"SubjectHierarchy"``."""
    holder = _SCENE_LOGICS.get(id(scene))
    if holder is None:
        raise InputError("this scene was not made by RadTyperMRML.create_scene; it has no registered logics")
    if module == "Application":
        return holder.application
    if module not in holder.modules:
        raise InputError(f"no logic '{module}'; choose one of: Application, {', '.join(holder.modules)}")
    return holder.modules[module]


# --------------------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------------------
def _matrix_to_numpy(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def _numpy_to_matrix(a: np.ndarray) -> vtk.vtkMatrix4x4:
    m = vtk.vtkMatrix4x4()
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            m.SetElement(r, c, float(a[r, c]))
    return m


def _node_label(node: Any) -> str:
    name = node.GetName() if node is not None else None
    return name or (node.GetID() if node is not None and node.GetID() else "unnamed")


class _Grid:
    """A voxel grid in RAS: ``ijk_to_ras`` (4×4, index (i, j, k) of array element [0, 0, 0] = 0) and size."""

    def __init__(self, spacing: np.ndarray, origin_ras: np.ndarray, direction_ras: np.ndarray, size) -> None:
        self.spacing = np.asarray(spacing, dtype=float)
        self.origin_ras = np.asarray(origin_ras, dtype=float)
        self.direction_ras = np.asarray(direction_ras, dtype=float)
        self.size = tuple(int(n) for n in size)  # (nx, ny, nz)

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return self.size[2], self.size[1], self.size[0]

    @property
    def ijk_to_ras(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.direction_ras * self.spacing
        m[:3, 3] = self.origin_ras
        return m

    def apply_to_sitk(self, image: sitk.Image) -> sitk.Image:
        """Set LPS spacing, origin and direction on ``image`` (in place; returned for chaining)."""
        image.SetSpacing(tuple(float(s) for s in self.spacing))
        image.SetOrigin(tuple(float(v) for v in _FLIP @ self.origin_ras))
        image.SetDirection(tuple(float(v) for v in (_FLIP @ self.direction_ras).ravel()))
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> _Grid:
        direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
        return cls(
            np.array(image.GetSpacing(), dtype=float),
            _FLIP @ np.array(image.GetOrigin(), dtype=float),
            _FLIP @ direction,
            image.GetSize(),
        )


def _check_untransformed(node: Any, what: str) -> None:
    """Raise InputError if ``node`` sits under a non-identity transform."""
    parent = node.GetParentTransformNode()
    if parent is None:
        return
    m = vtk.vtkMatrix4x4()
    linear = parent.IsTransformToWorldLinear() and parent.GetMatrixTransformToWorld(m)
    if linear and np.allclose(_matrix_to_numpy(m), np.eye(4), atol=_IDENTITY_TOLERANCE, rtol=0):
        return
    kind = "linear" if linear else "non-linear"
    raise InputError(
        f"{what} '{_node_label(node)}' is under the {kind} transform '{_node_label(parent)}'; "
        "harden the transform first (Data module: right-click the node → Harden transform)"
    )


def _volume_grid(volume_node: Any) -> _Grid:
    """The voxel grid of a volume node (raises InputError when it has no image data)."""
    if volume_node is None or not volume_node.IsA("vtkMRMLVolumeNode"):
        cls = volume_node.GetClassName() if volume_node is not None else "None"
        raise InputError(f"expected a volume node, got {cls}")
    image_data = volume_node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise InputError(f"volume '{_node_label(volume_node)}' has no image data")
    ext = image_data.GetExtent()
    size = (ext[1] - ext[0] + 1, ext[3] - ext[2] + 1, ext[5] - ext[4] + 1)
    if min(size) <= 0:
        raise InputError(f"volume '{_node_label(volume_node)}' has an empty image (extent {ext})")
    m = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASDirectionMatrix(m)
    direction = _matrix_to_numpy(m)[:3, :3]
    spacing = np.array(volume_node.GetSpacing(), dtype=float)
    origin = np.array(volume_node.GetOrigin(), dtype=float)
    start = np.array([ext[0], ext[2], ext[4]], dtype=float)
    if np.any(start != 0):  # array element [0,0,0] is IJK = extent start
        origin = origin + direction @ (start * spacing)
    return _Grid(spacing, origin, direction, size)


def _scalars_zyx(image_data: vtk.vtkImageData, what: str) -> np.ndarray:
    """Voxel values of single-component image data as a ``[z, y, x]`` numpy view."""
    scalars = image_data.GetPointData().GetScalars()
    if scalars is None:
        raise InputError(f"{what} has no voxel values")
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(
            f"{what} has {scalars.GetNumberOfComponents()} components per voxel; only scalar images are supported"
        )
    try:
        flat = numpy_support.vtk_to_numpy(scalars)
    except (TypeError, ValueError, AssertionError) as exc:  # e.g. vtkBitArray
        raise InputError(f"{what}: unsupported voxel type {scalars.GetClassName()}") from exc
    ext = image_data.GetExtent()
    return flat.reshape(ext[5] - ext[4] + 1, ext[3] - ext[2] + 1, ext[1] - ext[0] + 1)


# --------------------------------------------------------------------------------------------------------
# volumes
# --------------------------------------------------------------------------------------------------------
def volume_to_sitk(volume_node: Any) -> sitk.Image:
    """A scalar or labelmap volume node as a SimpleITK image (LPS, mm; voxel values and type kept).

    Raises:
        InputError: no image data, vector voxels, or the node is under a non-identity transform.
    """
    grid = _volume_grid(volume_node)
    _check_untransformed(volume_node, "volume")
    arr = _scalars_zyx(volume_node.GetImageData(), f"volume '{_node_label(volume_node)}'")
    image = sitk.GetImageFromArray(arr)  # copies
    return grid.apply_to_sitk(image)


def sitk_to_volume(
    image: sitk.Image,
    scene: slicer.vtkMRMLScene,
    name: str,
    *,
    labelmap: bool = False,
    node: Any = None,
) -> Any:
    """Put a 3-D scalar SimpleITK image (LPS) into a volume node (RAS) and return the node.

    A new ``vtkMRMLScalarVolumeNode`` (``vtkMRMLLabelMapVolumeNode`` when ``labelmap``) named ``name`` is
    added to ``scene`` unless ``node`` is given; then that node is updated in place (its name is kept).
    Display nodes are created when missing.
    """
    if image.GetDimension() != 3:
        raise InputError(f"volume '{name}': expected a 3-D image, got {image.GetDimension()}-D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"volume '{name}': vector images are not supported")
    arr = sitk.GetArrayViewFromImage(image)
    if labelmap and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"label map '{name}': voxel type {arr.dtype} is not an integer type")
    grid = _Grid.from_sitk(image)

    image_data = vtk.vtkImageData()
    image_data.SetDimensions(*grid.size)
    values = numpy_support.numpy_to_vtk(
        np.ascontiguousarray(arr).ravel(), deep=True, array_type=numpy_support.get_vtk_array_type(arr.dtype)
    )
    values.SetName("ImageScalars")
    image_data.GetPointData().SetScalars(values)

    if node is None:
        cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
        node = scene.AddNewNodeByClass(cls, name)
    else:
        if not node.IsA("vtkMRMLScalarVolumeNode"):
            raise InputError(f"node '{_node_label(node)}' is a {node.GetClassName()}, not a scalar volume")
        if node.GetScene() is None:
            scene.AddNode(node)
    was_modifying = node.StartModify()
    node.SetSpacing(*grid.spacing)
    node.SetOrigin(*grid.origin_ras)
    direction = np.eye(4)
    direction[:3, :3] = grid.direction_ras
    node.SetIJKToRASDirectionMatrix(_numpy_to_matrix(direction))
    node.SetAndObserveImageData(image_data)
    node.EndModify(was_modifying)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


# --------------------------------------------------------------------------------------------------------
# segmentations
# --------------------------------------------------------------------------------------------------------
def _segment_ids(segmentation_node: Any) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def _segment_name(segmentation_node: Any, segment_id: str) -> str:
    return segmentation_node.GetSegmentation().GetSegment(segment_id).GetName() or segment_id


#: A cropped mask on a grid: the [z, y, x] slices of its bounding box and the boolean mask inside them.
_Region = tuple[tuple[slice, slice, slice], np.ndarray]


def _segment_labelmap(segmentation_node: Any, segment_id: str) -> Any:
    """The segment's binary labelmap (vtkOrientedImageData), read-only; the node is never modified.

    The stored representation is used directly when there is one (it may be a layer shared with other
    segments); otherwise Slicer converts a temporary copy of the segment (e.g. from a closed surface).
    """
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.ContainsRepresentation(_BINARY_LABELMAP):
        stored = segmentation.GetSegment(segment_id).GetRepresentation(_BINARY_LABELMAP)
        if stored is not None and stored.IsA("vtkOrientedImageData"):
            return stored
    oid = slicer.vtkOrientedImageData()
    if not slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation_node, segment_id, oid, False
    ):
        raise InputError(
            f"segmentation '{_node_label(segmentation_node)}': cannot get a binary labelmap of segment "
            f"'{_segment_name(segmentation_node, segment_id)}'"
        )
    return oid


def _crop(mask: np.ndarray, origin_zyx: Sequence[int] = (0, 0, 0)) -> _Region | None:
    """Crop a boolean [z, y, x] mask placed at ``origin_zyx`` to its bounding box (None when empty)."""
    nz = [np.flatnonzero(mask.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
    if any(len(n) == 0 for n in nz):
        return None
    lo = [int(n[0]) for n in nz]
    hi = [int(n[-1]) + 1 for n in nz]
    sub = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    region = tuple(slice(o + a, o + b) for o, a, b in zip(origin_zyx, lo, hi, strict=True))
    return region, sub  # type: ignore[return-value]


def _segment_on_grid(segmentation_node: Any, segment_id: str, grid: _Grid) -> tuple[_Region | None, int, int]:
    """A segment resampled (nearest neighbour) onto ``grid``: ``(cropped mask or None, n_segment, n_outside)``.

    ``n_segment`` counts the segment's own voxels, ``n_outside`` those whose centres lie outside ``grid``.
    """
    oid = _segment_labelmap(segmentation_node, segment_id)
    ext = oid.GetExtent()
    if ext[1] < ext[0] or ext[3] < ext[2] or ext[5] < ext[4] or oid.GetPointData().GetScalars() is None:
        return None, 0, 0
    values = _scalars_zyx(oid, f"segment '{_segment_name(segmentation_node, segment_id)}'")
    label_value = segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    selected = values == label_value  # the labelmap may be a layer shared with other segments
    n_segment = int(np.count_nonzero(selected))
    if n_segment == 0:
        return None, 0, 0

    m = vtk.vtkMatrix4x4()
    oid.GetImageToWorldMatrix(m)
    start = np.array([ext[0], ext[2], ext[4]], dtype=float)
    # reference index (x, y, z) -> index into ``selected`` (x, y, z), and back
    ref_to_seg = np.linalg.inv(_matrix_to_numpy(m)) @ grid.ijk_to_ras
    ref_to_seg[:3, 3] -= start
    seg_to_ref = np.linalg.inv(ref_to_seg)
    ref_size = np.array(grid.size)
    seg_size = np.array(selected.shape[::-1])
    rot, shift = ref_to_seg[:3, :3], ref_to_seg[:3, 3]

    if np.allclose(rot, np.eye(3), atol=_LATTICE_TOLERANCE / max(ref_size), rtol=0) and np.allclose(
        shift, np.round(shift), atol=_LATTICE_TOLERANCE, rtol=0
    ):
        # Same voxel lattice: exact copy with an integer index shift.
        off = np.round(shift).astype(int)  # segment index = reference index + off
        lo = np.maximum(0, -off)
        hi = np.minimum(ref_size, seg_size - off)
        if np.any(hi <= lo):
            return None, n_segment, n_segment
        sub = selected[
            lo[2] + off[2] : hi[2] + off[2], lo[1] + off[1] : hi[1] + off[1], lo[0] + off[0] : hi[0] + off[0]
        ]
        region = _crop(sub, (lo[2], lo[1], lo[0]))
        n_inside = int(np.count_nonzero(region[1])) if region is not None else 0
        return region, n_segment, n_segment - n_inside

    # General case: each reference voxel takes its nearest segment voxel (as vtkImageReslice does).
    idx = np.argwhere(selected)[:, ::-1].astype(float)  # segment voxels (x, y, z)
    cont = idx @ seg_to_ref[:3, :3].T + seg_to_ref[:3, 3]
    n_outside = int(np.count_nonzero(np.any((cont < -0.5) | (cont > ref_size - 0.5), axis=1)))
    reach = 0.5 * np.abs(seg_to_ref[:3, :3]).sum(axis=1) + 1.0  # half a segment voxel, in reference voxels
    lo = np.maximum(np.floor(cont.min(axis=0) - reach), 0).astype(int)
    hi = np.minimum(np.ceil(cont.max(axis=0) + reach) + 1, ref_size).astype(int)
    if np.any(hi <= lo):
        return None, n_segment, n_outside
    box = np.zeros((hi[2] - lo[2], hi[1] - lo[1], hi[0] - lo[0]), dtype=bool)
    jj, ii = np.mgrid[lo[1] : hi[1], lo[0] : hi[0]]
    for k in range(lo[2], hi[2]):
        pts = np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k)], axis=1).astype(float)
        s = np.floor(pts @ rot.T + shift + 0.5).astype(np.int64)
        inside = np.all((s >= 0) & (s < seg_size), axis=1)
        hit = np.zeros(len(pts), dtype=bool)
        si = s[inside]
        hit[inside] = selected[si[:, 2], si[:, 1], si[:, 0]]
        box[k - lo[2]] = hit.reshape(ii.shape)
    return _crop(box, (lo[2], lo[1], lo[0])), n_segment, n_outside


def _segment_site(segment: Any) -> str:
    value = vtk.reference("")
    if segment.GetTag(SITE_TAG, value):
        return str(value) or "unspecified"
    return "unspecified"


def _check_segmentation(
    segmentation_node: Any, reference_volume_node: Any, segment_ids: Sequence[str] | None
) -> tuple[_Grid, list[tuple[str, str]]]:
    """Check the nodes; return the reference grid and ``(segment_id, name)`` of the segments to read."""
    if segmentation_node is None or not segmentation_node.IsA("vtkMRMLSegmentationNode"):
        cls = segmentation_node.GetClassName() if segmentation_node is not None else "None"
        raise InputError(f"expected a segmentation node, got {cls}")
    seg_label = _node_label(segmentation_node)
    grid = _volume_grid(reference_volume_node)
    _check_untransformed(reference_volume_node, "volume")
    _check_untransformed(segmentation_node, "segmentation")
    all_ids = _segment_ids(segmentation_node)
    ids = list(all_ids if segment_ids is None else segment_ids)
    missing = [sid for sid in ids if sid not in all_ids]
    if missing:
        raise InputError(f"segmentation '{seg_label}' has no segment with ID {', '.join(missing)}")
    if not ids:
        raise InputError(f"segmentation '{seg_label}' has no segments")
    names = [_segment_name(segmentation_node, sid) for sid in ids]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(
            f"segmentation '{seg_label}': several segments are named {', '.join(repr(d) for d in dupes)}; "
            "rename them so that every lesion has a unique name"
        )
    return grid, list(zip(ids, names, strict=True))


def _segment_region(
    segmentation_node: Any, segment_id: str, name: str, grid: _Grid, ref_label: str
) -> _Region:
    """The segment's cropped mask on ``grid``; LesionError when it is empty, outside or cut by the border."""
    region, n_segment, n_outside = _segment_on_grid(segmentation_node, segment_id, grid)
    if n_segment == 0:
        raise LesionError(name, f"segment is empty in segmentation '{_node_label(segmentation_node)}'")
    if n_outside == n_segment:
        raise LesionError(name, f"segment lies outside volume '{ref_label}'")
    if n_outside > 0:
        raise LesionError(
            name,
            f"{n_outside} of {n_segment} segment voxels lie outside volume '{ref_label}' "
            "(the lesion is cut by the image border)",
        )
    if region is None:
        raise LesionError(name, f"segment is smaller than one voxel of volume '{ref_label}'")
    return region


def segmentation_to_labels(
    segmentation_node: Any,
    reference_volume_node: Any,
    *,
    segment_ids: Sequence[str] | None = None,
) -> tuple[sitk.Image, list[Lesion]]:
    """Segments → one integer label map on the reference volume's grid (LPS) + one Lesion per segment.

    Segment i (1-based, in segment order, or in ``segment_ids`` order) gets label i; the lesion's name and
    colour are the segment's, its site the segment tag ``RadTyper.Site`` (``unspecified`` if absent).
    Segments on another grid are resampled by nearest neighbour. The segmentation node is not modified.

    Raises:
        LesionError: a segment is empty, outside the volume or cut by its border.
        InputError: two segments overlap, names repeat, a node is transformed, or bad node types.
    """
    grid, segments = _check_segmentation(segmentation_node, reference_volume_node, segment_ids)
    ref_label = _node_label(reference_volume_node)
    dtype = np.uint16 if len(segments) < np.iinfo(np.uint16).max else np.uint32
    labels = np.zeros(grid.shape_zyx, dtype=dtype)
    segmentation = segmentation_node.GetSegmentation()
    lesions: list[Lesion] = []
    for label, (sid, name) in enumerate(segments, start=1):
        region, sub = _segment_region(segmentation_node, sid, name, grid, ref_label)
        target = labels[region]  # a view
        clash = target[sub]
        if np.any(clash):
            other = segments[int(clash[clash > 0][0]) - 1][1]
            raise InputError(
                f"segmentation '{_node_label(segmentation_node)}': segments '{other}' and '{name}' overlap "
                f"({int(np.count_nonzero(clash))} voxels); each voxel may belong to one lesion only"
            )
        target[sub] = label
        segment = segmentation.GetSegment(sid)
        color = tuple(float(c) for c in segment.GetColor())
        lesions.append(Lesion(label=label, name=name, site=_segment_site(segment), color=color))  # type: ignore[arg-type]
    image = sitk.GetImageFromArray(labels)
    return grid.apply_to_sitk(image), lesions


def labels_to_segmentation(
    labels: sitk.Image,
    lesions: Sequence[Lesion],
    scene: slicer.vtkMRMLScene,
    name: str,
    *,
    reference_volume_node: Any = None,
    node: Any = None,
) -> Any:
    """A label map (LPS) + lesions → a segmentation node with one segment per lesion.

    Segments keep the lesion's name and colour (``RadTyperLib.io.default_color`` when None, as in
    ``write_seg_nrrd``); the site goes to the segment tag ``RadTyper.Site``. Segments share labelmap layers
    (up to 255 per layer) cropped to the lesions, as Slicer stores them. The segmentation's reference
    geometry is ``reference_volume_node``'s if given, else the label map's. ``node`` (if given) is cleared
    and refilled; otherwise a new node is added to ``scene``.

    Raises:
        LesionError: a lesion has no voxel in ``labels``.
        InputError: ``labels`` is not a 3-D integer image, or lesion names or labels repeat.
    """
    if labels.GetDimension() != 3 or labels.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"segmentation '{name}': labels must be a 3-D scalar image")
    arr = sitk.GetArrayViewFromImage(labels)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"segmentation '{name}': label map voxel type {arr.dtype} is not an integer type")
    if arr.size and arr.min() < 0:
        raise InputError(f"segmentation '{name}': the label map has negative values")
    for what, keys in (("names", [les.name for les in lesions]), ("labels", [les.label for les in lesions])):
        dupes = sorted({str(k) for k in keys if keys.count(k) > 1})
        if dupes:
            raise InputError(f"segmentation '{name}': repeated lesion {what}: {', '.join(dupes)}")
    grid = _Grid.from_sitk(labels)
    direction = np.eye(4)
    direction[:3, :3] = grid.direction_ras
    direction_matrix = _numpy_to_matrix(direction)

    # bounding boxes (x0, y0, z0, nx, ny, nz) of all labels in one pass
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputePerimeterOff()
    stats.ComputeFeretDiameterOff()
    stats.ComputeOrientedBoundingBoxOff()
    stats.Execute(sitk.Cast(labels, sitk.sitkUInt32))
    present = set(stats.GetLabels())
    boxes = []
    for les in lesions:
        if les.label not in present:
            raise LesionError(les.name, f"no voxel has label {les.label} in the label map")
        boxes.append(np.array(stats.GetBoundingBox(les.label)))

    # layers: one uint8 labelmap per 255 lesions, cropped to their union box; value j+1 = j-th lesion in it
    planned = []  # (lesion, layer image, value in layer)
    for first in range(0, len(lesions), 255):
        chunk = range(first, min(first + 255, len(lesions)))
        lo = np.min([boxes[i][:3] for i in chunk], axis=0)
        hi = np.max([boxes[i][:3] + boxes[i][3:] for i in chunk], axis=0)  # exclusive
        layer = np.zeros((hi[2] - lo[2], hi[1] - lo[1], hi[0] - lo[0]), dtype=np.uint8)
        for value, i in enumerate(chunk, start=1):
            (x0, y0, z0), (x1, y1, z1) = boxes[i][:3], boxes[i][:3] + boxes[i][3:]
            inside = arr[z0:z1, y0:y1, x0:x1] == lesions[i].label
            layer[z0 - lo[2] : z1 - lo[2], y0 - lo[1] : y1 - lo[1], x0 - lo[0] : x1 - lo[0]][inside] = value
        oid = slicer.vtkOrientedImageData()
        oid.SetExtent(int(lo[0]), int(hi[0]) - 1, int(lo[1]), int(hi[1]) - 1, int(lo[2]), int(hi[2]) - 1)
        oid.SetSpacing(*grid.spacing)
        oid.SetOrigin(*grid.origin_ras)
        oid.SetDirectionMatrix(direction_matrix)
        values = numpy_support.numpy_to_vtk(layer.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
        oid.GetPointData().SetScalars(values)
        planned.extend((lesions[i], oid, value) for value, i in enumerate(chunk, start=1))

    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    else:
        if not node.IsA("vtkMRMLSegmentationNode"):
            raise InputError(f"node '{_node_label(node)}' is a {node.GetClassName()}, not a segmentation")
        if node.GetScene() is None:
            scene.AddNode(node)
    was_modifying = node.StartModify()
    try:
        segmentation = node.GetSegmentation()
        segmentation.RemoveAllSegments()
        node.SetSourceRepresentationToBinaryLabelmap()
        if reference_volume_node is not None:
            node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
        else:
            ext = (0, grid.size[0] - 1, 0, grid.size[1] - 1, 0, grid.size[2] - 1)
            geometry = slicer.vtkSegmentationConverter.SerializeImageGeometry(
                _numpy_to_matrix(grid.ijk_to_ras), ext
            )
            segmentation.SetConversionParameter(
                slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(), geometry
            )
        for i, (les, oid, value) in enumerate(planned):
            segment = slicer.vtkSegment()
            segment.SetName(les.name)
            color = les.color if les.color is not None else default_color(i)
            segment.SetColor(*(float(c) for c in color))
            segment.SetTag(SITE_TAG, les.site)
            segment.AddRepresentation(_BINARY_LABELMAP, oid)  # shared with the other segments of the layer
            segment.SetLabelValue(value)
            if not segmentation.AddSegment(segment):
                raise InputError(f"segmentation '{name}': Slicer refused segment '{les.name}'")
    finally:
        node.EndModify(was_modifying)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def segment_on_volume_grid(
    segmentation_node: Any, segment_id: str, reference_volume_node: Any
) -> tuple[tuple[slice, slice, slice] | None, np.ndarray | None, int, int]:
    """One segment on a volume's voxel grid, without raising for empty or outside segments.

    Returns ``(box, mask, n_segment, n_outside)``: ``box`` are the ``[z, y, x]`` slices of the volume grid
    that hold the boolean crop ``mask`` (both None when no segment voxel falls inside the volume),
    ``n_segment`` the segment's own voxel count and ``n_outside`` how many of them lie outside the volume.
    Segments on another grid are resampled by nearest neighbour. The segmentation node is not modified.

    Raises:
        InputError: bad node types, a transformed node, or no such segment.
    """
    if segmentation_node is None or not segmentation_node.IsA("vtkMRMLSegmentationNode"):
        cls = segmentation_node.GetClassName() if segmentation_node is not None else "None"
        raise InputError(f"expected a segmentation node, got {cls}")
    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise InputError(
            f"segmentation '{_node_label(segmentation_node)}' has no segment with ID {segment_id}"
        )
    grid = _volume_grid(reference_volume_node)
    _check_untransformed(reference_volume_node, "volume")
    _check_untransformed(segmentation_node, "segmentation")
    region, n_segment, n_outside = _segment_on_grid(segmentation_node, segment_id, grid)
    if region is None:
        return None, None, n_segment, n_outside
    box, mask = region
    return box, mask, n_segment, n_outside  # type: ignore[return-value]


def add_mask_segment(
    segmentation_node: Any,
    mask: np.ndarray,
    reference_volume_node: Any,
    name: str,
    *,
    offset_zyx: Sequence[int] = (0, 0, 0),
    color: Sequence[float] | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Add a boolean ``[z, y, x]`` mask on the volume's grid as a new segment; return its segment ID.

    ``mask`` may be a crop whose element ``[0, 0, 0]`` is volume voxel ``offset_zyx`` (a full-grid mask is
    cropped to its bounding box first). The other segments are not touched: the new segment gets its own
    labelmap. A segmentation without reference geometry gets the volume's.

    Raises:
        InputError: empty mask, mask outside the volume grid, bad node types, transformed nodes.
    """
    if segmentation_node is None or not segmentation_node.IsA("vtkMRMLSegmentationNode"):
        cls = segmentation_node.GetClassName() if segmentation_node is not None else "None"
        raise InputError(f"expected a segmentation node, got {cls}")
    grid = _volume_grid(reference_volume_node)
    _check_untransformed(reference_volume_node, "volume")
    _check_untransformed(segmentation_node, "segmentation")
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 3:
        raise InputError(f"segment '{name}': the mask must be 3-D, got {m.ndim}-D")
    region = _crop(m, tuple(int(o) for o in offset_zyx))
    if region is None:
        raise InputError(f"segment '{name}': the mask is empty")
    box, sub = region
    lo = np.array([s.start for s in box])  # z, y, x
    hi = np.array([s.stop for s in box])
    if np.any(lo < 0) or np.any(hi > np.array(grid.shape_zyx)):
        raise InputError(
            f"segment '{name}': the mask lies (partly) outside volume '{_node_label(reference_volume_node)}'"
        )
    oid = slicer.vtkOrientedImageData()
    oid.SetExtent(int(lo[2]), int(hi[2]) - 1, int(lo[1]), int(hi[1]) - 1, int(lo[0]), int(hi[0]) - 1)
    oid.SetSpacing(*grid.spacing)
    oid.SetOrigin(*grid.origin_ras)
    direction = np.eye(4)
    direction[:3, :3] = grid.direction_ras
    oid.SetDirectionMatrix(_numpy_to_matrix(direction))
    values = numpy_support.numpy_to_vtk(
        np.ascontiguousarray(sub, dtype=np.uint8).ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR
    )
    oid.GetPointData().SetScalars(values)
    segmentation = segmentation_node.GetSegmentation()
    geometry_name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    if not segmentation.GetConversionParameter(geometry_name):
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    rgb = [
        float(c) for c in (color if color is not None else default_color(segmentation.GetNumberOfSegments()))
    ]
    segment_id = segmentation_node.AddSegmentFromBinaryLabelmapRepresentation(oid, name, rgb)
    if not segment_id:
        raise InputError(f"segmentation '{_node_label(segmentation_node)}': Slicer refused segment '{name}'")
    segment = segmentation.GetSegment(segment_id)
    for key, value in (tags or {}).items():
        segment.SetTag(key, value)
    if segmentation_node.GetDisplayNode() is None:
        segmentation_node.CreateDefaultDisplayNodes()
    return segment_id


# --------------------------------------------------------------------------------------------------------
# patient
# --------------------------------------------------------------------------------------------------------
def _parenchyma_from_node(parenchyma_node: Any, image: sitk.Image, volume_node: Any) -> sitk.Image:
    """Binary uint8 parenchyma mask on ``image``'s grid from a labelmap volume or a one-segment segmentation."""
    label = _node_label(parenchyma_node)
    if parenchyma_node.IsA("vtkMRMLSegmentationNode"):
        ids = _segment_ids(parenchyma_node)
        if len(ids) != 1:
            raise InputError(
                f"parenchyma segmentation '{label}' must have exactly one segment, it has {len(ids)}"
            )
        grid, segments = _check_segmentation(parenchyma_node, volume_node, ids)
        region, sub = _segment_region(parenchyma_node, ids[0], segments[0][1], grid, _node_label(volume_node))
        mask = np.zeros(grid.shape_zyx, dtype=np.uint8)
        mask[region] = sub
    elif parenchyma_node.IsA("vtkMRMLScalarVolumeNode"):
        vol = volume_to_sitk(parenchyma_node)
        if (
            vol.GetSize() != image.GetSize()
            or not np.allclose(vol.GetSpacing(), image.GetSpacing(), atol=1e-6, rtol=0)
            or not np.allclose(vol.GetOrigin(), image.GetOrigin(), atol=1e-6, rtol=0)
            or not np.allclose(vol.GetDirection(), image.GetDirection(), atol=1e-6, rtol=0)
        ):
            vol = sitk.Resample(vol, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, vol.GetPixelID())
        mask = (sitk.GetArrayViewFromImage(vol) > 0).astype(np.uint8)
        if not mask.any():
            raise InputError(f"parenchyma label map '{label}' has no voxel inside the image")
    else:
        raise InputError(
            f"parenchyma '{label}' must be a labelmap volume or a segmentation, not {parenchyma_node.GetClassName()}"
        )
    out = sitk.GetImageFromArray(mask)
    out.CopyInformation(image)
    return out


def patient_from_nodes(
    volume_node: Any,
    segmentation_node: Any,
    *,
    parenchyma_node: Any = None,
    patient_id: str | None = None,
    modality: str = "CT",
) -> Patient:
    """A Patient from a volume node, a lesion segmentation node (one lesion per segment) and optionally a
    parenchyma mask (labelmap volume, resampled to the image grid if needed, or a one-segment segmentation).

    ``patient_id`` defaults to the volume node's name.
    """
    image = volume_to_sitk(volume_node)
    labels, lesions = segmentation_to_labels(segmentation_node, volume_node)
    parenchyma = None
    sources = {
        "image": f"volume '{_node_label(volume_node)}'",
        "lesions": f"segmentation '{_node_label(segmentation_node)}'",
    }
    if parenchyma_node is not None:
        parenchyma = _parenchyma_from_node(parenchyma_node, image, volume_node)
        sources["parenchyma"] = f"parenchyma '{_node_label(parenchyma_node)}'"
    # the label map was built on the volume's own geometry: make it bit-identical for Patient's check
    labels.CopyInformation(image)
    return Patient(
        image=image,
        labels=labels,
        lesions=lesions,
        parenchyma=parenchyma,
        patient_id=patient_id if patient_id is not None else _node_label(volume_node),
        modality=modality,
        sources=sources,
    )


# --------------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------------
def _vertex_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (zero for vertices in no face)."""
    normals = np.zeros_like(points)
    if len(faces):
        tri = points[faces]
        face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 × area
        for c in range(3):
            np.add.at(normals, faces[:, c], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def mesh_to_model(
    vertices_lps: np.ndarray,
    faces: np.ndarray,
    scene: slicer.vtkMRMLScene,
    name: str,
    *,
    node: Any = None,
    color: Sequence[float] | None = None,
) -> Any:
    """A triangle mesh (vertices (N, 3) in LPS mm, faces (M, 3) vertex indices) → a model node in RAS with
    point normals. ``node`` (if given) gets the new mesh, e.g. when a slider re-renders a reconstruction.
    """
    v = np.asarray(vertices_lps, dtype=float)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(f"model '{name}': vertices must have shape (N, 3), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InputError(f"model '{name}': vertices contain NaN or infinite coordinates")
    if f.size == 0:
        f = np.zeros((0, 3), dtype=np.int64)
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise InputError(f"model '{name}': faces must be integer triangles of shape (M, 3), got {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(f"model '{name}': face indices must lie in [0, {len(v) - 1}]")
    f = f.astype(np.int64)
    pts_ras = v @ _FLIP  # diagonal: x, y negated (a rotation: triangle orientation is kept)

    points = vtk.vtkPoints()
    points.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(pts_ras), deep=True))
    polys = vtk.vtkCellArray()
    offsets = np.arange(0, 3 * len(f) + 1, 3, dtype=np.int64)
    polys.SetData(
        numpy_support.numpy_to_vtkIdTypeArray(offsets, deep=True),
        numpy_support.numpy_to_vtkIdTypeArray(np.ascontiguousarray(f.ravel()), deep=True),
    )
    poly = vtk.vtkPolyData()
    poly.SetPoints(points)
    poly.SetPolys(polys)
    normals = numpy_support.numpy_to_vtk(_vertex_normals(pts_ras, f), deep=True)
    normals.SetName("Normals")
    poly.GetPointData().SetNormals(normals)

    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLModelNode", name)
    else:
        if not node.IsA("vtkMRMLModelNode"):
            raise InputError(f"node '{_node_label(node)}' is a {node.GetClassName()}, not a model")
        if node.GetScene() is None:
            scene.AddNode(node)
    node.SetAndObservePolyData(poly)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    if color is not None:
        node.GetDisplayNode().SetColor(*(float(c) for c in color))
    return node


# --------------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------------
def dataframe_to_table(df: pd.DataFrame, scene: slicer.vtkMRMLScene, name: str, *, node: Any = None) -> Any:
    """A DataFrame → a table node (numeric and bool columns as vtkDoubleArray, others as vtkStringArray;
    column order and names kept, the index dropped). ``node`` (if given) is refilled."""
    table = vtk.vtkTable()
    for col in df.columns:
        series = df[col]
        if (np.issubdtype(series.dtype, np.number) or series.dtype == bool) and not np.issubdtype(
            series.dtype, np.complexfloating
        ):
            array = numpy_support.numpy_to_vtk(
                np.ascontiguousarray(series.to_numpy(dtype=float)), deep=True, array_type=vtk.VTK_DOUBLE
            )
        else:
            array = vtk.vtkStringArray()
            array.SetNumberOfValues(len(series))
            for i, value in enumerate(series.tolist()):
                missing = value is None or (isinstance(value, float) and np.isnan(value))
                array.SetValue(i, "" if missing else str(value))
        array.SetName(str(col))
        table.AddColumn(array)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    else:
        if not node.IsA("vtkMRMLTableNode"):
            raise InputError(f"node '{_node_label(node)}' is a {node.GetClassName()}, not a table")
        if node.GetScene() is None:
            scene.AddNode(node)
    node.SetAndObserveTable(table)
    return node


def table_to_dataframe(table_node: Any) -> pd.DataFrame:
    """A table node → DataFrame (numeric columns as numbers, string columns as str; multi-component columns
    split into ``name_0``, ``name_1``, …)."""
    import pandas as pd

    table = table_node.GetTable()
    columns: dict[str, Any] = {}
    for c in range(table.GetNumberOfColumns()):
        array = table.GetColumn(c)
        col_name = array.GetName() or f"column_{c}"
        n = table.GetNumberOfRows()
        if isinstance(array, vtk.vtkDataArray) and not isinstance(array, vtk.vtkBitArray):
            values = numpy_support.vtk_to_numpy(array).copy()
            if values.ndim == 2:
                for k in range(values.shape[1]):
                    columns[f"{col_name}_{k}"] = values[:n, k]
                continue
            columns[col_name] = values[:n]
        elif isinstance(array, vtk.vtkStringArray):
            columns[col_name] = [array.GetValue(i) for i in range(n)]
        else:
            columns[col_name] = [array.GetVariantValue(i).ToString() for i in range(n)]
    return pd.DataFrame(columns)
