"""Spread over seeds of the figures asserted by tests whose numbers depend on training / floating-point order.

Tests that train a network or a clustering (Testing/test_unet_train.py, test_subtypes_autoencoder.py,
test_subtypes_discover.py, test_subtypes_cohort_validation.py, the reduced rebuild of
test_subtypes_default_model.py) are deterministic on one machine (one thread,
``torch.use_deterministic_algorithms``, single-threaded BLAS / OpenMP, fixed seeds), but their floating-point
order depends on the CPU's vector width, so another machine trains another (equally valid) model. Their bounds are therefore set from the spread of
each asserted figure over seeds, measured by this script (table: Resources/Docs/test-spread.md):

    PYTHONPATH=RadTyper .venv/bin/python Resources/Scripts/study_test_spread.py --test unet --seeds 0 1 2 3 4
    PYTHONPATH=RadTyper .venv/bin/python Resources/Scripts/study_test_spread.py --test autoencoder
    PYTHONPATH=RadTyper .venv/bin/python Resources/Scripts/study_test_spread.py --test discover
    PYTHONPATH=RadTyper .venv/bin/python Resources/Scripts/study_test_spread.py --test discover-noise
    PYTHONPATH=RadTyper .venv/bin/python Resources/Scripts/study_test_spread.py --test default-model-reduced
    PYTHONPATH=RadTyper .venv/bin/python Resources/Scripts/study_test_spread.py --test cohort-validation

Prints one line per seed and the minimum / maximum of every asserted figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Testing"))


def unet_row(seed: int, tmp: Path, cache: dict) -> dict:
    """Figures of Testing/test_unet_train.py for one training seed."""
    from test_unet_train import SETTINGS, SPACING

    from RadTyperLib.phantoms import make_patient
    from RadTyperLib.segmentation.unet import evaluate_case, segment_lesions
    from RadTyperLib.segmentation.unet.synthetic import phantom_cohort, random_lesion_specs
    from RadTyperLib.segmentation.unet.train import train_unet

    if "cohort" not in cache:
        cache["cohort"] = phantom_cohort(tmp / "c", 6, seed=2, spacing=SPACING, sites=("lung",))
        specs = random_lesion_specs(77, (3, 6), SPACING, ("lung",))
        cache["pat"] = make_patient(77, lesions=specs, spacing=SPACING, patient_id="heldout")
    pat = cache["pat"]
    tr = train_unet(cache["cohort"], tmp / f"m{seed}", replace(SETTINGS, seed=seed))
    res = segment_lesions(pat.image, tr.directory, modality="CT")
    ev = evaluate_case(
        np.asarray(pat.label_array()),
        res.labels,
        pat.image.GetSpacing(),
        truth_names={les.label: les.name for les in pat.lesions},
    )
    above = [r for r in ev.lesions if r["volume_cm3"] * 1000 >= res.min_size_mm3]
    return {
        "val_dice": tr.val_dice,
        "heldout_dice": ev.case["dice"],
        "detected_above": sum(bool(r["detected"]) for r in above),
        "n_above": len(above),
        "false_positive": ev.case["n_false_positive"],
        "loss_ratio": tr.history[-1]["train_loss"] / tr.history[0]["train_loss"],
    }


def autoencoder_row(seed: int, tmp: Path, cache: dict) -> dict:
    """Figures of Testing/test_subtypes_autoencoder.py (its data, training seed ``seed``)."""
    import torch
    from test_subtypes_autoencoder import _data

    from RadTyperLib.subtypes.autoencoder import AutoencoderSettings, encode, reconstruct, train_autoencoder

    z = _data()
    model = train_autoencoder(z, AutoencoderSettings(max_epochs=60, patience=10, seed=seed))
    lin0, lin2 = torch.nn.Linear(313, 150), torch.nn.Linear(150, 10)
    with torch.no_grad():
        for lin, name in ((lin0, "encoder.0"), (lin2, "encoder.2")):
            lin.weight.copy_(torch.from_numpy(model.state[f"{name}.weight"]))
            lin.bias.copy_(torch.from_numpy(model.state[f"{name}.bias"]))
        ref = lin2(torch.relu(lin0(torch.from_numpy(z.astype(np.float32))))).numpy()
    return {
        "mse_over_variance": float(
            ((reconstruct(model.state, z) - z) ** 2).mean() / ((z - z.mean(0)) ** 2).mean()
        ),
        "numpy_vs_torch_codes": float(np.abs(encode(model.state, z) - ref).max()),
        "epochs": len(model.history["val_loss"]),
    }


def discover_row(seed: int, tmp: Path, cache: dict) -> dict:
    """Figures of Testing/test_subtypes_discover.py's ``planted`` fixture with data and discovery seed ``seed``."""
    from sklearn.metrics import adjusted_rand_score
    from test_subtypes_discover import FAST

    from RadTyperLib.subtypes import discover, predict
    from RadTyperLib.subtypes.synthetic import planted_cohort

    table, truth = planted_cohort(300, 4, separation=1.0, factor_sd=0.5, lesions_per_patient=2, seed=seed)
    out = tmp / f"planted{seed}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = discover(table, out, **{**FAST, "seed": seed})
        pred = predict(out, table)
    import pandas as pd

    labels = pd.read_csv(out / "labels.csv", dtype={"patient": str})
    igp = res["validation"]["igp"]
    p = np.array(igp["p_value"], dtype=float)
    return {
        "k": res["k"],
        "adjusted_rand": adjusted_rand_score(truth, labels["subtype"]),
        "pac_at_k": res["pac_at_k"],
        "min_igp": min(igp["igp"]),
        "mean_igp": float(np.mean(igp["igp"])),
        "max_igp_p": float(p.max()),
        "median_igp_p": float(np.median(p)),
        "n_igp_p_below_0.1": int(np.sum(p < 0.1)),
        "cramers_p": res["cramers_v"]["p_value"],
        "transfer_purity": res["validation"]["transfer"]["purity"],
        "learnability_min_purity": res["label_learnability"]["purity"]["min"],
        "cramers_v": res["cramers_v"]["cramers_v"],
        "in_domain": float(pred["in_domain"].mean()),
        "predict_agrees": float((pred["subtype"].to_numpy() == labels["subtype"].to_numpy()).mean()),
    }


def discover_noise_row(seed: int, tmp: Path, cache: dict) -> dict:
    """Figures of Testing/test_subtypes_discover.py's ``noise`` fixture with data and discovery seed ``seed``."""
    from test_subtypes_discover import FAST

    from RadTyperLib.subtypes import discover
    from RadTyperLib.subtypes.synthetic import planted_cohort

    table, _ = planted_cohort(200, 0, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = discover(
            table,
            tmp / f"noise{seed}",
            **{**FAST, "seed": seed, "purity_repeats": 0, "clf_max_iter": 5, "igp_permutations": 500},
        )
    p = np.array([v for v in res["validation"]["igp"]["p_value"] if v is not None], dtype=float)
    return {
        "k": res["k"],
        "weak_structure": int(res["weak_structure"]),
        "pac_local_minimum": int(res["consensus"]["pac_local_minimum"]),
        "discovery_pac_local_minimum": int(res["validation"]["discovery"]["pac_local_minimum"]),
        "min_pac": min(res["consensus"]["pac"].values()),
        "min_pac_discovery": min(res["validation"]["discovery"]["pac"].values()),
        "median_igp_p": float(np.median(p)),
        "fraction_igp_p_below_0.05": float(np.mean(p < 0.05)),
        "mean_igp": float(np.mean(res["validation"]["igp"]["igp"])),
    }


def default_model_reduced_row(seed: int, tmp: Path, cache: dict) -> dict:
    """Figures of Testing/test_subtypes_default_model.py's reduced rebuild (slow test) with cohort seed ``seed``."""
    from RadTyperLib.subtypes.default_model import build_synthetic_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = build_synthetic_model(
            tmp / f"m{seed}",
            n_per_profile=20,
            seed=seed,
            reps=100,
            k=4,
            discover_settings={"igp_permutations": 200, "purity_repeats": 1},
            command="study",
        )
    agree = record["agreement_with_profiles"]
    spiculated = next(s for s, p in agree["subtype_to_profile"].items() if p == "P4")
    return {
        "adjusted_rand": agree["adjusted_rand"],
        "matched_fraction": agree["matched_fraction"],
        "p4_in_its_subtype": agree["table"][spiculated]["P4"],
    }


def cohort_validation_row(seed: int, tmp: Path, cache: dict) -> dict:
    """Figures of Testing/test_subtypes_cohort_validation.py with data and discovery seed ``seed``."""
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score
    from test_subtypes_cohort_validation import FAST, multi_cohort

    from RadTyperLib.subtypes import discover

    row: dict = {}
    results = {}
    for name, held in (("same", (0, 1, 2)), ("new", (0, 1, 3, 4))):
        table, truth = multi_cohort(held, seed=seed)
        out = tmp / f"{name}{seed}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = discover(table, out, validation_cohort="cohort", **{**FAST, "seed": seed})
        labels = pd.read_csv(out / "labels.csv", dtype={"patient": str}).set_index("patient")["subtype"]
        row[f"{name}_adjusted_rand"] = adjusted_rand_score(truth, labels.loc[truth.index])
        results[name] = res
    same, new = results["same"], results["new"]
    row["same_k"] = same["k"]
    row["same_validation_k"] = same["validation"]["validation"]["chosen_k"]
    row["same_purity"] = same["purity"]["purity"]
    row["same_purity_adjusted_rand"] = same["purity"]["adjusted_rand"]
    row["same_transfer_adjusted_rand"] = same["validation"]["transfer"]["at_discovery_k"]["adjusted_rand"]
    row["new_discovery_k"] = new["validation"]["discovery"]["chosen_k"]
    row["new_validation_k"] = new["validation"]["validation"]["chosen_k"]
    row["new_purity"] = new["purity"]["purity"]
    row["purity_adjusted_rand_drop"] = same["purity"]["adjusted_rand"] - new["purity"]["adjusted_rand"]
    return row


STUDIES = {
    "unet": unet_row,
    "autoencoder": autoencoder_row,
    "discover": discover_row,
    "discover-noise": discover_noise_row,
    "default-model-reduced": default_model_reduced_row,
    "cohort-validation": cohort_validation_row,
}


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", choices=sorted(STUDIES), default="unet", help="which test's figures")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    cache: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            t0 = time.perf_counter()
            row = {"seed": seed, **STUDIES[args.test](seed, Path(tmp), cache)}
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(
                " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                flush=True,
            )
    for key in rows[0]:
        if key in ("seed", "seconds"):
            continue
        vals = [r[key] for r in rows]
        print(
            f"{args.test} {key}: min {min(vals):.4g} max {max(vals):.4g} over {len(vals)} seeds", flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
