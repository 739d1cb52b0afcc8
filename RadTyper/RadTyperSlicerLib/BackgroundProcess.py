"""Polls a background analysis (``RadTyperLib.jobs.BackgroundJob``) from a Qt timer, so the GUI stays responsive.

The job itself (start, read progress lines, kill) is plain Python and tested with pytest; this class only
adds the timer and the callbacks, as SlicerMONAIAuto3DSeg's ``BackgroundProcess`` does.
"""

import shutil
import sys
from collections.abc import Callable

import qt


def pythonExecutable() -> str:
    """The Python that runs the background process: Slicer's ``PythonSlicer`` (same packages as Slicer)."""
    return shutil.which("PythonSlicer") or sys.executable


class JobPoller:
    """Calls ``onProgress(fraction, message)`` while the job runs, then ``onFinished(job)`` or
    ``onFailed(job)``; ``cancel()`` kills the job."""

    def __init__(
        self,
        job,
        onProgress: Callable[[float, str], None],
        onFinished: Callable[[object], None],
        onFailed: Callable[[object], None],
        intervalMs: int = 200,
    ) -> None:
        self.job = job
        self.onProgress = onProgress
        self.onFinished = onFinished
        self.onFailed = onFailed
        self.timer = qt.QTimer()
        self.timer.setInterval(intervalMs)
        self.timer.connect("timeout()", self._poll)

    @property
    def running(self) -> bool:
        return self.timer.isActive()

    def start(self) -> "JobPoller":
        self.timer.start()
        return self

    def _poll(self) -> None:
        state = self.job.poll()
        self.onProgress(self.job.fraction, self.job.message)
        if state == "running":
            return
        self.timer.stop()
        try:
            if state == "finished":
                self.onFinished(self.job)
            else:
                self.onFailed(self.job)
        finally:
            self.job.cleanup()

    def cancel(self) -> None:
        self.timer.stop()
        self.job.cancel()
