"""Features: one latent vector z per video frame, from a Mel spectrogram (librosa).

Pure functions of arrays (and of iterables of blocks, so that a song of any length is analysed in constant
memory); no I/O.

Frame ``i`` of the video shows time ``i / fps``; its mel column is computed with a window of ``2 / fps`` seconds
centred on that time (hop = ``1 / fps``). There are ``ceil(duration * fps)`` frames, so the video never ends
before the music.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction

import numpy as np

from .errors import ParameterError
from .limits import ANALYSIS_SR as _ANALYSIS_SR, MAX_FPS, MIN_FPS, check_mels, number

__all__ = [
    "ANALYSIS_SR",
    "n_video_frames",
    "mel_power",
    "MelStream",
    "latents_from_blocks",
    "song_db",
    "latents_from_db",
    "power_to_db",
    "standardize",
    "normalize",
    "smooth_release",
    "song_latents",
    "AnalysisBlocks",
]

#: Sample rate at which features are computed (Hz): :data:`neuromv.limits.ANALYSIS_SR`, where settings check n_mels.
ANALYSIS_SR = _ANALYSIS_SR

#: Floor of the dB scale, below the song's own peak.
TOP_DB = 80.0


def _check_fps(fps: float) -> Fraction:
    """fps within :data:`neuromv.limits.MIN_FPS` to ``MAX_FPS`` (the window and filter bank grow as 1 / fps)."""
    number("fps", float(fps) if isinstance(fps, (Fraction, np.floating, np.integer)) else fps, MIN_FPS, MAX_FPS)
    return Fraction(fps).limit_denominator(1001)


def n_video_frames(n_samples: int, sr: int, fps: float) -> int:
    """Number of video frames for ``n_samples`` of audio at ``sr``: ``ceil(duration * fps)``, computed exactly."""
    return math.ceil(Fraction(n_samples) * _check_fps(fps) / sr)


def mel_power(y: np.ndarray, sr: int, *, fps: float = 30, n_mels: int = 32) -> np.ndarray:
    """Mel power spectrogram sampled once per video frame.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,)]
        Mono audio.
    sr : int
        Its sample rate.
    fps : float
        Video frame rate. Hop = 1/fps s, window = 2/fps s (Hann), centred on each frame's time.
    n_mels : int
        Number of mel bands (the size of z).

    Returns
    -------
    np.ndarray [shape=(n_mels, n_frames), dtype=float32]
        Power; ``n_frames = ceil(len(y) / sr * fps)``.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ParameterError(f"y must be a non-empty 1-D array, not shape {y.shape}")
    mel = MelStream(sr, fps=fps, n_mels=n_mels)
    mel.feed(y)
    return mel.finish()


class MelStream:
    """:func:`mel_power` block by block: feed mono audio in pieces of any size, get the same spectrogram.

    The result equals ``librosa.feature.melspectrogram(y, sr, n_fft=2 * hop, hop_length=hop, window='hann',
    center=True, power=2, fmax=sr / 2)`` on the whole signal (sampled at the exact frame times when ``sr / fps``
    is not a whole number), while only one block and one window of audio are held.

    Parameters
    ----------
    sr : int
    fps : float
    n_mels : int

    Examples
    --------
    >>> mel = MelStream(22050, fps=30, n_mels=16)
    >>> for block in np.split(np.zeros(22050, np.float32), 4):
    ...     mel.feed(block)
    >>> mel.finish().shape
    (16, 30)
    """

    def __init__(self, sr: int, *, fps: float = 30, n_mels: int = 32) -> None:
        import librosa

        self.fps = _check_fps(fps)
        if isinstance(sr, bool) or not isinstance(sr, (int, float, np.number)) or not sr > 0 or sr != int(sr):
            raise ParameterError(f"sample rate must be a positive whole number of Hz, not {sr!r}")
        check_mels(int(n_mels) if isinstance(n_mels, np.integer) else n_mels, self.fps, int(sr))
        self.sr, self.n_mels = int(sr), int(n_mels)
        self._hop_exact = Fraction(self.sr) / self.fps
        self.hop = max(1, round(self._hop_exact))
        self.n_fft = 2 * self.hop
        self._basis = librosa.filters.mel(sr=self.sr, n_fft=self.n_fft, n_mels=self.n_mels, fmax=self.sr / 2)
        self._buf = np.zeros(self.n_fft // 2, dtype=np.float32)  # center=True: half a window of silence first
        self._cols: list[np.ndarray] = []
        self.n_samples = 0
        self._done = False

    def feed(self, y: np.ndarray) -> None:
        """Add the next samples: np.ndarray [shape=(k,)], mono."""
        if self._done:
            raise ParameterError("MelStream: finish() was already called")
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        self.n_samples += y.size
        self._buf = np.concatenate([self._buf, y])
        self._columns()

    def finish(self) -> np.ndarray:
        """The spectrogram of everything fed.

        Returns
        -------
        np.ndarray [shape=(n_mels, n_frames), dtype=float32]
            Power; ``n_frames = ceil(n_samples / sr * fps)``.
        """
        if self.n_samples == 0:
            raise ParameterError("MelStream: no samples were fed")
        if not self._done:
            self._done = True
            length = max(self.n_samples, self.n_fft)  # very short clips are padded to one full window
            tail = length - self.n_samples + self.n_fft // 2  # and centre padding at the end
            self._buf = np.concatenate([self._buf, np.zeros(tail, dtype=np.float32)])
            self._columns()
            self._S = np.concatenate(self._cols, axis=1)[:, : 1 + length // self.hop]
            self._cols = []
        S = self._S
        n_frames = n_video_frames(self.n_samples, self.sr, self.fps)
        if self._hop_exact == self.hop:
            cols = S[:, :n_frames]
            if cols.shape[1] < n_frames:  # cannot happen with centred windows, but never return too few frames
                cols = np.pad(cols, ((0, 0), (0, n_frames - cols.shape[1])), mode="edge")
            return np.ascontiguousarray(cols)
        # Non-integer hop (e.g. 24 fps at 22050 Hz): sample the columns at the exact frame times.
        pos = np.arange(n_frames) * float(self._hop_exact / self.hop)
        col_idx = np.arange(S.shape[1])
        return np.stack([np.interp(pos, col_idx, band) for band in S]).astype(np.float32)

    def _columns(self) -> None:
        """Turn every complete window in the buffer into a mel column; keep the rest."""
        import librosa

        n = 0 if self._buf.size < self.n_fft else 1 + (self._buf.size - self.n_fft) // self.hop
        if n == 0:
            return
        D = librosa.stft(self._buf[: (n - 1) * self.hop + self.n_fft], n_fft=self.n_fft, hop_length=self.hop,
                         window="hann", center=False)
        self._cols.append((self._basis @ (np.abs(D) ** 2)).astype(np.float32))
        self._buf = self._buf[n * self.hop:].copy()


def power_to_db(S: np.ndarray, *, top_db: float = TOP_DB) -> np.ndarray:
    """Power to dB relative to the spectrogram's own peak, floored at ``-top_db``.

    Relative to the peak, a quiet song and a loud song give the same values. Digital silence gives
    ``-top_db`` everywhere (no division by zero).

    Parameters
    ----------
    S : np.ndarray [shape=(n_mels, n_frames)]
        Power spectrogram (non-negative).

    Returns
    -------
    np.ndarray [shape=(n_mels, n_frames), dtype=float32]
        Values in [-top_db, 0].
    """
    S = np.asarray(S, dtype=np.float64)
    peak = float(S.max()) if S.size else 0.0
    if not (peak > 0 and math.isfinite(peak)):
        return np.full(S.shape, -top_db, dtype=np.float32)
    floor = peak * 10.0 ** (-top_db / 10.0)
    return (10.0 * np.log10(np.maximum(S, floor) / peak)).astype(np.float32)


def standardize(db: np.ndarray) -> np.ndarray:
    """Remove each band's mean over time and divide by the total standard deviation.

    Afterwards ``sqrt(mean_t ||z_t||^2) == 1`` whatever the number of bands, so the latents are well scaled for
    the CPPN's N(0, 1) weights. A constant input (silence) gives zeros.

    Parameters
    ----------
    db : np.ndarray [shape=(n_mels, n_frames)]

    Returns
    -------
    np.ndarray [shape=(n_mels, n_frames), dtype=float32]
    """
    db = np.asarray(db, dtype=np.float64)
    db = db - db.mean(axis=1, keepdims=True)
    total = math.sqrt(float(np.mean(np.sum(db * db, axis=0)))) if db.size else 0.0
    if total < 1e-6:
        return np.zeros(db.shape, dtype=np.float32)
    return (db / total).astype(np.float32)


def normalize(S: np.ndarray, *, top_db: float = TOP_DB) -> np.ndarray:
    """``standardize(power_to_db(S))``: power to well-scaled latents, independent of loudness.

    Parameters
    ----------
    S : np.ndarray [shape=(n_mels, n_frames)]

    Returns
    -------
    np.ndarray [shape=(n_mels, n_frames), dtype=float32]
    """
    return standardize(power_to_db(S, top_db=top_db))


def smooth_release(x: np.ndarray, *, fps: float, release: float) -> np.ndarray:
    """Attack/release envelope along time: rises at once, falls back with time constant ``release`` seconds.

    Onsets stay sharp (the picture jumps on the beat) while frame-to-frame flicker between beats is removed.

    Parameters
    ----------
    x : np.ndarray [shape=(n_features, n_frames)]
    fps : float
    release : float
        Seconds; 0 returns ``x`` unchanged.

    Returns
    -------
    np.ndarray [shape=(n_features, n_frames), dtype=float32]
    """
    if not (math.isfinite(release) and release >= 0):
        raise ParameterError(f"smooth must be a number of seconds >= 0, not {release}")
    x = np.asarray(x, dtype=np.float32)
    if release == 0 or x.shape[-1] == 0:
        return x.copy()
    a = math.exp(-1.0 / (float(fps) * release))
    out = np.empty_like(x)
    prev = x[:, 0].copy()
    for t in range(x.shape[1]):
        cur = x[:, t]
        prev = np.maximum(cur, a * prev + (1.0 - a) * cur)
        out[:, t] = prev
    return out


def song_latents(
    y: np.ndarray, sr: int, *, fps: float = 30, n_mels: int = 32, smooth: float = 0.2
) -> np.ndarray:
    """The latent vector z of every video frame of a song.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,)]
        Mono audio, any rate (resampled to :data:`ANALYSIS_SR` for analysis).
    sr : int
    fps : float
    n_mels : int
        Size of z.
    smooth : float
        Release time of :func:`smooth_release` in seconds (0: no smoothing).

    Returns
    -------
    np.ndarray [shape=(n_frames, n_mels), dtype=float32]
        Row ``i`` is z for frame ``i``; ``n_frames = ceil(len(y) / sr * fps)``. Scaled to unit RMS norm.

    Examples
    --------
    >>> sr = 22050
    >>> y = np.random.default_rng(0).standard_normal(sr * 2).astype(np.float32)
    >>> song_latents(y, sr, fps=30, n_mels=16).shape
    (60, 16)
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ParameterError(f"y must be a non-empty 1-D array, not shape {y.shape}")
    return latents_from_blocks([y], sr, fps=fps, n_mels=n_mels, smooth=smooth)


def latents_from_blocks(
    blocks: Iterable[np.ndarray], sr: int, *, fps: float = 30, n_mels: int = 32, smooth: float = 0.2
) -> np.ndarray:
    """:func:`song_latents` of a song given as consecutive blocks, in memory that does not grow with its length.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(k,) mono or (channels, k)]
        The song in order; channels are averaged.
    sr : int
        Their sample rate (resampled to :data:`ANALYSIS_SR` on the fly).
    fps, n_mels, smooth
        As for :func:`song_latents`.

    Returns
    -------
    np.ndarray [shape=(n_frames, n_mels), dtype=float32]
        The same as ``song_latents`` of the whole song.
    """
    if not (math.isfinite(smooth) and smooth >= 0):
        raise ParameterError(f"smooth must be a number of seconds >= 0, not {smooth}")
    return latents_from_db(song_db(blocks, sr, fps=fps, n_mels=n_mels), fps=fps, smooth=smooth)


class AnalysisBlocks:
    """A song's blocks as the analyses take them: mono (channels averaged), float32, resampled to
    :data:`ANALYSIS_SR` on the fly (soxr, high quality), in memory that does not grow with the song's length.

    Iterate once; afterwards :attr:`n_samples` is the number of samples read at the song's own rate.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(k,) mono or (channels, k)]
        The song in order.
    sr : int
        Their sample rate.
    cancel : threading.Event, optional
        Checked before each block (:func:`neuromv.progress.check_cancel`).

    Raises
    ------
    ParameterError
        No samples at all (at the end of the iteration).
    """

    def __init__(self, blocks: Iterable[np.ndarray], sr: int, cancel=None) -> None:
        self._blocks, self.sr, self._cancel = blocks, sr, cancel
        self.n_samples = 0

    def __iter__(self):
        import soxr

        from .progress import check_cancel

        resampler = None if self.sr == ANALYSIS_SR else soxr.ResampleStream(self.sr, ANALYSIS_SR, 1,
                                                                           dtype="float32", quality="HQ")
        for block in self._blocks:
            check_cancel(self._cancel)
            y = np.asarray(block, dtype=np.float32)
            if y.ndim == 2:
                y = y.mean(axis=0, dtype=np.float32)
            self.n_samples += y.size
            yield y if resampler is None else resampler.resample_chunk(y)
        if self.n_samples == 0:
            raise ParameterError("no audio samples to analyse")
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def song_db(blocks: Iterable[np.ndarray], sr: int, *, fps: float = 30, n_mels: int = 32) -> np.ndarray:
    """The first half of :func:`latents_from_blocks`: the song's mel spectrogram per video frame, in dB relative to
    its peak (:func:`power_to_db`), computed block by block.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(k,) mono or (channels, k)]
    sr : int
    fps : float
    n_mels : int

    Returns
    -------
    np.ndarray [shape=(n_mels, n_frames), dtype=float32]
        Values in [-TOP_DB, 0].
    """
    fps_q = _check_fps(fps)
    mel = MelStream(ANALYSIS_SR, fps=fps_q, n_mels=n_mels)
    stream = AnalysisBlocks(blocks, sr)
    for y in stream:
        mel.feed(y)
    S = mel.finish()
    n_frames = n_video_frames(stream.n_samples, sr, fps_q)
    # resampling can change the length by a sample; the frame count is the original audio's
    if S.shape[1] > n_frames:
        S = S[:, :n_frames]
    elif S.shape[1] < n_frames:
        S = np.pad(S, ((0, 0), (0, n_frames - S.shape[1])), mode="edge")
    return power_to_db(S)


def latents_from_db(db: np.ndarray, *, fps: float = 30, smooth: float = 0.2) -> np.ndarray:
    """The second half of :func:`latents_from_blocks`: smoothing (on the dB scale, how loudness is heard) and
    :func:`standardize`. Cheap: the live preview (``neuromv serve``) does the same in JavaScript.

    Parameters
    ----------
    db : np.ndarray [shape=(n_mels, n_frames)]
        From :func:`song_db`.

    Returns
    -------
    np.ndarray [shape=(n_frames, n_mels), dtype=float32]
    """
    db = smooth_release(np.asarray(db, dtype=np.float32), fps=float(_check_fps(fps)), release=smooth)
    return np.ascontiguousarray(standardize(db).T)
