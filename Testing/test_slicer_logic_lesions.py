"""RadTyper Lesions' logic (RadTyperMRML.lesions_logic) on Slicer's MRML classes, without the application.

The demo patient goes into a headless scene through the bridge; the lesion table must give the volumes,
components, centres and sites of the core library; QC flags are checked on hand-made segments; editing,
jumping, one-click segmentation (when RadTyperLib.segmentation.seeded exists) and the parenchyma must
never touch the other segments.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("slicer")

import slicer
import vtk

import RadTyperMRML as bridge
from RadTyperLib.errors import InputError, LesionError, RadTyperError
from RadTyperLib.summary import count_components
from RadTyperMRML.demo_data import load_demo_into_scene
from RadTyperMRML.lesions_logic import (
    SMALL_LESION_VOXELS,
    ComponentMissingError,
    LesionsLogic,
)

pytestmark = pytest.mark.mrml
FLIP = np.array([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def demo():
    """(scene, volume, lesions, parenchyma, core patient) of the demo patient."""
    from RadTyperMRML.demo_data import demo_patient

    scene = bridge.create_scene()
    volume, lesions, parenchyma = load_demo_into_scene(scene)
    return scene, volume, lesions, parenchyma, demo_patient()


@pytest.fixture
def fresh_demo():
    scene = bridge.create_scene()
    volume, lesions, parenchyma = load_demo_into_scene(scene)
    return scene, volume, lesions, parenchyma


def segmentation_checksum(segmentation_node, volume_node) -> dict:
    """Segment ID → (name, colour, site, sha1 of the mask on the volume grid with its box)."""
    segmentation = segmentation_node.GetSegmentation()
    out = {}
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        segment = segmentation.GetSegment(sid)
        box, mask, n, n_out = bridge.segment_on_volume_grid(segmentation_node, sid, volume_node)
        digest = hashlib.sha1(mask.tobytes() if mask is not None else b"").hexdigest()
        site = vtk.reference("")
        segment.GetTag("RadTyper.Site", site)
        span = tuple((s.start, s.stop) for s in box) if box is not None else None
        out[sid] = (segment.GetName(), tuple(segment.GetColor()), str(site), span, n, n_out, digest)
    return out


# --- lesion table -----------------------------------------------------------------------------------------
def test_lesion_table_of_the_demo_patient_matches_the_core(demo):
    _scene, volume, lesions, _parenchyma, patient = demo
    before = segmentation_checksum(lesions, volume)
    rows = LesionsLogic().lesion_rows(volume, lesions)
    assert [r.name for r in rows] == [les.name for les in patient.lesions]
    assert [r.site for r in rows] == [les.site for les in patient.lesions]
    voxel_mm3 = float(np.prod(patient.spacing))
    for row, les in zip(rows, patient.lesions, strict=True):
        mask = patient.lesion_mask(les)
        assert row.voxels == int(mask.sum())
        assert row.volume_mm3 == pytest.approx(patient.lesion_volume_mm3(les))
        assert row.volume_mm3 == pytest.approx(row.voxels * voxel_mm3)
        assert row.components == count_components(mask)
        np.testing.assert_allclose(row.centre_ras, patient.lesion_centroid_mm(les) * FLIP, atol=1e-6)
        assert row.color == pytest.approx(les.color, abs=1e-6)
        assert not row.problem and not row.overlaps
        assert not row.touches_border and not row.holes and not row.too_small
    disconnected = [r.name for r in rows if r.disconnected]
    assert disconnected == ["lung_2"]  # the demo's lesion drawn in two pieces
    assert rows[1].flags == ["disconnected"] and rows[1].qc_text() == "disconnected"
    assert segmentation_checksum(lesions, volume) == before  # listing changes nothing


@pytest.fixture
def qc_case():
    """A 30 × 24 × 20 volume and segments made to trigger every QC flag and problem."""
    scene = bridge.create_scene()
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.zeros((20, 24, 30), np.int16))
    image.SetSpacing((1.0, 1.0, 2.0))
    image.SetOrigin((10.0, -5.0, 3.0))
    volume = bridge.sitk_to_volume(image, scene, "CT")
    big = sitk.GetImageFromArray(np.zeros((40, 24, 30), np.int16))
    big.SetSpacing((1.0, 1.0, 2.0))
    big.SetOrigin((10.0, -5.0, 3.0))
    big_volume = bridge.sitk_to_volume(big, scene, "big")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "lesions")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(volume)

    def add(name, mask, on=volume):
        return bridge.add_mask_segment(seg, mask, on, name)

    shape = (20, 24, 30)
    good = np.zeros(shape, bool)
    good[5:10, 5:10, 5:10] = True
    holed = np.zeros(shape, bool)
    holed[4:11, 12:19, 4:11] = True
    holed[7, 15, 7] = False  # one enclosed cavity voxel
    border = np.zeros(shape, bool)
    border[0:4, 2:6, 20:26] = True  # touches the first slice
    tiny = np.zeros(shape, bool)
    tiny[15:17, 15:17, 15:17] = True  # 8 voxels
    pieces = np.zeros(shape, bool)
    pieces[12:16, 2:6, 12:16] = True
    pieces[12:16, 2:6, 20:24] = True
    ids = {
        "good": add("good", good),
        "holed": add("holed", holed),
        "border": add("border", border),
        "tiny": add("tiny", tiny),
        "pieces": add("pieces", pieces),
    }
    overlap = np.zeros(shape, bool)
    overlap[8:12, 8:12, 8:12] = True  # overlaps "good"
    ids["overlap"] = add("overlap", overlap)
    outside = np.zeros((40, 24, 30), bool)
    outside[30:34, 5:9, 5:9] = True  # beyond the CT's 20 slices
    ids["outside"] = add("outside", outside, big_volume)
    partly = np.zeros((40, 24, 30), bool)
    partly[17:23, 5:9, 20:24] = True  # half inside
    ids["partly"] = add("partly", partly, big_volume)
    empty_id = seg.GetSegmentation().AddEmptySegment("", "empty")
    ids["empty"] = empty_id
    return scene, volume, seg, ids


def test_qc_flags_and_problems(qc_case):
    _scene, volume, seg, ids = qc_case
    rows = {r.name: r for r in LesionsLogic().lesion_rows(volume, seg)}
    assert set(rows) == set(ids)
    # the test volume is 24 × 30 voxels in-plane: every lesion inside lies within 10 mm of its border
    assert (
        rows["good"].flags == ["margin_clipped"]
        and rows["good"].voxels == 125
        and rows["good"].volume_mm3 == 250.0
    )
    assert rows["good"].overlaps == ("overlap",) and rows["overlap"].overlaps == ("good",)
    assert rows["holed"].hole_voxels == 1 and rows["holed"].flags == ["margin_clipped", "holes"]
    assert rows["border"].flags == ["touches_border"]
    assert rows["tiny"].voxels == 8 < SMALL_LESION_VOXELS and rows["tiny"].flags == [
        "margin_clipped",
        "too_small",
    ]
    assert rows["pieces"].components == 2 and rows["pieces"].flags == ["margin_clipped", "disconnected"]
    assert rows["outside"].problem == "outside the volume" and rows["outside"].centre_ras is None
    assert rows["partly"].problem.startswith("partly outside the volume (48 of 96 voxels)")
    assert rows["partly"].touches_border and rows["partly"].voxels == 48
    assert rows["empty"].problem == "empty segment" and rows["empty"].volume_mm3 == 0.0
    assert "overlaps good" in rows["overlap"].qc_text()
    as_dict = rows["holed"].as_dict()
    assert (
        as_dict["holes"] is True
        and as_dict["qc"] == "margin clipped; holes"
        and as_dict["segment_id"] == ids["holed"]
    )


def test_margin_clipped_flag_follows_the_10_mm_shell(tmp_path):
    """A lesion ≥ 10 mm (in-plane) from the border has no flag; one 5 mm away is ``margin_clipped``."""
    import SimpleITK as sitk

    scene = slicer.vtkMRMLScene()
    image = sitk.GetImageFromArray(np.zeros((20, 60, 60), np.int16))
    image.SetSpacing((1.0, 1.0, 2.0))
    volume = bridge.sitk_to_volume(image, scene, "CT")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "lesions")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    inner = np.zeros((20, 60, 60), bool)
    inner[5:10, 20:30, 20:30] = True
    near = np.zeros((20, 60, 60), bool)
    near[5:10, 5:12, 40:48] = True  # 5 voxels (5 mm) from the y border
    bridge.add_mask_segment(seg, inner, volume, "inner")
    bridge.add_mask_segment(seg, near, volume, "near")
    rows = {r.name: r for r in LesionsLogic().lesion_rows(volume, seg)}
    assert rows["inner"].flags == []
    assert rows["near"].flags == ["margin_clipped"] and "margin clipped" in rows["near"].qc_text()


def test_bad_inputs_are_radtyper_errors(qc_case):
    _scene, volume, seg, _ids = qc_case
    logic = LesionsLogic()
    with pytest.raises(InputError, match="No input volume is selected"):
        logic.lesion_rows(None, seg)
    with pytest.raises(InputError, match="No lesion segmentation is selected"):
        logic.lesion_rows(volume, None)
    with pytest.raises(InputError, match="not in"):
        logic.set_lesion_site(seg, "no-such-id", "lung")
    with pytest.raises(ComponentMissingError, match="U-Net"):
        logic.add_lesion_from_point(volume, seg, (0, 0, 0), method="unet")
    assert issubclass(ComponentMissingError, RadTyperError)


# --- editing and navigation -------------------------------------------------------------------------------
def test_rename_site_delete(fresh_demo):
    _scene, volume, seg, _par = fresh_demo
    logic = LesionsLogic()
    rows = logic.lesion_rows(volume, seg)
    sid = rows[6].segment_id
    assert logic.set_lesion_site(seg, sid, "Nodal") == "lymph_node"
    assert logic.lesion_site(seg, sid) == "lymph_node"
    with pytest.raises(InputError, match="unknown site 'elbow'"):
        logic.set_lesion_site(seg, sid, "elbow")
    assert logic.rename_lesion(seg, sid, "  hilar node ") == "hilar node"
    with pytest.raises(InputError, match="already named 'lung_1'"):
        logic.rename_lesion(seg, sid, "lung_1")
    with pytest.raises(InputError, match="cannot be empty"):
        logic.rename_lesion(seg, sid, "  ")
    others = {k: v for k, v in segmentation_checksum(seg, volume).items() if k != sid}
    logic.delete_lesion(seg, sid)
    after = segmentation_checksum(seg, volume)
    assert sid not in after and after == others
    names = [r.name for r in logic.lesion_rows(volume, seg)]
    assert "hilar node" not in names and len(names) == 7
    assert logic.unique_lesion_name(seg) == "lesion_1"


def test_jump_centres_every_slice_view_on_the_lesion(demo):
    scene, volume, lesions, _par, patient = demo
    views = []
    for name in ("Red", "Yellow", "Green"):
        view = slicer.vtkMRMLSliceNode()
        view.SetLayoutName(name)
        scene.AddNode(view)
        views.append(view)
    try:
        logic = LesionsLogic()
        row = logic.lesion_rows(volume, lesions)[3]
        centre = logic.jump_to_lesion(volume, lesions, row.segment_id)
        np.testing.assert_allclose(centre, patient.lesion_centroid_mm("liver_1") * FLIP, atol=1e-6)
        for view in views:
            m = view.GetSliceToRAS()
            np.testing.assert_allclose([m.GetElement(i, 3) for i in range(3)], centre, atol=1e-6)
    finally:
        for view in views:
            scene.RemoveNode(view)


def test_markups_points(demo):
    scene, *_ = demo
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
    points.AddControlPoint(1.0, 2.0, 3.0, "first")
    points.AddControlPoint(-4.0, 5.5, 6.0, "second")
    xyz, labels = LesionsLogic.points_from_markups(points)
    assert xyz == [(1.0, 2.0, 3.0), (-4.0, 5.5, 6.0)] and labels == ["first", "second"]
    with pytest.raises(InputError, match="No point list"):
        LesionsLogic.points_from_markups(None)
    scene.RemoveNode(points)


# --- one-click segmentation -------------------------------------------------------------------------------
seeded = pytest.mark.skipif(
    not LesionsLogic.seeded_available(), reason="RadTyperLib.segmentation.seeded is not available yet"
)


def _full_mask(seg, sid, volume) -> np.ndarray:
    box, mask, _n, _o = bridge.segment_on_volume_grid(seg, sid, volume)
    full = np.zeros(volume.GetImageData().GetDimensions()[::-1], bool)
    if box is not None:
        full[box] = mask
    return full


@seeded
def test_one_click_adds_a_segment_and_leaves_the_others_alone(fresh_demo):
    _scene, volume, seg, _par = fresh_demo
    logic = LesionsLogic()
    rows = {r.name: r for r in logic.lesion_rows(volume, seg)}
    truth = _full_mask(seg, rows["lung_3"].segment_id, volume)
    logic.delete_lesion(seg, rows["lung_3"].segment_id)
    before = segmentation_checksum(seg, volume)

    outcome = logic.add_lesion_from_point(
        volume, seg, rows["lung_3"].centre_ras, name="lung_3 again", site="lung"
    )
    after = segmentation_checksum(seg, volume)
    assert set(after) - set(before) == {outcome.segment_id}
    assert {k: after[k] for k in before} == before  # the user's segments: same IDs, names, sites, voxels
    new = _full_mask(seg, outcome.segment_id, volume)
    dice = 2 * np.count_nonzero(new & truth) / (new.sum() + truth.sum())
    assert dice > 0.7
    assert outcome.volume_mm3 == pytest.approx(new.sum() * np.prod(volume.GetSpacing()))
    assert logic.lesion_site(seg, outcome.segment_id) == "lung"
    assert seg.GetSegmentation().GetSegment(outcome.segment_id).GetName() == "lung_3 again"
    for other in before:  # never overlapping an existing lesion
        assert not np.any(new & _full_mask(seg, other, volume))

    with pytest.raises(LesionError, match="inside an existing segment"):
        logic.add_lesion_from_point(volume, seg, rows["liver_1"].centre_ras)
    assert segmentation_checksum(seg, volume) == after


@seeded
def test_segment_all_marked_lesions(fresh_demo):
    scene, volume, seg, _par = fresh_demo
    logic = LesionsLogic()
    rows = {r.name: r for r in logic.lesion_rows(volume, seg)}
    for name in ("node_1", "bone_1"):
        logic.delete_lesion(seg, rows[name].segment_id)
    before = segmentation_checksum(seg, volume)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "seeds")
    points.AddControlPoint(*rows["node_1"].centre_ras, "node")
    points.AddControlPoint(*rows["liver_2"].centre_ras, "in liver_2")  # inside an existing lesion
    points.AddControlPoint(*rows["bone_1"].centre_ras, "bone")
    xyz, labels = logic.points_from_markups(points)
    outcomes = logic.add_lesions_from_points(volume, seg, xyz, names=labels, site="bone")
    assert [o.name for o in outcomes] == ["node", "in liver_2", "bone"]
    assert outcomes[0].segment_id and outcomes[2].segment_id
    assert outcomes[1].segment_id is None and outcomes[1].skipped
    after = segmentation_checksum(seg, volume)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {outcomes[0].segment_id, outcomes[2].segment_id}
    with pytest.raises(InputError, match="at least one point"):
        logic.add_lesions_from_points(volume, seg, [])


def test_seeded_missing_is_a_clear_error(monkeypatch, fresh_demo):
    import sys

    _scene, volume, seg, _par = fresh_demo
    monkeypatch.setitem(sys.modules, "RadTyperLib.segmentation.seeded", None)
    assert not LesionsLogic.seeded_available()
    with pytest.raises(ComponentMissingError, match="One-click segmentation is not available"):
        LesionsLogic().add_lesion_from_point(volume, seg, (0.0, 0.0, 0.0))


# --- parenchyma -------------------------------------------------------------------------------------------
def test_parenchyma_is_the_cores_automatic_mask_around_the_lesions(fresh_demo):
    from RadTyperLib.regions import auto_parenchyma

    _scene, volume, seg, _par = fresh_demo
    logic = LesionsLogic()
    before = segmentation_checksum(seg, volume)
    node = logic.compute_parenchyma(volume, seg, modality="CT")
    assert logic.parenchyma_of(seg) is node
    assert node.GetSegmentation().GetNumberOfSegments() == 1
    sid = node.GetSegmentation().GetNthSegmentID(0)
    mask = _full_mask(node, sid, volume)
    patient = bridge.patient_from_nodes(volume, seg)
    image = patient.image_array()
    lesions_any = patient.label_array() > 0
    assert not np.any(mask & lesions_any)
    lung1 = patient.lesion_mask("lung_1")
    expected, method = auto_parenchyma(image, patient.spacing, "CT", lung1)
    assert method == "auto_lung_ct"
    near = expected & ~lesions_any
    assert np.array_equal(mask & near, near)  # lung_1's neighbourhood is in the union
    again = logic.compute_parenchyma(volume, seg, node=node, modality="CT")
    assert again is node and node.GetSegmentation().GetNumberOfSegments() == 1
    assert segmentation_checksum(seg, volume) == before
    logic.set_parenchyma(seg, None)
    assert logic.parenchyma_of(seg) is None


def test_parenchyma_needs_lesions(qc_case):
    scene, volume, _seg, _ids = qc_case
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "nothing")
    with pytest.raises(InputError, match="Draw or segment the lesions first"):
        LesionsLogic().compute_parenchyma(volume, empty)


# --- bridge helpers and demo data -------------------------------------------------------------------------
def test_add_mask_segment_refuses_empty_or_outside_masks(qc_case):
    _scene, volume, seg, _ids = qc_case
    n = seg.GetSegmentation().GetNumberOfSegments()
    with pytest.raises(InputError, match="the mask is empty"):
        bridge.add_mask_segment(seg, np.zeros((20, 24, 30), bool), volume, "nothing")
    with pytest.raises(InputError, match="outside volume"):
        bridge.add_mask_segment(seg, np.ones((2, 2, 2), bool), volume, "beyond", offset_zyx=(19, 0, 0))
    assert seg.GetSegmentation().GetNumberOfSegments() == n
    sid = bridge.add_mask_segment(
        seg, np.ones((2, 2, 2), bool), volume, "crop", offset_zyx=(3, 4, 5), tags={"k": "v"}
    )
    box, mask, count, outside = bridge.segment_on_volume_grid(seg, sid, volume)
    assert mask.all()
    assert [(s.start, s.stop) for s in box] == [(3, 5), (4, 6), (5, 7)] and count == 8 and outside == 0
    value = vtk.reference("")
    assert seg.GetSegmentation().GetSegment(sid).GetTag("k", value) and str(value) == "v"


def test_demo_files_are_written_once_and_read_back(tmp_path):
    from RadTyperLib.io import load_patient, read_seg_nrrd
    from RadTyperMRML.demo_data import DEMO_FILES, write_demo_files

    files = write_demo_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(name for name, _node in DEMO_FILES.values())
    stamps = {k: p.stat().st_mtime_ns for k, p in files.items()}
    assert write_demo_files(tmp_path) == files
    assert {k: p.stat().st_mtime_ns for k, p in files.items()} == stamps  # not written twice
    patient = load_patient(files["image"], files["lesions"], parenchyma=None)
    assert [les.name for les in patient.lesions][:2] == ["lung_1", "lung_2"] and len(patient.lesions) == 8
    _labels, parenchyma = read_seg_nrrd(files["parenchyma"])
    assert [les.name for les in parenchyma] == ["parenchyma"]
