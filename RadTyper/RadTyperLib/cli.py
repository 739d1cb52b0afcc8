"""The ``radtyper`` command line. Each subcommand is a small function over the core library.

Errors in the user's input are reported as one line ``radtyper: error: …`` with exit code 2; nothing is
written half-way (outputs are written atomically or staged and moved into place at the end).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputError, RadTyperError
from .io import read_feature_table
from .patient import Patient
from .summary import lesion_summary

Handler = Callable[[argparse.Namespace], int]


# --- info -------------------------------------------------------------------------------------------------
def _looks_like_label_map(path: Path) -> bool:
    """Integer image, few distinct non-negative values, mostly 0: a lesion/organ mask rather than an image."""
    import SimpleITK as sitk

    from .io import read_image

    image = read_image(path)  # keep a reference: the array view does not own the voxels
    arr = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(arr.dtype, np.integer) and np.any(arr != np.round(arr)):
        return False
    values, counts = np.unique(arr, return_counts=True)
    background_first = values[0] == 0 and counts[0] == counts.max()  # masks are mostly background
    return bool(values.min() >= 0 and values.size <= 256 and background_first)


def _lesion_rows(patient: Patient) -> list[dict]:
    rows = lesion_summary(patient)
    for row in rows:
        row["volume_mm3"] = round(row["volume_mm3"], 3)
        row["centroid_lps_mm"] = [round(row.pop(f"centroid_{a}_lps_mm"), 3) for a in "xyz"]
    return rows


def describe_file(path: str | Path) -> dict:
    """Describe one file: image geometry, or the lesions of a mask / ``.seg.nrrd``, or a sites table."""
    import SimpleITK as sitk

    from .io import is_seg_nrrd, read_image, read_lesions, read_sites_csv

    p = Path(path)
    if p.suffix.lower() == ".csv":
        return {"file": str(p), "kind": "sites", "sites": read_sites_csv(p)}
    if is_seg_nrrd(p) or _looks_like_label_map(p):
        labels, lesions = read_lesions(p)
        kind = "segmentation"
        ref = labels
    else:
        ref = read_image(p)
        kind, lesions = "image", []
    info: dict = {
        "file": str(p),
        "kind": kind,
        "size": list(ref.GetSize()),
        "spacing_mm": [round(v, 6) for v in ref.GetSpacing()],
        "origin_lps_mm": [round(v, 4) for v in ref.GetOrigin()],
        "direction": [round(v, 6) for v in ref.GetDirection()],
        "pixel_type": ref.GetPixelIDTypeAsString(),
    }
    if kind == "image":
        from .io import guess_modality

        arr = sitk.GetArrayViewFromImage(ref)
        info.update(
            minimum=float(arr.min()),
            maximum=float(arr.max()),
            mean=float(arr.mean()),
            modality_guess=guess_modality(ref),
        )
    else:
        patient = Patient(image=ref, labels=ref, lesions=lesions, sources={"lesions": str(p)})
        info["lesions"] = _lesion_rows(patient)
        info["sites"] = sorted({les.site for les in lesions})
    return info


def _print_info(info: dict) -> None:
    print(f"{info['file']}  [{info['kind']}]")
    if info["kind"] == "sites":
        for lesion, site in info["sites"].items():
            print(f"  {lesion}: {site}")
        return
    print(f"  size {info['size']}  spacing {info['spacing_mm']} mm  pixel {info['pixel_type']}")
    print(f"  origin (LPS) {info['origin_lps_mm']} mm  direction {info['direction']}")
    if info["kind"] == "patient":
        print(
            f"  patient {info['patient']}  modality {info['modality']}  "
            f"parenchyma mask: {'given' if info['parenchyma'] else 'none'}"
        )
    if info["kind"] == "image":
        print(
            f"  intensity {info['minimum']:g} … {info['maximum']:g} (mean {info['mean']:.4g}); "
            f"looks like {info['modality_guess']}"
        )
        return
    print(f"  {len(info['lesions'])} lesion(s) at site(s): {', '.join(info['sites'])}")
    for les in info["lesions"]:
        c = ", ".join(f"{v:.1f}" for v in les["centroid_lps_mm"])
        print(
            f"    {les['lesion']:<16} label {les['label']:<3} site {les['site']:<12} "
            f"{les['volume_mm3']:>10.1f} mm³  centre ({c}) mm"
        )


def describe_patient(args: argparse.Namespace) -> dict:
    """Load and validate a whole patient (image + lesions + parenchyma + sites) and describe it."""
    patient = load_patient_from_args(args)
    ref = patient.image
    return {
        "file": str(args.image),
        "kind": "patient",
        "patient": patient.patient_id,
        "modality": patient.modality,
        "size": list(ref.GetSize()),
        "spacing_mm": [round(v, 6) for v in ref.GetSpacing()],
        "origin_lps_mm": [round(v, 4) for v in ref.GetOrigin()],
        "direction": [round(v, 6) for v in ref.GetDirection()],
        "pixel_type": ref.GetPixelIDTypeAsString(),
        "parenchyma": patient.parenchyma is not None,
        "sites": sorted({les.site for les in patient.lesions}),
        "lesions": _lesion_rows(patient),
    }


def cmd_info(args: argparse.Namespace) -> int:
    """``radtyper info [FILE…] [--image IMG --lesions MASK …]``."""
    if not args.files and args.image is None:
        raise InputError("give FILE arguments, or a patient with --image IMG --lesions MASK")
    infos = [describe_file(f) for f in args.files]
    if args.image is not None:
        infos.append(describe_patient(args))
    if args.json:
        print(json.dumps(infos, indent=2))
    else:
        for info in infos:
            _print_info(info)
    return 0


# --- shared options ---------------------------------------------------------------------------------------
def add_patient_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The options naming one patient's files; every command that reads a patient uses these names."""
    parser.add_argument("--image", required=required, metavar="IMG", help="CT or MR image (NRRD, NIfTI, MHA)")
    parser.add_argument(
        "--lesions",
        required=required,
        metavar="MASK_OR_SEG",
        help="integer lesion label map (one value per lesion) or Slicer .seg.nrrd (one segment per lesion)",
    )
    parser.add_argument(
        "--parenchyma",
        metavar="MASK",
        help="parenchyma mask (e.g. lung) on the image grid, non-zero = tissue",
    )
    parser.add_argument("--sites", metavar="CSV", help="lesion sites: CSV with columns lesion,site")
    parser.add_argument(
        "--modality",
        default="AUTO",
        type=str.upper,
        choices=["AUTO", "CT", "MR", "PET"],
        help="image modality: CT, MR, PET or AUTO (default: AUTO = CT when the image holds air/lung HU values)",
    )
    parser.add_argument(
        "--patient-id",
        metavar="ID",
        help="patient identifier (default: the image file name, or its case folder when the name is generic: STS_001/CT_image.nii.gz → STS_001)",
    )


def load_patient_from_args(args: argparse.Namespace):
    """Load the patient named by :func:`add_patient_arguments` options."""
    from .io import load_patient

    if args.lesions is None:
        raise InputError("--lesions MASK_OR_SEG is required with --image")
    return load_patient(
        args.image,
        args.lesions,
        parenchyma=args.parenchyma,
        sites=args.sites,
        patient_id=args.patient_id,
        modality=args.modality,
    )


# --- features / reconstruct ------------------------------------------------------------------------------
def _degree(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 15:
        raise argparse.ArgumentTypeError(f"degree must be 1…15, got {value}")
    return value


def cmd_features(args: argparse.Namespace) -> int:
    """``radtyper features --image IMG --lesions MASK_OR_SEG … --out CSV``."""
    from .features import FeatureSettings, patient_features
    from .io import atomic_path

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise InputError(f"{out}: --out must be a .csv file")
    params = None
    if args.radiomics_params and not args.no_radiomics:
        from .pyradiomics_features import load_params

        params = load_params(args.radiomics_params)
    patient = load_patient_from_args(args)
    settings = FeatureSettings(
        degree=args.degree,
        region_mode=args.region_mode,
        radiomics=not args.no_radiomics,
        radiomics_params=params,
    )

    def progress(fraction: float, message: str) -> None:
        if not args.quiet:
            print(f"[{fraction * 100:5.1f} %] {message}", file=sys.stderr, flush=True)

    table, results = patient_features(
        patient, settings, lesions=args.lesion, keep_going=args.keep_going, progress=progress
    )
    for res in results:
        if res.error:
            print(f"radtyper: warning: lesion '{res.lesion.name}': {res.error}", file=sys.stderr)
    outputs = {out: table}
    if args.perturb_mm is not None:
        from .features import perturbation_tables

        if args.perturb_mm <= 0:
            raise InputError(f"--perturb-mm must be > 0 mm, got {args.perturb_mm:g}")
        tables = perturbation_tables(patient, settings, mm=args.perturb_mm, lesions=args.lesion)
        outputs[perturbed_path(out, "eroded")] = tables["eroded"]
        outputs[perturbed_path(out, "dilated")] = tables["dilated"]
    for path, frame in outputs.items():
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.8g")
        print(f"features: {len(frame)} lesion(s) × {frame.shape[1]} columns → {path}")
    return 0


def perturbed_path(features_csv: Path, kind: str) -> Path:
    """``features.csv`` → ``features.eroded.csv`` / ``features.dilated.csv``."""
    return features_csv.with_name(f"{features_csv.stem}.{kind}.csv")


def cmd_robustness(args: argparse.Namespace) -> int:
    """``radtyper robustness --features CSV… --out DIR``."""
    import json as _json

    import pandas as pd

    from .heterogeneity.robust import robust_features
    from .io import atomic_path

    tables: dict[str, list] = {"original": [], "eroded": [], "dilated": []}
    for f in args.features:
        path = Path(f)
        tables["original"].append(read_feature_table(path))
        for kind in ("eroded", "dilated"):
            sibling = perturbed_path(path, kind)
            if not sibling.is_file():
                raise InputError(
                    f"{sibling}: not found; compute it with radtyper features … --out {path} --perturb-mm 1"
                )
            tables[kind].append(read_feature_table(sibling))
    frames = {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}
    result = robust_features(
        frames["original"], frames["eroded"], frames["dilated"], threshold=args.threshold
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "ccc.csv") as tmp:
        result.ccc.to_csv(tmp, index_label="feature", float_format="%.6g")
    with atomic_path(out / "robust_features.txt") as tmp:
        tmp.write_text("".join(f"{name}\n" for name in result.kept))
    with atomic_path(out / "clusters.json") as tmp:
        tmp.write_text(
            _json.dumps({"robust": result.robust, "kept": result.kept, "clusters": result.clusters}, indent=2)
        )
    print(
        f"robustness: {len(result.ccc)} features, {len(result.robust)} with CCC ≥ {args.threshold:g} after "
        f"erosion and dilation, {len(result.kept)} kept after decorrelation → {out}"
    )
    return 0


def cmd_heterogeneity(args: argparse.Namespace) -> int:
    """``radtyper heterogeneity --features CSV [--by site] --out DIR``."""
    from .heterogeneity.report import heterogeneity_report

    report = heterogeneity_report(
        read_feature_table(args.features),
        args.out,
        by=args.by,
        n_draws=args.draws,
        seed=args.seed,
        robustness=args.robustness,
    )
    for pid, rec in report["patients"].items():
        mtd, ath = rec.get("max_tumoral_divergence"), rec.get("average_tumoral_heterogeneity")
        if mtd is None:
            print(f"heterogeneity: patient {pid}: {rec.get('reason', 'undefined')}")
        else:
            print(f"heterogeneity: patient {pid}: {rec['n_lesions']} lesions, MTD {mtd:.3f}, ATH {ath:.3f}")
    print(f"heterogeneity: report → {args.out}")
    return 0


def cmd_iith(args: argparse.Namespace) -> int:
    """``radtyper iith --features CSV --out DIR``."""
    from .iith import IITHReference, iith_report, score_with_reference
    from .io import atomic_path

    table = read_feature_table(args.features)
    if args.reference:
        scores = score_with_reference(table, IITHReference.load(args.reference))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "iith.csv") as tmp:
            scores.to_csv(tmp, index=False, float_format="%.10g")
        for _, r in scores.iterrows():
            print(f"iith: lesion '{r['lesion']}': HI {r['hi']:.3f} ({r['iith'] or 'no class'})")
        return 0
    report = iith_report(table, args.out, K=args.k, sigma=args.sigma, t=args.t)
    sizes = report.get("cluster_sizes", {})
    print(f"iith: clusters {sizes} → {args.out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """``radtyper reconstruct --lesions MASK_OR_SEG --lesion ID --degree L --out FILE``."""
    from .io import read_lesions
    from .render import MESH_SUFFIXES, write_mesh
    from .shape import compute_shape

    out = Path(args.out)
    if out.suffix.lower() not in MESH_SUFFIXES:
        raise InputError(f"{out}: --out must end with one of {', '.join(MESH_SUFFIXES)}")
    labels, lesions = read_lesions(args.lesions)
    patient = Patient(image=labels, labels=labels, lesions=lesions, sources={"lesions": str(args.lesions)})
    lesion = patient.lesion(args.lesion)
    shape = compute_shape(patient.lesion_mask(lesion), labels, degree=15, lesion=lesion.name)
    vertices, faces = shape.reconstruct(args.degree)
    write_mesh(out, vertices, faces)
    err = shape.qc.get(f"qc_recon_error_mm_l{args.degree:02d}", float("nan"))
    print(
        f"reconstruct: lesion '{lesion.name}' at degree {args.degree}: {len(vertices)} vertices, "
        f"{len(faces)} triangles (mean surface error {err:.2f} mm) → {out}"
    )
    return 0


# --- demo -------------------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    """``radtyper demo --out DIR``."""
    from .demo import run_demo

    files = run_demo(Path(args.out), seed=args.seed, log=lambda msg: print(msg, flush=True))
    print(f"demo: wrote {len(files)} files to {args.out}")
    return 0


# --- parser -----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="radtyper",
        description=(
            "RadTyper: per-lesion SPHARM shape, regional-variation and radiomics features, inter-lesion "
            "heterogeneity and imaging subtypes. Geometry in mm (LPS), CT intensities in HU."
        ),
    )
    parser.add_argument("--version", action="version", version=f"radtyper {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "info",
        help="show geometry, lesions and sites of images, masks, .seg.nrrd files or site tables",
        description="Show geometry (size, spacing, origin, direction), lesions (name, site, volume, centre) "
        "and sites of each FILE: an image, an integer lesion mask, a Slicer .seg.nrrd or a lesion,site CSV; "
        "with --image/--lesions, load and check a whole patient (same grid, known sites, non-empty lesions).",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="image, lesion mask, .seg.nrrd or sites CSV")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_patient_arguments(p.add_argument_group("a whole patient, checked together"), required=False)
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser(
        "features",
        help="per-lesion SPHARM shape, burden and regional-variation features (one CSV row per lesion)",
        description="Compute, for every lesion, the 313 features of Wu et al.: 288 shape_* (SPHARM "
        "coefficient magnitudes, per-degree energies and order entropies, first-order-ellipsoid axes; "
        "translation/scale/rotation invariant), 5 burden_* (volume mm³, mean radius mm, axes mm) and 20 "
        "region_* (histogram comparisons of tumour core, invasive margin and 5/10 mm parenchymal margins), "
        "plus qc_* columns. Columns: lesion, site, shape_*, burden_*, region_*, qc_*, patient, modality.",
    )
    add_patient_arguments(p)
    p.add_argument("--out", required=True, metavar="CSV", help="output table (written atomically)")
    p.add_argument(
        "--degree", type=_degree, default=15, metavar="L", help="maximal SPHARM degree (default 15)"
    )
    p.add_argument(
        "--region-mode",
        choices=["2d", "3d"],
        default="2d",
        help="margin shells: 2d = per axial slice as in the paper (default), 3d = isotropic 3-D distances",
    )
    p.add_argument(
        "--lesion", action="append", metavar="ID", help="only this lesion (name or label; repeatable)"
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="a lesion that cannot be analysed gets empty features and its reason in qc_error "
        "(default: stop with an error naming it)",
    )
    p.add_argument(
        "--no-radiomics", action="store_true", help="skip the pyradiomics columns radiomics_<class>_<feature>"
    )
    p.add_argument(
        "--radiomics-params",
        metavar="FILE",
        help="pyradiomics parameter file (YAML or JSON); default: 1 mm B-spline resampling, bin width 10 "
        "(Henry et al.), original image, 107 features",
    )
    p.add_argument(
        "--perturb-mm",
        type=float,
        metavar="MM",
        help="also write the features of every lesion eroded and dilated by MM mm (e.g. 1) as "
        "<out>.eroded.csv and <out>.dilated.csv, the input of 'radtyper robustness'",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=cmd_features)

    p = sub.add_parser(
        "robustness",
        help="segmentation-robust features: Lin's CCC between original and 1 mm eroded/dilated lesions",
        description="Read feature tables written by 'radtyper features --perturb-mm' (their .eroded.csv and "
        ".dilated.csv siblings too), compute Lin's concordance correlation coefficient of every feature "
        "between original and eroded, and original and dilated lesions across all lesions, keep features "
        "with CCC ≥ threshold for both, then keep one feature per cluster of |Pearson r| ≥ 0.9. Writes "
        "ccc.csv, robust_features.txt (kept list) and clusters.json into DIR.",
    )
    p.add_argument("--features", nargs="+", required=True, metavar="CSV", help="feature table(s)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--threshold", type=float, default=0.8, help="minimal CCC for both (default 0.8)")
    p.set_defaults(handler=cmd_robustness)

    p = sub.add_parser(
        "heterogeneity",
        help="per-patient inter-lesion heterogeneity (Henry et al.): CV, MTD, ATH, sampling simulations",
        description="From a per-lesion feature table (one or more patients): absolute coefficient of "
        "variation per feature, maximal tumoral divergence and average tumoral heterogeneity (cosine "
        "distances of min–max scaled feature vectors; ATH = mean of the n×n matrix), lesion-sampling "
        "simulations (2 or 3 random lesions, ≤ 2 or 3 per site, RECIST-like) and random-k recovery curves. "
        "Writes heterogeneity.json (keys max_tumoral_divergence and average_tumoral_heterogeneity per "
        "patient), heterogeneity.csv, cv.csv, sampling.csv, recovery_curves.csv and recovery_curves.png.",
    )
    p.add_argument("--features", required=True, metavar="CSV", help="per-lesion feature table")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--by", choices=["site"], help="also per site within each patient")
    p.add_argument("--draws", type=int, default=500, help="simulated draws per strategy (default 500)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulations (default 0)")
    p.add_argument(
        "--robustness",
        metavar="CCC_CSV",
        help="ccc.csv from 'radtyper robustness': use its robust features, decorrelated (default: all "
        "non-constant shape_, burden_, region_ and radiomics_ features)",
    )
    p.set_defaults(handler=cmd_heterogeneity)

    p = sub.add_parser(
        "iith",
        help="imaging intratumour heterogeneity (Su et al.): SNF clustering into high/low IITH, index HI",
        description="On a cohort feature table with radiomics columns: heterogeneity-related features, "
        "MAD > 1 filter, similarity network fusion of the first-order and texture views (SNFtool), "
        "spectral clustering into high/low IITH, and the heterogeneity index HI per lesion. Writes "
        "iith.csv, iith.json, iith_reference.json (to score new lesions) and iith_fused.png into DIR.",
    )
    p.add_argument(
        "--features", required=True, metavar="CSV", help="per-lesion feature table (≥ 14 lesions to cluster)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--k", type=int, default=13, help="SNF neighbours K (default 13)")
    p.add_argument("--sigma", type=float, default=0.4, help="SNF affinity σ (default 0.4)")
    p.add_argument("--t", type=int, default=20, help="SNF iterations (default 20)")
    p.add_argument(
        "--reference",
        metavar="JSON",
        help="iith_reference.json of an earlier cohort run: score these lesions (any number, even one) "
        "against it instead of clustering; writes iith.csv (patient, lesion, hi, iith)",
    )
    p.set_defaults(handler=cmd_iith)

    p = sub.add_parser(
        "reconstruct",
        help="mesh of a lesion's SPHARM reconstruction at a given degree (.vtk, .vtp, .stl, .ply)",
        description="Fit the lesion's SPHARM expansion (degree 15) and write the surface reconstructed from "
        "the coefficients truncated at degree L, in the image's physical space (LPS mm).",
    )
    p.add_argument("--lesions", required=True, metavar="MASK_OR_SEG", help="lesion label map or .seg.nrrd")
    p.add_argument("--lesion", required=True, metavar="ID", help="lesion name or label value")
    p.add_argument("--degree", type=_degree, required=True, metavar="L", help="degree 1…15")
    p.add_argument("--out", required=True, metavar="FILE", help="output mesh: .vtk, .vtp, .stl or .ply")
    p.set_defaults(handler=cmd_reconstruct)

    from .cli_cohort import add_cohort_commands

    add_cohort_commands(sub)
    from .cli_seg import add_seg_commands

    add_seg_commands(sub)

    p = sub.add_parser(
        "demo",
        help="generate the embedded demo patient and run the whole pipeline on it",
        description="Generate the synthetic demo patient (CT and MR-like; lesions of six shapes at four sites) and run "
        "every available analysis on it, writing images, segmentation, tables and figures into DIR.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the demo patient (default 0)")
    p.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``radtyper`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except RadTyperError as exc:
        print(f"radtyper: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("radtyper: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
