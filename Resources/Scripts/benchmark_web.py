"""Latency of RadTyper Web measured in a real browser (Playwright + the system Chromium, 127.0.0.1 only).

1. Opening a patient of the demo: seconds from "server up" (the URL line) to the page showing the lesion
   table and an image in each of the four views (target < 5 s); repeated with page reloads.
2. SPHARM degree slider → new 3-D image of a 50 mm lesion (target < 300 ms): a synthetic CT with one
   lobulated liver lesion of 50 mm diameter is served with ``radtyper view --image --lesions``, computed
   (no radiomics), selected, and the slider is moved one step at a time with the keyboard; the latency is the
   time from the key press to the first decoded 3-D view image whose pixels differ (page clock).

    .venv/bin/python Resources/Scripts/benchmark_web.py [--steps 12] [--reloads 3] [--shell TIM ...]

Prints each figure and its ratio to the target. Needs the web extra and Debian's chromium.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "RadTyper"))

SHOWN_JS = """() => document.querySelectorAll('.rt-lesion-row').length > 0 &&
  Array.from(document.querySelectorAll('.rt-view-marker')).filter(m => {
    const img = m.parentElement.querySelector('img');
    return img && img.complete && img.naturalWidth > 0;
  }).length === 4"""


def big_lesion_patient(folder: Path) -> tuple[Path, Path, float]:
    """A synthetic CT with a 50 mm lobulated liver lesion (and a small lung nodule); returns the files."""
    import numpy as np

    from RadTyperLib.io import write_patient
    from RadTyperLib.measures import lesion_measures
    from RadTyperLib.phantoms import LesionSpec, make_patient

    lesions = [
        LesionSpec(
            "liver_big",
            "liver",
            "lobulated",
            25.0,
            (-60.0, -10.0, -55.0),
            mean=30.0,
            texture_sd=10.0,
            params={"amplitude": 0.15, "n_lobes": 3},
            shape_seed=5,
        ),
        LesionSpec("lung_small", "lung", "sphere", 6.0, (-72.0, -25.0, 62.0), mean=35.0, texture_sd=10.0),
    ]
    patient = make_patient(0, modality="CT", lesions=lesions, patient_id="big_lesion")
    files = write_patient(patient, folder)
    mask = patient.lesion_mask(patient.lesions[0])
    diameter = lesion_measures(mask, patient.spacing)["lesion_feret_mm"]
    assert np.isfinite(diameter)
    return files["image"], files["lesions"], diameter


def measure_open(reloads: int, out: Path) -> list[float]:
    from RadTyperWeb.browser import browser, serve

    times = []
    with serve(["--demo", "--out", str(out)]) as server, browser() as page:
        print(f"server up {server.started_s:.1f} s after launch (python start, imports, demo patient)")
        for i in range(reloads):
            t0 = time.perf_counter()
            if i == 0:
                page.goto(server.url)
            else:
                page.reload()
            page.wait_for_function(SHOWN_JS, timeout=60_000, polling=50)
            times.append(time.perf_counter() - t0)
    return times


def measure_slider(steps: int, out: Path, work: Path, shells: list[str]) -> tuple[float, list[float]]:
    from RadTyperWeb.browser import browser, frames, install_frame_recorder, latency_to_new_frame, serve

    image, lesions, diameter = big_lesion_patient(work)
    latencies = []
    with (
        serve(["--image", str(image), "--lesions", str(lesions), "--out", str(out)]) as server,
        browser() as page,
    ):
        page.goto(server.url)
        page.wait_for_function(SHOWN_JS, timeout=60_000, polling=50)
        page.locator(".rt-lesion-row").filter(has_text="liver_big").click()
        page.locator("#rt-tab-analysis").click()
        page.locator("#rt-radiomics").uncheck()
        page.locator("#rt-compute").click()
        page.locator("#rt-subtype-name").wait_for(timeout=600_000)
        for shell in shells:
            page.locator(f"#rt-shell-{shell}").check()
        time.sleep(2.0)
        install_frame_recorder(page)
        thumb = page.locator("#rt-degree-box .v-slider-thumb").first
        for i in range(steps):
            time.sleep(0.8)  # the previous image has settled
            sig = frames(page, "ThreeD")[-1]["sig"]
            thumb.focus()
            page.keyboard.press("ArrowLeft" if i < steps // 2 else "ArrowRight")
            t_key = page.evaluate("window.__rt.keydown")
            latencies.append(latency_to_new_frame(page, "ThreeD", sig, t_key))
    return diameter, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="slider steps measured (default 12)")
    parser.add_argument("--reloads", type=int, default=3, help="page loads of the demo (default 3)")
    parser.add_argument(
        "--shell",
        action="append",
        default=[],
        choices=["TC", "TIM", "PM5", "PM10"],
        help="shell shown (repeat)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radtyper-bench-web-") as tmp:
        tmp_path = Path(tmp)
        opens = measure_open(args.reloads, tmp_path / "out-demo")
        print(
            "open demo patient after server up: "
            + ", ".join(f"{t:.2f}" for t in opens)
            + f" s; worst {max(opens):.2f} s = {max(opens) / 5.0:.2f} × the 5 s target"
        )
        (tmp_path / "work").mkdir()
        diameter, lat = measure_slider(args.steps, tmp_path / "out-big", tmp_path / "work", args.shell)
        lat_sorted = sorted(lat)
        p90 = lat_sorted[min(len(lat) - 1, round(0.9 * (len(lat) - 1)))]
        print(
            f"degree slider -> new 3-D image, lesion of longest diameter {diameter:.1f} mm, shells shown: "
            f"{', '.join(args.shell) or 'none'}, {len(lat)} steps: "
            + ", ".join(f"{x:.0f}" for x in lat)
            + " ms"
        )
        print(
            f"  median {statistics.median(lat):.0f} ms = {statistics.median(lat) / 300:.2f} × the 300 ms target; "
            f"p90 {p90:.0f} ms = {p90 / 300:.2f} ×; max {max(lat):.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
