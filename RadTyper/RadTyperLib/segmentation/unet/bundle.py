"""Saved U-Net model: a versioned folder (format ``radtyper-unet-model``, version 1).

Layout::

    MODEL/
      model.pt          torch ``state_dict`` of the network (tensors only; loaded with weights_only=True)
      model.json        format name + version, radtyper and torch versions, creation time (UTC), the
                        architecture (UNetConfig), normalisation (modality, CT window or MR percentiles),
                        in-plane spacing of the network grid (mm, or null = native), training patch size,
                        inference tile budget, probability threshold, minimum lesion size (mm³), sha256 of
                        model.pt and the training metadata (cases, train/validation split, epochs, best
                        validation Dice, seed, settings, device, history)
      loss_curve.png    training loss and validation Dice per epoch (written by training; optional)
      history.csv       the same numbers as a table (optional)

``model.json`` is written last: a folder without it is not a model. :func:`load_unet_bundle` refuses
another format, another format version, an unknown architecture, a changed ``model.pt`` (sha256) and
weights that do not fit the architecture, each with an :class:`~RadTyperLib.errors.InputError` naming
the folder and the problem. No pickle is involved (weights only), so loading a bundle runs no code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ... import __version__
from ...errors import InputError
from ...io import atomic_path, read_model_json, sha256_file, to_jsonable
from .network import UNetConfig, build_unet, count_parameters, import_torch
from .normalize import Normalization

FORMAT_NAME = "radtyper-unet-model"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS_FILE = "model.pt"
#: Default probability threshold of a lesion voxel.
DEFAULT_THRESHOLD = 0.5
#: Default smallest lesion kept by inference (mm³): a sphere of about 4.6 mm diameter.
DEFAULT_MIN_SIZE_MM3 = 50.0
#: Default largest network input per forward pass (pixels of one tile × slices in a batch).
DEFAULT_MAX_TILE_PIXELS = 1024 * 1024


def now_utc() -> str:
    """ISO-8601 time, seconds, UTC."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class UNetBundle:
    """A U-Net model: architecture, weights, normalisation and inference defaults (see the module docstring).

    ``state`` holds the weights as a torch ``state_dict``; :meth:`network` builds the module.
    """

    config: UNetConfig
    normalization: Normalization
    state: dict[str, Any]
    spacing_mm: float | None = None  # in-plane pixel size of the network grid (mm); None = native grid
    patch_size: int = 128
    max_tile_pixels: int = DEFAULT_MAX_TILE_PIXELS
    threshold: float = DEFAULT_THRESHOLD
    min_size_mm3: float = DEFAULT_MIN_SIZE_MM3
    training: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    radtyper_version: str = __version__
    torch_version: str = ""
    directory: Path | None = None

    @property
    def modality(self) -> str:
        """Modality the model was trained on (CT, MR or PET)."""
        return self.normalization.modality

    @property
    def name(self) -> str:
        """Short name for messages: the folder name, or "model"."""
        return self.directory.name if self.directory is not None else "model"

    def network(self, device: str = "cpu"):
        """The torch module with the weights, in eval mode, on ``device``."""
        torch = import_torch()
        net = build_unet(self.config)
        try:
            net.load_state_dict(self.state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise InputError(
                f"{self.directory or 'model'}: the weights do not match the architecture in {MODEL_JSON} "
                f"({' '.join(first[:2])[:300]})"
            ) from None
        net.eval()
        return net.to(torch.device(device))

    def to_json(self) -> dict[str, Any]:
        """Everything of ``model.json`` except the weights' checksum."""
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "radtyper_version": self.radtyper_version,
            "torch_version": self.torch_version,
            "created": self.created,
            "architecture": self.config.to_json(),
            "modality": self.modality,
            "normalization": self.normalization.to_json(),
            "spacing_mm": self.spacing_mm,
            "slice_axis": "third image index axis (k; axial for axial acquisitions)",
            "patch_size": self.patch_size,
            "max_tile_pixels": self.max_tile_pixels,
            "threshold": self.threshold,
            "min_size_mm3": self.min_size_mm3,
            "weights": {"file": WEIGHTS_FILE},
            "training": self.training,
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``model.pt`` then ``model.json`` into ``directory`` (created); returns the folder."""
        torch = import_torch()
        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise InputError(f"{d}: exists and is not a folder")
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state.items()}
        with atomic_path(d / WEIGHTS_FILE) as tmp:
            torch.save(state, tmp)
        meta = self.to_json()
        meta["weights"]["sha256"] = sha256_file(d / WEIGHTS_FILE)
        if not meta.get("torch_version"):
            meta["torch_version"] = torch.__version__
        with atomic_path(d / MODEL_JSON) as tmp:
            tmp.write_text(json.dumps(to_jsonable(meta), indent=1, allow_nan=False), encoding="utf-8")
        self.directory = d
        return d


def bundle_from_network(
    net,
    normalization: Normalization,
    *,
    spacing_mm: float | None = None,
    patch_size: int = 128,
    max_tile_pixels: int = DEFAULT_MAX_TILE_PIXELS,
    threshold: float = DEFAULT_THRESHOLD,
    min_size_mm3: float = DEFAULT_MIN_SIZE_MM3,
    training: dict[str, Any] | None = None,
) -> UNetBundle:
    """A bundle around a (trained) network built by :func:`~.network.build_unet`."""
    torch = import_torch()
    return UNetBundle(
        config=net.config,
        normalization=normalization,
        state={k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        spacing_mm=spacing_mm,
        patch_size=int(patch_size),
        max_tile_pixels=int(max_tile_pixels),
        threshold=float(threshold),
        min_size_mm3=float(min_size_mm3),
        training={"n_trainable_parameters": count_parameters(net), **(training or {})},
        created=now_utc(),
        torch_version=torch.__version__,
    )


def load_unet_bundle(path: str | os.PathLike[str] | UNetBundle) -> UNetBundle:
    """Read and validate a model folder (a :class:`UNetBundle` is returned unchanged).

    Raises:
        InputError: folder or files missing, not JSON, another format or version, unknown architecture,
            checksum mismatch, weights that do not fit the architecture.
    """
    if isinstance(path, UNetBundle):
        return path
    torch = import_torch()
    d = Path(path)
    mj, meta = read_model_json(
        d,
        json_name=MODEL_JSON,
        format_name=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        what="U-Net model",
        hint="; retrain with 'radtyper seg train' or use a matching RadTyper",
    )
    for key in ("architecture", "normalization", "weights"):
        if key not in meta:
            raise InputError(f"{mj}: key '{key}' missing")
    try:
        config = UNetConfig.from_json(meta["architecture"])
        norm = Normalization.from_json(meta["normalization"])
    except InputError as exc:
        raise InputError(f"{mj}: {exc}") from None
    wpath = d / str(meta["weights"].get("file", WEIGHTS_FILE))
    if not wpath.is_file():
        raise InputError(f"{d}: weights file {wpath.name} missing")
    sha = meta["weights"].get("sha256")
    if sha and sha256_file(wpath) != sha:
        raise InputError(f"{wpath}: checksum differs from {MODEL_JSON} (file changed or corrupted)")
    try:
        state = torch.load(wpath, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged / foreign files
        raise InputError(f"{wpath}: cannot read the weights ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise InputError(f"{wpath}: not a state_dict")
    spacing = meta.get("spacing_mm")
    bundle = UNetBundle(
        config=config,
        normalization=norm,
        state=state,
        spacing_mm=None if spacing is None else float(spacing),
        patch_size=int(meta.get("patch_size", 128)),
        max_tile_pixels=int(meta.get("max_tile_pixels", DEFAULT_MAX_TILE_PIXELS)),
        threshold=float(meta.get("threshold", DEFAULT_THRESHOLD)),
        min_size_mm3=float(meta.get("min_size_mm3", DEFAULT_MIN_SIZE_MM3)),
        training=meta.get("training", {}) or {},
        created=str(meta.get("created", "")),
        radtyper_version=str(meta.get("radtyper_version", "")),
        torch_version=str(meta.get("torch_version", "")),
        directory=d,
    )
    bundle.network()  # fails clearly now when the weights do not fit the architecture
    return bundle
