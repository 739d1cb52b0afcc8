"""The demo: the embedded synthetic patient run through every analysis RadTyper has.

Outputs are staged in a temporary folder beside ``out_dir`` and moved into place only when every step has
succeeded, so a failed demo leaves no half-written files.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .patient import Patient

Log = Callable[[str], None]


def write_lesion_table(patient: Patient, path: Path) -> Path:
    """CSV with one row per lesion, columns :data:`RadTyperLib.summary.SUMMARY_COLUMNS`."""
    from .summary import SUMMARY_COLUMNS, lesion_summary

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(SUMMARY_COLUMNS))
        writer.writeheader()
        for row in lesion_summary(patient):
            writer.writerow({k: f"{v:.3f}" if isinstance(v, float) else v for k, v in row.items()})
    return path


def run_demo(out_dir: str | os.PathLike[str], *, seed: int = 0, log: Log = print) -> list[Path]:
    """Generate the demo patient (CT and MR-like) and run the available pipeline; return the written files."""
    from .io import write_image, write_patient
    from .phantoms import make_patient

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".radtyper-demo-", dir=out))
    try:
        log(f"demo: generating the synthetic patient (seed {seed})")
        ct = make_patient(seed, modality="CT", patient_id="demo")
        mr = make_patient(seed, modality="MR", patient_id="demo")
        write_patient(ct, stage)
        write_image(mr.image, stage / "image_mr.nrrd")
        write_lesion_table(ct, stage / "lesions.csv")
        log(f"demo: {len(ct.lesions)} lesions at sites {', '.join(sorted({les.site for les in ct.lesions}))}")

        written = []
        for src in sorted(stage.rglob("*")):
            if src.is_file():
                dst = out / src.relative_to(stage)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                written.append(dst)
        return written
    finally:
        shutil.rmtree(stage, ignore_errors=True)
