"""Imaging subtypes (Wu et al. 2021): per-patient matrix, autoencoder, consensus clustering, IGP, classifier.

Plain Python (numpy, scipy, pandas); scikit-learn, joblib and torch are imported inside the functions that
need them (torch only to train or load the autoencoder, never to predict). Modules:

* :mod:`.data` — per-patient aggregation of a per-lesion table (largest lesion / mean), z-score scaler;
* :mod:`.autoencoder` — 313-150-10-150-313 autoencoder (torch, deterministic on CPU);
* :mod:`.pam` — exact PAM (BUILD + SWAP) on a distance matrix;
* :mod:`.consensus` — ConsensusClusterPlus-style consensus clustering, CDF, Δ-area, PAC, k choice;
* :mod:`.validation` — IGP with clusterRepro permutation p-values, cluster purity, Cramér's V;
* :mod:`.classifier` — HistGradientBoosting classifier on the raw features, purity by repeated CV;
* :mod:`.bundle` — the saved model directory (``radtyper-subtype-model`` v1), :func:`predict`;
* :mod:`.discover` — :func:`discover`, the whole analysis of a feature table into a model directory.
"""

from __future__ import annotations

from .autoencoder import TORCH_MISSING, AutoencoderModel, AutoencoderSettings, encode, train_autoencoder
from .bundle import FORMAT_NAME, FORMAT_VERSION, SubtypeModel, load_bundle, predict
from .classifier import ClassifierSettings, purity_cv, train_classifier
from .consensus import ConsensusResult, consensus_cluster, correlation_distance
from .data import AGGREGATIONS, PatientMatrix, Scaler, SubtypeWarning, patient_matrix
from .discover import DiscoverySettings, discover
from .pam import PamResult, pam, pam_path
from .validation import cluster_purity, cramers_v, igp, igp_test

__all__ = [
    "AGGREGATIONS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "TORCH_MISSING",
    "AutoencoderModel",
    "AutoencoderSettings",
    "ClassifierSettings",
    "ConsensusResult",
    "DiscoverySettings",
    "PamResult",
    "PatientMatrix",
    "Scaler",
    "SubtypeModel",
    "SubtypeWarning",
    "cluster_purity",
    "consensus_cluster",
    "correlation_distance",
    "cramers_v",
    "discover",
    "encode",
    "igp",
    "igp_test",
    "load_bundle",
    "pam",
    "pam_path",
    "patient_matrix",
    "predict",
    "purity_cv",
    "train_autoencoder",
    "train_classifier",
]
