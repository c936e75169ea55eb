#!/usr/bin/env python
"""The same scenes through PyTorch3D's soft rasterizer and softras-taichi, in one process.

    python benchmarks/compare_pytorch3d.py              # CPU, both libraries, ratios
    python benchmarks/compare_pytorch3d.py --repeats 3 --faces-per-pixel 50

Scenes: a 5120-face icosphere (radius 0.6, distance 2.7, 30° half field of view, σ = γ = 1e-4)
at 64 px and 256 px from one camera, and 24 views × 64 px (the fitting workload), each as

  silhouette  sr.SilhouetteRenderer          vs  PyTorch3D MeshRasterizer + SoftSilhouetteShader
  shaded      sr.SoftRenderer (RGBA, lit)    vs  PyTorch3D MeshRasterizer + SoftPhongShader
                                                 (one directional light from +y, ambient 0.5,
                                                 diffuse 0.5, no specular: SoftRas's lighting)

timed as forward + backward: d/dvertices of Σ g·image for a fixed random g, median of
--repeats calls after a warm-up.  PyTorch3D keeps the K = --faces-per-pixel nearest faces
within the blur radius σ·ln(1/1e-4 − 1) of each pixel (its CPU rasterizer has no binning:
bin_size=0); softras-taichi sums every face within the same radius.  PyTorch3D's backward
is whatever the installed build has (the stock CPU backward of the release is the slow
one); the header prints the versions.  Without PyTorch3D the script says so and prints
softras-taichi's rows alone.
"""
import argparse
import math
import statistics
import sys
import time

import numpy as np

SIGMA = GAMMA = 1e-4
DIST, ELEV, AZIM, HALF_FOV, RADIUS = 2.7, 30.0, 45.0, 30.0, 0.6
SCENES = [("64 px, 1 view", 64, 1), ("256 px, 1 view", 256, 1), ("64 px, 24 views", 64, 24)]


def median_ms(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(ts)


def angles(views):
    if views == 1:
        return np.array([ELEV]), np.array([AZIM])
    return np.full(views, ELEV), 360.0 * np.arange(views) / views


def ours(mesh, kind, size, views, repeats):
    import softras_taichi as sr
    el, az = angles(views)
    cam = sr.Camera.look_at(DIST, el if views > 1 else el[0], az if views > 1 else az[0], HALF_FOV)
    R = sr.SilhouetteRenderer if kind == "silhouette" else sr.SoftRenderer
    r = R(image_size=size, sigma=SIGMA, gamma=GAMMA)
    img = r.render(mesh, cam)
    g = np.random.default_rng(0).normal(size=img.shape).astype(np.float32)
    moved = sr.Mesh(mesh.vertices * (1 + 1e-5), mesh.faces, mesh.colors)
    k = [0]

    def call():  # alternate two meshes so no call reuses the previous forward pass
        k[0] ^= 1
        r.vertex_grad((mesh, moved)[k[0]], cam, g)
    return median_ms(call, repeats)


def theirs(mesh, kind, size, views, repeats, faces_per_pixel):
    import torch
    from pytorch3d.renderer import (BlendParams, DirectionalLights, FoVPerspectiveCameras, Materials,
                                    MeshRasterizer, MeshRenderer, RasterizationSettings, SoftPhongShader,
                                    SoftSilhouetteShader, TexturesVertex, look_at_view_transform)
    from pytorch3d.structures import Meshes
    el, az = angles(views)
    R, T = look_at_view_transform(dist=DIST, elev=torch.tensor(el, dtype=torch.float32),
                                  azim=torch.tensor(az, dtype=torch.float32))  # float64 angles fail in look_at_rotation
    cameras = FoVPerspectiveCameras(R=R, T=T, fov=2 * HALF_FOV)
    blend = BlendParams(sigma=SIGMA, gamma=GAMMA, background_color=(0.0, 0.0, 0.0))
    raster = RasterizationSettings(image_size=size, blur_radius=math.log(1.0 / 1e-4 - 1.0) * SIGMA,
                                   faces_per_pixel=faces_per_pixel, bin_size=0)
    if kind == "silhouette":
        shader = SoftSilhouetteShader(blend_params=blend)
    else:
        lights = DirectionalLights(direction=((0.0, 1.0, 0.0),), ambient_color=((0.5,) * 3,),
                                   diffuse_color=((0.5,) * 3,), specular_color=((0.0,) * 3,))
        shader = SoftPhongShader(cameras=cameras, lights=lights, blend_params=blend,
                                 materials=Materials(shininess=0.0))
    renderer = MeshRenderer(MeshRasterizer(cameras=cameras, raster_settings=raster), shader)
    verts = torch.tensor(mesh.vertices, dtype=torch.float32, requires_grad=True)
    faces = torch.tensor(mesh.faces, dtype=torch.int64)
    colors = torch.tensor(mesh.colors, dtype=torch.float32)[None].expand(views, -1, -1)
    g = None

    def call():
        nonlocal g
        verts.grad = None
        meshes = Meshes(verts=[verts] * views, faces=[faces] * views, textures=TexturesVertex(colors))
        img = renderer(meshes, cameras=cameras)
        img = img[..., 3] if kind == "silhouette" else img
        if g is None:
            g = torch.randn(img.shape, generator=torch.Generator().manual_seed(0))
        (img * g).sum().backward()
    return median_ms(call, repeats)


def versions():
    out = {}
    for name in ("softras_taichi", "taichi", "torch", "pytorch3d", "numpy"):
        try:
            v = __import__(name).__version__
        except Exception:  # noqa: BLE001 - report what is missing
            v = None
        out[name] = ".".join(map(str, v)) if isinstance(v, tuple) else v  # taichi's is a tuple
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--faces-per-pixel", type=int, default=50, help="PyTorch3D's K (its tutorials use 50)")
    args = p.parse_args(argv)
    import softras_taichi as sr
    sr.init("cpu", verbose=False)
    v = versions()
    print("versions: " + ", ".join(f"{k} {val or 'not installed'}" for k, val in v.items()))
    if v["pytorch3d"]:
        import torch
        print(f"torch threads {torch.get_num_threads()}; PyTorch3D faces_per_pixel {args.faces_per_pixel}, "
              "bin_size 0 (naive CPU rasterizer), its installed backward")
    else:
        print("PyTorch3D is not installed here: only softras-taichi's rows are printed "
              "(install torch and pytorch3d in this environment to compare)")
    mesh = sr.icosphere(4, RADIUS)
    mesh = sr.Mesh(mesh.vertices, mesh.faces, np.random.default_rng(1).uniform(0.2, 0.9, mesh.vertices.shape))
    print(f"{'scene':18s} {'kind':10s} {'softras-taichi f+b':>19s} {'PyTorch3D f+b':>14s} {'ratio':>7s}")
    for label, size, views in SCENES:
        for kind in ("silhouette", "shaded"):
            a = ours(mesh, kind, size, views, args.repeats)
            b = theirs(mesh, kind, size, views, args.repeats, args.faces_per_pixel) if v["pytorch3d"] else None
            ratio = f"{b / a:6.1f}x" if b else "      -"
            print(f"{label:18s} {kind:10s} {a:16.1f} ms {(f'{b:.1f} ms' if b else '-'):>14s} {ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
