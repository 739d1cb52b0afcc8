"""The ``radtyper`` command line. Each subcommand is a small function over the core library.

Errors in the user's input are reported as one line ``radtyper: error: …`` with exit code 2; nothing is
written half-way (outputs are written atomically or staged and moved into place at the end).
"""

from __future__ import annotations

import argparse
import contextlib
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
        if len(info.get("phases", {})) > 1:
            print("  phases (one grid): " + ", ".join(f"{n} ({m})" for n, m in info["phases"].items()))
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
    print_image_warnings(patient)
    ref = patient.image
    return {
        "file": str(parse_images(args.image)[0]),
        "kind": "patient",
        "phases": {n: patient.phase_modality(n) for n in patient.all_phases()},
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
    parser.add_argument(
        "--image",
        required=required,
        action="append",
        metavar="IMG|PHASE=IMG",
        help="CT or MR image (NRRD, NIfTI, MHA). Repeat it with phase names for several co-registered images "
        "of one patient on one voxel grid (e.g. DCE-MRI: --image pre=pre.nrrd --image post1=post1.nrrd): "
        "the first is the reference (shape, regions, radiomics_*), every phase gives the multi-phase IITH "
        "features iith_<phase>_<roi>_<class>_<feature>; images on another grid are refused (no resampling)",
    )
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


def parse_images(values: Sequence[str] | str) -> tuple[str, str, dict[str, str]]:
    """``--image`` values → (reference image path, its phase name, {further phase: path}).

    A value is ``PHASE=PATH`` when the text before the first ``=`` is a phase name (letters, digits, ``-``)
    and the whole value is not an existing file; otherwise a plain path (phase ``image``). Several images
    need a phase name each.
    """
    from .patient import DEFAULT_PHASE, PHASE_NAME, check_phase_name

    items = [values] if isinstance(values, str) else list(values)
    parsed: list[tuple[str | None, str]] = []
    for v in items:
        name, sep, path = v.partition("=")
        if sep and PHASE_NAME.match(name) and path and not Path(v).exists():
            parsed.append((name, path))
        else:
            parsed.append((None, v))
    if len(parsed) == 1:
        name, path = parsed[0]
        return path, name or DEFAULT_PHASE, {}
    unnamed = [path for name, path in parsed if name is None]
    if unnamed:
        raise InputError(
            f"--image {unnamed[0]}: with several images give each a phase name, --image PHASE=PATH "
            "(e.g. --image pre=pre.nrrd --image post1=post1.nrrd)"
        )
    names = [check_phase_name(n or "") for n, _ in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"--image: phase {', '.join(dupes)} given twice")
    (ref_name, ref_path), rest = parsed[0], parsed[1:]
    return ref_path, str(ref_name), {str(n): p for n, p in rest}


def load_patient_from_args(args: argparse.Namespace):
    """Load the patient named by :func:`add_patient_arguments` options."""
    from .io import load_patient

    if args.lesions is None:
        raise InputError("--lesions MASK_OR_SEG is required with --image")
    image, phase, phases = parse_images(args.image)
    return load_patient(
        image,
        args.lesions,
        parenchyma=args.parenchyma,
        sites=args.sites,
        patient_id=args.patient_id,
        modality=args.modality,
        phases=phases,
        image_phase=phase,
    )


# --- features / reconstruct ------------------------------------------------------------------------------
def _degree(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 15:
        raise argparse.ArgumentTypeError(f"degree must be 1…15, got {value}")
    return value


def _iith_rois_option(text: str) -> tuple[str, ...] | None:
    """``--iith-rois`` value → FeatureSettings.iith_rois (auto → None, none → ())."""
    from .iith_features import parse_rois

    if text == "auto":
        return None
    if text == "none":
        return ()
    return parse_rois(text)


def cmd_features(args: argparse.Namespace) -> int:
    """``radtyper features --image IMG --lesions MASK_OR_SEG … --out CSV``."""
    from .features import FeatureSettings, patient_feature_rows
    from .io import atomic_path, write_rows_csv

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise InputError(f"{out}: --out must be a .csv file")
    if args.coefficients and Path(args.coefficients).suffix.lower() != ".npz":
        raise InputError(f"{args.coefficients}: --coefficients must be a .npz file")
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
        iith_rois=_iith_rois_option(args.iith_rois),
    )
    if settings.iith_rois and args.no_radiomics:
        raise InputError("--iith-rois needs the pyradiomics features: drop --no-radiomics")
    if patient.phases and args.no_radiomics:  # the phases feed only the multi-phase IITH (radiomics) columns
        print(
            f"radtyper: warning: phase(s) {', '.join(sorted(patient.phases))} not used: the multi-phase IITH "
            "features need pyradiomics (drop --no-radiomics)",
            file=sys.stderr,
        )

    def progress(fraction: float, message: str) -> None:
        if not args.quiet:
            print(f"[{fraction * 100:5.1f} %] {message}", file=sys.stderr, flush=True)

    print_image_warnings(patient)
    # rows, not a DataFrame: a single-lesion run does not pay pandas' import (issue 15)
    columns, results = patient_feature_rows(
        patient, settings, lesions=args.lesion, keep_going=args.keep_going, progress=progress
    )
    print_lesion_warnings(results)
    outputs = {}
    if args.perturb_mm is not None:
        from .features import perturbation_tables

        if args.perturb_mm <= 0:
            raise InputError(f"--perturb-mm must be > 0 mm, got {args.perturb_mm:g}")
        tables = perturbation_tables(
            patient, settings, mm=args.perturb_mm, lesions=args.lesion, grid=args.perturb_grid
        )
        outputs[perturbed_path(out, "eroded")] = tables["eroded"]
        outputs[perturbed_path(out, "dilated")] = tables["dilated"]
        reference = perturbed_path(out, "reference")
        if args.perturb_grid == "1mm":  # the unperturbed lesion on the same 1 mm grid: the CCC's reference
            outputs[reference] = tables["original"]
    records = None
    if args.coefficients:
        from .coefficients import LesionCoefficients, mask_checksum, save_coefficients

        records = [
            LesionCoefficients.from_shape(
                res.shape, mask_checksum(patient.lesion_mask(res.lesion), patient.labels, res.lesion.name)
            )
            for res in results
            if res.shape is not None
        ]
    # all-or-nothing over the output files: each is written to a temporary file beside it, and all are moved
    # into place only once every one is written
    with contextlib.ExitStack() as stack:
        write_rows_csv(stack.enter_context(atomic_path(out)), columns, [r.row for r in results])
        for path, frame in outputs.items():
            frame.to_csv(stack.enter_context(atomic_path(path)), index=False, float_format="%.8g")
        if records is not None:
            save_coefficients(stack.enter_context(atomic_path(args.coefficients)), records)
    if args.perturb_mm is not None and args.perturb_grid != "1mm" and reference.exists():
        reference.unlink()  # a stale 1 mm reference would be paired with native-grid perturbations
    print(f"features: {len(results)} lesion(s) × {len(columns)} columns → {out}")
    for path, frame in outputs.items():
        print(f"features: {len(frame)} lesion(s) × {frame.shape[1]} columns → {path}")
    if records is not None:
        print(f"features: SPHARM coefficients of {len(records)} lesion(s) → {args.coefficients}")
    return 0


def print_image_warnings(patient: Patient) -> None:
    """``radtyper: warning: …`` lines about the patient's image (NaN / infinite voxels) on stderr."""
    from .checks import image_warnings

    for text in image_warnings(patient.image_array(), patient.sources.get("image", "image")):
        print(f"radtyper: warning: {text}", file=sys.stderr)


def print_lesion_warnings(results: Sequence) -> int:
    """One ``radtyper: warning: lesion '…': …`` line per failed lesion and per QC flag; the count of lines."""
    from .checks import qc_warnings

    n = 0
    for res in results:
        texts = [res.error] if res.error else qc_warnings(res.row)
        for text in texts:
            print(f"radtyper: warning: lesion '{res.lesion.name}': {text}", file=sys.stderr)
            n += 1
    return n


def perturbed_path(features_csv: Path, kind: str) -> Path:
    """``features.csv`` → ``features.eroded.csv`` / ``features.dilated.csv``."""
    return features_csv.with_name(f"{features_csv.stem}.{kind}.csv")


def cmd_robustness(args: argparse.Namespace) -> int:
    """``radtyper robustness --features CSV… --out DIR``."""
    import json as _json

    import pandas as pd

    from .heterogeneity.robust import robust_features
    from .io import atomic_path, staged_folder

    tables: dict[str, list] = {"original": [], "eroded": [], "dilated": []}
    for f in args.features:
        path = Path(f)
        reference = perturbed_path(path, "reference")  # written with --perturb-grid 1mm
        tables["original"].append(read_feature_table(reference if reference.is_file() else path))
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
    with staged_folder(out) as stage:
        with atomic_path(stage / "ccc.csv") as tmp:
            result.ccc.to_csv(tmp, index_label="feature", float_format="%.6g")
        with atomic_path(stage / "robust_features.txt") as tmp:
            tmp.write_text("".join(f"{name}\n" for name in result.kept))
        with atomic_path(stage / "clusters.json") as tmp:
            tmp.write_text(
                _json.dumps(
                    {"robust": result.robust, "kept": result.kept, "clusters": result.clusters}, indent=2
                )
            )
    print(
        f"robustness: {len(result.ccc)} features, {len(result.robust)} with CCC ≥ {args.threshold:g} after "
        f"erosion and dilation, {len(result.kept)} kept after decorrelation → {out}"
    )
    return 0


def cmd_heterogeneity(args: argparse.Namespace) -> int:
    """``radtyper heterogeneity --features CSV [--by site] --out DIR``."""
    import warnings

    from .heterogeneity.report import heterogeneity_report
    from .io import staged_folder

    with warnings.catch_warnings(record=True) as caught, staged_folder(args.out) as stage:
        warnings.simplefilter("always")
        report = heterogeneity_report(
            read_feature_table(args.features),
            stage,
            by=args.by,
            n_draws=args.draws,
            seed=args.seed,
            robustness=args.robustness,
            cv_null=args.cv_null,
            alpha=args.alpha,
            groups=args.groups,
        )
    lines = [str(w.message) for w in caught] + list(report.get("cv_warnings", []))
    for text in dict.fromkeys(lines):
        print(f"radtyper: warning: {text}", file=sys.stderr)
    for pid, rec in report["patients"].items():
        mtd, ath = rec.get("max_tumoral_divergence"), rec.get("average_tumoral_heterogeneity")
        if mtd is None:
            print(f"heterogeneity: patient {pid}: {rec.get('reason', 'undefined')}")
        else:
            note = f" ({rec['note']})" if rec.get("note") else ""
            t = rec.get("tests", {})
            p_adj, sig = t.get("p_bonferroni_t_test"), t.get("significant_t_test")
            test = (
                ""
                if p_adj is None
                else f", mean CV t-test p_Bonferroni {p_adj:.3g}"
                + (" (significant)" if sig else " (not significant)")
            )
            print(
                f"heterogeneity: patient {pid}: {rec['n_lesions']} lesions, MTD {mtd:.3f}, ATH {ath:.3f}{test}{note}"
            )
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
    from .io import staged_folder

    with staged_folder(args.out) as stage:
        report = iith_report(table, stage, K=args.k, sigma=args.sigma, t=args.t)
    sizes = report.get("cluster_sizes", {})
    print(f"iith: clusters {sizes} → {args.out}")
    return 0


def _degrees(text: str) -> list[int]:
    """``"15"`` or ``"1,5,15"`` → sorted distinct degrees, each 1…15."""
    try:
        values = sorted({_degree(t.strip()) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"degrees must be integers 1…15 separated by commas, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one degree")
    return values


def reconstruction_path(out: Path, degree: int, several: bool) -> Path:
    """``--out FILE``: FILE itself for one degree; ``FILE_l{L}`` + suffix (e.g. ``lesion_l5.vtk``) for several."""
    return out.with_name(f"{out.stem}_l{degree}{out.suffix}") if several else out


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """``radtyper reconstruct --lesions MASK_OR_SEG --lesion ID --degree L[,L…] --out FILE``."""
    from .coefficients import (
        LesionCoefficients,
        cache_lookup,
        cache_store,
        default_cache_dir,
        load_coefficients,
        mask_checksum,
    )
    from .io import atomic_path, read_lesions
    from .render import MESH_SUFFIXES, write_mesh

    out = Path(args.out)
    if out.suffix.lower() not in MESH_SUFFIXES:
        raise InputError(f"{out}: --out must end with one of {', '.join(MESH_SUFFIXES)}")
    labels, lesions = read_lesions(args.lesions)
    patient = Patient(image=labels, labels=labels, lesions=lesions, sources={"lesions": str(args.lesions)})
    lesion = patient.lesion(args.lesion)
    mask = patient.lesion_mask(lesion)
    checksum = mask_checksum(mask, labels, lesion.name)
    record, source = None, "fitted"
    if args.coefficients:
        saved = load_coefficients(args.coefficients)
        if lesion.name not in saved:
            raise InputError(f"{args.coefficients}: no coefficients for lesion '{lesion.name}'")
        record = saved[lesion.name]
        if record.checksum != checksum:
            raise InputError(
                f"{args.coefficients}: the coefficients of lesion '{lesion.name}' were computed from another "
                "mask, grid or RadTyper version; run radtyper features --coefficients again"
            )
        source = f"from {args.coefficients}"
    cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if record is None and cache_dir is not None:
        record = cache_lookup(cache_dir, checksum)
        source = "from the cache" if record is not None else source
    if record is None:
        from .shape import compute_shape

        shape = compute_shape(mask, labels, degree=15, lesion=lesion.name)
        record = LesionCoefficients.from_shape(shape, checksum)
        if cache_dir is not None:
            cache_store(cache_dir, record)
    too_high = [d for d in args.degree if d > record.degree]
    if too_high:
        raise InputError(
            f"lesion '{lesion.name}': coefficients go up to degree {record.degree}, asked {too_high}"
        )
    several = len(args.degree) > 1
    lines = []
    # all-or-nothing over the degrees: each mesh is written to a temporary file beside its target, and all are
    # moved into place only once every degree is written (a failure leaves no mesh of this run behind)
    with contextlib.ExitStack() as stack:
        for d in args.degree:
            vertices, faces = record.reconstruct(d)
            path = reconstruction_path(out, d, several)
            tmp = stack.enter_context(atomic_path(path))
            write_mesh(tmp, vertices, faces)
            err = record.recon_errors_mm[d - 1]
            lines.append(
                f"reconstruct: lesion '{lesion.name}' at degree {d} (coefficients {source}): {len(vertices)} "
                f"vertices, {len(faces)} triangles (mean surface error {err:.2f} mm) → {path}"
            )
    for line in lines:
        print(line)
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
        "translation/scale/rotation invariant), 5 burden_* (volume mm³, mean radius mm, semi-axes mm) and "
        "20 region_* (histogram comparisons of tumour core, invasive margin and 5/10 mm parenchymal margins); "
        "beside them the radiologist's lesion_* measures (volume mL, 3-D Feret and RECIST long/short "
        "diameters mm, surface mm², sphericity), never used as model features; plus qc_* columns (a QC flag "
        "also prints a warning on stderr). Columns: lesion, site, lesion_*, shape_*, burden_*, region_*, "
        "radiomics_*, qc_*, patient, modality.",
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
        "--iith-rois",
        default="auto",
        metavar="auto|none|all|ROI,...",
        help="ROIs of the multi-phase IITH features iith_<phase>_<roi>_<class>_<feature> (Su et al.'s 44 "
        "heterogeneity features per phase and ROI): whole, core, margin, ring (10 mm peritumoural ring). "
        "auto (default) = all four when several --image phases are given, none for one image; 'all' also "
        "works on one image",
    )
    p.add_argument(
        "--perturb-mm",
        type=float,
        metavar="MM",
        help="also write the features of every lesion eroded and dilated by MM mm (e.g. 1) as "
        "<out>.eroded.csv and <out>.dilated.csv, the input of 'radtyper robustness'",
    )
    p.add_argument(
        "--perturb-grid",
        choices=["1mm", "native"],
        default="1mm",
        help="grid of the erosion/dilation: 1mm = every lesion resampled to 1 mm voxels (B-spline image, "
        "crop of 20 mm around the lesion) and perturbed there as Henry et al. (default; the unperturbed "
        "lesion on that grid is written as <out>.reference.csv, the CCC's reference); native = the image "
        "grid, radius raised to the finest voxel spacing (nothing changes along z on 5 mm slices)",
    )
    p.add_argument(
        "--coefficients",
        metavar="NPZ",
        help="also save every lesion's SPHARM coefficients (with its mask checksum) to NPZ, for "
        "'radtyper reconstruct --coefficients NPZ' at any degree without refitting",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=cmd_features)

    p = sub.add_parser(
        "robustness",
        help="segmentation-robust features: Lin's CCC between original and 1 mm eroded/dilated lesions",
        description="Read feature tables written by 'radtyper features --perturb-mm' (their .eroded.csv and "
        ".dilated.csv siblings too, and .reference.csv, the unperturbed lesions on the 1 mm grid, in place of "
        "the table itself when present), compute Lin's concordance correlation coefficient of every feature "
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
        "simulations (2 or 3 random lesions, ≤ 2 or 3 per site, RECIST-like) and random-k recovery curves, "
        "and the paper's significance tests of the CVs: per feature over patients (one-sample t-test, exact "
        "Wilcoxon signed-rank; Bonferroni over features) and per patient over features (same tests; "
        "Bonferroni over patients). CVs of features with values of both signs and |mean| < sd are flagged "
        "(sign_mixed_small_mean, a warning on stderr) and left out of the tests. Writes heterogeneity.json "
        "(keys max_tumoral_divergence and average_tumoral_heterogeneity per patient), heterogeneity.csv, "
        "cv.csv, sampling.csv, recovery_curves.csv, recovery_curves.png, tests_features.csv and "
        "tests_patients.csv.",
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
    p.add_argument(
        "--cv-null",
        type=float,
        default=0.0,
        metavar="CV",
        help="null value of the CV in Henry et al.'s tests (default 0, the paper's: any variation); e.g. the "
        "CV of repeated scans to test for heterogeneity beyond measurement noise",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="level of the Bonferroni-corrected p-values (default 0.05; the paper's 0.0015 is 0.05/33)",
    )
    p.add_argument(
        "--groups",
        metavar="COLUMN",
        help="column giving each patient one of two groups (e.g. oligo/multi): adds the paper's exact "
        "Wilcoxon rank-sum test of the CVs between the groups, per feature",
    )
    p.set_defaults(handler=cmd_heterogeneity)

    p = sub.add_parser(
        "iith",
        help="imaging intratumour heterogeneity (Su et al.): SNF clustering into high/low IITH, index HI",
        description="On a cohort feature table with radiomics columns: heterogeneity-related features, "
        "MAD > 1 filter, similarity network fusion of the first-order and texture views (SNFtool), "
        "spectral clustering into high/low IITH, and the heterogeneity index HI per lesion. Writes "
        "iith.csv, iith.json, iith_reference.json (to score new lesions) and iith_fused.png into DIR. "
        "Feature matrix: when the table has multi-phase, multi-ROI columns iith_<phase>_<roi>_<class>_<feature> "
        "('radtyper features' with several --image PHASE=IMG, or --iith-rois), those are the candidates "
        "(44 features × 4 ROIs — whole lesion, tumour core, invasive margin, 10 mm peritumoural ring — × "
        "phases: 352 for pre + one post-contrast phase), as Su et al. did (42 features × 4 ROIs × pre/post-"
        "contrast phases = 1,968 candidates; their ROIs other than the tumour are not published, RadTyper "
        "uses its own regions). Otherwise (the default of a one-image table) the radiomics_* columns of the "
        "whole lesion on one image: 44 candidates, one ROI of one phase, unlike the paper.",
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
        description="Fit the lesion's SPHARM expansion (degree 15), or reuse saved coefficients (--coefficients, "
        "or the cache keyed by the mask's checksum), and write the surface reconstructed from the coefficients "
        "truncated at each degree L, in the image's physical space (LPS mm).",
    )
    p.add_argument("--lesions", required=True, metavar="MASK_OR_SEG", help="lesion label map or .seg.nrrd")
    p.add_argument("--lesion", required=True, metavar="ID", help="lesion name or label value")
    p.add_argument(
        "--degree",
        type=_degrees,
        required=True,
        metavar="L[,L...]",
        help="degree(s) 1…15, e.g. 15 or 1,5,15 (one fit serves every degree)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="output mesh: .vtk, .vtp, .stl or .ply; with several degrees one file per degree, FILE's name "
        "+ _l<L> (lesion.vtk → lesion_l1.vtk, lesion_l5.vtk, …)",
    )
    p.add_argument(
        "--coefficients",
        metavar="NPZ",
        help="coefficients saved by 'radtyper features --coefficients': reconstruct without refitting "
        "(checked against the mask's checksum)",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="coefficient cache keyed by the mask's checksum (default $RADTYPER_CACHE_DIR or "
        "~/.cache/radtyper/coefficients): a later call at another degree does not refit",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the coefficient cache")
    p.set_defaults(handler=cmd_reconstruct)

    from .cli_cohort import add_cohort_commands

    add_cohort_commands(sub)
    from .cli_seg import add_seg_commands

    add_seg_commands(sub)
    from .cli_view import add_view_command

    add_view_command(sub)

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


#: Commands whose ``--out`` is a file (every other ``--out`` is a folder).
FILE_OUTPUTS: frozenset[tuple[str, str | None]] = frozenset(
    {("features", None), ("reconstruct", None), ("predict", None), ("seg", "predict")}
)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C (worker processes are ended, partial files removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """SIGTERM / SIGHUP (``timeout``, cluster schedulers, a closed terminal) unwind as Ctrl-C does."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _raise_terminated)


def _check_out(args: argparse.Namespace) -> None:
    out = getattr(args, "out", None)
    if not out:
        return
    from .io import check_output_path

    sub = getattr(args, "seg_command", None) or getattr(args, "cohort_command", None)
    check_output_path(out, "file" if (args.command, sub) in FILE_OUTPUTS else "dir")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``radtyper`` console script.

    Exit codes: 0 done, 2 bad input or an output that cannot be written (one ``radtyper: error:`` line), 130
    Ctrl-C, 128 + signal number for SIGTERM (143) and SIGHUP (129); never a traceback for these.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    install_signal_handlers()
    try:
        _check_out(args)
        return int(args.handler(args))
    except RadTyperError as exc:
        print(f"radtyper: error: {exc}", file=sys.stderr)
        return 2
    except Terminated as exc:
        import signal

        print(f"radtyper: stopped by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("radtyper: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, permission denied, a path that vanished: the system, not a bug
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"radtyper: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
