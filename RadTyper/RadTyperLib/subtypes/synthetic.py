"""Synthetic per-lesion feature tables with planted subtypes (tests, benchmarks, demos).

A patient of subtype c has the feature vector ``scale ⊙ (μ_c + L f + ε) + offset``: ``μ_c`` a cluster
signature (a random ±``separation`` shift on ``signal_fraction`` of the 313 features), ``L f`` shared
low-rank nuisance variation (``n_factors`` latent factors, like the strong correlations between SPHARM
features), ``ε`` heteroscedastic feature noise (SD 0.5–1.5), then per-feature scales/offsets spanning
orders of magnitude; ``burden_volume_mm3`` = exp(·) is log-normal and positive. With ``k=0`` there is no
structure at all (i.i.d. N(0, 1) before the scaling). Extra lesions of a patient (``lesions_per_patient`` >
1) are noisy, smaller copies of its main lesion, so the "largest" aggregation recovers the main one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import VOLUME, wu_feature_names

CANCER_TYPES: tuple[str, ...] = ("lung", "breast", "gbm")


def planted_cohort(
    n_patients: int = 200,
    k: int = 4,
    *,
    separation: float = 1.0,
    signal_fraction: float = 0.4,
    n_factors: int = 5,
    factor_sd: float = 1.0,
    lesions_per_patient: int = 1,
    cancer_types: tuple[str, ...] = CANCER_TYPES,
    seed: int = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """(per-lesion feature table, true subtype of each patient 0..k−1; all 0 when k = 0)."""
    rng = np.random.default_rng(seed)
    names = list(wu_feature_names())
    p = len(names)
    truth = np.arange(n_patients) % max(k, 1) if k > 0 else np.zeros(n_patients, dtype=int)
    truth = rng.permutation(truth)
    if k > 0:
        mu = np.zeros((k, p))
        for c in range(k):
            on = rng.random(p) < signal_fraction
            mu[c, on] = separation * rng.choice([-1.0, 1.0], on.sum())
        loadings = rng.normal(0.0, factor_sd / np.sqrt(n_factors), (p, n_factors))
        noise_sd = rng.uniform(0.5, 1.5, p)
        latent = mu[truth] + rng.normal(size=(n_patients, n_factors)) @ loadings.T
        latent += rng.normal(size=(n_patients, p)) * noise_sd
    else:
        latent = rng.normal(size=(n_patients, p))
    scale = 10.0 ** rng.uniform(-2, 2, p)
    offset = rng.normal(0.0, 1.0, p) * scale
    x = latent * scale + offset
    vol = names.index(VOLUME)
    x[:, vol] = np.exp(8.0 + 0.6 * latent[:, vol])
    ctype = rng.choice(list(cancer_types), n_patients)
    rows = []
    for i in range(n_patients):
        pid = f"P{i:04d}"
        for j in range(lesions_per_patient):
            v = x[i].copy()
            if j > 0:
                v = v + rng.normal(0.0, 0.5, p) * scale
                v[vol] = x[i, vol] * rng.uniform(0.1, 0.6)
            rows.append(
                {
                    "lesion": f"{pid}_L{j + 1}",
                    "site": "primary" if j == 0 else "other",
                    **dict(zip(names, v, strict=True)),
                    "patient": pid,
                    "modality": "CT",
                    "cancer_type": ctype[i],
                }
            )
    return pd.DataFrame(rows), truth
