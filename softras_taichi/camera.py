"""The look-at camera of docs/math.md (PyTorch3D's conventions: the viewer's right is the image's right).

    eye = (d·cos(el)·sin(az), d·sin(el), d·cos(el)·cos(az)),  f = -eye/|eye|,
    r = normalize(f × up),  u = r × f,  v' = R (v − eye) with rows r, u, f.

With up = (0, 1, 0), f × up = cos(el)·(cos az, 0, −sin az)·d/|eye|, so
r = sign(cos el)·(cos az, 0, −sin az) exactly.  Writing r this way is the limit from
just below the pole at el = ±90° (never a NaN) and keeps the gradient smooth.  The
sign is read off the elevation in degrees, not off cos(el): float32 gives
cos(π/2) = −4e-8, which would turn the pole view upside down.
"""
import numpy as np
import taichi as ti


class Camera:
    """A batch of N look-at cameras; `Camera.look_at` with scalars makes N = 1.

    Angles are in degrees.  `params` is (N, 3): distance, elevation, azimuth.
    """

    def __init__(self, distance, elevation, azimuth, viewing_angle, batched):
        d, el, az, va = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, dtype=np.float64))
                                              for a in (distance, elevation, azimuth, viewing_angle)))
        for name, a in (("distance", d), ("elevation", el), ("azimuth", az), ("viewing_angle", va)):
            if a.ndim != 1:
                raise ValueError(f"camera {name} must be a scalar or a 1-D sequence, got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"camera {name} must be finite, got {a}")
        if np.any(d <= 0):
            raise ValueError(f"camera distance must be > 0 (the camera looks at the origin), got {d}")
        if np.any((va <= 0) | (va >= 90)):
            raise ValueError(f"viewing_angle is the half field of view in degrees and must lie in (0, 90), got {va}")
        self.params = np.stack([d, el, az], axis=1)
        self.viewing_angle = va.copy()
        self.batched = bool(batched or len(d) > 1)

    @classmethod
    def look_at(cls, distance=2.732, elevation=0.0, azimuth=0.0, viewing_angle=30.0):
        batched = any(np.ndim(a) > 0 for a in (distance, elevation, azimuth, viewing_angle))
        return cls(distance, elevation, azimuth, viewing_angle, batched)

    @classmethod
    def orbit(cls, n_views, elevation=30.0, distance=2.732, viewing_angle=30.0, offset=0.0):
        """n_views cameras at evenly spaced azimuths (degrees), the fitting workload."""
        az = offset + 360.0 * np.arange(n_views) / n_views
        return cls(distance, elevation, az, viewing_angle, batched=True)

    @classmethod
    def concat(cls, cameras):
        cameras = list(cameras)
        if not cameras:
            raise ValueError("need at least one camera")
        for c in cameras:
            if not isinstance(c, Camera):
                raise TypeError(f"expected sr.Camera objects, got {type(c).__name__}; "
                                "make cameras with sr.Camera.look_at(...)")
        p = np.concatenate([c.params for c in cameras])
        va = np.concatenate([c.viewing_angle for c in cameras])
        return cls(p[:, 0], p[:, 1], p[:, 2], va, batched=True)

    def __len__(self):
        return len(self.params)

    def __getitem__(self, i):
        p = self.params[i]
        return Camera(p[0], p[1], p[2], self.viewing_angle[i], batched=False)

    def __repr__(self):
        rows = ", ".join(f"(d={d:g}, el={e:g}, az={a:g})" for d, e, a in self.params[:4])
        more = f", ... {len(self)} views" if len(self) > 4 else ""
        return f"Camera[{rows}{more}]"

    def eye(self):
        """(N, 3) eye positions."""
        d, el, az = self.params.T
        el, az = np.radians(el), np.radians(az)
        return np.stack([d * np.cos(el) * np.sin(az), d * np.sin(el), d * np.cos(el) * np.cos(az)], 1)

    def rotation(self):
        """(N, 3, 3) world-to-camera rotations with rows r, u, f."""
        _, el, az = np.radians(self.params.T)
        f = -self.eye() / self.params[:, :1]
        s = np.where(_over_the_pole(self.params[:, 1]), -1.0, 1.0)
        r = s[:, None] * np.stack([np.cos(az), np.zeros_like(az), -np.sin(az)], 1)
        u = np.cross(r, f)
        return np.stack([r, u, f], axis=1)


def as_camera(cameras):
    """Accept a Camera or a list of them; return (Camera, batched)."""
    if isinstance(cameras, Camera):
        return cameras, cameras.batched
    if isinstance(cameras, (list, tuple)):
        return Camera.concat(cameras), True
    raise TypeError(f"cameras must be an sr.Camera or a list of them, got {type(cameras).__name__}; "
                    "make one with sr.Camera.look_at(distance, elevation, azimuth)")


def _over_the_pole(el_degrees):
    """cos(el) < 0, decided in degrees: el mod 360 in (90, 270)."""
    e = np.mod(el_degrees, 360.0)
    return (e > 90.0) & (e < 270.0)


@ti.func
def look_at_rows(p):
    """p = (distance, elevation°, azimuth°) -> eye, r, u, f (see the module docstring)."""
    el = p[1] * (ti.math.pi / 180.0)
    az = p[2] * (ti.math.pi / 180.0)
    eye = p[0] * ti.Vector([ti.cos(el) * ti.sin(az), ti.sin(el), ti.cos(el) * ti.cos(az)])
    f = -ti.Vector([ti.cos(el) * ti.sin(az), ti.sin(el), ti.cos(el) * ti.cos(az)])
    e = p[1] - 360.0 * ti.floor(p[1] / 360.0)  # as _over_the_pole
    s = ti.select((e > 90.0) & (e < 270.0), -1.0, 1.0)
    r = s * ti.Vector([ti.cos(az), 0.0, -ti.sin(az)])
    u = r.cross(f)
    return eye, r, u, f
