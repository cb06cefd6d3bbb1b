"""Audio in: decode any common audio file with PyAV (FFmpeg's libraries).

This is the one module that reads audio files. Everything after it works on :class:`Audio` arrays.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioError, ParameterError

__all__ = ["Audio", "load_audio", "check_audible"]

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

    def mono(self) -> np.ndarray:
        """The channels averaged: np.ndarray [shape=(n_samples,), dtype=float32]."""
        return self.samples.mean(axis=0, dtype=np.float32)


def _open(path: Path):
    import av

    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    try:
        return av.open(os.fspath(path))
    except av.FFmpegError as e:
        raise AudioError(f"{path}: not a readable audio file ({_reason(e)})") from e


def _reason(e: Exception) -> str:
    strerror = getattr(e, "strerror", None)
    return str(strerror or e).splitlines()[0] if (strerror or str(e)) else type(e).__name__


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
    """
    import av

    path = Path(path)
    if not (math.isfinite(start) and start >= 0):
        raise ParameterError(f"start must be a finite number of seconds >= 0, not {start}")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ParameterError(f"duration must be a positive number of seconds, not {duration}")
    if sr is not None and sr <= 0:
        raise ParameterError(f"sample rate must be positive, not {sr}")

    container = _open(path)
    try:
        if not container.streams.audio:
            raise AudioError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        in_channels = stream.codec_context.channels or 2
        layout = "mono" if (mono or in_channels == 1) else "stereo"
        rate = sr or stream.codec_context.sample_rate or stream.rate
        if not rate:
            raise AudioError(f"{path}: audio stream declares no sample rate")
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)

        skip = int(round(start * rate))
        keep = None if duration is None else int(round(duration * rate))
        chunks: list[np.ndarray] = []
        kept = 0
        decoded = 0  # samples at the output rate, from the beginning of the file
        reached_end = True

        def take(frames) -> bool:
            """Append resampled frames; False once enough is kept."""
            nonlocal kept, decoded, skip
            for f in frames:
                a = f.to_ndarray()
                decoded += a.shape[1]
                if skip >= a.shape[1]:
                    skip -= a.shape[1]
                    continue
                a = a[:, skip:]
                skip = 0
                if keep is not None and kept + a.shape[1] >= keep:
                    chunks.append(a[:, : keep - kept])
                    kept = keep
                    return False
                chunks.append(a)
                kept += a.shape[1]
            return True

        try:
            for frame in container.decode(stream):
                frame.pts = None  # timestamps are not needed; counting samples is exact
                if not take(resampler.resample(frame)):
                    reached_end = False
                    break
            else:
                take(resampler.resample(None))
        except av.FFmpegError as e:
            raise AudioError(f"{path}: corrupt audio after {decoded / rate:.2f} s ({_reason(e)})") from e

        if reached_end and stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
            missing = declared - decoded / rate
            if missing > max(_TRUNCATION_TOLERANCE_S, _TRUNCATION_TOLERANCE_FRACTION * declared):
                raise AudioError(
                    f"{path}: truncated or corrupt: decoded {decoded / rate:.2f} s of the {declared:.2f} s "
                    "its header declares"
                )
    finally:
        container.close()

    if kept == 0:
        if decoded == 0:
            raise AudioError(f"{path}: contains no audio samples")
        raise AudioError(f"{path}: no audio after start={start:g} s (the file lasts {decoded / rate:.2f} s)")
    samples = np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32)
    log.debug("decoded %s: %d channel(s), %d Hz, %.2f s", path, samples.shape[0], rate, samples.shape[1] / rate)
    return Audio(samples, int(rate))


def check_audible(audio: Audio, *, name: str = "audio") -> None:
    """Raise :class:`AudioError` if ``audio`` is digital silence (every sample exactly zero) or not finite."""
    if not np.all(np.isfinite(audio.samples)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    if not np.any(audio.samples):
        raise AudioError(f"{name}: is digital silence (every sample is zero); nothing to visualize")


def save_wav(path: str | os.PathLike, audio: Audio) -> Path:
    """Write ``audio`` as 16-bit PCM WAV with PyAV, atomically (a temporary file beside it, then a move).

    Samples are clipped to [-1, 1]. An existing file is replaced; callers check for that first.

    Returns
    -------
    Path
    """
    import av

    from ._files import atomic_file

    path = Path(path)
    pcm = (np.clip(audio.samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)  # (C, n)
    layout = "mono" if audio.channels == 1 else "stereo"
    if audio.channels > 2:
        raise ParameterError(f"WAV output takes 1 or 2 channels, not {audio.channels}")
    with atomic_file(path) as tmp, av.open(tmp, "w", format="wav") as c:
        s = c.add_stream("pcm_s16le", rate=audio.sr, layout=layout)
        block = 1 << 16
        for i in range(0, audio.n_samples, block):
            chunk = np.ascontiguousarray(pcm[:, i:i + block].T).reshape(1, -1)  # packed s16
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate = audio.sr
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    return path
