"""Imaging-subtype discovery (Wu et al. 2021) from a per-lesion feature table, in one call.

Pipeline (:func:`discover`), each random step seeded from ``seed``:

1. per-patient matrix of the 313 features (:func:`.data.patient_matrix`: largest lesion by default;
   patients without a complete lesion dropped with a warning);
2. split into a discovery and a validation set: whole cohorts with ``validation_cohort`` (a column of the
   table, e.g. ``cohort``: Wu et al.'s "largest cohort within each cancer type", or the values of
   ``validation_cohorts``), else random patients (``validation_fraction``, default 0.4 ≈ the paper's
   676 / 1,682; stratified by ``cancer_type`` when that column exists); with ``validation_fraction=0`` and no
   cohort the validation steps are skipped; the features are those of ``feature_groups``;
3. discovery set: z-scores fitted on it, autoencoder trained on it (``embedding="autoencoder"``; or
   ``"none"`` = cluster the z-scores directly), consensus clustering (PAM, 1 − Pearson r, k = 2..10);
   validation set: the same scaler and encoder applied unchanged, its own consensus clustering;
   IGP of the discovery clusters in the validation set (centroids = discovery cluster means in the
   clustering space) with clusterRepro permutation p-values; agreement of the validation's own clusters
   with the centroid classes (adjusted Rand); **purity** as Wu et al.: a classifier trained on the discovery
   patients' raw features and clusters predicts the validation patients, compared with the validation set's
   own clusters at its own chosen k (also at the discovery k) — ``purity`` in the result;
4. final subtypes (``refit_all=True``, the paper's "refined using all patients"): scaler, autoencoder and
   consensus clustering refitted on all patients, k chosen again (or forced with ``k``); with
   ``refit_all=False`` the discovery model is final and validation patients get the classifier's subtype;
5. classifier (raw features → subtype) on the final labels; ``label_learnability``: repeated stratified
   5-fold CV accuracy/purity of that classifier on the final labels (overall, per subtype, per cancer type —
   the labels were made with every patient, so this says how learnable they are, not whether they
   reproduce); calibration of its probabilities (:mod:`.calibration`) and the model's domain
   (:mod:`.domain`); Cramér's V subtype × cancer type (+ χ² p); a
   :class:`~.data.SubtypeWarning` and ``weak_structure: true`` when PAC at the chosen k exceeds ``WEAK_PAC``
   (0.2) or when PAC has no local minimum over k (it only falls as k grows, see :mod:`.consensus`) — e.g.
   for data without cluster structure;
6. files in ``out_dir``, all or nothing (staged beside it, moved in when every file is written): the model bundle (:mod:`.bundle`), ``discovery.json`` (everything below),
   ``labels.csv`` (patient, subtype), ``split.csv`` (patient, set), ``consensus/consensus_matrices.npz``
   (final consensus matrix per k, float32, compressed, with the patient order), ``consensus/cdf.csv``
   (k, consensus index, CDF), ``consensus/summary.csv`` (k, PAC, CDF area, Δ-area, cluster sizes).

Subtypes are named ``S1``…``Sk`` by decreasing size.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import InputError
from ..io import atomic_path, read_feature_table, staged_folder, to_jsonable, write_csv
from .autoencoder import AutoencoderModel, AutoencoderSettings, encode, import_torch, train_autoencoder
from .bundle import SubtypeModel, now_utc, subtype_profiles, write_json
from .classifier import ClassifierSettings, predict_labels, purity_cv, train_classifier
from .consensus import DEFAULT_KS, ConsensusResult, consensus_cluster
from .data import (
    AGGREGATIONS,
    FEATURE_GROUPS,
    PatientMatrix,
    Scaler,
    SubtypeWarning,
    check_one_input_per_patient,
    feature_groups_of,
    group_feature_names,
    patient_matrix,
)
from .validation import centroids_of, cluster_purity, cramers_v, igp_test

EMBEDDINGS: tuple[str, ...] = ("autoencoder", "none")
#: PAC at the chosen k above which discovery warns that the clusters are ambiguous (``weak_structure``).
WEAK_PAC: float = 0.2
Progress = Callable[[float, str], None]

PROVENANCE = (
    "Imaging subtypes after Wu J. et al., Nat Mach Intell 2021 ('Radiological tumour classification across "
    "imaging modality and histology'): 313 features (SPHARM shape/burden + regional variation) → autoencoder "
    "313-150-10 → consensus clustering (PAM, 1 − Pearson r, pItem 0.8) → subtypes; classifier on the raw "
    "features for new patients. Re-implemented in RadTyper (PyTorch autoencoder, numpy PAM/consensus, "
    "scikit-learn HistGradientBoosting instead of R autoencoder/ConsensusClusterPlus/xgboost). Subtype numbers "
    "are by cluster size in this cohort and do not correspond to the paper's subtypes 1-4."
)


@dataclass
class DiscoverySettings:
    """Every setting of :func:`discover` (keyword arguments of the same names)."""

    aggregation: str = "largest"
    embedding: str = "autoencoder"
    ks: Sequence[int] = DEFAULT_KS
    reps: int = 1000
    p_item: float = 0.8
    k: int | None = None
    k_rule: str = "pac"
    validation_fraction: float = 0.4
    cancer_type_column: str = "cancer_type"
    validation_cohort: str | None = None
    validation_cohorts: Sequence[str] | None = None
    feature_groups: Sequence[str] = FEATURE_GROUPS
    refit_all: bool = True
    igp_permutations: int = 1000
    purity_folds: int = 5
    purity_repeats: int = 5
    calibration_folds: int = 5
    domain_quantile: float = 0.99
    seed: int = 0
    n_jobs: int = 1
    save_consensus: bool = True
    autoencoder: AutoencoderSettings = field(default_factory=AutoencoderSettings)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)

    def check(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise InputError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.embedding not in EMBEDDINGS:
            raise InputError(f"embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")
        if not 0 <= self.validation_fraction < 1:
            raise InputError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.reps < 1 or self.igp_permutations < 0 or self.purity_repeats < 0:
            raise InputError("reps must be ≥ 1, igp_permutations and purity_repeats ≥ 0")
        if not self.feature_groups:
            raise InputError(f"feature_groups: give at least one of {', '.join(FEATURE_GROUPS)}")
        group_feature_names(self.feature_groups)  # checks the names
        if not 0 < self.domain_quantile <= 1:
            raise InputError(f"domain_quantile must be in (0, 1], got {self.domain_quantile}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ks"] = [int(k) for k in self.ks]
        d["feature_groups"] = list(self.feature_groups)
        d["validation_cohorts"] = None if self.validation_cohorts is None else list(self.validation_cohorts)
        return d


@dataclass
class _Phase:
    """One clustering of one set of patients."""

    pm: PatientMatrix
    scaler: Scaler
    ae: AutoencoderModel | None
    space: np.ndarray
    cc: ConsensusResult
    labels: np.ndarray  # subtype names at the chosen k


def _settings(kwargs: dict[str, Any]) -> DiscoverySettings:
    known = {f.name for f in fields(DiscoverySettings)}
    ae_known = {f.name for f in fields(AutoencoderSettings)}
    clf_known = {f.name for f in fields(ClassifierSettings)}
    ae_kw = {k[3:]: v for k, v in kwargs.items() if k.startswith("ae_") and k[3:] in ae_known}
    clf_kw = {k[4:]: v for k, v in kwargs.items() if k.startswith("clf_") and k[4:] in clf_known}
    rest = {k: v for k, v in kwargs.items() if not (k.startswith("ae_") or k.startswith("clf_"))}
    unknown = sorted(set(rest) - known) + sorted(
        k
        for k in kwargs
        if (k.startswith("ae_") and k[3:] not in ae_known)
        or (k.startswith("clf_") and k[4:] not in clf_known)
    )
    if unknown:
        raise TypeError(f"unknown discovery settings: {', '.join(unknown)}")
    s = DiscoverySettings(**rest)
    if ae_kw:
        s.autoencoder = AutoencoderSettings(**{**asdict(s.autoencoder), **ae_kw})
    if clf_kw:
        s.classifier = ClassifierSettings(**{**asdict(s.classifier), **clf_kw})
    s.autoencoder = AutoencoderSettings(**{**asdict(s.autoencoder), "seed": s.autoencoder.seed + s.seed})
    s.classifier = ClassifierSettings(**{**asdict(s.classifier), "seed": s.classifier.seed + s.seed})
    s.check()
    return s


def _names(labels: np.ndarray) -> np.ndarray:
    return np.array([f"S{int(v) + 1}" for v in labels], dtype=object)


def _cluster_phase(
    pm: PatientMatrix, s: DiscoverySettings, seed: int, k: int | None, progress: Progress | None, what: str
) -> _Phase:
    scaler = Scaler.fit(pm.x)
    z = scaler.transform(pm.x)
    ae = None
    if s.embedding == "autoencoder":
        if progress is not None:
            progress(0.0, f"{what}: training the autoencoder")
        ae = train_autoencoder(z, s.autoencoder)
        space = encode(ae.state, z)
    else:
        space = z
    return _cluster_space(pm, scaler, ae, space, s, seed, k, progress, what)


def _feasible_ks(n: int, s: DiscoverySettings) -> list[int]:
    top = int(np.floor(n * s.p_item)) - 1
    return [int(k) for k in s.ks if 2 <= k <= top]


def _cluster_space(
    pm: PatientMatrix,
    scaler: Scaler,
    ae: AutoencoderModel | None,
    space: np.ndarray,
    s: DiscoverySettings,
    seed: int,
    k: int | None,
    progress: Progress | None,
    what: str,
) -> _Phase:
    ks = _feasible_ks(len(pm.patients), s)
    if not ks:
        raise InputError(f"{what}: too few patients ({len(pm.patients)}) for k = {list(s.ks)}")
    if k is not None and k not in ks:
        raise InputError(f"{what}: k={k} is not feasible with {len(pm.patients)} patients (k in {ks})")

    def prog(f: float, msg: str) -> None:
        if progress is not None:
            progress(f, f"{what}: {msg}")

    cc = consensus_cluster(
        space,
        ks=ks,
        reps=s.reps,
        p_item=s.p_item,
        seed=seed,
        k=k,
        k_rule=s.k_rule,
        n_jobs=s.n_jobs,
        progress=prog,
    )
    return _Phase(pm, scaler, ae, space, cc, _names(cc.labels[cc.chosen_k]))


def _cohort_split(pm: PatientMatrix, s: DiscoverySettings) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Whole cohorts held out (Wu et al.: the largest cohort within each cancer type is the validation set)."""
    col = str(s.validation_cohort)
    if col not in pm.meta.columns:
        raise InputError(f"--validation-cohort {col}: the feature table has no column '{col}'")
    values = pm.meta[col]
    if values.isna().any():
        raise InputError(
            f"--validation-cohort {col}: {int(values.isna().sum())} patients have no value of '{col}'"
        )
    values = values.astype(str)
    cohorts = values.value_counts()
    if s.validation_cohorts:
        held = [str(v) for v in s.validation_cohorts]
        unknown = [v for v in held if v not in cohorts.index]
        if unknown:
            raise InputError(
                f"--validation-cohort {col}: no patient of cohort(s) {', '.join(unknown)} "
                f"(cohorts: {', '.join(sorted(cohorts.index))})"
            )
    else:
        ct = s.cancer_type_column
        held = []
        if ct in pm.meta.columns and pm.meta[ct].notna().all():
            types = pm.meta[ct].astype(str)
            for t in sorted(set(types)):
                sizes = values[types == t].value_counts()
                if len(sizes) >= 2:  # the largest cohort of this cancer type (ties: first by name)
                    best = sorted(sizes.index, key=lambda c: (-sizes[c], c))[0]
                    held.append(str(best))
        if not held and len(cohorts) >= 2:
            held = [sorted(cohorts.index, key=lambda c: (-cohorts[c], c))[0]]
    held = sorted(set(held))
    if not held:
        raise InputError(
            f"--validation-cohort {col}: needs at least 2 cohorts (found {', '.join(cohorts.index)})"
        )
    val_mask = values.isin(held).to_numpy()
    if val_mask.all():
        raise InputError(
            f"--validation-cohort {col}: every patient is in the held-out cohort(s) {', '.join(held)}"
        )
    idx = np.arange(len(pm.patients))
    return idx[~val_mask], idx[val_mask], sorted(held)


def _split(pm: PatientMatrix, s: DiscoverySettings) -> tuple[np.ndarray, np.ndarray, str | None]:
    from sklearn.model_selection import train_test_split

    n = len(pm.patients)
    idx = np.arange(n)
    strat = None
    col = s.cancer_type_column
    if col in pm.meta.columns and pm.meta[col].notna().all():
        counts = pm.meta[col].value_counts()
        if len(counts) > 1 and counts.min() >= 2:
            strat = pm.meta[col].to_numpy().astype(str)
    disc, val = train_test_split(
        idx, test_size=s.validation_fraction, random_state=s.seed, shuffle=True, stratify=strat
    )
    return np.sort(disc), np.sort(val), (col if strat is not None else None)


def _ari(a: Sequence[Any], b: Sequence[Any]) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(np.asarray(a).astype(str), np.asarray(b).astype(str)))


def _crosstab(a: Sequence[Any], b: Sequence[Any]) -> dict[str, dict[str, int]]:
    t = pd.crosstab(pd.Series(np.asarray(a).astype(str)), pd.Series(np.asarray(b).astype(str)))
    return {str(r): {str(c): int(t.loc[r, c]) for c in t.columns} for r in t.index}


def _validate(
    table_pm: PatientMatrix, s: DiscoverySettings, progress: Progress | None
) -> tuple[dict[str, Any], _Phase, np.ndarray, np.ndarray]:
    held: list[str] | None = None
    if s.validation_cohort:
        disc_idx, val_idx, held = _cohort_split(table_pm, s)
        strat = None
    else:
        disc_idx, val_idx, strat = _split(table_pm, s)
    dpm, vpm = table_pm.subset(disc_idx), table_pm.subset(val_idx)
    disc = _cluster_phase(dpm, s, s.seed + 1, s.k, progress, "discovery")
    vz = disc.scaler.transform(vpm.x)
    vspace = encode(disc.ae.state, vz) if disc.ae is not None else vz
    k_d = disc.cc.chosen_k
    out: dict[str, Any] = {
        "split": "whole cohorts held out" if held is not None else "random patients",
        "n_discovery": len(disc_idx),
        "n_validation": len(val_idx),
        "stratified_by": strat,
        "discovery": disc.cc.summary(),
    }
    if held is not None:
        out["validation_cohort_column"] = s.validation_cohort
        out["held_out_cohorts"] = held
    if disc.ae is not None:
        out["discovery"]["autoencoder"] = disc.ae.info()
        vrec = ((vz - _reconstruct(disc.ae, vz)) ** 2).mean()
        out["validation_reconstruction_mse"] = float(vrec)

    # validation set clustered on its own (same scaler/encoder, same settings)
    vks = _feasible_ks(len(val_idx), s)
    val_labels_at_kd = val_labels_own = None
    if vks:
        vphase = _cluster_space(
            vpm, disc.scaler, disc.ae, vspace, s, s.seed + 2, None, progress, "validation"
        )
        out["validation"] = vphase.cc.summary()
        val_labels_own = vphase.labels
        if k_d in vphase.cc.labels:
            val_labels_at_kd = _names(vphase.cc.labels[k_d])
    else:
        out["validation"] = {"skipped": f"too few validation patients ({len(val_idx)}) for k = {list(s.ks)}"}

    # IGP of the discovery clusters in the validation set
    subtypes = [f"S{i + 1}" for i in range(k_d)]
    cents = centroids_of(disc.space, disc.labels, subtypes)
    if progress is not None:
        progress(0.0, "validation: IGP permutations")
    res = igp_test(vspace, cents, n_permutations=s.igp_permutations, seed=s.seed + 3)
    classes = np.array([subtypes[c] if c >= 0 else "" for c in res["classes"]], dtype=object)
    out["igp"] = {
        "subtypes": subtypes,
        "igp": res["igp"],
        "size": res["size"],
        "p_value": res["p_value"] if s.igp_permutations else None,
        "number": res["number"],
        "n_permutations": s.igp_permutations,
        "space": "autoencoder codes" if disc.ae is not None else "z-scores",
    }
    if val_labels_at_kd is not None:
        out["validation_clusters_vs_centroid_classes"] = {
            "adjusted_rand": _ari(val_labels_at_kd, classes),
            "table": _crosstab(val_labels_at_kd, classes),
        }
    # transfer: classifier trained on discovery predicts validation; compared with validation's own clusters
    clf = train_classifier(dpm.x, disc.labels, s.classifier)
    pred = predict_labels(clf, vpm.x, s.classifier.threads)
    transfer: dict[str, Any] = {
        "what": "subtypes predicted by the discovery-trained classifier vs the validation set's own consensus "
        "clustering at its own chosen k (Wu et al.'s cluster purity)",
        "predicted_sizes": pd.Series(pred).value_counts().sort_index().to_dict(),
    }
    if val_labels_own is not None:
        transfer.update(cluster_purity(pred, val_labels_own))
        transfer["adjusted_rand"] = _ari(pred, val_labels_own)
        transfer["k_validation"] = int(vphase.cc.chosen_k)
    if val_labels_at_kd is not None:
        transfer["at_discovery_k"] = {
            "k": int(k_d),
            "purity": cluster_purity(pred, val_labels_at_kd)["purity"],
            "adjusted_rand": _ari(pred, val_labels_at_kd),
        }
    transfer["agreement_with_centroid_classes"] = float(np.mean(pred.astype(str) == classes.astype(str)))
    out["transfer"] = transfer
    out["predicted"] = pred
    return out, disc, disc_idx, val_idx


def _reconstruct(ae: AutoencoderModel, z: np.ndarray) -> np.ndarray:
    from .autoencoder import reconstruct

    return reconstruct(ae.state, z)


def _write_consensus(cc: ConsensusResult, patients: list[str], d: Path) -> list[str]:
    d.mkdir(parents=True, exist_ok=True)
    with atomic_path(d / "consensus_matrices.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                patients=np.asarray(patients, dtype=str),
                **{f"k{k}": cc.consensus[k].astype(np.float32) for k in cc.ks},
                **{f"labels_k{k}": cc.labels[k].astype(np.int16) for k in cc.ks},
            )
    rows = [
        {"k": k, "consensus_index": float(x), "cdf": float(y)}
        for k in cc.ks
        for x, y in zip(cc.cdf_x, cc.cdf[k], strict=True)
    ]
    write_csv(pd.DataFrame(rows), d / "cdf.csv")
    summary = pd.DataFrame(
        {
            "k": cc.ks,
            "pac": [cc.pac[k] for k in cc.ks],
            "cdf_area": [cc.area[k] for k in cc.ks],
            "delta_area": [cc.delta_area[k] for k in cc.ks],
            "cluster_sizes": [" ".join(map(str, np.bincount(cc.labels[k], minlength=k))) for k in cc.ks],
        }
    )
    write_csv(summary, d / "summary.csv")
    return ["consensus/consensus_matrices.npz", "consensus/cdf.csv", "consensus/summary.csv"]


def discover(
    features: pd.DataFrame | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Discover imaging subtypes and write the model and reports into ``out_dir`` → discovery.json content.

    ``settings`` are the fields of :class:`DiscoverySettings`; autoencoder and classifier parameters are
    given with the prefixes ``ae_`` and ``clf_`` (e.g. ``ae_max_epochs=200``, ``clf_max_iter=100``).
    """
    s = _settings(settings)
    if s.embedding == "autoencoder":
        import_torch()  # fail early with the install hint
    from ..features import FEATURE_PIPELINE_COLUMN

    table = read_feature_table(features)
    check_one_input_per_patient(table)
    names = group_feature_names(s.feature_groups)
    absent = [g for g in s.feature_groups if not set(group_feature_names((g,))) & set(table.columns)]
    if absent:
        have = [g for g in FEATURE_GROUPS if set(group_feature_names((g,))) <= set(table.columns)]
        raise InputError(
            f"the feature table has no {', '.join(absent)} features; discover on the groups it has with "
            f"--feature-groups {','.join(have) or 'shape,burden'}"
        )
    meta_cols = tuple(
        dict.fromkeys(
            c for c in (s.cancer_type_column, "modality", FEATURE_PIPELINE_COLUMN, s.validation_cohort) if c
        )
    )
    pm = patient_matrix(table, names, s.aggregation, meta_columns=meta_cols)
    out = Path(out_dir)
    result: dict[str, Any] = {
        "radtyper_version": __version__,
        "created": now_utc(),
        "settings": s.to_dict(),
        "n_patients": len(pm.patients),
        "dropped_patients": pm.dropped,
        "aggregation": s.aggregation,
        "embedding": s.embedding,
    }

    val_info = None
    disc = None
    split = pd.DataFrame({"patient": pm.patients, "set": "all"})
    if s.validation_fraction > 0:
        val_info, disc, disc_idx, val_idx = _validate(pm, s, progress)
        val_info.pop("predicted")
        split.loc[disc_idx, "set"] = "discovery"
        split.loc[val_idx, "set"] = "validation"
        result["validation"] = val_info
        if "purity" in val_info["transfer"]:
            result["purity"] = {
                k: val_info["transfer"][k]
                for k in ("what", "purity", "per_cluster", "adjusted_rand", "k_validation")
            }

    if s.refit_all or disc is None:
        k_final = s.k
        final = _cluster_phase(pm, s, s.seed + 4, k_final, progress, "all patients")
        final_x, final_labels, final_pm = pm.x, final.labels, pm
        result["consensus"] = final.cc.summary()
        if final.ae is not None:
            result["autoencoder"] = final.ae.info()
        if disc is not None:
            result["discovery_vs_final"] = {
                "adjusted_rand": _ari(disc.labels, final_labels[disc_idx]),
                "table": _crosstab(disc.labels, final_labels[disc_idx]),
            }
        labels_all = final_labels
    else:
        final = disc
        final_x, final_labels, final_pm = disc.pm.x, disc.labels, disc.pm
        result["consensus"] = disc.cc.summary()
        if disc.ae is not None:
            result["autoencoder"] = disc.ae.info()
        labels_all = np.empty(len(pm.patients), dtype=object)
        labels_all[disc_idx] = disc.labels
    k = final.cc.chosen_k
    subtypes = [f"S{i + 1}" for i in range(k)]
    result["k"] = k
    result["subtypes"] = subtypes
    result["pac_at_k"] = final.cc.pac[k]
    no_minimum = not final.cc.pac_local_minimum
    result["weak_structure"] = bool(final.cc.pac[k] > WEAK_PAC or no_minimum)
    if result["weak_structure"]:
        reasons = []
        if final.cc.pac[k] > WEAK_PAC:
            reasons.append(f"PAC = {final.cc.pac[k]:.2f} at k = {k} (> {WEAK_PAC})")
        if no_minimum:
            reasons.append(
                f"PAC has no local minimum over k = {final.cc.ks[0]}…{final.cc.ks[-1]} (it only falls as k grows)"
            )
        why = "; ".join(reasons)
        warnings.warn(
            f"the consensus clustering is ambiguous: {why}; "
            "the subtypes may not be reproducible — check the IGP p-values and the consensus CDF",
            SubtypeWarning,
            stacklevel=2,
        )

    if progress is not None:
        progress(0.0, "training the subtype classifier")
    clf = train_classifier(final_x, final_labels, s.classifier)
    if not s.refit_all and disc is not None:
        labels_all[val_idx] = predict_labels(clf, pm.x[val_idx], s.classifier.threads)
    result["subtype_sizes"] = {st: int(np.sum(labels_all == st)) for st in subtypes}

    groups = None
    col = s.cancer_type_column
    if col in final_pm.meta.columns and final_pm.meta[col].notna().all():
        groups = final_pm.meta[col].to_numpy().astype(str)
    if s.purity_repeats > 0:
        if progress is not None:
            progress(0.0, "label learnability (repeated cross-validation)")
        # how well a classifier relearns the final labels (which every patient helped to make): not a
        # reproducibility measure — that is the validation purity above
        result["label_learnability"] = purity_cv(
            final_x,
            final_labels,
            n_splits=s.purity_folds,
            n_repeats=s.purity_repeats,
            groups=groups,
            settings=s.classifier,
            seed=s.seed + 5,
            n_jobs=s.n_jobs,
        )
    if col in pm.meta.columns and pm.meta[col].notna().all():
        result["cramers_v"] = cramers_v(labels_all.astype(str), pm.meta[col].to_numpy().astype(str))
    else:
        result["cramers_v"] = None

    import sklearn

    from .calibration import calibrate
    from .domain import build_domain

    if progress is not None:
        progress(0.0, "calibrating the probabilities (out-of-fold temperature scaling)")
    calibration = calibrate(
        final_x, final_labels, subtypes, s.classifier, folds=s.calibration_folds, seed=s.seed + 6
    )
    result["calibration"] = calibration
    z_final = final.scaler.transform(final_x)
    pipeline = None
    if FEATURE_PIPELINE_COLUMN in final_pm.meta.columns:
        pipes = sorted(set(final_pm.meta[FEATURE_PIPELINE_COLUMN].dropna().astype(str)))
        if len(pipes) > 1:
            raise InputError(
                f"the feature table mixes features of several pipelines ({', '.join(pipes)}): recompute them "
                "with one RadTyper version"
            )
        pipeline = pipes[0] if pipes else None
    sites = None
    if "site" in table.columns:
        src = final_pm.source_rows
        sites = sorted(set(table["site"].astype(str).to_numpy()[src[src >= 0]]))
    modalities = (
        sorted(set(final_pm.meta["modality"].dropna().astype(str)))
        if "modality" in final_pm.meta.columns
        else None
    )
    domain, domain_ref = build_domain(
        z_final,
        final_x,
        list(pm.feature_names),
        feature_groups_of(pm.feature_names),
        modalities=modalities,
        sites=sites,
        feature_pipeline=pipeline,
        quantile=s.domain_quantile,
    )
    result["domain"] = domain
    model = SubtypeModel(
        feature_names=list(pm.feature_names),
        aggregation=s.aggregation,
        embedding=s.embedding,
        scaler=final.scaler,
        subtypes=subtypes,
        classifier=clf,
        profiles=subtype_profiles(z_final, list(pm.feature_names), final_labels, subtypes),
        training={
            **s.to_dict(),
            "n_patients": len(final_pm.patients),
            "chosen_k": k,
            "k_rule": final.cc.k_rule,
            "pac": {str(kk): v for kk, v in final.cc.pac.items()},
        },
        provenance=PROVENANCE,
        autoencoder_info=final.ae.info() if final.ae is not None else None,
        created=result["created"],
        radtyper_version=__version__,
        sklearn_version=sklearn.__version__,
        domain=domain,
        calibration=calibration,
        feature_pipeline=pipeline,
        _autoencoder_state=final.ae.state if final.ae is not None else None,
        _domain_reference=domain_ref,
    )
    # all-or-nothing: every file is made in a staging folder and moved into ``out`` only when all succeeded
    with staged_folder(out) as stage:
        model.save(stage)
        result["profiles"] = model.profiles
        files = ["model.json", "classifier.joblib", "domain_reference.npy"] + (
            ["autoencoder.pt"] if s.embedding == "autoencoder" else []
        )
        write_csv(
            pd.DataFrame({"patient": pm.patients, "subtype": labels_all.astype(str)}), stage / "labels.csv"
        )
        write_csv(split, stage / "split.csv")
        files += ["labels.csv", "split.csv"]
        if s.save_consensus:
            files += _write_consensus(final.cc, final_pm.patients, stage / "consensus")
        files.append("discovery.json")
        result["files"] = files
        result = to_jsonable(result)
        write_json(result, stage / "discovery.json")
    if s.embedding != "autoencoder":
        (out / "autoencoder.pt").unlink(missing_ok=True)  # an earlier autoencoder model's weights
    return result


def predict(model: Any, features: pd.DataFrame | str | os.PathLike[str]) -> pd.DataFrame:
    """Subtypes of new patients (see :func:`.bundle.predict`)."""
    from .bundle import predict as _predict

    return _predict(model, features)
