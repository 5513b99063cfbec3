"""The 14 signs, one per finding, each drawn where a radiologist would look."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from cxr14.data.phantom.anatomy import (
    _Anatomy,
    _apex,
    _Draw,
    _ellipse,
    _Grid,
    _Layers,
    _lung_box,
    _lung_d,
    _lung_dist,
    _lung_point,
    _ramp,
    _seg_dist,
    _segment,
    _side,
    _sign,
    _with_side,
    _zone,
)
from cxr14.labels import NIH_LABELS

_IDX = {name: i for i, name in enumerate(NIH_LABELS)}

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


#: One sign per label, in NIH_LABELS order.
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
assert len(_SIGNS) == len(NIH_LABELS)
