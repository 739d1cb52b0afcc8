"""How many pyradiomics features pass Henry et al.'s robustness filter on the 1 mm grid vs the native grid.

Real cases from ``../shared/data`` (skipped when absent): the IBSI soft-tissue sarcomas (CT and MR T1) and
pyradiomics' five cases, in two sets (CT: STS CT + lung1, lung2; MR: STS MR + brain1, brain2, breast1). For every
lesion the 107 default pyradiomics features are computed on the original, 1 mm eroded and 1 mm dilated masks
(``perturbed_feature_tables``) with ``grid="1mm"`` (Henry: resample to 1 mm, then perturb) and ``grid="native"``
(perturb on the image grid, radius max(1 mm, finest spacing)); Lin's CCC ≥ 0.8 for both perturbations across the
lesions of a set = robust. Prints one line per set and grid and writes ``<out>/ccc_<set>_<grid>.csv``.

Usage: ``PYTHONPATH=RadTyper python Resources/Scripts/study_robust_grid.py [--out DIR]`` (about 10 min, one core).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def cases() -> dict[str, list[tuple[str, Path, Path]]]:
    sts = DATA / "ibsi-sts"
    pyr = DATA / "pyradiomics-cases"
    out: dict[str, list[tuple[str, Path, Path]]] = {"CT": [], "MR": []}
    for d in sorted(sts.glob("STS_*")):
        for mod, stem in (("CT", "CT"), ("MR", "MR_T1")):
            img, msk = d / f"{stem}_image.nii.gz", d / f"{stem}_mask.nii.gz"
            if img.is_file() and msk.is_file():
                out[mod].append((f"{d.name}_{mod}", img, msk))
    for name, mod in (
        ("lung1", "CT"),
        ("lung2", "CT"),
        ("brain1", "MR"),
        ("brain2", "MR"),
        ("breast1", "MR"),
    ):
        img, msk = pyr / f"{name}_image.nrrd", pyr / f"{name}_label.nrrd"
        if img.is_file():
            out[mod].append((name, img, msk))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="robust-grid-study")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"no real data at {DATA}: nothing to do")
        return 0
    from RadTyperLib.heterogeneity.robust import ccc_table, perturbed_feature_tables
    from RadTyperLib.io import load_patient
    from RadTyperLib.pyradiomics_features import radiomics_features

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for mod, items in cases().items():
        for grid in ("native", "1mm"):
            tables: dict[str, list[pd.DataFrame]] = {"original": [], "eroded": [], "dilated": []}
            t0 = time.perf_counter()
            for name, img, msk in items:
                patient = load_patient(img, msk, patient_id=name, modality=mod)

                def compute(p, mask, lesion):
                    return radiomics_features(p.image, mask, lesion=lesion, modality=p.modality)

                for kind, t in perturbed_feature_tables(patient, compute, 1.0, grid=grid).items():
                    tables[kind].append(t)
            frames = {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}
            ccc = ccc_table(frames["original"], frames["eroded"], frames["dilated"])
            ccc.to_csv(out / f"ccc_{mod}_{grid}.csv", float_format="%.6g")
            n_les = int(frames["original"]["qc_error"].fillna("").eq("").sum())
            print(
                f"{mod} ({n_les} lesions): grid {grid:6s}: {int(ccc['robust'].sum())} of {len(ccc)} features "
                f"robust (CCC ≥ 0.8 eroded and dilated) [{time.perf_counter() - t0:.0f} s]",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
