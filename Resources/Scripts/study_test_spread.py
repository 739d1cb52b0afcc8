"""Spread over training seeds of the figures asserted by Testing/test_unet_train.py (machine-dependent).

The U-Net test trains one small network and checks the validation Dice and the held-out phantom's Dice /
detections. Training is deterministic on one machine (one thread, deterministic algorithms) but its floating-
point order depends on the CPU's vector width, so another machine gives another (equally valid) network.
The test bounds are therefore derived from the spread over training seeds, measured by this script:

    PYTHONPATH=RadTyper .venv/bin/python Resources/Scripts/study_test_spread.py --seeds 0 1 2 3 4

Prints one line per seed and the minimum / maximum of every asserted figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Testing"))


def main() -> int:
    import torch
    from test_unet_train import SETTINGS, SPACING

    from RadTyperLib.phantoms import make_patient
    from RadTyperLib.segmentation.unet import evaluate_case, segment_lesions
    from RadTyperLib.segmentation.unet.synthetic import phantom_cohort, random_lesion_specs
    from RadTyperLib.segmentation.unet.train import train_unet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cohort = phantom_cohort(Path(tmp) / "c", 6, seed=2, spacing=SPACING, sites=("lung",))
        specs = random_lesion_specs(77, (3, 6), SPACING, ("lung",))
        pat = make_patient(77, lesions=specs, spacing=SPACING, patient_id="heldout")
        for seed in args.seeds:
            t0 = time.perf_counter()
            tr = train_unet(cohort, Path(tmp) / f"m{seed}", replace(SETTINGS, seed=seed))
            res = segment_lesions(pat.image, tr.directory, modality="CT")
            ev = evaluate_case(
                np.asarray(pat.label_array()),
                res.labels,
                pat.image.GetSpacing(),
                truth_names={les.label: les.name for les in pat.lesions},
            )
            above = [r for r in ev.lesions if r["volume_cm3"] * 1000 >= res.min_size_mm3]
            row = {
                "seed": seed,
                "val_dice": tr.val_dice,
                "heldout_dice": ev.case["dice"],
                "detected_above": sum(bool(r["detected"]) for r in above),
                "n_above": len(above),
                "false_positive": ev.case["n_false_positive"],
                "loss_ratio": tr.history[-1]["train_loss"] / tr.history[0]["train_loss"],
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            print(
                " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                flush=True,
            )
    for key in ("val_dice", "heldout_dice", "detected_above", "false_positive", "loss_ratio"):
        vals = [r[key] for r in rows]
        print(f"{key}: min {min(vals):.4f} max {max(vals):.4f} over {len(vals)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
