"""MRML bridge (RadTyperMRML) against the real Slicer MRML classes of the ``slicer-core`` wheel.

Geometry is checked against expectations computed here by hand (LPS → RAS = diag(-1, -1, 1)), against
SimpleITK's own index ↔ point maps, and against Slicer's own readers, writers and segmentation export, so a
flipped axis, a transposed direction matrix or a shifted origin fails several tests.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("slicer")

import slicer
import vtk
from vtk.util import numpy_support

import RadTyperMRML as bridge
from RadTyperLib import io as rio
from RadTyperLib.errors import InputError, LesionError
from RadTyperLib.patient import Lesion, Patient, index_to_physical, physical_centroid

pytestmark = pytest.mark.mrml

FLIP = np.diag([-1.0, -1.0, 1.0])
SPACING = (0.7, 0.9, 2.5)
ORIGIN = (-31.5, 12.25, 47.0)
SHAPE = (14, 40, 36)  # [z, y, x]


def _direction() -> np.ndarray:
    """Oblique: 35° about z after 20° about x (columns = image axes in LPS)."""
    a, b = np.deg2rad(35.0), np.deg2rad(20.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    return rz @ rx


DIRECTION = _direction()


def _with_geometry(arr: np.ndarray, spacing=SPACING, origin=ORIGIN, direction=DIRECTION) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection(tuple(float(d) for d in np.asarray(direction).ravel()))
    return img


def _matrix(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _ijk_to_ras(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return _matrix(m)


def _node_array(node) -> np.ndarray:
    """Voxels of a volume node read straight from its vtkImageData, [k, j, i]."""
    image_data = node.GetImageData()
    dims = image_data.GetDimensions()
    return numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(dims[::-1])


def _assert_same_geometry(a: sitk.Image, b: sitk.Image, atol: float = 1e-9) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=atol, rtol=0)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol, rtol=0)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=atol, rtol=0)


@pytest.fixture
def scene():
    return bridge.create_scene()


@pytest.fixture(scope="module")
def case():
    """int16 image (full range used) + label map with 4 lesions of very different sizes + lesion list."""
    rng = np.random.default_rng(11)
    image = rng.integers(-1200, 2500, SHAPE).astype(np.int16)
    image[0, 0, 0], image[-1, -1, -1] = np.iinfo(np.int16).min, np.iinfo(np.int16).max
    zz, yy, xx = np.indices(SHAPE)
    labels = np.zeros(SHAPE, np.uint16)
    labels[((xx - 12) / 7.0) ** 2 + ((yy - 14) / 9.0) ** 2 + ((zz - 6) / 3.5) ** 2 <= 1] = 1  # big ball
    labels[2:5, 25:33, 22:31] = 2  # box
    labels[9:11, 3:5, 28:31] = 3  # small box
    labels[12, 36, 4] = 4  # single voxel
    lesions = [
        Lesion(1, "primary", "lung", (0.9, 0.1, 0.2)),
        Lesion(2, "node-hilar", "lymph node", (0.25, 0.5, 0.75)),
        Lesion(3, "liver-met", "liver", None),
        Lesion(4, "tiny", "unspecified", (0.0, 1.0, 0.0)),
    ]
    return _with_geometry(image), _with_geometry(labels), lesions


# --- scene ------------------------------------------------------------------------------------------------
def test_create_scene_has_logics_and_colors_and_is_freed():
    scene = bridge.create_scene()
    assert scene.GetFirstNodeByName("Grey") is not None  # default colour nodes
    for name in ("Application", "Colors", "Volumes", "Segmentations", "SubjectHierarchy"):
        assert bridge.scene_logic(scene, name) is not None
    assert bridge.scene_logic(scene, "Volumes").IsA("vtkSlicerVolumesLogic")
    with pytest.raises(InputError, match="no logic"):
        bridge.scene_logic(scene, "Nope")
    with pytest.raises(InputError, match="create_scene"):
        bridge.scene_logic(slicer.vtkMRMLScene(), "Volumes")
    deleted = []
    scene.AddObserver(vtk.vtkCommand.DeleteEvent, lambda *_: deleted.append(True))
    del scene
    gc.collect()
    assert deleted, "the scene (and its logics) should be freed when the last Python reference goes"


# --- volumes ----------------------------------------------------------------------------------------------
def test_volume_round_trip_is_exact(scene, case):
    image, _, _ = case
    node = bridge.sitk_to_volume(image, scene, "CT")
    assert node.GetClassName() == "vtkMRMLScalarVolumeNode"
    assert node.GetName() == "CT" and node.GetDisplayNode() is not None
    assert np.array_equal(_node_array(node), sitk.GetArrayViewFromImage(image))  # [k, j, i] order kept
    back = bridge.volume_to_sitk(node)
    assert back.GetPixelID() == sitk.sitkInt16
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))
    _assert_same_geometry(back, image)


def test_ijk_to_ras_matches_hand_computed_matrix(scene, case):
    image, _, _ = case
    node = bridge.sitk_to_volume(image, scene, "CT")
    lps = np.eye(4)
    lps[:3, :3] = DIRECTION @ np.diag(SPACING)
    lps[:3, 3] = ORIGIN
    expected = np.eye(4)
    expected[:3, :] = FLIP @ lps[:3, :]
    np.testing.assert_allclose(_ijk_to_ras(node), expected, atol=1e-9, rtol=0)
    np.testing.assert_allclose(node.GetSpacing(), SPACING, atol=1e-12, rtol=0)
    np.testing.assert_allclose(node.GetOrigin(), [-ORIGIN[0], -ORIGIN[1], ORIGIN[2]], atol=1e-12, rtol=0)


def test_single_voxel_marker_lands_at_hand_computed_position(scene):
    """Fails if an axis were flipped or swapped, the direction transposed or the origin shifted."""
    arr = np.zeros(SHAPE, np.int16)
    i, j, k = 29, 7, 11
    arr[k, j, i] = 1000
    image = _with_geometry(arr)
    # by hand: LPS point = origin + sum_a direction[:, a] * spacing[a] * index[a]
    p_lps = (
        np.array(ORIGIN) + DIRECTION[:, 0] * 0.7 * i + DIRECTION[:, 1] * 0.9 * j + DIRECTION[:, 2] * 2.5 * k
    )
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((i, j, k)), p_lps, atol=1e-9)
    p_ras = np.array([-p_lps[0], -p_lps[1], p_lps[2]])

    node = bridge.sitk_to_volume(image, scene, "marker")
    np.testing.assert_allclose((_ijk_to_ras(node) @ [i, j, k, 1])[:3], p_ras, atol=1e-9)
    ras_to_ijk = vtk.vtkMatrix4x4()
    node.GetRASToIJKMatrix(ras_to_ijk)
    ijk = (_matrix(ras_to_ijk) @ [*p_ras, 1])[:3]
    np.testing.assert_allclose(ijk, [i, j, k], atol=1e-9)
    assert _node_array(node)[k, j, i] == 1000 and np.count_nonzero(_node_array(node)) == 1

    back = bridge.volume_to_sitk(node)
    assert back.TransformPhysicalPointToIndex(tuple(p_lps)) == (i, j, k)
    assert sitk.GetArrayViewFromImage(back)[k, j, i] == 1000
    np.testing.assert_allclose(
        physical_centroid(sitk.GetArrayViewFromImage(back) > 0, back), p_lps, atol=1e-9
    )


def test_labelmap_volume_round_trip_and_checks(scene, case):
    _, labels, _ = case
    node = bridge.sitk_to_volume(labels, scene, "lesions", labelmap=True)
    assert node.IsA("vtkMRMLLabelMapVolumeNode") and node.GetDisplayNode() is not None
    back = bridge.volume_to_sitk(node)
    assert back.GetPixelID() == sitk.sitkUInt16
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(labels))
    _assert_same_geometry(back, labels)
    # node reuse: updated in place, no new node
    n_before = scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode")
    shifted = _with_geometry(sitk.GetArrayFromImage(labels) * 2, origin=(1.0, 2.0, 3.0))
    assert bridge.sitk_to_volume(shifted, scene, "ignored", labelmap=True, node=node) is node
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == n_before
    assert node.GetName() == "lesions"
    np.testing.assert_allclose(node.GetOrigin(), (-1.0, -2.0, 3.0), atol=1e-12)
    with pytest.raises(InputError, match="not an integer"):
        bridge.sitk_to_volume(sitk.Cast(labels, sitk.sitkFloat32), scene, "float-labels", labelmap=True)


def test_volume_written_by_slicer_storage_node_reads_in_simpleitk(scene, case, tmp_path):
    image, _, _ = case
    node = bridge.sitk_to_volume(image, scene, "CT")
    path = str(tmp_path / "ct.nrrd")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(path)
    assert storage.WriteData(node)
    read = sitk.ReadImage(path)
    assert read.GetPixelID() == sitk.sitkInt16
    assert np.array_equal(sitk.GetArrayViewFromImage(read), sitk.GetArrayViewFromImage(image))
    _assert_same_geometry(read, image, atol=1e-6)  # NRRD text keeps ~16 significant digits

    # and the other way: a file written by SimpleITK, read by Slicer's reader, converted by the bridge
    path2 = str(tmp_path / "ct_sitk.nrrd")
    sitk.WriteImage(image, path2)
    node2 = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "from-file")
    reader = slicer.vtkMRMLVolumeArchetypeStorageNode()
    reader.SetFileName(path2)
    assert reader.ReadData(node2)
    back = bridge.volume_to_sitk(node2)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))
    _assert_same_geometry(back, image, atol=1e-6)


def test_volume_errors_name_the_node(scene, case):
    image, _, _ = case
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no-voxels")
    with pytest.raises(InputError, match="'no-voxels' has no image data"):
        bridge.volume_to_sitk(empty)
    node = bridge.sitk_to_volume(image, scene, "CT-moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    node.SetAndObserveTransformNodeID(transform.GetID())
    bridge.volume_to_sitk(node)  # identity transform: accepted
    m = vtk.vtkMatrix4x4()
    m.SetElement(0, 3, 5.0)
    transform.SetMatrixTransformToParent(m)
    with pytest.raises(InputError, match=r"'CT-moved'.*'shift'.*harden the transform"):
        bridge.volume_to_sitk(node)
    with pytest.raises(InputError, match="3-D"):
        bridge.sitk_to_volume(sitk.Image(4, 4, sitk.sitkInt16), scene, "flat")


# --- segmentations ----------------------------------------------------------------------------------------
def _segments(node) -> list:
    seg = node.GetSegmentation()
    return [seg.GetNthSegment(i) for i in range(seg.GetNumberOfSegments())]


def test_segmentation_round_trip_keeps_voxels_names_colours_sites(scene, case):
    image, labels, lesions = case
    volume = bridge.sitk_to_volume(image, scene, "CT")
    seg_node = bridge.labels_to_segmentation(labels, lesions, scene, "Lesions", reference_volume_node=volume)
    assert seg_node.GetDisplayNode() is not None
    segments = _segments(seg_node)
    assert [s.GetName() for s in segments] == [les.name for les in lesions]
    value = vtk.reference("")
    for s, les in zip(segments, lesions, strict=True):
        assert s.GetTag(bridge.SITE_TAG, value) and str(value) == les.site
    np.testing.assert_allclose(segments[2].GetColor(), rio.default_color(2))  # colour None → palette

    back, lesions_back = bridge.segmentation_to_labels(seg_node, volume)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(labels))
    _assert_same_geometry(back, labels)
    assert [(les.label, les.name, les.site) for les in lesions_back] == [
        (les.label, les.name, les.site) for les in lesions
    ]
    assert [les.site for les in lesions_back] == ["lung", "lymph_node", "liver", "unspecified"]
    for got, want in zip(lesions_back, lesions, strict=True):
        expected = want.color if want.color is not None else rio.default_color(want.label - 1)
        np.testing.assert_allclose(got.color, expected, atol=1e-12)

    # the centroid of every lesion is kept, and equals the one Slicer's own export gives in RAS
    logic = bridge.scene_logic(scene, "Segmentations")
    for s_id, les in zip(
        [seg_node.GetSegmentation().GetNthSegmentID(i) for i in range(4)], lesions, strict=True
    ):
        want = physical_centroid(sitk.GetArrayViewFromImage(labels) == les.label, labels)
        got = physical_centroid(sitk.GetArrayViewFromImage(back) == les.label, back)
        np.testing.assert_allclose(got, want, atol=1e-6)

        exported = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"export-{les.name}")
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(s_id)
        assert logic.ExportSegmentsToLabelmapNode(seg_node, ids, exported, volume)
        ijk = np.argwhere(_node_array(exported) > 0)[:, ::-1]
        ras = (_ijk_to_ras(exported) @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
        np.testing.assert_allclose(FLIP @ ras.mean(axis=0), want, atol=1e-6)
        # Slicer's export and the bridge agree voxel for voxel
        assert np.array_equal(_node_array(exported) > 0, sitk.GetArrayViewFromImage(back) == les.label)
        scene.RemoveNode(exported)


def test_segmentation_without_reference_volume_and_node_reuse(scene, case):
    image, labels, lesions = case
    seg_node = bridge.labels_to_segmentation(labels, lesions, scene, "Lesions")
    geometry = seg_node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    )
    assert geometry  # reference geometry = the label map's grid
    volume = bridge.sitk_to_volume(image, scene, "CT")
    back, _ = bridge.segmentation_to_labels(seg_node, volume)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(labels))

    again = bridge.labels_to_segmentation(labels, lesions[:2], scene, "x", node=seg_node)
    assert again is seg_node and [s.GetName() for s in _segments(seg_node)] == ["primary", "node-hilar"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1


def test_segments_share_cropped_layers_like_slicer(scene, case):
    _, labels, lesions = case
    seg_node = bridge.labels_to_segmentation(labels, lesions, scene, "Lesions")
    segmentation = seg_node.GetSegmentation()
    assert segmentation.GetNumberOfLayers() == 1
    assert [s.GetLabelValue() for s in _segments(seg_node)] == [1, 2, 3, 4]

    # more lesions than one uint8 layer holds: 300 single voxels → two layers, still exact
    many = np.zeros(SHAPE, np.uint16)
    flat = np.flatnonzero(np.ones(SHAPE, bool))[::50][:300]
    many.ravel()[flat] = np.arange(1, 301)
    many_img = _with_geometry(many)
    many_lesions = [Lesion(v, f"L{v}") for v in range(1, 301)]
    seg2 = bridge.labels_to_segmentation(many_img, many_lesions, scene, "Many")
    assert seg2.GetSegmentation().GetNumberOfLayers() == 2
    volume = bridge.sitk_to_volume(many_img, scene, "ref")
    back, back_lesions = bridge.segmentation_to_labels(seg2, volume)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), many)
    assert [les.name for les in back_lesions] == [les.name for les in many_lesions]
    with pytest.raises(InputError, match="repeated lesion names: L1"):
        bridge.labels_to_segmentation(many_img, [Lesion(1, "L1"), Lesion(2, "L1")], scene, "dup")


def _checksum(seg_node) -> list[tuple]:
    """Per segment: ID, name, colour, label value, voxel count and an index-weighted sum (read from copies)."""
    out = []
    for s_id in [seg_node.GetSegmentation().GetNthSegmentID(i) for i in range(len(_segments(seg_node)))]:
        segment = seg_node.GetSegmentation().GetSegment(s_id)
        oid = slicer.vtkOrientedImageData()
        assert slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            seg_node, s_id, oid, False
        )
        dims = oid.GetDimensions()
        arr = numpy_support.vtk_to_numpy(oid.GetPointData().GetScalars()).reshape(dims[::-1])
        idx = np.argwhere(arr == segment.GetLabelValue())
        out.append(
            (
                s_id,
                segment.GetName(),
                segment.GetColor(),
                segment.GetLabelValue(),
                len(idx),
                int(idx.sum()),
                *oid.GetExtent(),
            )
        )
    return out


def test_reading_a_slicer_imported_segmentation_leaves_it_unchanged(scene, case):
    image, labels, _ = case
    volume = bridge.sitk_to_volume(image, scene, "CT")
    labelmap = bridge.sitk_to_volume(labels, scene, "lesions-label", labelmap=True)
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Imported")
    seg_node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    assert bridge.scene_logic(scene, "Segmentations").ImportLabelmapToSegmentationNode(labelmap, seg_node)
    names = ["a", "b", "c", "d"]
    for segment, name in zip(_segments(seg_node), names, strict=True):
        segment.SetName(name)
    before = _checksum(seg_node)
    mtime = seg_node.GetMTime()
    seg_mtime = seg_node.GetSegmentation().GetMTime()

    back, lesions = bridge.segmentation_to_labels(seg_node, volume)
    patient = bridge.patient_from_nodes(volume, seg_node)

    assert _checksum(seg_node) == before
    assert seg_node.GetMTime() == mtime and seg_node.GetSegmentation().GetMTime() == seg_mtime
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(labels))
    assert [les.name for les in lesions] == names and all(les.site == "unspecified" for les in lesions)
    assert isinstance(patient, Patient) and patient.patient_id == "CT"
    assert patient.voxel_counts() == {
        v: int((sitk.GetArrayViewFromImage(labels) == v).sum()) for v in (1, 2, 3, 4)
    }


def test_segment_on_a_finer_grid_is_resampled_exactly(scene, case):
    """A segmentation drawn on a 3× finer lattice (same directions) comes back on the volume grid."""
    image, labels, lesions = case
    fine_spacing = np.array(SPACING) / 3.0
    fine_origin = np.array(ORIGIN) - DIRECTION @ fine_spacing  # fine voxel 3i+1 is centred on coarse voxel i
    fine_ref = _with_geometry(
        np.zeros(tuple(3 * n for n in SHAPE), np.uint16), spacing=fine_spacing, origin=fine_origin
    )
    fine = sitk.Resample(labels, fine_ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    assert np.count_nonzero(sitk.GetArrayViewFromImage(fine) == 4) == 27
    seg_node = bridge.labels_to_segmentation(fine, lesions, scene, "fine")
    volume = bridge.sitk_to_volume(image, scene, "CT")
    back, _ = bridge.segmentation_to_labels(seg_node, volume)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(labels))


def test_segment_on_a_rotated_grid_is_resampled_by_nearest_neighbour(scene, case):
    image, _, _ = case
    volume = bridge.sitk_to_volume(image, scene, "CT")
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint((18.0, 20.0, 7.0)))
    radius = 9.0

    def ball_on(img: sitk.Image) -> np.ndarray:
        zz, yy, xx = np.indices(sitk.GetArrayViewFromImage(img).shape)
        pts = index_to_physical(np.c_[xx.ravel(), yy.ravel(), zz.ravel()], img)
        return (np.linalg.norm(pts - centre, axis=1) <= radius).reshape(zz.shape)

    axis_grid = _with_geometry(
        np.zeros((30, 30, 30), np.uint8), spacing=(0.8, 0.8, 0.8), origin=centre - 12.0, direction=np.eye(3)
    )
    ball = ball_on(axis_grid).astype(np.uint8)
    seg_node = bridge.labels_to_segmentation(
        _with_geometry(ball, (0.8, 0.8, 0.8), centre - 12.0, np.eye(3)),
        [Lesion(1, "ball")],
        scene,
        "axis-aligned",
    )
    back, lesions = bridge.segmentation_to_labels(seg_node, volume)
    got = sitk.GetArrayViewFromImage(back) == 1
    want = ball_on(image)
    dice = 2 * np.count_nonzero(got & want) / (np.count_nonzero(got) + np.count_nonzero(want))
    assert dice > 0.9
    np.testing.assert_allclose(physical_centroid(got, back), centre, atol=0.5)
    assert lesions[0].name == "ball"


def _add_segment(seg_node, mask_zyx: np.ndarray, reference: sitk.Image, name: str, offset=(0.0, 0.0, 0.0)):
    """Add a segment as its own labelmap layer (not through the bridge)."""
    oid = slicer.vtkOrientedImageData()
    oid.SetDimensions(*mask_zyx.shape[::-1])
    oid.SetSpacing(*reference.GetSpacing())
    oid.SetOrigin(*(FLIP @ (np.array(reference.GetOrigin()) + offset)))
    d = np.eye(4)
    d[:3, :3] = FLIP @ np.array(reference.GetDirection()).reshape(3, 3)
    m = vtk.vtkMatrix4x4()
    m.DeepCopy(d.ravel())
    oid.SetDirectionMatrix(m)
    oid.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask_zyx.astype(np.uint8).ravel(), deep=True))
    return seg_node.AddSegmentFromBinaryLabelmapRepresentation(oid, name, (1.0, 0.5, 0.0))


def test_empty_segment_raises_lesion_error(scene, case):
    image, labels, lesions = case
    volume = bridge.sitk_to_volume(image, scene, "CT")
    seg_node = bridge.labels_to_segmentation(labels, lesions, scene, "Lesions", reference_volume_node=volume)
    seg_node.GetSegmentation().AddEmptySegment("", "ghost-lesion")
    with pytest.raises(LesionError, match=r"ghost-lesion.*empty") as err:
        bridge.segmentation_to_labels(seg_node, volume)
    assert err.value.lesion == "ghost-lesion"

    seg2 = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "zeros")
    _add_segment(seg2, np.zeros(SHAPE, bool), labels, "all-zero")
    with pytest.raises(LesionError, match="all-zero"):
        bridge.segmentation_to_labels(seg2, volume)


def test_overlapping_segments_raise_input_error_naming_both(scene, case):
    image, labels, lesions = case
    volume = bridge.sitk_to_volume(image, scene, "CT")
    seg_node = bridge.labels_to_segmentation(labels, lesions, scene, "Lesions", reference_volume_node=volume)
    overlap = np.zeros(SHAPE, bool)
    overlap[3, 27:30, 24:27] = True  # inside lesion 2 ("node-hilar")
    _add_segment(seg_node, overlap, labels, "intruder")
    with pytest.raises(InputError, match="'node-hilar' and 'intruder' overlap"):
        bridge.segmentation_to_labels(seg_node, volume)


def test_segment_outside_or_cut_by_the_volume(scene, case):
    image, labels, _ = case
    volume = bridge.sitk_to_volume(image, scene, "CT")
    blob = np.zeros((4, 4, 4), bool)
    blob[1:3, 1:3, 1:3] = True
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "far")
    _add_segment(seg_node, blob, labels, "far-away", offset=(500.0, 0.0, 0.0))
    with pytest.raises(LesionError, match=r"far-away.*outside volume 'CT'"):
        bridge.segmentation_to_labels(seg_node, volume)

    seg_node2 = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "edge")
    one_slice_below = -2.5 * DIRECTION[:, 2]  # the segment starts one slice before the volume
    _add_segment(seg_node2, blob, labels, "at-edge", offset=one_slice_below - DIRECTION[:, 2] * 2.5)
    with pytest.raises(LesionError, match=r"at-edge.*4 of 8 segment voxels lie outside"):
        bridge.segmentation_to_labels(seg_node2, volume)


def test_duplicate_segment_names_and_transformed_segmentation(scene, case):
    image, labels, lesions = case
    volume = bridge.sitk_to_volume(image, scene, "CT")
    seg_node = bridge.labels_to_segmentation(labels, lesions[:2], scene, "dups", reference_volume_node=volume)
    _segments(seg_node)[1].SetName("primary")
    with pytest.raises(InputError, match="'primary'"):
        bridge.segmentation_to_labels(seg_node, volume)
    _segments(seg_node)[1].SetName("second")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "tilt")
    m = vtk.vtkMatrix4x4()
    m.SetElement(1, 3, -3.0)
    transform.SetMatrixTransformToParent(m)
    seg_node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match=r"segmentation 'dups'.*harden"):
        bridge.segmentation_to_labels(seg_node, volume)
    with pytest.raises(LesionError, match=r"'ghost'.*no voxel has label 9"):
        bridge.labels_to_segmentation(labels, [Lesion(9, "ghost")], scene, "bad")


def test_patient_from_nodes_with_parenchyma(scene, case):
    image, labels, lesions = case
    volume = bridge.sitk_to_volume(image, scene, "CT")
    seg_node = bridge.labels_to_segmentation(labels, lesions, scene, "Lesions", reference_volume_node=volume)
    organ = np.zeros(SHAPE, np.uint8)
    organ[1:13, 2:38, 2:34] = 1
    organ_img = _with_geometry(organ)

    as_labelmap = bridge.sitk_to_volume(organ_img, scene, "lung-label", labelmap=True)
    p = bridge.patient_from_nodes(
        volume, seg_node, parenchyma_node=as_labelmap, patient_id="P7", modality="ct"
    )
    assert p.patient_id == "P7" and p.modality == "CT"
    assert [les.name for les in p.lesions] == [les.name for les in lesions]
    assert np.array_equal(p.parenchyma_array(), organ > 0)
    assert np.array_equal(p.image_array(), sitk.GetArrayViewFromImage(image))
    assert "Lesions" in p.sources["lesions"] and "lung-label" in p.sources["parenchyma"]

    as_segmentation = bridge.labels_to_segmentation(organ_img, [Lesion(1, "lung")], scene, "Lung")
    p2 = bridge.patient_from_nodes(volume, seg_node, parenchyma_node=as_segmentation)
    assert np.array_equal(p2.parenchyma_array(), organ > 0)
    with pytest.raises(InputError, match="exactly one segment"):
        bridge.patient_from_nodes(volume, seg_node, parenchyma_node=seg_node)


def test_segmentation_from_bridge_saved_by_slicer_reads_with_radtyper_io(scene, case, tmp_path):
    _, labels, lesions = case
    if not hasattr(rio, "read_seg_nrrd"):
        pytest.skip("RadTyperLib.io.read_seg_nrrd not available")
    seg_node = bridge.labels_to_segmentation(labels, lesions, scene, "Lesions")
    path = str(tmp_path / "lesions.seg.nrrd")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(path)
    assert storage.WriteData(seg_node)
    read_labels, read_lesions = rio.read_seg_nrrd(path)
    assert [(les.name, les.site) for les in read_lesions] == [(les.name, les.site) for les in lesions]
    by_name = {les.name: les.label for les in read_lesions}
    arr = sitk.GetArrayViewFromImage(labels)
    read = sitk.GetArrayViewFromImage(read_labels)
    # Slicer crops the file to the segments' extent: compare physical positions, not array indices
    for les in lesions:
        got = physical_centroid(read == by_name[les.name], read_labels)
        np.testing.assert_allclose(got, physical_centroid(arr == les.label, labels), atol=1e-6)
        assert np.count_nonzero(read == by_name[les.name]) == np.count_nonzero(arr == les.label)


def test_seg_nrrd_written_by_radtyper_io_loads_in_slicer(scene, case, tmp_path):
    image, labels, lesions = case
    if not hasattr(rio, "write_seg_nrrd"):
        pytest.skip("RadTyperLib.io.write_seg_nrrd not available yet")
    path = tmp_path / "radtyper.seg.nrrd"
    rio.write_seg_nrrd(path, labels, lesions)
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(seg_node)
    assert [s.GetName() for s in _segments(seg_node)] == [les.name for les in lesions]
    volume = bridge.sitk_to_volume(image, scene, "CT")
    back, lesions_back = bridge.segmentation_to_labels(seg_node, volume)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(labels))
    assert [les.site for les in lesions_back] == [les.site for les in lesions]


# --- models -----------------------------------------------------------------------------------------------
def test_mesh_to_model_converts_to_ras_and_reuses_node(scene):
    vertices = np.array([[10.0, 20.0, 30.0], [14.0, 20.0, 30.0], [10.0, 23.0, 30.0], [10.0, 20.0, 35.0]])
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    model = bridge.mesh_to_model(vertices, faces, scene, "tetra", color=(0.2, 0.4, 0.6))
    poly = model.GetPolyData()
    assert poly.GetNumberOfPoints() == 4 and poly.GetNumberOfCells() == 4 and poly.GetNumberOfPolys() == 4
    pts = numpy_support.vtk_to_numpy(poly.GetPoints().GetData())
    np.testing.assert_array_equal(pts, vertices * [-1, -1, 1])
    assert poly.GetPoint(1) == (-14.0, -20.0, 30.0)
    cell = vtk.vtkIdList()
    poly.GetCellPoints(0, cell)
    assert [cell.GetId(i) for i in range(3)] == [0, 2, 1]
    normals = numpy_support.vtk_to_numpy(poly.GetPointData().GetNormals())
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0)
    # outward normals in RAS: the apex (LPS z up = RAS S up) points up, the base corner points away
    assert normals[3, 2] > 0.5
    np.testing.assert_allclose(model.GetDisplayNode().GetColor(), (0.2, 0.4, 0.6))

    n_models = scene.GetNumberOfNodesByClass("vtkMRMLModelNode")
    again = bridge.mesh_to_model(vertices[:3], faces[:1], scene, "ignored", node=model)
    assert again is model and scene.GetNumberOfNodesByClass("vtkMRMLModelNode") == n_models
    assert model.GetPolyData().GetNumberOfPoints() == 3 and model.GetPolyData().GetNumberOfCells() == 1
    with pytest.raises(InputError, match="face indices"):
        bridge.mesh_to_model(vertices, np.array([[0, 1, 7]]), scene, "bad")
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        bridge.mesh_to_model(vertices[:, :2], faces, scene, "bad")


# --- tables -----------------------------------------------------------------------------------------------
def test_dataframe_table_round_trip(scene):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "lesion": ["primary", "node-hilar", "liver-met"],
            "site": ["lung", "lymph_node", "liver"],
            "shape_volume_mm3": [1234.5, 88.25, np.nan],
            "count": [3, 1, 2],
        }
    )
    table = bridge.dataframe_to_table(df, scene, "RadTyper features")
    vtable = table.GetTable()
    assert [vtable.GetColumn(i).GetName() for i in range(vtable.GetNumberOfColumns())] == list(df.columns)
    assert isinstance(vtable.GetColumn(0), vtk.vtkStringArray)
    assert isinstance(vtable.GetColumn(2), vtk.vtkDoubleArray) and isinstance(
        vtable.GetColumn(3), vtk.vtkDoubleArray
    )
    assert table.GetNumberOfRows() == 3 and table.GetCellText(1, 0) == "node-hilar"

    back = bridge.table_to_dataframe(table)
    assert list(back.columns) == list(df.columns)
    assert back["lesion"].tolist() == df["lesion"].tolist() and back["site"].tolist() == df["site"].tolist()
    np.testing.assert_array_equal(back["shape_volume_mm3"].to_numpy(), df["shape_volume_mm3"].to_numpy())
    np.testing.assert_array_equal(back["count"].to_numpy(), [3.0, 1.0, 2.0])

    again = bridge.dataframe_to_table(df[["site"]], scene, "ignored", node=table)
    assert again is table and table.GetNumberOfColumns() == 1
    assert bridge.table_to_dataframe(table)["site"].tolist() == df["site"].tolist()


def test_optional_path_reads_unset_path_parameters_as_none():
    from pathlib import Path

    from RadTyperMRML import optional_path

    # an unset pathlib.Path field of a parameterNodeWrapper reads back as Path(".")
    assert [optional_path(v) for v in (None, "", ".", Path("."))] == [None] * 4
    assert optional_path("model") == Path("model") and optional_path(Path("/a/b")) == Path("/a/b")
