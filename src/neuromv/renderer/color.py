"""The final colour map of every render path: :func:`color_matrix` builds it, :func:`check_color` checks one given
by hand, :func:`apply_color` applies it to float colours (the backends apply it in their own arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ParameterError

__all__ = ["LUMA", "color_matrix", "color_matrices", "check_color", "apply_color", "PaletteMap"]

#: Rec. 709 luma weights of (R, G, B): what saturation keeps.
LUMA = (0.2126, 0.7152, 0.0722)


def color_matrix(hue: float = 0.0, saturation: float = 1.0, brightness: float = 0.0,
                 contrast: float = 1.0) -> np.ndarray | None:
    """The affine colour map of the given adjustments, for ``Renderer(..., color=...)``.

    An RGB colour ``c`` in [0, 1] becomes ``clamp(A[:, :3] @ c + A[:, 3], 0, 1)`` with ``A[:, :3] = contrast * S @
    Hrot`` and ``A[:, 3] = 0.5 * (1 - contrast) + brightness`` on all three channels, where

    - ``Hrot = cos(t) I + sin(t) K + (1 - cos(t)) k k^T`` is the rotation by ``t = radians(hue)`` about the grey
      axis ``k = (1, 1, 1) / sqrt(3)``, ``K = [[0, -k3, k2], [k3, 0, -k1], [-k2, k1, 0]]`` (hue 120 turns red to
      green, green to blue, and keeps greys);
    - ``S = saturation * I + (1 - saturation) * 1 w^T`` mixes each colour with its Rec. 709 luma
      ``w = (0.2126, 0.7152, 0.0722)`` (saturation 0: the grey of the same luma);
    - contrast scales around mid-grey 0.5, and brightness is added.

    The live preview's page computes the same matrix in JavaScript.

    Parameters
    ----------
    hue : float
        Rotation in degrees.
    saturation : float
        1: unchanged, 0: grey.
    brightness : float
        Added to every channel; 0: unchanged.
    contrast : float
        1: unchanged, 0: everything mid-grey.

    Returns
    -------
    np.ndarray [shape=(3, 4), dtype=float64] or None
        ``A``; None for the identity (hue 0, saturation 1, brightness 0, contrast 1): no colour work at all.

    Raises
    ------
    ParameterError
        A parameter that is not a finite number.
    """
    values = {"hue": hue, "saturation": saturation, "brightness": brightness, "contrast": contrast}
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
            raise ParameterError(f"{name} must be a finite number, not {v!r}")
    if hue == 0 and saturation == 1 and brightness == 0 and contrast == 1:
        return None
    t = np.radians(float(hue))
    k = np.full(3, 1.0 / np.sqrt(3.0))
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    rotation = np.cos(t) * np.eye(3) + np.sin(t) * cross + (1.0 - np.cos(t)) * np.outer(k, k)
    s = float(saturation)
    sat = s * np.eye(3) + (1.0 - s) * np.ones((3, 1)) @ np.asarray([LUMA])
    out = np.empty((3, 4))
    out[:, :3] = float(contrast) * sat @ rotation
    out[:, 3] = 0.5 * (1.0 - float(contrast)) + float(brightness)
    return out


def check_color(color) -> np.ndarray | None:
    """``color`` (None or an array [shape=(3, 4)] of finite numbers) -> None or a float64 copy.

    Raises
    ------
    ParameterError
        Not None, not of that shape, or not finite.
    """
    if color is None:
        return None
    try:
        a = np.array(color, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ParameterError(f"color must be None or a (3, 4) array of numbers: {e}") from None
    if a.shape != (3, 4):
        raise ParameterError(f"color must be None or a (3, 4) array (see color_matrix), not shape {a.shape}")
    if not np.isfinite(a).all():
        raise ParameterError("color must hold finite numbers")
    return a


def apply_color(rgb: np.ndarray, color: np.ndarray | None) -> np.ndarray:
    """RGB [shape=(..., 3)] in [0, 1] -> ``clamp(color[:, :3] @ c + color[:, 3], 0, 1)`` per colour, computed in
    float64 and returned in ``rgb``'s dtype (``rgb`` itself where ``color`` is None)."""
    if color is None:
        return rgb
    return np.clip(rgb.astype(np.float64) @ color[:, :3].T + color[:, 3], 0.0, 1.0).astype(rgb.dtype)


def color_matrices(hue: np.ndarray, saturation: np.ndarray, brightness: np.ndarray,
                   contrast: float | np.ndarray = 1.0) -> np.ndarray:
    """:func:`color_matrix` of many frames at once (the identity where a frame has no adjustment).

    Parameters
    ----------
    hue, saturation, brightness : np.ndarray [shape=(n,)]
        Degrees, factor, offset per frame (finite).
    contrast : float or np.ndarray [shape=(n,)]

    Returns
    -------
    np.ndarray [shape=(n, 3, 4), dtype=float64]
        Frame i's matrix equals ``color_matrix(hue[i], saturation[i], brightness[i], contrast[i])`` (or the
        identity ``[I | 0]`` where that is None).
    """
    hue, saturation, brightness = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (hue, saturation, brightness))
    contrast = np.broadcast_to(np.asarray(contrast, dtype=np.float64), hue.shape)
    if not all(np.isfinite(a).all() for a in (hue, saturation, brightness, contrast)):
        raise ParameterError("colour adjustments must be finite numbers")
    t = np.radians(hue)[:, None, None]
    k = np.full(3, 1.0 / np.sqrt(3.0))
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    rotation = np.cos(t) * np.eye(3) + np.sin(t) * cross + (1.0 - np.cos(t)) * np.outer(k, k)
    s = saturation[:, None, None]
    sat = s * np.eye(3) + (1.0 - s) * (np.ones((3, 1)) @ np.asarray([LUMA]))
    out = np.empty((len(hue), 3, 4))
    out[:, :, :3] = contrast[:, None, None] * sat @ rotation
    out[:, :, 3] = (0.5 * (1.0 - contrast) + brightness)[:, None]
    return out


@dataclass(frozen=True)
class PaletteMap:
    """A palette (:mod:`neuromv.palette`) as the render paths apply it, after the colour map and its clamp: a
    colour ``c`` in [0, 1] becomes ``table[round(clamp(row[:3] . c + row[3], 0, n - 1))]``.

    Attributes
    ----------
    table : np.ndarray [shape=(n, 3), dtype=float32]
        The palette's colours in [0, 1].
    row : np.ndarray [shape=(4,), dtype=float64]
        :func:`neuromv.palette.palette_row` of the picture's levels.
    """

    table: np.ndarray
    row: np.ndarray

    def kernel_data(self) -> np.ndarray:
        """The compiled kernels' form: float32 [shape=(4 + 3 n,)]: the row for colours in 0-255 (``row[:3] / 255``,
        ``row[3]``), then the table's R, G and B planes in 0-255."""
        row = np.concatenate([self.row[:3] / 255.0, self.row[3:]])
        return np.ascontiguousarray(np.concatenate([row, 255.0 * self.table.T.reshape(-1)]), dtype=np.float32)

    def to_torch(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(table [shape=(n, 3)], row [shape=(4,)]) as float32 tensors on ``device``."""
        return (torch.from_numpy(np.ascontiguousarray(self.table, dtype=np.float32)).to(device),
                torch.from_numpy(self.row.astype(np.float32)).to(device))

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """The reference: RGB [shape=(..., 3)] in [0, 1] -> the palette's colours in [0, 1], float64."""
        n = len(self.table)
        pos = np.clip(np.asarray(rgb, dtype=np.float64) @ self.row[:3] + self.row[3], 0, n - 1)
        return self.table[np.floor(pos + 0.5).astype(np.intp)].astype(np.float64)


def palette_torch(rgb: torch.Tensor, palette: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """:meth:`PaletteMap.apply` in torch: ``rgb`` [shape=(..., 3)] in [0, 1] and :meth:`PaletteMap.to_torch`'s
    pair -> the palette's colours [shape=(..., 3)] in [0, 1]."""
    table, row = palette
    pos = (rgb @ row[:3] + row[3]).clamp_(0.0, float(len(table) - 1))
    return table[torch.floor(pos + 0.5).long()]
