"""Lesion-sampling simulation (Henry et al. 2022, Table 2 and Fig. 6): how much heterogeneity a subsample keeps.

Strategies (each repeated ``n_draws`` times with a seeded :class:`numpy.random.Generator`):

* ``random2`` / ``random3``: 2 / 3 lesions drawn at random (all lesions when fewer).
* ``per_site2`` / ``per_site3``: at most 2 / 3 random lesions of every site.
* ``recist``: at most 2 random lesions per site, bone lesions excluded (the paper's "RECIST-like"
  strategy). The paper states no total limit, so none is applied by default; ``recist_max_total=5`` adds
  RECIST 1.1's limit of 5 target lesions in total (random among those picked).

Recovery of an index = ``100 × index(subsample) / index(all lesions)`` per draw, capped at 100 by default
(Table 2's upper bounds never exceed 100; only the n×n ATH can exceed its full-set value: MTD of a subset
never exceeds the full MTD). A subsample of 0 or 1 lesion has index 0. Summary: mean recovery and the 2.5–97.5
percentile interval over draws.

``site_pooling`` (per-site strategies): ``"within"`` (default) computes the index inside each site and
averages over the patient's sites (a site with one lesion gives 0); ``"union"`` computes the index on the
union of the lesions picked at every site, i.e. on what a reader following the strategy would have
delineated. The default follows Table 2: its per-site recoveries (MTD 11 % and 16 %, *below* 2 random
lesions' 27 % although the union holds at least as many lesions) are only plausible under the "within"
reading; the paper does not say which it used.

Expected value (derived in the tests): for ``k`` lesions drawn uniformly without replacement from ``n``,
``E[ATH_nxn(k)] = ((k−1)/k) · mean pair distance = ((k−1)/k) · (n/(n−1)) · ATH_nxn(all)`` and
``E[ATH_pairs(k)] = ATH_pairs(all)`` (unbiased), before capping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .indexes import DEFINITIONS, average_tumoral_heterogeneity, max_tumoral_divergence

STRATEGIES: tuple[str, ...] = ("random2", "random3", "per_site2", "per_site3", "recist")
STRATEGY_LABELS: dict[str, str] = {
    "random2": "2 lesions at random",
    "random3": "3 lesions at random",
    "per_site2": "≤ 2 lesions per site at random",
    "per_site3": "≤ 3 lesions per site at random",
    "recist": "≤ 2 lesions per site, bone excluded (RECIST-like)",
}
INDEXES: tuple[str, ...] = ("average_tumoral_heterogeneity", "max_tumoral_divergence")
DEFAULT_KS: tuple[int, ...] = tuple(range(2, 16))
RECOVERY_LEVEL = 75.0
_CHUNK_ELEMENTS = 20_000_000  # draws × n × n booleans per chunk (MTD)


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A Generator: ``seed`` itself when it is one, else ``numpy.random.default_rng(seed)``."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_d(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, dtype=float)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] == 0:
        raise InputError(f"distance matrix must be square and non-empty, got shape {d.shape}")
    return d


# --- vectorised indexes of many subsets ------------------------------------------------------------------
def subset_indexes(d: np.ndarray, sel: np.ndarray, definition: str = "nxn") -> tuple[np.ndarray, np.ndarray]:
    """(ATH, MTD) of every subset: ``sel`` is a (draws × n) boolean matrix; < 2 lesions → 0."""
    d = _check_d(d)
    sel = np.atleast_2d(np.asarray(sel, dtype=bool))
    a = sel.astype(float)
    cnt = a.sum(axis=1)
    off = d.copy()
    np.fill_diagonal(off, 0.0)
    total = ((a @ off) * a).sum(axis=1)
    if definition == "nxn":
        den = cnt * cnt
    elif definition == "pairs":
        den = cnt * (cnt - 1)
    else:
        raise InputError(f"unknown ATH definition '{definition}'; use one of: {', '.join(DEFINITIONS)}")
    ath = np.divide(total, den, out=np.zeros_like(total), where=cnt >= 2)
    # MTD: gather the selected lesions first (padded with the first selected one: distance 0 to itself)
    mtd = np.zeros(len(sel))
    kmax = int(cnt.max()) if len(sel) else 0
    if kmax >= 2:
        order = np.argsort(~sel, axis=1, kind="stable")[:, :kmax]
        pad = np.arange(kmax)[None, :] >= cnt[:, None]
        idx = np.where(pad, order[:, :1], order)
        step = max(1, _CHUNK_ELEMENTS // (kmax * kmax))
        for s in range(0, len(sel), step):
            block = idx[s : s + step]
            mtd[s : s + step] = off[block[:, :, None], block[:, None, :]].max(axis=(1, 2))
    mtd[cnt < 2] = 0.0
    return ath, mtd


def _random_k(n: int, k: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    keys = rng.random((n_draws, n))
    ranks = keys.argsort(axis=1).argsort(axis=1)
    return ranks < k


def _per_site(
    sites: np.ndarray, k: int, n_draws: int, rng: np.random.Generator, eligible: np.ndarray
) -> np.ndarray:
    n = len(sites)
    keys = rng.random((n_draws, n))
    sel = np.zeros((n_draws, n), dtype=bool)
    for s in dict.fromkeys(sites[eligible]):
        cols = np.flatnonzero((sites == s) & eligible)
        ranks = keys[:, cols].argsort(axis=1).argsort(axis=1)
        sel[:, cols] = ranks < k
    return sel


def draw_subsets(
    strategy: str,
    sites: Sequence[str] | np.ndarray,
    n_draws: int,
    rng: np.random.Generator,
    *,
    recist_max_total: int | None = None,
) -> np.ndarray:
    """(n_draws × n) boolean selection of lesions for one strategy (see module docstring)."""
    sites = np.asarray(sites, dtype=object)
    n = len(sites)
    if strategy in ("random2", "random3"):
        return _random_k(n, int(strategy[-1]), n_draws, rng)
    if strategy in ("per_site2", "per_site3"):
        return _per_site(sites, int(strategy[-1]), n_draws, rng, np.ones(n, dtype=bool))
    if strategy == "recist":
        sel = _per_site(sites, 2, n_draws, rng, sites != "bone")
        if recist_max_total is not None:
            keys = np.where(sel, rng.random(sel.shape), np.inf)
            ranks = keys.argsort(axis=1).argsort(axis=1)
            sel &= ranks < int(recist_max_total)
        return sel
    raise InputError(f"unknown sampling strategy '{strategy}'; use one of: {', '.join(STRATEGIES)}")


# --- results -------------------------------------------------------------------------------------------
@dataclass
class RecoveryDraws:
    """Recovery % of both indexes over the draws of one strategy (empty arrays when undefined)."""

    strategy: str
    ath: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mtd: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_sampled: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reason: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready: status, reason, n_draws, mean lesions sampled, {index: {mean, ci95}}."""
        return summarize(self.strategy, self.ath, self.mtd, self.n_sampled, self.reason)


def _interval(values: np.ndarray) -> dict[str, Any]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return {"mean": float(values.mean()), "ci95": [float(lo), float(hi)]}


def summarize(
    strategy: str, ath: np.ndarray, mtd: np.ndarray, n_sampled: np.ndarray, reason: str | None = None
) -> dict[str, Any]:
    """Mean and 95 % percentile interval of recovery draws (possibly pooled over patients)."""
    out: dict[str, Any] = {"strategy": strategy, "label": STRATEGY_LABELS.get(strategy, strategy)}
    if reason is not None or len(ath) == 0:
        out.update(status="undefined", reason=reason or "no draw", n_draws=0)
        out.update(dict.fromkeys(("mean_lesions_sampled", *INDEXES)))
        return out
    out.update(status="ok", reason=None, n_draws=len(ath), mean_lesions_sampled=float(np.mean(n_sampled)))
    out["average_tumoral_heterogeneity"] = _interval(np.asarray(ath))
    out["max_tumoral_divergence"] = _interval(np.asarray(mtd))
    return out


def _recovery(sub: np.ndarray, full: float, cap: bool) -> np.ndarray:
    rec = 100.0 * sub / full
    return np.minimum(rec, 100.0) if cap else rec


def _full_indexes(d: np.ndarray, definition: str) -> tuple[float, float]:
    return average_tumoral_heterogeneity(d, definition), max_tumoral_divergence(d)


def undefined_reason(d: np.ndarray, definition: str = "nxn") -> str | None:
    """Why recoveries cannot be computed for this patient (None when they can)."""
    n = d.shape[0]
    if n < 2:
        return f"{n} lesion: heterogeneity needs ≥ 2 lesions"
    ath, mtd = _full_indexes(d, definition)
    if ath <= 0 or mtd <= 0:
        return "all lesions identical (indexes of all lesions are 0): recovery undefined"
    return None


def simulate_sampling(
    d: np.ndarray,
    sites: Sequence[str] | np.ndarray | None = None,
    strategies: Sequence[str] = STRATEGIES,
    *,
    n_draws: int = 500,
    seed: int | np.random.Generator | None = 0,
    cap: bool = True,
    definition: str = "nxn",
    site_pooling: str = "within",
    recist_max_total: int | None = None,
) -> dict[str, RecoveryDraws]:
    """Recovery draws of each strategy for one patient (distance matrix ``d``, lesion ``sites``).

    Per-site strategies need every lesion's site: with a missing one (None or ``unspecified``) they are
    reported undefined with a reason naming the count (random strategies still run).
    """
    d = _check_d(d)
    n = d.shape[0]
    if n_draws < 1:
        raise InputError(f"n_draws must be ≥ 1, got {n_draws}")
    if site_pooling not in ("union", "within"):
        raise InputError(f"site_pooling must be 'union' or 'within', got {site_pooling!r}")
    site_arr = np.asarray(["unspecified"] * n if sites is None else list(sites), dtype=object)
    if len(site_arr) != n:
        raise InputError(f"{len(site_arr)} sites for {n} lesions")
    rng = as_generator(seed)
    reason = undefined_reason(d, definition)
    full_ath, full_mtd = _full_indexes(d, definition)
    out: dict[str, RecoveryDraws] = {}
    n_missing = int(np.sum(site_arr == "unspecified"))
    for strategy in strategies:
        if strategy not in STRATEGIES:
            raise InputError(f"unknown sampling strategy '{strategy}'; use one of: {', '.join(STRATEGIES)}")
        by_site = not strategy.startswith("random")
        if reason is not None:
            out[strategy] = RecoveryDraws(strategy, reason=reason)
            continue
        if by_site and n_missing:
            out[strategy] = RecoveryDraws(
                strategy, reason=f"site missing (or 'unspecified') for {n_missing} of {n} lesions"
            )
            continue
        sel = draw_subsets(strategy, site_arr, n_draws, rng, recist_max_total=recist_max_total)
        if by_site and site_pooling == "within":
            eligible = site_arr != "bone" if strategy == "recist" else np.ones(n, dtype=bool)
            site_list = list(dict.fromkeys(site_arr[eligible]))
            ath = np.zeros(n_draws)
            mtd = np.zeros(n_draws)
            for s in site_list:
                a, m = subset_indexes(d, sel & (site_arr == s)[None, :], definition)
                ath += a
                mtd += m
            if site_list:
                ath /= len(site_list)
                mtd /= len(site_list)
        else:
            ath, mtd = subset_indexes(d, sel, definition)
        out[strategy] = RecoveryDraws(
            strategy, _recovery(ath, full_ath, cap), _recovery(mtd, full_mtd, cap), sel.sum(axis=1)
        )
    return out


# --- recovery curves -----------------------------------------------------------------------------------
def recovery_curve_draws(
    d: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    n_draws: int = 500,
    seed: int | np.random.Generator | None = 0,
    cap: bool = True,
    definition: str = "nxn",
) -> dict[int, RecoveryDraws]:
    """Recovery draws for ``k`` random lesions, each ``k`` in ``ks`` with 2 ≤ k ≤ n (others skipped)."""
    d = _check_d(d)
    n = d.shape[0]
    rng = as_generator(seed)
    reason = undefined_reason(d, definition)
    full_ath, full_mtd = _full_indexes(d, definition)
    out: dict[int, RecoveryDraws] = {}
    for k in sorted({int(k) for k in ks}):
        if k < 2 or k > n:
            continue
        if reason is not None:
            out[k] = RecoveryDraws(f"random{k}", reason=reason)
            continue
        sel = _random_k(n, k, n_draws, rng)
        ath, mtd = subset_indexes(d, sel, definition)
        out[k] = RecoveryDraws(
            f"random{k}", _recovery(ath, full_ath, cap), _recovery(mtd, full_mtd, cap), sel.sum(axis=1)
        )
    return out


CURVE_COLUMNS: tuple[str, ...] = (
    "k",
    "n_draws",
    "ath_mean",
    "ath_lo",
    "ath_hi",
    "mtd_mean",
    "mtd_lo",
    "mtd_hi",
)


def curve_table(draws: Mapping[int, RecoveryDraws]) -> pd.DataFrame:
    """Draws per k → one row per k with mean and 2.5/97.5 percentiles of both recoveries."""
    rows = []
    for k, r in sorted(draws.items()):
        if len(r.ath) == 0:
            continue
        (alo, ahi), (mlo, mhi) = np.percentile(r.ath, [2.5, 97.5]), np.percentile(r.mtd, [2.5, 97.5])
        rows.append((k, len(r.ath), r.ath.mean(), alo, ahi, r.mtd.mean(), mlo, mhi))
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS)).astype({"k": int, "n_draws": int})


def recovery_curves(
    d: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    n_draws: int = 500,
    seed: int | np.random.Generator | None = 0,
    cap: bool = True,
    definition: str = "nxn",
) -> pd.DataFrame:
    """Recovery curve of one patient: columns :data:`CURVE_COLUMNS`, one row per k (2 ≤ k ≤ min(15, n))."""
    return curve_table(
        recovery_curve_draws(d, ks, n_draws=n_draws, seed=seed, cap=cap, definition=definition)
    )


def pool_draws(per_patient: Sequence[Mapping[Any, RecoveryDraws]]) -> dict[Any, RecoveryDraws]:
    """Cohort draws: the draws of every patient pooled per key (strategy or k); undefined ones skipped."""
    keys = list(dict.fromkeys(k for p in per_patient for k in p))
    out = {}
    for key in keys:
        parts = [p[key] for p in per_patient if key in p and len(p[key].ath)]
        if not parts:
            out[key] = RecoveryDraws(str(key), reason="no patient with a defined recovery")
            continue
        out[key] = RecoveryDraws(
            parts[0].strategy,
            np.concatenate([r.ath for r in parts]),
            np.concatenate([r.mtd for r in parts]),
            np.concatenate([r.n_sampled for r in parts]),
        )
    return out


def saturate_curve_draws(
    draws: Mapping[int, RecoveryDraws], ks: Sequence[int], n_lesions: int
) -> dict[int, RecoveryDraws]:
    """Curve draws extended to every k in ``ks`` beyond ``n_lesions``: all lesions sampled → 100 % (cohort pooling).

    "Up to k lesions per patient": a patient with fewer than k lesions contributes all of them. Undefined
    patients (1 lesion, identical lesions) stay undefined.
    """
    out = dict(draws)
    full = draws.get(n_lesions)
    if full is None or len(full.ath) == 0:
        return out
    for k in ks:
        if int(k) > n_lesions:
            m = len(full.ath)
            out[int(k)] = RecoveryDraws(
                f"random{int(k)}", np.full(m, 100.0), np.full(m, 100.0), np.full(m, n_lesions)
            )
    return out


def k_for_recovery(curves: pd.DataFrame, level: float = RECOVERY_LEVEL) -> dict[str, int | None]:
    """Smallest k whose *mean* recovery ≥ ``level`` %: per index and for both at once (None if never)."""

    def first(mask: pd.Series) -> int | None:
        ks = curves.loc[mask, "k"]
        return int(ks.min()) if len(ks) else None

    if curves.empty:
        return {"average_tumoral_heterogeneity": None, "max_tumoral_divergence": None, "both": None}
    a = curves["ath_mean"] >= level
    m = curves["mtd_mean"] >= level
    return {
        "average_tumoral_heterogeneity": first(a),
        "max_tumoral_divergence": first(m),
        "both": first(a & m),
    }


def plot_recovery_curves(
    curves: pd.DataFrame | Mapping[str, pd.DataFrame],
    path: str,
    *,
    level: float = RECOVERY_LEVEL,
    title: str | None = None,
) -> str:
    """PNG of recovery (%) against the number of random lesions, one panel per index (Henry Fig. 6).

    ``curves``: one :func:`recovery_curves` table or ``{label: table}`` (e.g. per patient + "cohort"); the
    band is the 2.5–97.5 percentile interval. Written atomically; returns ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..io import atomic_path

    series = {"recovery": curves} if isinstance(curves, pd.DataFrame) else dict(curves)
    fig = Figure(figsize=(10, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    panels = (("ath", "Average tumoral heterogeneity"), ("mtd", "Maximal tumoral divergence"))
    drawn = 0
    for ax, (key, name) in zip(axes, panels, strict=True):
        for label, t in series.items():
            if t is None or t.empty or not np.isfinite(t[f"{key}_mean"].to_numpy(dtype=float)).any():
                continue
            drawn += 1
            bold = label == "cohort"
            (line,) = ax.plot(
                t["k"], t[f"{key}_mean"], marker="o", ms=3, lw=2.2 if bold else 1.2, label=label
            )
            ax.fill_between(t["k"], t[f"{key}_lo"], t[f"{key}_hi"], color=line.get_color(), alpha=0.12)
        ax.axhline(level, color="0.3", ls="--", lw=1)
        ax.set_title(name)
        ax.set_xlabel("lesions sampled at random (k)")
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recovered (%)")
    if not drawn:  # e.g. every patient has one lesion: say so instead of an empty plot
        for ax in axes:
            ax.text(
                0.5,
                0.5,
                "no recovery curve:\nheterogeneity needs ≥ 2 lesions\nin a patient",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.3",
            )
    elif len(series) <= 12:
        axes[1].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return str(path)
