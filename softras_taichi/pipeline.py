"""The render pipeline on a Workspace, for any renderer, scene size and backend:

    pose, project, lighting → binning → (soft: set-up, forward)               [soft.py]
    [geometry, below]                    (autodiff: shift, accumulate, resolve)  [aggregate.py]
                                         (hard: zbuffer, shade)                  [hard.py]

`forward` runs the stages and records the differentiable ones in `ws.calls`, so the
NumPy API can run them backwards (`Workspace.backward`) without a ti.ad.Tape; under a
user's Tape the same kernel calls are recorded by the tape itself.  Every kernel takes
the workspace's fields and ndarrays, so it compiles once per process (workspace.py).
"""
import taichi as ti

from . import aggregate, backend, binning, hard, lighting, project, soft, soft_tiles


@ti.kernel
def geometry(vertices: ti.template(), rotation: ti.template(), translation: ti.template(), world: ti.template(),
             camera: ti.template(), tan_half: ti.template(), proj: ti.template(), faces: ti.template(),
             light: ti.template(), ambient: float, directional: float, lx: float, ly: float, lz: float,
             N: ti.i32, V: ti.i32, F: ti.i32):
    """Stages 1 and 2 in one kernel (project.py, lighting.py): world positions, projected
    vertices and, for F > 0, face light (the silhouette renderer passes F = 0).  One kernel,
    not three, because on the CPU every kernel costs about a tenth of a second to compile,
    and its reverse as much again."""
    for i in range(V):
        world[i] = project.pose(vertices, rotation, translation, i)
    for n, i in ti.ndrange(N, V):
        proj[n * V + i] = project.project(world, camera, tan_half, n, i)
    for j in range(F):
        light[j] = lighting.face_light(world, faces, j, ambient, directional, ti.Vector([lx, ly, lz]))


def forward(ws, r, V, F, N, S):
    """Render the V vertices, F faces and N cameras loaded in `ws` with renderer `r`."""
    ws.calls = []

    def stage(func, *args):
        func(*args)
        ws.calls.append((func, args))

    rgb = not r.alpha_only
    stage(geometry, ws.vertices, ws.rotation, ws.translation, ws.world, ws.camera, ws.tan_half, ws.proj,
          ws.faces, ws.light, r.ambient, r.directional, *r.light_direction, N, V, F if rgb else 0)
    b = ws.bins
    heuristic, row = (soft_tiles.gpu_tile, 1) if backend.layout() == "gpu" else (soft.cpu_tile, soft.LANES)
    ti.ad.no_grad(b.build)(ws.proj, ws.faces, r.cull_radius, N, F, S, V, r.tile, heuristic, row)
    lists = b.lists()
    if r.soft and not r.autodiff:
        stage(_soft, ws, r, V, F, N, S)
    elif r.soft:
        sums = (ws.zmax, ws.wsum, ws.csum, ws.logsum)
        ti.ad.no_grad(aggregate.shift)(ws.proj, ws.faces, *lists, *sums, r.cull_d2, r.eps, r.near,
                                       r.far, N, S, b.T, b.H, V)
        stage(aggregate.accumulate, ws.proj, ws.faces, ws.colors, ws.light, *lists, *sums, r.sigma,
              r.gamma, r.cull_d2, r.near, r.far, N, S, b.T, b.H, V)
        stage(aggregate.resolve, *sums, ws.image, r.gamma, r.eps, *r.background, N * S * S)
    else:
        ti.ad.no_grad(hard.zbuffer)(ws.proj, ws.faces, *lists, ws.nearest, ws.coverage, r.eps, r.near,
                                    r.far, N, S, b.T, b.H, V)
        stage(hard.shade, ws.proj, ws.faces, ws.colors, ws.light, ws.nearest, ws.coverage, ws.image,
              *r.background, N, S, V)


# The fast soft pass (soft.py, or soft_tiles.py in the GPU layout: backend.layout()) brings
# its own backward: under ti.ad.Tape (or Workspace.backward), _soft_grad runs where Taichi
# would have differentiated _soft's kernels.
@ti.ad.grad_replaced
def _soft(ws, r, V, F, N, S):
    b, rgb = ws.bins, not r.alpha_only
    cut, p_floor = soft.cutoffs(r.gamma, r.dist_eps, backend.current()[1])
    ws.setup = ws.ndarray("setup", ti.types.vector(soft.SETUP, float), (N, F))
    args = (ws.setup, b.rect, ws.faces, ws.colors, ws.light, *b.lists(), ws.zmax, ws.den, ws.uncovered,
            ws.image, r.sigma, r.gamma, r.cull_d2, r.eps, r.near, r.far, cut, p_floor, *r.background, N, S,
            b.T)
    if backend.layout() == "gpu":
        soft.setup(ws.proj, ws.faces, b.rect, ws.setup, N, F, V)
        soft_tiles.forward(*args, rgb, soft_tiles.block_dim(b.T), *soft_tiles.staging(*backend.current()))
    else:
        soft.forward(ws.proj, *args, F, V, b.H, rgb, soft.LANES)


@ti.ad.grad_for(_soft)
def _soft_grad(ws, r, V, F, N, S):
    b, rgb = ws.bins, not r.alpha_only
    cut, p_floor = soft.cutoffs(r.gamma, r.dist_eps, backend.current()[1])
    if backend.layout() == "gpu":
        soft.pixel_adjoint(ws.image, ws.zmax, ws.den, ws.uncovered, ws.adjoint, p_floor, N * S * S, rgb)
        entry_tile, _, entry_face, _ = ws.entries(b.entries)
        soft_tiles.backward(ws.proj, ws.faces, ws.colors, ws.light, ws.setup, b.rect, ws.adjoint, entry_tile,
                            entry_face, r.sigma, r.gamma, r.cull_d2, r.near, r.far, cut, N, S, b.T, b.entries,
                            V, rgb)
    else:
        soft.backward(ws.proj, ws.faces, ws.colors, ws.light, ws.setup, b.rect, ws.image, ws.zmax, ws.den,
                      ws.uncovered, ws.adjoint, r.sigma, r.gamma, r.cull_d2, r.near, r.far, cut, p_floor, N, S,
                      F, V, rgb, soft.LANES)
