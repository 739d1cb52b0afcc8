"""RadTyper's analysis logic (RadTyperMRML.analysis_logic) on Slicer's MRML classes, without the application.

Segmentation → features → table nodes; reconstructions → model nodes (2562 points, updated in place by the
degree); shells → segments with the core's voxels; heterogeneity tables and plot; subtype display; an
offscreen render whose pixels show the reconstructions and the shells; bad input → RadTyperError; the user's
segmentation unchanged.
"""

from __future__ import annotations

import hashlib
import sys
import types

import numpy as np
import pytest

pytest.importorskip("slicer")

import vtk
from vtk.util import numpy_support

import RadTyperMRML as bridge
from RadTyperLib.errors import InputError, LesionError, RadTyperError
from RadTyperLib.features import FeatureSettings, lesion_features, order_columns
from RadTyperMRML.analysis_logic import (
    DEGREE_ARRAY,
    PATIENT_COLUMNS,
    SHELL_NAMES,
    AnalysisLogic,
)
from RadTyperMRML.demo_data import load_demo_into_scene
from RadTyperMRML.lesions_logic import ComponentMissingError

pytestmark = pytest.mark.mrml
FLIP = np.array([-1.0, -1.0, 1.0])
LESIONS = ["lung_1", "lung_2", "liver_1"]
SETTINGS = FeatureSettings(radiomics=False)


def segmentation_checksum(node, volume) -> tuple:
    """IDs, names, colours, tags and voxels of every segment (what 'never modified' means)."""
    segmentation = node.GetSegmentation()
    out = []
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        segment = segmentation.GetSegment(sid)
        box, mask, _n, _o = bridge.segment_on_volume_grid(node, sid, volume)
        tag = vtk.reference("")
        segment.GetTag("RadTyper.Site", tag)
        out.append(
            (
                sid,
                segment.GetName(),
                tuple(segment.GetColor()),
                str(tag),
                tuple((s.start, s.stop) for s in box),
                hashlib.sha1(mask.tobytes()).hexdigest(),
            )
        )
    return tuple(out)


@pytest.fixture(scope="module")
def analysed():
    """The demo patient analysed for three lesions in a headless scene."""
    scene = bridge.create_scene()
    volume, seg, par = load_demo_into_scene(scene)
    before = segmentation_checksum(seg, volume)
    logic = AnalysisLogic()
    progress = []
    outputs = logic.compute(
        volume, seg, par, settings=SETTINGS, lesions=LESIONS, progress=lambda f, m: progress.append((f, m))
    )
    patient = logic.patient(volume, seg, par)
    core = {
        name: lesion_features(patient, name, FeatureSettings(radiomics=False, keep_shells=True))
        for name in LESIONS
    }
    return types.SimpleNamespace(
        scene=scene, volume=volume, seg=seg, par=par, logic=logic, outputs=outputs, before=before,
        progress=progress, patient=patient, core=core,
    )  # fmt: skip


# --- tables -----------------------------------------------------------------------------------------------
def test_lesion_table_has_one_row_per_lesion_and_the_core_values(analysed):
    table = bridge.table_to_dataframe(analysed.outputs.lesion_table)
    assert table.shape[0] == 3 and list(table["lesion"]) == LESIONS
    expected_columns = order_columns(list(analysed.core["lung_1"].row))
    assert list(table.columns) == expected_columns
    assert len([c for c in table.columns if c.startswith(("shape_", "burden_", "region_"))]) == 313
    for name in LESIONS:
        row = table[table["lesion"] == name].iloc[0]
        core = analysed.core[name].row
        for column in ("burden_volume_mm3", "shape_coef_l01_m0", "region_tc_tim_correl", "qc_voxels_pm10"):
            if column in core:
                assert float(row[column]) == pytest.approx(float(core[column]), rel=1e-8, abs=1e-12)
        assert row["site"] == core["site"]
    fractions = [f for f, _m in analysed.progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [m for _f, m in analysed.progress][:3] == [
        f"lesion '{n}' ({i}/3)" for i, n in enumerate(LESIONS, 1)
    ]


def test_patient_table_and_heterogeneity(analysed, tmp_path):
    from RadTyperLib.heterogeneity.report import heterogeneity_report

    outputs = analysed.outputs
    patient = bridge.table_to_dataframe(outputs.patient_table)
    assert list(patient.columns) == list(PATIENT_COLUMNS) and len(patient) == 1
    features = bridge.table_to_dataframe(outputs.lesion_table)
    record = next(iter(heterogeneity_report(features, tmp_path)["patients"].values()))
    assert patient["max_tumoral_divergence"][0] == pytest.approx(record["max_tumoral_divergence"], rel=1e-6)
    assert patient["average_tumoral_heterogeneity"][0] == pytest.approx(
        record["average_tumoral_heterogeneity"], rel=1e-6
    )
    assert patient["n_lesions"][0] == 3
    assert patient["p_mean_cv_t_test"][0] == pytest.approx(record["tests"]["p_t_test"], rel=1e-6)
    assert patient["n_cv_flagged"][0] == len(record["cv_flags"])
    assert "IITH" in patient["iith"][0]
    cv = bridge.table_to_dataframe(outputs.cv_table)
    assert len(cv) == record["n_cv_features"] == patient["n_cv_features"][0]
    assert cv.set_index("feature")["cv"].to_dict() == pytest.approx(
        {k: v for k, v in record["cv"].items()}, rel=1e-6, nan_ok=True
    )
    lines = analysed.logic.heterogeneity_summary(outputs.patient_table)
    assert lines[0].startswith("Maximal tumoral divergence (MTD) ") and "3 lesions" in lines[0]
    assert outputs.summary_lines()[0].startswith("MTD ")
    # every QC warning of an analysed lesion is listed under the results, as on the command line
    from RadTyperLib.checks import qc_warnings

    expected = [
        f"Lesion '{row['lesion']}': {text}"
        for row in outputs.features.to_dict("records")
        for text in qc_warnings(row)
    ]
    assert expected, "the demo's small phantom lesions have energies at the voxel noise"
    assert outputs.summary_lines()[-len(expected) :] == expected
    assert any("shape detail at the voxel noise" in line for line in outputs.summary_lines())


def test_recovery_curve_table_and_plot_chart(analysed):
    outputs = analysed.outputs
    curve = bridge.table_to_dataframe(outputs.recovery_table)
    assert list(curve["k"]) == [2, 3]
    assert curve["ath_mean"].iloc[-1] == pytest.approx(100.0)
    chart = outputs.recovery_chart
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() == 2
    for i, column in enumerate(("ath_mean", "mtd_mean")):
        series = chart.GetNthPlotSeriesNode(i)
        assert series.GetTableNode() is outputs.recovery_table
        assert (series.GetXColumnName(), series.GetYColumnName()) == ("k", column)


def test_csv_export(analysed, tmp_path):
    import pandas as pd

    path = AnalysisLogic.export_csv(analysed.outputs.lesion_table, tmp_path / "lesions")
    assert path.name == "lesions.csv"
    back = pd.read_csv(path)
    table = bridge.table_to_dataframe(analysed.outputs.lesion_table)
    assert list(back.columns) == list(table.columns) and len(back) == 3
    np.testing.assert_allclose(back["burden_volume_mm3"], table["burden_volume_mm3"], rtol=1e-9)
    with pytest.raises(InputError, match="compute the results first"):
        AnalysisLogic.export_csv(None, tmp_path / "x.csv")


# --- reconstructions --------------------------------------------------------------------------------------
def test_reconstructions_are_model_nodes_updated_in_place(analysed):
    logic, seg = analysed.logic, analysed.seg
    models = analysed.outputs.reconstructions
    assert sorted(models) == sorted(LESIONS)
    ids = {name: node.GetID() for name, node in models.items()}
    for name, node in models.items():
        assert node.GetPolyData().GetNumberOfPoints() == 2562
        assert node.GetPolyData().GetNumberOfPolys() == 5120
        assert logic.model_degrees(node) == 15
        assert node.GetDisplayNode().GetVisibility2D()  # outline in the slice views
        expected, _faces = analysed.core[name].shape.reconstruct(15)
        points = numpy_support.vtk_to_numpy(node.GetPolyData().GetPoints().GetData())
        np.testing.assert_allclose(points, expected * FLIP, atol=1e-6)

    assert logic.set_reconstruction_degree(seg, 1) == 3
    now = logic.reconstruction_models(seg)
    assert {k: v.GetID() for k, v in now.items()} == ids
    for name, node in now.items():
        expected, _faces = analysed.core[name].shape.reconstruct(1)
        points = numpy_support.vtk_to_numpy(node.GetPolyData().GetPoints().GetData())
        assert points.shape == (2562, 3)
        np.testing.assert_allclose(points, expected * FLIP, atol=1e-6)
        assert node.GetAttribute("RadTyper.Degree") == "1" and logic.model_degrees(node) == 15
    assert logic.set_reconstruction_degree(seg, 15) == 3
    back = numpy_support.vtk_to_numpy(now["lung_1"].GetPolyData().GetPoints().GetData())
    np.testing.assert_allclose(back, analysed.core["lung_1"].shape.reconstruct(15)[0] * FLIP, atol=1e-6)
    with pytest.raises(InputError, match="1 … 15"):
        logic.set_reconstruction_degree(seg, 16)


def test_degrees_survive_a_model_file_round_trip(analysed, tmp_path):
    """The degrees are in the model's point data, so the slider works on a reloaded scene."""
    import slicer

    node = analysed.outputs.reconstructions["lung_2"]
    storage = slicer.vtkMRMLModelStorageNode()
    storage.SetFileName(str(tmp_path / "lung_2.vtk"))
    assert storage.WriteData(node)
    scene = analysed.scene
    reread = scene.AddNewNodeByClass("vtkMRMLModelNode", "reread")
    storage.SetFileName(str(tmp_path / "lung_2.vtk"))
    assert storage.ReadData(reread)
    assert reread.GetPolyData().GetPointData().GetArray(DEGREE_ARRAY.format(7)) is not None
    assert AnalysisLogic.model_degrees(reread) == 15
    scene.RemoveNode(reread)


def test_visibility_of_models(analysed):
    logic, seg = analysed.logic, analysed.seg
    logic.set_models_visibility(seg, reconstruction=False, surface=True, slice_outlines=False)
    for node in logic.reconstruction_models(seg).values():
        assert not node.GetDisplayNode().GetVisibility3D() and not node.GetDisplayNode().GetVisibility2D()
    surfaces = logic.surface_models(seg)
    assert sorted(surfaces) == sorted(LESIONS)
    for name, node in surfaces.items():
        assert node.GetDisplayNode().GetVisibility()
        assert node.GetPolyData().GetNumberOfPoints() == len(analysed.core[name].shape.surface[0])
    logic.set_models_visibility(seg, reconstruction=True, surface=False, slice_outlines=True)
    for node in logic.reconstruction_models(seg).values():
        assert node.GetDisplayNode().GetVisibility3D() and node.GetDisplayNode().GetVisibility2D()
    assert not any(n.GetDisplayNode().GetVisibility() for n in logic.surface_models(seg).values())


# --- shells -----------------------------------------------------------------------------------------------
def test_shells_are_segments_with_the_cores_voxels(analysed):
    logic, seg, volume = analysed.logic, analysed.seg, analysed.volume
    shells = analysed.outputs.shells
    assert shells.GetSegmentation().GetNumberOfSegments() == 4 * len(LESIONS)
    for shell in SHELL_NAMES:
        assert len(logic.shell_segment_ids(seg, shell)) == len(LESIONS)
    segmentation = shells.GetSegmentation()
    for name in LESIONS:
        core_shells = analysed.core[name].regions.shells
        for shell in SHELL_NAMES:
            sid = segmentation.GetSegmentIdBySegmentName(f"{name} {shell}")
            box, mask, n, n_out = bridge.segment_on_volume_grid(shells, sid, volume)
            full = np.zeros(core_shells[shell].shape, bool)
            full[box] = mask
            assert n_out == 0 and n == int(core_shells[shell].sum())
            assert np.array_equal(full, core_shells[shell]), f"{name} {shell}"
    assert logic.set_shell_visibility(seg, "PM10", False) == 3
    display = shells.GetDisplayNode()
    assert not any(display.GetSegmentVisibility(s) for s in logic.shell_segment_ids(seg, "PM10"))
    assert all(display.GetSegmentVisibility(s) for s in logic.shell_segment_ids(seg, "TC"))
    logic.set_shell_visibility(seg, "PM10", True)
    with pytest.raises(InputError, match="Unknown shell"):
        logic.set_shell_visibility(seg, "PM20", True)


# --- rendering --------------------------------------------------------------------------------------------
def _coloured(path, rgb) -> int:
    """Pixels whose hue is ``rgb``'s: same direction away from grey (shading and opacity keep the direction)."""
    from RadTyperMRML.snapshot import png_rgb

    pixels = png_rgb(path).astype(float)
    deviation = pixels - pixels.mean(axis=-1, keepdims=True)
    target = np.asarray(rgb, float) - np.mean(rgb)
    norm = np.linalg.norm(deviation, axis=-1) * np.linalg.norm(target)
    cosine = (deviation @ target) / np.maximum(norm, 1e-9)
    saturated = pixels.max(axis=-1) - pixels.min(axis=-1) > 25
    return int((saturated & (cosine > 0.9)).sum())


def test_offscreen_render_shows_reconstructions_and_shells(analysed, tmp_path):
    from RadTyperMRML.analysis_logic import SHELL_COLORS
    from RadTyperMRML.snapshot import png_rgb, render_nodes_png

    logic, seg = analysed.logic, analysed.seg
    models = logic.reconstruction_models(seg)
    try:
        recon = render_nodes_png(tmp_path / "recon.png", [models["lung_1"]], size=(240, 240))
    except Exception as exc:  # pragma: no cover - only without any OpenGL/EGL driver
        if isinstance(exc, RadTyperError):
            raise
        pytest.skip(f"offscreen rendering unavailable: {exc}")
    colour = models["lung_1"].GetDisplayNode().GetColor()
    drawn = (png_rgb(recon).sum(axis=-1) < 740).sum()
    assert drawn > 0.1 * 240 * 240  # the lesion fills a good part of the fitted view
    assert _coloured(recon, colour) > 0.8 * drawn

    for shell in SHELL_NAMES:  # one lesion's TIM only
        logic.set_shell_visibility(seg, shell, False)
    assert logic.set_shell_visibility(seg, "TIM", True, lesions=["lung_1"]) == 1
    only_tim = render_nodes_png(tmp_path / "tim.png", [analysed.outputs.shells], size=(240, 240))
    drawn = (png_rgb(only_tim).sum(axis=-1) < 740).sum()
    assert drawn > 0.1 * 240 * 240
    assert _coloured(only_tim, SHELL_COLORS["TIM"]) > 0.5 * drawn
    assert _coloured(only_tim, SHELL_COLORS["PM10"]) == 0
    logic.set_shell_visibility(seg, "TIM", False)
    logic.set_shell_visibility(seg, "PM10", True, lesions=["lung_1"])
    only_pm10 = render_nodes_png(tmp_path / "pm10.png", [analysed.outputs.shells], size=(240, 240))
    drawn = (png_rgb(only_pm10).sum(axis=-1) < 740).sum()
    assert drawn > 0.1 * 240 * 240
    assert _coloured(only_pm10, SHELL_COLORS["PM10"]) > 0.5 * drawn
    assert _coloured(only_pm10, SHELL_COLORS["TIM"]) == 0
    for shell in SHELL_NAMES:
        logic.set_shell_visibility(seg, shell, True)
    logic.set_models_visibility(seg, reconstruction=False)
    with pytest.raises(InputError, match="none of the nodes has visible 3-D content"):
        render_nodes_png(tmp_path / "none.png", list(models.values()))
    logic.set_models_visibility(seg, reconstruction=True)


# --- scene bookkeeping ------------------------------------------------------------------------------------
def test_users_segmentation_is_unchanged_and_outputs_are_reused(analysed):
    assert segmentation_checksum(analysed.seg, analysed.volume) == analysed.before
    outputs = analysed.outputs
    ids = {
        "lesion": outputs.lesion_table.GetID(),
        "patient": outputs.patient_table.GetID(),
        "shells": outputs.shells.GetID(),
        "lung_1": outputs.reconstructions["lung_1"].GetID(),
    }
    try:
        _check_recompute(analysed, ids)
    finally:  # restore the module fixture's three lesions for the tests that follow
        analysed.outputs = analysed.logic.compute(
            analysed.volume, analysed.seg, analysed.par, settings=SETTINGS, lesions=LESIONS
        )


def _check_recompute(analysed, ids) -> None:
    again = analysed.logic.compute(
        analysed.volume, analysed.seg, analysed.par, settings=SETTINGS, lesions=["lung_1", "lung_2"]
    )
    assert again.lesion_table.GetID() == ids["lesion"] and again.lesion_table.GetNumberOfRows() == 2
    assert again.patient_table.GetID() == ids["patient"] and again.shells.GetID() == ids["shells"]
    assert again.reconstructions["lung_1"].GetID() == ids["lung_1"]
    assert sorted(analysed.logic.reconstruction_models(analysed.seg)) == [
        "lung_1",
        "lung_2",
    ]  # liver_1 removed
    assert segmentation_checksum(analysed.seg, analysed.volume) == analysed.before
    sh = analysed.scene.GetSubjectHierarchyNode()
    folder = sh.GetItemChildWithName(sh.GetSceneItemID(), f"RadTyper: {analysed.seg.GetName()}")
    assert folder and sh.GetItemParent(sh.GetItemByDataNode(again.lesion_table)) == folder


# --- IITH -------------------------------------------------------------------------------------------------
def test_iith_against_a_reference(analysed, tmp_path):
    from RadTyperLib.iith import IITHReference

    features = bridge.table_to_dataframe(analysed.outputs.lesion_table)
    cols = ["region_tc_tim_correl", "burden_volume_mm3"]
    ref = IITHReference(
        features=cols,
        means=[0.5, 2000.0],
        sds=[0.25, 1000.0],
        signs=[1, -1],
        cluster_hi={"high": 1.0, "low": -1.0},
    )
    path = ref.save(tmp_path / "iith_reference.json")
    columns, message = AnalysisLogic.iith(features, path)
    expected = (features[cols[0]] - 0.5) / 0.25 - (features[cols[1]] - 2000.0) / 1000.0
    np.testing.assert_allclose(columns["iith_hi"], expected, rtol=1e-9)
    assert columns["iith_class"] == ["high" if h >= 0 else "low" for h in expected]
    assert message == "IITH: HI of 3 lesion(s) against the reference"
    columns, message = AnalysisLogic.iith(features, tmp_path / "missing.json")
    assert columns == {} and "not found" in message
    columns, message = AnalysisLogic.iith(features, None)
    assert columns == {} and "radiomics" in message


# --- subtype ----------------------------------------------------------------------------------------------
@pytest.fixture
def fake_subtypes(monkeypatch, tmp_path):
    """A stand-in RadTyperLib.subtypes whose model needs burden_volume_mm3 (or a feature that is missing)."""
    import json

    import pandas as pd

    from RadTyperLib.errors import InputError as CoreInputError

    module = types.ModuleType("RadTyperLib.subtypes")

    def load_bundle(path):
        return json.loads((path / "model.json").read_text())

    def predict(bundle, features):
        missing = [f for f in bundle["features"] if f not in features.columns]
        if missing:
            raise CoreInputError(f"the feature table lacks {', '.join(missing)}")
        v = float(features["burden_volume_mm3"].mean())
        p = 1.0 / (1.0 + np.exp(-(v - 2000.0) / 1000.0))
        inside = bundle.get("inside", True)
        return pd.DataFrame(
            {
                "patient": [features["patient"].iloc[0]],
                "subtype": ["S2" if p > 0.5 else "S1"],
                "p_S1": [1 - p],
                "p_S2": [p],
                "in_domain": [inside],
                "domain_score": [0.8 if inside else 9.0],
                "domain_note": ["" if inside else "modality MR (model: CT)"],
            }
        )

    module.load_bundle, module.predict = load_bundle, predict
    monkeypatch.setitem(sys.modules, "RadTyperLib.subtypes", module)
    good = tmp_path / "good"
    good.mkdir()
    (good / "model.json").write_text(
        json.dumps({"features": ["burden_volume_mm3"], "provenance": "trained on 40 synthetic patients"})
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.json").write_text(
        json.dumps({"features": ["radiomics_glcm_Contrast"], "provenance": "x"})
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.json").write_text(
        json.dumps({"features": ["burden_volume_mm3"], "provenance": "CT only", "inside": False})
    )
    return good, other, outside


def test_subtype_display(analysed, fake_subtypes):
    good, other, outside = fake_subtypes
    logic, seg = analysed.logic, analysed.seg
    shown = logic.predict_subtype(good, analysed.outputs.lesion_table, segmentation_node=seg)
    volumes = bridge.table_to_dataframe(analysed.outputs.lesion_table)["burden_volume_mm3"]
    p = 1.0 / (1.0 + np.exp(-(volumes.mean() - 2000.0) / 1000.0))
    assert shown.probabilities == pytest.approx({"S1": 1 - p, "S2": p})
    assert shown.subtype == ("S2" if p > 0.5 else "S1")
    assert shown.provenance == "trained on 40 synthetic patients"
    assert shown.annotation == f"RadTyper subtype: {shown.subtype} (p = {max(p, 1 - p):.2f})"
    text = shown.text_node.GetText()
    assert text.startswith(f"Subtype {shown.subtype}") and "trained on 40 synthetic patients" in text
    assert logic.subtype_annotation(seg) == shown.annotation
    again = logic.shown_subtype(seg)
    assert again.subtype == shown.subtype and again.probabilities == pytest.approx(shown.probabilities)
    assert bridge.table_to_dataframe(shown.table)["subtype"][0] == shown.subtype
    assert shown.in_domain and again.in_domain and shown.label == f"{shown.subtype} (p = {max(p, 1 - p):.2f})"

    # outside the model's domain: the subtype is given, marked in the panel, the text and the slice views
    out = logic.predict_subtype(outside, analysed.outputs.lesion_table, segmentation_node=seg)
    assert out.subtype == shown.subtype and not out.in_domain
    mark = "OUTSIDE THE MODEL'S DOMAIN"
    assert mark in out.annotation and mark in out.label and "modality MR" in out.label
    assert mark in logic.subtype_annotation(seg) and mark in out.text_node.GetText()
    again = logic.shown_subtype(seg)
    assert not again.in_domain and again.label == out.label

    with pytest.raises(
        InputError, match="Model bundle 'other': the feature table lacks radiomics_glcm_Contrast"
    ):
        logic.predict_subtype(other, analysed.outputs.lesion_table, segmentation_node=seg)
    with pytest.raises(InputError, match="Select a subtype model bundle"):
        logic.predict_subtype(None, analysed.outputs.lesion_table, segmentation_node=seg)
    with pytest.raises(InputError, match="not found"):
        logic.predict_subtype(good.parent / "nowhere", analysed.outputs.lesion_table, segmentation_node=seg)
    with pytest.raises(InputError, match="Compute the lesion features first"):
        logic.predict_subtype(good, None, segmentation_node=seg)


def test_subtype_without_the_module_is_a_clear_error(analysed, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "RadTyperLib.subtypes", types.ModuleType("RadTyperLib.subtypes"))
    with pytest.raises(ComponentMissingError, match="Subtype prediction is not available"):
        analysed.logic.predict_subtype(
            tmp_path, analysed.outputs.lesion_table, segmentation_node=analysed.seg
        )


def _real_bundle(directory, feature_names, provenance):
    """A real subtype bundle (RadTyperLib.subtypes format) with a logistic regression on ``feature_names``."""
    subtypes = pytest.importorskip("RadTyperLib.subtypes")
    if not hasattr(subtypes, "SubtypeModel"):
        pytest.skip("RadTyperLib.subtypes has no SubtypeModel (bundle format) yet")
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = np.column_stack([rng.uniform(500, 8000, 40), rng.uniform(4, 12, 40)])[:, : len(feature_names)]
    labels = np.where(x[:, 0] > 2500, "large", "small")
    model = subtypes.SubtypeModel(
        feature_names=list(feature_names),
        aggregation="largest",
        embedding="none",
        scaler=subtypes.Scaler.fit(x),
        subtypes=["large", "small"],
        classifier=LogisticRegression(max_iter=1000).fit(x, labels),
        provenance=provenance,
        sklearn_version=sklearn.__version__,
    )
    return model.save(directory)


def test_subtype_with_a_real_bundle(analysed, tmp_path):
    subtypes = pytest.importorskip("RadTyperLib.subtypes")

    bundle = _real_bundle(
        tmp_path / "bundle", ["burden_volume_mm3", "burden_mean_radius_mm"], "test: 40 patients"
    )
    logic, seg = analysed.logic, analysed.seg
    shown = logic.predict_subtype(bundle, analysed.outputs.lesion_table, segmentation_node=seg)
    expected = subtypes.predict(bundle, bridge.table_to_dataframe(analysed.outputs.lesion_table)).iloc[0]
    assert shown.subtype == expected["subtype"] == "large"  # the largest lesion (liver_1) is 6221 mm³
    assert shown.probabilities == pytest.approx({"large": expected["p_large"], "small": expected["p_small"]})
    assert sum(shown.probabilities.values()) == pytest.approx(1.0)
    assert shown.provenance == "test: 40 patients"
    assert logic.subtype_annotation(seg).startswith("RadTyper subtype: large (p = ")
    # a bundle without a domain description: the subtype is never shown as a bare certainty
    assert not shown.in_domain and "OUTSIDE THE MODEL'S DOMAIN" in logic.subtype_annotation(seg)

    other = _real_bundle(tmp_path / "other", ["radiomics_firstorder_Mean"], "needs radiomics")
    with pytest.raises(
        InputError, match="Model bundle 'other': the subtype model was trained on other features"
    ):
        logic.predict_subtype(other, analysed.outputs.lesion_table, segmentation_node=seg)
    (tmp_path / "broken").mkdir()
    with pytest.raises(InputError, match=r"model\.json missing"):
        logic.predict_subtype(tmp_path / "broken", analysed.outputs.lesion_table, segmentation_node=seg)


def test_shipped_subtype_model(analysed):
    bundle = AnalysisLogic.default_bundle_path()
    if bundle is None:
        pytest.skip("no default subtype model shipped yet (RadTyperLib/data/default_subtype_model)")
    try:
        AnalysisLogic.subtypes_module()
    except ComponentMissingError as exc:
        pytest.skip(str(exc))
    try:
        shown = analysed.logic.predict_subtype(
            bundle, analysed.outputs.lesion_table, segmentation_node=analysed.seg
        )
    except InputError as exc:  # e.g. a model that needs the radiomics features: a message, not a crash
        assert "Model bundle" in str(exc)
        return
    assert shown.subtype and sum(shown.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert shown.provenance and shown.label.startswith(shown.subtype)
    # the demo patient's lesions are synthetic phantoms in liver, bone and lung: outside a lung-nodule model
    assert shown.in_domain == ("OUTSIDE" not in shown.annotation)


# --- bad input --------------------------------------------------------------------------------------------
def test_bad_inputs_are_radtyper_errors(analysed):
    logic, scene = analysed.logic, analysed.scene
    with pytest.raises(InputError, match="No input volume is selected"):
        logic.compute(None, analysed.seg)
    with pytest.raises(InputError, match="No lesion segmentation is selected"):
        logic.compute(analysed.volume, None)
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    with pytest.raises(InputError, match="has no lesions"):
        logic.compute(analysed.volume, empty)
    no_image = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no image")
    with pytest.raises(InputError, match="scalar volume with image data"):
        logic.compute(no_image, analysed.seg)
    with pytest.raises(InputError, match="Unknown modality"):
        logic.patient(analysed.volume, analysed.seg, modality="XR")

    import SimpleITK as sitk

    small = sitk.GetImageFromArray(np.zeros((6, 20, 20), np.int16))
    small.SetSpacing(analysed.volume.GetSpacing())
    small.SetOrigin(tuple(v * f for v, f in zip(analysed.volume.GetOrigin(), FLIP, strict=True)))
    small_volume = bridge.sitk_to_volume(small, scene, "small")
    with pytest.raises(LesionError, match="outside volume 'small'"):
        logic.compute(small_volume, analysed.seg, settings=SETTINGS)
    assert segmentation_checksum(analysed.seg, analysed.volume) == analysed.before


def test_extra_phase_volumes_make_a_multiphase_patient():
    """Extra co-registered volumes (e.g. DCE post-contrast) become phases; another grid is refused."""
    import SimpleITK as sitk

    from RadTyperLib.jobs import analysis_command

    scene = bridge.create_scene()
    volume, seg, par = load_demo_into_scene(scene)
    image = bridge.volume_to_sitk(volume)
    post = bridge.sitk_to_volume(sitk.Cast(image, sitk.sitkFloat32) * 1.5 + 100, scene, "post")
    logic = AnalysisLogic()
    patient = logic.patient(volume, seg, par, phase_nodes={"post": post}, image_phase="pre")
    assert list(patient.all_phases()) == ["pre", "post"] and patient.phase_modality("post") == "CT"
    np.testing.assert_allclose(
        sitk.GetArrayViewFromImage(patient.phases["post"]),
        sitk.GetArrayViewFromImage(image).astype(np.float32) * 1.5 + 100,
        rtol=1e-6,
    )
    moved = sitk.Image(image)
    moved.SetOrigin(tuple(o + 2.0 for o in image.GetOrigin()))
    other = bridge.sitk_to_volume(moved, scene, "moved")
    with pytest.raises(InputError, match=r"phase 'post'.*does not\s+resample"):
        logic.patient(volume, seg, par, phase_nodes={"post": other}, image_phase="pre")
    with pytest.raises(InputError, match="the input volume itself"):
        logic.patient(volume, seg, par, phase_nodes={"post": volume})
    # the background process gets every phase by name
    cmd = analysis_command({"image": "a.nrrd", "lesions": "l.seg.nrrd", "image_post": "p.nrrd"}, "out",
                           image_phase="pre")  # fmt: skip
    assert cmd[cmd.index("--image") : cmd.index("--image") + 4] == [
        "--image",
        "pre=a.nrrd",
        "--image",
        "post=p.nrrd",
    ]
    assert "--iith-rois" not in cmd  # default: auto
    cmd = analysis_command(
        {"image": "a.nrrd", "lesions": "l"}, "out", FeatureSettings(iith_rois=("whole", "ring"))
    )
    assert cmd[cmd.index("--iith-rois") + 1] == "whole,ring"
    from RadTyperLib.jobs import build_parser

    assert build_parser().parse_args(cmd[3:]).iith_rois == "whole,ring"
