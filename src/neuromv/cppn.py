"""The CPPN: a compositional pattern producing network from pixel coordinates and z to colour.

``(x, y, r, z) -> 5 hidden layers of tanh -> sigmoid (r, g, b)``, weights and biases drawn from N(0, 1).
This module holds the network and the plain, obviously correct forward pass; :mod:`neuromv.renderer` holds the
fast renderer, which must agree with it.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ParameterError

__all__ = ["CPPN", "coordinate_grid", "N_COORDS"]

#: Coordinate inputs per pixel: x, y and r (distance from the centre).
N_COORDS = 3


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

    Notes
    -----
    ``layers[0]`` maps ``N_COORDS + n_z`` inputs, ordered ``(x, y, r, z_0, ..., z_{n_z-1})``, to ``hidden``;
    ``layers[1:n_hidden]`` map ``hidden`` to ``hidden``; ``layers[-1]`` maps ``hidden`` to 3 colours.
    """

    def __init__(self, n_z: int = 32, hidden: int = 32, n_hidden: int = 5, *, seed: int = 0) -> None:
        super().__init__()
        for name, value, lo in (("n_z", n_z, 0), ("hidden", hidden, 1), ("n_hidden", n_hidden, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ParameterError(f"{name} must be an integer >= {lo}, not {value!r}")
        if hidden > 1024:
            raise ParameterError(f"hidden must be at most 1024, not {hidden}")
        self.n_z, self.hidden, self.n_hidden, self.seed = n_z, hidden, n_hidden, seed
        sizes = [N_COORDS + n_z] + [hidden] * n_hidden + [3]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen))

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
        if z.dim() == 1:
            z = z.expand(coords.shape[0], -1)
        h = torch.cat([coords, z.to(coords.dtype)], dim=1)
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return torch.sigmoid(self.layers[-1](h))


def coordinate_grid(width: int, height: int, *, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    """Pixel-centre coordinates ``(x, y, r)`` of a ``width x height`` image, centred and aspect-correct.

    The shorter side spans [-scale, scale] and the longer side proportionally more, so a picture keeps its shape
    at any resolution and aspect ratio; ``r = sqrt(x^2 + y^2)``. Row-major order: pixel ``(row, col)`` is at index
    ``row * width + col``; y grows downwards.

    Returns
    -------
    torch.Tensor [shape=(height * width, 3)]
    """
    if width < 1 or height < 1:
        raise ParameterError(f"size must be at least 1x1, not {width}x{height}")
    half = min(width, height) / 2.0
    xs = (torch.arange(width, dtype=torch.float64) + 0.5 - width / 2.0) / half * scale
    ys = (torch.arange(height, dtype=torch.float64) + 0.5 - height / 2.0) / half * scale
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    rr = torch.sqrt(xx * xx + yy * yy)
    return torch.stack([xx.reshape(-1), yy.reshape(-1), rr.reshape(-1)], dim=1).to(dtype)
