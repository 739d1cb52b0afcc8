"""Reading and writing patients: images (NRRD, NIfTI, MHA), lesion label maps, Slicer ``.seg.nrrd``, site CSVs.

Every reader checks its input and raises :class:`~RadTyperLib.errors.InputError` with the file name and the
problem in one line. Writers are atomic: a file appears complete or not at all.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .patient import DEFAULT_PHASE, Lesion, Patient, check_same_geometry
from .patient_id import default_patient_id
from .sites import normalize_site

IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
SEG_SUFFIX = ".seg.nrrd"
SITE_TAG = "RadTyper.Site"

#: Colours given to lesions that have none (RGB in [0, 1]); cycled.
DEFAULT_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.90, 0.30, 0.24),
    (0.20, 0.60, 0.86),
    (0.18, 0.80, 0.44),
    (0.95, 0.77, 0.06),
    (0.61, 0.35, 0.71),
    (0.90, 0.49, 0.13),
    (0.10, 0.74, 0.61),
    (0.93, 0.44, 0.69),
    (0.52, 0.57, 0.60),
    (0.55, 0.27, 0.07),
)


def default_color(index: int) -> tuple[float, float, float]:
    """The ``index``-th colour of the default lesion palette."""
    return DEFAULT_COLORS[index % len(DEFAULT_COLORS)]


# --- helpers ----------------------------------------------------------------------------------------------
def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a file")
    return p


def is_seg_nrrd(path: str | os.PathLike[str]) -> bool:
    """True for Slicer segmentation files (``*.seg.nrrd``)."""
    return str(path).lower().endswith(SEG_SUFFIX)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_model_json(
    directory: str | os.PathLike[str],
    *,
    json_name: str,
    format_name: str,
    format_version: int,
    what: str,
    hint: str = "",
) -> tuple[Path, dict]:
    """The validated description file of a versioned model folder: ``(its path, its content)``.

    Raises:
        InputError: no folder, no ``json_name`` in it, not JSON, another format name or version (``hint`` is
            appended to the version message: what to do).
    """
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"{d}: {what} folder not found")
    mj = d / json_name
    if not mj.is_file():
        raise InputError(f"{d}: not a {what} ({json_name} missing)")
    try:
        meta = json.loads(mj.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{mj}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise InputError(f"{mj}: format is {got!r}, expected {format_name!r} (not a {what})")
    if meta.get("format_version") != format_version:
        raise InputError(
            f"{mj}: format version {meta.get('format_version')!r} is not supported (this RadTyper reads "
            f"version {format_version}){hint}"
        )
    return mj, meta


def check_output_path(path: str | os.PathLike[str], kind: str = "file") -> Path:
    """Refuse, before any computation, an output that cannot be written: ``kind`` is "file" or "dir".

    Raises:
        InputError: a parent of ``path`` is a file, ``path`` is a folder where a file is expected (or the
            reverse), or the nearest existing parent folder is not writable.
    """
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise InputError(f"{p}: is a folder; --out must name a file")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise InputError(f"{p}: is a file; --out must name a folder")
    parent = p.parent if kind == "file" or not p.exists() else p
    while True:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{p}: cannot write there: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(f"{p}: cannot write there: folder {parent} is not writable")
            return p
        if parent.parent == parent:
            return p
        parent = parent.parent


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """All-or-nothing output folder: yield an empty staging folder beside ``out_dir``; on success its files
    are moved into ``out_dir`` (created; files of the same name replaced), on failure it is removed and
    ``out_dir`` is left as it was."""
    import shutil

    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.stage-", dir=target.parent))
    try:
        yield stage
        target.mkdir(exist_ok=True)
        for src in sorted(stage.rglob("*")):
            dst = target / src.relative_to(stage)
            if src.is_dir():
                dst.mkdir(exist_ok=True)
            else:
                os.replace(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_rows_csv(path: str | os.PathLike[str], columns: list[str], rows: list[dict]) -> None:
    """Write dict rows as CSV (atomically) exactly as ``pandas.DataFrame(rows)[columns].to_csv(path,
    index=False, float_format="%.8g")`` would, without importing pandas (start-up time of ``radtyper features``).

    A column whose values are all integers (no missing value) is written as integers; any other number as
    ``%.8g``; NaN / None / a missing key as an empty field; strings as they are (quoted when needed).
    """
    import math
    import numbers

    def integral(v: object) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    int_columns = {c for c in columns if rows and all(c in r and integral(r[c]) for r in rows)}

    def cell(c: str, v: object) -> object:
        if v is None or (isinstance(v, numbers.Real) and not integral(v) and math.isnan(float(v))):
            return ""
        if isinstance(v, bool):
            return str(v)
        if c in int_columns:
            return str(int(v))  # type: ignore[call-overload]
        if isinstance(v, numbers.Real):
            return f"{float(v):.8g}"
        return v

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([cell(c, r.get(c)) for c in columns])


# --- images -----------------------------------------------------------------------------------------------
def read_image(path: str | os.PathLike[str]) -> sitk.Image:
    """Read a 3-D image (NRRD, NIfTI, MHA); the file name is in every error message."""
    p = _existing(path)
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown format"
        raise InputError(f"{p}: cannot read as an image ({reason[:160]})") from None
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() == 4:
        raise InputError(
            f"{p}: 4-D image ({img.GetSize()[3]} volumes of {img.GetSize()[0]}×{img.GetSize()[1]}×"
            f"{img.GetSize()[2]}, e.g. a DCE or diffusion series); RadTyper analyses one 3-D volume: "
            "extract the phase to analyse first"
        )
    if img.GetDimension() != 3:
        raise InputError(f"{p}: expected a 3-D image, got {img.GetDimension()}-D")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{p}: expected a scalar image, got {img.GetNumberOfComponentsPerPixel()} components per voxel "
            "(a colour, vector or multi-phase image); RadTyper analyses one scalar 3-D volume"
        )
    return img


def write_image(image: sitk.Image, path: str | os.PathLike[str]) -> Path:
    """Write an image atomically (format from the suffix, compressed)."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return Path(path)


def _as_label_image(img: sitk.Image, source: str) -> sitk.Image:
    """Check that ``img`` holds non-negative integers and return it as UInt16/UInt32."""
    arr = sitk.GetArrayViewFromImage(img)
    if not np.issubdtype(arr.dtype, np.integer):
        finite = np.isfinite(arr)
        if not finite.all():
            raise InputError(f"{source}: the mask contains NaN or infinite values")
        if np.any(arr != np.round(arr)):
            raise InputError(
                f"{source}: non-integer mask values (e.g. {float(arr[arr != np.round(arr)].flat[0]):g}); "
                "a lesion mask must hold integer labels (0 = background); threshold a probability map first"
            )
    if arr.size and arr.min() < 0:
        raise InputError(f"{source}: negative label value {arr.min()} in the mask")
    top = int(arr.max()) if arr.size else 0
    pixel = sitk.sitkUInt16 if top <= np.iinfo(np.uint16).max else sitk.sitkUInt32
    return sitk.Cast(img, pixel)


def read_label_map(path: str | os.PathLike[str]) -> tuple[sitk.Image, list[Lesion]]:
    """Read an integer label map: each non-zero value is one lesion named ``lesion_<value>``."""
    p = _existing(path)
    labels = _as_label_image(read_image(p), str(p))
    values = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels)) if v != 0]
    if not values:
        raise InputError(f"{p}: empty mask (no lesion voxel)")
    from .checks import check_label_count

    check_label_count(len(values), str(p))
    lesions = [Lesion(label=v, name=f"lesion_{v}", color=default_color(i)) for i, v in enumerate(values)]
    return labels, lesions


# --- Slicer .seg.nrrd -------------------------------------------------------------------------------------
def _parse_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in str(text).split("|"):
        if ":" in item:
            key, value = item.split(":", 1)
            tags[key.strip()] = value.strip()
    return tags


def _nrrd_geometry(header: dict, spatial_axes: Sequence[int], source: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (axis vectors as rows, in LPS mm; origin in LPS mm) from a NRRD header."""
    space = str(header.get("space", "left-posterior-superior")).lower()
    dirs = np.asarray(header.get("space directions"), dtype=float)
    if dirs.ndim != 2:
        raise InputError(f"{source}: missing 'space directions' in the NRRD header")
    dirs = dirs[list(spatial_axes)] if dirs.shape[0] > 3 else dirs
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=float)
    if space in ("right-anterior-superior", "ras"):
        flip = np.diag([-1.0, -1.0, 1.0])
        dirs = dirs @ flip
        origin = flip @ origin
    elif space not in ("left-posterior-superior", "lps"):
        raise InputError(f"{source}: unsupported NRRD space '{space}'")
    return dirs, origin


def read_seg_nrrd(path: str | os.PathLike[str]) -> tuple[sitk.Image, list[Lesion]]:
    """Read a Slicer segmentation (``.seg.nrrd``): one lesion per segment, names, colours and sites kept.

    Handles single-layer (3-D) and multi-layer (4-D, overlapping segments stored in layers) files and the
    pre-5.0 layout (one layer per segment, no label values). The site is read from the segment tag
    ``RadTyper.Site``. Overlapping segments are refused: each voxel must belong to at most one lesion.
    """
    import nrrd  # pynrrd, pure Python

    p = _existing(path)
    try:
        data, header = nrrd.read(str(p))
    except Exception as exc:  # pynrrd raises several exception types for malformed headers
        raise InputError(f"{p}: cannot read as a segmentation ({exc})") from None
    if data.ndim == 3:
        layers = data[np.newaxis]
        spatial_axes = [0, 1, 2]
    elif data.ndim == 4:
        layers = data
        spatial_axes = [1, 2, 3]
    else:
        raise InputError(f"{p}: expected a 3-D or 4-D segmentation, got {data.ndim}-D")
    dirs, origin = _nrrd_geometry(header, spatial_axes, str(p))

    n_segments = 0
    while f"Segment{n_segments}_ID" in header or f"Segment{n_segments}_Name" in header:
        n_segments += 1
    if n_segments == 0:
        raise InputError(f"{p}: no segment in the file")

    shape_xyz = layers.shape[1:]
    out = np.zeros(shape_xyz, dtype=np.uint16)
    lesions: list[Lesion] = []
    for i in range(n_segments):
        name = str(header.get(f"Segment{i}_Name", f"Segment_{i + 1}")).strip()
        layer = int(header.get(f"Segment{i}_Layer", i if layers.shape[0] > 1 else 0))
        value = int(header.get(f"Segment{i}_LabelValue", 1))
        color_text = header.get(f"Segment{i}_Color")
        color = tuple(float(c) for c in str(color_text).split()[:3]) if color_text else default_color(i)
        site = _parse_tags(header.get(f"Segment{i}_Tags", "")).get(SITE_TAG, "unspecified")
        if layer >= layers.shape[0]:
            raise InputError(f"{p}: segment '{name}' refers to missing layer {layer}")
        voxels = layers[layer] == value
        clash = out[voxels]
        if np.any(clash):
            other = lesions[int(clash[clash > 0][0]) - 1].name
            raise InputError(f"{p}: segments '{other}' and '{name}' overlap; each voxel must be one lesion")
        out[voxels] = i + 1
        site_checked = normalize_site(site, context=f"{p}: segment '{name}'")
        lesions.append(Lesion(label=i + 1, name=name, site=site_checked, color=color))  # type: ignore[arg-type]

    img = sitk.GetImageFromArray(np.ascontiguousarray(out.transpose(2, 1, 0)))  # (x,y,z) -> [z,y,x]
    spacing = np.linalg.norm(dirs, axis=1)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection(tuple(float(v) for v in (dirs / spacing[:, None]).T.ravel()))
    return img, lesions


def seg_nrrd_fields(labels: sitk.Image, lesions: Sequence[Lesion]) -> dict[str, str]:
    """The ``Segmentation_*`` and ``Segment<i>_*`` header fields of a one-layer Slicer ``.seg.nrrd``: names,
    colours, label values, extents (voxel index ranges) and ``RadTyper.Site`` tags of ``lesions``."""
    arr_zyx = sitk.GetArrayViewFromImage(labels)
    fields = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    for i, les in enumerate(lesions):
        idx = np.argwhere(arr_zyx == les.label)
        if idx.size:
            lo, hi = idx.min(axis=0)[::-1], idx.max(axis=0)[::-1]
            extent = " ".join(f"{a} {b}" for a, b in zip(lo, hi, strict=True))
        else:
            extent = "0 -1 0 -1 0 -1"
        color = les.color or default_color(i)
        fields.update(
            {
                f"Segment{i}_ID": f"Segment_{les.label}",
                f"Segment{i}_Name": les.name,
                f"Segment{i}_NameAutoGenerated": "0",
                f"Segment{i}_Color": " ".join(f"{c:.6g}" for c in color),
                f"Segment{i}_ColorAutoGenerated": "0",
                f"Segment{i}_LabelValue": str(les.label),
                f"Segment{i}_Layer": "0",
                f"Segment{i}_Extent": extent,
                f"Segment{i}_Tags": f"{SITE_TAG}:{les.site}|",
            }
        )
    return fields


def write_seg_nrrd(path: str | os.PathLike[str], labels: sitk.Image, lesions: Sequence[Lesion]) -> Path:
    """Write lesions as a Slicer ``.seg.nrrd`` (one layer; names, colours and ``RadTyper.Site`` tags)."""
    import nrrd

    arr_zyx = sitk.GetArrayViewFromImage(labels)
    data = np.ascontiguousarray(np.asarray(arr_zyx, dtype=np.uint8 if len(lesions) < 256 else np.uint16))
    data = data.transpose(2, 1, 0)  # [z,y,x] -> (x,y,z) as NRRD/Fortran order expects
    direction = np.array(labels.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.array(labels.GetSpacing(), dtype=float)
    header: dict[str, object] = {
        "space": "left-posterior-superior",
        "space directions": (direction * spacing).T,
        "space origin": np.array(labels.GetOrigin(), dtype=float),
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
        **seg_nrrd_fields(labels, lesions),
    }
    with atomic_path(path) as tmp:
        nrrd.write(str(tmp), data, header)
    return Path(path)


# --- lesions and sites ------------------------------------------------------------------------------------
def read_lesions(path: str | os.PathLike[str]) -> tuple[sitk.Image, list[Lesion]]:
    """Read lesions from a ``.seg.nrrd`` or an integer label map (NRRD/NIfTI/MHA)."""
    return read_seg_nrrd(path) if is_seg_nrrd(path) else read_label_map(path)


def read_sites_csv(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a lesion-site table: CSV with columns ``lesion,site`` (lesion = name or label value)."""
    p = _existing(path)
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "lesion" not in fields or "site" not in fields:
            raise InputError(f"{p}: expected CSV columns 'lesion,site', found {', '.join(fields) or 'none'}")
        sites: dict[str, str] = {}
        for row_no, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            lesion = row["lesion"]
            if not lesion:
                raise InputError(f"{p}, line {row_no}: empty lesion name")
            if lesion in sites:
                raise InputError(f"{p}, line {row_no}: lesion '{lesion}' listed twice")
            sites[lesion] = normalize_site(row["site"], context=f"{p}, line {row_no}, lesion '{lesion}'")
    return sites


def apply_sites(lesions: Sequence[Lesion], sites: dict[str, str], source: str = "sites") -> list[Lesion]:
    """Return lesions with sites from ``sites`` (keyed by lesion name or label value).

    Raises:
        InputError: the table names a lesion that is not in the mask.
    """
    by_key = {les.name: les for les in lesions} | {str(les.label): les for les in lesions}
    unknown = [k for k in sites if k not in by_key]
    if unknown:
        raise InputError(
            f"{source}: lesion(s) {', '.join(unknown)} not in the mask; lesions are: "
            f"{', '.join(les.name for les in lesions)}"
        )
    out = []
    for les in lesions:
        site = sites.get(les.name, sites.get(str(les.label), les.site))
        out.append(Lesion(label=les.label, name=les.name, site=site, color=les.color))
    return out


def write_sites_csv(path: str | os.PathLike[str], lesions: Sequence[Lesion]) -> Path:
    """Write the ``lesion,site`` table of these lesions (atomic)."""
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["lesion", "site"])
            for les in lesions:
                writer.writerow([les.name, les.site])
    return Path(path)


# --- patients ---------------------------------------------------------------------------------------------
def _onto_image_grid(labels: sitk.Image, image: sitk.Image, source: str, image_source: str) -> sitk.Image:
    """Place a cropped segmentation (Slicer writes only the segments' extent) onto the image grid.

    Only a lattice-aligned crop (same spacing and direction, origin on the image lattice) is accepted, so no
    voxel is interpolated; anything else is a geometry mismatch.
    """
    if labels.GetSize() == image.GetSize() and np.allclose(labels.GetOrigin(), image.GetOrigin(), atol=1e-4):
        check_same_geometry(image, labels, image_source, source)
        return labels
    same_lattice = np.allclose(labels.GetSpacing(), image.GetSpacing(), atol=1e-4) and np.allclose(
        labels.GetDirection(), image.GetDirection(), atol=1e-4
    )
    offset = np.array(image.TransformPhysicalPointToContinuousIndex(labels.GetOrigin()))
    if not same_lattice or not np.allclose(offset, np.round(offset), atol=1e-3):
        check_same_geometry(image, labels, image_source, source)  # raises with the precise difference
    offset_i = np.round(offset).astype(int)
    size = np.array(labels.GetSize())
    img_size = np.array(image.GetSize())
    arr = sitk.GetArrayViewFromImage(labels)
    out = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=arr.dtype)
    lo = np.maximum(offset_i, 0)
    hi = np.minimum(offset_i + size, img_size)
    if np.any(hi <= lo):
        raise InputError(f"{source}: the segmentation lies outside {image_source}")
    src_lo, src_hi = lo - offset_i, hi - offset_i
    kept = arr[src_lo[2] : src_hi[2], src_lo[1] : src_hi[1], src_lo[0] : src_hi[0]]
    if np.count_nonzero(kept) != np.count_nonzero(arr):
        raise InputError(f"{source}: part of the segmentation lies outside {image_source}")
    out[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]] = kept
    placed = sitk.GetImageFromArray(out)
    placed.CopyInformation(image)
    return placed


def guess_modality(image: sitk.Image) -> str:
    """Guess CT vs MR from intensities: CT when the 1st percentile is ≤ −500 (air or lung in HU)."""
    arr = sitk.GetArrayViewFromImage(image)
    sample = arr.ravel()[:: max(1, arr.size // 200_000)]
    if np.issubdtype(sample.dtype, np.floating):
        sample = sample[np.isfinite(sample)]  # NaN voxels (e.g. outside the field of view) do not count
    return "CT" if sample.size and np.percentile(sample, 1) <= -500 else "MR"


def load_patient(
    image: str | os.PathLike[str],
    lesions: str | os.PathLike[str],
    *,
    parenchyma: str | os.PathLike[str] | None = None,
    sites: str | os.PathLike[str] | None = None,
    patient_id: str | None = None,
    modality: str = "auto",
    phases: Mapping[str, str | os.PathLike[str]] | None = None,
    image_phase: str = DEFAULT_PHASE,
) -> Patient:
    """Load a patient from files: image, lesion mask or ``.seg.nrrd``, optional parenchyma mask and sites CSV.

    ``modality`` is "CT", "MR", "PET" or "auto" (guessed from intensities, see :func:`guess_modality`).
    ``phases`` maps further phase names to co-registered images on ``image``'s grid (``image`` is the
    phase ``image_phase``); with "auto" each phase's modality is guessed on its own.
    """
    img = read_image(image)
    labels, lesion_list = read_lesions(lesions)
    if is_seg_nrrd(lesions):  # Slicer stores only the segments' extent
        labels = _onto_image_grid(labels, img, str(lesions), str(image))
    else:
        check_same_geometry(img, labels, str(image), str(lesions))
    if sites is not None:
        lesion_list = apply_sites(lesion_list, read_sites_csv(sites), str(sites))
    paren = None
    if parenchyma is not None:
        paren_img = read_image(parenchyma)
        check_same_geometry(img, paren_img, str(image), str(parenchyma))
        paren = sitk.Cast(sitk.NotEqual(paren_img, 0), sitk.sitkUInt8)
    pid = patient_id or default_patient_id(image, img)
    mod = guess_modality(img) if modality.lower() == "auto" else modality.upper()
    extra = {str(k): read_image(v) for k, v in (phases or {}).items()}
    extra_mod = {k: (guess_modality(v) if modality.lower() == "auto" else mod) for k, v in extra.items()}
    return Patient(
        image=img,
        labels=labels,
        lesions=lesion_list,
        parenchyma=paren,
        patient_id=pid,
        modality=mod,
        sources={
            "image": str(image),
            "lesions": str(lesions),
            **({"parenchyma": str(parenchyma)} if parenchyma is not None else {}),
            **{f"image_{k}": str(v) for k, v in (phases or {}).items()},
        },
        phases=extra,
        image_phase=image_phase,
        phase_modalities=extra_mod,
    )


def write_patient(patient: Patient, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write a patient as ``image.nrrd``, ``lesions.seg.nrrd``, ``parenchyma.nrrd``, ``sites.csv`` and one
    ``image_<phase>.nrrd`` per further phase."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "image": write_image(patient.image, out / "image.nrrd"),
        "lesions": write_seg_nrrd(out / "lesions.seg.nrrd", patient.labels, patient.lesions),
        "sites": write_sites_csv(out / "sites.csv", patient.lesions),
    }
    if patient.parenchyma is not None:
        files["parenchyma"] = write_image(patient.parenchyma, out / "parenchyma.nrrd")
    for name, img in patient.phases.items():  # further co-registered phases (multi-phase IITH)
        files[f"image_{name}"] = write_image(img, out / f"image_{name}.nrrd")
    return files


# --- tables and JSON ----------------------------------------------------------------------------------
#: Identifier columns of RadTyper tables, always read as text (a patient "001" stays "001").
ID_COLUMNS: tuple[str, ...] = ("lesion", "patient", "site", "modality", "cancer_type")
#: Columns renamed since earlier RadTyper versions (old name → new name). Feature tables and subtype model
#: bundles written with an old name are read with the new one (:func:`rename_legacy_columns`), so older
#: cohort tables and the shipped default model keep working. ``burden_axis_*_mm`` were semi-axes, easily
#: taken for diameters.
RENAMED_COLUMNS: dict[str, str] = {
    "burden_axis_1_mm": "burden_semiaxis_1_mm",
    "burden_axis_2_mm": "burden_semiaxis_2_mm",
    "burden_axis_3_mm": "burden_semiaxis_3_mm",
}


def current_column_name(name: str) -> str:
    """The current name of a (possibly renamed, see :data:`RENAMED_COLUMNS`) column."""
    return RENAMED_COLUMNS.get(name, name)


def rename_legacy_columns(table):
    """``table`` with old column names (:data:`RENAMED_COLUMNS`) renamed in place, when the new is absent."""
    old = {o: n for o, n in RENAMED_COLUMNS.items() if o in table.columns and n not in table.columns}
    if old:
        table.rename(columns=old, inplace=True)
    return table


def read_feature_table(source):
    """A per-lesion feature table from a DataFrame (copied) or a CSV file (id columns as text, exact floats).

    Raises:
        InputError: the file is missing, not a readable CSV, or has no row.
    """
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return rename_legacy_columns(source.copy())
    path = Path(source)
    if not path.is_file():
        raise InputError(f"feature table not found: {path}")
    try:
        table = pd.read_csv(path, dtype=dict.fromkeys(ID_COLUMNS, str), float_precision="round_trip")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name}: not a readable CSV table ({exc})") from exc
    if table.empty:
        raise InputError(f"{path.name}: the table has no row")
    return rename_legacy_columns(table)


def write_csv(frame, path: str | os.PathLike[str], **to_csv_kwargs) -> Path:
    """Write a DataFrame as CSV atomically (no index unless asked)."""
    to_csv_kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **to_csv_kwargs)
    return Path(path)


def to_jsonable(obj):
    """``obj`` with numpy scalars/arrays, tuples and paths made JSON-ready; NaN/inf → None (JSON null)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if np.isfinite(f) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj
