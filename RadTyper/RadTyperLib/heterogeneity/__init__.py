"""Inter-lesion heterogeneity (Henry et al. 2022): robust features, CV, MTD/ATH indexes, sampling simulation.

Plain Python (numpy, scipy, pandas; matplotlib only for the plot). Modules:

* :mod:`.robust` — 1-mm erosion/dilation, Lin's CCC filter, redundancy clustering;
* :mod:`.indexes` — CV and the cosine-distance indexes per patient (and per site);
* :mod:`.sampling` — sampling strategies (Table 2) and random-k recovery curves (Fig. 6);
* :mod:`.report` — :func:`heterogeneity_report`, the whole analysis of a feature table into a folder.
"""

from __future__ import annotations

from .indexes import (
    ONE_LESION_REASON,
    HeterogeneityWarning,
    average_tumoral_heterogeneity,
    coefficient_of_variation,
    cosine_distance_matrix,
    default_features,
    max_tumoral_divergence,
    minmax_scale,
    patient_heterogeneity,
)
from .report import heterogeneity_report
from .robust import (
    RobustResult,
    ccc_table,
    decorrelate,
    lins_ccc,
    perturb_mask,
    perturbed_feature_tables,
    robust_features,
)
from .sampling import (
    STRATEGIES,
    k_for_recovery,
    plot_recovery_curves,
    recovery_curves,
    simulate_sampling,
)

__all__ = [
    "ONE_LESION_REASON",
    "STRATEGIES",
    "HeterogeneityWarning",
    "RobustResult",
    "average_tumoral_heterogeneity",
    "ccc_table",
    "coefficient_of_variation",
    "cosine_distance_matrix",
    "decorrelate",
    "default_features",
    "heterogeneity_report",
    "k_for_recovery",
    "lins_ccc",
    "max_tumoral_divergence",
    "minmax_scale",
    "patient_heterogeneity",
    "perturb_mask",
    "perturbed_feature_tables",
    "plot_recovery_curves",
    "recovery_curves",
    "robust_features",
    "simulate_sampling",
]
