"""Synthetic frontal chest radiographs ("phantoms") in NIH ChestX-ray14's exact on-disk format.

Why: the real images (42 GiB) cannot be fetched everywhere, yet every layer of the project - CSV parsing,
patient splits, RGBA decoding, training, AUROC - should run on data with NIH's exact shape. Each of the 14
findings gets a visible sign drawn where a radiologist would look, so a small model trained on phantoms
learns real signal and a demo's AUROC means something (and a broken pipeline shows up as chance AUROC).

Geometry lives in "anatomy" coordinates: x in [-1, 1] from image left (the patient's right) to image right
(the patient's left, where the heart bulges), y in [-1, 1] from top to bottom. The whole patient is then
rotated, shifted and scaled into the picture. Intensity is built as a density map (bright = dense: bone,
fluid, soft tissue; dark = air), then exposure, gamma and noise turn it into 8 bits.

Randomness is split into independent streams (anatomy, film, one per finding) so that adding a finding
changes only that finding's sign: the tests rely on it, and so does the preview sheet.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from tqdm import tqdm

from cxr14.errors import UserError
from cxr14.labels import LABELS, NO_FINDING, NUM_CLASSES, decode

FORMAT_VERSION = 1
MANIFEST = "phantom.json"
CSV_NAME = "Data_Entry_2017.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
#: The real 2017 header, byte for byte (the trailing comma makes pandas add an `Unnamed: 11` column).
CSV_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)

_AIR = 0.44  # density that fully aerated lung removes from the soft-tissue background
_IMAGE_STREAM = 1  # SeedSequence domain tags: images and metadata never share a stream
_META_STREAM = 2
_PNG_LEVEL = 1  # zlib level: 6 would cost ~4x the encode time for ~10% smaller noisy files

_IDX = {name: i for i, name in enumerate(LABELS)}


# --------------------------------------------------------------------------------------------------
# Geometry: the pixel grid and the patient's anatomy
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """Anatomy coordinates of every pixel, after the whole patient was rotated, scaled and shifted."""

    size: int
    x: np.ndarray
    y: np.ndarray
    angle: float
    scale: float
    shift: tuple[float, float]

    @property
    def px(self) -> float:
        """One pixel in anatomy units: the narrowest edge worth antialiasing."""
        return 2.0 / (self.size * self.scale)

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Anatomy point -> (column, row) in pixels (for PIL drawing)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = (c * x - s * y) * self.scale + self.shift[0]
        v = (s * x + c * y) * self.scale + self.shift[1]
        return (u + 1) * self.size / 2 - 0.5, (v + 1) * self.size / 2 - 0.5

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Pixel rows/cols covering an anatomy box, so that small signs cost small work."""
        corners = [self.to_pixel(x, y) for x in (x0, x1) for y in (y0, y1)]
        cols = [c for c, _ in corners]
        rows = [r for _, r in corners]
        c0, c1 = max(0, math.floor(min(cols))), min(self.size, math.ceil(max(cols)) + 1)
        r0, r1 = max(0, math.floor(min(rows))), min(self.size, math.ceil(max(rows)) + 1)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)


def _make_grid(size: int, angle: float, scale: float, shift: tuple[float, float]) -> _Grid:
    """Invert the patient's placement once per image: pixel centre -> anatomy coordinates."""
    u = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0)[None, :] - shift[0]
    v = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0)[:, None] - shift[1]
    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    x = (c * u + s * v).astype(np.float32)
    y = (c * v - s * u).astype(np.float32)
    return _Grid(size, x, y, angle, scale, shift)


@dataclass(frozen=True)
class _Anatomy:
    """One patient's normal anatomy; findings return modified copies (e.g. a bigger heart)."""

    lung_cx: float  # |x| of each lung's centre
    lung_cy: float
    lung_a: tuple[float, float]  # half-widths: (image-left lung, image-right lung)
    lung_b: float  # half-height
    taper: float  # how much narrower the apex is than the base
    dome_y: tuple[float, float]  # top of each hemidiaphragm
    dome_h: float  # drop from dome top to the costophrenic angle
    ctr: float  # cardiothoracic ratio: heart width / thorax width
    heart_shift: float  # heart centre, as a fraction of its width, towards image right
    heart_b: float
    heart_tilt: float  # radians; the long axis points down towards the image right
    medi_w: float  # half-width of the upper mediastinum
    body_w: float
    neck_w: float
    shoulder_y: float
    tissue: float
    rib_spacing: float
    rib_offset: float
    clav_y: float
    hilum_dy: float
    vessel_seed: int
    vessel_reach: float
    bubble: tuple[float, float, float] | None  # gastric air: x, y offset below the dome, radius


@dataclass(frozen=True)
class _Film:
    """How the patient was placed and exposed: varies per image, carries no label."""

    angle: float
    scale: float
    shift: tuple[float, float]
    lo: float
    hi: float
    gamma: float
    tilt: float  # heel effect: brightness gradient across the film
    noise: float  # grey levels of quantum noise
    mottle: float  # grey levels of low-frequency non-uniformity


def _sample_anatomy(r: np.random.Generator) -> _Anatomy:
    """Draw a normal adult chest; ranges keep the cardiothoracic ratio normal (< 0.47)."""
    dome = r.uniform(0.32, 0.42)
    a = r.uniform(0.27, 0.32)
    bubble = (r.uniform(0.22, 0.38), r.uniform(0.07, 0.11), r.uniform(0.04, 0.07)) if r.random() < 0.6 else None
    return _Anatomy(
        lung_cx=r.uniform(0.4, 0.45),
        lung_cy=r.uniform(-0.06, 0.0),
        lung_a=(a, a * r.uniform(0.92, 1.0)),
        lung_b=r.uniform(0.62, 0.7),
        taper=r.uniform(0.3, 0.45),
        dome_y=(dome - r.uniform(0.0, 0.05), dome),  # the right hemidiaphragm sits a little higher
        dome_h=r.uniform(0.12, 0.2),
        ctr=r.uniform(0.38, 0.46),
        heart_shift=r.uniform(0.18, 0.28),
        heart_b=r.uniform(0.19, 0.23),
        heart_tilt=r.uniform(0.35, 0.6),
        medi_w=r.uniform(0.07, 0.1),
        body_w=r.uniform(0.9, 0.99),
        neck_w=r.uniform(0.2, 0.26),
        shoulder_y=r.uniform(-0.8, -0.68),
        tissue=r.uniform(0.58, 0.7),
        rib_spacing=r.uniform(0.105, 0.125),
        rib_offset=r.uniform(-0.15, 0.15),
        clav_y=r.uniform(-0.66, -0.56),
        hilum_dy=r.uniform(-0.03, 0.03),
        vessel_seed=int(r.integers(2**62)),
        vessel_reach=1.0,
        bubble=bubble,
    )


def _sample_film(r: np.random.Generator) -> _Film:
    """Positioning and exposure: small rotations/shifts, contrast, gamma and noise all vary."""
    return _Film(
        angle=math.radians(r.uniform(-4, 4)),
        scale=r.uniform(0.9, 1.04),
        shift=(r.uniform(-0.04, 0.04), r.uniform(-0.04, 0.04)),
        lo=r.uniform(-0.12, 0.0),
        hi=r.uniform(1.0, 1.15),
        gamma=r.uniform(0.8, 1.2),
        tilt=r.uniform(-0.08, 0.08),
        noise=r.uniform(1.5, 5.0),
        mottle=r.uniform(2.0, 8.0),
    )


def _side(s: int) -> int:
    """Side sign (-1 image left, +1 image right) -> index into per-side tuples."""
    return (s + 1) // 2


def _apex(an: _Anatomy) -> float:
    return an.lung_cy - an.lung_b


def _heart(an: _Anatomy) -> tuple[float, float, float, float, float]:
    """Heart centre, half-axes and tilt: an ellipse leaning down to the image right (the apex).

    Its horizontal extent follows the thorax, so the cardiothoracic ratio stays what was drawn.
    """
    thorax = 2 * an.lung_cx + an.lung_a[0] + an.lung_a[1]
    half = an.ctr * thorax / 2  # wanted horizontal half-extent of the tilted ellipse
    b = min(an.heart_b, 0.9 * half)
    c, s = math.cos(an.heart_tilt), math.sin(an.heart_tilt)
    a = math.sqrt(max(half * half - (b * s) ** 2, 1e-6)) / c
    cy = (an.dome_y[0] + an.dome_y[1]) / 2 - 0.5 * an.heart_b
    return half * 2 * an.heart_shift, cy, a, b, an.heart_tilt


def _with_side(pair: tuple[float, float], k: int, value: float) -> tuple[float, float]:
    return (value, pair[1]) if k == 0 else (pair[0], value)


# --------------------------------------------------------------------------------------------------
# Small drawing helpers (vectorised over a window of the pixel grid)
# --------------------------------------------------------------------------------------------------


def _ramp(d: np.ndarray, w: float) -> np.ndarray:
    """Soft inside-mask from a signed distance (negative inside): 1 inside, 0 outside, linear edge."""
    return np.clip(0.5 - d * (1.0 / w), 0.0, 1.0)


def _lung_dist(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float, taper: float):
    """Approximate signed distance to a lung-like ellipse that narrows towards its apex."""
    dx, dy = x - cx, y - cy
    ae = a * (1 + taper * np.clip(dy * (1 / b), -1, 0))
    r = np.sqrt((dx / ae) ** 2 + (dy * (1 / b)) ** 2)
    return (r - 1) * ae


def _lung_d(x: np.ndarray, y: np.ndarray, an: _Anatomy, s: int) -> np.ndarray:
    """Signed distance to one lung, cut below by its hemidiaphragm dome (lowest laterally)."""
    k = _side(s)
    a = an.lung_a[k]
    d = _lung_dist(x, y, s * an.lung_cx, an.lung_cy, a, an.lung_b, an.taper)
    lat = (s * (x - s * an.lung_cx) + a) * (1 / (2 * a))  # 0 medial .. 1 lateral
    dome = an.dome_y[k] + an.dome_h * ((lat - 0.4) * (1 / 0.6)) ** 2
    return np.maximum(d, y - dome)


def _lung_box(an: _Anatomy, s: int) -> tuple[float, float, float, float]:
    k = _side(s)
    x0, x1 = s * (an.lung_cx - an.lung_a[k]), s * (an.lung_cx + an.lung_a[k])
    return min(x0, x1) - 0.03, max(x0, x1) + 0.03, _apex(an) - 0.03, an.dome_y[k] + an.dome_h + 0.05


def _ellipse(g: _Grid, cx: float, cy: float, rx: float, ry: float, edge: float, angle: float = 0.0):
    """(window, soft mask) of an ellipse, or None when it misses the image."""
    m = max(rx, ry) + 2 * edge
    win = g.window(cx - m, cx + m, cy - m, cy + m)
    if win is None:
        return None
    x, y = g.x[win] - cx, g.y[win] - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        x, y = c * x + s * y, c * y - s * x
    r = np.sqrt((x * (1 / rx)) ** 2 + (y * (1 / ry)) ** 2)
    return win, _ramp((r - 1) * min(rx, ry), max(edge, g.px))


def _segment(g: _Grid, p0: tuple[float, float], p1: tuple[float, float], half: float, edge: float):
    """(window, soft mask) of a thick line segment (a band), or None when it misses the image."""
    m = half + 2 * edge
    win = g.window(min(p0[0], p1[0]) - m, max(p0[0], p1[0]) + m, min(p0[1], p1[1]) - m, max(p0[1], p1[1]) + m)
    if win is None:
        return None
    return win, _ramp(_seg_dist(g.x[win], g.y[win], p0, p1) - half, max(edge, g.px))


def _seg_dist(x: np.ndarray, y: np.ndarray, p0: tuple[float, float], p1: tuple[float, float]) -> np.ndarray:
    """Distance of every point to the segment p0-p1."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    x, y = x - p0[0], y - p0[1]
    t = np.clip((x * dx + y * dy) * (1 / max(dx * dx + dy * dy, 1e-9)), 0, 1)
    return np.sqrt((x - t * dx) ** 2 + (y - t * dy) ** 2)


def _lung_point(an: _Anatomy, s: int, r: np.random.Generator, zone: str) -> tuple[float, float]:
    """A random point inside one lung's upper, mid or lower zone, clear of the heart."""
    k = _side(s)
    f = {"upper": (0.14, 0.36), "mid": (0.36, 0.62), "lower": (0.62, 0.84)}[zone]
    top, bottom = _apex(an), an.dome_y[k]
    y = top + r.uniform(*f) * (bottom - top)
    taper = 1 + an.taper * min(0.0, (y - an.lung_cy) / an.lung_b)
    lo = -0.05 if (zone == "lower" and s > 0) else -0.45
    return s * (an.lung_cx + an.lung_a[k] * taper * r.uniform(lo, 0.6)), y


def _zone(r: np.random.Generator, p_upper: float, p_mid: float) -> str:
    u = r.random()
    return "upper" if u < p_upper else "mid" if u < p_upper + p_mid else "lower"


def _sign(r: np.random.Generator) -> int:
    return -1 if r.random() < 0.5 else 1


@dataclass(frozen=True)
class _Layers:
    """Mutable density layers that the signs paint into (arrays are written in place)."""

    lungs: np.ndarray  # 0..1 soft mask of aerated lung (read-only for signs)
    fill: np.ndarray  # fraction of lung air replaced by fluid or tissue
    lesion: np.ndarray  # extra density on top of everything
    lucency: np.ndarray  # extra air (pneumothorax, emphysema, bullae)
    vmask: np.ndarray  # multiplier on lung markings

    def fill_max(self, hit, amp: float) -> None:
        if hit is not None:
            win, m = hit
            np.maximum(self.fill[win], amp * m, out=self.fill[win])

    def add(self, hit, amp: float) -> None:
        if hit is not None:
            win, m = hit
            self.lesion[win] += amp * m


_Draw = Callable[[_Grid, _Anatomy, _Layers], None]


# --------------------------------------------------------------------------------------------------
# Normal anatomy
# --------------------------------------------------------------------------------------------------


def _body(g: _Grid, an: _Anatomy) -> np.ndarray:
    """Soft tissue: a neck widening into shoulders, thickest in the middle like a cylinder."""
    t = np.clip((g.y - an.shoulder_y) * (1 / 0.3) + 1, 0, 1)
    w = an.neck_w + (an.body_w - an.neck_w) * np.sqrt(np.sqrt(t))  # t**0.25: rounded shoulders
    u = np.abs(g.x) / w
    thick = np.sqrt(np.clip(1 - u * u, 0, 1))
    edge = np.clip((1 - u) * w * (1 / 0.02), 0, 1)
    return an.tissue * (0.25 + 0.75 * thick) * edge


def _lungs(g: _Grid, an: _Anatomy) -> np.ndarray:
    """Soft mask of aerated lung: two lungs, minus heart, mediastinum and what lies below the domes."""
    lungs = np.zeros_like(g.x)
    edge = max(0.008, 1.2 * g.px)
    for s in (-1, 1):
        win = g.window(*_lung_box(an, s))
        if win is not None:
            d = _lung_d(g.x[win], g.y[win], an, s)
            depth = 0.65 + 0.35 * np.clip(d * (-1 / 0.12), 0, 1)  # lungs are thinner at their edges
            lungs[win] = np.maximum(lungs[win], _ramp(d, edge) * depth)
    hx, hy, ha, hb, tilt = _heart(an)
    hit = _ellipse(g, hx, hy, ha, hb, edge, tilt)
    if hit is not None:
        lungs[hit[0]] *= 1 - hit[1]
    win = g.window(-an.medi_w - 0.05, an.medi_w + 0.05, -1.5, hy + 0.1)
    if win is not None:  # upper mediastinum: a vertical band fading into the heart
        x, y = g.x[win], g.y[win]
        medi = _ramp(np.abs(x - 0.01) - an.medi_w, edge) * _ramp(y - hy, 0.05)
        lungs[win] *= 1 - medi
    hit = _ellipse(g, an.medi_w + 0.015, an.lung_cy - 0.22, 0.055, 0.05, edge)  # aortic knob
    if hit is not None:
        lungs[hit[0]] *= 1 - hit[1]
    return lungs


def _ribs(g: _Grid, an: _Anatomy) -> np.ndarray:
    """Posterior ribs as arched bright bands, fainter anterior ribs sloping the other way."""
    ribs = np.zeros_like(g.x)
    reach = an.lung_cx + max(an.lung_a) + 0.06
    win = g.window(-reach, reach, _apex(an) - 0.1, an.lung_cy + an.lung_b + 0.2)
    if win is None:
        return ribs
    x, y = g.x[win], g.y[win]
    t = np.abs(x)
    rel = y - _apex(an)
    ph = (rel - (-0.2 * t + 0.6 * t * t)) * (1 / an.rib_spacing) + an.rib_offset
    band = np.clip((np.cos(ph * (2 * math.pi)) - 0.3) * 2.5, 0, 1)
    ph2 = (rel - 0.12 - 0.3 * t) * (1 / (1.15 * an.rib_spacing)) + an.rib_offset
    band += 0.4 * np.clip((np.cos(ph2 * (2 * math.pi)) - 0.3) * 2.5, 0, 1)
    half_h = an.lung_b + 0.1
    cage_w = (an.lung_cx + max(an.lung_a) + 0.05) * np.sqrt(
        np.clip(1 - ((y - an.lung_cy - 0.05) * (1 / half_h)) ** 2, 0, 1)
    )
    fade = np.clip((cage_w - t) * (1 / 0.04), 0, 1) * np.clip((t - 0.05) * (1 / 0.05), 0, 1)
    fade *= np.clip((ph + 0.4) * 2, 0, 1) * np.clip((10.5 - ph) * 0.5, 0, 1)
    ribs[win] = 0.1 * band * fade
    return ribs


def _bones(g: _Grid, an: _Anatomy) -> np.ndarray:
    """Ribs, clavicles and the thoracic spine."""
    bones = _ribs(g, an)
    for s in (-1, 1):
        pts = [(s * (0.06 + 0.55 * f), an.clav_y + 0.03 - 0.14 * f + 0.06 * f * f) for f in np.linspace(0, 1, 5)]
        for p0, p1 in itertools.pairwise(pts):
            hit = _segment(g, p0, p1, 0.024, 0.01)
            if hit is not None:
                np.maximum(bones[hit[0]], 0.16 * hit[1], out=bones[hit[0]])
    win = g.window(-0.12, 0.12, -1.5, 1.5)
    if win is not None:
        x, y = g.x[win], g.y[win]
        plates = np.clip(np.cos(y * (2 * math.pi / 0.085)), 0, 1)
        bones[win] += _ramp(np.abs(x) - 0.06, 0.015) * (0.05 + 0.03 * plates)
    return bones


def _vessels(g: _Grid, an: _Anatomy) -> np.ndarray:
    """Lung markings: vessels branching from each hilum, thinning towards the periphery.

    Drawn as PIL lines (fast at any size) from their own random stream, so that signs which only mask
    them (pneumothorax) leave the rest identical.
    """
    r = np.random.default_rng(an.vessel_seed)
    factor = 2 if g.size >= 512 else 1  # large images: draw at half size, upscale (see below)
    n = g.size // factor
    img = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(img)
    ppu = n * g.scale / 2  # pixels per anatomy unit

    def pix(x: float, y: float) -> tuple[float, float]:
        c, r_ = g.to_pixel(x, y)
        return (c + 0.5) / factor - 0.5, (r_ + 0.5) / factor - 0.5

    for s in (-1, 1):
        k = _side(s)
        reach = an.vessel_reach * (an.lung_a[k] + an.lung_b) * 0.95
        hilum = (s * (an.lung_cx - 0.55 * an.lung_a[k]), an.lung_cy + 0.04 + an.hilum_dy)
        stack = [(hilum, math.radians(a) + r.normal(0, 0.12), 0.022) for a in (-70, -40, -10, 20, 50, 80)]
        while stack:
            (x, y), ang, w = stack.pop()
            for _ in range(3):
                step = 0.035 + 1.6 * w
                ang += r.normal(0, 0.18)
                nx, ny = x + s * math.cos(ang) * step, y + math.sin(ang) * step
                if math.hypot(nx - hilum[0], ny - hilum[1]) > reach or w < 0.004:
                    break
                draw.line([pix(x, y), pix(nx, ny)], fill=int(80 + 7000 * w), width=max(1, round(w * ppu)))
                x, y, w = nx, ny, w * 0.86
                if r.random() < 0.55:
                    stack.append(((x, y), ang + r.choice((-1, 1)) * r.uniform(0.35, 0.7), w * 0.75))
    if g.size >= 512:  # a 2x bilinear upscale blurs like a ~1 px Gaussian, at a fraction of the cost
        img = img.resize((g.size, g.size), Image.Resampling.BILINEAR)
    else:
        img = img.filter(ImageFilter.GaussianBlur(0.5))
    return np.asarray(img, dtype=np.float32) * (0.22 / 255)


# --------------------------------------------------------------------------------------------------
# The 14 signs. Each takes the anatomy and its own random stream, may change the anatomy (a bigger
# heart, a raised dome), and returns a function that paints the sign once the final anatomy is known.
# Sizes are in anatomy units (the image is 2 units wide): a 0.06 unit feature is 3% of the width,
# about 4 pixels at 128 x 128, which is the smallest a sign may be and stay learnable there.
# --------------------------------------------------------------------------------------------------


def _atelectasis(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """Volume loss: a raised hemidiaphragm and a plate-like band of collapsed lung above it."""
    s = _sign(r)
    k = _side(s)
    an = replace(an, dome_y=_with_side(an.dome_y, k, an.dome_y[k] - r.uniform(0.07, 0.13)))
    f, tilt, half = r.uniform(0.6, 0.8), r.uniform(-0.08, 0.08), r.uniform(0.03, 0.048)
    lat0, lat1, amp = r.uniform(-0.55, -0.2), r.uniform(0.45, 0.85), r.uniform(0.75, 0.95)

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        y0 = _apex(an) + f * (an.dome_y[k] - _apex(an))
        x0, x1 = (s * (an.lung_cx + an.lung_a[k] * lat) for lat in (lat0, lat1))
        L.fill_max(_segment(g, (x0, y0 - tilt / 2), (x1, y0 + tilt / 2), half, 0.015), amp)

    return an, draw


def _cardiomegaly(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """An enlarged heart: cardiothoracic ratio 0.55-0.68 (normal phantoms stay below 0.47)."""
    return replace(an, ctr=r.uniform(0.55, 0.68), heart_b=an.heart_b * r.uniform(1.05, 1.2)), _no_draw


def _effusion(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """Basal fluid: homogeneous opacity from the base up to a meniscus, blunting the costophrenic angle."""
    sides = (-1, 1) if r.random() < 0.3 else (_sign(r),)
    levels = [(s, r.uniform(0.06, 0.3), r.uniform(0.06, 0.14), r.uniform(0.9, 1.0)) for s in sides]

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        for s, h, men, amp in levels:  # h: fluid level above the dome top; men: meniscus rise laterally
            k = _side(s)
            x0, x1, _, y1 = _lung_box(an, s)
            win = g.window(x0, x1, an.dome_y[k] - h - men - 0.1, y1)
            if win is not None:
                x, y = g.x[win], g.y[win]
                lat = np.clip((s * x - an.lung_cx + an.lung_a[k]) * (1 / (2 * an.lung_a[k])), 0, 1)
                level = an.dome_y[k] - h - men * lat * lat
                m = _ramp(level - y, 0.04)
                L.fill_max((win, m), amp)
                L.lesion[win] += 0.04 * m * L.lungs[win]  # fluid is a little denser than tissue

    return an, draw


def _infiltration(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """Patchy, ill-defined hazy opacities: a few clusters of soft blobs, often in both lungs."""
    blobs = []
    for _ in range(r.integers(2, 5)):
        cx, cy = _lung_point(an, _sign(r), r, _zone(r, 0.2, 0.45))
        for _ in range(r.integers(3, 6)):
            rad = r.uniform(0.035, 0.07)
            blobs.append((cx + r.normal(0, 0.05), cy + r.normal(0, 0.05), rad, r.uniform(0.3, 0.5)))

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        for cx, cy, rad, amp in blobs:
            L.fill_max(_ellipse(g, cx, cy, rad, rad * 0.8, 0.6 * rad), amp)

    return an, draw


def _mass(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """One large round opacity (> 3 cm: 8-14% of the image width), slightly lobulated."""
    cx, cy = _lung_point(an, _sign(r), r, _zone(r, 0.35, 0.4))
    rad, lob, phase, amp = r.uniform(0.08, 0.14), r.uniform(0.03, 0.12), r.uniform(0, 6.3), r.uniform(0.75, 0.95)

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        m = rad * (1 + lob) + 0.02
        win = g.window(cx - m, cx + m, cy - m, cy + m)
        if win is not None:
            x, y = g.x[win] - cx, g.y[win] - cy
            rr = rad * (1 + lob * np.sin(3 * np.arctan2(y, x) + phase))
            hit = (win, _ramp(np.sqrt(x * x + y * y) - rr, max(0.012, g.px)))
            L.fill_max(hit, amp)
            L.add(hit, 0.06)

    return an, draw


def _nodule(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """One to three small, well-defined round opacities (3-6% of the image width)."""
    n = 1 + int(r.choice(3, p=(0.6, 0.3, 0.1)))
    spots = []
    for _ in range(n):
        cx, cy = _lung_point(an, _sign(r), r, _zone(r, 0.35, 0.4))
        spots.append((cx, cy, r.uniform(0.03, 0.055), r.uniform(0.16, 0.26)))

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        for cx, cy, rad, amp in spots:
            hit = _ellipse(g, cx, cy, rad, rad, 0.006)
            L.fill_max(hit, 0.5)
            L.add(hit, amp)

    return an, draw


def _pneumonia(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """Segmental consolidation with fuzzy borders, usually in one lower zone."""
    cx, cy = _lung_point(an, _sign(r), r, _zone(r, 0.1, 0.3))
    amp, edge = r.uniform(0.6, 0.85), r.uniform(0.05, 0.08)
    blobs = [(cx + r.normal(0, 0.06), cy + r.normal(0, 0.05), r.uniform(0.06, 0.12)) for _ in range(r.integers(4, 8))]

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        for bx, by, rad in blobs:
            L.fill_max(_ellipse(g, bx, by, rad * 1.2, rad, edge), amp)

    return an, draw


def _pneumothorax(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """Air between the chest wall and a collapsed lung: no markings, darker, a thin pleural line."""
    s, dep, extra = _sign(r), r.uniform(0.07, 0.2), r.uniform(0.45, 0.7)

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        k = _side(s)
        a, b = an.lung_a[k], an.lung_b
        win = g.window(*_lung_box(an, s))
        if win is None:
            return
        x, y = g.x[win], g.y[win]
        cx, cy = s * (an.lung_cx - dep / 2), an.lung_cy + 0.65 * dep
        d = _lung_dist(x, y, cx, cy, a - dep / 2, b - 0.65 * dep, an.taper)
        gap = (1 - _ramp(d, max(0.006, g.px))) * L.lungs[win]
        L.lucency[win] += extra * gap
        L.vmask[win] *= 1 - gap
        inner = _ramp(_lung_d(x, y, an, s) + 0.02, g.px)  # no line where the lung edges coincide
        line = np.clip(1 - np.abs(d) * (1 / max(0.008, 0.9 * g.px)), 0, 1) * inner
        L.lesion[win] += 0.2 * line

    return an, draw


def _consolidation(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """Dense homogeneous lobar opacity, sharply bounded by a fissure, with air bronchograms."""
    zone = _zone(r, 0.35, 0.3)
    cx, cy = _lung_point(an, _sign(r), r, zone)
    rad, tilt, amp = r.uniform(0.13, 0.2), r.uniform(-0.25, 0.25), r.uniform(0.88, 1.0)
    below = zone == "lower" or (zone == "mid" and r.random() < 0.5)  # which side of the fissure
    off = r.uniform(-0.4, 0.1) * rad
    tubes = [(r.uniform(0, 6.3), r.uniform(0.5, 0.9)) for _ in range(r.integers(2, 4))]

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        hit = _ellipse(g, cx, cy, rad, rad * 0.9, 0.03)
        if hit is None:
            return
        win, m = hit
        x, y = g.x[win] - cx, g.y[win] - cy
        across = y * math.cos(tilt) - x * math.sin(tilt) - (off if below else -off)
        m = m * _ramp(-across if below else across, max(0.008, g.px))
        for ang, length in tubes:  # dark branching streaks inside the white: air bronchograms
            end = (math.cos(ang) * rad * length, math.sin(ang) * rad * length)
            m = m * (1 - 0.5 * _ramp(_seg_dist(x, y, (0.0, 0.0), end) - 0.008, max(0.006, g.px)))
        L.fill_max((win, m), amp)

    return an, draw


def _edema(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """Bilateral perihilar 'bat-wing' haze plus short horizontal Kerley B lines at the lung bases."""
    wings = [(s, r.uniform(0.14, 0.2), r.uniform(0.2, 0.28), r.uniform(0.45, 0.65)) for s in (-1, 1)]
    kerley = [(s, r.uniform(0.55, 0.9), r.uniform(0.05, 0.08)) for s in (-1, 1) for _ in range(r.integers(4, 8))]

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        for s, rx, ry, amp in wings:
            cx = s * (an.lung_cx - 0.45 * an.lung_a[_side(s)])
            L.fill_max(_ellipse(g, cx, an.lung_cy + 0.04 + an.hilum_dy, rx, ry, 0.1), amp)
        for s, f, length in kerley:
            k = _side(s)
            y = _apex(an) + f * (an.dome_y[k] - _apex(an))
            x = s * (an.lung_cx + an.lung_a[k] * 0.92)
            L.add(_segment(g, (x, y), (x - s * length, y), 0.005, 0.004), 0.14)

    return an, draw


def _emphysema(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """Hyperinflation: bigger, darker lungs, low flat domes, pruned markings, sometimes bullae."""
    drop = r.uniform(0.07, 0.12)
    an = replace(
        an,
        dome_y=(an.dome_y[0] + drop, an.dome_y[1] + drop),
        dome_h=an.dome_h * r.uniform(0.2, 0.45),
        lung_b=an.lung_b + drop / 2,
        lung_cy=an.lung_cy + drop / 2,
        lung_a=(an.lung_a[0] + 0.02, an.lung_a[1] + 0.02),
        vessel_reach=r.uniform(0.55, 0.72),
    )
    dark, prune = r.uniform(0.25, 0.4), r.uniform(0.4, 0.65)
    bullae = [(_sign(r), r.uniform(0.05, 0.09)) for _ in range(r.integers(0, 3))]
    spots = [(s, rad, _lung_point(an, s, r, "upper")) for s, rad in bullae]

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        for s in (-1, 1):
            win = g.window(*_lung_box(an, s))
            if win is not None:
                L.lucency[win] += dark * L.lungs[win]
                L.vmask[win] *= prune
        for _, rad, (cx, cy) in spots:
            hit = _ellipse(g, cx, cy, rad, rad, 0.01)
            if hit is not None:
                win, m = hit
                L.lucency[win] += 0.4 * m
                L.vmask[win] *= 1 - m
                L.lesion[win] += 0.06 * np.clip(1 - np.abs(m - 0.5) * 2.5, 0, 1)  # thin wall

    return an, draw


def _fibrosis(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """Reticular (net-like) lines and haze in the upper zones, with the hila pulled up."""
    an = replace(an, hilum_dy=an.hilum_dy - r.uniform(0.03, 0.06))
    sides = (-1, 1) if r.random() < 0.75 else (_sign(r),)
    period, base, amp, haze = r.uniform(0.05, 0.07), r.uniform(0, math.pi), r.uniform(0.13, 0.2), r.uniform(0.2, 0.3)
    phases, reach = r.uniform(0, 6.3, size=4), r.uniform(0.45, 0.6)

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        for s in sides:
            x0, x1, y0, _ = _lung_box(an, s)
            ylim = _apex(an) + reach * (an.dome_y[_side(s)] - _apex(an))
            win = g.window(x0, x1, y0, ylim + 0.1)
            if win is None:
                continue
            x, y = g.x[win], g.y[win]
            wob = 0.3 * np.sin(x * 9 + y * 7 + phases[3])
            net = np.zeros_like(x)
            for i in range(3):
                ang = base + i * math.pi / 3
                u = (x * math.cos(ang) + y * math.sin(ang)) * (1 / period) + wob + phases[i]
                np.maximum(net, np.clip(1 - np.abs(np.sin(u * math.pi)) * (1 / 0.45), 0, 1), out=net)
            zone = _ramp(y - ylim, 0.08) * L.lungs[win]
            L.fill_max((win, zone), haze)
            L.lesion[win] += amp * net * zone

    return an, draw


def _pleural_thickening(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """A bright band along the lateral chest wall and/or the apex (an apical cap)."""
    sides = (-1, 1) if r.random() < 0.3 else (_sign(r),)
    bands = [(s, r.uniform(0.04, 0.07), r.uniform(0, 6.3), int(r.integers(3))) for s in sides]

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        for s, th, phase, where in bands:  # where: 0 lateral, 1 apical, 2 both
            k = _side(s)
            win = g.window(*_lung_box(an, s))
            if win is None:
                continue
            x, y = g.x[win], g.y[win]
            thick = th * (1 + 0.3 * np.sin(y * 20 + phase))
            band = np.clip(0.5 + (_lung_d(x, y, an, s) + thick) * (1 / 0.012), 0, 1)
            lateral = _ramp(-(s * (x - s * an.lung_cx)) + 0.1 * an.lung_a[k], 0.03) * _ramp(y - an.dome_y[k], 0.05)
            apical = _ramp(y - _apex(an) - 0.28, 0.05)
            region = lateral if where == 0 else apical if where == 1 else np.maximum(lateral, apical)
            L.fill_max((win, band * region), 1.0)
            L.lesion[win] += 0.05 * band * region * L.lungs[win]

    return an, draw


def _hernia(an: _Anatomy, r: np.random.Generator) -> tuple[_Anatomy, _Draw]:
    """Hiatal hernia: a rounded retrocardiac opacity above the diaphragm with a gas cap and a flat level.

    A round opacity alone reads as a Mass, and a ConvNeXt normalises away flat brightness (LayerNorm per
    position), so the sign that gives a hernia away is drawn clearly: a dark gas cap over the upper part
    with a sharp horizontal air-fluid level, inside a round wall, at or left of the midline.
    """
    dx, rad, up, amp = r.uniform(0.02, 0.22), r.uniform(0.11, 0.16), r.uniform(0.04, 0.14), r.uniform(0.2, 0.3)
    wide, dark, level = r.uniform(1.0, 1.3), r.uniform(0.55, 0.8), r.uniform(-0.15, 0.15)

    def draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
        cy = (an.dome_y[0] + an.dome_y[1]) / 2 - up
        hit = _ellipse(g, dx, cy, rad * wide, rad, 0.01)
        L.add(hit, amp)
        L.fill_max(hit, 1.0)
        bubble = _ellipse(g, dx, cy - 0.2 * rad, 0.8 * rad * wide, 0.62 * rad, 0.006)
        if hit is not None and bubble is not None:  # air above the air-fluid level in the herniated stomach
            win, m = bubble
            L.lesion[win] -= dark * m * _ramp(g.y[win] - (cy + level * rad), g.px)

    return an, draw


def _no_draw(g: _Grid, an: _Anatomy, L: _Layers) -> None:
    """Signs that live entirely in the anatomy (cardiomegaly) paint nothing extra."""


#: One sign per label, in LABELS order.
_SIGNS: tuple[Callable[[_Anatomy, np.random.Generator], tuple[_Anatomy, _Draw]], ...] = (
    _atelectasis,
    _cardiomegaly,
    _effusion,
    _infiltration,
    _mass,
    _nodule,
    _pneumonia,
    _pneumothorax,
    _consolidation,
    _edema,
    _emphysema,
    _fibrosis,
    _pleural_thickening,
    _hernia,
)
assert len(_SIGNS) == NUM_CLASSES


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def render(findings: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one frontal chest radiograph with a visible sign for each positive finding.

    findings: 14-long 0/1 vector in LABELS order. Returns a uint8 (size, size) grayscale image, drawn
    directly at `size` (no downscaling), so small training images are cheap. The anatomy, the film and
    each finding draw from their own streams split off `rng`: toggling one finding changes only its
    sign, which is what makes each sign testable and the preview sheet comparable.
    """
    findings = np.asarray(findings)
    if findings.shape != (NUM_CLASSES,):
        raise ValueError(f"findings must have shape ({NUM_CLASSES},), got {findings.shape}")
    seeds = rng.integers(2**62, size=2 + NUM_CLASSES)
    an = _sample_anatomy(np.random.default_rng(seeds[0]))
    film_rng = np.random.default_rng(seeds[1])
    film = _sample_film(film_rng)
    draws: list[_Draw] = []
    for i in np.flatnonzero(findings):
        an, draw = _SIGNS[i](an, np.random.default_rng(seeds[2 + i]))
        draws.append(draw)
    g = _make_grid(size, film.angle, film.scale, film.shift)
    lungs = _lungs(g, an)
    zeros = np.zeros_like(lungs)
    layers = _Layers(lungs, zeros.copy(), zeros.copy(), zeros.copy(), np.ones_like(lungs))
    for draw in draws:
        draw(g, an, layers)
    density = _compose(g, an, layers)
    return _expose(g, density, film, film_rng)


def _compose(g: _Grid, an: _Anatomy, L: _Layers) -> np.ndarray:
    """Sum the densities: soft tissue + bone + markings + lesions - air."""
    aerated = L.lungs * (1 - np.clip(L.fill, 0, 1))
    density = _body(g, an) + _bones(g, an) + L.lesion
    density += aerated * (_vessels(g, an) * L.vmask - _AIR * (1 + L.lucency))
    win = g.window(-0.05, 0.05, -1.5, an.lung_cy - 0.15)
    if win is not None:  # the trachea: a dark air column down the mediastinum
        x, y = g.x[win], g.y[win]
        density[win] -= 0.14 * _ramp(np.abs(x) - 0.028, 0.01) * _ramp(y - an.lung_cy + 0.2, 0.05)
    if an.bubble is not None:  # normal gastric air, below the left hemidiaphragm
        bx, by, rad = an.bubble
        hit = _ellipse(g, bx, an.dome_y[1] + by, rad * 1.3, rad * 0.8, 0.015)
        if hit is not None:
            density[hit[0]] -= 0.16 * hit[1]
    return density


def _expose(g: _Grid, density: np.ndarray, film: _Film, r: np.random.Generator) -> np.ndarray:
    """Density -> 8-bit film: window, heel-effect tilt, gamma (via a lookup table), mottle and noise."""
    n = g.size
    ramp = np.linspace(-1, 1, n, dtype=np.float32)[None, :]
    v = (density - film.lo) * ((1 + film.tilt * ramp) / (film.hi - film.lo))
    idx = (np.clip(v, 0, 1) * 4095).astype(np.uint16)
    lut = (np.linspace(0, 1, 4096) ** film.gamma * 255).astype(np.float32)
    out = lut[idx]
    coarse = Image.fromarray(r.normal(0, film.mottle, size=(6, 6)).astype(np.float32), mode="F")
    out += np.asarray(coarse.resize((n, n), Image.Resampling.BILINEAR), dtype=np.float32)
    out += r.standard_normal((n, n), dtype=np.float32) * film.noise
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# The cohort: patients, follow-ups, labels, metadata and the patient-wise split
# --------------------------------------------------------------------------------------------------

#: Findings that persist across a patient's later follow-ups once they appear.
_CHRONIC = ("Cardiomegaly", "Emphysema", "Fibrosis", "Hernia", "Pleural_Thickening")
#: Per-patient chance of each chronic finding (compressed from NIH so every label has positives).
_CHRONIC_P = (0.065, 0.06, 0.055, 0.05, 0.06)
#: Acute findings: weight as the main finding of an episode (NIH's order, compressed).
_ACUTE = ("Infiltration", "Effusion", "Atelectasis", "Nodule", "Mass", "Pneumothorax", "Consolidation",
          "Edema", "Pneumonia")  # fmt: skip
_ACUTE_W = (0.2, 0.14, 0.15, 0.12, 0.12, 0.1, 0.09, 0.08, 0.11)
#: (finding, co-finding, chance): NIH's common pairs (fluid with collapse and failure, mass with nodule...).
_COOCCUR = (
    ("Effusion", "Atelectasis", 0.3), ("Effusion", "Infiltration", 0.2), ("Effusion", "Edema", 0.12),
    ("Atelectasis", "Effusion", 0.3), ("Atelectasis", "Infiltration", 0.2),
    ("Mass", "Nodule", 0.3), ("Nodule", "Mass", 0.2), ("Nodule", "Infiltration", 0.1),
    ("Pneumonia", "Infiltration", 0.4), ("Pneumonia", "Consolidation", 0.25), ("Pneumonia", "Effusion", 0.15),
    ("Consolidation", "Effusion", 0.25), ("Consolidation", "Atelectasis", 0.25), ("Consolidation", "Pneumonia", 0.2),
    ("Infiltration", "Pneumonia", 0.1),
    ("Edema", "Effusion", 0.4), ("Edema", "Infiltration", 0.3),
    ("Cardiomegaly", "Effusion", 0.2), ("Cardiomegaly", "Edema", 0.12),
    ("Emphysema", "Pneumothorax", 0.12), ("Pneumothorax", "Effusion", 0.1),
)  # fmt: skip
#: Common (width, height, pixel spacing) of the originals, as NIH lists them, with rough weights.
_ORIGINALS = (
    (("2500", "2048", "0.168"), 30), (("2992", "2991", "0.143"), 22), (("3056", "2544", "0.139"), 15),
    (("2500", "2048", "0.171"), 7), (("2048", "2500", "0.168"), 6), (("2021", "2021", "0.194311"), 4),
    (("2048", "2500", "0.171"), 3), (("2544", "3056", "0.139"), 2),
)  # fmt: skip
_FOLLOWUP_P = (0.28, 0.17, 0.13, 0.1, 0.09, 0.08, 0.08, 0.07)  # 1..8 images per patient, skewed
_TEST_ABNORMAL = 0.33  # share of patients with any finding that go to test ...
_TEST_NORMAL = 0.1  # ... and of those without: ~23% of all patients, a sicker test split, as NIH's


@dataclass(frozen=True)
class Cohort:
    """Everything about a phantom dataset except the pixels; cheap to make, so tests check it directly."""

    names: list[str]
    labels: np.ndarray  # (n_images, 14) uint8, LABELS order
    patient: np.ndarray  # (n_images,) int
    followup: np.ndarray
    rows: list[str]  # the CSV lines, without line endings
    test_patients: frozenset[int]

    @property
    def is_test(self) -> np.ndarray:
        return np.isin(self.patient, sorted(self.test_patients))


def _episode(r: np.random.Generator, present: set[str]) -> set[str]:
    """One acute episode: a main finding by NIH-like weight, then the findings that go with it."""
    found = {_ACUTE[r.choice(len(_ACUTE), p=np.array(_ACUTE_W) / sum(_ACUTE_W))]}
    if r.random() < 0.6:  # an unrelated second finding
        found.add(_ACUTE[r.choice(len(_ACUTE), p=np.array(_ACUTE_W) / sum(_ACUTE_W))])
    return found | _co_findings(r, found | present)


def _co_findings(r: np.random.Generator, found: set[str]) -> set[str]:
    return {b for a, b, p in _COOCCUR if a in found and r.random() < p}


def _patient_labels(r: np.random.Generator, n: int) -> list[set[str]]:
    """Labels of one patient's n follow-ups: chronic findings persist from their onset, acute ones come,
    sometimes linger one more film, and go."""
    onsets = {}
    for name, p in zip(_CHRONIC, _CHRONIC_P, strict=True):
        if r.random() < p * (0.4 + 0.2 * n):  # the chronically ill come back more often
            onsets[name] = 0 if r.random() < 0.6 else int(r.integers(n))
    sick = r.beta(1.5, 3.2) * (0.7 + 0.06 * n)  # how often this patient has an acute episode
    out, acute = [], set()
    for k in range(n):
        chronic = {name for name, start in onsets.items() if start <= k}
        if acute and r.random() < 0.4:
            # sorted: set order varies between processes, the random draws must not
            acute = {a for a in sorted(acute) if r.random() < (0.9 if a in ("Mass", "Nodule") else 0.7)}
        else:
            acute = _episode(r, chronic) if r.random() < sick else set()
        out.append(chronic | acute | _co_findings(r, chronic))
    return out


def sample_cohort(n_patients: int, seed: int) -> Cohort:
    """Draw patients, follow-ups, labels, metadata and the split, without rendering anything.

    The test split is drawn by patient, favouring sick patients with many follow-ups, as NIH's is (its
    test split is sicker and holds 9 images per patient): ~23% of the patients, ~35% of the images.
    """
    r = np.random.default_rng(np.random.SeedSequence([_META_STREAM, seed]))
    dims = [d for d, _ in _ORIGINALS]
    dim_p = np.array([w for _, w in _ORIGINALS], dtype=float)
    names, labels, patient, followup, rows = [], [], [], [], []
    counts = 1 + r.choice(len(_FOLLOWUP_P), size=n_patients, p=np.array(_FOLLOWUP_P) / sum(_FOLLOWUP_P))
    for pid, n in enumerate(counts, start=1):
        age, sex = int(np.clip(r.normal(47, 17), 1, 94)), "M" if r.random() < 0.56 else "F"
        for k, found in enumerate(_patient_labels(r, int(n))):
            vec = np.array([name in found for name in LABELS], dtype=np.uint8)
            name = f"{pid:08d}_{k:03d}.png"
            view = "AP" if r.random() < 0.3 + 0.2 * bool(found) else "PA"
            w, h, sp = dims[r.choice(len(dims), p=dim_p / dim_p.sum())]
            age += int(r.random() < 0.3)
            rows.append(f"{name},{decode(vec)},{k},{pid},{age},{sex},{view},{w},{h},{sp},{sp}")
            names.append(name)
            labels.append(vec)
            patient.append(pid)
            followup.append(k)
    labels_arr = np.array(labels, dtype=np.uint8).reshape(-1, NUM_CLASSES)
    patient_arr = np.array(patient)
    return Cohort(
        names=names,
        labels=labels_arr,
        patient=patient_arr,
        followup=np.array(followup),
        rows=rows,
        test_patients=_split(r, labels_arr, patient_arr, counts),
    )


def _split(r: np.random.Generator, labels: np.ndarray, patient: np.ndarray, counts: np.ndarray) -> frozenset[int]:
    """Pick test patients, stratified by each patient's rarest finding, favouring many follow-ups.

    Stratifying keeps rare, patient-clustered findings (Hernia) from landing almost all on one side;
    favouring sick patients with long histories makes the test split sicker and denser, as NIH's is, and
    gives every finding enough test positives for a stable AUROC.
    """
    per_patient = np.zeros((len(counts), NUM_CLASSES), dtype=np.int64)
    np.add.at(per_patient, patient - 1, labels)
    rarity = np.argsort(labels.sum(0), kind="stable")  # label indices, rarest first
    present = per_patient[:, rarity] > 0
    stratum = np.where(present.any(1), present.argmax(1), -1)
    key = r.random(len(counts)) ** (1.0 / counts**1.5)  # weighted sampling without replacement
    test: list[int] = []
    acc = 0.0  # carried across strata, so that many tiny strata still add up to their share
    for s in np.unique(stratum):
        members = np.flatnonzero(stratum == s)
        share = (_TEST_NORMAL if s < 0 else _TEST_ABNORMAL) * len(members)
        k = math.floor(acc + share) - math.floor(acc)
        acc += share
        test += [int(m) + 1 for m in members[np.argsort(-key[members], kind="stable")[:k]]]
    if not test and len(counts) >= 2:  # tiny cohorts: keep both splits non-empty
        test.append(int(np.argmax(key)) + 1)
    return frozenset(test)


# --------------------------------------------------------------------------------------------------
# Writing the dataset
# --------------------------------------------------------------------------------------------------


def _params(n_patients: int, size: int, seed: int) -> dict:
    return {"format_version": FORMAT_VERSION, "n_patients": n_patients, "size": size, "seed": seed}


def _read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_complete(out: Path, n_patients: int, size: int, seed: int) -> bool:
    """True when `out` holds a finished phantom dataset made with exactly these parameters.

    The manifest is written last, so its presence with matching parameters means every image, the CSV
    and both lists were written before it.
    """
    manifest = _read_manifest(Path(out))
    if manifest is None or not manifest.get("complete") or manifest.get("params") != _params(n_patients, size, seed):
        return False
    return all((Path(out) / name).is_file() for name in (CSV_NAME, TRAIN_VAL_LIST, TEST_LIST))


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(text.encode("ascii"))
    os.replace(tmp, path)


def _render_file(task: tuple[Path, int, np.ndarray, int, int, bool]) -> None:
    """Render and save one image (a top-level function, so worker processes can run it).

    Its random stream depends only on (seed, image index), so the files are the same whatever the
    number of workers or the order they run in.
    """
    path, index, findings, size, seed, rgba = task
    rng = np.random.default_rng(np.random.SeedSequence([_IMAGE_STREAM, seed, index]))
    img = Image.fromarray(render(findings, size, rng), mode="L")
    if rgba:  # NIH ships 519 RGBA images; a loader must cope, so the phantoms have a few too
        img = img.convert("RGBA")
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format="PNG", compress_level=_PNG_LEVEL)
    os.replace(tmp, path)


def _rgba_indices(n_images: int, seed: int) -> set[int]:
    """About 0.5% of the images (at least one once there are 20) are saved as RGBA."""
    if n_images < 20:
        return set()
    r = np.random.default_rng(np.random.SeedSequence([_META_STREAM, seed, 1]))
    k = max(1, round(0.005 * n_images))
    return {int(i) for i in r.choice(n_images, size=k, replace=False)}


def _run(tasks: list, workers: int, progress: bool) -> None:
    """Render on all cores (spawned workers: safe even when the caller has threads, e.g. torch)."""
    bar = tqdm(total=len(tasks), desc="phantoms", unit="img", disable=not progress)
    with bar:
        if workers <= 1:
            for task in tasks:
                _render_file(task)
                bar.update()
            return
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for _ in pool.map(_render_file, tasks, chunksize=max(1, min(32, len(tasks) // (4 * workers)))):
                bar.update()


def summarize(cohort: Cohort) -> dict:
    """Image, patient and per-label positive counts for each split (also stored in the manifest)."""
    test = cohort.is_test
    out = {"n_images": len(cohort.names), "n_patients": len(np.unique(cohort.patient))}
    for split, mask in (("train_val", ~test), ("test", test)):
        labels = cohort.labels[mask]
        counts = {name: int(n) for name, n in zip(LABELS, labels.sum(0), strict=True)}
        counts[NO_FINDING] = int((labels.sum(1) == 0).sum())
        out[split] = {
            "n_images": int(mask.sum()),
            "n_patients": len(np.unique(cohort.patient[mask])),
            "counts": counts,
        }
    return out


def _refuse_foreign(out: Path) -> None:
    """Never write over a folder that holds data a phantom run did not make (say, the real NIH set)."""
    if (out / MANIFEST).is_file() or not out.exists():
        return
    if any((out / name).exists() for name in (CSV_NAME, "Data_Entry_2017_v2020.csv", "images", TEST_LIST)):
        raise UserError(
            f"{out} already holds a dataset that cxr14 phantom did not write (no {MANIFEST}); refusing to "
            f"overwrite it. Choose an empty or new folder for --out."
        )


def write_dataset(
    out: Path,
    n_patients: int = 1000,
    size: int = 1024,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Write a phantom NIH folder: Data_Entry_2017.csv, images/*.png, both split lists, phantom.json.

    Returns a summary (image/patient counts, per-label positives per split, n_rgba, params). Reuses a
    finished folder made with the same parameters (returns at once). Otherwise it (re)writes only the
    files it owns; the manifest goes first away and last back, so an interrupted run never looks done.
    """
    out = Path(out)
    if is_complete(out, n_patients, size, seed):
        return _read_manifest(out)["summary"]
    _refuse_foreign(out)
    out.mkdir(parents=True, exist_ok=True)
    # Claim the folder before touching anything: an interrupted run leaves "complete": false.
    _write_text(out / MANIFEST, json.dumps({"params": _params(n_patients, size, seed), "complete": False}) + "\n")
    (out / "images").mkdir(exist_ok=True)
    cohort = sample_cohort(n_patients, seed)
    rgba = _rgba_indices(len(cohort.names), seed)
    tasks = [(out / "images" / name, i, cohort.labels[i], size, seed, i in rgba) for i, name in enumerate(cohort.names)]
    _run(tasks, workers or os.cpu_count() or 1, progress)
    _write_text(out / CSV_NAME, "".join(line + "\r\n" for line in [CSV_HEADER, *cohort.rows]))
    test = cohort.is_test
    names = np.array(cohort.names)
    _write_text(out / TRAIN_VAL_LIST, "\n".join(sorted(names[~test])))
    _write_text(out / TEST_LIST, "\n".join(sorted(names[test])))
    summary = {**summarize(cohort), "n_rgba": len(rgba), "params": _params(n_patients, size, seed)}
    manifest = {"params": _params(n_patients, size, seed), "complete": True, "n_images": len(names), "summary": summary}
    _write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return summary


def write_preview(path: Path, size: int = 256, seed: int = 0) -> None:
    """A labelled contact sheet PNG: a normal phantom, then one per finding (only that finding).

    All 15 panels share one patient's anatomy and film (the same seed), so each panel differs from the
    normal one by its sign alone.
    """
    cols, rows = 5, 3
    cap = max(14, size // 10)
    sheet = Image.new("L", (cols * size, rows * (size + cap)), 0)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(10, int(cap * 0.7)))
    for j, title in enumerate((NO_FINDING, *LABELS)):
        findings = np.zeros(NUM_CLASSES, dtype=np.uint8)
        if j:
            findings[j - 1] = 1
        x, y = (j % cols) * size, (j // cols) * (size + cap)
        sheet.paste(Image.fromarray(render(findings, size, np.random.default_rng(seed)), mode="L"), (x, y))
        draw.text((x + size / 2, y + size + cap / 2), title, fill=255, font=font, anchor="mm")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
