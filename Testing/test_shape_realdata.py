"""Shape features on real masks (../shared/data): invariance, elastic-perturbation ICC, cross-modality, readers.

The figures of issue 3 ("Must show"); the full study with every lesion, three perturbation seeds and the
tables is ``Resources/Scripts/study_shape_robustness.py``. Measured values (2 cores) are quoted next to each
threshold. Features are cached per process (``_FEATURES``), so tests of one lesion set share computations
within a worker; every test is independent and ``pytest -n 2`` safe.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from RadTyperLib.io import read_lesions
from RadTyperLib.perturb import (
    elastic_perturb,
    pad_mask,
    resample_mask,
    roll_mask,
    scale_image_geometry,
    shift_origin,
)
from RadTyperLib.shape import FEATURE_GROUPS, FEATURE_NAMES, compute_shape
from RadTyperLib.shape.descriptors import AXIS_FEATURE_NAMES, ENERGY_FEATURE_NAMES
from RadTyperLib.stats import group_summary, icc_features, relative_change

pytestmark = pytest.mark.realdata

ROT3D = (25.0, -40.0, 60.0)
ROT_INPLANE = (0.0, 0.0, 37.0)
SUBVOXEL_3D = (0.37, -0.21, 0.44)
SUBVOXEL_INPLANE = (0.37, -0.21, 0.0)
LIDC_NODULES = (
    "LIDC-IDRI-0033_n0",
    "LIDC-IDRI-0057_n0",
    "LIDC-IDRI-0058_n2",
    "LIDC-IDRI-0161_n0",
    "LIDC-IDRI-0237_n1",
    "LIDC-IDRI-0298_n0",
    "LIDC-IDRI-0358_n7",
    "LIDC-IDRI-0398_n10",
    "LIDC-IDRI-0404_n3",
    "LIDC-IDRI-0429_n1",
    "LIDC-IDRI-0434_n1",
    "LIDC-IDRI-0450_n5",
    "LIDC-IDRI-0453_n0",
    "LIDC-IDRI-0546_n0",
    "LIDC-IDRI-0576_n2",
    "LIDC-IDRI-0695_n0",
    "LIDC-IDRI-0734_n0",
    "LIDC-IDRI-0740_n0",
    "LIDC-IDRI-0809_n0",
    "LIDC-IDRI-0871_n7",
)
STS = tuple(f"STS_{i:03d}" for i in range(1, 11))
#: STS_004 (elongated, 296 cm³) made the parameterisation's conditioning visible: with the former weakly
#: regularised area correction (λ = 0.02, stopped at 300 iterations) an exact translation changed ‖E‖ by
#: 1.7 % and a 3-D rotation by 11 %; see spheremap's "two regimes". It is now in the invariance set.

_FEATURES: dict[tuple[str, str, str], dict[str, float]] = {}


def mask_path(data: Path, lesion: str) -> Path:
    """File of a lesion id: pyradiomics case, ``STS_00i_<CT|MR_T1|PET>`` or ``<LIDC nodule>_r<k>``."""
    if lesion.startswith("STS_"):
        return data / "ibsi-sts" / lesion[:7] / f"{lesion[8:]}_mask.nii.gz"
    if lesion.startswith("LIDC"):
        nodule, reader = lesion.rsplit("_r", 1)
        return data / "lidc" / nodule / f"reader{reader}.nrrd"
    return data / "pyradiomics-cases" / f"{lesion}_label.nrrd"


def transformed(mask: np.ndarray, ref: sitk.Image, name: str) -> tuple[np.ndarray, sitk.Image]:
    iso = [float(min(ref.GetSpacing()))] * 3
    if name == "orig":
        return mask, ref
    if name == "translate":  # exact: pad, integer roll, origin shift
        padded, pref = pad_mask(mask, ref, 4)
        return roll_mask(padded, (3, -2, 1)), shift_origin(pref, (12.3, -4.1, 7.7))
    if name == "scale1.5":
        return mask, scale_image_geometry(ref, 1.5)
    if name == "rot_inplane":
        return resample_mask(mask, ref, angles_deg=ROT_INPLANE)
    if name == "vox_inplane":
        return resample_mask(mask, ref, shift_voxels=SUBVOXEL_INPLANE)
    if name == "iso0":
        return resample_mask(mask, ref, spacing=iso)
    if name == "iso_rot3d":
        return resample_mask(mask, ref, angles_deg=ROT3D, spacing=iso)
    if name == "iso_vox3d":
        return resample_mask(mask, ref, shift_voxels=SUBVOXEL_3D, spacing=iso)
    if name.startswith("elastic"):  # elastic<seed>
        return elastic_perturb(mask, ref.GetSpacing(), seed=int(name[7:])).mask, ref
    raise ValueError(name)


def features(data: Path, lesion: str, transform: str = "orig") -> dict[str, float]:
    """The 293 features of one (possibly transformed) real lesion; cached per process."""
    key = (str(data), lesion, transform)
    if key not in _FEATURES:
        labels, lesions = read_lesions(mask_path(data, lesion))
        mask = sitk.GetArrayFromImage(labels) == lesions[0].label
        m, ref = transformed(mask, labels, transform)
        _FEATURES[key] = compute_shape(m, ref, lesion=lesion).features
    return _FEATURES[key]


def table(
    data: Path, lesions: list[str], transform: str = "orig", index: list[str] | None = None
) -> pd.DataFrame:
    rows = [features(data, les, transform) for les in lesions]
    return pd.DataFrame(rows, index=index or lesions)[list(FEATURE_NAMES)]


def energies(f: dict[str, float]) -> np.ndarray:
    return np.array([f[n] for n in ENERGY_FEATURE_NAMES])


def changes(a: dict[str, float], b: dict[str, float], scale: float = 1.0) -> dict[str, float]:
    """Relative changes (fractions): energy vector, E₁, max_l |ΔE_l|/‖E‖, per-degree l = 2..4, axis_norm,
    burden volume / s³ and lengths / s."""
    e0, e1 = energies(a), energies(b)
    ax0 = np.array([a[n] for n in AXIS_FEATURE_NAMES])
    ax1 = np.array([b[n] for n in AXIS_FEATURE_NAMES])
    lengths = (
        "burden_mean_radius_mm",
        "burden_semiaxis_1_mm",
        "burden_semiaxis_2_mm",
        "burden_semiaxis_3_mm",
    )
    return {
        "vec": relative_change(e0, e1),
        "E1": abs(e1[0] - e0[0]) / e0[0],
        "max_l": float(np.max(np.abs(e1 - e0)) / np.linalg.norm(e0)),
        **{f"E{l}": abs(e1[l - 1] - e0[l - 1]) / e0[l - 1] for l in (2, 3, 4)},
        "axis_norm": float(np.max(np.abs(ax1 - ax0) / ax0)),
        "volume": abs(b["burden_volume_mm3"] / scale**3 - a["burden_volume_mm3"]) / a["burden_volume_mm3"],
        "lengths": max(abs(b[n] / scale - a[n]) / a[n] for n in lengths),
    }


def fmt(c: dict[str, float]) -> str:
    return ", ".join(f"{k} {100 * v:.2f}%" for k, v in c.items())


# ------------------------------------------------------------------------------------------------------
# 1. invariance
# ------------------------------------------------------------------------------------------------------
INVARIANCE_DEFAULT = ("lung1", "brain2", "STS_003_CT")
INVARIANCE_SLOW = ("lung2", "brain1", "STS_004_CT", "STS_008_CT", "STS_010_CT")


@pytest.mark.parametrize(
    "lesion",
    [*INVARIANCE_DEFAULT, *[pytest.param(les, marks=pytest.mark.slow) for les in INVARIANCE_SLOW]],
)
def test_invariance_on_real_masks(shared_data: Path, lesion: str) -> None:
    """Energies, axis ratios and burden change < 2 % under translation, ×1.5 scaling and rotations.

    Rotations re-voxelise the lesion; each has a resampling-only control on the same grid (a sub-voxel shift)
    whose change is printed beside it. Measured (study, 14 lesions): ‖ΔE‖/‖E‖ ≤ 0.04 % translation,
    ≤ 0.03 % scale, ≤ 0.38 % in-plane rotation, ≤ 1.78 % 3-D rotation on the isotropic grid (finest spacing,
    compared with the same grid at 0°; STS_004, whose resampling-only control is 0.27 %); E₁ ≤ 1.71 %,
    max_l |ΔE_l|/‖E‖ ≤ 1.69 %, axis ratios ≤ 1.44 %.
    """
    base = features(shared_data, lesion)
    iso0 = features(shared_data, lesion, "iso0")
    c = {
        "translation": changes(base, features(shared_data, lesion, "translate")),
        "scale": changes(base, features(shared_data, lesion, "scale1.5"), 1.5),
        "rot_inplane": changes(base, features(shared_data, lesion, "rot_inplane")),
        "vox_inplane": changes(base, features(shared_data, lesion, "vox_inplane")),
        "rot3d_iso": changes(iso0, features(shared_data, lesion, "iso_rot3d")),
        "vox3d_iso": changes(iso0, features(shared_data, lesion, "iso_vox3d")),
    }
    for name, v in c.items():
        print(f"{lesion} {name}: {fmt(v)}")
    for name in ("translation", "scale", "rot_inplane", "rot3d_iso"):
        v = c[name]
        assert v["vec"] < 0.02 and v["E1"] < 0.02 and v["max_l"] < 0.02, (name, v)
        assert v["axis_norm"] < 0.02, (name, v)
    # exact transforms: the burden does not depend on the parameterisation
    for name in ("translation", "scale"):
        assert c[name]["volume"] < 1e-9 and c[name]["lengths"] < 1e-3, (name, c[name])
        assert c[name]["vec"] < 0.005, (name, c[name])
    # in-plane rotation: re-voxelisation within slices only; burden < 2 % (measured ≤ 0.7 %)
    assert c["rot_inplane"]["volume"] < 0.02 and c["rot_inplane"]["lengths"] < 0.02
    # 3-D rotation of a thick-slice staircase: the volume changes with the voxelisation (resampling-only
    # control up to 7 % on lung1 / brain2); the rotation must not add more than 2 % to it
    assert c["rot3d_iso"]["volume"] < c["vox3d_iso"]["volume"] + 0.02
    # main low degrees l = 2..4, each relative to itself. In-plane: < 2 % (lesions of ≥ 8 slices; measured
    # ≤ 1.6 %), < 3 % on 3–7-slice lesions (≤ 2.4 %). 3-D rotation of a ≥ 8-slice lesion: < 5 % (≤ 3.0 %).
    # A 3-D rotation of a 3–7-slice lesion is a different voxel object: E₂..E₄ move by 7–11 %, as much as
    # under the resampling-only control (7–11 %) — not asserted; the vector, E₁ and max_l bounds above hold.
    labels, lesions = read_lesions(mask_path(shared_data, lesion))
    n_slices = int(
        np.count_nonzero((sitk.GetArrayViewFromImage(labels) == lesions[0].label).any(axis=(1, 2)))
    )
    thin = n_slices < 8
    for l in (2, 3, 4):
        assert c["rot_inplane"][f"E{l}"] < (0.03 if thin else 0.02), (l, c["rot_inplane"])
        if not thin:
            assert c["rot3d_iso"][f"E{l}"] < 0.05, (l, c["rot3d_iso"])


# ------------------------------------------------------------------------------------------------------
# 2. elastic perturbation ICC
# ------------------------------------------------------------------------------------------------------
def medians(ic: pd.Series) -> dict[str, float]:
    fam = {
        n: n.rsplit("_", 1)[0] if n.startswith("shape_energy") else FEATURE_GROUPS[n] for n in FEATURE_NAMES
    }
    g = group_summary(ic, FEATURE_GROUPS)
    e = group_summary(ic, fam)
    return {
        **{k: float(g.loc[k, "median"]) for k in g.index},
        "energies": float(e.loc["shape_energy", "median"]),
    }


def test_elastic_perturbation_icc_lidc(shared_data: Path) -> None:
    """ICC(3,1) original vs one elastic perturbation (1 voxel RMS, σ 3 mm) over the 20 LIDC reader-1 masks.

    Thresholds, with the group medians measured on this set for seed 1 (this test): burden ≥ 0.95 (0.995),
    per-degree energies ≥ 0.85 (0.94; the issue aims at 0.9), irregularity ≥ 0.65 (0.81; dominated by the
    255 order-resolved coefficients, noisy at high degree). The symmetry group (0.59) is not asserted: its 15
    order entropies depend on the FOE alignment, which is ill-defined for these near-spherical nodules (FOE axis gap often < 0.1); the axis
    ratios alone reach 0.87–0.91.
    """
    lesions = [f"{n}_r1" for n in LIDC_NODULES]
    ic = icc_features([table(shared_data, lesions), table(shared_data, lesions, "elastic1")])
    m = medians(ic)
    print({k: round(v, 3) for k, v in m.items()}, "frac ≥ 0.9:", round(float((ic >= 0.9).mean()), 3))
    assert m["burden"] >= 0.95
    assert m["energies"] >= 0.85
    assert m["irregularity"] >= 0.65


# ------------------------------------------------------------------------------------------------------
# 3. cross-modality
# ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "sts",
    STS,
)
def test_ct_and_mr_masks_give_the_same_features(shared_data: Path, sts: str) -> None:
    """The CT and MR masks are the same voxels on the same lattice (crop and 1e-5 spacing rounding differ):
    the features must agree — energies within 0.1 % (measured ≤ 0.014 %), burden within 0.01 %."""
    a, b = features(shared_data, f"{sts}_CT"), features(shared_data, f"{sts}_MR_T1")
    c = changes(a, b)
    assert c["vec"] < 1e-3 and c["max_l"] < 1e-3, c
    assert c["volume"] < 1e-4 and c["lengths"] < 1e-4, c


@pytest.mark.slow
def test_cross_modality_icc_ct_vs_pet(shared_data: Path) -> None:
    """ICC(3,1) across the 10 STS tumours between the CT and the PET mask (4–5.5 mm in-plane voxels).

    Burden and axis ratios must agree (measured 1.000 and 0.96); the per-degree energies only moderately
    (median 0.71): a 5-mm grid cannot resolve high-degree detail (l ≥ 13: ICC ≤ 0.4), and E₁ has almost no
    spread between tumours. Asserted: burden ≥ 0.99, axis ratios ≥ 0.9, median of E₂..E₆ ≥ 0.6.
    """
    ct = table(shared_data, [f"{s}_CT" for s in STS], index=list(STS))
    pet = table(shared_data, [f"{s}_PET" for s in STS], index=list(STS))
    ic = icc_features([ct, pet])
    m = medians(ic)
    low = ic[[f"shape_energy_l{l:02d}" for l in range(2, 7)]]
    print({k: round(v, 3) for k, v in m.items()}, "E2..6:", low.round(2).tolist())
    print("worst:", ic.sort_values().head(6).round(2).to_dict())
    assert m["burden"] >= 0.99
    assert ic[list(AXIS_FEATURE_NAMES)].min() >= 0.9
    assert low.median() >= 0.6


# ------------------------------------------------------------------------------------------------------
# 4. readers
# ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_reader_variability_and_ratings(shared_data: Path) -> None:
    """LIDC, 20 nodules × 4 readers (pairwise Dice median 0.80).

    ICC(3,1) across readers: burden ≥ 0.9 (measured 0.97), energies ≥ 0.75 (0.86); averaged over the
    four readers, ICC(3,k), energies ≥ 0.9 (0.96). Ratings (mean of the four readers, Spearman, n = 20): the
    high-degree energy √Σ_{l=8..15} E_l² rises with spiculation (ρ 0.43) and lobulation (0.51), the axis
    ratio a₁/a₃ with sphericity (0.58) — asserted only as ρ > 0 (n = 20: a weak but directed expectation).
    """
    from scipy.stats import spearmanr

    readers = [
        table(shared_data, [f"{n}_r{r}" for n in LIDC_NODULES], index=list(LIDC_NODULES))
        for r in (1, 2, 3, 4)
    ]
    m31 = medians(icc_features(readers, "3,1"))
    m3k = medians(icc_features(readers, "3,k"))
    print(
        "ICC(3,1)",
        {k: round(v, 3) for k, v in m31.items()},
        "ICC(3,k)",
        {k: round(v, 3) for k, v in m3k.items()},
    )
    assert m31["burden"] >= 0.9 and m31["energies"] >= 0.75 and m3k["energies"] >= 0.9

    meta = {n: json.loads((shared_data / "lidc" / n / "meta.json").read_text()) for n in LIDC_NODULES}
    rating = {
        k: [np.mean(meta[n][k]) for n in LIDC_NODULES] for k in ("spiculation", "lobulation", "sphericity")
    }
    hde = np.mean(
        [np.sqrt(sum(t[f"shape_energy_l{l:02d}"] ** 2 for l in range(8, 16))) for t in readers], axis=0
    )
    ratio = np.mean([t["shape_axis_norm_1"] / t["shape_axis_norm_3"] for t in readers], axis=0)
    rho = {
        "spiculation~HDE": spearmanr(rating["spiculation"], hde),
        "lobulation~HDE": spearmanr(rating["lobulation"], hde),
        "sphericity~a1/a3": spearmanr(rating["sphericity"], ratio),
    }
    print({k: (round(float(r.statistic), 3), round(float(r.pvalue), 3)) for k, r in rho.items()})
    assert all(r.statistic > 0 for r in rho.values())
