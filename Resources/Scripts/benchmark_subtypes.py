"""Time imaging-subtype discovery on a synthetic cohort (features already computed).

    python Resources/Scripts/benchmark_subtypes.py [--patients 1000] [--reps 1000] [--jobs 1] [--budget 600]

Prints: autoencoder training time (discovery set and all patients), PAM time per subsample and k = 2..10,
consensus time per 100 repetitions for each set, then the whole ``discover`` (discovery/validation split 0.6 /
0.4, consensus on discovery, validation and all patients, IGP with 1,000 permutations, 5 × 5-fold purity
CV, files). If the estimated time exceeds ``--budget`` seconds, ``discover`` is run with fewer repetitions
and the time for ``--reps`` is extrapolated (consensus cost is linear in the repetitions; the rest does
not depend on them).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

try:
    import RadTyperLib  # noqa: F401
except ImportError:  # run from a source checkout without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "RadTyper"))

from RadTyperLib.subtypes import discover
from RadTyperLib.subtypes.autoencoder import encode, train_autoencoder
from RadTyperLib.subtypes.consensus import consensus_cluster, correlation_distance
from RadTyperLib.subtypes.data import Scaler, patient_matrix
from RadTyperLib.subtypes.pam import pam_path
from RadTyperLib.subtypes.synthetic import planted_cohort


def _t(f, *a, **k):
    t = time.perf_counter()
    out = f(*a, **k)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for consensus and purity CV")
    ap.add_argument("--budget", type=float, default=600.0, help="run the full discovery only below this (s)")
    ap.add_argument("--probe-reps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    n = args.patients
    table, truth = planted_cohort(n, 4, separation=1.0, factor_sd=0.5, seed=args.seed)
    pm = patient_matrix(table)
    n_disc = n - int(np.ceil(0.4 * n))
    print(
        f"cohort: {n} patients × 313 features (4 planted subtypes); discovery {n_disc}, validation {n - n_disc}"
    )

    # autoencoder
    z_all = Scaler.fit(pm.x).transform(pm.x)
    ae_disc, t_ae_disc = _t(train_autoencoder, z_all[:n_disc])
    ae_all, t_ae_all = _t(train_autoencoder, z_all)
    print(
        f"autoencoder: {t_ae_disc:.1f} s on {n_disc} patients ({ae_disc.best_epoch} best / "
        f"{len(ae_disc.history['train_loss'])} epochs), {t_ae_all:.1f} s on {n} "
        f"({ae_all.best_epoch} / {len(ae_all.history['train_loss'])} epochs), single thread"
    )

    # PAM per subsample and consensus per repetition (sequential), for the three sets
    codes = encode(ae_all.state, z_all)
    per_rep = 0.0
    for label, m in (("all", n), ("discovery", n_disc), ("validation", n - n_disc)):
        d = correlation_distance(codes[:m]).astype(np.float32)
        idx = np.sort(np.random.default_rng(1).choice(m, int(0.8 * m), replace=False))
        sub = d[np.ix_(idx, idx)]
        pam_path(sub, range(2, 11))  # warm-up
        res, t_pam = _t(pam_path, sub, range(2, 11))
        _, t_cc = _t(consensus_cluster, codes[:m], reps=args.probe_reps)
        rep_cost = t_cc / args.probe_reps
        per_rep += rep_cost
        print(
            f"{label:>10}: PAM k=2..10 on {len(idx)} items {t_pam * 1000:.0f} ms "
            f"({sum(r.n_swaps for r in res.values())} swaps); consensus {rep_cost * 100:.1f} s per 100 "
            "repetitions (one process)"
        )
    est_consensus = per_rep * args.reps / max(args.jobs, 1)
    print(
        f"estimated consensus time for {args.reps} repetitions (3 sets, {args.jobs} processes): "
        f"{est_consensus:.0f} s"
    )

    kw = {"n_jobs": args.jobs, "seed": args.seed}
    stamps: list[tuple[float, str]] = []

    def progress(_f: float, msg: str) -> None:
        stamps.append((time.perf_counter(), msg))

    reps = args.reps
    extrapolate = est_consensus > args.budget
    if extrapolate:
        reps = max(10, int(args.reps * args.budget / (2 * est_consensus)))
        print(f"→ estimate above the {args.budget:.0f} s budget: running discover with {reps} repetitions")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        res = discover(table, Path(tmp) / "model", reps=reps, progress=progress, **kw)
        total = time.perf_counter() - t0
        labels = pd.read_csv(Path(tmp) / "model" / "labels.csv", dtype={"patient": str})["subtype"]
    # a stage runs from the first progress message naming it to the first message of the next stage
    first: dict[str, float] = {"reading, per-patient matrix, split": t0}
    for t, msg in stamps:
        first.setdefault(msg.split(":")[0], t)
    names = list(first)
    stages = {
        name: (first[names[i + 1]] if i + 1 < len(names) else t0 + total) - first[name]
        for i, name in enumerate(names)
    }
    print(f"discover ({n} patients, {reps} repetitions, n_jobs={args.jobs}): {total:.0f} s")
    for k, v in stages.items():
        print(f"   {k:<45} {v:7.1f} s")
    print(
        f"   chosen k = {res['k']}, PAC(k) = {res['pac_at_k']:.3f}, IGP = "
        f"{[round(x, 3) for x in res['validation']['igp']['igp']]}, p = {res['validation']['igp']['p_value']}, "
        f"CV purity = {res['purity']['purity']['mean']:.3f}"
    )
    print(
        f"   discovery-set k = {res['validation']['discovery']['chosen_k']}, transfer purity = "
        f"{res['validation']['transfer'].get('purity', float('nan')):.3f}; adjusted Rand of the final subtypes "
        f"vs the 4 planted ones = {adjusted_rand_score(truth, labels):.3f}"
    )
    if extrapolate:
        per = per_rep / max(args.jobs, 1)
        fixed = max(total - per * reps, 0.0)
        print(
            f"extrapolated discover time for {args.reps} repetitions: {fixed + per * args.reps:.0f} s "
            f"({fixed:.0f} s independent of the repetitions + {per:.3f} s per repetition)"
        )


if __name__ == "__main__":
    main()
