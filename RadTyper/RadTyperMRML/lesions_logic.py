"""Lesion bookkeeping on a segmentation node: the logic of the RadTyper Lesions module, without Qt.

One segment per lesion. :class:`LesionsLogic` lists the lesions with their QC flags, centres slice views
on a lesion, renames / tags / deletes a lesion (explicit user actions on the segment's metadata), adds new
lesions from clicked points with the core's training-free seeded segmentation or a trained U-Net
(:meth:`LesionsLogic.add_lesions_from_points`), segments every lesion of the volume with a U-Net
(:meth:`LesionsLogic.auto_segment_all`: new segments only, the user's segments untouched), and computes the
automatic parenchyma mask used by the margin shells.

It imports only the standard library, numpy, SimpleITK, vtk, Slicer's MRML classes and the core library
(never Qt, ``slicer.util`` or the application): the scene comes from the nodes passed in, so the same code
runs in Slicer and in plain pytest with the ``slicer-core`` wheel.

QC flags of a lesion (:class:`LesionRow`):

* ``touches_border`` — the segment reaches the first or last voxel layer of the volume on some axis, or lies
  partly outside it (its shape and margins are cut);
* ``margin_clipped`` — the segment does not touch the border but lies within 10 mm of it in the slice plane:
  its 10 mm margin shell is cut, so the regional-variation features use fewer voxels (``qc_shell_clipped``
  of the feature table; a segment touching the border has ``touches_border`` instead);
* ``holes`` — the segment has enclosed cavities (3-D holes not connected to the outside); the shape step
  fills them;
* ``too_small`` — fewer than :data:`SMALL_LESION_VOXELS` voxels: the SPHARM degree is reduced and the shape
  features are unreliable (below ``RadTyperLib.shape.MIN_VOXELS`` they cannot be computed);
* ``disconnected`` — more than one 26-connected piece (the shape step keeps the largest).

A segment that is empty, outside the volume or overlapping another lesion gets a ``problem`` text instead of
an exception, so that the table always shows every segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from RadTyperLib.errors import InputError, LesionError, RadTyperError
from RadTyperLib.io import SITE_TAG
from RadTyperLib.regions import margin_shell_clipped

from .bridge import add_mask_segment, optional_path, segment_on_volume_grid, volume_to_sitk

#: Lesions with fewer voxels are flagged ``too_small`` (a 4 × 4 × 4 voxel cube).
SMALL_LESION_VOXELS = 64
#: Node reference role from a lesion segmentation to its parenchyma segmentation (saved with the scene).
PARENCHYMA_REFERENCE = "RadTyperParenchyma"
#: Segment name of a computed parenchyma.
PARENCHYMA_SEGMENT = "parenchyma"
PARENCHYMA_COLOR = (0.55, 0.75, 0.95)
QC_FLAGS: tuple[str, ...] = ("touches_border", "margin_clipped", "holes", "too_small", "disconnected")
SEGMENTATION_METHODS: tuple[str, ...] = ("classical", "unet")
#: Segment tag recording how a lesion segment was made (``unet`` for automatic ones: "accept or edit").
SOURCE_TAG = "RadTyper.Source"
_FLIP = np.diag([-1.0, -1.0, 1.0])


class ComponentMissingError(RadTyperError):
    """A part of RadTyper that this action needs is not installed or not configured."""


@dataclass
class LesionRow:
    """One line of the lesion table."""

    segment_id: str
    name: str
    site: str
    color: tuple[float, float, float]
    voxels: int = 0
    volume_mm3: float = float("nan")
    components: int = 0
    hole_voxels: int = 0
    touches_border: bool = False
    margin_clipped: bool = False
    too_small: bool = False
    centre_ras: tuple[float, float, float] | None = None
    overlaps: tuple[str, ...] = ()
    problem: str = ""

    @property
    def holes(self) -> bool:
        return self.hole_voxels > 0

    @property
    def disconnected(self) -> bool:
        return self.components > 1

    @property
    def flags(self) -> list[str]:
        """The QC flags that are set, in :data:`QC_FLAGS` order."""
        return [f for f in QC_FLAGS if getattr(self, f)]

    def qc_text(self) -> str:
        """Short QC text for the table: problem, overlaps, flags (empty when everything is fine)."""
        parts = [self.problem] if self.problem else []
        if self.overlaps:
            parts.append(f"overlaps {', '.join(self.overlaps)}")
        parts += [f.replace("_", " ") for f in self.flags]
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(holes=self.holes, disconnected=self.disconnected, qc=self.qc_text())
        return out


@dataclass
class SeededOutcome:
    """What one clicked point produced: a new segment, or the reason why not."""

    name: str
    point_ras: tuple[float, float, float]
    segment_id: str | None = None
    volume_mm3: float = 0.0
    skipped: str = ""
    qc: dict[str, Any] = field(default_factory=dict)


@dataclass
class AutoSegmentOutcome:
    """What "Auto-segment all lesions" produced: the new segments (largest first) and notes."""

    segment_ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    volumes_mm3: list[float] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def empty(self) -> bool:
        """True when no lesion was added."""
        return not self.segment_ids


# --- helpers ----------------------------------------------------------------------------------------------
def _require(node: Any, cls: str, what: str) -> None:
    if node is None:
        raise InputError(f"No {what} is selected")
    if not node.IsA(cls):
        raise InputError(f"{what.capitalize()} '{node.GetName()}' is a {node.GetClassName()}, not a {cls}")


def _segment_ids(segmentation_node: Any) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def _segment(segmentation_node: Any, segment_id: str) -> Any:
    _require(segmentation_node, "vtkMRMLSegmentationNode", "lesion segmentation")
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise InputError(
            f"Segment '{segment_id}' is not in '{segmentation_node.GetName()}' (was it removed?)"
        )
    return segment


def _segment_site(segment: Any) -> str:
    value = vtk.reference("")
    return str(value) if segment.GetTag(SITE_TAG, value) and str(value) else "unspecified"


def _ijk_to_ras(volume_node: Any) -> np.ndarray:
    """4×4 matrix from array index (x, y, z) — extent start included — to RAS."""
    m = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(m)
    a = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    ext = volume_node.GetImageData().GetExtent()
    shift = np.eye(4)
    shift[:3, 3] = (ext[0], ext[2], ext[4])
    return a @ shift


def _count_components(mask: np.ndarray) -> int:
    from RadTyperLib.summary import count_components

    return count_components(mask)


def _hole_voxels(mask: np.ndarray) -> int:
    from scipy import ndimage as ndi

    filled = ndi.binary_fill_holes(np.pad(mask, 1))
    return int(np.count_nonzero(filled)) - int(np.count_nonzero(mask))


def _box_overlap(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...] | None:
    out = []
    for sa, sb in zip(a, b, strict=True):
        lo, hi = max(sa.start, sb.start), min(sa.stop, sb.stop)
        if hi <= lo:
            return None
        out.append(slice(lo, hi))
    return tuple(out)


def _shift(box: tuple[slice, ...], origin: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, origin, strict=True))


# --- the logic --------------------------------------------------------------------------------------------
class LesionsLogic:
    """Lesion table, navigation, editing, one-click segmentation and parenchyma (see the module docstring)."""

    # --- listing ------------------------------------------------------------------------------------------
    @staticmethod
    def site_names() -> tuple[str, ...]:
        """The accepted anatomical sites (RadTyperLib's controlled vocabulary)."""
        from RadTyperLib.sites import SITES

        return SITES

    def lesion_rows(self, volume_node: Any, segmentation_node: Any) -> list[LesionRow]:
        """One :class:`LesionRow` per segment, in segment order. The nodes are not modified.

        Raises:
            InputError: no volume or segmentation selected, transformed nodes, a volume without image data.
        """
        _require(volume_node, "vtkMRMLScalarVolumeNode", "input volume")
        _require(segmentation_node, "vtkMRMLSegmentationNode", "lesion segmentation")
        shape_zyx = volume_node.GetImageData().GetDimensions()[::-1]
        voxel_mm3 = float(np.prod(volume_node.GetSpacing()))
        ijk_to_ras = _ijk_to_ras(volume_node)
        segmentation = segmentation_node.GetSegmentation()
        rows: list[LesionRow] = []
        crops: list[tuple[tuple[slice, ...], np.ndarray] | None] = []
        for sid in _segment_ids(segmentation_node):
            segment = segmentation.GetSegment(sid)
            row = LesionRow(
                segment_id=sid,
                name=segment.GetName() or sid,
                site=_segment_site(segment),
                color=tuple(float(c) for c in segment.GetColor()),  # type: ignore[arg-type]
            )
            box, mask, n_segment, n_outside = segment_on_volume_grid(segmentation_node, sid, volume_node)
            crops.append((box, mask) if box is not None else None)
            rows.append(row)
            if n_segment == 0:
                row.problem = "empty segment"
                row.voxels, row.volume_mm3 = 0, 0.0
                continue
            if box is None or mask is None:
                row.problem = "outside the volume"
                row.touches_border = True
                continue
            row.voxels = int(np.count_nonzero(mask))
            row.volume_mm3 = row.voxels * voxel_mm3
            if n_outside:
                row.problem = f"partly outside the volume ({n_outside} of {n_segment} voxels)"
            row.touches_border = bool(n_outside) or any(
                s.start == 0 or s.stop == n for s, n in zip(box, shape_zyx, strict=True)
            )
            row.margin_clipped = not row.touches_border and margin_shell_clipped(
                box, shape_zyx, tuple(float(v) for v in volume_node.GetSpacing()), "2d"
            )
            row.components = _count_components(mask)
            row.hole_voxels = _hole_voxels(mask)
            row.too_small = row.voxels < SMALL_LESION_VOXELS
            idx = np.argwhere(mask).mean(axis=0) + np.array([s.start for s in box])  # z, y, x
            centre = ijk_to_ras @ np.array([idx[2], idx[1], idx[0], 1.0])
            row.centre_ras = tuple(float(v) for v in centre[:3])  # type: ignore[assignment]
        for i, a in enumerate(crops):
            for j in range(i + 1, len(crops)):
                b = crops[j]
                if a is None or b is None:
                    continue
                both = _box_overlap(a[0], b[0])
                if both is None:
                    continue
                if np.any(a[1][_shift(both, a[0])] & b[1][_shift(both, b[0])]):
                    rows[i].overlaps += (rows[j].name,)
                    rows[j].overlaps += (rows[i].name,)
        return rows

    # --- navigation ---------------------------------------------------------------------------------------
    def lesion_centre_ras(
        self, volume_node: Any, segmentation_node: Any, segment_id: str
    ) -> tuple[float, ...]:
        """Centre of mass (RAS, mm) of a lesion on the volume grid; the segment's own centre if outside it."""
        _segment(segmentation_node, segment_id)
        if volume_node is not None:
            box, mask, _n, _out = segment_on_volume_grid(segmentation_node, segment_id, volume_node)
            if box is not None and mask is not None:
                idx = np.argwhere(mask).mean(axis=0) + np.array([s.start for s in box])
                centre = _ijk_to_ras(volume_node) @ np.array([idx[2], idx[1], idx[0], 1.0])
                return tuple(float(v) for v in centre[:3])
        centre = segmentation_node.GetSegmentCenterRAS(segment_id)
        if centre is None:
            raise InputError(f"Lesion '{_segment(segmentation_node, segment_id).GetName()}' is empty")
        return tuple(float(v) for v in centre)

    def jump_to_lesion(self, volume_node: Any, segmentation_node: Any, segment_id: str) -> tuple[float, ...]:
        """Centre every slice view of the scene on the lesion; return the RAS point."""
        centre = self.lesion_centre_ras(volume_node, segmentation_node, segment_id)
        scene = segmentation_node.GetScene()
        if scene is not None:
            slicer.vtkMRMLSliceNode.JumpAllSlices(scene, *centre, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        return centre

    # --- editing (explicit user actions) ------------------------------------------------------------------
    @staticmethod
    def lesion_site(segmentation_node: Any, segment_id: str) -> str:
        """The site tag of a segment (``unspecified`` when it has none)."""
        return _segment_site(_segment(segmentation_node, segment_id))

    @staticmethod
    def set_lesion_site(segmentation_node: Any, segment_id: str, site: str) -> str:
        """Store ``site`` (synonyms and case tolerated) as the segment tag ``RadTyper.Site``; return it.

        Raises:
            InputError: unknown site (the message lists the accepted ones).
        """
        from RadTyperLib.sites import normalize_site

        segment = _segment(segmentation_node, segment_id)
        canonical = normalize_site(site, context=f"lesion '{segment.GetName()}'")
        segment.SetTag(SITE_TAG, canonical)
        return canonical

    @staticmethod
    def rename_lesion(segmentation_node: Any, segment_id: str, name: str) -> str:
        """Rename a lesion (its segment). Names must be non-empty and unique in the segmentation.

        Raises:
            InputError: empty name or a name another lesion has.
        """
        segment = _segment(segmentation_node, segment_id)
        new = (name or "").strip()
        if not new:
            raise InputError("A lesion name cannot be empty")
        for other in _segment_ids(segmentation_node):
            if other != segment_id and segmentation_node.GetSegmentation().GetSegment(other).GetName() == new:
                raise InputError(f"Another lesion is already named '{new}'")
        segment.SetName(new)
        return new

    @staticmethod
    def delete_lesion(segmentation_node: Any, segment_id: str) -> None:
        """Remove a lesion's segment."""
        _segment(segmentation_node, segment_id)
        segmentation_node.GetSegmentation().RemoveSegment(segment_id)

    @staticmethod
    def unique_lesion_name(segmentation_node: Any, base: str = "lesion") -> str:
        """``base_1``, ``base_2``, … : the first name no segment has."""
        names = {
            segmentation_node.GetSegmentation().GetSegment(s).GetName()
            for s in _segment_ids(segmentation_node)
        }
        i = 1
        while f"{base}_{i}" in names:
            i += 1
        return f"{base}_{i}"

    # --- one-click segmentation ---------------------------------------------------------------------------
    @staticmethod
    def seeded_module() -> Any:
        """``RadTyperLib.segmentation.seeded``; ComponentMissingError when this version lacks it."""
        import importlib

        try:
            seeded = importlib.import_module("RadTyperLib.segmentation.seeded")
        except ImportError as exc:
            raise ComponentMissingError(
                "One-click segmentation is not available in this RadTyper version "
                f"(RadTyperLib.segmentation.seeded cannot be imported: {exc})"
            ) from None
        return seeded

    @classmethod
    def seeded_available(cls) -> bool:
        try:
            cls.seeded_module()
        except ComponentMissingError:
            return False
        return True

    @staticmethod
    def _check_method(method: str, unet_model: Any = None) -> None:
        if method not in SEGMENTATION_METHODS:
            raise InputError(
                f"Unknown segmentation method '{method}'; use one of {', '.join(SEGMENTATION_METHODS)}"
            )
        if method == "unet" and not _model_given(unet_model):
            raise ComponentMissingError(
                "No trained U-Net model is configured (train one with 'radtyper seg train'); "
                "select its folder or use the classical (training-free) method"
            )

    @staticmethod
    def load_unet(unet_model: Any) -> Any:
        """The U-Net bundle of a model folder (a loaded bundle is returned as is).

        Raises:
            ComponentMissingError: no model given, or this installation lacks torch / the U-Net code.
            InputError: not a valid RadTyper U-Net bundle (the message says why).
        """
        if not _model_given(unet_model):
            raise ComponentMissingError("No trained U-Net model is configured")
        try:
            from RadTyperLib.segmentation.unet import load_unet_bundle
        except ImportError as exc:
            raise ComponentMissingError(f"U-Net segmentation is not available here: {exc}") from None
        if not isinstance(unet_model, str | bytes) and hasattr(unet_model, "modality"):
            return unet_model
        return load_unet_bundle(str(unet_model))

    def existing_labels(
        self, volume_node: Any, segmentation_node: Any, image: sitk.Image | None = None
    ) -> sitk.Image:
        """Label map (on the volume grid, LPS) of every segment's voxels inside the volume (i + 1 per segment)."""
        reference = image if image is not None else volume_to_sitk(volume_node)
        labels = np.zeros(sitk.GetArrayViewFromImage(reference).shape, dtype=np.uint16)
        for i, sid in enumerate(_segment_ids(segmentation_node), start=1):
            box, mask, _n, _out = segment_on_volume_grid(segmentation_node, sid, volume_node)
            if box is not None and mask is not None:
                labels[box][mask] = i
        out = sitk.GetImageFromArray(labels)
        out.CopyInformation(reference)
        return out

    def add_lesion_from_point(
        self,
        volume_node: Any,
        segmentation_node: Any,
        point_ras: Sequence[float],
        *,
        name: str | None = None,
        site: str | None = None,
        modality: str = "auto",
        method: str = "classical",
        unet_model: Any = None,
    ) -> SeededOutcome:
        """Segment the lesion under ``point_ras`` into a new segment (the other segments are not touched).

        Raises:
            ComponentMissingError: no seeded segmentation in this version, or U-Net asked without a model.
            InputError: no volume/segmentation, point outside the image, unknown site.
            LesionError: no lesion at this point (air, inside an existing lesion, too small).
        """
        outcomes = self.add_lesions_from_points(
            volume_node,
            segmentation_node,
            [point_ras],
            names=[name] if name else None,
            site=site,
            modality=modality,
            method=method,
            unet_model=unet_model,
            skip_failures=False,
        )
        return outcomes[0]

    def add_lesions_from_points(
        self,
        volume_node: Any,
        segmentation_node: Any,
        points_ras: Sequence[Sequence[float]],
        *,
        names: Sequence[str] | None = None,
        site: str | None = None,
        modality: str = "auto",
        method: str = "classical",
        unet_model: Any = None,
        skip_failures: bool = True,
    ) -> list[SeededOutcome]:
        """ "Segment all marked lesions": one new segment per point, none overlapping the others.

        ``method``: ``classical`` (training-free region growing) or ``unet`` (the lesion component of the
        U-Net ``unet_model`` — a model folder or a loaded bundle — at each point). With ``skip_failures`` a
        point that yields no lesion (air, inside a lesion, too small) is reported in its outcome's
        ``skipped``; otherwise its LesionError is raised (and nothing is added).
        """
        _require(volume_node, "vtkMRMLScalarVolumeNode", "input volume")
        _require(segmentation_node, "vtkMRMLSegmentationNode", "lesion segmentation")
        self._check_method(method, unet_model)
        seeded = self.load_unet(unet_model) if method == "unet" else self.seeded_module()
        if not len(points_ras):
            raise InputError("Place at least one point on a lesion first")
        tags = _new_lesion_tags(site, "unet" if method == "unet" else None)
        image = volume_to_sitk(volume_node)
        existing = self.existing_labels(volume_node, segmentation_node, image)
        used = {
            segmentation_node.GetSegmentation().GetSegment(s).GetName()
            for s in _segment_ids(segmentation_node)
        }
        lesion_names: list[str] = []
        for i in range(len(points_ras)):
            given = names[i] if names is not None and i < len(names) and names[i] else None
            if given is None or given in used or given in lesion_names:
                k = len(used) + len(lesion_names) + 1
                given = f"lesion_{k}"
                while given in used or given in lesion_names:
                    k += 1
                    given = f"lesion_{k}"
            lesion_names.append(given)
        points_lps = [tuple(float(v) for v in _FLIP @ np.asarray(p, dtype=float)[:3]) for p in points_ras]
        occupied = sitk.GetArrayFromImage(existing) != 0  # grows with every segment added below
        if method == "unet":
            results = [
                _unet_at_point(seeded, image, p, occupied, modality, n)
                for p, n in zip(points_lps, lesion_names, strict=True)
            ]
            if not skip_failures and (results[0].skipped or not np.any(results[0].mask_zyx)):
                raise LesionError(lesion_names[0], results[0].skipped or "no lesion found at this point")
        elif skip_failures:
            results = seeded.segment_from_points(
                image, points_lps, names=lesion_names, existing_labels=existing, modality=modality
            )
        else:
            results = [
                seeded.segment_from_point(
                    image, points_lps[0], modality=modality, existing_labels=existing, lesion=lesion_names[0]
                )
            ]
        outcomes = []
        for point, lesion_name, res in zip(points_ras, lesion_names, results, strict=True):
            outcome = SeededOutcome(
                name=lesion_name, point_ras=tuple(float(v) for v in point[:3]), qc=dict(res.qc)
            )  # type: ignore[arg-type]
            skipped = getattr(res, "skipped", None)
            # never overlap a user's segment, nor a lesion added for an earlier point (two clicks on one lesion)
            mask = np.asarray(res.mask_zyx, dtype=bool) & ~occupied
            if skipped or not mask.any():
                outcome.skipped = skipped or "no lesion found at this point"
                if not skip_failures:
                    raise LesionError(lesion_name, outcome.skipped)
                outcomes.append(outcome)
                continue
            outcome.segment_id = add_mask_segment(
                segmentation_node, mask, volume_node, lesion_name, tags=dict(tags) or None
            )
            outcome.volume_mm3 = float(np.count_nonzero(mask) * np.prod(image.GetSpacing()))
            occupied |= mask
            outcomes.append(outcome)
        return outcomes

    def auto_segment_all(
        self,
        volume_node: Any,
        segmentation_node: Any,
        unet_model: Any,
        *,
        modality: str = "auto",
        site: str | None = None,
        roi_ras: Sequence[float] | None = None,
        threshold: float | None = None,
        min_size_mm3: float | None = None,
        progress: Any = None,
        should_cancel: Any = None,
    ) -> AutoSegmentOutcome:
        """ "Auto-segment all lesions": every lesion the U-Net finds becomes a new segment (largest first).

        The user's segments are never modified: their voxels are excluded from the prediction, and each new
        segment (named ``lesion_<k>``, tagged ``RadTyper.Source = unet`` and with ``site`` when given) has its
        own labelmap, for the user to accept, edit or delete.

        Args:
            roi_ras: optional box ``(x1, y1, z1, x2, y2, z2)``: two opposite corners in RAS mm.
            threshold, min_size_mm3: probability threshold and smallest lesion (mm³); default: the model's.
            progress: ``progress(fraction, message)``; should_cancel: polled between batches of slices
                (cancelling raises ``RadTyperLib.features.Cancelled`` and adds nothing).

        Raises:
            ComponentMissingError: no model / no torch. InputError: bad model, model of another modality, bad
            ROI, no volume or segmentation.
        """
        import time

        t0 = time.perf_counter()
        _require(volume_node, "vtkMRMLScalarVolumeNode", "input volume")
        _require(segmentation_node, "vtkMRMLSegmentationNode", "lesion segmentation")
        bundle = self.load_unet(unet_model)
        from RadTyperLib.segmentation.unet import segment_lesions

        tags = _new_lesion_tags(site, "unet")
        roi_lps = None
        if roi_ras is not None:
            r = np.asarray(roi_ras, dtype=float).reshape(2, 3)
            roi_lps = tuple(float(v) for v in (r @ _FLIP).ravel())  # each corner RAS → LPS
        image = volume_to_sitk(volume_node)
        existing = (
            sitk.GetArrayViewFromImage(self.existing_labels(volume_node, segmentation_node, image)) != 0
        )
        result = segment_lesions(
            image,
            bundle,
            modality=modality,
            roi_lps_mm=roi_lps,
            threshold=threshold,
            min_size_mm3=min_size_mm3,
            exclude=existing,
            progress=progress,
            should_cancel=should_cancel,
            source=volume_node.GetName() or "volume",
        )
        outcome = AutoSegmentOutcome(messages=list(result.messages))
        for label, volume in enumerate(result.volumes_mm3, start=1):
            mask = (result.labels == label) & ~existing
            if not mask.any():
                continue
            name = self.unique_lesion_name(segmentation_node)
            outcome.segment_ids.append(
                add_mask_segment(segmentation_node, mask, volume_node, name, tags=dict(tags))
            )
            outcome.names.append(name)
            outcome.volumes_mm3.append(float(volume))
        if outcome.empty and not outcome.messages:
            outcome.messages.append("no lesion found")
        outcome.elapsed_s = time.perf_counter() - t0
        return outcome

    @staticmethod
    def points_from_markups(markups_node: Any) -> tuple[list[tuple[float, float, float]], list[str]]:
        """World (RAS) positions and labels of the defined control points of a point list."""
        if markups_node is None:
            raise InputError("No point list is selected")
        points, labels = [], []
        for i in range(markups_node.GetNumberOfControlPoints()):
            if hasattr(markups_node, "GetNthControlPointPositionStatus") and (
                markups_node.GetNthControlPointPositionStatus(i) != markups_node.PositionDefined
            ):
                continue
            pos = [0.0, 0.0, 0.0]
            markups_node.GetNthControlPointPositionWorld(i, pos)
            points.append((float(pos[0]), float(pos[1]), float(pos[2])))
            labels.append(markups_node.GetNthControlPointLabel(i))
        return points, labels

    # --- parenchyma ---------------------------------------------------------------------------------------
    @staticmethod
    def parenchyma_of(segmentation_node: Any) -> Any:
        """The parenchyma node recorded for a lesion segmentation (None if none)."""
        if segmentation_node is None:
            return None
        return segmentation_node.GetNodeReference(PARENCHYMA_REFERENCE)

    @staticmethod
    def set_parenchyma(segmentation_node: Any, parenchyma_node: Any) -> None:
        """Record ``parenchyma_node`` (or None) as the parenchyma of a lesion segmentation (saved in the scene)."""
        _require(segmentation_node, "vtkMRMLSegmentationNode", "lesion segmentation")
        segmentation_node.SetNodeReferenceID(
            PARENCHYMA_REFERENCE, parenchyma_node.GetID() if parenchyma_node is not None else None
        )

    def compute_parenchyma(
        self,
        volume_node: Any,
        segmentation_node: Any,
        *,
        node: Any = None,
        modality: str = "auto",
    ) -> Any:
        """The automatic parenchyma around the lesions into a one-segment segmentation node; return the node.

        The mask is the union, over the lesions, of ``RadTyperLib.regions.auto_parenchyma`` — exactly what
        the margin shells use when no parenchyma is given: in each lesion's neighbourhood (box + 10 mm + 5
        voxels) CT lung (−950…−300 HU, cleaned) when it surrounds the lesion, else non-air tissue; MR:
        intensity > ½ Otsu. Voxels of the lesions themselves are excluded. ``node`` (a segmentation node) is
        refilled; otherwise a new node is added. The node is recorded as the lesions' parenchyma.

        Raises:
            InputError: no volume/segmentation, no lesion inside the volume.
        """
        from RadTyperLib.io import guess_modality
        from RadTyperLib.regions import auto_parenchyma

        _require(volume_node, "vtkMRMLScalarVolumeNode", "input volume")
        _require(segmentation_node, "vtkMRMLSegmentationNode", "lesion segmentation")
        image = volume_to_sitk(volume_node)
        mod = guess_modality(image) if modality.lower() == "auto" else modality.upper()
        arr = sitk.GetArrayViewFromImage(image)
        labels = sitk.GetArrayFromImage(self.existing_labels(volume_node, segmentation_node, image))
        if not labels.any():
            raise InputError("Draw or segment the lesions first: the parenchyma is computed around them")
        spacing = image.GetSpacing()
        union = np.zeros(arr.shape, dtype=bool)
        for value in np.unique(labels[labels > 0]):
            mask = labels == value
            part, _method = auto_parenchyma(arr, spacing, mod, mask, lesion=str(value))
            union |= part
        union &= labels == 0
        if not union.any():
            raise InputError("No parenchyma was found around the lesions")
        scene = segmentation_node.GetScene()
        if node is None:
            node = scene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode",
                scene.GenerateUniqueName(f"{segmentation_node.GetName()} parenchyma"),
            )
        elif not node.IsA("vtkMRMLSegmentationNode"):
            raise InputError(f"'{node.GetName()}' is a {node.GetClassName()}, not a segmentation")
        node.GetSegmentation().RemoveAllSegments()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        add_mask_segment(node, union, volume_node, PARENCHYMA_SEGMENT, color=PARENCHYMA_COLOR)
        self.set_parenchyma(segmentation_node, node)
        return node


def _new_lesion_tags(site: str | None, source: str | None = None) -> dict[str, str]:
    """Segment tags of a lesion RadTyper adds: its site (checked, canonical name) and how it was made."""
    tags: dict[str, str] = {}
    if site is not None:
        from RadTyperLib.sites import normalize_site

        canonical = normalize_site(site, context="new lesion")
        if canonical:
            tags[SITE_TAG] = canonical
    if source:
        tags[SOURCE_TAG] = source
    return tags


def _model_given(model: Any) -> bool:
    """True when a U-Net model (a folder path or a loaded bundle) is configured."""
    return hasattr(model, "modality") or optional_path(model) is not None


@dataclass
class _UNetPointResult:
    mask_zyx: np.ndarray
    skipped: str = ""
    qc: dict[str, Any] = field(default_factory=dict)


def _unet_at_point(
    bundle: Any,
    image: sitk.Image,
    point_lps: Sequence[float],
    occupied: np.ndarray,
    modality: str,
    lesion: str,
) -> _UNetPointResult:
    """The U-Net lesion component at one clicked point, outside ``occupied`` (empty mask + reason if none)."""
    from RadTyperLib.segmentation.unet import segment_lesions

    result = segment_lesions(
        image, bundle, modality=modality, points_lps_mm=[point_lps], exclude=occupied, source=lesion
    )
    if result.empty:
        reason = "; ".join(result.messages) or "the U-Net found no lesion at this point"
        return _UNetPointResult(np.zeros(occupied.shape, dtype=bool), skipped=reason)
    return _UNetPointResult(
        result.labels == 1,
        qc={"unet_probability_threshold": result.threshold, "unet_volume_mm3": result.volumes_mm3[0]},
    )
