"""Per-patient analysis of a lesion segmentation, shown as MRML nodes: the logic of the RadTyper module.

:class:`AnalysisLogic` turns a volume + lesion segmentation (+ optional parenchyma) into

* table nodes: one row per lesion (the feature table of :mod:`RadTyperLib.features`, plus IITH columns when
  available), one row per patient (heterogeneity indexes), one row per feature (CV), the recovery curve;
* a plot chart of the recovery curve (Plots module: ``vtkMRMLPlotSeriesNode`` + ``vtkMRMLPlotChartNode``);
* one model node per lesion with its SPHARM reconstruction — every degree is stored in the model's point
  data (arrays ``RadTyperDegree01`` … ``RadTyperDegree15``, RAS), so the degree slider re-renders in place,
  also after the scene was saved and reloaded — shown as an outline in the slice views;
* one model node per lesion with the original (marching-cubes) surface, hidden by default;
* a segmentation node with the margin shells TC / TIM / PM5 / PM10 of every lesion (toggled per shell);
* for a subtype model bundle: a table with the predicted subtype and probabilities, a text node, and the
  text for the slice views' corner annotation.

Every output node carries the attribute ``RadTyper.Role`` and a node reference ``RadTyperSource`` to the
lesion segmentation, so computing again refills the same nodes (same IDs). The user's nodes are only read.

The computation runs in this process (:meth:`AnalysisLogic.compute`) or in a background process
(:meth:`AnalysisLogic.start_job`, polled by the GUI); both go through :func:`RadTyperLib.jobs.run_analysis`
and :meth:`AnalysisLogic.load_results`. No Qt, no ``slicer.util``, no application: plain pytest with the
``slicer-core`` wheel tests all of it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import vtk
from vtk.util import numpy_support

from RadTyperLib.errors import InputError, RadTyperError
from RadTyperLib.features import FeatureSettings

from .bridge import (
    add_mask_segment,
    dataframe_to_table,
    mesh_to_model,
    optional_path,
    patient_from_nodes,
    table_to_dataframe,
    volume_to_sitk,
)
from .lesions_logic import ComponentMissingError

ROLE_ATTRIBUTE = "RadTyper.Role"
LESION_ATTRIBUTE = "RadTyper.Lesion"
SOURCE_REFERENCE = "RadTyperSource"
SHELL_TAG = "RadTyper.Shell"
LESION_TAG = "RadTyper.Lesion"
DEGREE_ATTRIBUTE = "RadTyper.Degree"
DEGREE_ARRAY = "RadTyperDegree{:02d}"
ANNOTATION_ATTRIBUTE = "RadTyper.Annotation"
PROVENANCE_ATTRIBUTE = "RadTyper.Provenance"
BUNDLE_ATTRIBUTE = "RadTyper.Bundle"
LABEL_ATTRIBUTE = "RadTyper.SubtypeLabel"

ROLES = {
    "lesion_table": ("vtkMRMLTableNode", "features"),
    "patient_table": ("vtkMRMLTableNode", "heterogeneity"),
    "cv_table": ("vtkMRMLTableNode", "feature CV"),
    "recovery_table": ("vtkMRMLTableNode", "recovery curve"),
    "recovery_chart": ("vtkMRMLPlotChartNode", "recovery curve"),
    "shells": ("vtkMRMLSegmentationNode", "margin shells"),
    "subtype_table": ("vtkMRMLTableNode", "subtype"),
    "subtype_text": ("vtkMRMLTextNode", "subtype"),
}
SHELL_NAMES: tuple[str, ...] = ("TC", "TIM", "PM5", "PM10")
SHELL_COLORS: dict[str, tuple[float, float, float]] = {
    "TC": (1.0, 0.85, 0.1),
    "TIM": (1.0, 0.45, 0.0),
    "PM5": (0.1, 0.75, 0.25),
    "PM10": (0.15, 0.35, 1.0),
}
SHELL_OPACITY_3D: dict[str, float] = {"TC": 1.0, "TIM": 0.7, "PM5": 0.45, "PM10": 0.3}
SURFACE_COLOR = (0.75, 0.75, 0.75)
#: Columns of the patient table (heterogeneity indexes of Henry et al.; IITH status).
PATIENT_COLUMNS: tuple[str, ...] = (
    "patient",
    "n_lesions",
    "status",
    "reason",
    "max_tumoral_divergence",
    "average_tumoral_heterogeneity",
    "average_pair_distance",
    "mean_cv",
    "n_cv_features",
    "n_cv_flagged",
    "p_mean_cv_t_test",
    "k75_ath",
    "k75_mtd",
    "iith",
)
RECOVERY_SERIES = (
    ("ath_mean", "ATH recovered (%)", (0.85, 0.33, 0.1)),
    ("mtd_mean", "MTD recovered (%)", (0.0, 0.45, 0.74)),
)
MODALITIES: tuple[str, ...] = ("auto", "CT", "MR", "PET")

Progress = Callable[[float, str], None]


@dataclass
class AnalysisOutputs:
    """The nodes and values an analysis produced (all nodes are in the scene)."""

    lesion_table: Any
    patient_table: Any
    cv_table: Any
    recovery_table: Any
    recovery_chart: Any
    reconstructions: dict[str, Any] = field(default_factory=dict)
    surfaces: dict[str, Any] = field(default_factory=dict)
    shells: Any = None
    heterogeneity: dict[str, Any] = field(default_factory=dict)
    iith: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    features: Any = None  # pandas DataFrame of the lesion table

    def summary_lines(self) -> list[str]:
        """Short lines for the GUI: heterogeneity indexes, IITH status, failed lesions."""
        lines = []
        h = self.heterogeneity
        if h.get("max_tumoral_divergence") is not None:
            lines.append(
                f"MTD {h['max_tumoral_divergence']:.3f}, ATH {h['average_tumoral_heterogeneity']:.3f}, "
                f"mean CV {h.get('mean_cv') or float('nan'):.3f} ({h.get('n_lesions')} lesions)"
            )
        elif h:
            lines.append(f"Heterogeneity: {h.get('reason') or h.get('status', 'not computed')}")
        if self.iith:
            lines.append(self.iith)
        return lines + self.error_lines() + self.qc_lines()

    def error_lines(self) -> list[str]:
        """One line per lesion that could not be analysed."""
        return error_lines(self.errors)

    def qc_lines(self) -> list[str]:
        """One line per QC warning of an analysed lesion (the command line's ``radtyper: warning`` lines)."""
        return qc_lines(self.features)


def error_lines(errors: dict[str, str]) -> list[str]:
    """``Lesion '<name>' not analysed: <problem>`` for every lesion → problem of ``errors``."""
    return [f"Lesion '{name}' not analysed: {problem}" for name, problem in errors.items()]


def failed_lesions(features: Any) -> dict[str, str]:
    """Lesion → ``qc_error`` of the rows of a lesion feature table that were not analysed (``--keep-going``)."""
    if features is None or not {"lesion", "qc_error"} <= set(getattr(features, "columns", ())):
        return {}
    return {
        str(row["lesion"]): row["qc_error"].strip()
        for row in features[["lesion", "qc_error"]].to_dict("records")
        if isinstance(row["qc_error"], str) and row["qc_error"].strip()
    }


def qc_lines(features: Any) -> list[str]:
    """``Lesion '<name>': <warning>`` for every QC warning of the analysed rows of a lesion feature table."""
    from RadTyperLib.checks import qc_warnings

    if features is None or "lesion" not in getattr(features, "columns", ()):
        return []
    failed = failed_lesions(features)  # listed by error_lines
    out = []
    for row in features.to_dict("records"):
        if str(row["lesion"]) not in failed:
            out += [f"Lesion '{row['lesion']}': {text}" for text in qc_warnings(row)]
    return out


@dataclass
class SubtypeOutputs:
    """A subtype prediction shown in the scene."""

    table: Any
    text_node: Any
    subtype: str
    probabilities: dict[str, float]
    provenance: str
    annotation: str
    in_domain: bool = False  #: False also when the model gave no domain check
    label: str = ""  #: the subtype as the panel shows it (marked when outside the model's domain)


# --- node bookkeeping -------------------------------------------------------------------------------------
def _nodes_of(scene: Any, cls: str) -> list[Any]:
    nodes = scene.GetNodesByClass(cls)
    out = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]
    return [n for n in out if n is not None]


def _is_output(node: Any, role: str, source: Any) -> bool:
    return (
        node.GetAttribute(ROLE_ATTRIBUTE) == role
        and node.GetNodeReferenceID(SOURCE_REFERENCE) == source.GetID()
    )


def _lesion_table_columns(columns: Sequence[str]) -> list[str]:
    return [c for c in columns if not c.startswith("iith_")]


class AnalysisLogic:
    """Compute and display a patient's analysis (see the module docstring)."""

    # --- inputs -------------------------------------------------------------------------------------------
    @staticmethod
    def check_inputs(volume_node: Any, segmentation_node: Any) -> None:
        """InputError with a user-facing message when the inputs cannot be analysed."""
        if volume_node is None:
            raise InputError("No input volume is selected")
        if not volume_node.IsA("vtkMRMLScalarVolumeNode") or volume_node.GetImageData() is None:
            raise InputError(f"'{volume_node.GetName()}' is not a scalar volume with image data")
        if segmentation_node is None:
            raise InputError("No lesion segmentation is selected")
        if not segmentation_node.IsA("vtkMRMLSegmentationNode"):
            raise InputError(f"'{segmentation_node.GetName()}' is not a segmentation")
        if segmentation_node.GetSegmentation().GetNumberOfSegments() == 0:
            raise InputError(
                f"The segmentation '{segmentation_node.GetName()}' has no lesions: draw or auto-segment them "
                "in the RadTyper Lesions module first"
            )

    def patient(
        self,
        volume_node: Any,
        segmentation_node: Any,
        parenchyma_node: Any = None,
        *,
        modality: str = "auto",
        phase_nodes: Mapping[str, Any] | None = None,
        image_phase: str = "image",
    ) -> Any:
        """The core Patient of the nodes (read-only conversion; modality "auto" guesses CT vs MR).

        ``phase_nodes`` ({phase name: scalar volume node}) adds further co-registered images (e.g. DCE-MRI
        post-contrast phases; ``image_phase`` names ``volume_node``'s phase) for the multi-phase IITH
        features; each must lie on ``volume_node``'s voxel grid (InputError naming it otherwise: resample it
        first, e.g. with the *Resample Image (BRAINS)* module — RadTyper never resamples silently).
        """
        import dataclasses

        from RadTyperLib.io import guess_modality

        self.check_inputs(volume_node, segmentation_node)
        if modality not in MODALITIES:
            raise InputError(f"Unknown modality '{modality}'; use one of {', '.join(MODALITIES)}")
        patient = patient_from_nodes(volume_node, segmentation_node, parenchyma_node=parenchyma_node)
        patient.modality = guess_modality(patient.image) if modality == "auto" else modality.upper()
        if phase_nodes:
            images, sources = {}, dict(patient.sources)
            for name, node in phase_nodes.items():
                if node is None or not node.IsA("vtkMRMLScalarVolumeNode") or node.GetImageData() is None:
                    raise InputError(f"phase '{name}': not a scalar volume with image data")
                if node is volume_node:
                    raise InputError(f"phase '{name}' is the input volume itself")
                images[str(name)] = volume_to_sitk(node)
                sources[f"image_{name}"] = f"volume '{node.GetName()}'"
            mods = {
                n: (guess_modality(im) if modality == "auto" else modality.upper())
                for n, im in images.items()
            }
            patient = dataclasses.replace(
                patient, phases=images, image_phase=image_phase, phase_modalities=mods, sources=sources
            )
        return patient

    # --- computing ----------------------------------------------------------------------------------------
    def compute(
        self,
        volume_node: Any,
        segmentation_node: Any,
        parenchyma_node: Any = None,
        *,
        settings: FeatureSettings | None = None,
        modality: str = "auto",
        lesions: Sequence[str] | None = None,
        keep_going: bool = True,
        iith_reference: str | os.PathLike[str] | None = None,
        progress: Progress | None = None,
        should_cancel: Callable[[], bool] | None = None,
        phase_nodes: Mapping[str, Any] | None = None,
        image_phase: str = "image",
    ) -> AnalysisOutputs:
        """Run the whole analysis in this process and show it (tables, models, shells, plot).

        Raises:
            InputError / LesionError: unusable inputs (the message says which and why).
            RadTyperLib.features.Cancelled: ``should_cancel()`` returned True.
        """
        from RadTyperLib.jobs import run_analysis

        patient = self.patient(
            volume_node,
            segmentation_node,
            parenchyma_node,
            modality=modality,
            phase_nodes=phase_nodes,
            image_phase=image_phase,
        )
        with tempfile.TemporaryDirectory(prefix="radtyper-") as tmp:
            files = run_analysis(
                patient,
                Path(tmp) / "result",
                settings,
                lesions=lesions,
                keep_going=keep_going,
                progress=progress,
                should_cancel=should_cancel,
            )
            return self.load_results(
                files.folder, volume_node, segmentation_node, iith_reference=iith_reference
            )

    def start_job(
        self,
        volume_node: Any,
        segmentation_node: Any,
        parenchyma_node: Any = None,
        *,
        settings: FeatureSettings | None = None,
        modality: str = "auto",
        lesions: Sequence[str] | None = None,
        keep_going: bool = True,
        python: str | None = None,
        phase_nodes: Mapping[str, Any] | None = None,
        image_phase: str = "image",
    ) -> Any:
        """Write the inputs to a temporary folder and start the analysis in a background process.

        Returns an :class:`AnalysisJob` bound to ``volume_node`` and ``segmentation_node``: poll it, then
        ``job.load()`` shows the results on *those* nodes (whatever is selected by then) and
        ``job.cleanup()``; ``job.cancel()`` stops it, and closing the scene cancels it.
        """
        from RadTyperLib.jobs import start_analysis_job

        patient = self.patient(
            volume_node,
            segmentation_node,
            parenchyma_node,
            modality=modality,
            phase_nodes=phase_nodes,
            image_phase=image_phase,
        )
        job = start_analysis_job(patient, settings, lesions=lesions, keep_going=keep_going, python=python)
        return AnalysisJob(self, job, volume_node, segmentation_node)

    # --- loading results into the scene -------------------------------------------------------------------
    def load_results(
        self,
        result_dir: str | os.PathLike[str],
        volume_node: Any,
        segmentation_node: Any,
        *,
        iith_reference: str | os.PathLike[str] | None = None,
        degree: int | None = None,
    ) -> AnalysisOutputs:
        """Show a finished analysis folder (:func:`RadTyperLib.jobs.run_analysis`) in the scene."""
        import pandas as pd

        from RadTyperLib.jobs import AnalysisFiles, load_display

        self.check_inputs(volume_node, segmentation_node)
        files = AnalysisFiles.of(result_dir).check()
        summary = files.read_summary()
        features = pd.read_csv(
            files.features, dtype={"lesion": str, "site": str, "patient": str, "modality": str}
        )
        iith_columns, iith_message = self.iith(features, iith_reference)
        for column, values in iith_columns.items():
            features[column] = values
        heterogeneity = self._heterogeneity_record(files, summary)
        heterogeneity["iith"] = iith_message

        source = segmentation_node
        outputs = AnalysisOutputs(
            lesion_table=self._table("lesion_table", source, features),
            patient_table=self._table("patient_table", source, self._patient_frame(heterogeneity)),
            cv_table=self._table("cv_table", source, self._cv_frame(heterogeneity)),
            recovery_table=self._table("recovery_table", source, self._recovery_frame(heterogeneity)),
            recovery_chart=None,
            heterogeneity=heterogeneity,
            iith=iith_message,
            errors=dict(summary.get("errors", {})),
            features=features,
        )
        outputs.recovery_chart = self._recovery_chart(source, outputs.recovery_table)
        displays = load_display(files.display)
        outputs.reconstructions, outputs.surfaces = self._update_models(source, displays, degree)
        outputs.shells = self._update_shells(source, volume_node, displays)
        self._group_in_folder(source, outputs)
        return outputs

    def _output(self, role: str, source: Any) -> tuple[Any, str, Any]:
        """``(scene, name, existing node or None)`` of a single output node; tags a new node."""
        scene = source.GetScene()
        cls, label = ROLES[role]
        for node in _nodes_of(scene, cls):
            if _is_output(node, role, source):
                return scene, node.GetName(), node
        node = scene.AddNewNodeByClass(cls, scene.GenerateUniqueName(f"{source.GetName()} {label}"))
        node.SetAttribute(ROLE_ATTRIBUTE, role)
        node.SetNodeReferenceID(SOURCE_REFERENCE, source.GetID())
        return scene, node.GetName(), node

    def _table(self, role: str, source: Any, frame: Any) -> Any:
        scene, name, node = self._output(role, source)
        return dataframe_to_table(frame, scene, name, node=node)

    def output_node(self, role: str, segmentation_node: Any) -> Any:
        """The existing output node of ``role`` for a lesion segmentation, or None."""
        if segmentation_node is None or segmentation_node.GetScene() is None:
            return None
        cls, _label = ROLES[role]
        return next(
            (
                n
                for n in _nodes_of(segmentation_node.GetScene(), cls)
                if _is_output(n, role, segmentation_node)
            ),
            None,
        )

    # --- heterogeneity and IITH ---------------------------------------------------------------------------
    @staticmethod
    def _heterogeneity_record(files: Any, summary: dict[str, Any]) -> dict[str, Any]:
        status = dict(summary.get("heterogeneity", {}))
        path = files.heterogeneity / "heterogeneity.json"
        if status.get("status") != "ok" or not path.is_file():
            return {"status": status.get("status", "skipped"), "reason": status.get("reason")}
        report = json.loads(path.read_text(encoding="utf-8"))
        record = next(iter(report.get("patients", {}).values()), {})
        return dict(record)

    @staticmethod
    def heterogeneity_summary(patient_table_node: Any) -> list[str]:
        """Lines for the GUI from a patient table (so they show again after the scene is reloaded)."""
        if patient_table_node is None or patient_table_node.GetNumberOfRows() == 0:
            return []
        row = table_to_dataframe(patient_table_node).iloc[0]
        lines = []

        def number(key: str) -> float:
            try:
                return float(row.get(key))
            except (TypeError, ValueError):
                return float("nan")

        mtd, ath = number("max_tumoral_divergence"), number("average_tumoral_heterogeneity")
        if np.isfinite(mtd) and np.isfinite(ath):
            lines.append(
                f"Maximal tumoral divergence (MTD) {mtd:.3f}; average tumoral heterogeneity (ATH) {ath:.3f}; "
                f"mean feature CV {number('mean_cv'):.3f} over {number('n_cv_features'):.0f} features; "
                f"{number('n_lesions'):.0f} lesions."
            )
            k75 = number("k75_ath")
            if np.isfinite(k75):
                lines.append(f"{k75:.0f} random lesions recover ≥ 75 % of the ATH on average.")
        else:
            reason = str(row.get("reason") or row.get("status") or "not computed")
            lines.append(f"Heterogeneity: {reason}")
        iith = str(row.get("iith") or "")
        if iith and iith != "nan":
            lines.append(iith)
        return lines

    @staticmethod
    def _patient_frame(record: dict[str, Any]) -> Any:
        import pandas as pd

        k75 = record.get("k75") or {}
        row = {c: record.get(c) for c in PATIENT_COLUMNS}
        row["k75_ath"] = k75.get("average_tumoral_heterogeneity")
        row["k75_mtd"] = k75.get("max_tumoral_divergence")
        row["reason"] = record.get("reason") or ""
        row["n_cv_flagged"] = len(record.get("cv_flags") or {})
        row["p_mean_cv_t_test"] = (record.get("tests") or {}).get("p_t_test")  # Henry's test, this patient
        frame = pd.DataFrame([row], columns=list(PATIENT_COLUMNS))
        for c in (
            "max_tumoral_divergence",
            "average_tumoral_heterogeneity",
            "average_pair_distance",
            "mean_cv",
        ):
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
        for c in ("n_lesions", "n_cv_features", "n_cv_flagged", "p_mean_cv_t_test", "k75_ath", "k75_mtd"):
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
        return frame

    @staticmethod
    def _cv_frame(record: dict[str, Any]) -> Any:
        import pandas as pd

        cv = record.get("cv") or {}
        notes = record.get("cv_notes") or {}
        flags = record.get("cv_flags") or {}
        frame = pd.DataFrame(
            {
                "feature": list(cv),
                "cv": [cv[f] for f in cv],
                "note": [notes.get(f) or "" for f in cv],
                "flag": [flags.get(f) or "" for f in cv],
            }
        )
        frame["cv"] = pd.to_numeric(frame["cv"], errors="coerce")
        return frame

    @staticmethod
    def _recovery_frame(record: dict[str, Any]) -> Any:
        import pandas as pd

        columns = ["k", "n_draws", "ath_mean", "ath_lo", "ath_hi", "mtd_mean", "mtd_lo", "mtd_hi"]
        frame = pd.DataFrame(record.get("recovery_curve") or [], columns=columns)
        return frame.apply(pd.to_numeric, errors="coerce")

    def _recovery_chart(self, source: Any, table_node: Any) -> Any:
        scene, _name, chart = self._output("recovery_chart", source)
        chart.SetTitle("Heterogeneity recovered by random lesion sampling")
        chart.SetXAxisTitle("lesions sampled (k)")
        chart.SetYAxisTitle("% of the patient's heterogeneity")
        chart.SetLegendVisibility(True)
        existing = {
            chart.GetNthPlotSeriesNode(i).GetYColumnName(): chart.GetNthPlotSeriesNode(i)
            for i in range(chart.GetNumberOfPlotSeriesNodes())
            if chart.GetNthPlotSeriesNode(i) is not None
        }
        for column, label, color in RECOVERY_SERIES:
            series = existing.get(column)
            if series is None:
                series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(label))
                series.SetAttribute(ROLE_ATTRIBUTE, "recovery_series")
                series.SetNodeReferenceID(SOURCE_REFERENCE, source.GetID())
                chart.AddAndObservePlotSeriesNodeID(series.GetID())
            series.SetAndObserveTableNodeID(table_node.GetID())
            series.SetXColumnName("k")
            series.SetYColumnName(column)
            series.SetPlotType(series.PlotTypeScatter)
            series.SetMarkerStyle(series.MarkerStyleCircle)
            series.SetColor(*color)
        return chart

    @staticmethod
    def iith(features: Any, reference: str | os.PathLike[str] | None) -> tuple[dict[str, list], str]:
        """IITH columns (``iith_hi``, ``iith_class``) for the lesion table and a one-line status.

        With a reference (``iith_reference.json`` from ``radtyper iith`` on a cohort) every analysed lesion
        gets its HI against that cohort and the class (high/low) of the nearer cluster mean. Without one, the
        patient's own lesions are clustered when there are enough (SNF needs K + 1 = 14 lesions with
        radiomics); otherwise the status says what is missing. Never raises for missing data.
        """
        from RadTyperLib.iith import IITHReference, hi_from_reference, iith_cohort

        ok = features
        if "qc_error" in features.columns:
            ok = features[features["qc_error"].fillna("").astype(str).str.strip() == ""]
        reference = optional_path(reference)
        if reference is not None:
            try:
                ref = IITHReference.load(reference)
                his = [hi_from_reference(row, ref) for _i, row in ok.iterrows()]
            except RadTyperError as exc:
                return {}, f"IITH: {exc}"
            hi_col = [float("nan")] * len(features)
            cls_col = [""] * len(features)
            positions = {idx: pos for pos, idx in enumerate(features.index)}
            high, low = ref.cluster_hi.get("high"), ref.cluster_hi.get("low")
            for idx, hi in zip(ok.index, his, strict=True):
                hi_col[positions[idx]] = hi
                if high is not None and low is not None:
                    cls_col[positions[idx]] = "high" if abs(hi - high) <= abs(hi - low) else "low"
            return {
                "iith_hi": hi_col,
                "iith_class": cls_col,
            }, f"IITH: HI of {len(his)} lesion(s) against the reference"
        if not any(str(c).startswith("radiomics_") for c in features.columns):
            return {}, "IITH: needs the radiomics features (turn radiomics on) and a cohort reference"
        try:
            result = iith_cohort(ok)
        except RadTyperError as exc:
            return (
                {},
                f"IITH: not computed ({exc}); give a cohort reference (radtyper iith writes iith_reference.json)",
            )
        by_lesion = {str(r.lesion): (float(r.hi), str(r.iith)) for r in result.table.itertuples()}
        names = features["lesion"].astype(str).tolist()
        return (
            {
                "iith_hi": [by_lesion.get(n, (float("nan"), ""))[0] for n in names],
                "iith_class": [by_lesion.get(n, (float("nan"), ""))[1] for n in names],
            },
            f"IITH: {len(by_lesion)} lesions clustered (SNF, patient's own lesions)",
        )

    # --- models ------------------------------------------------------------------------------------------
    def _lesion_models(self, source: Any, role: str) -> dict[str, Any]:
        return {
            n.GetAttribute(LESION_ATTRIBUTE): n
            for n in _nodes_of(source.GetScene(), "vtkMRMLModelNode")
            if _is_output(n, role, source)
        }

    def reconstruction_models(self, segmentation_node: Any) -> dict[str, Any]:
        """``{lesion name: model node}`` of the SPHARM reconstructions of a lesion segmentation."""
        return (
            self._lesion_models(segmentation_node, "reconstruction") if segmentation_node is not None else {}
        )

    def surface_models(self, segmentation_node: Any) -> dict[str, Any]:
        """``{lesion name: model node}`` of the original surfaces of a lesion segmentation."""
        return self._lesion_models(segmentation_node, "surface") if segmentation_node is not None else {}

    def _new_model(self, source: Any, role: str, lesion: str, label: str) -> Any:
        scene = source.GetScene()
        node = scene.AddNewNodeByClass("vtkMRMLModelNode", scene.GenerateUniqueName(f"{lesion} {label}"))
        node.SetAttribute(ROLE_ATTRIBUTE, role)
        node.SetAttribute(LESION_ATTRIBUTE, lesion)
        node.SetNodeReferenceID(SOURCE_REFERENCE, source.GetID())
        return node

    def _update_models(self, source: Any, displays: Sequence[Any], degree: int | None) -> tuple[dict, dict]:
        scene = source.GetScene()
        recons, surfaces = (
            self._lesion_models(source, "reconstruction"),
            self._lesion_models(source, "surface"),
        )
        wanted = {d.name for d in displays}
        for models in (recons, surfaces):  # lesions no longer analysed lose their models
            for name in [k for k in models if k not in wanted]:
                scene.RemoveNode(models.pop(name))
        for d in displays:
            color = d.color or (0.85, 0.55, 0.45)
            node = recons.get(d.name) or self._new_model(source, "reconstruction", d.name, "SPHARM")
            shown = d.max_degree if degree is None else min(max(int(degree), 1), d.max_degree)
            mesh_to_model(d.reconstruction(shown), d.faces, scene, node.GetName(), node=node, color=color)
            self._store_degrees(node, d.reconstructions, shown)
            display = node.GetDisplayNode()
            display.SetVisibility2D(True)
            display.SetSliceIntersectionThickness(2)
            recons[d.name] = node
            surface = surfaces.get(d.name)
            if surface is None:
                surface = self._new_model(source, "surface", d.name, "surface")
                surface.CreateDefaultDisplayNodes()
                surface.GetDisplayNode().SetVisibility(False)  # shown on request, beside the reconstruction
                surface.GetDisplayNode().SetVisibility2D(False)
            mesh_to_model(
                d.surface_vertices,
                d.surface_faces,
                scene,
                surface.GetName(),
                node=surface,
                color=SURFACE_COLOR,
            )
            surface.GetDisplayNode().SetOpacity(0.5)
            surfaces[d.name] = surface
        return recons, surfaces

    @staticmethod
    def _store_degrees(node: Any, reconstructions_lps: np.ndarray, shown: int) -> None:
        """Keep every degree's vertices (RAS) in the model's point data; mark the degree shown."""
        point_data = node.GetPolyData().GetPointData()
        for d in range(1, reconstructions_lps.shape[0] + 1):
            ras = np.ascontiguousarray(reconstructions_lps[d - 1] * np.array([-1.0, -1.0, 1.0]))
            array = numpy_support.numpy_to_vtk(ras, deep=True, array_type=vtk.VTK_DOUBLE)
            array.SetName(DEGREE_ARRAY.format(d))
            point_data.AddArray(array)
        node.SetAttribute(DEGREE_ATTRIBUTE, str(int(shown)))

    @staticmethod
    def model_degrees(node: Any) -> int:
        """The highest degree stored in a reconstruction model (0 when none)."""
        point_data = node.GetPolyData().GetPointData() if node.GetPolyData() is not None else None
        d = 0
        while point_data is not None and point_data.GetArray(DEGREE_ARRAY.format(d + 1)) is not None:
            d += 1
        return d

    def set_reconstruction_degree(self, segmentation_node: Any, degree: int) -> int:
        """Show every lesion's reconstruction at ``degree`` (1 … 15; clipped to what was analysed).

        The model nodes are updated in place (same nodes, same IDs). Returns how many were updated.
        """
        if not 1 <= int(degree) <= 15:
            raise InputError(f"The SPHARM degree must be 1 … 15, got {degree}")
        count = 0
        for node in self.reconstruction_models(segmentation_node).values():
            available = self.model_degrees(node)
            if available == 0:
                continue
            shown = min(int(degree), available)
            if node.GetAttribute(DEGREE_ATTRIBUTE) == str(shown):
                count += 1
                continue
            poly = node.GetPolyData()
            arrays = [poly.GetPointData().GetArray(DEGREE_ARRAY.format(d)) for d in range(1, available + 1)]
            ras = numpy_support.vtk_to_numpy(arrays[shown - 1])
            connectivity = numpy_support.vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).reshape(-1, 3)
            mesh_to_model(
                ras * np.array([-1.0, -1.0, 1.0]),
                connectivity.copy(),
                node.GetScene(),
                node.GetName(),
                node=node,
            )
            point_data = node.GetPolyData().GetPointData()
            for array in arrays:
                point_data.AddArray(array)
            node.SetAttribute(DEGREE_ATTRIBUTE, str(shown))
            count += 1
        return count

    def set_models_visibility(
        self,
        segmentation_node: Any,
        *,
        reconstruction: bool | None = None,
        surface: bool | None = None,
        slice_outlines: bool | None = None,
    ) -> None:
        """Show or hide the reconstructions (3D), their slice-view outlines, and the original surfaces."""
        for node in self.reconstruction_models(segmentation_node).values():
            display = node.GetDisplayNode()
            if display is None:
                continue
            if reconstruction is not None:
                display.SetVisibility3D(bool(reconstruction))
            if slice_outlines is not None:
                display.SetVisibility2D(bool(slice_outlines))
            display.SetVisibility(display.GetVisibility3D() or display.GetVisibility2D())
        if surface is not None:
            for node in self.surface_models(segmentation_node).values():
                if node.GetDisplayNode() is not None:
                    node.GetDisplayNode().SetVisibility(bool(surface))
                    node.GetDisplayNode().SetVisibility2D(False)

    # --- shells -------------------------------------------------------------------------------------------
    def _update_shells(self, source: Any, volume_node: Any, displays: Sequence[Any]) -> Any:
        _scene, _name, node = self._output("shells", source)
        node.GetSegmentation().RemoveAllSegments()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        for d in displays:
            for shell in SHELL_NAMES:
                mask = d.shells.get(shell)
                if mask is None or not mask.any():
                    continue
                sid = add_mask_segment(
                    node,
                    mask,
                    volume_node,
                    f"{d.name} {shell}",
                    offset_zyx=d.shell_offset_zyx,
                    color=SHELL_COLORS[shell],
                    tags={SHELL_TAG: shell, LESION_TAG: d.name},
                )
                node.GetDisplayNode().SetSegmentOpacity3D(sid, SHELL_OPACITY_3D[shell])
        return node

    def shell_segment_ids(
        self, segmentation_node: Any, shell: str | None = None, lesions: Sequence[str] | None = None
    ) -> list[str]:
        """IDs of the shell segments of a lesion segmentation (of one shell type / some lesions if given)."""
        node = self.output_node("shells", segmentation_node)
        if node is None:
            return []
        segmentation = node.GetSegmentation()
        out = []
        for i in range(segmentation.GetNumberOfSegments()):
            sid = segmentation.GetNthSegmentID(i)
            kind, lesion = vtk.reference(""), vtk.reference("")
            segment = segmentation.GetSegment(sid)
            if not segment.GetTag(SHELL_TAG, kind):
                continue
            segment.GetTag(LESION_TAG, lesion)
            if (shell is None or str(kind) == shell) and (lesions is None or str(lesion) in lesions):
                out.append(sid)
        return out

    def set_shell_visibility(
        self, segmentation_node: Any, shell: str, visible: bool, lesions: Sequence[str] | None = None
    ) -> int:
        """Show or hide one shell type (TC, TIM, PM5, PM10) of every lesion (or of ``lesions``).

        Returns the number of segments changed.
        """
        if shell not in SHELL_NAMES:
            raise InputError(f"Unknown shell '{shell}'; use one of {', '.join(SHELL_NAMES)}")
        node = self.output_node("shells", segmentation_node)
        if node is None or node.GetDisplayNode() is None:
            return 0
        ids = self.shell_segment_ids(segmentation_node, shell, lesions)
        for sid in ids:
            node.GetDisplayNode().SetSegmentVisibility(sid, bool(visible))
        return len(ids)

    # --- subject hierarchy --------------------------------------------------------------------------------
    @staticmethod
    def _group_in_folder(source: Any, outputs: AnalysisOutputs) -> None:
        """Put the outputs in a subject-hierarchy folder "RadTyper: <segmentation>" (when the scene has one)."""
        scene = source.GetScene()
        sh = scene.GetSubjectHierarchyNode() if hasattr(scene, "GetSubjectHierarchyNode") else None
        if sh is None:
            return
        name = f"RadTyper: {source.GetName()}"
        folder = sh.GetItemChildWithName(sh.GetSceneItemID(), name)
        if not folder:
            folder = sh.CreateFolderItem(sh.GetSceneItemID(), name)
        nodes = [
            outputs.lesion_table,
            outputs.patient_table,
            outputs.cv_table,
            outputs.recovery_table,
            outputs.recovery_chart,
            outputs.shells,
            *outputs.reconstructions.values(),
            *outputs.surfaces.values(),
        ]
        for node in nodes:
            if node is None:
                continue
            item = sh.GetItemByDataNode(node)
            if item:
                sh.SetItemParent(item, folder)
            else:
                sh.CreateItem(folder, node)

    # --- subtype ------------------------------------------------------------------------------------------
    @staticmethod
    def subtypes_module() -> Any:
        """``RadTyperLib.subtypes`` with ``load_bundle`` and ``predict``; ComponentMissingError otherwise."""
        import importlib

        try:
            subtypes = importlib.import_module("RadTyperLib.subtypes")
        except ImportError as exc:
            raise ComponentMissingError(
                f"Subtype prediction is not available in this RadTyper version ({exc})"
            ) from None
        if not (hasattr(subtypes, "load_bundle") and hasattr(subtypes, "predict")):
            raise ComponentMissingError(
                "Subtype prediction is not available in this RadTyper version (RadTyperLib.subtypes has no "
                "load_bundle / predict)"
            )
        return subtypes

    @staticmethod
    def default_bundle_path() -> Path | None:
        """The subtype model shipped with RadTyper (None when this version ships none)."""
        import RadTyperLib

        path = Path(RadTyperLib.__file__).resolve().parent / "data" / "default_subtype_model"
        return path if path.exists() else None

    @staticmethod
    def _provenance(bundle: Any, path: Path) -> str:
        for attr in ("provenance", "provenance_text"):
            value = getattr(bundle, attr, None)
            if value:
                return str(value)
        if isinstance(bundle, dict) and bundle.get("provenance"):
            return str(bundle["provenance"])
        model_json = path / "model.json" if path.is_dir() else path
        if model_json.is_file() and model_json.suffix == ".json":
            try:
                value = json.loads(model_json.read_text(encoding="utf-8")).get("provenance")
            except (OSError, ValueError, AttributeError):
                value = None
            if value:
                return value if isinstance(value, str) else json.dumps(value)
        return "(the bundle gives no provenance)"

    def predict_subtype(
        self, bundle_path: str | os.PathLike[str] | None, lesion_table_node: Any, *, segmentation_node: Any
    ) -> SubtypeOutputs:
        """Predict the patient's subtype from the lesion table with a model bundle; show it in the scene.

        Raises:
            InputError: no bundle / no feature table, or a bundle made for other features (the message names
                the bundle and what does not fit).
            ComponentMissingError: this RadTyper version has no subtype prediction.
        """
        import pandas as pd

        path = optional_path(bundle_path)
        if path is None:
            raise InputError("Select a subtype model bundle first")
        if not path.exists():
            raise InputError(f"Subtype model bundle not found: {path}")
        if lesion_table_node is None or lesion_table_node.GetNumberOfRows() == 0:
            raise InputError("Compute the lesion features first: the subtype is predicted from them")
        if segmentation_node is None:
            raise InputError("No lesion segmentation is selected")
        subtypes = self.subtypes_module()
        features = table_to_dataframe(lesion_table_node)
        features = features[_lesion_table_columns(features.columns)]
        try:
            bundle = subtypes.load_bundle(path)
            prediction = subtypes.predict(bundle, features)
        except RadTyperError as exc:
            raise InputError(f"Model bundle '{path.name}': {exc}") from None
        except ImportError as exc:
            raise ComponentMissingError(
                f"Subtype prediction needs a Python package that is not installed: {exc}"
            ) from None
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise InputError(
                f"Model bundle '{path.name}' does not fit these features ({type(exc).__name__}: {exc})"
            ) from None
        if (
            not isinstance(prediction, pd.DataFrame)
            or prediction.empty
            or "subtype" not in prediction.columns
        ):
            raise InputError(f"Model bundle '{path.name}' gave no prediction for this patient")
        row = prediction.iloc[0]
        probabilities = {
            str(c)[2:]: float(row[c])
            for c in prediction.columns
            if str(c).startswith("p_") and pd.notna(row[c])
        }
        subtype = str(row["subtype"])
        provenance = self._provenance(bundle, path)
        table = self._table("subtype_table", segmentation_node, prediction.reset_index(drop=True))
        _scene, _name, text_node = self._output("subtype_text", segmentation_node)
        from RadTyperLib.subtype_display import in_domain_of, subtype_annotation, subtype_headline

        record = row.to_dict()
        label = subtype_headline(record)
        lines = [f"Subtype {label}"]
        lines += [f"  P({k}) = {v:.3f}" for k, v in sorted(probabilities.items(), key=lambda kv: -kv[1])]
        lines += ["", f"Model: {path.name}", provenance]
        annotation = subtype_annotation(record)
        text_node.SetText("\n".join(lines))
        text_node.SetAttribute("RadTyper.Subtype", subtype)
        text_node.SetAttribute(ANNOTATION_ATTRIBUTE, annotation)
        text_node.SetAttribute(PROVENANCE_ATTRIBUTE, provenance)
        text_node.SetAttribute(BUNDLE_ATTRIBUTE, str(path))
        text_node.SetAttribute(LABEL_ATTRIBUTE, label)
        return SubtypeOutputs(
            table, text_node, subtype, probabilities, provenance, annotation, in_domain_of(record), label
        )

    def shown_subtype(self, segmentation_node: Any) -> SubtypeOutputs | None:
        """The subtype prediction stored in the scene for a lesion segmentation (None when there is none)."""
        text_node = self.output_node("subtype_text", segmentation_node)
        table = self.output_node("subtype_table", segmentation_node)
        if text_node is None or table is None or not text_node.GetAttribute("RadTyper.Subtype"):
            return None
        from RadTyperLib.subtype_display import in_domain_of, subtype_headline

        frame = table_to_dataframe(table)
        probabilities = {}
        record: dict[str, Any] = {"subtype": text_node.GetAttribute("RadTyper.Subtype")}
        if len(frame):
            row = frame.iloc[0]
            probabilities = {str(c)[2:]: float(row[c]) for c in frame.columns if str(c).startswith("p_")}
            record = row.to_dict()
        return SubtypeOutputs(
            table,
            text_node,
            text_node.GetAttribute("RadTyper.Subtype"),
            probabilities,
            text_node.GetAttribute(PROVENANCE_ATTRIBUTE) or "",
            text_node.GetAttribute(ANNOTATION_ATTRIBUTE) or "",
            in_domain_of(record),
            text_node.GetAttribute(LABEL_ATTRIBUTE) or subtype_headline(record),
        )

    def subtype_annotation(self, segmentation_node: Any) -> str:
        """The corner-annotation text of the subtype shown for a lesion segmentation ("" when none)."""
        text_node = self.output_node("subtype_text", segmentation_node)
        if text_node is None:
            return ""
        return text_node.GetAttribute(ANNOTATION_ATTRIBUTE) or ""

    # --- export -------------------------------------------------------------------------------------------
    @staticmethod
    def export_csv(table_node: Any, path: str | os.PathLike[str]) -> Path:
        """Write a table node as CSV (columns and values as shown; written atomically)."""
        from RadTyperLib.io import atomic_path

        if table_node is None:
            raise InputError("No table to export: compute the results first")
        p = Path(path)
        if p.suffix.lower() != ".csv":
            p = p.with_suffix(".csv")
        frame = table_to_dataframe(table_node)
        with atomic_path(p) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.10g")
        return p


class AnalysisJob:
    """A background analysis (:class:`RadTyperLib.jobs.BackgroundJob`) bound to the nodes it was started on.

    The GUI polls it like the plain job (``poll()``, ``fraction``, ``message``, ``state``, ``log``, ``error``,
    ``cancel()``, ``cleanup()`` are the job's). :meth:`load` writes the results onto the volume and lesion
    segmentation the analysis was *started* on, never onto whatever the user selected meanwhile. The job
    observes the scene: closing it (``StartCloseEvent``) cancels the job and kills its process tree.
    """

    def __init__(self, logic: AnalysisLogic, job: Any, volume_node: Any, segmentation_node: Any) -> None:
        self.logic = logic
        self.job = job
        self.scene = segmentation_node.GetScene()
        self.volume_id = volume_node.GetID()
        self.segmentation_id = segmentation_node.GetID()
        self.closed_by_scene = False
        self._observer: int | None = None
        if self.scene is not None:
            self._observer = self.scene.AddObserver(self.scene.StartCloseEvent, self._on_scene_close)

    def __getattr__(self, name: str) -> Any:
        # poll, fraction, message, state, log, error, pid, result_dir, work_dir, returncode, cleanup, wait
        job = self.__dict__.get("job")
        if job is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(job, name)

    @property
    def nodes(self) -> tuple[Any, Any]:
        """(volume, lesion segmentation) the job was started on; None for one that left the scene."""
        if self.scene is None:
            return None, None
        return self.scene.GetNodeByID(self.volume_id), self.scene.GetNodeByID(self.segmentation_id)

    def _on_scene_close(self, caller: Any = None, event: Any = None) -> None:
        if "job" not in self.__dict__:  # called while Python tears the object down
            return
        self.closed_by_scene = True
        self.cancel()

    def detach(self) -> None:
        """Stop observing the scene."""
        if self._observer is not None and self.scene is not None:
            self.scene.RemoveObserver(self._observer)
        self._observer = None

    def cancel(self) -> None:
        """Kill the analysis (process tree) and remove its files."""
        self.detach()
        self.job.cancel()

    def load(
        self, *, iith_reference: str | os.PathLike[str] | None = None, degree: int | None = None
    ) -> AnalysisOutputs:
        """Show the finished analysis on the nodes it was started on (:meth:`AnalysisLogic.load_results`).

        Raises:
            InputError: the job did not finish, or its volume / segmentation was removed from the scene.
        """
        self.detach()
        if self.job.state != "finished":
            raise InputError(f"The analysis did not finish (state: {self.job.state})")
        volume, segmentation = self.nodes
        if volume is None or segmentation is None:
            raise InputError(
                "The volume or lesion segmentation this analysis was started on is no longer in the scene: "
                "its results were discarded"
            )
        return self.logic.load_results(
            self.job.result_dir, volume, segmentation, iith_reference=iith_reference, degree=degree
        )
