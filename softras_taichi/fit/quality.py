"""The fitting-quality table of the README: `python -m softras_taichi.fit.quality`.

Fits every built-in target (or `--targets`) from 24 training views of 64 px with each
method (or `--methods`), with `fit_target`'s cameras, and prints one JSON line per run
(target, method, faces, iterations, seconds, train and held-out IoU, and how often the
loss jumped) and then a Markdown table.  `--set key=value` overrides a Recipe field
(e.g. `--set level=4 --set iterations=800`), for the "more faces, more iterations"
rows.  Seconds are the optimisation loop only; the machine's load average is printed
with each run, because these runs are slow enough to be shared with other work.
"""
import argparse
import json
import os
import time

import numpy as np


def jumps(history, rise=0.05):
    """Spikes: steps at which the loss jumped above its best value so far by more than
    `rise` × the starting loss (steps of a spike after the first are not counted)."""
    h = np.asarray(history, dtype=np.float64)
    up = h[1:] > np.minimum.accumulate(h)[:-1] + rise * h[0]
    return int(np.sum(up & ~np.r_[False, up[:-1]]))


RECIPE_KEYS = ("parametrisation", "level", "start_level", "lr", "sigma", "mu", "smoothing", "adam_per", "batch",
               "split_at")


def run(target, method, views=24, size=64, settings=None):
    from . import fit_target

    t0 = time.perf_counter()
    r = fit_target(target, views=views, size=size, method=method, snapshot_every=0, **(settings or {}))
    return dict(target=target, method=method, settings=settings or {}, faces=int(r.mesh.num_faces),
                iterations=r.iterations, seconds=round(r.seconds, 1), command_seconds=round(time.perf_counter() - t0, 1),
                iou_train=round(r.iou_train, 4), iou_heldout=round(r.iou_heldout, 4),
                loss_jumps=jumps(r.history["loss"]), load=round(os.getloadavg()[0], 1),
                recipe={k: r.settings[k] for k in RECIPE_KEYS if k in r.settings})


def table(rows):
    out = ["| target | method | faces | iterations | seconds | IoU (train) | IoU (held-out) |",
           "|--------|--------|------:|-----------:|--------:|------------:|---------------:|"]
    for r in rows:
        out.append(f"| {r['target']} | {r['method']} | {r['faces']} | {r['iterations']} | {r['seconds']:.0f} "
                   f"| {r['iou_train']:.3f} | {r['iou_heldout']:.3f} |")
    return "\n".join(out)


def _value(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv=None):
    import softras_taichi as sr
    from .recipes import RECIPES

    p = argparse.ArgumentParser(prog="python -m softras_taichi.fit.quality", description=__doc__.split("\n")[0])
    p.add_argument("--targets", nargs="+", default=list(sr.TARGETS))
    p.add_argument("--methods", nargs="+", default=list(RECIPES))
    p.add_argument("--views", type=int, default=24)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a Recipe field (JSON value), e.g. level=4")
    p.add_argument("--arch", default="cpu")
    args = p.parse_args(argv)
    settings = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    sr.init(args.arch)
    rows = []
    for target in args.targets:
        for method in args.methods:
            rows.append(run(target, method, args.views, args.size, settings))
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
