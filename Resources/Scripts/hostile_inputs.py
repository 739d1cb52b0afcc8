"""Throw many random hostile masks at the per-lesion pipeline and count the outcomes (issue 13).

Each seed gives one mask (tiny, plate, needle, ring, many components, hollow, holes, border, random blob) on
an isotropic, anisotropic or oblique grid (``Testing/hostile_masks.py``). Every case must either give a row
whose values are all finite and inside their physical ranges, or a clear per-lesion error (LesionError, or a
row with ``qc_error``). Anything else (another exception, a non-finite or out-of-range value) is a failure.

    PYTHONPATH=RadTyper .venv/bin/python Resources/Scripts/hostile_inputs.py --n 300 [--radiomics]

Prints one line per refused or failed case and the totals; exit code 1 when any case failed.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Testing"))


def run_case(seed: int, radiomics: bool) -> tuple[str, str]:
    """("ok" | "refused" | "FAILED", detail) of one seed."""
    import numpy as np
    import SimpleITK as sitk
    from hostile_masks import check_row, hostile_case

    from RadTyperLib.errors import LesionError, RadTyperError
    from RadTyperLib.features import FeatureSettings, lesion_features
    from RadTyperLib.patient import Lesion, Patient

    case = hostile_case(seed)
    name = f"hostile_{seed}"
    try:
        patient = Patient(case.image, case.labels, [Lesion(1, name)], modality="CT")
        res = lesion_features(patient, name, FeatureSettings(radiomics=radiomics))
    except LesionError as exc:
        text = str(exc)
        if name not in text or "\n" in text:
            return "FAILED", f"{case.label}: unclear error {text!r}"
        return "refused", f"{case.label}: {exc.problem}"
    except RadTyperError as exc:
        return "refused", f"{case.label}: {exc}"
    except Exception as exc:  # any other exception is a crash
        return "FAILED", f"{case.label}: {type(exc).__name__}: {exc}"
    if str(res.row.get("qc_error", "") or "").strip():
        return "refused", f"{case.label}: qc_error {res.row['qc_error']}"
    mask = sitk.GetArrayViewFromImage(case.labels) > 0
    sp = np.array(case.spacing)
    idx = np.argwhere(mask)
    box = (idx.max(axis=0) - idx.min(axis=0) + 1)[::-1] * sp
    bad = check_row(res.row, int(mask.sum()), float(np.prod(sp)), float(np.linalg.norm(box)) + 1e-6)
    if bad:
        return "FAILED", f"{case.label}: {'; '.join(bad[:5])}"
    return "ok", case.label


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="number of random masks (default 300)")
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--radiomics", action="store_true", help="also the pyradiomics features")
    args = parser.parse_args()
    counts: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    t0 = time.perf_counter()
    for seed in range(args.start, args.start + args.n):
        status, detail = run_case(seed, args.radiomics)
        counts[status] += 1
        if status != "ok":
            print(f"{status}: {detail}", flush=True)
            if status == "refused":
                reasons[detail.split(": ", 2)[-1].split(":")[0].split(" (")[0][:70]] += 1
    print(
        f"hostile inputs: {args.n} masks tried, {counts['ok']} sound rows, {counts['refused']} refused with a "
        f"reason, {counts['FAILED']} failed (non-finite / out of range / crash) in {time.perf_counter() - t0:.0f} s"
    )
    for reason, n in reasons.most_common():
        print(f"  refused {n}×: {reason}")
    return 1 if counts["FAILED"] else 0


if __name__ == "__main__":
    sys.exit(main())
