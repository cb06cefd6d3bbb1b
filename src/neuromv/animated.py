"""Animated WebP and GIF output, for loops and short clips (``-o loop.webp``, ``-o loop.gif``).

Chosen by the output's extension (:data:`ANIMATED`); both loop forever and carry no audio.

- **WebP**: streamed frame by frame into FFmpeg's ``libwebp_anim`` encoder (PyAV), lossy at quality
  :data:`WEBP_QUALITY`: nothing is held. Where PyAV's FFmpeg lacks that encoder, Pillow writes it from the frames
  held (as a GIF is).
- **GIF**: 256 colours for the whole animation (one global palette, so colours do not flicker from frame to frame),
  made by Pillow from :data:`PALETTE_FRAMES` frames spread over the whole clip; each frame is then mapped to it
  after a 4x4 ordered (Bayer) dither of :data:`DITHER` levels, which breaks the CPPN's smooth gradients into a
  fine, *fixed* pattern instead of bands (error diffusion would crawl from frame to frame). The palette needs every
  frame first: the frames are held, bounded by :data:`neuromv.limits.MAX_ANIMATED_BYTES`. GIF times frames in
  hundredths of a second; each frame's delay is rounded so that the clip's total length is exact.

The file is written to a temporary file beside the output and moved into place when complete
(:class:`neuromv._files.AtomicFile`), as the video writer does.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from ._files import AtomicFile, check_output
from .errors import OutputError, ParameterError, summary
from .limits import MAX_ANIMATED_BYTES, MAX_ANIMATED_SECONDS, format_bytes

__all__ = ["ANIMATED", "AnimatedWriter", "is_animated", "check_animated", "WEBP_QUALITY", "PALETTE_FRAMES", "DITHER"]

log = logging.getLogger(__name__)

#: Animated output extensions and their formats.
ANIMATED = {".webp": "webp", ".gif": "gif"}
#: libwebp's quality (0-100) of the lossy animated WebP: 80 keeps the CPPN's gradients smooth at about a third of
#: the size of 95.
WEBP_QUALITY = 80
#: Frames, spread evenly over the clip, from which a GIF's global palette is made.
PALETTE_FRAMES = 16
#: Amplitude of a GIF's ordered dither, in levels of 0-255: about a palette step (256 colours over a CPPN's
#: colours leave steps of 8-24 levels), so a gradient between two palette colours becomes a pattern, not a band.
DITHER = 16.0

#: The 4x4 Bayer matrix, thresholds in [-0.5, 0.5).
_BAYER = (np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], np.float32) + 0.5) / 16 - 0.5


def is_animated(path: str | os.PathLike) -> bool:
    """Whether ``path``'s extension asks for an animated WebP or GIF (:data:`ANIMATED`)."""
    return Path(path).suffix.lower() in ANIMATED


def check_animated(path: str | os.PathLike, n_frames: int, fps: float, width: int, height: int) -> None:
    """Refuse an animated output over :data:`neuromv.limits.MAX_ANIMATED_SECONDS`, or one whose held frames (GIF,
    Pillow's WebP) would pass :data:`neuromv.limits.MAX_ANIMATED_BYTES`, before any frame is rendered.

    Raises
    ------
    ParameterError
        One line naming the file, its length or size and the bound.
    """
    seconds = n_frames / fps
    if seconds > MAX_ANIMATED_SECONDS + 1e-9:
        raise ParameterError(f"{path}: an animated {Path(path).suffix.lower()[1:].upper()} is for loops and clips of "
                             f"at most {MAX_ANIMATED_SECONDS:g} s, not {seconds:.2f} s (use --loop or --duration, "
                             "or write a video)")
    held = n_frames * width * height * 3
    if _holds_frames(path) and held > MAX_ANIMATED_BYTES:
        raise ParameterError(f"{path}: {n_frames} frames at {width}x{height} would hold {format_bytes(held)} of "
                             f"frames, over {format_bytes(MAX_ANIMATED_BYTES)} (a smaller --size or a shorter loop)")


def _holds_frames(path) -> bool:
    """Whether the writer of ``path`` holds every frame (GIF; WebP without PyAV's encoder)."""
    return Path(path).suffix.lower() == ".gif" or not _pyav_webp()


def _pyav_webp() -> bool:
    import av

    return "libwebp_anim" in av.codecs_available


class AnimatedWriter:
    """Write RGB frames to an animated WebP or GIF that loops forever, atomically (the video writer's interface:
    :meth:`write`, :meth:`end`, :meth:`close`, :meth:`abort`, a context manager).

    Parameters
    ----------
    path : str or os.PathLike
        Output file (.webp or .gif).
    width, height : int
        Frame size, pixels.
    fps : float
        Frame rate.
    overwrite : bool
        Replace an existing file at ``path``.
    inputs : tuple of paths
        Files that must never be overwritten.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, *, overwrite: bool = False,
                 inputs: tuple = ()) -> None:
        self.path = check_output(path, inputs=inputs, overwrite=overwrite, kind="animation",
                                 suffixes=tuple(ANIMATED))
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.format = ANIMATED[self.path.suffix.lower()]
        self.frames_written = 0
        self._held: list[np.ndarray] = []
        self._container = self._stream = None
        self._closed = self._ended = False
        self._file = AtomicFile(self.path, overwrite=overwrite)
        try:
            if self.format == "webp" and _pyav_webp():
                self._open_webp()
        except BaseException:
            self._cleanup()
            raise

    def _open_webp(self) -> None:
        import av

        self._container = av.open(os.fspath(self._file.tmp), "w", format="webp", options={"loop": "0"})
        s = self._container.add_stream("libwebp_anim", rate=Fraction(self.fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = self.width, self.height, "yuv420p"
        s.options = {"quality": str(WEBP_QUALITY), "lossless": "0"}
        self._stream = s

    def write(self, frame: np.ndarray) -> None:
        """Add one frame, np.ndarray [shape=(height, width, 3), dtype=uint8] (RGB)."""
        if self._closed or self._ended:
            raise OutputError(f"{self.path}: writer is {'closed' if self._closed else 'ended'}")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width, 3):
            raise ParameterError(f"frame must be uint8 of shape {(self.height, self.width, 3)} (RGB), not "
                                 f"{frame.dtype} {frame.shape}")
        if self._stream is not None:
            import av

            vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            vf.pts, vf.time_base = self.frames_written, 1 / Fraction(self.fps).limit_denominator(1001)
            self._container.mux(self._stream.encode(vf))
        else:
            if (len(self._held) + 1) * frame.nbytes > MAX_ANIMATED_BYTES:
                raise OutputError(f"{self.path}: over {format_bytes(MAX_ANIMATED_BYTES)} of frames held")
            self._held.append(frame.copy())  # a renderer's frame may be a view into a reused buffer
        self.frames_written += 1

    def end(self) -> None:
        """No more frames (:meth:`write` refuses them); the encoding waits for :meth:`close`, as the
        :class:`~neuromv.video.VideoWriter`'s interface has it."""
        self._ended = True

    def close(self) -> Path:
        """Encode what is held, finish the file and move it into place. Returns the path."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            if self.frames_written == 0:
                raise OutputError(f"{self.path}: no frames were written")
            if self._stream is not None:
                self._container.mux(self._stream.encode(None))
                self._container.close()
            else:
                self._save_with_pillow()
            self._file.commit()
        except BaseException:
            self._cleanup()
            raise
        log.debug("wrote %s (%d frames)", self.path, self.frames_written)
        return self.path

    def abort(self) -> None:
        """Delete the partial file; no output is left."""
        self._closed = True
        self._cleanup()

    def __enter__(self) -> AnimatedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _save_with_pillow(self) -> None:
        from PIL import Image

        durations = frame_delays(len(self._held), self.fps, 10 if self.format == "gif" else 1)
        if self.format == "gif":
            images = quantize_frames(self._held)
            extra = dict(optimize=False, disposal=1)
        else:
            images = [Image.fromarray(f) for f in self._held]
            extra = dict(quality=WEBP_QUALITY, lossless=False)
        self._held = []
        try:
            images[0].save(self._file.tmp, format=self.format.upper(), save_all=True, append_images=images[1:],
                           duration=durations, loop=0, **extra)
        except (OSError, ValueError) as e:
            raise OutputError(f"{self.path}: cannot write the {self.format.upper()} ({summary(e)})") from e

    def _cleanup(self) -> None:
        self._held = []
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the partial file is deleted anyway
                pass
            self._container = None
        self._file.discard()


def frame_delays(n: int, fps: float, tick_ms: int = 10) -> list[int]:
    """Each frame's delay in milliseconds, in whole ``tick_ms`` (GIF: 10 ms), rounded so that frame ``i`` starts at
    the tick nearest ``i / fps`` and the total is the clip's length to a tick (at 30 fps: 30, 30, 40, 30, 30, 40...
    instead of 30 throughout, which plays 10 % fast)."""
    ticks = np.round(np.arange(n + 1) * 1000.0 / (fps * tick_ms)).astype(int)
    return [int(max(1, d) * tick_ms) for d in np.diff(ticks)]


def quantize_frames(frames: list[np.ndarray], colors: int = 256):
    """RGB frames -> Pillow 'P' images sharing one palette (see the module's text): the palette from
    :data:`PALETTE_FRAMES` frames spread over the clip (median cut), each frame ordered-dithered by :data:`DITHER`
    levels and mapped to its nearest palette colour.

    Parameters
    ----------
    frames : list of np.ndarray [shape=(h, w, 3), dtype=uint8]
    colors : int
        Palette size (at most 256).

    Returns
    -------
    list of PIL.Image.Image
        Mode 'P', one per frame, all with the same palette.
    """
    from PIL import Image

    picks = np.unique(np.linspace(0, len(frames) - 1, min(PALETTE_FRAMES, len(frames))).round().astype(int))
    sample = Image.fromarray(np.concatenate([frames[i] for i in picks], axis=0))
    palette = sample.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    h, w = frames[0].shape[:2]
    noise = np.tile(_BAYER, (h // 4 + 1, w // 4 + 1))[:h, :w, None] * np.float32(DITHER)
    out = []
    for f in frames:
        dithered = np.clip(f.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        out.append(Image.fromarray(dithered).quantize(palette=palette, dither=Image.Dither.NONE))
    return out
