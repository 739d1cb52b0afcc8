"""Default patient ids: the case folder when the image file name is generic; metadata when recorded."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from RadTyperLib.patient_id import default_patient_id, file_stem, is_generic


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data/STS_001/CT_image.nii.gz", "STS_001"),
        ("data/STS_002/MR_T1_image.nii.gz", "STS_002"),
        ("cases/case_7/images/ct.nrrd", "case_7"),
        ("x/lung2_image.nrrd", "lung2_image"),
        ("x/patient12.nii", "patient12"),
        ("x/brain1_image.nrrd", "brain1_image"),
    ],
)
def test_default_patient_id(path, expected):
    assert default_patient_id(path) == expected


def test_generic_words():
    assert is_generic("CT_image") and is_generic("MR-T1") and is_generic("image") and is_generic("PET")
    assert not is_generic("STS_001") and not is_generic("lung2_image") and not is_generic("0001")
    assert file_stem("a/b/CT_image.nii.gz") == "CT_image" and file_stem("seg.seg.nrrd") == "seg"


def test_metadata_id_wins_over_the_folder():
    img = sitk.Image(4, 4, 4, sitk.sitkInt16)
    img.SetMetaData("0010|0020", "LIDC-IDRI-0078 ")
    assert default_patient_id("scans/images/ct.nrrd", img) == "LIDC-IDRI-0078"
    assert default_patient_id("scans/lung2.nrrd", img) == "lung2"  # a specific file name is kept


def test_load_patient_uses_the_case_folder(tmp_path):
    from RadTyperLib.io import load_patient

    ids = []
    for case in ("STS_001", "STS_002"):
        d = tmp_path / case
        d.mkdir()
        arr = np.zeros((12, 12, 12), np.int16)
        img = sitk.GetImageFromArray(arr - 1000)
        arr[4:8, 4:8, 4:8] = 1
        mask = sitk.GetImageFromArray(arr.astype(np.uint8))
        sitk.WriteImage(img, str(d / "CT_image.nii.gz"))
        sitk.WriteImage(mask, str(d / "CT_mask.nii.gz"))
        ids.append(load_patient(d / "CT_image.nii.gz", d / "CT_mask.nii.gz").patient_id)
    assert ids == ["STS_001", "STS_002"]
