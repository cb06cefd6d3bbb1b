"""The fast renderer: a CPPN and a z per frame become RGB frames (uint8), at any resolution.

:class:`Renderer` computes the same function as :meth:`neuromv.cppn.CPPN.forward` with one of three algorithms,
each a backend behind one small interface (:class:`~neuromv.renderer.backend.Backend`):

- ``'kernel'`` (:mod:`.kernel`): the compiled fused CPU kernel, the CPU default where it applies (abstract CPPNs,
  hidden 8-64) and is installed; float32, or int16 where the CPU has AVX512-VNNI.
- ``'tiled'`` (:mod:`.tiles`): torch on CPU in cache-sized tiles, sigmoid-only, one worker thread per core.
- ``'dense'`` (:mod:`.dense`): batches of frames in large chunks, for GPUs; double-buffered frames, pinned copies,
  I420 on the device; on CUDA with Triton its hidden layers are one fused kernel (:mod:`.fused`);
- ``'picture'`` (:mod:`.picture`): a fitted picture (:class:`neuromv.picture.PictureNet`) evaluated once per
  resolution and moved per frame by :mod:`neuromv.motion`, in torch on any device.

Every backend starts from a :class:`~neuromv.renderer.setup.RenderSetup`: the layers in float64, the first layer
split into a per-resolution coordinate part and a per-frame z bias, and image mode's pulse and centring. The view
can be panned over the pattern (``pan``, :func:`~neuromv.cppn.coordinate_grid`), and the final colours go through
an optional affine colour map (``color``, from :func:`color_matrix`: hue, saturation, brightness, contrast) on
every path; without one, no path does any work for it.

Every path also takes two controls per frame (:mod:`.controls`), for music that drives the framing and the
palette: a ``zoom`` that multiplies the pixels' coordinates (a fitted picture: about the view's centre) and a
``color`` map that replaces the renderer's own for that frame. Without them every path renders exactly as before.

Modules: :mod:`.device` (:func:`resolve_device`), :mod:`.color` (:func:`color_matrix`, :data:`LUMA`),
:mod:`.controls` (:func:`check_zoom`, :func:`check_zooms`, :func:`check_colors`),
:mod:`.setup` (:class:`RenderSetup`, :data:`CENTRE_FRAMES`), :mod:`.reference` (:func:`reference_render`),
:mod:`.threads` (worker threads), and the backends above.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..cppn import CPPN, check_pan
from ..errors import ParameterError
from ..motion import Motion
from .backend import Backend
from .color import LUMA, PaletteMap, check_color, color_matrix  # noqa: F401 - LUMA: neuromv.renderer.LUMA
from .controls import MIN_FRAME_ZOOM, check_colors, check_zoom, check_zooms  # noqa: F401 - MIN_FRAME_ZOOM: public
from .dense import DENSE_CHUNK, DenseBackend  # noqa: F401 - DENSE_CHUNK: neuromv.renderer.DENSE_CHUNK
from .device import resolve_device
from .kernel import (ISA_ENV, KERNEL_ISAS, PRECISIONS, KernelBackend, kernel_choice, kernel_isas, kernel_precisions,
                     kernel_widths, resolve_precision)
from .reference import reference_render
from .setup import CENTRE_FRAMES, RenderSetup  # noqa: F401 - neuromv.renderer.CENTRE_FRAMES (the page's)
from .picture import PictureBackend
from .threads import available_cores
from .tiles import DEFAULT_TILE, TiledBackend

__all__ = ["Renderer", "reference_render", "resolve_device", "kernel_widths", "kernel_isas", "kernel_precisions",
           "resolve_precision", "color_matrix", "check_zoom", "check_zooms", "check_colors", "KERNEL_ISAS",
           "PRECISIONS", "ISA_ENV", "PaletteMap", "palette_map", "LEVELS_SIDE"]

#: :meth:`Renderer.frames` on a GPU: default batch of about this many pixel-frames, and at most MAX_BATCH frames.
BATCH_PIXELS = 1 << 26
MAX_BATCH = 32
#: The names ``Renderer(method=...)`` takes.
METHODS = ("auto", "kernel", "tiled", "dense", "picture")
#: A palette's levels are measured on a render whose shorter side is about this many pixels.
LEVELS_SIDE = 90
#: n_z of a fitted picture's motion when none is given (the default number of mel bands).
DEFAULT_N_Z = 32


class Renderer:
    """Renders frames of one CPPN at one resolution.

    Parameters
    ----------
    cppn : CPPN or PictureNet
        The network (its weights are copied; later changes to it are not seen), or a fitted picture
        (:class:`neuromv.picture.PictureNet`: method ``'picture'``, float32; ``motion`` drives it).
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
    motion : Motion, optional
        A fitted picture's motion (:class:`neuromv.motion.Motion`); its ``n_z`` is the length of the frames' drive
        vectors. Default: ``Motion.of(32, picture.seed)``. Ignored for CPPNs.
    palette : Palette or PaletteMap, optional
        A gradient map applied after the colour map on every path (:mod:`neuromv.palette`). A
        :class:`~neuromv.palette.Palette` is spread over the picture's own lumas: their levels
        (:func:`~neuromv.palette.palette_levels`) are measured on a render of z = 0 at about 1/8 of the size
        (:data:`LEVELS_SIDE`); a :class:`~neuromv.renderer.color.PaletteMap` is taken as it is. None: none, at no
        cost.

    Notes
    -----
    **Per-frame controls.** :meth:`render`, :meth:`render_yuv420`, :meth:`render_batch` and :meth:`frames` take a
    ``zoom`` and a ``color`` per frame, on every method:

    - ``zoom`` ``s`` (a number from 1/64 to 64, :data:`neuromv.limits.MAX_FRAME_ZOOM`; 1: none) multiplies the
      pixels' CPPN coordinates ``(x, y, r)``, pan included: the frame is ``Renderer(cppn, width, height,
      scale=scale * s, pan=(pan[0] * s, pan[1] * s), ...)``'s, and ``s < 1`` zooms in. It scales layer 0's
      coordinate part per frame, so it costs (almost) nothing. Image-mode CPPNs rendered with ``centre`` take only
      zoom 1 (the centring is computed once, for the renderer's view). A fitted picture zooms about the view's
      centre: the frame samples the picture and its motion's maps at ``centre + (place - centre) s`` (bilinear;
      zoomed out, the picture's border pixels repeat around it).
    - ``color`` (a 3 x 4 map, as the ``color`` parameter) replaces the renderer's colour map for that frame.

    Attributes
    ----------
    method : str
        The algorithm chosen: ``'kernel'``, ``'tiled'``, ``'dense'`` or ``'picture'``.
    backend : Backend
        The algorithm's object (:class:`KernelBackend`, :class:`TiledBackend` or :class:`DenseBackend`).
    pan : tuple[float, float]
    color : np.ndarray [shape=(3, 4), dtype=float64] or None
    precision : str
        What the frames are computed in: ``'float32'`` or ``'int16'``.
    palette : PaletteMap or None
        The palette as the paths apply it (its table and row), for the page and the tests.
    isa : str or None
        The kernel's instruction-set path (one of :data:`KERNEL_ISAS`), None for the torch methods.
    """

    def __init__(self, cppn: CPPN, width: int, height: int, *, device: str | torch.device = "cpu",
                 scale: float = 1.0, threads: int | None = None, tile: int = DEFAULT_TILE,
                 method: str = "auto", centre: np.ndarray | None = None, pan: tuple[float, float] = (0.0, 0.0),
                 color: np.ndarray | None = None, precision: str = "float32", motion: Motion | None = None,
                 palette=None) -> None:
        if width < 1 or height < 1:
            raise ParameterError(f"size must be at least 1x1, not {width}x{height}")
        if method not in METHODS:
            raise ParameterError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        self.pan = check_pan(pan)
        self.color = check_color(color)
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.width, self.height = int(width), int(height)
        self.n_pixels = self.width * self.height
        self.threads = max(1, int(threads or available_cores()))
        self.tile = max(64, int(tile))
        self.palette = None
        if palette is not None:
            self.palette = palette if isinstance(palette, PaletteMap) else palette_map(
                palette, cppn, self.width, self.height, scale=scale, pan=self.pan, color=self.color, centre=centre,
                motion=motion)
        if not isinstance(cppn, CPPN):  # a fitted picture (neuromv.picture): the picture once, the motion per frame
            if method not in ("auto", "picture"):
                raise ParameterError(f"a fitted picture renders with method 'picture' (or 'auto'), not {method!r}")
            if precision == "int16":
                raise ParameterError("precision 'int16' needs the compiled kernel; a fitted picture renders in "
                                     "float32: use precision 'float32' or 'auto'")
            self.motion = motion if motion is not None else Motion.of(DEFAULT_N_Z, getattr(cppn, "seed", 0))
            self.n_z, self.image, self._centred = self.motion.n_z, True, False
            self.method, self.precision = "picture", "float32"
            self.backend: Backend = PictureBackend(cppn, self.motion, self.width, self.height, scale=scale,
                                                   pan=self.pan, color=self.color, device=self.device,
                                                   threads=self.threads, palette=self.palette)
            self.isa = self.backend.isa
            return
        self.motion = None
        self._centred = False  # image mode with centre: per-frame zoom refused (see Notes)
        self.n_z = cppn.n_z
        self.image = cppn.image
        self.method, self.isa, self.precision = _choose(method, precision, cppn, self.device)
        setup = RenderSetup.of(cppn, self.width, self.height, scale=scale, pan=self.pan, centre=centre,
                               color=self.color, palette=self.palette)
        self._centred = setup.offset is not None
        if self.method == "kernel":
            self.backend = KernelBackend(setup, threads=self.threads, isa=self.isa,
                                                  precision=self.precision)
        elif self.method == "tiled":
            self.backend = TiledBackend(setup, threads=self.threads, tile=self.tile)
        else:
            self.backend = DenseBackend(setup, device=self.device)

    # -- one frame -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, z: np.ndarray | torch.Tensor, *, zoom: float = 1.0,
               color: np.ndarray | None = None) -> np.ndarray:
        """One frame.

        Parameters
        ----------
        z : array [shape=(n_z,)]
            The frame's latent vector (already scaled by the reactivity).
        zoom : float
            The frame's zoom (see the class's Notes); 1: none.
        color : np.ndarray [shape=(3, 4)], optional
            The frame's colour map, instead of the renderer's :attr:`color`; None: the renderer's.

        Returns
        -------
        np.ndarray [shape=(height, width, 3), dtype=uint8]

        Raises
        ------
        ParameterError
            A bad ``z``, ``zoom`` or ``color``.
        """
        return self.backend.render(self._check_z(z), self._check_zoom(zoom), check_color(color))

    @property
    def yuv420(self) -> bool:
        """Whether frames can come straight in the encoder's format (:meth:`render_yuv420`, ``frames(...,
        yuv420=True)``): the compiled kernel or the dense (GPU) method, at an even size."""
        return self.backend.yuv420

    def render_yuv420(self, z: np.ndarray | torch.Tensor, *, zoom: float = 1.0,
                      color: np.ndarray | None = None) -> np.ndarray:
        """One frame straight in the encoder's format, skipping a separate RGB-to-YUV conversion.

        Parameters
        ----------
        z : array [shape=(n_z,)]
        zoom : float
            As :meth:`render` takes it.
        color : np.ndarray [shape=(3, 4)], optional
            As :meth:`render` takes it.

        Returns
        -------
        np.ndarray [shape=(height * 3 // 2, width), dtype=uint8]
            I420 (``yuv420p``): the Y plane, then the U and V planes (each ``height // 2 x width // 2``, stored
            row after row), BT.709 limited range, chroma the mean of each 2 x 2 block.

        Raises
        ------
        ParameterError
            Not available here (see :attr:`yuv420`), or a bad ``z``, ``zoom`` or ``color``.
        """
        if not self.yuv420:
            raise ParameterError("render_yuv420 needs the compiled kernel or the dense method, and an even size")
        return self.backend.render_yuv420(self._check_z(z), self._check_zoom(zoom), check_color(color))

    def _check_z(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        """z [shape=(n_z,)] -> a float32 numpy vector of that shape, checked."""
        z = np.asarray(z, dtype=np.float32).reshape(-1)
        if z.size != self.n_z:
            raise ParameterError(f"z has {z.size} values; this CPPN takes {self.n_z}")
        return z

    def _check_zoom(self, zoom) -> float:
        """One frame's zoom, checked (:func:`check_zoom`, and 1 for image mode with centring)."""
        zoom = check_zoom(zoom)
        if zoom != 1.0 and self._centred:
            raise ParameterError(_CENTRED_ZOOM)
        return zoom

    def _check_zooms(self, zoom, n_frames: int) -> np.ndarray | None:
        """Every frame's zoom, checked (:func:`check_zooms`, and all 1 for image mode with centring)."""
        zoom = check_zooms(zoom, n_frames)
        if zoom is not None and self._centred and (zoom != 1.0).any():
            raise ParameterError(_CENTRED_ZOOM)
        return zoom

    # -- batches of frames ---------------------------------------------------------------------------------------
    def default_batch(self) -> int:
        """Frames per batch of :meth:`frames` on a GPU: about ``BATCH_PIXELS`` pixel-frames, 1 to ``MAX_BATCH``."""
        return max(1, min(MAX_BATCH, BATCH_PIXELS // self.n_pixels))

    @torch.no_grad()
    def render_batch(self, zs: np.ndarray | torch.Tensor, *, zoom: np.ndarray | None = None,
                     color: np.ndarray | None = None) -> np.ndarray:
        """Several frames at once; with ``method='dense'`` (GPUs) they go through the network together.

        Parameters
        ----------
        zs : array [shape=(B, n_z)]
            One latent vector per frame (already scaled by the reactivity).
        zoom : array [shape=(B,)], optional
            Each frame's zoom (see the class's Notes); None: all 1.
        color : array [shape=(B, 3, 4)], optional
            Each frame's colour map, instead of the renderer's :attr:`color`; None: the renderer's.

        Returns
        -------
        np.ndarray [shape=(B, height, width, 3), dtype=uint8]

        Raises
        ------
        ParameterError
            A bad ``zs``, ``zoom`` or ``color``.
        """
        zs = self._check_zs(zs)
        return self.backend.render_batch(zs, self._check_zooms(zoom, len(zs)), check_colors(color, len(zs)))

    def frames(self, zs: np.ndarray | torch.Tensor, batch: int | None = None, *, yuv420: bool = False,
               zoom: np.ndarray | None = None, color: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Every frame of ``zs``, in order, as a generator (the way to render a whole video).

        On a GPU (``method='dense'`` on CUDA) the frames are rendered ``batch`` at a time and double-buffered: batch
        k + 1 is queued on the GPU before the frames of batch k are yielded, and each batch is copied to pinned host
        memory on a side stream, so the copies overlap the rendering and the caller's own work (encoding). At most
        about three batches are alive at once, however many frames there are. ``method='dense'`` on CPU runs the
        same batching (without streams and pinned memory); the CPU methods render frame by frame, the compiled
        kernels with the next frame queued on worker threads before one is handed out (frames of more than one
        chunk of pixels: :func:`neuromv.renderer.threads.overlapped`), smaller frames in groups that the threads
        share (:data:`neuromv.renderer.backend.SMALL_FRAME`).

        Parameters
        ----------
        zs : array [shape=(n_frames, n_z)]
            One latent vector per frame (already scaled by the reactivity).
        batch : int, optional
            Frames per batch (dense method only). Default: :meth:`default_batch` (about 64 M pixel-frames, at
            most 32 frames).
        yuv420 : bool
            I420 frames [shape=(height * 3 // 2, width)] as :meth:`render_yuv420` makes them, instead of RGB.
        zoom : np.ndarray [shape=(n_frames,)], optional
            Each frame's zoom (see the class's Notes); None: all 1. Frame i is ``render(zs[i], zoom=zoom[i],
            color=color[i])``.
        color : np.ndarray [shape=(n_frames, 3, 4)], optional
            Each frame's colour map, instead of the renderer's :attr:`color`; None: the renderer's.

        Yields
        ------
        np.ndarray [shape=(height, width, 3), dtype=uint8]
            One frame. On the dense method it is a view into its batch's buffer, never overwritten: keeping a
            frame keeps its batch's buffer alive (copy it to keep just the frame).

        Raises
        ------
        ParameterError
            Bad ``zs``, ``batch``, ``zoom`` or ``color``, or ``yuv420`` where :attr:`yuv420` is False (at the call,
            not at the first frame).
        """
        zs = self._check_zs(zs)
        if batch is None:
            batch = self.default_batch()
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ParameterError(f"batch must be an integer >= 1, not {batch!r}")
        if yuv420 and not self.yuv420:
            raise ParameterError(f"yuv420 frames need {self.backend.yuv420_needs}")
        return self.backend.frames(zs, int(batch), yuv420, self._check_zooms(zoom, len(zs)),
                                   check_colors(color, len(zs)))

    def _check_zs(self, zs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """zs [shape=(n_frames, n_z)] -> a float32 CPU tensor of that shape, checked."""
        if isinstance(zs, torch.Tensor):
            zs = zs.detach().cpu()
        zs = torch.as_tensor(np.asarray(zs, dtype=np.float32))
        if zs.dim() != 2 or zs.shape[1] != self.n_z:
            raise ParameterError(f"zs must have shape (n_frames, {self.n_z}) for this CPPN, not {tuple(zs.shape)}")
        return zs.contiguous()


def palette_map(palette, cppn, width: int, height: int, *, scale: float = 1.0, pan: tuple[float, float] = (0.0, 0.0),
                color: np.ndarray | None = None, centre: np.ndarray | None = None,
                motion: Motion | None = None) -> PaletteMap:
    """A :class:`~neuromv.palette.Palette` spread over a picture's own lumas, as :class:`Renderer` applies it (and
    the page): the levels (:func:`~neuromv.palette.palette_levels`) of a render of z = 0 without the palette, at
    about :data:`LEVELS_SIDE` pixels on the shorter side (same network, view, colour map, centring and motion).

    Parameters
    ----------
    palette : Palette
    cppn : CPPN or PictureNet
    width, height : int
        The frames' size (its aspect is kept).
    scale, pan, color, centre, motion
        As :class:`Renderer` takes them.

    Returns
    -------
    PaletteMap
    """
    from ..palette import Palette, palette_levels, palette_row

    if not isinstance(palette, Palette):
        raise ParameterError(f"palette must be a neuromv.palette.Palette or a PaletteMap, not "
                             f"{type(palette).__name__}")
    k = max(1, min(width, height) // LEVELS_SIDE)
    small = Renderer(cppn, max(1, width // k), max(1, height // k), device="cpu", scale=scale, threads=1, pan=pan,
                     color=color, centre=centre, motion=motion,
                     method="tiled" if isinstance(cppn, CPPN) else "picture")
    sample = small.render(np.zeros(small.n_z, dtype=np.float32))
    return PaletteMap(palette.table, palette_row(palette_levels(sample)))


#: The one-line refusal of a zoom for image mode with centring.
_CENTRED_ZOOM = ("zoom must be 1 for an image-mode CPPN rendered with centre (its centring is computed once, for "
                 "the renderer's view)")


def _choose(method: str, precision: str, cppn: CPPN, device: torch.device) -> tuple[str, str | None, str]:
    """The algorithm for ``Renderer(method=...)``: (method, kernel path or None, precision), checked."""
    fits_kernel = device.type == "cpu" and not cppn.image and cppn.hidden in kernel_widths()
    if method == "picture":
        raise ParameterError("method 'picture' is for a fitted picture (neuromv.picture.PictureNet), not a CPPN")
    if method == "kernel" and not fits_kernel:
        raise ParameterError("method 'kernel' needs the compiled extension neuromv._kernel, a CPU, an abstract "
                             f"CPPN and hidden in {kernel_widths() or '(none: not installed)'}")
    if method == "auto":
        method = ("kernel" if fits_kernel else "tiled") if device.type == "cpu" else "dense"
    if method == "kernel":
        return (method, *kernel_choice(precision))
    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "int16":
        raise ParameterError(f"precision 'int16' needs the compiled kernel (method {method!r} computes in "
                             "float32; the kernel takes abstract CPPNs on CPU): use precision 'float32' or 'auto'")
    return method, None, "float32"
