"""Figures (PNG) and a self-contained HTML report of a cohort analysis (CLI ``radtyper report``).

Every figure is drawn on a ``matplotlib.figure.Figure`` with the Agg canvas (``FigureCanvasAgg``): the same
renderer as ``matplotlib.use("Agg")`` without changing pyplot's global backend (which belongs to the host
application, e.g. Slicer's Qt). Plot functions take plain arrays / DataFrames / dicts, write the PNG
atomically and return its path. :func:`write_html_report` writes ``index.html`` that shows the PNGs with
relative ``<img>`` links, captions and small tables: inline CSS, no script, no external resource; all text
is HTML-escaped; PNGs outside the output folder are copied into ``figures/`` so the folder is portable.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .io import atomic_path

PathLike = str | os.PathLike[str]
_DPI = 110


# --- helpers ----------------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: PathLike) -> Path:
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise InputError(f"{target}: figures are written as .png")
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, bbox_inches="tight")
    return target


def _natural(levels: Sequence[Any]) -> list[Any]:
    levels = list(dict.fromkeys(levels))
    try:
        return sorted(levels, key=lambda v: float(v))
    except (TypeError, ValueError):
        return sorted(levels, key=str)


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# --- consensus clustering ---------------------------------------------------------------------------------
def consensus_order(M: np.ndarray, labels: Sequence[Any]) -> np.ndarray:
    """Sample order for display: clusters in natural label order, average-linkage order of 1 − M inside."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    labels = np.asarray(labels)
    order: list[int] = []
    for lab in _natural(list(labels)):
        idx = np.flatnonzero(labels == lab)
        if idx.size > 2:
            d = 1.0 - M[np.ix_(idx, idx)]
            d = (d + d.T) / 2
            np.fill_diagonal(d, 0.0)
            idx = idx[leaves_list(linkage(squareform(np.clip(d, 0, None), checks=False), "average"))]
        order.extend(int(i) for i in idx)
    return np.asarray(order, dtype=int)


def plot_consensus_heatmap(
    M: Any, labels: Sequence[Any], path: PathLike, *, title: str | None = None
) -> Path:
    """Consensus matrix (0–1) with samples ordered by cluster; cluster bands and boundaries drawn."""
    M = np.asarray(M, dtype=float)
    labels = np.asarray(labels)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise InputError(f"consensus matrix must be square, got shape {M.shape}")
    if labels.shape[0] != M.shape[0]:
        raise InputError(f"{labels.shape[0]} labels for a {M.shape[0]}×{M.shape[0]} consensus matrix")
    order = consensus_order(M, labels)
    lab = labels[order]
    levels = _natural(list(lab))
    colors = dict(zip(levels, _colors(len(levels)), strict=True))
    fig = _figure(6.4, 6.0)
    gs = fig.add_gridspec(2, 2, width_ratios=[25, 1], height_ratios=[1, 25], hspace=0.02, wspace=0.03)
    ax = fig.add_subplot(gs[1, 0])
    band = fig.add_subplot(gs[0, 0], sharex=ax)
    cax = fig.add_subplot(gs[1, 1])
    im = ax.imshow(
        M[np.ix_(order, order)], cmap="Blues", vmin=0, vmax=1, interpolation="nearest", aspect="auto"
    )
    rgba = np.array([colors[v] for v in lab])[None, :, :]
    band.imshow(rgba, aspect="auto", interpolation="nearest")
    band.set_axis_off()
    edges = np.flatnonzero(lab[1:] != lab[:-1]) + 0.5
    for e in edges:
        ax.axhline(e, color="0.2", lw=0.8)
        ax.axvline(e, color="0.2", lw=0.8)
    start = 0
    for v in levels:
        n = int((lab == v).sum())
        band.text(start + n / 2 - 0.5, 0, str(v), ha="center", va="center", fontsize=8, color="black")
        start += n
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{M.shape[0]} samples, ordered by cluster")
    fig.colorbar(im, cax=cax, label="consensus")
    band.set_title(title or f"Consensus matrix, k = {len(levels)}")
    return _save(fig, path)


def _cdf_curve(value: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x, CDF) from a (x, y) pair, a 2-column DataFrame, a consensus matrix or a vector of values."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        if value.shape[1] != 2:
            raise InputError("a CDF table must have 2 columns (consensus value, CDF)")
        return value.iloc[:, 0].to_numpy(float), value.iloc[:, 1].to_numpy(float)
    if isinstance(value, tuple | list) and len(value) == 2:
        x, y = (np.asarray(v, dtype=float) for v in value)
        if x.ndim == 1 and x.shape == y.shape and x.size > 2:
            return x, y
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 2 and arr.shape[0] == arr.shape[1]:
        arr = arr[np.triu_indices(arr.shape[0], k=1)]
    arr = np.sort(arr.ravel())
    if arr.size == 0:
        raise InputError("empty consensus values")
    return arr, np.arange(1, arr.size + 1) / arr.size


def plot_consensus_cdf(
    cdfs_by_k: Mapping[int, Any],
    delta_area: Mapping[int, float] | Sequence[float],
    path: PathLike,
    *,
    x: Any = None,
) -> Path:
    """Consensus CDF per k (left) and the relative change in area under the CDF, Δ(k) (right).

    ``cdfs_by_k[k]``: with ``x`` (a grid shared by all k, e.g. ``ConsensusResult.cdf_x``), the CDF values
    at ``x``; without, ``(x, cdf)`` arrays, a 2-column DataFrame, the k consensus matrix, or its values.
    ``delta_area``: ``{k: Δ}`` or values in increasing k order (ConsensusClusterPlus: Δ(2) = area(2)).
    """
    if not cdfs_by_k:
        raise InputError("no consensus CDF given")
    ks = sorted(int(k) for k in cdfs_by_k)
    if isinstance(delta_area, Mapping):
        delta = {int(k): float(v) for k, v in delta_area.items()}
    else:
        values = list(delta_area)
        if len(values) != len(ks):
            raise InputError(f"{len(values)} Δ-area values for {len(ks)} values of k")
        delta = dict(zip(ks, (float(v) for v in values), strict=True))
    fig = _figure(10.5, 4.2)
    ax, ax2 = fig.subplots(1, 2)
    cols = _colors(len(ks))
    for color, k in zip(cols, ks, strict=True):
        value = cdfs_by_k[k] if k in cdfs_by_k else cdfs_by_k[str(k)]  # type: ignore[index]
        if x is not None:
            cx, cy = np.asarray(x, dtype=float), np.asarray(value, dtype=float)
            if cx.shape != cy.shape:
                raise InputError(f"k = {k}: {cy.size} CDF values for {cx.size} grid points")
        else:
            cx, cy = _cdf_curve(value)
        ax.step(cx, cy, where="post", color=color, lw=1.4, label=f"k = {k}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("consensus index")
    ax.set_ylabel("CDF")
    ax.set_title("Consensus CDF")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    dk = sorted(delta)
    ax2.plot(dk, [delta[k] for k in dk], marker="o", color="0.2")
    ax2.set_xticks(dk)
    ax2.set_xlabel("k")
    ax2.set_ylabel("relative change in area under CDF (Δ)")
    ax2.set_title("Δ area")
    ax2.grid(alpha=0.3)
    return _save(fig, path)


# --- survival ---------------------------------------------------------------------------------------------
def _format_p(p: float | None) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def plot_km(
    km_result: Mapping[str, Any], path: PathLike, *, title: str | None = None, time_unit: str = ""
) -> Path:
    """Kaplan–Meier curves of :func:`RadTyperLib.survival.kaplan_meier` (CI bands, censor marks, log-rank p,
    numbers at risk)."""
    groups = km_result.get("groups") or {}
    if not groups:
        raise InputError("plot_km: the Kaplan–Meier result has no group")
    order = list(km_result.get("order") or list(groups))
    fig = _figure(7.2, 5.6)
    gs = fig.add_gridspec(2, 1, height_ratios=[4, 0.35 * len(order) + 0.4], hspace=0.35)
    ax = fig.add_subplot(gs[0])
    risk_ax = fig.add_subplot(gs[1], sharex=ax)
    t_max = max(float(g["table"]["time"].max()) for g in groups.values())
    name = km_result.get("group", "group")
    colors = _colors(len(order))
    for color, g in zip(colors, order, strict=True):
        rec = groups[g]
        t = rec["table"]
        label = f"{name} {g} (n={rec['n']}, events={rec['events']})"
        ax.step(t["time"], t["survival"], where="post", color=color, lw=1.6, label=label)
        ax.fill_between(t["time"], t["lower"], t["upper"], step="post", color=color, alpha=0.12, lw=0)
        cens = t[t["censored"] > 0]
        ax.plot(cens["time"], cens["survival"], "|", color=color, ms=6, mew=1)
    ax.set_xlim(0, t_max * 1.02 if t_max > 0 else 1)
    ticks = [float(x) for x in ax.get_xticks() if 0 <= x <= ax.get_xlim()[1]]
    for i, (color, g) in enumerate(zip(colors, order, strict=True)):
        times = groups[g]["table"]["time"].to_numpy(float)
        at_risk = groups[g]["table"]["at_risk"].to_numpy(int)
        for x in ticks:
            # at risk at time x (T ≥ x) = at risk at the first event/censoring time ≥ x
            j = int(np.searchsorted(times, x, side="left"))
            n = int(at_risk[j]) if j < len(times) else 0
            risk_ax.text(x, len(order) - 1 - i, str(n), ha="center", va="center", fontsize=8, color=color)
    lr = km_result.get("logrank")
    if lr:
        ax.text(
            0.98,
            0.97,
            f"{lr['test']}: χ² = {lr['statistic']:.2f} (df {lr['df']}), p = {_format_p(lr['p'])}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=9,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"},
        )
    ax.set_ylim(0, 1.03)
    ax.set_ylabel("survival probability")
    ax.set_title(title or f"Kaplan–Meier by {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.tick_params(labelbottom=True)
    ax.set_xlabel(f"time ({time_unit})" if time_unit else "time")
    risk_ax.set_ylim(-0.6, len(order) - 0.4)
    risk_ax.set_yticks(range(len(order)))
    risk_ax.set_yticklabels([str(g) for g in reversed(order)], fontsize=8)
    risk_ax.tick_params(labelbottom=False, bottom=False, left=False, pad=14)
    for side in ("top", "right", "bottom", "left"):
        risk_ax.spines[side].set_visible(False)
    risk_ax.set_title("number at risk", fontsize=8, loc="left")
    return _save(fig, path)


def km_summary_table(km_result: Mapping[str, Any]) -> Any:
    """One row per group: n, events, median survival (None = not reached)."""
    import pandas as pd

    rows = [
        {km_result.get("group", "group"): g, "n": r["n"], "events": r["events"], "median": r["median"]}
        for g, r in ((g, km_result["groups"][g]) for g in km_result.get("order", km_result["groups"]))
    ]
    return pd.DataFrame(rows)


# --- subtypes ---------------------------------------------------------------------------------------------
_FEATURE_PREFIXES = ("shape_", "burden_", "region_", "radiomics_")
_MAX_HEATMAP_FEATURES = 60


def subtype_mean_z(table: Any, labels: Any, features: Sequence[str] | None = None) -> Any:
    """Mean z-score (z over all rows) of each feature per subtype → DataFrame features × subtypes.

    ``labels``: one label per row, or a column name of ``table``. ``features=None``: every numeric
    shape/burden/region/radiomics column; above 60, the 60 whose subtype means vary most.
    """
    import pandas as pd

    lab = table[labels] if isinstance(labels, str) else pd.Series(np.asarray(labels), index=table.index)
    if len(lab) != len(table):
        raise InputError(f"{len(lab)} labels for {len(table)} rows")
    if features is None:
        feats = [
            c
            for c in table.columns
            if str(c).startswith(_FEATURE_PREFIXES) and pd.api.types.is_numeric_dtype(table[c])
        ]
    else:
        feats = list(features)
        missing = [f for f in feats if f not in table.columns]
        if missing:
            raise InputError(f"feature(s) not in the table: {', '.join(missing[:10])}")
    if not feats:
        raise InputError("no feature to show")
    x = table[feats].apply(pd.to_numeric, errors="coerce")
    sd = x.std(ddof=0).replace(0, np.nan)
    z = ((x - x.mean()) / sd).fillna(0.0)
    keep = lab.notna()
    means = z[keep].groupby(lab[keep].to_numpy()).mean().T
    means = means[_natural(list(means.columns))]
    if features is None and len(feats) > _MAX_HEATMAP_FEATURES:
        means = means.loc[means.var(axis=1).sort_values(ascending=False).index[:_MAX_HEATMAP_FEATURES]]
    means.attrs["counts"] = {k: int(v) for k, v in lab[keep].value_counts().items()}
    return means


def plot_subtype_heatmap(
    table: Any, labels: Any, features: Sequence[str] | None, path: PathLike, *, title: str | None = None
) -> Path:
    """Heatmap of the mean z-score per subtype (columns) for the chosen features (rows)."""
    means = subtype_mean_z(table, labels, features)
    counts = means.attrs.get("counts", {})
    n_f, n_s = means.shape
    fig = _figure(max(4.5, 1.1 * n_s + 3.5), max(3.0, 0.26 * n_f + 1.6))
    ax = fig.add_subplot(1, 1, 1)
    vmax = float(np.clip(np.nanmax(np.abs(means.to_numpy())) if means.size else 1.0, 0.5, 3.0))
    im = ax.imshow(means.to_numpy(float), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(n_s))
    ax.set_xticklabels([f"{c}\n(n={counts.get(c, '?')})" for c in means.columns], fontsize=8)
    ax.set_yticks(range(n_f))
    ax.set_yticklabels([str(f) for f in means.index], fontsize=7)
    if n_f * n_s <= 300:
        for i in range(n_f):
            for j in range(n_s):
                v = means.iat[i, j]
                ax.text(
                    j,
                    i,
                    f"{v:.1f}".replace("-0.0", "0.0"),
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if abs(v) > 0.6 * vmax else "black",
                )
    ax.set_xlabel("subtype")
    fig.colorbar(im, ax=ax, label="mean z-score", shrink=0.8)
    ax.set_title(title or "Features by subtype (mean z-score)")
    return _save(fig, path)


def plot_subtype_profile(profile: Any, path: PathLike, *, title: str | None = None) -> Path:
    """Heatmap of a :class:`~RadTyperLib.subtypes.profile.SubtypeProfile` (Wu et al. Fig. 3c): feature groups
    (rows: burden, margin sharpness, irregularity, symmetry) × subtypes (columns), mean signed z-scores."""
    groups = profile.groups
    names = [c for c in groups.columns if c != "n"]
    values = groups[names].to_numpy(float).T  # groups × subtypes
    if values.size == 0:
        raise InputError("empty subtype profile")
    n_g, n_s = values.shape
    fig = _figure(max(4.2, 1.0 * n_s + 3.2), 0.55 * n_g + 1.8)
    ax = fig.add_subplot(1, 1, 1)
    finite = values[np.isfinite(values)]
    vmax = float(np.clip(np.abs(finite).max() if finite.size else 1.0, 0.5, 3.0))
    im = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(n_s))
    ax.set_xticklabels([f"{s}\n(n={int(n)})" for s, n in zip(groups.index, groups["n"], strict=True)])
    ax.set_yticks(range(n_g))
    ax.set_yticklabels([g.replace("_", " ") for g in names])
    for i in range(n_g):
        for j in range(n_s):
            v = values[i, j]
            text = "n/a" if not np.isfinite(v) else f"{v:+.2f}"
            color = "white" if np.isfinite(v) and abs(v) > 0.6 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    ax.set_xlabel("subtype")
    fig.colorbar(im, ax=ax, label="mean signed z-score", shrink=0.8)
    ax.set_title(title or "Subtype profile (+ = larger / sharper / more irregular / rounder)")
    return _save(fig, path)


# --- heterogeneity ----------------------------------------------------------------------------------------
def _load_heterogeneity(source: Any) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    p = Path(source)
    if p.is_dir():
        p = p / "heterogeneity.json"
    if not p.is_file():
        raise InputError(f"{p}: heterogeneity result not found")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{p}: not a JSON file ({exc})") from None


def plot_heterogeneity(heterogeneity_json_or_dict: Any, path: PathLike, *, title: str | None = None) -> Path:
    """Per-patient bars of maximal tumoral divergence (MTD) and average tumoral heterogeneity (ATH).

    Input: ``heterogeneity.json`` (or its folder) written by ``radtyper heterogeneity``, or its dict.
    Patients sorted by MTD (largest first); patients without a value (fewer than 2 lesions) are marked n/a.
    """
    data = _load_heterogeneity(heterogeneity_json_or_dict)
    patients = data.get("patients")
    if not isinstance(patients, Mapping) or not patients:
        raise InputError("heterogeneity result: no 'patients' entry")

    def val(rec: Mapping[str, Any], key: str) -> float:
        v = rec.get(key)
        return float(v) if isinstance(v, int | float) and np.isfinite(v) else np.nan

    ids = list(patients)
    mtd = np.array([val(patients[p], "max_tumoral_divergence") for p in ids])
    ath = np.array([val(patients[p], "average_tumoral_heterogeneity") for p in ids])
    order = np.argsort(np.where(np.isnan(mtd), np.inf, -mtd), kind="stable")
    ids = [ids[i] for i in order]
    mtd, ath = mtd[order], ath[order]
    n = len(ids)
    fig = _figure(min(16.0, max(6.0, 0.28 * n + 2.5)), 4.4)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(n)
    ax.bar(x - 0.2, np.nan_to_num(mtd), width=0.4, label="MTD (max tumoral divergence)", color="#c0392b")
    ax.bar(
        x + 0.2, np.nan_to_num(ath), width=0.4, label="ATH (average tumoral heterogeneity)", color="#2980b9"
    )
    for i in np.flatnonzero(np.isnan(mtd) & np.isnan(ath)):
        ax.text(i, 0.01, "n/a", ha="center", va="bottom", fontsize=7, rotation=90, color="0.4")
    if n <= 80:
        ax.set_xticks(x)
        ax.set_xticklabels([str(p) for p in ids], rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} patients (sorted by MTD)")
    ax.set_ylabel("cosine distance")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "Inter-lesion heterogeneity per patient")
    return _save(fig, path)


# --- HTML -------------------------------------------------------------------------------------------------
@dataclass
class ReportFigure:
    """A PNG and its caption."""

    path: PathLike
    caption: str = ""


@dataclass
class ReportTable:
    """A small table (DataFrame) and its caption; at most ``max_rows`` rows are shown."""

    frame: Any
    caption: str = ""
    max_rows: int = 50


@dataclass
class ReportSection:
    """A titled section: a paragraph of text, figures, tables."""

    title: str
    text: str = ""
    figures: list[Any] = field(default_factory=list)
    tables: list[Any] = field(default_factory=list)


def _as_figure(item: Any) -> ReportFigure:
    if isinstance(item, ReportFigure):
        return item
    if isinstance(item, Mapping):
        return ReportFigure(item["path"], str(item.get("caption", "")))
    if isinstance(item, tuple | list) and len(item) == 2:
        return ReportFigure(item[0], str(item[1]))
    return ReportFigure(item, "")


def _as_table(item: Any) -> ReportTable:
    import pandas as pd

    if isinstance(item, ReportTable):
        return item
    if isinstance(item, pd.DataFrame):
        return ReportTable(item)
    if isinstance(item, Mapping):
        return ReportTable(item["table"], str(item.get("caption", "")), int(item.get("max_rows", 50)))
    if isinstance(item, tuple | list) and len(item) == 2:
        return ReportTable(item[1], str(item[0]))
    raise InputError(f"cannot show {type(item).__name__} as a table")


def _as_section(item: Any) -> ReportSection:
    if isinstance(item, ReportSection):
        return item
    if isinstance(item, Mapping):
        return ReportSection(
            str(item.get("title", "")),
            str(item.get("text", "")),
            list(item.get("figures", [])),
            list(item.get("tables", [])),
        )
    raise InputError(f"a report section must be a ReportSection or a dict, got {type(item).__name__}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "" if np.isnan(value) else str(value)
        return f"{value:.4g}"
    return str(value)


def _html_table(t: ReportTable) -> str:
    import pandas as pd

    frame = t.frame if isinstance(t.frame, pd.DataFrame) else pd.DataFrame(t.frame)
    show_index = not isinstance(frame.index, pd.RangeIndex)
    if show_index:
        frame = frame.reset_index()
    shown = frame.head(t.max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>\n"
        for row in shown.itertuples(index=False, name=None)
    )
    more = len(frame) - len(shown)
    note = f'<p class="note">… {more} more row(s) not shown</p>' if more > 0 else ""
    caption = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>{note}\n"


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #2c3e50; padding-bottom: .2em; }
h2 { margin-top: 2em; color: #2c3e50; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #555; }
table { border-collapse: collapse; margin: 1em 0; font-size: .85em; }
caption { text-align: left; font-weight: bold; padding-bottom: .3em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f0f3f5; }
td:first-child, th:first-child { text-align: left; }
.note, .meta { font-size: .85em; color: #666; }
nav ul { columns: 2; }
"""


def write_html_report(
    out_dir: PathLike,
    sections: Sequence[Any],
    *,
    title: str = "RadTyper report",
    filename: str = "index.html",
) -> Path:
    """Write ``out_dir/index.html`` showing the sections' PNGs (relative links), captions and tables.

    ``sections``: :class:`ReportSection` or dicts ``{"title", "text", "figures", "tables"}``; a figure is a
    path, ``(path, caption)``, a dict or a :class:`ReportFigure`; a table is a DataFrame, ``(caption,
    DataFrame)``, a dict or a :class:`ReportTable`. PNGs outside ``out_dir`` are copied into
    ``out_dir/figures/``. Raises InputError for a missing figure file.
    """
    from . import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    out_resolved = out.resolve()
    copied: dict[Path, str] = {}  # source → name in figures/
    parts: list[str] = []
    toc: list[str] = []
    for s_i, raw in enumerate(sections, start=1):
        sec = _as_section(raw)
        anchor = f"s{s_i}"
        toc.append(f'<li><a href="#{anchor}">{html.escape(sec.title)}</a></li>')
        parts.append(f'<section id="{anchor}"><h2>{html.escape(sec.title)}</h2>')
        for para in [p for p in sec.text.split("\n\n") if p.strip()]:
            parts.append(f"<p>{html.escape(para.strip())}</p>")
        for item in sec.figures:
            fig = _as_figure(item)
            src = Path(fig.path)
            if not src.is_absolute():
                src = out / src if (out / src).is_file() else src
            if not src.is_file():
                raise InputError(f"{fig.path}: figure file not found")
            resolved = src.resolve()
            if out_resolved not in resolved.parents:
                if resolved not in copied:
                    name, k = resolved.name, 1
                    while name in copied.values():
                        name, k = f"{resolved.stem}_{k}{resolved.suffix}", k + 1
                    copied[resolved] = name
                    with atomic_path(out / "figures" / name) as tmp:
                        shutil.copyfile(resolved, tmp)
                resolved = (out / "figures" / copied[resolved]).resolve()
            rel = resolved.relative_to(out_resolved).as_posix()
            href = urllib.parse.quote(rel)
            cap = html.escape(fig.caption)
            parts.append(
                f'<figure><a href="{href}"><img src="{href}" alt="{cap or html.escape(resolved.name)}"></a>'
                + (f"<figcaption>{cap}</figcaption>" if cap else "")
                + "</figure>"
            )
        for item in sec.tables:
            parts.append(_html_table(_as_table(item)))
        parts.append("</section>")
    doc = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f'<p class="meta">RadTyper {html.escape(__version__)}</p>\n'
        + (f"<nav><ul>{''.join(toc)}</ul></nav>\n" if len(toc) > 1 else "")
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    path = out / filename
    with atomic_path(path) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    return path


# --- one call for a cohort --------------------------------------------------------------------------------
def _read_table(source: Any, what: str, id_col: str = "patient") -> Any:
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source.copy()
    p = Path(source)
    if not p.is_file():
        raise InputError(f"{p}: {what} not found")
    try:
        return pd.read_csv(p, dtype={id_col: str, "lesion": str}, float_precision="round_trip")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a readable CSV table ({exc})") from None


def _profile_section(feats: Any, label_table: Any, group: str, out: Path) -> ReportSection | None:
    """The Fig. 3c profile section (None when the table lacks the RadTyper features)."""
    from .subtypes.profile import PROFILE_GROUPS, subtype_profile

    if not any(f in feats.columns for members in PROFILE_GROUPS.values() for f in members):
        return None
    labels = label_table[["patient", group]].rename(columns={group: "subtype"})
    aggregation = "largest" if "burden_volume_mm3" in feats.columns else "mean"
    prof = subtype_profile(feats, labels, aggregation=aggregation)
    table = prof.groups.round(3)
    with atomic_path(out / "profile.csv") as tmp:
        table.to_csv(tmp)
    png = plot_subtype_profile(prof, out / "profile.png")
    return ReportSection(
        "Subtype profile (as Wu et al. Fig. 3c)",
        "Per subtype, the mean z-score (z over the patients, "
        + ("largest lesion each" if aggregation == "largest" else "mean over each patient's lesions")
        + ") of four feature groups, "
        "signed so that + = larger (burden: volume, radius), sharper margin (TIM–PM5/PM10 histogram "
        "distances), more irregular (SPHARM energies of degrees 8–15), more symmetric (moment-ellipsoid "
        "axes). Values rank the subtypes of this cohort; they are not comparable between cohorts.",
        figures=[(png, "Subtype profile: feature groups × subtypes")],
        tables=[("Subtype profile (mean signed z-scores)", table)],
    )


def cohort_report(out_dir: PathLike, **options: Any) -> Path:
    """All-or-nothing :func:`write_cohort_report`: every file is made in a staging folder beside ``out_dir``
    and moved into ``out_dir`` only when the whole report succeeded (a failure leaves ``out_dir`` as it was:
    no ``consensus.png`` without its report). Same options; returns ``out_dir/index.html``."""
    from .io import staged_folder

    target = Path(out_dir)
    with staged_folder(target) as stage:
        html_path = write_cohort_report(stage, **options)
        name = html_path.relative_to(stage)
    return target / name


def write_cohort_report(
    out_dir: PathLike,
    *,
    labels: Any = None,
    group: str = "subtype",
    clinical: Any = None,
    time: str = "time",
    event: str = "event",
    covariates: Sequence[str] = (),
    categorical: Sequence[str] = (),
    features: Any = None,
    heatmap_features: Sequence[str] | None = None,
    consensus: Any = None,
    heterogeneity: Any = None,
    extra_figures: Sequence[Any] = (),
    extra_sections: Sequence[Any] = (),
    n_boot: int = 1000,
    seed: int = 0,
    title: str = "RadTyper cohort report",
) -> Path:
    """Figures, tables and ``index.html`` in ``out_dir`` from whatever inputs are given → the HTML path.

    * ``labels`` (CSV or DataFrame: ``patient`` + ``group``) with ``clinical`` (CSV: ``patient, time, event``
      + covariates): ``km.png``, multivariable Cox (``group`` categorical + ``covariates``; ``cox.csv``),
      C-index of the subtype Cox model with its bootstrap CI; all numbers in ``survival.json``;
    * ``labels`` with ``features`` (per-lesion or per-patient table with ``patient``): ``subtypes.png``
      (mean z-score per subtype; each lesion takes its patient's label);
    * ``consensus``: a :class:`~RadTyperLib.subtypes.consensus.ConsensusResult` (any object with ``ks``,
      ``consensus``, ``labels``, ``cdf``, ``cdf_x``, ``delta_area``, ``chosen_k``), or a dict ``{"matrix": M,
      "labels": labels}`` and/or ``{"cdf": {k: …}, "cdf_x": grid or None, "delta_area": …}`` →
      ``consensus.png`` (chosen k) and ``consensus_cdf.png`` (see :func:`plot_consensus_cdf`);
    * ``heterogeneity``: a ``radtyper heterogeneity`` folder or its JSON → ``heterogeneity.png`` and its
      ``recovery_curves.png`` (copied);
    * ``labels`` with ``features`` that hold the 313 RadTyper features: also ``profile.png`` and
      ``profile.csv``, the per-subtype profile of Wu et al. Fig. 3c (burden, margin sharpness, irregularity,
      symmetry; :func:`~RadTyperLib.subtypes.profile.subtype_profile`);
    * ``extra_figures``: other PNGs (``path`` or ``(path, caption)``);
    * ``extra_sections``: more sections (:class:`ReportSection` or dicts), appended last; an entry may also be
      a callable ``f(out_dir) -> sections`` that writes its figures into the folder the report is made in
      (so they stay inside :func:`cohort_report`'s all-or-nothing staging).

    Raises:
        InputError: unreadable inputs, clinical-table problems (see :func:`~RadTyperLib.survival.join_clinical`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections: list[ReportSection] = []
    label_table = None
    if labels is not None:
        label_table = _read_table(labels, "labels table")
        for col in ("patient", group):
            if col not in label_table.columns:
                raise InputError(f"labels table: no '{col}' column")
        counts = label_table[group].value_counts()
        counts = counts.reindex(_natural(list(counts.index)))
        sizes = counts.rename_axis(group).reset_index(name="patients")
        sections.append(
            ReportSection(
                "Subtypes",
                f"{len(label_table)} patient(s) in {len(counts)} subtype(s).",
                tables=[("Subtype sizes", sizes)],
            )
        )
    if consensus is not None and hasattr(consensus, "cdf_x"):
        k = consensus.chosen_k
        consensus = {
            "matrix": consensus.consensus[k],
            "labels": consensus.labels[k],
            "cdf": consensus.cdf,
            "cdf_x": consensus.cdf_x,
            "delta_area": consensus.delta_area,
        }
    if consensus:
        sec = ReportSection("Consensus clustering")
        if "matrix" in consensus:
            lab = consensus.get("labels")
            if lab is None:
                raise InputError("consensus: 'labels' needed with 'matrix'")
            sec.figures.append(
                (
                    plot_consensus_heatmap(consensus["matrix"], lab, out / "consensus.png"),
                    "Consensus matrix, samples ordered by subtype",
                )
            )
        if "cdf" in consensus:
            sec.figures.append(
                (
                    plot_consensus_cdf(
                        consensus["cdf"],
                        consensus.get("delta_area", {}),
                        out / "consensus_cdf.png",
                        x=consensus.get("cdf_x"),
                    ),
                    "Consensus CDF per k and relative change in area under the CDF (Δ)",
                )
            )
        sections.append(sec)
    if label_table is not None and features is not None:
        feats = _read_table(features, "feature table")
        if "patient" not in feats.columns:
            raise InputError("feature table: no 'patient' column")
        merged = feats.merge(label_table[["patient", group]], on="patient", how="inner")
        if merged.empty:
            raise InputError("no patient of the feature table has a subtype label")
        png = plot_subtype_heatmap(merged, group, heatmap_features, out / "subtypes.png")
        sections.append(
            ReportSection(
                "Features by subtype",
                f"Mean z-score (z over all {len(merged)} rows) of each feature per subtype.",
                figures=[(png, "Mean z-score per subtype")],
            )
        )
        profile_section = _profile_section(feats, label_table, group, out)
        if profile_section is not None:
            sections.append(profile_section)
    if label_table is not None and clinical is not None:
        from .survival import c_index_bootstrap, cox_model, join_clinical, kaplan_meier

        joined = join_clinical(label_table, clinical, time=time, event=event)
        km = kaplan_meier(joined, time, event, group)
        cox = cox_model(joined, time, event, [group, *covariates], [group, *categorical])
        c, lo, hi = c_index_bootstrap(
            joined, time, event, cox_model(joined, time, event, [group], [group]), n_boot=n_boot, seed=seed
        )
        cox_table = cox["table"].reset_index()
        with atomic_path(out / "cox.csv") as tmp:
            cox_table.to_csv(tmp, index=False)
        summary = {
            "n": km["n"],
            "events": km["events"],
            "logrank": km["logrank"],
            "pairwise_logrank": km["pairwise"],
            "groups": {str(g): {k: v for k, v in r.items() if k != "table"} for g, r in km["groups"].items()},
            "cox": {
                "table": cox_table.to_dict(orient="records"),
                "reference": cox["reference"],
                "likelihood_ratio": cox["likelihood_ratio"],
                "concordance": cox["concordance"],
                "warnings": cox["warnings"],
            },
            "c_index_subtype": {"c": c, "ci95": [lo, hi], "n_boot": n_boot, "seed": seed},
        }
        with atomic_path(out / "survival.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
        lr = km["logrank"]
        text = (
            f"{km['n']} patient(s), {km['events']} event(s). "
            + (
                f"Log-rank across subtypes: χ² = {lr['statistic']:.2f}, df {lr['df']}, p = {_format_p(lr['p'])}. "
                if lr
                else ""
            )
            + f"C-index of the subtypes (Cox model): {c:.3f} (95 % bootstrap CI {lo:.3f}–{hi:.3f}, {n_boot} resamples). "
            + "Hazard ratios compare each level with the reference level "
            + ", ".join(f"{k} = {v}" for k, v in cox["reference"].items())
            + "."
        )
        sections.append(
            ReportSection(
                "Survival",
                text,
                figures=[
                    (
                        plot_km(km, out / "km.png"),
                        "Kaplan–Meier curves by subtype (95 % CI bands, + = censored)",
                    )
                ],
                tables=[
                    ("Kaplan–Meier", km_summary_table(km)),
                    ("Multivariable Cox model", cox["table"][["hr", "hr_lo", "hr_hi", "p"]]),
                ],
            )
        )
    if heterogeneity is not None:
        src = Path(heterogeneity) if not isinstance(heterogeneity, Mapping) else None
        sec = ReportSection(
            "Inter-lesion heterogeneity",
            "Maximal tumoral divergence (MTD) and average tumoral heterogeneity (ATH) per patient (Henry et al. 2022).",
            figures=[
                (plot_heterogeneity(heterogeneity, out / "heterogeneity.png"), "MTD and ATH per patient")
            ],
        )
        tests = _load_heterogeneity(heterogeneity).get("tests")
        if tests and tests.get("patients"):
            import pandas as pd

            cols = ["patient", "n_lesions", "n_features", "mean_cv", "p_t_test", "p_bonferroni_t_test"]
            cols += ["significant_t_test", "p_wilcoxon_signed_rank", "p_bonferroni_wilcoxon_signed_rank"]
            tab = pd.DataFrame(tests["patients"])
            sec.tables.append(
                (
                    "Is the patient heterogeneous? Henry et al.'s tests of the patient's CVs against "
                    f"{tests['settings']['mu0']:g} (Bonferroni over patients, α = {tests['settings']['alpha']:g})",
                    tab[[c for c in cols if c in tab.columns]].set_index("patient"),
                )
            )
        if src is not None:
            curves = (src if src.is_dir() else src.parent) / "recovery_curves.png"
            if curves.is_file():
                sec.figures.append((curves, "Heterogeneity recovered by sampling k random lesions"))
        sections.append(sec)
    if extra_figures:
        sections.append(ReportSection("Other figures", figures=list(extra_figures)))
    for sec in extra_sections:
        if callable(sec):  # writes its figures into the report's own (staging) folder
            sections.extend(_as_section(made) for made in sec(out))
        else:
            sections.append(_as_section(sec))
    if not sections:
        raise InputError(
            "nothing to report: give labels, clinical data, features, consensus or heterogeneity"
        )
    return write_html_report(out, sections, title=title)
