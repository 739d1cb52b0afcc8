"""``radtyper view``: serve the browser application RadTyper Web (:mod:`RadTyperWeb`) for one patient,
the demo patient or a cohort.

Registered into the main parser by :func:`add_view_command`. trame and trame-slicer (the ``web`` extra) are
imported only when the command runs; without them the command says so in one line (exit 2).
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
import tempfile
from pathlib import Path

from .errors import InputError


def check_port(host: str, port: int) -> None:
    """InputError unless ``host:port`` can be bound now (0 = any free port)."""
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be 0 … 65535, got {port}")
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(
                    f"port {port} on {host} is in use; choose another with --port (or 0)"
                ) from None
            raise InputError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def _require_web() -> None:
    try:
        import trame  # noqa: F401
        import trame_slicer  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"radtyper view needs trame-slicer ({exc.name or exc} is not installed): "
            "pip install 'radtyper[web]'"
        ) from None
    except Exception as exc:
        raise InputError(
            f"trame-slicer cannot be loaded with this slicer-core ({type(exc).__name__}: {exc})"
        ) from None


def cmd_view(args: argparse.Namespace) -> int:
    """``radtyper view`` (see :func:`add_view_command`)."""
    from RadTyperWeb.session import PatientSource, read_cohort

    given = [bool(args.demo), bool(args.cohort), bool(args.image or args.lesions)]
    if sum(given) != 1:
        raise InputError("give exactly one of --demo, --cohort DIR, or --image IMG --lesions MASK_OR_SEG")
    if (args.image and not args.lesions) or (args.lesions and not args.image):
        raise InputError("--image and --lesions go together")
    check_port(args.host, args.port)
    _require_web()
    if not os.environ.get("DISPLAY") and "VTK_DEFAULT_OPENGL_WINDOW" not in os.environ:
        os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = "vtkEGLRenderWindow"  # headless: offscreen EGL

    cohort = None
    if args.cohort:
        cohort = str(Path(args.cohort).resolve())
        sources = read_cohort(args.cohort)
        out_dir = Path(args.out) if args.out else Path(args.cohort)
        initial = None
    elif args.demo:
        sources = [PatientSource.demo_patient()]
        out_dir = Path(args.out) if args.out else Path(tempfile.gettempdir()) / "radtyper-view-demo"
        initial = sources[0]
    else:
        image, lesions = Path(args.image), Path(args.lesions)
        sources = [
            PatientSource(
                patient=args.patient_id or image.name.split(".")[0],
                image=image,
                lesions=lesions,
                parenchyma=Path(args.parenchyma) if args.parenchyma else None,
                sites=Path(args.sites) if args.sites else None,
                features=Path(args.features) if args.features else None,
                modality=args.modality,
            )
        ]
        out_dir = Path(args.out) if args.out else lesions.resolve().parent
        initial = sources[0]
    sys.argv = sys.argv[:1]  # trame parses sys.argv itself: keep it away from ours

    from RadTyperWeb.app import RadTyperViewApp, log

    app = RadTyperViewApp(sources, out_dir, cohort=cohort)
    log(f"review CSV and saved segmentations go to {out_dir}; VTK messages to {app.vtk_log}")
    if initial is not None:
        app.load(initial)  # a failure is shown in the page and on the console; the server starts anyway
    try:
        app.start(host=args.host, port=args.port, open_browser=not args.no_browser)
    finally:
        app.shutdown()
    return 0


def add_view_command(sub: argparse._SubParsersAction) -> None:
    """Register ``radtyper view``."""
    p = sub.add_parser(
        "view",
        help="review and analyse every lesion in a browser (RadTyper Web, trame-slicer)",
        description="Serve RadTyper Web, a browser application on Slicer's own MRML libraries (trame-slicer): "
        "slice and 3-D views of the image and lesions; the lesion table (name, site, volume in mL, longest "
        "diameter, QC flags) with jump-to-lesion; Segment Editor effects and one-click seeded lesion "
        "segmentation; Compute (background process, progress, Cancel); the selected lesion's SPHARM "
        "reconstruction with a live degree slider and the margin shells TC / TIM / PM5 / PM10; the patient's "
        "heterogeneity (MTD, ATH, recovery curve) and subtype (probabilities, provenance, domain flag); "
        "accept / flag / comment per lesion, saved in radtyper_review.csv in the output folder. Your files "
        "are never written: Save writes a NEW .seg.nrrd (atomically). Needs the web extra "
        "(pip install 'radtyper[web]').",
    )
    p.add_argument("--image", metavar="IMG", help="CT or MR image (NRRD, NIfTI, MHA)")
    p.add_argument(
        "--lesions", metavar="MASK_OR_SEG", help="lesion label map or Slicer .seg.nrrd on the image grid"
    )
    p.add_argument("--parenchyma", metavar="MASK", help="parenchyma mask on the image grid (margin shells)")
    p.add_argument("--sites", metavar="CSV", help="lesion sites: CSV with columns lesion,site")
    p.add_argument(
        "--features",
        metavar="CSV",
        help="this patient's feature table (radtyper features): heterogeneity and subtype shown at once",
    )
    p.add_argument(
        "--modality", default="auto", type=str.upper, choices=["AUTO", "CT", "MR", "PET"], help="default AUTO"
    )
    p.add_argument("--patient-id", metavar="ID", help="patient identifier (default: image file name)")
    p.add_argument("--demo", action="store_true", help="open the synthetic demo patient (8 lesions, 4 sites)")
    p.add_argument(
        "--cohort",
        metavar="DIR",
        help="output folder of 'radtyper cohort extract': the patient list, then the patient you pick",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=0, metavar="N", help="port (default 0: a free port, printed)")
    p.add_argument("--no-browser", action="store_true", help="do not open the system browser")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="folder of the review CSV and saved segmentations (default: the cohort folder; the lesions "
        "file's folder; for --demo a folder in the system temporary directory)",
    )
    p.set_defaults(handler=cmd_view)
