"""The default subtype model shipped with RadTyper: where it is, how to load it, how it was built.

``RadTyperLib/data/default_subtype_model/`` is an ordinary ``radtyper discover`` folder (model bundle
``model.json`` + ``classifier.joblib`` + ``autoencoder.pt``, ``discovery.json``, ``labels.csv``,
``split.csv``, ``consensus/``) plus ``build.json`` (how it was built and what it recovers), ``profile.csv``
(the Fig. 3c subtype profile) and ``reference/`` (the reference cohort: ``features.csv.gz``, the 313 features
per patient, and ``truth.csv``, each patient's planted profile and lesion parameters).

It is trained on the **synthetic reference cohort** of :mod:`.reference` (four profiles modelled on the
published descriptions of Wu et al.'s subtypes), **not** on the paper's 1,682 patients and **not** the
paper's trained model; it is **not for clinical use**. It lets a user get a subtype out of the box and shows
the whole pipeline; for research, train a model on your own cohort with ``radtyper discover``.

:func:`build_default_model` (run by ``Resources/Scripts/build_default_model.py``) rebuilds it
reproducibly: same seed → same cohort, same features, same subtypes (the bundle's creation time differs).
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

#: Folder name under ``RadTyperLib/data``.
DEFAULT_MODEL_DIRNAME = "default_subtype_model"
#: Version of the shipped default model (raise it whenever the reference cohort or the settings change).
DEFAULT_MODEL_VERSION = "1.0"
#: Seed of the shipped model's reference cohort and discovery.
DEFAULT_MODEL_SEED = 0
#: Patients per profile of the shipped model's reference cohort (4 profiles).
DEFAULT_N_PER_PROFILE = 60
#: Number of subtypes of the shipped model: forced to the paper's (and the reference cohort's) four; the PAC
#: rule alone chooses k = 2 on this cohort (spiculated vs regular), see the documentation.
DEFAULT_K: int | None = 4
#: Consensus repetitions of the shipped model's discovery.
DEFAULT_REPS = 1000
#: The command that rebuilds the shipped model (from the repository root).
BUILD_COMMAND = "python Resources/Scripts/build_default_model.py"
#: What the default model is and is not; shown by the GUI and stored (with the build details) in the bundle.
DEFAULT_MODEL_PROVENANCE = (
    f"RadTyper default subtype model v{DEFAULT_MODEL_VERSION}: trained on a synthetic reference cohort "
    "(CT phantoms with one lung lesion each, in four profiles modelled on the published descriptions of the "
    "four imaging subtypes of Wu et al. 2021) — not the paper's trained model, not trained on patients, "
    "not for clinical use. Rebuild: "
    f"{BUILD_COMMAND} (seed {DEFAULT_MODEL_SEED}); see Resources/Docs/default-subtype-model.md."
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


def build_default_model(
    out_dir: str | os.PathLike[str],
    *,
    n_per_profile: int = DEFAULT_N_PER_PROFILE,
    seed: int = DEFAULT_MODEL_SEED,
    reps: int = DEFAULT_REPS,
    k: int | None = DEFAULT_K,
    workers: int = 1,
    discover_settings: dict[str, Any] | None = None,
    command: str = BUILD_COMMAND,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Generate the reference cohort, run :func:`.discover.discover` on it and write the model → build record.

    ``k`` forces the number of subtypes (default 4; None = chosen by the PAC rule); ``discover_settings`` are extra
    :class:`~.discover.DiscoverySettings` (e.g. ``igp_permutations``). Writes into ``out_dir`` the discover
    folder, ``reference/features.csv.gz`` and ``reference/truth.csv``, ``profile.csv`` and ``build.json``, and
    stores :data:`DEFAULT_MODEL_PROVENANCE` with the measured details in the bundle.
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
    model.provenance = f"{DEFAULT_MODEL_PROVENANCE}\n{details}\n\n{PROVENANCE}"
    model.training = {
        **model.training,
        "default_model": {
            "version": DEFAULT_MODEL_VERSION,
            "seed": seed,
            "n_per_profile": n_per_profile,
            "build_command": command,
            "subtype_to_profile": agree["subtype_to_profile"],
            "adjusted_rand_vs_profiles": agree["adjusted_rand"],
        },
    }
    model.save(out)

    record = {
        "what": DEFAULT_MODEL_PROVENANCE,
        "version": DEFAULT_MODEL_VERSION,
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
