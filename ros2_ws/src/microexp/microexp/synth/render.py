"""Render a :class:`~microexp.synth.face.FaceLayout` for each camera of the rig.

Three cameras stand side by side on one tripod, so each sees the face at its own size and position
(:class:`CameraView`: the head's height as a fraction of the frame, plus a small horizontal parallax).

Pipeline for one view (all vectorised; OpenCV draws the primitives with anti-aliasing):

1. **albedo**: the primitives are filled into a uint8 canvas (OpenCV anti-aliases only 8-bit images) with
   1/16-pixel vertex precision, so features move smoothly by sub-pixel amounts;
2. **shading**: Lambertian light on the rotated head ellipsoid, ray-cast on a grid 4x coarser than the
   image and upsampled bilinearly (shading is smooth), ambient 0.35; the wall and body get a constant;
3. **irradiance** ``I = albedo * shading * lux / 1000``, blurred by a Gaussian of ``blur_px`` (the optics).

From there:

- the event simulator takes ``log(I + dark)`` (:func:`log_irradiance`), noise-free (sensor noise is added
  as events by :mod:`microexp.synth.dvs`);
- APS and webcam frames (:func:`render_frame`) apply a partial auto-exposure (brightness grows as
  ``lux**0.25``) and photon (shot) noise whose variance is ``value / n_e`` with ``n_e`` proportional to lux
  (dim scenes are visibly noisier), plus read noise; noise comes from a per-renderer bank of Gaussian
  fields cropped at a per-frame offset, so a 1920x1080 frame costs no fresh random numbers.

A region of interest (ROI, ``(x0, y0, x1, y1)`` in pixels) restricts drawing to the part of the frame
that can change; outside it the image is the static background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from microexp.errors import ParameterError
from microexp.synth.face import FaceLayout, Subject

_AMBIENT = 0.35
_SHADE_DOWNSAMPLE = 4
_SUBPIXEL_BITS = 4

Roi = Tuple[int, int, int, int]


@dataclass(frozen=True)
class CameraView:
    """Where and how large one camera sees the face.

    ``face_frac``: head height (chin to crown, 2 face units) as a fraction of the frame height;
    ``dx``, ``dy``: shift of the head centre from the frame centre, as fractions of width and height
    (parallax of the side-by-side mounting); ``blur_px``: optical blur (Gaussian sigma, pixels).
    """

    name: str
    width: int
    height: int
    face_frac: float
    dx: float = 0.0
    dy: float = 0.0
    blur_px: float = 0.7

    def transform(self, subject: Subject) -> tuple[float, float, float]:
        """(pixels per face unit, head-centre x, head-centre y) of ``subject`` in this view."""
        s = self.face_frac * self.height / 2.0 * subject.scale
        cx = self.width / 2.0 + (self.dx + subject.offset_x) * self.width
        cy = self.height / 2.0 + (self.dy + subject.offset_y) * self.height
        return s, cx, cy

    def to_face_units(self, subject: Subject, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Pixel indices -> face units (u right, v down, head half-height 1) of the neutral head."""
        s, cx, cy = self.transform(subject)
        return (np.asarray(x, float) + 0.5 - cx) / s, (np.asarray(y, float) + 0.5 - cy) / s


DAVIS346_VIEW = CameraView("davis346", 346, 260, face_frac=0.62, dx=0.03, dy=0.0, blur_px=0.7)
EVK4_VIEW = CameraView("evk4", 1280, 720, face_frac=0.55, dx=0.0, dy=-0.01, blur_px=0.9)


def webcam_view(width: int = 1920, height: int = 1080) -> CameraView:
    """The ASUS webcam's view at ``width`` x ``height`` (the paper's is 1920x1080)."""
    if width < 32 or height < 32:
        raise ParameterError(f"webcam size must be at least 32x32, got {width}x{height}")
    return CameraView(
        "webcam", int(width), int(height), face_frac=0.42, dx=-0.03, dy=0.0, blur_px=max(0.5, 0.8 * height / 1080)
    )


def full_roi(view: CameraView) -> Roi:
    return 0, 0, view.width, view.height


def layout_roi(layouts, subject: Subject, view: CameraView, margin_px: float = 6.0) -> Roi:
    """Smallest pixel box holding the head of every layout in ``layouts``, padded by ``margin_px`` plus the
    blur's reach, clipped to the frame."""
    s, cx, cy = view.transform(subject)
    boxes = np.array([lay.bbox() for lay in layouts])
    pad = margin_px + 4.0 * view.blur_px + s * 0.03
    x0 = int(np.floor(cx + s * boxes[:, 0].min() - pad))
    y0 = int(np.floor(cy + s * boxes[:, 1].min() - pad))
    x1 = int(np.ceil(cx + s * boxes[:, 2].max() + pad))
    y1 = int(np.ceil(cy + s * boxes[:, 3].max() + pad))
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(view.width, x1), min(view.height, y1)
    if x1 <= x0 or y1 <= y0:
        raise ParameterError(f"the face lies outside the {view.name} frame")
    return x0, y0, x1, y1


def _colour(rgb, gray: bool):
    r, g, b = (255.0 * float(c) for c in rgb)
    if gray:
        return 0.299 * r + 0.587 * g + 0.114 * b
    return (b, g, r)  # OpenCV paints BGR into the canvas; flipped back at the end


def draw_albedo(
    layout: FaceLayout, subject: Subject, view: CameraView, roi: Optional[Roi] = None, gray: bool = True
) -> np.ndarray:
    """uint8 albedo image of the ROI (H, W) or (H, W, 3) RGB; anti-aliased, 1/16 px vertex precision."""
    x0, y0, x1, y1 = roi if roi is not None else full_roi(view)
    s, cx, cy = view.transform(subject)
    shape = (y1 - y0, x1 - x0) if gray else (y1 - y0, x1 - x0, 3)
    canvas = np.empty(shape, np.uint8)
    bg = _colour(layout.background_rgb, gray)
    canvas[...] = bg if gray else np.array(bg)
    prims = layout.primitives
    # Pixel centres sit at integer coordinates in OpenCV drawing; face units map to continuous pixel
    # coordinates (pixel j spans [j, j + 1)). All vertices are transformed in one go.
    unit = float(1 << _SUBPIXEL_BITS)
    pts = np.concatenate([p.pts for p in prims])
    pts = pts * (s * unit) + ((cx - x0 - 0.5) * unit, (cy - y0 - 0.5) * unit)
    ipts = np.rint(pts).astype(np.int32)
    start = 0
    for prim in prims:
        stop = start + len(prim.pts)
        poly = ipts[start:stop]
        start = stop
        colour = _colour(prim.rgb, gray)
        if prim.thickness > 0:
            thick = max(1, int(round(prim.thickness * s)))
            cv2.polylines(canvas, [poly], False, colour, thick, cv2.LINE_AA, _SUBPIXEL_BITS)
        else:
            cv2.fillPoly(canvas, [poly], colour, cv2.LINE_AA, _SUBPIXEL_BITS)
    if not gray:
        canvas = canvas[..., ::-1]
    return canvas


def shading(layout: FaceLayout, subject: Subject, view: CameraView, roi: Optional[Roi] = None) -> np.ndarray:
    """float32 Lambertian shading (0..1) of the ROI: ray-cast on the head ellipsoid, ambient 0.35."""
    x0, y0, x1, y1 = roi if roi is not None else full_roi(view)
    w, h = x1 - x0, y1 - y0
    f = _SHADE_DOWNSAMPLE
    gw, gh = max(2, -(-w // f)), max(2, -(-h // f))
    s, cx, cy = view.transform(subject)
    # Sample positions of the coarse grid, as cv2.resize(INTER_LINEAR) expects them.
    xs = x0 + (np.arange(gw) + 0.5) * (w / gw)  # continuous coordinates: pixel j spans [j, j + 1)
    ys = y0 + (np.arange(gh) + 0.5) * (h / gh)
    X = ((xs - cx) / s)[None, :]
    Y = ((ys - cy) / s)[:, None]
    pose = layout.pose
    R, t = pose.R, pose.t
    if pose.jaw > 0:
        # Shade a dropped chin like the chin: look points up by the jaw displacement they carry.
        down = R[:2, 1] / np.linalg.norm(R[:2, 1])
        shift = pose.jaw * pose.jaw_weight((X - t[0]) * down[0] + (Y - t[1]) * down[1])
        X, Y = X - shift * down[0], Y - shift * down[1]
    D = 1.0 / pose.axes**2
    # world = R q + t, world = (X, Y, z)  =>  q = q0 + d z.
    d = R[2, :]  # R^T e_z
    q0x = R[0, 0] * (X - t[0]) + R[1, 0] * (Y - t[1]) - R[2, 0] * t[2]
    q0y = R[0, 1] * (X - t[0]) + R[1, 1] * (Y - t[1]) - R[2, 1] * t[2]
    q0z = R[0, 2] * (X - t[0]) + R[1, 2] * (Y - t[1]) - R[2, 2] * t[2]
    a2 = float((d * d * D).sum())
    b = q0x * d[0] * D[0] + q0y * d[1] * D[1] + q0z * d[2] * D[2]
    c = q0x * q0x * D[0] + q0y * q0y * D[1] + q0z * q0z * D[2] - 1.0
    disc = b * b - a2 * c
    # Outside the silhouette the ray's closest approach (disc clamped at 0) continues the limb shading,
    # and a soft weight over about 5 pixels blends it into the flat background: a hard inside/outside
    # test sampled on the coarse grid would leave a staircase along the outline.
    z = (-b + np.sqrt(np.maximum(disc, 0.0))) / a2
    weight = np.clip(0.5 + (disc / a2) / (2.0 * 5.0 / s), 0.0, 1.0)
    nx = (q0x + d[0] * z) * D[0]
    ny = (q0y + d[1] * z) * D[1]
    nz = (q0z + d[2] * z) * D[2]
    wx = R[0, 0] * nx + R[0, 1] * ny + R[0, 2] * nz
    wy = R[1, 0] * nx + R[1, 1] * ny + R[1, 2] * nz
    wz = R[2, 0] * nx + R[2, 1] * ny + R[2, 2] * nz
    norm = np.sqrt(wx * wx + wy * wy + wz * wz) + 1e-12
    light = subject.light_vector()
    lambert = np.maximum(0.0, (wx * light[0] + wy * light[1] + wz * light[2]) / norm)
    flat = _AMBIENT + (1 - _AMBIENT) * 0.9 * max(light[2], 0.0)
    coarse = (weight * (_AMBIENT + (1 - _AMBIENT) * lambert) + (1.0 - weight) * flat).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)


def irradiance(
    layout: FaceLayout,
    subject: Subject,
    view: CameraView,
    roi: Optional[Roi] = None,
    gray: bool = True,
    lux: Optional[float] = None,
) -> np.ndarray:
    """float32 irradiance of the ROI in units of "a white surface at 1000 lx", blurred by the optics."""
    alb = draw_albedo(layout, subject, view, roi, gray)
    shade = shading(layout, subject, view, roi)
    k = np.float32((subject.lux if lux is None else lux) / 1000.0 / 255.0)
    img = alb.astype(np.float32)
    img *= (shade * k) if gray else (shade * k)[..., None]
    if view.blur_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), view.blur_px)
    return img


def log_irradiance(
    layout: FaceLayout,
    subject: Subject,
    view: CameraView,
    roi: Optional[Roi] = None,
    dark: float = 0.004,
    lux: Optional[float] = None,
) -> np.ndarray:
    """float32 ``log(I + dark)`` of the ROI: what a DVS pixel's photoreceptor follows. ``dark`` is the dark
    current, in the irradiance units above (it flattens contrast in dim, dark regions)."""
    img = irradiance(layout, subject, view, roi, True, lux)
    img += np.float32(dark)
    return np.log(img, out=img)


class FrameRenderer:
    """APS / webcam frames of one view with auto-exposure and photon noise, deterministic per frame key.

    Parameters
    ----------
    view: the camera.
    gray: grayscale (DAVIS APS) or RGB (webcam).
    electrons_per_klux: photo-electrons a white pixel collects at 1000 lx in one exposure (shot-noise
        scale); noise variance is ``value / n_e``.
    read_noise: additive Gaussian noise (fraction of full scale).
    seed: seeds the noise bank.

    With a ``roi`` (:meth:`render`), only the ROI is rendered per frame; the rest of the frame is a cached
    noise-free background (wall and body) plus noise of the background's level, which keeps a 1920x1080
    webcam frame to a few tens of milliseconds.
    """

    _PAD = 32

    def __init__(
        self,
        view: CameraView,
        gray: bool,
        *,
        electrons_per_klux: float = 1500.0,
        read_noise: float = 0.004,
        seed: int = 0,
    ):
        self.view = view
        self.gray = gray
        self.electrons_per_klux = float(electrons_per_klux)
        self.read_noise = float(read_noise)
        self.seed = int(seed)
        self._bank: Optional[np.ndarray] = None
        self._static: dict = {}

    def _bank_crop(self, key: int, roi: Roi) -> np.ndarray:
        pad = self._PAD
        if self._bank is None:
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0x0153])
            shape = (self.view.height + pad, self.view.width + pad) + (() if self.gray else (3,))
            self._bank = rng.standard_normal(shape, dtype=np.float32)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, int(key) & 0xFFFFFFFFFFFF, 0x0154])
        oy, ox = (int(v) for v in rng.integers(0, pad, 2))
        x0, y0, x1, y1 = roi
        return self._bank[oy + y0 : oy + y1, ox + x0 : ox + x1]

    def _exposure(self, lux: float) -> np.float32:
        return np.float32(1.25 * (lux / 1000.0) ** -0.75)

    def _finish(self, img: np.ndarray, lux: float, noise: np.ndarray) -> np.ndarray:
        img *= self._exposure(lux)
        n_e = self.electrons_per_klux * lux / 1000.0
        sigma = np.sqrt(np.maximum(img, 0.0) / np.float32(n_e) + np.float32(self.read_noise**2))
        img += sigma * noise
        np.clip(img, 0.0, 1.0, out=img)
        img *= np.float32(255.0)
        img += np.float32(0.5)
        return img.astype(np.uint8)

    def _background(self, layout: FaceLayout, subject: Subject, lux: float):
        key = (subject.subject_id, subject.seed, round(lux, 6))
        if key not in self._static:
            body = FaceLayout(layout.primitives[:3], layout.pose, layout.background_rgb, layout.head_outline)
            alb = draw_albedo(body, subject, self.view, None, self.gray).astype(np.float32)
            light = subject.light_vector()
            flat = _AMBIENT + (1 - _AMBIENT) * 0.9 * max(light[2], 0.0)
            img = alb * np.float32(flat * lux / 1000.0 / 255.0) * self._exposure(lux)
            np.clip(img, 0.0, 1.0, out=img)
            level = float(img.mean())
            n_e = self.electrons_per_klux * lux / 1000.0
            sigma = np.sqrt(level / n_e + self.read_noise**2) * 255.0
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0x0155])
            pad = self._PAD
            shape = (self.view.height + pad, self.view.width + pad) + (() if self.gray else (3,))
            bank = np.round(rng.standard_normal(shape, dtype=np.float32) * sigma).astype(np.int16)
            self._static = {key: ((img * 255.0 + 0.5).astype(np.uint8), bank)}
        return self._static[key]

    def render(
        self, layout: FaceLayout, subject: Subject, key: int, lux: Optional[float] = None, roi: Optional[Roi] = None
    ) -> np.ndarray:
        """uint8 frame (H, W) or (H, W, 3) RGB; ``key`` (e.g. the frame index) picks the noise; ``roi``
        (the part of the frame where the head can be) speeds up large frames."""
        lux = subject.lux if lux is None else float(lux)
        if roi is None:
            img = irradiance(layout, subject, self.view, None, self.gray, lux)
            return self._finish(img, lux, self._bank_crop(key, full_roi(self.view)))
        static, bank = self._background(layout, subject, lux)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, int(key) & 0xFFFFFFFFFFFF, 0x0156])
        oy, ox = (int(v) for v in rng.integers(0, self._PAD, 2))
        out = cv2.add(static, bank[oy : oy + self.view.height, ox : ox + self.view.width], dtype=cv2.CV_8U)
        x0, y0, x1, y1 = roi
        img = irradiance(layout, subject, self.view, roi, self.gray, lux)
        out[y0:y1, x0:x1] = self._finish(img, lux, self._bank_crop(key, roi))
        return out
