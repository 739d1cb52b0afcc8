"""U-Net training on synthetic phantoms: validation Dice, held-out detection, bundle, determinism, bad input.

The main fixture trains (one CPU thread, ~35 s) a small U-Net (depth 3, 8 base channels, dilations 1-2-4) on 6
phantom patients with 3–6 random lung nodules each, 2.5 × 2.5 × 5 mm voxels, patient-level split 4 / 2.
Measured on the development machine: validation Dice 0.907 (best epoch 8 of 9); on the held-out phantom
(seed 77) all 3 lesions found (Dice 0.98, 0.98, 0.78), patient Dice 0.956, 1 false-positive component.
Training is deterministic on one machine (one thread, seeded), but its floating-point order depends on the
CPU (vector width of the kernels): another machine trains another, equally valid network — as another seed
does (a fresh machine measured held-out Dice 0.7992 with seed 0). The bounds below are therefore derived from
the spread over training seeds 0–9 on this machine (``Resources/Scripts/study_test_spread.py``): validation
Dice 0.837–0.955, held-out Dice 0.730–0.977, above-size lesions found 2–3 of 3, false-positive components 0–7,
final / first training loss 0.028–0.341; each bound lies outside that range with a margin.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from RadTyperLib.cohort import read_manifest  # noqa: E402
from RadTyperLib.errors import InputError  # noqa: E402
from RadTyperLib.features import Cancelled  # noqa: E402
from RadTyperLib.phantoms import make_patient  # noqa: E402
from RadTyperLib.segmentation.unet import evaluate_case, load_unet_bundle, segment_lesions  # noqa: E402
from RadTyperLib.segmentation.unet.data import (  # noqa: E402
    Augmentation,
    CaseVolume,
    PatchSampler,
    split_patients,
)
from RadTyperLib.segmentation.unet.synthetic import phantom_cohort, random_lesion_specs  # noqa: E402
from RadTyperLib.segmentation.unet.train import TrainSettings, dice_bce_loss, train_unet  # noqa: E402

SPACING = (2.5, 2.5, 5.0)
SETTINGS = TrainSettings(
    depth=3,
    base_channels=8,
    dilations=(1, 2, 4),
    patch_size=64,
    batch_size=8,
    steps_per_epoch=40,
    max_epochs=9,
    patience=3,
    learning_rate=3e-3,
    validation_fraction=0.25,
    min_size_mm3=100.0,
    seed=0,
    threads=1,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lung_cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("lung-phantoms")
    return phantom_cohort(d, 6, seed=2, spacing=SPACING, sites=("lung",))


@pytest.fixture(scope="module")
def trained(lung_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "lung-unet"
    return train_unet(lung_cohort, out, SETTINGS)


def test_training_reaches_a_validation_dice(trained, lung_cohort):
    assert trained.val_dice is not None and trained.val_dice >= 0.75  # seeds 0-9: 0.837-0.955
    patients = [c.patient for c in read_manifest(lung_cohort)]
    assert sorted(trained.train_patients + trained.val_patients) == patients
    assert len(trained.val_patients) == 2 and not set(trained.train_patients) & set(trained.val_patients)
    best = max(h["val_dice"] for h in trained.history)
    assert trained.val_dice == best == trained.history[trained.best_epoch - 1]["val_dice"]
    assert trained.history[-1]["train_loss"] < 0.6 * trained.history[0]["train_loss"]  # seeds: ≤ 0.341


def test_heldout_phantom_lesions_above_the_size_limit_are_found(trained):
    specs = random_lesion_specs(77, (3, 6), SPACING, ("lung",))
    pat = make_patient(77, lesions=specs, spacing=SPACING, patient_id="heldout")
    res = segment_lesions(pat.image, trained.directory, modality="CT")
    assert res.min_size_mm3 == 100.0
    ev = evaluate_case(
        np.asarray(pat.label_array()),
        res.labels,
        pat.image.GetSpacing(),
        truth_names={les.label: les.name for les in pat.lesions},
    )
    above = [r for r in ev.lesions if r["volume_cm3"] * 1000 >= res.min_size_mm3]
    assert len(above) == 3
    # seeds 0-9 (a stand-in for other machines): 2-3 of 3 found, Dice 0.730-0.977, 0-7 false positives
    assert sum(bool(r["detected"]) for r in above) >= 2, ev.lesions
    assert ev.case["dice"] >= 0.6
    assert ev.case["n_false_positive"] <= 10
    assert res.names == [f"lesion_{i}" for i in range(1, len(res.names) + 1)]
    assert res.volumes_mm3 == sorted(res.volumes_mm3, reverse=True)


def test_bundle_files_and_round_trip(trained):
    d = trained.directory
    assert {p.name for p in d.iterdir()} >= {"model.pt", "model.json", "loss_curve.png", "history.csv"}
    assert (d / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(d / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(trained.history) and set(rows[0]) == {
        "epoch",
        "train_loss",
        "val_dice",
        "elapsed_s",
    }
    meta = json.loads((d / "model.json").read_text())
    t = meta["training"]
    assert meta["modality"] == "CT" and meta["spacing_mm"] == 2.5 and meta["patch_size"] == 64
    assert t["validation_patients"] == trained.val_patients and t["seed"] == 0
    assert t["validation_dice"] == pytest.approx(trained.val_dice) and t["epochs_run"] == len(trained.history)
    assert meta["torch_version"] == torch.__version__ and t["settings"]["dilations"] == [1, 2, 4]
    # the saved model predicts exactly like the trained one in memory
    pat = make_patient(5, lesions=random_lesion_specs(5, (3, 4), SPACING, ("lung",)), spacing=SPACING)
    a = segment_lesions(pat.image, trained.bundle, modality="CT", keep_probability=True)
    b = segment_lesions(pat.image, load_unet_bundle(d), modality="CT", keep_probability=True)
    assert np.array_equal(a.probability, b.probability) and np.array_equal(a.labels, b.labels)


# --- small and fast ----------------------------------------------------------------------------------------
TINY = TrainSettings(
    depth=2,
    base_channels=4,
    dilations=(1, 2),
    patch_size=32,
    batch_size=2,
    steps_per_epoch=3,
    max_epochs=2,
    validation_fraction=0.5,
    threads=1,
)


def _state_equal(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_training_is_deterministic_for_a_seed(lung_cohort, tmp_path):
    cases = read_manifest(lung_cohort)[:3]
    r1 = train_unet(cases, tmp_path / "a", TINY)
    r2 = train_unet(cases, tmp_path / "b", TINY)
    r3 = train_unet(cases, tmp_path / "c", TrainSettings(**{**TINY.__dict__, "seed": 1}))
    assert _state_equal(r1.bundle.state, r2.bundle.state)
    assert [h["train_loss"] for h in r1.history] == [h["train_loss"] for h in r2.history]
    assert not _state_equal(r1.bundle.state, r3.bundle.state)


def test_cancel_writes_nothing(lung_cohort, tmp_path):
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 4

    with pytest.raises(Cancelled, match="training cancelled"):
        train_unet(read_manifest(lung_cohort)[:2], tmp_path / "m", TINY, should_cancel=cancel)
    assert not (tmp_path / "m" / "model.json").exists()


def test_progress_reaches_one(lung_cohort, tmp_path):
    seen: list[float] = []
    train_unet(read_manifest(lung_cohort)[:2], tmp_path / "m", TINY, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_bad_training_input(lung_cohort, tmp_path):
    cases = read_manifest(lung_cohort)
    with pytest.raises(InputError, match="a validation split needs at least 2 patients, got 1"):
        train_unet(cases[:1], tmp_path / "m", TINY)
    # one patient works without validation: the last epoch is kept
    r = train_unet(cases[:1], tmp_path / "m", TrainSettings(**{**TINY.__dict__, "validation_fraction": 0.0}))
    assert r.val_dice is None and r.best_epoch == TINY.max_epochs
    # declared MR for a CT image
    mixed = tmp_path / "mixed.csv"
    with open(lung_cohort, newline="") as fh:
        rows = list(csv.reader(fh))
    for row in rows[1:]:
        row[1:3] = [str(lung_cohort.parent / row[1]), str(lung_cohort.parent / row[2])]
    rows[2][3] = "MR"
    with open(mixed, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(InputError, match=r"the manifest mixes modalities \['CT', 'MR'\]"):
        train_unet(mixed, tmp_path / "x", TINY)
    with pytest.raises(InputError, match="differs from the training modality MR"):
        train_unet(read_manifest(lung_cohort)[:2], tmp_path / "x", TINY, modality="MR")
    with pytest.raises(InputError, match="batch_size must be ≥ 1"):
        TrainSettings(batch_size=0)


# --- data pieces -------------------------------------------------------------------------------------------
def test_patient_level_split():
    pats = [f"p{i}" for i in range(10)]
    train, val = split_patients(pats, 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == pats and not set(train) & set(val)
    assert split_patients(pats, 0.2, seed=3) == (train, val)
    assert split_patients(pats, 0.0) == (pats, [])
    assert len(split_patients(pats[:2], 0.9)[1]) == 1  # always at least one training patient
    with pytest.raises(InputError, match="duplicate patient ids"):
        split_patients(["a", "a"], 0.5)


def _toy_case() -> CaseVolume:
    img = np.zeros((6, 40, 40), np.float32)
    mask = np.zeros(img.shape, bool)
    mask[2:4, 10:14, 25:29] = True  # one small lesion
    img[mask] = 1.0
    return CaseVolume("toy", img, mask, (1.0, 1.0, 2.0), 1, [np.argwhere(mask).astype(np.int32)])


def test_patches_oversample_lesions_and_augmentation_keeps_image_and_mask_aligned():
    case = _toy_case()
    sampler = PatchSampler(
        [case], 16, lesion_fraction=0.8, augmentation=Augmentation(intensity_jitter=0.0), seed=1
    )
    x, y = sampler.batch(400)
    assert x.shape == (400, 1, 16, 16) and y.shape == (400, 1, 16, 16)
    with_lesion = (y.reshape(400, -1).max(axis=1) > 0).mean()
    assert 0.75 <= with_lesion <= 0.9  # 80 % lesion-centred + the few random patches that hit it
    np.testing.assert_array_equal(x, y)  # image = mask here: flips / rotations applied to both alike
    # 2.5-D context: neighbouring slices as channels, clamped at the volume ends
    x3, _ = PatchSampler([case], 16, context_slices=1, lesion_fraction=1.0, seed=2).batch(5)
    assert x3.shape == (5, 3, 16, 16)
    jitter = Augmentation(flips=False, rotations=False, intensity_jitter=0.1)
    xj, yj = jitter.apply(
        np.ones((1, 4, 4), np.float32), np.ones((4, 4), np.float32), np.random.default_rng(0)
    )
    assert np.all(xj == xj.flat[0]) and 0.85 <= xj.flat[0] <= 1.15 and np.all(yj == 1)


def test_dice_bce_loss_value():
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.ones(1, 1, 2, 2)
    # BCE = ln 2; soft Dice = (2·0.5·4 + 1) / (0.5·4 + 4 + 1) = 5/7
    assert float(dice_bce_loss(logits, target)) == pytest.approx(np.log(2) + 2 / 7, abs=1e-6)
    assert float(dice_bce_loss(logits, target, bce_weight=0.0)) == pytest.approx(2 / 7, abs=1e-6)
    perfect = torch.full((1, 1, 2, 2), 30.0)
    assert float(dice_bce_loss(perfect, target)) < 1e-6
