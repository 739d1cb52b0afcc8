"""Cohort-level ``radtyper`` commands: ``cohort extract``, ``discover``, ``predict``, ``report``.

Registered into the main parser by :func:`add_cohort_commands`; each handler is a thin call into
:mod:`RadTyperLib.cohort`, :mod:`RadTyperLib.subtypes` or :mod:`RadTyperLib.report`.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from .errors import InputError


def cmd_cohort_extract(args: argparse.Namespace) -> int:
    """``radtyper cohort extract MANIFEST.csv --out DIR``."""
    from .cohort import extract_cohort, failure_summary
    from .features import FeatureSettings

    settings = FeatureSettings(radiomics=not args.no_radiomics, region_mode=args.region_mode)
    result = extract_cohort(
        args.manifest, args.out, settings=settings, workers=args.workers, dask_address=args.dask
    )
    print(
        f"cohort: {len(result.computed)} patient(s) computed, {len(result.skipped)} already done; "
        f"{failure_summary(result.failures)}; {len(result.features)} lesion rows → "
        f"{Path(args.out) / 'features.csv'}"
    )
    if len(result.failures):
        print(f"cohort: failures and their reasons → {Path(args.out) / 'failures.csv'}")
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    """``radtyper discover FEATURES.csv --out MODEL_DIR``."""
    from .subtypes import discover

    settings: dict[str, Any] = {
        "reps": args.reps,
        "seed": args.seed,
        "aggregation": args.aggregation,
        "validation_fraction": args.validation_fraction,
        "purity_repeats": args.purity_repeats,
        "igp_permutations": args.igp_permutations,
    }
    if args.k is not None:
        settings["k"] = args.k
    if args.validation_cohort:
        settings["validation_cohort"] = args.validation_cohort
        if args.validation_values:
            settings["validation_cohorts"] = [v for v in args.validation_values.split(",") if v]
    elif args.validation_values:
        raise InputError("--validation-values needs --validation-cohort COLUMN")
    settings["feature_groups"] = [g.strip() for g in args.feature_groups.split(",") if g.strip()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = discover(args.features, args.out, **settings)
    for w in caught:
        print(f"radtyper: warning: {w.message}")
    print(
        f"discover: k = {result['k']} subtypes {result['subtypes']} (PAC {result['pac_at_k']:.3f}"
        f"{', weak structure' if result['weak_structure'] else ''}) from {result['n_patients']} patients "
        f"→ {args.out}"
    )
    val = result.get("validation") or {}
    if "purity" in result:
        held = val.get("held_out_cohorts")
        where = f"held-out cohort(s) {', '.join(held)}" if held else "validation patients"
        print(
            f"discover: purity on the {where} {result['purity']['purity']:.3f} (adjusted Rand "
            f"{result['purity']['adjusted_rand']:.3f}; their own clustering vs the discovery model's prediction)"
        )
    cal = result.get("calibration") or {}
    if "calibrated" in cal:
        print(
            f"discover: probabilities calibrated (temperature {cal['temperature']:.2f}); Brier score "
            f"{cal['uncalibrated']['brier']:.3f} → {cal['calibrated']['brier']:.3f} on held-out folds"
        )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``radtyper predict --model MODEL --features CSV --out CSV``."""
    from .io import atomic_path
    from .subtype_display import subtype_headline
    from .subtypes import predict

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise InputError(f"{out}: --out must be a .csv file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = predict(args.model, args.features)
    for w in caught:
        print(f"radtyper: warning: {w.message}")
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    for _, row in table.iterrows():
        print(f"predict: patient {row['patient']}: subtype {subtype_headline(row.to_dict())}")
    return 0


def load_consensus(model_dir: Path) -> dict[str, Any] | None:
    """Consensus matrix, labels and CDFs at the chosen k from a ``radtyper discover`` folder (or None).

    The labels are the subtype names of ``labels.csv`` (cluster i → ``S{i+1}``).
    """
    import json

    import numpy as np
    import pandas as pd

    npz, summary, cdf = (
        model_dir / "consensus" / n for n in ("consensus_matrices.npz", "summary.csv", "cdf.csv")
    )
    discovery = model_dir / "discovery.json"
    if not (npz.is_file() and summary.is_file() and cdf.is_file() and discovery.is_file()):
        return None
    k = int(json.loads(discovery.read_text())["k"])
    arrays = np.load(npz)
    curves = pd.read_csv(cdf)
    deltas = pd.read_csv(summary)
    return {
        "matrix": arrays[f"k{k}"],
        "labels": [f"S{int(v) + 1}" for v in arrays[f"labels_k{k}"]],
        "cdf": {int(kk): g["cdf"].to_numpy() for kk, g in curves.groupby("k")},
        "cdf_x": curves.loc[curves["k"] == curves["k"].iloc[0], "consensus_index"].to_numpy(),
        "delta_area": dict(zip(deltas["k"].astype(int), deltas["delta_area"], strict=True)),
    }


def cmd_report(args: argparse.Namespace) -> int:
    """``radtyper report [--model DIR] [--features CSV] [--clinical CSV] [--heterogeneity DIR] --out DIR``."""
    from .report import (
        cohort_report,  # all-or-nothing: the report and the model's figures in one staging folder
    )

    labels = consensus = None
    if args.model:
        model_dir = Path(args.model)
        if not (model_dir / "labels.csv").is_file():
            raise InputError(f"{model_dir}: not a 'radtyper discover' folder (labels.csv missing)")
        labels = model_dir / "labels.csv"
        consensus = load_consensus(model_dir)
    if args.clinical and labels is None:
        raise InputError("--clinical needs --model (the subtypes to compare)")
    sections = []
    if args.predictions:
        from .io import read_feature_table
        from .subtypes.model_report import prediction_section

        sections.append(prediction_section(read_feature_table(args.predictions), "Predicted subtypes"))
    if args.model:
        from functools import partial

        from .subtypes.model_report import model_sections

        sections.append(partial(model_sections, Path(args.model)))  # figures made inside the staged report
    html = cohort_report(
        args.out,
        labels=labels,
        clinical=args.clinical,
        time=args.time,
        event=args.event,
        covariates=args.covariates or (),
        categorical=args.categorical or (),
        features=args.features,
        consensus=consensus,
        heterogeneity=args.heterogeneity,
        extra_sections=sections,
        seed=args.seed,
    )
    print(f"report: {html}")
    return 0


def add_cohort_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``cohort``, ``discover``, ``predict`` and ``report``."""
    p = sub.add_parser(
        "cohort",
        help="cohort batch processing (cohort extract MANIFEST.csv --out DIR)",
        description="Cohort batch processing.",
    )
    csub = p.add_subparsers(dest="cohort_command", metavar="COMMAND", required=True)
    e = csub.add_parser(
        "extract",
        help="features of every lesion of every patient of a manifest; resumable",
        description="Compute the per-lesion features of every patient listed in MANIFEST.csv (columns: "
        "patient, image, lesions; optional parenchyma, sites, modality, cancer_type, and image_<PHASE> "
        "columns for further co-registered images on the image's grid with phase, the name of image's "
        "phase: multi-phase IITH features iith_<phase>_<roi>_*; relative paths are "
        "relative to the manifest). Lesions run in parallel; each patient's result is written atomically "
        "to DIR/patients/ and a rerun skips finished patients; failures are logged with their reason in "
        "DIR/failures.csv without stopping the cohort; DIR/features.csv is the whole table.",
    )
    e.add_argument("manifest", metavar="MANIFEST.csv")
    e.add_argument("--out", required=True, metavar="DIR", help="output folder (reused on reruns)")
    e.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    e.add_argument(
        "--dask", metavar="ADDRESS", help="run the tasks on an existing Dask cluster (scheduler address)"
    )
    e.add_argument("--no-radiomics", action="store_true", help="skip the pyradiomics columns")
    e.add_argument("--region-mode", choices=["2d", "3d"], default="2d", help="margin shells (default 2d)")
    e.set_defaults(handler=cmd_cohort_extract)

    p = sub.add_parser(
        "discover",
        help="discover imaging subtypes on a cohort (autoencoder + consensus clustering) → model bundle",
        description="Per patient (largest lesion by default), standardise the features of --feature-groups "
        "(the 313 by default), encode them with an autoencoder p→150→10 (torch), run consensus clustering "
        "(PAM on 1 − Pearson r, 80 %% resampling, k = 2…10; PAC and Δ-area), validate on held-out patients "
        "(random, or whole cohorts with --validation-cohort): IGP, and purity = the held-out set clustered on "
        "its own vs the discovery model's prediction; train the subtype classifier, calibrate its "
        "probabilities (out-of-fold temperature scaling), record the model's domain, and write the model "
        "bundle, discovery.json, labels.csv and the consensus matrices into MODEL_DIR.",
    )
    p.add_argument(
        "features", metavar="FEATURES.csv", help="per-lesion feature table (e.g. cohort features.csv)"
    )
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="output folder (the model bundle)")
    p.add_argument("--reps", type=int, default=1000, help="consensus repetitions (default 1000; paper 10000)")
    p.add_argument("--k", type=int, help="force the number of subtypes (default: chosen by PAC)")
    p.add_argument("--aggregation", choices=["largest", "mean"], default="largest", help="lesions → patient")
    p.add_argument("--validation-fraction", type=float, default=0.4, help="validation split for IGP (0.4)")
    p.add_argument(
        "--validation-cohort",
        metavar="COLUMN",
        help="hold out whole cohorts named by this column of the table (e.g. cohort, site) instead of random "
        "patients: the largest cohort within each cancer type (Wu et al.), or those of --validation-values; "
        "the held-out cohort is clustered on its own and compared with the discovery model's prediction (purity)",
    )
    p.add_argument(
        "--validation-values", metavar="V1,V2", help="the cohort(s) to hold out (with --validation-cohort)"
    )
    p.add_argument(
        "--feature-groups",
        default="shape,burden,region",
        metavar="GROUPS",
        help="feature groups the model uses, comma-separated: shape, burden, region (default all three; e.g. "
        "shape,burden for masks without an image); recorded in the bundle, never imputed when absent",
    )
    p.add_argument(
        "--purity-repeats",
        type=int,
        default=5,
        help="repeats of the 5-fold CV of label_learnability (how well a classifier relearns the final labels; "
        "default 5)",
    )
    p.add_argument("--igp-permutations", type=int, default=1000, help="IGP permutations (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(handler=cmd_discover)

    p = sub.add_parser(
        "predict",
        help="predict the subtype of patients with a model bundle (with a domain check)",
        description="Write per patient the columns patient, subtype, one calibrated probability column per "
        "subtype (p_<subtype>), in_domain (true/false: is the patient like the model's training patients — "
        "modality, site, feature groups, feature pipeline, size range and a k-nearest-neighbour distance), "
        "domain_score (higher = further out; the threshold is in the bundle's model.json) and domain_note (why "
        "a patient is out). A subtype outside the domain is still given, but marked. The features must be "
        "those the model was trained on; a table with two inputs under one patient id is refused.",
    )
    p.add_argument("--model", required=True, metavar="MODEL", help="model bundle folder (radtyper discover)")
    p.add_argument("--features", required=True, metavar="CSV", help="per-lesion feature table")
    p.add_argument("--out", required=True, metavar="CSV", help="output table")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser(
        "report",
        help="figures and an HTML report: consensus, CDF, Kaplan–Meier, subtype heatmap, heterogeneity",
        description="Write PNG figures and index.html (no external resources) from whatever is given: a "
        "discover folder (consensus matrix and CDF/Δ-area at the chosen k), with --features a subtype "
        "feature heatmap, with --clinical (patient, time, event, covariates) Kaplan–Meier curves with the "
        "log-rank test, a multivariable Cox model and the C-index with a bootstrap CI, and with "
        "--heterogeneity a 'radtyper heterogeneity' folder (indexes and recovery curves); with --model also the "
        "model's domain and the calibration of its probabilities (reliability curve, Brier score), with "
        "--predictions the predicted patients (marked when outside the model's domain).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--model", metavar="MODEL_DIR", help="a 'radtyper discover' folder")
    p.add_argument("--features", metavar="CSV", help="per-lesion feature table (subtype heatmap)")
    p.add_argument("--clinical", metavar="CSV", help="clinical table joined on patient")
    p.add_argument("--time", default="time", help="survival time column (default time)")
    p.add_argument("--event", default="event", help="event column, 1 = event (default event)")
    p.add_argument("--covariates", nargs="*", metavar="COL", help="Cox covariates besides the subtype")
    p.add_argument("--categorical", nargs="*", metavar="COL", help="covariates to one-hot encode")
    p.add_argument("--heterogeneity", metavar="DIR", help="a 'radtyper heterogeneity' output folder")
    p.add_argument(
        "--predictions",
        metavar="CSV",
        help="a 'radtyper predict' table: every patient's subtype, marked when outside the model's domain",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(handler=cmd_report)
