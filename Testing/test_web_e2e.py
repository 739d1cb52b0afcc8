"""End-to-end tests of ``radtyper view`` in a real browser: Playwright driving the system Chromium
(``/usr/bin/chromium``, Debian package ``chromium``) against the app served on 127.0.0.1.

Each step saves a screenshot PNG in the artefact folder printed by the test (``RADTYPER_WEB_ARTEFACTS`` or a
pytest temporary folder). Skipped (with the reason) when trame-slicer, Playwright or Chromium is missing.
Latencies measured in the browser are printed, not asserted (targets are checked by
``Resources/Scripts/benchmark_web.py``).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trame_slicer", reason="needs the web extra (pip install 'radtyper[web]')")
pytest.importorskip("playwright.sync_api", reason="needs the web extra (playwright)")
from RadTyperWeb.browser import (
    browser,
    chromium_path,
    frames,
    install_frame_recorder,
    latency_to_new_frame,
    pixel_change,
    serve,
    view_pixels,
)

pytestmark = [
    pytest.mark.web,
    pytest.mark.skipif(chromium_path() is None, reason="no system Chromium (apt-get install chromium)"),
]

ROW = ".rt-lesion-row"
#: The patient is shown: its lesion rows and an image in each of the four views.
SHOWN_JS = """() => document.querySelectorAll('.rt-lesion-row').length > 0 &&
  Array.from(document.querySelectorAll('.rt-view-marker')).filter(m => {
    const img = m.parentElement.querySelector('img');
    return img && img.complete && img.naturalWidth > 0;
  }).length === 4"""


@pytest.fixture
def artefacts(tmp_path_factory, request) -> Path:
    base = os.environ.get("RADTYPER_WEB_ARTEFACTS")
    folder = Path(base) / request.node.name if base else tmp_path_factory.mktemp(request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nweb e2e artefacts (screenshots): {folder}")
    return folder


class Steps:
    """Numbered screenshots of the page."""

    def __init__(self, page, folder: Path) -> None:
        self.page, self.folder, self.n = page, folder, 0

    def shot(self, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}_{name}.png"
        self.page.screenshot(path=str(path))
        print(f"  step {self.n}: {name} -> {path.name}")
        return path


def _wait_rendered(page, tags=("Red", "Green", "Yellow", "ThreeD"), timeout_s: float = 20) -> None:
    """Until every view shows a non-uniform image."""
    t_end = time.perf_counter() + timeout_s
    while time.perf_counter() < t_end:
        try:
            if all(view_pixels(page, t).std() > 5 for t in tags):
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"views {tags} not rendered within {timeout_s} s")


def _wait_review(path: Path, lesion: str, comment: str, timeout_s: float = 10) -> dict:
    """The review CSV's rows once ``lesion`` has ``comment``."""
    t_end = time.perf_counter() + timeout_s
    rows: dict = {}
    while time.perf_counter() < t_end:
        if path.is_file():
            rows = {r["lesion"]: r for r in csv.DictReader(path.open(encoding="utf-8"))}
            if rows.get(lesion, {}).get("comment") == comment:
                break
        time.sleep(0.1)
    return rows


def _settle(page, tag: str, quiet_ms: float = 400, timeout_s: float = 10) -> None:
    """Until a view has had no new image for ``quiet_ms``."""
    t_end = time.perf_counter() + timeout_s
    while time.perf_counter() < t_end:
        f = frames(page, tag)
        now = page.evaluate("performance.now()")
        if not f or now - f[-1]["decoded"] > quiet_ms:
            return
        time.sleep(0.1)


def test_demo_review_and_analysis_in_browser(tmp_path, artefacts):
    """Demo: 8 lesions, jump to a lesion (views move), Compute (progress, subtype), degree slider (3-D view
    changes), shell toggle (3-D view changes), accept / flag / comment (review CSV), Save (new .seg.nrrd)."""
    out = tmp_path / "out"
    with serve(["--demo", "--out", str(out)], log=artefacts / "server.log") as server, browser() as page:
        steps = Steps(page, artefacts)
        # 1. open the demo: 8 lesions in the table, every view rendered
        t_up = time.perf_counter()
        page.goto(server.url)
        page.wait_for_function(SHOWN_JS, timeout=30_000, polling=50)
        opened_s = time.perf_counter() - t_up
        print(
            f"  server up {server.started_s:.1f} s after launch; demo patient shown {opened_s:.2f} s after that"
        )
        _wait_rendered(page)
        assert page.locator(ROW).count() == 8
        names = page.locator(f"{ROW} .rt-lesion-name").all_inner_texts()
        assert names == ["lung_1", "lung_2", "lung_3", "liver_1", "liver_2", "liver_3", "node_1", "bone_1"]
        assert "8 lesion(s)" in page.locator("#rt-lesion-count").inner_text()
        steps.shot("demo_opened")

        # 2. click a lesion: every slice view and the 3-D view move to it
        install_frame_recorder(page)
        before = {t: view_pixels(page, t) for t in ("Red", "Green", "Yellow", "ThreeD")}
        page.locator(ROW).filter(has_text="liver_1").click()
        time.sleep(1.5)
        for t in ("Red", "Green", "Yellow", "ThreeD"):
            _settle(page, t)
        after = {t: view_pixels(page, t) for t in before}
        changes = {t: pixel_change(before[t], after[t]) for t in before}
        print(f"  jump to liver_1: changed pixel fraction per view {changes}")
        assert all(c > 0.02 for c in changes.values()), changes
        steps.shot("jump_to_liver_1")

        # 3. Compute: progress, then heterogeneity and the subtype with probabilities and domain
        page.locator("#rt-tab-analysis").click()
        page.locator("#rt-radiomics").uncheck()  # the subtype model uses the 313 shape/region features
        page.locator("#rt-compute").click()
        page.locator("#rt-progress-text").filter(has_text="lesion").wait_for(timeout=60_000)
        steps.shot("compute_running")
        page.locator("#rt-subtype-name").wait_for(timeout=240_000)
        subtype = page.locator("#rt-subtype-name").inner_text()
        print(f"  subtype shown: {subtype!r}")
        assert subtype.startswith("Subtype S")
        assert page.locator("#rt-domain").inner_text().strip()  # in domain / OUT OF DOMAIN / not checked
        assert "MTD" in page.locator("#rt-heterogeneity").first.inner_text()
        assert page.locator("#rt-recovery svg").count() == 1
        _settle(page, "ThreeD")
        steps.shot("computed_subtype")

        # 4. degree slider: the 3-D view changes (latency measured in the browser)
        thumb = page.locator("#rt-degree-box .v-slider-thumb").first
        base = view_pixels(page, "ThreeD")
        latencies = []
        for _ in range(3):
            _settle(page, "ThreeD")
            sig = frames(page, "ThreeD")[-1]["sig"]
            thumb.focus()
            page.keyboard.press("ArrowLeft")
            t_key = page.evaluate("window.__rt.keydown")
            latencies.append(latency_to_new_frame(page, "ThreeD", sig, t_key))
        for _ in range(10):
            page.keyboard.press("ArrowLeft")  # down to degree 2
        page.wait_for_function("document.querySelector('#rt-degree-shown').innerText.includes('degree 2')")
        _settle(page, "ThreeD")
        low = view_pixels(page, "ThreeD")
        print(
            f"  degree slider -> new 3-D image: {', '.join(f'{x:.0f}' for x in latencies)} ms (demo lesion)"
        )
        assert pixel_change(base, low) > 0.005
        steps.shot("degree_2")

        # 5. shells: PM10 on changes the 3-D view
        _settle(page, "ThreeD")
        before_shell = view_pixels(page, "ThreeD")
        page.locator("#rt-shell-PM10").check()
        time.sleep(1.0)
        _settle(page, "ThreeD")
        with_shell = view_pixels(page, "ThreeD")
        assert pixel_change(before_shell, with_shell) > 0.005
        steps.shot("shell_PM10_on")

        # 6. review: flag with a comment, accept another; the CSV holds both
        page.locator("#rt-tab-lesions").click()
        page.locator("#rt-flag").click()
        page.locator("#rt-comment").fill("margin unclear on axial")
        page.locator("#rt-comment-save").click()
        page.locator(ROW).filter(has_text="liver_1").filter(has_text="flagged").wait_for(timeout=10_000)
        page.locator(ROW).filter(has_text="lung_3").click()
        page.locator("#rt-accept").click()
        page.locator(ROW).filter(has_text="lung_3").filter(has_text="accepted").wait_for(timeout=10_000)
        review = out / "radtyper_review.csv"
        rows = _wait_review(review, "liver_1", "margin unclear on axial")
        assert (
            rows["liver_1"]["status"] == "flagged" and rows["liver_1"]["comment"] == "margin unclear on axial"
        )
        assert rows["lung_3"]["status"] == "accepted"
        steps.shot("review")

        # 7. Save: a new .seg.nrrd with the 8 lesions
        target = out / "reviewed.seg.nrrd"
        page.locator("#rt-save-path").fill(str(target))
        page.locator("#rt-save").click()
        page.locator("#rt-info").filter(has_text="saved as").wait_for(timeout=20_000)
        from RadTyperLib.io import read_seg_nrrd

        _labels, lesions = read_seg_nrrd(target)
        assert [les.name for les in lesions] == names
        page.locator("#rt-save-path").fill(str(target))
        page.locator("#rt-save").click()  # the same name again: refused, nothing overwritten
        page.locator("#rt-error").filter(has_text="exists already").wait_for(timeout=10_000)
        steps.shot("saved")
        assert not page.locator("#rt-error").filter(has_text="Traceback").count()
    assert server.process.poll() is not None  # stopped


def test_bad_inputs_in_browser(tmp_path, artefacts):
    """An image that does not load and a segmentation on another grid: message in the page and on the
    console, the server stays up, nothing written; a port in use: one-line error, exit 2."""
    import SimpleITK as sitk

    from RadTyperLib.io import write_image

    img = sitk.Image(40, 40, 20, sitk.sitkInt16)
    img.SetSpacing((1.0, 1.0, 2.0))
    write_image(img, tmp_path / "ok.nrrd")
    other = sitk.Image(30, 30, 10, sitk.sitkUInt8)
    other[15, 15, 5] = 1
    write_image(other, tmp_path / "other_grid.nrrd")
    (tmp_path / "broken.nrrd").write_bytes(b"NRRD0004\nthis is not an image\n")
    out = tmp_path / "out"
    out.mkdir()
    with (
        serve(
            [
                "--image",
                str(tmp_path / "broken.nrrd"),
                "--lesions",
                str(tmp_path / "other_grid.nrrd"),
                "--out",
                str(out),
            ],
            log=artefacts / "server.log",
        ) as server,
        browser() as page,
    ):
        steps = Steps(page, artefacts)
        page.goto(server.url)
        error = page.locator("#rt-error")
        error.wait_for(timeout=30_000)
        assert "broken.nrrd" in error.inner_text()
        steps.shot("image_does_not_load")
        assert any("radtyper view: error:" in line and "broken.nrrd" in line for line in server.lines)
        # a segmentation on another grid, opened from the page
        page.locator("#rt-tab-patients").click()
        page.locator("#rt-open-image").fill(str(tmp_path / "ok.nrrd"))
        page.locator("#rt-open-lesions").fill(str(tmp_path / "other_grid.nrrd"))
        page.locator("#rt-open").click()
        page.locator("#rt-error").filter(has_text="other_grid.nrrd").wait_for(timeout=20_000)
        text = page.locator("#rt-error").inner_text()
        print(f"  another grid: {text}")
        steps.shot("segmentation_on_another_grid")
        assert server.process.poll() is None  # still serving
        page.reload()
        page.locator("#rt-tab-lesions").wait_for(timeout=20_000)
        assert server.process.poll() is None
        # the port is in use now: a second server refuses it with one line
        port = server.url.rsplit(":", 1)[1].strip("/")
        root = Path(__file__).resolve().parents[1] / "RadTyper"
        r = subprocess.run(
            [sys.executable, "-m", "RadTyperLib.cli", "view", "--demo", "--no-browser", "--port", port],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("radtyper: error: port ")
        assert "in use" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written


def test_browser_closing_mid_compute(tmp_path, artefacts):
    """Closing the page during Compute cancels the analysis (nothing written, no child process left), the
    server stays up and a new page says what happened."""
    out = tmp_path / "out"
    with serve(["--demo", "--out", str(out)], log=artefacts / "server.log") as server:
        with browser() as page:
            page.goto(server.url)
            page.locator(ROW).nth(7).wait_for(timeout=30_000)
            page.locator("#rt-tab-analysis").click()
            page.locator("#rt-compute").click()
            page.locator("#rt-progress-text").filter(has_text="lesion").wait_for(timeout=60_000)
            page.close()
        t_end = time.perf_counter() + 30
        while time.perf_counter() < t_end and not any(
            "browser closed during the analysis" in x for x in server.lines
        ):
            time.sleep(0.2)
        assert any("browser closed during the analysis" in x for x in server.lines), server.output()[-2000:]
        assert server.process.poll() is None
        with browser() as page:
            page.goto(server.url)
            page.locator("#rt-error").filter(has_text="cancelled because the browser").wait_for(
                timeout=30_000
            )
            page.locator("#rt-tab-lesions").click()
            page.wait_for_function(SHOWN_JS, timeout=30_000, polling=50)  # the views are back too
            Steps(page, artefacts).shot("after_browser_closed_mid_compute")
        children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True)
        assert children.stdout.strip() == "", f"child processes left: {children.stdout}"

    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_cohort_patient_list_then_patient(tmp_path, artefacts):
    """``--cohort DIR``: the patient list, then the patient picked (timed from the click)."""
    from RadTyperLib.cohort import CaseSpec, write_manifest
    from RadTyperLib.io import write_patient
    from RadTyperLib.phantoms import make_patient

    cases = []
    for i, pid in enumerate(("P01", "P02")):
        files = write_patient(make_patient(i, modality="CT", patient_id=pid), tmp_path / pid)
        cases.append(CaseSpec(pid, str(files["image"]), str(files["lesions"])))
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    write_manifest(cohort / "manifest.csv", cases)
    before = sorted(p.name for p in cohort.rglob("*"))
    with serve(["--cohort", str(cohort)], log=artefacts / "server.log") as server, browser() as page:
        steps = Steps(page, artefacts)
        page.goto(server.url)
        page.locator(".rt-patient-item").nth(1).wait_for(timeout=30_000)
        assert page.locator(".rt-patient-item").all_inner_texts()[0].startswith("P01")
        steps.shot("cohort_patients")
        t0 = time.perf_counter()
        page.locator(".rt-patient-item").filter(has_text="P02").click()
        page.locator(ROW).nth(7).wait_for(timeout=30_000)
        page.wait_for_function(SHOWN_JS, timeout=30_000, polling=50)
        print(f"  cohort patient P02 shown {time.perf_counter() - t0:.2f} s after the click")
        assert page.locator("#rt-patient").inner_text() == "P02"
        steps.shot("cohort_patient_P02")
    assert sorted(p.name for p in cohort.rglob("*")) == before  # nothing written until a review or Save
