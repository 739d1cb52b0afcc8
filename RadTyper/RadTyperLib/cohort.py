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
============  ========  =================================================================================

Any other column is refused (a misspelt ``parenchyma`` would silently change the features).

Output folder ``DIR``:

* ``DIR/patients/<patient>.csv``: the patient's lesion rows (failed lesions = NaN features, reason in
  ``qc_error``, as ``radtyper features --keep-going``), written atomically once ALL its lesions are done;
* ``DIR/failures.csv``: ``patient, lesion, reason`` (``lesion`` empty when the patient could not be loaded);
* ``DIR/features.csv``: every patient's rows in manifest order + ``cancer_type``;
* ``DIR/run.json``: the feature settings. A rerun in the same folder refuses other settings, skips every
  patient whose ``patients/<patient>.csv`` exists and computes the rest (crash-safe: a killed run loses at
  most the patients in progress; a half-written file cannot exist). A patient that could not be loaded is
  retried on the next run. One run at a time per folder.

Parallelism: one task = one lesion of one patient. Workers receive file paths (never images), load the
patient themselves and keep the last two loaded patients in a per-process cache. BLAS/OpenMP pools are
limited to one thread per task (threadpoolctl): parallelism is over lesions, and idle OpenBLAS threads
made single lesions 2-3× slower on a loaded machine. ``workers=1`` runs in this process; ``workers>1`` uses
a process pool (``spawn`` start method; SimpleITK also limited to one thread per worker); ``dask_address`` sends the same tasks to an existing Dask ``distributed`` cluster (the
workers need RadTyper installed and the files at the same paths).
"""

from __future__ import annotations

import concurrent.futures as cf
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
from .errors import InputError, RadTyperError
from .features import QC_ERROR, Cancelled, FeatureSettings, Progress
from .io import atomic_path

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
            unknown = [n for n in names if n not in MANIFEST_COLUMNS]
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
                    )
                )
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not a UTF-8 text file ({exc.reason})") from None
    except csv.Error as exc:
        raise InputError(f"{p}: not a readable CSV file ({exc})") from None
    if not cases:
        raise InputError(f"{p}: the manifest lists no patient")
    return cases


def write_manifest(path: str | os.PathLike[str], cases: Sequence[CaseSpec]) -> Path:
    """Write a manifest (absolute paths) atomically; the inverse of :func:`read_manifest`."""
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(MANIFEST_COLUMNS)
            for c in cases:
                writer.writerow(
                    [
                        c.patient,
                        c.image,
                        c.lesions,
                        c.parenchyma or "",
                        c.sites or "",
                        c.modality,
                        c.cancer_type,
                    ]
                )
    return Path(path)


# --- worker side ------------------------------------------------------------------------------------------
_THREAD_LIMITER: Any = None  # keeps the process-wide threadpool limit of a pool worker alive


def _init_pool_worker(limit_threads: bool) -> None:
    """Process-pool initializer: one BLAS/OpenMP and one SimpleITK thread per worker."""
    global _THREAD_LIMITER
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
    )


def _load_case(case: CaseSpec) -> Any:
    """The case's Patient, from this process's cache when the files have not changed since."""
    stamps = tuple(_stamp(x) for x in (case.image, case.lesions, case.parenchyma, case.sites))
    return _cached_patient(case, stamps)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RadTyperError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


def _limited(limit_threads: bool) -> Any:
    import contextlib

    if not limit_threads:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


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
    return table


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
    import multiprocessing

    executor = cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(mp_context),
        initializer=_init_pool_worker,
        initargs=(True,),
    )
    return executor, None, False


def _clean_stale_temps(out: Path) -> None:
    """Remove temporary files a killed run left behind (``atomic_path`` writes ``.<stem>.*`` beside)."""
    stale = [
        *(out / PATIENTS_DIR).glob(".*.csv"),
        *out.glob(".features.*.csv"),
        *out.glob(".failures.*.csv"),
        *out.glob(".run.*.json"),
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
    mp_context: str = "spawn",
    dask_timeout: float = 20.0,
) -> CohortResult:
    """Extract the features of every lesion of every manifest patient into ``out_dir`` (see module docstring).

    ``progress(fraction, message)`` is called in this process after each task (default: a line on stderr;
    ``quiet=True`` prints nothing). ``should_cancel()`` is polled between tasks: finished patients are kept
    and :class:`~RadTyperLib.features.Cancelled` is raised. ``dask_address``: a scheduler address
    (``tcp://host:8786``) or a ``distributed.Client``. ``mp_context``: the process start method of the local
    pool (``spawn`` is safe in threaded hosts; inside Slicer set ``multiprocessing.set_executable`` to
    PythonSlicer first). ``dask_timeout``: seconds to wait for the scheduler.

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
        if isinstance(executor, _InlineExecutor):
            window = 1  # one patient at a time
        elif dask_address is None:
            window = 2 * workers
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
                pending[executor.submit(plan_task, c, limit_in_task)] = (next(counter), "plan", c, None)

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
                        if "error" in value:
                            patient_failures[c.patient] = value["error"]
                            finished += 1
                            report(fraction(), f"{c.patient}: FAILED to load: {value['error']}")
                            continue
                        if not value["lesions"]:
                            patient_failures[c.patient] = "no lesion in the mask"
                            finished += 1
                            continue
                        lesion_names[c.patient] = value["lesions"]
                        rows[c.patient] = {}
                        for name in value["lesions"]:
                            f = executor.submit(lesion_task, c, name, s, limit_in_task)
                            pending[f] = (next(counter), "lesion", c, name)
                        continue
                    assert lesion is not None
                    row, error = value
                    n_lesion_tasks += 1
                    rows[c.patient][lesion] = (row, error)
                    names = lesion_names[c.patient]
                    status = f"FAILED: {error}" if error else "done"
                    report(
                        fraction(),
                        f"{c.patient}: lesion '{lesion}' {status} ({len(rows[c.patient])}/{len(names)})",
                    )
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
                fill()
        except BaseException:
            for fut in pending:
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
        f"cohort: {features.shape[0]} lesion row(s) of {len(tables)} patient(s), {len(failure_table)} "
        f"failure(s) → {paths['features']} ({elapsed:.1f} s)",
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


def _shutdown(executor: cf.Executor, wait: bool) -> None:
    if isinstance(executor, cf.ProcessPoolExecutor):
        executor.shutdown(wait=wait, cancel_futures=True)
    else:
        executor.shutdown(wait=wait)


def _dask_threads(client: Any) -> int:
    """Total worker threads of a Dask cluster (1 when unknown)."""
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:
        return 1
