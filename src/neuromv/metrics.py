"""How much a video looks like its reference image, and how much it moves with the music.

- **fidelity**: SSIM between the *mean frame* of the video and the reference image at the same size. The mean
  frame is what stays of the picture once the motion is averaged out.
- **the look**: :func:`colourfulness` (Hasler and Süsstrunk) and :func:`clipped_share` (channel values at the
  ends of the scale), and :func:`palette_distance` (how far the pixels are from a set of colours).
- **reactivity**: the mean absolute difference between consecutive frames, on the 0-255 scale, over all pixels
  and channels; and how strongly that per-frame change follows the music: the Pearson correlation between
  the change into frame i and the audio's onset strength at frame i.

Frames are accumulated one at a time (:class:`FrameStats`): measuring a video never holds it in memory.
:mod:`neuromv.sync` measures the sync proper (lag, Beat Alignment Score, beat F-measure) from the same onset
strength and :func:`lagged_correlation`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .errors import ParameterError

__all__ = ["ssim", "colourfulness", "clipped_share", "CLIP_LEVELS", "palette_distance", "FrameStats",
           "onset_strength", "lagged_correlation", "onset_correlation", "VideoMetrics", "measure_video"]


def ssim(a: np.ndarray, b: np.ndarray, *, sigma: float = 1.5) -> float:
    """Structural similarity of two images (Wang et al. 2004: Gaussian window, K1 = 0.01, K2 = 0.03).

    Parameters
    ----------
    a, b : np.ndarray [shape=(height, width, 3) or (height, width)]
        On the 0-255 scale (any dtype).

    Returns
    -------
    float
        Mean SSIM over pixels and channels: 1 for identical images, about 0 for unrelated ones.
    """
    from scipy.ndimage import gaussian_filter

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ParameterError(f"SSIM needs images of the same shape, not {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        f = lambda v: gaussian_filter(v, sigma, truncate=3.5)  # noqa: E731 - 11x11 window at sigma 1.5
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        values.append(s.mean())
    return float(np.mean(values))


class FrameStats:
    """Running statistics of a stream of frames: their mean, and the change between consecutive frames.

    Examples
    --------
    >>> stats = FrameStats()
    >>> for frame in frames:  # doctest: +SKIP
    ...     stats.add(frame)
    >>> stats.reactivity, stats.mean_frame.shape  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._sum: np.ndarray | None = None
        self._prev: np.ndarray | None = None
        self._changes: list[float] = []
        self.count = 0

    def add(self, frame: np.ndarray) -> None:
        """Add one frame: np.ndarray [shape=(height, width, 3)], 0-255."""
        f = np.asarray(frame, dtype=np.float32)
        if self._sum is None:
            self._sum = np.zeros(f.shape, dtype=np.float64)
        elif f.shape != self._sum.shape:
            raise ParameterError(f"frame of shape {f.shape} after frames of shape {self._sum.shape}")
        self._sum += f
        if self._prev is not None:
            self._changes.append(float(np.abs(f - self._prev).mean()))
        self._prev = f
        self.count += 1

    @property
    def mean_frame(self) -> np.ndarray:
        """np.ndarray [shape=(height, width, 3), dtype=float64]: the mean of the frames, 0-255."""
        if self._sum is None:
            raise ParameterError("no frames")
        return self._sum / self.count

    @property
    def changes(self) -> np.ndarray:
        """np.ndarray [shape=(count - 1,)]: mean |frame i - frame i-1| for i = 1 ... count - 1, 0-255."""
        return np.asarray(self._changes)

    @property
    def reactivity(self) -> float:
        """Mean absolute difference between consecutive frames, 0-255."""
        return float(self.changes.mean()) if self._changes else 0.0


#: Channel values at or below the first, or at or above the second, count as clipped (:func:`clipped_share`).
CLIP_LEVELS = (5, 250)


def colourfulness(frame: np.ndarray) -> float:
    """Hasler and Süsstrunk's colourfulness (2003) of an RGB image on the 0-255 scale.

    ``M = sqrt(sd(rg)^2 + sd(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)`` with ``rg = R - G`` and ``yb = (R + G) / 2
    - B``. Their scale: 0 not colourful, 33 moderately, 59 quite, 82 highly, 109 extremely colourful.

    Parameters
    ----------
    frame : np.ndarray [shape=(height, width, 3)]

    Returns
    -------
    float
    """
    f = np.asarray(frame, dtype=np.float64).reshape(-1, 3)
    rg = f[:, 0] - f[:, 1]
    yb = 0.5 * (f[:, 0] + f[:, 1]) - f[:, 2]
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


def clipped_share(frame: np.ndarray) -> float:
    """The share of channel values of an image (0-255) at either end of the scale (:data:`CLIP_LEVELS`): flat,
    clipped colour."""
    f = np.asarray(frame)
    return float(((f <= CLIP_LEVELS[0]) | (f >= CLIP_LEVELS[1])).mean())


def palette_distance(frame: np.ndarray, colors: np.ndarray) -> float:
    """The mean Euclidean distance (RGB, 0-255) from each pixel of ``frame`` [shape=(..., 3)] to the nearest of
    ``colors`` [shape=(k, 3)]."""
    f = np.asarray(frame, dtype=np.float64).reshape(-1, 1, 3)
    c = np.asarray(colors, dtype=np.float64).reshape(1, -1, 3)
    return float(np.sqrt(((f - c) ** 2).sum(-1)).min(1).mean())


def onset_strength(y: np.ndarray, sr: int, n_frames: int, *, fps: float = 30.0) -> np.ndarray:
    """The audio's onset strength at each video frame (librosa's spectral flux, centred on ``i / fps``).

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,)]
        Mono audio.

    Returns
    -------
    np.ndarray [shape=(n_frames,)]
    """
    import librosa

    from .features import ANALYSIS_SR

    y = np.asarray(y, dtype=np.float32)
    if sr != ANALYSIS_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=ANALYSIS_SR)
    hop = ANALYSIS_SR / fps
    onset = librosa.onset.onset_strength(y=y, sr=ANALYSIS_SR, hop_length=max(1, int(round(hop))))
    # resample the onset frames to the exact video frame times (the hop may not be an integer)
    t_onset = np.arange(len(onset)) * round(hop) / ANALYSIS_SR
    return np.interp(np.arange(n_frames) / fps, t_onset, onset).astype(np.float64)


def lagged_correlation(x: np.ndarray, y: np.ndarray, lag: int) -> float:
    """Pearson correlation between ``x[i]`` and ``y[i - lag]``, over the ``i`` where both exist.

    With ``x`` a video's per-frame change and ``y`` the audio's onset strength at the same frames, a positive
    ``lag`` pairs each change with the onset ``lag`` frames earlier: the picture moves ``lag`` frames after the
    music.

    Parameters
    ----------
    x, y : np.ndarray [shape=(n,) and (m,)]
        Two series on the same time grid (e.g. one value per video frame).
    lag : int
        Frames.

    Returns
    -------
    float
        In [-1, 1]; 0 when fewer than two pairs overlap or either side is constant there.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    lag = int(lag)
    lo, hi = max(0, lag), min(len(x), len(y) + lag)  # i in [lo, hi): 0 <= i < len(x), 0 <= i - lag < len(y)
    if hi - lo < 2:
        return 0.0
    a, b = x[lo:hi], y[lo - lag:hi - lag]
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    if not den > 0:
        return 0.0
    return max(-1.0, min(1.0, float(a @ b) / den))


def onset_correlation(changes: np.ndarray, onset: np.ndarray, *, max_lag: int = 0) -> float:
    """Pearson correlation between the change into frame i (``changes[i - 1]``) and ``onset[i + lag]``, at the
    best lag with ``|lag| <= max_lag`` frames (:func:`lagged_correlation` of ``changes`` and ``onset[1:]``).

    librosa's centred onset strength runs about one frame early against the frames (docs/reference-images.md), so
    the benchmarks take ``max_lag=1``: "follows the onsets within one frame". Returns 0 when either is constant.
    """
    onset = np.asarray(onset, dtype=np.float64)
    best = None
    for lag in range(-int(max_lag), int(max_lag) + 1):
        r = lagged_correlation(changes, onset[1:], lag)
        best = r if best is None else max(best, r)
    return 0.0 if best is None else best


@dataclass(frozen=True)
class VideoMetrics:
    """Fidelity and reactivity of one video (see the module's docstring)."""

    fidelity: float | None
    reactivity: float
    onset_correlation: float
    frames: int

    def __str__(self) -> str:
        fid = "n/a" if self.fidelity is None else f"{self.fidelity:.3f}"
        return (f"fidelity (SSIM of mean frame) {fid}, reactivity {self.reactivity:.2f}/255 per frame, "
                f"onset correlation {self.onset_correlation:.2f}, {self.frames} frames")


def measure_video(path: str | os.PathLike, image: np.ndarray | None = None) -> VideoMetrics:
    """Decode a video (PyAV) frame by frame and measure it against ``image`` and its own audio track.

    Parameters
    ----------
    image : np.ndarray [shape=(height, width, 3)], optional
        The reference at the video's size (e.g. :func:`neuromv.image.fit_image`); None: no fidelity.
    """
    import av

    from .audio import load_audio

    stats = FrameStats()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else 30.0
        for frame in container.decode(stream):
            stats.add(frame.to_ndarray(format="rgb24"))
    fid = None
    if image is not None:
        fid = ssim(stats.mean_frame, image)
    corr = 0.0
    if stats.count > 2:
        audio = load_audio(path, mono=True)
        onset = onset_strength(audio.samples[0], audio.sr, stats.count, fps=fps)
        corr = onset_correlation(stats.changes, onset)
    return VideoMetrics(fid, stats.reactivity, 0.0 if math.isnan(corr) else corr, stats.count)
