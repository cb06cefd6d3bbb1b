"""The torch CPU algorithm (``method='tiled'``): where the compiled kernel does not apply (image mode, other
widths) or is not installed.

1. **No tanh.** ``torch.tanh`` is slow on CPU; ``tanh(a) = 2 * sigmoid(2a) - 1`` exactly, and the scale and
   offset fold into the next layer's weights and bias, so each layer is one ``addmm`` and one in-place
   ``sigmoid``.
2. **Tiles.** Pixels go through all layers in tiles that stay in cache, with buffers reused between tiles, on
   one worker thread per core (each running torch single-threaded).

A frame's zoom ``s`` scales the coordinate part of layer 0 (stored with its bias ``b0`` folded in, ``a0 = W0 xyr +
b0``): its pre-activation is ``s a0 + (1 - s) b0 + W_z z``, one ``add`` with ``alpha=s`` per tile as without a zoom.
A frame's colour map replaces the renderer's in that frame's final ``addmm``.

Image mode's per-frame pulse matrix ``sum_j z_j R_j`` (3 x hidden) rides along with the output layer: one
``addmm`` gives the 3 colour logits and the 3 pulse offsets together, and a few element-wise operations on 3
channels finish the pixel.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..cppn import FLOOR
from .backend import Backend
from .setup import RenderSetup
from .threads import in_parallel, torch_threads

__all__ = ["TiledBackend", "DEFAULT_TILE"]

#: Pixels per tile on CPU: a tile's activations (tile x hidden float32) stay in L2 cache.
DEFAULT_TILE = 8192


class TiledBackend(Backend):
    """The torch CPU tiles (see the module's text); any CPPN, float32.

    Parameters
    ----------
    setup : RenderSetup
    threads : int
        Worker threads, each taking a contiguous range of whole tiles.
    tile : int
        Pixels per tile (at least 64).
    """

    method = "tiled"

    def __init__(self, setup: RenderSetup, *, threads: int, tile: int) -> None:
        super().__init__(setup)
        self.threads, self.tile, self.image, self.color = threads, tile, setup.image, setup.color
        self.n_pixels = setup.n_pixels
        self._pulse, self._offset = setup.pulse, setup.offset
        first, w0_z, layers = setup.first_layer(), setup.w0_z, setup.layers
        # s_k = sigmoid(2 a_k) and h_k = tanh(a_k) = 2 s_k - 1. With a_{k+1} = W h_k + b = 2W s_k + (b - W 1):
        #   s_{k+1} = sigmoid(4W s_k + 2(b - W 1)); the output is sigmoid(2Wo s + (bo - Wo 1)).
        f32 = dict(dtype=torch.float32)
        self._a0 = (2.0 * first).to(**f32).contiguous()
        self._b0 = (2.0 * setup.b0).to(**f32)  # a zoomed frame's bias: (1 - s) _b0 + _zw @ z
        self._zw = (2.0 * w0_z).to(**f32)  # per-frame bias = _zw @ z
        self._hidden = []  # the hidden layers in the sigmoid form: (4 W^T, 2 (b - W 1))
        for w, b in layers[1:-1]:
            self._hidden.append(((4.0 * w).T.contiguous().to(**f32), (2.0 * (b - w.sum(1))).to(**f32)))
        wo, bo = layers[-1]
        self._out = ((2.0 * wo).T.contiguous().to(**f32), (bo - wo.sum(1)).to(**f32))
        hidden = self._a0.shape[1]
        n_out = 6 if self.image else 3  # image mode: 3 logits + 3 pulse offsets
        self._buffers = [
            (torch.empty(self.tile, hidden), torch.empty(self.tile, hidden), torch.empty(self.tile, n_out),
             torch.empty(self.tile, 3), torch.empty(self.tile, 3))
            for _ in range(self.threads)
        ]
        # the colour map in the tiles' final scale: 255 (M c + o) + 0.5, so one addmm does it and the rounding
        self._color_t = None if self.color is None else _tile_colour(self.color)
        # the palette in the same scale: position = (c255 + 0.5) . row' + off', colour = 255 table + 0.5
        self._palette_t = None
        if setup.palette is not None:
            row = torch.from_numpy(setup.palette.row)
            w = row[:3] / 255.0
            table = 255.0 * torch.from_numpy(setup.palette.table).to(torch.float64) + 0.5
            self._palette_t = (table.to(torch.float32),
                               w.to(torch.float32), float(row[3] - 0.5 * w.sum()), len(setup.palette.table) - 1)

    def _frame_out(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output layer of this frame in the sigmoid form: (weights [hidden, 3 or 6], bias [3 or 6])."""
        wo, co = self._out
        if not self.image:
            return wo, co
        m = (z @ self._pulse).reshape(3, -1)  # sum_j z_j R_j; with h = 2 s - 1: m h = 2 m s - m 1
        return torch.cat([wo, 2.0 * m.T], dim=1).contiguous(), torch.cat([co, -m.sum(1)])

    @torch.no_grad()
    def render(self, z: np.ndarray, zoom: float = 1.0, color: np.ndarray | None = None) -> np.ndarray:
        z = torch.as_tensor(z)
        bias = self._zw @ z
        if zoom != 1.0:
            bias = bias + (1.0 - zoom) * self._b0
        colour = self._color_t if color is None else _tile_colour(color)
        out = self._frame_out(z)
        frame = torch.empty(self.n_pixels, 3, dtype=torch.uint8)
        n = self.threads
        # contiguous ranges of whole tiles, one per worker
        n_tiles = -(-self.n_pixels // self.tile)
        bounds = [min(self.n_pixels, (n_tiles * i // n) * self.tile) for i in range(n + 1)]
        if n == 1 or n_tiles == 1:
            with torch_threads(1) if n > 1 else contextlib.nullcontext():
                self._tiles(bias, zoom, out, colour, frame, 0, self.n_pixels, self._buffers[0])
            return frame.numpy().reshape(self.height, self.width, 3)
        with torch_threads(1):  # in_parallel joins even on Ctrl-C: these settings must not change under an op
            in_parallel(lambda i: self._tiles(bias, zoom, out, colour, frame, bounds[i], bounds[i + 1],
                                              self._buffers[i]), n)
        return frame.numpy().reshape(self.height, self.width, 3)

    def _tiles(self, bias: torch.Tensor, zoom: float, out, colour, frame: torch.Tensor, lo: int, hi: int,
               buffers) -> None:
        """Pixels lo ... hi - 1 of the frame [shape=(n_pixels, 3), uint8], tile by tile in ``buffers``; ``zoom``
        scales ``a0`` (``bias`` holds its ``(1 - zoom) b0``), ``colour`` is the frame's map in the tiles' form or
        None."""
        b1, b2, bo, bp, bc = buffers
        wo, co = out
        a0, mats, tile, image = self._a0, self._hidden, self.tile, self.image
        for s in range(lo, hi, tile):
            e = min(s + tile, hi)
            n = e - s
            x, y, o = b1[:n], b2[:n], bo[:n]
            if zoom == 1.0:
                torch.add(a0[s:e], bias, out=x)
            else:
                torch.add(bias, a0[s:e], alpha=zoom, out=x)
            torch.sigmoid_(x)
            for w, c in mats:
                torch.addmm(c, x, w, out=y)
                torch.sigmoid_(y)
                x, y = y, x
            torch.addmm(co, x, wo, out=o)
            if image:
                p, d = o[:, :3], o[:, 3:]
                torch.sigmoid_(p)
                m = bp[:n]  # headroom: max(FLOOR, 0.5 - |p - 0.5|)
                torch.sub(p, 0.5, out=m).abs_().neg_().add_(0.5).clamp_(min=FLOOR)
                torch.sin_(d)
                if self._offset is not None:
                    d.sub_(self._offset[s:e])
                rgb = m.mul_(d).add_(p).clamp_(0.0, 1.0)
            else:
                rgb = torch.sigmoid_(o)
            if colour is not None:  # 255 (M c + o) + 0.5, kept in [0.5, 255.5]
                rgb = torch.addmm(colour[1], rgb, colour[0], out=bc[:n]).clamp_(0.5, 255.5)
            else:
                rgb.mul_(255.0).add_(0.5)
            if self._palette_t is not None:  # position from the rounded-scale colour, then the table's colour
                table, w, off, top = self._palette_t
                pos = (rgb @ w).add_(off + 0.5).clamp_(0.0, top + 0.5)
                rgb = table[pos.long()]  # floor(pos + 0.5) of the position, as every path rounds it
            frame[s:e].copy_(rgb)  # float -> uint8 truncates: round to nearest; values are in [0.5, 255.5]


def _tile_colour(color: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A colour map [shape=(3, 4)] in the tiles' final scale, ``255 (M c + o) + 0.5``: (``255 M^T`` [3, 3], ``255 o
    + 0.5`` [3]), float32, so one ``addmm`` does the map and the rounding."""
    a = torch.from_numpy(np.asarray(color, dtype=np.float64))
    return (255.0 * a[:, :3]).T.contiguous().to(torch.float32), (255.0 * a[:, 3] + 0.5).to(torch.float32)
