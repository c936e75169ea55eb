"""Views to reconstruct from: your own images (or masks) and the cameras that took them.

    views = sr.load_views("images.npy", "cameras.npy", convention="softras")
    views.images   (N, S, S, 4) float32 RGBA in [0, 1], this package's pixels (alpha = silhouette)
    views.cameras  a batched sr.Camera in this package's convention
    views.angles   (N, 3) distance, elevation°, azimuth° as the file gave them

Images: a `.npy` of (N, S, S, 4) or (N, 4, S, S) (the official SoftRas demo's layout,
examples/demo_deform.py: uint8 0–255, channels first), or (N, S, S) masks; uint8 0–255
or float 0–1.  Or a folder of N PNGs, sorted by name: RGBA (alpha is the silhouette)
or one-channel masks.

Cameras: a `.npy` of (N, 3) distance, elevation, azimuth in degrees (the official
demo's data/camera.npy), or a `.csv` (a header row naming the columns) or `.json`
(a list of objects, or an object of lists) with `distance`, `elevation`, `azimuth`
and optionally `viewing_angle` (the half field of view in degrees) per view.

Conventions (`convention=`):

    softras-taichi, pytorch3d   this package's look-at (PyTorch3D's): the eye at
                                (d cos el sin az, d sin el, d cos el cos az), what is on
                                the camera's right on the image's right
    softras                     the official code's (soft_renderer/functional/
                                get_points_from_angles.py, look_at.py): the eye at
                                (d cos el sin az, d sin el, −d cos el cos az) and the
                                camera's x axis up × forward, so its image at (el, az) is
                                the mirror, left to right, of this package's image at
                                (el, 180° − az); loading flips the images and maps az to
                                180° − az

The official renderer's default half field of view is 30° (this package's too);
demo_deform.py renders with `viewing_angle=15`: pass `viewing_angle=15` for its data.
Bad input raises a ValueError of one line that names the file and says how to fix it.
"""
import csv
import dataclasses
import json
import math
import os

import numpy as np

from .camera import Camera

CONVENTIONS = ("softras-taichi", "softras", "pytorch3d")
COLUMNS = ("distance", "elevation", "azimuth")
# The reconstruction fills the unit sphere (fit.normalize puts targets at radius 0.9 and
# the bounded parametrisation keeps vertices in [-1, 1]³): a camera nearer than this
# to the origin would sit inside the object it is meant to see.
MIN_DISTANCE = 1.0


@dataclasses.dataclass
class Views:
    """Images and the cameras that saw them, in this package's convention."""
    images: np.ndarray              # (N, S, S, 4) float32 RGBA in [0, 1]
    cameras: Camera                 # N cameras (this package's look-at)
    angles: np.ndarray              # (N, 3) distance, elevation°, azimuth° as given
    viewing_angle: np.ndarray       # (N,) half field of view in degrees
    convention: str = "softras-taichi"
    image_paths: list = dataclasses.field(default_factory=list)   # the files the images came from
    camera_path: str = None

    def __len__(self):
        return len(self.images)

    @property
    def silhouettes(self):
        """(N, S, S) alpha channels."""
        return self.images[..., 3]

    def subset(self, index):
        index = np.asarray(index)
        paths = self.image_paths if len(self.image_paths) != len(self) else [self.image_paths[i] for i in index]
        return Views(self.images[index], Camera.concat([self.cameras[int(i)] for i in index]),
                     self.angles[index], self.viewing_angle[index], self.convention, paths, self.camera_path)

    def split(self, heldout_every):
        """(training, held-out): every `heldout_every`-th view (the K-th, 2K-th, ...,
        counting from 1) is held out; None or 0 holds out nothing (held-out is None)."""
        if not heldout_every:
            return self, None
        k = int(heldout_every)
        if k < 2 or k > len(self):
            raise ValueError(f"--heldout-every must be between 2 and the number of views ({len(self)}), "
                             f"got {heldout_every}: every K-th view is held out, the others are fitted")
        held = np.arange(len(self)) % k == k - 1
        return self.subset(np.flatnonzero(~held)), self.subset(np.flatnonzero(held))


def load_views(images, cameras, convention="softras-taichi", viewing_angle=None):
    """Views from an images path (.npy or a folder of PNGs) and a cameras path
    (.npy, .csv or .json); see the module docstring.  `viewing_angle` (degrees)
    overrides the file's per-view value; the default is 30°."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown camera convention {convention!r}: choose one of {', '.join(CONVENTIONS)}")
    imgs, paths = load_images(images)
    angles, va = load_cameras(cameras)
    if len(imgs) != len(angles):
        raise ValueError(f"{images} has {len(imgs)} images but {cameras} has {len(angles)} cameras: "
                         "give one camera (distance, elevation, azimuth) per image, in the same order")
    if viewing_angle is not None:
        va = np.full(len(angles), float(viewing_angle))
    elif va is None:
        va = np.full(len(angles), 30.0)
    bad = ~((va > 0) & (va < 90))
    if bad.any():
        raise ValueError(f"{cameras}: the viewing angle of view {np.flatnonzero(bad)[0]} is "
                         f"{va[bad][0]:g}°; it is the half field of view and must lie in (0, 90) degrees")
    near = angles[:, 0] <= MIN_DISTANCE
    if near.any():
        i = np.flatnonzero(near)[0]
        raise ValueError(f"{cameras}: camera {i} is at distance {angles[i, 0]:g} from the origin, inside the "
                         f"object (which must fit in the unit sphere around the origin); give distances > "
                         f"{MIN_DISTANCE:g} (the official demo's are 2.732), or scale the scene")
    d, el, az = angles.T
    if convention == "softras":
        imgs = imgs[:, :, ::-1].copy()  # the mirror image, left to right
        az = 180.0 - az
    cams = Camera(d, el, az, va, batched=True)
    return Views(imgs, cams, angles, va, convention, paths, os.fspath(cameras))


# --------------------------------------------------------------------------- images

def load_images(path):
    """(N, S, S, 4) float32 RGBA in [0, 1] and the source paths, from a .npy or a folder of PNGs."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"images not found: {path} (give a .npy file or a folder of PNGs)")
    if os.path.isdir(path):
        imgs, paths = _png_folder(path)
    elif path.lower().endswith(".npy"):
        imgs, paths = _npy_images(path), [path]
    else:
        raise ValueError(f"{path}: images must be a .npy file or a folder of .png files")
    _check_silhouettes(imgs, path, paths)
    return imgs, paths


def _npy_images(path):
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from None
    if a.dtype.kind not in "buif":
        raise ValueError(f"{path}: images must be numbers (uint8 0-255 or float 0-1), got dtype {a.dtype}")
    if a.ndim == 3:  # (N, S, S) masks
        a = a[..., None]
    elif a.ndim == 4 and a.shape[1] in (1, 4) and a.shape[-1] not in (1, 4):
        a = np.moveaxis(a, 1, -1)  # channels first, as the official demo saves them
    elif a.ndim == 4 and a.shape[1] == 4 and a.shape[-1] == 4 and a.shape[2] != a.shape[3]:
        a = np.moveaxis(a, 1, -1)
    if a.ndim != 4 or a.shape[-1] not in (1, 4):
        raise ValueError(f"{path}: images have shape {a.shape}; expected (N, S, S, 4), (N, 4, S, S) "
                         "or (N, S, S) masks")
    if a.shape[1] != a.shape[2]:
        raise ValueError(f"{path}: images are {a.shape[2]}x{a.shape[1]} pixels, not square; crop or pad "
                         "them to S x S around the object (the camera's field of view is square)")
    return _to_rgba(_unit(a, path), path)


def _unit(a, path):
    """uint8 0–255 or float 0–1 (or bool) -> float32 0–1."""
    if a.dtype.kind in "bu" or (a.dtype.kind == "i" and a.max(initial=0) > 1):
        if a.dtype.kind == "b":
            return a.astype(np.float32)
        if a.min(initial=0) < 0 or a.max(initial=0) > 255:
            raise ValueError(f"{path}: integer images must lie in 0-255, got {a.min()}..{a.max()}")
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{path}: images contain NaN or inf values; fix or drop those views")
    if a.min() < 0 or a.max() > 1.0 + 1e-6:
        raise ValueError(f"{path}: float images must lie in [0, 1], got {a.min():g}..{a.max():g}; "
                         "divide 0-255 values by 255")
    return np.clip(a, 0.0, 1.0)


def _to_rgba(a, path):
    if a.shape[-1] == 4:
        return np.ascontiguousarray(a, dtype=np.float32)
    mask = a[..., 0]  # a silhouette alone: a white object on black
    return np.ascontiguousarray(np.stack([mask, mask, mask, mask], axis=-1), dtype=np.float32)


def _png_folder(folder):
    from PIL import Image

    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(".png"))
    if not paths:
        raise ValueError(f"{folder}: no .png files in this folder (give RGBA images or one-channel masks)")
    imgs, channels = [], []
    for p in paths:
        try:
            im = Image.open(p)
            im.load()
        except OSError as exc:
            raise ValueError(f"{p}: not a readable PNG ({exc})") from None
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode in ("1", "L"):
            a = np.asarray(im.convert("L"), dtype=np.float32)[..., None] / 255.0
        elif im.mode in ("I", "I;16"):  # 16-bit grayscale masks
            a = np.asarray(im, dtype=np.float32)[..., None] / 65535.0
        elif im.mode == "LA":
            la = np.asarray(im, dtype=np.float32) / 255.0
            a = np.concatenate([la[..., :1].repeat(3, -1), la[..., 1:]], -1)
        elif im.mode == "RGBA":
            a = np.asarray(im, dtype=np.float32) / 255.0
        else:
            raise ValueError(f"{p}: a {im.mode} image has no alpha channel; save RGBA images whose alpha "
                             "is the silhouette, or one-channel (grayscale) masks")
        if a.shape[0] != a.shape[1]:
            raise ValueError(f"{p}: the image is {a.shape[1]}x{a.shape[0]} pixels, not square; crop or pad "
                             "it to S x S around the object")
        if imgs and a.shape[:2] != imgs[0].shape[:2]:
            raise ValueError(f"{p}: the image is {a.shape[0]} px but {paths[0]} is {imgs[0].shape[0]} px; "
                             "resize all the views to one size")
        channels.append(a.shape[-1])
        if channels[-1] != channels[0]:
            raise ValueError(f"{p}: mixes masks and RGBA images with {paths[0]}; use one kind for all views")
        imgs.append(_to_rgba(np.clip(a, 0.0, 1.0), p))
    return np.stack(imgs), paths


def _check_silhouettes(imgs, path, paths):
    alpha = imgs[..., 3] > 0.5
    covered = alpha.reshape(len(alpha), -1).mean(axis=1)
    name = (lambda i: paths[i]) if len(paths) == len(imgs) else (lambda i: f"{path} (view {i})")
    for i, c in enumerate(covered):
        if c == 0:
            raise ValueError(f"{name(i)}: the silhouette is empty (alpha/mask is 0 everywhere); the object must "
                             "be visible in every view: drop this view or check the mask's channel")
        if c == 1:
            raise ValueError(f"{name(i)}: the silhouette covers the whole image; the camera is inside the "
                             "object or the mask is inverted (the object must be white/opaque, the "
                             "background black/transparent)")


# --------------------------------------------------------------------------- cameras

def load_cameras(path):
    """(N, 3) distance, elevation°, azimuth°, and (N,) viewing angles or None."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"cameras not found: {path} (give a .npy, .csv or .json file)")
    ext = os.path.splitext(path)[1].lower()
    va = None
    if ext == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path}: not a readable .npy array ({exc})") from None
        if a.ndim != 2 or a.shape[1] not in (3, 4) or a.dtype.kind not in "iuf":
            raise ValueError(f"{path}: cameras have shape {a.shape} (dtype {a.dtype}); expected (N, 3) "
                             "numbers: distance, elevation, azimuth in degrees, one row per image")
        angles = a[:, :3].astype(np.float64)
        va = a[:, 3].astype(np.float64) if a.shape[1] == 4 else None
    elif ext in (".csv", ".json"):
        table = _csv_table(path) if ext == ".csv" else _json_table(path)
        missing = [c for c in COLUMNS if c not in table]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; the cameras need "
                             f"{', '.join(COLUMNS)} (degrees) and optionally viewing_angle")
        angles = np.stack([_numbers(table[c], c, path) for c in COLUMNS], axis=1)
        if "viewing_angle" in table:
            va = _numbers(table["viewing_angle"], "viewing_angle", path)
    else:
        raise ValueError(f"{path}: cameras must be a .npy, .csv or .json file")
    if len(angles) == 0:
        raise ValueError(f"{path}: no cameras in this file")
    bad = ~np.isfinite(angles).all(axis=1)
    if va is not None:
        bad |= ~np.isfinite(va)
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise ValueError(f"{path}: camera {i} has a NaN or infinite value {angles[i].tolist()}; "
                         "every view needs a finite distance, elevation and azimuth")
    return angles, va


def _numbers(values, column, path):
    out = []
    for i, v in enumerate(values):
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            raise ValueError(f"{path}: {column} of camera {i} is {v!r}, not a number") from None
    return np.array(out, dtype=np.float64)


def _csv_table(path):
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: empty file; expected a header row {','.join(COLUMNS)} and one row per camera")
    header = [h.strip().lower() for h in rows[0]]
    table = {h: [] for h in header}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}: line {n} has {len(row)} values but the header has {len(header)}")
        for h, v in zip(header, row):
            table[h].append(v.strip())
    return table


def _json_table(path):
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and "cameras" in data:
        data = data["cameras"]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        keys = {k for r in data for k in r}
        return {k: [r.get(k, math.nan) for r in data] for k in keys}
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        return data
    raise ValueError(f"{path}: expected a list of {{\"distance\", \"elevation\", \"azimuth\"}} objects "
                     "or an object of lists")


# --------------------------------------------------------------------------- writing

def save_views(images_path, cameras_path, images, cameras, convention="softras-taichi"):
    """Write `images` (N, S, S, 4) float 0–1 seen by `cameras` (this package's convention)
    as an images .npy and a cameras .npy in `convention`'s layout: "softras" writes the
    official demo's (N, 4, S, S) uint8 mirrored images and (el, 180° − az) angles;
    the others (N, S, S, 4) uint8 and the angles as they are."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown camera convention {convention!r}: choose one of {', '.join(CONVENTIONS)}")
    u8 = np.round(np.clip(np.asarray(images, dtype=np.float64), 0, 1) * 255).astype(np.uint8)
    p = cameras.params.copy()
    if convention == "softras":
        u8 = np.ascontiguousarray(np.moveaxis(u8[:, :, ::-1], -1, 1))
        p[:, 2] = (180.0 - p[:, 2]) % 360.0
    np.save(images_path, u8)
    np.save(cameras_path, p.astype(np.float32))
    return images_path, cameras_path
