"""Synthetic training / test cohorts for the U-Net: phantom patients with randomly placed lesions.

:func:`RadTyperLib.phantoms.make_patient` always places its default lesions at the same positions; a
segmentation model trained on those would learn positions. :func:`random_lesion_specs` draws, per seed,
3–6 lesions at random positions inside the lungs, the liver and the mediastinum (each lesion fully inside its
organ, ≥ 3 mm apart), of random shape (sphere, ellipsoid, lobulated, spiculated), size and contrast
(lung nodules 15–55 HU; liver lesions hypodense 5–35 HU or hyperdense 90–120 HU, some necrotic; mediastinal
nodes 35–55 HU). :func:`phantom_cohort` writes such patients and a manifest for ``radtyper seg train``.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from ...io import atomic_path, write_patient
from ...phantoms import LesionSpec, make_patient, make_phantom

#: Default voxel size (x, y, z) in mm of the synthetic U-Net cohorts: 150 × 120 × 50 voxels.
COHORT_SPACING: tuple[float, float, float] = (2.0, 2.0, 4.0)
_ORGAN_OF_SITE = {"lung": "lung", "liver": "liver", "lymph_node": "mediastinum"}


def _draw_spec(rng: np.random.Generator, site: str, name: str) -> LesionSpec:
    if site == "lung":
        shape = str(rng.choice(["sphere", "ellipsoid", "lobulated", "spiculated"]))
        r = float(rng.uniform(4.0, 11.0))
        mean, sd = float(rng.uniform(15, 55)), float(rng.uniform(6, 20))
    elif site == "liver":
        shape = str(rng.choice(["sphere", "ellipsoid", "lobulated"]))
        r = float(rng.uniform(6.0, 14.0))
        hyper = rng.random() < 0.4
        mean = float(rng.uniform(90, 120) if hyper else rng.uniform(5, 35))
        sd = float(rng.uniform(5, 12))
    else:
        shape, r = "ellipsoid", float(rng.uniform(5.0, 8.0))
        mean, sd = float(rng.uniform(35, 55)), float(rng.uniform(5, 10))
    kwargs: dict = {}
    size: float | tuple[float, float, float] = r
    if shape == "ellipsoid":
        size = tuple(float(v) for v in r * rng.uniform(0.7, 1.2, size=3))
    elif shape == "lobulated":
        kwargs["params"] = {"amplitude": float(rng.uniform(0.1, 0.3)), "n_lobes": int(rng.integers(2, 5))}
    elif shape == "spiculated":
        kwargs["params"] = {
            "n_spikes": int(rng.integers(4, 10)),
            "spike_length_mm": 0.8 * r,
            "spike_radius_mm": max(1.2, 0.25 * r),
        }
    texture = "homogeneous"
    if site == "liver" and rng.random() < 0.3:
        texture = "necrotic"
    elif rng.random() < 0.4:
        texture = "heterogeneous"
    return LesionSpec(
        name,
        site,
        shape,
        size,
        (0.0, 0.0, 0.0),
        margin="blurred" if rng.random() < 0.25 else "sharp",
        texture=texture,
        mean=mean,
        texture_sd=sd,
        rotation_deg=tuple(float(v) for v in rng.uniform(0, 180, size=3)),
        shape_seed=int(rng.integers(1 << 30)),
        **kwargs,
    )


def random_lesion_specs(
    seed: int,
    n_lesions: tuple[int, int] = (3, 6),
    spacing: Sequence[float] = COHORT_SPACING,
    sites: Sequence[str] = ("lung", "lung", "liver", "lymph_node"),
) -> list[LesionSpec]:
    """Random lesions for a phantom (see the module docstring); ``n_lesions`` = (min, max) inclusive."""
    rng = np.random.default_rng([int(seed), 4242])
    organs = make_phantom(0, lesions=[], spacing=spacing).organs
    sp = np.asarray(spacing, dtype=float)
    shape = organs["body"].shape
    axes = [((np.arange(n) - (n - 1) / 2.0) * s) for n, s in zip(shape[::-1], sp, strict=True)]  # x, y, z
    depth = {}  # distance (mm) to the organ boundary or to the faces of the volume
    for o in sorted(set(_ORGAN_OF_SITE.values())):
        padded = np.pad(organs[o], 1, constant_values=False)
        depth[o] = ndimage.distance_transform_edt(padded, sampling=sp[::-1])[1:-1, 1:-1, 1:-1]
    n = int(rng.integers(n_lesions[0], n_lesions[1] + 1))
    specs: list[LesionSpec] = []
    placed: list[tuple[np.ndarray, float]] = []
    attempts = 0
    while len(specs) < n and attempts < 400:
        attempts += 1
        site = str(rng.choice(list(sites)))
        spec = _draw_spec(rng, site, f"{site}_{len(specs) + 1}")
        bound = spec.bounding_radius_mm() + 2.0 * float(sp.max())
        ok = np.argwhere(depth[_ORGAN_OF_SITE[site]] >= bound)
        if not len(ok):
            continue
        z, y, x = ok[int(rng.integers(len(ok)))]
        centre = np.array([axes[0][x], axes[1][y], axes[2][z]])
        if any(np.linalg.norm(centre - c) < bound + b + 3.0 for c, b in placed):
            continue
        placed.append((centre, bound))
        specs.append(dataclasses.replace(spec, center_mm=tuple(float(v) for v in centre)))
    return specs


def phantom_cohort(
    out_dir: str | os.PathLike[str],
    n_patients: int,
    *,
    seed: int = 0,
    modality: str = "CT",
    spacing: Sequence[float] = COHORT_SPACING,
    n_lesions: tuple[int, int] = (3, 6),
    sites: Sequence[str] = ("lung", "lung", "liver", "lymph_node"),
    prefix: str = "phantom",
) -> Path:
    """Write ``n_patients`` phantoms (``<prefix>_<i>/image.nrrd`` + ``lesions.seg.nrrd``) and
    ``manifest.csv`` (columns patient, image, lesions, modality) into ``out_dir``; returns the manifest.

    ``sites`` are drawn with replacement per lesion (repeat a site to make it more frequent).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_patients):
        pid = f"{prefix}_{i + 1:03d}"
        specs = random_lesion_specs(seed * 1000 + i, n_lesions, spacing, sites)
        patient = make_patient(
            seed * 1000 + i, modality=modality, lesions=specs, spacing=spacing, patient_id=pid
        )
        files = write_patient(patient, out / pid)
        rows.append(
            [pid, os.path.relpath(files["image"], out), os.path.relpath(files["lesions"], out), modality]
        )
    manifest = out / "manifest.csv"
    with atomic_path(manifest) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["patient", "image", "lesions", "modality"])
        writer.writerows(rows)
    return manifest
