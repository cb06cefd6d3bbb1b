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

from .audio import Audio, AudioFile
from ._files import AtomicFile, check_output
from .errors import NeuroMVError, OutputError, ParameterError, summary
from .settings import X264_PRESETS  # the preset setting's choices, defined once there

__all__ = ["VideoWriter", "concat_videos", "CLOSED_GOP", "check_output_path", "check_codec", "gop_frames",
           "i420_frame", "CONTAINERS", "X264_PRESETS", "PRESET_CPPN", "AAC_OPTIONS", "NVENC", "SOFTWARE",
           "ENCODER_THREADS", "MIN_X265_WIDTH"]

log = logging.getLogger(__name__)

#: Output file extensions and their FFmpeg muxers.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}

#: Hardware H.264/HEVC/AV1 encoders on NVIDIA GPUs (in PyAV's FFmpeg build; they need the GPU's driver to run).
NVENC = ("h264_nvenc", "hevc_nvenc", "av1_nvenc")


#: Encoder options of a segment that must join others without re-encoding (:func:`concat_videos`): a closed GOP
#: (no frame refers to one before the segment's first, which is an IDR frame: a fresh x264 encoder's first always is).
#: x264's default, written out; every libx264 :class:`VideoWriter` has it.
CLOSED_GOP = {"x264-params": "open-gop=0"}

#: NeuroMV's own preset, 'cppn' (the default): x264's superfast preset and these x264 options over it. CPPN frames
#: are smooth, move as a whole and have no cuts, so the analysis they drop buys little there: adaptive B-frame
#: placement (3 B-frames always), weighted P prediction, scene-cut detection, sub-pixel motion refinement (subme 0)
#: and 4x4 intra blocks (8x8 ones do better on smooth frames). Adaptive quantisation stays: without it the smoothest
#: gradients show blocks. On abstract, palette and picture renders at 1280x720 it encodes in 26-43 % less CPU time
#: than superfast at the same crf, with files 3-13 % smaller and within 0.5 dB PSNR (bench/encode_bench.py;
#: docs/performance.md#the-encoder). libx265 takes it as its superfast.
PRESET_CPPN = ("superfast", "b-adapt=0:weightp=0:scenecut=0:subme=0:partitions=i8x8")

#: The AAC encoder's options: FFmpeg's "fast" coder, which its author made FFmpeg's default for sounding better than
#: "twoloop" at high bit rates (FFmpeg commit fcb681ac, 2018) and takes about a third of its CPU time at 192 kb/s.
AAC_OPTIONS = {"aac_coder": "fast"}

#: Software encoders, whose output is a pure function of the frames, the options and the thread count: a
#: :class:`VideoWriter` encodes with them one GOP at a time, each by a fresh encoder (see its ``gop``).
SOFTWARE = ("libx264", "libx265")

#: Threads of each software encoder, fixed rather than one per core: x264's output depends on its thread count, so
#: a fixed count makes a render's bytes the same on every machine (a render on Ray equals one on the driver alone).
#: x264 superfast encodes 1080p at about 30 frames/s a thread on this project's 2-core machine, so four threads
#: with four cores to run on should reach about 100 (an estimate), ahead of any CPU render; a GPU render that
#: outruns them can use NVENC (``--codec h264_nvenc``), which is not split into GOPs.
ENCODER_THREADS = 4

_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)

_DONE = object()
_AUDIO_BLOCK = 1 << 14
#: Samples of audio encoded at least at once (but the last): in steps of a few video frames, not one each.
_AUDIO_STEP = 1 << 14


def check_output_path(path: str | os.PathLike, *, inputs: tuple = (), overwrite: bool = False,
                      animated: bool = False) -> Path:
    """Check that a video can be written at ``path`` without harming anything; return it as a Path.

    :func:`neuromv._files.check_output` with the video containers' extensions (:data:`CONTAINERS`), and with
    ``animated`` those of animated WebP and GIF too (:data:`neuromv.animated.ANIMATED`).

    Raises
    ------
    OutputError
        ``path`` is a directory, has an unsupported extension, is in a folder that does not exist or cannot be
        written, is one of ``inputs``, or exists and ``overwrite`` is false.
    """
    from .animated import ANIMATED

    suffixes = tuple(CONTAINERS) + (tuple(ANIMATED) if animated else ())
    return check_output(path, inputs=inputs, overwrite=overwrite, kind="video", suffixes=suffixes)


def check_codec(codec: str, width: int, height: int) -> str:
    """Check that the video encoder ``codec`` exists in this FFmpeg build and can start on this machine for
    ``width x height`` yuv420p frames (a hardware encoder needs its GPU and driver, and has a minimum size);
    return its name. The encoder is opened and closed again.

    Raises
    ------
    ParameterError
        Unknown, not a video encoder, or present but unable to start here at that size.
    """
    _check_width(codec, width)
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
                             f"{cc.width}x{cc.height} {cc.pix_fmt}{hint}: {summary(e)}; use --codec libx264") from e


#: The narrowest frame libx265 is given: PyAV's libx265 corrupted the heap (the process aborted) on frames 40 and 48
#: pixels wide (of 24 frames, one encoder; 32, 56 and 64 and wider were fine), so anything under one 64-pixel coding
#: tree unit is refused.
MIN_X265_WIDTH = 64


def _check_width(codec: str, width) -> None:
    if codec == "libx265" and isinstance(width, (int, np.integer)) and width < MIN_X265_WIDTH:
        raise ParameterError(f"libx265 needs frames at least {MIN_X265_WIDTH} pixels wide, not {width}; use libx264")


def _check_args(width, height, fps, codec: str, crf, preset) -> Fraction:
    """:class:`VideoWriter`'s argument checks; returns the frame rate as a Fraction (denominator at most 1001)."""
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or v < 2:
            raise ParameterError(f"{name} must be an integer >= 2, not {v!r}")
    _check_width(codec, width)
    if codec in ("libx264", "libx265", *NVENC) and (width % 2 or height % 2):
        raise ParameterError(f"{codec} with yuv420p needs an even width and height, not {width}x{height}")
    if not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ParameterError(f"crf must be an integer from 0 to 51, not {crf!r}")
    if codec in ("libx264", "libx265") and preset not in X264_PRESETS:
        raise ParameterError(f"preset must be one of {', '.join(X264_PRESETS)}; not {preset!r}")
    try:
        rate = Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError) as e:
        raise ParameterError(f"fps must be a positive number, not {fps!r}") from e
    if rate <= 0:
        raise ParameterError(f"fps must be a positive number, not {fps!r}")
    return rate


def i420_frame(planes: np.ndarray, *, in_place: bool = False):
    """An I420 frame for the encoder: ``planes`` [shape=(height * 3 // 2, width), dtype=uint8] (Y, then U and V,
    as :meth:`neuromv.renderer.Renderer.render_yuv420` makes them) as an ``av.VideoFrame`` (``yuv420p``).

    With ``in_place`` the frame reads the array itself instead of a copy (0.7 ms a frame at 720p), where PyAV maps
    the planes where they lie (it does not for every size: PyAV 18 takes a height that is not a multiple of 4 for
    two rows less), else it is copied. Only for an encoder that copies the planes in before ``encode()`` returns and
    reads no byte past them: libx264 (its plane copies take each plane's last row byte by byte); the array must not
    change until then."""
    import av

    h, w = planes.shape[0] * 2 // 3, planes.shape[1]
    if in_place and planes.flags.c_contiguous:
        vf = av.VideoFrame.from_numpy_buffer(planes, format="yuv420p")
        base, c = planes.ctypes.data, (w // 2) * (h // 2)
        if (vf.width, vf.height) == (w, h) and [(p.line_size, p.buffer_ptr - base) for p in vf.planes] == [
                (w, 0), (w // 2, w * h), (w // 2, w * h + c)]:
            return vf
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


def gop_frames(gop: float | None, fps: float) -> int | None:
    """Frames in a group of pictures of ``gop`` seconds at ``fps`` (at least 1); None for None."""
    return None if gop is None else max(1, int(round(float(gop) * float(fps))))


def _add_video_stream(container, codec: str, width: int, height: int, fps: Fraction, crf: int, preset: str,
                      options: dict | None = None, gop: int | None = None):
    """Add the video stream to ``container``, its encoder configured by :func:`_configure` and opened (so one that
    cannot run here fails before any frame)."""
    _encoder(codec)  # a clear error for an unknown encoder; it is opened at the real size below
    vs = container.add_stream(codec, rate=fps)
    _configure(vs.codec_context, codec, width, height, fps, crf, preset, options, gop)
    _open_encoder(vs.codec_context, codec)
    return vs


def _configure(cc, codec: str, width: int, height: int, fps: Fraction, crf: int, preset: str,
               options: dict | None, gop: int | None = None) -> None:
    """Set up the (unopened) encoder ``cc``: yuv420p, BT.709, the codec's quality options (and ``options``, the
    encoder's own, over them); a software encoder's :data:`ENCODER_THREADS`, :data:`CLOSED_GOP` and key-frame
    interval ``gop`` (frames; None: the encoder's own)."""
    cc.width, cc.height, cc.pix_fmt = width, height, "yuv420p"
    cc.time_base, cc.framerate = 1 / fps, fps
    opts = {}
    if codec in SOFTWARE:
        # x264's closed GOP; x265 quiet (it would print its banner and summary at every GOP's fresh encoder)
        own = dict(CLOSED_GOP) if codec == "libx264" else {"x265-params": "log-level=error"}
        if preset == "cppn":
            preset = PRESET_CPPN[0]
            if codec == "libx264":
                own["x264-params"] += ":" + PRESET_CPPN[1]
        options = dict(options or {})
        if "x264-params" in options:  # the caller's x264 options after ours (x264 takes the last of each)
            options["x264-params"] = own.get("x264-params", "") + ":" + options["x264-params"]
        opts = {"crf": str(int(crf)), "preset": preset, **own, **options}
        cc.thread_count = ENCODER_THREADS
        if gop:
            cc.gop_size = gop
    elif codec in NVENC:  # constant quality, NVENC's own presets (p1 fastest ... p7 best)
        opts = {"rc": "vbr", "cq": str(max(1, int(crf))), "b": "0", "preset": "p4"}
    cc.options = opts
    # BT.709, limited range: the usual HD tagging, so players show the colours we rendered
    cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1


class _AudioInterleaver:
    """The song's audio, encoded as AAC (192 kb/s) into ``container`` a little at a time, up to the time the video
    has reached, so the two streams interleave and the audio is never whole in memory.

    Parameters
    ----------
    container : av.container.OutputContainer
        Where the packets go; the AAC stream is added to it here.
    audio : Audio or AudioFile
        Anything with ``sr``, ``channels``, ``n_samples`` and ``blocks(size)``; read block by block
        (:data:`_AUDIO_BLOCK` samples).
    """

    def __init__(self, container, audio: Audio | AudioFile) -> None:
        self._container, self._audio = container, audio
        rate = audio.sr if audio.sr in _AAC_RATES else 48000  # AAC's rates; others are resampled by the encoder
        self._layout = "mono" if audio.channels == 1 else "stereo"
        self._stream = container.add_stream("aac", rate=rate)
        self._stream.layout = self._layout
        self._stream.bit_rate = 192_000
        self._stream.codec_context.options = dict(AAC_OPTIONS)
        self._pos = 0  # samples muxed so far
        self._blocks = None  # the source's block iterator, opened at the first call
        self._held = np.zeros((audio.channels, 0), dtype=np.float32)  # read but not muxed yet

    def mux_until(self, t: Fraction | None) -> None:
        """Encode the audio up to time ``t`` (seconds; None: to the end, and flush the encoder)."""
        import av

        a = self._audio
        if self._blocks is None:
            self._blocks = a.blocks(_AUDIO_BLOCK)
        end = a.n_samples if t is None else min(a.n_samples, int(t * a.sr))
        if t is not None and end - self._pos < _AUDIO_STEP:
            return
        while self._pos < end:
            if self._held.shape[1] == 0:
                self._held = next(self._blocks, None)
                if self._held is None:  # the source ended early: nothing more to mux
                    self._held = np.zeros((a.channels, 0), dtype=np.float32)
                    break
            take = min(end - self._pos, self._held.shape[1])
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(self._held[:, :take], dtype=np.float32), format="fltp", layout=self._layout
            )
            self._held = self._held[:, take:]
            af.sample_rate = a.sr
            af.pts = self._pos
            af.time_base = Fraction(1, a.sr)
            self._container.mux(self._stream.encode(af))
            self._pos += take
        if t is None:
            self._container.mux(self._stream.encode(None))
            self._blocks = None

    def close(self) -> None:
        """Close the source's reader (an AudioFile's) if it is still open."""
        if self._blocks is not None and hasattr(self._blocks, "close"):
            self._blocks.close()


class _EncoderThread:
    """A background thread that takes items from a bounded queue and hands each to ``work``, then calls ``finish``
    once it is sealed; an exception in either stops it and is raised again by the next :meth:`put` or :meth:`seal`.

    Parameters
    ----------
    work : callable
        Called with each item, in order, on the thread.
    finish : callable
        Called without arguments on the thread after the last item (not after an error or :meth:`stop`).
    path : Path
        The output, for the error messages.
    queue_size : int
        Items waiting at most; :meth:`put` blocks while the queue is full.
    """

    def __init__(self, work, finish, path: Path, queue_size: int) -> None:
        self._work, self._finish, self._path = work, finish, path
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._ended = False  # the end marker is queued
        self._thread = threading.Thread(target=self._run, name="neuromv-encoder", daemon=True)
        self._thread.start()

    def put(self, item) -> None:
        """Queue ``item``, blocking while the queue is full; raise the thread's error if it has stopped on one."""
        while True:
            self.raise_error()
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def end(self) -> None:
        """No more items: the thread finishes the queued ones and ``finish`` meanwhile (once; :meth:`seal` waits)."""
        while not self._ended and self._thread.is_alive():  # never block on a full queue behind a dead thread
            try:
                self._queue.put(_DONE, timeout=0.2)
                self._ended = True
            except queue.Full:
                continue

    def seal(self) -> None:
        """Let the thread finish the queued items and ``finish``; wait for it; raise its error if it had one."""
        self.end()
        self._thread.join()
        self.raise_error()

    def stop(self) -> None:
        """Stop at once: drop the queued items, skip ``finish``, and wait for the thread."""
        if self._thread.is_alive():
            self.error = self.error or OutputError("aborted")
            # unblock the thread: drain the queue and tell it to stop
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._queue.put(_DONE)
            self._thread.join()

    def raise_error(self) -> None:
        """Raise the thread's error, if any: a NeuroMVError as it is, anything else as an OutputError."""
        if self.error is not None:
            err = self.error
            if isinstance(err, NeuroMVError):
                raise err
            raise OutputError(f"{self._path}: encoding failed: {err}") from err

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _DONE or self.error is not None:
                    break
                self._work(item)
            if self.error is None:
                self._finish()
        except BaseException as e:
            self.error = e


class VideoWriter:
    """Write RGB frames and audio to a video file, atomically.

    Use as a context manager: leaving the block normally finishes the file and moves it into place; leaving it
    with an exception (including KeyboardInterrupt) deletes the partial file and leaves no output.

    Frames go through an :class:`_EncoderThread` (a bounded queue and one thread); the audio through an
    :class:`_AudioInterleaver`, which the thread calls after each frame; the file is an
    :class:`~neuromv._files.AtomicFile`.

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
        x264 preset (speed against size), one of :data:`X264_PRESETS`; 'cppn' (default) is :data:`PRESET_CPPN`.
    overwrite : bool
        Replace an existing file at ``path``. Without it, the finished file is hard-linked into place, so a file
        that another writer made meanwhile is never replaced (:class:`~neuromv.errors.OutputError` instead).
    inputs : tuple of paths
        Files that must never be overwritten (the song, the image...).
    queue_size : int
        Frames waiting for the encoder at most.
    options : dict, optional
        The x264/x265 encoder's own options over the usual ones.
    gop : float, optional
        Seconds of video per group of pictures (software encoders: :data:`SOFTWARE`): every ``round(gop * fps)``
        frames the encoder is flushed and a fresh one, with the same settings, takes the next frames, so each GOP
        opens with an IDR frame (the encoder's key-frame interval is the GOP too) and its bytes depend on its own
        frames only, as a distributed encoder's chunks do. A video cut between GOPs into segments, each written by
        its own VideoWriter and joined by :func:`concat_videos`, is then the same stream, bit for bit, as one
        written whole (:mod:`neuromv.segments`). None (default): one encoder, its own key-frame interval.

    Examples
    --------
    >>> with VideoWriter("out.mp4", 64, 64, 30) as w:  # doctest: +SKIP
    ...     for frame in frames:            # np.ndarray [shape=(64, 64, 3), dtype=uint8]
    ...         w.write(frame)
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float | Fraction, *,
                 audio: Audio | AudioFile | None = None, codec: str = "libx264", crf: int = 18,
                 preset: str = "cppn",
                 overwrite: bool = False, inputs: tuple = (), queue_size: int = 8,
                 options: dict | None = None, gop: float | None = None) -> None:
        import av

        self.path = check_output_path(path, inputs=inputs, overwrite=overwrite)
        self.fps = _check_args(width, height, fps, codec, crf, preset)
        self.width, self.height = int(width), int(height)
        self._codec = (codec, crf, preset, options)
        self._gop = gop_frames(gop, self.fps) if codec in SOFTWARE else None
        self.audio = audio
        self.frames_written = 0
        self._closed = self._ended = False  # ended: no more frames (end())
        self._container = self._interleaver = self._encoder = None

        self._file = AtomicFile(self.path, overwrite=overwrite)  # put in place by close(): see neuromv._files
        try:
            fmt = CONTAINERS[self.path.suffix.lower()]
            muxing = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
            self._container = av.open(os.fspath(self._file.tmp), "w", format=fmt, options=muxing)
            self._vstream = _add_video_stream(self._container, codec, self.width, self.height, self.fps, crf, preset,
                                              options, self._gop)
            self._cc = self._vstream.codec_context  # the encoder of the GOP in progress
            if audio is not None:
                self._interleaver = _AudioInterleaver(self._container, audio)
            self._encoder = _EncoderThread(self._encode, self._flush, self.path, queue_size)
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
        if self._closed or self._ended:
            raise OutputError(f"{self.path}: writer is {'closed' if self._closed else 'ended'}")
        frame = np.asarray(frame)
        i420 = (self.height * 3 // 2, self.width)
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width, 3) and (
                frame.shape != i420 or self.height % 2 or self.width % 2):
            raise ParameterError(f"frame must be uint8 of shape {(self.height, self.width, 3)} (RGB) or {i420} "
                                 f"(I420), not {frame.dtype} {frame.shape}")
        self._encoder.put(frame)

    def end(self) -> None:
        """No more frames: the encoder thread flushes the video encoder and muxes the rest of the audio while the
        caller goes on; :meth:`close` then waits for it and finishes the file. :meth:`write` refuses frames after
        it; calling it again does nothing."""
        if not self._closed and not self._ended:
            self._ended = True
            self._encoder.end()

    def close(self) -> Path:
        """Finish the file (flush encoders, mux the rest of the audio) and move it into place. Returns the path."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            self._encoder.seal()
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
        if self._closed and not self._file.tmp.exists():
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
    def _encode(self, item: np.ndarray) -> None:
        """On the encoder thread: encode and mux one frame, then the audio up to its end."""
        import av

        if item.ndim == 2:  # I420 already
            vf = i420_frame(item, in_place=self._codec[0] == "libx264")
        else:
            vf = av.VideoFrame.from_ndarray(item, format="rgb24")
            vf = vf.reformat(format="yuv420p", dst_colorspace=av.video.reformatter.Colorspace.ITU709)
        vf.pts = self.frames_written
        vf.time_base = 1 / self.fps
        if self._gop and self.frames_written and self.frames_written % self._gop == 0:
            self._next_gop()
        self._mux(self._cc.encode(vf))
        self.frames_written += 1
        if self._interleaver is not None:
            self._interleaver.mux_until(self.frames_written / self.fps)

    def _mux(self, packets) -> None:
        for p in packets:
            p.stream = self._vstream
        self._container.mux(packets)

    def _next_gop(self) -> None:
        """On the encoder thread: flush the GOP's encoder and start a fresh one for the next GOP."""
        self._mux(self._cc.encode(None))
        codec, crf, preset, options = self._codec
        cc = _encoder(codec)
        _configure(cc, codec, self.width, self.height, self.fps, crf, preset, options, self._gop)
        cc.flags = self._vstream.codec_context.flags  # the container's: global header (SPS/PPS) for mp4
        _open_encoder(cc, codec)
        if bytes(cc.extradata or b"") != bytes(self._vstream.codec_context.extradata or b""):
            raise OutputError(f"{self.path}: a fresh {codec} encoder made other SPS/PPS than the first")
        self._cc = cc

    def _flush(self) -> None:
        """On the encoder thread, after the last frame: flush the video encoder, then the rest of the audio."""
        self._mux(self._cc.encode(None))
        if self._interleaver is not None:
            self._interleaver.mux_until(None)

    def _cleanup(self) -> None:
        if self._encoder is not None:
            self._encoder.stop()
        if self._interleaver is not None:
            self._interleaver.close()  # an AudioFile's reader
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the partial file is deleted anyway
                pass
        self._file.discard()


def concat_videos(parts, output: str | os.PathLike, *, audio: Audio | AudioFile | None = None,
                  overwrite: bool = False, inputs: tuple = ()) -> tuple[Path, int]:
    """Join video-only files into ``output`` without re-encoding, and mux the song's audio in once.

    Each part must be what one encoder's settings make (same codec, size, pixel format, and so the same
    SPS/PPS: :class:`VideoWriter` with ``audio=None``, libx264 or libx265), start with a key frame and refer
    to no frame before it (a closed GOP). Their packets are copied one part after another, each part's
    timestamps moved by the length of the parts before it (so frame k of part i plays where it would in one
    file: no gap, no repeated frame); the audio is encoded once (AAC, 192 kb/s) and interleaved with the video as
    :class:`VideoWriter` does. The file is written atomically.

    Parameters
    ----------
    parts : sequence of paths
        The parts in order (.mp4 files, video only).
    output : str or os.PathLike
        The video to write (.mp4, .m4v, .mov or .mkv).
    audio : Audio or AudioFile, optional
        The sound track, read block by block.
    overwrite, inputs : see :class:`VideoWriter`

    Returns
    -------
    (Path, int)
        The output and its number of frames.

    Raises
    ------
    OutputError
        No parts, a part that is not a video, starts without a key frame or was encoded with other settings than
        the first; or the output cannot be written. No file is left behind.
    """
    import av

    parts = [Path(p) for p in parts]
    path = check_output_path(output, inputs=inputs, overwrite=overwrite)
    if not parts:
        raise OutputError(f"{path}: no video parts to join")
    file = AtomicFile(path, overwrite=overwrite)
    container = interleaver = None
    frames = 0
    try:
        fmt = CONTAINERS[path.suffix.lower()]
        container = av.open(os.fspath(file.tmp), "w", format=fmt,
                            options={"movflags": "+faststart"} if fmt in ("mp4", "mov") else {})
        out = first = None
        end = Fraction(0)  # where the parts so far end, in seconds
        for part in parts:
            with av.open(os.fspath(part)) as src:
                if not src.streams.video:
                    raise OutputError(f"{part}: has no video stream to join")
                ins = src.streams.video[0]
                cc = ins.codec_context
                key = (cc.name, ins.width, ins.height, cc.pix_fmt, bytes(cc.extradata or b""))
                if out is None:
                    out, first = container.add_stream_from_template(ins), key
                    if audio is not None:  # after the video stream, as VideoWriter orders them
                        interleaver = _AudioInterleaver(container, audio)
                elif key != first:
                    raise OutputError(f"{part}: encoded with other settings than {parts[0].name} (codec, size, pixel "
                                      "format or SPS/PPS); cannot join without re-encoding")
                tb = ins.time_base
                shift = end / tb
                if shift.denominator != 1:
                    raise OutputError(f"{part}: its time base {tb} cannot place it at {float(end):.6f} s exactly")
                shift, n, stop = int(shift), 0, end
                for pkt in src.demux(ins):
                    if pkt.dts is None and pkt.pts is None:  # the demuxer's empty flush packet
                        continue
                    if n == 0 and not pkt.is_keyframe:
                        raise OutputError(f"{part}: does not start with a key frame; cannot join it")
                    pkt.pts += shift
                    pkt.dts += shift
                    stop = max(stop, (pkt.pts + pkt.duration) * tb)
                    pkt.stream = out
                    container.mux(pkt)
                    n += 1
                    if interleaver is not None:
                        interleaver.mux_until(stop)
                frames += n
                end = stop
        if interleaver is not None:
            interleaver.mux_until(None)
        container.close()
        file.commit()
    except BaseException as e:
        if interleaver is not None:
            interleaver.close()
        if container is not None:
            try:
                container.close()
            except Exception:  # the partial file is deleted anyway
                pass
        file.discard()
        if isinstance(e, av.FFmpegError):
            raise OutputError(f"{path}: joining the parts failed: {summary(e)}") from e
        raise
    log.debug("joined %d parts into %s (%d frames)", len(parts), path, frames)
    return path, frames
