"""Audio in: decode any common audio file with PyAV (FFmpeg's libraries).

This is the one module that reads audio files. Everything after it works on :class:`Audio` arrays, or, for songs
of any length in constant memory, on :class:`AudioFile`, which has the same attributes and re-reads the file block
by block each time its :meth:`~AudioFile.blocks` are asked for.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioError, ParameterError, summary

__all__ = ["Audio", "AudioFile", "AudioReader", "WavWriter", "load_audio", "check_audible", "save_wav"]

log = logging.getLogger(__name__)

# A file whose decoded length falls this far short of the length its header declares is truncated.
_TRUNCATION_TOLERANCE_S = 0.5
_TRUNCATION_TOLERANCE_FRACTION = 0.02


@dataclass(frozen=True)
class Audio:
    """Decoded audio.

    Attributes
    ----------
    samples : np.ndarray [shape=(channels, n_samples), dtype=float32]
        Samples in [-1, 1]; one row per channel (1 or 2 rows).
    sr : int
        Sample rate in Hz.
    """

    samples: np.ndarray
    sr: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 2 or self.samples.shape[0] not in (1, 2):
            raise ParameterError(f"audio samples must have shape (1 or 2, n), not {self.samples.shape}")
        if self.sr <= 0:
            raise ParameterError(f"sample rate must be positive, not {self.sr}")

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.sr

    def blocks(self, size: int = 1 << 16) -> Iterator[np.ndarray]:
        """The samples in order, as views of at most ``size`` samples: np.ndarray [shape=(channels, k)]."""
        return (self.samples[:, i:i + size] for i in range(0, self.n_samples, size))

    def mono(self) -> np.ndarray:
        """The channels averaged: np.ndarray [shape=(n_samples,), dtype=float32]."""
        return self.samples.mean(axis=0, dtype=np.float32)


def _open(path: Path):
    import av

    from ._files import open_input_file

    with open_input_file(path, "audio") as f:  # a regular file: never a FIFO or a device
        _check_wav_size(path, f)
    try:
        return av.open(os.fspath(path))
    except av.FFmpegError as e:
        raise AudioError(f"{path}: not a readable audio file ({summary(e)})") from e


#: WAV data sizes that mean "unknown" (a stream written before its length was known): the file is read to its end.
_WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
#: Chunks looked at before the data chunk (a WAV has a handful: fmt, LIST, fact, ...).
_WAV_MAX_CHUNKS = 64


def _check_wav_size(path: Path, f) -> None:
    """A RIFF/WAVE file whose data chunk declares more bytes than the file holds is truncated.

    FFmpeg measures a WAV's length from the file's size, so it would decode what is there without a word; this
    compares the header's declared data size with the file, with the tolerance used for other formats'
    truncation. A data size of 0 or 0xFFFFFFFF is a "length unknown" marker (streamed WAVs; RF64 keeps the real
    size in its ds64 chunk, which is used when present); trailing chunks after the data are fine.
    """
    import struct

    head = f.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RF64"):
        return  # not a WAV: FFmpeg decides
    size = os.fstat(f.fileno()).st_size
    pos, byte_rate, ds64 = 12, 0, None
    for _ in range(_WAV_MAX_CHUNKS):
        f.seek(pos)
        hdr = f.read(8)
        if len(hdr) < 8:
            return
        cid, n = hdr[:4], struct.unpack("<I", hdr[4:])[0]
        if cid == b"fmt " and n >= 16:
            byte_rate = struct.unpack("<I", f.read(16)[8:12])[0]
        elif cid == b"ds64" and n >= 16:
            ds64 = struct.unpack("<Q", f.read(16)[8:16])[0]
        elif cid == b"data":
            declared = ds64 if (head[:4] == b"RF64" and n == 0xFFFFFFFF and ds64) else n
            if declared in _WAV_UNKNOWN_SIZES or not byte_rate:
                return
            held = size - (pos + 8)
            want_s, held_s = declared / byte_rate, max(0, held) / byte_rate
            if want_s - held_s > max(_TRUNCATION_TOLERANCE_S, _TRUNCATION_TOLERANCE_FRACTION * want_s):
                raise AudioError(f"{path}: truncated or corrupt: holds {held_s:.2f} s of the {want_s:.2f} s of "
                                 "audio its WAV header declares")
            return
        pos += 8 + n + (n & 1)  # chunks are padded to an even size


class AudioReader:
    """Decode an audio file block by block, so that memory does not grow with its length.

    Parameters are those of :func:`load_audio`. Iterating yields blocks ``np.ndarray [shape=(channels, k),
    dtype=float32]`` in order; errors (corrupt data, truncation, no samples in the excerpt) are raised by the
    iteration as :class:`AudioError`. It can be iterated once. Use as a context manager, or call :meth:`close`.

    Attributes
    ----------
    sr : int
        The rate of the blocks.
    channels : int
        1 or 2.
    duration : float or None
        The length the file declares, in seconds, from ``start`` and capped by ``duration`` (None if unknown).
    n_samples : int
        Samples yielded so far (per channel).
    """

    def __init__(self, path: str | os.PathLike, *, sr: int | None = None, mono: bool = False, start: float = 0.0,
                 duration: float | None = None) -> None:
        import av

        self.path = Path(path)
        if not (math.isfinite(start) and start >= 0):
            raise ParameterError(f"start must be a finite number of seconds >= 0, not {start}")
        if duration is not None and not (math.isfinite(duration) and duration > 0):
            raise ParameterError(f"duration must be a positive number of seconds, not {duration}")
        if sr is not None and sr <= 0:
            raise ParameterError(f"sample rate must be positive, not {sr}")
        self._container = _open(self.path)
        try:
            if not self._container.streams.audio:
                raise AudioError(f"{self.path}: has no audio stream")
            self._stream = stream = self._container.streams.audio[0]
            in_channels = stream.codec_context.channels or 2
            self.channels = 1 if (mono or in_channels == 1) else 2
            rate = sr or stream.codec_context.sample_rate or stream.rate
            if not rate:
                raise AudioError(f"{self.path}: audio stream declares no sample rate")
            self.sr = int(rate)
            self._resampler = av.AudioResampler(format="fltp", layout="mono" if self.channels == 1 else "stereo",
                                                rate=self.sr)
        except BaseException:
            self._container.close()
            raise
        self._declared = None
        if stream.duration is not None and stream.time_base is not None:
            self._declared = float(stream.duration * stream.time_base)
        elif self._container.duration:
            self._declared = self._container.duration / 1e6
        self.duration = None if self._declared is None else max(0.0, self._declared - start)
        if self.duration is not None and duration is not None:
            self.duration = min(self.duration, duration)
        self._start, self._keep_s = start, duration
        self.n_samples = 0
        self._read = False

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        if self._read:
            raise ParameterError(f"{self.path}: an AudioReader can be read only once; open another")
        self._read = True

        rate, path = self.sr, self.path
        skip = int(round(self._start * rate))
        keep = None if self._keep_s is None else int(round(self._keep_s * rate))
        decoded = 0  # samples at the output rate, from the beginning of the file

        def take(frames) -> Iterator[np.ndarray]:
            nonlocal decoded, skip
            for f in frames:
                a = f.to_ndarray()
                decoded += a.shape[1]
                if skip >= a.shape[1]:
                    skip -= a.shape[1]
                    continue
                a = a[:, skip:]
                skip = 0
                if keep is not None:
                    a = a[:, : keep - self.n_samples]
                if a.shape[1]:
                    self.n_samples += a.shape[1]
                    yield np.ascontiguousarray(a, dtype=np.float32)

        reached_end = True
        try:
            for frame in self._container.decode(self._stream):
                frame.pts = None  # timestamps are not needed; counting samples is exact
                yield from take(self._resampler.resample(frame))
                if keep is not None and self.n_samples >= keep:
                    reached_end = False
                    break
            else:
                yield from take(self._resampler.resample(None))
        except av.FFmpegError as e:
            raise AudioError(f"{path}: corrupt audio after {decoded / rate:.2f} s ({summary(e)})") from e
        if reached_end and self._declared is not None:
            missing = self._declared - decoded / rate
            if missing > max(_TRUNCATION_TOLERANCE_S, _TRUNCATION_TOLERANCE_FRACTION * self._declared):
                raise AudioError(f"{path}: truncated or corrupt: decoded {decoded / rate:.2f} s of the "
                                 f"{self._declared:.2f} s its header declares")
        if self.n_samples == 0:
            if decoded == 0:
                raise AudioError(f"{path}: contains no audio samples")
            raise AudioError(f"{path}: no audio after start={self._start:g} s (the file lasts {decoded / rate:.2f} s)")

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AudioFile:
    """An audio file (or an excerpt of it) that is never held in memory: the streaming counterpart of :class:`Audio`.

    Opening it decodes it once, block by block, to count its samples and to check it (readable, complete, finite
    and, unless ``allow_silence``, not digital silence), so that a bad song fails before any slow work. Every call
    of :meth:`blocks` decodes it again from the start: the same samples each time (decoding is deterministic).

    Parameters
    ----------
    path, sr, mono, start, duration
        As for :func:`load_audio`.
    allow_silence : bool
        Accept a file whose samples are all zero.

    Attributes
    ----------
    path : Path
    sr : int
    channels : int
    n_samples : int
        Per channel.
    duration : float
        Seconds.

    Raises
    ------
    AudioError, ParameterError
        As :func:`load_audio`, and :class:`AudioError` for digital silence or samples that are not finite.
    """

    def __init__(self, path: str | os.PathLike, *, sr: int | None = None, mono: bool = False, start: float = 0.0,
                 duration: float | None = None, allow_silence: bool = False) -> None:
        self.path = Path(path)
        self._options = dict(sr=sr, mono=mono, start=start, duration=duration)
        heard = False
        with AudioReader(self.path, **self._options) as reader:
            for x in reader:
                if not np.all(np.isfinite(x)):
                    raise AudioError(f"{self.path}: contains NaN or infinite samples")
                heard = heard or bool(np.any(x))
        if not (heard or allow_silence):
            raise AudioError(f"{self.path}: is digital silence (every sample is zero); nothing to work with")
        self.sr, self.channels, self.n_samples = reader.sr, reader.channels, reader.n_samples

    @property
    def options(self) -> dict:
        """How the file is read: ``{'sr', 'mono', 'start', 'duration'}`` as given (a copy)."""
        return dict(self._options)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.sr

    def blocks(self, size: int = 1 << 16) -> Iterator[np.ndarray]:
        """Decode the samples again, in order: np.ndarray [shape=(channels, k), dtype=float32], ``k <= size``.

        :attr:`n_samples` samples in all: should the file have become shorter since it was opened, an
        :class:`AudioError` is raised; samples beyond :attr:`n_samples` are not read.
        """
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ParameterError(f"block size must be a positive integer, not {size!r}")
        sent = 0
        with AudioReader(self.path, **self._options) as reader:
            pending: list[np.ndarray] = []
            held = 0
            for x in reader:
                x = x[:, : self.n_samples - sent - held]
                pending.append(x)
                held += x.shape[1]
                while held >= size:
                    joined = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
                    yield joined[:, :size]
                    sent += size
                    rest = joined[:, size:]
                    pending, held = ([rest], rest.shape[1]) if rest.shape[1] else ([], 0)
            if held:
                yield np.concatenate(pending, axis=1)
                sent += held
        if sent != self.n_samples:
            raise AudioError(f"{self.path}: changed while it was being read ({sent} samples, not {self.n_samples})")

    def load(self) -> Audio:
        """The whole file in memory."""
        return Audio(np.concatenate(list(self.blocks()), axis=1), self.sr)


def load_audio(
    path: str | os.PathLike,
    *,
    sr: int | None = None,
    mono: bool = False,
    start: float = 0.0,
    duration: float | None = None,
) -> Audio:
    """Decode an audio file (wav, mp3, flac, ogg vorbis/opus, m4a/AAC, ... anything FFmpeg reads).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    sr : int, optional
        Resample to this rate. Default: keep the file's rate.
    mono : bool
        Average the channels into one. Otherwise mono stays mono and anything with two or more channels becomes
        stereo (FFmpeg's standard downmix).
    start : float
        Skip this many seconds from the beginning.
    duration : float, optional
        Keep at most this many seconds from ``start``. Default: to the end.

    Returns
    -------
    Audio
        ``samples`` has shape (1 or 2, n_samples), float32.

    Raises
    ------
    AudioError
        The file is missing, a directory, empty, not audio, corrupt or truncated, or has no samples in the
        requested excerpt.
    ParameterError
        ``start``, ``duration`` or ``sr`` is impossible.

    See Also
    --------
    AudioReader : the same, block by block.
    """
    with AudioReader(path, sr=sr, mono=mono, start=start, duration=duration) as reader:
        chunks = list(reader)
    samples = np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32)
    log.debug("decoded %s: %d channel(s), %d Hz, %.2f s", path, samples.shape[0], reader.sr,
              samples.shape[1] / reader.sr)
    return Audio(samples, reader.sr)


def check_audible(audio: Audio, *, name: str = "audio") -> None:
    """Raise :class:`AudioError` if ``audio`` is digital silence (every sample exactly zero) or not finite."""
    if not np.all(np.isfinite(audio.samples)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    if not np.any(audio.samples):
        raise AudioError(f"{name}: is digital silence (every sample is zero); nothing to visualize")


class WavWriter:
    """Write 16-bit PCM WAV with PyAV, block by block. Samples are clipped to [-1, 1].

    This writes ``path`` directly; callers wrap it in :func:`neuromv._files.atomic_file` (as :func:`save_wav`).

    Parameters
    ----------
    path : str or os.PathLike
    sr : int
    channels : {1, 2}
    """

    def __init__(self, path: str | os.PathLike, sr: int, channels: int) -> None:
        import av

        if channels not in (1, 2):
            raise ParameterError(f"WAV output takes 1 or 2 channels, not {channels}")
        self.sr, self.channels = int(sr), channels
        self._layout = "mono" if channels == 1 else "stereo"
        self._container = av.open(os.fspath(path), "w", format="wav")
        self._stream = self._container.add_stream("pcm_s16le", rate=self.sr, layout=self._layout)

    def write(self, samples: np.ndarray) -> None:
        """Append ``samples`` [shape=(channels, k)]."""
        import av

        if samples.ndim != 2 or samples.shape[0] != self.channels:
            raise ParameterError(f"WAV writer for {self.channels} channel(s) got samples of shape {samples.shape}")

        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
        block = 1 << 16
        for i in range(0, pcm.shape[1], block):
            chunk = np.ascontiguousarray(pcm[:, i:i + block].T).reshape(1, -1)  # packed s16
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=self._layout)
            frame.sample_rate = self.sr
            self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if self._container is None:
            return
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        elif self._container is not None:  # the file is thrown away: close without flushing
            self._container.close()
            self._container = None


def save_wav(path: str | os.PathLike, audio: Audio) -> Path:
    """Write ``audio`` as 16-bit PCM WAV with PyAV, atomically (a temporary file beside it, then a move).

    Samples are clipped to [-1, 1]. An existing file is replaced; callers check for that first.

    Returns
    -------
    Path
    """
    from ._files import atomic_file

    path = Path(path)
    if audio.channels > 2:
        raise ParameterError(f"WAV output takes 1 or 2 channels, not {audio.channels}")
    with atomic_file(path) as tmp, WavWriter(tmp, audio.sr, audio.channels) as w:
        w.write(audio.samples)
    return path
