"""How reliably the consensus-clustering k rules find the number of planted subtypes (and flag noise).

    python Resources/Scripts/study_k_selection.py [--seeds 12] [--reps 20 100] [--ae-seeds 3] [--out DIR]

Scenarios (each seed = a new data set and a new subsampling):

* ``raw``: k Gaussian clusters in 10 dimensions (centres N(0, sd²), unit noise), clustered directly — the
  setting of ConsensusClusterPlus' own examples; k = 3, 4, 5, 20–30 items per cluster;
* ``ae``: :func:`RadTyperLib.subtypes.synthetic.planted_cohort` (313 features, nuisance factors,
  heteroscedastic noise) → z-scores → the seeded 313-150-10 autoencoder → consensus on the 10 codes, as
  ``radtyper discover`` does; 100–200 patients, k = 4 or 5, separations 0.8–1.0;
* ``noise``: the same without structure (``raw``: N(0, 1) in 10 dimensions; ``ae``: ``planted_cohort(k=0)``).

For every PAC curve, the rules of :mod:`RadTyperLib.subtypes.consensus` are applied: ``pac_min`` (the plain
minimum, the rule of RadTyper ≤ 0.1.0), ``pac`` (lowest local minimum, tolerance → smaller k; the default)
and ``delta`` (Δ-area elbow). Printed per scenario and rule: the fraction of seeds where the chosen k is
the planted k, the mean ARI of the chosen partition with the truth, and for noise the fraction flagged as
weak structure (no local PAC minimum or PAC > 0.2 at the chosen k, as ``discover`` does). ``--out`` writes
every curve and result as CSV.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

try:
    import RadTyperLib  # noqa: F401
except ImportError:  # run from a source checkout without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "RadTyper"))

from RadTyperLib.subtypes.consensus import (
    choose_k,
    choose_k_min_pac,
    choose_k_pac,
    consensus_cluster,
)

KS = range(2, 11)
WEAK_PAC = 0.2


def raw_data(k: int, n_per: int, sd: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k Gaussian clusters (or noise for k = 0) in 10 dimensions."""
    rng = np.random.default_rng(seed)
    if k == 0:
        return rng.normal(size=(n_per, 10)), np.zeros(n_per, dtype=int)
    centres = rng.normal(0.0, sd, (k, 10))
    y = np.repeat(np.arange(k), n_per)
    return centres[y] + rng.normal(0.0, 1.0, (len(y), 10)), y


def ae_data(n: int, k: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Autoencoder codes of a planted cohort, as ``discover`` computes them."""
    import torch

    from RadTyperLib.subtypes.autoencoder import AutoencoderSettings, encode, train_autoencoder
    from RadTyperLib.subtypes.data import Scaler, patient_matrix
    from RadTyperLib.subtypes.synthetic import planted_cohort

    torch.set_num_threads(1)
    table, truth = planted_cohort(n, k, separation=separation, factor_sd=0.5, seed=seed)
    pm = patient_matrix(table)
    z = Scaler.fit(pm.x).transform(pm.x)
    ae = train_autoencoder(z, AutoencoderSettings(seed=seed))
    return encode(ae.state, z), truth


def evaluate(x: np.ndarray, y: np.ndarray, k_true: int, reps: int, seed: int) -> list[dict]:
    """One consensus clustering → one row per rule."""
    from sklearn.metrics import adjusted_rand_score

    res = consensus_cluster(x, ks=KS, reps=reps, seed=seed)
    k_pac, has_min = choose_k_pac(res.pac, res.delta_area)
    _, k_delta = choose_k(res.pac, res.delta_area)
    assert (k_pac, has_min, k_delta) == (res.k_pac, res.pac_local_minimum, res.k_delta)
    rows = []
    for rule, k in (("pac_min", choose_k_min_pac(res.pac)), ("pac", k_pac), ("delta", k_delta)):
        weak = res.pac[k] > WEAK_PAC or (rule == "pac" and not has_min)
        rows.append(
            {
                "rule": rule,
                "k": k,
                "correct_k": k == k_true,
                "ari": float(adjusted_rand_score(y, res.labels[k])) if k_true else np.nan,
                "pac_at_k": res.pac[k],
                "weak": weak,
                **{f"pac_{kk}": res.pac[kk] for kk in res.ks},
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=12, help="data sets per raw scenario (default 12)")
    ap.add_argument("--ae-seeds", type=int, default=3, help="data sets per autoencoder scenario (default 3)")
    ap.add_argument("--reps", type=int, nargs="+", default=[20, 100], help="consensus repetitions")
    ap.add_argument("--out", type=Path, help="folder for the per-run CSV")
    args = ap.parse_args()

    scenarios: list[tuple[str, int, int, float, int]] = []  # (kind, k, size, separation, seeds)
    for k, n_per, sd in ((3, 30, 2.0), (4, 20, 2.0), (4, 25, 1.6), (5, 20, 2.0), (5, 24, 1.6)):
        scenarios.append(("raw", k, n_per, sd, args.seeds))
    scenarios += [("raw", 0, 80, 0.0, args.seeds), ("raw", 0, 150, 0.0, args.seeds)]
    for n, k, sep in ((100, 4, 1.0), (200, 4, 0.8), (120, 5, 0.8)):
        scenarios.append(("ae", k, n, sep, args.ae_seeds))
    scenarios += [("ae", 0, 100, 0.0, args.ae_seeds), ("ae", 0, 200, 0.0, args.ae_seeds)]

    rows = []
    t0 = time.perf_counter()
    for kind, k, size, sep, seeds in scenarios:
        for seed in range(seeds):
            if kind == "raw":
                x, y = raw_data(k, size, sep, seed)
            else:
                x, y = ae_data(size, k, sep, seed)
            for reps in args.reps:
                for r in evaluate(x, y, k, reps, seed):
                    rows.append(
                        {
                            "data": kind,
                            "k_true": k,
                            "size": size,
                            "separation": sep,
                            "seed": seed,
                            "reps": reps,
                            **r,
                        }
                    )
        print(f"… {kind} k={k} size={size} sep={sep}: {time.perf_counter() - t0:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out / "k_selection.csv", index=False)
    keys = ["data", "k_true", "size", "separation", "reps", "rule"]
    summary = (
        df.groupby(keys)
        .agg(
            runs=("k", "size"),
            correct_k=("correct_k", "mean"),
            mean_ari=("ari", "mean"),
            weak=("weak", "mean"),
            median_k=("k", "median"),
        )
        .reset_index()
    )
    table = summary.pivot_table(
        index=["data", "k_true", "size", "separation", "reps"],
        columns="rule",
        values=["correct_k", "mean_ari", "weak"],
    )
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table.round(2).to_string())
    if args.out:
        table.round(3).to_csv(args.out / "k_selection_summary.csv")


if __name__ == "__main__":
    main()
