"""Training data of the U-Net: cases from a manifest, patient-level split, patch sampling and augmentation.

* :func:`load_training_case` reads one manifest row (:class:`~RadTyperLib.cohort.CaseSpec`: image + lesion
  mask or ``.seg.nrrd``; the modality column or a guess), normalises the volume (:mod:`.normalize`),
  resamples it in-plane to the network pixel size if it differs by > 5 % and keeps a binary lesion mask
  (all lesions = foreground).
* :func:`split_patients` — seeded patient-level split: no patient has slices in both training and
  validation.
* :class:`PatchSampler` — square patches of ``patch_size`` pixels from random slices. A fraction
  ``lesion_fraction`` of the patches is centred (± a quarter patch) on a random voxel of a lesion chosen
  uniformly among all lesions of the training cases (oversampling of lesion slices: small lesions are as
  frequent as large ones); the others are uniform over all slices and positions. Pixels outside the slice
  are 0 (air / background after normalisation).
* :class:`Augmentation` — random flips of both axes, rotations by multiples of 90° and a small intensity
  jitter ``v·a + b`` (a ∈ [1 − j, 1 + j], b ∈ [−j/2, j/2]) per patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ...cohort import CaseSpec
from ...errors import InputError
from ...io import load_patient
from .infer import needs_resampling, resample_slices
from .normalize import Normalization, apply_range

#: Lesion voxels kept per component for patch centring (a random subset for large lesions).
_MAX_CENTRES = 4000


@dataclass
class CaseVolume:
    """One training case on the network grid.

    Attributes:
        patient: patient id.
        image: normalised float32 ``[z, y, x]`` volume in [0, 1].
        mask: boolean ``[z, y, x]`` lesion mask (all lesions).
        spacing_xyz: voxel size (x, y, z) in mm of the network grid.
        n_lesions: number of lesions (labels) of the case.
        centres: per 3-D lesion component, an (n, 3) int array of voxel indices used to centre patches.
    """

    patient: str
    image: np.ndarray
    mask: np.ndarray
    spacing_xyz: tuple[float, float, float]
    n_lesions: int
    centres: list[np.ndarray]

    @property
    def voxel_mm3(self) -> float:
        """Voxel volume (mm³) on the network grid."""
        return float(np.prod(self.spacing_xyz))


def load_training_case(
    spec: CaseSpec, norm: Normalization, spacing_mm: float | None, seed: int = 0
) -> CaseVolume:
    """Read, check, normalise and (if needed) resample one manifest case (see the module docstring).

    Raises:
        InputError: unreadable files, geometry mismatch, or a modality other than the model's.
    """
    import SimpleITK as sitk

    patient = load_patient(
        spec.image, spec.lesions, modality=spec.modality or "auto", patient_id=spec.patient
    )
    if patient.modality != norm.modality:
        how = "from the manifest" if spec.modality not in ("", "auto") else "guessed from intensities"
        raise InputError(
            f"patient '{spec.patient}' ({spec.image}): modality {patient.modality} ({how}) differs from the "
            f"training modality {norm.modality}; train one model per modality"
        )
    arr = sitk.GetArrayViewFromImage(patient.image)
    lo, hi = norm.volume_range(arr)
    img = apply_range(arr, lo, hi)
    mask = np.asarray(sitk.GetArrayViewFromImage(patient.labels)) > 0
    sx, sy, sz = (float(v) for v in patient.image.GetSpacing())
    if needs_resampling((sy, sx), spacing_mm):
        img = resample_slices(img, (sy, sx), spacing_mm)
        mask = resample_slices(mask.astype(np.float32), (sy, sx), spacing_mm) >= 0.5
        sx = sy = float(spacing_mm)
    if not mask.any():
        raise InputError(
            f"patient '{spec.patient}' ({spec.lesions}): no lesion voxel left on the network grid"
        )
    lab, _ = ndimage.label(mask)
    rng = np.random.default_rng([seed, 17])
    centres = []
    for sl_idx, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        pts = np.argwhere(lab[sl] == sl_idx) + np.array([s.start for s in sl])
        if len(pts) > _MAX_CENTRES:
            pts = pts[rng.choice(len(pts), _MAX_CENTRES, replace=False)]
        centres.append(pts.astype(np.int32))
    return CaseVolume(spec.patient, img, mask, (sx, sy, sz), len(patient.lesions), centres)


def split_patients(
    patients: Sequence[str], validation_fraction: float, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Seeded patient-level split → (training patients, validation patients), both in input order.

    ``validation_fraction`` 0 → no validation. Otherwise at least one validation and one training patient.

    Raises:
        InputError: fraction outside [0, 1) or fewer than 2 patients with a validation fraction > 0.
    """
    pats = list(patients)
    if len(set(pats)) != len(pats):
        raise InputError("duplicate patient ids in the training cases")
    if not 0.0 <= validation_fraction < 1.0:
        raise InputError(f"validation fraction must be in [0, 1), got {validation_fraction}")
    if validation_fraction == 0.0:
        return pats, []
    if len(pats) < 2:
        raise InputError(
            f"a validation split needs at least 2 patients, got {len(pats)}; use a validation fraction of 0"
        )
    n_val = min(len(pats) - 1, max(1, round(validation_fraction * len(pats))))
    rng = np.random.default_rng([seed, 3])
    val = set(rng.choice(len(pats), n_val, replace=False).tolist())
    return [p for i, p in enumerate(pats) if i not in val], [p for i, p in enumerate(pats) if i in val]


def slice_stack(volume: np.ndarray, z: int, k: int) -> np.ndarray:
    """Slices z−k … z+k of a ``[z, y, x]`` volume (clamped at the ends) → ``(2k+1, y, x)``."""
    nz = volume.shape[0]
    return volume[[min(max(z + d, 0), nz - 1) for d in range(-k, k + 1)]]


@dataclass(frozen=True)
class Augmentation:
    """Random flips, 90° rotations and intensity jitter of training patches (see the module docstring)."""

    flips: bool = True
    rotations: bool = True
    intensity_jitter: float = 0.1

    def apply(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augment one patch ``x (C, P, P)`` and its mask ``y (P, P)`` (copies)."""
        if self.flips:
            if rng.random() < 0.5:
                x, y = x[:, ::-1, :], y[::-1, :]
            if rng.random() < 0.5:
                x, y = x[:, :, ::-1], y[:, ::-1]
        if self.rotations:
            k = int(rng.integers(4))
            if k:
                x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.intensity_jitter > 0:
            j = self.intensity_jitter
            x = x * np.float32(rng.uniform(1 - j, 1 + j)) + np.float32(rng.uniform(-j / 2, j / 2))
        return x, np.ascontiguousarray(y)


class PatchSampler:
    """Random training patches from cases (see the module docstring); reproducible from ``seed``."""

    def __init__(
        self,
        cases: Sequence[CaseVolume],
        patch_size: int,
        context_slices: int = 0,
        lesion_fraction: float = 0.7,
        augmentation: Augmentation | None = None,
        seed: int = 0,
    ) -> None:
        if not cases:
            raise InputError("no training case")
        if not 0.0 <= lesion_fraction <= 1.0:
            raise InputError(f"lesion fraction must be in [0, 1], got {lesion_fraction}")
        self.cases = list(cases)
        self.patch = int(patch_size)
        self.k = int(context_slices)
        self.lesion_fraction = float(lesion_fraction)
        self.augmentation = augmentation
        self.rng = np.random.default_rng([seed, 5])
        self.lesions = [(ci, li) for ci, c in enumerate(self.cases) for li in range(len(c.centres))]
        self.slice_counts = np.array([c.image.shape[0] for c in self.cases], dtype=float)

    def _crop(self, case: CaseVolume, z: int, cy: int, cx: int) -> tuple[np.ndarray, np.ndarray]:
        p = self.patch
        stack = slice_stack(case.image, z, self.k)
        _, ny, nx = stack.shape
        y0, x0 = cy - p // 2, cx - p // 2
        x = np.zeros((stack.shape[0], p, p), dtype=np.float32)
        y = np.zeros((p, p), dtype=np.float32)
        sy0, sy1, sx0, sx1 = max(0, y0), min(ny, y0 + p), max(0, x0), min(nx, x0 + p)
        if sy1 > sy0 and sx1 > sx0:
            x[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = stack[:, sy0:sy1, sx0:sx1]
            y[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = case.mask[z, sy0:sy1, sx0:sx1]
        return x, y

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One patch ``(C, P, P)`` and its mask ``(P, P)`` (float32 0/1)."""
        rng = self.rng
        if self.lesions and rng.random() < self.lesion_fraction:
            ci, li = self.lesions[int(rng.integers(len(self.lesions)))]
            case = self.cases[ci]
            pts = case.centres[li]
            z, cy, cx = (int(v) for v in pts[int(rng.integers(len(pts)))])
            jitter = max(1, self.patch // 4)
            cy += int(rng.integers(-jitter, jitter + 1))
            cx += int(rng.integers(-jitter, jitter + 1))
        else:
            ci = int(rng.choice(len(self.cases), p=self.slice_counts / self.slice_counts.sum()))
            case = self.cases[ci]
            nz, ny, nx = case.image.shape
            z, cy, cx = int(rng.integers(nz)), int(rng.integers(ny)), int(rng.integers(nx))
        x, y = self._crop(case, z, cy, cx)
        if self.augmentation is not None:
            x, y = self.augmentation.apply(x, y, rng)
        return x, y

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` patches: ``x (n, C, P, P)``, ``y (n, 1, P, P)`` (float32)."""
        xs, ys = zip(*(self.sample() for _ in range(n)), strict=True)
        return np.stack(xs), np.stack(ys)[:, None]
