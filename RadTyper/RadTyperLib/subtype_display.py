"""How a predicted subtype is written wherever it is shown (CLI, report, demo, Slicer panel and slice views).

One place, so that a subtype outside the model's domain is never shown as a bare certainty: the text always
carries the mark :data:`OUT_OF_DOMAIN` and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: The mark of a subtype predicted for a patient outside the model's domain.
OUT_OF_DOMAIN = "OUTSIDE THE MODEL'S DOMAIN"


def _truthy(value: Any) -> bool | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "1", "yes"):
            return True
        if v in ("false", "0", "no"):
            return False
        return None
    return bool(value)


def in_domain_of(row: Mapping[str, Any]) -> bool:
    """The row's ``in_domain`` (a missing or unreadable value counts as outside: never shown as certain)."""
    return _truthy(row.get("in_domain")) is True


def subtype_headline(row: Mapping[str, Any], *, prefix: str = "") -> str:
    """``S2 (p = 0.91)``, or ``S2 (p = 0.91) — OUTSIDE THE MODEL'S DOMAIN: <reason>`` (one line)."""
    subtype = str(row.get("subtype", "?"))
    p = row.get(f"p_{subtype}")
    text = f"{prefix}{subtype}" + (
        f" (p = {float(p):.2f})" if p is not None and np.isfinite(float(p)) else ""
    )
    if in_domain_of(row):
        return text
    note = str(row.get("domain_note") or "").strip()
    if note in ("nan", "None"):
        note = ""
    if "in_domain" not in row:
        note = "the model gave no domain check"
    return f"{text} — {OUT_OF_DOMAIN}" + (f": {note}" if note else "") + " — not reliable"


def subtype_annotation(row: Mapping[str, Any]) -> str:
    """The short slice-view text: ``RadTyper subtype: S2 (p = 0.91)`` or with the out-of-domain mark."""
    subtype = str(row.get("subtype", "?"))
    p = row.get(f"p_{subtype}")
    text = f"RadTyper subtype: {subtype}" + (
        f" (p = {float(p):.2f})" if p is not None and np.isfinite(float(p)) else ""
    )
    return text if in_domain_of(row) else f"{text} — {OUT_OF_DOMAIN}, not reliable"
