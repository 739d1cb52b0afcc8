"""Robust-feature filter: Lin's CCC, 1-mm ball erosion/dilation, CCC table, redundancy clustering."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from RadTyperLib.errors import InputError, LesionError
from RadTyperLib.heterogeneity import HeterogeneityWarning
from RadTyperLib.heterogeneity.robust import (
    ccc_table,
    decorrelate,
    interpretability_key,
    lins_ccc,
    perturb_mask,
    perturbed_feature_tables,
    robust_features,
    short_name,
)
from RadTyperLib.patient import Lesion, Patient


# --------------------------------------------------------------------------------------------------------
# Lin's CCC
# --------------------------------------------------------------------------------------------------------
def test_lins_ccc_hand_computed_on_five_numbers():
    # x̄ = 3, ȳ = 3.8; population var_x = 2, var_y = 10.8/5 = 2.16, cov = 10/5 = 2; (x̄−ȳ)² = 0.64
    # ρc = 2·2 / (2 + 2.16 + 0.64) = 4 / 4.8 = 5/6
    assert lins_ccc([1, 2, 3, 4, 5], [2, 3, 3, 5, 6]) == pytest.approx(5 / 6, abs=1e-15)


def test_lins_ccc_properties_and_degenerate_cases():
    x = np.array([1.0, 4.0, 2.0, 8.0, 5.0])
    assert lins_ccc(x, x) == pytest.approx(1.0)
    assert lins_ccc(x, -x) == pytest.approx(-1.0 * 2 * x.var() / (2 * x.var() + 4 * x.mean() ** 2))
    # a constant shift lowers the CCC although Pearson's r stays 1
    assert lins_ccc(x, x + 1.0) == pytest.approx(2 * x.var() / (2 * x.var() + 1.0))
    assert lins_ccc([3, 3, 3], [3, 3, 3]) == 1.0  # both constant and equal
    assert lins_ccc([3, 3, 3], [4, 4, 4]) == 0.0  # both constant, different
    # NaN pairs are dropped: same value as without the pair
    assert lins_ccc([1, 2, np.nan, 4, 5, 3], [2, 3, 9, 5, 6, np.inf]) == pytest.approx(
        lins_ccc([1, 2, 4, 5], [2, 3, 5, 6])
    )
    assert np.isnan(lins_ccc([1, 2, np.nan], [1, 2, 3]))  # < 3 pairs left
    with pytest.raises(InputError, match="differ in length"):
        lins_ccc([1, 2, 3], [1, 2])


# --------------------------------------------------------------------------------------------------------
# ball erosion / dilation
# --------------------------------------------------------------------------------------------------------
def _ball_structure(mm: float, spacing_xyz) -> np.ndarray:
    sx, sy, sz = spacing_xyz
    rz, ry, rx = (int(np.ceil(mm / s)) for s in (sz, sy, sx))
    zz, yy, xx = np.mgrid[-rz : rz + 1, -ry : ry + 1, -rx : rx + 1]
    return (xx * sx) ** 2 + (yy * sy) ** 2 + (zz * sz) ** 2 <= mm**2


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.0, 1.5)])
@pytest.mark.parametrize("mm", [1.0, 2.0])
def test_perturb_mask_equals_brute_force_ball_morphology(spacing, mm):
    rng = np.random.default_rng(3)
    mask = ndi.binary_closing(rng.random((14, 18, 20)) > 0.35, iterations=2)
    mask[0, 5:9, 5:9] = True  # touches the array border: outside counts as background
    st = _ball_structure(max(mm, min(spacing)), spacing)  # radius raised to the finest spacing
    expected_e = ndi.binary_erosion(mask, st, border_value=0)
    expected_d = ndi.binary_dilation(mask, st)
    np.testing.assert_array_equal(perturb_mask(mask, spacing, mm, "erode"), expected_e)
    np.testing.assert_array_equal(perturb_mask(mask, spacing, mm, "dilate"), expected_d)


def test_perturb_mask_ball_radius_in_mm():
    spacing = (0.5, 0.5, 2.0)  # anisotropic: 1 mm = 2 voxels in x/y, half a voxel in z
    mask = np.zeros((9, 40, 40), bool)
    zz, yy, xx = np.indices(mask.shape)
    mask[((xx - 20) * 0.5) ** 2 + ((yy - 20) * 0.5) ** 2 + ((zz - 4) * 2.0) ** 2 <= 6.0**2] = True
    er = perturb_mask(mask, spacing, 1.0, "erode")
    di = perturb_mask(mask, spacing, 1.0, "dilate")
    assert er.sum() < mask.sum() < di.sum()
    assert (er <= mask).all() and (mask <= di).all()
    # in-plane radius along x shrinks / grows by exactly 2 voxels (1 mm)
    assert mask[4, 20].sum() - er[4, 20].sum() == 4
    assert di[4, 20].sum() - mask[4, 20].sum() == 4
    # dilation adds no slice along z at 2 mm spacing (the nearest z neighbour is 2 mm away)
    assert di[:, 20, 20].sum() == mask[:, 20, 20].sum() == 7
    assert not di[0].any() and not di[8].any()


def test_perturb_mask_on_a_coarse_grid_still_moves_the_surface():
    """1.5 mm voxels: a 1 mm ball holds no neighbour; the radius becomes 1.5 mm (one in-plane layer)."""
    spacing = (1.5, 1.5, 2.5)
    mask = np.zeros((9, 21, 21), bool)
    mask[2:7, 5:16, 5:16] = True
    er = perturb_mask(mask, spacing, 1.0, "erode")
    di = perturb_mask(mask, spacing, 1.0, "dilate")
    np.testing.assert_array_equal(er[2:7], np.pad(np.ones((5, 9, 9), bool), ((0, 0), (6, 6), (6, 6))))
    assert di[2:7].sum() == 5 * (13 * 13 - 4)  # one in-plane layer, not the 4 corner columns (2.1 mm)
    assert not di[1].any() and not er[:2].any()  # 2.5 mm slices: nothing added or removed along z


def test_perturb_mask_empty_erosion_and_bad_arguments():
    tiny = np.zeros((5, 5, 5), bool)
    tiny[2, 2, 2] = True
    out = perturb_mask(tiny, (1, 1, 1), 1.0, "erode")
    assert out.shape == tiny.shape and not out.any()  # documented: empty, the caller flags the lesion
    assert perturb_mask(tiny, (1, 1, 1), 1.0, "dilate").sum() == 7  # 6-neighbours at exactly 1 mm
    np.testing.assert_array_equal(perturb_mask(tiny, (1, 1, 1), 0.0, "erode"), tiny)
    with pytest.raises(InputError, match="erode' or 'dilate"):
        perturb_mask(tiny, (1, 1, 1), 1.0, "open")
    with pytest.raises(InputError, match="spacing"):
        perturb_mask(tiny, (1, 0, 1), 1.0)
    with pytest.raises(InputError, match="3-D"):
        perturb_mask(tiny[0], (1, 1, 1), 1.0)


# --------------------------------------------------------------------------------------------------------
# CCC table and the robust filter
# --------------------------------------------------------------------------------------------------------
def _tables(n: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    vol = rng.uniform(500, 5000, n)
    sph = rng.uniform(0.5, 0.9, n)
    orig = pd.DataFrame(
        {
            "lesion": [f"L{i}" for i in range(n)],
            "site": "lung",
            "radiomics_shape_VoxelVolume": vol,
            "radiomics_shape_Sphericity": sph,
            "radiomics_glszm_ZoneEntropy": rng.normal(5, 1, n),
            "qc_voxels": rng.integers(10, 100, n),
            "patient": "P1",
        }
    )
    ero, dil = orig.copy(), orig.copy()
    # stable under perturbation: small proportional change
    ero["radiomics_shape_VoxelVolume"] = vol * 0.93
    dil["radiomics_shape_VoxelVolume"] = vol * 1.07
    ero["radiomics_shape_Sphericity"] = sph + rng.normal(0, 0.005, n)
    dil["radiomics_shape_Sphericity"] = sph + rng.normal(0, 0.005, n)
    # noisy under erosion only (the texture of a thin rim): dropped
    ero["radiomics_glszm_ZoneEntropy"] = rng.normal(5, 1, n)
    return orig, ero, dil


def test_ccc_table_drops_feature_noisy_under_erosion_and_keeps_stable_ones():
    orig, ero, dil = _tables()
    t = ccc_table(orig, ero.sample(frac=1.0, random_state=1), dil)  # row order does not matter
    assert set(t.index) == {
        "radiomics_shape_VoxelVolume",
        "radiomics_shape_Sphericity",
        "radiomics_glszm_ZoneEntropy",
    }  # ids and qc_* are not features
    assert t.loc["radiomics_shape_VoxelVolume", "robust"] and t.loc["radiomics_shape_Sphericity", "robust"]
    assert t.loc["radiomics_glszm_ZoneEntropy", "ccc_dilated"] == pytest.approx(1.0)
    assert t.loc["radiomics_glszm_ZoneEntropy", "ccc_eroded"] < 0.5
    assert not t.loc["radiomics_glszm_ZoneEntropy", "robust"]
    x = orig["radiomics_shape_VoxelVolume"].to_numpy()
    assert t.loc["radiomics_shape_VoxelVolume", "ccc_eroded"] == pytest.approx(lins_ccc(x, 0.93 * x))
    assert (t["n_eroded"] == 30).all()


def test_ccc_table_missing_lesion_and_duplicates():
    orig, ero, dil = _tables(10)
    ero = ero.iloc[1:]  # erosion emptied L0: no row
    t = ccc_table(orig, ero, dil)
    assert (t["n_eroded"] == 9).all() and (t["n_dilated"] == 10).all()
    with pytest.raises(InputError, match="duplicate lesion"):
        ccc_table(pd.concat([orig, orig.iloc[:1]]), ero, dil)
    with pytest.raises(InputError, match="eroded table"):
        ccc_table(orig, ero.drop(columns="radiomics_shape_Sphericity"), dil, ["radiomics_shape_Sphericity"])


def test_robust_features_end_to_end():
    orig, ero, dil = _tables()
    res = robust_features(orig, ero, dil)
    assert res.robust == ["radiomics_shape_VoxelVolume", "radiomics_shape_Sphericity"]
    assert res.kept == res.robust  # uncorrelated (independent draws)
    assert res.threshold == 0.8


# --------------------------------------------------------------------------------------------------------
# redundancy clustering
# --------------------------------------------------------------------------------------------------------
def test_decorrelate_one_representative_per_cluster():
    rng = np.random.default_rng(5)
    n = 60
    a, b, c = rng.normal(size=(3, n))
    t = pd.DataFrame(
        {
            "radiomics_glrlm_GrayLevelNonUniformity": a * 3 + rng.normal(0, 0.05, n),
            "radiomics_shape_VoxelVolume": a,  # Henry's name wins in cluster A
            "radiomics_shape_MeshVolume": a * 2 + 1 + rng.normal(0, 0.05, n),
            "radiomics_glcm_Idmn": -b,  # |r| = 1: anti-correlated features cluster too
            "radiomics_glcm_Contrast": b + rng.normal(0, 0.05, n),
            "radiomics_firstorder_Entropy": c,
            "radiomics_firstorder_Constant": 1.0,
        }
    )
    with pytest.warns(HeterogeneityWarning, match="radiomics_firstorder_Constant"):
        kept, clusters = decorrelate(t, list(t.columns))
    assert set(kept) == {"radiomics_shape_VoxelVolume", "radiomics_glcm_Idmn", "radiomics_firstorder_Entropy"}
    assert sorted(clusters["radiomics_shape_VoxelVolume"]) == sorted(
        [
            "radiomics_shape_VoxelVolume",
            "radiomics_shape_MeshVolume",
            "radiomics_glrlm_GrayLevelNonUniformity",
        ]
    )
    # shorter short name wins (Idmn < Contrast) when no Henry name is in the cluster
    assert clusters["radiomics_glcm_Idmn"] == ["radiomics_glcm_Idmn", "radiomics_glcm_Contrast"]
    kept2, _ = decorrelate(
        t.drop(columns="radiomics_firstorder_Constant"), list(t.columns[:-1]), n_clusters=2
    )
    assert len(kept2) == 2
    with pytest.raises(InputError, match="threshold"):
        decorrelate(t, ["radiomics_glcm_Idmn"], threshold=1.5)


def test_interpretability_ranking():
    assert short_name("radiomics_firstorder_90Percentile") == "90Percentile"
    assert short_name("burden_volume_mm3") == "volume_mm3"
    names = ["radiomics_glcm_Correlation", "radiomics_firstorder_90Percentile", "radiomics_glcm_Id"]
    assert sorted(names, key=interpretability_key) == [
        "radiomics_firstorder_90Percentile",
        "radiomics_glcm_Id",
        "radiomics_glcm_Correlation",
    ]


# --------------------------------------------------------------------------------------------------------
# orchestration on a patient
# --------------------------------------------------------------------------------------------------------
def _patient() -> Patient:
    shape = (20, 40, 40)
    labels = np.zeros(shape, np.uint8)
    zz, yy, xx = np.indices(shape)
    labels[(xx - 10) ** 2 + (yy - 10) ** 2 + (zz - 10) ** 2 <= 25] = 1
    labels[(xx - 28) ** 2 + (yy - 28) ** 2 + (zz - 10) ** 2 <= 49] = 2
    labels[3, 35, 5] = 3  # a single voxel: its erosion is empty
    image = sitk.GetImageFromArray(np.zeros(shape, np.int16))
    lab = sitk.GetImageFromArray(labels)
    for im in (image, lab):
        im.SetSpacing((1.0, 1.0, 1.0))
    lesions = [Lesion(1, "a", "lung"), Lesion(2, "b", "liver"), Lesion(3, "dot", "bone")]
    return Patient(image, lab, lesions, patient_id="P7")


def test_perturbed_feature_tables_orchestration():
    patient = _patient()

    def volume(p: Patient, mask: np.ndarray, name: str) -> dict[str, float]:
        if name == "b" and mask.sum() > 2000:
            raise LesionError(name, "too large")
        return {"radiomics_shape_VoxelVolume": float(mask.sum()) * float(np.prod(p.spacing))}

    tables = perturbed_feature_tables(patient, volume, mm=1.0)
    assert list(tables) == ["original", "eroded", "dilated"]
    o, e, d = tables["original"], tables["eroded"], tables["dilated"]
    assert list(o.columns) == [
        "lesion",
        "site",
        "radiomics_shape_VoxelVolume",
        "qc_error",
        "qc_perturb_grid",
        "patient",
        "modality",
    ]
    assert (o["qc_perturb_grid"] == "1mm").all()
    v = o.set_index("lesion")["radiomics_shape_VoxelVolume"]
    ve = e.set_index("lesion")["radiomics_shape_VoxelVolume"]
    vd = d.set_index("lesion")["radiomics_shape_VoxelVolume"]
    assert ve["a"] < v["a"] < vd["a"] and v["dot"] == 1.0 and vd["dot"] == 7.0
    assert np.isnan(ve["dot"]) and "eroded mask is empty" in e.set_index("lesion").at["dot", "qc_error"]
    assert (o["patient"] == "P7").all() and list(o["site"]) == ["lung", "liver", "bone"]
    t = ccc_table(o, e, d)
    assert t.at["radiomics_shape_VoxelVolume", "n_eroded"] == 2  # the dot is skipped


def _slab_patient(spacing=(0.8, 0.8, 5.0)) -> Patient:
    """A 16 × 16 × 20 mm box lesion on a 5 mm-slice grid (4 slices), CT-like values."""
    n = (12, 60, 60)  # z, y, x
    arr = np.full(n, -800.0, dtype=np.float32)
    lab = np.zeros(n, dtype=np.uint8)
    lab[4:8, 20:40, 20:40] = 1
    arr[lab > 0] = 40.0
    image = sitk.GetImageFromArray(arr)
    labels = sitk.GetImageFromArray(lab)
    for im in (image, labels):
        im.SetSpacing(spacing)
        im.SetOrigin((-10.0, 5.0, 30.0))
    return Patient(image, labels, [Lesion(1, "box", "lung")], patient_id="S")


def test_perturbation_on_a_1mm_grid_moves_the_surface_by_1mm_in_z_too():
    """Henry: resample to 1 mm, then erode/dilate by 1 mm. On 5 mm slices the native grid cannot do that."""
    patient = _slab_patient()
    seen: dict[str, dict[str, tuple]] = {}

    def extent(p: Patient, mask: np.ndarray, name: str) -> dict[str, float]:
        idx = np.argwhere(mask)
        ext = (idx.max(axis=0) - idx.min(axis=0) + 1) * np.array(p.spacing[::-1])  # z, y, x in mm
        seen.setdefault(str(p.spacing), {})[str(mask.sum())] = tuple(ext)
        return {"radiomics_shape_VoxelVolume": float(mask.sum()) * float(np.prod(p.spacing))}

    iso = perturbed_feature_tables(patient, extent, 1.0, grid="1mm")
    nat = perturbed_feature_tables(patient, extent, 1.0, grid="native")
    vol = {g: {k: t.at[0, "radiomics_shape_VoxelVolume"] for k, t in tabs.items()} for g, tabs in
           (("1mm", iso), ("native", nat))}  # fmt: skip
    # 1 mm grid: box 16 × 16 × 20 mm → 1 mm³ voxels; eroded 14 × 14 × 18; dilated by the 6-connected ball of
    # radius 1 voxel (one layer on each face, no edges): 16·16·20 + 2·(16·16 + 16·20 + 16·20)
    assert vol["1mm"]["original"] == pytest.approx(16 * 16 * 20, rel=1e-9)
    assert vol["1mm"]["eroded"] == pytest.approx(14 * 14 * 18, rel=1e-9)
    assert vol["1mm"]["dilated"] == pytest.approx(16 * 16 * 20 + 2 * (256 + 320 + 320), rel=1e-9)
    exts = seen["(1.0, 1.0, 1.0)"]
    assert sorted(e[0] for e in exts.values()) == [18.0, 20.0, 22.0]  # z extent moves by 1 mm each side
    # native 0.8 × 0.8 × 5 mm grid: radius raised to 0.8 mm, a 5 mm slice is never removed nor added
    native_z = sorted(e[0] for e in seen["(0.8, 0.8, 5.0)"].values())
    assert native_z == [20.0, 20.0, 20.0]
    assert (iso["original"]["qc_perturb_grid"] == "1mm").all() and (
        nat["eroded"]["qc_perturb_grid"] == "native"
    ).all()
    with pytest.raises(InputError, match="perturbation grid"):
        perturbed_feature_tables(patient, extent, 1.0, grid="2mm")


def test_isotropic_lesion_patient_keeps_position_and_volume():
    from RadTyperLib.heterogeneity.robust import isotropic_lesion_patient

    patient = _slab_patient()
    iso = isotropic_lesion_patient(patient, "box")
    assert iso.spacing == (1.0, 1.0, 1.0) and iso.lesions[0].name == "box"
    np.testing.assert_allclose(iso.lesion_centroid_mm("box"), patient.lesion_centroid_mm("box"), atol=0.5)
    assert iso.lesion_volume_mm3("box") == pytest.approx(patient.lesion_volume_mm3("box"), rel=0.05)
    inside = sitk.GetArrayViewFromImage(iso.image)[iso.lesion_mask("box")]
    # B-spline interpolation (Henry's, pyradiomics') overshoots near the 840 HU step of a 4-slice box (about
    # 12 % here); the lesion keeps its value to within that ringing, far from the −800 HU background
    assert 38.0 < np.median(inside) < 50.0


def test_isotropic_lesion_patient_keeps_the_phases():
    from RadTyperLib.heterogeneity.robust import isotropic_lesion_patient

    p = _slab_patient()
    post = sitk.Image(p.image) * 2.0
    multi = Patient(p.image, p.labels, p.lesions, phases={"post": post}, image_phase="pre", patient_id="S")
    iso = isotropic_lesion_patient(multi, "box")
    assert list(iso.all_phases()) == ["pre", "post"] and iso.phases["post"].GetSpacing() == (1.0, 1.0, 1.0)
    np.testing.assert_allclose(
        sitk.GetArrayViewFromImage(iso.phases["post"]),
        2.0 * sitk.GetArrayViewFromImage(iso.image),
        rtol=1e-4,
        atol=1e-3,
    )
