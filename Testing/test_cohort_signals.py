"""``radtyper cohort extract``: one wording of the failure counts; no orphan process after SIGTERM/SIGINT/SIGHUP.

The signal test runs the real command in a subprocess with ``--workers 2``, waits until the two worker
processes (and multiprocessing's resource tracker) exist, sends a real signal to the parent only, and checks
the exit code (128 + signal, 130 for Ctrl-C) and that every child process has gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from RadTyperLib.cli import main

SPACING = (1.0, 1.0, 2.0)
SHAPE = (20, 56, 56)


def _write_case(folder: Path, pid: str, radii: list[float], seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    img = (-850.0 + 20.0 * rng.standard_normal(SHAPE)).astype(np.float32)
    labels = np.zeros(SHAPE, np.uint16)
    z, y, x = np.indices(SHAPE, dtype=float)
    centres = [(10, 16, 16), (10, 40, 40), (10, 16, 40), (10, 40, 16)]
    for i, r in enumerate(radii, start=1):
        c = centres[i - 1]
        ball = ((z - c[0]) * SPACING[2]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r
        labels[ball] = i
        img[ball] = 40.0 + 5.0 * rng.standard_normal(int(ball.sum()))
    paths = []
    for name, arr in (("ct", img), ("mask", labels)):
        im = sitk.GetImageFromArray(arr)
        im.SetSpacing(SPACING)
        p = folder / f"{pid}_{name}.nrrd"
        sitk.WriteImage(im, str(p))
        paths.append(p)
    return paths[0], paths[1]


def _manifest(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    m = folder / "manifest.csv"
    m.write_text("patient,image,lesions\n" + "".join(f"{p},{i},{l}\n" for p, i, l in rows))
    return m


def test_failure_counts_are_the_same_on_stdout_and_stderr(tmp_path, capsys):
    good = _write_case(tmp_path, "p1", [6.0], 1)
    tiny = _write_case(tmp_path, "p2", [6.0, 0.5], 2)  # lesion_2: one voxel, too small for shape analysis
    rows = [("p1", *map(str, good)), ("p2", *map(str, tiny)), ("p3", "missing.nrrd", "missing_mask.nrrd")]
    manifest = _manifest(tmp_path, rows)
    code = main(["cohort", "extract", str(manifest), "--out", str(tmp_path / "out"), "--no-radiomics"])
    out, err = capsys.readouterr()
    assert code == 0
    wording = "1 patient(s) not loaded, 1 lesion(s) failed"
    assert wording in out and wording in err, (out, err)
    failures = (tmp_path / "out" / "failures.csv").read_text().strip().splitlines()
    assert len(failures) == 1 + 2  # header + the patient that could not be loaded + the tiny lesion


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (pool workers are children of the forkserver, itself a child)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    for child in list(out):
        out |= _children(child)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)]
)
def test_workers_end_with_the_parent_on_a_signal(tmp_path, signum, code):
    rows = []
    for i in range(6):
        rows.append((f"p{i}", *map(str, _write_case(tmp_path, f"p{i}", [9.0, 8.0, 7.0, 6.0], i))))
    manifest = _manifest(tmp_path, rows)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "RadTyper"), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "RadTyperLib.cli",
            "cohort",
            "extract",
            str(manifest),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "2",
            "--no-radiomics",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= _children(proc.pid)
            if len(seen) >= 4:  # 2 workers + the forkserver + the resource tracker
                break
            time.sleep(0.1)
        assert proc.poll() is None and len(seen) >= 4, "the workers did not start"
        time.sleep(1.5)  # the workers are busy with lesions
        seen |= _children(proc.pid)
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert ("radtyper: interrupted" if signum == signal.SIGINT else f"stopped by {signum.name}") in err
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in seen):
        time.sleep(0.2)
    assert not [p for p in seen if _alive(p)], "orphan processes left behind"
    assert not (tmp_path / "out" / "features.csv").exists()  # the interrupted run wrote no cohort table
