"""The fused CPU kernel (``method='kernel'``): the compiled extension ``neuromv._kernel``, its loader, its
instruction-set dispatch and its precisions, and :class:`KernelBackend`.

Tiles of 8 x 2 pixels go through every layer in registers, layer 1 computed from the pixels' coordinates, with
tanh as an order-7 rational function, so the matrix work runs near the FMA units' peak (``src/neuromv/_kernel.cpp``).
The cores share a frame's tiles through an atomic counter. It can write I420, the encoder's format
(:meth:`KernelBackend.render_yuv420`). Abstract CPPNs with hidden 8, 16, 24, 32, 48 or 64 (:func:`kernel_widths`).
One build carries an AVX-512, an AVX2 and a portable path and uses the best that the CPU runs (:func:`kernel_isas`;
``NEUROMV_KERNEL_ISA`` forces one). Where the CPU has AVX512-VNNI, ``precision='int16'`` (or ``'auto'``) runs the
hidden layers in 16-bit fixed point with exact 32-bit integer sums, faster, within 2 levels of the float32 path on
>= 99.9 % of values (:func:`kernel_precisions`). A palette (``RenderSetup.palette``) is each pixel's last colour
step inside the kernel (``neuromv_render5``): one gather of packed 8-bit colours per 16 pixels.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import os
from collections.abc import Callable

import numpy as np
import torch

from ..cppn import N_COORDS
from ..errors import ParameterError
from ..settings import PRECISIONS  # the precisions a Renderer takes: defined once, with the settings
from .backend import Backend
from .setup import RenderSetup
from .threads import in_parallel

__all__ = ["KernelBackend", "kernel_library", "kernel_widths", "kernel_isas", "kernel_precisions",
           "resolve_precision", "tile_coords", "kernel_choice", "KERNEL_ISAS", "PRECISIONS", "ISA_ENV"]

log = logging.getLogger(__name__)

_KERNEL_BLOCK = 16
#: Tiles a kernel worker takes at a time (4096 pixels): small enough that a core busy with the encoder takes fewer.
_KERNEL_CHUNK = 256


@functools.lru_cache(maxsize=1)
def kernel_library() -> ctypes.CDLL | None:
    """The compiled kernel (the optional extension ``neuromv._kernel``), loaded once with its C signatures set.

    Returns
    -------
    ctypes.CDLL or None
        None where it was not built, or is a build from another version (another block size, or without the
        entry points this module calls): the renderer then uses its torch tiles.
    """
    try:
        spec = importlib.util.find_spec("neuromv._kernel")
        if spec is None or not spec.origin:
            return None
        lib = ctypes.CDLL(spec.origin)
        fn = lib.neuromv_render5  # a build from before the palette arguments lacks it: the torch path then
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
    # a fitted picture's frame (neuromv.renderer.picture); ...3 takes a palette: a build of neuromv_picture2
    # (without it) is not found, and pictures then render in torch
    picture = getattr(lib, "neuromv_picture3", None)
    if picture is not None:
        picture.restype = ctypes.c_int
        picture.argtypes = [fp, fp, ctypes.c_long, ctypes.c_long, ctypes.c_float, ctypes.c_float,
                            ctypes.POINTER(ctypes.c_double), fp, fp, ctypes.c_long, ctypes.POINTER(ctypes.c_uint8),
                            ctypes.c_int, ctypes.POINTER(ctypes.c_long), ctypes.c_long]
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_int, fp, fp, fp, fp, ctypes.POINTER(ctypes.c_uint32), fp, fp, ctypes.c_int,
                   fp, fp, fp, fp, ctypes.c_long, ctypes.POINTER(ctypes.c_uint8), ctypes.c_int, ctypes.c_long,
                   ctypes.c_long, ctypes.POINTER(ctypes.c_long), ctypes.c_long]
    many_pictures = getattr(lib, "neuromv_picture3_frames", None)  # PictureBackend.group_job's
    if many_pictures is not None:
        many_pictures.restype = ctypes.c_int
        many_pictures.argtypes = [fp, fp, ctypes.c_long, ctypes.c_long, ctypes.c_float, fp,
                                  ctypes.POINTER(ctypes.c_double), fp, ctypes.c_long, fp, ctypes.c_long,
                                  ctypes.POINTER(ctypes.c_uint8), ctypes.c_long, ctypes.c_int, ctypes.c_long,
                                  ctypes.POINTER(ctypes.c_long)]
    # many small frames in one call (KernelBackend.group_job); a build without it renders them one by one
    many = getattr(lib, "neuromv_render5_frames", None)
    if many is not None:
        many.restype = ctypes.c_int
        many.argtypes = [ctypes.c_int, ctypes.c_int, fp, fp, ctypes.c_long, fp, fp, ctypes.POINTER(ctypes.c_uint32),
                         fp, fp, ctypes.c_int, fp, fp, fp, ctypes.c_long, fp, ctypes.c_long,
                         ctypes.POINTER(ctypes.c_uint8), ctypes.c_long, ctypes.c_int, ctypes.c_long, ctypes.c_long,
                         ctypes.c_long, ctypes.POINTER(ctypes.c_long)]
    return lib


#: The compiled kernel's instruction-set paths, worst to best (a path's index is its number in the C API):
#: ``'portable'`` (any CPU, ARM64 included), ``'avx2'`` (AVX2 + FMA), ``'avx512'`` (AVX-512 F/BW/DQ/VL) and
#: ``'avx512vnni'`` (AVX-512 + VNNI, the only one with the int16 precision).
KERNEL_ISAS = ("portable", "avx2", "avx512", "avx512vnni")
#: Environment variable that forces the kernel's path (one of :data:`KERNEL_ISAS`) instead of the best this CPU
#: runs; ``avx512`` on a BF16 CPU, for instance, keeps every render in float32.
ISA_ENV = "NEUROMV_KERNEL_ISA"


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
    lib = kernel_library()
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


def kernel_choice(precision: str) -> tuple[str, str]:
    """The kernel path and precision of a kernel render asked for in ``precision`` (one of :data:`PRECISIONS`).

    Returns
    -------
    (str, str)
        The path (one of :data:`KERNEL_ISAS`; ``'avx512'`` rather than ``'avx512vnni'`` for float32) and
        ``'float32'`` or ``'int16'``.

    Raises
    ------
    ParameterError
        A bad ``precision`` or :data:`ISA_ENV`, or ``'int16'`` where the path is not ``'avx512vnni'``.
    """
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
    lib = kernel_library()
    if lib is None:
        return ()
    first = ctypes.c_int.in_dll(lib, "neuromv_kernel_hidden")  # a list ending with 0
    p = ctypes.cast(ctypes.addressof(first), ctypes.POINTER(ctypes.c_int))
    widths = []
    while p[len(widths)] and len(widths) < 64:
        widths.append(int(p[len(widths)]))
    return tuple(widths)


def tile_coords(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The pixels' coordinates as the kernel reads them: tiles of 8 columns x 2 rows (its 16 lanes), row by row of
    tiles, each tile's x, y and r planes of 16 lanes (2 rows of 8); the partial tiles at the right and bottom edges
    padded with zeros.

    Parameters
    ----------
    xs, ys : np.ndarray [shape=(width,) and (height,), dtype=float64]
        The columns' x and the rows' y (:func:`neuromv.cppn.coordinate_axes`).

    Returns
    -------
    np.ndarray [shape=(ceil(height / 2) * ceil(width / 8), 3, 16), dtype=float32]
        The values of :func:`neuromv.cppn.coordinate_grid` (r from float64, rounded once), made from the axes
        without the whole float64 grid.
    """
    width, height = len(xs), len(ys)
    rows, cols = -(-height // 2), -(-width // 8)
    x, y = np.zeros(8 * cols), np.zeros(2 * rows)
    x[:width], y[:height] = xs, ys
    ct = np.empty((rows, cols, N_COORDS, 2, 8), dtype=np.float32)
    ct[:, :, 0] = x.reshape(1, cols, 1, 8)
    ct[:, :, 1] = y.reshape(rows, 1, 2, 1)
    xx, yy, step = x * x, y * y, max(1, 4096 // cols)  # r in float64, a band of tile rows at a time
    for a in range(0, rows, step):
        b = min(rows, a + step)
        r = np.sqrt(np.add.outer(yy[2 * a:2 * b], xx))  # y*y + x*x == x*x + y*y, bit for bit
        ct[a:b, :, 2] = r.reshape(b - a, 2, cols, 8).transpose(0, 2, 1, 3)
    if height % 2:  # the padding row and columns: no pixel there, every coordinate 0
        ct[-1, :, :, 1] = 0
    if width % 8:
        ct[:, -1, :, :, width % 8:] = 0
    return ct.reshape(rows * cols, N_COORDS, 16)


class KernelBackend(Backend):
    """The compiled fused kernel (see the module's text): abstract CPPNs on CPU, hidden in :func:`kernel_widths`.

    Per-frame controls cost nothing per pixel: the kernel takes layer 0's coordinate weights and the colour map per
    call, so a frame's zoom is a scaled copy of those 3 x hidden weights (int16 path included: its layer 0 is
    float32) and a frame's colour map is its own 12 floats. The setup's palette (:class:`~.color.PaletteMap`) is
    the last step of every pixel's colour, in the kernel (one gather from each of the table's three planes per 16
    pixels on AVX-512).

    Parameters
    ----------
    setup : RenderSetup
        An abstract CPPN's.
    threads : int
        Worker threads (at most one per chunk of :data:`_KERNEL_CHUNK` tiles are used).
    isa : str
        The path to run, one of :data:`KERNEL_ISAS` that this CPU runs (:func:`kernel_choice`).
    precision : {'float32', 'int16'}
        ``'int16'`` needs ``isa='avx512vnni'``.
    """

    method = "kernel"

    def __init__(self, setup: RenderSetup, *, threads: int, isa: str, precision: str) -> None:
        super().__init__(setup)
        self.threads, self.isa, self.precision, self.color = threads, isa, precision, setup.color
        self.n_pixels = setup.n_pixels
        w0, b0, w0_z, layers = setup.w0_xyr, setup.b0, setup.w0_z, setup.layers
        hidden = w0.shape[0]
        self._ct = tile_coords(setup.xs.numpy(), setup.ys.numpy())
        n_tiles = len(self._ct)
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
        # the palette's data (row and planes, PaletteMap.kernel_data), alive as long as the backend, or a null pointer
        self._palette_np = None if setup.palette is None else setup.palette.kernel_data()
        self._palette_args = ((None, 0) if self._palette_np is None else
                              (self._palette_np.ctypes.data_as(fp), len(setup.palette.table)))

    def frame_job(self, z: np.ndarray, yuv420: bool, zoom: float = 1.0,
                  color: np.ndarray | None = None) -> tuple[np.ndarray, Callable[[], None], int]:
        """One frame as a job (see :meth:`Backend.frame_job`): z [shape=(n_z,), dtype=float32] -> (the frame, RGB
        [shape=(height, width, 3)] or I420 [shape=(height * 3 // 2, width)], uint8, filled by the runs; the run; how
        many threads share it).

        A zoom ``s`` scales layer 0's coordinate weights (``W0 (s xyr) = (s W0) xyr``: 3 x hidden floats, the whole
        cost); ``color`` [shape=(3, 4)] replaces the renderer's colour map for this frame (the kernel takes it per
        call)."""
        lib = kernel_library()
        fp = ctypes.POINTER(ctypes.c_float)
        c0 = self._bias(z)
        frame = np.empty(self.n_pixels * 3 // 2 if yuv420 else self.n_pixels * 3, dtype=np.uint8)
        ct, w0, ws, wq, wd, bs, n_layers, wo, bo, colour = self._kernel_args
        w0_zoomed = None if zoom == 1.0 else np.ascontiguousarray(self._w0_np * np.float32(zoom))
        if w0_zoomed is not None:
            w0 = w0_zoomed.ctypes.data_as(fp)
        colour_np = None if color is None else np.ascontiguousarray(color, dtype=np.float32)
        if colour_np is not None:
            colour = colour_np.ctypes.data_as(fp)
        counter = ctypes.c_long(0)  # the next tile to render, shared by the runs
        args = (KERNEL_ISAS.index(self.isa), self._w0_np.shape[0], ct, w0,
                c0.ctypes.data_as(fp), ws, wq, wd, bs, n_layers, wo, bo, colour, *self._palette_args,
                frame.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), int(yuv420), self.width, self.height,
                ctypes.byref(counter), _KERNEL_CHUNK)
        # what the pointers point into, held by the run for as long as it lives
        def work(_alive=(c0, frame, w0_zoomed, colour_np, counter)) -> None:
            if lib.neuromv_render5(*args) != 0:
                raise RuntimeError(f"render kernel ({self.isa}) refused hidden {args[1]}, {self.width}x{self.height}")

        shape = (self.height * 3 // 2, self.width) if yuv420 else (self.height, self.width, 3)
        return frame.reshape(shape), work, min(self.threads, -(-self._n_tiles // _KERNEL_CHUNK))

    @property
    def groups(self) -> bool:
        """Whether :meth:`group_job` renders here (the kernel has the entry point for it)."""
        return getattr(kernel_library(), "neuromv_render5_frames", None) is not None

    def group_job(self, zs: np.ndarray, yuv420: bool, zoom: np.ndarray | None = None,
                  color: np.ndarray | None = None) -> tuple[np.ndarray, Callable[[], None], int]:
        """Several frames as one job (see :meth:`Backend.group_job`): zs [shape=(n, n_z), dtype=float32], ``zoom``
        [shape=(n,)] and ``color`` [shape=(n, 3, 4)] or None -> (the frames [shape=(n, ...)], as :meth:`frame_job`
        makes them; the run; how many threads share it). The runs share the frames, each frame rendered whole by
        one of them, in one call of the kernel."""
        lib = kernel_library()
        fp = ctypes.POINTER(ctypes.c_float)
        n = len(zs)
        # frame by frame as frame_job makes it: one product of all the frames could round otherwise
        c0 = np.stack([self._bias(z) for z in zs]) if n else np.zeros((0, len(self._b0_np)), np.float32)
        size = self.n_pixels * 3 // 2 if yuv420 else self.n_pixels * 3
        frames = np.empty((n, size), dtype=np.uint8)
        ct, w0, ws, wq, wd, bs, n_layers, wo, bo, colour = self._kernel_args
        w0_step = colour_step = 0
        w0_zoomed = colour_np = None
        if zoom is not None and np.any(np.asarray(zoom) != 1.0):  # each frame's own scaled copy, as frame_job's
            w0_zoomed = np.ascontiguousarray(self._w0_np[None] * np.asarray(zoom, np.float32)[:, None, None])
            w0, w0_step = w0_zoomed.ctypes.data_as(fp), self._w0_np.size
        if color is not None:
            colour_np = np.ascontiguousarray(color, dtype=np.float32).reshape(n, 12)
            colour, colour_step = colour_np.ctypes.data_as(fp), 12
        counter = ctypes.c_long(0)  # the next frame to render, shared by the runs
        args = (KERNEL_ISAS.index(self.isa), self._w0_np.shape[0], ct, w0, w0_step, c0.ctypes.data_as(fp), ws, wq,
                wd, bs, n_layers, wo, bo, colour, colour_step, *self._palette_args,
                frames.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), size, int(yuv420), self.width, self.height,
                n, ctypes.byref(counter))

        def work(_alive=(c0, frames, w0_zoomed, colour_np, counter)) -> None:
            if lib.neuromv_render5_frames(*args) != 0:
                raise RuntimeError(f"render kernel ({self.isa}) refused hidden {args[1]}, {self.width}x{self.height}")

        shape = (self.height * 3 // 2, self.width) if yuv420 else (self.height, self.width, 3)
        return frames.reshape(n, *shape), work, max(1, min(self.threads, n))

    def _bias(self, z: np.ndarray) -> np.ndarray:
        """A frame's layer-0 bias: b0 + W_z z [shape=(hidden,)], in float64, then float32 as the kernel takes it."""
        return (self._b0_np + self._zw_np @ z.astype(np.float64)).astype(np.float32)

    def _render_kernel(self, z: np.ndarray, yuv: bool, zoom: float, color: np.ndarray | None) -> np.ndarray:
        """One frame on this thread and n - 1 workers (ctypes releases the GIL for the call: the runs take chunks of
        tiles as they go)."""
        frame, work, n = self.frame_job(z, yuv, zoom, color)
        in_parallel(lambda _: work(), n)
        return frame

    @property
    def yuv420(self) -> bool:
        """At an even size."""
        return self.width % 2 == 0 and self.height % 2 == 0

    def render(self, z: np.ndarray, zoom: float = 1.0, color: np.ndarray | None = None) -> np.ndarray:
        return self._render_kernel(z, False, zoom, color)

    def render_yuv420(self, z: np.ndarray, zoom: float = 1.0, color: np.ndarray | None = None) -> np.ndarray:
        return self._render_kernel(z, True, zoom, color)
