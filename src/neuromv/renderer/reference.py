"""The plain forward pass over a whole frame: :func:`reference_render`, the standard every path is tested against."""

from __future__ import annotations

import numpy as np
import torch

from ..cppn import CPPN, coordinate_grid
from .color import PaletteMap, apply_color, check_color

__all__ = ["reference_render"]


@torch.no_grad()
def reference_render(cppn: CPPN, width: int, height: int, z: np.ndarray | torch.Tensor, *,
                     scale: float = 1.0, pan: tuple[float, float] = (0.0, 0.0),
                     color: np.ndarray | None = None, palette: PaletteMap | None = None) -> np.ndarray:
    """The plain forward pass over a whole frame (slow; the standard the fast renderer is tested against).

    Parameters
    ----------
    cppn : CPPN
    width, height : int
    z : array [shape=(n_z,)]
    scale, pan
        As :func:`~neuromv.cppn.coordinate_grid` takes them.
    color : np.ndarray [shape=(3, 4)], optional
        Affine colour map (:func:`~neuromv.renderer.color.color_matrix`) applied to each pixel's colour, then
        clamped to [0, 1].
    palette : PaletteMap, optional
        Applied last (:meth:`~neuromv.renderer.color.PaletteMap.apply`).

    Returns
    -------
    np.ndarray [shape=(height, width, 3), dtype=float32]
        RGB in [0, 1].
    """
    color = check_color(color)
    coords = coordinate_grid(width, height, scale=scale, pan=pan)
    rgb = cppn(coords, torch.as_tensor(np.asarray(z, dtype=np.float32)))
    out = apply_color(rgb.reshape(height, width, 3).numpy(), color)
    return out if palette is None else palette.apply(out).astype(np.float32)
