"""Tests of the synthetic patient generator (RadTyperLib.phantoms)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation
from skimage import measure

from RadTyperLib import phantoms as ph
from RadTyperLib.errors import InputError, LesionError
from RadTyperLib.patient import physical_centroid
from RadTyperLib.sites import SITES

# Voxelisation error of a smooth convex solid sampled at voxel centres: counting lattice points in a ball of
# radius r voxels deviates from 4/3 π r³ by O(r^1.5) points at most in practice (Gauss sphere problem; the
# boundary errors of ~4π r² voxels are of random sign and mostly cancel). For r = 10 voxels that is ≈ 30 of
# 4 189 voxels ≈ 0.75 %; we allow 2 %. (The worst-case bound, surface area × half voxel diagonal / volume ≈
# 26 % at r = 10, is far too loose to be a useful test.)
VOLUME_RTOL = 0.02


def _coords_mm(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """(N, 3) x, y, z coordinates (mm) of the voxels of a ``[z, y, x]`` mask (origin 0)."""
    return np.argwhere(mask)[:, ::-1] * np.asarray(spacing)


def _surface_to_volume(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    verts, faces, _, _ = measure.marching_cubes(
        np.pad(mask, 1).astype(np.float32), 0.5, spacing=spacing[::-1]
    )
    return measure.mesh_surface_area(verts, faces) / (mask.sum() * np.prod(spacing))


# ------------------------------------------------------------------------------------------------
# Shapes
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("radius", [5.0, 8.0])
def test_sphere_volume_matches_analytic(radius: float) -> None:
    spacing = (0.5, 0.5, 0.5 if radius > 5 else 0.45)  # ≥ 10 voxels per radius, anisotropic once
    mask = ph.shape_mask("sphere", radius, spacing)
    volume = mask.sum() * np.prod(spacing)
    assert volume == pytest.approx(ph.analytic_volume_mm3("sphere", radius), rel=VOLUME_RTOL)
    # centred, with an empty margin all around
    assert not mask[[0, -1]].any() and not mask[:, [0, -1]].any() and not mask[:, :, [0, -1]].any()
    centroid = _coords_mm(mask, spacing).mean(axis=0)
    grid_centre = (np.array(mask.shape[::-1]) - 1) / 2 * spacing
    np.testing.assert_allclose(centroid, grid_centre, atol=1e-6)


def test_supersampling_keeps_volume() -> None:
    exact = ph.analytic_volume_mm3("sphere", 5.0)
    for k in (2, 3):
        mask = ph.shape_mask("sphere", 5.0, (0.5, 0.5, 0.6), supersample=k)
        assert mask.sum() * 0.5 * 0.5 * 0.6 == pytest.approx(exact, rel=VOLUME_RTOL)


def test_ellipsoid_volume_and_rotation() -> None:
    axes = (10.0, 7.0, 5.5)
    spacing = (0.4, 0.4, 0.5)  # ≥ 11 voxels along the shortest semi-axis
    exact = ph.analytic_volume_mm3("ellipsoid", axes)
    assert exact == pytest.approx(4 / 3 * np.pi * 10 * 7 * 5.5)
    plain = ph.shape_mask("ellipsoid", axes, spacing)
    euler = (30.0, 45.0, 60.0)
    rot = Rotation.from_euler("xyz", euler, degrees=True).as_matrix()
    rotated = ph.shape_mask("ellipsoid", axes, spacing, rotation=rot)
    for mask in (plain, rotated):
        assert mask.sum() * np.prod(spacing) == pytest.approx(exact, rel=VOLUME_RTOL)
    # Euler angles and the equivalent matrix give the same voxels
    np.testing.assert_array_equal(ph.shape_mask("ellipsoid", axes, spacing, rotation=euler), rotated)

    # principal axes from the second moments: a solid ellipsoid has variance a²/5 along semi-axis a
    pts = _coords_mm(rotated, spacing)
    evals, evecs = np.linalg.eigh(np.cov(pts.T))
    evals, evecs = evals[::-1], evecs[:, ::-1]
    semi = np.sqrt(5 * evals)
    np.testing.assert_allclose(semi, axes, rtol=0.03)
    for i in range(3):
        cos = abs(float(evecs[:, i] @ rot[:, i]))
        assert np.degrees(np.arccos(min(cos, 1.0))) < 3.0, f"axis {i} off by more than 3°"


def test_c_shape_is_not_star_shaped() -> None:
    spacing = (0.4, 0.4, 0.4)
    for rotation in (None, (20.0, -35.0, 70.0)):
        mask = ph.shape_mask("c_shape", 8.0, spacing, rotation=rotation)
        centroid = _coords_mm(mask, spacing).mean(axis=0)
        idx = tuple(np.rint(centroid / spacing).astype(int)[::-1])
        assert not mask[idx], "the centroid of a 270° torus arc lies in its hole"
        exact = ph.analytic_volume_mm3("c_shape", 8.0)
        assert mask.sum() * 0.4**3 == pytest.approx(exact, rel=VOLUME_RTOL)
        assert ndimage.label(mask)[1] == 1


def test_dumbbell_waist_smaller_than_bulbs() -> None:
    spacing = (0.4, 0.4, 0.4)
    r, sep = 5.0, 15.0
    mask = ph.shape_mask("dumbbell", r, spacing, separation_mm=sep, neck_radius_mm=2.0)
    assert mask.sum() * 0.4**3 == pytest.approx(
        ph.analytic_volume_mm3("dumbbell", r, separation_mm=sep, neck_radius_mm=2.0), rel=VOLUME_RTOL
    )
    area_along_x = mask.sum(axis=(0, 1)) * 0.4 * 0.4  # cross-section (mm²) of each x slice
    centre = (mask.shape[2] - 1) // 2
    bulb = round(sep / 2 / 0.4)
    waist = area_along_x[centre]
    assert waist < 0.25 * area_along_x[centre + bulb] and waist < 0.25 * area_along_x[centre - bulb]
    assert waist == pytest.approx(np.pi * 2.0**2, rel=0.25)
    assert ndimage.label(mask)[1] == 1


def test_spiculated_has_more_surface_than_sphere_of_same_volume() -> None:
    spacing = (0.5, 0.5, 0.5)
    spiky = ph.shape_mask("spiculated", 8.0, spacing, n_spikes=8, spike_length_mm=8.0)
    equiv_r = (3 * spiky.sum() * 0.125 / (4 * np.pi)) ** (1 / 3)
    sphere = ph.shape_mask("sphere", equiv_r, spacing)
    assert _surface_to_volume(spiky, spacing) > 1.15 * _surface_to_volume(sphere, spacing)
    lobulated = ph.shape_mask("lobulated", 8.0, spacing, amplitude=0.3)
    assert _surface_to_volume(lobulated, spacing) > _surface_to_volume(sphere, spacing)
    # more spikes, more surface; different seeds move the spikes
    assert not np.array_equal(spiky, ph.shape_mask("spiculated", 8.0, spacing, seed=1, spike_length_mm=8.0))


@pytest.mark.parametrize("kind", ph.SHAPE_KINDS)
def test_every_kind_fits_its_auto_grid(kind: str) -> None:
    size = (6.0, 4.0, 3.0) if kind == "ellipsoid" else 5.0
    mask = ph.shape_mask(kind, size, (0.6, 0.6, 0.8), rotation=(15.0, 25.0, 35.0))
    assert mask.any()
    for axis in range(3):
        assert not np.take(mask, [0, -1], axis=axis).any()
    assert ph.shape_bounding_radius_mm(kind, size) >= 3.0


def test_shape_argument_errors() -> None:
    with pytest.raises(ValueError, match="unknown shape"):
        ph.shape_mask("cube", 5.0, (1, 1, 1))
    with pytest.raises(ValueError, match="unknown parameter"):
        ph.shape_mask("sphere", 5.0, (1, 1, 1), amplitude=0.3)
    with pytest.raises(ValueError, match="no closed-form"):
        ph.analytic_volume_mm3("lobulated", 5.0)
    with pytest.raises(ValueError, match="orthonormal"):
        ph.shape_mask("sphere", 5.0, (1, 1, 1), rotation=np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="minor_radius"):
        ph.shape_mask("c_shape", 5.0, (1, 1, 1), minor_radius_mm=6.0)


def test_explicit_grid_and_centre() -> None:
    mask = ph.shape_mask("sphere", 3.0, (1.0, 1.0, 1.0), grid_shape=(20, 30, 40), center_mm=(10.0, 12.0, 8.0))
    assert mask.shape == (20, 30, 40)
    np.testing.assert_allclose(_coords_mm(mask, (1.0, 1.0, 1.0)).mean(axis=0), (10.0, 12.0, 8.0), atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Patients
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ct() -> ph.Phantom:
    return ph.make_phantom(0)


@pytest.fixture(scope="module")
def mr() -> ph.Phantom:
    return ph.make_phantom(0, modality="MR")


def test_default_lesion_list(ct: ph.Phantom) -> None:
    specs = ct.specs
    assert len(specs) >= 7 and len(ct.patient.lesions) == len(specs)
    assert len({s.site for s in specs}) >= 4
    assert {s.shape for s in specs} == set(ph.SHAPE_KINDS)
    assert {s.margin for s in specs} == set(ph.MARGINS)
    assert {s.texture for s in specs} == set(ph.TEXTURES)
    assert all(s.site in SITES for s in specs)
    for i, (spec, les) in enumerate(zip(specs, ct.patient.lesions, strict=True), start=1):
        assert les.label == i and les.name == spec.name and les.site == spec.site
        assert les.color is not None and all(0 <= c <= 1 for c in les.color)
        # 8–30 mm: equivalent-sphere diameter and largest extent
        assert 8.0 <= 2 * (3 * ct.patient.lesion_volume_mm3(les) / (4 * np.pi)) ** (1 / 3) <= 30.0
        assert 2 * spec.bounding_radius_mm() <= 30.0
    assert len({les.color for les in ct.patient.lesions}) == len(specs)


def test_default_patient_geometry(ct: ph.Phantom) -> None:
    p = ct.patient
    size = p.image.GetSize()
    assert size == (200, 160, 80) and p.spacing == ph.DEFAULT_SPACING
    assert p.image.GetPixelID() == sitk.sitkInt16 and p.modality == "CT"
    np.testing.assert_allclose(p.direction, np.eye(3))
    # the anatomical origin is the volume centre
    centre = np.array([(n - 1) / 2 for n in size]) * np.array(p.spacing) + np.array(p.origin)
    np.testing.assert_allclose(centre, 0.0, atol=1e-9)
    np.testing.assert_array_equal(p.parenchyma_array(), ct.organs["lung"])
    hu = p.image_array()
    assert np.median(hu[~ct.organs["body"]]) == pytest.approx(-1000, abs=10)
    assert np.median(hu[ct.tissue == ph.LUNG]) == pytest.approx(-850, abs=15)
    assert np.median(hu[ct.tissue == ph.LIVER]) == pytest.approx(60, abs=10)
    assert np.median(hu[ct.tissue == ph.BONE]) == pytest.approx(700, abs=40)
    assert np.median(hu[ct.tissue == ph.FAT]) == pytest.approx(-100, abs=15)
    assert (ct.tissue == ph.VESSEL).sum() > 200


def test_lesions_do_not_overlap_and_lie_in_their_organ(ct: ph.Phantom) -> None:
    p = ct.patient
    labels = p.label_array()
    assert set(np.unique(labels)) == {0, *range(1, len(ct.specs) + 1)}
    for spec in ct.specs:
        mask = p.lesion_mask(spec.name)
        # not even touching another lesion: 2 voxels of background around each
        ring = ndimage.binary_dilation(mask, iterations=2) & ~mask
        assert set(np.unique(labels[ring])) == {0}, spec.name
        assert ct.organs["body"][mask].all()
        organ = ct.organs[ph.SITE_ORGAN[spec.site]]
        assert organ[mask].mean() >= 0.95, f"{spec.name}: {organ[mask].mean():.2f} inside its organ"
        # the voxelised mask is centred on the spec centre (convex-ish shapes; c_shape centroid offset)
        offset = np.linalg.norm(p.lesion_centroid_mm(spec.name) - np.asarray(spec.center_mm))
        assert offset < 0.5 * spec.bounding_radius_mm()


def test_overlapping_or_misplaced_lesions_are_rejected() -> None:
    a = ph.LesionSpec("lung_a", "lung", "sphere", 8.0, (-70.0, -20.0, 60.0))
    b = ph.LesionSpec("lung_b", "lung", "sphere", 8.0, (-62.0, -20.0, 60.0))
    with pytest.raises(InputError, match="overlaps"):
        ph.make_patient(lesions=[a, b])
    with pytest.raises(LesionError, match="outside the body"):
        ph.make_patient(lesions=[ph.LesionSpec("skin_1", "skin", "sphere", 8.0, (0.0, -100.0, 0.0))])
    with pytest.raises(LesionError, match="outside the phantom volume"):
        ph.make_patient(lesions=[ph.LesionSpec("lung_x", "lung", "sphere", 8.0, (-70.0, 0.0, 96.0))])
    with pytest.raises(InputError, match="unknown site"):
        ph.LesionSpec("x", "moon", "sphere", 5.0, (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="margin"):
        ph.LesionSpec("x", "lung", "sphere", 5.0, (0.0, 0.0, 0.0), margin="fuzzy")


def test_lesion_mean_intensity_matches_spec(ct: ph.Phantom) -> None:
    hu = ct.patient.image_array().astype(float)
    for spec in ct.specs:
        mask = ct.patient.lesion_mask(spec.name)
        core = ct.necrotic_cores.get(spec.name)
        if spec.texture == "necrotic":
            assert core is not None and core.any() and (core & ~mask).sum() == 0
            assert hu[core].mean() == pytest.approx(spec.necrotic_hu, abs=8)
            mask = mask & ~core
        # texture has exactly the spec mean over the lesion; left: scanner noise (SD 12, correlated) and the
        # intensity rounding to int16
        assert hu[mask].mean() == pytest.approx(spec.mean, abs=8), spec.name
        expected_sd = np.hypot(spec.texture_sd, ph.CT_NOISE_SD)
        assert hu[mask].std() == pytest.approx(expected_sd, rel=0.35), spec.name


def test_blurred_margins_have_lower_boundary_gradient(ct: ph.Phantom) -> None:
    """Mean |∇I| over the voxels within one voxel of the mask boundary, per HU of contrast to the lung.

    Lung lesions are compared (contrast ~870 HU, so scanner noise does not matter)."""
    p = ct.patient
    hu = p.image_array().astype(float)
    grads = np.gradient(hu, *np.asarray(p.spacing)[::-1])
    gmag = np.sqrt(sum(g * g for g in grads))
    lung_hu = ph.TISSUE_MEAN["CT"][ph.LUNG]
    sharpness = {}
    for spec in ct.specs:
        if spec.site != "lung":
            continue
        mask = p.lesion_mask(spec.name)
        band = ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask)
        sharpness[spec.margin, spec.name] = gmag[band].mean() / abs(spec.mean - lung_hu)
    sharp = [v for (m, _), v in sharpness.items() if m == "sharp"]
    blurred = [v for (m, _), v in sharpness.items() if m == "blurred"]
    assert sharp and blurred
    assert max(blurred) < 0.6 * min(sharp), sharpness
    # and the infiltrative halo lies outside the mask: lung just outside a blurred lesion is much denser
    for spec in ct.specs:
        mask = p.lesion_mask(spec.name)
        if spec.site != "lung":
            continue
        shell = ndimage.binary_dilation(mask, iterations=2) & ~mask & ct.organs["lung"]
        if spec.margin == "blurred":
            assert hu[shell].mean() > lung_hu + 300
        else:
            assert hu[shell].mean() < lung_hu + 150


def test_seeded_and_deterministic(ct: ph.Phantom) -> None:
    state = np.random.get_state()  # noqa: NPY002 -- checks that the legacy global RNG is left alone
    again = ph.make_patient(0)
    after = np.random.get_state()  # noqa: NPY002
    assert after[1].tolist() == state[1].tolist() and after[2] == state[2], "global RNG must not be used"
    np.testing.assert_array_equal(again.image_array(), ct.patient.image_array())
    np.testing.assert_array_equal(again.label_array(), ct.patient.label_array())
    other = ph.make_patient(1)
    assert not np.array_equal(other.image_array(), ct.patient.image_array())
    np.testing.assert_array_equal(other.label_array(), ct.patient.label_array())  # same anatomy
    np.testing.assert_array_equal(other.parenchyma_array(), ct.patient.parenchyma_array())


def test_mr_variant_shares_masks(ct: ph.Phantom, mr: ph.Phantom) -> None:
    m = mr.patient
    assert m.modality == "MR" and m.image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(m.label_array(), ct.patient.label_array())
    np.testing.assert_array_equal(m.parenchyma_array(), ct.patient.parenchyma_array())
    assert [les.name for les in m.lesions] == [les.name for les in ct.patient.lesions]
    a = m.image_array()
    assert a.min() >= 0 and 1000 < a.max() < 2000  # Rician magnitude, arbitrary units ~0..1500
    med = {t: np.median(a[mr.tissue == t]) for t in (ph.FAT, ph.LUNG, ph.LIVER, ph.MUSCLE)}
    assert med[ph.FAT] > med[ph.LIVER] > med[ph.MUSCLE] > med[ph.LUNG]  # T1-like contrast
    liver = ct.organs["liver"] & (m.label_array() == 0)
    for spec in mr.specs:
        inside = a[m.lesion_mask(spec.name)].mean()
        if spec.site == "liver":
            assert inside < 0.7 * np.median(a[liver]), spec.name  # hypointense liver metastases
        if spec.site == "lung":
            assert inside > 5 * med[ph.LUNG], spec.name
    mr_again = ph.make_mr_patient(0)
    np.testing.assert_array_equal(mr_again.image_array(), a)


def test_oblique_variant_rotates_physical_space(ct: ph.Phantom) -> None:
    obl = ph.make_patient(0, oblique=True)
    np.testing.assert_array_equal(obl.image_array(), ct.patient.image_array())
    np.testing.assert_array_equal(obl.label_array(), ct.patient.label_array())
    rot = obl.direction
    np.testing.assert_allclose(rot, ph.OBLIQUE_ROTATION, atol=1e-12)
    assert not np.allclose(rot, np.eye(3), atol=0.05)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
    assert obl.parenchyma.GetDirection() == obl.image.GetDirection() == obl.labels.GetDirection()
    for les in ct.patient.lesions:
        plain = physical_centroid(ct.patient.lesion_mask(les.name), ct.patient.image)
        rotated = physical_centroid(obl.lesion_mask(les.name), obl.image)
        np.testing.assert_allclose(rotated, rot @ plain, atol=1e-6)
        assert obl.lesion_volume_mm3(les.name) == ct.patient.lesion_volume_mm3(les.name)


def test_custom_lesions_and_spacing() -> None:
    specs = [
        ph.LesionSpec("a", "liver", "sphere", 10.0, (-50.0, 0.0, -60.0), texture="necrotic", mean=70.0),
        ph.LesionSpec(
            "b", "lung", "ellipsoid", (6.0, 4.0, 4.0), (70.0, 0.0, 50.0), margin="blurred", blur_mm=2.0
        ),
    ]
    pat = ph.make_patient(3, lesions=specs, spacing=(2.0, 2.0, 4.0), patient_id="p3")
    assert pat.image.GetSize() == (150, 120, 50) and pat.patient_id == "p3"
    assert [les.name for les in pat.lesions] == ["a", "b"] and [les.label for les in pat.lesions] == [1, 2]
    vol = pat.lesion_volume_mm3("a")
    assert vol == pytest.approx(ph.analytic_volume_mm3("sphere", 10.0), rel=0.08)  # r = 5 voxels: coarser


def test_write_patient_round_trip(ct: ph.Phantom, tmp_path) -> None:
    from RadTyperLib.io import load_patient, write_patient

    paths = write_patient(ct.patient, tmp_path / "demo")
    assert [p.name for p in paths.values()] == [
        "image.nrrd",
        "lesions.seg.nrrd",
        "sites.csv",
        "parenchyma.nrrd",
    ]
    back = load_patient(
        paths["image"], paths["lesions"], parenchyma=paths["parenchyma"], sites=paths["sites"]
    )
    np.testing.assert_array_equal(back.image_array(), ct.patient.image_array())
    np.testing.assert_array_equal(back.label_array(), ct.patient.label_array())
    np.testing.assert_array_equal(back.parenchyma_array(), ct.organs["lung"])
    np.testing.assert_allclose(back.origin, ct.patient.origin)
    np.testing.assert_allclose(back.spacing, ct.patient.spacing)
    assert [(a.name, a.site, a.color) for a in back.lesions] == [
        (b.name, b.site, pytest.approx(b.color, abs=1e-5)) for b in ct.patient.lesions
    ]
