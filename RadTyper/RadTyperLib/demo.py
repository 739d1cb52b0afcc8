"""The demo: the embedded synthetic patient run through every analysis RadTyper has.

Outputs are staged in a temporary folder beside ``out_dir`` (:func:`RadTyperLib.io.staged_folder`) and moved
into place only when every step has succeeded: a failed demo leaves ``out_dir`` as it was (not even created).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

from .patient import Patient

Log = Callable[[str], None]


def write_lesion_table(patient: Patient, path: Path) -> Path:
    """CSV with one row per lesion, columns :data:`RadTyperLib.summary.SUMMARY_COLUMNS`."""
    from .summary import SUMMARY_COLUMNS, lesion_summary

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(SUMMARY_COLUMNS))
        writer.writeheader()
        for row in lesion_summary(patient):
            writer.writerow({k: f"{v:.3f}" if isinstance(v, float) else v for k, v in row.items()})
    return path


#: Degrees shown in the reconstruction figures (as the paper's Extended Data Fig. 1c).
FIGURE_DEGREES: tuple[int, ...] = (1, 2, 5, 10, 15)


def write_features_and_reconstructions(patient: Patient, out: Path, log: Log) -> None:
    """``features.csv`` (313 features + QC per lesion) and one PNG per lesion: surface + reconstructions."""
    from .features import patient_features
    from .render import MeshView, render_panels_png

    log("demo: computing SPHARM shape, burden, regional-variation and pyradiomics features")
    table, results = patient_features(patient, progress=lambda f, m: log(f"  [{f * 100:3.0f} %] {m}"))
    table.to_csv(out / "features.csv", index=False, float_format="%.8g")
    write_heterogeneity(table, out / "heterogeneity", log)
    write_subtype_and_report(table, out, log)
    figures = out / "reconstructions"
    figures.mkdir()
    for res in results:
        color = res.lesion.color or (0.85, 0.55, 0.45)
        surface = MeshView(*res.shape.surface, color=(0.75, 0.75, 0.75))
        panels = [[surface]] + [[MeshView(*res.shape.reconstruct(d), color=color)] for d in FIGURE_DEGREES]
        titles = ["surface"] + [f"L = {d}" for d in FIGURE_DEGREES]
        render_panels_png(figures / f"{res.lesion.name}.png", panels, titles)
    log(f"demo: features of {len(table)} lesions, reconstructions at degrees {FIGURE_DEGREES}")


def write_heterogeneity(table, out: Path, log: Log) -> None:
    """The patient's inter-lesion heterogeneity report (Henry et al.) into ``out``."""
    from .heterogeneity.report import heterogeneity_report

    report = heterogeneity_report(table, out, by="site")
    rec = next(iter(report["patients"].values()))
    log(
        f"demo: heterogeneity of {rec['n_lesions']} lesions: MTD {rec['max_tumoral_divergence']:.3f}, "
        f"ATH {rec['average_tumoral_heterogeneity']:.3f}"
    )


def write_subtype_and_report(table, out: Path, log: Log) -> Path | None:
    """``subtype.csv`` (the patient's subtype with the shipped default model) and the cohort report in
    ``out/report/`` (the default model's discovery, subtype profile and the patient's heterogeneity).

    Returns the report's ``index.html``, or None when this installation has no default model or lacks
    scikit-learn (the demo then says so and goes on without them).
    """
    from .subtypes.default_model import default_model_path

    model_dir = default_model_path()
    if model_dir is None:
        log("demo: no default subtype model in this installation: subtype and cohort report skipped")
        return None
    try:
        import sklearn  # noqa: F401
    except ImportError:
        log("demo: scikit-learn is not installed (pip install 'radtyper[ml]'): subtype and report skipped")
        return None
    from functools import partial

    from .cli_cohort import load_consensus
    from .report import write_cohort_report
    from .subtype_display import subtype_headline
    from .subtypes import load_bundle
    from .subtypes.model_report import model_sections, prediction_section

    model = load_bundle(model_dir)
    prediction = model.predict(table)
    prediction.to_csv(out / "subtype.csv", index=False, float_format="%.6g")
    row = prediction.iloc[0]
    log(f"demo: subtype {subtype_headline(row.to_dict())} with the default model (not for clinical use)")
    reference = model_dir / "reference" / "features.csv.gz"
    consensus = load_consensus(model_dir)
    # the whole demo output is staged (run_demo): the model's figures and the report share one folder
    (out / "report").mkdir(parents=True, exist_ok=True)
    html = write_cohort_report(
        out / "report",
        labels=model_dir / "labels.csv",
        consensus=consensus,
        features=reference if reference.is_file() else None,
        heterogeneity=out / "heterogeneity",
        extra_sections=[
            prediction_section(
                prediction,
                "Demo patient: predicted subtype",
                f"Subtype of the demo patient (largest lesion) predicted by the default model. {model.provenance}",
            ),
            partial(model_sections, model_dir),  # its figures are made inside the staged report
        ],
        title="RadTyper demo report: default subtype model and the demo patient",
    )
    log(f"demo: cohort report of the default model and the demo patient → {html.relative_to(out)}")
    return html


def run_demo(out_dir: str | os.PathLike[str], *, seed: int = 0, log: Log = print) -> list[Path]:
    """Generate the demo patient (CT and MR-like) and run the pipeline; return the written files.

    Writes the patient (image.nrrd, image_mr.nrrd, lesions.seg.nrrd, parenchyma.nrrd, sites.csv),
    lesions.csv, features.csv, reconstructions/<lesion>.png, heterogeneity/ (report files), subtype.csv
    (the subtype predicted by the shipped default model: patient, subtype, p_<subtype>…) and report/ (the
    HTML cohort report: the default model's consensus clustering, features and Fig. 3c profile by subtype,
    the demo patient's subtype and heterogeneity).
    """
    from .io import staged_folder, write_image, write_patient
    from .phantoms import make_patient

    out = Path(out_dir)
    with staged_folder(out) as stage:
        log(f"demo: generating the synthetic patient (seed {seed})")
        ct = make_patient(seed, modality="CT", patient_id="demo")
        mr = make_patient(seed, modality="MR", patient_id="demo")
        write_patient(ct, stage)
        write_image(mr.image, stage / "image_mr.nrrd")
        write_lesion_table(ct, stage / "lesions.csv")
        log(f"demo: {len(ct.lesions)} lesions at sites {', '.join(sorted({les.site for les in ct.lesions}))}")
        write_features_and_reconstructions(ct, stage, log)
        written = [out / src.relative_to(stage) for src in sorted(stage.rglob("*")) if src.is_file()]
    return written
