"""IO: images, label maps, Slicer .seg.nrrd, sites CSV, patient loading and its error messages."""

from __future__ import annotations

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import make_image
from RadTyperLib.errors import InputError, LesionError
from RadTyperLib.io import (
    load_patient,
    read_image,
    read_lesions,
    read_seg_nrrd,
    read_sites_csv,
    write_image,
    write_patient,
    write_seg_nrrd,
)
from RadTyperLib.patient import Lesion, Patient, index_to_physical, physical_centroid


def _write(img: sitk.Image, path) -> str:
    sitk.WriteImage(img, str(path))
    return str(path)


def test_label_map_nifti_and_nrrd_keep_voxels_and_geometry(tmp_path, oblique_case):
    _, labels = oblique_case
    for suffix in (".nrrd", ".nii.gz"):
        path = _write(labels, tmp_path / f"mask{suffix}")
        back, lesions = read_lesions(path)
        assert [les.name for les in lesions] == ["lesion_1", "lesion_2", "lesion_3"]
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(labels))
        # NIfTI stores the geometry in float32: positions agree to ~1e-5 mm.
        np.testing.assert_allclose(back.GetOrigin(), labels.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(back.GetDirection(), labels.GetDirection(), atol=1e-5)


def test_seg_nrrd_round_trip_keeps_names_colours_sites_voxels_and_positions(tmp_path, oblique_case):
    _, labels = oblique_case
    lesions = [
        Lesion(1, "lung 1", "lung", (1.0, 0.0, 0.0)),
        Lesion(2, "liver_A", "hepatic", (0.0, 0.5, 1.0)),
        Lesion(3, "node", "lymph node", None),
    ]
    path = write_seg_nrrd(tmp_path / "les.seg.nrrd", labels, lesions)
    back, got = read_seg_nrrd(path)
    assert [(g.name, g.site) for g in got] == [
        ("lung 1", "lung"),
        ("liver_A", "liver"),
        ("node", "lymph_node"),
    ]
    assert got[0].color == (1.0, 0.0, 0.0) and got[1].color == (0.0, 0.5, 1.0) and got[2].color is not None
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(labels))
    np.testing.assert_allclose(back.GetDirection(), labels.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(back.GetSpacing(), labels.GetSpacing(), atol=1e-12)
    np.testing.assert_allclose(back.GetOrigin(), labels.GetOrigin(), atol=1e-12)
    for les in got:
        a = physical_centroid(sitk.GetArrayViewFromImage(back) == les.label, back)
        b = physical_centroid(sitk.GetArrayViewFromImage(labels) == les.label, labels)
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_index_to_physical_matches_simpleitk(oblique_case):
    image, _ = oblique_case
    for ijk in [(0, 0, 0), (3, 7, 2), (33, 29, 11)]:
        np.testing.assert_allclose(
            index_to_physical(ijk, image), image.TransformIndexToPhysicalPoint(ijk), atol=1e-9
        )


def test_seg_nrrd_multilayer_and_ras_space(tmp_path):
    """A 4-D file with two layers (Slicer stores overlapping segments that way) written in RAS space."""
    data = np.zeros((2, 6, 5, 4), np.uint8)  # layer, x, y, z
    data[0, 1:3, 1:3, 1:3] = 1
    data[1, 4:6, 3:5, 2:4] = 2
    header = {
        "space": "right-anterior-superior",
        "space directions": np.array([[np.nan] * 3, [-0.5, 0, 0], [0, -0.6, 0], [0, 0, 2.0]]),
        "space origin": np.array([10.0, 20.0, 30.0]),
        "kinds": ["list", "domain", "domain", "domain"],
        "Segment0_ID": "a",
        "Segment0_Name": "first",
        "Segment0_Layer": "0",
        "Segment0_LabelValue": "1",
        "Segment1_ID": "b",
        "Segment1_Name": "second",
        "Segment1_Layer": "1",
        "Segment1_LabelValue": "2",
        "Segment1_Tags": "RadTyper.Site:bone|Segmentation.Status:inprogress|",
    }
    nrrd.write(str(tmp_path / "x.seg.nrrd"), data, header)
    img, lesions = read_seg_nrrd(tmp_path / "x.seg.nrrd")
    assert [les.name for les in lesions] == ["first", "second"] and lesions[1].site == "bone"
    # RAS (-0.5, 0, 0) per x step is LPS (+0.5, 0, 0); origin RAS (10, 20, 30) is LPS (-10, -20, 30).
    np.testing.assert_allclose(img.GetOrigin(), (-10.0, -20.0, 30.0))
    np.testing.assert_allclose(img.GetSpacing(), (0.5, 0.6, 2.0))
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-12)
    arr = sitk.GetArrayViewFromImage(img)
    assert (arr == 1).sum() == 8 and (arr == 2).sum() == 8


def test_overlapping_segments_are_refused_with_both_names(tmp_path):
    data = np.zeros((2, 4, 4, 4), np.uint8)
    data[0, :2] = 1
    data[1, 1:3] = 1
    header = {
        "space": "left-posterior-superior",
        "space directions": np.array([[np.nan] * 3, [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]),
        "kinds": ["list", "domain", "domain", "domain"],
        "Segment0_Name": "alpha",
        "Segment0_Layer": "0",
        "Segment0_LabelValue": "1",
        "Segment1_Name": "beta",
        "Segment1_Layer": "1",
        "Segment1_LabelValue": "1",
    }
    nrrd.write(str(tmp_path / "o.seg.nrrd"), data, header)
    with pytest.raises(InputError, match=r"'alpha' and 'beta' overlap"):
        read_seg_nrrd(tmp_path / "o.seg.nrrd")


def test_cropped_segmentation_is_placed_on_the_image_grid(tmp_path, oblique_case):
    image, labels = oblique_case
    crop = labels[20:31, 18:27, 1:6]  # SimpleITK slicing keeps the physical position of each voxel
    seg = write_seg_nrrd(tmp_path / "crop.seg.nrrd", crop, [Lesion(2, "box", "liver")])
    img_path = _write(image, tmp_path / "img.nrrd")
    patient = load_patient(img_path, seg)
    full = sitk.GetArrayViewFromImage(labels) == 2
    np.testing.assert_array_equal(patient.lesion_mask("box"), full)


def test_load_patient_with_sites_and_parenchyma(tmp_path, oblique_case):
    image, labels = oblique_case
    (tmp_path / "sites.csv").write_text("lesion,site\nlesion_1,Lung\n2,liver\nlesion_3,LN\n")
    paren = sitk.Cast(sitk.GetImageFromArray((sitk.GetArrayFromImage(labels) == 0).astype(np.uint8)), 1)
    paren.CopyInformation(labels)
    p = load_patient(
        _write(image, tmp_path / "i.nrrd"),
        _write(labels, tmp_path / "l.nrrd"),
        parenchyma=_write(paren, tmp_path / "p.nrrd"),
        sites=tmp_path / "sites.csv",
        modality="ct",
    )
    assert [les.site for les in p.lesions] == ["lung", "liver", "lymph_node"]
    assert p.modality == "CT" and p.patient_id == "i"
    assert p.parenchyma_array().sum() == (sitk.GetArrayViewFromImage(labels) == 0).sum()
    voxel = 0.7 * 0.9 * 2.5
    assert p.lesion_volume_mm3("lesion_2") == pytest.approx(3 * 6 * 8 * voxel)


def test_write_patient_then_load_patient_is_identical(tmp_path, oblique_case):
    image, labels = oblique_case
    paren = sitk.Cast(labels > 0, sitk.sitkUInt8)
    p = Patient(image, labels, [Lesion(1, "a", "lung"), Lesion(2, "b", "bone"), Lesion(3, "c")], paren)
    files = write_patient(p, tmp_path / "out")
    q = load_patient(files["image"], files["lesions"], parenchyma=files["parenchyma"], sites=files["sites"])
    assert [(x.name, x.site) for x in q.lesions] == [("a", "lung"), ("b", "bone"), ("c", "unspecified")]
    np.testing.assert_array_equal(q.label_array(), p.label_array())
    np.testing.assert_array_equal(q.image_array(), p.image_array())


# --- bad input ----------------------------------------------------------------------------------------------
def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.nrrd: file not found"):
        read_image(tmp_path / "nothere.nrrd")


def test_unreadable_file(tmp_path):
    (tmp_path / "junk.nrrd").write_text("not an image")
    with pytest.raises(InputError, match=r"junk\.nrrd: cannot read"):
        read_image(tmp_path / "junk.nrrd")


def test_non_integer_mask(tmp_path, oblique_case):
    _, labels = oblique_case
    f = sitk.Cast(labels, sitk.sitkFloat32) * 0.5
    with pytest.raises(InputError, match=r"half\.nrrd: non-integer mask values \(e\.g\. 0\.5\)"):
        read_lesions(_write(f, tmp_path / "half.nrrd"))


def test_float_mask_holding_integers_is_accepted(tmp_path, oblique_case):
    _, labels = oblique_case
    _, lesions = read_lesions(_write(sitk.Cast(labels, sitk.sitkFloat32), tmp_path / "f.nrrd"))
    assert len(lesions) == 3


def test_empty_mask(tmp_path, oblique_case):
    _, labels = oblique_case
    with pytest.raises(InputError, match=r"zero\.nrrd: empty mask"):
        read_lesions(_write(labels * 0, tmp_path / "zero.nrrd"))


def test_geometry_mismatch_names_both_files(tmp_path, oblique_case):
    image, labels = oblique_case
    shifted = sitk.Image(labels)
    shifted.SetOrigin(tuple(np.add(labels.GetOrigin(), (0.0, 0.0, 1.0))))
    with pytest.raises(InputError, match=r"m\.nrrd: origin .* differs from .*i\.nrrd origin"):
        load_patient(_write(image, tmp_path / "i.nrrd"), _write(shifted, tmp_path / "m.nrrd"))
    small = labels[:-1, :, :]
    with pytest.raises(InputError, match=r"s\.nrrd: size \(33, 30, 12\) differs"):
        load_patient(_write(image, tmp_path / "i.nrrd"), _write(small, tmp_path / "s.nrrd"))


def test_unknown_site_and_unknown_lesion_in_sites_csv(tmp_path, oblique_case):
    image, labels = oblique_case
    (tmp_path / "bad.csv").write_text("lesion,site\nlesion_1,moon\n")
    with pytest.raises(InputError, match=r"bad\.csv, line 2, lesion 'lesion_1': unknown site 'moon'"):
        read_sites_csv(tmp_path / "bad.csv")
    (tmp_path / "ghost.csv").write_text("lesion,site\nlesion_9,lung\n")
    with pytest.raises(InputError, match=r"lesion\(s\) lesion_9 not in the mask"):
        load_patient(
            _write(image, tmp_path / "i.nrrd"),
            _write(labels, tmp_path / "l.nrrd"),
            sites=tmp_path / "ghost.csv",
        )
    (tmp_path / "cols.csv").write_text("name,organ\na,lung\n")
    with pytest.raises(InputError, match=r"expected CSV columns 'lesion,site'"):
        read_sites_csv(tmp_path / "cols.csv")


def test_patient_rejects_lesion_without_voxels(oblique_case):
    image, labels = oblique_case
    with pytest.raises(LesionError, match=r"lesion 'ghost': empty mask \(no voxel has label 9\)"):
        Patient(image, labels, [Lesion(1, "a"), Lesion(9, "ghost")])


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    bad = sitk.Image([2, 2, 2], sitk.sitkFloat32)
    with pytest.raises(RuntimeError):
        write_image(bad, tmp_path / "x.unknownformat")
    assert list(tmp_path.iterdir()) == []


def test_image_geometry_helpers(oblique_case):
    image, labels = oblique_case
    p = Patient(image, labels, [Lesion(1, "a"), Lesion(2, "b"), Lesion(3, "c")])
    assert p.spacing == pytest.approx((0.7, 0.9, 2.5))
    np.testing.assert_allclose(p.direction @ p.direction.T, np.eye(3), atol=1e-12)
    # centroid of lesion 'b' (box z 2..4, y 20..25, x 22..29) by hand: index (25.5, 22.5, 3)
    np.testing.assert_allclose(
        p.lesion_centroid_mm("b"), image.TransformContinuousIndexToPhysicalPoint((25.5, 22.5, 3.0))
    )
    assert make_image(np.zeros((2, 2, 2))).GetSize() == (2, 2, 2)


def test_outputs_get_the_usual_file_permissions(tmp_path, oblique_case):
    import os

    _, labels = oblique_case
    path = write_seg_nrrd(tmp_path / "x.seg.nrrd", labels, [Lesion(1, "a"), Lesion(2, "b"), Lesion(3, "c")])
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_feature_tables_keep_ids_as_text_and_floats_exact(tmp_path):
    import pandas as pd

    from RadTyperLib.io import read_feature_table, to_jsonable, write_csv

    table = pd.DataFrame({"patient": ["001", "002"], "lesion": ["1", "2"], "shape_energy_l02": [0.1, 1 / 3]})
    write_csv(table, tmp_path / "f.csv", float_format="%.17g")
    back = read_feature_table(tmp_path / "f.csv")
    assert list(back["patient"]) == ["001", "002"] and list(back["lesion"]) == ["1", "2"]
    assert back.loc[1, "shape_energy_l02"] == 1 / 3
    with pytest.raises(InputError, match="feature table not found"):
        read_feature_table(tmp_path / "missing.csv")
    assert to_jsonable({"a": np.float32("nan"), 1: (np.int64(2), np.bool_(True)), "p": tmp_path}) == {
        "a": None,
        "1": [2, True],
        "p": str(tmp_path),
    }
