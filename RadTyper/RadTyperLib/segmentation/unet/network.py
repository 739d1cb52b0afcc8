"""2-D U-Net with a dilated-convolution bottleneck (Wu et al. 2021, Fig. 6a; torch).

Architecture (:class:`UNetConfig`; defaults in brackets):

* input ``in_channels = 2·context_slices + 1`` normalised slices (the slice itself and ``context_slices``
  neighbours on each side: 2.5-D) [1 channel: plain 2-D, as in the paper];
* encoder of ``depth`` levels [4]; level ``l`` = two (3×3 conv → BatchNorm → ReLU) with
  ``base_channels·2^l`` channels [16, 32, 64, 128], then 2×2 max-pooling;
* bottleneck at 1/2^depth resolution with ``base_channels·2^depth`` channels [256]: a cascade of 3×3
  convolutions with dilations ``dilations`` [1, 2, 4, 8] (each conv → BN → ReLU feeds the next) whose outputs
  are **summed** — the dilated bottleneck of the Carvana U-Net the paper cites (lyakaap), which enlarges the
  receptive field to the whole tumour and its surroundings without more down-sampling;
* decoder: 2×2 transposed convolution (stride 2) → concatenation with the encoder skip → two
  (3×3 conv → BN → ReLU);
* head: 1×1 convolution → **one logit channel** (lesion vs background; probability = sigmoid).

Every spatial size works: :func:`pad_multiple` pads a slice to a multiple of ``2^depth`` (bottom/right,
with the normalised background value 0). The output at a pixel depends only on inputs within
:func:`receptive_radius` pixels (exact, conservative bound), which makes tiled inference exact (see
:mod:`.infer`). torch is imported lazily: importing this module does not need torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ...errors import InputError, RadTyperError

#: Name of the architecture stored in a model bundle.
ARCHITECTURE = "unet2d-dilated"
TORCH_MISSING = (
    "torch is needed for the U-Net segmentation: pip install torch==2.13.0 (CPU) or install the PyTorch "
    "extension in 3D Slicer"
)


def import_torch():
    """``torch``, or a :class:`RadTyperError` telling how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise RadTyperError(TORCH_MISSING) from exc
    return torch


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :func:`build_unet` (see the module docstring)."""

    depth: int = 4
    base_channels: int = 16
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    context_slices: int = 0
    name: str = field(default=ARCHITECTURE)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if self.name != ARCHITECTURE:
            raise InputError(
                f"unknown network architecture '{self.name}' (this RadTyper knows {ARCHITECTURE})"
            )
        if not 1 <= int(self.depth) <= 6:
            raise InputError(f"U-Net depth must be 1…6, got {self.depth}")
        if not 1 <= int(self.base_channels) <= 256:
            raise InputError(f"U-Net base_channels must be 1…256, got {self.base_channels}")
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise InputError(f"bottleneck dilations must be positive integers, got {list(self.dilations)}")
        if not 0 <= int(self.context_slices) <= 5:
            raise InputError(f"context_slices must be 0…5, got {self.context_slices}")

    @property
    def in_channels(self) -> int:
        """Number of input channels: the slice and ``context_slices`` neighbours on each side."""
        return 2 * int(self.context_slices) + 1

    @property
    def multiple(self) -> int:
        """Spatial sizes given to the network are padded to a multiple of this (2^depth)."""
        return 2 ** int(self.depth)

    def to_json(self) -> dict[str, Any]:
        """JSON-able description (stored in ``model.json``)."""
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        d["in_channels"] = self.in_channels
        d["output"] = "1 logit channel (sigmoid = lesion probability)"
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UNetConfig:
        """Inverse of :meth:`to_json`; unknown architecture names or bad values raise InputError."""
        try:
            cfg = cls(
                depth=int(d["depth"]),
                base_channels=int(d["base_channels"]),
                dilations=tuple(int(v) for v in d["dilations"]),
                context_slices=int(d.get("context_slices", 0)),
                name=str(d.get("name", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"invalid architecture description ({type(exc).__name__}: {exc})") from None
        if "in_channels" in d and int(d["in_channels"]) != cfg.in_channels:
            raise InputError(
                f"architecture: in_channels {d['in_channels']} does not match context_slices "
                f"{cfg.context_slices} (expected {cfg.in_channels})"
            )
        return cfg


def receptive_radius(config: UNetConfig) -> int:
    """Half-width (pixels) of the receptive field: the output at a pixel depends on no input farther away.

    Conservative bound for the exact layer sequence of :func:`build_unet` (3×3 conv with dilation d at
    stride j: +d·j; 2×2 pooling: +j; 2×2 transposed conv: +j), for pixels whose pooling cells are aligned
    (tile offsets that are multiples of ``2^depth``).
    """
    r, j = 0, 1
    for _ in range(config.depth):
        r += 2 * j  # two 3x3 convolutions
        r += j  # 2x2 max pooling
        j *= 2
    r += j * sum(config.dilations)  # dilated cascade
    for _ in range(config.depth):
        j //= 2
        r += j  # transposed convolution
        r += 2 * j  # two 3x3 convolutions
    return r


def build_unet(config: UNetConfig):
    """The ``torch.nn.Module`` of ``config`` (default PyTorch initialisation; call under a seed)."""
    torch = import_torch()
    nn = torch.nn

    def conv_bn_relu(c_in: int, c_out: int, dilation: int = 1):
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    class DilatedBottleneck(nn.Module):
        """Cascade of dilated 3×3 convolutions; the output is the sum of every stage's output."""

        def __init__(self, c_in: int, c_out: int, dilations: tuple[int, ...]) -> None:
            super().__init__()
            stages = []
            for i, d in enumerate(dilations):
                stages.append(conv_bn_relu(c_in if i == 0 else c_out, c_out, d))
            self.stages = nn.ModuleList(stages)

        def forward(self, x):
            total = None
            for stage in self.stages:
                x = stage(x)
                total = x if total is None else total + x
            return total

    class UNet2D(nn.Module):
        """2-D U-Net with a dilated bottleneck (see :mod:`RadTyperLib.segmentation.unet.network`)."""

        def __init__(self, cfg: UNetConfig) -> None:
            super().__init__()
            self.config = cfg
            widths = [cfg.base_channels * 2**level for level in range(cfg.depth + 1)]
            self.down = nn.ModuleList()
            c_in = cfg.in_channels
            for level in range(cfg.depth):
                self.down.append(
                    nn.Sequential(
                        conv_bn_relu(c_in, widths[level]), conv_bn_relu(widths[level], widths[level])
                    )
                )
                c_in = widths[level]
            self.pool = nn.MaxPool2d(2)
            self.bottleneck = DilatedBottleneck(widths[cfg.depth - 1], widths[cfg.depth], cfg.dilations)
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
            for level in reversed(range(cfg.depth)):
                self.up.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
                self.dec.append(
                    nn.Sequential(
                        conv_bn_relu(2 * widths[level], widths[level]),
                        conv_bn_relu(widths[level], widths[level]),
                    )
                )
            self.head = nn.Conv2d(widths[0], 1, 1)

        def forward(self, x):
            m = self.config.multiple
            if x.shape[-1] % m or x.shape[-2] % m:
                raise ValueError(
                    f"input height and width must be multiples of {m}, got {tuple(x.shape[-2:])}"
                )
            skips = []
            for block in self.down:
                x = block(x)
                skips.append(x)
                x = self.pool(x)
            x = self.bottleneck(x)
            for up, dec in zip(self.up, self.dec, strict=True):
                x = up(x)
                x = dec(torch.cat([x, skips.pop()], dim=1))
            return self.head(x)

    return UNet2D(config)


def count_parameters(module) -> int:
    """Number of trainable parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def pad_multiple(size: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ≥ ``size`` (and ≥ ``multiple``)."""
    return max(multiple, -(-int(size) // multiple) * multiple)
