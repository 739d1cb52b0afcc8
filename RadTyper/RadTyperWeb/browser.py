"""Drive ``radtyper view`` in a real browser: the server as a child process, the system Chromium through
Playwright (no browser download: Debian's ``chromium`` at ``/usr/bin/chromium``).

Used by the end-to-end tests (``Testing/test_web_e2e.py``) and ``Resources/Scripts/benchmark_web.py``. Only
127.0.0.1 is used. Every server and browser started here is stopped by the context managers.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
_URL_RE = re.compile(r"serving at (http://\S+/)")
#: JavaScript installed in the page: records when each view image changes and a pixel signature of it.
FRAME_RECORDER_JS = r"""
(() => {
  if (window.__rt) return;
  window.__rt = {frames: {}, keydown: null};
  document.addEventListener('keydown', () => { window.__rt.keydown = performance.now(); }, true);
  document.addEventListener('pointerdown', () => { window.__rt.keydown = performance.now(); }, true);
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  function signature(img) {
    canvas.width = 64; canvas.height = 64;
    ctx.drawImage(img, 0, 0, 64, 64);
    const d = ctx.getImageData(0, 0, 64, 64).data;
    let s = 0;
    for (let i = 0; i < d.length; i += 4) s = (s * 31 + d[i] * 3 + d[i + 1] * 5 + d[i + 2] * 7) % 1000000007;
    return s;
  }
  for (const marker of document.querySelectorAll('.rt-view-marker')) {
    const tag = marker.id.replace('rt-view-', '');
    const img = marker.parentElement.querySelector('img');
    if (!img) continue;
    window.__rt.frames[tag] = [];
    const record = () => {
      const t = performance.now();
      img.decode().then(() => {
        window.__rt.frames[tag].push({t: t, decoded: performance.now(), sig: signature(img)});
      }).catch(() => {});
    };
    new MutationObserver(record).observe(img, {attributes: true, attributeFilter: ['src']});
    record();
  }
})();
"""


def chromium_path() -> str | None:
    """The system Chromium, or None."""
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium")
    return found


@dataclass
class ServerProcess:
    """A running ``radtyper view`` child process."""

    process: subprocess.Popen
    url: str
    started_s: float  # seconds from launch to the URL line (server up)
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "\n".join(self.lines)


def _pump(process: subprocess.Popen, lines: list[str], log: Path | None) -> None:
    assert process.stdout is not None
    sink = open(log, "a", encoding="utf-8") if log is not None else None
    try:
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if sink is not None:
                sink.write(line + "\n")
                sink.flush()
    finally:
        if sink is not None:
            sink.close()


@contextmanager
def serve(
    args: Sequence[str], *, timeout_s: float = 120.0, log: Path | None = None, env: dict | None = None
) -> Iterator[ServerProcess]:
    """Start ``python -m RadTyperLib.cli view ARGS --no-browser --host 127.0.0.1 --port 0``; stop it after."""
    root = Path(__file__).resolve().parents[1]
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), full_env.get("PYTHONPATH", "")) if p)
    full_env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "RadTyperLib.cli", "view", *args, "--no-browser", "--host", "127.0.0.1"]
    if "--port" not in args:
        cmd += ["--port", "0"]
    t0 = time.perf_counter()
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=full_env,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=_pump, args=(process, lines, log), daemon=True)
    reader.start()
    try:
        url = None
        while time.perf_counter() - t0 < timeout_s:
            for line in list(lines):
                m = _URL_RE.search(line)
                if m:
                    url = m.group(1)
                    break
            if url or process.poll() is not None:
                break
            time.sleep(0.05)
        if url is None:
            raise RuntimeError(
                f"radtyper view did not start (exit code {process.poll()}):\n" + "\n".join(lines[-30:])
            )
        yield ServerProcess(process, url, time.perf_counter() - t0, lines)
    finally:
        stop(process)
        reader.join(timeout=5)


def stop(process: subprocess.Popen) -> None:
    """Stop a server process and its children (the analysis process) by their process group."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextmanager
def browser(*, width: int = 1600, height: int = 1000) -> Iterator[Any]:
    """A Playwright page in the system Chromium (headless)."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("no system Chromium (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=exe,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
        )
        try:
            context = b.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.console_messages_ = []  # type: ignore[attr-defined]
            page.on("console", lambda m: page.console_messages_.append(m.text))  # type: ignore[attr-defined]
            yield page
        finally:
            b.close()


def view_locator(page: Any, tag: str) -> Any:
    """The container of one view (``Red``, ``Green``, ``Yellow``, ``ThreeD``)."""
    return page.locator(f"#rt-view-{tag}").locator("xpath=..")


def view_pixels(page: Any, tag: str) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a view as shown in the page (the RCA image)."""
    from PIL import Image

    png = view_locator(page, tag).locator("img").first.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def pixel_change(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels whose colour changed by more than 10 (of 255) between two view images."""
    if a.shape != b.shape:
        return 1.0
    return float(np.mean(np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 10))


def install_frame_recorder(page: Any) -> None:
    page.evaluate(FRAME_RECORDER_JS)


def frames(page: Any, tag: str) -> list[dict[str, float]]:
    return page.evaluate(f"(window.__rt && window.__rt.frames['{tag}']) || []")


def latency_to_new_frame(
    page: Any, tag: str, baseline_sig: float | None, after_ms: float, timeout_s: float = 10
) -> float:
    """Milliseconds from ``after_ms`` (page clock) to the first decoded frame of a view whose pixels differ
    from ``baseline_sig``; raises TimeoutError."""
    t_end = time.perf_counter() + timeout_s
    while time.perf_counter() < t_end:
        for f in frames(page, tag):
            if f["t"] >= after_ms and f["sig"] != baseline_sig:
                return float(f["decoded"] - after_ms)
        time.sleep(0.02)
    raise TimeoutError(f"view {tag}: no new image within {timeout_s} s")
