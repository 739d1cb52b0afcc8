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
* :mod:`.discover` — :func:`discover`, the whole analysis of a feature table into a model directory;
* :mod:`.profile` — :func:`subtype_profile`, the per-subtype summary of Wu et al. Fig. 3c (burden, margin
  sharpness, irregularity, symmetry);
* :mod:`.reference` — the synthetic reference cohort (four profiles after the paper's subtypes; a test
  fixture: :func:`.default_model.build_synthetic_model`);
* :mod:`.calibration` — out-of-fold temperature scaling, Brier score, reliability curve;
* :mod:`.domain` — the model's domain and the per-patient check (``in_domain``, ``domain_score``);
* :mod:`.model_report` — report sections (domain, calibration figure, predicted patients);
* :mod:`.lidc_cohort` — the LIDC-IDRI nodule cohort of the default model (selection, shape features);
* :mod:`.default_model` — the model shipped in ``RadTyperLib/data/default_subtype_model``:
  :func:`default_model_path`, :func:`load_default_model`, :data:`DEFAULT_MODEL_PROVENANCE`,
  :func:`build_default_model`.
"""

from __future__ import annotations

from .autoencoder import TORCH_MISSING, AutoencoderModel, AutoencoderSettings, encode, train_autoencoder
from .bundle import FORMAT_NAME, FORMAT_VERSION, SubtypeModel, load_bundle, predict
from .classifier import ClassifierSettings, purity_cv, train_classifier
from .consensus import ConsensusResult, consensus_cluster, correlation_distance
from .data import AGGREGATIONS, PatientMatrix, Scaler, SubtypeWarning, patient_matrix
from .default_model import (
    DEFAULT_MODEL_PROVENANCE,
    DEFAULT_MODEL_VERSION,
    build_default_model,
    default_model_path,
    default_model_provenance,
    load_default_model,
)
from .discover import DiscoverySettings, discover
from .pam import PamResult, pam, pam_path
from .profile import PROFILE_GROUPS, SubtypeProfile, subtype_profile
from .validation import cluster_purity, cramers_v, igp, igp_test

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_MODEL_PROVENANCE",
    "DEFAULT_MODEL_VERSION",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PROFILE_GROUPS",
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
    "SubtypeProfile",
    "SubtypeWarning",
    "build_default_model",
    "cluster_purity",
    "consensus_cluster",
    "correlation_distance",
    "cramers_v",
    "default_model_path",
    "default_model_provenance",
    "discover",
    "encode",
    "igp",
    "igp_test",
    "load_bundle",
    "load_default_model",
    "pam",
    "pam_path",
    "patient_matrix",
    "predict",
    "purity_cv",
    "subtype_profile",
    "train_autoencoder",
    "train_classifier",
]
