"""One phantom image: anatomy, then signs, then exposure and noise, each from its own random stream."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from PIL import Image

from cxr14.data.phantom.anatomy import (
    _AIR,
    _Anatomy,
    _body,
    _bones,
    _Draw,
    _ellipse,
    _Film,
    _Grid,
    _Layers,
    _lungs,
    _make_grid,
    _ramp,
    _sample_anatomy,
    _sample_film,
    _vessels,
)
from cxr14.data.phantom.boxes import Box, sign_box
from cxr14.data.phantom.signs import _SIGNS
from cxr14.labels import NIH_LABELS

# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def render(findings: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one frontal chest radiograph with a visible sign for each positive finding.

    findings: 14-long 0/1 vector in NIH_LABELS order. Returns a uint8 (size, size) grayscale image, drawn
    directly at `size` (no downscaling), so small training images are cheap. The anatomy, the film and
    each finding draw from their own streams split off `rng`: toggling one finding changes only its
    sign, which is what makes each sign testable and the preview sheet comparable.
    """
    return render_with_boxes(findings, size, rng, ())[0]


def render_with_boxes(
    findings: np.ndarray, size: int, rng: np.random.Generator, boxed: Collection[int]
) -> tuple[np.ndarray, dict[int, Box]]:
    """`render`, plus the box (x, y, w, h in pixels) of each positive finding listed in `boxed`.

    The image is the same as `render`'s with the same rng (boxes draw no random numbers); a finding whose
    sign falls off the image gets no box. See `boxes` for what a box covers.
    """
    findings = np.asarray(findings)
    if findings.shape != (len(NIH_LABELS),):
        raise ValueError(f"findings must have shape ({len(NIH_LABELS)},), got {findings.shape}")
    seeds = rng.integers(2**62, size=2 + len(NIH_LABELS))
    an = _sample_anatomy(np.random.default_rng(seeds[0]))
    film_rng = np.random.default_rng(seeds[1])
    film = _sample_film(film_rng)
    draws: list[tuple[int, _Draw]] = []
    for i in np.flatnonzero(findings):
        an, draw = _SIGNS[i](an, np.random.default_rng(seeds[2 + i]))
        draws.append((int(i), draw))
    g = _make_grid(size, film.angle, film.scale, film.shift)
    lungs = _lungs(g, an)
    zeros = np.zeros_like(lungs)
    layers = _Layers(lungs, zeros.copy(), zeros.copy(), zeros.copy(), np.ones_like(lungs))
    for _, draw in draws:
        draw(g, an, layers)
    density = _compose(g, an, layers)
    boxes = {i: sign_box(i, draw, g, an, lungs) for i, draw in draws if i in boxed}
    return _expose(g, density, film, film_rng), {i: box for i, box in boxes.items() if box is not None}


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
