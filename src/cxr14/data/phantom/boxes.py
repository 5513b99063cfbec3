"""Where each sign was drawn: NIH-style bounding boxes for the phantoms, in the image's pixel space.

NIH's radiologists drew one box per (image, finding) around the lesion. Here the box comes from the
sign itself: its draw function is run once more on blank layers (it uses no randomness, so it paints
exactly what it painted into the image), the density it adds or removes is measured per pixel, and the
box is the bounding box of the main part of the region where that change exceeds a quarter of its
maximum. "Main part": signs with several pieces (two nodules, infiltrate clusters, bilateral effusion)
get the box of their largest connected piece, as a radiologist boxes the most evident lesion; the
other pieces stay on the film. Cardiomegaly changes the anatomy, not a layer: its box is the heart.
All of this happens on the rendering grid, so the patient's rotation, shift and scale are included.
"""

from __future__ import annotations

import numpy as np

from cxr14.data.phantom.anatomy import _AIR, _Anatomy, _Draw, _ellipse, _Grid, _heart, _Layers
from cxr14.labels import NIH_LABELS

#: Pixels whose density change is at least this share of the sign's largest change belong to the sign.
FOOTPRINT_LEVEL = 0.25
_CARDIOMEGALY = NIH_LABELS.index("Cardiomegaly")

Box = tuple[int, int, int, int]  # x, y, w, h in pixels: columns x..x+w-1, rows y..y+h-1


def sign_box(index: int, draw: _Draw, g: _Grid, an: _Anatomy, lungs: np.ndarray) -> Box | None:
    """The box of finding `index` as drawn on grid `g` for the final anatomy `an`; None if off the image."""
    if index == _CARDIOMEGALY:
        return _heart_box(g, an)
    change = _footprint(draw, g, an, lungs)
    peak = float(change.max())
    if not peak > 0:
        return None
    return _main_part_box(change >= FOOTPRINT_LEVEL * peak, change)


def _footprint(draw: _Draw, g: _Grid, an: _Anatomy, lungs: np.ndarray) -> np.ndarray:
    """|density change| per pixel of one sign painted alone (vessel masking left out: it is faint).

    Mirrors render._compose: fill replaces aerated lung's air, lucency adds air, lesion adds density.
    """
    zeros = np.zeros_like(lungs)
    layers = _Layers(lungs, zeros.copy(), zeros.copy(), zeros.copy(), np.ones_like(lungs))
    draw(g, an, layers)
    fill = np.clip(layers.fill, 0, 1)
    return np.abs(layers.lesion + lungs * _AIR * (fill - (1 - fill) * layers.lucency))


def _main_part_box(mask: np.ndarray, weight: np.ndarray) -> Box:
    """Bounding box of the 8-connected part of `mask` that carries the most `weight`."""
    from scipy import ndimage  # on first use: render workers that draw no box never pay its import (~0.3 s)

    parts, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n > 1:
        mass = ndimage.sum_labels(weight, parts, index=np.arange(1, n + 1))
        mask = parts == 1 + int(np.argmax(mass))
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _heart_box(g: _Grid, an: _Anatomy) -> Box | None:
    hx, hy, ha, hb, tilt = _heart(an)
    hit = _ellipse(g, hx, hy, ha, hb, max(0.008, 1.2 * g.px), tilt)
    if hit is None:
        return None
    (rows, cols), m = hit
    full = np.zeros((g.size, g.size), dtype=np.float32)
    full[rows, cols] = m
    if not full.max() >= 0.5:
        return None
    return _main_part_box(full >= 0.5, full)
