"""Palettes: a gradient map from each pixel's lightness to a colour table (``--palette``).

A palette is a table of :data:`PALETTE_SIZE` colours (:class:`Palette`). Every render path applies it the same way,
as the last step of a pixel's colour, after the colour map (:func:`neuromv.renderer.color_matrix`) and its clamp:

    position = clamp(row[:3] . c + row[3], 0, PALETTE_SIZE - 1),  colour = table[round(position)]

with ``c`` the RGB colour in [0, 1] and ``row`` = :func:`palette_row`: the Rec. 709 luma of ``c``, with the
picture's own range of lumas (:func:`palette_levels`, measured by the renderer on a small render of the network)
spread over the whole table. Hue, brightness and contrast therefore move the pattern along the palette (a
hue turn changes which regions are light), and every output colour is one of the palette's.

Tables come from the named palettes of :data:`neuromv.settings.PALETTES` (colour stops interpolated in OKLab, or
cosine palettes), from a custom list of colours, or from a cover image (:func:`dominant_colors`: its 8 dominant
colours by k-means in OKLab, ordered dark to light, each held over part of the table so the picture stays in the
cover's colours).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import ImageError, ParameterError
from .settings import PALETTES, parse_palette

__all__ = ["Palette", "PALETTE_SIZE", "LEVEL_PERCENTILES", "COVER_COLORS", "palette_row", "palette_levels",
           "palette_table", "dominant_colors", "palette_for", "srgb_to_oklab", "oklab_to_srgb"]

log = logging.getLogger(__name__)

#: Colours in a palette's table (nearest entry: steps of 1/1023 of the palette, below one 8-bit level per entry for
#: every palette here).
PALETTE_SIZE = 1024
#: The lumas of a picture (its percentiles) that map to a palette's two ends (:func:`palette_levels`): a network's
#: luma spans a different part of [0, 1] for every seed; its own 2-98 % range spans the whole palette.
LEVEL_PERCENTILES = (2.0, 98.0)
#: The narrowest luma range spread over a palette (a near-flat picture is not blown up into noise).
MIN_LEVEL_SPAN = 0.1
#: ``--palette cover``: how many dominant colours of the cover make its palette.
COVER_COLORS = 8
#: The share of each colour's interval of the table a cover palette holds that colour flat (the rest blends to the
#: next): keeps every pixel near one of the cover's colours.
COVER_HOLD = 0.6
#: Rec. 709 luma weights (as :data:`neuromv.renderer.color.LUMA`, which this module must not import: torch).
_LUMA = np.array([0.2126, 0.7152, 0.0722])

# sRGB <-> OKLab (Björn Ottosson, 2020)
_M1 = np.array([[0.4122214708, 0.5363325363, 0.0514459929], [0.2119034982, 0.6806995451, 0.1073969566],
                [0.0883024619, 0.2817188376, 0.6299787005]])
_M2 = np.array([[0.2104542553, 0.7936177850, -0.0040720468], [1.9779984951, -2.4285922050, 0.4505937099],
                [0.0259040371, 0.7827717662, -0.8086757660]])


def srgb_to_oklab(rgb: np.ndarray) -> np.ndarray:
    """sRGB [shape=(..., 3)] in [0, 1] -> OKLab (L, a, b) [shape=(..., 3)], float64."""
    c = np.asarray(rgb, dtype=np.float64)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return np.cbrt(lin @ _M1.T) @ _M2.T


def oklab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """OKLab [shape=(..., 3)] -> sRGB [shape=(..., 3)] in [0, 1] (out-of-gamut colours clamped), float64."""
    lin = np.clip(((np.asarray(lab, dtype=np.float64) @ np.linalg.inv(_M2).T) ** 3) @ np.linalg.inv(_M1).T, 0, 1)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


@dataclass(frozen=True)
class Palette:
    """A palette's colour table.

    Attributes
    ----------
    name : str
        What the log and the page call it (a name, ``'cover'`` or ``'custom'``).
    table : np.ndarray [shape=(PALETTE_SIZE, 3), dtype=float32]
        The colours in [0, 1], dark to light; row ``i`` is position ``i / (PALETTE_SIZE - 1)``.
    colors : np.ndarray [shape=(k, 3), dtype=uint8]
        The colours it was made of (a cosine palette: 8 samples of it).
    """

    name: str
    table: np.ndarray
    colors: np.ndarray


def palette_row(levels: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """The map from a colour to its position in the table: ``row`` [shape=(4,), dtype=float64] with position
    ``row[:3] . c + row[3]`` for ``c`` in [0, 1] (then clamped to [0, PALETTE_SIZE - 1] and rounded).

    ``levels`` ``(lo, hi)``: the lumas that map to the table's two ends (:func:`palette_levels` of the picture);
    the lumas between spread over the whole palette."""
    lo, hi = float(levels[0]), float(levels[1])
    span = max(hi - lo, MIN_LEVEL_SPAN)
    n = PALETTE_SIZE - 1
    return np.concatenate([_LUMA / span * n, [-lo / span * n]])


def palette_levels(rgb: np.ndarray) -> tuple[float, float]:
    """The levels of :func:`palette_row` for a picture: the 2nd and 98th percentiles of its Rec. 709 luma.

    Parameters
    ----------
    rgb : np.ndarray [shape=(..., 3)]
        A sample of the picture (uint8, or floats in [0, 1]).

    Returns
    -------
    (float, float)
        In [0, 1], at least :data:`MIN_LEVEL_SPAN` apart (a flat picture spreads no further than that).
    """
    c = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    if np.asarray(rgb).dtype == np.uint8:
        c = c / 255.0
    lo, hi = np.percentile(c @ _LUMA, LEVEL_PERCENTILES) if len(c) else (0.0, 1.0)
    mid = 0.5 * (lo + hi)
    if hi - lo < MIN_LEVEL_SPAN:
        lo, hi = mid - 0.5 * MIN_LEVEL_SPAN, mid + 0.5 * MIN_LEVEL_SPAN
    return float(lo), float(hi)


def palette_table(colors: np.ndarray, *, hold: float = 0.0) -> np.ndarray:
    """A table [shape=(PALETTE_SIZE, 3), dtype=float32] through ``colors`` [shape=(k, 3)] (0-255, k >= 2) in
    their order, evenly spaced and interpolated in OKLab; ``hold`` in [0, 1): the share of each interval held at
    its nearer colour (0: a smooth blend all the way)."""
    lab = srgb_to_oklab(np.asarray(colors, dtype=np.float64) / 255.0)
    x = np.linspace(0.0, 1.0, PALETTE_SIZE) * (len(lab) - 1)
    i = np.minimum(x.astype(int), len(lab) - 2)
    f = x - i
    if hold:
        f = np.clip((f - 0.5) / (1.0 - hold) + 0.5, 0.0, 1.0)
    return oklab_to_srgb(lab[i] * (1 - f)[:, None] + lab[i + 1] * f[:, None]).astype(np.float32)


def _cosine_table(a, b, c, d) -> np.ndarray:
    t = np.linspace(0.0, 1.0, PALETTE_SIZE)[:, None]
    return np.clip(np.asarray(a) + np.asarray(b) * np.cos(2 * np.pi * (np.asarray(c) * t + np.asarray(d))),
                   0.0, 1.0).astype(np.float32)


def dominant_colors(image: np.ndarray, k: int = COVER_COLORS, *, samples: int = 20000) -> np.ndarray:
    """The ``k`` dominant colours of an image, dark to light: k-means in OKLab over up to ``samples`` of its
    pixels (a fixed sample and start: the same image gives the same colours).

    Parameters
    ----------
    image : np.ndarray [shape=(height, width, 3), dtype=uint8]

    Returns
    -------
    np.ndarray [shape=(k, 3), dtype=uint8]
        The clusters' mean colours, ordered by OKLab lightness, largest clusters kept when the image has fewer
        distinct colours than ``k`` (repeats then).
    """
    px = np.asarray(image).reshape(-1, 3)
    if px.shape[0] == 0:
        raise ImageError("the cover image has no pixels")
    rng = np.random.default_rng(0)
    if px.shape[0] > samples:
        px = px[rng.choice(px.shape[0], samples, replace=False)]
    lab = srgb_to_oklab(px / 255.0)
    # k-means++ start, then Lloyd's iterations (bounded)
    centres = [lab[rng.integers(len(lab))]]
    for _ in range(1, k):
        d = np.min(((lab[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(lab[rng.choice(len(lab), p=d / d.sum())] if d.sum() > 0 else centres[-1])
    centres = np.asarray(centres)
    for _ in range(30):
        label = np.argmin(((lab[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        moved = np.array([lab[label == j].mean(0) if np.any(label == j) else centres[j] for j in range(k)])
        if np.allclose(moved, centres, atol=1e-5):
            break
        centres = moved
    centres = centres[np.argsort(centres[:, 0])]
    return np.clip(np.round(oklab_to_srgb(centres) * 255.0), 0, 255).astype(np.uint8)


def palette_for(spec, cover: np.ndarray | None = None) -> Palette | None:
    """The palette of a ``palette`` setting.

    Parameters
    ----------
    spec : str, tuple or None
        The setting's value (:func:`neuromv.settings.parse_palette` reads it).
    cover : np.ndarray [shape=(height, width, 3), dtype=uint8], optional
        The cover image, for ``'cover'``.

    Returns
    -------
    Palette or None
        None for None (the network's own colours).

    Raises
    ------
    ParameterError
        Not a palette, or ``'cover'`` without a cover image.
    """
    value = parse_palette(spec)
    if value is None:
        return None
    if value == "cover":
        if cover is None:
            raise ParameterError("palette 'cover' needs cover art: the song has none (embedded, or cover.*/folder.* "
                                 "beside it); give one with --image (neuromv demo: --image demo), or choose another palette")
        colors = dominant_colors(cover)
        log.info("palette from the cover: %s", " ".join("#%02x%02x%02x" % tuple(c) for c in colors))
        return Palette("cover", palette_table(colors, hold=COVER_HOLD), colors)
    if isinstance(value, tuple):
        colors = np.asarray(value, dtype=np.uint8)
        return Palette("custom", palette_table(colors), colors)
    kind, data = PALETTES[value]
    if kind == "stops":
        colors = np.asarray([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in data], dtype=np.uint8)
        return Palette(value, palette_table(colors), colors)
    table = _cosine_table(*data)
    colors = np.round(table[np.linspace(0, PALETTE_SIZE - 1, 8).astype(int)] * 255).astype(np.uint8)
    return Palette(value, table, colors)
