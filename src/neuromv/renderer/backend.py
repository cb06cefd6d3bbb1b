"""The interface every render path implements (:class:`Backend`), with the frame-by-frame batches of the CPU
paths as its default."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import torch

from .setup import RenderSetup
from .threads import overlapped

__all__ = ["Backend", "SMALL_FRAME", "GROUP_PIXELS"]


class Backend:
    """One render algorithm for one :class:`~neuromv.renderer.setup.RenderSetup`.

    A subclass implements :meth:`render`, and :meth:`render_yuv420` where it sets :attr:`yuv420`; the batches
    (:meth:`render_batch`, :meth:`frames`) default to one frame after another, overlapped on worker threads where
    the subclass has a :meth:`frame_job`. Arguments come checked from
    :class:`~neuromv.renderer.Renderer`, the per-frame controls included (:mod:`.controls`): a frame's ``zoom``
    (a float, 1: none) multiplies the pixels' coordinates, and its ``color`` (an array [shape=(3, 4)], float64)
    replaces the backend's own colour map; ``color=None`` is the backend's own. With zoom 1 and no colour, every
    backend does exactly what it did without them.

    Attributes
    ----------
    method : str
        The algorithm's name (``Renderer(method=...)``).
    isa : str or None
        The compiled kernel's instruction-set path; None for the torch algorithms.
    precision : str
        ``'float32'`` or ``'int16'``.
    yuv420_needs : str
        What I420 frames need from this algorithm, for error messages.
    """

    method = ""
    #: Worker threads of :meth:`frames`' jobs (a backend with :meth:`frame_job` sets its own).
    threads = 1
    isa: str | None = None
    precision = "float32"
    yuv420_needs = "the compiled kernel or the dense method, and an even size"

    def __init__(self, setup: RenderSetup) -> None:
        self.width, self.height = setup.width, setup.height

    @property
    def yuv420(self) -> bool:
        """Whether :meth:`render_yuv420` works here."""
        return False

    def render(self, z: np.ndarray, zoom: float = 1.0, color: np.ndarray | None = None) -> np.ndarray:
        """One frame: z [shape=(n_z,), dtype=float32] -> np.ndarray [shape=(height, width, 3), dtype=uint8]."""
        raise NotImplementedError

    def render_yuv420(self, z: np.ndarray, zoom: float = 1.0, color: np.ndarray | None = None) -> np.ndarray:
        """One frame in I420: z [shape=(n_z,), dtype=float32] -> np.ndarray [shape=(height * 3 // 2, width),
        dtype=uint8] (see :meth:`neuromv.renderer.Renderer.render_yuv420`)."""
        raise NotImplementedError

    def frame_job(self, z: np.ndarray, yuv420: bool, zoom: float = 1.0,
                  color: np.ndarray | None = None) -> tuple[np.ndarray, Callable[[], None], int] | None:
        """One frame as a job for :func:`~.threads.overlapped`, or None where this algorithm has none (the
        default): ``(frame, work, n)``, where ``n`` threads running ``work()`` at once fill ``frame`` (a new array,
        the frame :meth:`render` or :meth:`render_yuv420` returns) and share it out between them."""
        return None

    @property
    def groups(self) -> bool:
        """Whether :meth:`group_job` renders here (default: no)."""
        return False

    def group_job(self, zs: np.ndarray, yuv420: bool, zoom: np.ndarray | None = None,
                  color: np.ndarray | None = None) -> tuple[np.ndarray, Callable[[], None], int]:
        """Several small frames as one job for :func:`~.threads.overlapped`, where :attr:`groups`: zs
        [shape=(n, n_z), dtype=float32], ``zoom`` [shape=(n,)] and ``color`` [shape=(n, 3, 4)] or None ->
        ``(frames, work, n_runs)``, where ``n_runs`` threads running ``work()`` at once fill ``frames``
        [shape=(n, ...)], each frame the same as :meth:`frame_job`'s, sharing the frames between them."""
        raise NotImplementedError

    def render_batch(self, zs: torch.Tensor, zoom: np.ndarray | None = None,
                     color: np.ndarray | None = None) -> np.ndarray:
        """zs [shape=(B, n_z), float32, CPU] -> frames, np.ndarray [shape=(B, height, width, 3), dtype=uint8];
        ``zoom`` [shape=(B,)] and ``color`` [shape=(B, 3, 4)] per frame, or None."""
        out = np.empty((len(zs), self.height, self.width, 3), dtype=np.uint8)
        for i, (z, s, a) in enumerate(_per_frame(zs, zoom, color)):
            out[i] = self.render(z, s, a)
        return out

    def frames(self, zs: torch.Tensor, batch: int, yuv420: bool, zoom: np.ndarray | None = None,
               color: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Every frame of zs [shape=(n_frames, n_z), float32, CPU] in order, RGB or (``yuv420``) I420; ``batch``
        frames at a time where the algorithm batches (here: one by one); ``zoom`` [shape=(n_frames,)] and
        ``color`` [shape=(n_frames, 3, 4)] per frame, or None. With a :meth:`frame_job` that several threads
        share, the next frame is started on the worker threads before this one is handed out
        (:func:`~.threads.overlapped`); frames of at most :data:`SMALL_FRAME` pixels go to the workers in groups
        (:meth:`group_job`) where the backend has them."""
        pixels = self.width * self.height
        if pixels <= SMALL_FRAME and self.groups:  # small frames: in groups, the cores sharing their frames
            return _in_groups(self, zs, yuv420, zoom, color, max(1, GROUP_PIXELS // pixels))
        frames = _per_frame(zs, zoom, color)
        first = next(frames, None)
        job = None if first is None else self.frame_job(first[0], yuv420, first[1], first[2])
        if job is None:
            draw = self.render_yuv420 if yuv420 else self.render
            return (draw(z, s, a) for z, s, a in itertools.chain([first] if first else [], frames))
        jobs = itertools.chain([job], (self.frame_job(z, yuv420, s, a) for z, s, a in frames))
        if job[2] < 2:  # a frame for one thread (a small one): the pool's hand-offs would cost more than it gains
            return _run_here(jobs)
        return overlapped(jobs, self.threads)


#: Pixels of a frame that :meth:`Backend.frames` renders in groups (:meth:`Backend.group_job`) where the backend can,
#: each frame whole on one thread: the compiled kernel's share-out of one worker (as the structure's fit renders its
#: frames at 32x18). Handing such frames to the worker threads one by one cost more than it saved.
SMALL_FRAME = 4096
#: Pixels of a group: a few milliseconds of work, so that its hand-offs cost little against it.
GROUP_PIXELS = 65536


def _in_groups(backend: Backend, zs: torch.Tensor, yuv420: bool, zoom: np.ndarray | None, color: np.ndarray | None,
               size: int) -> Iterator[np.ndarray]:
    """Every frame of zs, in order, rendered ``size`` at a time by :meth:`Backend.group_job` on the worker threads
    (:func:`~.threads.overlapped`), while this thread hands out the frames before."""

    def jobs():
        for i in range(0, len(zs), size):
            part = slice(i, i + size)
            yield backend.group_job(zs[part].numpy(), yuv420, None if zoom is None else zoom[part],
                                    None if color is None else color[part])

    for frames in overlapped(jobs(), backend.threads):
        yield from frames


def _run_here(jobs: Iterator[tuple[np.ndarray, Callable[[], None], int]]) -> Iterator[np.ndarray]:
    """Each job's frame, its run done on this thread (a single run takes the whole frame)."""
    for frame, work, _ in jobs:
        work()
        yield frame


def _per_frame(zs: torch.Tensor, zoom: np.ndarray | None,
               color: np.ndarray | None) -> Iterator[tuple[np.ndarray, float, np.ndarray | None]]:
    """(z as numpy, zoom as a float, colour map or None) of each frame."""
    for i, z in enumerate(zs):
        yield z.numpy(), 1.0 if zoom is None else float(zoom[i]), None if color is None else color[i]
