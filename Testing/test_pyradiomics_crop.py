"""pyradiomics on the image cropped around the lesion gives the same features as on the whole image (issue 15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import make_image
from RadTyperLib.pyradiomics_features import crop_for_resampling, load_params, radiomics_features

pytest.importorskip("radiomics")


def _assert_same(a: dict[str, float], b: dict[str, float]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12, nan_ok=True), k


@pytest.fixture(scope="module")
def big_ct() -> tuple[sitk.Image, np.ndarray]:
    """A 120 × 110 × 30 CT-like volume (oblique, anisotropic) with a textured lesion far from the borders."""
    shape = (30, 110, 120)
    rng = np.random.default_rng(5)
    image = rng.normal(-700, 60, shape)
    zz, yy, xx = np.indices(shape, dtype=float)
    mask = ((zz - 12) / 4.0) ** 2 + ((yy - 50) / 9.0) ** 2 + ((xx - 70) / 11.0) ** 2 <= 1.0
    image[mask] = (30 + 30 * np.sin(xx / 2.0) + rng.normal(0, 20, shape))[mask]
    return make_image(image.astype(np.int16), spacing=(0.8, 0.75, 2.0)), mask


def test_crop_is_smaller_and_keeps_the_geometry(big_ct) -> None:
    image, mask = big_ct
    cropped = crop_for_resampling(image, mask, load_params()["setting"])
    assert np.prod(cropped.GetSize()) < 0.6 * np.prod(image.GetSize())
    assert cropped.GetSpacing() == image.GetSpacing()
    assert cropped.GetDirection() == image.GetDirection()
    # voxel (0, 0, 0) of the crop is a voxel of the image: same physical grid
    idx = image.TransformPhysicalPointToContinuousIndex(cropped.GetOrigin())
    np.testing.assert_allclose(idx, np.round(idx), atol=1e-6)


def test_no_crop_without_resampling_or_with_normalisation(big_ct) -> None:
    image, mask = big_ct
    assert crop_for_resampling(image, mask, {"binWidth": 10}) is image
    settings = {**load_params()["setting"], "normalize": True}
    assert crop_for_resampling(image, mask, settings) is image


def test_cropped_features_equal_whole_image_features(big_ct) -> None:
    image, mask = big_ct
    _assert_same(radiomics_features(image, mask, crop_image=False), radiomics_features(image, mask))


def test_cropped_features_equal_for_user_params_with_filters(big_ct) -> None:
    """LoG and wavelet run on the resampled (padded) image: unchanged by the crop too."""
    image, mask = big_ct
    params = load_params()
    params["imageType"] = {"Original": {}, "LoG": {"sigma": [1.0, 2.0]}}
    params["featureClass"] = {"firstorder": None, "glcm": None}
    _assert_same(
        radiomics_features(image, mask, params=params, crop_image=False),
        radiomics_features(image, mask, params=params),
    )


@pytest.mark.realdata
@pytest.mark.slow
def test_cropped_features_equal_on_lung1(shared_data: Path) -> None:
    cases = shared_data / "pyradiomics-cases"
    image = sitk.ReadImage(str(cases / "lung1_image.nrrd"))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(cases / "lung1_label.nrrd"))) > 0
    _assert_same(radiomics_features(image, mask, crop_image=False), radiomics_features(image, mask))


def test_shipped_default_parameters_pass_pyradiomics_schema() -> None:
    """load_params skips RadTyper's own schema pass for the shipped file (pyradiomics validates it anyway)."""
    from RadTyperLib.pyradiomics_features import validate_params

    assert validate_params(load_params()) == load_params()
