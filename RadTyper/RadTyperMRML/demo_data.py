"""The demo patient for a new user: generated locally (no download), as files or straight into a scene.

The synthetic CT of :func:`RadTyperLib.phantoms.make_patient` (8 lesions at 4 sites, a lung parenchyma
mask) is written once into a folder — Slicer's cache folder when the RadTyper module registers it with
SampleData — or put into a scene through the MRML bridge (tests, batch code, and Slicer without SampleData).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from RadTyperLib.patient import Lesion

#: Bump when the generated data change, so that a cached old copy is not reused.
DEMO_VERSION = 1
DEMO_SEED = 0
#: File name (in the demo folder) and node name of each demo file, in loading order.
DEMO_FILES: dict[str, tuple[str, str]] = {
    "image": ("RadTyperDemo_image.nrrd", "RadTyper demo CT"),
    "lesions": ("RadTyperDemo_lesions.seg.nrrd", "RadTyper demo lesions"),
    "parenchyma": ("RadTyperDemo_parenchyma.seg.nrrd", "RadTyper demo parenchyma"),
}
PARENCHYMA_SEGMENT = "parenchyma"


def demo_patient(seed: int = DEMO_SEED) -> Any:
    """The demo Patient (CT, 8 lesions, lung parenchyma)."""
    from RadTyperLib.phantoms import make_patient

    return make_patient(seed, modality="CT", patient_id="RadTyper demo")


def demo_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Paths of the demo files in ``folder`` (they may not exist yet)."""
    return {key: Path(folder) / name for key, (name, _node) in DEMO_FILES.items()}


def write_demo_files(folder: str | os.PathLike[str], *, seed: int = DEMO_SEED) -> dict[str, Path]:
    """Write the demo patient into ``folder`` unless every file is there already; return the paths.

    The parenchyma is written as a one-segment ``.seg.nrrd``, so that Slicer loads it as a segmentation.
    """
    import SimpleITK as sitk

    files = demo_files(folder)
    if all(p.is_file() for p in files.values()):
        return files
    Path(folder).mkdir(parents=True, exist_ok=True)
    patient = demo_patient(seed)
    sitk.WriteImage(patient.image, str(files["image"]), True)
    write_seg_nrrd_sitk(files["lesions"], patient.labels, patient.lesions)
    parenchyma = sitk.Cast(patient.parenchyma > 0, sitk.sitkUInt8)
    parenchyma_lesion = Lesion(1, PARENCHYMA_SEGMENT, "unspecified", (0.55, 0.75, 0.95))
    write_seg_nrrd_sitk(files["parenchyma"], parenchyma, [parenchyma_lesion])
    return files


def write_seg_nrrd_sitk(path: str | os.PathLike[str], labels: Any, lesions: Any) -> Path:
    """A Slicer ``.seg.nrrd`` written with SimpleITK only (bundled with Slicer; no pynrrd).

    Sample Data runs before RadTyper's Python packages are installed, so the demo must not need pynrrd. ITK's
    NRRD writer stores every metadata entry as a ``key:=value`` line, which is how Slicer's segmentation
    storage node reads segment names, colours, label values, extents and tags (``RadTyper.Site``).
    """
    import SimpleITK as sitk

    from RadTyperLib.io import atomic_path, seg_nrrd_fields

    image = sitk.Cast(labels, sitk.sitkUInt8 if len(lesions) < 256 else sitk.sitkUInt16)
    for key, value in seg_nrrd_fields(labels, lesions).items():
        image.SetMetaData(key, value)
    with atomic_path(path) as tmp:  # keeps the .seg.nrrd suffix: ITK picks its NRRD writer from it
        sitk.WriteImage(image, str(tmp), True)
    return Path(path)


def load_demo_into_scene(scene: Any, *, seed: int = DEMO_SEED) -> tuple[Any, Any, Any]:
    """Put the demo patient into ``scene``: (volume node, lesion segmentation node, parenchyma segmentation)."""
    import SimpleITK as sitk

    from .bridge import labels_to_segmentation, sitk_to_volume

    patient = demo_patient(seed)
    volume = sitk_to_volume(patient.image, scene, DEMO_FILES["image"][1])
    lesions = labels_to_segmentation(
        patient.labels, patient.lesions, scene, DEMO_FILES["lesions"][1], reference_volume_node=volume
    )
    parenchyma = labels_to_segmentation(
        sitk.Cast(patient.parenchyma > 0, sitk.sitkUInt8),
        [Lesion(1, PARENCHYMA_SEGMENT, "unspecified", (0.55, 0.75, 0.95))],
        scene,
        DEMO_FILES["parenchyma"][1],
        reference_volume_node=volume,
    )
    return volume, lesions, parenchyma
