"""Saved SPHARM coefficients: reconstruct a lesion at any degree without refitting (issue 15).

A coefficients file (``.npz``, written by ``radtyper features --coefficients FILE.npz`` or by the cache) holds,
per lesion, the physical-frame coefficients ``((L+1)², 3)`` complex (LPS mm, degree 0 carries the position,
the same as :attr:`RadTyperLib.shape.ShapeResult.coefficients_physical`), the face orientation flag, the mean
reconstruction errors per degree (mm) and the lesion's **mask checksum** (:func:`mask_checksum`): sha256 of the
lesion's binary mask cropped to its bounding box, the box's physical position, spacing and direction, the
lesion name and the shape pipeline version (RadTyper's version + a hash of the ``shape`` package's source). A file or cache entry is used
only when the checksum of the mask being reconstructed matches, so stale coefficients are never shown.

Cache: ``radtyper reconstruct`` looks up ``<cache>/<checksum>.npz`` (cache folder: ``--cache-dir``, else
``$RADTYPER_CACHE_DIR``, else ``~/.cache/radtyper/coefficients``) and stores the fit there after computing it;
``--no-cache`` disables both.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import InputError

#: ``format`` entry of a coefficients file.
COEFFICIENTS_FORMAT = "radtyper-spharm-coefficients"
#: Version of the file layout.
COEFFICIENTS_VERSION = 1


@dataclass
class LesionCoefficients:
    """What a reconstruction needs: physical-frame coefficients and how to orient the icosphere's faces."""

    lesion: str
    checksum: str
    coefficients_physical: np.ndarray  # ((L+1)², 3) complex, LPS mm
    orientation_flip: bool
    recon_errors_mm: np.ndarray  # (15,) mean surface error per degree 1..15 (mm)

    @property
    def degree(self) -> int:
        """Highest degree L stored."""
        return round(np.sqrt(len(self.coefficients_physical))) - 1

    def reconstruct(self, degree: int) -> tuple[np.ndarray, np.ndarray]:
        """(vertices (2562, 3) LPS mm, faces (5120, 3)) of the surface truncated at ``degree`` (1..L)."""
        from .shape import RECON_SUBDIVISIONS, spharm

        if not 1 <= int(degree) <= self.degree:
            raise ValueError(f"degree must be in 1..{self.degree}, got {degree}")
        sphere, faces = spharm.icosphere(RECON_SUBDIVISIONS)
        verts = spharm.evaluate_at(self.coefficients_physical, sphere, int(degree))
        if self.orientation_flip:
            faces = faces[:, ::-1]
        return verts, np.ascontiguousarray(faces)

    @classmethod
    def from_shape(cls, shape, checksum: str) -> LesionCoefficients:
        """From a :class:`RadTyperLib.shape.ShapeResult`."""
        from .shape import QC_RECON_NAMES

        return cls(
            lesion=shape.lesion,
            checksum=checksum,
            coefficients_physical=np.asarray(shape.coefficients_physical),
            orientation_flip=bool(shape._orientation_flip),
            recon_errors_mm=np.array([float(shape.qc.get(n, np.nan)) for n in QC_RECON_NAMES]),
        )


@lru_cache(maxsize=1)
def pipeline_version() -> str:
    """RadTyper's version and a short hash of the shape package's source (changes whenever the fit can)."""
    from . import __version__

    h = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parent / "shape").glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


def mask_checksum(mask_zyx: np.ndarray, reference, lesion: str) -> str:
    """sha256 of the lesion's voxels and where they are, its name and the pipeline version.

    The mask is cropped to its bounding box first and located by the physical position (LPS mm) of the box's
    first voxel, with spacing and direction of ``reference`` (SimpleITK image of the mask's grid): the same
    lesion on a cropped grid (a Slicer ``.seg.nrrd``) or on the whole image grid gets the same checksum.
    """
    m = np.asarray(mask_zyx) != 0
    h = hashlib.sha256()
    nz = np.nonzero(m)
    if len(nz[0]):
        lo = np.array([int(a.min()) for a in nz])
        hi = np.array([int(a.max()) for a in nz]) + 1
        m = m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        corner = reference.TransformIndexToPhysicalPoint([int(v) for v in lo[::-1]])
    else:
        corner = (0.0, 0.0, 0.0)
    h.update(repr(m.shape).encode())
    h.update(np.ascontiguousarray(m, dtype=np.uint8).tobytes())
    geometry = (
        tuple(round(v, 6) for v in reference.GetSpacing()),
        tuple(round(v, 6) for v in reference.GetDirection()),
        tuple(round(v, 4) for v in corner),
    )
    h.update(repr(geometry).encode())
    h.update(lesion.encode())
    h.update(pipeline_version().encode())
    return h.hexdigest()


# --- files ------------------------------------------------------------------------------------------------
def save_coefficients(path: str | os.PathLike[str], records: list[LesionCoefficients]) -> Path:
    """Write the coefficients of several lesions to one ``.npz`` (atomically)."""
    from .io import atomic_path

    out = Path(path)
    if out.suffix.lower() != ".npz":
        raise InputError(f"{out}: the coefficients file must end with .npz")
    arrays: dict[str, np.ndarray] = {
        "format": np.array(COEFFICIENTS_FORMAT),
        "version": np.array(COEFFICIENTS_VERSION),
        "pipeline": np.array(pipeline_version()),
        "lesions": np.array([r.lesion for r in records], dtype=str),
    }
    for i, r in enumerate(records):
        arrays[f"l{i}_checksum"] = np.array(r.checksum)
        arrays[f"l{i}_coefficients"] = np.asarray(r.coefficients_physical, complex)
        arrays[f"l{i}_flip"] = np.array(bool(r.orientation_flip))
        arrays[f"l{i}_recon_errors_mm"] = np.asarray(r.recon_errors_mm, float)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return out


def load_coefficients(path: str | os.PathLike[str]) -> dict[str, LesionCoefficients]:
    """``{lesion name: LesionCoefficients}`` of a coefficients file; InputError naming the file if unusable."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: coefficients file not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            if str(z["format"]) != COEFFICIENTS_FORMAT:
                raise InputError(f"{p}: not a RadTyper coefficients file")
            if int(z["version"]) > COEFFICIENTS_VERSION:
                raise InputError(
                    f"{p}: coefficients file version {int(z['version'])} is newer than this RadTyper"
                )
            out = {}
            for i, name in enumerate(z["lesions"].tolist()):
                out[name] = LesionCoefficients(
                    lesion=name,
                    checksum=str(z[f"l{i}_checksum"]),
                    coefficients_physical=z[f"l{i}_coefficients"],
                    orientation_flip=bool(z[f"l{i}_flip"]),
                    recon_errors_mm=z[f"l{i}_recon_errors_mm"],
                )
            return out
    except InputError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{p}: cannot read the coefficients file ({exc})") from None


# --- cache ------------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$RADTYPER_CACHE_DIR`` or ``~/.cache/radtyper/coefficients``."""
    env = os.environ.get("RADTYPER_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "radtyper" / "coefficients"


def cache_lookup(cache_dir: Path, checksum: str) -> LesionCoefficients | None:
    """The cached coefficients of this checksum, or None (also when the entry is unreadable)."""
    path = Path(cache_dir) / f"{checksum}.npz"
    if not path.is_file():
        return None
    try:
        records = load_coefficients(path)
    except InputError:
        return None
    rec = next(iter(records.values()), None)
    return rec if rec is not None and rec.checksum == checksum else None


def cache_store(cache_dir: Path, record: LesionCoefficients) -> Path | None:
    """Store one lesion's coefficients under its checksum; None when the folder is not writable."""
    try:
        return save_coefficients(Path(cache_dir) / f"{record.checksum}.npz", [record])
    except OSError:
        return None
