"""Per-lesion summary (site, size, pieces, position): one definition for the CLI, the demo and the modules."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .patient import Patient

#: Columns of the lesion summary table, in order. Centroids are LPS (DICOM patient) coordinates in mm.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "lesion",
    "site",
    "label",
    "voxels",
    "volume_mm3",
    "components",
    "centroid_x_lps_mm",
    "centroid_y_lps_mm",
    "centroid_z_lps_mm",
)


def count_components(mask_zyx: np.ndarray) -> int:
    """Number of 26-connected pieces of a boolean ``[z, y, x]`` mask (the SPHARM step keeps the largest)."""
    components = sitk.ConnectedComponentImageFilter()
    components.FullyConnectedOn()
    components.Execute(sitk.GetImageFromArray(np.asarray(mask_zyx, dtype=np.uint8)))
    return int(components.GetObjectCount())


def lesion_summary(patient: Patient) -> list[dict]:
    """One dict per lesion with the :data:`SUMMARY_COLUMNS` keys."""
    counts = patient.voxel_counts()
    voxel_mm3 = float(np.prod(patient.spacing))
    rows = []
    for les in patient.lesions:
        mask = patient.lesion_mask(les)
        centre = patient.lesion_centroid_mm(les)
        rows.append(
            {
                "lesion": les.name,
                "site": les.site,
                "label": les.label,
                "voxels": counts[les.label],
                "volume_mm3": counts[les.label] * voxel_mm3,
                "components": count_components(mask),
                "centroid_x_lps_mm": float(centre[0]),
                "centroid_y_lps_mm": float(centre[1]),
                "centroid_z_lps_mm": float(centre[2]),
            }
        )
    return rows
