"""What the browser application does, without the browser: one patient in a Slicer MRML scene.

:class:`ViewerSession` holds the scene of ``radtyper view`` (the scene of trame-slicer's ``SlicerApp``, or any
scene made by :func:`RadTyperMRML.create_scene`) and performs every action of the page on it through the same
Qt-free logic as the Slicer modules (:class:`RadTyperMRML.lesions_logic.LesionsLogic`,
:class:`RadTyperMRML.analysis_logic.AnalysisLogic`): load a patient (files, the demo, a cohort patient),
list the lesions with their QC flags and longest diameter, jump to a lesion, add a lesion at a clicked
point (RadTyper's seeded segmentation), run the analysis in a background process (progress, cancel), show
one lesion's SPHARM reconstruction at any degree (the degrees are evaluated once from the fitted
coefficients and stored in the model; the slider only swaps vertex arrays: no refit) and its margin shells,
the patient's heterogeneity and subtype, record the review (accept / flag / comment, a CSV beside the
cohort) and save the edited lesions as a NEW ``.seg.nrrd`` (atomically; the user's files are never written).

It imports no trame and no Qt: plain pytest with the ``slicer-core`` wheel tests all of it.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from RadTyperLib.errors import InputError, RadTyperError

#: Columns of the review CSV (one row per reviewed lesion).
REVIEW_COLUMNS: tuple[str, ...] = ("patient", "lesion", "status", "comment", "updated_utc")
#: Review states of a lesion.
REVIEW_STATUSES: tuple[str, ...] = ("unreviewed", "accepted", "flagged")
#: File name of the review CSV in the output folder.
REVIEW_CSV = "radtyper_review.csv"
DEMO_PATIENT = "RadTyper demo"
#: Node attribute marking the nodes of the loaded patient (removed when another patient is opened).
PATIENT_ATTRIBUTE = "RadTyperWeb.Patient"


# --- inputs -----------------------------------------------------------------------------------------------
@dataclass
class PatientSource:
    """The files of one patient (absolute paths; None = not given)."""

    patient: str
    image: Path | None = None
    lesions: Path | None = None
    parenchyma: Path | None = None
    sites: Path | None = None
    features: Path | None = None
    modality: str = "auto"
    demo: bool = False

    @classmethod
    def demo_patient(cls) -> PatientSource:
        return cls(patient=DEMO_PATIENT, demo=True)


def read_cohort(folder: str | os.PathLike[str]) -> list[PatientSource]:
    """The patients of a ``radtyper cohort extract`` output folder (its ``manifest.csv``), in manifest order.

    Each patient's feature rows (``patients/<patient>.csv``) are attached when that patient was computed.

    Raises:
        InputError: not a folder, or no ``manifest.csv`` in it.
    """
    from RadTyperLib.cohort import PATIENTS_DIR, read_manifest

    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{d}: cohort folder not found")
    manifest = d / "manifest.csv"
    if not manifest.is_file():
        raise InputError(
            f"{d}: no manifest.csv; give the output folder of 'radtyper cohort extract' (which writes it)"
        )
    out = []
    for case in read_manifest(manifest):
        features = d / PATIENTS_DIR / f"{case.file_stem}.csv"
        out.append(
            PatientSource(
                patient=case.patient,
                image=Path(case.image),
                lesions=Path(case.lesions),
                parenchyma=Path(case.parenchyma) if case.parenchyma else None,
                sites=Path(case.sites) if case.sites else None,
                features=features if features.is_file() else None,
                modality=case.modality or "auto",
            )
        )
    return out


# --- review CSV -------------------------------------------------------------------------------------------
class ReviewStore:
    """Accept / flag / comment per lesion, kept in one CSV (:data:`REVIEW_COLUMNS`), rewritten atomically."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._rows: dict[tuple[str, str], dict[str, str]] = {}
        if self.path.is_file():
            with self.path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                missing = [c for c in REVIEW_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise InputError(
                        f"{self.path}: not a RadTyper review file (missing {', '.join(missing)})"
                    )
                for row in reader:
                    self._rows[(row["patient"], row["lesion"])] = {c: row[c] or "" for c in REVIEW_COLUMNS}

    def of_patient(self, patient: str) -> dict[str, dict[str, str]]:
        """``{lesion: row}`` of one patient."""
        return {lesion: dict(row) for (p, lesion), row in self._rows.items() if p == patient}

    def set(
        self, patient: str, lesion: str, *, status: str | None = None, comment: str | None = None
    ) -> dict:
        """Record a lesion's status and/or comment and rewrite the CSV; return the row."""
        if status is not None and status not in REVIEW_STATUSES:
            raise InputError(f"review status must be one of {', '.join(REVIEW_STATUSES)}, got '{status}'")
        row = self._rows.get(
            (patient, lesion),
            {"patient": patient, "lesion": lesion, "status": "unreviewed", "comment": "", "updated_utc": ""},
        )
        row = dict(row)
        if status is not None:
            row["status"] = status
        if comment is not None:
            row["comment"] = " ".join(str(comment).split())  # one line in the CSV
        row["updated_utc"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._rows[(patient, lesion)] = row
        self._write()
        return row

    def _write(self) -> None:
        from RadTyperLib.io import atomic_path

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(REVIEW_COLUMNS))
            writer.writeheader()
            for key in sorted(self._rows):
                writer.writerow(self._rows[key])


# --- the session ------------------------------------------------------------------------------------------
@dataclass
class SubtypeView:
    """The subtype shown on the page."""

    subtype: str
    probabilities: dict[str, float]
    provenance: str
    model: str
    domain: str  # "in domain (score …)", "OUT OF DOMAIN (score …)" or "domain: not checked"
    in_domain: bool | None = None


@dataclass
class AnalysisView:
    """The patient-level results shown on the page."""

    heterogeneity_lines: list[str] = field(default_factory=list)
    recovery: list[dict[str, float]] = field(default_factory=list)  # k, ath_mean, mtd_mean (%)
    subtype: SubtypeView | None = None
    subtype_error: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    qc_lines: list[str] = field(default_factory=list)  # lesions not analysed, then QC warnings, one line each
    source: str = ""  # "computed" or "features file"


class ViewerSession:
    """One patient in a scene, and every action of the browser page on it (see the module docstring)."""

    def __init__(
        self, scene: Any, out_dir: str | os.PathLike[str], *, review_csv: Path | None = None
    ) -> None:
        from RadTyperMRML.analysis_logic import AnalysisLogic
        from RadTyperMRML.lesions_logic import LesionsLogic

        self.scene = scene
        self.out_dir = Path(out_dir)
        self.lesions_logic = LesionsLogic()
        self.analysis_logic = AnalysisLogic()
        self.review = ReviewStore(review_csv or self.out_dir / REVIEW_CSV)
        self.source: PatientSource | None = None
        self.volume: Any = None
        self.segmentation: Any = None
        self.parenchyma: Any = None
        self.job: Any = None
        self.analysis = AnalysisView()
        self.selected: str | None = None  # lesion name
        self.degree = 15
        self.shells: dict[str, bool] = dict.fromkeys(
            ("TC", "TIM", "PM5", "PM10"), False
        )  # toggled by the user

    # --- loading ----------------------------------------------------------------------------------------
    @property
    def patient_id(self) -> str:
        return self.source.patient if self.source is not None else ""

    def load(self, source: PatientSource) -> None:
        """Load a patient into the scene, replacing the previous one (only once the new one has loaded).

        Raises:
            InputError / LesionError: a file is missing or unreadable, the segmentation is on another grid,
                overlapping or empty segments (the message names the file and the problem). The scene is
                then unchanged.
        """
        import SimpleITK as sitk

        from RadTyperLib.patient import Lesion
        from RadTyperMRML.bridge import labels_to_segmentation, sitk_to_volume

        if source.demo:
            from RadTyperMRML.demo_data import demo_patient

            patient = demo_patient()
        else:
            from RadTyperLib.io import load_patient

            if source.image is None or source.lesions is None:
                raise InputError("give an image and a lesion segmentation")
            patient = load_patient(
                source.image,
                source.lesions,
                parenchyma=source.parenchyma,
                sites=source.sites,
                patient_id=source.patient,
                modality=source.modality,
            )
        features = self._read_features(source, patient) if source.features is not None else None
        self.cancel_compute()
        self.close()
        scene = self.scene
        volume = sitk_to_volume(patient.image, scene, f"{patient.patient_id} image")
        segmentation = labels_to_segmentation(
            patient.labels,
            patient.lesions,
            scene,
            f"{patient.patient_id} lesions",
            reference_volume_node=volume,
        )
        parenchyma = None
        if patient.parenchyma is not None:
            parenchyma = labels_to_segmentation(
                sitk.Cast(patient.parenchyma > 0, sitk.sitkUInt8),
                [Lesion(1, "parenchyma", "unspecified", (0.55, 0.75, 0.95))],
                scene,
                f"{patient.patient_id} parenchyma",
                reference_volume_node=volume,
            )
            self.lesions_logic.set_parenchyma(segmentation, parenchyma)
            display = parenchyma.GetDisplayNode()
            if display is not None:
                display.SetVisibility(False)  # the margin shells use it; the reviewer looks at lesions
        for node in (volume, segmentation, parenchyma):
            if node is not None:
                node.SetAttribute(PATIENT_ATTRIBUTE, patient.patient_id)
        self.source, self.volume, self.segmentation, self.parenchyma = (
            source,
            volume,
            segmentation,
            parenchyma,
        )
        self.modality = patient.modality
        self.analysis = AnalysisView()
        self.selected = None
        if features is not None:
            self.analysis = self.analyse_features(features)

    def _read_features(self, source: PatientSource, patient: Any) -> Any:
        from RadTyperLib.io import read_feature_table

        table = read_feature_table(source.features)
        if "lesion" not in table.columns:
            raise InputError(f"{source.features}: no 'lesion' column; give a table of 'radtyper features'")
        if "patient" in table.columns and table["patient"].astype(str).nunique() > 1:
            table = table[table["patient"].astype(str) == str(source.patient)]
            if table.empty:
                raise InputError(f"{source.features}: no rows of patient '{source.patient}'")
        names = {les.name for les in patient.lesions}
        unknown = sorted(set(table["lesion"].astype(str)) - names)
        if unknown:
            raise InputError(
                f"{source.features}: lesion(s) {', '.join(unknown[:5])} are not in {source.lesions or 'the lesions'}"
            )
        return table.reset_index(drop=True)

    def close(self) -> None:
        """Remove the loaded patient and every node made for it from the scene."""
        if self.segmentation is not None:
            from RadTyperMRML.analysis_logic import ROLE_ATTRIBUTE, SOURCE_REFERENCE

            source_id = self.segmentation.GetID()
            doomed = []
            for i in range(self.scene.GetNumberOfNodes()):
                node = self.scene.GetNthNode(i)
                if node is None:
                    continue
                if node.GetAttribute(PATIENT_ATTRIBUTE) is not None or (
                    node.GetAttribute(ROLE_ATTRIBUTE) is not None
                    and node.GetNodeReferenceID(SOURCE_REFERENCE) == source_id
                ):
                    doomed.append(node)
            for node in doomed:
                self.scene.RemoveNode(node)
        self.source = self.volume = self.segmentation = self.parenchyma = None
        self.analysis = AnalysisView()

    def require_patient(self) -> None:
        if self.volume is None or self.segmentation is None:
            raise InputError("open a patient first")

    # --- lesions ----------------------------------------------------------------------------------------
    def lesion_rows(self) -> list[dict[str, Any]]:
        """One dict per lesion: id, name, site, volume_ml, diameter_mm (``lesion_feret_mm``), qc, review, comment."""
        from RadTyperLib.measures import lesion_measures
        from RadTyperMRML.bridge import segment_on_volume_grid

        self.require_patient()
        spacing = self.volume.GetSpacing()
        reviews = self.review.of_patient(self.patient_id)
        out = []
        for row in self.lesions_logic.lesion_rows(self.volume, self.segmentation):
            diameter = float("nan")
            if not row.problem or row.voxels:
                _box, mask, _n, _outside = segment_on_volume_grid(
                    self.segmentation, row.segment_id, self.volume
                )
                if mask is not None:
                    diameter = lesion_measures(mask, spacing)["lesion_feret_mm"]
            review = reviews.get(row.name, {})
            out.append(
                {
                    "id": row.segment_id,
                    "name": row.name,
                    "site": row.site,
                    "volume_ml": _round(row.volume_mm3 / 1000.0, 3),
                    "diameter_mm": _round(diameter, 1),
                    "qc": row.qc_text(),
                    "flags": row.flags + (["problem"] if row.problem else []),
                    "color": "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in row.color)),
                    "review": review.get("status", "unreviewed"),
                    "comment": review.get("comment", ""),
                }
            )
        return out

    def segment_id_of(self, lesion: str) -> str:
        segmentation = self.segmentation.GetSegmentation()
        sid = segmentation.GetSegmentIdBySegmentName(lesion)
        if not sid:
            raise InputError(f"lesion '{lesion}' is not in the segmentation")
        return sid

    def jump_to(self, lesion: str) -> tuple[float, ...]:
        """Centre every slice view on a lesion and select it; return its centre (RAS mm)."""
        self.require_patient()
        centre = self.lesions_logic.jump_to_lesion(self.volume, self.segmentation, self.segment_id_of(lesion))
        self.select(lesion)
        return centre

    def add_lesion_at(self, point_ras: Sequence[float], *, site: str | None = None) -> Any:
        """One-click lesion: RadTyper's seeded segmentation at a point (RAS mm) → a new segment.

        Raises LesionError when there is no lesion at the point (air, inside a lesion, too small).
        """
        self.require_patient()
        return self.lesions_logic.add_lesion_from_point(
            self.volume, self.segmentation, point_ras, site=site, modality=getattr(self, "modality", "auto")
        )

    # --- review -----------------------------------------------------------------------------------------
    def set_review(self, lesion: str, *, status: str | None = None, comment: str | None = None) -> dict:
        """Accept / flag / comment a lesion (written to the review CSV at once)."""
        self.require_patient()
        self.segment_id_of(lesion)
        return self.review.set(self.patient_id, lesion, status=status, comment=comment)

    # --- save -------------------------------------------------------------------------------------------
    def default_save_path(self) -> Path:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.patient_id) or "lesions"
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return self.out_dir / f"{stem}_lesions_reviewed_{stamp}.seg.nrrd"

    def save_segmentation(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the lesions (as edited) to a NEW ``.seg.nrrd``, atomically; return its path.

        Raises:
            InputError: the path exists already (nothing is overwritten), is one of the patient's input files,
                or does not end in ``.seg.nrrd``; overlapping or empty segments.
        """
        from RadTyperLib.io import write_seg_nrrd
        from RadTyperMRML.bridge import segmentation_to_labels

        self.require_patient()
        p = Path(path) if path else self.default_save_path()
        if not p.name.endswith(".seg.nrrd"):
            raise InputError(f"{p}: the lesions are saved as a Slicer segmentation, name it *.seg.nrrd")
        inputs = [self.source.image, self.source.lesions, self.source.parenchyma] if self.source else []
        if any(q is not None and _same_file(p, q) for q in inputs):
            raise InputError(f"{p}: is an input file of this patient; RadTyper never overwrites your files")
        if p.exists():
            raise InputError(f"{p}: exists already; choose a new file name (nothing is overwritten)")
        labels, lesions = segmentation_to_labels(self.segmentation, self.volume)
        p.parent.mkdir(parents=True, exist_ok=True)
        return write_seg_nrrd(p, labels, lesions)

    # --- compute ----------------------------------------------------------------------------------------
    def start_compute(self, *, radiomics: bool = True) -> Any:
        """Start the analysis of every lesion in a background process (poll :meth:`poll_compute`)."""
        from RadTyperLib.features import FeatureSettings

        self.require_patient()
        if self.job is not None and self.job.state == "running":
            raise InputError("an analysis is running already")
        self.job = self.analysis_logic.start_job(
            self.volume,
            self.segmentation,
            self.parenchyma,
            settings=FeatureSettings(radiomics=radiomics),
            modality=getattr(self, "modality", "auto"),
        )
        return self.job

    def poll_compute(self) -> str:
        """The job's state; when it has just finished, its results are loaded into the scene."""
        if self.job is None:
            return "idle"
        state = self.job.poll()
        if state == "finished":
            job, self.job = self.job, None
            try:
                self._load_results(job.result_dir)
            finally:
                job.cleanup()
        return state

    def cancel_compute(self) -> bool:
        """Stop a running analysis (its work folder is removed; nothing is written). True if one ran."""
        if self.job is None or self.job.state not in ("created", "running"):
            return False
        self.job.cancel()
        return True

    def _load_results(self, result_dir: Path) -> None:
        outputs = self.analysis_logic.load_results(result_dir, self.volume, self.segmentation)
        view = AnalysisView(
            errors=dict(outputs.errors),
            qc_lines=outputs.error_lines() + outputs.qc_lines(),
            source="computed",
        )
        view.heterogeneity_lines = self.analysis_logic.heterogeneity_summary(outputs.patient_table)
        view.recovery = _recovery_points(outputs.heterogeneity.get("recovery_curve") or [])
        try:
            view.subtype = self._predict_subtype(outputs.lesion_table)
        except RadTyperError as exc:
            view.subtype_error = str(exc)
        self.analysis = view
        names = list(self.analysis_logic.reconstruction_models(self.segmentation))
        if self.selected not in names:
            self.selected = names[0] if names else None
        self._show_selected()

    def analyse_features(self, features: Any) -> AnalysisView:
        """Heterogeneity and subtype from a feature table (``--features`` or the cohort's rows)."""
        from RadTyperLib.heterogeneity.report import heterogeneity_report
        from RadTyperMRML.analysis_logic import error_lines, failed_lesions, qc_lines
        from RadTyperMRML.bridge import dataframe_to_table

        failed = failed_lesions(features)
        view = AnalysisView(
            source="features file", errors=failed, qc_lines=error_lines(failed) + qc_lines(features)
        )
        ok = features
        if "qc_error" in features.columns:
            ok = features[features["qc_error"].fillna("").astype(str).str.strip() == ""]
        try:
            with tempfile.TemporaryDirectory(prefix="radtyper-view-") as tmp:
                report = heterogeneity_report(ok, tmp)
            record = next(iter(report.get("patients", {}).values()), {})
            mtd, ath = record.get("max_tumoral_divergence"), record.get("average_tumoral_heterogeneity")
            if mtd is not None and ath is not None:
                view.heterogeneity_lines = [
                    f"Maximal tumoral divergence (MTD) {mtd:.3f}; average tumoral heterogeneity (ATH) {ath:.3f} "
                    f"over {record.get('n_lesions')} lesions."
                ]
            view.recovery = _recovery_points(record.get("recovery_curve") or [])
        except RadTyperError as exc:
            view.heterogeneity_lines = [f"Heterogeneity: {exc}"]
        table = dataframe_to_table(features, self.scene, f"{self.patient_id} features (file)")
        table.SetAttribute(PATIENT_ATTRIBUTE, self.patient_id)
        try:
            view.subtype = self._predict_subtype(table)
        except RadTyperError as exc:
            view.subtype_error = str(exc)
        return view

    def _predict_subtype(self, lesion_table: Any) -> SubtypeView:
        from RadTyperMRML.bridge import table_to_dataframe

        bundle = self.analysis_logic.default_bundle_path()
        out = self.analysis_logic.predict_subtype(bundle, lesion_table, segmentation_node=self.segmentation)
        frame = table_to_dataframe(out.table)
        row = frame.iloc[0] if len(frame) else {}
        in_domain, score = _domain(row)
        if in_domain is None:
            domain = "domain: not checked"
        else:
            text = f" (score {score:.3g})" if score is not None else ""
            domain = (
                "in domain" if in_domain else "OUT OF DOMAIN: the model was not made for such lesions"
            ) + text
        return SubtypeView(
            subtype=out.subtype,
            probabilities=dict(sorted(out.probabilities.items(), key=lambda kv: -kv[1])),
            provenance=out.provenance,
            model=Path(str(bundle)).name,
            domain=domain,
            in_domain=in_domain,
        )

    # --- reconstruction and shells ----------------------------------------------------------------------
    def select(self, lesion: str | None) -> None:
        """Make ``lesion`` the lesion shown in 3-D (reconstruction + shells)."""
        self.selected = lesion
        self._show_selected()

    def max_degree(self) -> int:
        node = self.analysis_logic.reconstruction_models(self.segmentation).get(self.selected or "")
        return self.analysis_logic.model_degrees(node) if node is not None else 0

    def set_degree(self, degree: int) -> int:
        """Show the selected lesion's reconstruction at ``degree`` (swaps stored vertex arrays; no refit).

        Returns the degree shown (clipped to what was analysed), 0 when nothing is computed yet.
        """
        from vtk.util import numpy_support

        from RadTyperMRML.analysis_logic import DEGREE_ARRAY, DEGREE_ATTRIBUTE
        from RadTyperMRML.bridge import _vertex_normals

        if not 1 <= int(degree) <= 15:
            raise InputError(f"The SPHARM degree must be 1 … 15, got {degree}")
        self.degree = int(degree)
        node = self.analysis_logic.reconstruction_models(self.segmentation).get(self.selected or "")
        if node is None:
            return 0
        available = self.analysis_logic.model_degrees(node)
        shown = min(self.degree, available)
        if node.GetAttribute(DEGREE_ATTRIBUTE) == str(shown):
            return shown
        poly = node.GetPolyData()
        ras = numpy_support.vtk_to_numpy(poly.GetPointData().GetArray(DEGREE_ARRAY.format(shown)))
        faces = numpy_support.vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).reshape(-1, 3)
        poly.GetPoints().SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(ras), deep=True))
        normals = numpy_support.numpy_to_vtk(_vertex_normals(ras, faces), deep=True)
        normals.SetName("Normals")
        poly.GetPointData().SetNormals(normals)
        poly.GetPoints().Modified()
        poly.Modified()
        node.SetAttribute(DEGREE_ATTRIBUTE, str(shown))
        return shown

    def set_shell(self, shell: str, visible: bool) -> int:
        """Show or hide one margin shell (TC, TIM, PM5, PM10) of the selected lesion."""
        from RadTyperMRML.analysis_logic import SHELL_NAMES

        if shell not in SHELL_NAMES:
            raise InputError(f"Unknown shell '{shell}'; use one of {', '.join(SHELL_NAMES)}")
        self.shells[shell] = bool(visible)
        if self.segmentation is None or self.selected is None:
            return 0
        return self.analysis_logic.set_shell_visibility(self.segmentation, shell, visible, [self.selected])

    def _show_selected(self) -> None:
        """Only the selected lesion's reconstruction and shells are shown (3-D and slice outlines)."""
        from RadTyperMRML.analysis_logic import SHELL_NAMES

        if self.segmentation is None:
            return
        models = self.analysis_logic.reconstruction_models(self.segmentation)
        for name, node in models.items():
            display = node.GetDisplayNode()
            if display is not None:
                display.SetVisibility(name == self.selected)
        for shell in SHELL_NAMES:
            self.analysis_logic.set_shell_visibility(self.segmentation, shell, False)
            if self.selected is not None and self.shells.get(shell):
                self.analysis_logic.set_shell_visibility(self.segmentation, shell, True, [self.selected])
        if self.selected in models:
            self.set_degree(self.degree)

    def reconstruction_node(self) -> Any:
        return self.analysis_logic.reconstruction_models(self.segmentation).get(self.selected or "")

    def shells_node(self) -> Any:
        return self.analysis_logic.output_node("shells", self.segmentation)

    def state_summary(self) -> dict[str, Any]:
        """JSON-able summary (tests, debugging)."""
        return json.loads(
            json.dumps(
                {
                    "patient": self.patient_id,
                    "selected": self.selected,
                    "degree": self.degree,
                    "shells": self.shells,
                    "analysis": self.analysis.__dict__ if self.analysis else None,
                },
                default=lambda o: o.__dict__,
            )
        )


# --- helpers ----------------------------------------------------------------------------------------------
def _round(value: float, digits: int) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _recovery_points(curve: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    out = []
    for point in curve:
        try:
            out.append(
                {
                    "k": float(point["k"]),
                    "ath_mean": float(point["ath_mean"]),
                    "mtd_mean": float(point["mtd_mean"]),
                }
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _domain(row: Any) -> tuple[bool | None, float | None]:
    """(in_domain, domain_score) of a prediction row; (None, None) when the model does not check it."""
    try:
        keys = list(row.keys())
    except AttributeError:
        return None, None
    if "in_domain" not in keys:
        return None, None
    value = row["in_domain"]
    if isinstance(value, str):
        flag = value.strip().lower() in ("1", "true", "yes")
    else:
        try:
            if value is None or not np.isfinite(float(value)):
                return None, None
        except (TypeError, ValueError):
            return None, None
        flag = bool(value)
    score = None
    if "domain_score" in keys:
        try:
            score = float(row["domain_score"])
        except (TypeError, ValueError):
            score = None
    return flag, score
