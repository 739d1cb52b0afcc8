"""The patient data model: one image, its lesions (one integer label each) and an optional parenchyma mask.

Geometry follows SimpleITK/ITK: physical coordinates in millimetres in the LPS frame; numpy arrays obtained
with ``sitk.GetArrayViewFromImage`` are indexed ``[z, y, x]`` (= ``[k, j, i]``). The MRML bridge converts to
and from Slicer's RAS frame.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .errors import InputError, LesionError
from .sites import normalize_site

#: Relative tolerance when comparing spacing / origin / direction of two images.
GEOMETRY_TOLERANCE = 1e-4
#: Phase name of the image when no name is given (a single ``--image IMG``).
DEFAULT_PHASE = "image"
#: Phase names: letters, digits and ``-`` (``_`` separates the parts of the ``iith_*`` column names).
PHASE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,31}$")


def check_phase_name(name: str) -> str:
    """Return ``name`` when it is a valid phase name (:data:`PHASE_NAME`), else raise InputError."""
    if not isinstance(name, str) or not PHASE_NAME.match(name):
        raise InputError(
            f"phase name {name!r}: use a letter then letters, digits or '-' (at most 32; no '_', e.g. pre, "
            "post1, t1-ce)"
        )
    return name


@dataclass(frozen=True)
class Lesion:
    """One lesion: its integer value in the patient's label map, a unique name and an anatomical site."""

    label: int
    name: str
    site: str = "unspecified"
    color: tuple[float, float, float] | None = None  # RGB in [0, 1], kept from Slicer segments

    def __post_init__(self) -> None:
        if int(self.label) != self.label or self.label <= 0:
            raise LesionError(self.name, f"label value must be a positive integer, got {self.label!r}")
        object.__setattr__(self, "site", normalize_site(self.site, context=f"lesion '{self.name}'"))


@dataclass
class Patient:
    """A patient: ``image`` + integer ``labels`` map (same grid; 0 = background) + ``lesions``.

    ``parenchyma`` (optional) is a binary mask on the same grid: the organ tissue around the lesions
    (e.g. lung) used by the margin shells of the regional-variation features.
    """

    image: sitk.Image
    labels: sitk.Image
    lesions: list[Lesion]
    parenchyma: sitk.Image | None = None
    patient_id: str = "patient"
    modality: str = "CT"
    sources: dict[str, str] = field(default_factory=dict)  # role -> file name, for messages
    #: Further co-registered images of the patient (e.g. DCE-MRI post-contrast phases) by phase name, on
    #: ``image``'s voxel grid (refused otherwise: RadTyper never resamples silently). ``image`` is the
    #: reference phase, named ``image_phase``; shape, regions and ``radiomics_*`` use it alone, the
    #: multi-phase IITH features (:mod:`RadTyperLib.iith_features`) use every phase.
    phases: dict[str, sitk.Image] = field(default_factory=dict)
    image_phase: str = DEFAULT_PHASE
    #: Modality of each phase in ``phases`` (default: the patient's ``modality``).
    phase_modalities: dict[str, str] = field(default_factory=dict)
    _nonfinite: int | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.modality = self.modality.upper()
        check_same_geometry(
            self.image,
            self.labels,
            self.sources.get("image", "image"),
            self.sources.get("lesions", "lesions"),
        )
        check_phase_name(self.image_phase)
        for name, img in self.phases.items():
            check_phase_name(name)
            if name == self.image_phase:
                raise InputError(f"phase '{name}' given twice (it is also the first image's phase)")
            where = self.sources.get(f"image_{name}", f"phase '{name}'")
            try:
                check_same_geometry(self.image, img, self.sources.get("image", "image"), where)
            except InputError as exc:
                raise InputError(
                    f"phase '{name}': {str(exc).replace('(mask and image must share one voxel grid)', '')}"
                    f"(all phases must be co-registered on the first image's voxel grid; RadTyper does not "
                    "resample: resample or crop the phase onto that grid first)"
                ) from None
        self.phase_modalities = {
            n: str(self.phase_modalities.get(n, self.modality)).upper() for n in self.phases
        }
        if self.parenchyma is not None:
            check_same_geometry(
                self.image,
                self.parenchyma,
                self.sources.get("image", "image"),
                self.sources.get("parenchyma", "parenchyma"),
            )
        names = [les.name for les in self.lesions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"duplicate lesion names: {', '.join(dupes)}")
        labels = [les.label for les in self.lesions]
        if len(set(labels)) != len(labels):
            raise InputError("two lesions share one label value")
        counts = self.voxel_counts()
        for les in self.lesions:
            if counts.get(les.label, 0) == 0:
                raise LesionError(les.name, f"empty mask (no voxel has label {les.label})")
        from .checks import check_label_count, check_nested

        source = self.sources.get("lesions", "lesions")
        check_label_count(len(counts), source)
        check_nested(self.label_array(), source, {les.label: les.name for les in self.lesions})

    # --- geometry -------------------------------------------------------------------------------------
    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (x, y, z) in mm."""
        return tuple(self.image.GetSpacing())  # type: ignore[return-value]

    @property
    def origin(self) -> tuple[float, float, float]:
        """Physical position (LPS, mm) of voxel (0, 0, 0)."""
        return tuple(self.image.GetOrigin())  # type: ignore[return-value]

    @property
    def direction(self) -> np.ndarray:
        """3×3 direction matrix; column i is the LPS direction of image axis i."""
        return np.array(self.image.GetDirection(), dtype=float).reshape(3, 3)

    # --- phases ---------------------------------------------------------------------------------------
    def all_phases(self) -> dict[str, sitk.Image]:
        """Every image by phase name, the reference ``image`` first."""
        return {self.image_phase: self.image, **self.phases}

    def phase_modality(self, phase: str) -> str:
        """Modality of one phase (the patient's for the reference image)."""
        return self.modality if phase == self.image_phase else self.phase_modalities[phase]

    # --- arrays ---------------------------------------------------------------------------------------
    def image_array(self) -> np.ndarray:
        """Image voxels as a read-only ``[z, y, x]`` view."""
        return sitk.GetArrayViewFromImage(self.image)

    def label_array(self) -> np.ndarray:
        """Lesion label map as a read-only ``[z, y, x]`` view."""
        return sitk.GetArrayViewFromImage(self.labels)

    def parenchyma_array(self) -> np.ndarray | None:
        """Parenchyma mask ``[z, y, x]`` as bool, or None."""
        if self.parenchyma is None:
            return None
        return sitk.GetArrayViewFromImage(self.parenchyma) > 0

    def lesion(self, key: str | int) -> Lesion:
        """The lesion with this name or label value."""
        for les in self.lesions:
            if les.name == key or (isinstance(key, int | np.integer) and les.label == key):
                return les
        if isinstance(key, str) and key.isdigit():
            return self.lesion(int(key))
        raise InputError(
            f"no lesion '{key}' in {self.sources.get('lesions', 'the lesion mask')}; "
            f"lesions are: {', '.join(les.name for les in self.lesions)}"
        )

    def lesion_mask(self, lesion: Lesion | str | int) -> np.ndarray:
        """Boolean ``[z, y, x]`` mask of one lesion."""
        les = lesion if isinstance(lesion, Lesion) else self.lesion(lesion)
        return self.label_array() == les.label

    def voxel_counts(self) -> dict[int, int]:
        """Number of voxels per label value (background excluded)."""
        values, counts = np.unique(self.label_array(), return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True) if v != 0}

    def lesion_volume_mm3(self, lesion: Lesion | str | int) -> float:
        """Lesion volume in mm³ (voxel count × voxel volume)."""
        les = lesion if isinstance(lesion, Lesion) else self.lesion(lesion)
        return self.voxel_counts().get(les.label, 0) * float(np.prod(self.spacing))

    def nonfinite_voxels(self) -> int:
        """Number of NaN / infinite image voxels (computed once)."""
        if self._nonfinite is None:
            from .checks import nonfinite_count

            self._nonfinite = nonfinite_count(self.image_array())
        return self._nonfinite

    def lesion_centroid_mm(self, lesion: Lesion | str | int) -> np.ndarray:
        """Centre of mass of a lesion in physical LPS coordinates (mm)."""
        return physical_centroid(self.lesion_mask(lesion), self.image)


def physical_centroid(mask_zyx: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """Centre of mass (LPS, mm) of a boolean ``[z, y, x]`` mask on ``reference``'s grid."""
    idx = np.argwhere(mask_zyx)
    if idx.size == 0:
        return np.full(3, np.nan)
    ijk = idx[:, ::-1].mean(axis=0)  # x, y, z continuous index
    return index_to_physical(ijk, reference)


def index_to_physical(ijk: np.ndarray | Sequence[float], reference: sitk.Image) -> np.ndarray:
    """Continuous index (x, y, z) → physical LPS point (mm); vectorised over rows."""
    ijk = np.asarray(ijk, dtype=float)
    d = np.array(reference.GetDirection(), dtype=float).reshape(3, 3)
    s = np.array(reference.GetSpacing(), dtype=float)
    o = np.array(reference.GetOrigin(), dtype=float)
    return o + (ijk * s) @ d.T


def check_same_geometry(ref: sitk.Image, other: sitk.Image, ref_name: str, other_name: str) -> None:
    """Raise InputError unless ``other`` lies on exactly ``ref``'s voxel grid."""
    if ref.GetDimension() != 3 or other.GetDimension() != 3:
        raise InputError(
            f"{other_name}: expected 3-D images, got {ref.GetDimension()}-D {ref_name} and "
            f"{other.GetDimension()}-D {other_name}"
        )
    if ref.GetSize() != other.GetSize():
        raise InputError(
            f"{other_name}: size {other.GetSize()} differs from {ref_name} size {ref.GetSize()} "
            "(mask and image must share one voxel grid)"
        )
    tol = GEOMETRY_TOLERANCE * max(1.0, float(np.max(ref.GetSpacing())))
    for what, a, b in (
        ("spacing", ref.GetSpacing(), other.GetSpacing()),
        ("origin", ref.GetOrigin(), other.GetOrigin()),
        ("direction", ref.GetDirection(), other.GetDirection()),
    ):
        if not np.allclose(a, b, atol=tol, rtol=0):
            raise InputError(
                f"{other_name}: {what} {tuple(round(x, 4) for x in b)} differs from {ref_name} "
                f"{what} {tuple(round(x, 4) for x in a)} (mask and image must share one voxel grid)"
            )


def labels_from_masks(masks: Iterable[np.ndarray], reference: sitk.Image) -> sitk.Image:
    """Combine boolean ``[z, y, x]`` masks into one label map (mask i → label i+1) on ``reference``'s grid.

    Raises:
        InputError: two masks overlap (each voxel belongs to at most one lesion).
    """
    out: np.ndarray | None = None
    for i, m in enumerate(masks, start=1):
        m = np.asarray(m, dtype=bool)
        if out is None:
            out = np.zeros(m.shape, dtype=np.uint16)
        overlap = out[m]
        if np.any(overlap):
            raise InputError(f"mask {i} overlaps mask {int(overlap[overlap > 0][0])}")
        out[m] = i
    if out is None:
        out = np.zeros(sitk.GetArrayViewFromImage(reference).shape, dtype=np.uint16)
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(reference)
    return img
