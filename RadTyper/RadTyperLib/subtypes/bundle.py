"""Saved subtype model: a versioned directory (format ``radtyper-subtype-model``, version 1).

Layout::

    MODEL_DIR/
      model.json          format name + version, radtyper version, creation time (UTC), the feature names in
                          order, aggregation, embedding, scaler mean/sd, k, subtype names, per-subtype
                          profiles, classifier and autoencoder descriptions (file, versions, sha256),
                          training settings, provenance text
      classifier.joblib   the fitted HistGradientBoostingClassifier (joblib pickle; scikit-learn version in
                          model.json)
      autoencoder.pt      torch state dict of the autoencoder (absent with embedding = "none")
      consensus/          optional: consensus matrices, CDFs (written by :func:`.discover.discover`)
      labels.csv          optional: the training patients' subtypes (patient, subtype)
      reference/features.csv.gz  optional: the training feature table (the shipped default model has it)

``model.json`` is written last, so a directory without it is not a bundle. :func:`load_bundle` checks the
format, the version, the files' sha256 and the scikit-learn version: another *major* version is refused, another
minor version gives a :class:`~.data.SubtypeWarning` (pickles are only guaranteed within one version). A bundle
that carries its training data (``labels.csv`` + ``reference/features.csv.gz``, as the shipped default model)
is instead *refitted* under another scikit-learn version: the classifier is trained again, with the
recorded parameters and seed, on the same patient matrix — no pickle is loaded (a SubtypeWarning says so).
**A bundle contains a pickle: load only bundles you trust** (the sha256 detects accidental corruption only).
The autoencoder is loaded lazily (torch is needed for it, never for :meth:`SubtypeModel.predict`).

Prediction uses the classifier on the raw features, aggregated per patient like training; the output
columns are ``patient``, ``subtype``, ``p_<subtype>`` for every subtype in ``subtypes`` order (e.g.
``p_S1`` … ``p_S4``; calibrated by the bundle's temperature, :mod:`.calibration`), then ``in_domain``
(true/false), ``domain_score`` (higher = further from the training patients; the threshold is in
``model.json``) and ``domain_note`` (why a patient is out, or what could not be checked; :mod:`.domain`).
``model.json`` also declares the ``feature_groups`` the model uses (``shape``, ``burden``, ``region``), the
``feature_pipeline`` that computed its training features, the ``domain`` and the ``calibration``
(temperature, Brier score, reliability curve). ``domain_reference.npy`` holds the training patients'
z-scores for the domain check.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import (
    atomic_path,
    current_column_name,
    read_feature_table,
    read_model_json,
    sha256_file,
    to_jsonable,
)
from .data import (
    Scaler,
    SubtypeWarning,
    check_feature_columns,
    check_one_input_per_patient,
    feature_groups_of,
    patient_ids,
    patient_matrix,
)
from .domain import DOMAIN_REFERENCE_FILE

FORMAT_NAME = "radtyper-subtype-model"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
CLASSIFIER_FILE = "classifier.joblib"
LABELS_FILE = "labels.csv"
TRAINING_FEATURES_FILE = "reference/features.csv.gz"
AUTOENCODER_FILE = "autoencoder.pt"
PROBABILITY_PREFIX = "p_"

#: Key features of the subtype profiles (mean z-score per subtype). Signs: + = larger / sharper / more irregular.
PROFILE_GROUPS: dict[str, dict[str, float]] = {
    # tumour burden
    "size": {"burden_volume_mm3": 1.0},
    # invasive margin vs 5 mm peritumoural ring: dissimilar histograms (high χ², Bhattacharyya; low
    # correlation, intersection) = a sharp intensity transition at the margin
    "margin_sharpness": {
        "region_tim_pm5_bhattacharyya": 1.0,
        "region_tim_pm5_chisqr": 1.0,
        "region_tim_pm5_correl": -1.0,
        "region_tim_pm5_intersect": -1.0,
    },
    # SPHARM energy of the high degrees 8–15 (boundary detail: lobulation, spiculation)
    "irregularity": {f"shape_energy_l{lv:02d}": 1.0 for lv in range(8, 16)},
}


def write_json(obj: Any, path: Path) -> None:
    """Write JSON atomically (NaN → null)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_jsonable(obj), indent=1, allow_nan=False), encoding="utf-8")


def subtype_profiles(
    z: np.ndarray, feature_names: list[str], labels: np.ndarray, subtypes: list[str]
) -> dict:
    """Per subtype: n and the mean z-scores of the key features, plus the signed group means."""
    index = {f: i for i, f in enumerate(feature_names)}
    labels = np.asarray(labels).astype(str)
    out: dict[str, Any] = {}
    for s in subtypes:
        rows = z[labels == s]
        rec: dict[str, Any] = {"n": len(rows)}
        feats: dict[str, float] = {}
        for group, members in PROFILE_GROUPS.items():
            vals = []
            for f, sign in members.items():
                if f in index and len(rows):
                    m = float(rows[:, index[f]].mean())
                    feats[f] = m
                    vals.append(sign * m)
            rec[group] = float(np.mean(vals)) if vals else None
        rec["features"] = feats
        out[s] = rec
    return out


@dataclass
class SubtypeModel:
    """A trained subtype model (see the module docstring); ``directory`` is set once saved or loaded."""

    feature_names: list[str]
    aggregation: str
    embedding: str
    scaler: Scaler
    subtypes: list[str]
    classifier: Any
    profiles: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    provenance: str = ""
    autoencoder_info: dict | None = None
    created: str = ""
    radtyper_version: str = ""
    sklearn_version: str = ""
    domain: dict | None = None
    calibration: dict | None = None
    feature_pipeline: str | None = None
    directory: Path | None = None
    _autoencoder_state: dict[str, np.ndarray] | None = None
    _domain_reference: np.ndarray | None = None

    @property
    def k(self) -> int:
        return len(self.subtypes)

    @property
    def probability_columns(self) -> list[str]:
        return [PROBABILITY_PREFIX + s for s in self.subtypes]

    @property
    def feature_groups(self) -> dict[str, list[str]]:
        """The model's features per group (``shape``, ``burden``, ``region``): the groups it uses."""
        return feature_groups_of(self.feature_names)

    @property
    def temperature(self) -> float:
        """Temperature of the probability calibration (1 = none)."""
        return float((self.calibration or {}).get("temperature", 1.0))

    @property
    def domain_reference(self) -> np.ndarray | None:
        """z-scores of the training patients (``domain_reference.npy``; loaded on first use)."""
        if self._domain_reference is None and self.domain and self.directory is not None:
            path = self.directory / self.domain.get("reference_file", DOMAIN_REFERENCE_FILE)
            if path.is_file():
                self._domain_reference = np.load(path, allow_pickle=False)
        return self._domain_reference

    # --- prediction ---------------------------------------------------------------------------------------
    def predict(self, features: pd.DataFrame | str | os.PathLike[str]) -> pd.DataFrame:
        """Subtype and probabilities per patient (columns ``patient``, ``subtype``, ``p_<subtype>``…)."""
        from ..features import FEATURE_PIPELINE_COLUMN
        from .calibration import apply_temperature
        from .classifier import predict_proba
        from .domain import check_domain

        table = read_feature_table(features)
        check_one_input_per_patient(table)
        check_feature_columns(table, self.feature_names, "the subtype model")
        pm = patient_matrix(
            table,
            self.feature_names,
            self.aggregation,
            allow_missing=True,
            meta_columns=("modality", FEATURE_PIPELINE_COLUMN),
        )
        proba = predict_proba(self.classifier, pm.x, threads=1)
        classes = [str(c) for c in self.classifier.classes_]
        cols = [classes.index(s) for s in self.subtypes]
        proba = apply_temperature(proba[:, cols], self.temperature)
        out = pd.DataFrame({"patient": pm.patients})
        out["subtype"] = [self.subtypes[i] for i in np.argmax(proba, axis=1)]
        for j, name in enumerate(self.probability_columns):
            out[name] = proba[:, j]

        def meta(col: str) -> list[Any]:
            return list(pm.meta[col]) if col in pm.meta.columns else [None] * len(pm.patients)

        sites = table["site"].astype(str).to_numpy() if "site" in table.columns else None
        ids = patient_ids(table).to_numpy()
        site = []
        for p, src in zip(pm.patients, pm.source_rows, strict=True):
            if sites is None:
                site.append(None)
            elif src >= 0:
                site.append(sites[src])
            else:
                given = [v for v in sites[ids == p] if v not in ("unspecified", "nan")]
                site.append(given[0] if given else "unspecified")
        if FEATURE_PIPELINE_COLUMN not in table.columns and self.feature_pipeline:
            warnings.warn(
                f"the feature table does not say which pipeline computed it (no column {FEATURE_PIPELINE_COLUMN}); "
                f"the model needs features of {self.feature_pipeline}",
                SubtypeWarning,
                stacklevel=2,
            )
        ok, score, note = check_domain(
            self.domain,
            self.domain_reference,
            self.scaler.transform(pm.x),
            pm.x,
            self.feature_names,
            self.feature_groups,
            modality=meta("modality"),
            site=site,
            pipeline=meta(FEATURE_PIPELINE_COLUMN),
        )
        out["in_domain"] = ok
        out["domain_score"] = score
        out["domain_note"] = note
        if (~ok).any():
            warnings.warn(
                f"{int((~ok).sum())} of {len(ok)} patients lie outside the model's domain "
                f"({_short(out.loc[~ok, 'patient'].tolist())}): their subtype is not reliable",
                SubtypeWarning,
                stacklevel=2,
            )
        return out

    # --- embedding (needs the autoencoder) ----------------------------------------------------------------
    @property
    def autoencoder_state(self) -> dict[str, np.ndarray] | None:
        """Encoder/decoder weights (loaded from ``autoencoder.pt`` on first use; torch needed)."""
        if self._autoencoder_state is None and self.embedding == "autoencoder" and self.directory is not None:
            from .autoencoder import load_state

            self._autoencoder_state = load_state(self.directory / AUTOENCODER_FILE)
        return self._autoencoder_state

    def embed_matrix(self, x: np.ndarray) -> np.ndarray:
        """Clustering space of raw per-patient features: z-scores, then the encoder (if any)."""
        z = self.scaler.transform(x)
        if self.embedding == "none":
            return z
        from .autoencoder import encode

        return encode(self.autoencoder_state, z)

    # --- persistence --------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "radtyper_version": self.radtyper_version,
            "created": self.created,
            "feature_names": self.feature_names,
            "aggregation": self.aggregation,
            "embedding": self.embedding,
            "scaler": {"mean": self.scaler.mean, "sd": self.scaler.sd},
            "feature_groups": list(self.feature_groups),
            "feature_pipeline": self.feature_pipeline,
            "k": self.k,
            "subtypes": self.subtypes,
            "probability_columns": self.probability_columns,
            "profiles": self.profiles,
            "profile_groups": PROFILE_GROUPS,
            "classifier": {
                "file": CLASSIFIER_FILE,
                "type": _public_name(self.classifier),
                "sklearn_version": self.sklearn_version,
                "params": {k: v for k, v in self.classifier.get_params().items() if _is_scalar(v)},
            },
            "autoencoder": None
            if self.embedding == "none"
            else {"file": AUTOENCODER_FILE, **(self.autoencoder_info or {})},
            "domain": self.domain,
            "calibration": self.calibration,
            "training": self.training,
            "provenance": self.provenance,
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the bundle into ``directory`` (created; existing bundle files replaced)."""
        import joblib

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = self.to_json()
        with atomic_path(d / CLASSIFIER_FILE) as tmp:
            joblib.dump(self.classifier, tmp, compress=3)
        meta["classifier"]["sha256"] = sha256_file(d / CLASSIFIER_FILE)
        if self.embedding == "autoencoder":
            state = self.autoencoder_state
            if state is None:
                raise InputError("the model has no autoencoder weights to save")
            from .autoencoder import import_torch, save_state

            with atomic_path(d / AUTOENCODER_FILE) as tmp:
                save_state(state, tmp)
            meta["autoencoder"]["sha256"] = sha256_file(d / AUTOENCODER_FILE)
            meta["autoencoder"]["torch_version"] = import_torch().__version__
        elif (d / AUTOENCODER_FILE).exists():
            (d / AUTOENCODER_FILE).unlink()
        if self.domain:
            ref = self.domain_reference
            if ref is None:
                raise InputError("the model has a domain record but no reference z-scores to save")
            name = self.domain.get("reference_file", DOMAIN_REFERENCE_FILE)
            with atomic_path(d / name) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.asarray(ref, dtype=np.float32), allow_pickle=False)
            meta["domain"]["sha256"] = sha256_file(d / name)
        write_json(meta, d / MODEL_JSON)
        self.directory = d
        return d


def _public_name(obj: Any) -> str:
    mod = type(obj).__module__
    top = mod.split(".")[0]
    if top == "sklearn" and ".ensemble." in mod + ".":
        mod = "sklearn.ensemble"
    return f"{mod}.{type(obj).__name__}"


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _version_tuple(v: str) -> tuple[int, int]:
    parts = ([*v.split("+")[0].split("."), "0", "0"])[:2]
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except ValueError:
        return (0, 0)


def has_training_data(directory: str | os.PathLike[str]) -> bool:
    """True when a bundle folder carries its training data (``labels.csv`` + ``reference/features.csv.gz``)."""
    d = Path(directory)
    return (d / LABELS_FILE).is_file() and (d / TRAINING_FEATURES_FILE).is_file()


def refit_classifier(directory: str | os.PathLike[str], meta: dict[str, Any]) -> Any:
    """Train the bundle's classifier again from its training data, with the parameters in ``model.json``.

    The patient matrix is built as in training (same feature order and aggregation) and the patients are
    taken in the order of ``labels.csv``; with the same scikit-learn version the result predicts exactly as
    the pickled classifier (tested).
    """
    from .classifier import make_classifier

    d = Path(directory)
    names = [current_column_name(str(f)) for f in meta["feature_names"]]
    table = read_feature_table(d / TRAINING_FEATURES_FILE)
    pm = patient_matrix(table, names, str(meta["aggregation"]))
    labels = pd.read_csv(d / LABELS_FILE, dtype=str)
    row = {p: i for i, p in enumerate(pm.patients)}
    missing = [p for p in labels["patient"] if p not in row]
    if missing:
        raise InputError(f"{d / LABELS_FILE}: patients without training features: {', '.join(missing[:5])}")
    x = pm.x[[row[p] for p in labels["patient"]]]
    clf = make_classifier()
    valid = clf.get_params()
    params = {k: v for k, v in (meta["classifier"].get("params") or {}).items() if k in valid}
    clf.set_params(**params)
    clf.fit(np.asarray(x, dtype=np.float64), labels["subtype"].astype(str).to_numpy())
    return clf


def load_bundle(path: str | os.PathLike[str] | SubtypeModel, *, refit: bool | None = None) -> SubtypeModel:
    """Read and validate a bundle directory (or return a :class:`SubtypeModel` unchanged).

    ``refit``: train the classifier again from the bundle's training data instead of unpickling it; None (the
    default) = only when the scikit-learn version differs and the bundle carries its training data.
    """
    if isinstance(path, SubtypeModel):
        return path
    import joblib
    import sklearn

    d = Path(path)
    mj, meta = read_model_json(
        d, json_name=MODEL_JSON, format_name=FORMAT_NAME, format_version=FORMAT_VERSION, what="subtype model"
    )
    for key in ("feature_names", "aggregation", "embedding", "scaler", "subtypes", "classifier"):
        if key not in meta:
            raise InputError(f"{mj}: key '{key}' missing")
    cinfo = meta["classifier"]
    cpath = d / cinfo.get("file", CLASSIFIER_FILE)
    if not cpath.is_file():
        raise InputError(f"{d}: classifier file {cpath.name} missing")
    if cinfo.get("sha256") and sha256_file(cpath) != cinfo["sha256"]:
        raise InputError(f"{cpath}: checksum differs from model.json (file changed or corrupted)")
    saved, running = cinfo.get("sklearn_version", "?"), sklearn.__version__
    sv, rv = _version_tuple(saved), _version_tuple(running)
    # feature names as this version calls them (renamed columns, e.g. burden_axis_* → burden_semiaxis_*)
    names = [current_column_name(str(f)) for f in meta["feature_names"]]
    if refit is None:
        refit = sv != rv and has_training_data(d)
    if refit:
        clf = refit_classifier(d, meta)
        if sv != rv:
            warnings.warn(
                f"{cpath.name} was saved with scikit-learn {saved}, running {running}: the classifier was "
                f"refitted on the bundle's training data ({LABELS_FILE}, {TRAINING_FEATURES_FILE})",
                SubtypeWarning,
                stacklevel=2,
            )
    else:
        if sv[0] != rv[0]:
            raise InputError(
                f"{cpath.name} was saved with scikit-learn {saved}; this is {running} (another major version): "
                f"install scikit-learn=={saved} or retrain with 'radtyper discover'"
            )
        if sv != rv:
            warnings.warn(
                f"{cpath.name} was saved with scikit-learn {saved}, running {running}: the classifier may load "
                f"differently or fail; install scikit-learn=={saved} or retrain with 'radtyper discover'",
                SubtypeWarning,
                stacklevel=2,
            )
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Trying to unpickle estimator.*")
                clf = joblib.load(cpath)
        except Exception as exc:  # unpickling errors have many types
            raise InputError(f"{cpath}: cannot load the classifier ({type(exc).__name__}: {exc})") from exc
    subtypes = [str(s) for s in meta["subtypes"]]
    if sorted(str(c) for c in getattr(clf, "classes_", [])) != sorted(subtypes):
        raise InputError(f"{cpath}: the classifier's classes do not match the subtypes in model.json")
    if getattr(clf, "n_features_in_", len(names)) != len(names):
        raise InputError(
            f"{cpath}: the classifier expects {clf.n_features_in_} features, model.json lists {len(names)}"
        )
    sc = meta["scaler"]
    scaler = Scaler(np.asarray(sc["mean"], dtype=np.float64), np.asarray(sc["sd"], dtype=np.float64))
    if scaler.mean.shape != (len(names),) or scaler.sd.shape != (len(names),):
        raise InputError(f"{mj}: scaler length differs from the number of features")
    if meta["embedding"] == "autoencoder":
        apath = d / (meta.get("autoencoder") or {}).get("file", AUTOENCODER_FILE)
        if not apath.is_file():
            raise InputError(f"{d}: autoencoder file {apath.name} missing")
        sha = (meta.get("autoencoder") or {}).get("sha256")
        if sha and sha256_file(apath) != sha:
            raise InputError(f"{apath}: checksum differs from model.json (file changed or corrupted)")
    domain = meta.get("domain")
    if domain:
        dpath = d / domain.get("reference_file", DOMAIN_REFERENCE_FILE)
        if not dpath.is_file():
            raise InputError(f"{d}: domain reference file {dpath.name} missing")
        if domain.get("sha256") and sha256_file(dpath) != domain["sha256"]:
            raise InputError(f"{dpath}: checksum differs from model.json (file changed or corrupted)")
    return SubtypeModel(
        feature_names=names,
        aggregation=str(meta["aggregation"]),
        embedding=str(meta["embedding"]),
        scaler=scaler,
        subtypes=subtypes,
        classifier=clf,
        profiles=meta.get("profiles", {}),
        training=meta.get("training", {}),
        provenance=meta.get("provenance", ""),
        autoencoder_info=meta.get("autoencoder"),
        created=meta.get("created", ""),
        radtyper_version=meta.get("radtyper_version", ""),
        sklearn_version=saved,
        domain=domain,
        calibration=meta.get("calibration"),
        feature_pipeline=meta.get("feature_pipeline"),
        directory=d,
    )


def predict(
    model: str | os.PathLike[str] | SubtypeModel, features: pd.DataFrame | str | os.PathLike[str]
) -> pd.DataFrame:
    """Subtypes of the patients in a per-lesion feature table with a saved (or in-memory) model."""
    return load_bundle(model).predict(features)


def _short(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f", … ({len(items) - n} more)" if len(items) > n else "")


def now_utc() -> str:
    """ISO-8601 creation time, seconds, UTC."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
