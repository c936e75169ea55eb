#!/usr/bin/env python
"""The speed targets a user feels, measured through the public API, PASS/FAIL per row.

    python benchmarks/targets.py                       # this checkout: every row, PASS/FAIL, JSON
    python benchmarks/targets.py --vs ../old-checkout  # before/after: the two run alternately
    python benchmarks/targets.py --lectures            # also each lecture from a cold cache
    python benchmarks/targets.py --arch cuda           # any backend sr.init accepts

Every measurement runs in a fresh Python process (a "worker"), because what is measured
includes the process's first import, first compile and Taichi's offline cache:

  compile   first image (import + sr.init + first 64 px render) and first gradient, then
            three new configurations (another image size, mesh and number of views), each a
            render + vertex_grad; with an empty Taichi cache ("cold") and a filled one ("warm")
  speed     median vertex_grad of 256 px × 5120 faces, 24 views × 64 px (SoftRenderer and,
            where it exists, SilhouetteRenderer), 256 px × 20480 faces, the calls interleaved
            in rounds so that a busy spell of a shared machine lands on all alike; then
            512 px × 81920 faces and its (pixel, face) pairs within the culling radius
  lectures  (--lectures) each notebook executed as CI does (pytest + nbval) with an empty
            cache; this checkout's notebooks and test settings, the other checkout's library

Each vertex_grad call alternates between two slightly different meshes, so that none
can reuse the previous call's forward pass.  With --vs the other checkout's workers
run with PYTHONPATH set to it, alternating with this one's, --rounds times; the table
gives the medians and new/old ratios.  See benchmarks/README.md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TAG = "@@ROWS "
DISTANCE, RADIUS = 2.7, 0.6

# (key, what, target, unit): a row passes when its value is <= target
TARGETS = [
    ("new_config_warm_s", "a new configuration (size, mesh, views), render + vertex_grad, warm cache", 0.3, "s"),
    ("new_config_cold_s", "a new configuration, cold cache", 1.0, "s"),
    ("first_image_cold_s", "first image in a fresh process (import + init + render), cold cache", 2.0, "s"),
    ("soft_256_ms", "SoftRenderer.vertex_grad 256 px x 5120 faces", 20.0, "ms"),
    ("soft_24x64_ms", "SoftRenderer.vertex_grad 24 views x 64 px", 50.0, "ms"),
    ("sil_24x64_ms", "SilhouetteRenderer.vertex_grad 24 views x 64 px", 25.0, "ms"),
    ("ns_per_pair_512", "forward + backward per pair, 512 px x 81920 faces", 20.0, "ns"),
    ("growth_5k_20k", "5120 -> 20480 faces at 256 px: time ratio, at most the pairs' ratio", None, "x"),
    ("lecture_max_s", "slowest lecture from a cold cache", 30.0, "s"),
    ("lectures_total_s", "all lectures from a cold cache", 180.0, "s"),
]


# --------------------------------------------------------------------------- workers
def _setup(arch):
    import softras_taichi as sr
    sr.init(arch, verbose=False)
    return sr


def _mesh_pair(sr, level):
    m = sr.icosphere(level, RADIUS)
    rng = np.random.default_rng(level)
    m = sr.Mesh(m.vertices, m.faces, rng.uniform(0.2, 0.9, m.vertices.shape))
    return m, sr.Mesh(m.vertices * (1.0 + 1e-5), m.faces, m.colors)


def _cams(sr, views):
    if views == 1:
        return sr.Camera.look_at(DISTANCE, 30.0, 45.0)
    return sr.Camera.orbit(views, elevation=30.0, distance=DISTANCE)


def _grad_call(sr, R, size, level, views):
    """A closure running one forward + backward, alternating two meshes."""
    r = R(image_size=size)
    meshes, cam = _mesh_pair(sr, level), _cams(sr, views)
    img = r.render(meshes[0], cam)
    g = np.random.default_rng(0).normal(size=img.shape).astype(np.float32)
    k = [0]

    def call():
        k[0] ^= 1
        r.vertex_grad(meshes[k[0]], cam, g)
    return call, r, meshes[0], cam


def _pairs(r, mesh, cam):
    scene = r.scene(mesh, cam)
    scene.render()
    return scene.pair_stats()["within"]


def worker_compile(arch):
    t0 = time.perf_counter()
    sr = _setup(arch)
    r = sr.SoftRenderer(image_size=64)
    mesh, cam = sr.icosphere(3, RADIUS), _cams(sr, 1)
    img = r.render(mesh, cam)
    out = {"first_image_s": time.perf_counter() - t0}
    t = time.perf_counter()
    r.vertex_grad(mesh, cam, np.ones_like(img))
    out["first_grad_s"] = time.perf_counter() - t
    news = []
    for size, level, views in ((128, 3, 1), (64, 2, 3), (96, 4, 2)):
        t = time.perf_counter()
        call, *_ = _grad_call(sr, sr.SoftRenderer, size, level, views)  # render + ...
        call()                                                          # ... vertex_grad
        news.append(time.perf_counter() - t)
    out["new_config_s"] = statistics.median(news)
    out["new_configs_s"] = news
    return out


def worker_speed(arch, rounds):
    sr = _setup(arch)
    rows = {"soft_256_ms": (sr.SoftRenderer, 256, 4, 1), "soft_24x64_ms": (sr.SoftRenderer, 64, 4, 24),
            "soft_256_20k_ms": (sr.SoftRenderer, 256, 5, 1)}
    if hasattr(sr, "SilhouetteRenderer"):
        rows["sil_24x64_ms"] = (sr.SilhouetteRenderer, 64, 4, 24)
    calls, times, cpu, out = {}, {k: [] for k in rows}, {k: [] for k in rows}, {}
    for key, spec in rows.items():
        call, r, mesh, cam = _grad_call(sr, *spec)
        call()
        call()
        calls[key] = call
        if key in ("soft_256_ms", "soft_256_20k_ms"):
            out[key.replace("_ms", "_pairs")] = _pairs(r, mesh, cam)
    for _ in range(rounds):
        for key, call in calls.items():
            t, c = time.perf_counter(), time.process_time()
            call()
            times[key].append(time.perf_counter() - t)
            cpu[key].append(time.process_time() - c)
    out.update({k: 1000.0 * statistics.median(v) for k, v in times.items()})
    # CPU seconds of all threads: the work done, less sensitive than wall time to other
    # processes sharing the machine
    out.update({k.replace("_ms", "_cpu_ms"): 1000.0 * statistics.median(v) for k, v in cpu.items()})
    out["growth_5k_20k"] = out["soft_256_20k_ms"] / out["soft_256_ms"]
    out["pairs_growth_5k_20k"] = out["soft_256_20k_pairs"] / out["soft_256_pairs"]
    call, r, mesh, cam = _grad_call(sr, sr.SoftRenderer, 512, 6, 1)
    call()
    ts, cs = [], []
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        call()
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    out["fb_512_ms"], out["fb_512_cpu_ms"] = 1000.0 * statistics.median(ts), 1000.0 * statistics.median(cs)
    out["pairs_512"] = _pairs(r, mesh, cam)
    out["ns_per_pair_512"] = 1e6 * out["fb_512_ms"] / out["pairs_512"]
    return out


def worker_main(kind, arch, rounds):
    import softras_taichi
    print(f"worker {kind}: softras_taichi from {os.path.dirname(softras_taichi.__file__)}", file=sys.stderr)
    out = worker_compile(arch) if kind == "compile" else worker_speed(arch, rounds)
    print(TAG + json.dumps(out), flush=True)


# --------------------------------------------------------------------------- driver
def python_path(tree):
    """PYTHONPATH under which `import softras_taichi` imports `tree`'s copy (it comes before
    an editable install of this one; the workers run in `tree`, not here)."""
    rest = os.environ.get("PYTHONPATH", "")
    return rest if tree == ROOT else tree + (os.pathsep + rest if rest else "")


def run_worker(kind, tree, cache, arch, rounds):
    env = dict(os.environ, TI_OFFLINE_CACHE_FILE_PATH=cache, ENABLE_TAICHI_HEADER_PRINT="0",
               PYTHONPATH=python_path(tree))
    env.pop("TI_ARCH", None)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--arch", arch, "--rounds", str(rounds)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)
    for line in proc.stdout.splitlines():
        if line.startswith(TAG):
            return json.loads(line[len(TAG):])
    raise RuntimeError(f"worker {kind} in {tree} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def run_lecture(tree, name, timeout):
    """Seconds to execute notebooks/NAME of `tree` the way CI does (pytest + nbval, a fresh
    kernel of this Python, an empty Taichi cache); None if it failed."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TI_OFFLINE_CACHE_FILE_PATH=cache, ENABLE_TAICHI_HEADER_PRINT="0",
                   PYTHONPATH=python_path(tree), TI_ARCH="x64")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--timeout={timeout}",
               os.path.join("notebooks", name)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t
    if proc.returncode != 0:
        print(f"  {name} failed in {tree}:\n{proc.stdout[-1500:]}", file=sys.stderr)
        return None
    return seconds


def measure(tree, arch, rounds, warm_cache):
    """One of each worker for `tree`: cold compile, warm compile, speed (warm cache)."""
    with tempfile.TemporaryDirectory() as cold:
        c = run_worker("compile", tree, cold, arch, rounds)
    w = run_worker("compile", tree, warm_cache, arch, rounds)
    s = run_worker("speed", tree, warm_cache, arch, rounds)
    return {"first_image_cold_s": c["first_image_s"], "first_grad_cold_s": c["first_grad_s"],
            "new_config_cold_s": c["new_config_s"], "first_image_warm_s": w["first_image_s"],
            "first_grad_warm_s": w["first_grad_s"], "new_config_warm_s": w["new_config_s"], **s}


def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def machine():
    info = {"python": sys.version.split()[0], "nproc": os.cpu_count()}
    try:
        info["load_avg"] = os.getloadavg()
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), None)
    except OSError:
        pass
    try:
        import taichi
        info["taichi"] = taichi.__version__
    except Exception:  # noqa: BLE001
        pass
    return info


def fmt(v, unit):
    if v is None:
        return "-"
    return f"{v:.2f} {unit}" if unit in ("s", "x") else f"{v:.1f} {unit}"


def report(new, old, args):
    rows = []
    for key, what, target, unit in TARGETS:
        v = med(new, key)
        if key == "growth_5k_20k":
            target = med(new, "pairs_growth_5k_20k")
        ok = None if v is None or target is None else v <= target
        o = med(old, key) if old else None
        rows.append(dict(key=key, what=what, target=target, unit=unit, new=v, old=o,
                         passed=ok, ratio=(v / o if v is not None and o else None)))
        line = f"{'PASS' if ok else ('FAIL' if ok is False else '  - ')}  {what}: {fmt(v, unit)} (target <= {fmt(target, unit)})"
        if old:
            line += f"   before: {fmt(o, unit)}" + (f", new/old {v / o:.2f}" if v is not None and o else "")
        print(line)
    extra = ["first_grad_cold_s", "first_image_warm_s", "first_grad_warm_s", "soft_256_20k_ms", "fb_512_ms",
             "pairs_512", "soft_256_pairs", "soft_256_20k_pairs", "soft_256_cpu_ms", "soft_24x64_cpu_ms",
             "sil_24x64_cpu_ms", "soft_256_20k_cpu_ms", "fb_512_cpu_ms"]
    print("also: " + ", ".join(f"{k} {med(new, k):.4g}" + (f" (before {med(old, k):.4g})" if old and med(old, k) else "")
                             for k in extra if med(new, k) is not None))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="cpu", choices=["cpu", "cuda", "vulkan", "metal", "auto"])
    p.add_argument("--rounds", type=int, default=15, help="timed calls per speed row (median)")
    p.add_argument("--repeats", type=int, default=1, help="workers of each kind per checkout")
    p.add_argument("--vs", default=None, help="another checkout of the project to compare with (run alternately)")
    p.add_argument("--lectures", action="store_true", help="also execute every lecture from a cold cache")
    p.add_argument("--json", default=None, help="output (default benchmarks/targets-<arch>.json)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.arch, args.rounds)
    trees = [ROOT] + ([os.path.abspath(args.vs)] if args.vs else [])
    runs = {t: [] for t in trees}
    lectures = {t: {} for t in trees}
    info = machine()
    print(f"targets on {args.arch}, {info.get('cpu')}, {info['nproc']} cores, load {info.get('load_avg')}", flush=True)
    with tempfile.TemporaryDirectory() as warm_root:
        caches = {t: os.path.join(warm_root, str(i)) for i, t in enumerate(trees)}
        for t in trees:  # fill each warm cache once
            run_worker("compile", t, caches[t], args.arch, 1)
        for i in range(args.repeats):
            for t in (trees if i % 2 == 0 else trees[::-1]):
                runs[t].append(measure(t, args.arch, args.rounds, caches[t]))
                print(f"  round {i + 1} {'new' if t == ROOT else 'old'}: " + json.dumps(
                    {k: round(v, 4) for k, v in runs[t][-1].items() if isinstance(v, float)}), flush=True)
    if args.lectures:
        names = sorted(n for n in os.listdir(os.path.join(ROOT, "notebooks")) if n.endswith(".ipynb"))
        for name in names:
            for t in trees:
                lectures[t][name] = run_lecture(t, name, timeout=1800)
                print(f"  {name} {'new' if t == ROOT else 'old'}: {lectures[t][name]} s", flush=True)
        for t in trees:
            done = [v for v in lectures[t].values() if v is not None]
            if len(done) == len(names):
                runs[t][0]["lecture_max_s"] = max(done)
                runs[t][0]["lectures_total_s"] = sum(done)
    info["load_avg_end"] = os.getloadavg()
    rows = report(runs[ROOT], runs[trees[1]] if args.vs else None, args)
    out = args.json or os.path.join(HERE, f"targets-{args.arch}.json")
    with open(out, "w") as fh:
        json.dump(dict(meta=dict(info, args=vars(args)), rows=rows, runs={("new" if t == ROOT else "old"): runs[t] for t in trees},
                       lectures={("new" if t == ROOT else "old"): lectures[t] for t in trees}), fh, indent=1)
    print(f"wrote {out}")
    return 0 if all(r["passed"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main() or 0)
