"""``radtyper reconstruct`` from saved coefficients: several degrees, no refit, checksum checks (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from test_cli import run

from RadTyperLib.coefficients import (
    LesionCoefficients,
    cache_lookup,
    cache_store,
    load_coefficients,
    mask_checksum,
    save_coefficients,
)
from RadTyperLib.errors import InputError
from RadTyperLib.render import read_mesh
from RadTyperLib.shape import compute_shape


def _lesion_files(tmp_path):
    """A CT-like image and a label map with two ellipsoidal lesions (labels 1 and 2) on an oblique grid."""
    shape = (40, 60, 64)
    zz, yy, xx = np.indices(shape, dtype=float)
    labels = np.zeros(shape, np.uint8)
    labels[((zz - 20) / 9) ** 2 + ((yy - 30) / 14) ** 2 + ((xx - 20) / 10) ** 2 <= 1] = 1
    labels[((zz - 18) / 6) ** 2 + ((yy - 28) / 7) ** 2 + ((xx - 48) / 9) ** 2 <= 1] = 2
    rng = np.random.default_rng(0)
    image = np.where(labels > 0, 40.0, -700.0) + rng.normal(0, 20, shape)
    img = sitk.GetImageFromArray(image.astype(np.int16))
    img.SetSpacing((0.9, 0.8, 1.5))
    img.SetOrigin((-20.0, 13.0, 4.0))
    lab = sitk.GetImageFromArray(labels)
    lab.CopyInformation(img)
    sitk.WriteImage(img, str(tmp_path / "image.nrrd"))
    sitk.WriteImage(lab, str(tmp_path / "labels.nrrd"))
    return tmp_path / "image.nrrd", tmp_path / "labels.nrrd", lab, labels


def test_checksum_depends_on_voxels_position_and_name_not_on_grid_padding(tmp_path):
    _, _, lab, labels = _lesion_files(tmp_path)
    mask = labels == 1
    base = mask_checksum(mask, lab, "a")
    assert mask_checksum(mask, lab, "b") != base
    moved = np.roll(mask, 1, axis=2)
    assert mask_checksum(moved, lab, "a") != base
    # the same voxels on a grid padded by 3 voxels before x: same checksum
    padded = np.pad(mask, ((0, 0), (0, 0), (3, 0)))
    big = sitk.Image([s + (3 if i == 0 else 0) for i, s in enumerate(lab.GetSize())], sitk.sitkUInt8)
    big.SetSpacing(lab.GetSpacing())
    big.SetDirection(lab.GetDirection())
    big.SetOrigin(lab.TransformIndexToPhysicalPoint((-3, 0, 0)))
    assert mask_checksum(padded, big, "a") == base


def test_saved_coefficients_reconstruct_like_the_fit(tmp_path):
    _, _, lab, labels = _lesion_files(tmp_path)
    shape = compute_shape(labels == 1, lab, lesion="l1")
    rec = LesionCoefficients.from_shape(shape, mask_checksum(labels == 1, lab, "l1"))
    path = save_coefficients(tmp_path / "c.npz", [rec])
    back = load_coefficients(path)["l1"]
    assert back.checksum == rec.checksum and back.degree == 15
    for d in (1, 7, 15):
        v0, f0 = shape.reconstruct(d)
        v1, f1 = back.reconstruct(d)
        np.testing.assert_allclose(v1, v0, atol=1e-9)
        np.testing.assert_array_equal(f1, f0)
    # a new degree from saved coefficients costs milliseconds: measured by benchmark_pipeline.py (< 50 ms for a
    # 50 mm lesion), not asserted here
    # the cache round trip
    assert cache_lookup(tmp_path / "cache", rec.checksum) is None
    cache_store(tmp_path / "cache", rec)
    assert cache_lookup(tmp_path / "cache", rec.checksum).checksum == rec.checksum


def test_bad_coefficients_file_is_an_input_error(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"x\.npz"):
        load_coefficients(tmp_path / "x.npz")
    with pytest.raises(InputError, match="not found"):
        load_coefficients(tmp_path / "missing.npz")
    with pytest.raises(InputError, match=r"\.npz"):
        save_coefficients(tmp_path / "c.csv", [])


def test_cli_features_coefficients_then_reconstruct_several_degrees_without_refit(tmp_path):
    image, labels_path, _, _ = _lesion_files(tmp_path)
    coef = tmp_path / "coef.npz"
    res = run("features", "--image", str(image), "--lesions", str(labels_path), "--out",
              str(tmp_path / "f.csv"), "--no-radiomics", "--quiet", "--coefficients", str(coef))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert set(load_coefficients(coef)) == {"lesion_1", "lesion_2"}
    out = tmp_path / "rec" / "l2.vtk"
    res = run("reconstruct", "--lesions", str(labels_path), "--lesion", "2", "--degree", "15,1,5",
              "--out", str(out), "--coefficients", str(coef), "--no-cache")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.count(f"coefficients from {coef}") == 3
    errors = []
    for d in (1, 5, 15):
        verts, faces = read_mesh(tmp_path / "rec" / f"l2_l{d}.vtk")
        assert len(verts) == 2562 and len(faces) == 5120
        errors.append(
            float(res.stdout.split(f"degree {d} ")[1].split("mean surface error ")[1].split(" mm")[0])
        )
    assert errors[0] > errors[1] > errors[2]
    assert not out.exists()  # several degrees: only the _l<L> files


def test_cli_reconstruct_cache_and_stale_coefficients(tmp_path):
    _, labels_path, lab, labels = _lesion_files(tmp_path)
    cache = tmp_path / "cache"
    base = ["reconstruct", "--lesions", str(labels_path), "--lesion", "1", "--cache-dir", str(cache)]
    res = run(*base, "--degree", "3", "--out", str(tmp_path / "a.stl"))
    assert res.returncode == 0 and "coefficients fitted" in res.stdout, res.stderr
    res = run(*base, "--degree", "4,8", "--out", str(tmp_path / "b.stl"))
    assert res.returncode == 0 and res.stdout.count("coefficients from the cache") == 2, res.stderr
    # coefficients of a different mask are refused, naming the file and the lesion
    coef = tmp_path / "coef.npz"
    other = compute_shape(labels == 2, lab, lesion="lesion_1")
    save_coefficients(
        coef, [LesionCoefficients.from_shape(other, mask_checksum(labels == 2, lab, "lesion_1"))]
    )
    res = run(*base, "--degree", "3", "--out", str(tmp_path / "c.stl"), "--coefficients", str(coef))
    assert res.returncode == 2 and "another mask" in res.stderr and "lesion_1" in res.stderr
    res = run(*base, "--degree", "3,x", "--out", str(tmp_path / "c.stl"))
    assert res.returncode == 2 and "degrees must be integers" in res.stderr
