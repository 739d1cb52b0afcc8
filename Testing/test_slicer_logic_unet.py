"""RadTyper Lesions' U-Net paths (RadTyperMRML.lesions_logic) on Slicer's MRML classes, without the application.

"Auto-segment all lesions" and the U-Net method of "segment all marked lesions" must add one new segment per
lesion found, at the right place in RAS, tagged as automatic, and never touch the user's segments. The
network is the *oracle* of test_unet_infer (lesion where CT > −25 HU), so the expected lesions are known
voxel for voxel; the image is oblique so that a LPS/RAS or axis mix-up moves the segments.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import vtk

pytest.importorskip("slicer")
pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_slicer_logic_lesions import _full_mask, segmentation_checksum
from test_unet_infer import blob_image, index_to_lps, install_oracle, random_bundle

import RadTyperMRML as bridge
from RadTyperLib.errors import InputError
from RadTyperLib.features import Cancelled
from RadTyperMRML.lesions_logic import SOURCE_TAG, ComponentMissingError, LesionsLogic

pytestmark = pytest.mark.mrml
ROT = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])


def ras(img, zyx) -> tuple[float, float, float]:
    x, y, z = index_to_lps(img, zyx)
    return (-x, -y, z)


@pytest.fixture
def case(monkeypatch):
    """(volume node, segmentation node with the user's segment over blob 1, truth labels, sitk image).

    The blob image has no air, so its modality is declared (CT) in every call."""
    install_oracle(monkeypatch)
    img, truth = blob_image(direction=ROT)
    scene = bridge.create_scene()
    volume = bridge.sitk_to_volume(img, scene, "blobs")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "lesions")
    bridge.add_mask_segment(seg, truth == 1, volume, "user lesion")
    return volume, seg, truth, img


def tag(seg, sid: str, name: str) -> str:
    value = vtk.reference("")
    seg.GetSegmentation().GetSegment(sid).GetTag(name, value)
    return str(value)


def test_auto_segment_all_adds_new_segments_and_keeps_the_users(case):
    volume, seg, truth, _img = case
    logic = LesionsLogic()
    before = segmentation_checksum(seg, volume)
    seen = []
    out = logic.auto_segment_all(
        volume,
        seg,
        random_bundle(),
        modality="CT",
        site="lung",
        min_size_mm3=0,
        progress=lambda f, msg: seen.append(f),
    )
    after = segmentation_checksum(seg, volume)
    assert {k: after[k] for k in before} == before  # the user's segment: same ID, name, voxels
    assert set(after) - set(before) == set(out.segment_ids)
    # blob 1 is the user's: the U-Net adds blobs 2 and 3 (largest first), voxel for voxel
    assert len(out.segment_ids) == 2 and out.names == ["lesion_1", "lesion_2"]
    masks = [_full_mask(seg, sid, volume) for sid in out.segment_ids]
    assert np.array_equal(masks[0], truth == 2) and np.array_equal(masks[1], truth == 3)
    vox = float(np.prod(volume.GetSpacing()))
    assert out.volumes_mm3 == pytest.approx([(truth == 2).sum() * vox, (truth == 3).sum() * vox])
    for sid in out.segment_ids:
        assert tag(seg, sid, SOURCE_TAG) == "unet" and tag(seg, sid, "RadTyper.Site") == "lung"
    assert seen and seen[-1] == pytest.approx(1.0)
    # a second run finds nothing new (its own segments are now excluded too) and adds nothing
    again = logic.auto_segment_all(volume, seg, random_bundle(), modality="CT", min_size_mm3=0)
    assert again.empty and again.messages
    assert segmentation_checksum(seg, volume) == after


def test_auto_segment_within_an_roi_in_ras(case):
    volume, seg, truth, img = case
    corners = np.array([ras(img, (z, y, x)) for z in (8, 16) for y in (34, 46) for x in (44, 56)])
    roi = (*corners.min(axis=0), *corners.max(axis=0))
    out = LesionsLogic().auto_segment_all(
        volume, seg, random_bundle(), modality="CT", roi_ras=roi, min_size_mm3=0
    )
    assert len(out.segment_ids) == 1
    assert np.array_equal(_full_mask(seg, out.segment_ids[0], volume), truth == 2)


def test_unet_method_for_marked_points(case):
    volume, seg, truth, img = case
    logic = LesionsLogic()
    before = segmentation_checksum(seg, volume)
    points = [ras(img, (5, 45, 15)), ras(img, (20, 5, 65))]  # blob 3, and fat far from any blob
    outcomes = logic.add_lesions_from_points(
        volume,
        seg,
        points,
        names=["small", "nothing"],
        modality="CT",
        method="unet",
        unet_model=random_bundle(),
    )
    assert outcomes[0].segment_id and outcomes[0].name == "small"
    assert np.array_equal(_full_mask(seg, outcomes[0].segment_id, volume), truth == 3)
    assert tag(seg, outcomes[0].segment_id, SOURCE_TAG) == "unet"
    assert outcomes[1].segment_id is None and "no lesion" in outcomes[1].skipped
    after = segmentation_checksum(seg, volume)
    assert {k: after[k] for k in before} == before
    # two clicks on one lesion (blob 2): one segment, the second point is skipped — no overlapping segments
    twice = logic.add_lesions_from_points(
        volume,
        seg,
        [ras(img, (12, 40, 50)), ras(img, (12, 41, 51))],
        modality="CT",
        method="unet",
        unet_model=random_bundle(),
    )
    assert twice[0].segment_id and twice[1].segment_id is None and twice[1].skipped
    assert np.array_equal(_full_mask(seg, twice[0].segment_id, volume), truth == 2)


def test_bad_model_cancel_and_missing_model_change_nothing(case, tmp_path):
    volume, seg, _truth, _img = case
    logic = LesionsLogic()
    before = segmentation_checksum(seg, volume)
    with pytest.raises(InputError, match="MR"):
        logic.auto_segment_all(volume, seg, random_bundle(modality="MR"), modality="CT")
    with pytest.raises(Cancelled):
        logic.auto_segment_all(volume, seg, random_bundle(), modality="CT", should_cancel=lambda: True)
    with pytest.raises(ComponentMissingError, match="No trained U-Net model"):
        logic.add_lesions_from_points(volume, seg, [(0.0, 0.0, 0.0)], method="unet")
    with pytest.raises(ComponentMissingError):
        logic.auto_segment_all(volume, seg, "")
    with pytest.raises(InputError):
        logic.auto_segment_all(volume, seg, tmp_path)  # a folder without model.json
    assert segmentation_checksum(seg, volume) == before
