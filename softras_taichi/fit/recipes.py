"""Recipes: how a reconstruction optimises, as small frozen dataclasses (no Taichi here,
so the command line can list them cheaply)."""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a reconstruction optimises (everything but the images).

    parametrisation  "bounded" (SoftRas's), "free" (optim.py) or "large-steps"
                     (x = (I + smoothing·L)⁻¹ u, large_steps.py)
    level            the icosphere level of the result: 20·4^level faces
    start_level      coarse-to-fine: start at this level and subdivide (every face into
                     4) up to `level`, evenly over the first `refine_until` of the run
    sigma            a float, or (start, end) for `sigma_schedule`
    lr, betas        Adam's rate (UniformAdam's for large steps) and betas; the rate
                     decays to lr_final × lr once σ has reached its end (`lr_schedule`)
    lam, mu          weights of L_c and of L_g = L_lap + flatten·L_flat + edge·L_edge
    mu_per_face      weigh L_g per face of the level-3 template (1280), so that μ means
                     the same at any level (False: SoftRas's plain sums)
    smoothing        λ of the large-steps parametrisation (I + λL)⁻¹
    adam_per         large steps: UniformAdam's step size per "mesh" or per "vertex"
    batch            views rendered per step (None: all); more views are cycled through,
                     each once per round, so a step costs the same for 24 or 96 views
    split_at         fractions of the run at which edges longer than `max_edge` pixels
                     (at the origin, for the mean camera) are split, up to `max_faces`
    """
    parametrisation: str = "bounded"
    level: int = 3
    start_level: int = None
    refine_until: float = 0.5
    iterations: int = 400
    lr: float = 0.03
    lr_final: float = 0.1
    betas: tuple = (0.5, 0.99)  # SoftRas's (optim.Adam.SOFTRAS_BETAS)
    sigma: object = (1e-3, 1e-5)
    gamma: float = 1e-4
    lam: float = 1.0
    mu: float = 1e-3
    mu_per_face: bool = True
    flatten: float = 1.0
    edge: float = 0.0
    radius: float = 0.5
    smoothing: float = 0.0
    adam_per: str = "mesh"
    split_at: tuple = ()
    max_edge: float = 1.0
    max_faces: int = 12000
    batch: int = None
    color_lr: float = 0.09


RECIPES = {
    # SoftRas's own recipe (examples/demo_deform.py's bounded parametrisation, Laplacian
    # and flatten losses and Adam betas, with the σ schedule and rates measured here):
    # what lecture 06 teaches.
    "softras": Recipe(),
    # Nicolet et al.'s parametrisation with a small λ (legs one pixel wide are a
    # ring or two of a level-4 sphere: a larger λ smooths them away; λ = 2 rather
    # than 1 keeps the loss from jumping), no L_g (the
    # parametrisation keeps the mesh smooth), a step size per vertex (a leg's tip,
    # weakly pulled, still moves), and a σ schedule from 3e-4 (a blur of about two
    # pixels: the legs pull, but they do not merge into a web) down to 5e-6 (a halo of
    # a fifth of a pixel: the soft optimum is the hard silhouette, so one-pixel parts
    # come out one pixel wide); 24 views a step, so 96 views cost what 24 do.
    # README "Fitting quality" has the measurements.
    "large-steps": Recipe(parametrisation="large-steps", level=4, lr=0.06, betas=(0.9, 0.999),
                          sigma=(3e-4, 5e-6), mu=0.0, smoothing=2.0, adam_per="vertex", batch=24),
}
METHOD_HELP = {"softras": "SoftRas's bounded parametrisation with Laplacian + flatten losses, level 3",
               "large-steps": "Nicolet et al.'s x = (I + lambda L)^-1 u, lambda 2, level 4, sigma 3e-4 to 5e-6"}
DEFAULT_METHOD = "large-steps"
DEFAULTS = dataclasses.asdict(RECIPES[DEFAULT_METHOD])  # the default recipe's settings, by name
