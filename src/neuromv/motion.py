"""How the music moves a fitted picture (image mode): motion that keeps the picture.

The picture (a :class:`~neuromv.picture.PictureNet`, or any network of coordinates) does not depend on the music,
so it is evaluated once per resolution; per frame only this module's motion runs. Three parts, each driven by a
frozen linear read-out of the frame's *drive* vector ``u`` (:func:`drive`: the mel latents with their rises
boosted, so hits move the picture at once):

- **tone**: a swing of light and dark that follows the picture's own regions. The *tone maps* ``phi`` are the
  blurred picture's luma and two opponent-colour channels (each zero-mean, unit RMS), so bright and dark regions,
  and regions of different hues, swing differently:
  ``g = clip(a0 + a1 phi_luma + a2 phi_rg + a3 phi_yb, -1, 1)`` and each channel ``c -> c + g c (1 - c)``, which
  keeps every colour in [0, 1] without clipping and keeps its hue (a tone curve, not a colour wash).
- **flow**: a displacement along the gradients of the picture's coarse structure (its blurred luma and red-green
  channels): shapes swell and shrink across their own edges, ``D = b0 grad psi_luma + b1 grad psi_rg``.
- **breath**: a zoom about the frame's centre driven by the low (bass) mel bands, ``D -= m (x, y)``.

The picture is sampled at ``(x, y) + D`` (bilinear, clamped at the border), then toned. ``u`` has zero mean over
the song (the latents are standardised per band), so the motion swings around the picture: the mean frame is
the picture. ``--reactivity`` scales ``u``: 0 is the still picture; every part grows smoothly with it.

The structure maps are computed once per picture at a small resolution (:data:`STRUCTURE` pixels on the short side,
in the picture's own coordinates), so the motion is the same at any output resolution and the live page samples the
same maps (:mod:`neuromv.web`). The matrices are drawn from the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ParameterError
from .settings import MOTIONS

__all__ = ["MOTIONS", "STRUCTURE", "ONSET_BOOST", "CUES_BOOST", "TONE_GAIN", "FLOW_GAIN", "BREATH_GAIN", "Motion",
           "drive", "structure_maps", "structure_size", "picture_maps", "N_MAPS"]

#: Short side of the structure maps, pixels.
STRUCTURE = 64
#: Blur of the tone maps and of the flow's structure, as a fraction of the short side.
TONE_BLUR = 0.05
FLOW_BLUR = 0.05
#: u = z + ONSET_BOOST * (z - z_prev): rises of the (attack/release smoothed) latents move the picture at once.
ONSET_BOOST = 2.0
#: The boost with the structure on (:func:`neuromv.plan.latents_for`; the page's too, where a panel has controls):
#: none. There the beats' kicks and the onset-strength steps (:data:`neuromv.structure.PICTURE_FLUX`) carry the hits,
#: and a boosted drive jumps out and back on an onset, a change one frame late that no onset has (docs/sync.md).
CUES_BOOST = 0.0
#: Scale of the tone read-out (per unit of u: the read-out rows are N(0, 1 / n_z) times this).
TONE_GAIN = 5.0
#: Scale of the flow: coordinate units (the short side spans 2) per unit of its read-out.
FLOW_GAIN = 0.014
#: Scale of the breath: relative zoom per unit of the bass read-out.
BREATH_GAIN = 0.0035
#: Structure maps: 3 tone maps (luma, red-green, yellow-blue), then the flow's 2 gradient fields (x, y of each).
N_MAPS = 7


def drive(z: np.ndarray, boost: float = ONSET_BOOST) -> np.ndarray:
    """The drive vectors of a picture's motion: ``u_t = z_t + boost (z_t - z_{t-1})`` (``u_0 = z_0``).

    Parameters
    ----------
    z : np.ndarray [shape=(n_frames, n_z)]
        Latents (:func:`neuromv.features.latents_from_blocks`), already scaled.

    Returns
    -------
    np.ndarray [shape=(n_frames, n_z), dtype=float32]
    """
    z = np.asarray(z, dtype=np.float32)
    u = z.copy()
    if len(z) > 1:
        u[1:] += np.float32(boost) * (z[1:] - z[:-1])
    return u


@dataclass(frozen=True)
class Motion:
    """The frozen read-outs from a frame's drive vector ``u`` to its motion (see the module's text).

    Attributes
    ----------
    tone : np.ndarray [shape=(4, n_z), dtype=float32]
        ``a = tone @ u``: global, luma, red-green and yellow-blue tone coefficients.
    flow : np.ndarray [shape=(2, n_z), dtype=float32]
        ``b = flow @ u``: the flow along the luma and the red-green structure, coordinate units.
    breath : np.ndarray [shape=(n_z,), dtype=float32]
        ``m = breath @ u``: relative zoom (positive: closer).
    style : str
        One of :data:`MOTIONS`.
    """

    tone: np.ndarray
    flow: np.ndarray
    breath: np.ndarray
    style: str = "all"

    @classmethod
    def of(cls, n_z: int, seed: int = 0, style: str = "all") -> Motion:
        """The motion of a seed: N(0, 1 / n_z) read-outs drawn from ``seed`` (the same on every machine); the
        breath is the mean of the lowest quarter of the bands."""
        if style not in MOTIONS:
            raise ParameterError(f"motion must be one of {', '.join(MOTIONS)}, not {style!r}")
        if isinstance(n_z, bool) or not isinstance(n_z, int) or n_z < 1:
            raise ParameterError(f"n_z must be an integer >= 1, not {n_z!r}")
        gen = torch.Generator().manual_seed(int(seed) + 7919)  # not the network's own stream
        scale = 1.0 / math.sqrt(n_z)
        tone = (torch.randn(4, n_z, generator=gen, dtype=torch.float64) * scale * TONE_GAIN).numpy()
        flow = (torch.randn(2, n_z, generator=gen, dtype=torch.float64) * scale * FLOW_GAIN).numpy()
        low = max(1, n_z // 4)
        breath = np.zeros(n_z)
        breath[:low] = BREATH_GAIN / math.sqrt(low)
        if style == "colour":
            flow, breath = flow * 0, breath * 0
        elif style == "shape":
            tone = tone * 0
        return cls(tone.astype(np.float32), flow.astype(np.float32), breath.astype(np.float32), style)

    @property
    def n_z(self) -> int:
        """Length of the drive vectors."""
        return self.tone.shape[1]

    def coefficients(self, u: np.ndarray) -> np.ndarray:
        """The 7 numbers of one frame: ``(a0, a1, a2, a3, b0, b1, m)`` for ``u`` [shape=(n_z,)]; float64."""
        u = np.asarray(u, dtype=np.float64)
        return np.concatenate([self.tone @ u, self.flow @ u, [self.breath @ u]])

    def matrix(self) -> np.ndarray:
        """The read-outs stacked: np.ndarray [shape=(7, n_z), dtype=float32], ``matrix() @ u`` is
        :meth:`coefficients`."""
        return np.concatenate([self.tone, self.flow, self.breath[None]]).astype(np.float32)


def structure_size(aspect: float, short: int = STRUCTURE) -> tuple[int, int]:
    """(width, height) of the structure maps of a picture of ``aspect`` (width / height): ``short`` pixels on the
    short side."""
    if not (math.isfinite(aspect) and aspect > 0):
        raise ParameterError(f"aspect must be a positive number, not {aspect!r}")
    if aspect >= 1:
        return max(short, round(short * aspect)), short
    return short, max(short, round(short / aspect))


def structure_maps(picture: np.ndarray) -> np.ndarray:
    """The maps the motion follows, from the picture at :func:`structure_size` (scale 1, no pan).

    Parameters
    ----------
    picture : np.ndarray [shape=(h, w, 3)]
        RGB in [0, 1], the picture at its structure size.

    Returns
    -------
    np.ndarray [shape=(N_MAPS, h, w), dtype=float32]
        The tone maps (luma, red-green, yellow-blue of the picture blurred by ``TONE_BLUR`` of the short side;
        each zero-mean with unit RMS, or zero where the picture is flat), then the flow fields (d/dx and d/dy, in
        coordinate units, of the luma and red-green of the picture blurred by ``FLOW_BLUR``; each field scaled to
        unit RMS magnitude, or zero).
    """
    from scipy.ndimage import gaussian_filter

    p = np.asarray(picture, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] != 3:
        raise ParameterError(f"picture must have shape (h, w, 3), not {p.shape}")
    short = min(p.shape[:2])

    def channels(sigma: float) -> list[np.ndarray]:
        b = np.stack([gaussian_filter(p[..., c], sigma, mode="nearest") for c in range(3)], axis=-1)
        luma = b @ np.array([0.2126, 0.7152, 0.0722])
        return [luma, b[..., 0] - b[..., 1], 0.5 * (b[..., 0] + b[..., 1]) - b[..., 2]]

    maps = []
    for m in channels(TONE_BLUR * short):
        m = m - m.mean()
        rms = math.sqrt(float(np.mean(m * m)))
        maps.append(m / rms if rms > 1e-4 else np.zeros_like(m))
    half = short / 2.0  # pixels per coordinate unit
    for m in channels(FLOW_BLUR * short)[:2]:
        gy, gx = np.gradient(m)
        gx, gy = gx * half, gy * half
        rms = math.sqrt(float(np.mean(gx * gx + gy * gy)))
        if rms > 1e-4:
            gx, gy = gx / rms, gy / rms
        else:
            gx, gy = np.zeros_like(gx), np.zeros_like(gy)
        maps += [gx, gy]
    return np.stack(maps).astype(np.float32)


def picture_maps(net) -> np.ndarray:
    """The structure maps of a fitted picture ``net`` (anything with ``aspect`` and ``render(width, height)``, as
    :class:`neuromv.picture.PictureNet`): :func:`structure_maps` of the picture at :func:`structure_size`.

    Returns
    -------
    np.ndarray [shape=(N_MAPS, height, width), dtype=float32]
        ``(width, height)`` is ``structure_size(net.aspect)``.
    """
    width, height = structure_size(net.aspect)
    return structure_maps(np.asarray(net.render(width, height), dtype=np.float32))
