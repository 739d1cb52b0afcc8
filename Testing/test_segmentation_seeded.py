"""One-click seeded segmentation (RadTyperLib.segmentation): Dice on the synthetic CT/MR phantoms and on real
CT/MR cases, existing labels, several points, errors, determinism.

Dice thresholds are per lesion class and were measured (seeds 0–3 of the phantom and the real cases; see
``Resources/Scripts/benchmark_seeded.py``), set a little below the worst value seen — not tuned to one case.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from RadTyperLib.errors import InputError, LesionError
from RadTyperLib.patient import index_to_physical, physical_centroid
from RadTyperLib.phantoms import make_phantom
from RadTyperLib.segmentation import SeededParams, segment_from_point, segment_from_points


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def click(mask: np.ndarray, image: sitk.Image, deepest: bool = False) -> np.ndarray:
    """LPS point of the mask voxel nearest to the mask's physical centroid, or of its deepest voxel (the thick
    part of a C-shape / dumbbell, where a user clicks)."""
    if deepest:
        depth = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=image.GetSpacing()[::-1])
        k = np.unravel_index(int(np.argmax(depth[1:-1, 1:-1, 1:-1])), mask.shape)
        return index_to_physical(np.asarray(k[::-1], dtype=float), image)
    c = physical_centroid(mask, image)
    pts = index_to_physical(np.argwhere(mask)[:, ::-1].astype(float), image)
    return pts[int(np.argmin(((pts - c) ** 2).sum(axis=1)))]


@pytest.fixture(scope="module")
def ct_phantom():
    return make_phantom(0)


@pytest.fixture(scope="module")
def mr_phantom():
    return make_phantom(0, modality="MR")


# Minimum Dice per lesion of the default phantom, clicked at its centroid (deepest voxel for the C-shape and
# the dumbbell). Measured over phantom seeds 0–3, CT / MR:
#   lung_1 sphere, lung_2 spiculated, node_1, bone_1 (sharp, solid, high contrast): 0.998–1.0 / 0.80–1.0
#   liver_2 dumbbell, hypodense 25 HU in 60 HU liver (CNR ≈ 2 on CT): 0.61–0.91 / 1.0
#   lung_3 blurred margin (σ 3 mm): 0.78–0.81 / 0.76 — the half-contrast boundary lies ~1.5 mm outside the
#     sharp reference contour, by design (it is where a reader would draw a blurred edge)
#   liver_3 blurred + heterogeneous + hypodense C-shape (CNR ≈ 1.3 on CT): 0.41–0.49 / 0.73–0.81
#   liver_1 necrotic, click in the necrotic core: the core only (Dice 0.40–0.44; checked separately)
MIN_DICE = {
    "CT": {"lung_1": 0.95, "lung_2": 0.95, "node_1": 0.95, "bone_1": 0.95, "liver_2": 0.55, "lung_3": 0.72,
           "liver_3": 0.35},
    "MR": {"lung_1": 0.95, "lung_2": 0.8, "node_1": 0.95, "bone_1": 0.75, "liver_2": 0.9, "lung_3": 0.7,
           "liver_3": 0.65},
}  # fmt: skip


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_synthetic_dice(modality, ct_phantom, mr_phantom):
    ph = ct_phantom if modality == "CT" else mr_phantom
    pat = ph.patient
    rows = []
    for les, spec in zip(pat.lesions, ph.specs, strict=True):
        ref = pat.lesion_mask(les)
        t0 = time.perf_counter()
        res = segment_from_point(pat.image, click(ref, pat.image, spec.shape in ("c_shape", "dumbbell")))
        dt = time.perf_counter() - t0
        d = dice(res.mask_zyx, ref)
        rows.append((les.name, spec.shape, spec.margin, d, res.volume_mm3, dt))
        assert res.mask_zyx.shape == ref.shape and res.mask_zyx.dtype == bool
        assert res.volume_mm3 == pytest.approx(res.mask_zyx.sum() * np.prod(pat.spacing))
        assert not res.qc["qc_leak_suspected"]
    print(f"\n{modality} phantom (seed 0): lesion, shape, margin, Dice, volume mm³, time s")
    for r in rows:
        print(f"  {r[0]:8s} {r[1]:10s} {r[2]:7s} {r[3]:.3f} {r[4]:8.0f} {r[5]:.2f}")
    for name, _, _, d, _, _ in rows:
        if name in MIN_DICE[modality]:
            assert d >= MIN_DICE[modality][name], (name, d)
    sharp_solid = [d for name, shape, margin, d, _, _ in rows if margin == "sharp" and name != "liver_1"]
    assert min(sharp_solid) >= (0.8 if modality == "MR" else 0.55)


def test_necrotic_core_and_rim(ct_phantom, mr_phantom):
    """A click in a necrotic core returns the core (inside the lesion); a click on the rim returns the whole
    lesion when the rim is separable from the organ (MR: 320 vs 600), the enclosed core being filled."""
    for ph in (ct_phantom, mr_phantom):
        pat = ph.patient
        ref = pat.lesion_mask("liver_1")
        core = ph.necrotic_cores["liver_1"]
        res = segment_from_point(pat.image, click(ref, pat.image))
        assert (res.mask_zyx & ref).sum() / res.mask_zyx.sum() >= 0.95  # nothing outside the lesion
        assert dice(res.mask_zyx, core) >= 0.9
    pat = mr_phantom.patient
    ref = pat.lesion_mask("liver_1")
    rim = ref & ~mr_phantom.necrotic_cores["liver_1"]
    res = segment_from_point(pat.image, click(rim, pat.image, deepest=True))
    assert dice(res.mask_zyx, ref) >= 0.9


def test_oblique_grid_same_result(ct_phantom):
    """Physical directions (rays, balls in mm) are handled on an oblique grid: same voxels as the axial one."""
    from RadTyperLib.phantoms import make_patient

    obl = make_patient(0, oblique=True)
    for name in ("lung_1", "node_1"):
        ref = obl.lesion_mask(name)
        res = segment_from_point(obl.image, click(ref, obl.image))
        assert dice(res.mask_zyx, ref) >= 0.95
        ax = segment_from_point(ct_phantom.patient.image, click(ref, ct_phantom.patient.image))
        assert dice(res.mask_zyx, ax.mask_zyx) >= 0.95


def test_existing_labels_respected(ct_phantom):
    pat = ct_phantom.patient
    ref = pat.lesion_mask("lung_2")
    # an existing segment covering the lesion's upper part (z above the centroid slice)
    zc = round(float(np.argwhere(ref)[:, 0].mean()))
    existing = np.zeros(ref.shape, np.uint16)
    existing[zc + 1 :][ref[zc + 1 :]] = 7
    labels = sitk.GetImageFromArray(existing)
    labels.CopyInformation(pat.image)
    before = sitk.GetArrayFromImage(labels).copy()
    res = segment_from_point(pat.image, click(ref, pat.image), existing_labels=labels)
    assert not np.any(res.mask_zyx & (existing > 0))
    assert np.array_equal(sitk.GetArrayFromImage(labels), before)  # the user's segment is untouched
    assert dice(res.mask_zyx, ref & (existing == 0)) >= 0.9
    # a click inside the existing segment
    with pytest.raises(LesionError, match="inside an existing segment"):
        segment_from_point(pat.image, click(ref & (existing > 0), pat.image), existing_labels=labels)


def test_segment_from_points(ct_phantom):
    pat = ct_phantom.patient
    names = ["lung_1", "node_1", "bone_1"]
    pts = [click(pat.lesion_mask(n), pat.image) for n in names]
    dup = pts[0] + np.array([1.0, 0.5, 0.0])  # a second click in lung_1
    air = index_to_physical(np.array([2.0, 2.0, 2.0]), pat.image)
    results = segment_from_points(
        pat.image, [*pts, dup, air], names=["a", "b", "c", "again", "air"], existing_labels=None
    )
    assert [r.name for r in results] == ["a", "b", "c", "again", "air"]
    for r, n in zip(results[:3], names, strict=True):
        assert r.skipped is None
        assert dice(r.mask_zyx, pat.lesion_mask(n)) >= 0.95
    assert results[3].skipped and "lesion 'a'" in results[3].skipped and not results[3].mask_zyx.any()
    assert results[4].skipped and "no lesion at this point" in results[4].skipped
    total = sum(r.mask_zyx.astype(int) for r in results)
    assert total.max() == 1  # no overlaps


def test_segment_from_points_excludes_previous_and_existing(ct_phantom):
    """Each point excludes the existing labels and the masks found before it."""
    pat = ct_phantom.patient
    ref = pat.lesion_mask("node_1")
    existing = np.zeros(ref.shape, np.uint16)
    existing[ref & (np.indices(ref.shape)[2] < np.argwhere(ref)[:, 2].mean())] = 3
    labels = sitk.GetImageFromArray(existing)
    labels.CopyInformation(pat.image)
    (res,) = segment_from_points(pat.image, [click(ref & (existing == 0), pat.image)], existing_labels=labels)
    assert res.skipped is None and not np.any(res.mask_zyx & (existing > 0))


def test_errors(ct_phantom, mr_phantom):
    ct = ct_phantom.patient.image
    with pytest.raises(InputError, match="outside the image"):
        segment_from_point(ct, (1e4, 0.0, 0.0))
    with pytest.raises(InputError):
        segment_from_point(ct, (0.0, 0.0))
    corner = index_to_physical(np.array([1.0, 1.0, 1.0]), ct)  # air outside the body
    with pytest.raises(LesionError, match=r"no lesion at this point.*HU"):
        segment_from_point(ct, corner, lesion="clicked")
    with pytest.raises(LesionError, match="no lesion at this point"):
        segment_from_point(mr_phantom.patient.image, index_to_physical(np.array([1.0, 1.0, 1.0]), ct))
    ref = ct_phantom.patient.lesion_mask("lung_1")
    with pytest.raises(LesionError, match="mm³"):
        segment_from_point(ct, click(ref, ct), min_volume_mm3=1e5)
    with pytest.raises(InputError, match="modality"):
        segment_from_point(ct, click(ref, ct), modality="PET")


def test_deterministic_and_qc(ct_phantom):
    pat = ct_phantom.patient
    pt = click(pat.lesion_mask("lung_2"), pat.image)
    a = segment_from_point(pat.image, pt)
    b = segment_from_point(pat.image, pt)
    assert np.array_equal(a.mask_zyx, b.mask_zyx)
    qa = {k: v for k, v in a.qc.items() if k != "qc_runtime_s"}
    qb = {k: v for k, v in b.qc.items() if k != "qc_runtime_s"}
    assert qa == qb
    for key in ("qc_seed_intensity", "qc_threshold_lo", "qc_threshold_hi", "qc_touches_roi_border",
                "qc_leak_suspected", "qc_opening_mm", "qc_modality"):  # fmt: skip
        assert key in a.qc
    assert a.qc["qc_modality"] == "CT" and a.qc["qc_threshold_lo"] < a.qc["qc_seed_intensity"]
    (i0, j0, k0), (ni, nj, nk) = a.roi
    idx = np.argwhere(a.mask_zyx)
    assert idx[:, 2].min() >= i0 and idx[:, 2].max() < i0 + ni and idx[:, 0].min() >= k0
    assert idx[:, 0].max() < k0 + nk and idx[:, 1].min() >= j0 and idx[:, 1].max() < j0 + nj


def test_small_roi_leak_flagged(ct_phantom):
    """A lesion larger than the search box reaches the box border: flagged as a suspected leak."""
    pat = ct_phantom.patient
    res = segment_from_point(
        pat.image,
        click(pat.lesion_mask("lung_3"), pat.image),
        max_radius_mm=4.0,
        params=SeededParams(star_fallback=False),
    )
    assert res.qc["qc_leak_suspected"] and res.qc["qc_touches_roi_border"]


# ------------------------------------------------------------------------------------------------------
# Real data (../shared/data; skipped when absent)
# ------------------------------------------------------------------------------------------------------
def _run_real(image: sitk.Image, mask: np.ndarray, label: str) -> float:
    t0 = time.perf_counter()
    res = segment_from_point(image, click(mask, image))
    d = dice(res.mask_zyx, mask)
    print(
        f"  {label:12s} Dice {d:.3f}  ref {mask.sum() * np.prod(image.GetSpacing()) / 1e3:7.2f} cm³  "
        f"seg {res.volume_mm3 / 1e3:7.2f} cm³  leak {res.qc['qc_leak_suspected']!s:5s}  "
        f"{time.perf_counter() - t0:.2f} s"
    )
    return d


@pytest.mark.realdata
def test_realdata_lung(shared_data):
    """pyradiomics lung1 (1.4 cm³ nodule, 5 mm slices) and lung2 (48 cm³ tumour touching the chest wall).
    Measured: lung1 0.93, lung2 0.82."""
    d = {}
    print()
    for case in ("lung1", "lung2"):
        folder = shared_data / "pyradiomics-cases"
        img = sitk.ReadImage(str(folder / f"{case}_image.nrrd"))
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{case}_label.nrrd"))) > 0
        d[case] = _run_real(img, mask, case)
    assert d["lung1"] >= 0.85
    assert d["lung2"] >= 0.75


# STS_001–STS_004 (the first four; not chosen): soft-tissue sarcomas of the thigh, often isointense to muscle on
# CT and T1. Measured CT 0.62 / 0.87 / 0.88 / 0.14, MR 0.72 / 0.80 / 0.57 / 0.60. STS_004 CT is a known failure
# (a tumour of muscle density: growth stops at internal texture); STS_001 CT and the MR cases leak into
# muscle and are cut back to the star-shaped fit of the ray edges (flagged ``qc_leak_suspected``).
STS_MIN_DICE = {
    ("STS_001", "CT"): 0.5, ("STS_002", "CT"): 0.8, ("STS_003", "CT"): 0.8, ("STS_004", "CT"): 0.0,
    ("STS_001", "MR"): 0.6, ("STS_002", "MR"): 0.7, ("STS_003", "MR"): 0.45, ("STS_004", "MR"): 0.5,
}  # fmt: skip


@pytest.mark.realdata
def test_realdata_sts(shared_data):
    print()
    got = {}
    for (case, mod), floor in STS_MIN_DICE.items():
        stem = "CT" if mod == "CT" else "MR_T1"
        folder = shared_data / "ibsi-sts" / case
        if not (folder / f"{stem}_image.nii.gz").exists():
            continue
        img = sitk.ReadImage(str(folder / f"{stem}_image.nii.gz"))
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{stem}_mask.nii.gz"))) > 0
        got[(case, mod)] = d = _run_real(img, mask, f"{case} {mod}")
        assert d >= floor, (case, mod, d)
    if not got:
        pytest.skip("no IBSI STS images")
