"""Small inline SVG figures for the page (no plotting library in the browser, nothing fetched)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

RECOVERY_SERIES = (("ath_mean", "ATH", "#d9541a"), ("mtd_mean", "MTD", "#0072bd"))


def recovery_svg(points: Sequence[dict[str, float]], *, width: int = 460, height: int = 200) -> str:
    """The recovery curve (% of the patient's ATH and MTD recovered vs lesions sampled k) as an SVG string.

    ``points``: dicts with ``k``, ``ath_mean``, ``mtd_mean`` (percent). Empty string when there is no point.
    """
    pts = [p for p in points if all(key in p for key in ("k", "ath_mean", "mtd_mean"))]
    if not pts:
        return ""
    left, right, top, bottom = 42, 12, 12, 34
    ks = [float(p["k"]) for p in pts]
    k_lo, k_hi = min(ks), max(ks)
    span = (k_hi - k_lo) or 1.0

    def x(k: float) -> float:
        return left + (k - k_lo) / span * (width - left - right)

    def y(v: float) -> float:
        v = min(max(float(v), 0.0), 100.0)
        return top + (100.0 - v) / 100.0 * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" class="rt-recovery-svg">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for v in (0, 25, 50, 75, 100):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="{"#999" if v == 75 else "#e4e4e4"}" stroke-dasharray="{"4 3" if v == 75 else ""}"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#333">{v}</text>')
    for k in sorted(set(ks)):
        parts.append(
            f'<text x="{x(k):.1f}" y="{height - bottom + 14}" text-anchor="middle" fill="#333">{k:g}</text>'
        )
    parts.append(
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 4}" text-anchor="middle" fill="#333">'
        "lesions sampled (k)</text>"
    )
    parts.append(
        f'<text x="12" y="{(top + height - bottom) / 2:.0f}" text-anchor="middle" fill="#333" '
        f'transform="rotate(-90 12 {(top + height - bottom) / 2:.0f})">% recovered</text>'
    )
    for i, (key, label, color) in enumerate(RECOVERY_SERIES):
        path = " ".join(f"{x(float(p['k'])):.1f},{y(p[key]):.1f}" for p in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for p in pts:
            parts.append(f'<circle cx="{x(float(p["k"])):.1f}" cy="{y(p[key]):.1f}" r="3" fill="{color}"/>')
        lx = width - right - 120 + i * 60
        parts.append(f'<rect x="{lx}" y="{height - bottom - 16}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{height - bottom - 7}" fill="#333">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
