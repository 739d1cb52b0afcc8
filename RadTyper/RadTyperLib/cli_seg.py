"""``radtyper seg`` commands: train, apply and evaluate the U-Net lesion segmentation.

Registered into the main parser by :func:`add_seg_commands`; each handler is a thin call into
:mod:`RadTyperLib.segmentation.unet` (torch is imported only when a command runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import InputError


def _floats(text: str, n: int, what: str) -> tuple[float, ...]:
    parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise InputError(f"{what}: expected {n} comma-separated numbers, got '{text}'") from None
    if len(vals) != n:
        raise InputError(f"{what}: expected {n} comma-separated numbers, got {len(vals)} in '{text}'")
    return vals


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise InputError(f"{what}: expected comma-separated integers, got '{text}'") from None
    if not vals:
        raise InputError(f"{what}: expected comma-separated integers, got '{text}'")
    return vals


def _spacing(text: str) -> float | str | None:
    if text.strip().lower() == "native":
        return None
    if text.strip().lower() == "auto":
        return "auto"
    return _floats(text, 1, "--spacing-mm")[0]


def _progress_printer(prefix: str, quiet: bool):
    """A progress callback printing at most one line per 5 % (or per message change of epoch)."""
    state = {"last": -1.0, "msg": ""}

    def report(fraction: float, message: str) -> None:
        if quiet:
            return
        key = message.split(":")[0]
        if (
            fraction - state["last"] >= 0.05
            or fraction >= 1.0
            or ("validation" in message and key != state["msg"])
        ):
            print(f"{prefix}: {100 * fraction:5.1f} %  {message}", flush=True)
            state["last"], state["msg"] = fraction, key

    return report


def cmd_seg_train(args: argparse.Namespace) -> int:
    """``radtyper seg train MANIFEST.csv --out MODEL``."""
    from .segmentation.unet.train import TrainSettings, train_unet

    settings = TrainSettings(
        depth=args.depth,
        base_channels=args.base_channels,
        dilations=_ints(args.dilations, "--dilations"),
        context_slices=args.context,
        spacing_mm=_spacing(args.spacing_mm),
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        steps_per_epoch=args.steps_per_epoch,
        max_epochs=args.epochs,
        patience=args.patience,
        learning_rate=args.lr,
        validation_fraction=args.val_fraction,
        augment=not args.no_augment,
        threshold=args.threshold,
        min_size_mm3=args.min_size_mm3,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
    )
    result = train_unet(
        args.manifest,
        args.out,
        settings,
        modality=args.modality,
        progress=_progress_printer("seg train", args.quiet),
    )
    val = "no validation patients" if result.val_dice is None else f"validation Dice {result.val_dice:.3f}"
    print(
        f"seg train: {len(result.train_patients)} training / {len(result.val_patients)} validation patient(s), "
        f"{len(result.history)} epoch(s), best epoch {result.best_epoch}, {val}, "
        f"{result.elapsed_s:.0f} s → {Path(args.out)} (loss curve: {result.paths['loss_curve'].name})"
    )
    return 0


def cmd_seg_predict(args: argparse.Namespace) -> int:
    """``radtyper seg predict --model MODEL --image IMG --out SEG.seg.nrrd``."""
    from .io import is_seg_nrrd, read_image, write_seg_nrrd
    from .segmentation.unet.infer import segment_lesions

    out = Path(args.out)
    if not is_seg_nrrd(out):
        raise InputError(f"{out}: --out must be a Slicer segmentation file ending in .seg.nrrd")
    image = read_image(args.image)
    roi = _floats(args.roi, 6, "--roi") if args.roi else None
    points = [_floats(p, 3, "--point") for p in args.point] if args.point else None
    result = segment_lesions(
        image,
        args.model,
        modality=args.modality,
        roi_lps_mm=roi,
        points_lps_mm=points,
        threshold=args.threshold,
        min_size_mm3=args.min_size_mm3,
        point_radius_mm=args.point_radius_mm,
        device=args.device,
        progress=_progress_printer("seg predict", args.quiet),
        source=str(args.image),
    )
    for message in result.messages:
        print(f"seg predict: {message}", file=sys.stderr if result.empty else sys.stdout)
    if result.empty:
        print(f"seg predict: nothing written to {out}")
        return 0
    write_seg_nrrd(out, result.label_image(image), result.lesions())
    print(
        f"seg predict: {len(result.names)} lesion(s) ({result.n_removed_small} smaller than "
        f"{result.min_size_mm3:g} mm³ dropped) in {result.elapsed_s:.1f} s → {out}"
    )
    for name, vol in zip(result.names, result.volumes_mm3, strict=True):
        print(f"  {name:<12} {vol:>12.1f} mm³")
    return 0


def cmd_seg_eval(args: argparse.Namespace) -> int:
    """``radtyper seg eval --model MODEL MANIFEST.csv --out DIR [--subtype-model DIR]``."""
    from .segmentation.unet.evaluate import evaluate_cohort

    result = evaluate_cohort(
        args.model,
        args.manifest,
        args.out,
        subtype_model=args.subtype_model,
        threshold=args.threshold,
        min_size_mm3=args.min_size_mm3,
        min_overlap_voxels=args.min_overlap_voxels,
        device=args.device,
        save_segmentations=args.save_seg,
        progress=_progress_printer("seg eval", args.quiet),
    )
    s = result.summary

    def fmt(v, spec: str = ".3f") -> str:
        return "n/a" if v is None else format(v, spec)

    print(
        f"seg eval: {s['n_patients']} patient(s): mean Dice {fmt(s['mean_dice'])}, mean HD95 "
        f"{fmt(s['mean_hd95_mm'], '.1f')} mm, lesion sensitivity {fmt(s['lesion_sensitivity'])} "
        f"({s['n_manual_lesions']} manual lesions), false positives / patient {fmt(s['false_positives_per_patient'], '.2f')}"
    )
    for name, rec in s["dice_by_size"].items():
        print(f"  lesions {name:<9} n = {rec['n_lesions']:<4} mean Dice {fmt(rec['mean_dice'])}")
    if s["subtypes"] is None:
        print(f"seg eval: subtype agreement {s['subtypes_note']}")
    else:
        print(
            f"seg eval: subtype agreement manual vs automatic {fmt(s['subtypes']['agreement'])} "
            f"({s['subtypes']['n_patients']} patients; confusion matrix in subtype_confusion.csv)"
        )
    print(f"seg eval: tables and summary.json → {Path(args.out)}")
    return 0


def add_seg_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``seg train``, ``seg predict`` and ``seg eval``."""
    p = sub.add_parser(
        "seg",
        help="automatic lesion segmentation with a 2-D U-Net (seg train | predict | eval)",
        description="Automatic lesion segmentation with a 2-D U-Net with a dilated bottleneck (Wu et al. 2021, "
        "Fig. 6a): train a model on your own contours, segment every lesion of new images, evaluate against "
        "manual contours. Needs torch (CPU is enough; a CUDA GPU is used when present).",
    )
    ssub = p.add_subparsers(dest="seg_command", metavar="COMMAND", required=True)

    t = ssub.add_parser(
        "train",
        help="train a U-Net model on the images and lesion masks of a manifest",
        description="Train a U-Net on the cases of MANIFEST.csv (columns patient, image, lesions; optional "
        "modality; relative paths relative to the manifest; every lesion of a mask is foreground). Patients are "
        "split into training and validation; patches are lesion-oversampled and augmented (flips, 90° "
        "rotations, intensity jitter); the loss is BCE + Dice; training stops when the validation Dice has not "
        "improved for --patience epochs and keeps the best epoch. Writes the model folder MODEL (model.pt, "
        "model.json), loss_curve.png and history.csv. The defaults finish in minutes on a laptop CPU.",
    )
    t.add_argument("manifest", metavar="MANIFEST.csv")
    t.add_argument("--out", required=True, metavar="MODEL", help="output model folder (created)")
    t.add_argument(
        "--modality", choices=["CT", "MR", "PET", "auto"], default="auto", help="default: manifest / guess"
    )
    t.add_argument("--depth", type=int, default=4, help="U-Net levels (poolings), default 4")
    t.add_argument("--base-channels", type=int, default=16, help="channels of the first level, default 16")
    t.add_argument("--dilations", default="1,2,4,8", help="bottleneck dilations, default 1,2,4,8")
    t.add_argument(
        "--context", type=int, default=0, help="2.5-D: neighbouring slices per side as channels (0)"
    )
    t.add_argument(
        "--spacing-mm",
        default="auto",
        help="in-plane pixel size of the network grid in mm, 'auto' (median of the cases, default) or 'native'",
    )
    t.add_argument("--patch-size", type=int, default=128, help="training patch side in pixels (128)")
    t.add_argument("--batch-size", type=int, default=8, help="patches per step (8)")
    t.add_argument("--steps-per-epoch", type=int, default=40, help="steps per epoch (40)")
    t.add_argument("--epochs", type=int, default=25, help="maximum epochs (25)")
    t.add_argument("--patience", type=int, default=6, help="early stopping patience in epochs (6)")
    t.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (3e-3)")
    t.add_argument(
        "--val-fraction", type=float, default=0.2, help="validation patients fraction (0.2; 0 = none)"
    )
    t.add_argument("--no-augment", action="store_true", help="no flips / rotations / intensity jitter")
    t.add_argument(
        "--threshold", type=float, default=0.5, help="probability threshold stored in the model (0.5)"
    )
    t.add_argument(
        "--min-size-mm3", type=float, default=50.0, help="smallest lesion kept by inference (50 mm³)"
    )
    t.add_argument("--seed", type=int, default=0, help="random seed (0)")
    t.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    t.add_argument("--threads", type=int, help="CPU threads of torch (default: torch's)")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.set_defaults(handler=cmd_seg_train)

    q = ssub.add_parser(
        "predict",
        help="segment every lesion of an image (or in an ROI / at points) → .seg.nrrd",
        description="Segment the lesions of IMG with a U-Net model: whole volume, within --roi, or only the "
        "lesions at --point positions. Probabilities ≥ --threshold form lesions; each 3-D connected component "
        "of at least --min-size-mm3 becomes one segment lesion_1 … (largest first). Large slices are processed in "
        "exact, memory-bounded tiles. A model trained on another modality is refused. An image without lesion "
        "writes nothing and says so.",
    )
    q.add_argument("--model", required=True, metavar="MODEL", help="model folder ('radtyper seg train')")
    q.add_argument("--image", required=True, metavar="IMG", help="image (NRRD, NIfTI, MHA)")
    q.add_argument("--out", required=True, metavar="SEG.seg.nrrd", help="output Slicer segmentation")
    q.add_argument("--modality", default="auto", help="CT, MR, PET or auto (guessed; default)")
    q.add_argument(
        "--roi",
        metavar="X1,Y1,Z1,X2,Y2,Z2",
        help="box: two opposite corners in LPS mm (write --roi=-10,… when the first value is negative)",
    )
    q.add_argument(
        "--point",
        action="append",
        metavar="X,Y,Z",
        help="keep only the lesion at this LPS point (mm); repeat for several lesions (write --point=-10,… "
        "when the first value is negative)",
    )
    q.add_argument(
        "--point-radius-mm", type=float, default=50.0, help="search half-width around a point (50 mm)"
    )
    q.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    q.add_argument("--min-size-mm3", type=float, help="smallest lesion kept in mm³ (default: the model's)")
    q.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    q.add_argument("--quiet", action="store_true", help="no progress lines")
    q.set_defaults(handler=cmd_seg_predict)

    e = ssub.add_parser(
        "eval",
        help="evaluate a model against manual contours: Dice, HD95, detection, subtype agreement",
        description="Segment every case of MANIFEST.csv with the model and compare with its manual lesions: Dice "
        "and Hausdorff 95 (mm) per patient, lesion-wise detection sensitivity and false positives per patient, "
        "per-lesion Dice by size (<1, 1–10, >10 cm³), and with --subtype-model the agreement between the "
        "subtypes predicted from manual and automatic contours (confusion matrix). Writes cases.csv, "
        "lesions.csv, detections.csv, summary.json (and subtypes.csv, subtype_confusion.csv) into DIR.",
    )
    e.add_argument("manifest", metavar="MANIFEST.csv")
    e.add_argument("--model", required=True, metavar="MODEL", help="U-Net model folder")
    e.add_argument("--out", required=True, metavar="DIR", help="output folder")
    e.add_argument("--subtype-model", metavar="DIR", help="subtype model bundle ('radtyper discover')")
    e.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    e.add_argument(
        "--min-size-mm3", type=float, help="smallest automatic lesion in mm³ (default: the model's)"
    )
    e.add_argument(
        "--min-overlap-voxels", type=int, default=1, help="voxels of overlap that make a detection (1)"
    )
    e.add_argument("--save-seg", action="store_true", help="also write DIR/segmentations/<patient>.seg.nrrd")
    e.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    e.add_argument("--quiet", action="store_true", help="no progress lines")
    e.set_defaults(handler=cmd_seg_eval)
