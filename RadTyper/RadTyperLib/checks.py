"""Checks of a patient's inputs and the QC warnings shown on screen: one place for every decided behaviour.

Decided behaviours (README, "Errors and warnings"):

* **nested labels** (one lesion drawn as concentric shells 1, 2, 3 …, or a label inside another's hole):
  refused, :class:`InputError` naming the file and the labels (exit 2) — they would be analysed as several
  lesions with one centre;
* **too many labels** (more than :data:`MAX_LESIONS` distinct values: an image or a connected-component map
  given as a lesion mask): refused;
* **NaN / infinite image voxels**: a warning naming the image and the count; a lesion with such a voxel in
  it or within :data:`NONFINITE_MARGIN_MM` of it cannot be analysed (per-lesion error, ``qc_error`` with
  ``--keep-going``); every row carries ``qc_image_nonfinite_voxels``;
* **QC flags** of a computed lesion (touches the image border, clipped margin shell, reduced SPHARM degree,
  discarded pieces, SPHARM energies at the voxel noise …): a ``radtyper: warning: lesion '…': …`` line on stderr per flag
  (:func:`qc_warnings`), the numeric ``qc_*`` columns in the table, and the flags in the Slicer lesion table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .errors import InputError

#: More distinct non-zero labels than this in one lesion mask is refused.
MAX_LESIONS: int = 1000
#: A NaN/inf image voxel closer than this to a lesion (mm, per axis) makes the lesion unanalysable: the
#: margin shells reach 10 mm and pyradiomics resamples a padded box.
NONFINITE_MARGIN_MM: float = 12.0
#: A label is nested in another when at least this fraction of its voxels lies in the other's holes.
NESTED_FRACTION: float = 0.5

#: Warn when at least this many of the 15 per-degree energies are at the voxel noise (more than half: the
#: lesion's energy profile is then mostly the voxel grid's; ``qc_energy_at_voxel_noise``).
VOXEL_NOISE_WARN_DEGREES: int = 8
#: The signal-to-floor ratio behind ``qc_energy_at_voxel_noise`` (RadTyperLib.shape.voxelnoise.SNR_MIN; kept
#: here as a number so that this module does not import the shape package).
VOXEL_NOISE_SNR: float = 10.0

_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]


def check_label_count(n_labels: int, source: str) -> None:
    """Refuse masks with more than :data:`MAX_LESIONS` labels (an image or component map, not lesions)."""
    if n_labels > MAX_LESIONS:
        raise InputError(
            f"{source}: {n_labels} distinct labels; at most {MAX_LESIONS} lesions per patient are supported "
            "(is this an image or a connected-component map rather than a lesion mask?)"
        )


def nested_labels(labels_zyx: np.ndarray) -> list[tuple[int, int]]:
    """``(outer, inner)`` label pairs where ``inner`` lies in the holes of ``outer`` (per slice, ≥ 50 %).

    Holes are filled slice by slice (an enclosed 3-D cavity is a hole in every slice through it, and shells
    drawn slice by slice need not close in 3-D).
    """
    from scipy import ndimage

    arr = np.asarray(labels_zyx)
    if not arr.any():
        return []
    values, counts = np.unique(arr[arr != 0], return_counts=True)
    total = dict(zip(values.tolist(), counts.tolist(), strict=True))
    if len(values) < 2:
        return []
    objects = ndimage.find_objects(arr)
    pairs: list[tuple[int, int]] = []
    for value in values.tolist():
        box = objects[value - 1]
        if box is None:
            continue
        crop = arr[box]
        mask = crop == value
        holes = ndimage.binary_fill_holes(mask, structure=_IN_PLANE) & ~mask
        inside = crop[holes]
        inside = inside[(inside != 0) & (inside != value)]
        if inside.size == 0:
            continue
        for inner, n in zip(*np.unique(inside, return_counts=True), strict=True):
            if n >= NESTED_FRACTION * total[int(inner)]:
                pairs.append((int(value), int(inner)))
    return pairs


def check_nested(labels_zyx: np.ndarray, source: str, names: Mapping[int, str] | None = None) -> None:
    """Raise :class:`InputError` when a lesion label lies inside another (see :func:`nested_labels`)."""
    pairs = nested_labels(labels_zyx)
    if not pairs:
        return
    names = names or {}

    def name(v: int) -> str:
        return f"'{names[v]}'" if v in names else f"label {v}"

    text = ", ".join(f"{name(inner)} inside {name(outer)}" for outer, inner in pairs[:4])
    more = f" (+{len(pairs) - 4} more)" if len(pairs) > 4 else ""
    raise InputError(
        f"{source}: nested lesion labels: {text}{more}; one lesion drawn as shells? Give each lesion one "
        "label (merge the shells, e.g. mask > 0), or draw separate lesions apart"
    )


def nonfinite_count(image_zyx: np.ndarray) -> int:
    """Number of NaN or infinite voxels (0 for integer images)."""
    arr = np.asarray(image_zyx)
    if not np.issubdtype(arr.dtype, np.floating):
        return 0
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))


def nonfinite_near(image_zyx: np.ndarray, mask_zyx: np.ndarray, spacing_xyz: Sequence[float]) -> int:
    """NaN/inf voxels in the lesion's box grown by :data:`NONFINITE_MARGIN_MM` on every side."""
    arr = np.asarray(image_zyx)
    if not np.issubdtype(arr.dtype, np.floating):
        return 0
    idx = np.argwhere(mask_zyx)
    if idx.size == 0:
        return 0
    grow = np.ceil(NONFINITE_MARGIN_MM / np.asarray(spacing_xyz, float)[::-1]).astype(int)
    lo = np.maximum(idx.min(axis=0) - grow, 0)
    hi = np.minimum(idx.max(axis=0) + 1 + grow, arr.shape)
    box = arr[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return int(box.size - np.count_nonzero(np.isfinite(box)))


def image_warnings(image_zyx: np.ndarray, source: str) -> list[str]:
    """Warnings about an image as a whole (NaN / infinite voxels)."""
    n = nonfinite_count(image_zyx)
    if not n:
        return []
    return [
        f"{source}: {n} NaN or infinite voxel(s); lesions with such a voxel within {NONFINITE_MARGIN_MM:g} mm "
        "cannot be analysed (qc_image_nonfinite_voxels)"
    ]


def _flag(row: Mapping, key: str) -> float:
    try:
        value = float(row.get(key, 0.0) or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return value if np.isfinite(value) else 0.0


def qc_warnings(row: Mapping) -> list[str]:
    """The on-screen warnings of one computed lesion row (empty when every QC flag is clear)."""
    out: list[str] = []
    if _flag(row, "qc_touches_border"):
        out.append("touches the image border: its shape is cut (shape and burden features unreliable)")
    if _flag(row, "qc_shell_clipped"):
        out.append(
            "its 10 mm margin shell is clipped by the image border (regional features use fewer voxels)"
        )
    if _flag(row, "qc_degree_reduced"):
        out.append(
            f"too small for degree 15: SPHARM degree reduced to {int(_flag(row, 'qc_degree_used'))} "
            "(higher-degree features are 0)"
        )
    if _flag(row, "qc_discarded_volume_mm3") > 0:
        out.append(
            f"{int(_flag(row, 'qc_components'))} pieces: the shape uses the largest, "
            f"{_flag(row, 'qc_discarded_volume_mm3'):.0f} mm³ discarded"
        )
    if _flag(row, "qc_parenchyma_off_organ"):
        out.append("the given parenchyma mask does not surround it: automatic parenchyma used")
    if _flag(row, "qc_empty_tim"):
        out.append("empty invasive-margin shell: regional features are placeholders")
    n_noise = int(_flag(row, "qc_energy_at_voxel_noise"))
    if n_noise >= VOXEL_NOISE_WARN_DEGREES:
        out.append(
            f"shape detail at the voxel noise: {n_noise} of the 15 SPHARM energies are below "
            f"{VOXEL_NOISE_SNR:g} × the voxel-noise floor (mean radius {_flag(row, 'qc_radius_voxels'):.0f} "
            "voxels): a sub-voxel shift of the mask moves them by 2–30 %"
        )
    return out
