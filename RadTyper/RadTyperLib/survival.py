"""Survival analysis of imaging subtypes (Wu et al. 2021): Kaplan–Meier + log-rank, multivariable Cox, C-index.

Wu et al. used "Kaplan–Meier analysis and log-rank tests … to evaluate … patient stratification by the imaging
subtypes" and "the Cox proportional hazard regression model … to adjust for relevant clinicopathologic
variables"; they report the C-index with a 95 % CI (0.67, 0.63–0.72). Here (lifelines, imported lazily):

* :func:`join_clinical` joins per-patient labels to a clinical CSV (``patient, time, event, …``) and checks
  it (every labelled patient present, times numeric and ≥ 0, events 0/1);
* :func:`kaplan_meier`: one KM curve (+ Greenwood/log CI) per group and the multivariate log-rank test
  across all groups (k − 1 degrees of freedom), plus pairwise log-rank tests;
* :func:`cox_model`: multivariable Cox PH (Efron ties). A categorical covariate is one-hot coded with one
  dummy ``name=level`` per non-reference level; the reference is the lowest level (numeric order when every
  level is a number, else alphabetical) unless ``reference={name: level}`` says otherwise, so each hazard
  ratio compares a level with the reference;
* :func:`c_index_bootstrap`: Harrell's C-index of a fixed risk score or fitted Cox model and its percentile
  bootstrap CI (patients resampled with replacement; the model is NOT refitted per resample, so on the data
  the model was fitted on the CI is optimistic).

Times are in the clinical file's unit; ``event`` 1 = event (death, recurrence), 0 = censored.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

_LIST_MAX = 15  # ids listed in an error message
_PAIRWISE_MAX_N = 6000  # above: lifelines' O(n log n) concordance per resample instead of pair matrices


def _listing(values: Sequence[Any]) -> str:
    shown = ", ".join(str(v) for v in list(values)[:_LIST_MAX])
    more = len(values) - _LIST_MAX
    return shown + (f" … (+{more} more)" if more > 0 else "")


def _natural_order(levels: Sequence[Any]) -> list[Any]:
    """Levels sorted numerically when all are numbers, else by their text."""
    levels = list(dict.fromkeys(levels))
    try:
        return sorted(levels, key=lambda v: float(v))
    except (TypeError, ValueError):
        return sorted(levels, key=str)


def _require_columns(df: Any, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"{what}: column(s) {', '.join(missing)} not found; columns are: {_listing(list(df.columns))}"
        )


def _ids(df: Any, mask: Any, id_col: str | None) -> list[Any]:
    if id_col and id_col in df.columns:
        return list(df.loc[mask, id_col])
    return [f"row {i}" for i in np.flatnonzero(np.asarray(mask))]


def _check_time_event(df: Any, time: str, event: str, what: str, id_col: str | None = None) -> Any:
    """A copy of ``df`` with ``time`` as float (finite, ≥ 0) and ``event`` as int 0/1; else InputError."""
    import pandas as pd

    _require_columns(df, [time, event], what)
    out = df.copy()
    raw_t = out[time]
    t = pd.to_numeric(raw_t, errors="coerce")
    missing_t = raw_t.isna() | (raw_t.astype(str).str.strip() == "")
    bad_t = t.isna() & ~missing_t
    if missing_t.any():
        raise InputError(f"{what}: missing '{time}' for {_listing(_ids(out, missing_t, id_col))}")
    if bad_t.any():
        pairs = [f"{i}={v!r}" for i, v in zip(_ids(out, bad_t, id_col), raw_t[bad_t], strict=True)]
        raise InputError(f"{what}: non-numeric '{time}' for {_listing(pairs)}")
    t = t.astype(float)
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        pairs = [f"{i}={v:g}" for i, v in zip(_ids(out, bad, id_col), t[bad], strict=True)]
        raise InputError(f"{what}: '{time}' must be finite and ≥ 0; got {_listing(pairs)}")
    raw_e = out[event]
    e = pd.to_numeric(raw_e.map(lambda v: int(v) if isinstance(v, bool | np.bool_) else v), errors="coerce")
    bad_e = ~e.isin([0, 1])
    if bad_e.any():
        pairs = [f"{i}={v!r}" for i, v in zip(_ids(out, bad_e, id_col), raw_e[bad_e], strict=True)]
        raise InputError(f"{what}: '{event}' must be 0 (censored) or 1 (event); got {_listing(pairs)}")
    out[time] = t
    out[event] = e.astype(int)
    return out


# --- clinical data ----------------------------------------------------------------------------------------
def join_clinical(
    labels_df: Any,
    clinical_csv: str | os.PathLike[str] | Any,
    on: str = "patient",
    *,
    time: str = "time",
    event: str = "event",
    missing: str = "error",
) -> Any:
    """Labels (one row per patient or lesion, column ``on``) joined with a clinical table (CSV or DataFrame).

    Ids are compared as text (spaces stripped). The result keeps the labels' rows and order, with ``time``
    (float) and ``event`` (int 0/1) and the clinical table's other columns (suffix ``_clinical`` on a name
    clash). ``missing="drop"`` drops labelled patients absent from the clinical table (listed in
    ``result.attrs["dropped"]``) instead of raising.

    Raises:
        InputError: unreadable file, missing columns, duplicate clinical ids, labelled patients absent from
            the clinical table (listed), missing or non-numeric or negative times, events other than 0/1.
    """
    import pandas as pd

    if missing not in ("error", "drop"):
        raise InputError(f"missing must be 'error' or 'drop', got {missing!r}")
    if isinstance(clinical_csv, pd.DataFrame):
        clinical, name = clinical_csv.copy(), "clinical table"
    else:
        path = Path(clinical_csv)
        name = str(path)
        if not path.is_file():
            raise InputError(f"{path}: clinical table not found")
        try:
            clinical = pd.read_csv(path, dtype={on: str}, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not a readable CSV table ({exc})") from None
    clinical.columns = [str(c).strip() for c in clinical.columns]
    _require_columns(clinical, [on, time, event], name)
    _require_columns(labels_df, [on], "labels")
    for col in (time, event):
        if col in labels_df.columns:
            raise InputError(f"labels: already has a '{col}' column; the clinical table provides it")
    clinical[on] = clinical[on].astype(str).str.strip()
    empty = clinical[on].isin(["", "nan"])
    if empty.any():
        raise InputError(f"{name}: empty '{on}' on data line(s) {_listing(list(np.flatnonzero(empty) + 2))}")
    dupes = clinical[on][clinical[on].duplicated()].unique()
    if len(dupes):
        raise InputError(f"{name}: patient(s) listed twice: {_listing(list(dupes))}")
    labels = labels_df.copy()
    labels[on] = labels[on].astype(str).str.strip()
    absent = [p for p in dict.fromkeys(labels[on]) if p not in set(clinical[on])]
    dropped: list[str] = []
    if absent:
        if missing == "error":
            raise InputError(
                f"{name}: no clinical data for {len(absent)} labelled patient(s): {_listing(absent)}"
            )
        dropped = absent
        labels = labels[~labels[on].isin(absent)]
    clinical = _check_time_event(clinical, time, event, name, id_col=on)
    merged = labels.merge(clinical, on=on, how="left", suffixes=("", "_clinical"), validate="many_to_one")
    merged = merged.reset_index(drop=True)
    merged.attrs["dropped"] = dropped
    return merged


# --- Kaplan–Meier -----------------------------------------------------------------------------------------
def kaplan_meier(
    df: Any, time: str = "time", event: str = "event", group: str = "subtype", *, alpha: float = 0.05
) -> dict[str, Any]:
    """Kaplan–Meier curves per group and the log-rank test across groups.

    Returns ``{"time", "event", "group", "n", "events", "order": [group labels], "groups": {label: {"n",
    "events", "median" (None = not reached), "table": DataFrame(time, survival, lower, upper, at_risk,
    observed, censored)}}, "logrank": {"statistic", "df", "p", "test"} or None (one group), "pairwise":
    [{"a", "b", "statistic", "p"}]}``; group labels are kept as given and ordered naturally.

    Raises:
        InputError: missing columns, bad times/events, missing group labels.
    """
    import pandas as pd
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test, pairwise_logrank_test

    data = _check_time_event(df, time, event, "survival table")
    _require_columns(data, [group], "survival table")
    no_group = data[group].isna()
    if no_group.any():
        raise InputError(f"survival table: missing '{group}' for {int(no_group.sum())} row(s)")
    if data.empty:
        raise InputError("survival table: no row")
    order = _natural_order(list(data[group]))
    groups: dict[Any, dict[str, Any]] = {}
    for g in order:
        sub = data[data[group] == g]
        kmf = KaplanMeierFitter(alpha=alpha)
        kmf.fit(sub[time], sub[event], label=str(g))
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_survival_function_
        et = kmf.event_table
        table = pd.DataFrame(
            {
                "time": sf.index.to_numpy(float),
                "survival": sf.to_numpy(float),
                "lower": ci.iloc[:, 0].to_numpy(float),
                "upper": ci.iloc[:, 1].to_numpy(float),
                "at_risk": et["at_risk"].reindex(sf.index).to_numpy(int),
                "observed": et["observed"].reindex(sf.index).to_numpy(int),
                "censored": et["censored"].reindex(sf.index).to_numpy(int),
            }
        )
        median = float(kmf.median_survival_time_)
        groups[g] = {
            "n": len(sub),
            "events": int(sub[event].sum()),
            "median": median if np.isfinite(median) else None,
            "table": table,
        }
    logrank = None
    pairwise: list[dict[str, Any]] = []
    if len(order) > 1:
        res = multivariate_logrank_test(data[time], data[group], data[event])
        logrank = {
            "test": "multivariate log-rank" if len(order) > 2 else "log-rank",
            "statistic": float(res.test_statistic),
            "df": len(order) - 1,
            "p": float(res.p_value),
        }
        pw = pairwise_logrank_test(data[time], data[group], data[event]).summary
        for (a, b), row in pw.iterrows():
            pairwise.append({"a": a, "b": b, "statistic": float(row["test_statistic"]), "p": float(row["p"])})
    return {
        "time": time,
        "event": event,
        "group": group,
        "n": len(data),
        "events": int(data[event].sum()),
        "order": order,
        "groups": groups,
        "logrank": logrank,
        "pairwise": pairwise,
    }


# --- Cox --------------------------------------------------------------------------------------------------
def _design(df: Any, spec: Mapping[str, Any]) -> Any:
    """Design matrix (numeric covariates + one-hot dummies) of ``df`` following a stored ``spec``."""
    import pandas as pd

    cols: dict[str, Any] = {}
    for name in spec["numeric"]:
        values = pd.to_numeric(df[name], errors="coerce")
        bad = values.isna() & df[name].notna()
        if bad.any():
            raise InputError(
                f"covariate '{name}': non-numeric value(s) {_listing(list(df[name][bad].unique()))}; "
                "declare it categorical"
            )
        cols[name] = values.astype(float)
    for name, info in spec["categorical"].items():
        text = df[name].map(lambda v: None if pd.isna(v) else str(v))
        unknown = sorted(set(text.dropna()) - set(info["levels"]))
        if unknown:
            raise InputError(
                f"covariate '{name}': level(s) {_listing(unknown)} unknown to the model "
                f"(levels: {', '.join(info['levels'])})"
            )
        for level in info["levels"]:
            if level != info["reference"]:
                cols[f"{name}={level}"] = (text == level).astype(float).where(text.notna())
    return pd.DataFrame(cols, index=df.index)


def cox_model(
    df: Any,
    time: str = "time",
    event: str = "event",
    covariates: Sequence[str] = ("subtype",),
    categorical: Sequence[str] = (),
    *,
    reference: Mapping[str, Any] | None = None,
    penalizer: float = 0.0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Multivariable Cox proportional-hazards model (lifelines, Efron ties).

    ``categorical`` names covariates to one-hot code (a name not in ``covariates`` is added); see the module
    docstring for the reference level. Returns ``{"n", "events", "table": DataFrame indexed by term (coef,
    hr, hr_lo, hr_hi, se, z, p), "reference": {covariate: level}, "concordance", "likelihood_ratio":
    {"statistic", "df", "p"}, "ph_test": DataFrame (Schoenfeld-residual test per term, rank time) or None,
    "warnings": [...], "design": the coding (for :func:`cox_risk`), "model": the fitted CoxPHFitter}``.

    Raises:
        InputError: missing columns/values, a non-numeric covariate not declared categorical, a constant
            covariate, an unknown reference level, or a fit that does not converge.
    """
    import pandas as pd
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError
    from scipy import stats

    covs = list(dict.fromkeys([*covariates, *categorical]))
    if not covs:
        raise InputError("cox_model: no covariate given")
    data = _check_time_event(df, time, event, "survival table")
    _require_columns(data, covs, "survival table")
    na = data[covs].isna().any(axis=1)
    if na.any():
        bad = [c for c in covs if data[c].isna().any()]
        raise InputError(
            f"survival table: {int(na.sum())} row(s) with missing values in {', '.join(bad)}; "
            "impute or drop them first"
        )
    reference = dict(reference or {})
    unknown_ref = [k for k in reference if k not in categorical]
    if unknown_ref:
        raise InputError(f"reference given for non-categorical covariate(s) {', '.join(unknown_ref)}")
    spec: dict[str, Any] = {"numeric": [c for c in covs if c not in categorical], "categorical": {}}
    for name in categorical:
        levels = [str(v) for v in _natural_order(list(data[name]))]
        if len(levels) < 2:
            raise InputError(f"covariate '{name}': one level only ({', '.join(levels)}); nothing to compare")
        ref = str(reference.get(name, levels[0]))
        if ref not in levels:
            raise InputError(f"covariate '{name}': reference level '{ref}' not in {', '.join(levels)}")
        spec["categorical"][name] = {"levels": levels, "reference": ref}
    X = _design(data, spec)
    constant = [c for c in X.columns if X[c].nunique() < 2]
    if constant:
        raise InputError(f"covariate(s) {', '.join(constant)} constant over the table; remove them")
    frame = pd.concat([X, data[[time, event]]], axis=1)
    cph = CoxPHFitter(penalizer=penalizer, alpha=alpha)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cph.fit(frame, duration_col=time, event_col=event)
        except (ConvergenceError, np.linalg.LinAlgError) as exc:
            raise InputError(
                f"the Cox model did not converge ({str(exc).splitlines()[0]}); a covariate may separate events "
                "perfectly (e.g. a level without events) or be collinear with another; try penalizer > 0"
            ) from None
    z = stats.norm.ppf(1 - alpha / 2)
    coef, se = cph.params_, cph.standard_errors_
    table = pd.DataFrame(
        {
            "coef": coef,
            "hr": np.exp(coef),
            "hr_lo": np.exp(coef - z * se),
            "hr_hi": np.exp(coef + z * se),
            "se": se,
            "z": cph.summary["z"],
            "p": cph.summary["p"],
        }
    )
    table.index.name = "term"
    lr = cph.log_likelihood_ratio_test()
    ph_test = None
    try:
        from lifelines.statistics import proportional_hazard_test

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ph = proportional_hazard_test(cph, frame, time_transform="rank").summary
        ph_test = ph[["test_statistic", "p"]].rename(columns={"test_statistic": "statistic"})
        ph_test.index.name = "term"
    except Exception:  # the PH test is informative only
        ph_test = None
    return {
        "n": len(frame),
        "events": int(frame[event].sum()),
        "time": time,
        "event": event,
        "covariates": covs,
        "table": table,
        "reference": {k: v["reference"] for k, v in spec["categorical"].items()},
        "concordance": float(cph.concordance_index_),
        "likelihood_ratio": {
            "statistic": float(lr.test_statistic),
            "df": int(lr.degrees_freedom),
            "p": float(lr.p_value),
        },
        "ph_test": ph_test,
        "alpha": alpha,
        "warnings": sorted({str(w.message).splitlines()[0] for w in caught}),
        "design": spec,
        "model": cph,
    }


def cox_risk(model: Mapping[str, Any], df: Any) -> np.ndarray:
    """Linear predictor x·β of a :func:`cox_model` result on the rows of ``df`` (uncentred log partial hazard)."""
    X = _design(df, model["design"])
    cph = model["model"]
    X = X[list(cph.params_.index)]
    if X.isna().any().any():
        raise InputError("cox_risk: missing covariate values")
    return X.to_numpy(float) @ cph.params_.to_numpy(float)


# --- C-index ----------------------------------------------------------------------------------------------
def _risk_of(df: Any, score_or_model: Any) -> np.ndarray:
    import pandas as pd

    if isinstance(score_or_model, str):
        _require_columns(df, [score_or_model], "survival table")
        risk = pd.to_numeric(df[score_or_model], errors="coerce").to_numpy(float)
    elif isinstance(score_or_model, Mapping) and "design" in score_or_model:
        risk = cox_risk(score_or_model, df)
    elif hasattr(score_or_model, "predict_log_partial_hazard"):  # a fitted lifelines model
        risk = np.asarray(score_or_model.predict_log_partial_hazard(df), dtype=float)
    else:
        risk = np.asarray(score_or_model, dtype=float).ravel()
        if risk.shape[0] != len(df):
            raise InputError(f"risk score has {risk.shape[0]} values for {len(df)} rows")
    if not np.all(np.isfinite(risk)):
        raise InputError(f"risk score: {int((~np.isfinite(risk)).sum())} missing or non-finite value(s)")
    return risk


def _pair_matrices(t: np.ndarray, e: np.ndarray, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(comparable, concordance score) n×n float32 matrices of Harrell's C (lifelines' pair rules).

    Pair (i, j) is comparable when i has an event and j outlives it (t_j > t_i), or j is censored at
    t_j ≥ t_i; it scores 1 when i has the higher risk, 0.5 on a risk tie, else 0.
    """
    ti, tj = t[:, None], t[None, :]
    comparable = (e[:, None] == 1) & ((tj > ti) | ((tj == ti) & (e[None, :] == 0)))
    np.fill_diagonal(comparable, False)
    ri, rj = risk[:, None], risk[None, :]
    score = np.where(ri > rj, 1.0, np.where(ri == rj, 0.5, 0.0))
    return comparable.astype(np.float32), (comparable * score).astype(np.float32)


def concordance(t: Any, e: Any, risk: Any) -> float:
    """Harrell's C-index of a risk score (higher risk = shorter survival)."""
    from lifelines.utils import concordance_index

    return float(concordance_index(np.asarray(t, float), -np.asarray(risk, float), np.asarray(e, int)))


def c_index_bootstrap(
    df: Any,
    time: str,
    event: str,
    score_or_model: Any,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """Harrell's C-index and its percentile bootstrap ``1 − alpha`` CI → ``(c, lo, hi)``.

    ``score_or_model``: a column name of ``df`` holding a risk score (higher = worse), an array of scores,
    a :func:`cox_model` result or a fitted lifelines model (risk = its log partial hazard on ``df``).
    Resamples without any comparable pair are skipped. Pairs follow lifelines' rules (ties in risk = ½;
    two events at the same time are not comparable).
    """
    if n_boot < 10:
        raise InputError(f"n_boot must be ≥ 10, got {n_boot}")
    data = _check_time_event(df, time, event, "survival table")
    risk = _risk_of(data, score_or_model)
    t = data[time].to_numpy(float)
    e = data[event].to_numpy(int)
    n = len(t)
    if n < 2 or e.sum() == 0:
        raise InputError("C-index: needs at least 2 patients and 1 event")
    c = concordance(t, e, risk)
    rng = np.random.default_rng(seed)
    values: list[np.ndarray] = []
    if n <= _PAIRWISE_MAX_N:
        comparable, score = _pair_matrices(t, e, risk)
        batch = max(1, min(n_boot, 2_000_000 // max(n, 1)))
        done = 0
        while done < n_boot:
            b = min(batch, n_boot - done)
            idx = rng.integers(0, n, size=(b, n))
            w = np.bincount((np.arange(b)[:, None] * n + idx).ravel(), minlength=b * n)
            w = w.reshape(b, n).astype(np.float32)
            num = np.einsum("bi,bi->b", w, w @ score.T)
            den = np.einsum("bi,bi->b", w, w @ comparable.T)
            ok = den > 0
            values.append((num[ok] / den[ok]).astype(float))
            done += b
    else:
        boot = []
        for _ in range(n_boot):
            idx = rng.integers(0, n, size=n)
            try:
                boot.append(concordance(t[idx], e[idx], risk[idx]))
            except ZeroDivisionError:
                continue
        values.append(np.asarray(boot, float))
    cs = np.concatenate(values) if values else np.empty(0)
    if cs.size < 10:
        raise InputError("C-index bootstrap: fewer than 10 usable resamples (too few events)")
    lo, hi = np.quantile(cs, [alpha / 2, 1 - alpha / 2])
    return c, float(lo), float(hi)
