"""Features: one latent vector z per video frame, from a Mel spectrogram (librosa).

Pure functions of arrays; no I/O.

Frame ``i`` of the video shows time ``i / fps``; its mel column is computed with a window of ``2 / fps`` seconds
centred on that time (hop = ``1 / fps``). There are ``ceil(duration * fps)`` frames, so the video never ends
before the music.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .errors import ParameterError

__all__ = [
    "ANALYSIS_SR",
    "n_video_frames",
    "mel_power",
    "power_to_db",
    "standardize",
    "normalize",
    "smooth_release",
    "song_latents",
]

#: Sample rate at which features are computed (Hz). At 30 fps the hop is exactly 735 samples.
ANALYSIS_SR = 22050

#: Floor of the dB scale, below the song's own peak.
TOP_DB = 80.0


def _check_fps(fps: float) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not math.isfinite(fps) or fps <= 0:
        raise ParameterError(f"fps must be a positive number, not {fps!r}")
    if fps > 240:
        raise ParameterError(f"fps must be at most 240, not {fps}")
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
    import librosa

    fps_q = _check_fps(fps)
    if isinstance(n_mels, bool) or not isinstance(n_mels, (int, np.integer)) or not 1 <= n_mels <= 256:
        raise ParameterError(f"n_mels must be an integer from 1 to 256, not {n_mels!r}")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ParameterError(f"y must be a non-empty 1-D array, not shape {y.shape}")
    n_frames = n_video_frames(y.size, sr, fps_q)
    hop_exact = Fraction(sr) / fps_q
    hop = max(1, round(hop_exact))
    n_fft = 2 * hop
    if y.size < n_fft:  # librosa needs one full window; pad very short clips with silence
        y = np.pad(y, (0, n_fft - y.size))
    S = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=n_fft, hop_length=hop, win_length=n_fft, window="hann", center=True,
        power=2.0, n_mels=int(n_mels), fmax=sr / 2,
    ).astype(np.float32)
    if hop_exact == hop:
        cols = S[:, :n_frames]
        if cols.shape[1] < n_frames:  # cannot happen with center=True, but never return too few frames
            cols = np.pad(cols, ((0, 0), (0, n_frames - cols.shape[1])), mode="edge")
        return np.ascontiguousarray(cols)
    # Non-integer hop (e.g. 24 fps at 22050 Hz): sample the columns at the exact frame times.
    pos = np.arange(n_frames) * float(hop_exact / hop)
    col_idx = np.arange(S.shape[1])
    return np.stack([np.interp(pos, col_idx, band) for band in S]).astype(np.float32)


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
    import librosa

    fps_q = _check_fps(fps)
    y = np.asarray(y, dtype=np.float32)
    n_frames = n_video_frames(y.size, sr, fps_q)
    if sr != ANALYSIS_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=ANALYSIS_SR)
    S = mel_power(y, ANALYSIS_SR, fps=fps_q, n_mels=n_mels)
    # resampling can change the length by a sample; the frame count is the original audio's
    if S.shape[1] > n_frames:
        S = S[:, :n_frames]
    elif S.shape[1] < n_frames:
        S = np.pad(S, ((0, 0), (0, n_frames - S.shape[1])), mode="edge")
    # smoothing acts on the dB scale, how loudness is heard
    db = smooth_release(power_to_db(S), fps=float(fps_q), release=smooth)
    return np.ascontiguousarray(standardize(db).T)

