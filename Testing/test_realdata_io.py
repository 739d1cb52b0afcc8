"""Real images from ../shared/data load as patients with consistent physical geometry (skipped when absent)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from RadTyperLib.io import load_patient, read_lesions
from RadTyperLib.patient import physical_centroid

pytestmark = pytest.mark.realdata


def _volume_and_centre(path):
    labels, lesions = read_lesions(path)
    mask = sitk.GetArrayViewFromImage(labels) > 0
    return mask.sum() * float(np.prod(labels.GetSpacing())), physical_centroid(mask, labels), lesions


def test_ibsi_sarcoma_same_tumour_on_ct_mr_and_pet(shared_data):
    """Each sarcoma is delineated on CT, MR and PET grids: volumes and centres must agree in physical space.

    PET voxels are ~4 mm, so the PET mask differs by partial voxels: 3 % in volume, 1 mm in position.
    """
    cases = sorted((shared_data / "ibsi-sts").glob("STS_*"))
    assert len(cases) == 10
    for case in cases:
        v_ct, c_ct, _ = _volume_and_centre(case / "CT_mask.nii.gz")
        for other, rel, mm in (("MR_T1", 0.01, 0.5), ("PET", 0.03, 1.0)):
            v, c, _ = _volume_and_centre(case / f"{other}_mask.nii.gz")
            assert v == pytest.approx(v_ct, rel=rel), (case.name, other)
            assert np.linalg.norm(c - c_ct) < mm, (case.name, other, c, c_ct)


def test_ibsi_sarcoma_patients_load_with_modality(shared_data):
    for case in sorted((shared_data / "ibsi-sts").glob("STS_*")):
        for mod, expected in (("CT", "CT"), ("MR_T1", "MR")):
            image = case / f"{mod}_image.nii.gz"
            if not image.exists():  # a few images are missing from the set (see its README)
                continue
            p = load_patient(image, case / f"{mod}_mask.nii.gz", sites=None)
            assert p.modality == expected, (case.name, mod)
            assert len(p.lesions) == 1 and p.lesion_volume_mm3(p.lesions[0]) > 10_000


def test_pyradiomics_cases_load(shared_data):
    expected = {"brain1": ("MR", 16.4), "brain2": ("MR", 1.80), "breast1": ("MR", 0.1324), "lung1": ("CT", 1.36),
                "lung2": ("CT", 48.4)}  # fmt: skip
    for case, (modality, cm3) in expected.items():
        d = shared_data / "pyradiomics-cases"
        p = load_patient(d / f"{case}_image.nrrd", d / f"{case}_label.nrrd")
        assert p.modality == modality, case
        assert p.lesion_volume_mm3(p.lesions[0]) / 1000 == pytest.approx(cm3, rel=0.01), case


def test_lidc_readers_share_one_frame(shared_data):
    """Four readers' masks of one nodule are on one grid and overlap (typical Dice 0.75–0.95)."""
    nodules = sorted((shared_data / "lidc").glob("LIDC-*"))
    assert nodules
    dices = []
    for nod in nodules:
        masks = []
        for r in range(1, 5):
            labels, _ = read_lesions(nod / f"reader{r}.nrrd")
            masks.append(sitk.GetArrayFromImage(labels) > 0)
        meta = json.loads((nod / "meta.json").read_text())
        assert meta  # ratings and diameters are present
        for i in range(4):
            for j in range(i + 1, 4):
                a, b = masks[i], masks[j]
                dices.append(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert np.median(dices) > 0.7
