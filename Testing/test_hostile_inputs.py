"""Hostile-input property test: random masks through the per-lesion pipeline (issue 13).

18 seeded random masks (2 of each kind: tiny, thin plate, needle, ring, many components, hollow ball, ball with
holes, cut by the border, random blob; isotropic, anisotropic and oblique grids) must each give a row whose
values are all finite and within their physical ranges (``hostile_masks.check_row``), or a clear per-lesion
error: a one-line :class:`LesionError` naming the lesion, or a row with its reason in ``qc_error``. Never another
exception. The large run (300 masks, with counts) is ``Resources/Scripts/hostile_inputs.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from hostile_masks import KINDS, check_row, hostile_case

from RadTyperLib.errors import LesionError
from RadTyperLib.features import FeatureSettings, lesion_features
from RadTyperLib.patient import Lesion, Patient

SEEDS = list(range(2 * len(KINDS)))


@pytest.mark.parametrize("seed", SEEDS)
def test_random_mask_gives_a_sound_row_or_a_clear_lesion_error(seed):
    case = hostile_case(seed)
    name = f"hostile_{seed}"
    patient = Patient(case.image, case.labels, [Lesion(1, name)], modality="CT")
    try:
        res = lesion_features(patient, name, FeatureSettings(radiomics=seed % 6 == 0))
    except LesionError as exc:
        assert name in str(exc) and exc.problem and "\n" not in str(exc), case.label
        return
    if str(res.row.get("qc_error", "") or "").strip():  # a per-lesion refusal recorded in the row
        return
    mask = sitk.GetArrayViewFromImage(case.labels) > 0
    sp = np.array(case.spacing)
    idx = np.argwhere(mask)
    box = (idx.max(axis=0) - idx.min(axis=0) + 1)[::-1] * sp
    bad = check_row(res.row, int(mask.sum()), float(np.prod(sp)), float(np.linalg.norm(box)) + 1e-6)
    assert not bad, f"{case.label}: {bad}"


def test_the_generator_covers_every_kind_and_grid():
    cases = [hostile_case(s) for s in SEEDS]
    assert {c.kind for c in cases} == set(KINDS)
    assert any(c.oblique for c in cases) and any(not c.oblique for c in cases)
    assert len({c.spacing for c in cases}) >= 3
    assert any(max(c.spacing) / min(c.spacing) >= 5 for c in cases)  # strongly anisotropic
    assert hostile_case(5).kind == hostile_case(5).kind and np.array_equal(
        sitk.GetArrayFromImage(hostile_case(5).labels), sitk.GetArrayFromImage(hostile_case(5).labels)
    )
