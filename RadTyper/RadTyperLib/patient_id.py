"""The default patient id of an image file: its name, or its case folder when the name is generic.

Datasets are often laid out as one folder per case with generic file names (``STS_001/CT_image.nii.gz``,
``case_12/image.nrrd``): naming the patient after the file would give every case the same id, and a cohort
table would silently merge them. :func:`default_patient_id`:

1. the file name without its image extensions, when it is specific (``lung2_image.nrrd`` → ``lung2_image``);
2. for a generic name (every word of it is a modality / image word such as ``CT``, ``MR``, ``T1``, ``image``,
   ``mask``, ``scan``): the patient id recorded in the image's metadata (DICOM ``0010|0020`` or an NRRD
   ``PatientID`` field), else the nearest enclosing folder whose name is not generic either
   (``STS_001/CT_image.nii.gz`` → ``STS_001``; ``case_7/images/ct.nrrd`` → ``case_7``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Words that say what kind of image a file is, not whose it is.
GENERIC_WORDS: frozenset[str] = frozenset(
    """image images img imgs ct cta cect ncct mr mri pet petct spect us t1 t2 t1w t2w t1c t1ce t1gd flair dwi
    adc pd volume vol scan scans series data input inputs original orig raw nifti nii nrrd mha dicom dcm label
    labels labelmap mask masks seg segs segmentation segmentations lesion lesions roi gtv tumor tumour
    cropped crop resampled norm normalized normalised n4 corrected bias preprocessed pre post contrast
    native axial ax 3d""".split()
)
_EXTENSIONS = (".seg.nrrd", ".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".dcm", ".gz")
_METADATA_KEYS = ("0010|0020", "PatientID", "patient_id", "Patient ID")


def file_stem(path: str | os.PathLike[str]) -> str:
    """The file name without its image extension(s) (``CT_image.nii.gz`` → ``CT_image``)."""
    name = Path(path).name
    low = name.lower()
    for ext in _EXTENSIONS:
        if low.endswith(ext):
            return name[: -len(ext)]
    return name.split(".")[0]


def is_generic(name: str) -> bool:
    """True when every word of ``name`` (split at ``_ - . space`` and letter/digit boundaries) is generic."""
    words = [w for w in re.split(r"[_\-. ]+", name.lower()) if w]
    return not words or all(w in GENERIC_WORDS for w in words)


def metadata_patient_id(image) -> str | None:
    """The patient id stored in a SimpleITK image's metadata (DICOM tag or NRRD field), if any."""
    if image is None:
        return None
    keys = set(image.GetMetaDataKeys())
    for key in _METADATA_KEYS:
        if key in keys:
            value = image.GetMetaData(key).strip().strip("\x00").strip()
            if value:
                return value
    return None


def default_patient_id(path: str | os.PathLike[str], image=None) -> str:
    """The patient id of an image file when none is given (see the module docstring)."""
    p = Path(path)
    stem = file_stem(p)
    if not is_generic(stem):
        return stem
    meta = metadata_patient_id(image)
    if meta:
        return meta
    for parent in p.resolve().parents:
        if parent.name and not is_generic(parent.name):
            return parent.name
    return stem
