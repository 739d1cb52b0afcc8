"""U-Net network (shapes, dilated bottleneck, receptive field) and intensity normalisation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from RadTyperLib.errors import InputError  # noqa: E402
from RadTyperLib.segmentation.unet.network import (  # noqa: E402
    UNetConfig,
    build_unet,
    count_parameters,
    pad_multiple,
    receptive_radius,
)
from RadTyperLib.segmentation.unet.normalize import (  # noqa: E402
    Normalization,
    apply_range,
    canonical_modality,
    normalize_volume,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("context", [0, 1, 2])
def test_output_shape_is_one_logit_per_pixel(depth, context):
    cfg = UNetConfig(depth=depth, base_channels=4, dilations=(1, 2, 4, 8)[:depth], context_slices=context)
    assert cfg.in_channels == 2 * context + 1 and cfg.multiple == 2**depth
    net = build_unet(cfg).eval()
    h, w = 3 * cfg.multiple, 5 * cfg.multiple
    with torch.no_grad():
        out = net(torch.rand(2, cfg.in_channels, h, w))
    assert tuple(out.shape) == (2, 1, h, w)
    assert net.down[0][0][0].in_channels == cfg.in_channels


def test_default_architecture_is_the_dilated_unet():
    cfg = UNetConfig()
    assert (cfg.depth, cfg.base_channels, cfg.dilations, cfg.in_channels) == (4, 16, (1, 2, 4, 8), 1)
    net = build_unet(cfg)
    # bottleneck: 4 dilated 3x3 convolutions at 1/16 resolution with 256 channels
    convs = [m for m in net.bottleneck.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1, 2, 4, 8]
    assert [c.out_channels for c in convs] == [256] * 4 and convs[0].in_channels == 128
    assert [blk[0][0].out_channels for blk in net.down] == [16, 32, 64, 128]
    assert net.head.out_channels == 1
    assert count_parameters(net) == 3_122_961


def test_bottleneck_output_is_the_sum_of_the_cascade():
    net = build_unet(UNetConfig(depth=1, base_channels=2, dilations=(1, 2))).eval()
    x = torch.rand(1, 2, 8, 8)
    with torch.no_grad():
        a = net.bottleneck.stages[0](x)
        b = net.bottleneck.stages[1](a)
        assert torch.equal(net.bottleneck(x), a + b)


def test_forward_refuses_sizes_that_are_not_multiples():
    net = build_unet(UNetConfig(depth=2, base_channels=2, dilations=(1, 2)))
    with pytest.raises(ValueError, match=r"multiples of 4, got \(6, 8\)"):
        net(torch.rand(1, 1, 6, 8))
    assert pad_multiple(6, 4) == 8 and pad_multiple(8, 4) == 8 and pad_multiple(0, 16) == 16


@pytest.mark.parametrize(
    "depth, dilations, radius", [(1, (1,), 8), (2, (1, 2), 30), (3, (1, 2, 4), 98), (4, (1, 2, 4, 8), 330)]
)
def test_receptive_radius_bounds_the_influence_of_an_input_pixel(depth, dilations, radius):
    cfg = UNetConfig(depth=depth, base_channels=4, dilations=dilations)
    assert receptive_radius(cfg) == radius
    if depth > 3:
        return  # 4: 700-pixel input, checked by the tiling tests through the bound
    torch.manual_seed(0)
    net = build_unet(cfg).eval()
    n = pad_multiple(2 * radius + 3 * cfg.multiple, cfg.multiple)
    x = torch.rand(1, 1, n, n, requires_grad=True)
    c = n // 2
    net(x)[0, 0, c, c].backward()
    ys, xs = np.nonzero(x.grad[0, 0].numpy())
    reach = max(np.abs(ys - c).max(), np.abs(xs - c).max())
    assert reach <= radius  # exact bound ...
    assert reach >= 0.8 * radius  # ... and not a loose one


def test_config_validation_and_json_round_trip():
    cfg = UNetConfig(depth=3, base_channels=8, dilations=(1, 3), context_slices=2)
    assert UNetConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(InputError, match="U-Net depth must be 1…6, got 0"):
        UNetConfig(depth=0)
    with pytest.raises(InputError, match="bottleneck dilations must be positive"):
        UNetConfig(dilations=(1, 0))
    with pytest.raises(InputError, match="unknown network architecture 'resnet'"):
        UNetConfig.from_json({**cfg.to_json(), "name": "resnet"})
    with pytest.raises(InputError, match="in_channels 3 does not match context_slices 2"):
        UNetConfig.from_json({**cfg.to_json(), "in_channels": 3})
    with pytest.raises(InputError, match="invalid architecture description"):
        UNetConfig.from_json({"depth": 3})


def test_importing_the_package_does_not_import_torch():
    code = "import sys, RadTyperLib.segmentation.unet, RadTyperLib.cli_seg; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- normalisation ----------------------------------------------------------------------------------------
def test_ct_window_maps_minus_1000_to_500_hu_onto_0_1():
    norm = Normalization("CT")
    assert norm.ct_window_hu == (-1000.0, 500.0) and norm.method == "ct_window"
    hu = np.array([-3000, -1000, -250, 0, 40, 500, 3071], dtype=np.int16)
    out = normalize_volume(hu, norm)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1000 / 1500, 1040 / 1500, 1.0, 1.0], rtol=0, atol=1e-7)
    custom = Normalization("CT", ct_window_hu=(-160, 240))
    np.testing.assert_allclose(normalize_volume(np.array([-160.0, 40.0, 240.0]), custom), [0.0, 0.5, 1.0])


def test_mr_percentiles_per_volume():
    norm = Normalization("MRI")
    assert norm.modality == "MR" and norm.method == "percentile" and norm.percentiles == (0.5, 99.5)
    vol = np.arange(1001, dtype=np.float32).reshape(7, 11, 13)[..., :]  # 0 … 1000 (1001 voxels)
    lo, hi = norm.volume_range(vol)
    assert (lo, hi) == pytest.approx((5.0, 995.0))  # linear-interpolated percentiles of 0…1000
    out = normalize_volume(vol, norm)
    assert out.min() == 0.0 and out.max() == 1.0
    assert out.reshape(-1)[500] == pytest.approx((500 - 5) / 990)
    # a 3x brighter scan normalises to the same values: MR has no absolute scale
    np.testing.assert_allclose(normalize_volume(3 * vol, norm), out, atol=1e-6)
    # constant and NaN-containing volumes: no division by zero, NaN → 0
    assert not normalize_volume(np.full((3, 3), 7.0), norm).any()
    assert apply_range(np.array([np.nan, 2.0]), 0.0, 4.0).tolist() == [0.0, 0.5]


def test_normalization_json_and_bad_values():
    for norm in (Normalization("CT", ct_window_hu=(-100, 300)), Normalization("MR", percentiles=(1, 99))):
        assert Normalization.from_json(norm.to_json()) == norm
    assert canonical_modality("mri") == "MR" and canonical_modality(" ct ") == "CT"
    with pytest.raises(InputError, match="modality 'US' is not one of CT, MR, PET"):
        Normalization("US")
    with pytest.raises(InputError, match="CT window must have lower < upper HU"):
        Normalization("CT", ct_window_hu=(500, -1000))
    with pytest.raises(InputError, match="percentiles must satisfy"):
        Normalization("MR", percentiles=(99, 1))
    with pytest.raises(InputError, match="cannot normalise an empty image"):
        Normalization("MR").volume_range(np.zeros((0, 3)))
