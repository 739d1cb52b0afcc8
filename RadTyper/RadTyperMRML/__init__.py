"""RadTyperMRML: the bridge between Slicer MRML nodes and RadTyper's core values.

Converts volume, segmentation, model and table nodes to and from SimpleITK images (LPS), lesion lists,
meshes and pandas DataFrames, with exact geometry (RAS ⇄ LPS, direction, origin, spacing in mm). It imports
only MRML/VTK classes (never ``slicer.util`` or the application), so it runs inside Slicer and on plain
CPython with the ``slicer-core`` wheel.
"""

from .bridge import (
    SITE_TAG,
    add_mask_segment,
    create_scene,
    dataframe_to_table,
    labels_to_segmentation,
    mesh_to_model,
    optional_path,
    patient_from_nodes,
    scene_logic,
    segment_on_volume_grid,
    segmentation_to_labels,
    sitk_to_volume,
    table_to_dataframe,
    volume_to_sitk,
)

__all__ = [
    "SITE_TAG",
    "add_mask_segment",
    "create_scene",
    "dataframe_to_table",
    "labels_to_segmentation",
    "mesh_to_model",
    "optional_path",
    "patient_from_nodes",
    "scene_logic",
    "segment_on_volume_grid",
    "segmentation_to_labels",
    "sitk_to_volume",
    "table_to_dataframe",
    "volume_to_sitk",
]
