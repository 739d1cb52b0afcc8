"""Automatic lesion segmentation with a 2-D U-Net with a dilated bottleneck (Wu et al. 2021, Fig. 6a).

torch is imported only inside the functions that need it: importing this package works without torch.

* :mod:`.network` — :class:`UNetConfig`, :func:`build_unet`, :func:`receptive_radius`;
* :mod:`.normalize` — CT window (HU) / MR percentile normalisation;
* :mod:`.data` — training cases from a manifest, patient-level split, patch sampling, augmentation;
* :mod:`.train` — :func:`train_unet` (Dice + BCE, Adam, early stopping on validation Dice);
* :mod:`.infer` — :func:`segment_lesions` (whole volume / ROI / clicked points, exact memory-bounded
  tiling, connected components → ``lesion_1`` …);
* :mod:`.evaluate` — Dice, HD95, lesion-wise detection, Dice by lesion size, subtype agreement;
* :mod:`.bundle` — the model folder (``radtyper-unet-model`` v1);
* :mod:`.synthetic` — phantom cohorts with randomly placed lesions.
"""

from __future__ import annotations

from .bundle import FORMAT_NAME, FORMAT_VERSION, UNetBundle, load_unet_bundle
from .evaluate import dice, evaluate_case, evaluate_cohort, hausdorff95_mm
from .infer import AutoSegResult, predict_probability, segment_lesions
from .network import UNetConfig, build_unet, receptive_radius
from .normalize import CT_WINDOW_HU, MR_PERCENTILES, Normalization
from .train import TrainResult, TrainSettings, train_unet

__all__ = [
    "CT_WINDOW_HU",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MR_PERCENTILES",
    "AutoSegResult",
    "Normalization",
    "TrainResult",
    "TrainSettings",
    "UNetBundle",
    "UNetConfig",
    "build_unet",
    "dice",
    "evaluate_case",
    "evaluate_cohort",
    "hausdorff95_mm",
    "load_unet_bundle",
    "predict_probability",
    "receptive_radius",
    "segment_lesions",
    "train_unet",
]
