"""Rendering one synthetic blood-smear image from a white cell's descriptors.

This module only draws: :func:`draw_cell` turns a dict of descriptor values (as sampled by :mod:`cellst.synth`) and a
random generator into an RGB array. It knows nothing about files, cell types' statistics or captions.

Drawing is vectorised numpy on a float canvas, so a 96 px image costs a few milliseconds. Stained layers (red cells)
absorb light multiplicatively, as dyes do, so overlapping red cells look darker; the white cell is painted on top.
Every length is given for a 96 px image and scaled by ``size / 96``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

SLIDE = (238, 230, 235)
RBC = (230, 166, 174)
RBC_PALLOR = (238, 204, 210)
RBC_RADIUS = 8.5
CYTOPLASM = {"pale blue": (185, 200, 232), "grey-blue": (150, 155, 190), "pink": (230, 190, 212),
             "deep blue": (80, 100, 178)}
NUCLEUS = {"fine": (120, 70, 160), "coarse": (92, 44, 128), "dense": (62, 28, 96)}
NUCLEOLUS = (175, 160, 215)
VACUOLE = (243, 240, 247)
# Granule colour, radius at 96 px (0 = one pixel) and how densely they pack the region they sit in.
GRANULES = {"fine pink": ((190, 96, 160), 0.0, 0.30), "large orange-red": ((232, 104, 50), 1.7, 0.75),
            "dark purple": ((50, 18, 78), 1.6, 0.45)}
CELL_RADIUS = {"small": 13.0, "medium": 17.5, "large": 23.0}
NC_FRACTION = {"low": 0.50, "moderate": 0.64, "high": 0.80}  # nucleus radius / cell radius


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    return yy, xx


def _window(size: int, cy: float, cx: float, reach: float) -> tuple[slice, slice]:
    """The part of the image within ``reach`` of a point: shapes are computed there only, which is most of the speed."""
    y0, x0 = max(int(cy - reach), 0), max(int(cx - reach), 0)
    return slice(y0, max(min(int(cy + reach) + 2, size), y0)), slice(x0, max(min(int(cx + reach) + 2, size), x0))


def _soft(edge: np.ndarray) -> np.ndarray:
    """Signed distance inside a shape (pixels, positive inside) -> anti-aliased alpha."""
    return np.clip(edge + 0.5, 0.0, 1.0)


def _polar(size: int, cy: float, cx: float, reach: float):
    """Window, distance and angle from (cy, cx) for the pixels within ``reach``."""
    yy, xx = _grid(size)
    win = _window(size, cy, cx, reach)
    dy, dx = yy[win] - cy, xx[win] - cx
    return win, np.hypot(dy, dx), np.arctan2(dy, dx)


def _disc(size: int, cy: float, cx: float, r: float) -> np.ndarray:
    out = np.zeros((size, size), np.float32)
    yy, xx = _grid(size)
    win = _window(size, cy, cx, r + 1)
    out[win] = _soft(r - np.hypot(yy[win] - cy, xx[win] - cx))
    return out


def _paint(canvas: np.ndarray, alpha: np.ndarray, colour) -> None:
    canvas += alpha[..., None] * (np.asarray(colour, np.float32) - canvas)


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1] with about ``cells`` blobs across the image (bilinear upsampling of a coarse grid)."""
    coarse = (rng.random((cells + 1, cells + 1)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse, "L").resize((size, size), Image.BILINEAR), np.float32) / 255


def _wobbly(size, cy, cx, r, rng, amount: float, spikes: np.ndarray | None = None) -> np.ndarray:
    """A disc whose radius wavers with angle by about ``amount`` (0 = circle), for cell and nuclear outlines.

    ``spikes`` (amplitudes of a few sharp cosine peaks) adds thin projections: hairy cells.
    """
    reach = r * (1 + amount + (0 if spikes is None else spikes.sum())) + 1
    win, d, th = _polar(size, cy, cx, reach)
    wave = np.zeros_like(d)
    amps, phases = amount * rng.uniform(0.4, 1, 4) / np.arange(1, 5), rng.uniform(0, 2 * np.pi, 4)
    for k, amp, phase in zip(range(2, 6), amps, phases):
        wave += amp * np.cos(k * th + phase)
    for amp in [] if spikes is None else spikes:
        wave += amp * np.maximum(np.cos(rng.integers(9, 24) * th + rng.uniform(0, 6)), 0) ** 16
    out = np.zeros((size, size), np.float32)
    out[win] = _soft(r * (1 + wave) - d)
    return out


def _strand(size, p, q, width) -> np.ndarray:
    """Alpha of a thin line from ``p`` to ``q`` (the chromatin strands joining nuclear lobes)."""
    (py, px), (qy, qx) = p, q
    win = _window(size, (py + qy) / 2, (px + qx) / 2, np.hypot(qy - py, qx - px) / 2 + width + 1)
    yy, xx = (g[win] for g in _grid(size))
    vy, vx = qy - py, qx - px
    t = np.clip(((yy - py) * vy + (xx - px) * vx) / max(vy * vy + vx * vx, 1e-6), 0, 1)
    out = np.zeros((size, size), np.float32)
    out[win] = _soft(width - np.hypot(yy - py - t * vy, xx - px - t * vx))
    return out


def _lobes(size, cy, cx, r, angle, n, rng, s) -> np.ndarray:
    """``n`` lobes on an arc around the centre, joined by thin strands (segmented and bilobed nuclei)."""
    spread = 0.55 * (n - 1) if n > 2 else 1.25  # lobes about 1.1 rad apart along the arc, so they separate
    angles = angle + np.linspace(-spread, spread, n) + rng.normal(0, 0.12, n)
    ring = 0.75 * r if n > 2 else 0.56 * r
    centres = [(cy + ring * np.sin(a), cx + ring * np.cos(a)) for a in angles]
    lobe_r = r * (0.5 if n == 2 else 0.34) * rng.uniform(0.9, 1.1, n)
    alpha = np.zeros((size, size), np.float32)
    for (y, x), lr in zip(centres, lobe_r):
        alpha = np.maximum(alpha, _disc(size, y, x, lr))
    for p, q in zip(centres, centres[1:]):
        alpha = np.maximum(alpha, _strand(size, p, q, 0.8 * s))
    return alpha


def _nucleus(shape, size, cy, cx, r, rng, s) -> np.ndarray:
    """Alpha of a nucleus of radius about ``r``; each shape value gets its own geometry."""
    angle = rng.uniform(0, 2 * np.pi)
    if shape == "round":
        return _wobbly(size, cy, cx, r, rng, 0.05)
    if shape == "irregular":
        return _wobbly(size, cy, cx, r, rng, 0.45)
    if shape == "kidney-shaped":  # an indent bitten out of one side
        notch = _disc(size, cy + 1.0 * r * np.sin(angle), cx + 1.0 * r * np.cos(angle), 0.6 * r)
        return _wobbly(size, cy, cx, 1.05 * r, rng, 0.04) * (1 - notch)
    if shape == "band-shaped":  # a thick C: an annulus cut to about 240 degrees
        win, d, th = _polar(size, cy, cx, r + 1)
        gap = np.abs(np.angle(np.exp(1j * (th - angle)))) > 1.1
        out = np.zeros((size, size), np.float32)
        out[win] = _soft(0.3 * r - np.abs(d - 0.68 * r)) * gap
        return out
    n = 2 if shape == "bilobed" else int(rng.integers(3, 6))
    return _lobes(size, cy, cx, r, angle, n, rng, s)


@lru_cache(maxsize=16)
def _stamp(radius: float) -> tuple[np.ndarray, np.ndarray]:
    reach = int(np.ceil(radius + 0.5))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1].reshape(2, -1)
    return dy, dx


def _dots(region: np.ndarray, count: int, radius: float, rng) -> np.ndarray:
    """Alpha of ``count`` round dots of ``radius`` px at random sub-pixel places inside ``region``."""
    ys, xs = np.nonzero(region > 0.6)
    out = np.zeros(region.shape, np.float32)
    if len(ys) == 0 or count <= 0:
        return out
    pick = rng.integers(0, len(ys), count)
    cy, cx = ys[pick] + rng.uniform(-0.5, 0.5, count), xs[pick] + rng.uniform(-0.5, 0.5, count)
    dy, dx = _stamp(radius)
    py, px = np.rint(cy)[:, None] + dy, np.rint(cx)[:, None] + dx
    alpha = _soft(max(radius, 0.5) - np.hypot(py - cy[:, None], px - cx[:, None]))
    keep = (py >= 0) & (py < out.shape[0]) & (px >= 0) & (px < out.shape[1]) & (alpha > 0)
    np.maximum.at(out, (py[keep].astype(int), px[keep].astype(int)), alpha[keep])
    return out


def _background(size: int, rng, s: float) -> np.ndarray:
    """Slide with pale pink red cells, each with a paler centre; overlaps absorb twice, as in a thick smear."""
    canvas = np.empty((size, size, 3), np.float32)
    canvas[:] = np.asarray(SLIDE, np.float32) * rng.uniform(0.98, 1.01)
    body = 1 - np.asarray(RBC, np.float32) / np.asarray(SLIDE, np.float32)
    pallor = 1 - np.asarray(RBC_PALLOR, np.float32) / np.asarray(RBC, np.float32)
    for _ in range(int(rng.integers(8, 13))):
        cy, cx = rng.uniform(-4 * s, size + 4 * s, 2)
        r = RBC_RADIUS * s * rng.uniform(0.9, 1.1)
        win, d, _ = _polar(size, cy, cx, r + 1)
        disc, centre = _soft(r - d), _soft(0.45 * r - d) * 0.8
        canvas[win] *= 1 - disc[..., None] * body
        canvas[win] /= 1 - centre[..., None] * pallor  # the pale centre lets more light through
    return canvas


def _chromatin(kind: str, alpha: np.ndarray, canvas, rng, size) -> None:
    """Paint the nucleus with texture: fine = even and light, coarse = dark clumps and pale gaps, dense = dark, flat."""
    base = np.asarray(NUCLEUS[kind], np.float32)
    if kind == "coarse":
        shade = 1.0 + 0.5 * (_noise(rng, size, max(size // 7, 4)) - 0.5) * 2
    else:
        shade = 1.0 + (0.12 if kind == "fine" else 0.06) * (_noise(rng, size, max(size // 3, 6)) - 0.5) * 2
    colour = np.clip(base[None, None] * shade[..., None], 0, 255)
    canvas += alpha[..., None] * (colour - canvas)


def _cytoplasm_contents(attrs, canvas, inner, cell, rng, s) -> None:
    """Cytoplasmic granules, then vacuoles as pale holes over them; the nucleus, painted next, covers both."""
    size = canvas.shape[0]
    cy, cx, r = cell
    if attrs["granules"] in ("fine pink", "large orange-red"):
        colour, radius, pack = GRANULES[attrs["granules"]]
        count = int(pack * inner.sum() / (np.pi * max(radius * s, 0.7) ** 2))
        _paint(canvas, _dots(inner, count, radius * s, rng) * 0.85, colour)
    if attrs["vacuoles"] == "present":
        ys, xs = np.nonzero(inner * _disc(size, cy, cx, r - 2.5 * s) > 0.9)
        for i in rng.integers(0, len(ys), int(rng.integers(3, 7))) if len(ys) else []:
            _paint(canvas, _disc(size, ys[i], xs[i], rng.uniform(1.8, 3.0) * s) * 0.92, VACUOLE)


def _nuclear_contents(attrs, canvas, nucleus, centre, rn, body, rng, s) -> None:
    """Chromatin texture, nucleoli as pale spots, and basophil granules, which lie over the nucleus and hide it."""
    size = canvas.shape[0]
    _chromatin(attrs["chromatin"], nucleus, canvas, rng, size)
    if attrs["nucleoli"] == "visible":
        ys, xs = np.nonzero(nucleus * _disc(size, *centre, 0.6 * rn) > 0.95)
        for i in rng.integers(0, len(ys), int(rng.integers(1, 4))) if len(ys) else []:
            _paint(canvas, _disc(size, ys[i], xs[i], rng.uniform(1.8, 2.5) * s) * 0.85, NUCLEOLUS)
    if attrs["granules"] == "dark purple":
        colour, radius, pack = GRANULES["dark purple"]
        count = int(pack * body.sum() / (np.pi * (radius * s) ** 2))
        _paint(canvas, _dots(body, count, radius * s, rng) * 0.9, colour)


def draw_cell(attrs: dict, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """Return a ``size`` x ``size`` x 3 uint8 smear image of one white cell with the descriptor values in ``attrs``.

    ``attrs`` needs the keys of :data:`cellst.synth.DESCRIPTORS`; ``cell_type`` is only read for the plasma cell's
    perinuclear halo, which no descriptor names.
    """
    s = size / 96
    canvas = _background(size, rng, s)
    cy, cx = size / 2 + rng.normal(0, 3 * s, 2)
    r = CELL_RADIUS[attrs["cell_size"]] * s * rng.uniform(0.93, 1.07)
    # 1. Cell body: a slightly uneven disc; hairy cells get thin projections (sharp peaks of the outline).
    spikes = rng.uniform(0.2, 0.45, 3) if attrs["projections"] == "hair-like" else None
    body = _wobbly(size, cy, cx, r, rng, 0.05, spikes)
    cyto = np.asarray(CYTOPLASM[attrs["cytoplasm_colour"]], np.float32)
    _paint(canvas, body, cyto * (1 + 0.06 * (_noise(rng, size, max(size // 8, 4))[..., None] - 0.5)))
    # 2. Nucleus geometry: central, or pushed against the membrane when eccentric.
    rn = NC_FRACTION[attrs["nc_ratio"]] * r
    shift = (0.95 * (r - rn) + 1.0 * s) if attrs["nucleus_position"] == "eccentric" else rng.uniform(0, 0.08 * r)
    a = rng.uniform(0, 2 * np.pi)
    ny, nx = cy + shift * np.sin(a), cx + shift * np.cos(a)
    if attrs["nuclear_shape"] in ("segmented", "bilobed"):  # lobes spread wider than a round nucleus of equal area
        rn = min(1.3 * rn, 0.8 * r)
    nucleus = _nucleus(attrs["nuclear_shape"], size, ny, nx, rn, rng, s) * body
    inner = body * (1 - nucleus)
    if attrs.get("cell_type") == "plasma cell":  # Golgi zone: a pale patch beside the nucleus
        halo = _disc(size, ny - 0.7 * rn * np.sin(a), nx - 0.7 * rn * np.cos(a), 0.75 * rn) * inner
        _paint(canvas, halo * 0.55, (205, 210, 238))
    # 3. What lies in the cytoplasm, then the nucleus on top.
    _cytoplasm_contents(attrs, canvas, inner, (cy, cx, r), rng, s)
    _nuclear_contents(attrs, canvas, nucleus, (ny, nx), rn, body, rng, s)
    return _photograph(canvas, rng, s)


def _photograph(canvas: np.ndarray, rng, s: float) -> np.ndarray:
    """Stain variation, optical blur and sensor noise, so images look like photographs rather than vector art."""
    canvas = canvas * rng.normal(1.0, 0.012, 3).astype(np.float32)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.5 * s))
    noisy = np.asarray(image, np.float32) + rng.normal(0, 2.5, canvas.shape).astype(np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
