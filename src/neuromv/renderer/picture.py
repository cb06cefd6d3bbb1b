"""Fitted pictures (image mode, :mod:`neuromv.motion`): the picture once per resolution, the motion per frame.

:class:`PictureBackend` evaluates the picture network once, at the frame's resolution, and its structure maps once,
at :func:`~neuromv.motion.structure_size`, sampled at every pixel's coordinates. Each frame is then the picture
sampled at the displaced coordinates and toned: a few element-wise operations and one bilinear lookup per pixel,
in the compiled kernel on CPU where it is installed (``neuromv_picture3``: one pass per pixel, straight to RGB or
I420, on worker threads), else in torch on any device (CPU threads or a GPU); the torch path is the reference the
kernel is tested against. The music-independent part never runs per frame.

A frame's zoom ``s`` zooms about the view's centre: the frame samples the picture, and its maps, at ``centre +
(place - centre) s`` (the breath's pull to the centre scales with it), so ``s < 1`` enlarges the picture, and
``s > 1`` shows the picture smaller with its border pixels repeated around it (the picture is evaluated once, for
the view). The maps are then looked up (bilinear) rather than read per pixel: zoomed frames cost more than the
others (see docs/architecture.md). A frame's colour map replaces the renderer's. The palette
(:class:`~neuromv.renderer.color.PaletteMap`) is each pixel's last colour step, after the colour map, on both paths.

Memory per resolution: the picture (3 floats per pixel), the 7 maps and the sampling grid (2): 12 floats per
pixel, about 100 MB at 1920x1080.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..cppn import coordinate_grid
from ..errors import ParameterError
from ..motion import Motion, picture_maps, structure_size
from .backend import Backend
from .color import PaletteMap, palette_torch
from .dense import rgb_to_i420
from .kernel import kernel_library
from .threads import in_parallel

#: Pairs of rows a kernel worker takes at a time.
_ROWS_CHUNK = 8

__all__ = ["PictureBackend", "picture_frame"]


class PictureBackend(Backend):
    """A fitted picture moved by the music (see the module's text).

    Parameters
    ----------
    net
        The picture: a module with ``aspect`` (width / height it was fitted at) and ``render(width, height, *,
        scale, pan)`` -> np.ndarray [shape=(height, width, 3)] in [0, 1] (:class:`neuromv.picture.PictureNet`).
    motion : Motion
    width, height : int
    scale : float
    pan : (float, float)
    color : np.ndarray [shape=(3, 4)] or None
        The final colour map (:func:`~neuromv.renderer.color.color_matrix`).
    palette : PaletteMap or None
        The palette, applied after the colour map and its clamp.
    device : torch.device

    Notes
    -----
    Per frame (:meth:`render` and the rest), ``zoom`` zooms about the view's centre and ``color`` replaces the
    colour map (see the module's text); zoom 1 and no colour are the frames as they were, at the same cost.
    """

    method = "picture"
    yuv420_needs = "an even size"

    def __init__(self, net, motion: Motion, width: int, height: int, *, scale: float = 1.0,
                 pan: tuple[float, float] = (0.0, 0.0), color: np.ndarray | None = None,
                 palette: PaletteMap | None = None, device: torch.device = torch.device("cpu"), threads: int = 1,
                 use_kernel: bool = True) -> None:
        self.width, self.height = int(width), int(height)
        self.palette = palette
        self.threads = max(1, int(threads))
        self.n_pixels = self.width * self.height
        self.device, self.motion = device, motion
        self._coef = torch.from_numpy(motion.matrix()).to(torch.float64)  # (7, n_z)
        w, h, dev = self.width, self.height, device
        picture = np.asarray(net.render(w, h, scale=scale, pan=pan), dtype=np.float32)
        self.picture = torch.from_numpy(picture).permute(2, 0, 1).unsqueeze(0).contiguous().to(dev)  # (1, 3, h, w)
        # the structure maps at the picture's own aspect, sampled at every pixel's coordinates
        sw, sh = structure_size(net.aspect)
        maps = torch.from_numpy(picture_maps(net))
        coords = coordinate_grid(w, h, scale=scale, pan=pan, dtype=torch.float64)
        xy = coords[:, :2]
        s_half = min(sw, sh) / 2.0  # the maps' pixels per coordinate unit
        norm = torch.tensor([s_half * 2.0 / sw, s_half * 2.0 / sh], dtype=torch.float64)
        grid = (xy * norm).to(torch.float32).reshape(1, h, w, 2)
        self.maps = F.grid_sample(maps.unsqueeze(0), grid, mode="bilinear", padding_mode="border",
                                  align_corners=False)[0].to(dev)  # (7, h, w)
        half = min(w, h) / 2.0
        # the compiled kernel (CPU only) takes the planes as contiguous float32 arrays and finds each pixel's place
        # itself; the torch path keeps its sampling grids
        lib = kernel_library() if use_kernel and dev.type == "cpu" else None
        self._kernel = getattr(lib, "neuromv_picture3", None) if lib is not None else None
        self.isa = "portable" if self._kernel is not None else None
        if self._kernel is not None:
            fp = ctypes.POINTER(ctypes.c_float)
            self._np = (np.ascontiguousarray(self.picture[0].numpy()), np.ascontiguousarray(self.maps.numpy()),
                        None if color is None else np.ascontiguousarray(color, dtype=np.float32))
            self._kargs = (self._np[0].ctypes.data_as(fp), self._np[1].ctypes.data_as(fp), self.width, self.height,
                           half / scale)  # then the zoom, per frame
            self._kcolor = None if self._np[2] is None else self._np[2].ctypes.data_as(fp)
            # the palette's data (PaletteMap.kernel_data), alive as long as the backend, and its size; or none
            self._kpalette_np = None if palette is None else palette.kernel_data()
            self._kpalette = ((None, 0) if palette is None else
                              (self._kpalette_np.ctypes.data_as(fp), len(palette.table)))
            return
        # where each pixel samples the picture (grid_sample's normalised coordinates), and the displacement's scale
        to_norm = torch.tensor([half * 2.0 / (scale * w), half * 2.0 / (scale * h)], dtype=torch.float64)
        rel = coords[:, :2] - torch.tensor(pan, dtype=torch.float64)
        self._rel = rel.to(torch.float32).reshape(h, w, 2).to(dev)
        self._base = (rel * to_norm).to(torch.float32).reshape(1, h, w, 2).to(dev)
        self._norm = to_norm.to(device=dev, dtype=torch.float32)
        self._color = None if color is None else self._torch_colour(color)
        self._palette = None if palette is None else palette.to_torch(dev)

    def _torch_colour(self, color: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """A colour map [shape=(3, 4)] as the torch path applies it: (M^T [3, 3], offset [3]), float32 on the
        device."""
        a = torch.from_numpy(np.asarray(color, dtype=np.float64)).to(torch.float32)
        return a[:, :3].T.contiguous().to(self.device), a[:, 3].contiguous().to(self.device)

    @property
    def yuv420(self) -> bool:
        """At an even size."""
        return self.width % 2 == 0 and self.height % 2 == 0

    @torch.no_grad()
    def _rgb(self, z: np.ndarray, zoom: float = 1.0, color: np.ndarray | None = None) -> torch.Tensor:
        """The torch path: one frame as float RGB on the device, torch.Tensor [shape=(height, width, 3)] in [0, 1]."""
        c = (self._coef @ torch.as_tensor(np.asarray(z, dtype=np.float64))).tolist()
        maps, base, rel = self.maps, self._base, self._rel
        if zoom != 1.0:  # the places move towards (s < 1) or away from the view's centre, the maps sampled there
            base, rel = base * zoom, rel * zoom
            maps = F.grid_sample(maps.unsqueeze(0), base, mode="bilinear", padding_mode="border",
                                 align_corners=False)[0]
        frame = picture_frame(self.picture, maps, base, rel, self._norm, c, zoomed=zoom != 1.0)
        colour = self._color if color is None else self._torch_colour(color)
        if colour is not None:
            m, o = colour
            frame = torch.addmm(o, frame.reshape(-1, 3), m).clamp_(0.0, 1.0).reshape(frame.shape)
        if self._palette is not None:
            frame = palette_torch(frame, self._palette)
        return frame

    def frame_job(self, z: np.ndarray, yuv420: bool, zoom: float = 1.0,
                  color: np.ndarray | None = None) -> tuple[np.ndarray, Callable[[], None], int] | None:
        """One frame by the compiled kernel as a job (see :meth:`Backend.frame_job`): (the frame, RGB [shape=(height,
        width, 3)] or I420 [shape=(height * 3 // 2, width)], uint8; the run; how many threads share it); None on the
        torch path."""
        if self._kernel is None:
            return None
        c = self._coefficients(z)
        shape = (self.height * 3 // 2, self.width) if yuv420 else (self.height, self.width, 3)
        frame = np.empty(shape, dtype=np.uint8)
        colour_np = None if color is None else np.ascontiguousarray(color, dtype=np.float32)
        colour = self._kcolor if colour_np is None else colour_np.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        counter = ctypes.c_long(0)  # the next pair of rows, shared by the runs
        args = (*self._kargs, zoom, c.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), colour, *self._kpalette,
                frame.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), int(yuv420), ctypes.byref(counter),
                _ROWS_CHUNK)

        # what the pointers point into, held by the run for as long as it lives
        def work(_alive=(c, frame, colour_np, counter)) -> None:
            if self._kernel(*args) != 0:
                raise ParameterError("the picture kernel refused its arguments")

        return frame, work, max(1, min(self.threads, -(-self.height // (2 * _ROWS_CHUNK))))

    @property
    def groups(self) -> bool:
        """Whether :meth:`group_job` renders here: on the compiled kernel, where it has the entry point."""
        return self._kernel is not None and getattr(kernel_library(), "neuromv_picture3_frames", None) is not None

    def group_job(self, zs: np.ndarray, yuv420: bool, zoom: np.ndarray | None = None,
                  color: np.ndarray | None = None) -> tuple[np.ndarray, Callable[[], None], int]:
        """Several frames as one job (see :meth:`Backend.group_job`): the runs share the frames, each frame
        rendered whole by one of them, in one call of the kernel; each frame is :meth:`frame_job`'s."""
        fp = ctypes.POINTER(ctypes.c_float)
        n = len(zs)
        c = np.ascontiguousarray(np.stack([self._coefficients(z) for z in zs]) if n else np.zeros((0, 7)))
        shape = (self.height * 3 // 2, self.width) if yuv420 else (self.height, self.width, 3)
        frames = np.empty((n, *shape), dtype=np.uint8)
        zoom_np = None if zoom is None else np.ascontiguousarray(zoom, dtype=np.float32)
        colour_np = None if color is None else np.ascontiguousarray(color, dtype=np.float32).reshape(n, 12)
        colour, colour_step = (self._kcolor, 0) if colour_np is None else (colour_np.ctypes.data_as(fp), 12)
        counter = ctypes.c_long(0)  # the next frame, shared by the runs
        args = (*self._kargs, None if zoom_np is None else zoom_np.ctypes.data_as(fp),
                c.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), colour, colour_step, *self._kpalette,
                frames.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), frames[0].nbytes if n else 0, int(yuv420), n,
                ctypes.byref(counter))
        kernel = kernel_library().neuromv_picture3_frames

        def work(_alive=(c, frames, zoom_np, colour_np, counter)) -> None:
            if kernel(*args) != 0:
                raise ParameterError("the picture kernel refused its arguments")

        return frames, work, max(1, min(self.threads, n))

    def _coefficients(self, z: np.ndarray) -> np.ndarray:
        """A frame's motion coefficients (:meth:`neuromv.motion.Motion.coefficients`) [shape=(7,)], float64."""
        return np.ascontiguousarray(self._coef.numpy() @ np.asarray(z, dtype=np.float64))

    def _render_kernel(self, z: np.ndarray, yuv: bool, zoom: float, color: np.ndarray | None) -> np.ndarray:
        """One frame by the compiled kernel on this thread and n - 1 workers (ctypes releases the GIL for the
        call: the runs share the rows)."""
        frame, work, n = self.frame_job(z, yuv, zoom, color)
        in_parallel(lambda _: work(), n)
        return frame

    def render(self, z: np.ndarray, zoom: float = 1.0, color: np.ndarray | None = None) -> np.ndarray:
        if self._kernel is not None:
            return self._render_kernel(z, False, zoom, color)
        return _to_uint8(self._rgb(z, zoom, color)).cpu().numpy()

    def render_yuv420(self, z: np.ndarray, zoom: float = 1.0, color: np.ndarray | None = None) -> np.ndarray:
        if self._kernel is not None:
            return self._render_kernel(z, True, zoom, color)
        rgb = _to_uint8(self._rgb(z, zoom, color)).reshape(1, -1, 3)
        return rgb_to_i420(rgb, self.height, self.width)[0].cpu().numpy()


def picture_frame(picture: torch.Tensor, maps: torch.Tensor, base: torch.Tensor, rel: torch.Tensor,
                  norm: torch.Tensor, c: list[float], *, zoomed: bool = False) -> torch.Tensor:
    """One frame of a picture's motion (:mod:`neuromv.motion`).

    Parameters
    ----------
    picture : torch.Tensor [shape=(1, 3, h, w)]
        The still picture, RGB in [0, 1].
    maps : torch.Tensor [shape=(7, h, w)]
        The structure maps at each pixel (tone: luma, red-green, yellow-blue; flow: x, y of luma and red-green).
    base : torch.Tensor [shape=(1, h, w, 2)]
        Each pixel's own place in ``picture``, in grid_sample's normalised coordinates.
    rel : torch.Tensor [shape=(h, w, 2)]
        Each pixel's coordinates relative to the frame's centre (coordinate units).
    norm : torch.Tensor [shape=(2,)]
        Normalised units per coordinate unit (x, y).
    c : list of 7 floats
        The frame's coefficients (:meth:`Motion.coefficients`): tone a0-a3, flow b0, b1, breath m.
    zoomed : bool
        ``base`` is not each pixel's own place (a zoomed frame): the picture is sampled even without motion.

    Returns
    -------
    torch.Tensor [shape=(h, w, 3)]
        RGB in [0, 1].
    """
    a0, a1, a2, a3, b0, b1, m = c
    if b0 or b1 or m or zoomed:
        dx = maps[3] * b0 + maps[5] * b1 - rel[..., 0] * m
        dy = maps[4] * b0 + maps[6] * b1 - rel[..., 1] * m
        grid = base + torch.stack([dx, dy], dim=-1).unsqueeze(0) * norm
        rgb = F.grid_sample(picture, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    else:
        rgb = picture[0].clone()
    if a0 or a1 or a2 or a3:
        g = (maps[0] * a1 + maps[1] * a2 + maps[2] * a3 + a0).clamp_(-1.0, 1.0)
        rgb = rgb + g * rgb * (1.0 - rgb)
    return rgb.permute(1, 2, 0)


def _to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)

