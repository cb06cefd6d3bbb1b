"""The CPPN: a compositional pattern producing network from pixel coordinates and z to colour.

Two kinds, one class:

- **abstract** (no reference image): ``(x, y, r, z) -> 5 hidden layers of tanh -> sigmoid (r, g, b)``, weights
  and biases drawn from N(0, 1). z enters the first layer.
- **image** (fitted to a reference image, :mod:`neuromv.reference`): the same network on ``(x, y, r)`` alone
  reproduces the image, ``p = sigmoid(W_o h + b_o)``; z stays out of the fit. The music moves the picture through a
  *pulse*: ``d = (sum_j z_j R_j) h``, a colour offset per pixel built from the network's own last hidden features
  ``h`` by frozen random projections ``R`` (never trained), applied as
  ``frame = clip(p + m(p) * sin(d))`` with ``m(p) = max(FLOOR, min(p, 1 - p))`` the room the colour has.
  The renderer removes each pixel's mean swing over the song (``centre``, :class:`neuromv.renderer.Renderer`), so
  the frames swing around the image and their mean stays the image, however strongly they move
  (docs/reference-images.md).

This module holds the network and the plain, obviously correct forward pass; :mod:`neuromv.renderer` holds the
fast renderer, which must agree with it.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .errors import ParameterError

__all__ = ["CPPN", "coordinate_grid", "coordinate_axes", "grid_of_axes", "check_pan", "N_COORDS", "FLOOR",
           "LIGHTNESS_GRID", "headroom"]

#: Coordinate inputs per pixel: x, y and r (distance from the centre).
N_COORDS = 3
#: Abstract mode with a tone or chroma: the side of the square grid (the reference view, scale 1) over which the
#: lightness is centred (:class:`CPPN`).
LIGHTNESS_GRID = 64
#: Image mode: the smallest swing of a colour channel, as a fraction of its full range (black and white pixels
#: would not move at all with 0; they are the only ones that can clip).
FLOOR = 0.1


def headroom(p: torch.Tensor) -> torch.Tensor:
    """How far a colour in [0, 1] may swing in image mode: ``max(FLOOR, min(p, 1 - p))``, so it never clips
    unless it is within ``FLOOR`` of black or white. The swing is then symmetric and the mean stays ``p``."""
    return torch.clamp(0.5 - (p - 0.5).abs(), min=FLOOR)


class CPPN(nn.Module):
    """Compositional pattern producing network.

    Parameters
    ----------
    n_z : int
        Size of the latent vector z (the number of mel bands).
    hidden : int
        Width of each hidden layer.
    n_hidden : int
        Number of hidden (tanh) layers; the first takes the coordinates and z.
    seed : int
        Seed of the N(0, 1) weights: the same seed gives the same network on every machine.
    image : bool
        Image mode (see the module's docstring): z does not enter the first layer; it drives the pulse.
    tone, chroma : float
        Abstract mode's colours: the output layer becomes ``tone * (chroma * I + (1 - chroma) / 3 * 1 1^T) @
        (W_o, b_o)``, i.e. its three pre-activations ``a`` become ``tone * (m + chroma * (a - m))`` with ``m`` their
        mean. With N(0, 1) weights, (1, 1) saturates the sigmoid to flat primaries; the defaults of
        :class:`neuromv.settings.RenderSettings` (``TONE``, ``CHROMA``) keep the gamut. Other than (1, 1), the
        lightness is centred too: the output bias moves so that the median over the reference view (a
        :data:`LIGHTNESS_GRID` square grid at scale 1, z = 0) of the three channels' mean pre-activation is 0 (the
        median pixel mid-grey; a seed whose biases push every pixel to white no longer clips). Folded into the
        weights, so every render path (and the page) gets them at no cost. Image mode takes only (1, 1).

    Notes
    -----
    Abstract: ``layers[0]`` maps ``N_COORDS + n_z`` inputs, ordered ``(x, y, r, z_0, ..., z_{n_z-1})``, to
    ``hidden``. Image: ``layers[0]`` maps the ``N_COORDS`` coordinates, and the buffer ``pulse``
    [shape=(n_z, 3, hidden)] holds the frozen projections ``R``, N(0, 1 / hidden). In both, ``layers[1:n_hidden]``
    map ``hidden`` to ``hidden`` and ``layers[-1]`` maps ``hidden`` to 3 colours.
    """

    def __init__(self, n_z: int = 32, hidden: int = 32, n_hidden: int = 5, *, seed: int = 0,
                 image: bool = False, tone: float = 1.0, chroma: float = 1.0) -> None:
        super().__init__()
        for name, value, lo in (("n_z", n_z, 0), ("hidden", hidden, 1), ("n_hidden", n_hidden, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ParameterError(f"{name} must be an integer >= {lo}, not {value!r}")
        if hidden > 1024:
            raise ParameterError(f"hidden must be at most 1024, not {hidden}")
        self.n_z, self.hidden, self.n_hidden, self.seed = n_z, hidden, n_hidden, seed
        self.image = bool(image)
        sizes = [N_COORDS + (0 if self.image else n_z)] + [hidden] * n_hidden + [3]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen))
        if self.image:
            self.register_buffer("pulse", torch.randn(n_z, 3, hidden, generator=gen) / hidden ** 0.5)
        for name, value in (("tone", tone), ("chroma", chroma)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                    or value < 0:
                raise ParameterError(f"{name} must be a finite number >= 0, not {value!r}")
        self.tone, self.chroma = float(tone), float(chroma)
        if (self.tone, self.chroma) != (1.0, 1.0):
            if self.image:
                raise ParameterError("tone and chroma colour the abstract CPPN; an image-mode CPPN takes 1 and 1")
            mix = self.tone * (self.chroma * torch.eye(3, dtype=torch.float64)
                               + (1.0 - self.chroma) / 3.0 * torch.ones(3, 3, dtype=torch.float64))
            out = self.layers[-1]
            with torch.no_grad():
                out.weight.copy_((mix @ out.weight.to(torch.float64)).to(out.weight.dtype))
                out.bias.copy_((mix @ out.bias.to(torch.float64)).to(out.bias.dtype))
                # the lightness centred: the median of the channels' mean pre-activation over the reference view
                # (z = 0) becomes 0, so the median pixel is mid-grey whatever the seed's biases
                grid = coordinate_grid(LIGHTNESS_GRID, LIGHTNESS_GRID)
                h = torch.cat([grid.to(out.weight.dtype), torch.zeros(grid.shape[0], n_z, dtype=out.weight.dtype)], 1)
                for layer in self.layers[:-1]:
                    h = torch.tanh(layer(h))
                common = out(h).to(torch.float64).mean(dim=1)
                out.bias.sub_(float(common.median()))

    def features(self, coords: torch.Tensor) -> torch.Tensor:
        """Image mode: the last hidden layer ``h`` [shape=(n_pixels, hidden)] of the coordinates alone."""
        h = coords
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return h

    def pulse_matrix(self, z: torch.Tensor) -> torch.Tensor:
        """Image mode: ``sum_j z_j R_j`` [shape=(3, hidden)], the frame's colour offset per unit of ``h``."""
        return torch.einsum("j,jch->ch", z.to(self.pulse.dtype), self.pulse)

    def forward(self, coords: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Plain forward pass: z concatenated to every pixel's coordinates.

        Parameters
        ----------
        coords : torch.Tensor [shape=(n_pixels, 3)]
            ``(x, y, r)`` per pixel, from :func:`coordinate_grid`.
        z : torch.Tensor [shape=(n_z,) or (n_pixels, n_z)]
            Latent vector (already scaled by the reactivity).

        Returns
        -------
        torch.Tensor [shape=(n_pixels, 3)]
            RGB in (0, 1).
        """
        if self.image:
            if z.dim() != 1:
                raise ValueError("image mode takes one z per frame, shape (n_z,)")
            h = self.features(coords)
            p = torch.sigmoid(self.layers[-1](h))
            d = h @ self.pulse_matrix(z).T
            return (p + headroom(p) * torch.sin(d)).clamp(0.0, 1.0)
        if z.dim() == 1:
            z = z.expand(coords.shape[0], -1)
        h = torch.cat([coords, z.to(coords.dtype)], dim=1)
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return torch.sigmoid(self.layers[-1](h))


def coordinate_grid(width: int, height: int, *, scale: float = 1.0, pan: tuple[float, float] = (0.0, 0.0),
                    dtype=torch.float32) -> torch.Tensor:
    """Pixel-centre coordinates ``(x, y, r)`` of a ``width x height`` image, centred and aspect-correct.

    The shorter side spans [-scale, scale] and the longer side proportionally more, so a picture keeps its shape
    at any resolution and aspect ratio; ``pan`` then moves the view over the pattern, in the CPPN's own
    coordinates: ``x = (col + 0.5 - width / 2) / half * scale + pan[0]`` with ``half = min(width, height) / 2``,
    and ``y`` likewise from the row and ``pan[1]``. ``r = sqrt(x^2 + y^2)`` of the panned ``x, y`` (so panning
    moves the view off the pattern's centre). Computed in float64. Row-major order: pixel ``(row, col)`` is at
    index ``row * width + col``; y grows downwards.

    Parameters
    ----------
    width, height : int
        Size in pixels.
    scale : float
        Half the shorter side's span (zoom out for larger values).
    pan : (float, float)
        ``(x, y)`` added to every pixel's coordinates; ``(0, 0)``: the view centred on the pattern.
    dtype : torch.dtype
        Of the result.

    Returns
    -------
    torch.Tensor [shape=(height * width, 3)]

    Raises
    ------
    ParameterError
        Size below 1x1, or ``pan`` not two finite numbers.
    """
    return grid_of_axes(*coordinate_axes(width, height, scale=scale, pan=pan)).to(dtype)


def grid_of_axes(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """The row-major ``(x, y, r)`` grid of the columns' ``xs`` [shape=(width,)] and the rows' ``ys``
    [shape=(height,)] (:func:`coordinate_axes`), ``r = sqrt(x * x + y * y)``: torch.Tensor
    [shape=(height * width, 3)], of their dtype."""
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    rr = torch.sqrt(xx * xx + yy * yy)
    return torch.stack([xx.reshape(-1), yy.reshape(-1), rr.reshape(-1)], dim=1)


def coordinate_axes(width: int, height: int, *, scale: float = 1.0,
                    pan: tuple[float, float] = (0.0, 0.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """The columns' ``x`` and the rows' ``y`` of :func:`coordinate_grid` (same arguments): pixel ``(row, col)`` is
    at ``(xs[col], ys[row])`` and ``r = sqrt(xs[col]**2 + ys[row]**2)``, in float64, bit for bit the grid's.

    Returns
    -------
    xs : torch.Tensor [shape=(width,), dtype=float64]
    ys : torch.Tensor [shape=(height,), dtype=float64]

    Raises
    ------
    ParameterError
        Size below 1x1, or ``pan`` not two finite numbers.
    """
    if width < 1 or height < 1:
        raise ParameterError(f"size must be at least 1x1, not {width}x{height}")
    pan_x, pan_y = check_pan(pan)
    half = min(width, height) / 2.0
    xs = (torch.arange(width, dtype=torch.float64) + 0.5 - width / 2.0) / half * scale
    ys = (torch.arange(height, dtype=torch.float64) + 0.5 - height / 2.0) / half * scale
    if pan_x:  # (0, 0) leaves the grid bit for bit as it was without a pan
        xs = xs + pan_x
    if pan_y:
        ys = ys + pan_y
    return xs, ys


def check_pan(pan) -> tuple[float, float]:
    """``pan`` (any sequence of two finite real numbers) -> ``(x, y)`` as floats.

    Raises
    ------
    ParameterError
        Not two finite numbers.
    """
    bad = ParameterError(f"pan must be two finite numbers (x, y), not {pan!r}")
    if isinstance(pan, (str, bytes)):
        raise bad
    try:
        values = list(pan)
    except TypeError:
        raise bad from None
    if len(values) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        raise bad
    x, y = float(values[0]), float(values[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise bad
    return x, y
