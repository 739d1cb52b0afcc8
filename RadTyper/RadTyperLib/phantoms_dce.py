"""A synthetic DCE-MRI-like patient with planted, phase-dependent intratumour heterogeneity (IITH tests, demo).

Lesions are spheres on a regular grid in a homogeneous tissue background (1 mm voxels, LPS, arbitrary MR
units). Two phases:

* ``pre`` (pre-contrast): every lesion looks alike — intensity 200 with white noise (sd 8);
* ``post`` (post-contrast): every lesion enhances to 500 on average; the *heterogeneous* lesions enhance in a
  patchy way (smooth random field, correlation length ≈ 1.5 mm, scaled to sd ``amplitude`` > 0 — necrosis
  next to avid enhancement), the *homogeneous* ones uniformly (same noise as pre-contrast).

So the heterogeneity exists only after contrast and only in the planted lesions; the amplitudes give a planted
ranking. The background is tissue 100 (pre) / 150 (post) with noise sd 8; the whole volume is parenchyma.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .patient import Lesion, Patient

#: Default planted amplitudes (sd of the post-contrast field): 8 heterogeneous lesions, 8 homogeneous (0).
DEFAULT_AMPLITUDES: tuple[float, ...] = (60.0, 80.0, 100.0, 120.0, 140.0, 160.0, 180.0, 200.0) + (0.0,) * 8


@dataclass
class DCEPhantom:
    """The patient (phases ``pre`` → ``image``, ``post`` → ``phases["post"]``) and the planted amplitudes."""

    patient: Patient
    amplitude: dict[str, float]  # lesion name -> planted post-contrast heterogeneity (0 = homogeneous)


def make_dce_patient(
    amplitudes: Sequence[float] = DEFAULT_AMPLITUDES,
    *,
    radius_mm: float = 7.0,
    pitch_mm: float = 36.0,
    seed: int = 0,
    patient_id: str = "dce",
) -> DCEPhantom:
    """A DCE-like patient with one lesion per amplitude (lesion names ``L00``, ``L01``, …); see the module."""
    rng = np.random.default_rng(seed)
    n = len(amplitudes)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    margin = int(pitch_mm // 2)
    shape = (int(2 * margin + 1), int(rows * pitch_mm), int(cols * pitch_mm))  # z, y, x (1 mm voxels)
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint16)
    pre = 100.0 + rng.normal(0.0, 8.0, shape)
    post = 150.0 + rng.normal(0.0, 8.0, shape)
    lesions, planted = [], {}
    for i, amp in enumerate(amplitudes):
        cy = (i // cols + 0.5) * pitch_mm
        cx = (i % cols + 0.5) * pitch_mm
        inside = (zz - margin) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= radius_mm**2
        labels[inside] = i + 1
        name = f"L{i:02d}"
        lesions.append(Lesion(i + 1, name, "breast"))
        planted[name] = float(amp)
        pre[inside] = 200.0 + rng.normal(0.0, 8.0, int(inside.sum()))
        enhance = np.full(int(inside.sum()), 500.0) + rng.normal(0.0, 8.0, int(inside.sum()))
        if amp > 0:
            field = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape).astype(np.float32), 1.5)[inside]
            enhance += amp * (field - field.mean()) / field.std()
        post[inside] = enhance

    def image(arr: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(arr.astype(np.float32))
        img.SetSpacing((1.0, 1.0, 1.0))
        img.SetOrigin((-100.0, -80.0, 20.0))
        return img

    ref = image(pre)
    lab = sitk.GetImageFromArray(labels)
    lab.CopyInformation(ref)
    paren = sitk.GetImageFromArray(np.ones(shape, dtype=np.uint8))
    paren.CopyInformation(ref)
    patient = Patient(
        image=ref,
        labels=lab,
        lesions=lesions,
        parenchyma=paren,
        patient_id=patient_id,
        modality="MR",
        phases={"post": image(post)},
        image_phase="pre",
    )
    return DCEPhantom(patient, planted)


__all__ = ["DEFAULT_AMPLITUDES", "DCEPhantom", "make_dce_patient"]
