"""Conventional radiomics per lesion through pyradiomics (issue 4): the 107 default features of Henry et al.

Default settings (:data:`DEFAULT_PARAMS_PATH`, the paper's): image and mask resampled to 1 × 1 × 1 mm (B-spline
for the image; pyradiomics always resamples the mask with nearest neighbour), original image only, fixed bin width
10 HU, all seven default classes = 107 features (14 shape, 18 first order, 24 GLCM, 14 GLDM, 16 GLRLM, 16 GLSZM,
5 NGTDM); everything else is pyradiomics' default (e.g. ``voxelArrayShift`` 0, GLCM distance 1, symmetrical).

**MR and other non-CT images.** The paper (CT only) gives no rule; a fixed bin width of 10 is meaningless for
arbitrary MR units. When the *default* parameters are used with ``modality`` other than "CT", RadTyper applies
pyradiomics' own MR recipe (``examples/exampleSettings/exampleMR_*.yaml``), :data:`NON_CT_SETTINGS`: the whole
image is z-score normalised and scaled by 100 (``normalize``, ``normalizeScale`` 100), then discretised with
bin width 5 (= 0.05 image SD), ``voxelArrayShift`` 300. Normalisation uses the whole image, so lesions of one
image are discretised alike (what inter-lesion heterogeneity needs); first-order intensity features are then in
normalised units. A parameter dict/file given by the user is used as it is, whatever the modality.

**Column names.** pyradiomics' key ``<imagetype>_<class>_<feature>`` becomes ``radiomics_<class>_<feature>`` for
the original image (``original_glcm_Imc1`` → ``radiomics_glcm_Imc1``) and ``radiomics_<imagetype>_<class>_<feature>``
for filtered images (``log-sigma-1-0-mm-3D_firstorder_Mean`` → ``radiomics_log-sigma-1-0-mm-3D_firstorder_Mean``,
``wavelet-LLH_glcm_Imc1`` → ``radiomics_wavelet-LLH_glcm_Imc1``). Diagnostics are never returned.

The mask always enters pyradiomics as label 1 of a binary UInt8 image built from ``mask_zyx`` (any non-zero
voxel) with the image's geometry; a ``label`` setting in user parameters is overridden. ``radiomics`` is imported
lazily, inside the functions, and its logger is set to WARNING.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import InputError, LesionError, RadTyperError

#: The shipped default parameter file (Henry et al. 2022 settings).
DEFAULT_PARAMS_PATH = Path(__file__).resolve().parent / "data" / "radiomics_default.yaml"

#: Number of features the default parameters produce (18 + 14 + 24 + 16 + 16 + 5 + 14).
RADIOMICS_DEFAULT_FEATURE_COUNT = 107

#: Settings replacing ``binWidth`` 10 when the default parameters are used on a non-CT image (see module doc).
NON_CT_SETTINGS: dict[str, Any] = {
    "normalize": True,
    "normalizeScale": 100,
    "binWidth": 5,
    "voxelArrayShift": 300,
}

#: Top-level sections of a pyradiomics parameter file.
PARAM_SECTIONS = ("imageType", "featureClass", "setting", "voxelSetting")

NOT_INSTALLED = "pyradiomics is not installed: pip install pyradiomics-bhklab"

#: Side of the small phantom used to learn the names of filtered image types (LoG, wavelet, ...).
_NAME_PHANTOM_SIZE = 32


# --- pyradiomics import -------------------------------------------------------------------------------------
class _DropSumAverageNotice(logging.Filter):
    """Drop pyradiomics' per-lesion warning that SumAverage = 2 × JointAverage (true by design, default GLCM)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("GLCM is symmetrical, therefore Sum Average")


def _import_radiomics() -> ModuleType:
    """Import pyradiomics (lazily) and quiet its logger to WARNING."""
    try:
        import radiomics
        import radiomics.featureextractor  # sub-modules used below
        import radiomics.imageoperations
    except ImportError:
        raise RadTyperError(NOT_INSTALLED) from None
    logging.getLogger("radiomics").setLevel(logging.WARNING)
    glcm_logger = logging.getLogger("radiomics.glcm")
    if not any(isinstance(f, _DropSumAverageNotice) for f in glcm_logger.filters):
        glcm_logger.addFilter(_DropSumAverageNotice())
    return radiomics


def _one_line(exc: BaseException) -> str:
    """An exception message on one line, at most 300 characters (or the exception's type name)."""
    lines = [line.strip(" -\t") for line in str(exc).splitlines()]
    kept = [ln for ln in lines if ln and not ln.startswith(("<SchemaError", "Schema validation failed"))]
    text = " ".join(kept)
    return (text[:297] + "...") if len(text) > 300 else (text or type(exc).__name__)


# --- parameters ---------------------------------------------------------------------------------------------
def _parse_text(text: str, path: Path) -> Any:
    """Parse JSON (``.json``) or YAML text; PyYAML when present, else ruamel.yaml (a pyradiomics dependency)."""
    if path.suffix.lower() == ".json":
        return json.loads(text)
    try:
        import yaml
    except ImportError:
        try:
            from ruamel.yaml import YAML
        except ImportError:
            raise RadTyperError(NOT_INSTALLED) from None
        return YAML(typ="safe", pure=True).load(text)
    return yaml.safe_load(text)


def validate_params(params: Any, source: str = "pyradiomics parameters") -> dict:
    """Check a parameter mapping with pyradiomics' own schema; return it.

    Raises:
        InputError: not a mapping, an unknown section or setting, a bad value; the message names ``source``.
    """
    if not isinstance(params, Mapping):
        raise InputError(
            f"{source}: expected a mapping with sections {', '.join(PARAM_SECTIONS)}, got {type(params).__name__}"
        )
    unknown = [k for k in params if k not in PARAM_SECTIONS]
    if unknown:
        raise InputError(
            f"{source}: unknown section(s) {', '.join(map(str, unknown))}; "
            f"pyradiomics parameter files have {', '.join(PARAM_SECTIONS)}"
        )
    if not params:
        return dict(params)
    rad = _import_radiomics()
    import pykwalify.core  # installed with pyradiomics

    schema_file, schema_funcs = rad.getParameterValidationFiles()
    quiet = logging.getLogger("pykwalify")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # pykwalify logs every failure at ERROR before raising
    try:
        with warnings.catch_warnings():  # pykwalify loads pyradiomics' schema functions with load_module()
            warnings.simplefilter("ignore", DeprecationWarning)
            core = pykwalify.core.Core(
                source_data=copy.deepcopy(dict(params)), schema_files=[schema_file], extensions=[schema_funcs]
            )
            core.validate(raise_exception=True)
    except (
        Exception
    ) as exc:  # pykwalify SchemaError/CoreError, or ValueError/TypeError from pyradiomics' checks
        message = getattr(exc, "msg", None) or str(exc)
        raise InputError(
            f"{source}: invalid pyradiomics parameters: {_one_line(Exception(message))}"
        ) from None
    finally:
        quiet.setLevel(level)
    return dict(params)


@functools.lru_cache(maxsize=16)
def _load_params_cached(path: str, mtime: float) -> dict:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the parameter file ({_one_line(exc)})") from None
    try:
        data = _parse_text(text, p)
    except RadTyperError:
        raise
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError, ruamel errors
        kind = "JSON" if p.suffix.lower() == ".json" else "YAML"
        raise InputError(f"{p}: cannot parse as {kind} ({_one_line(exc)})") from None
    if data is None:
        raise InputError(f"{p}: empty parameter file")
    if p == DEFAULT_PARAMS_PATH:
        # the shipped file (its validity is tested): pyradiomics validates it again when the extractor is
        # built, so a second pykwalify pass (~0.1–0.4 s per process) is skipped
        return dict(data)
    return validate_params(data, source=str(p))


def load_params(path: str | os.PathLike[str] | None = None) -> dict:
    """Read and validate a pyradiomics parameter file (YAML or JSON); ``None`` = :data:`DEFAULT_PARAMS_PATH`.

    Raises:
        InputError: missing, unreadable or unparsable file, or parameters pyradiomics' schema rejects.
    """
    p = DEFAULT_PARAMS_PATH if path is None else Path(path)
    if not p.exists():
        raise InputError(f"{p}: parameter file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a pyradiomics parameter file")
    return copy.deepcopy(_load_params_cached(str(p.resolve()), p.stat().st_mtime))


def default_params(modality: str = "CT") -> dict:
    """The default parameters for ``modality``: the shipped file, with :data:`NON_CT_SETTINGS` unless CT."""
    params = load_params(None)
    if modality.upper() != "CT":
        settings = params.setdefault("setting", {})
        settings.pop("binCount", None)
        settings.update(NON_CT_SETTINGS)
    return params


def _effective_params(params: Mapping | None, modality: str) -> dict:
    """Validated parameters as passed to pyradiomics: label 1 (binary mask), no diagnostics."""
    if params is None:
        out = default_params(modality)
    else:
        out = copy.deepcopy(validate_params(params))
    settings = out.get("setting") or {}
    settings.update({"label": 1, "additionalInfo": False})
    settings.pop("label_channel", None)
    out["setting"] = settings
    return out


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars/arrays in user parameters."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"parameter value {value!r} is not JSON-serialisable")


@functools.lru_cache(maxsize=8)
def _extractor(params_json: str) -> Any:
    """A (reusable) RadiomicsFeatureExtractor for these validated parameters."""
    rad = _import_radiomics()
    with warnings.catch_warnings():  # pykwalify (parameter validation) uses the deprecated load_module()
        warnings.simplefilter("ignore", DeprecationWarning)
        return rad.featureextractor.RadiomicsFeatureExtractor(json.loads(params_json))


# --- names --------------------------------------------------------------------------------------------------
def column_name(key: str) -> str:
    """pyradiomics key → RadTyper column: ``original_glcm_Imc1`` → ``radiomics_glcm_Imc1`` (see module doc)."""
    image_type, cls, feature = key.rsplit("_", 2)
    if image_type == "original":
        return f"radiomics_{cls}_{feature}"
    return f"radiomics_{image_type}_{cls}_{feature}"


def _class_feature_names(feature_class: Any, wanted: list[str] | None) -> list[str]:
    """Features pyradiomics computes for one class: all non-deprecated (in its order), or the listed ones."""
    if wanted:
        return list(dict.fromkeys(wanted))
    return [name for name, deprecated in feature_class.getFeatureNames().items() if not deprecated]


def _image_type_names(rad: ModuleType, image_type: str, settings: dict) -> list[str]:
    """Names pyradiomics gives the images of one image type (runs the filter on a small phantom)."""
    if image_type == "Original":
        return ["original"]
    n = _NAME_PHANTOM_SIZE
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.normal(0.0, 100.0, (n, n, n)).astype(np.float32))
    mask_arr = np.zeros((n, n, n), np.uint32)
    mask_arr[n // 4 : 3 * n // 4, n // 4 : 3 * n // 4, n // 4 : 3 * n // 4] = 1
    mask = sitk.GetImageFromArray(mask_arr)
    generator = getattr(rad.imageoperations, f"get{image_type}Image")
    try:
        return [name for _, name, _ in generator(image, mask, **settings)]
    except Exception:  # a filter needing an optional package: fall back to the lower-case type name
        return [image_type.lower()]


def radiomics_feature_names(params: Mapping | None = None) -> list[str]:
    """Column names the parameters produce, in pyradiomics' order (shape first), without computing features.

    ``params`` None = the defaults (107 names). Names of filtered image types (LoG sigmas, wavelet bands) are
    learnt by running pyradiomics' filter generator on a small phantom.
    """
    rad = _import_radiomics()
    p = _effective_params(params, "CT")
    classes = rad.getFeatureClasses()
    enabled = p.get("featureClass") or {name: None for name in classes}
    image_types = p.get("imageType") or {"Original": {}}
    settings = p["setting"]
    names: list[str] = []
    if "shape" in enabled:
        names += [f"radiomics_shape_{f}" for f in _class_feature_names(classes["shape"], enabled["shape"])]
    if "shape2D" in enabled and settings.get("force2D", False):
        names += [
            f"radiomics_shape2D_{f}" for f in _class_feature_names(classes["shape2D"], enabled["shape2D"])
        ]
    for image_type, custom in image_types.items():
        args = {**settings, **(custom or {})}
        for type_name in _image_type_names(rad, image_type, args):
            for cls, wanted in enabled.items():
                if cls.startswith("shape"):
                    continue
                for feature in _class_feature_names(classes[cls], wanted):
                    names.append(column_name(f"{type_name}_{cls}_{feature}"))
    return names


# --- features -----------------------------------------------------------------------------------------------
#: Image voxels kept beyond the resampling grid's reach when cropping (B-spline prefilter decay: 0.268^20 ≈ 4e-12).
CROP_EXTRA_VOXELS = 20


def crop_for_resampling(image: sitk.Image, mask_zyx: np.ndarray, settings: Mapping[str, Any]) -> sitk.Image:
    """The image cropped to the lesion's bounding box plus a margin that leaves pyradiomics' result unchanged.

    With resampling enabled (``interpolator`` and ``resampledPixelSpacing``), pyradiomics builds its grid from
    the *mask* (which is passed uncropped, so the grid is the same) over the lesion's bounding box plus
    ``padDistance`` voxels, and interpolates the image there; ITK's B-spline interpolator, however, first
    computes spline coefficients over the *whole* image (0.5–2 s on a 512 × 512 CT). Cropping the image to
    the grid's reach plus the spline support (2 voxels) and :data:`CROP_EXTRA_VOXELS` leaves the resampled values
    unchanged to ~1e-12 relative (the prefilter's boundary influence decays as 0.268ᵈ) and the features
    identical to ≤ 1e-9 (test_pyradiomics_crop.py). Without resampling, or with ``normalize`` (statistics of the
    whole image), the image is returned unchanged.
    """
    spacing_out = settings.get("resampledPixelSpacing")
    if settings.get("interpolator") is None or spacing_out is None or settings.get("normalize", False):
        return image
    spacing = np.array(image.GetSpacing(), float)
    pad = float(settings.get("padDistance", 5))
    reach_mm = (pad + 1.0) * float(np.max(np.where(np.asarray(spacing_out, float) > 0, spacing_out, spacing)))
    margin = np.ceil(reach_mm / spacing).astype(int) + 2 + CROP_EXTRA_VOXELS  # x, y, z voxels
    nz = np.nonzero(mask_zyx)
    lo_zyx = np.array([int(a.min()) for a in nz])
    hi_zyx = np.array([int(a.max()) for a in nz])
    size_xyz = np.array(image.GetSize())
    lo = np.maximum(lo_zyx[::-1] - margin, 0)
    hi = np.minimum(hi_zyx[::-1] + margin, size_xyz - 1)
    if np.all(lo == 0) and np.all(hi == size_xyz - 1):
        return image
    return sitk.RegionOfInterest(image, [int(v) for v in hi - lo + 1], [int(v) for v in lo])


def radiomics_features(
    image: sitk.Image,
    mask_zyx: np.ndarray,
    *,
    params: Mapping | None = None,
    lesion: str = "lesion",
    modality: str = "CT",
    crop_image: bool = True,
) -> dict[str, float]:
    """pyradiomics features of one lesion: ``{column name: value}`` (no diagnostics; NaN where pyradiomics fails).

    Args:
        image: the 3-D scalar image (CT in HU), any spacing/orientation.
        mask_zyx: the lesion mask on ``image``'s voxel grid, indexed ``[z, y, x]``; non-zero = lesion.
        params: pyradiomics parameters (as from :func:`load_params`); None = the defaults for ``modality``.
        lesion: lesion name, for messages.
        modality: "CT" (bin width 10 HU) or another modality (:data:`NON_CT_SETTINGS`); only with default params.
        crop_image: hand pyradiomics the image cropped around the lesion (see :func:`crop_for_resampling`);
            same features, much faster on whole CT volumes. False = the whole image (plain pyradiomics).

    Raises:
        LesionError: empty, single-voxel or otherwise unusable mask (pyradiomics' reason in one line).
        InputError: not a 3-D scalar image, or invalid ``params``.
        RadTyperError: pyradiomics is not installed.
    """
    _import_radiomics()  # RadTyperError early when pyradiomics is missing
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"lesion '{lesion}': expected a 3-D scalar image, got {image.GetDimension()}-D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s)"
        )
    mask = np.asarray(mask_zyx)
    expected = tuple(image.GetSize())[::-1]
    if mask.shape != expected:
        raise LesionError(lesion, f"mask shape {mask.shape} [z, y, x] differs from the image's {expected}")
    mask = mask != 0
    n_voxels = int(np.count_nonzero(mask))
    if n_voxels == 0:
        raise LesionError(lesion, "empty mask (no voxel)")
    if n_voxels == 1:
        raise LesionError(lesion, "the mask has a single voxel; pyradiomics needs at least 2 voxels")

    p = _effective_params(params, modality)
    extractor = _extractor(json.dumps(p, default=_plain))
    mask_image = sitk.GetImageFromArray(mask.astype(np.uint8))
    mask_image.CopyInformation(image)
    if crop_image:
        image = crop_for_resampling(image, mask, p.get("setting") or {})
    try:
        result = extractor.execute(image, mask_image, label=1)
    except (ValueError, RuntimeError, IndexError, ArithmeticError, AssertionError) as exc:
        raise LesionError(lesion, f"pyradiomics cannot compute features: {_one_line(exc)}") from None
    return {column_name(k): float(v) for k, v in result.items() if not k.startswith("diagnostics_")}
