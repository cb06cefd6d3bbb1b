"""Video out: stream RGB frames into an H.264 (or other) encoder with PyAV, with the song's audio muxed in as AAC.

Frames are encoded on a background thread fed by a bounded queue, so rendering and encoding overlap and only a
few frames are ever in memory. The file is written to a hidden temporary file beside the output and moved into
place only when complete; on any error or interruption the temporary file is deleted.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np

from .audio import Audio, AudioFile, _reason
from ._files import AtomicFile, check_output
from .errors import NeuroMVError, OutputError, ParameterError
from .settings import X264_PRESETS  # the preset setting's choices, defined once there

__all__ = ["VideoWriter", "check_output_path", "check_codec", "CONTAINERS", "X264_PRESETS", "NVENC"]

log = logging.getLogger(__name__)

#: Output file extensions and their FFmpeg muxers.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}

#: Hardware H.264/HEVC/AV1 encoders on NVIDIA GPUs (in PyAV's FFmpeg build; they need the GPU's driver to run).
NVENC = ("h264_nvenc", "hevc_nvenc", "av1_nvenc")


_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)

_DONE = object()
_AUDIO_BLOCK = 1 << 14


def check_output_path(path: str | os.PathLike, *, inputs: tuple = (), overwrite: bool = False) -> Path:
    """Check that a video can be written at ``path`` without harming anything; return it as a Path.

    :func:`neuromv._files.check_output` with the video containers' extensions (:data:`CONTAINERS`).

    Raises
    ------
    OutputError
        ``path`` is a directory, has an unsupported extension, is in a folder that does not exist or cannot be
        written, is one of ``inputs``, or exists and ``overwrite`` is false.
    """
    return check_output(path, inputs=inputs, overwrite=overwrite, kind="video", suffixes=tuple(CONTAINERS))


def check_codec(codec: str, width: int, height: int) -> str:
    """Check that the video encoder ``codec`` exists in this FFmpeg build and can start on this machine for
    ``width x height`` yuv420p frames (a hardware encoder needs its GPU and driver, and has a minimum size);
    return its name. The encoder is opened and closed again.

    Raises
    ------
    ParameterError
        Unknown, not a video encoder, or present but unable to start here at that size.
    """
    cc = _encoder(codec)
    cc.width, cc.height, cc.pix_fmt, cc.time_base = width + width % 2, height + height % 2, "yuv420p", Fraction(1, 30)
    _open_encoder(cc, codec)
    return codec


def _encoder(codec: str):
    """A new (unopened) encoder context; ParameterError if there is no such video encoder."""
    import av

    try:
        cc = av.CodecContext.create(codec, "w")
    except (av.FFmpegError, ValueError, TypeError) as e:
        raise ParameterError(f"video codec {codec!r} is not available in this FFmpeg build") from e
    if cc.type != "video":
        raise ParameterError(f"{codec!r} is not a video encoder")
    return cc


def _open_encoder(cc, codec: str) -> None:
    import av

    try:
        cc.open()
    except (av.FFmpegError, OSError, ValueError) as e:
        hint = (" (NVENC needs an NVIDIA GPU that has the encoder, its driver, and frames of at least about 256x256; "
                "data-centre GPUs such as the H100 have no NVENC)" if codec in NVENC else "")
        raise ParameterError(f"video codec {codec!r} is in this FFmpeg build but cannot start here for "
                             f"{cc.width}x{cc.height} {cc.pix_fmt}{hint}: {_reason(e)}; use --codec libx264") from e


class VideoWriter:
    """Write RGB frames and audio to a video file, atomically.

    Use as a context manager: leaving the block normally finishes the file and moves it into place; leaving it
    with an exception (including KeyboardInterrupt) deletes the partial file and leaves no output.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (.mp4, .m4v, .mov or .mkv).
    width, height : int
        Frame size; H.264 with yuv420p needs both even.
    fps : float or Fraction
        Frame rate.
    audio : Audio or AudioFile, optional
        Muxed in as AAC (192 kb/s), interleaved with the video as frames arrive. Anything with ``sr``,
        ``channels``, ``n_samples`` and ``blocks(size)`` will do; an :class:`~neuromv.audio.AudioFile` is read block
        by block as the video proceeds, never whole.
    codec : str
        FFmpeg video encoder, ``'libx264'`` by default.
    crf : int
        Constant rate factor (0-51, lower is better; 18 is visually lossless for most content).
    preset : str
        x264 preset (speed against size), one of :data:`X264_PRESETS`.
    overwrite : bool
        Replace an existing file at ``path``. Without it, the finished file is hard-linked into place, so a file
        that another writer made meanwhile is never replaced (:class:`~neuromv.errors.OutputError` instead).
    inputs : tuple of paths
        Files that must never be overwritten (the song, the image...).
    queue_size : int
        Frames waiting for the encoder at most.

    Examples
    --------
    >>> with VideoWriter("out.mp4", 64, 64, 30) as w:  # doctest: +SKIP
    ...     for frame in frames:            # np.ndarray [shape=(64, 64, 3), dtype=uint8]
    ...         w.write(frame)
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float | Fraction, *,
                 audio: Audio | AudioFile | None = None, codec: str = "libx264", crf: int = 18,
                 preset: str = "superfast",
                 overwrite: bool = False, inputs: tuple = (), queue_size: int = 8) -> None:
        import av

        self.path = check_output_path(path, inputs=inputs, overwrite=overwrite)
        for name, v in (("width", width), ("height", height)):
            if not isinstance(v, (int, np.integer)) or v < 2:
                raise ParameterError(f"{name} must be an integer >= 2, not {v!r}")
        if codec in ("libx264", "libx265", *NVENC) and (width % 2 or height % 2):
            raise ParameterError(f"{codec} with yuv420p needs an even width and height, not {width}x{height}")
        if not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
            raise ParameterError(f"crf must be an integer from 0 to 51, not {crf!r}")
        if codec in ("libx264", "libx265") and preset not in X264_PRESETS:
            raise ParameterError(f"preset must be one of {', '.join(X264_PRESETS)}; not {preset!r}")
        try:
            self.fps = Fraction(fps).limit_denominator(1001)
        except (TypeError, ValueError) as e:
            raise ParameterError(f"fps must be a positive number, not {fps!r}") from e
        if self.fps <= 0:
            raise ParameterError(f"fps must be a positive number, not {fps!r}")
        self.width, self.height = int(width), int(height)
        self.audio = audio
        self.frames_written = 0
        self._audio_pos = 0
        self._audio_blocks = None
        self._error: BaseException | None = None
        self._closed = False

        self._file = AtomicFile(self.path, overwrite=overwrite)  # put in place by close(): see neuromv._files
        self._tmp = self._file.tmp
        try:
            fmt = CONTAINERS[self.path.suffix.lower()]
            options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
            self._container = av.open(os.fspath(self._tmp), "w", format=fmt, options=options)
            _encoder(codec)  # a clear error for an unknown encoder; it is opened at the real size below
            vs = self._container.add_stream(codec, rate=self.fps)
            vs.width, vs.height = self.width, self.height
            vs.pix_fmt = "yuv420p"
            if codec in ("libx264", "libx265"):
                vs.options = {"crf": str(int(crf)), "preset": preset}
            elif codec in NVENC:  # constant quality, NVENC's own presets (p1 fastest ... p7 best)
                vs.options = {"rc": "vbr", "cq": str(max(1, int(crf))), "b": "0", "preset": "p4"}
            # BT.709, limited range: the usual HD tagging, so players show the colours we rendered
            cc = vs.codec_context
            cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1
            _open_encoder(cc, codec)  # one that cannot run here (no GPU, no driver) fails before any frame
            self._vstream = vs
            self._astream = None
            if audio is not None:
                rate = audio.sr if audio.sr in _AAC_RATES else 48000
                self._astream = self._container.add_stream("aac", rate=rate)
                self._astream.layout = "mono" if audio.channels == 1 else "stereo"
                self._astream.bit_rate = 192_000
                self._alayout = "mono" if audio.channels == 1 else "stereo"
            self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
            self._worker = threading.Thread(target=self._run, name="neuromv-encoder", daemon=True)
            self._worker.start()
        except BaseException:
            self._cleanup()
            raise

    # -- public ------------------------------------------------------------------------------------------------
    def write(self, frame: np.ndarray) -> None:
        """Queue one frame. Blocks while the queue is full.

        Parameters
        ----------
        frame : np.ndarray [shape=(height, width, 3) or (height * 3 // 2, width), dtype=uint8]
            RGB, or I420 (``yuv420p`` planes one after the other, BT.709 limited range, as
            :meth:`neuromv.renderer.Renderer.render_yuv420` makes), which the encoder takes without conversion.
        """
        if self._closed:
            raise OutputError(f"{self.path}: writer is closed")
        frame = np.asarray(frame)
        i420 = (self.height * 3 // 2, self.width)
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width, 3) and (
                frame.shape != i420 or self.height % 2 or self.width % 2):
            raise ParameterError(f"frame must be uint8 of shape {(self.height, self.width, 3)} (RGB) or {i420} "
                                 f"(I420), not {frame.dtype} {frame.shape}")
        while True:
            self._raise_worker_error()
            try:
                self._queue.put(frame, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> Path:
        """Finish the file (flush encoders, mux the rest of the audio) and move it into place. Returns the path."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            while self._worker.is_alive():  # never block on a full queue behind a dead worker
                try:
                    self._queue.put(_DONE, timeout=0.2)
                    break
                except queue.Full:
                    continue
            self._worker.join()
            self._raise_worker_error()
            if self.frames_written == 0:
                raise OutputError(f"{self.path}: no frames were written")
            self._container.close()
            self._file.commit()  # without overwrite: OutputError if another writer made the file meanwhile
        except BaseException:
            self._cleanup()
            raise
        log.debug("wrote %s (%d frames)", self.path, self.frames_written)
        return self.path

    def abort(self) -> None:
        """Stop encoding and delete the partial file; no output is left."""
        if self._closed and not self._tmp.exists():
            return
        self._closed = True
        self._cleanup()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals ---------------------------------------------------------------------------------------------
    def _raise_worker_error(self) -> None:
        if self._error is not None:
            err = self._error
            if isinstance(err, NeuroMVError):
                raise err
            raise OutputError(f"{self.path}: encoding failed: {err}") from err

    def _cleanup(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is not None and worker.is_alive():
            self._error = self._error or OutputError("aborted")
            # unblock the worker: drain the queue and tell it to stop
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._queue.put(_DONE)
            worker.join()
        blocks = getattr(self, "_audio_blocks", None)
        if blocks is not None and hasattr(blocks, "close"):
            blocks.close()  # an AudioFile's reader
        container = getattr(self, "_container", None)
        if container is not None:
            try:
                container.close()
            except Exception:  # the partial file is deleted anyway
                pass
        self._file.discard()

    def _run(self) -> None:
        import av

        try:
            vs = self._vstream
            while True:
                item = self._queue.get()
                if item is _DONE or self._error is not None:
                    break
                if item.ndim == 2:  # I420 already
                    vf = av.VideoFrame.from_ndarray(item, format="yuv420p")
                else:
                    vf = av.VideoFrame.from_ndarray(item, format="rgb24")
                    vf = vf.reformat(format="yuv420p", dst_colorspace=av.video.reformatter.Colorspace.ITU709)
                vf.pts = self.frames_written
                vf.time_base = 1 / self.fps
                self._container.mux(vs.encode(vf))
                self.frames_written += 1
                self._mux_audio_until(self.frames_written / self.fps)
            if self._error is None:
                self._container.mux(vs.encode(None))
                self._mux_audio_until(None)
        except BaseException as e:
            self._error = e

    def _mux_audio_until(self, t: Fraction | None) -> None:
        """Encode the audio up to time ``t`` (seconds; None: to the end, and flush)."""
        import av

        if self._astream is None:
            return
        a = self.audio
        if self._audio_blocks is None:
            self._audio_blocks = a.blocks(_AUDIO_BLOCK)
            self._audio_held = np.zeros((a.channels, 0), dtype=np.float32)
        end = a.n_samples if t is None else min(a.n_samples, int(t * a.sr))
        while self._audio_pos < end:
            if self._audio_held.shape[1] == 0:
                self._audio_held = next(self._audio_blocks, None)
                if self._audio_held is None:  # the source ended early: nothing more to mux
                    self._audio_held = np.zeros((a.channels, 0), dtype=np.float32)
                    break
            take = min(end - self._audio_pos, self._audio_held.shape[1])
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(self._audio_held[:, :take], dtype=np.float32), format="fltp", layout=self._alayout
            )
            self._audio_held = self._audio_held[:, take:]
            af.sample_rate = a.sr
            af.pts = self._audio_pos
            af.time_base = Fraction(1, a.sr)
            self._container.mux(self._astream.encode(af))
            self._audio_pos += take
        if t is None:
            self._container.mux(self._astream.encode(None))
            self._audio_blocks = None
