"""The reference cohort of the shipped default subtype model: synthetic CT patients in four planted profiles.

No real cohort is available to RadTyper, so its default subtype model
(``RadTyperLib/data/default_subtype_model``, built by ``Resources/Scripts/build_default_model.py``) is
trained on synthetic patients. Each patient is a CT-like torso of :func:`RadTyperLib.phantoms.make_patient`
with **one lung lesion** whose parameters are drawn from one of four *profiles* modelled on the four imaging
subtypes of Wu et al. 2021 (Nat Mach Intell; the Results text that summarises Fig. 3c: "subtype 1 mainly consists of small
tumours with ... a distinct, sharp margin. Subtype 2 consists of intermediate-sized tumours with a moderately
well-defined margin. Subtype 3 consists of large tumours with an ill-defined, blurred margin. Subtype 4 is
characterized as large tumours with a moderately well-defined margin. ... subtypes 1 to 3 had similarly
smooth and regular shapes, while subtype 4 had the highest complexity with a rugged and irregular shape").
The features are computed by the real pipeline (:func:`RadTyperLib.features.patient_features`, the code of
``radtyper features``; pyradiomics off), never drawn from distributions.

What each profile mimics (r = radius in mm of the sphere of the lesion body's volume; σ = margin blur):

=======  ==================  ==========================  ====================  =============================
profile  paper subtype       size: r (mm), log-normal    margin: σ (mm), U     shape
=======  ==================  ==========================  ====================  =============================
P1       1: small, sharp     median 7, log-SD 0.1,       0.2–0.6 (a step:      regular (see below)
                             clipped to 5.5–9            sharp)
P2       2: intermediate,    median 12.5, log-SD 0.08,   1.2–2.0 (moderately   regular
         moderate margin     clipped 10.5–15             well-defined)
P3       3: large, blurred   median 19, log-SD 0.08,     3.5–6.0 (ill-defined, regular
                             clipped 16–22               blurred)
P4       4: large, moderate  median 17, log-SD 0.08,     1.2–2.0 (moderately   irregular: spiculated
         margin, irregular   clipped 14.5–20             well-defined)
=======  ==================  ==========================  ====================  =============================

* **Margin**: every lesion has the phantom's "blurred" margin: the lesion intensity continues outside the mask
  and fades as erfc(d / (σ√2)) with the distance d outside it, so σ sets how sharp the tumour–parenchyma
  interface is (what the regional-variation features TIM/PM5/PM10 measure); σ ≤ 0.6 mm is below the voxel
  size and acts as a sharp step.
* **Regular shape** (P1–P3): ellipsoids of the volume of radius r with semi-axes ∝ 1, a, a·b, a and b
  ~ U(0.65, 0.85) (distinct axes, so that the first-order-ellipsoid alignment of the SPHARM coefficients is
  stable); in 10 % of the regular lesions ("atypical") a few short spicules instead (spiculated sphere, 3–5
  spikes of length U(0.2, 0.4)·r): within-profile variability that overlaps P4.
* **Irregular shape** (P4): spiculated spheres, 8–12 spikes of length U(0.5, 0.8)·r and base radius
  U(0.2, 0.28)·r (rugged boundary: energy at high SPHARM degrees).
* **Shared nuisance, identical in every profile** (the paper does not characterise the subtypes by them):
  intensity heterogeneity — texture homogeneous 40 % / heterogeneous 45 % / necrotic 15 % (necrotic only
  for r ≥ 10 mm, else heterogeneous), texture SD U(6, 25) HU, mean U(15, 55) HU, necrotic core U(0, 20) HU
  over a depth fraction U(0.3, 0.6); shape symmetry — the ellipsoid axis ratios above and a uniformly random
  orientation; lung (left/right) and position (uniform over the lung voxels at least 1.1 r + 3 mm from the
  lung boundary and far enough from the image border for the whole lesion and its 10 mm margin shells —
  elongated or spiculated lesions may touch the chest wall, the mediastinum or a vessel); image noise and
  tissue texture (the patient seed). Voxel size: the phantom's 1.5 × 1.5 × 2.5 mm for every patient, as in
  a cohort resampled to one grid — mixing voxel sizes (1–1.5 mm in-plane, 1.25–2.5 mm slices) made the
  discovered clusters follow the voxel size within the large regular lesions (measured; see
  ``Resources/Docs/default-subtype-model.md``).

Everything is seeded: patient ``i`` of a cohort with seed ``s`` uses ``numpy.random.default_rng([s, i])``
for its parameters and ``s · 100003 + i`` as the phantom's noise seed, so a patient does not depend on the
cohort size or on the number of worker processes. The profile of patient ``i`` is ``PROFILES[i % 4]``.

This is a *synthetic* reference: it spans the paper's published subtype descriptions with RadTyper's own
phantoms and features; it is not the paper's data or model and is not for clinical use.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Patient ids: ``REF0000`` …
ID_PREFIX = "REF"
#: Voxel sizes (x, y, z) in mm and their probabilities.
SPACINGS: tuple[tuple[float, float, float], ...] = ((1.5, 1.5, 2.5),)
SPACING_P: tuple[float, ...] = (1.0,)
#: Probability that a regular-shaped lesion gets a few short spicules (overlap with the irregular profile).
ATYPICAL_P = 0.10
#: Truth columns of :attr:`ReferenceCohort.truth` besides ``patient``.
TRUTH_COLUMNS: tuple[str, ...] = (
    "profile",
    "paper_subtype",
    "radius_mm",
    "blur_mm",
    "shape",
    "atypical",
    "texture",
    "texture_sd",
    "mean_hu",
    "spacing",
    "lung",
)

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ReferenceProfile:
    """One planted profile: the paper subtype it mimics and its parameter distributions (module docstring)."""

    name: str
    paper_subtype: int
    description: str
    radius_median_mm: float
    radius_log_sd: float
    radius_range_mm: tuple[float, float]
    blur_range_mm: tuple[float, float]
    irregular: bool


PROFILES: tuple[ReferenceProfile, ...] = (
    ReferenceProfile("P1", 1, "small, sharp margin, regular", 7.0, 0.1, (5.5, 9.0), (0.2, 0.6), False),
    ReferenceProfile(
        "P2",
        2,
        "intermediate size, moderately well-defined margin, regular",
        12.5,
        0.08,
        (10.5, 15.0),
        (1.2, 2.0),
        False,
    ),
    ReferenceProfile(
        "P3", 3, "large, ill-defined (blurred) margin, regular", 19.0, 0.08, (16.0, 22.0), (3.5, 6.0), False
    ),
    ReferenceProfile(
        "P4",
        4,
        "large, moderately well-defined margin, irregular (spiculated)",
        17.0,
        0.08,
        (14.5, 20.0),
        (1.2, 2.0),
        True,
    ),
)


@dataclass
class ReferenceCohort:
    """The reference cohort: ``features`` (one row per lesion = patient, the ``radtyper features`` columns
    without radiomics + ``cancer_type``) and ``truth`` (``patient`` + :data:`TRUTH_COLUMNS`)."""

    features: Any  # pandas.DataFrame
    truth: Any  # pandas.DataFrame
    seed: int
    n_per_profile: int

    def failed(self) -> list[str]:
        """Patients whose lesion could not be analysed (their features are NaN, the reason in ``qc_error``)."""
        from ..features import QC_ERROR

        bad = self.features[QC_ERROR].fillna("").astype(str) != ""
        return self.features.loc[bad, "patient"].astype(str).tolist()


def _log_normal(rng: np.random.Generator, median: float, log_sd: float, lo: float, hi: float) -> float:
    return float(np.clip(median * math.exp(log_sd * rng.standard_normal()), lo, hi))


@functools.lru_cache(maxsize=len(SPACINGS) + 1)
def _lung_depth(spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distance in mm of each voxel to the lung boundary, x, y, z voxel-centre axes) of the phantom anatomy."""
    from scipy import ndimage

    from ..phantoms import make_phantom

    phantom = make_phantom(0, lesions=[], spacing=spacing)
    lung = phantom.organs["lung"].copy()
    lung[[0, -1], :, :] = False  # the volume border is a boundary too
    lung[:, [0, -1], :] = False
    lung[:, :, [0, -1]] = False
    depth = ndimage.distance_transform_edt(lung, sampling=np.asarray(spacing)[::-1]).astype(np.float32)
    image = phantom.patient.image  # identity direction: voxel centres = origin + index · spacing
    xs, ys, zs = (
        image.GetOrigin()[a] + np.arange(image.GetSize()[a]) * image.GetSpacing()[a] for a in range(3)
    )
    return depth, xs, ys, zs


def _inside(axis: np.ndarray, margin_mm: float) -> np.ndarray:
    return (axis >= axis.min() + margin_mm) & (axis <= axis.max() - margin_mm)


def _lesion_centre(
    rng: np.random.Generator,
    spacing: tuple[float, float, float],
    clearance_mm: float,
    border_mm: float,
    side: str,
) -> tuple[float, float, float]:
    """A random lung voxel ≥ ``clearance_mm`` deep in the lung and ≥ ``border_mm`` from the volume border."""
    depth, xs, ys, zs = _lung_depth(spacing)
    xside = (xs < 0) if side == "right" else (xs > 0)  # LPS: patient right = −x
    ok = (
        (depth >= clearance_mm)
        & (xside & _inside(xs, border_mm))[None, None, :]
        & _inside(ys, border_mm)[None, :, None]
        & _inside(zs, border_mm)[:, None, None]
    )
    idx = np.flatnonzero(ok)
    if not idx.size:
        raise ValueError(
            f"no lung position {clearance_mm:.1f} mm deep and {border_mm:.1f} mm from the volume border"
        )
    k, j, i = np.unravel_index(int(idx[rng.integers(idx.size)]), ok.shape)
    return float(xs[i]), float(ys[j]), float(zs[k])


def sample_lesion(profile: ReferenceProfile, rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    """Draw one lesion of ``profile`` → (:class:`~RadTyperLib.phantoms.LesionSpec`, its truth record)."""
    from ..phantoms import LesionSpec, shape_bounding_radius_mm

    r = _log_normal(rng, profile.radius_median_mm, profile.radius_log_sd, *profile.radius_range_mm)
    blur = float(rng.uniform(*profile.blur_range_mm))
    atypical = (not profile.irregular) and bool(rng.random() < ATYPICAL_P)
    params: dict[str, float] = {}
    size: float | tuple[float, ...] = r
    if profile.irregular:
        kind = "spiculated"
        params = {
            "n_spikes": int(rng.integers(8, 13)),
            "spike_length_mm": float(rng.uniform(0.5, 0.8) * r),
            "spike_radius_mm": float(rng.uniform(0.2, 0.28) * r),
        }
    elif atypical:
        kind = "spiculated"
        params = {
            "n_spikes": int(rng.integers(3, 6)),
            "spike_length_mm": float(rng.uniform(0.2, 0.4) * r),
            "spike_radius_mm": float(rng.uniform(0.15, 0.25) * r),
        }
    else:
        kind = "ellipsoid"
        ratios = np.cumprod([1.0, rng.uniform(0.65, 0.85), rng.uniform(0.65, 0.85)])
        size = tuple(float(v) for v in r * ratios / np.cbrt(ratios.prod()))
    u = rng.random()
    texture = "homogeneous" if u < 0.40 else ("heterogeneous" if u < 0.85 or r < 10.0 else "necrotic")
    texture_sd = float(rng.uniform(6.0, 25.0))
    mean_hu = float(rng.uniform(15.0, 55.0))
    necrotic = {
        "necrotic_fraction": float(rng.uniform(0.3, 0.6)),
        "necrotic_hu": float(rng.uniform(0.0, 20.0)),
    }
    rotation = tuple(float(a) for a in rng.uniform(-180.0, 180.0, 3))
    spacing = SPACINGS[int(rng.choice(len(SPACINGS), p=SPACING_P))]
    side = "right" if rng.random() < 0.5 else "left"
    # the lesion centre is ≥ 1.1 r + 3 mm deep in the lung; the whole lesion (spicules, blurred fringe) and the body's
    # 10 mm margin shells stay inside the image
    extent = shape_bounding_radius_mm(kind, size, **params)
    body = max(size) if isinstance(size, tuple) else r
    border = max(extent + 2.0 * blur + 3.0, body + 2.0 * blur + 12.0) + max(spacing)
    centre = _lesion_centre(rng, spacing, 1.1 * r + 3.0, border, side)
    spec = LesionSpec(
        name="lesion",
        site="lung",
        shape=kind,
        size_mm=size,
        center_mm=centre,
        margin="blurred",
        texture=texture,
        mean=mean_hu,
        texture_sd=texture_sd,
        blur_mm=blur,
        rotation_deg=rotation,
        params=params,
        shape_seed=int(rng.integers(1 << 30)),
        **necrotic,
    )
    truth = {
        "profile": profile.name,
        "paper_subtype": profile.paper_subtype,
        "radius_mm": r,
        "blur_mm": blur,
        "shape": kind,
        "atypical": atypical,
        "texture": texture,
        "texture_sd": texture_sd,
        "mean_hu": mean_hu,
        "spacing": "x".join(f"{s:g}" for s in spacing),
        "lung": side,
        "_spacing": spacing,
    }
    return spec, truth


def reference_patient(index: int, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Patient ``index`` of the reference cohort with ``seed`` → (:class:`~RadTyperLib.patient.Patient`, truth)."""
    from ..phantoms import make_patient

    profile = PROFILES[index % len(PROFILES)]
    rng = np.random.default_rng([int(seed), int(index)])
    spec, truth = sample_lesion(profile, rng)
    pid = f"{ID_PREFIX}{index:04d}"
    patient = make_patient(
        int(seed) * 100003 + int(index),
        modality="CT",
        lesions=[spec],
        spacing=truth.pop("_spacing"),
        patient_id=pid,
    )
    return patient, {"patient": pid, **truth}


def _patient_row(index: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Features (one row) and truth of reference patient ``index`` (runs in worker processes too)."""
    from threadpoolctl import threadpool_limits

    from ..features import FeatureSettings, patient_features

    with threadpool_limits(1):
        patient, truth = reference_patient(index, seed)
        table, _ = patient_features(patient, FeatureSettings(radiomics=False), keep_going=True)
    row = table.iloc[0].to_dict()
    return row, truth


def _init_worker() -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def reference_cohort(
    n_per_profile: int = 60,
    *,
    seed: int = 0,
    workers: int = 1,
    progress: Progress | None = None,
) -> ReferenceCohort:
    """Generate the reference cohort (``4 · n_per_profile`` patients) and compute its features.

    ``workers`` > 1 computes patients in a process pool; the result does not depend on it.
    """
    import pandas as pd

    from ..features import order_columns

    if n_per_profile < 1:
        raise ValueError("n_per_profile must be ≥ 1")
    n = n_per_profile * len(PROFILES)
    rows: list[dict[str, Any] | None] = [None] * n
    truths: list[dict[str, Any] | None] = [None] * n

    def report(done: int) -> None:
        if progress is not None:
            progress(done / n, f"reference cohort: {done}/{n} patients")

    if workers <= 1:
        for i in range(n):
            rows[i], truths[i] = _patient_row(i, seed)
            report(i + 1)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = {pool.submit(_patient_row, i, seed): i for i in range(n)}
            for done, fut in enumerate(cf.as_completed(futures), start=1):
                i = futures[fut]
                rows[i], truths[i] = fut.result()
                report(done)
    features = pd.DataFrame(rows)
    features = features[order_columns(features.columns)]
    features["cancer_type"] = "lung"
    truth = pd.DataFrame(truths)[["patient", *TRUTH_COLUMNS]]
    return ReferenceCohort(features, truth, int(seed), int(n_per_profile))


def profile_table() -> Any:
    """The profiles' parameter distributions as a DataFrame (for the documentation and reports)."""
    import pandas as pd

    recs = []
    for p in PROFILES:
        d = asdict(p)
        recs.append(
            {
                "profile": d["name"],
                "paper_subtype": d["paper_subtype"],
                "description": d["description"],
                "radius_mm": f"median {p.radius_median_mm:g}, log-SD {p.radius_log_sd:g}, "
                f"{p.radius_range_mm[0]:g}–{p.radius_range_mm[1]:g}",
                "blur_mm": f"U({p.blur_range_mm[0]:g}, {p.blur_range_mm[1]:g})",
                "shape": "spiculated sphere (8–12 spikes, length 0.5–0.8 r)"
                if p.irregular
                else f"ellipsoid (distinct axes); {ATYPICAL_P:.0%} with 3–5 short spikes",
            }
        )
    return pd.DataFrame(recs)


def agreement(labels: Sequence[Any], truth: Sequence[Any]) -> dict[str, Any]:
    """Agreement of discovered subtypes with the planted profiles: ARI, crosstab, best one-to-one matching."""
    import pandas as pd
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score

    a = np.asarray(labels).astype(str)
    b = np.asarray(truth).astype(str)
    table = pd.crosstab(pd.Series(a, name="subtype"), pd.Series(b, name="profile"))
    rows, cols = linear_sum_assignment(-table.to_numpy())
    match = {str(table.index[r]): str(table.columns[c]) for r, c in zip(rows, cols, strict=True)}
    matched = int(sum(table.iat[r, c] for r, c in zip(rows, cols, strict=True)))
    return {
        "adjusted_rand": float(adjusted_rand_score(b, a)),
        "matched_fraction": matched / max(len(a), 1),
        "subtype_to_profile": match,
        "table": {str(r): {str(c): int(table.loc[r, c]) for c in table.columns} for r in table.index},
    }
