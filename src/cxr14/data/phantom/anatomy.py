"""Phantom anatomy: the pixel grid, the patient's body, lungs, heart, bones and vessels, and drawing helpers."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_AIR = 0.44  # density that fully aerated lung removes from the soft-tissue background

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
