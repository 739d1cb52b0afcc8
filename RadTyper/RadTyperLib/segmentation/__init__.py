"""Training-free lesion segmentation from user clicks.

:func:`segment_from_point` segments one lesion from a point clicked inside it (adaptive region growing, see
:mod:`.seeded`); :func:`segment_from_points` does it for several marked lesions in turn without overlaps.
"""

from .seeded import (
    SeededParams,
    SeededResult,
    segment_from_point,
    segment_from_points,
)

__all__ = ["SeededParams", "SeededResult", "segment_from_point", "segment_from_points"]
