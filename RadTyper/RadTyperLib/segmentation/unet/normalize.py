"""Intensity normalisation of the U-Net input, per modality (numpy only).

* **CT** — a fixed window in Hounsfield units: values are clipped to ``[lo, hi]`` HU (default
  :data:`CT_WINDOW_HU` = −1000…500 HU, from air through lung and soft tissue to dense contrast; the same
  range as the regional-variation histograms) and mapped linearly to [0, 1]:
  ``(clip(v, lo, hi) − lo) / (hi − lo)``. So −1000 HU → 0, −250 HU → 0.5, 500 HU → 1.
* **MR** (and PET) — MR intensities have no absolute scale: per volume, the 0.5th and 99.5th percentiles
  ``p_lo, p_hi`` of all voxels (a strided sample of ≤ 2 million voxels for large volumes) are mapped to 0 and 1,
  values outside are clipped. The percentiles are computed on the whole image, never on an ROI, so that
  ROI inference sees the same values as whole-volume inference.

0 is also the padding value of slices (air on CT, background on MR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import InputError

#: Default CT window (HU) mapped to [0, 1].
CT_WINDOW_HU: tuple[float, float] = (-1000.0, 500.0)
#: Default MR / PET percentiles mapped to [0, 1].
MR_PERCENTILES: tuple[float, float] = (0.5, 99.5)
#: Modalities the U-Net handles.
MODALITIES: tuple[str, ...] = ("CT", "MR", "PET")
_MAX_SAMPLE = 2_000_000


def canonical_modality(modality: str, source: str = "modality") -> str:
    """``CT``, ``MR`` or ``PET`` from user text (``MRI`` → ``MR``; case-insensitive)."""
    m = str(modality).strip().upper()
    m = "MR" if m == "MRI" else m
    if m not in MODALITIES:
        raise InputError(f"{source}: modality '{modality}' is not one of {', '.join(MODALITIES)}")
    return m


@dataclass(frozen=True)
class Normalization:
    """How a modality's intensities are mapped to the network input range [0, 1]."""

    modality: str = "CT"
    ct_window_hu: tuple[float, float] = CT_WINDOW_HU
    percentiles: tuple[float, float] = MR_PERCENTILES

    def __post_init__(self) -> None:
        object.__setattr__(self, "modality", canonical_modality(self.modality))
        lo, hi = (float(v) for v in self.ct_window_hu)
        if not hi > lo:
            raise InputError(f"CT window must have lower < upper HU, got {self.ct_window_hu}")
        plo, phi = (float(v) for v in self.percentiles)
        if not 0.0 <= plo < phi <= 100.0:
            raise InputError(f"percentiles must satisfy 0 ≤ low < high ≤ 100, got {self.percentiles}")
        object.__setattr__(self, "ct_window_hu", (lo, hi))
        object.__setattr__(self, "percentiles", (plo, phi))

    @property
    def method(self) -> str:
        """``ct_window`` (fixed HU window) or ``percentile`` (per-volume percentiles)."""
        return "ct_window" if self.modality == "CT" else "percentile"

    def volume_range(self, volume: np.ndarray) -> tuple[float, float]:
        """The intensities (lo, hi) mapped to 0 and 1 for this volume (HU for CT)."""
        if self.method == "ct_window":
            return self.ct_window_hu
        flat = np.asarray(volume).reshape(-1)
        if flat.size == 0:
            raise InputError("cannot normalise an empty image")
        sample = flat[:: max(1, flat.size // _MAX_SAMPLE)].astype(np.float64)
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            raise InputError("the image has no finite intensity")
        lo, hi = (float(v) for v in np.percentile(sample, self.percentiles))
        if not hi > lo:  # constant image: avoid a division by zero, map everything to 0
            hi = lo + 1.0
        return lo, hi

    def to_json(self) -> dict[str, Any]:
        """Description stored in ``model.json``."""
        d: dict[str, Any] = {"modality": self.modality, "method": self.method}
        if self.method == "ct_window":
            d["ct_window_hu"] = list(self.ct_window_hu)
            d["formula"] = "(clip(HU, lo, hi) - lo) / (hi - lo)"
        else:
            d["percentiles"] = list(self.percentiles)
            d["formula"] = "(clip(v, p_lo, p_hi) - p_lo) / (p_hi - p_lo), percentiles of the whole volume"
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Normalization:
        """Inverse of :meth:`to_json`."""
        try:
            return cls(
                modality=str(d["modality"]),
                ct_window_hu=tuple(d.get("ct_window_hu", CT_WINDOW_HU)),  # type: ignore[arg-type]
                percentiles=tuple(d.get("percentiles", MR_PERCENTILES)),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"invalid normalisation description ({type(exc).__name__}: {exc})") from None


def apply_range(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(clip(values, lo, hi) − lo) / (hi − lo)`` as float32 (NaN → 0)."""
    out = np.asarray(values, dtype=np.float32)
    out = (np.clip(out, lo, hi) - np.float32(lo)) / np.float32(hi - lo)
    return np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0).astype(np.float32, copy=False)


def normalize_volume(volume: np.ndarray, norm: Normalization) -> np.ndarray:
    """The whole volume normalised to [0, 1] (float32)."""
    lo, hi = norm.volume_range(volume)
    return apply_range(volume, lo, hi)
