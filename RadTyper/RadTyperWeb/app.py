"""The page of ``radtyper view``: trame-slicer's views and Segment Editor + RadTyper's review and analysis panel.

Every action is a call into :class:`RadTyperWeb.session.ViewerSession` (the same Qt-free MRML logic as the
Slicer modules); this module only builds the page and moves values between the session and the trame state.
Errors never stop the server: they are shown in the page (``#rt-error``) and printed on the console
(``radtyper view: error: …``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from RadTyperLib.errors import RadTyperError

from .plots import recovery_svg
from .session import REVIEW_STATUSES, PatientSource, ViewerSession

SHELLS = ("TC", "TIM", "PM5", "PM10")
SHELL_LABELS = {
    "TC": "TC (tumour core)",
    "TIM": "TIM (invasive margin)",
    "PM5": "PM5 (parenchyma 0-5 mm)",
    "PM10": "PM10 (parenchyma 5-10 mm)",
}
LAYOUT_ID = "RadTyper"


def log(message: str) -> None:
    """A console line of the server."""
    print(f"radtyper view: {message}", file=sys.stderr, flush=True)


class RadTyperViewApp:
    """The trame application (one scene, one patient at a time, several patients in cohort mode)."""

    def __init__(
        self,
        sources: Sequence[PatientSource],
        out_dir: str | Path,
        *,
        cohort: str | None = None,
        server: Any = None,
        initial_error: str = "",
    ) -> None:
        from trame.app import get_server
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        self.server = server or get_server(None, client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.state, self.ctrl = self.server.state, self.server.controller
        self.sources = list(sources)
        self.cohort = cohort
        self.slicer_app = SlicerApp()
        self.vtk_log = _quiet_vtk()
        register_rca_factories(
            self.slicer_app.view_manager,
            self.server,
            slice_view_ui_f=self._slice_gutter,
            three_d_view_ui_f=self._gutter,
            blur_fps=None,  # no slower refresh for views without the mouse over them (the slider is elsewhere)
        )
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict({LAYOUT_ID: _layout()})
        self.layout_manager.set_layout(LAYOUT_ID)
        self.session = ViewerSession(self.slicer_app.scene, out_dir)
        self._editor_logic = None
        self._refresh_pending = False
        self._job_task = None
        self._init_state(initial_error)
        self._build_ui()
        self._connect()
        self._install_click_observers()
        for view in self._views("3d"):
            # Translucent shells: plain alpha blending. Depth peeling draws nothing with multisampling on the
            # offscreen EGL window, and without it costs 3-4 × the frame time in software rendering.
            view.render_window().SetMultiSamples(0)
            view.renderer().SetUseDepthPeeling(False)
        if os.environ.get("RADTYPER_VIEW_TIMING"):
            self._trace_renders()

    # --- state ------------------------------------------------------------------------------------------
    def _init_state(self, initial_error: str) -> None:
        s = self.state
        s.trame__title = "RadTyper Web"
        s.rt_error = initial_error
        s.rt_info = ""
        s.rt_tab = "patients" if self.cohort else "lesions"
        s.rt_patients = [{"patient": p.patient, "computed": p.features is not None} for p in self.sources]
        s.rt_patient = ""
        s.rt_loading = False
        s.rt_lesions = []
        s.rt_n_lesions = 0
        s.rt_selected = ""
        s.rt_review_comment = ""
        s.rt_click_mode = False
        s.rt_save_path = ""
        s.rt_out_dir = str(self.session.out_dir)
        s.rt_review_csv = str(self.session.review.path)
        s.rt_radiomics = True
        s.rt_job = "idle"
        s.rt_progress = 0
        s.rt_progress_text = ""
        s.rt_degree = 15
        s.rt_max_degree = 15
        s.rt_degree_shown = 0
        s.rt_has_reconstruction = False
        for shell in SHELLS:
            s[f"rt_shell_{shell}"] = self.session.shells[shell]
        s.rt_heterogeneity = []
        s.rt_qc = []
        s.rt_recovery_svg = ""
        s.rt_subtype = None
        s.rt_subtype_error = ""
        s.rt_analysis_source = ""
        s.rt_open_image = ""
        s.rt_open_lesions = ""
        s.rt_open_parenchyma = ""
        s.rt_open_features = ""
        s.rt_render_count = 0

    # --- the page ---------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        from trame.ui.vuetify3 import VAppLayout
        from trame.widgets import html
        from trame.widgets import vuetify3 as v

        with VAppLayout(self.server, full_height=True, theme="dark") as self.ui:
            with v.VAppBar(density="compact"):
                v.VToolbarTitle("RadTyper Web", style="max-width: 160px;")
                html.Div(
                    "{{ rt_patient || 'no patient open' }}", id="rt-patient", classes="text-subtitle-1 mx-4"
                )
                v.VProgressCircular(v_if="rt_loading || trame__busy", indeterminate=True, size=18, width=2)
                v.VSpacer()
                html.Div(
                    "Research software: not for clinical use",
                    classes="text-caption text-grey mr-4",
                )
            with v.VNavigationDrawer(permanent=True, width=600, location="left"):
                with html.Div(classes="pa-2"):
                    v.VAlert(
                        v_if="rt_error",
                        type="error",
                        density="compact",
                        closable=True,
                        text=("rt_error",),
                        id="rt-error",
                        click_close="rt_error = ''",
                        classes="mb-2",
                    )
                    v.VAlert(
                        v_if="rt_info",
                        type="info",
                        density="compact",
                        closable=True,
                        text=("rt_info",),
                        id="rt-info",
                        click_close="rt_info = ''",
                        classes="mb-2",
                    )
                with v.VTabs(v_model=("rt_tab",), density="compact", grow=True):
                    v.VTab("Patients" if self.cohort else "Open", value="patients", id="rt-tab-patients")
                    v.VTab("Lesions", value="lesions", id="rt-tab-lesions")
                    v.VTab("Edit", value="edit", id="rt-tab-edit")
                    v.VTab("Analysis", value="analysis", id="rt-tab-analysis")
                with v.VWindow(v_model=("rt_tab",)):
                    with v.VWindowItem(value="patients"):
                        self._patients_panel(html, v)
                    with v.VWindowItem(value="lesions"):
                        self._lesions_panel(html, v)
                    with v.VWindowItem(value="edit", eager=True):
                        self._edit_panel(html, v)
                    with v.VWindowItem(value="analysis"):
                        self._analysis_panel(html, v)
            with (
                v.VMain(),
                html.Div(classes="d-flex flex-row fill-height", style="height: calc(100vh - 48px);"),
            ):
                self.layout_manager.initialize_layout_grid(self.ui)

    def _patients_panel(self, html: Any, v: Any) -> None:
        with html.Div(classes="pa-3"):
            if self.cohort:
                html.Div(f"Cohort {self.cohort}", classes="text-caption mb-2")
                with v.VList(density="compact", id="rt-patient-list"):
                    with v.VListItem(
                        v_for="p in rt_patients",
                        key="p.patient",
                        classes="rt-patient-item",
                        active=("p.patient === rt_patient",),
                        click=(self.on_open_patient, "[p.patient]"),
                    ):
                        v.VListItemTitle("{{ p.patient }}")
                        v.VListItemSubtitle(
                            "{{ p.computed ? 'features computed' : 'features not computed yet' }}"
                        )
            else:
                html.Div("Open a patient (files on the server's disk)", classes="text-subtitle-2 mb-2")
                v.VTextField(
                    label="image (NRRD, NIfTI, MHA)",
                    v_model=("rt_open_image",),
                    density="compact",
                    id="rt-open-image",
                )
                v.VTextField(
                    label="lesions (label map or .seg.nrrd)",
                    v_model=("rt_open_lesions",),
                    density="compact",
                    id="rt-open-lesions",
                )
                v.VTextField(
                    label="parenchyma mask (optional)", v_model=("rt_open_parenchyma",), density="compact"
                )
                v.VTextField(
                    label="features CSV (optional)", v_model=("rt_open_features",), density="compact"
                )
                v.VBtn(
                    "Open", click=self.on_open_files, color="primary", id="rt-open", disabled=("rt_loading",)
                )
                html.Div(
                    "Opening a patient closes the current one (unsaved edits are lost; your files are never changed).",
                    classes="text-caption mt-2",
                )

    def _lesions_panel(self, html: Any, v: Any) -> None:
        with html.Div(classes="pa-2"):
            html.Div(
                "{{ rt_n_lesions }} lesion(s); click a row to go to the lesion",
                classes="text-caption mb-1",
                id="rt-lesion-count",
            )
            with v.VTable(density="compact", fixed_header=True, height="340px", id="rt-lesion-table"):
                with html.Thead(), html.Tr():
                    for title in ("", "lesion", "site", "mL", "Ø mm", "QC flags", "review"):
                        html.Th(title)
                with html.Tbody():
                    with html.Tr(
                        v_for="row in rt_lesions",
                        key="row.id",
                        classes=(
                            "['rt-lesion-row', row.name === rt_selected ? 'bg-blue-grey-darken-2' : '']",
                        ),
                        style="cursor: pointer;",
                        click=(self.on_select_lesion, "[row.name]"),
                    ):
                        with html.Td():
                            html.Span(
                                style=(
                                    "{display: 'inline-block', width: '12px', height: '12px', "
                                    "borderRadius: '6px', background: row.color}",
                                )
                            )
                        html.Td("{{ row.name }}", classes="rt-lesion-name")
                        html.Td("{{ row.site }}")
                        html.Td("{{ row.volume_ml === null ? '—' : row.volume_ml.toFixed(2) }}")
                        html.Td("{{ row.diameter_mm === null ? '—' : row.diameter_mm.toFixed(1) }}")
                        html.Td("{{ row.qc }}", classes="text-warning text-caption")
                        html.Td(
                            "{{ row.review }}",
                            classes=(
                                "row.review === 'flagged' ? 'text-error' : "
                                "row.review === 'accepted' ? 'text-success' : ''",
                            ),
                        )
            with html.Div(v_if="rt_selected", classes="mt-2", id="rt-review"):
                html.Div("Review of {{ rt_selected }}", classes="text-subtitle-2")
                with html.Div(classes="d-flex ga-2 my-1"):
                    v.VBtn(
                        "Accept",
                        color="success",
                        size="small",
                        id="rt-accept",
                        click=(self.on_review, "['accepted']"),
                    )
                    v.VBtn(
                        "Flag",
                        color="error",
                        size="small",
                        id="rt-flag",
                        click=(self.on_review, "['flagged']"),
                    )
                    v.VBtn("Reset", size="small", click=(self.on_review, "['unreviewed']"))
                v.VTextField(
                    label="comment",
                    v_model=("rt_review_comment",),
                    density="compact",
                    id="rt-comment",
                    hide_details=True,
                    append_inner_icon="mdi-content-save",
                    click_append_inner=(self.on_comment, "[rt_review_comment]"),
                    keyup_enter=(self.on_comment, "[rt_review_comment]"),
                )
                v.VBtn(
                    "Save comment",
                    size="small",
                    variant="tonal",
                    classes="mt-1",
                    id="rt-comment-save",
                    click=(self.on_comment, "[rt_review_comment]"),
                )
                html.Div("saved in {{ rt_review_csv }}", classes="text-caption")
            v.VDivider(classes="my-2")
            v.VSwitch(
                label="One click adds a lesion: click its centre in a slice view (seeded segmentation)",
                v_model=("rt_click_mode",),
                density="compact",
                color="primary",
                hide_details=True,
                id="rt-click-mode",
            )
            v.VDivider(classes="my-2")
            html.Div("Save the lesions (as edited) as a NEW Slicer segmentation", classes="text-subtitle-2")
            with html.Div(classes="d-flex ga-2 align-center"):
                v.VTextField(
                    label="new file (.seg.nrrd)",
                    v_model=("rt_save_path",),
                    density="compact",
                    hide_details=True,
                    id="rt-save-path",
                )
                v.VBtn("Save", click=self.on_save, color="primary", id="rt-save", disabled=("!rt_patient",))

    def _edit_panel(self, html: Any, v: Any) -> None:
        from trame_slicer.app.logic.segmentation import SegmentEditorLogic
        from trame_slicer.app.ui import SegmentEditorUI

        with html.Div(style="height: calc(100vh - 170px);", classes="d-flex flex-column"):
            html.Div(
                "Segment Editor (trame-slicer): paint, erase, scissors, draw, threshold, islands, smoothing, "
                "logical operators, undo / redo. Edits change the lesions in this page only, until you Save.",
                classes="text-caption pa-2",
            )
            ui = SegmentEditorUI()
            with html.Div(classes="d-flex justify-center"):
                ui.build_undo_redo_buttons()
        self._editor_logic = SegmentEditorLogic(self.server, self.slicer_app)
        self._editor_logic.set_ui(ui)

    def _analysis_panel(self, html: Any, v: Any) -> None:
        with html.Div(classes="pa-3"):
            with html.Div(classes="d-flex ga-2 align-center"):
                v.VBtn(
                    "Compute",
                    color="primary",
                    click=self.on_compute,
                    id="rt-compute",
                    disabled=("!rt_patient || rt_job === 'running'",),
                )
                v.VBtn("Cancel", click=self.on_cancel, id="rt-cancel", disabled=("rt_job !== 'running'",))
                v.VCheckbox(
                    label="radiomics (pyradiomics)",
                    v_model=("rt_radiomics",),
                    id="rt-radiomics",
                    density="compact",
                    hide_details=True,
                )
            v.VProgressLinear(
                model_value=("rt_progress",), height=14, color="primary", id="rt-progress", classes="my-1"
            )
            html.Div("{{ rt_progress_text }}", classes="text-caption", id="rt-progress-text")
            v.VDivider(classes="my-2")
            html.Div(
                "SPHARM reconstruction of {{ rt_selected || '(select a lesion)' }}", classes="text-subtitle-2"
            )
            html.Div(
                "Compute first: the reconstructions come from the fitted SPHARM coefficients.",
                v_if="!rt_has_reconstruction",
                classes="text-caption",
            )
            with html.Div(id="rt-degree-box"):
                v.VSlider(
                    v_model=("rt_degree",),
                    min=1,
                    max=("rt_max_degree",),
                    step=1,
                    show_ticks="always",
                    thumb_label="always",
                    label="degree L",
                    disabled=("!rt_has_reconstruction",),
                    hide_details=True,
                    classes="mt-6",
                )
            html.Div("shown: degree {{ rt_degree_shown }}", classes="text-caption", id="rt-degree-shown")
            with html.Div(classes="d-flex flex-wrap"):
                for shell in SHELLS:
                    v.VCheckbox(
                        label=SHELL_LABELS[shell],
                        v_model=(f"rt_shell_{shell}",),
                        density="compact",
                        hide_details=True,
                        id=f"rt-shell-{shell}",
                        disabled=("!rt_has_reconstruction",),
                        style="flex: 0 0 50%;",
                    )
            v.VDivider(classes="my-2")
            html.Div("Patient heterogeneity (Henry et al.)", classes="text-subtitle-2")
            html.Div(
                "{{ line }}",
                v_for="line in rt_heterogeneity",
                key="line",
                classes="text-body-2",
                id="rt-heterogeneity",
            )
            html.Div(v_html=("rt_recovery_svg",), classes="my-1", id="rt-recovery")
            with html.Div(v_if="rt_qc.length", id="rt-qc"):
                html.Div("Quality control", classes="text-subtitle-2")
                html.Div("{{ line }}", v_for="line in rt_qc", key="line", classes="text-warning text-body-2")
            v.VDivider(classes="my-2")
            html.Div("Imaging subtype", classes="text-subtitle-2")
            html.Div("{{ rt_subtype_error }}", v_if="rt_subtype_error", classes="text-error text-body-2")
            with html.Div(v_if="rt_subtype", id="rt-subtype"):
                html.Div(
                    "Subtype {{ rt_subtype.subtype }} (p = {{ rt_subtype.probabilities[rt_subtype.subtype].toFixed(2) }})",
                    classes="text-h6",
                    id="rt-subtype-name",
                )
                with html.Div(
                    v_for="(p, name) in rt_subtype.probabilities", key="name", classes="d-flex align-center"
                ):
                    html.Div("{{ name }}", style="width: 40px;")
                    v.VProgressLinear(
                        model_value=("100 * p",), height=10, color="teal", style="max-width: 260px;"
                    )
                    html.Div("{{ p.toFixed(3) }}", classes="ml-2 text-caption")
                html.Div(
                    "{{ rt_subtype.domain }}",
                    classes=(
                        "rt_subtype.in_domain === false ? 'text-error font-weight-bold' : 'text-caption'",
                    ),
                    id="rt-domain",
                )
                html.Div(
                    "model: {{ rt_subtype.model }} (from {{ rt_analysis_source }})", classes="text-caption"
                )
                with v.VExpansionPanels(classes="mt-1"), v.VExpansionPanel(title="Provenance of the model"):
                    with v.VExpansionPanelText():
                        html.Div(
                            "{{ rt_subtype.provenance }}",
                            classes="text-caption",
                            style="white-space: pre-wrap;",
                        )

    # --- view gutters (test ids on each view) -------------------------------------------------------------
    @staticmethod
    def _gutter(server: Any, view_id: str, view: Any) -> None:
        from trame.widgets import html
        from trame_slicer.app.ui import create_vertical_view_gutter_ui

        create_vertical_view_gutter_ui(server, view_id, view)
        html.Div(id=f"rt-view-{view.get_singleton_tag()}", classes="rt-view-marker", style="display: none;")

    @staticmethod
    def _slice_gutter(server: Any, view_id: str, view: Any) -> None:
        from trame.widgets import html
        from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui

        create_vertical_slice_view_gutter_ui(server, view_id, view)
        html.Div(id=f"rt-view-{view.get_singleton_tag()}", classes="rt-view-marker", style="display: none;")

    # --- wiring -----------------------------------------------------------------------------------------
    def _connect(self) -> None:
        self.state.change("rt_degree")(self.on_degree)
        for shell in SHELLS:
            self.state.change(f"rt_shell_{shell}")(self._shell_handler(shell))
        self.ctrl.on_client_exited.add(self.on_client_exited)
        self.ctrl.on_client_connected.add(self.on_client_connected)
        self.server.add_protocol_to_configure(self._watch_connections)
        editor = self.slicer_app.segmentation_editor
        editor.segmentation_modified.connect(self._schedule_refresh)

    def _shell_handler(self, shell: str):
        def handler(**kwargs: Any) -> None:
            self.on_shell(shell, bool(kwargs.get(f"rt_shell_{shell}")))

        return handler

    def _views(self, kind: str) -> list[Any]:
        vm = self.slicer_app.view_manager
        return vm.get_slice_views() if kind == "slice" else vm.get_threed_views()

    def _render_all(self) -> None:
        for view in self._views("slice") + self._views("3d"):
            view.schedule_render()

    def _error(self, message: str) -> None:
        log(f"error: {message}")
        self.state.rt_error = message

    def _info(self, message: str) -> None:
        log(message)
        self.state.rt_info = message

    # --- loading ----------------------------------------------------------------------------------------
    def load(self, source: PatientSource) -> bool:
        """Open a patient; on failure show why and keep the current one. True when it opened."""
        t0 = time.perf_counter()
        with self.state:
            self.state.rt_loading = True
        try:
            self.session.load(source)
        except RadTyperError as exc:
            with self.state:
                self.state.rt_loading = False
                self._error(f"patient '{source.patient}' not opened: {exc}")
            return False
        editor = self.slicer_app.segmentation_editor
        editor.deactivate_effect()
        editor.set_active_segmentation(self.session.segmentation, self.session.volume)
        editor.set_surface_representation_enabled(True)
        self.slicer_app.display_manager.show_volume_in_slice_background(self.session.volume)
        self.slicer_app.display_manager.show_volume_in_slice_foreground(None)
        self.slicer_app.display_manager.reset_views()
        with self.state:
            s = self.state
            s.rt_loading = False
            s.rt_error = ""
            s.rt_patient = source.patient
            s.rt_selected = ""
            s.rt_save_path = str(self.session.default_save_path())
            s.rt_job, s.rt_progress, s.rt_progress_text = "idle", 0, ""
            self._refresh_lesions()
            self._refresh_analysis()
            s.rt_tab = "lesions"
        log(
            f"opened patient '{source.patient}' ({len(self.state.rt_lesions)} lesions) in {time.perf_counter() - t0:.2f} s"
        )
        return True

    def on_open_patient(self, patient: str) -> None:
        source = next((p for p in self.sources if p.patient == patient), None)
        if source is None:
            self._error(f"unknown patient '{patient}'")
            return
        self.load(source)

    def on_open_files(self) -> None:
        s = self.state

        def path(value: str) -> Path | None:
            return Path(value.strip()).expanduser() if value and value.strip() else None

        image, lesions = path(s.rt_open_image), path(s.rt_open_lesions)
        if image is None or lesions is None:
            self._error("give the image and the lesions file")
            return
        source = PatientSource(
            patient=image.name.split(".")[0],
            image=image,
            lesions=lesions,
            parenchyma=path(s.rt_open_parenchyma),
            features=path(s.rt_open_features),
        )
        if self.load(source):
            self.sources.append(source)

    # --- lesions ----------------------------------------------------------------------------------------
    def _refresh_lesions(self) -> None:
        try:
            rows = self.session.lesion_rows() if self.session.volume is not None else []
        except RadTyperError as exc:
            self._error(str(exc))
            rows = []
        self.state.rt_lesions = rows
        self.state.rt_n_lesions = len(rows)

    def _schedule_refresh(self, *_args: Any) -> None:
        """Segment Editor edits: refresh the table once the edit settles (not on every brush stroke)."""
        if self._refresh_pending:
            return
        self._refresh_pending = True

        async def later() -> None:
            await asyncio.sleep(0.5)
            self._refresh_pending = False
            with self.state:
                self._refresh_lesions()

        try:
            asyncio.get_running_loop().create_task(later())
        except RuntimeError:  # no loop (tests without a server)
            self._refresh_pending = False
            self._refresh_lesions()

    def on_select_lesion(self, lesion: str) -> None:
        try:
            centre = self.session.jump_to(lesion)
        except RadTyperError as exc:
            self._error(str(exc))
            return
        editor = self.slicer_app.segmentation_editor
        sid = self.session.segment_id_of(lesion)
        if sid in editor.get_segment_ids():
            editor.set_active_segment_id(sid)
        self._focus_3d(centre)
        s = self.state
        s.rt_selected = lesion
        row = next((r for r in s.rt_lesions if r["name"] == lesion), None)
        s.rt_review_comment = row["comment"] if row else ""
        self._refresh_reconstruction()
        self._render_all()

    def _focus_3d(self, centre: Sequence[float], half_width_mm: float = 30.0) -> None:
        """Point the 3-D camera at a lesion (RAS mm), keeping the viewing direction."""
        for view in self._views("3d"):
            renderer = view.renderer()
            bounds = [c + d for c in centre for d in (-half_width_mm, half_width_mm)]
            renderer.ResetCamera(bounds)
            view.schedule_render()

    def on_review(self, status: str) -> None:
        if status not in REVIEW_STATUSES:
            return
        self._set_review(status=status)

    def on_comment(self, comment: str | None = None) -> None:
        text = comment if comment is not None else self.state.rt_review_comment
        self._set_review(comment=text or "")

    def _set_review(self, **kwargs: Any) -> None:
        lesion = self.state.rt_selected
        if not lesion:
            self._error("select a lesion first")
            return
        try:
            self.session.set_review(lesion, **kwargs)
        except (RadTyperError, OSError) as exc:
            self._error(f"review not saved: {exc}")
            return
        self._refresh_lesions()
        self.state.rt_info = f"review of {lesion} saved in {self.session.review.path}"

    def on_save(self) -> None:
        try:
            path = self.session.save_segmentation(self.state.rt_save_path or None)
        except (RadTyperError, OSError) as exc:
            self._error(f"not saved: {exc}")
            return
        self._info(f"lesions saved as {path}")
        self.state.rt_save_path = str(self.session.default_save_path())

    # --- one click --------------------------------------------------------------------------------------
    def _install_click_observers(self) -> None:
        for view in self._views("slice"):
            view.interactor().AddObserver("LeftButtonPressEvent", self._click_handler(view), 10.0)

    def _click_handler(self, view: Any):
        def on_click(interactor: Any, _event: str) -> None:
            if not self.state.rt_click_mode or self.session.volume is None:
                return
            x, y = interactor.GetEventPosition()
            slice_node = view.get_view_node()
            ras = slice_node.GetXYToRAS().MultiplyPoint((float(x), float(y), 0.0, 1.0))[:3]
            self.add_lesion_at(ras)

        return on_click

    def add_lesion_at(self, point_ras: Sequence[float]) -> None:
        """Seeded segmentation at a point (RAS mm): a new lesion, or the reason why none."""
        with self.state:
            try:
                outcome = self.session.add_lesion_at(point_ras)
            except RadTyperError as exc:
                self._error(f"no lesion added at ({', '.join(f'{c:.1f}' for c in point_ras)}) mm: {exc}")
                return
            self._refresh_lesions()
            self.state.rt_click_mode = False
            self._info(
                f"added lesion {outcome.name} ({outcome.volume_mm3 / 1000:.2f} mL); review it, then Save"
            )

    # --- compute ----------------------------------------------------------------------------------------
    def on_compute(self) -> None:
        try:
            job = self.session.start_compute(radiomics=bool(self.state.rt_radiomics))
        except (RadTyperError, OSError) as exc:
            self._error(f"analysis not started: {exc}")
            return
        s = self.state
        s.rt_job, s.rt_progress, s.rt_progress_text, s.rt_error = "running", 0, "starting…", ""
        log(f"analysis of '{self.session.patient_id}' started (process {job.pid})")
        self._job_task = asyncio.get_running_loop().create_task(self._watch_job())

    async def _watch_job(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            job = self.session.job
            try:
                state = self.session.poll_compute()
            except RadTyperError as exc:
                with self.state:
                    self.state.rt_job = "failed"
                    self._error(f"analysis results could not be shown: {exc}")
                return
            with self.state:
                s = self.state
                if state == "running" and job is not None:
                    s.rt_progress = round(100 * job.fraction, 1)
                    s.rt_progress_text = job.message
                    continue
                s.rt_job = state
                if state == "finished":
                    s.rt_progress, s.rt_progress_text = 100, "done"
                    self._refresh_analysis()
                    self._render_all()
                    failed = self.session.analysis.errors
                    note = f"; not analysed: {', '.join(failed)}" if failed else ""
                    self._info(f"analysis of '{self.session.patient_id}' finished{note}")
                elif state == "failed" and job is not None:
                    s.rt_progress_text = "failed"
                    self._error(f"analysis failed: {job.error or 'see the console'}")
                elif state == "cancelled":
                    s.rt_progress_text = "cancelled (nothing written)"
                return

    def on_cancel(self) -> None:
        if self.session.cancel_compute():
            self.state.rt_job, self.state.rt_progress_text = "cancelled", "cancelled (nothing written)"
            self._info("analysis cancelled (nothing written)")

    def on_client_exited(self, *_args: Any) -> None:
        if self.session.cancel_compute():
            log(
                "the browser closed during the analysis: analysis cancelled, nothing written; the server stays up"
            )
            with self.state:
                self.state.rt_job = "cancelled"
                self.state.rt_progress_text = "cancelled (nothing written)"
                self.state.rt_error = (
                    "The last analysis was cancelled because the browser page was closed while it ran "
                    "(nothing was written). Press Compute to run it again."
                )

    def on_client_connected(self, *_args: Any) -> None:
        log("a browser connected")
        self._render_all()  # a new page gets an image in every view

    def _watch_connections(self, protocol: Any) -> None:
        """Count the browser connections at the websocket level (a closed tab or a crashed browser sends no
        'exit' message): when the last one closes during an analysis, the analysis is cancelled."""
        from wslink.websocket import LinkProtocol

        app = self

        class ConnectionWatch(LinkProtocol):
            clients: ClassVar[set[str]] = set()

            def onConnect(self, request: Any, client_id: str) -> None:
                self.clients.add(client_id)

            def onClose(self, client_id: str) -> None:
                self.clients.discard(client_id)
                if not self.clients:
                    app.on_client_exited()

        protocol.registerLinkProtocol(ConnectionWatch())

    # --- reconstruction, shells, results ----------------------------------------------------------------
    def _refresh_analysis(self) -> None:
        s = self.state
        a = self.session.analysis
        s.rt_heterogeneity = list(a.heterogeneity_lines)
        s.rt_qc = list(a.qc_lines)
        s.rt_recovery_svg = recovery_svg(a.recovery)
        s.rt_subtype = (
            {
                "subtype": a.subtype.subtype,
                "probabilities": a.subtype.probabilities,
                "provenance": a.subtype.provenance,
                "model": a.subtype.model,
                "domain": a.subtype.domain,
                "in_domain": a.subtype.in_domain,
            }
            if a.subtype is not None
            else None
        )
        s.rt_subtype_error = a.subtype_error
        s.rt_analysis_source = a.source
        if self.session.selected and not s.rt_selected:
            s.rt_selected = self.session.selected
        self._refresh_reconstruction()

    def _refresh_reconstruction(self) -> None:
        s = self.state
        self.session.select(s.rt_selected or None)
        n = self.session.max_degree()
        s.rt_has_reconstruction = n > 0
        if n:
            s.rt_max_degree = n
            s.rt_degree_shown = self.session.set_degree(min(int(s.rt_degree), n))
        else:
            s.rt_degree_shown = 0
        shells = self.session.shells_node()
        if shells is not None:
            if not shells.GetSegmentation().ContainsRepresentation("Closed surface"):
                shells.CreateClosedSurfaceRepresentation()
            if shells.GetDisplayNode() is not None:  # else the 3-D view shows no shell
                shells.GetDisplayNode().SetPreferredDisplayRepresentationName3D("Closed surface")
        if self.session.segmentation is not None and n:
            display = self.session.segmentation.GetDisplayNode()
            if display is not None:  # 3-D: only the selected lesion's reconstruction and shells
                display.SetVisibility3D(False)

    def on_degree(self, rt_degree: Any = None, **_: Any) -> None:
        if os.environ.get("RADTYPER_VIEW_TIMING"):
            log(f"timing {time.perf_counter():.4f} degree {rt_degree}")
        try:
            degree = int(rt_degree)
        except (TypeError, ValueError):
            return
        try:
            with self._slice_views_quiet():  # the slice views do not show the reconstruction: no re-render
                shown = self.session.set_degree(min(max(degree, 1), 15))
        except RadTyperError as exc:
            self._error(str(exc))
            return
        self.state.rt_degree_shown = shown
        for view in self._views("3d"):
            view.schedule_render()

    @contextmanager
    def _slice_views_quiet(self) -> Iterator[None]:
        """Ignore the render requests of the slice views while a 3-D-only display changes (the public
        ``render_blocked()`` of trame-slicer schedules a render when it ends, which costs ~150 ms per view)."""
        views = [v for v in self._views("slice") if hasattr(v, "_is_render_blocked")]
        previous = [v._is_render_blocked for v in views]
        for v in views:
            v._is_render_blocked = True
        try:
            yield
        finally:
            for v, was in zip(views, previous, strict=True):
                v._is_render_blocked = was

    def on_shell(self, shell: str, visible: bool) -> None:
        try:
            self.session.set_shell(shell, visible)
        except RadTyperError as exc:
            self._error(str(exc))
            return
        self._render_all()

    def _trace_renders(self) -> None:
        """Log when each view starts and ends rendering (RADTYPER_VIEW_TIMING=1; latency studies)."""
        for view in self._views("slice") + self._views("3d"):
            tag = view.get_singleton_tag()
            window = view.render_window()
            window.AddObserver(
                "StartEvent", lambda *_a, t=tag: log(f"timing {time.perf_counter():.4f} render start {t}")
            )
            window.AddObserver(
                "EndEvent", lambda *_a, t=tag: log(f"timing {time.perf_counter():.4f} render end {t}")
            )

    # --- serving ----------------------------------------------------------------------------------------
    def start(self, *, host: str, port: int, open_browser: bool) -> None:
        """Serve until interrupted (the server never stops on its own: no idle timeout)."""

        def ready(**_: Any) -> None:
            url = f"http://{host}:{self.server.port}/"
            print(f"radtyper view: serving at {url} (Ctrl+C to stop)", flush=True)

        self.ctrl.on_server_ready.add(ready)
        self.server.start(
            host=host,
            port=port,
            open_browser=open_browser,
            show_connection_info=False,
            timeout=0,
            disable_logging=True,
        )

    def shutdown(self) -> None:
        """Stop a running analysis (the server process is ending)."""
        if self.session.cancel_compute():
            log("analysis cancelled: the server is stopping (nothing written)")


def _quiet_vtk() -> Path:
    """Send VTK's own warnings (e.g. empty slice views before a volume is shown) to a temporary log file."""
    import os
    import tempfile

    import vtk

    path = Path(tempfile.gettempdir()) / f"radtyper-view-{os.getpid()}-vtk.log"
    window = vtk.vtkFileOutputWindow()
    window.SetFileName(str(path))
    window.SetFlush(True)
    vtk.vtkOutputWindow.SetInstance(window)
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
    return path


def _layout() -> Any:
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    axial, coronal, sagittal = (
        ViewLayoutDefinition.axial_view(),
        ViewLayoutDefinition.coronal_view(),
        ViewLayoutDefinition.sagittal_view(),
    )
    threed = ViewLayoutDefinition.threed_view()
    return Layout(
        LayoutDirection.Horizontal,
        [
            Layout(LayoutDirection.Vertical, [axial, coronal]),
            Layout(LayoutDirection.Vertical, [threed, sagittal]),
        ],
    )
