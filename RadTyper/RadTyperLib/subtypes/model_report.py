"""Report sections of a subtype model: its domain, its probability calibration, predicted patients.

Used by ``radtyper report --model`` and the demo: :func:`model_sections` (the domain statement, the
reliability curve ``calibration.png`` with the Brier scores, and, when the bundle has them, the build's
per-subtype rating tables), :func:`prediction_section` (the predicted patients, each subtype marked when the
patient is outside the model's domain).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..subtype_display import OUT_OF_DOMAIN, subtype_headline


def plot_reliability(calibration: dict[str, Any], path: Path, title: str = "") -> Path:
    """Reliability curve (top-class confidence vs accuracy, per bin) before and after scaling → PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=110)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    for key, style, label in (
        ("uncalibrated", "o-", "classifier"),
        ("calibrated", "s-", "temperature-scaled"),
    ):
        rec = calibration.get(key)
        if not rec:
            continue
        bins = rec["reliability"]
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            style,
            ms=4,
            label=f"{label} (Brier {rec['brier']:.3f}, ECE {rec['ece']:.3f})",
        )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("predicted probability of the subtype (confidence)")
    ax.set_ylabel("fraction correct (held-out patients)")
    ax.set_title(title or f"Calibration, T = {calibration.get('temperature', 1.0):.2f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def domain_text(meta: dict[str, Any]) -> str:
    """One paragraph: what the model's domain is and how the threshold was set."""
    d = meta.get("domain")
    if not d:
        return "This model has no domain description: every prediction is marked as outside its domain."
    groups = ", ".join(meta.get("feature_groups") or [])
    return (
        f"Modalities: {', '.join(d.get('modalities') or ['not recorded'])}; sites: "
        f"{', '.join(d.get('sites') or ['not recorded'])}; feature groups: {groups}; feature pipeline: "
        f"{d.get('feature_pipeline') or 'not recorded'}. A patient is outside the domain when its modality or "
        f"site differs, a feature group is missing, its burden lies outside the training range (×/÷ "
        f"{d.get('range_factor', 1.25)}), or its domain score (mean distance to the {d.get('k')} nearest "
        f"training patients over the training median) exceeds {d['threshold']:.2f} — the "
        f"{d.get('quantile', 0.99):.0%} quantile over {d.get('calibrated_on')}."
    )


def model_sections(model_dir: str | Path, out_dir: str | Path) -> list[Any]:
    """Report sections of the bundle in ``model_dir`` (figures written into ``out_dir``)."""
    import pandas as pd

    from ..report import ReportSection

    d, out = Path(model_dir), Path(out_dir)
    mj = d / "model.json"
    if not mj.is_file():
        return []
    meta = json.loads(mj.read_text(encoding="utf-8"))
    sections = [ReportSection("Subtype model: domain", domain_text(meta))]
    cal = meta.get("calibration") or {}
    if "calibrated" in cal:
        png = plot_reliability(cal, out / "calibration.png")
        table = pd.DataFrame(
            [
                {
                    "probabilities": k,
                    "brier": cal[k]["brier"],
                    "log_loss": cal[k]["log_loss"],
                    "ece": cal[k]["ece"],
                }
                for k in ("uncalibrated", "calibrated")
            ]
        )
        sections.append(
            ReportSection(
                "Subtype model: calibration of the probabilities",
                f"{cal['method']} ({cal['folds']} folds, {cal['n']} patients): temperature "
                f"{cal['temperature']:.2f}. Brier score {cal['uncalibrated']['brier']:.3f} before, "
                f"{cal['calibrated']['brier']:.3f} after scaling (cross-fitted; a uniform guess scores "
                f"{cal['chance_brier']:.3f}).",
                figures=[(png, "Reliability curve on held-out folds")],
                tables=[("Calibration", table)],
            )
        )
    if (d / "ratings.png").is_file():
        import shutil

        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(d / "ratings.png", out / "ratings.png")
        sections.append(
            ReportSection(
                "Subtype model: the radiologists' ratings per subtype",
                "Mean rating per subtype with the Kruskal–Wallis statistic and p (build of the model).",
                figures=[(out / "ratings.png", "Ratings per subtype")],
            )
        )
    for name, caption in (
        ("ratings_by_subtype.csv", "Radiologists' ratings per subtype (held-out LIDC contours)"),
        ("ratings_tests.csv", "Association of the subtypes with the ratings (Kruskal–Wallis)"),
        ("reader_agreement.csv", "Subtype agreement between readers' contours of one nodule"),
    ):
        if (d / name).is_file():
            sections.append(
                ReportSection(f"Subtype model: {caption}", tables=[(caption, pd.read_csv(d / name))])
            )
    return sections


def prediction_section(prediction: Any, title: str = "Predicted subtypes", text: str = "") -> Any:
    """A report section listing every patient's subtype, marked when outside the model's domain."""
    from ..report import ReportSection

    lines = [f"{r['patient']}: {subtype_headline(r)}" for r in prediction.to_dict(orient="records")]
    n_out = sum(OUT_OF_DOMAIN in line for line in lines)
    head = f"{n_out} of {len(lines)} patients outside the model's domain. " if n_out else ""
    return ReportSection(title, (text + " " + head + " | ".join(lines)).strip(), tables=[(title, prediction)])
