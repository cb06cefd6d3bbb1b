"""What every render path starts from (:class:`RenderSetup`): one CPPN at one resolution, its layers in float64,
the pixels' coordinates and image mode's pulse and centring (:func:`pulse_mean`).

The first layer splits: ``W1 @ [x, y, r, z] = W1_xyr @ [x, y, r] + W1_z @ z``. The coordinate part is the same
for every frame (:meth:`RenderSetup.first_layer`, computed once per resolution); z enters as a per-frame bias of
``hidden`` numbers. Image-mode CPPNs take no z in the first layer (``W1_z`` is zero); their per-frame pulse matrix
``sum_j z_j R_j`` (3 x hidden) rides along with the output layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from ..cppn import CPPN, N_COORDS, coordinate_axes, grid_of_axes
from .color import PaletteMap

__all__ = ["CENTRE_FRAMES", "RenderSetup", "pulse_mean"]

#: Frames (evenly spaced) over which the mean pulse of each pixel is estimated.
CENTRE_FRAMES = 256


@torch.no_grad()
def pulse_mean(cppn: CPPN, coords: torch.Tensor, zs: np.ndarray, chunk: int = 8192) -> torch.Tensor:
    """Image mode's centring: the mean over frames of each pixel's pulse ``sin(d)``, per channel.

    Parameters
    ----------
    cppn : CPPN
        An image-mode CPPN.
    coords : torch.Tensor [shape=(n_pixels, 3), dtype=float32]
        The pixels' coordinates (:func:`~neuromv.cppn.coordinate_grid`).
    zs : np.ndarray [shape=(n_frames, n_z), dtype=float32]
        The frames' z (already scaled); at most :data:`CENTRE_FRAMES` of them, evenly spaced, are used.
    chunk : int
        Pixels per step (bounds the work space).

    Returns
    -------
    torch.Tensor [shape=(n_pixels, 3), dtype=float32]
        In [-1, 1]; the renderer subtracts it from every frame's pulse.
    """
    zs = zs.reshape(len(zs), -1)
    if len(zs) > CENTRE_FRAMES:
        zs = zs[np.linspace(0, len(zs) - 1, CENTRE_FRAMES).round().astype(int)]
    m = torch.einsum("kj,jch->kch", torch.from_numpy(zs), cppn.pulse.to(torch.float32)).reshape(-1, cppn.hidden)
    out = torch.empty(coords.shape[0], 3)
    for s in range(0, coords.shape[0], chunk):
        h = cppn.features(coords[s:s + chunk])
        out[s:s + chunk] = torch.sin(h @ m.T).reshape(-1, len(zs), 3).mean(dim=1)
    return out


@dataclass(frozen=True)
class RenderSetup:
    """One CPPN at one resolution, as every backend takes it (a copy: later changes to the CPPN are not seen).

    Attributes
    ----------
    width, height : int
        Frame size in pixels.
    n_z : int
    image : bool
        Image mode (no z in the first layer; a per-frame pulse on the output).
    layers : list of (torch.Tensor, torch.Tensor)
        Every layer's weight [shape=(out, in)] and bias [shape=(out,)], float64.
    w0_xyr : torch.Tensor [shape=(hidden, 3), dtype=float64]
        The first layer's coordinate columns.
    b0 : torch.Tensor [shape=(hidden,), dtype=float64]
    w0_z : torch.Tensor [shape=(hidden, n_z), dtype=float64]
        The first layer's z columns (zeros in image mode).
    xs, ys : torch.Tensor [shape=(width,) and (height,), dtype=float64]
        The columns' x and the rows' y (:func:`~neuromv.cppn.coordinate_axes`: panned and scaled).
    pulse : torch.Tensor [shape=(n_z, 3 * hidden), dtype=float32] or None
        Image mode: the frozen pulse projections ``R_j``, flattened so that ``z @ pulse`` is ``sum_j z_j R_j``.
    offset : torch.Tensor [shape=(n_pixels, 3), dtype=float32] or None
        Image mode with centring: :func:`pulse_mean`, subtracted from every frame's pulse.
    color : np.ndarray [shape=(3, 4), dtype=float64] or None
        The final colour map (:func:`~neuromv.renderer.color.color_matrix`), already checked.
    palette : PaletteMap or None
        The palette, applied after the colour map and its clamp (:class:`~neuromv.renderer.color.PaletteMap`).
    """

    width: int
    height: int
    n_z: int
    image: bool
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    w0_xyr: torch.Tensor
    b0: torch.Tensor
    w0_z: torch.Tensor
    xs: torch.Tensor
    ys: torch.Tensor
    pulse: torch.Tensor | None
    offset: torch.Tensor | None
    color: np.ndarray | None
    palette: PaletteMap | None = None

    @classmethod
    def of(cls, cppn: CPPN, width: int, height: int, *, scale: float, pan: tuple[float, float],
           centre: np.ndarray | None, color: np.ndarray | None, palette: PaletteMap | None = None) -> RenderSetup:
        """The setup of ``cppn`` at ``width x height`` (size, ``pan`` and ``color`` already checked; ``centre``:
        the frames' z [shape=(n_frames, n_z)] for image mode's centring, or None; ``palette``: the palette or
        None)."""
        layers = [(l.weight.detach().to(torch.float64), l.bias.detach().to(torch.float64)) for l in cppn.layers]
        w0, b0 = layers[0]
        w0_z = torch.zeros(w0.shape[0], cppn.n_z, dtype=w0.dtype) if cppn.image else w0[:, N_COORDS:]
        pulse = cppn.pulse.detach().reshape(cppn.n_z, -1).to(torch.float32) if cppn.image else None
        xs, ys = coordinate_axes(width, height, scale=scale, pan=pan)
        grid = offset = None
        if cppn.image and centre is not None:
            grid = grid_of_axes(xs, ys)
            offset = pulse_mean(cppn, grid.to(torch.float32), np.asarray(centre, dtype=np.float32))
        setup = cls(width=width, height=height, n_z=cppn.n_z, image=cppn.image, layers=layers,
                    w0_xyr=w0[:, :N_COORDS], b0=b0, w0_z=w0_z, xs=xs, ys=ys, pulse=pulse, offset=offset, color=color,
                    palette=palette)
        if grid is not None:
            setup.__dict__["coords"] = grid  # what the cached property would make
        return setup

    @property
    def n_pixels(self) -> int:
        """Pixels per frame."""
        return self.width * self.height

    @cached_property
    def coords(self) -> torch.Tensor:
        """The pixels' ``(x, y, r)``, row-major: torch.Tensor [shape=(n_pixels, 3), dtype=float64]
        (:func:`~neuromv.cppn.coordinate_grid`'s values, made on first use: the compiled kernel builds its own
        table from :attr:`xs` and :attr:`ys` and never needs them)."""
        return grid_of_axes(self.xs, self.ys)

    def first_layer(self) -> torch.Tensor:
        """The coordinate part of the first layer's pre-activation, ``coords @ W1_xyr^T + b0``: torch.Tensor
        [shape=(n_pixels, hidden), dtype=float64]."""
        return self.coords @ self.w0_xyr.T + self.b0
