#!/usr/bin/env python
"""Benchmark of U-Net inference on CPU: seconds per 512 × 512 × 100 volume and peak memory.

Each measurement runs in a fresh child process (peak resident memory, ``ru_maxrss``, only grows), with the
**default architecture** (:class:`RadTyperLib.segmentation.unet.UNetConfig`: depth 4, 16 base channels,
dilations 1, 2, 4, 8; random weights — the run time does not depend on their values) and the default tile budget
(1024² pixels per network input: a 512² slice runs whole, 4 slices per forward pass):

* ``volume`` — :func:`segment_lesions` on a synthetic CT-like int16 volume of 512 × 512 × 100 voxels
  (0.7 × 0.7 × 2.5 mm): wall time, peak RSS, tracemalloc peak (Python heap, numpy included; torch's
  own allocator is not traced), largest network input;
* ``huge-tiled`` / ``huge-untiled`` (``--huge``) — one 2048 × 2048 slice with the default tile budget (exact
  tiling) and without limit: time, peak RSS and the largest difference of the probabilities.

Usage: python Resources/Scripts/benchmark_unet.py [--threads 1] [--huge] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def synthetic_ct(nx: int, ny: int, nz: int, spacing=(0.7, 0.7, 2.5)):
    """An int16 CT-like volume: air, an elliptic body (fat rim, muscle), two lungs, a few nodules, noise."""
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    arr = np.full((nz, ny, nx), -1000, dtype=np.int16)
    yy, xx = np.mgrid[0:ny, 0:nx]
    cy, cx = ny / 2, nx / 2
    body = ((yy - cy) / (0.42 * ny)) ** 2 + ((xx - cx) / (0.47 * nx)) ** 2 <= 1
    inner = ((yy - cy) / (0.38 * ny)) ** 2 + ((xx - cx) / (0.43 * nx)) ** 2 <= 1
    lungs = (((yy - cy) / (0.3 * ny)) ** 2 + ((np.abs(xx - cx) - 0.2 * nx) / (0.14 * nx)) ** 2) <= 1
    base = np.where(lungs, -850, np.where(inner, 45, np.where(body, -100, -1000))).astype(np.int16)
    for z in range(nz):
        sl = base + rng.normal(0, 12, size=(ny, nx)).astype(np.int16)
        for k in range(3):
            r = 6 + 3 * k
            ny0, nx0 = int(cy + (k - 1) * 0.15 * ny), int(cx + (-1) ** k * 0.2 * nx)
            if abs(z - nz // 2 - 10 * k) < r:
                sl[(yy - ny0) ** 2 + (xx - nx0) ** 2 <= r * r] = 40
        arr[z] = sl
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    return img


def _bundle():
    import torch

    from RadTyperLib.segmentation.unet.bundle import bundle_from_network
    from RadTyperLib.segmentation.unet.network import UNetConfig, build_unet
    from RadTyperLib.segmentation.unet.normalize import Normalization

    torch.manual_seed(0)
    net = build_unet(UNetConfig())
    return bundle_from_network(net, Normalization("CT"), min_size_mm3=50.0)


def child(case: str, threads: int, npy: str | None = None) -> dict:
    """One measurement in this process (see the module docstring)."""
    import torch

    torch.set_num_threads(threads)
    from RadTyperLib.segmentation.unet.infer import SlicePredictor, segment_lesions
    from RadTyperLib.segmentation.unet.network import count_parameters, receptive_radius

    bundle = _bundle()
    cfg = bundle.config
    info = {
        "case": case,
        "threads": threads,
        "device": f"CPU ({os.cpu_count()} logical cores visible)",
        "depth": cfg.depth,
        "base_channels": cfg.base_channels,
        "dilations": list(cfg.dilations),
        "n_parameters": count_parameters(bundle.network()),
        "receptive_radius_px": receptive_radius(cfg),
        "torch": torch.__version__,
    }
    if case == "volume":
        image = synthetic_ct(512, 512, 100)
        info["size"] = "512 × 512 × 100"
        info["baseline_rss_mib"] = _rss_mib()
        tracemalloc.start()
        t0 = time.perf_counter()
        res = segment_lesions(image, bundle, modality="CT", device="cpu")
        info["seconds"] = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        info["seconds_per_slice"] = info["seconds"] / 100
        info["tracemalloc_peak_mib"] = peak / 2**20
        info["peak_rss_mib"] = _rss_mib()
        info["n_lesions"] = len(res.names)
        info["max_window_pixels"] = res.max_input_pixels
        info["forward_passes"] = res.forward_passes
        return info
    n = 2048
    rng = np.random.default_rng(1)
    x = rng.random((1, 1, n, n), dtype=np.float32)
    info["baseline_rss_mib"] = _rss_mib()
    budget = None if case == "huge-untiled" else bundle.max_tile_pixels
    pred = SlicePredictor(bundle, device="cpu", max_tile_pixels=budget or n * n)
    t0 = time.perf_counter()
    prob = pred.predict(x)
    info["seconds"] = time.perf_counter() - t0
    info["peak_rss_mib"] = _rss_mib()
    info["max_tile_pixels"] = pred.max_tile_pixels
    info["max_window_pixels"] = pred.max_window_pixels
    info["forward_passes"] = pred.n_forward
    if npy:
        np.save(npy, prob)
    return info


def run_child(case: str, threads: int, npy: str | None = None) -> dict:
    extra = ["--npy", npy] if npy else []
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, "--threads", str(threads), *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--huge", action="store_true", help="also the 2048² slice, tiled and untiled")
    ap.add_argument("--json", help="write the results as JSON (read by study_unet_realdata.py)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--npy", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.npy)))
        return
    res = run_child("volume", args.threads)
    print(
        f"512×512×100 volume: {res['seconds']:.1f} s ({res['seconds_per_slice']:.2f} s/slice), peak RSS "
        f"{res['peak_rss_mib']:.0f} MiB (start {res['baseline_rss_mib']:.0f} MiB), tracemalloc peak "
        f"{res['tracemalloc_peak_mib']:.0f} MiB; {res['n_parameters']} parameters, receptive radius "
        f"{res['receptive_radius_px']} px"
    )
    if args.huge:
        with tempfile.TemporaryDirectory() as tmp:
            tiled = run_child("huge-tiled", args.threads, os.path.join(tmp, "tiled.npy"))
            untiled = run_child("huge-untiled", args.threads, os.path.join(tmp, "untiled.npy"))
            diff = float(
                np.abs(
                    np.load(os.path.join(tmp, "tiled.npy")) - np.load(os.path.join(tmp, "untiled.npy"))
                ).max()
            )
        for r in (tiled, untiled):
            print(
                f"2048² slice {r['case']}: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB, largest input "
                f"{r['max_window_pixels']} px, {r['forward_passes']} forward pass(es)"
            )
        print(f"max |p_tiled − p_untiled| = {diff:.2e}")
        res["tiled"] = {**tiled, "max_abs_diff": diff}
        res["untiled"] = untiled
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
