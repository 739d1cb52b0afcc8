"""Draw RadTyper's icons (128×128 RGBA PNG) so that they can be regenerated and reviewed as code.

    python Resources/Scripts/make_icons.py            # writes the icons in place
    python Resources/Scripts/make_icons.py --out DIR  # writes them under DIR instead (same relative paths)

Icons:
- ``RadTyper.png`` (extension icon, also the RadTyper module icon): a lesion whose surface has
  spherical-harmonic-like lobes, its margin shell (dashed), and a ring of four colours for the imaging
  subtypes with the predicted one emphasised.
- ``RadTyperLesions/Resources/Icons/RadTyperLesions.png``: a pair of lungs holding several lesions, each
  coloured by its anatomical site, the way the Lesions module lists and tags them.

Drawn with matplotlib at 4× and downsampled with Pillow (Lanczos) for clean anti-aliased edges.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle, Ellipse, PathPatch, Wedge
from matplotlib.path import Path as MplPath
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SIZE = 128
OVERSAMPLE = 4

# Subtype colours (colour-blind friendly, Okabe-Ito) and site colours.
SUBTYPE_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7")
SITE_COLORS = ("#D55E00", "#0072B2", "#009E73", "#E69F00", "#CC79A7")


def _canvas():
    """A figure whose data coordinates are [-1, 1]² with no margins and a transparent background."""
    px = SIZE * OVERSAMPLE
    fig = plt.figure(figsize=(px / 100, px / 100), dpi=100)
    fig.patch.set_alpha(0.0)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, transparent=True)
    plt.close(fig)
    buf.seek(0)
    img = Image.open(buf).convert("RGBA").resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    print(f"wrote {path} {img.size}")


def _closed_path(x: np.ndarray, y: np.ndarray) -> MplPath:
    verts = np.column_stack([np.append(x, x[0]), np.append(y, y[0])])
    codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(x) - 1) + [MplPath.CLOSEPOLY]
    return MplPath(verts, codes)


def _lobed_radius(theta: np.ndarray, r0: float, lobes: tuple[tuple[int, float, float], ...]) -> np.ndarray:
    """r(θ) = r0 · (1 + Σ a·cos(l·θ + φ)): a planar cut of a low-degree spherical-harmonic surface."""
    r = np.ones_like(theta)
    for degree, amplitude, phase in lobes:
        r += amplitude * np.cos(degree * theta + phase)
    return r0 * r


def _shaded_blob(ax, cx, cy, r, color_dark, color_light, *, steps=28, z=3) -> None:
    """Fill a star-shaped outline with a radial gradient offset to the upper left (a lit 3-D look)."""
    theta = np.linspace(0, 2 * np.pi, r.size, endpoint=False)
    dark = np.array(matplotlib.colors.to_rgb(color_dark))
    light = np.array(matplotlib.colors.to_rgb(color_light))
    for k in range(steps):
        s = 1.0 - k / steps  # 1 → outer outline, toward 0 → highlight
        shift = (1 - s) * 0.35
        x = cx + s * r * np.cos(theta) - shift * r.mean()
        y = cy + s * r * np.sin(theta) + shift * r.mean()
        color = dark + (light - dark) * (1 - s) ** 0.8
        ax.add_patch(PathPatch(_closed_path(x, y), facecolor=color, edgecolor="none", zorder=z))


def draw_radtyper(path: Path) -> None:
    fig, ax = _canvas()
    # Subtype ring: four arcs, the predicted subtype (index 2) thicker and fully opaque.
    gap = 6.0
    for i, color in enumerate(SUBTYPE_COLORS):
        start = 90 + i * 90 + gap / 2
        predicted = i == 2
        ax.add_patch(
            Wedge(
                (0, 0),
                0.97 if predicted else 0.93,
                start,
                start + 90 - gap,
                width=0.19 if predicted else 0.11,
                facecolor=color,
                alpha=1.0 if predicted else 0.75,
                edgecolor="none",
                zorder=1,
            )
        )
    # Lesion: lobed surface, shaded; a dashed margin shell outside it.
    theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    lobes = ((3, 0.16, 0.4), (5, 0.07, 1.3), (2, 0.06, 2.2))
    r = _lobed_radius(theta, 0.42, lobes)
    shell = r + 0.12
    ax.add_patch(
        PathPatch(
            _closed_path(shell * np.cos(theta), shell * np.sin(theta)),
            facecolor="#F2D7C9",
            edgecolor="#8C3B1E",
            linewidth=2.2 * OVERSAMPLE,
            linestyle=(0, (2.0, 1.6)),
            alpha=0.85,
            zorder=2,
        )
    )
    _shaded_blob(ax, 0.0, 0.0, r, "#7A1F0F", "#F7A27A")
    # A parallel and a meridian of the spherical parameterisation, clipped to the surface outline.
    outline = PathPatch(_closed_path(r * np.cos(theta), r * np.sin(theta)), transform=ax.transData)
    for width, height, angle in ((0.95, 0.30, -20.0), (0.34, 0.95, -20.0)):
        grid = Ellipse(
            (0.0, 0.0),
            width,
            height,
            angle=angle,
            fill=False,
            edgecolor="white",
            alpha=0.5,
            linewidth=1.3 * OVERSAMPLE,
            zorder=4,
        )
        ax.add_patch(grid)
        grid.set_clip_path(outline)
    ax.plot(r * np.cos(theta), r * np.sin(theta), color="#4A1208", linewidth=1.6 * OVERSAMPLE, zorder=5)
    _save(fig, path)


def draw_lesions(path: Path) -> None:
    fig, ax = _canvas()
    # Two lungs: mirrored rounded outlines.
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    for side in (-1, 1):
        x = side * (0.47 + 0.36 * np.cos(t) + 0.05 * np.cos(2 * t))
        y = -0.02 + 0.80 * np.sin(t) * (1 - 0.12 * np.sin(t)) - 0.06 * np.cos(t) * side * side
        ax.add_patch(
            PathPatch(
                _closed_path(x, y),
                facecolor="#DCE6EE",
                edgecolor="#5B7083",
                linewidth=2.0 * OVERSAMPLE,
                zorder=1,
            )
        )
    # Trachea and bronchi.
    ax.plot(
        [0, 0], [0.98, 0.45], color="#5B7083", linewidth=3.2 * OVERSAMPLE, solid_capstyle="round", zorder=2
    )
    for side in (-1, 1):
        ax.plot(
            [0, side * 0.22],
            [0.45, 0.22],
            color="#5B7083",
            linewidth=2.6 * OVERSAMPLE,
            solid_capstyle="round",
            zorder=2,
        )
    # Lesions, one colour per site, different sizes and shapes.
    lesions = (
        (-0.52, 0.38, 0.17, SITE_COLORS[0], ((3, 0.15, 0.2),)),
        (0.55, 0.30, 0.12, SITE_COLORS[1], ((2, 0.12, 1.0), (4, 0.05, 0.0))),
        (-0.40, -0.42, 0.11, SITE_COLORS[2], ((5, 0.08, 0.5),)),
        (0.42, -0.38, 0.19, SITE_COLORS[3], ((3, 0.10, 2.0), (2, 0.08, 0.3))),
        (0.0, -0.80, 0.09, SITE_COLORS[4], ((2, 0.10, 0.0),)),
    )
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    for cx, cy, r0, color, lobes in lesions:
        r = _lobed_radius(theta, r0, lobes)
        dark = np.array(matplotlib.colors.to_rgb(color)) * 0.55
        _shaded_blob(ax, cx, cy, r, dark, "#FFFFFF", steps=18, z=3)
        ax.add_patch(
            PathPatch(
                _closed_path(cx + r * np.cos(theta), cy + r * np.sin(theta)),
                facecolor=color,
                alpha=0.55,
                edgecolor=dark,
                linewidth=1.4 * OVERSAMPLE,
                zorder=4,
            )
        )
    # A tag on the largest lesion: the site label stored on its segment.
    ax.add_patch(
        Circle((0.70, -0.16), 0.085, facecolor="white", edgecolor="#333333", lw=1.2 * OVERSAMPLE, zorder=6)
    )
    ax.add_patch(Circle((0.70, -0.16), 0.045, facecolor=SITE_COLORS[3], edgecolor="none", zorder=7))
    ax.plot([0.62, 0.52], [-0.21, -0.28], color="#333333", linewidth=1.2 * OVERSAMPLE, zorder=6)
    _save(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPO, help="root folder to write under (default: the repo)"
    )
    args = parser.parse_args(argv)
    root: Path = args.out
    draw_radtyper(root / "RadTyper.png")
    draw_radtyper(root / "RadTyper" / "Resources" / "Icons" / "RadTyper.png")
    draw_lesions(root / "RadTyperLesions" / "Resources" / "Icons" / "RadTyperLesions.png")


if __name__ == "__main__":
    main()
