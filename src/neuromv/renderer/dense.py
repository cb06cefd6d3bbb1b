"""Dense batches (``method='dense'``, the GPU path, also selectable on CPU): batches of frames go through the
network together in large chunks, with tanh, and :meth:`DenseBackend.frames` double-buffers them, overlapping
the copies to the host with the caller's encoding (docs/performance.md). It can write I420 on the device
(:func:`rgb_to_i420`).

On CUDA the frames are rendered ``batch`` at a time: batch k + 1 is queued on the GPU before the frames of batch k
are yielded, and each batch is copied to pinned host memory on a side stream, so the copies overlap the rendering
and the caller's own work. At most about three batches are alive at once, however many frames there are. On CPU
the same batching runs without streams and pinned memory.

Per-frame controls ride along in the batch: frame b's zoom ``s_b`` scales the coordinate part of layer 0 (stored
with its bias folded in, ``a0 = W0 xyr + b0``), so its pre-activation is ``s_b a0 + (1 - s_b) b0 + W_z z_b``, one
``addcmul`` per chunk in place of the ``add``; frame b's colour map ``A_b`` is one batched product (``baddbmm``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import numpy as np
import torch

from ..cppn import headroom
from ..errors import ParameterError
from .backend import Backend
from .color import palette_torch
from .fused import hidden_stack, supports as fused_supports
from .setup import RenderSetup

__all__ = ["DenseBackend", "rgb_to_i420", "DENSE_CHUNK"]

logger = logging.getLogger(__name__)

#: Pixel-frames per chunk: the activations alive at once are 2 x this x hidden float32.
DENSE_CHUNK = 1 << 22


def _to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> uint8, rounding to nearest."""
    return (rgb * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)


class DenseBackend(Backend):
    """Dense batches (see the module's text); any CPPN, float32 with full-precision matrix products.

    Parameters
    ----------
    setup : RenderSetup
    device : torch.device
        Where the work and the per-resolution tensors live.

    Attributes
    ----------
    chunk : int
        Pixel-frames per chunk (default :data:`DENSE_CHUNK`); any value >= 1 gives the same frames.
    fused : bool
        Whether the hidden layers run as one Triton kernel (:mod:`.fused`); True where
        :func:`.fused.supports` says it can. Set it False to run them as separate torch products and tanh passes.
    """

    method = "dense"
    yuv420_needs = "an even size"

    def __init__(self, setup: RenderSetup, *, device: torch.device) -> None:
        super().__init__(setup)
        self.device, self.image, self.color, self.n_pixels = device, setup.image, setup.color, setup.n_pixels
        first, w0_z, layers = setup.first_layer(), setup.w0_z, setup.layers
        dev = self.device
        self._a0 = first.to(device=dev, dtype=torch.float32).contiguous()  # (P, H)
        self._b0 = setup.b0.to(device=dev, dtype=torch.float32)  # a zoomed frame's bias: (1 - s) b0 + W_z z
        self._zw = w0_z.to(device=dev, dtype=torch.float32)  # (H, n_z): per-frame bias = _zw @ z
        # every layer after the first: (W^T, b)
        self._layers = [(w.T.contiguous().to(dev, torch.float32), b.to(dev, torch.float32)) for w, b in layers[1:]]
        self._pulse = None if setup.pulse is None else setup.pulse.to(dev)
        self._offset = None if setup.offset is None else setup.offset.to(dev)
        self._palette_t = None if setup.palette is None else setup.palette.to_torch(dev)
        self._color_t = None  # (M^T [3, 3], offset [3]) on the device
        if self.color is not None:
            a = torch.from_numpy(self.color).to(torch.float32)
            self._color_t = (a[:, :3].T.contiguous().to(dev), a[:, 3].contiguous().to(dev))
        #: Pixel-frames per chunk: the activations alive at once are 2 x this x hidden floats.
        self.chunk = DENSE_CHUNK
        hidden_layers = self._layers[:-1]
        self._stack = None  # the hidden-to-hidden layers for the fused kernel: (W^T [L, H, H], b [L, H])
        if fused_supports(dev, self._a0.shape[1], len(hidden_layers)):
            self._stack = (torch.stack([w for w, _ in hidden_layers]).contiguous(),
                           torch.stack([b for _, b in hidden_layers]).contiguous())
        self._fused = self._stack is not None
        self._fused_ran = False  # the kernel has run once here: a later failure is an error, not a fallback

    @property
    def fused(self) -> bool:
        """Whether the hidden layers run as one Triton kernel (see the class's text)."""
        return self._fused

    @fused.setter
    def fused(self, on: bool) -> None:
        if on and self._stack is None:
            raise ParameterError("the fused kernel needs a CUDA GPU (compute capability 8.0 on), Triton, a hidden "
                                 "width that is a power of two from 16 to 128, and two hidden layers at least")
        self._fused = bool(on)

    @property
    def yuv420(self) -> bool:
        """At an even size."""
        return self.width % 2 == 0 and self.height % 2 == 0

    def _controls(self, zoom: np.ndarray | float | None, color: np.ndarray | None, n: int) -> dict:
        """Per-frame controls as :meth:`batch`'s keyword arguments, on the device: ``zoom`` [shape=(n,)] (left out
        where every frame's is 1) and ``color`` [shape=(n, 3, 4)] (left out where None: the backend's own)."""
        controls = {}
        if zoom is not None:
            z = np.broadcast_to(np.asarray(zoom, dtype=np.float64), (n,))
            if (z != 1.0).any():
                controls["zoom"] = torch.from_numpy(z.astype(np.float32)).to(self.device)
        if color is not None:
            c = torch.from_numpy(np.asarray(color, dtype=np.float64).reshape(n, 3, 4)).to(torch.float32)
            controls["color"] = c.to(self.device)
        return controls

    @torch.no_grad()
    def render(self, z: np.ndarray, zoom: float = 1.0, color: np.ndarray | None = None) -> np.ndarray:
        with _exact_float32():
            frame = self.batch(torch.as_tensor(z).reshape(1, -1).to(self.device), **self._controls(zoom, color, 1))
        return frame[0].cpu().numpy().reshape(self.height, self.width, 3)

    def render_yuv420(self, z: np.ndarray, zoom: float = 1.0, color: np.ndarray | None = None) -> np.ndarray:
        with torch.no_grad(), _exact_float32():
            frame = self.batch(torch.from_numpy(z).reshape(1, -1).to(self.device), **self._controls(zoom, color, 1))
            return rgb_to_i420(frame, self.height, self.width)[0].cpu().numpy()

    def render_batch(self, zs: torch.Tensor, zoom: np.ndarray | None = None,
                     color: np.ndarray | None = None) -> np.ndarray:
        with _exact_float32():
            frames = self.batch(zs.to(self.device), **self._controls(zoom, color, len(zs)))
        return frames.cpu().numpy().reshape(len(zs), self.height, self.width, 3)

    def frames(self, zs: torch.Tensor, batch: int, yuv420: bool, zoom: np.ndarray | None = None,
               color: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Double-buffered batches (see the module's text); frames are views of their batch's host buffer."""
        n = len(zs)
        cuda = self.device.type == "cuda"
        copies = torch.cuda.Stream(device=self.device) if cuda and n else None
        zs = zs.to(self.device)  # all at once: a copy per batch would wait for the work queued before it
        controls = self._controls(zoom, color, n)

        def launch(s: int):
            """Queue the frames s ... s + batch - 1; returns (host frames, event marking their arrival or None)."""
            e = min(s + batch, n)
            with torch.no_grad(), _exact_float32(), (torch.cuda.device(self.device) if cuda
                                                     else contextlib.nullcontext()):
                out = self.batch(zs[s:e], **{k: v[s:e] for k, v in controls.items()})
                if yuv420:
                    out = rgb_to_i420(out, self.height, self.width)
                if not cuda:
                    return out, None
                host = torch.empty(out.shape, dtype=torch.uint8, pin_memory=True)
                copies.wait_stream(torch.cuda.current_stream(self.device))  # the copy waits for the batch
                with torch.cuda.stream(copies):
                    host.copy_(out, non_blocking=True)
                    done = torch.cuda.Event()
                    done.record(copies)
                out.record_stream(copies)  # not reused by the allocator before the copy has read it
                return host, done

        def deliver(pending) -> Iterator[np.ndarray]:
            host, done = pending
            if done is not None:
                done.synchronize()
            frames = host.numpy().reshape((-1, self.height * 3 // 2, self.width) if yuv420 else
                                          (-1, self.height, self.width, 3))
            del host, pending
            for i in range(len(frames)):
                yield frames[i]

        ahead = None
        for s in range(0, n, batch):
            queued = launch(s)  # batch k + 1 is on its way before batch k is handed out
            if ahead is not None:
                yield from deliver(ahead)
            ahead = queued
            del queued
        if ahead is not None:
            yield from deliver(ahead)

    def _fused_layers(self, bias: torch.Tensor, zoom: torch.Tensor | None, out: torch.Tensor, rows: slice) -> bool:
        """:func:`.fused.hidden_stack` into ``out``; False, once, with a warning, where Triton cannot build or launch
        the kernel on this GPU (then this backend runs the unfused layers from now on)."""
        try:
            hidden_stack(self._a0, bias, zoom, *self._stack, out=out, rows=rows)
        except Exception as e:  # noqa: BLE001 - Triton's build and launch errors have no common type
            if self._fused_ran:
                raise
            logger.warning("the fused GPU kernel failed (%s: %s); using the unfused layers", type(e).__name__, e)
            self._fused = False
            return False
        self._fused_ran = True
        return True

    def batch(self, zs: torch.Tensor, zoom: torch.Tensor | None = None,
              color: torch.Tensor | None = None) -> torch.Tensor:
        """zs [shape=(B, n_z)] on the device -> frames, torch.Tensor [shape=(B, n_pixels, 3), dtype=uint8] on the
        device. Only queues work (no host synchronisation), in chunks of at most :attr:`chunk` pixel-frames.
        ``zoom`` [shape=(B,)] and ``color`` [shape=(B, 3, 4)], float32 on the device: per-frame controls (see the
        module's text), or None (zoom 1; the backend's own colour map)."""
        n_b, n_pix = zs.shape[0], self.n_pixels
        dev = self.device
        frames = torch.empty(n_b, n_pix, 3, dtype=torch.uint8, device=dev)
        if n_b == 0:
            return frames
        hidden = self._a0.shape[1]
        bias = (zs @ self._zw.T).unsqueeze(1)  # (B, 1, H)
        if zoom is not None:
            zoom = zoom.reshape(n_b, 1, 1)
            bias = bias + (1.0 - zoom) * self._b0
        colour = None  # (M^T, offset) per frame, batched
        if color is not None:
            colour = (color[:, :, :3].transpose(1, 2).contiguous(), color[:, :, 3].reshape(n_b, 1, 3).contiguous())
        wo, bo = self._layers[-1]
        if self.image:
            # one batched product per chunk gives the 3 colour logits and the 3 pulse arguments h m^T together
            m = (zs @ self._pulse).reshape(n_b, 3, hidden)  # sum_j z_j R_j per frame
            w_out = torch.cat([wo.expand(n_b, hidden, 3), m.transpose(1, 2)], dim=2)  # (B, H, 6)
            b_out = torch.cat([bo, torch.zeros_like(bo)]).expand(n_b, 1, 6)
        flat_bias = flat_zoom = None
        if self._fused:
            flat_bias = bias.reshape(n_b, hidden).contiguous()
            flat_zoom = None if zoom is None else zoom.reshape(n_b).contiguous()
        chunk = max(1, min(n_pix, self.chunk // n_b))
        x = torch.empty(n_b * chunk, hidden, device=dev)
        y = torch.empty(n_b * chunk, hidden, device=dev)
        for s in range(0, n_pix, chunk):
            e = min(s + chunk, n_pix)
            rows = n_b * (e - s)
            h, g = x[:rows], y[:rows]
            if not (self._fused and self._fused_layers(flat_bias, flat_zoom, h, slice(s, e))):
                if zoom is None:
                    torch.add(self._a0[s:e], bias, out=h.view(n_b, e - s, hidden))
                else:
                    torch.addcmul(bias, self._a0[s:e], zoom, out=h.view(n_b, e - s, hidden))
                torch.tanh_(h)
                for w, b in self._layers[:-1]:
                    torch.addmm(b, h, w, out=g)
                    torch.tanh_(g)
                    h, g = g, h
            if self.image:
                o = torch.baddbmm(b_out, h.view(n_b, e - s, hidden), w_out)  # (B, n, 6)
                p = torch.sigmoid(o[..., :3])
                swing = torch.sin(o[..., 3:])
                if self._offset is not None:
                    swing -= self._offset[s:e]
                p = (p + headroom(p) * swing).clamp_(0.0, 1.0)
            else:
                p = torch.sigmoid_(torch.addmm(bo, h, wo)).view(n_b, e - s, 3)
            if colour is not None:
                p = torch.baddbmm(colour[1], p.reshape(n_b, e - s, 3), colour[0]).clamp_(0.0, 1.0)
            elif self._color_t is not None:
                m, c = self._color_t
                p = torch.addmm(c, p.reshape(-1, 3), m).clamp_(0.0, 1.0).view(n_b, e - s, 3)
            if self._palette_t is not None:
                p = palette_torch(p, self._palette_t)
            frames[:, s:e] = _to_uint8(p)
        return frames


def rgb_to_i420(frames: torch.Tensor, height: int, width: int, chunk: int = 8) -> torch.Tensor:
    """RGB frames -> I420 on their device: BT.709 limited range, chroma the mean of each 2 x 2 block; the CPU
    kernel's I420 within 1 level (the kernel converts the colours before rounding, this the rounded ones).

    Parameters
    ----------
    frames : torch.Tensor [shape=(B, height * width, 3), dtype=uint8]
    height, width : int
        Even.
    chunk : int
        Frames converted at a time (bounds the float work space).

    Returns
    -------
    torch.Tensor [shape=(B, height * 3 // 2, width), dtype=uint8]
        The Y plane, then U, then V (each ``height // 2 x width // 2``, row after row), per frame.
    """
    h, w = height, width
    out = torch.empty(frames.shape[0], h * 3 // 2, w, dtype=torch.uint8, device=frames.device)
    for s in range(0, frames.shape[0], chunk):  # bounded float work space
        rgb = frames[s:s + chunk].reshape(-1, h, w, 3).to(torch.float32)
        r, g, b = rgb.unbind(-1)
        luma = 0.2126 * r + 0.7152 * g + 0.0722 * b
        n = rgb.shape[0]
        out[s:s + chunk, :h] = (luma * (219.0 / 255.0) + 16.5).to(torch.uint8)
        pool = lambda x: x.reshape(n, h // 2, 2, w // 2, 2).mean(dim=(2, 4))  # noqa: E731
        cb = pool(b - luma) * (224.0 / 255.0 / 1.8556) + 128.5
        cr = pool(r - luma) * (224.0 / 255.0 / 1.5748) + 128.5
        out[s:s + chunk, h:].view(n, -1)[:, : h * w // 4] = cb.clamp_(16, 240).to(torch.uint8).reshape(n, -1)
        out[s:s + chunk, h:].view(n, -1)[:, h * w // 4:] = cr.clamp_(16, 240).to(torch.uint8).reshape(n, -1)
    return out


@contextlib.contextmanager
def _exact_float32() -> Iterator[None]:
    """float32 matrix products in full float32 (no TF32 or bfloat16 passes) for the work launched inside, even
    where the caller has lowered ``torch.set_float32_matmul_precision``; the caller's setting is restored. The
    setting is process-wide: torch work on other threads meanwhile also runs in full float32."""
    old = torch.get_float32_matmul_precision()
    if old == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)
