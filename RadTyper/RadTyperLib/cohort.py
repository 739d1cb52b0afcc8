"""Batch feature extraction over a cohort: a manifest CSV in, one feature table out (CLI ``radtyper cohort``).

Manifest (CSV, UTF-8, one row per patient, header names case-insensitive; relative paths are resolved
against the manifest's folder; empty optional cells = not given):

============  ========  =================================================================================
column        required  meaning
============  ========  =================================================================================
patient       yes       patient id, unique in the manifest (also the ``patient`` column of the table)
image         yes       the image (NRRD, NIfTI, MHA)
lesions       yes       integer lesion label map or Slicer ``.seg.nrrd`` on the image grid
parenchyma    no        binary organ mask (the margin shells' parenchyma; default: automatic)
sites         no        CSV ``lesion,site`` (lesion = name or label value)
modality      no        ``CT``, ``MR`` (``MRI``), ``PET`` or ``auto`` (default: guessed from intensities)
cancer_type   no        free text copied to the ``cancer_type`` column (e.g. NSCLC, BRCA, GBM)
image_PHASE   no        a further co-registered image of the patient on ``image``'s grid, phase PHASE
                        (e.g. ``image_post1``; letters, digits, ``-``): multi-phase IITH features
phase         no        the phase name of ``image`` when ``image_PHASE`` columns exist (default ``image``;
                        e.g. ``pre``)
============  ========  =================================================================================

Any other column is refused (a misspelt ``parenchyma`` would silently change the features). An empty
``image_PHASE`` cell = that patient has no such phase (the table then has NaN in its ``iith_PHASE_*`` columns).

Output folder ``DIR``:

* ``DIR/patients/<patient>.csv``: the patient's lesion rows (failed lesions = NaN features, reason in
  ``qc_error``, as ``radtyper features --keep-going``), written atomically once ALL its lesions are done;
* ``DIR/failures.csv``: ``patient, lesion, reason`` (``lesion`` empty when the patient could not be loaded);
* ``DIR/features.csv``: every patient's rows in manifest order + ``cancer_type``;
* ``DIR/manifest.csv``: the manifest of the last run (absolute paths; ``radtyper view --cohort DIR`` reads it);
* ``DIR/run.json``: the feature settings. A rerun in the same folder refuses other settings, skips every
  patient whose ``patients/<patient>.csv`` exists and computes the rest (crash-safe: a killed run loses at
  most the patients in progress; a half-written file cannot exist). A patient that could not be loaded is
  retried on the next run. One run at a time per folder.

Parallelism: ``workers=1`` runs in this process, one lesion per task, one patient at a time (cancellable
between lesions). ``workers>1`` uses a local process pool: one task = one whole patient (loaded once, all its
lesions in order) while at least as many patients are left as workers, then one task per lesion for the last
ones, so that a patient of many lesions still uses every worker. Workers receive file paths (never images),
load the patient themselves and keep the last two loaded patients in a per-process cache. The pool starts
its workers from a ``forkserver`` that imported RadTyper and pyradiomics once (``spawn`` where the platform
has no forkserver: each worker then imports them itself). Every task runs with one BLAS/OpenMP thread
(threadpoolctl) and one SimpleITK/ITK thread, in the pool and with ``workers=1`` alike (there the previous
limits are restored after each task): parallelism is over patients and lesions, idle OpenBLAS threads made
single lesions 2-3× slower on a loaded machine, and each unit of work uses one core. ``dask_address`` sends
one task per lesion to an existing Dask ``distributed`` cluster (the workers need RadTyper installed and the
files at the same paths). The table does not depend on the number of workers (tested: identical values).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import functools
import json
import os
import re
import sys
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .checks import qc_warnings
from .errors import InputError, RadTyperError
from .features import QC_ERROR, Cancelled, FeatureSettings, Progress
from .io import atomic_path
from .patient import DEFAULT_PHASE, check_phase_name

MANIFEST_COLUMNS: tuple[str, ...] = (
    "patient",
    "image",
    "lesions",
    "parenchyma",
    "sites",
    "modality",
    "cancer_type",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("patient", "image", "lesions")
MODALITIES: dict[str, str] = {"ct": "CT", "mr": "MR", "mri": "MR", "pet": "PET", "auto": "auto", "": "auto"}
FAILURE_COLUMNS: tuple[str, ...] = ("patient", "lesion", "reason")
STRING_COLUMNS: tuple[str, ...] = (
    "lesion",
    "site",
    "patient",
    "modality",
    "cancer_type",
    QC_ERROR,
    "qc_degree_reason",
)
PATIENTS_DIR = "patients"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class CaseSpec:
    """One manifest row: a patient's files (absolute paths) and descriptors."""

    patient: str
    image: str
    lesions: str
    parenchyma: str | None = None
    sites: str | None = None
    modality: str = "auto"
    cancer_type: str = ""
    line: int = field(default=0, compare=False)  # manifest line, for messages
    phases: tuple[tuple[str, str], ...] = ()  # further co-registered images: (phase, absolute path)
    phase: str = "image"  # phase name of ``image``

    @property
    def file_stem(self) -> str:
        """File name (no suffix) of the patient's result: the id, with unsafe characters replaced."""
        return patient_file_stem(self.patient)


@dataclass
class CohortResult:
    """Outcome of :func:`extract_cohort`."""

    features: Any  # pandas.DataFrame: the content of features.csv
    failures: Any  # pandas.DataFrame: the content of failures.csv
    computed: list[str]  # patients computed by this run (manifest order)
    skipped: list[str]  # patients whose result already existed
    failed_patients: list[str]  # patients that could not be loaded (no result file; retried next run)
    n_lesions_computed: int  # lesion tasks run by this run (failed lesions included)
    elapsed_s: float
    paths: dict[str, Path]


def patient_file_stem(patient: str) -> str:
    """``patients/<stem>.csv`` stem of a patient id: unsafe characters → ``_`` + a CRC of the id if changed."""
    stem = _SAFE.sub("_", patient)
    if stem != patient or stem.startswith("."):
        stem = f"{stem.lstrip('.') or 'patient'}-{zlib.crc32(patient.encode('utf-8')):08x}"
    return stem


# --- manifest ---------------------------------------------------------------------------------------------
def read_manifest(path: str | os.PathLike[str]) -> list[CaseSpec]:
    """Read a cohort manifest (see the module docstring for the columns).

    Raises:
        InputError: unreadable file, missing required column, unknown column, empty required cell,
            duplicate patient, unknown modality; the message names the file and the line.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: manifest not found")
    base = p.resolve().parent
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise InputError(f"{p}: empty manifest (no header line)")
            names = [h.strip().lower() for h in header]
            missing = [c for c in REQUIRED_COLUMNS if c not in names]
            if missing:
                raise InputError(
                    f"{p}, line 1: missing required column(s) {', '.join(missing)}; "
                    f"found {', '.join(n for n in names if n) or 'none'}"
                )
            phase_cols = [n for n in names if n.startswith("image_")]
            for n in phase_cols:
                try:
                    check_phase_name(n[len("image_") :])
                except InputError as exc:
                    raise InputError(f"{p}, line 1: column '{n}': {exc}") from None
            unknown = [n for n in names if n not in MANIFEST_COLUMNS and n not in phase_cols and n != "phase"]
            if unknown:
                raise InputError(
                    f"{p}, line 1: unknown column(s) {', '.join(repr(u) for u in unknown)}; "
                    f"allowed: {', '.join(MANIFEST_COLUMNS)}"
                )
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise InputError(f"{p}, line 1: column(s) {', '.join(dupes)} appear twice")
            cases: list[CaseSpec] = []
            seen: dict[str, int] = {}
            stems: dict[str, tuple[str, int]] = {}
            for values in reader:
                line = reader.line_num
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(names):
                    raise InputError(f"{p}, line {line}: {len(values)} cells, the header has {len(names)}")
                row = {n: v.strip() for n, v in zip(names, values, strict=True)}
                for c in REQUIRED_COLUMNS:
                    if not row[c]:
                        raise InputError(f"{p}, line {line}: empty '{c}'")
                pid = row["patient"]
                if pid in seen:
                    raise InputError(f"{p}, line {line}: patient '{pid}' already listed on line {seen[pid]}")
                seen[pid] = line
                stem = patient_file_stem(pid).lower()  # case-insensitive file systems
                if stem in stems:
                    other, other_line = stems[stem]
                    raise InputError(
                        f"{p}, line {line}: patient '{pid}' and '{other}' (line {other_line}) would share "
                        "one result file on a case-insensitive file system; rename one"
                    )
                stems[stem] = (pid, line)
                modality = row.get("modality", "")
                if modality.lower() not in MODALITIES:
                    raise InputError(
                        f"{p}, line {line}: modality '{modality}' is not one of CT, MR, PET, auto"
                    )

                def resolve(value: str | None) -> str | None:
                    return str((base / value).resolve()) if value else None

                cases.append(
                    CaseSpec(
                        patient=pid,
                        image=str(resolve(row["image"])),
                        lesions=str(resolve(row["lesions"])),
                        parenchyma=resolve(row.get("parenchyma")),
                        sites=resolve(row.get("sites")),
                        modality=MODALITIES[modality.lower()],
                        cancer_type=row.get("cancer_type", ""),
                        line=line,
                        phases=tuple(
                            (n[len("image_") :], str(resolve(row[n]))) for n in phase_cols if row[n]
                        ),
                        phase=row.get("phase") or DEFAULT_PHASE,
                    )
                )
                try:
                    check_phase_name(cases[-1].phase)
                except InputError as exc:
                    raise InputError(f"{p}, line {line}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not a UTF-8 text file ({exc.reason})") from None
    except csv.Error as exc:
        raise InputError(f"{p}: not a readable CSV file ({exc})") from None
    if not cases:
        raise InputError(f"{p}: the manifest lists no patient")
    return cases


def write_manifest(path: str | os.PathLike[str], cases: Sequence[CaseSpec]) -> Path:
    """Write a manifest (absolute paths) atomically; the inverse of :func:`read_manifest`."""
    phase_names = list(dict.fromkeys(n for c in cases for n, _ in c.phases))
    extra = ["phase", *(f"image_{n}" for n in phase_names)] if phase_names else []
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([*MANIFEST_COLUMNS, *extra])
            for c in cases:
                paths = dict(c.phases)
                writer.writerow(
                    [
                        c.patient,
                        c.image,
                        c.lesions,
                        c.parenchyma or "",
                        c.sites or "",
                        c.modality,
                        c.cancer_type,
                        *([c.phase, *(paths.get(n, "") for n in phase_names)] if phase_names else []),
                    ]
                )
    return Path(path)


# --- worker side ------------------------------------------------------------------------------------------
_THREAD_LIMITER: Any = None  # keeps the process-wide threadpool limit of a pool worker alive


def _die_with_parent() -> None:
    """Worker side: end with the parent process, whatever ends it (Linux ``PR_SET_PDEATHSIG``).

    Ctrl-C in a terminal reaches the whole process group: workers ignore SIGINT and let the parent stop them,
    so a cancelled run prints one message, not one traceback per worker.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            pass
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


def _init_pool_worker(limit_threads: bool) -> None:
    """Process-pool initializer: one BLAS/OpenMP and one SimpleITK thread per worker; dies with the parent."""
    global _THREAD_LIMITER
    _die_with_parent()
    if limit_threads:
        import SimpleITK as sitk
        from threadpoolctl import threadpool_limits

        _THREAD_LIMITER = threadpool_limits(limits=1)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _stamp(path: str | None) -> tuple[str, int, int] | None:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return (path, -1, -1)
    return (path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=2)
def _cached_patient(case: CaseSpec, _stamps: tuple) -> Any:
    from .io import load_patient

    return load_patient(
        case.image,
        case.lesions,
        parenchyma=case.parenchyma,
        sites=case.sites,
        patient_id=case.patient,
        modality=case.modality,
        phases=dict(case.phases),
        image_phase=case.phase,
    )


def _load_case(case: CaseSpec) -> Any:
    """The case's Patient, from this process's cache when the files have not changed since."""
    paths = (case.image, case.lesions, case.parenchyma, case.sites, *(p for _, p in case.phases))
    stamps = tuple(_stamp(x) for x in paths)
    return _cached_patient(case, stamps)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RadTyperError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _limited(limit_threads: bool) -> Any:
    """One BLAS/OpenMP thread and one SimpleITK/ITK thread inside the block (the previous settings after).

    ``workers=1`` runs its tasks in this process (possibly Slicer's): the limits are restored after each task.
    """
    if not limit_threads:
        yield
        return
    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    itk_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_threads)


def plan_task(case: CaseSpec, limit_threads: bool = False) -> dict[str, Any]:
    """Worker task: load the patient → ``{"lesions": [names], "modality": str}`` or ``{"error": reason}``."""
    try:
        with _limited(limit_threads):
            patient = _load_case(case)
        return {"lesions": [les.name for les in patient.lesions], "modality": patient.modality}
    except Exception as exc:  # every failure is reported per patient; the cohort goes on
        return {"error": _reason(exc)}


def lesion_task(
    case: CaseSpec, lesion: str, settings: FeatureSettings, limit_threads: bool = False
) -> tuple[dict[str, Any], str]:
    """Worker task: the table row of one lesion → ``(row, error)``; a failed lesion gets a NaN row."""
    from .features import _failed_row, lesion_features

    with _limited(limit_threads):
        try:
            patient = _load_case(case)
        except Exception as exc:  # e.g. the file changed since the plan
            return {"lesion": lesion, "site": "unspecified", QC_ERROR: _reason(exc)}, _reason(exc)
        try:
            return lesion_features(patient, lesion, settings).row, ""
        except Exception as exc:
            reason = exc.problem if hasattr(exc, "problem") else _reason(exc)
            les = patient.lesion(lesion)
            return _failed_row(patient, les, reason, settings), reason


def patient_task(case: CaseSpec, settings: FeatureSettings, limit_threads: bool = False) -> dict[str, Any]:
    """Worker task: every lesion of one patient, loaded once → ``{"lesions": [names], "rows": [(row, error)]}``
    or ``{"error": reason}`` (the patient could not be loaded). Rows are those of :func:`lesion_task`."""
    plan = plan_task(case, limit_threads)
    if "error" in plan:
        return plan
    plan["rows"] = [lesion_task(case, name, settings, limit_threads) for name in plan["lesions"]]
    return plan


class _InlineExecutor(cf.Executor):
    """Runs the tasks in this process, one per :meth:`run_next` call, in submission order (``workers=1``)."""

    def __init__(self) -> None:
        self._queue: deque[tuple[cf.Future, Callable, tuple, dict]] = deque()

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> cf.Future:  # type: ignore[override]
        future: cf.Future = cf.Future()
        self._queue.append((future, fn, args, kwargs))
        return future

    def run_next(self) -> cf.Future:
        """Run the oldest queued task (KeyboardInterrupt and other BaseExceptions propagate at once)."""
        future, fn, args, kwargs = self._queue.popleft()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._queue.clear()


# --- driver -----------------------------------------------------------------------------------------------
def stderr_progress(fraction: float, message: str) -> None:
    """The default progress printer: ``[ 42.0 %] message`` on stderr."""
    print(f"[{fraction * 100:5.1f} %] {message}", file=sys.stderr, flush=True)


def read_cohort_table(path: str | os.PathLike[str]) -> Any:
    """Read a table written by :func:`extract_cohort` (ids as text, exact floats, empty ``qc_error`` = "")."""
    import pandas as pd

    table = pd.read_csv(
        path,
        dtype=dict.fromkeys(STRING_COLUMNS, str),
        keep_default_na=False,
        na_values=[""],
        float_precision="round_trip",
    )
    for col in STRING_COLUMNS:
        if col in table.columns:
            table[col] = table[col].fillna("")
    from .io import rename_legacy_columns

    return rename_legacy_columns(table)


def _settings_record(settings: FeatureSettings) -> dict[str, Any]:
    record = asdict(settings)
    record.pop("keep_shells", None)  # display only; no effect on the table
    return json.loads(json.dumps(record, sort_keys=True, default=str))


def _check_run_record(out: Path, settings: FeatureSettings) -> Path:
    path = out / "run.json"
    record = {"radtyper_version": __version__, "settings": _settings_record(settings)}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable ({exc}); delete it or use another output folder") from None
        if old.get("settings") != record["settings"]:
            changed = sorted(
                k
                for k in set(old.get("settings", {})) | set(record["settings"])
                if old.get("settings", {}).get(k) != record["settings"].get(k)
            )
            raise InputError(
                f"{out}: holds results computed with other feature settings ({', '.join(changed)}); "
                "use another output folder or delete it"
            )
        return path
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    return path


def _open_executor(
    workers: int, dask_address: Any, mp_context: str, timeout: float
) -> tuple[cf.Executor, Any, bool]:
    """(executor, dask client to close or None, limit threads inside tasks)."""
    if dask_address is not None:
        try:
            from distributed import Client
        except ImportError:
            raise InputError("--dask needs the 'distributed' package (pip install radtyper[dask])") from None
        if hasattr(dask_address, "get_executor"):  # an existing Client
            return dask_address.get_executor(pure=False), None, True
        try:
            client = Client(str(dask_address), set_as_default=False, timeout=f"{timeout}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"cannot connect to the Dask scheduler at {dask_address}: {exc}") from None
        return client.get_executor(pure=False), client, True
    if workers == 1:  # BLAS limited inside each task too: idle OpenBLAS threads spin and slow small fits
        return _InlineExecutor(), None, True
    executor = cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_pool_context(mp_context),
        initializer=_init_pool_worker,
        initargs=(True,),
    )
    return executor, None, False


# Modules a worker needs for every lesion; the forkserver imports them once and every worker is forked from it
# (with ``spawn`` each worker imported them itself: 0.5-1 CPU s per worker and run).
WORKER_PRELOAD: tuple[str, ...] = (
    "RadTyperLib.cohort",
    "RadTyperLib.features",
    "RadTyperLib.pyradiomics_features",
    "RadTyperLib.iith_features",
    "radiomics.featureextractor",
    "skimage.measure",
    "threadpoolctl",
)


# Child side of :func:`_forkserver_usable`, run by ``exec`` (a builtin: unpickled without importing anything, so a
# forkserver that cannot import RadTyperLib fails silently here instead of printing a traceback).
_PROBE = """
try:
    import os
    import RadTyperLib.cohort as _m
    conn.send(os.path.realpath(_m.__file__))
except BaseException:
    conn.send(None)
"""


@functools.cache
def _forkserver_usable() -> bool:
    """Whether a worker forked from this process's forkserver imports this very RadTyperLib.

    Python < 3.13 starts the forkserver with the environment's ``sys.path``, not this process's: where
    RadTyperLib was put on ``sys.path`` at run time (Slicer, scripts), the forkserver would import another
    copy or none. One probe process (forked from the preloaded server: milliseconds) settles it.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(WORKER_PRELOAD))  # no effect once this process's forkserver runs
    try:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=exec, args=(_PROBE, {"conn": child}), daemon=True)
        proc.start()
        child.close()
        got = parent.recv() if parent.poll(60.0) else None
        proc.join(5.0)
    except (OSError, EOFError, RuntimeError):
        return False
    return got == os.path.realpath(__file__)


def _pool_context(mp_context: str) -> Any:
    """The multiprocessing context of the local pool: ``auto`` = ``forkserver`` with :data:`WORKER_PRELOAD`
    where the platform has it (Linux, macOS) and its workers import this RadTyperLib, else ``spawn``; any
    other name is used as given."""
    import multiprocessing

    if mp_context != "auto":
        return multiprocessing.get_context(mp_context)
    if "forkserver" in multiprocessing.get_all_start_methods() and _forkserver_usable():
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def _clean_stale_temps(out: Path) -> None:
    """Remove temporary files a killed run left behind (``atomic_path`` writes ``.<stem>.*`` beside)."""
    stale = [
        *(out / PATIENTS_DIR).glob(".*.csv"),
        *out.glob(".features.*.csv"),
        *out.glob(".failures.*.csv"),
        *out.glob(".run.*.json"),
        *out.glob(".manifest.*.csv"),
    ]
    for p in stale:
        try:
            p.unlink()
        except OSError:
            pass


def _write_patient_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    from .features import order_columns

    table = pd.DataFrame(rows)
    if QC_ERROR in table.columns:
        table[QC_ERROR] = table[QC_ERROR].fillna("")
    table = table[order_columns(table.columns)]
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def extract_cohort(
    manifest: str | os.PathLike[str] | Sequence[CaseSpec],
    out_dir: str | os.PathLike[str],
    *,
    settings: FeatureSettings | None = None,
    workers: int = 1,
    dask_address: Any = None,
    progress: Progress | None = None,
    quiet: bool = False,
    should_cancel: Callable[[], bool] | None = None,
    mp_context: str = "auto",
    dask_timeout: float = 20.0,
) -> CohortResult:
    """Extract the features of every lesion of every manifest patient into ``out_dir`` (see module docstring).

    ``progress(fraction, message)`` is called in this process after each task (default: a line on stderr;
    ``quiet=True`` prints nothing). ``should_cancel()`` is polled between tasks: finished patients are kept
    and :class:`~RadTyperLib.features.Cancelled` is raised. ``dask_address``: a scheduler address
    (``tcp://host:8786``) or a ``distributed.Client``. ``mp_context``: the process start method of the local
    pool (``auto``: ``forkserver`` where available, else ``spawn``; both are safe in threaded hosts; inside
    Slicer set ``multiprocessing.set_executable`` to PythonSlicer first). ``dask_timeout``: seconds to wait for the scheduler.

    Raises:
        InputError: bad manifest, output folder computed with other settings, unreachable Dask scheduler.
        RadTyperError: a worker process died (out of memory?); finished patients are kept, rerun to go on.
    """
    import pandas as pd

    t0 = time.perf_counter()
    if dask_address is None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers must be an integer ≥ 1, got {workers!r}")
    s = settings or FeatureSettings()
    cases = list(manifest) if not isinstance(manifest, str | os.PathLike) else read_manifest(manifest)
    ids = [c.patient for c in cases]
    if len(set(ids)) != len(ids):
        raise InputError(f"duplicate patient ids: {', '.join(sorted({i for i in ids if ids.count(i) > 1}))}")
    out = Path(out_dir)
    pdir = out / PATIENTS_DIR
    pdir.mkdir(parents=True, exist_ok=True)
    run_json = _check_run_record(out, s)
    write_manifest(out / "manifest.csv", cases)  # the patients' files, for `radtyper view --cohort DIR`
    _clean_stale_temps(out)
    report: Progress = progress or ((lambda f, m: None) if quiet else stderr_progress)

    def result_path(c: CaseSpec) -> Path:
        return pdir / f"{c.file_stem}.csv"

    skipped = [c.patient for c in cases if result_path(c).is_file()]
    todo = deque(c for c in cases if not result_path(c).is_file())
    n_todo = len(todo)
    if skipped:
        report(0.0, f"{len(skipped)} patient(s) already done in {pdir} (skipped), {n_todo} to compute")

    computed: list[str] = []
    patient_failures: dict[str, str] = {}
    n_lesion_tasks = 0
    if todo:
        executor, client, limit_in_task = _open_executor(workers, dask_address, mp_context, dask_timeout)
        # Local pool: one task = one whole patient (loaded once, by one worker) while at least as many patients
        # are left as there are workers; the last ones are split into lesion tasks so that no worker idles
        # while another works through a patient of many lesions. Inline and Dask: one task = one lesion.
        whole_patients = isinstance(executor, cf.ProcessPoolExecutor)
        if isinstance(executor, _InlineExecutor):
            window = 1  # one patient at a time
        elif whole_patients:
            window = workers + 1  # one patient queued: a worker that finishes starts the next at once
        else:
            window = 2 * max(workers, _dask_threads(client or dask_address))
        pending: dict[cf.Future, tuple[int, str, CaseSpec, str | None]] = {}
        counter = iter(range(1 << 62))
        lesion_names: dict[str, list[str]] = {}
        rows: dict[str, dict[str, tuple[dict[str, Any], str]]] = {}
        finished = 0

        def fraction() -> float:
            partial = sum(len(rows[p]) / max(1, len(lesion_names[p])) for p in rows)
            return min(1.0, (finished + partial) / max(1, n_todo))

        def fill() -> None:
            while todo and len(pending) < window:
                c = todo.popleft()
                if whole_patients and len(todo) + 1 >= workers:
                    f = executor.submit(patient_task, c, s, limit_in_task)
                    pending[f] = (next(counter), "patient", c, None)
                else:
                    pending[executor.submit(plan_task, c, limit_in_task)] = (next(counter), "plan", c, None)

        def planned(c: CaseSpec, value: dict[str, Any]) -> bool:
            """Record a patient's lesion names (True), or its failure to load / empty mask (False)."""
            nonlocal finished
            if "error" in value:
                patient_failures[c.patient] = value["error"]
                finished += 1
                report(fraction(), f"{c.patient}: FAILED to load: {value['error']}")
                return False
            if not value["lesions"]:
                patient_failures[c.patient] = "no lesion in the mask"
                finished += 1
                return False
            lesion_names[c.patient] = value["lesions"]
            rows[c.patient] = {}
            return True

        def take(c: CaseSpec, lesion: str, row: dict[str, Any], error: str) -> None:
            """One lesion's row; the patient's file is written once all its lesions are in."""
            nonlocal finished, n_lesion_tasks
            n_lesion_tasks += 1
            rows[c.patient][lesion] = (row, error)
            names = lesion_names[c.patient]
            status = f"FAILED: {error}" if error else "done"
            report(
                fraction(),
                f"{c.patient}: lesion '{lesion}' {status} ({len(rows[c.patient])}/{len(names)})",
            )
            for text in [] if error else qc_warnings(row):  # QC flags on screen, one line each
                report(fraction(), f"{c.patient}: lesion '{lesion}': warning: {text}")
            if len(rows[c.patient]) == len(names):
                got = rows.pop(c.patient)
                del lesion_names[c.patient]
                _write_patient_csv(result_path(c), [got[n][0] for n in names])
                finished += 1
                computed.append(c.patient)
                n_failed = sum(1 for n in names if got[n][1])
                report(
                    fraction(),
                    f"{c.patient}: {len(names)} lesion(s)"
                    + (f", {n_failed} failed" if n_failed else "")
                    + f" → {result_path(c)}",
                )

        try:
            fill()
            while pending:
                if should_cancel is not None and should_cancel():
                    raise Cancelled(
                        f"cancelled after {finished} of {n_todo} patient(s); finished patients are kept in {pdir}"
                    )
                if isinstance(executor, _InlineExecutor):
                    done = {executor.run_next()}
                else:
                    done, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED, timeout=1.0)
                for fut in sorted(done, key=lambda f: pending[f][0]):  # deterministic order
                    _, kind, c, lesion = pending.pop(fut)
                    try:
                        value = fut.result()
                    except Exception as exc:  # the pool or the cluster failed, not the lesion
                        raise RadTyperError(
                            f"patient '{c.patient}': a worker failed ({type(exc).__name__}: {exc}); finished "
                            f"patients are kept in {pdir}, rerun to continue"
                        ) from exc
                    if kind == "plan":
                        if planned(c, value):
                            for name in value["lesions"]:
                                f = executor.submit(lesion_task, c, name, s, limit_in_task)
                                pending[f] = (next(counter), "lesion", c, name)
                    elif kind == "patient":
                        if planned(c, value):
                            for name, (row, error) in zip(value["lesions"], value["rows"], strict=True):
                                take(c, name, row, error)
                    else:
                        assert lesion is not None
                        take(c, lesion, *value)
                fill()
        except BaseException:
            if not isinstance(executor, cf.ProcessPoolExecutor):  # the pool cancels its own (Python 3.11:
                for fut in pending:  # a future cancelled here breaks its manager thread once workers end)
                    fut.cancel()
            _shutdown(executor, wait=False)
            raise
        else:
            _shutdown(executor, wait=True)
        finally:
            if client is not None:
                client.close()
            if isinstance(executor, _InlineExecutor):
                _cached_patient.cache_clear()

    # --- assemble in manifest order ---------------------------------------------------------------------
    tables, failures = [], []
    for c in cases:
        path = result_path(c)
        if c.patient in patient_failures:
            failures.append({"patient": c.patient, "lesion": "", "reason": patient_failures[c.patient]})
            continue
        if not path.is_file():  # cannot happen unless files are removed meanwhile
            failures.append({"patient": c.patient, "lesion": "", "reason": f"{path} missing"})
            continue
        t = read_cohort_table(path)
        t["cancer_type"] = c.cancer_type
        tables.append(t)
        if QC_ERROR in t.columns:
            for _, r in t[t[QC_ERROR] != ""].iterrows():
                failures.append({"patient": c.patient, "lesion": r["lesion"], "reason": r[QC_ERROR]})
    if tables:
        features = pd.concat(tables, ignore_index=True)
        from .features import order_columns

        cols = [c for c in order_columns(features.columns) if c != "cancer_type"]
        features = features[[*cols, "cancer_type"]]
    else:
        features = pd.DataFrame(columns=["lesion", "site", "patient", "modality", "cancer_type"])
    failure_table = pd.DataFrame(failures, columns=list(FAILURE_COLUMNS))
    paths = {
        "features": out / "features.csv",
        "failures": out / "failures.csv",
        "patients": pdir,
        "run": run_json,
    }
    with atomic_path(paths["features"]) as tmp:
        features.to_csv(tmp, index=False)
    with atomic_path(paths["failures"]) as tmp:
        failure_table.to_csv(tmp, index=False)
    features = read_cohort_table(paths["features"])  # exactly what the file holds
    elapsed = time.perf_counter() - t0
    report(
        1.0,
        f"cohort: {features.shape[0]} lesion row(s) of {len(tables)} patient(s); "
        f"{failure_summary(failure_table)} → {paths['features']} ({elapsed:.1f} s)",
    )
    return CohortResult(
        features=features,
        failures=failure_table,
        computed=[p for p in ids if p in set(computed)],
        skipped=skipped,
        failed_patients=[p for p in ids if p in patient_failures],
        n_lesions_computed=n_lesion_tasks,
        elapsed_s=elapsed,
        paths=paths,
    )


def failure_summary(failures: Any) -> str:
    """``"P patient(s) not loaded, L lesion(s) failed"`` from a failures table (one wording for every output)."""
    lesion = failures["lesion"].fillna("").astype(str) if len(failures) else []
    n_patients = int(sum(1 for v in lesion if not v))
    n_lesions = int(len(failures) - n_patients)
    return f"{n_patients} patient(s) not loaded, {n_lesions} lesion(s) failed"


def _shutdown(executor: cf.Executor, wait: bool) -> None:
    """Stop the executor; ``wait=False`` (an error, Ctrl-C, SIGTERM/SIGHUP) also ends running workers."""
    if isinstance(executor, cf.ProcessPoolExecutor):
        if wait:
            executor.shutdown(wait=True, cancel_futures=True)
            return
        _terminate_pool(executor)
    else:
        executor.shutdown(wait=wait)


def _terminate_pool(executor: cf.ProcessPoolExecutor, grace_s: float = 5.0) -> None:
    """End a process pool now: SIGTERM to every worker, SIGKILL after ``grace_s``, then reap them.

    ``shutdown(wait=False)`` alone lets running tasks finish (minutes per lesion) and, when this process
    exits meanwhile, leaves the workers and multiprocessing's resource tracker behind.
    """
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)  # queued tasks are dropped, no new worker starts
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


def _dask_threads(client: Any) -> int:
    """Total worker threads of a Dask cluster (1 when unknown)."""
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:
        return 1
