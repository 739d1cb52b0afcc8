"""Small reliability statistics: intraclass correlation (Shrout & Fleiss 1979), group summaries.

ICC from the two-way ANOVA of an ``n × k`` table (n subjects = rows, k raters / conditions = columns),
Shrout & Fleiss (1979) notation, McGraw & Wong (1996) names::

    grand mean  ḡ;  row means r̄_i;  column means c̄_j
    SSR = k Σ_i (r̄_i − ḡ)²       MSR = SSR / (n − 1)            between subjects
    SSC = n Σ_j (c̄_j − ḡ)²       MSC = SSC / (k − 1)            between raters
    SSE = SST − SSR − SSC         MSE = SSE / ((n − 1)(k − 1))   residual
    MSW = (SSC + SSE) / (n (k − 1))                               within subjects (one-way model)

    ICC(1,1) = (MSR − MSW) / (MSR + (k − 1) MSW)                  one-way random, single rater
    ICC(2,1) = (MSR − MSE) / (MSR + (k − 1) MSE + k (MSC − MSE) / n)   two-way random, absolute agreement
    ICC(3,1) = (MSR − MSE) / (MSR + (k − 1) MSE)                  two-way mixed, consistency, single rater
    ICC(1,k) = (MSR − MSW) / MSR
    ICC(2,k) = (MSR − MSE) / (MSR + (MSC − MSE) / n)
    ICC(3,k) = (MSR − MSE) / MSR

ICC(3,1) — McGraw & Wong's ICC(C,1) — ignores a systematic offset between raters (consistency): adding a
constant to one column does not change it; ICC(2,1) — ICC(A,1) — penalises it. For k = 2,
ICC(3,1) = 2 s_xy / (s_x² + s_y²) (sample moments).

NaN handling: a subject (row) with any non-finite rating is dropped (listwise deletion); fewer than 2 rows
left, or a table with no variance at all (MSR = MSE = 0, e.g. a feature that is 0 everywhere), gives NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "ICC_KINDS",
    "IccResult",
    "group_summary",
    "icc",
    "icc_3_1",
    "icc_features",
    "icc_result",
    "relative_change",
]

#: The six Shrout & Fleiss forms.
ICC_KINDS: tuple[str, ...] = ("1,1", "2,1", "3,1", "1,k", "2,k", "3,k")


@dataclass(frozen=True)
class IccResult:
    """One ICC with its ANOVA: value, mean squares, F test of ICC = 0 and a (1 − α) confidence interval.

    ``f``/``df1``/``df2``/``p`` test H0: ICC = 0 (F = MSR/MSE, or MSR/MSW for the one-way forms); ``ci`` is
    the exact F-based interval (McGraw & Wong 1996, Table 7) for the one-way and consistency forms, and
    McGraw & Wong's approximate (Satterthwaite) interval for ICC(2,·).
    """

    kind: str
    value: float
    n: int
    k: int
    msr: float
    msc: float
    mse: float
    msw: float
    f: float
    df1: int
    df2: int
    p: float
    ci: tuple[float, float]


def _clean(matrix: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    a = np.asarray(matrix, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"ICC needs an n × k table (subjects × raters), got shape {a.shape}")
    if a.shape[1] < 2:
        raise ValueError(f"ICC needs at least 2 raters (columns), got {a.shape[1]}")
    return a[np.all(np.isfinite(a), axis=1)]


def _anova(a: np.ndarray) -> tuple[float, float, float, float]:
    """(MSR, MSC, MSE, MSW) of a complete n × k table."""
    n, k = a.shape
    g = a.mean()
    ssr = k * np.sum((a.mean(axis=1) - g) ** 2)
    ssc = n * np.sum((a.mean(axis=0) - g) ** 2)
    sst = np.sum((a - g) ** 2)
    sse = max(sst - ssr - ssc, 0.0)
    return (
        ssr / (n - 1),
        ssc / (k - 1),
        sse / ((n - 1) * (k - 1)),
        (ssc + sse) / (n * (k - 1)),
    )


def _value(kind: str, n: int, k: int, msr: float, msc: float, mse: float, msw: float) -> float:
    if kind == "1,1":
        num, den = msr - msw, msr + (k - 1) * msw
    elif kind == "2,1":
        num, den = msr - mse, msr + (k - 1) * mse + k * (msc - mse) / n
    elif kind == "3,1":
        num, den = msr - mse, msr + (k - 1) * mse
    elif kind == "1,k":
        num, den = msr - msw, msr
    elif kind == "2,k":
        num, den = msr - mse, msr + (msc - mse) / n
    elif kind == "3,k":
        num, den = msr - mse, msr
    else:
        raise ValueError(f"unknown ICC kind {kind!r}; one of {', '.join(ICC_KINDS)}")
    if not den > 0:
        return float("nan")
    return float(num / den)


def icc(matrix: np.ndarray | Sequence[Sequence[float]], kind: str = "3,1") -> float:
    """Intraclass correlation of an ``n × k`` table (rows = subjects, columns = raters); see the module doc.

    ``kind``: "1,1", "2,1", "3,1" (default: two-way mixed, consistency, single rater), "1,k", "2,k", "3,k".
    Rows with a non-finite value are dropped; NaN when fewer than 2 rows remain or nothing varies.
    """
    a = _clean(matrix)
    if kind not in ICC_KINDS:
        raise ValueError(f"unknown ICC kind {kind!r}; one of {', '.join(ICC_KINDS)}")
    n, k = a.shape
    if n < 2:
        return float("nan")
    return _value(kind, n, k, *_anova(a))


def icc_3_1(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """ICC(3,1) (consistency, single rater) of two paired series; pairs with a NaN are dropped."""
    a = np.asarray(x, dtype=float).ravel()
    b = np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"x and y differ in length ({a.size} vs {b.size})")
    return icc(np.column_stack([a, b]), "3,1")


def icc_result(
    matrix: np.ndarray | Sequence[Sequence[float]], kind: str = "3,1", alpha: float = 0.05
) -> IccResult:
    """:func:`icc` with its ANOVA, F test and (1 − ``alpha``) confidence interval (:class:`IccResult`)."""
    from scipy import stats as st

    a = _clean(matrix)
    n, k = a.shape
    if kind not in ICC_KINDS:
        raise ValueError(f"unknown ICC kind {kind!r}; one of {', '.join(ICC_KINDS)}")
    if n < 2:
        nan = float("nan")
        return IccResult(kind, nan, n, k, nan, nan, nan, nan, nan, n - 1, (n - 1) * (k - 1), nan, (nan, nan))
    msr, msc, mse, msw = _anova(a)
    value = _value(kind, n, k, msr, msc, mse, msw)
    one_way = kind.startswith("1")
    df1 = n - 1
    df2 = n * (k - 1) if one_way else (n - 1) * (k - 1)
    denom = msw if one_way else mse
    with np.errstate(divide="ignore", invalid="ignore"):
        f = float(msr / denom) if denom > 0 else (float("inf") if msr > 0 else float("nan"))
    p = float(st.f.sf(f, df1, df2)) if np.isfinite(f) else (0.0 if f == np.inf else float("nan"))
    single = kind.endswith("1")
    if kind.startswith("2"):
        ci = _ci_absolute(n, k, msr, msc, mse, alpha, single)
    elif np.isfinite(f):
        fl = f / st.f.ppf(1 - alpha / 2, df1, df2)
        fu = f * st.f.ppf(1 - alpha / 2, df2, df1)
        ci = ((fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1)) if single else (1 - 1 / fl, 1 - 1 / fu)
    else:
        ci = (value, value)
    return IccResult(kind, value, n, k, msr, msc, mse, msw, f, df1, df2, p, (float(ci[0]), float(ci[1])))


def _ci_absolute(
    n: int, k: int, msr: float, msc: float, mse: float, alpha: float, single: bool
) -> tuple[float, float]:
    """McGraw & Wong (1996) approximate CI of ICC(A,1) / ICC(A,k) (Satterthwaite degrees of freedom)."""
    from scipy import stats as st

    if not (mse > 0 and msr > 0):
        return (float("nan"), float("nan"))
    r = _value("2,1", n, k, msr, msc, mse, mse)
    a = k * r / (n * (1 - r)) if r < 1 else np.inf
    b = 1 + k * r * (n - 1) / (n * (1 - r)) if r < 1 else np.inf
    if not np.isfinite(a):
        return (1.0, 1.0)
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
    fs = st.f.ppf(1 - alpha / 2, n - 1, v)
    fi = st.f.ppf(1 - alpha / 2, v, n - 1)
    lo = n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)
    hi = n * (fi * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fi * msr)
    if not single:  # Spearman–Brown step-up of the single-rater bounds
        lo, hi = k * lo / (1 + (k - 1) * lo), k * hi / (1 + (k - 1) * hi)
    return (float(lo), float(hi))


def icc_features(tables: Sequence[pd.DataFrame], kind: str = "3,1") -> pd.Series:
    """Per-feature ICC across ``tables`` (one per rater / condition; rows = subjects, columns = features).

    Rows are matched by index (the intersection of all indexes), features by name (the columns common to all
    tables, in the first table's order). Non-numeric columns are skipped.
    """
    if len(tables) < 2:
        raise ValueError(f"icc_features needs at least 2 tables, got {len(tables)}")
    index = tables[0].index
    for t in tables[1:]:
        index = index.intersection(t.index, sort=False)
    cols = [
        c
        for c in tables[0].columns
        if all(c in t.columns for t in tables) and pd.api.types.is_numeric_dtype(tables[0][c])
    ]
    stack = np.stack([t.loc[index, cols].to_numpy(dtype=float) for t in tables], axis=1)  # n × k × p
    return pd.Series([icc(stack[:, :, j], kind) for j in range(len(cols))], index=cols, name=f"ICC({kind})")


def group_summary(
    values: Mapping[str, float] | pd.Series,
    groups: Mapping[str, str],
    threshold: float = 0.9,
    order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Summary per group of per-feature values (e.g. ICCs): count, median, quartiles, minimum, share ≥ threshold.

    Args:
        values: feature → value (NaN = undefined; counted in ``n`` but not in the statistics).
        groups: feature → group name; features absent from ``groups`` are ignored.
        threshold: the ``frac_ge`` column is the fraction of the *defined* values ≥ this.
        order: group order of the rows (default: first appearance in ``groups``); an ``all`` row is appended.

    Returns:
        DataFrame indexed by group with ``n``, ``n_defined``, ``median``, ``q25``, ``q75``, ``min``, ``frac_ge``.
    """
    s = pd.Series(values, dtype=float)
    s = s[[name in groups for name in s.index]]
    g = pd.Series({name: groups[name] for name in s.index}, dtype=object)
    names = list(order) if order is not None else list(dict.fromkeys(groups[n] for n in s.index))
    rows = {}
    for name in [*names, "all"]:
        v = s if name == "all" else s[g == name]
        d = v.dropna()
        rows[name] = {
            "n": int(v.size),
            "n_defined": int(d.size),
            "median": float(d.median()) if d.size else float("nan"),
            "q25": float(d.quantile(0.25)) if d.size else float("nan"),
            "q75": float(d.quantile(0.75)) if d.size else float("nan"),
            "min": float(d.min()) if d.size else float("nan"),
            "frac_ge": float((d >= threshold).mean()) if d.size else float("nan"),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def relative_change(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """‖b − a‖ / ‖a‖ (Euclidean; scalars give |b − a| / |a|); NaN when ‖a‖ = 0."""
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"a and b differ in length ({x.size} vs {y.size})")
    na = float(np.linalg.norm(x))
    return float(np.linalg.norm(y - x) / na) if na > 0 else float("nan")
