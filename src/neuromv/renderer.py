"""The fast renderer: a CPPN and a z per frame become RGB frames (uint8), at any resolution.

How it is fast, while computing the same function as :meth:`neuromv.cppn.CPPN.forward`:

1. **First layer split.** ``W1 @ [x, y, r, z] = W1_xyr @ [x, y, r] + W1_z @ z``. The coordinate part is the same
   for every frame: it is computed once per resolution. z enters as a per-frame bias of ``hidden`` numbers.
2. **No tanh.** ``torch.tanh`` is slow on CPU; ``tanh(a) = 2 * sigmoid(2a) - 1`` exactly, and the scale and
   offset fold into the next layer's weights and bias, so each layer is one ``addmm`` and one in-place
   ``sigmoid``.
3. **Tiles.** Pixels go through all layers in tiles that stay in cache, with buffers reused between tiles, on
   one worker thread per core (each running torch single-threaded).
4. **Fused kernel** (``method='kernel'``, the CPU default when the compiled extension ``neuromv._kernel`` is
   installed): tiles of 8 x 2 pixels go through every layer in registers, layer 1 computed from the pixels'
   coordinates, with tanh as an order-7 rational function, so the matrix work runs near the FMA units' peak
   (``src/neuromv/_kernel.cpp``). The cores share a frame's tiles through an atomic counter. It can write I420,
   the encoder's format (:meth:`Renderer.render_yuv420`). Abstract CPPNs with hidden 8, 16, 24, 32, 48 or 64;
   other CPPNs use the tiles of point 3. One build carries an AVX-512, an AVX2 and a portable path and uses the
   best that the CPU runs (:func:`kernel_isas`; ``NEUROMV_KERNEL_ISA`` forces one). Where the CPU has AVX512-VNNI,
   ``precision='int16'`` (or ``'auto'``) runs the activations in 16-bit fixed point (exact 32-bit integer sums,
   a 16-bit tanh), faster, within 2 levels of the float32 path on >= 99.9 % of values (:func:`kernel_precisions`).

On a GPU (``method='dense'``) batches of frames go through together in large chunks; :meth:`Renderer.frames`
double-buffers them and overlaps the copies to the host with the caller's encoding (docs/performance.md).

Image-mode CPPNs (:mod:`neuromv.cppn`) take no z in the first layer; their per-frame pulse matrix
``sum_j z_j R_j`` (3 x hidden) rides along with the output layer: one ``addmm`` gives the 3 colour logits and the
3 pulse offsets together, and a few element-wise operations on 3 channels finish the pixel.

The view can be panned over the pattern (``pan``, :func:`~neuromv.cppn.coordinate_grid`), and the final colours
go through an optional affine colour map (``color``, from :func:`color_matrix`: hue, saturation, brightness,
contrast) on every path; without one, no path does any work for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import logging
import os
import threading
from collections.abc import Iterator

import numpy as np
import torch

from .cppn import CPPN, FLOOR, N_COORDS, check_pan, coordinate_grid, headroom
from .errors import ParameterError

__all__ = ["Renderer", "reference_render", "resolve_device", "kernel_widths", "kernel_isas", "kernel_precisions",
           "resolve_precision", "color_matrix", "KERNEL_ISAS", "PRECISIONS", "ISA_ENV"]

log = logging.getLogger(__name__)

#: Pixels per tile on CPU: a tile's activations (tile x hidden float32) stay in L2 cache.
DEFAULT_TILE = 8192
#: Dense path (GPU): pixel-frames per chunk; the activations alive at once are 2 x this x hidden float32.
DENSE_CHUNK = 1 << 22
#: :meth:`Renderer.frames` on a GPU: default batch of about this many pixel-frames, and at most MAX_BATCH frames.
BATCH_PIXELS = 1 << 26
MAX_BATCH = 32


def resolve_device(device: str = "auto") -> torch.device:
    """``'auto'`` (CUDA if available, else CPU), ``'cpu'`` or ``'cuda'`` / ``'cuda:N'`` -> a torch device.

    Raises
    ------
    ParameterError
        Unknown name, or CUDA asked for where there is none.
    """
    if not isinstance(device, str):
        raise ParameterError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}")
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ParameterError("device 'cuda' asked for, but PyTorch sees no CUDA GPU here (use --device cpu)")
        try:
            dev = torch.device(name)
        except RuntimeError as e:
            raise ParameterError(f"bad device {device!r}: {e}") from e
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError(f"device {device!r}: there are only {torch.cuda.device_count()} CUDA GPU(s)")
        return dev
    raise ParameterError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}")


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


def _check_color(color) -> np.ndarray | None:
    """``color`` (None or an array [shape=(3, 4)] of finite numbers) -> None or a float64 copy."""
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


def _apply_color(rgb: np.ndarray, color: np.ndarray | None) -> np.ndarray:
    """RGB [shape=(..., 3)] in [0, 1] -> ``clamp(color[:, :3] @ c + color[:, 3], 0, 1)`` per colour, computed in
    float64 and returned in ``rgb``'s dtype (``rgb`` itself where ``color`` is None)."""
    if color is None:
        return rgb
    return np.clip(rgb.astype(np.float64) @ color[:, :3].T + color[:, 3], 0.0, 1.0).astype(rgb.dtype)


def _to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> uint8, rounding to nearest."""
    return (rgb * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)


@torch.no_grad()
def reference_render(cppn: CPPN, width: int, height: int, z: np.ndarray | torch.Tensor, *,
                     scale: float = 1.0, pan: tuple[float, float] = (0.0, 0.0),
                     color: np.ndarray | None = None) -> np.ndarray:
    """The plain forward pass over a whole frame (slow; the standard the fast renderer is tested against).

    Parameters
    ----------
    cppn : CPPN
    width, height : int
    z : array [shape=(n_z,)]
    scale, pan
        As :func:`~neuromv.cppn.coordinate_grid` takes them.
    color : np.ndarray [shape=(3, 4)], optional
        Affine colour map (:func:`color_matrix`) applied to each pixel's colour, then clamped to [0, 1].

    Returns
    -------
    np.ndarray [shape=(height, width, 3), dtype=float32]
        RGB in [0, 1].
    """
    color = _check_color(color)
    coords = coordinate_grid(width, height, scale=scale, pan=pan)
    rgb = cppn(coords, torch.as_tensor(np.asarray(z, dtype=np.float32)))
    return _apply_color(rgb.reshape(height, width, 3).numpy(), color)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if old != n:
            torch.set_num_threads(old)


class Renderer:
    """Renders frames of one CPPN at one resolution.

    Parameters
    ----------
    cppn : CPPN
        The network (its weights are copied; later changes to it are not seen).
    width, height : int
        Frame size in pixels.
    device : str or torch.device
        ``'cpu'``, ``'cuda'``, ``'auto'``.
    scale : float
        Coordinate scale (zoom out for larger values), see :func:`~neuromv.cppn.coordinate_grid`.
    threads : int, optional
        CPU worker threads. Default: the number of cores available.
    tile : int
        Pixels per tile on CPU.
    method : {'auto', 'kernel', 'tiled', 'dense'}
        ``'kernel'``: the compiled fused CPU kernel (abstract CPPNs, hidden 8-64 in steps of 8 or 16). ``'tiled'``:
        the torch CPU algorithm (sigmoid-only, cache tiles, worker threads). ``'dense'``: whole frame in big chunks
        with tanh, for GPUs. ``'auto'``: ``'kernel'`` on CPU where it applies and is installed, else ``'tiled'``;
        ``'dense'`` on other devices.
    centre : array [shape=(n_frames, n_z)], optional
        Image mode: the z of the frames to be rendered (already scaled). Each pixel's mean pulse over (up to
        ``CENTRE_FRAMES`` of) them is subtracted from every frame, so the mean frame is the fitted picture whatever
        the song's z distribution. None: no centring.
    pan : (float, float)
        Moves the view over the pattern, in the CPPN's coordinates (:func:`~neuromv.cppn.coordinate_grid`).
    color : np.ndarray [shape=(3, 4)], optional
        Affine colour map ``A`` (:func:`color_matrix`): each pixel's final colour ``c`` in [0, 1] becomes
        ``clamp(A[:, :3] @ c + A[:, 3], 0, 1)`` before it is rounded (RGB) or converted (I420). None: none, at
        no cost.
    precision : {'float32', 'auto', 'int16'}
        Arithmetic of the compiled kernel (see :func:`resolve_precision`). ``'float32'``: exact (within the
        kernel's tanh, at most 1 level from the reference). ``'int16'``: the activations in 16-bit fixed point, the
        hidden and output layers' products summed exactly in int32 (needs the kernel's ``avx512vnni`` path; deterministic, and within 2
        levels of float32 on >= 99.9 % of values); ``'auto'``: ``'int16'`` where the kernel renders this CPPN
        and the CPU has that path, else ``'float32'``. The torch methods are always float32.

    Attributes
    ----------
    pan : tuple[float, float]
    color : np.ndarray [shape=(3, 4), dtype=float64] or None
    precision : str
        What the frames are computed in: ``'float32'`` or ``'int16'``.
    isa : str or None
        The kernel's instruction-set path (one of :data:`KERNEL_ISAS`), None for the torch methods.
    """

    def __init__(self, cppn: CPPN, width: int, height: int, *, device: str | torch.device = "cpu",
                 scale: float = 1.0, threads: int | None = None, tile: int = DEFAULT_TILE,
                 method: str = "auto", centre: np.ndarray | None = None, pan: tuple[float, float] = (0.0, 0.0),
                 color: np.ndarray | None = None, precision: str = "float32") -> None:
        if width < 1 or height < 1:
            raise ParameterError(f"size must be at least 1x1, not {width}x{height}")
        if method not in ("auto", "kernel", "tiled", "dense"):
            raise ParameterError(f"method must be 'auto', 'kernel', 'tiled' or 'dense', not {method!r}")
        self.pan = check_pan(pan)
        self.color = _check_color(color)
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.width, self.height = int(width), int(height)
        self.n_pixels = self.width * self.height
        self.n_z = cppn.n_z
        self.image = cppn.image
        fits_kernel = self.device.type == "cpu" and not cppn.image and cppn.hidden in kernel_widths()
        if method == "kernel" and not fits_kernel:
            raise ParameterError("method 'kernel' needs the compiled extension neuromv._kernel, a CPU, an abstract "
                                 f"CPPN and hidden in {kernel_widths() or '(none: not installed)'}")
        if method == "auto":
            method = ("kernel" if fits_kernel else "tiled") if self.device.type == "cpu" else "dense"
        self.method = method
        self.isa, self.precision = None, "float32"
        if method == "kernel":
            self.isa, self.precision = _kernel_choice(precision)
        elif precision not in PRECISIONS:
            raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        elif precision == "int16":
            raise ParameterError(f"precision 'int16' needs the compiled kernel (method {method!r} computes in "
                                 "float32; the kernel takes abstract CPPNs on CPU): use precision 'float32' or 'auto'")
        self.threads = max(1, int(threads or _available_cores()))
        self.tile = max(64, int(tile))
        layers = [(l.weight.detach().to(torch.float64), l.bias.detach().to(torch.float64)) for l in cppn.layers]
        w0, b0 = layers[0]
        w0_xyr = w0[:, :N_COORDS]
        w0_z = torch.zeros(w0.shape[0], self.n_z, dtype=w0.dtype) if self.image else w0[:, N_COORDS:]
        # image mode: the frozen pulse projections R [shape=(n_z, 3, hidden)], flattened for one matmul per frame
        self._pulse = cppn.pulse.detach().reshape(self.n_z, -1).to(torch.float32) if self.image else None
        coords = coordinate_grid(self.width, self.height, scale=scale, pan=self.pan, dtype=torch.float64)
        first = None if self.method == "kernel" else coords @ w0_xyr.T + b0  # (P, H): the coordinate part, once
        self._offset = None
        if self.image and centre is not None:
            self._offset = _pulse_mean(cppn, coords.to(torch.float32), np.asarray(centre, dtype=np.float32))
        if self.method == "kernel":
            self._init_kernel(coords, w0_xyr, b0, w0_z, layers)
        elif self.method == "tiled":
            self._init_tiled(first, w0_z, layers)
        else:
            self._init_dense(first, w0_z, layers)
            if self._offset is not None:
                self._offset = self._offset.to(self.device)

    # -- set-up ------------------------------------------------------------------------------------------------
    def _init_tiled(self, first: torch.Tensor, w0_z: torch.Tensor, layers) -> None:
        # s_k = sigmoid(2 a_k) and h_k = tanh(a_k) = 2 s_k - 1. With a_{k+1} = W h_k + b = 2W s_k + (b - W 1):
        #   s_{k+1} = sigmoid(4W s_k + 2(b - W 1)); the output is sigmoid(2Wo s + (bo - Wo 1)).
        f32 = dict(dtype=torch.float32)
        self._a0 = (2.0 * first).to(**f32).contiguous()
        self._zw = (2.0 * w0_z).to(**f32)  # per-frame bias = _zw @ z
        self._mats = []
        for w, b in layers[1:-1]:
            self._mats.append(((4.0 * w).T.contiguous().to(**f32), (2.0 * (b - w.sum(1))).to(**f32)))
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
        self._color_t = None
        if self.color is not None:
            a = torch.from_numpy(self.color)
            self._color_t = ((255.0 * a[:, :3]).T.contiguous().to(**f32), (255.0 * a[:, 3] + 0.5).to(**f32))

    def _init_kernel(self, coords: torch.Tensor, w0: torch.Tensor, b0: torch.Tensor, w0_z: torch.Tensor,
                     layers) -> None:
        hidden = w0.shape[0]
        # tiles of 8 columns x 2 rows (the kernel's 16 lanes), partial ones at the edges padded
        rows, cols = -(-self.height // 2), -(-self.width // 8)
        ct = np.zeros((2 * rows, 8 * cols, N_COORDS), dtype=np.float32)
        ct[: self.height, : self.width] = coords.numpy().reshape(self.height, self.width, N_COORDS)
        ct = ct.reshape(rows, 2, cols, 8, N_COORDS).transpose(0, 2, 4, 1, 3)  # (rows, cols, 3, 2, 8)
        self._ct = np.ascontiguousarray(ct).reshape(rows * cols, N_COORDS, 16)
        n_tiles = rows * cols
        del ct
        f32 = lambda t: np.ascontiguousarray(t.numpy(), dtype=np.float32)  # noqa: E731
        self._w0_np = f32(w0)  # (H, 3): the coordinate part of layer 0
        self._b0_np, self._zw_np = b0.numpy().copy(), w0_z.numpy().copy()  # float64: the frame's bias, b0 + W_z z
        mid = layers[1:-1]
        self._ws = f32(torch.stack([w for w, _ in mid])) if mid else np.zeros((0, hidden, hidden), np.float32)
        self._bs = f32(torch.stack([b for _, b in mid])) if mid else np.zeros((0, hidden), np.float32)
        self._wo, self._bo = f32(layers[-1][0]), f32(layers[-1][1])
        # the int16 path's weights (int16 pairs, biases and shifts) and the output layer's factors back to float32
        self._wq, self._wd = (_int16_weights(self._ws, self._bs, self._wo) if self.precision == "int16"
                              else (None, None))
        self._n_tiles = n_tiles
        fp = ctypes.POINTER(ctypes.c_float)
        # the colour map, 12 floats row-major, or a null pointer: the kernel then compiles the step out
        self._color_np = None if self.color is None else np.ascontiguousarray(self.color, dtype=np.float32)
        self._kernel_args = (self._ct.ctypes.data_as(fp), self._w0_np.ctypes.data_as(fp),
                             self._ws.ctypes.data_as(fp),
                             None if self._wq is None else self._wq.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
                             None if self._wd is None else self._wd.ctypes.data_as(fp),
                             self._bs.ctypes.data_as(fp), len(self._ws),
                             self._wo.ctypes.data_as(fp), self._bo.ctypes.data_as(fp),
                             None if self._color_np is None else self._color_np.ctypes.data_as(fp))

    def _init_dense(self, first: torch.Tensor, w0_z: torch.Tensor, layers) -> None:
        dev = self.device
        self._a0 = first.to(device=dev, dtype=torch.float32).contiguous()  # (P, H)
        self._zw = w0_z.to(device=dev, dtype=torch.float32)  # (H, n_z): per-frame bias = _zw @ z
        self._mats = [(w.T.contiguous().to(dev, torch.float32), b.to(dev, torch.float32)) for w, b in layers[1:]]
        if self._pulse is not None:
            self._pulse = self._pulse.to(dev)
        self._color_t = None  # (M^T [3, 3], offset [3]) on the device
        if self.color is not None:
            a = torch.from_numpy(self.color).to(torch.float32)
            self._color_t = (a[:, :3].T.contiguous().to(dev), a[:, 3].contiguous().to(dev))
        #: Pixel-frames per chunk of the dense path: the activations alive at once are 2 x this x hidden floats.
        self.dense_chunk = DENSE_CHUNK

    # -- rendering ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        """One frame.

        Parameters
        ----------
        z : array [shape=(n_z,)]
            The frame's latent vector (already scaled by the reactivity).

        Returns
        -------
        np.ndarray [shape=(height, width, 3), dtype=uint8]
        """
        z = torch.as_tensor(np.asarray(z, dtype=np.float32)).reshape(-1)
        if z.numel() != self.n_z:
            raise ParameterError(f"z has {z.numel()} values; this CPPN takes {self.n_z}")
        if self.method == "kernel":
            out = self._render_kernel(z.numpy())
        elif self.method == "tiled":
            out = self._render_tiled(z)
        else:
            out = self._render_dense(z)
        return out.reshape(self.height, self.width, 3)

    @property
    def yuv420(self) -> bool:
        """Whether frames can come straight in the encoder's format (:meth:`render_yuv420`, ``frames(...,
        yuv420=True)``): the compiled kernel or the dense (GPU) method, at an even size."""
        return self.method in ("kernel", "dense") and self.width % 2 == 0 and self.height % 2 == 0

    def render_yuv420(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        """One frame straight in the encoder's format, skipping a separate RGB-to-YUV conversion.

        Parameters
        ----------
        z : array [shape=(n_z,)]

        Returns
        -------
        np.ndarray [shape=(height * 3 // 2, width), dtype=uint8]
            I420 (``yuv420p``): the Y plane, then the U and V planes (each ``height // 2 x width // 2``, stored
            row after row), BT.709 limited range, chroma the mean of each 2 x 2 block.

        Raises
        ------
        ParameterError
            Not available here (see :attr:`yuv420`).
        """
        if not self.yuv420:
            raise ParameterError("render_yuv420 needs the compiled kernel or the dense method, and an even size")
        z = np.asarray(z, dtype=np.float32).reshape(-1)
        if z.size != self.n_z:
            raise ParameterError(f"z has {z.size} values; this CPPN takes {self.n_z}")
        if self.method == "dense":
            with torch.no_grad(), _exact_float32():
                frame = self._dense_batch(torch.from_numpy(z).reshape(1, -1).to(self.device))
                return self._i420(frame)[0].cpu().numpy()
        return self._render_kernel(z, yuv=True).reshape(self.height * 3 // 2, self.width)

    def _frame_out(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output layer of this frame in the sigmoid form: (weights [hidden, 3 or 6], bias [3 or 6])."""
        wo, co = self._out
        if not self.image:
            return wo, co
        m = (z @ self._pulse).reshape(3, -1)  # sum_j z_j R_j; with h = 2 s - 1: m h = 2 m s - m 1
        return torch.cat([wo, 2.0 * m.T], dim=1).contiguous(), torch.cat([co, -m.sum(1)])

    def _render_tiled(self, z: torch.Tensor) -> np.ndarray:
        bias = self._zw @ z
        out = self._frame_out(z)
        frame = torch.empty(self.n_pixels, 3, dtype=torch.uint8)
        n = self.threads
        # contiguous ranges of whole tiles, one per worker
        n_tiles = -(-self.n_pixels // self.tile)
        bounds = [min(self.n_pixels, (n_tiles * i // n) * self.tile) for i in range(n + 1)]
        if n == 1 or n_tiles == 1:
            with _torch_threads(1) if n > 1 else contextlib.nullcontext():
                self._tiles(bias, out, frame, 0, self.n_pixels, self._buffers[0])
            return frame.numpy()
        with _torch_threads(1):  # _in_parallel joins even on Ctrl-C: these settings must not change under an op
            _in_parallel(lambda i: self._tiles(bias, out, frame, bounds[i], bounds[i + 1], self._buffers[i]), n)
        return frame.numpy()

    def _tiles(self, bias: torch.Tensor, out, frame: torch.Tensor, lo: int, hi: int, buffers) -> None:
        b1, b2, bo, bp, bc = buffers
        wo, co = out
        a0, mats, tile, image, colour = self._a0, self._mats, self.tile, self.image, self._color_t
        for s in range(lo, hi, tile):
            e = min(s + tile, hi)
            n = e - s
            x, y, o = b1[:n], b2[:n], bo[:n]
            torch.add(a0[s:e], bias, out=x)
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
            frame[s:e].copy_(rgb)  # float -> uint8 truncates: round to nearest; values are in [0.5, 255.5]

    def _render_kernel(self, z: np.ndarray, yuv: bool = False) -> np.ndarray:
        lib = _kernel_lib()
        c0 = (self._b0_np + self._zw_np @ z.astype(np.float64)).astype(np.float32)
        frame = np.empty(self.n_pixels * 3 // 2 if yuv else self.n_pixels * 3, dtype=np.uint8)
        ct, w0, ws, wq, wd, bs, n_layers, wo, bo, color = self._kernel_args
        n = min(self.threads, -(-self._n_tiles // _KERNEL_CHUNK))
        counter = ctypes.c_long(0)  # the next tile to render, shared by the workers
        args = (KERNEL_ISAS.index(self.isa), self._w0_np.shape[0], ct, w0,
                c0.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ws, wq, wd, bs, n_layers, wo, bo, color,
                frame.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), int(yuv), self.width, self.height,
                ctypes.byref(counter), _KERNEL_CHUNK)

        def work(_: int) -> None:
            if lib.neuromv_render4(*args) != 0:
                raise RuntimeError(f"render kernel ({self.isa}) refused hidden {args[1]}, {self.width}x{self.height}")

        # ctypes releases the GIL for the call: the workers run in parallel, taking chunks of tiles as they go
        _in_parallel(work, n)
        return frame

    def _render_dense(self, z: torch.Tensor) -> np.ndarray:
        with _exact_float32():
            frame = self._dense_batch(z.reshape(1, -1).to(self.device))
        return frame[0].cpu().numpy()

    # -- batches of frames (the GPU path) ------------------------------------------------------------------------
    def _batch_z(self, zs) -> torch.Tensor:
        """zs [shape=(n_frames, n_z)] -> a float32 CPU tensor of that shape, checked."""
        if isinstance(zs, torch.Tensor):
            zs = zs.detach().cpu()
        zs = torch.as_tensor(np.asarray(zs, dtype=np.float32))
        if zs.dim() != 2 or zs.shape[1] != self.n_z:
            raise ParameterError(f"zs must have shape (n_frames, {self.n_z}) for this CPPN, not {tuple(zs.shape)}")
        return zs.contiguous()

    def default_batch(self) -> int:
        """Frames per batch of :meth:`frames` on a GPU: about ``BATCH_PIXELS`` pixel-frames, 1 to ``MAX_BATCH``."""
        return max(1, min(MAX_BATCH, BATCH_PIXELS // self.n_pixels))

    @torch.no_grad()
    def render_batch(self, zs: np.ndarray | torch.Tensor) -> np.ndarray:
        """Several frames at once; with ``method='dense'`` (GPUs) they go through the network together.

        Parameters
        ----------
        zs : array [shape=(B, n_z)]
            One latent vector per frame (already scaled by the reactivity).

        Returns
        -------
        np.ndarray [shape=(B, height, width, 3), dtype=uint8]
        """
        zs = self._batch_z(zs)
        if self.method != "dense":
            out = np.empty((len(zs), self.height, self.width, 3), dtype=np.uint8)
            for i, z in enumerate(zs):
                out[i] = self.render(z)
            return out
        with _exact_float32():
            frames = self._dense_batch(zs.to(self.device))
        return frames.cpu().numpy().reshape(len(zs), self.height, self.width, 3)

    def frames(self, zs: np.ndarray | torch.Tensor, batch: int | None = None, *,
               yuv420: bool = False) -> Iterator[np.ndarray]:
        """Every frame of ``zs``, in order, as a generator (the way to render a whole video).

        On a GPU (``method='dense'`` on CUDA) the frames are rendered ``batch`` at a time and double-buffered: batch
        k + 1 is queued on the GPU before the frames of batch k are yielded, and each batch is copied to pinned host
        memory on a side stream, so the copies overlap the rendering and the caller's own work (encoding). At most
        about three batches are alive at once, however many frames there are. ``method='dense'`` on CPU runs the
        same batching (without streams and pinned memory); the CPU methods render frame by frame.

        Parameters
        ----------
        zs : array [shape=(n_frames, n_z)]
            One latent vector per frame (already scaled by the reactivity).
        batch : int, optional
            Frames per batch (dense method only). Default: :meth:`default_batch` (about 64 M pixel-frames, at
            most 32 frames).

        Yields
        ------
        np.ndarray [shape=(height, width, 3), dtype=uint8]
            One frame. It is a view into its batch's buffer, never overwritten: keeping a frame keeps its batch's
            buffer alive (copy it to keep just the frame).
        """
        zs = self._batch_z(zs)
        if batch is None:
            batch = self.default_batch()
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ParameterError(f"batch must be an integer >= 1, not {batch!r}")
        if self.method != "dense":
            draw = self.render_yuv420 if yuv420 else self.render
            if yuv420 and not self.yuv420:
                raise ParameterError("yuv420 frames need the compiled kernel or the dense method, and an even size")
            return (draw(z) for z in zs)
        if yuv420 and not self.yuv420:
            raise ParameterError("yuv420 frames need an even size")
        return self._dense_frames(zs, int(batch), yuv420)

    def _dense_frames(self, zs: torch.Tensor, batch: int, yuv420: bool = False) -> Iterator[np.ndarray]:
        n = len(zs)
        cuda = self.device.type == "cuda"
        copies = torch.cuda.Stream(device=self.device) if cuda and n else None
        zs = zs.to(self.device)  # all at once: a copy per batch would wait for the work queued before it

        def launch(s: int):
            """Queue the frames s ... s + batch - 1; returns (host frames, event marking their arrival or None)."""
            e = min(s + batch, n)
            with torch.no_grad(), _exact_float32(), (torch.cuda.device(self.device) if cuda
                                                     else contextlib.nullcontext()):
                out = self._dense_batch(zs[s:e])
                if yuv420:
                    out = self._i420(out)
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

    def _i420(self, frames: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """RGB frames [shape=(B, n_pixels, 3), uint8] -> I420 [shape=(B, height * 3 // 2, width), uint8] on their
        device: BT.709 limited range, chroma the mean of each 2 x 2 block: the CPU kernel's I420 within 1 level
        (the kernel converts the colours before rounding, this the rounded ones)."""
        h, w = self.height, self.width
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

    def _dense_batch(self, zs: torch.Tensor) -> torch.Tensor:
        """zs [shape=(B, n_z)] on the device -> frames, torch.Tensor [shape=(B, n_pixels, 3), dtype=uint8] on the
        device. Only queues work (no host synchronisation), in chunks of at most ``dense_chunk`` pixel-frames."""
        n_b, n_pix = zs.shape[0], self.n_pixels
        dev = self.device
        frames = torch.empty(n_b, n_pix, 3, dtype=torch.uint8, device=dev)
        if n_b == 0:
            return frames
        hidden = self._a0.shape[1]
        bias = (zs @ self._zw.T).unsqueeze(1)  # (B, 1, H)
        wo, bo = self._mats[-1]
        if self.image:
            # one batched product per chunk gives the 3 colour logits and the 3 pulse arguments h m^T together
            m = (zs @ self._pulse).reshape(n_b, 3, hidden)  # sum_j z_j R_j per frame
            w_out = torch.cat([wo.expand(n_b, hidden, 3), m.transpose(1, 2)], dim=2)  # (B, H, 6)
            b_out = torch.cat([bo, torch.zeros_like(bo)]).expand(n_b, 1, 6)
        chunk = max(1, min(n_pix, self.dense_chunk // n_b))
        x = torch.empty(n_b * chunk, hidden, device=dev)
        y = torch.empty(n_b * chunk, hidden, device=dev)
        for s in range(0, n_pix, chunk):
            e = min(s + chunk, n_pix)
            rows = n_b * (e - s)
            h, g = x[:rows], y[:rows]
            torch.add(self._a0[s:e], bias, out=h.view(n_b, e - s, hidden))
            torch.tanh_(h)
            for w, b in self._mats[:-1]:
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
            if self._color_t is not None:
                m, c = self._color_t
                p = torch.addmm(c, p.reshape(-1, 3), m).clamp_(0.0, 1.0).view(n_b, e - s, 3)
            frames[:, s:e] = _to_uint8(p)
        return frames


_KERNEL_BLOCK = 16
#: Tiles a kernel worker takes at a time (4096 pixels): small enough that a core busy with the encoder takes fewer.
_KERNEL_CHUNK = 256


@functools.lru_cache(maxsize=1)
def _kernel_lib() -> ctypes.CDLL | None:
    """The compiled kernel (the optional extension ``neuromv._kernel``), or None if it was not built."""
    try:
        spec = importlib.util.find_spec("neuromv._kernel")
        if spec is None or not spec.origin:
            return None
        lib = ctypes.CDLL(spec.origin)
        fn = lib.neuromv_render4  # a build from before the path argument lacks it: the torch path then
        lib.neuromv_kernel_paths.restype = ctypes.c_int
        lib.neuromv_kernel_paths.argtypes = []
        block = ctypes.c_int.in_dll(lib, "neuromv_kernel_block").value
    except (OSError, AttributeError, ImportError, ValueError) as e:
        log.debug("render kernel unavailable (%s); using the torch path", e)
        return None
    if block != _KERNEL_BLOCK:
        log.warning("render kernel built for another block size; using the torch path")
        return None
    fp = ctypes.POINTER(ctypes.c_float)
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_int, fp, fp, fp, fp, ctypes.POINTER(ctypes.c_uint32), fp, fp, ctypes.c_int,
                   fp, fp, fp, ctypes.POINTER(ctypes.c_uint8), ctypes.c_int, ctypes.c_long, ctypes.c_long,
                   ctypes.POINTER(ctypes.c_long), ctypes.c_long]
    return lib


#: The compiled kernel's instruction-set paths, worst to best (a path's index is its number in the C API):
#: ``'portable'`` (any CPU, ARM64 included), ``'avx2'`` (AVX2 + FMA), ``'avx512'`` (AVX-512 F/BW/DQ/VL) and
#: ``'avx512vnni'`` (AVX-512 + VNNI, the only one with the int16 precision).
KERNEL_ISAS = ("portable", "avx2", "avx512", "avx512vnni")
#: Environment variable that forces the kernel's path (one of :data:`KERNEL_ISAS`) instead of the best this CPU
#: runs; ``avx512`` on a BF16 CPU, for instance, keeps every render in float32.
ISA_ENV = "NEUROMV_KERNEL_ISA"
#: The precisions a :class:`Renderer` takes (``precision=...``; see :func:`resolve_precision`).
PRECISIONS = ("auto", "float32", "int16")


@functools.lru_cache(maxsize=1)
def kernel_isas() -> tuple[str, ...]:
    """The compiled kernel's instruction-set paths that this CPU runs, best first.

    The kernel asks the CPU (cpuid, and whether the operating system saves the wide registers) before it runs any
    path, so one build runs on any x86-64 or ARM64 machine. :data:`ISA_ENV` does not change this list.

    Returns
    -------
    tuple[str, ...]
        Names from :data:`KERNEL_ISAS`, e.g. ``('avx512vnni', 'avx512', 'avx2', 'portable')`` on Zen 4,
        ``('avx2', 'portable')`` on an older x86-64, ``('portable',)`` on ARM64; ``()`` where the kernel is not
        installed.
    """
    lib = _kernel_lib()
    if lib is None:
        return ()
    mask = int(lib.neuromv_kernel_paths())
    return tuple(name for i, name in reversed(list(enumerate(KERNEL_ISAS))) if mask >> i & 1)


def _kernel_isa() -> str:
    """The path the kernel runs: :data:`ISA_ENV` if set, else the best of :func:`kernel_isas` (which is not
    empty). Raises ParameterError for a name that is not a path, or one that this CPU cannot run."""
    forced = os.environ.get(ISA_ENV, "").strip().lower()
    if not forced:
        return kernel_isas()[0]
    if forced not in KERNEL_ISAS:
        raise ParameterError(f"{ISA_ENV}={forced!r} is not a kernel path; use one of {', '.join(KERNEL_ISAS)}")
    if forced not in kernel_isas():
        raise ParameterError(f"{ISA_ENV}={forced}: this CPU cannot run that path (it runs {', '.join(kernel_isas())})")
    return forced


def kernel_precisions() -> tuple[str, ...]:
    """The precisions the compiled kernel renders in here: ``('float32', 'int16')`` where its path (the best this
    CPU runs, or the one :data:`ISA_ENV` forces) is ``'avx512vnni'``, ``('float32',)`` on other CPUs, ``()`` where
    the kernel is not installed.

    Raises
    ------
    ParameterError
        :data:`ISA_ENV` names no path, or one that this CPU cannot run.
    """
    if not kernel_isas():
        return ()
    return ("float32", "int16") if _kernel_isa() == "avx512vnni" else ("float32",)


def resolve_precision(precision: str = "auto") -> str:
    """``'auto'`` -> ``'int16'`` where the kernel has its int16 path here (:func:`kernel_precisions`), else
    ``'float32'``; ``'float32'`` and ``'int16'`` are returned as they are (whether they can run is checked where a
    :class:`Renderer` is made).

    Raises
    ------
    ParameterError
        ``precision`` is not one of :data:`PRECISIONS`, or :data:`ISA_ENV` is bad.
    """
    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    return "int16" if "int16" in kernel_precisions() else "float32"


def _kernel_choice(precision: str) -> tuple[str, str]:
    """(kernel path, precision) for a kernel render asked for in ``precision``."""
    wanted = resolve_precision(precision)
    isa = _kernel_isa()
    if wanted == "int16":
        if isa != "avx512vnni":
            raise ParameterError(f"precision 'int16' needs the kernel's avx512vnni path; this render runs {isa} "
                                 f"(the CPU runs {', '.join(kernel_isas())}): use precision 'float32' or 'auto'")
        return isa, "int16"
    return ("avx512" if isa == "avx512vnni" else isa), "float32"


#: The int16 path's fixed point: an activation of 1 is this integer (the kernel's ACT_ONE). 2^13 - 1 balances the
#: activations' rounding (6e-5) against the room it leaves the weights (see :func:`_int16_weights`).
_ACT_ONE = 8191
#: The int16 path's pre-activations x are Z = round(_Z_ONE x) in int16 (|x| <= 5.33, where tanh rounds to 1).
_Z_ONE = 6144
#: The largest int32 sum the int16 path allows, with a margin for the rounding of the weights.
_SUM_LIMIT = 2**31 - 2**24


def _pairs(q: np.ndarray) -> np.ndarray:
    """int16 values [..., 2n] -> uint32 [..., n]: element p = q[..., 2p] (low 16 bits) | q[..., 2p + 1] << 16."""
    q = q.astype(np.int64) & 0xFFFF
    return (q[..., 0::2] | (q[..., 1::2] << 16)).astype(np.uint32)


def _int16_weights(w: np.ndarray, b: np.ndarray, wo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the kernel's int16 path (layout in src/neuromv/_kernel.cpp).

    Hidden unit j's int32 sum ``B_j + sum_k q_jk a_k`` (activations ``|a_k| <= ACT_ONE``), shifted right by
    ``sh_j``, is its pre-activation ``x`` as ``round(Z_ONE x)``: ``q_jk = round(w_jk f_j)``,
    ``B_j = round(b_j Z_ONE 2^sh_j) + 2^(sh_j - 1)`` with ``f_j = Z_ONE 2^sh_j / ACT_ONE`` and the largest ``sh_j``
    that keeps ``q`` within int16 and every sum within int32. The output layer's channel c: ``q_ck = round(s_c
    wo_ck)`` with the largest such ``s_c``; its float32 logit is ``sum * d_c + bo_c``, ``d_c = 1 / (ACT_ONE s_c)``.

    Parameters
    ----------
    w : np.ndarray [shape=(L, H, H)]
        The hidden-to-hidden weights (row j: output j).
    b : np.ndarray [shape=(L, H)]
        Their biases.
    wo : np.ndarray [shape=(3, H)]
        The output layer's weights.

    Returns
    -------
    data : np.ndarray [shape=(L * H * (H // 2 + 2) + 3 * H // 2,), dtype=uint32]
        The int16 pairs [L][H][H / 2], B [L][H] (int32), sh [L][H] (int32), the output pairs [3][H / 2].
    d : np.ndarray [shape=(3,), dtype=float32]
    """
    w, b, wo = (np.asarray(a, dtype=np.float64) for a in (w, b, wo))
    total = np.abs(w).sum(axis=2)
    biggest = np.maximum(np.abs(w).max(axis=2), 1e-30)
    # f = Z_ONE 2^sh / ACT_ONE: |q| <= 32767 and |B| + (ACT_ONE + 1) (sum |q| + H / 2) <= SUM_LIMIT
    room = _SUM_LIMIT / (_Z_ONE * (np.abs(b) + (_ACT_ONE + 1) / _ACT_ONE * total) + 1e-30)
    room = np.minimum(room, 32767.0 * _ACT_ONE / (_Z_ONE * biggest))
    sh = np.clip(np.floor(np.log2(np.maximum(room, 1e-300)) - 1e-9), 0, 30).astype(np.int64)
    f = _Z_ONE * 2.0 ** sh / _ACT_ONE
    q = np.clip(np.round(w * f[..., None]), -32767, 32767)
    bias = np.clip(np.round(b * _Z_ONE * 2.0 ** sh) + np.where(sh > 0, 2.0 ** (sh - 1), 0), -2**30, 2**30)
    scale = np.minimum(32767.0 / np.maximum(np.abs(wo).max(axis=1), 1e-30),
                       _SUM_LIMIT / ((_ACT_ONE + 1) * np.maximum(np.abs(wo).sum(axis=1), 1e-30)))
    qo = np.clip(np.round(wo * scale[:, None]), -32767, 32767)
    data = np.concatenate([_pairs(q).ravel(), bias.astype(np.int32).view(np.uint32).ravel(),
                           sh.astype(np.uint32).ravel(), _pairs(qo).ravel()])
    return np.ascontiguousarray(data, dtype=np.uint32), np.ascontiguousarray(1.0 / (_ACT_ONE * scale), dtype=np.float32)


@functools.lru_cache(maxsize=1)
def kernel_widths() -> tuple[int, ...]:
    """Hidden widths the compiled kernel renders (empty if it is not installed)."""
    lib = _kernel_lib()
    if lib is None:
        return ()
    first = ctypes.c_int.in_dll(lib, "neuromv_kernel_hidden")  # a list ending with 0
    p = ctypes.cast(ctypes.addressof(first), ctypes.POINTER(ctypes.c_int))
    widths = []
    while p[len(widths)] and len(widths) < 64:
        widths.append(int(p[len(widths)]))
    return tuple(widths)


#: Frames (evenly spaced) over which the mean pulse of each pixel is estimated.
CENTRE_FRAMES = 256


@torch.no_grad()
def _pulse_mean(cppn: CPPN, coords: torch.Tensor, zs: np.ndarray, chunk: int = 8192) -> torch.Tensor:
    """Image mode: mean over frames of ``sin(d)`` per pixel and channel. torch.Tensor [shape=(n_pixels, 3)]."""
    zs = zs.reshape(len(zs), -1)
    if len(zs) > CENTRE_FRAMES:
        zs = zs[np.linspace(0, len(zs) - 1, CENTRE_FRAMES).round().astype(int)]
    m = torch.einsum("kj,jch->kch", torch.from_numpy(zs), cppn.pulse.to(torch.float32)).reshape(-1, cppn.hidden)
    out = torch.empty(coords.shape[0], 3)
    for s in range(0, coords.shape[0], chunk):
        h = cppn.features(coords[s:s + chunk])
        out[s:s + chunk] = torch.sin(h @ m.T).reshape(-1, len(zs), 3).mean(dim=1)
    return out


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _in_parallel(work, n: int) -> None:
    """Run ``work(0)`` on this thread and ``work(1)`` ... ``work(n - 1)`` on worker threads; wait for all (even on
    Ctrl-C), then re-raise the first exception of any of them."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except Exception as e:  # re-raised on the calling thread
            errors.append(e)

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, n)]
    for t in workers:
        t.start()
    try:
        run(0)
    finally:
        _join_all(workers)
    if errors:
        raise errors[0]


def _join_all(threads: list[threading.Thread]) -> None:
    """Join every thread, even if a KeyboardInterrupt arrives meanwhile; re-raise it once all have ended."""
    pending: BaseException | None = None
    for t in threads:
        while t.is_alive():
            try:
                t.join()
            except BaseException as e:  # noqa: BLE001 - re-raised below
                pending = pending or e
    if pending is not None:
        raise pending


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
