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
    parser.add_argument("--patient-id", metavar="ID", help="patient identifier (default: image file name)")


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
        "demo",
        help="generate the embedded demo patient and run the whole pipeline on it",
        description="Generate the synthetic demo patient (CT and MR-like, 7 lesions at 4 sites) and run "
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
