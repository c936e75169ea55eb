"""The cameras a reconstruction is fitted from and judged on (Fibonacci spirals)."""
import numpy as np

from ..camera import Camera


def spiral_cameras(n, distance=2.732, azimuth_offset=0.0, max_elevation=75.0):
    """n cameras spread evenly over the sphere of directions (a Fibonacci spiral):
    elevation asin(1 − (2k + 1)/n) limited to ±max_elevation, azimuth k · 137.5°.
    Unlike `Camera.orbit`, which circles at one elevation, these see the top and the
    bottom too, which a 3D reconstruction needs."""
    k = np.arange(n)
    el = np.degrees(np.arcsin(1 - (2 * k + 1) / n))
    el = np.clip(el, -max_elevation, max_elevation)
    az = (azimuth_offset + k * 137.50776405003785) % 360.0
    return Camera.look_at(distance=distance, elevation=el, azimuth=az)


def training_cameras(n, distance=2.732):
    return spiral_cameras(n, distance)


def heldout_cameras(n=8, distance=2.732):
    """Cameras not used for fitting: another spiral (other elevations), turned by 61°."""
    return spiral_cameras(n, distance, azimuth_offset=61.0)
