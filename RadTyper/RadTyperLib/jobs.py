"""Long analyses of one patient, in this process or in a background process that a GUI can poll and cancel.

The Slicer module runs an analysis without freezing its GUI as SlicerMONAIAuto3DSeg does: it writes the
inputs to a temporary folder (:func:`write_inputs`), starts ``python -m RadTyperLib.jobs`` in a child process
(:class:`BackgroundJob`, command from :func:`analysis_command`), reads the child's progress lines (the
``radtyper features`` format, ``[ 12.5 %] lesion 'x' (1/8)``, see :func:`parse_progress`) and loads the
result folder when the child ends. Cancel kills the child and everything it started; a result folder exists only when the whole
analysis succeeded (it is staged beside the target and renamed into place).

:func:`run_analysis` is the one code path: the child process calls it, and tests or batch code call it
directly. The result folder holds:

* ``features.csv`` — one row per lesion (:mod:`RadTyperLib.features` columns);
* ``display.npz`` — per lesion the SPHARM reconstructions at every degree (LPS mm, one icosphere), the
  marching-cubes surface and the margin shells TC/TIM/PM5/PM10 cropped to the lesion's box (read it with
  :func:`load_display`);
* ``heterogeneity/`` — :func:`RadTyperLib.heterogeneity.report.heterogeneity_report` files (≥ 1 lesion);
* ``summary.json`` — settings, lesions, per-lesion errors and the heterogeneity status.

Only the standard library, numpy and the core library are used: no Qt, no Slicer.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import InputError, RadTyperError
from .features import Cancelled, FeatureSettings, order_columns, patient_features
from .patient import Patient

FEATURES_CSV = "features.csv"
DISPLAY_NPZ = "display.npz"
HETEROGENEITY_DIR = "heterogeneity"
SUMMARY_JSON = "summary.json"
#: Share of the progress bar given to the per-lesion features (the rest: heterogeneity, writing).
FEATURES_SHARE = 0.9

_PROGRESS_RE = re.compile(r"^\[\s*(\d+(?:\.\d*)?)\s*%\]\s?(.*)$")

Progress = Callable[[float, str], None]


# --- progress lines ---------------------------------------------------------------------------------------
def format_progress(fraction: float, message: str) -> str:
    """One progress line, as ``radtyper features`` prints it: ``[ 12.5 %] message``."""
    return f"[{min(max(fraction, 0.0), 1.0) * 100:5.1f} %] {message}"


def parse_progress(line: str) -> tuple[float, str] | None:
    """``(fraction in [0, 1], message)`` of a progress line, None for any other line."""
    m = _PROGRESS_RE.match(line.strip())
    if m is None:
        return None
    return min(max(float(m.group(1)) / 100.0, 0.0), 1.0), m.group(2).strip()


# --- display data -----------------------------------------------------------------------------------------
@dataclass
class LesionDisplay:
    """What the GUI draws for one lesion (all coordinates LPS mm; masks on the image grid, cropped).

    ``reconstructions[d - 1]`` holds the vertices of the SPHARM reconstruction at degree ``d`` (1 … the
    analysed degree) on one icosphere whose triangles are ``faces``. ``shells`` are boolean ``[z, y, x]``
    crops whose element ``[0, 0, 0]`` is image voxel ``shell_offset_zyx``.
    """

    name: str
    color: tuple[float, float, float] | None
    reconstructions: np.ndarray  # (D, N, 3)
    faces: np.ndarray  # (M, 3)
    surface_vertices: np.ndarray
    surface_faces: np.ndarray
    shells: dict[str, np.ndarray] = field(default_factory=dict)
    shell_offset_zyx: tuple[int, int, int] = (0, 0, 0)

    @property
    def max_degree(self) -> int:
        return int(self.reconstructions.shape[0])

    def reconstruction(self, degree: int) -> np.ndarray:
        """Vertices at ``degree``, clipped to 1 … :attr:`max_degree`."""
        d = min(max(int(degree), 1), self.max_degree)
        return self.reconstructions[d - 1]


def _crop_box(masks: dict[str, np.ndarray]) -> tuple[slice, slice, slice] | None:
    union = None
    for m in masks.values():
        union = m if union is None else union | m
    if union is None or not union.any():
        return None
    idx = np.argwhere(union)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]


def display_from_result(result: Any) -> LesionDisplay | None:
    """The :class:`LesionDisplay` of one :class:`~RadTyperLib.features.LesionFeatures` (None if it failed)."""
    shape = result.shape
    if shape is None:
        return None
    recons = []
    faces = None
    for d in range(1, int(shape.degree) + 1):
        v, f = shape.reconstruct(d)
        recons.append(np.asarray(v, dtype=np.float64))
        faces = f
    shells: dict[str, np.ndarray] = {}
    offset = (0, 0, 0)
    if result.regions is not None and result.regions.shells:
        box = _crop_box(result.regions.shells)
        if box is not None:
            shells = {k: np.ascontiguousarray(m[box]) for k, m in result.regions.shells.items()}
            offset = tuple(int(s.start) for s in box)  # type: ignore[assignment]
    surface_v, surface_f = shape.surface
    return LesionDisplay(
        name=result.lesion.name,
        color=result.lesion.color,
        reconstructions=np.stack(recons),
        faces=np.asarray(faces, dtype=np.int64),
        surface_vertices=np.asarray(surface_v, dtype=np.float64),
        surface_faces=np.asarray(surface_f, dtype=np.int64),
        shells=shells,
        shell_offset_zyx=offset,  # type: ignore[arg-type]
    )


def save_display(path: str | os.PathLike[str], displays: Sequence[LesionDisplay]) -> Path:
    """Write the display data of several lesions into one ``.npz`` (lesions in order)."""
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, d in enumerate(displays):
        key = f"l{i:04d}"
        arrays[f"{key}_recon"] = d.reconstructions
        arrays[f"{key}_faces"] = d.faces
        arrays[f"{key}_surface_v"] = d.surface_vertices
        arrays[f"{key}_surface_f"] = d.surface_faces
        for shell, mask in d.shells.items():
            arrays[f"{key}_shell_{shell}"] = np.packbits(mask, axis=None)
        meta.append(
            {
                "name": d.name,
                "color": list(d.color) if d.color is not None else None,
                "shells": {k: list(m.shape) for k, m in d.shells.items()},
                "shell_offset_zyx": list(d.shell_offset_zyx),
            }
        )
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    p = Path(path)
    with open(p, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return p


def load_display(path: str | os.PathLike[str]) -> list[LesionDisplay]:
    """Read what :func:`save_display` wrote."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: display data not found (the analysis did not finish)")
    with np.load(p) as data:
        meta = json.loads(bytes(data["meta"]).decode("utf-8"))
        out = []
        for i, m in enumerate(meta):
            key = f"l{i:04d}"
            shells = {}
            for shell, shape in m["shells"].items():
                n = int(np.prod(shape))
                shells[shell] = (
                    np.unpackbits(data[f"{key}_shell_{shell}"], count=n).astype(bool).reshape(shape)
                )
            out.append(
                LesionDisplay(
                    name=m["name"],
                    color=tuple(m["color"]) if m["color"] is not None else None,  # type: ignore[arg-type]
                    reconstructions=data[f"{key}_recon"],
                    faces=data[f"{key}_faces"],
                    surface_vertices=data[f"{key}_surface_v"],
                    surface_faces=data[f"{key}_surface_f"],
                    shells=shells,
                    shell_offset_zyx=tuple(m["shell_offset_zyx"]),  # type: ignore[arg-type]
                )
            )
    return out


# --- the analysis -----------------------------------------------------------------------------------------
@dataclass
class AnalysisFiles:
    """The files of a finished analysis (see the module docstring)."""

    folder: Path
    features: Path
    display: Path
    heterogeneity: Path
    summary: Path

    @classmethod
    def of(cls, folder: str | os.PathLike[str]) -> AnalysisFiles:
        f = Path(folder)
        return cls(f, f / FEATURES_CSV, f / DISPLAY_NPZ, f / HETEROGENEITY_DIR, f / SUMMARY_JSON)

    def check(self) -> AnalysisFiles:
        """Raise InputError unless the folder holds a finished analysis."""
        for p in (self.features, self.display, self.summary):
            if not p.is_file():
                raise InputError(f"{self.folder}: not a finished RadTyper analysis ({p.name} missing)")
        return self

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary.read_text(encoding="utf-8"))


def _settings_dict(settings: FeatureSettings) -> dict[str, Any]:
    out = asdict(settings)
    out.pop("keep_shells", None)
    return out


def run_analysis(
    patient: Patient,
    out_dir: str | os.PathLike[str],
    settings: FeatureSettings | None = None,
    *,
    lesions: Sequence[str] | None = None,
    keep_going: bool = True,
    heterogeneity: bool = True,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> AnalysisFiles:
    """Features (+ display data) of every lesion, then the patient's heterogeneity, into ``out_dir``.

    Lesions are computed one at a time (their shells are cropped at once, so memory stays small on large
    images). ``keep_going``: a lesion that cannot be analysed gets a row with its reason in ``qc_error``
    instead of stopping the analysis. ``out_dir`` must not exist (or be empty); it is written complete or
    not at all.

    Raises:
        Cancelled: ``should_cancel()`` returned True (polled between lesions).
        InputError / LesionError: bad input (a lesion error only without ``keep_going``).
    """
    import pandas as pd

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: the result folder exists already")
    s = replace(settings or FeatureSettings(), keep_shells=True)
    names = [patient.lesion(k).name for k in lesions] if lesions else [les.name for les in patient.lesions]
    if not names:
        raise InputError("the patient has no lesion to analyse")
    report = progress or (lambda fraction, message: None)

    rows, displays, errors = [], [], {}
    for i, name in enumerate(names):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"cancelled after {i} of {len(names)} lesions")
        report(FEATURES_SHARE * i / len(names), f"lesion '{name}' ({i + 1}/{len(names)})")
        table, results = patient_features(patient, s, lesions=[name], keep_going=keep_going)
        rows.append(table)
        for res in results:
            if res.error:
                errors[res.lesion.name] = res.error
            display = display_from_result(res)
            if display is not None:
                displays.append(display)
        del results  # the full-grid shells go with it
    features = pd.concat(rows, ignore_index=True)
    features = features[order_columns(features.columns)]

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".radtyper-job-", dir=out.parent))
    try:
        files = AnalysisFiles.of(stage)
        features.to_csv(files.features, index=False, float_format="%.10g")
        save_display(files.display, displays)
        het_status: dict[str, Any] = {"status": "skipped"}
        if heterogeneity:
            if should_cancel is not None and should_cancel():
                raise Cancelled("cancelled before the heterogeneity analysis")
            report(FEATURES_SHARE, "heterogeneity")
            het_status = _heterogeneity(features, files.heterogeneity)
        summary = {
            "radtyper_version": __version__,
            "patient": patient.patient_id,
            "modality": patient.modality,
            "lesions": names,
            "errors": errors,
            "settings": _settings_dict(s),
            "keep_going": keep_going,
            "heterogeneity": het_status,
        }
        files.summary.write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    report(1.0, "done")
    return AnalysisFiles.of(out)


def _heterogeneity(features: Any, folder: Path) -> dict[str, Any]:
    """Run the heterogeneity report on the analysable lesions; a status dict instead of an exception."""
    from .heterogeneity.report import heterogeneity_report

    ok = features
    if "qc_error" in features.columns:
        ok = features[features["qc_error"].fillna("").astype(str).str.strip() == ""]
    if len(ok) == 0:
        return {"status": "failed", "reason": "no lesion could be analysed"}
    try:
        heterogeneity_report(ok, folder)
    except RadTyperError as exc:
        return {"status": "failed", "reason": str(exc)}
    return {"status": "ok", "lesions": len(ok)}


# --- inputs and command of the background process ---------------------------------------------------------
def write_inputs(patient: Patient, folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the patient for the background process: image, lesions (.seg.nrrd with sites), parenchyma."""
    from .io import write_patient

    return write_patient(patient, folder)


def analysis_command(
    inputs: dict[str, Path],
    out_dir: str | os.PathLike[str],
    settings: FeatureSettings | None = None,
    *,
    modality: str = "AUTO",
    patient_id: str | None = None,
    lesions: Sequence[str] | None = None,
    keep_going: bool = True,
    heterogeneity: bool = True,
    python: str | None = None,
    image_phase: str = "image",
) -> list[str]:
    """The command line that runs :func:`run_analysis` on files written by :func:`write_inputs`.

    ``inputs`` keys ``image_<phase>`` are further phases (``image_phase`` names ``image``)."""
    s = settings or FeatureSettings()
    if s.radiomics_params is not None:
        raise InputError("custom pyradiomics settings cannot be passed to the background process")
    cmd = [python or sys.executable, "-m", "RadTyperLib.jobs"]
    phases = {k[len("image_") :]: v for k, v in inputs.items() if k.startswith("image_")}
    if phases:  # multi-phase patient: the reference phase first, every image named (see cli.parse_images)
        cmd += ["--image", f"{image_phase}={inputs['image']}"]
        for name, path in phases.items():
            cmd += ["--image", f"{name}={path}"]
    else:
        cmd += ["--image", str(inputs["image"])]
    cmd += ["--lesions", str(inputs["lesions"])]
    if inputs.get("parenchyma") is not None:
        cmd += ["--parenchyma", str(inputs["parenchyma"])]
    if inputs.get("sites") is not None:
        cmd += ["--sites", str(inputs["sites"])]
    cmd += ["--modality", modality.upper()]
    if patient_id:
        cmd += ["--patient-id", patient_id]
    cmd += ["--out", str(out_dir), "--degree", str(int(s.degree)), "--region-mode", s.region_mode]
    if not s.radiomics:
        cmd.append("--no-radiomics")
    if s.iith_rois is not None:  # default None = auto (all four ROIs with several phases)
        cmd += ["--iith-rois", ",".join(s.iith_rois) or "none"]
    if keep_going:
        cmd.append("--keep-going")
    if not heterogeneity:
        cmd.append("--no-heterogeneity")
    for name in lesions or ():
        cmd += ["--lesion", name]
    return cmd


def _library_root() -> Path:
    """The folder that holds the ``RadTyperLib`` package (put on the child's PYTHONPATH)."""
    return Path(__file__).resolve().parents[1]


# --- the background process -------------------------------------------------------------------------------
def process_group_options() -> dict[str, Any]:
    """``subprocess.Popen`` options that put the child in its own process group (no console on Windows).

    In Slicer the command starts ``PythonSlicer``, a launcher that sets up the environment and runs the real
    Python (``python-real``) as *its* child: killing the launcher alone leaves the analysis running (as
    SlicerMONAIAuto3DSeg found). With its own group (POSIX: a new session; Windows: a new process group) the
    whole tree can be killed by :func:`kill_process_tree`; ``CREATE_NO_WINDOW`` keeps a console window from
    popping up on Windows.
    """
    if sys.platform == "win32":
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
        flags |= getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
        return {"creationflags": flags}
    return {"start_new_session": True}


def kill_process_tree(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Kill ``process`` (started with :func:`process_group_options`) and all its descendants; wait for it.

    POSIX: SIGKILL to the child's process group, which still reaches the grandchildren when the launcher has
    already exited. Windows: ``taskkill /T /F`` (the whole tree), then ``kill()`` as a fallback.
    """
    if sys.platform == "win32":
        if process.poll() is None:
            subprocess.run(
                ["taskkill", "/F", "/T", "/PID", str(process.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000),
                check=False,
            )
            if process.poll() is None:
                process.kill()
    else:
        import signal

        try:
            os.killpg(process.pid, signal.SIGKILL)  # the group id is the child's pid (new session)
        except (ProcessLookupError, PermissionError):
            if process.poll() is None:
                process.kill()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
        pass


class BackgroundJob:
    """A child process running an analysis, polled from a GUI timer (no thread touches the caller's state).

    ``start()`` launches it; ``poll()`` reads the lines printed since the last call, updates
    :attr:`fraction` / :attr:`message` and returns :attr:`state` ("running", "finished", "failed",
    "cancelled"); ``cancel()`` kills it. The work folder (inputs and result) is removed by ``cleanup()``
    (and by ``cancel()``).
    """

    def __init__(
        self,
        command: Sequence[str],
        result_dir: str | os.PathLike[str],
        *,
        work_dir: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        self.result_dir = Path(result_dir)
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.env = env
        self.state = "created"
        self.fraction = 0.0
        self.message = ""
        self.log: list[str] = []
        self.returncode: int | None = None
        self.error = ""
        self._process: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> BackgroundJob:
        env = dict(os.environ if self.env is None else self.env)
        root = str(_library_root())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("PYTHONIOENCODING", "utf-8")
        self._process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **process_group_options(),
        )
        self.state = "running"
        self._reader = threading.Thread(target=self._read, args=(self._process,), daemon=True)
        self._reader.start()
        return self

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._lines.put(line.rstrip("\r\n"))
        self._lines.put(None)

    def poll(self) -> str:
        """Consume new output lines; return the state."""
        if self._process is None or self.state not in ("running",):
            return self.state
        eof = False
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                eof = True
                break
            self._handle(line)
        if eof or self._process.poll() is not None:
            if not eof and self._reader is not None:
                self._reader.join(timeout=5)
                while not self._lines.empty():
                    line = self._lines.get_nowait()
                    if line is not None:
                        self._handle(line)
            self.returncode = self._process.wait()
            if self.returncode == 0 and AnalysisFiles.of(self.result_dir).features.is_file():
                self.state = "finished"
                self.fraction, self.message = 1.0, "done"
            else:
                self.state = "failed"
                if not self.error:
                    tail = [line for line in self.log if line.strip()][-5:]
                    self.error = "\n".join(tail) or f"the analysis process ended with code {self.returncode}"
        return self.state

    def _handle(self, line: str) -> None:
        self.log.append(line)
        parsed = parse_progress(line)
        if parsed is not None:
            self.fraction, self.message = parsed
        elif line.startswith("radtyper: error: "):
            self.error = line[len("radtyper: error: ") :]

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> str:
        """Poll until the job ends (or ``timeout`` seconds); return the state."""
        import time

        start = time.monotonic()
        while self.poll() == "running":
            if timeout is not None and time.monotonic() - start > timeout:
                break
            time.sleep(interval)
        return self.state

    def cancel(self) -> None:
        """Kill the process and every process it started, wait for it, and remove the work folder."""
        if self._process is not None:
            kill_process_tree(self._process)
        if self._process is not None:
            self.returncode = self._process.returncode
        if self.state in ("created", "running"):
            self.state = "cancelled"
            self.message = "cancelled"
        self.cleanup()

    def cleanup(self) -> None:
        """Remove the work folder (inputs, result, staging)."""
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def start_analysis_job(
    patient: Patient,
    settings: FeatureSettings | None = None,
    *,
    lesions: Sequence[str] | None = None,
    keep_going: bool = True,
    heterogeneity: bool = True,
    python: str | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> BackgroundJob:
    """Write the patient to a work folder and start :func:`run_analysis` in a background process."""
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="radtyper-job-"))
    try:
        inputs = write_inputs(patient, work / "inputs")
        result = work / "result"
        command = analysis_command(
            inputs,
            result,
            settings,
            modality=patient.modality,
            patient_id=patient.patient_id,
            lesions=lesions,
            keep_going=keep_going,
            heterogeneity=heterogeneity,
            python=python,
            image_phase=patient.image_phase,
        )
        return BackgroundJob(command, result, work_dir=work).start()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


# --- the child process ------------------------------------------------------------------------------------
def _degree(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 15:
        raise argparse.ArgumentTypeError(f"degree must be 1…15, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m RadTyperLib.jobs`` (the patient options are the CLI's)."""
    from .cli import add_patient_arguments

    parser = argparse.ArgumentParser(
        prog="python -m RadTyperLib.jobs",
        description="Run RadTyper's per-patient analysis (features, display data, heterogeneity) into a "
        "result folder, printing progress lines; used by the Slicer module as a background process.",
    )
    add_patient_arguments(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="result folder (must not exist)")
    parser.add_argument("--degree", type=_degree, default=15, metavar="L", help="maximal SPHARM degree")
    parser.add_argument("--region-mode", choices=["2d", "3d"], default="2d")
    parser.add_argument("--no-radiomics", action="store_true")
    parser.add_argument("--iith-rois", default="auto", help="as 'radtyper features --iith-rois'")
    parser.add_argument("--keep-going", action="store_true")
    parser.add_argument("--no-heterogeneity", action="store_true")
    parser.add_argument("--lesion", action="append", metavar="ID")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m RadTyperLib.jobs``; errors as ``radtyper: error: …`` (exit code 2)."""
    from .cli import load_patient_from_args

    args = build_parser().parse_args(argv)

    def progress(fraction: float, message: str) -> None:
        print(format_progress(fraction, message), file=sys.stderr, flush=True)

    try:
        patient = load_patient_from_args(args)
        from .cli import _iith_rois_option

        settings = FeatureSettings(
            degree=args.degree,
            region_mode=args.region_mode,
            radiomics=not args.no_radiomics,
            iith_rois=_iith_rois_option(args.iith_rois),
        )
        files = run_analysis(
            patient,
            args.out,
            settings,
            lesions=args.lesion,
            keep_going=args.keep_going,
            heterogeneity=not args.no_heterogeneity,
            progress=progress,
        )
    except RadTyperError as exc:
        print(f"radtyper: error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"analysis: {len(files.read_summary()['lesions'])} lesion(s) → {files.folder}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
