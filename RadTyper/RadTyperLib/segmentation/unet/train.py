"""Training of the U-Net on the user's own cases (``radtyper seg train MANIFEST.csv --out MODEL``).

Procedure (:class:`TrainSettings`; defaults chosen to finish in minutes on a laptop CPU):

1. Cases from a cohort manifest (columns ``patient, image, lesions``, optional ``modality``; every lesion of
   the mask is foreground). All cases must have one modality (the model's). The network pixel size is the
   median in-plane pixel size of the cases (``spacing_mm="auto"``), a given value, or the native grid
   (``None``); slices are resampled to it in training and inference.
2. Seeded **patient-level** split into training and validation patients (``validation_fraction``).
3. Each epoch: ``steps_per_epoch`` mini-batches of ``batch_size`` augmented patches (:mod:`.data`:
   lesion-centred oversampling, flips, 90° rotations, intensity jitter). Loss = ``bce_weight`` · binary
   cross-entropy (on logits) + ``dice_weight`` · soft Dice loss (1 − 2Σpg / (Σp + Σg), over the batch,
   smoothing 1). Optimiser Adam (``learning_rate``).
4. After each epoch the BatchNorm statistics are **re-estimated** ("precise BN"): the running means and
   variances are reset and recomputed as plain averages over ``bn_batches`` batches of training patches
   (drawn from a separate seeded sampler) with the epoch's weights. With few, heterogeneous patients the
   exponential running averages of training lag behind the weights and evaluation-mode predictions can
   differ a lot from training-mode ones (seen on the IBSI sarcomas: patch Dice 0.38 vs 0.83; 0.83 after
   re-estimation). Then the **validation Dice** (mean over validation patients of the voxel Dice of the
   thresholded whole-volume prediction) is computed; training stops after ``patience`` epochs without an
   improvement larger than ``min_delta`` (never before ``min_epochs``) and the weights of the best epoch are
   kept. Without validation
   patients the model of the last epoch is kept.
5. The bundle (:mod:`.bundle`), ``loss_curve.png`` (training loss and validation Dice per epoch; matplotlib
   Agg) and ``history.csv`` are written into the output folder; ``model.json`` last.

Determinism: under ``torch.random.fork_rng`` with ``torch.manual_seed(seed)`` and
``torch.use_deterministic_algorithms(True)`` (CUDA: ``warn_only``); the split, the patches and the
augmentation come from seeded numpy generators. Same seed, data, thread count and torch version on CPU →
the same weights. Runs on CPU by default (``device="auto"`` uses a CUDA GPU when present).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...cohort import CaseSpec, read_manifest
from ...errors import InputError
from ...features import Cancelled, Progress
from ...io import atomic_path, staged_folder
from .bundle import (
    DEFAULT_MAX_TILE_PIXELS,
    DEFAULT_MIN_SIZE_MM3,
    DEFAULT_THRESHOLD,
    UNetBundle,
    bundle_from_network,
)
from .data import Augmentation, CaseVolume, PatchSampler, load_training_case, slice_stack, split_patients
from .evaluate import dice
from .infer import SlicePredictor, resolve_device
from .network import UNetConfig, build_unet, import_torch, pad_multiple
from .normalize import CT_WINDOW_HU, MR_PERCENTILES, Normalization, canonical_modality

LOSS_CURVE = "loss_curve.png"
HISTORY_CSV = "history.csv"


@dataclass
class TrainSettings:
    """Hyper-parameters of :func:`train_unet` (lengths in mm, volumes in mm³)."""

    depth: int = 4
    base_channels: int = 16
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    context_slices: int = 0  # 2.5-D: neighbours on each side given as extra channels
    spacing_mm: float | str | None = "auto"  # network pixel size: "auto" = median of the cases; None = native
    patch_size: int = 128  # training patch side (pixels; rounded up to a multiple of 2^depth)
    batch_size: int = 8
    steps_per_epoch: int = 40
    max_epochs: int = 25
    patience: int = 6  # epochs without validation-Dice improvement before stopping
    min_epochs: int = 5  # never stop before this epoch (the first epochs often predict nothing)
    min_delta: float = 1e-3
    learning_rate: float = 3e-3
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    lesion_fraction: float = 0.7  # share of lesion-centred patches
    bn_batches: int = 20  # batches of training patches that re-estimate the BatchNorm statistics
    validation_fraction: float = 0.2
    augment: bool = True
    intensity_jitter: float = 0.1
    threshold: float = DEFAULT_THRESHOLD  # stored in the bundle, used for validation Dice
    min_size_mm3: float = DEFAULT_MIN_SIZE_MM3  # stored in the bundle (inference default)
    ct_window_hu: tuple[float, float] = CT_WINDOW_HU
    mr_percentiles: tuple[float, float] = MR_PERCENTILES
    max_tile_pixels: int = DEFAULT_MAX_TILE_PIXELS
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # torch intra-op threads during training (None = torch's default)

    def __post_init__(self) -> None:
        self.dilations = tuple(int(d) for d in self.dilations)
        for name in ("batch_size", "steps_per_epoch", "max_epochs", "patience", "patch_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise InputError(f"learning rate must be > 0, got {self.learning_rate}")
        if self.bce_weight < 0 or self.dice_weight < 0 or self.bce_weight + self.dice_weight == 0:
            raise InputError("bce_weight and dice_weight must be ≥ 0, not both 0")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"threshold must be in (0, 1), got {self.threshold}")
        if isinstance(self.spacing_mm, str) and self.spacing_mm != "auto":
            raise InputError(f"spacing_mm must be a number, 'auto' or None, got {self.spacing_mm!r}")
        if isinstance(self.spacing_mm, int | float) and not self.spacing_mm > 0:
            raise InputError(f"spacing_mm must be > 0, got {self.spacing_mm}")


@dataclass
class TrainResult:
    """Outcome of :func:`train_unet`."""

    bundle: UNetBundle
    directory: Path
    history: list[dict[str, Any]]
    best_epoch: int
    val_dice: float | None
    train_patients: list[str]
    val_patients: list[str]
    elapsed_s: float
    paths: dict[str, Path] = field(default_factory=dict)


def dice_bce_loss(logits, target, bce_weight: float = 1.0, dice_weight: float = 1.0):
    """``bce_weight`` · BCE(logits) + ``dice_weight`` · (1 − soft Dice over the batch, smoothing 1)."""
    torch = import_torch()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    soft = (2.0 * (p * target).sum() + 1.0) / (p.sum() + target.sum() + 1.0)
    return bce_weight * bce + dice_weight * (1.0 - soft)


def predict_case_volume(predictor: SlicePredictor, case: CaseVolume, context_slices: int) -> np.ndarray:
    """Probabilities (float32 ``[z, y, x]``) of a normalised case volume on its network grid."""
    vol = case.image
    nz, ny, nx = vol.shape
    per = max(
        1,
        predictor.max_tile_pixels
        // (pad_multiple(ny, predictor.multiple) * pad_multiple(nx, predictor.multiple)),
    )
    out = np.empty(vol.shape, dtype=np.float32)
    for s in range(0, nz, per):
        x = np.stack([slice_stack(vol, z, context_slices) for z in range(s, min(nz, s + per))])
        out[s : s + len(x)] = predictor.predict(x)
    return out


def recalibrate_batchnorm(net, sampler: PatchSampler, n_batches: int, batch_size: int, device: str) -> None:
    """Re-estimate every BatchNorm's running mean / variance as the average over ``n_batches`` batches of
    ``sampler`` (train-mode forward passes without gradients); leaves ``net`` in eval mode."""
    torch = import_torch()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or n_batches < 1:
        net.eval()
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for _ in range(n_batches):
            xb, _ = sampler.batch(batch_size)
            net(torch.from_numpy(xb).to(device))
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    net.eval()


def _resolve_spacing(setting: float | str | None, cases: Sequence[CaseSpec]) -> float | None:
    if setting is None:
        return None
    if setting != "auto":
        return float(setting)
    import SimpleITK as sitk

    values = []
    for c in cases:
        reader = sitk.ImageFileReader()
        reader.SetFileName(c.image)
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise InputError(f"patient '{c.patient}': cannot read {c.image}") from None
        values.extend(float(v) for v in reader.GetSpacing()[:2])
    return float(np.median(values))


def _resolve_modality(cases: Sequence[CaseSpec], modality: str | None) -> str:
    declared = {c.modality for c in cases if c.modality not in ("", "auto")}
    if modality not in (None, "", "auto"):
        return canonical_modality(modality)
    if len(declared) > 1:
        raise InputError(f"the manifest mixes modalities {sorted(declared)}; train one model per modality")
    if declared:
        return declared.pop()
    from ...io import guess_modality, read_image

    return guess_modality(read_image(cases[0].image))


def write_loss_curve(history: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """PNG of the training loss and the validation Dice per epoch (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(7.0, 3.2), dpi=110)
    ax1 = fig.add_subplot(1, 2, 1)
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color="#1f77b4", ms=3)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss (BCE + Dice)")
    ax1.grid(alpha=0.3)
    ax2 = fig.add_subplot(1, 2, 2)
    vd = [h.get("val_dice") for h in history]
    if any(v is not None for v in vd):
        ax2.plot(epochs, [np.nan if v is None else v for v in vd], "o-", color="#d62728", ms=3)
        best = int(np.nanargmax([np.nan if v is None else v for v in vd]))
        ax2.axvline(epochs[best], color="grey", ls="--", lw=0.8)
        ax2.set_ylim(0, 1)
    else:
        ax2.text(0.5, 0.5, "no validation patients", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation Dice")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _write_history(history: Sequence[dict[str, Any]], path: Path) -> Path:
    import pandas as pd

    from ...io import write_csv

    return write_csv(pd.DataFrame(list(history)), path, float_format="%.6g")


def train_unet(
    cases: str | os.PathLike[str] | Sequence[CaseSpec],
    out_dir: str | os.PathLike[str],
    settings: TrainSettings | None = None,
    *,
    modality: str | None = None,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a U-Net on the cases of a manifest (path) or a list of :class:`CaseSpec` → model folder.

    Args:
        cases: manifest CSV (see :mod:`RadTyperLib.cohort`) or its rows.
        out_dir: output folder; the bundle, ``loss_curve.png`` and ``history.csv`` are written there.
        settings: hyper-parameters (:class:`TrainSettings`).
        modality: force the modality (default: the manifest's column, else guessed from the first image).
        progress: ``progress(fraction, message)`` per training step and epoch.
        should_cancel: polled every step; raises :class:`~RadTyperLib.features.Cancelled` (nothing written).

    Raises:
        InputError: bad manifest or images, mixed modalities, too few patients for the split.
    """
    t0 = time.perf_counter()
    s = settings or TrainSettings()
    specs = list(read_manifest(cases) if isinstance(cases, str | os.PathLike) else cases)
    if not specs:
        raise InputError("no training case")
    mod = _resolve_modality(specs, modality)
    norm = Normalization(mod, ct_window_hu=s.ct_window_hu, percentiles=s.mr_percentiles)
    spacing = _resolve_spacing(s.spacing_mm, specs)
    config = UNetConfig(
        depth=s.depth, base_channels=s.base_channels, dilations=s.dilations, context_slices=s.context_slices
    )
    patch = pad_multiple(s.patch_size, config.multiple)
    train_ids, val_ids = split_patients([c.patient for c in specs], s.validation_fraction, s.seed)

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(1.0, max(0.0, fraction)), message)

    def check_cancel(where: str) -> None:
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"training cancelled ({where}); nothing written")

    volumes: dict[str, CaseVolume] = {}
    for i, c in enumerate(specs):
        check_cancel("loading cases")
        report(0.05 * i / len(specs), f"loading case {c.patient} ({i + 1}/{len(specs)})")
        volumes[c.patient] = load_training_case(c, norm, spacing, seed=s.seed)
    train_cases = [volumes[p] for p in train_ids]
    val_cases = [volumes[p] for p in val_ids]

    torch = import_torch()
    device = resolve_device(s.device)
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    history: list[dict[str, Any]] = []
    best_state: dict[str, Any] | None = None
    best_dice, best_epoch = -math.inf, 0
    try:
        if s.threads is not None:
            torch.set_num_threads(int(s.threads))
        torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
        devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(s.seed)
            net = build_unet(config).to(device)
            opt = torch.optim.Adam(net.parameters(), lr=s.learning_rate)
            sampler = PatchSampler(
                train_cases,
                patch,
                context_slices=config.context_slices,
                lesion_fraction=s.lesion_fraction,
                augmentation=Augmentation(s.augment, s.augment, s.intensity_jitter if s.augment else 0.0),
                seed=s.seed,
            )
            bn_sampler = PatchSampler(
                train_cases,
                patch,
                context_slices=config.context_slices,
                lesion_fraction=s.lesion_fraction,
                augmentation=Augmentation(s.augment, s.augment, s.intensity_jitter if s.augment else 0.0),
                seed=s.seed + 7919,
            )
            probe = bundle_from_network(net, norm, spacing_mm=spacing, max_tile_pixels=s.max_tile_pixels)
            waited = 0
            total_steps = s.max_epochs * s.steps_per_epoch
            for epoch in range(1, s.max_epochs + 1):
                net.train()
                losses = []
                for step in range(s.steps_per_epoch):
                    check_cancel(f"epoch {epoch}, step {step + 1}")
                    xb, yb = sampler.batch(s.batch_size)
                    x = torch.from_numpy(xb).to(device)
                    y = torch.from_numpy(yb).to(device)
                    opt.zero_grad()
                    loss = dice_bce_loss(net(x), y, s.bce_weight, s.dice_weight)
                    loss.backward()
                    opt.step()
                    losses.append(float(loss.item()))
                    done = (epoch - 1) * s.steps_per_epoch + step + 1
                    report(
                        0.05 + 0.9 * done / total_steps,
                        f"epoch {epoch}/{s.max_epochs}: loss {losses[-1]:.4f}",
                    )
                if not np.all(np.isfinite(losses)):
                    raise InputError(
                        f"training diverged at epoch {epoch} (loss not finite); lower the learning rate"
                    )
                row: dict[str, Any] = {
                    "epoch": epoch,
                    "train_loss": float(np.mean(losses)),
                    "val_dice": None,
                    "elapsed_s": round(time.perf_counter() - t0, 2),
                }
                last = epoch == s.max_epochs
                if val_cases or last:
                    check_cancel(f"BatchNorm statistics of epoch {epoch}")
                    recalibrate_batchnorm(net, bn_sampler, s.bn_batches, s.batch_size, device)
                net.eval()
                if val_cases:
                    check_cancel(f"validation of epoch {epoch}")
                    pred = SlicePredictor(probe, device=device, net=net)
                    dices = [
                        dice(predict_case_volume(pred, c, config.context_slices) >= s.threshold, c.mask)
                        for c in val_cases
                    ]
                    row["val_dice"] = float(np.mean(dices))
                history.append(row)
                val_txt = "" if row["val_dice"] is None else f", validation Dice {row['val_dice']:.3f}"
                report(
                    0.05 + 0.9 * epoch * s.steps_per_epoch / total_steps,
                    f"epoch {epoch}: loss {row['train_loss']:.4f}{val_txt}",
                )
                if row["val_dice"] is None:
                    best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                    best_epoch = epoch
                    continue
                if row["val_dice"] > best_dice + s.min_delta or best_state is None:
                    best_dice, best_epoch, waited = row["val_dice"], epoch, 0
                    best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                else:
                    waited += 1
                    if waited >= s.patience and epoch >= s.min_epochs:
                        break
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
    assert best_state is not None
    net.load_state_dict(best_state)
    net.cpu().eval()
    val_dice = None if not val_cases else float(best_dice)
    training = {
        "cases": [c.patient for c in specs],
        "train_patients": train_ids,
        "validation_patients": val_ids,
        "n_lesions": {p: v.n_lesions for p, v in volumes.items()},
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "validation_dice": val_dice,
        "seed": s.seed,
        "device": device,
        "torch_threads": int(s.threads) if s.threads is not None else prev_threads,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()},
        "elapsed_s": round(time.perf_counter() - t0, 2),
        "history": history,
    }
    bundle = bundle_from_network(
        net,
        norm,
        spacing_mm=spacing,
        patch_size=patch,
        max_tile_pixels=s.max_tile_pixels,
        threshold=s.threshold,
        min_size_mm3=s.min_size_mm3,
        training=training,
    )
    out = Path(out_dir)
    check_cancel("before writing")
    with staged_folder(out) as stage:  # all-or-nothing: files move into ``out`` once all are written
        write_loss_curve(history, stage / LOSS_CURVE)
        _write_history(history, stage / HISTORY_CSV)
        bundle.save(stage)  # model.json last
    paths = {"loss_curve": out / LOSS_CURVE, "history": out / HISTORY_CSV, "model": out}
    report(
        1.0,
        f"done: best epoch {best_epoch}" + ("" if val_dice is None else f", validation Dice {val_dice:.3f}"),
    )
    return TrainResult(
        bundle=bundle,
        directory=out,
        history=history,
        best_epoch=best_epoch,
        val_dice=val_dice,
        train_patients=train_ids,
        val_patients=val_ids,
        elapsed_s=time.perf_counter() - t0,
        paths=paths,
    )
