"""U-Net inference: exact memory-bounded tiling, ROI / points, components, modality check, bad input.

Post-processing tests use an *oracle* network (``SlicePredictor._forward`` replaced by a pointwise function of
the normalised centre slice: lesion where CT > −25 HU), so the expected lesions are known exactly; the tiling
tests use real (random-weight) networks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.special import expit

torch = pytest.importorskip("torch")

from RadTyperLib.errors import InputError  # noqa: E402
from RadTyperLib.features import Cancelled  # noqa: E402
from RadTyperLib.segmentation.unet import bundle as bundle_mod  # noqa: E402
from RadTyperLib.segmentation.unet import infer  # noqa: E402
from RadTyperLib.segmentation.unet.bundle import bundle_from_network, load_unet_bundle  # noqa: E402
from RadTyperLib.segmentation.unet.infer import (  # noqa: E402
    SlicePredictor,
    predict_probability,
    resample_slices,
    roi_index_box,
    segment_lesions,
)
from RadTyperLib.segmentation.unet.network import UNetConfig, build_unet, receptive_radius  # noqa: E402
from RadTyperLib.segmentation.unet.normalize import Normalization  # noqa: E402

#: Oracle: p = sigmoid(ORACLE_GAIN · (x − ORACLE_LEVEL)) of the normalised centre slice; 0.65 ↔ −25 HU.
ORACLE_LEVEL = 0.65
ORACLE_GAIN = 400.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- helpers (also imported by test_unet_eval / test_cli_seg) ---------------------------------------------
def random_bundle(
    depth: int = 2,
    base: int = 4,
    dilations=(1, 2),
    context: int = 0,
    modality: str = "CT",
    seed: int = 0,
    **kw,
):
    """A bundle with random weights whose output varies with the input (head weights × 300: p SD ≈ 0.08)."""
    torch.manual_seed(seed)
    net = build_unet(UNetConfig(depth=depth, base_channels=base, dilations=dilations, context_slices=context))
    with torch.no_grad():
        net.head.weight.mul_(300.0)
    net.eval()
    return bundle_from_network(net, Normalization(modality), **kw)


def install_oracle(monkeypatch) -> None:
    """Replace the network by a pointwise threshold of the centre channel (see the module docstring)."""

    def forward(self, x):
        self.max_window_pixels = max(self.max_window_pixels, int(x.shape[0] * x.shape[-1] * x.shape[-2]))
        self.n_forward += 1
        centre = x[:, x.shape[1] // 2]
        return expit(ORACLE_GAIN * (centre - ORACLE_LEVEL)).astype(np.float32)

    monkeypatch.setattr(SlicePredictor, "_forward", forward)


def blob_image(shape=(24, 60, 70), spacing=(0.8, 0.9, 2.0), blobs=None, background=-100, direction=None):
    """CT-like int16 image (fat −100 HU) with spherical +60 HU blobs; returns (image, truth label map)."""
    blobs = blobs if blobs is not None else [((12, 20, 20), 8.0), ((12, 40, 50), 6.0), ((5, 45, 15), 4.0)]
    arr = np.full(shape, background, dtype=np.int16)
    truth = np.zeros(shape, dtype=np.uint16)
    zz, yy, xx = np.indices(shape)
    sx, sy, sz = spacing
    for i, (c, r_mm) in enumerate(blobs, start=1):
        m = ((zz - c[0]) * sz) ** 2 + ((yy - c[1]) * sy) ** 2 + ((xx - c[2]) * sx) ** 2 <= r_mm**2
        arr[m] = 60
        truth[m] = i
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin((-20.0, 13.0, 40.0))
    if direction is not None:
        img.SetDirection(tuple(np.asarray(direction, dtype=float).ravel()))
    return img, truth


def index_to_lps(img: sitk.Image, zyx) -> tuple[float, float, float]:
    return img.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in zyx[::-1]))


# --- tiling -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("context, batch", [(0, 1), (1, 3)])
def test_tiled_probabilities_equal_untiled_and_memory_is_bounded(context, batch):
    b = random_bundle(context=context)
    x = np.random.default_rng(0).random((batch, 2 * context + 1, 203, 317), dtype=np.float32)
    whole = SlicePredictor(b, device="cpu", max_tile_pixels=10**8)
    ref = whole.predict(x)
    assert ref.shape == (batch, 203, 317) and whole.n_forward == 1
    assert ref.std() > 0.03  # the comparison is not trivial
    budget = 96 * 96
    tiled = SlicePredictor(b, device="cpu", max_tile_pixels=budget)
    assert tiled.margin == 32 and receptive_radius(b.config) == 30
    out = tiled.predict(x)
    assert np.abs(out - ref).max() <= 1e-5
    assert tiled.max_window_pixels <= budget  # memory bound: no network input larger than the budget
    assert tiled.n_forward == batch * 7 * 10  # 203 → 208 = 7 cores of 32 rows, 317 → 320 = 10 columns


def test_small_tile_margin_is_faster_but_not_exact():
    b = random_bundle()
    x = np.random.default_rng(1).random((1, 1, 150, 150), dtype=np.float32)
    ref = SlicePredictor(b, device="cpu", max_tile_pixels=10**8).predict(x)
    approx = SlicePredictor(b, device="cpu", max_tile_pixels=64 * 64, tile_margin=8).predict(x)
    assert 1e-4 < np.abs(approx - ref).max() < 1.0


def test_core_sizes_keep_whole_rows_when_they_fit():
    b = random_bundle()
    pred = SlicePredictor(b, device="cpu", max_tile_pixels=64 * 400)
    assert pred.core_sizes(64, 300) == (64, 300)  # fits whole
    assert pred.core_sizes(64, 1000) == (64, 336)  # 64 rows × (336 + 2·32) = 25 600 px
    with pytest.raises(InputError, match="max_tile_pixels must be at least 16"):
        SlicePredictor(b, device="cpu", max_tile_pixels=10)


def test_segment_lesions_tiled_equals_untiled_on_a_large_slice(monkeypatch):
    b = random_bundle(threshold=0.5)
    img, _ = blob_image(shape=(2, 230, 260))
    a = segment_lesions(img, b, modality="CT", min_size_mm3=0, keep_probability=True, device="cpu")
    t = segment_lesions(
        img, b, modality="CT", min_size_mm3=0, keep_probability=True, device="cpu", max_tile_pixels=96 * 96
    )
    assert np.abs(a.probability - t.probability).max() <= 1e-5
    assert t.max_input_pixels <= 96 * 96 < a.max_input_pixels
    assert np.array_equal(a.labels > 0, t.labels > 0)


# --- lesions from probabilities (oracle network) -----------------------------------------------------------
def test_every_blob_becomes_one_named_lesion_ordered_by_volume(monkeypatch):
    install_oracle(monkeypatch)
    b = random_bundle()
    img, truth = blob_image()
    vox = float(np.prod(img.GetSpacing()))
    res = segment_lesions(img, b, modality="CT", min_size_mm3=0)
    assert res.names == ["lesion_1", "lesion_2", "lesion_3"]
    counts = [int((truth == v).sum()) for v in (1, 2, 3)]
    assert res.volumes_mm3 == pytest.approx(sorted((c * vox for c in counts), reverse=True))
    assert np.array_equal(res.labels > 0, truth > 0)
    assert res.labels.dtype == np.uint16 and res.labels.shape == truth.shape
    # the smallest blob (r = 4 mm: 175 voxels × 1.44 mm³ = 252 mm³) is dropped by a 300 mm³ limit
    assert counts == [1449, 617, 175]
    res2 = segment_lesions(img, b, modality="CT", min_size_mm3=300.0)
    assert res2.names == ["lesion_1", "lesion_2"] and res2.n_removed_small == 1
    assert sorted(res2.volumes_mm3) == pytest.approx(sorted(c * vox for c in counts[:2]))
    # lesions as Lesion objects and a label image on the image grid
    lab_img = res2.label_image(img)
    assert lab_img.GetSpacing() == img.GetSpacing() and lab_img.GetOrigin() == img.GetOrigin()
    assert [les.name for les in res2.lesions()] == ["lesion_1", "lesion_2"]


def test_roi_and_points_select_lesions_on_an_oblique_image(monkeypatch):
    install_oracle(monkeypatch)
    b = random_bundle()
    rot = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    img, truth = blob_image(direction=rot)
    # ROI: the LPS bounding box of an index box around blob 2 (centre z12, y40, x50; radius 6 mm)
    corners = np.array([index_to_lps(img, (z, y, x)) for z in (8, 16) for y in (34, 46) for x in (44, 56)])
    roi = (*corners.min(axis=0), *corners.max(axis=0))
    res = segment_lesions(img, b, modality="CT", roi_lps_mm=roi, min_size_mm3=0)
    assert res.names == ["lesion_1"]
    assert np.array_equal(res.labels > 0, truth == 2)
    box = roi_index_box(img, roi)
    assert box[0] <= 8 and box[1] >= 17  # z range covers the ROI corners
    # points: one in blob 1, one in the background far from everything
    p1 = index_to_lps(img, (12, 20, 20))
    far = index_to_lps(img, (20, 5, 65))
    res = segment_lesions(img, b, modality="CT", points_lps_mm=[p1, far], min_size_mm3=0)
    assert res.names == ["lesion_1"] and np.array_equal(res.labels > 0, truth == 1)
    assert (
        len(res.messages) == 1
        and res.messages[0].startswith("point 2 (")
        and "no lesion within 5 mm" in res.messages[0]
    )
    # only a missed point: empty result with a clear message
    res = segment_lesions(img, b, modality="CT", points_lps_mm=[far], min_size_mm3=0)
    assert res.empty and any("no lesion found at the given point(s)" in m for m in res.messages)


def test_exclude_keeps_existing_segments_untouched(monkeypatch):
    install_oracle(monkeypatch)
    img, truth = blob_image()
    res = segment_lesions(img, random_bundle(), modality="CT", min_size_mm3=0, exclude=truth == 1)
    assert len(res.names) == 2 and not np.any(res.labels[truth == 1])
    with pytest.raises(InputError, match=r"exclude mask shape \(2, 2, 2\) differs from the image"):
        segment_lesions(img, random_bundle(), modality="CT", exclude=np.zeros((2, 2, 2), bool))


def test_image_without_lesion_gives_an_empty_result_with_a_message(monkeypatch):
    install_oracle(monkeypatch)
    img, _ = blob_image(blobs=[])
    res = segment_lesions(img, random_bundle(), modality="CT")
    assert res.empty and not res.labels.any() and res.volumes_mm3 == []
    assert res.messages == ["no lesion found in the image (probability ≥ 0.5, volume ≥ 50 mm³)"]


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 2, 3), (3, 5, 4), (2, 17, 1)])
def test_tiny_images_work(monkeypatch, shape):
    b = random_bundle(depth=3, dilations=(1, 2, 4), context=1)
    img = sitk.GetImageFromArray(np.full(shape, -1000, dtype=np.int16))
    res = segment_lesions(img, b, modality="CT", keep_probability=True)
    assert res.labels.shape == shape and res.probability.shape == shape
    assert np.all((res.probability >= 0) & (res.probability <= 1))


def test_resampling_to_the_model_pixel_size_keeps_volumes(monkeypatch):
    install_oracle(monkeypatch)
    img, truth = blob_image(shape=(24, 120, 140), spacing=(0.4, 0.45, 2.0), blobs=[((12, 60, 70), 9.0)])
    res = segment_lesions(img, random_bundle(spacing_mm=1.0), modality="CT", min_size_mm3=0)
    true_mm3 = float((truth > 0).sum() * np.prod(img.GetSpacing()))
    assert res.names == ["lesion_1"]
    assert res.volumes_mm3[0] == pytest.approx(true_mm3, rel=0.05)
    assert res.max_input_pixels <= 64 * 64 * 24  # the network ran on the 1 mm grid (56 × 63 → 64 × 64)


def test_resample_slices_round_trip_on_a_smooth_image():
    yy, xx = np.mgrid[0:50, 0:70]
    a = (np.sin(yy / 9.0) * np.cos(xx / 11.0)).astype(np.float32)[None]
    down = resample_slices(a, (0.5, 0.6), 1.0)
    assert down.shape == (1, 25, 42)  # (49·0.5/1 + 1, 69·0.6/1 + 1)
    back = resample_slices(down, (0.5, 0.6), 1.0, out_shape=(50, 70))
    assert back.shape == a.shape
    assert np.abs(back - a)[:, :-2, :-2].max() < 0.01  # interior: linear interpolation error only
    assert np.abs(back - a).max() < 0.1  # last row / column: clamped edge


# --- modality, arguments, progress -------------------------------------------------------------------------
def test_model_of_another_modality_is_refused():
    mr = random_bundle(modality="MR")
    img, _ = blob_image(background=-1000)  # air: guessed CT
    with pytest.raises(
        InputError, match=r"trained on MR images but image is CT \(guessed from its intensities"
    ):
        segment_lesions(img, mr)
    with pytest.raises(
        InputError, match=r"trained on MR images but scan.nrrd is CT \(declared\): use a CT model"
    ):
        segment_lesions(img, mr, modality="CT", source="scan.nrrd")
    with pytest.raises(InputError, match="modality 'XR' is not one of CT, MR, PET"):
        segment_lesions(img, mr, modality="XR")


def test_bad_arguments_are_clear_errors():
    b = random_bundle()
    img, _ = blob_image()
    with pytest.raises(InputError, match=r"probability threshold must be in \(0, 1\)"):
        segment_lesions(img, b, modality="CT", threshold=1.5)
    with pytest.raises(InputError, match="ROI: expected 6 numbers"):
        segment_lesions(img, b, modality="CT", roi_lps_mm=(0, 0, 0, 1, 1))
    with pytest.raises(InputError, match=r"does not overlap the image"):
        segment_lesions(img, b, modality="CT", roi_lps_mm=(1000, 1000, 1000, 1100, 1100, 1100))
    with pytest.raises(InputError, match="expected a 3-D image, got 2-D"):
        segment_lesions(sitk.Image(5, 5, sitk.sitkInt16), b, modality="CT")
    with pytest.raises(InputError, match="no point given"):
        segment_lesions(img, b, modality="CT", points_lps_mm=[])


def test_progress_and_cancel(monkeypatch):
    install_oracle(monkeypatch)
    img, _ = blob_image()
    seen: list[float] = []
    segment_lesions(img, random_bundle(), modality="CT", progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Cancelled, match="segmentation cancelled after 0 of 24 slices"):
        segment_lesions(img, random_bundle(), modality="CT", should_cancel=lambda: True)


def test_predict_probability_within_an_roi_is_zero_outside(monkeypatch):
    install_oracle(monkeypatch)
    img, truth = blob_image()
    # not rotated here: an index box that contains the whole of blob 2 and nothing of the others
    corners = np.array([index_to_lps(img, (z, y, x)) for z in (8, 16) for y in (30, 50) for x in (40, 60)])
    p = predict_probability(
        img, random_bundle(), modality="CT", roi_lps_mm=(*corners.min(0), *corners.max(0))
    )
    assert p.shape == truth.shape and p.dtype == np.float32
    assert np.array_equal(p > 0.5, truth == 2)


# --- bundle ------------------------------------------------------------------------------------------------
def test_bundle_round_trip_gives_identical_predictions(tmp_path):
    b = random_bundle(depth=3, dilations=(1, 2, 4), context=1, training={"note": "test"})
    b.save(tmp_path / "m")
    loaded = load_unet_bundle(tmp_path / "m")
    assert loaded.config == b.config and loaded.normalization == b.normalization
    assert loaded.training["note"] == "test" and loaded.torch_version == torch.__version__
    x = np.random.default_rng(3).random((2, 3, 40, 56), dtype=np.float32)
    assert np.array_equal(
        SlicePredictor(b, device="cpu").predict(x), SlicePredictor(loaded, device="cpu").predict(x)
    )
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["format"] == "radtyper-unet-model" and meta["format_version"] == 1
    assert meta["architecture"]["in_channels"] == 3 and meta["architecture"]["dilations"] == [1, 2, 4]
    assert meta["normalization"]["ct_window_hu"] == [-1000.0, 500.0]
    assert len(meta["weights"]["sha256"]) == 64


def _edit_json(path, **changes):
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        target = meta
        *parents, leaf = key.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    path.write_text(json.dumps(meta))


def test_bad_bundles_fail_clearly(tmp_path):
    d = random_bundle().save(tmp_path / "m")
    mj = d / "model.json"
    original = mj.read_text()
    _edit_json(mj, format_version=2)
    with pytest.raises(InputError, match="format version 2 is not supported"):
        load_unet_bundle(d)
    mj.write_text(original)
    _edit_json(mj, architecture__depth=3)
    with pytest.raises(InputError, match=r"the weights do not match the architecture in model\.json"):
        load_unet_bundle(d)
    mj.write_text(original)
    _edit_json(mj, architecture__name="unet3d")
    with pytest.raises(InputError, match="unknown network architecture 'unet3d'"):
        load_unet_bundle(d)
    mj.write_text(original)
    _edit_json(mj, format="radtyper-subtype-model")
    with pytest.raises(InputError, match="not a U-Net model"):
        load_unet_bundle(d)
    mj.write_text(original)
    with open(d / "model.pt", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(InputError, match="checksum differs"):
        load_unet_bundle(d)
    mj.unlink()
    with pytest.raises(InputError, match=r"not a U-Net model \(model.json missing\)"):
        load_unet_bundle(d)
    with pytest.raises(InputError, match="U-Net model folder not found"):
        load_unet_bundle(tmp_path / "nowhere")
    assert bundle_mod.FORMAT_VERSION == 1 and infer.SPACING_TOLERANCE == 0.05
