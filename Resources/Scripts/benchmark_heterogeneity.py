"""Time the heterogeneity analysis of one large patient (features already computed).

    python Resources/Scripts/benchmark_heterogeneity.py [--lesions 100] [--features 300] [--draws 500]

Prints the time of: min–max scaling + cosine distances + MTD/ATH + CV (``patient_heterogeneity``), the
five sampling strategies with ``--draws`` draws each, the random-k recovery curves (k = 2…15), and the whole
``heterogeneity_report`` (all files written to a temporary folder). Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

try:
    import RadTyperLib  # noqa: F401
except ImportError:  # run from a source checkout without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "RadTyper"))

from RadTyperLib.heterogeneity import (
    cosine_distance_matrix,
    heterogeneity_report,
    minmax_scale,
    patient_heterogeneity,
    recovery_curves,
    simulate_sampling,
)

SITES = ("lung", "liver", "lymph_node", "bone", "pleura")


def synthetic_patient(n_lesions: int, n_features: int, seed: int = 0) -> pd.DataFrame:
    """One patient: lesions spread over 5 sites, features = site centre × lognormal noise."""
    rng = np.random.default_rng(seed)
    sites = rng.choice(SITES, size=n_lesions, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    centres = {s: rng.uniform(1, 100, n_features) for s in SITES}
    x = np.array([centres[s] for s in sites]) * rng.lognormal(0, 0.3, (n_lesions, n_features))
    table = pd.DataFrame(x, columns=[f"radiomics_feat_F{j:03d}" for j in range(n_features)])
    table.insert(0, "lesion", [f"L{i:03d}" for i in range(n_lesions)])
    table.insert(1, "site", sites)
    table["patient"] = "P1"
    return table


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lesions", type=int, default=100)
    p.add_argument("--features", type=int, default=300)
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    table = synthetic_patient(args.lesions, args.features)
    feats = [c for c in table.columns if c.startswith("radiomics_")]
    d = cosine_distance_matrix(minmax_scale(table, feats).to_numpy())
    sites = table["site"].to_numpy()
    print(
        f"patient: {args.lesions} lesions × {args.features} features, {args.draws} draws, best of {args.repeat}"
    )

    t = best_of(lambda: patient_heterogeneity(table, feats), args.repeat)
    print(f"  {'indexes (scaling, cosine distances, MTD, ATH, CV)':<56}: {1e3 * t:8.1f} ms")
    t = best_of(lambda: patient_heterogeneity(table, feats, by="site"), args.repeat)
    print(f"  {'indexes by site':<56}: {1e3 * t:8.1f} ms")
    t = best_of(lambda: simulate_sampling(d, sites, ("random2",), n_draws=args.draws, seed=0), args.repeat)
    print(f"  {f'sampling, 1 strategy (random2) × {args.draws} draws':<56}: {1e3 * t:8.1f} ms")
    t = best_of(lambda: simulate_sampling(d, sites, n_draws=args.draws, seed=0), args.repeat)
    print(f"  {f'sampling, 5 strategies × {args.draws} draws':<56}: {1e3 * t:8.1f} ms")
    t = best_of(
        lambda: simulate_sampling(d, sites, n_draws=args.draws, seed=0, site_pooling="within"), args.repeat
    )
    print(f"  {'sampling, 5 strategies, within-site pooling':<56}: {1e3 * t:8.1f} ms")
    t = best_of(lambda: recovery_curves(d, n_draws=args.draws, seed=0), args.repeat)
    print(f"  {f'recovery curves k = 2…15 × {args.draws} draws':<56}: {1e3 * t:8.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        t = best_of(lambda: heterogeneity_report(table, tmp, n_draws=args.draws), args.repeat)
    print(f"  {'heterogeneity_report (all of it + 6 files, PNG)':<56}: {1e3 * t:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
