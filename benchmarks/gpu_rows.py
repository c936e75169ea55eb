#!/usr/bin/env python
"""The GPU benchmark rows (issue 15) for one backend and layout, as JSON.

    python benchmarks/gpu_rows.py --arch cuda --layout gpu --json out.json
    python benchmarks/gpu_rows.py --arch cpu --layout cpu --quick     # try it anywhere

benchmarks/gpu_check.sh runs it for CUDA in both layouts and for the CPU (the ratio);
DEVELOPERS.md says when and how.  Every time is the median of --reps calls after a
warm-up call (so compilation is excluded), through the NumPy API (upload, binning,
download included), with g random over all four RGBA channels:

  fb_256_5120_1v      SoftRenderer.grads, 256 px, 5120 faces, 1 view         (ms)
  fb_256_5120_64v     the same, 64 views (target on an H200: <= 10 ms)      (ms)
  fb_64_24v           the fitting workload: 24 views x 64 px, 2562 vertices (ms)
  sil_64_24v          SilhouetteRenderer.grads, 24 views x 64 px            (ms)
  fit_default_s       one default fit (fit.fit_target, 24 views x 64 px); its own timer (s)
  fb_512_81920_1v     512 px, 81920 faces, 1 view                           (ms)
  peak_rss_mb         this process's peak resident memory, after every row
  gpu_mem_mb          its GPU memory (nvidia-smi), where there is one
"""
import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def gpu_mem_mb():
    """This process's GPU memory as nvidia-smi reports it (None without one)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    mine = [line.split(",") for line in out.splitlines() if line.split(",")[0].strip() == str(os.getpid())]
    return float(mine[0][1]) if mine else None


def median_ms(call, reps):
    call()  # warm-up: compiles, sizes the workspace
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(times), 3)


def grads_call(sr, renderer, level, size, views):
    mesh = sr.icosphere(level, 0.6)
    mesh = sr.Mesh(mesh.vertices, mesh.faces, np.random.default_rng(0).uniform(size=mesh.vertices.shape))
    cams = sr.Camera.orbit(views, elevation=30.0, distance=2.7) if views > 1 else sr.Camera.look_at(2.7, 30.0, 45.0)
    shape = ((views,) if views > 1 else ()) + ((size, size) if renderer.alpha_only else (size, size, 4))
    g = np.random.default_rng(1).normal(size=shape)
    return lambda: renderer.grads(mesh, cams, g)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="cuda", choices=["cpu", "cuda", "vulkan", "metal"])
    p.add_argument("--layout", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="3 reps, a 20-iteration fit, no 512 px row")
    p.add_argument("--no-fit", action="store_true", help="skip the fit row")
    p.add_argument("--only", default=None, help="comma-separated row keys to run (default: all)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    reps = 3 if args.quick else args.reps

    import taichi as ti

    import softras_taichi as sr
    from softras_taichi import backend, fit

    sr.init(args.arch, layout=args.layout)
    out = {"arch": args.arch, "layout": backend.layout(), "reps": reps, "quick": args.quick,
           "taichi": ".".join(map(str, ti.__version__)), "python": platform.python_version(),
           "host": platform.node(), "rows": {}}
    rows = out["rows"]

    only = set(args.only.split(",")) if args.only else None

    def wanted(key):
        return only is None or key in only

    def row(key, value):
        rows[key] = value
        rows["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        rows["gpu_mem_mb"] = gpu_mem_mb()
        print(f"{args.arch}/{out['layout']}: {key} = {value}", flush=True)
        if args.json:  # after every row: a run cut short still leaves what it measured
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)

    soft = sr.SoftRenderer(image_size=256)
    if wanted("fb_256_5120_1v"):
        row("fb_256_5120_1v", median_ms(grads_call(sr, soft, 4, 256, 1), reps))
        row("tile_256_5120", soft.pair_stats(sr.icosphere(4, 0.6), sr.Camera.look_at(2.7, 30.0, 45.0))["tile"])
    if wanted("fb_256_5120_64v"):
        row("fb_256_5120_64v", median_ms(grads_call(sr, soft, 4, 256, 64), reps))
    if wanted("fb_64_24v"):
        row("fb_64_24v", median_ms(grads_call(sr, sr.SoftRenderer(image_size=64), 4, 64, 24), reps))
    if wanted("sil_64_24v"):
        row("sil_64_24v", median_ms(grads_call(sr, sr.SilhouetteRenderer(image_size=64), 4, 64, 24), reps))
    if not args.no_fit and wanted("fit_default_s"):
        kw = {"iterations": 20} if args.quick else {}
        result = fit.fit_target(sr.TARGETS["blob"](), views=24, size=64, **kw)
        row("fit_default_s", round(result.seconds, 2))
        row("fit_iterations", result.iterations)
        row("fit_iou_heldout", round(float(result.iou_heldout), 4))
    if not args.quick and wanted("fb_512_81920_1v"):
        row("fb_512_81920_1v", median_ms(grads_call(sr, sr.SoftRenderer(image_size=512), 6, 512, 1), min(reps, 5)))
    return out


if __name__ == "__main__":
    main()
