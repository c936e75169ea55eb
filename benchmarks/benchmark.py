#!/usr/bin/env python
"""Timing and memory of softras-taichi's soft rasterizer: binned (tiles) vs dense.

    python benchmarks/benchmark.py --quick                 # 64/256 px, 5k faces, 1 and 24 views
    python benchmarks/benchmark.py                         # the full sweep (long on a CPU)
    python benchmarks/benchmark.py --arch cuda --sizes 256,512 --faces 5k,80k
    python benchmarks/benchmark.py --check-targets         # PASS/FAIL of the performance targets

Each configuration (mode, image size, faces, views) runs in its own Python process,
so that its peak RSS is its own and a configuration that is too slow can be stopped
(`--max-seconds`).  `--in-process` runs everything in this process instead (faster to
start, but peak RSS is then a high-water mark over all configurations so far, and a
slow first call cannot be interrupted).

Modes: "binned" = the renderer's tiles (`SoftRenderer(image_size=S)`, or `--tile T`);
"dense" = one tile per view (`tile=S`): every face in the view is tested at every pixel.

Times are wall-clock milliseconds of the NumPy API (`render` for forward, `grads` with a
random weight on all four RGBA channels for forward+backward), including the upload of
the mesh and cameras and the download of the results.  See benchmarks/README.md.
"""
import argparse
import datetime
import json
import math
import os
import platform
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DISTANCE, RADIUS, ELEVATION, AZIMUTH = 2.7, 0.6, 30.0, 45.0
TAG = "@@BENCH "  # prefix of the worker's protocol lines on stdout


# --------------------------------------------------------------------------- helpers
def parse_list(text, cast=int):
    return [cast(x) for x in str(text).split(",") if x.strip()]


def parse_faces(text):
    """'1k,5k,20k,80k' | '5120,81920' | 'L3,L4' -> icosphere levels (20·4^L faces)."""
    levels = []
    for tok in parse_list(text, str):
        tok = tok.strip().lower()
        if tok.startswith("l"):
            levels.append(int(tok[1:]))
            continue
        n = float(tok[:-1]) * 1000 if tok.endswith("k") else float(tok)
        if n < 20:
            raise argparse.ArgumentTypeError(f"--faces: {tok!r} is fewer than 20 faces")
        levels.append(int(round(math.log(n / 20.0, 4))))
    return levels


def faces_of(level):
    return 20 * 4 ** level


def peak_rss_mb():
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def rss_now_mb():
    """Current resident memory (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name(arch):
    cmds = {"cuda": ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            "vulkan": ["vulkaninfo", "--summary"]}
    if arch not in cmds:
        return None
    try:
        out = subprocess.run(cmds[arch], capture_output=True, text=True, timeout=20).stdout
    except Exception:  # noqa: BLE001 - the tool is optional
        return None
    if arch == "cuda":
        return out.strip().splitlines()[0] if out.strip() else None
    names = [ln.split("=", 1)[1].strip() for ln in out.splitlines() if "deviceName" in ln]
    return ", ".join(names) or None


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def median_ms(times):
    return 1000.0 * statistics.median(times) if times else None


def fmt(x, width, prec=1):
    if x is None:
        return "-".rjust(width)
    if isinstance(x, float):
        return f"{x:{width}.{prec}f}"
    return str(x).rjust(width)


# --------------------------------------------------------------------------- measuring
_MESHES = {}


def make_mesh(sr, level):
    import numpy as np
    if level not in _MESHES:
        m = sr.icosphere(level, RADIUS)
        colors = np.random.default_rng(level).uniform(0.05, 0.95, (m.num_vertices, 3))
        _MESHES[level] = sr.Mesh(m.vertices, m.faces, colors)
    return _MESHES[level]


def make_cameras(sr, views):
    if views == 1:
        return sr.Camera.look_at(DISTANCE, ELEVATION, AZIMUTH)
    return sr.Camera.orbit(views, elevation=ELEVATION, distance=DISTANCE)


def make_renderer(sr, mode, size, tile):
    if mode == "dense":
        return sr.SoftRenderer(image_size=size, tile=size)
    if tile is None:
        return sr.SoftRenderer(image_size=size)  # the renderer's own default tile
    return sr.SoftRenderer(image_size=size, tile=tile)


def bin_stats(sr, renderer, mesh, views):
    """Binning stats of rendering `mesh` with this renderer's cameras, with its (pixel, face)
    pair counts (renderer.pair_stats); None when unavailable."""
    try:
        return dict(renderer.pair_stats(mesh, make_cameras(sr, views)))
    except Exception:  # noqa: BLE001 - older checkouts have no renderer.pair_stats
        return None


def measure(cfg, emit):
    """Measure one configuration; `emit(event, dict)` reports progress. Returns the result dict."""
    import numpy as np
    import softras_taichi as sr

    budget = cfg["max_seconds"]
    res = dict(mode=cfg["mode"], size=cfg["size"], faces=faces_of(cfg["level"]), views=cfg["views"],
               level=cfg["level"], tile=None, entries=None, pairs=None, bins=None, first_fwd_ms=None,
               first_fb_ms=None, fwd_ms=None, fb_ms=None, fwd_repeats=0, fb_repeats=0,
               rss_base_mb=None, rss_before_mb=None, peak_rss_mb=None, rss_after_mb=None, note="")
    if sr.backend.current()[0] != cfg["arch"]:
        sr.init(cfg["arch"], verbose=False)
    mesh = make_mesh(sr, cfg["level"])
    cams = make_cameras(sr, cfg["views"])
    r = make_renderer(sr, cfg["mode"], cfg["size"], cfg.get("tile"))
    res["rss_base_mb"] = peak_rss_mb()  # high-water mark so far (building the mesh included)
    res["rss_before_mb"] = rss_now_mb()  # resident now, before the first render
    emit("ready", {})

    def done():
        res["peak_rss_mb"] = peak_rss_mb()
        res["rss_after_mb"] = rss_now_mb()
        res["bins"] = bin_stats(sr, r, mesh, cfg["views"])
        if res["bins"]:
            res["tile"], res["entries"] = res["bins"].get("tile"), res["bins"].get("entries")
            res["pairs"] = res["bins"].get("within")
        elif cfg["mode"] == "dense":
            res["tile"] = cfg["size"]
        return res

    t = time.perf_counter()
    img = r.render(mesh, cams)
    first = time.perf_counter() - t
    res["first_fwd_ms"] = 1000 * first
    emit("first", {"first_fwd_ms": res["first_fwd_ms"]})
    if first > budget:
        res["note"] = f"skipped: first forward {first:.1f} s > --max-seconds {budget:g}"
        return done()

    g = np.random.default_rng(0).normal(size=img.shape).astype(np.float32)
    t = time.perf_counter()
    r.grads(mesh, cams, g)
    first_fb = time.perf_counter() - t
    res["first_fb_ms"] = 1000 * first_fb
    emit("first_fb", {"first_fb_ms": res["first_fb_ms"]})

    def timed(fn, n_max):
        t = time.perf_counter()  # warm-up call, also sizes the number of repeats
        fn()
        warm = time.perf_counter() - t
        if warm > budget:  # too slow to repeat: the (compiled) warm-up call is the measurement
            return [warm], 1
        n = max(1, min(n_max, int(budget / max(warm, 1e-9))))
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return times, n

    times, res["fwd_repeats"] = timed(lambda: r.render(mesh, cams), cfg["repeats"])
    res["fwd_ms"] = median_ms(times)
    emit("fwd", {"fwd_ms": res["fwd_ms"]})
    times, res["fb_repeats"] = timed(lambda: r.grads(mesh, cams, g), cfg["repeats"])
    res["fb_ms"] = median_ms(times)
    if min(res["fwd_repeats"], res["fb_repeats"]) < cfg["repeats"]:
        res["note"] = (f"repeats cut to {res['fwd_repeats']}/{res['fb_repeats']} "
                       f"by --max-seconds {budget:g}")
    return done()


def worker_main(cfg_json):
    """Child process: measure one configuration, report protocol lines on stdout."""
    cfg = json.loads(cfg_json)

    def emit(event, data):
        print(TAG + json.dumps(dict(event=event, **data)), flush=True)

    try:
        res = measure(cfg, emit)
        import softras_taichi as sr
        emit("result", {"result": res, "arch": sr.backend.current()[0]})
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        import traceback
        traceback.print_exc()
        emit("error", {"error": f"{type(exc).__name__}: {exc}"})
        sys.exit(1)


def run_isolated(cfg, cold=False, startup_timeout=180.0):
    """Run one configuration in a child process; kill it if its first call runs past budget."""
    budget = cfg["max_seconds"]
    env = dict(os.environ, ENABLE_TAICHI_HEADER_PRINT="0")
    tmp = None
    if cold:  # an empty offline cache: the first call really compiles
        tmp = tempfile.TemporaryDirectory(prefix="softras-bench-cache-")
        env["TI_OFFLINE_CACHE_FILE_PATH"] = tmp.name
    errf = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)],
                            stdout=subprocess.PIPE, stderr=errf, text=True, env=env)
    lines = queue.Queue()

    def reader():
        for line in proc.stdout:
            if line.startswith(TAG):
                lines.put(json.loads(line[len(TAG):]))
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    partial = dict(mode=cfg["mode"], size=cfg["size"], faces=faces_of(cfg["level"]), views=cfg["views"],
                   level=cfg["level"], note="")
    # how long each phase may take before the child is killed
    limits = {"ready": startup_timeout, "first": budget, "first_fb": 4 * budget + 30,
              "fwd": (cfg["repeats"] + 2) * budget + 60, "result": (cfg["repeats"] + 2) * budget + 60}
    waiting = "ready"
    deadline = time.monotonic() + limits[waiting]
    result = None
    try:
        while True:
            try:
                msg = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                proc.kill()
                proc.wait()
                what = {"ready": "start-up", "first": "first forward call (compile + run)",
                        "first_fb": "first forward+backward call"}.get(waiting, "timed calls")
                lim = limits[waiting]
                partial["note"] = f"skipped: {what} still running after {lim:g} s (killed)"
                result = partial
                break
            if msg is None:  # child exited
                proc.wait()
                errf.seek(0)
                tail = errf.read().strip().splitlines()[-3:]
                partial["note"] = f"error: child exited with code {proc.returncode}: " + " | ".join(tail)
                result = partial
                break
            ev = msg.pop("event")
            if ev == "result":
                result = msg["result"]
                proc.wait()
                break
            if ev == "error":
                partial["note"] = "error: " + msg["error"]
                proc.wait()
                result = partial
                break
            partial.update(msg)
            waiting = {"ready": "first", "first": "first_fb", "first_fb": "fwd", "fwd": "result"}[ev]
            deadline = time.monotonic() + limits[waiting]
    finally:
        errf.close()
        if tmp is not None:
            tmp.cleanup()
    return result


# --------------------------------------------------------------------------- the sweep
HEADER = (f"{'mode':<7}{'size':>5}{'faces':>7}{'views':>6}{'tile':>5}{'entries':>10}{'pairs':>10}"
          f"{'first fwd':>11}{'first f+b':>11}{'fwd ms':>10}{'f+b ms':>10}{'ns/pair':>8}{'reps':>6}"
          f"{'RSS MB':>8}  note")


def row(r):
    r["note"] = " ".join(str(r.get("note") or "").split())  # one line
    reps = f"{r.get('fwd_repeats') or 0}/{r.get('fb_repeats') or 0}"
    per_pair = 1e6 * r["fb_ms"] / r["pairs"] if r.get("fb_ms") and r.get("pairs") else None
    return (f"{r['mode']:<7}{r['size']:>5}{r['faces']:>7}{r['views']:>6}{fmt(r.get('tile'), 5)}"
            f"{fmt(r.get('entries'), 10)}{fmt(r.get('pairs'), 10)}{fmt(r.get('first_fwd_ms'), 11)}"
            f"{fmt(r.get('first_fb_ms'), 11)}{fmt(r.get('fwd_ms'), 10, 2)}{fmt(r.get('fb_ms'), 10, 2)}"
            f"{fmt(per_pair, 8, 1)}{reps:>6}"
            f"{fmt(r.get('peak_rss_mb'), 8, 0)}  {r.get('note', '')}")


def times_x(x, width=0):
    return (f"{x:.1f}x" if x else "-").rjust(width)


def speedup(binned, dense):
    out = {}
    for k in ("fwd_ms", "fb_ms"):
        b, d = binned.get(k), dense.get(k)
        out[k.replace("_ms", "")] = (d / b) if b and d else None
    return out


def machine_info(arch_name, args):
    import taichi as ti
    import softras_taichi as sr
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return dict(backend=arch_name, requested_arch=args.arch, cpu=cpu_model(), nproc=affinity,
                cpu_count=os.cpu_count(), gpu=gpu_name(arch_name), platform=platform.platform(),
                python=platform.python_version(), taichi=".".join(map(str, ti.__version__)),
                softras_taichi=getattr(sr, "__version__", None), commit=git_commit(),
                date=datetime.datetime.now().isoformat(timespec="seconds"),
                isolated=not args.in_process, cold_compile=args.cold,
                mesh=f"icosphere radius {RADIUS} at distance {DISTANCE}, elevation {ELEVATION}, "
                     f"azimuth {AZIMUTH} (1 view) or Camera.orbit (N views)")


def dominated(skipped, cfg):
    """A configuration at least as large as one already skipped is skipped too."""
    for s in skipped:
        if (s["mode"] == cfg["mode"] and cfg["size"] >= s["size"] and cfg["level"] >= s["level"]
                and cfg["views"] >= s["views"]):
            return s
    return None


def sweep(args):
    import softras_taichi as sr
    arch_name = sr.init(args.arch, verbose=False)
    info = machine_info(arch_name, args)
    print(f"softras-taichi benchmark: backend {arch_name}"
          + (f" ({info['gpu']})" if info["gpu"] else "")
          + f", CPU {info['cpu']}, {info['nproc']} cores, taichi {info['taichi']}, commit {info['commit']}")
    print(f"  {'isolated processes' if info['isolated'] else 'in-process'}, "
          f"{'cold' if args.cold else 'warm (offline cache)'} compile, repeats {args.repeats}, "
          f"max {args.max_seconds:g} s per first call; times in ms\n", flush=True)
    print(HEADER)
    print("-" * len(HEADER), flush=True)
    results, speedups, skipped = [], [], []
    for size in args.sizes:
        for level in args.faces:
            for views in args.views:
                done = {}
                for mode in args.modes:
                    cfg = dict(arch=arch_name, mode=mode, size=size, level=level, views=views,
                               repeats=args.repeats, max_seconds=args.max_seconds, tile=args.tile)
                    big = dominated(skipped, cfg)
                    if big is not None:
                        res = dict(mode=mode, size=size, faces=faces_of(level), views=views, level=level,
                                   note=f"skipped: larger than {big['mode']} {big['size']} px "
                                        f"{big['faces']} faces {big['views']} views, which was skipped")
                    elif args.in_process:
                        res = measure(cfg, lambda ev, data: None)
                    else:
                        res = run_isolated(cfg, cold=args.cold)
                    if res.get("note", "").startswith("skipped") and big is None:
                        skipped.append(dict(cfg, faces=faces_of(level)))
                    results.append(res)
                    done[mode] = res
                    print(row(res), flush=True)
                if "binned" in done and "dense" in done:
                    s = speedup(done["binned"], done["dense"])
                    speedups.append(dict(size=size, faces=faces_of(level), views=views, **s))
                    if s["fwd"] or s["fb"]:
                        print(f"{'':7}  -> binned vs dense: forward {times_x(s['fwd'])}, "
                              f"forward+backward {times_x(s['fb'])} faster", flush=True)
    if speedups:
        print("\nspeedup of binned over dense (dense ms / binned ms):")
        print(f"{'size':>5}{'faces':>7}{'views':>6}{'forward':>10}{'fwd+bwd':>10}")
        for s in speedups:
            print(f"{s['size']:>5}{s['faces']:>7}{s['views']:>6}{times_x(s['fwd'], 10)}{times_x(s['fb'], 10)}")
    out = args.json or os.path.join(HERE, f"results-{arch_name}.json")
    with open(out, "w") as fh:
        json.dump(dict(meta=info, args=vars(args), results=results, speedups=speedups), fh, indent=1)
    print(f"\nwrote {out}")
    return 0


# --------------------------------------------------------------------------- the targets
def check_targets(args):
    """The speed targets (benchmarks/targets.py): one PASS/FAIL line each."""
    sys.path.insert(0, HERE)
    import targets
    argv = ["--arch", args.arch] + (["--json", args.json] if args.json else [])
    return targets.main(argv)


# --------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="cpu", choices=["cpu", "cuda", "vulkan", "metal", "auto"])
    p.add_argument("--sizes", type=parse_list, default=[64, 128, 256, 512], help="image sizes, e.g. 64,256")
    p.add_argument("--faces", type=parse_faces, default=[3, 4, 5, 6],
                   help="face counts of the icosphere, rounded to 20*4^L: '1k,5k,20k,80k' (default) "
                        "= levels 3,4,5,6 = 1280,5120,20480,81920 faces; 'L4' names a level")
    p.add_argument("--views", type=parse_list, default=[1, 24], help="views per call, e.g. 1,24")
    p.add_argument("--modes", type=lambda s: parse_list(s, str), default=["binned", "dense"],
                   help="binned (the renderer's tiles) and/or dense (one tile per view)")
    p.add_argument("--tile", type=lambda t: t if t == "auto" else int(t), default=None,
                   help="tile side of the binned mode: pixels or 'auto' (default: the renderer's default)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median)")
    p.add_argument("--quick", action="store_true",
                   help="64 and 256 px, 5120 faces, 1 and 24 views, 3 repeats")
    p.add_argument("--json", default=None, help="output file (default benchmarks/results-<arch>.json, "
                   "or benchmarks/targets-<arch>.json with --check-targets)")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="skip a configuration (and any larger one) whose first call (compile + run) "
                        "takes longer than this; also caps the repeats of slow configurations")
    p.add_argument("--in-process", action="store_true",
                   help="no child processes (faster; RSS is then a high-water mark over configurations)")
    p.add_argument("--cold", action="store_true",
                   help="empty Taichi offline cache per configuration, so 'first' is a real compile")
    p.add_argument("--check-targets", action="store_true",
                   help="the speed targets, PASS/FAIL (runs benchmarks/targets.py)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    for m in args.modes:
        if m not in ("binned", "dense"):
            p.error(f"--modes: unknown mode {m!r} (binned, dense)")
    if args.quick:
        args.sizes, args.faces, args.views, args.repeats = [64, 256], [4], [1, 24], min(args.repeats, 3)
    if args.check_targets:
        return check_targets(args)
    return sweep(args)


if __name__ == "__main__":
    sys.exit(main() or 0)
