"""Sync, measured: how closely a video's motion follows its song (``neuromv sync VIDEO [SONG]``).

The video gives a **motion envelope**: the mean absolute change of luma into each frame (:class:`MotionEnvelope`,
fed one frame at a time, in constant memory beyond one float per frame), and its peaks, the **visual beats**
(:func:`visual_beats`). The song gives its onset strength at the video's frames
(:func:`neuromv.metrics.onset_strength`) and its musical beats (:func:`song_beats`). :func:`measure_sync` compares
them (a pure function of arrays) and returns a :class:`SyncReport`:

- the **lag** (ms) at the peak of the cross-correlation of envelope and onset strength within +-0.5 s, and the
  Pearson r there; and ``r``, the best r within one frame of zero lag ("follows the onsets");
- the **Beat Alignment Score** of Li et al., "AI Choreographer: Music Conditioned 3D Dance Generation with AIST++"
  (ICCV 2021): the mean, over the visual beats, of ``exp(-d^2 / (2 sigma^2))`` with ``d`` the distance to the
  nearest musical beat; their sigma is 3 frames at 60 frames/s, i.e. 50 ms (:data:`BAS_SIGMA`);
- the **beat F-measure** of the visual beats against the musical beats within +-70 ms (``mir_eval.beat.f_measure``).

:func:`sync_video` does all of it for a video file. docs/sync.md explains each number and its negative controls.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import threading
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import AudioError, ParameterError, VideoError, summary
from .limits import ANALYSIS_SR, MAX_FPS, MAX_SECONDS, MAX_SIDE, MIN_FPS
from .progress import Progress, ProgressCallback, check_cancel

__all__ = ["MotionEnvelope", "visual_beats", "song_beats", "beat_alignment_score", "SyncReport", "measure_sync",
           "sync_video", "BAS_SIGMA", "BEAT_TOLERANCE", "MAX_LAG", "PEAK_WINDOW"]

log = logging.getLogger(__name__)

#: Beat Alignment Score's sigma (s): Li et al. (ICCV 2021) take sigma = 3 frames at their 60 frames/s.
BAS_SIGMA = 0.05
#: Beat F-measure's tolerance window (s), mir_eval's default (+-70 ms).
BEAT_TOLERANCE = 0.07
#: The lag is searched within +-MAX_LAG seconds.
MAX_LAG = 0.5
#: Visual beats: a peak is the largest value within +-PEAK_WINDOW seconds, above the mean there, at most one per
#: PEAK_WINDOW seconds.
PEAK_WINDOW = 0.1
#: Visual beats: how far (as a fraction of the envelope's range) a peak must rise above its local mean.
_PEAK_DELTA = 0.07
#: Visual beats: the envelope's range is taken as at least this (0-255 levels), so that a still video (its changes
#: a fraction of a level of codec noise) has no beats.
_MIN_RANGE = 4.0
#: Every STEP-th pixel each way is read: 1/16 of the pixels (a 720p frame: 180x320).
_STEP = 4
#: BT.709 luma weights of R, G, B.
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
#: Limited-range ("TV") luma spans 16-235: its differences are scaled by 255/219 onto the 0-255 scale of RGB's.
_LIMITED_SCALE = 255.0 / 219.0


class MotionEnvelope:
    """The motion envelope of a stream of frames: the mean absolute luma change into each frame, 0-255.

    Fed one frame at a time (:meth:`add`); keeps the previous frame's subsampled luma and one float per frame, so
    a video of any length is measured in constant memory. It reads every ``step``-th pixel each way (default 4:
    1/16 of them): about 0.06 ms per 1280x720 I420 frame and 0.3 ms per RGB frame on one core (docs/sync.md). A
    frame rendered at a quarter of the size each way and read whole (``step=1``) gives the same measurement of the
    same picture, sixteen times cheaper to render (:func:`neuromv.plan.follow_controls`).

    Examples
    --------
    >>> env = MotionEnvelope()
    >>> for frame in frames:  # doctest: +SKIP
    ...     env.add(frame)   # RGB [h, w, 3] or I420 [h * 3 // 2, w], uint8
    >>> env.envelope.shape   # doctest: +SKIP
    (n_frames,)
    """

    def __init__(self, step: int = _STEP) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ParameterError(f"step must be a whole number of pixels >= 1, not {step!r}")
        self._step = step
        self._prev: np.ndarray | None = None
        self._values = array("d")
        self._shape: tuple[int, ...] | None = None

    def add(self, frame: np.ndarray) -> None:
        """Add one frame.

        Parameters
        ----------
        frame : np.ndarray [shape=(height, width, 3) or (height * 3 // 2, width), dtype=uint8]
            RGB (full range; luma by BT.709 weights), or I420 (``yuv420p`` planes one after the other, limited
            range, as :meth:`neuromv.renderer.Renderer.render_yuv420` makes: its first ``height`` rows are the
            luma).

        Raises
        ------
        ParameterError
            Not uint8 RGB or I420, or not the shape of the frames before.
        """
        frame = np.asarray(frame)
        shape = frame.shape
        if frame.dtype != np.uint8 or not (frame.ndim == 3 and shape[2] == 3 or frame.ndim == 2 and shape[0] % 3 == 0):
            raise ParameterError(f"a frame must be uint8 RGB (height, width, 3) or I420 (height * 3 // 2, width), "
                                 f"not {frame.dtype} {shape}")
        if self._shape is not None and shape != self._shape:
            raise ParameterError(f"frame of shape {shape} after frames of shape {self._shape}")
        self._shape = shape
        if frame.ndim == 3:
            self._push(frame[::self._step, ::self._step] @ _LUMA, 1.0)  # a new float32 array
        else:
            self.add_luma(frame[: shape[0] * 2 // 3], full_range=False)

    def add_luma(self, luma: np.ndarray, *, full_range: bool) -> None:
        """Add one frame given by its luma plane (what a decoder gives without a colour conversion).

        Parameters
        ----------
        luma : np.ndarray [shape=(height, width)]
            0-255 (full range) or 16-235 (limited range).
        full_range : bool
            False: limited range; the change is scaled by 255/219 onto the full 0-255 scale.
        """
        y = np.asarray(luma)[::self._step, ::self._step].astype(np.float32)
        self._push(y, 1.0 if full_range else _LIMITED_SCALE)

    def _push(self, y: np.ndarray, scale: float) -> None:
        """Append the change into ``y`` (subsampled luma, float32, owned: it becomes the previous frame)."""
        prev, self._prev = self._prev, y
        if prev is None:
            self._values.append(0.0)
            return
        if prev.shape != y.shape:
            raise ParameterError(f"frame of {y.shape} subsampled pixels after frames of {prev.shape}")
        np.subtract(y, prev, out=prev)
        np.abs(prev, out=prev)
        self._values.append(float(np.add.reduce(prev, axis=None, dtype=np.float64) / prev.size) * scale)  # the mean

    def __len__(self) -> int:
        return len(self._values)

    @property
    def envelope(self) -> np.ndarray:
        """np.ndarray [shape=(n_frames,), dtype=float64]: mean |luma(i) - luma(i - 1)| on the 0-255 scale for each
        frame i; 0 for the first frame."""
        return np.frombuffer(self._values, dtype=np.float64).copy()


def visual_beats(envelope: np.ndarray, fps: float) -> np.ndarray:
    """The visual beats: peaks of the motion envelope, one per visual hit.

    A frame is a peak when its change is the largest within +-:data:`PEAK_WINDOW` (100 ms), exceeds the mean
    there by 7 % of the envelope's range (its 99th percentile minus its minimum, at least 4 levels: an adaptive
    threshold), and comes at least 100 ms after the previous peak (``librosa.util.peak_pick``).

    Parameters
    ----------
    envelope : np.ndarray [shape=(n_frames,)]
        :attr:`MotionEnvelope.envelope`, 0-255.
    fps : float
        Frames per second.

    Returns
    -------
    np.ndarray [shape=(n_beats,)]
        Times in seconds (frame index / fps), ascending.
    """
    import librosa

    fps = _check_fps(fps)
    x = np.asarray(envelope, dtype=np.float64)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ParameterError(f"the envelope must be one finite value per frame, not shape {x.shape}")
    if len(x) < 3:
        return np.zeros(0)
    w = max(1, int(round(PEAK_WINDOW * fps)))
    lo = float(x.min())
    x = (x - lo) / max(float(np.percentile(x, 99)) - lo, _MIN_RANGE)
    peaks = librosa.util.peak_pick(x, pre_max=w, post_max=w, pre_avg=w, post_avg=w, delta=_PEAK_DELTA, wait=w)
    return np.asarray(peaks, dtype=np.float64) / fps


def song_beats(audio) -> np.ndarray:
    """The song's musical beats, in seconds: the beats of its cues (:func:`neuromv.analysis.analyze`), the same
    tracker that places the render's kicks.

    Parameters
    ----------
    audio : neuromv.audio.Audio
        The song (any rate, mono or stereo).

    Returns
    -------
    np.ndarray [shape=(n_beats,)]
        Seconds, ascending.
    """
    from .analysis import analyze

    return np.asarray(analyze(audio).beats, dtype=np.float64)


@dataclass(frozen=True)
class SyncReport:
    """How closely a video's motion follows its song (docs/sync.md).

    Attributes
    ----------
    lag_ms : float
        Lag of the peak of the cross-correlation between the motion envelope and the onset strength, within
        +-500 ms; positive: the picture moves after the music.
    r_at_lag : float
        Pearson r at ``lag_ms``.
    r : float
        The best Pearson r within one frame of zero lag: "the motion follows the onsets".
    bas : float
        Beat Alignment Score (Li et al., ICCV 2021): mean over the visual beats of ``exp(-d^2 / (2 sigma^2))``,
        ``d`` the distance to the nearest musical beat; 0-1.
    sigma_ms : float
        The BAS's sigma.
    f_measure : float
        F-measure of the visual beats against the musical beats within +-``tolerance_ms`` (mir_eval); 0-1.
    tolerance_ms : float
    n_visual_beats, n_music_beats : int
        Musical beats within the video's duration only.
    tempo : float or None
        Beats per minute of the musical beats (60 / their mean interval, gaps left out); None with fewer than two.
    fps : float
    frames : int
    """

    lag_ms: float
    r_at_lag: float
    r: float
    bas: float
    sigma_ms: float
    f_measure: float
    tolerance_ms: float
    n_visual_beats: int
    n_music_beats: int
    tempo: float | None
    fps: float
    frames: int

    def __str__(self) -> str:
        tempo = "" if self.tempo is None else f" at {self.tempo:.1f} BPM"
        return (f"sync: lag {self.lag_ms:+.0f} ms, r {self.r:.2f} ({self.r_at_lag:.2f} at lag), "
                f"BAS {self.bas:.2f} (sigma {self.sigma_ms:.0f} ms), beat F {self.f_measure:.2f} "
                f"(+-{self.tolerance_ms:.0f} ms), {self.n_visual_beats} visual / {self.n_music_beats} musical beats"
                f"{tempo}")

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def beat_alignment_score(visual: np.ndarray, music: np.ndarray, sigma: float = BAS_SIGMA) -> float:
    """Beat Alignment Score (Li et al., ICCV 2021, and their code: ``tools/calculate_beat_scores.py`` of mint):
    ``mean over visual beats t of exp(-min_m (t - m)^2 / (2 sigma^2))``, m over the musical beats.

    Parameters
    ----------
    visual, music : np.ndarray [shape=(n,) and (m,)]
        Beat times (s).
    sigma : float
        Seconds.

    Returns
    -------
    float
        0-1; 0 when either set is empty.
    """
    visual = np.asarray(visual, dtype=np.float64)
    music = np.sort(np.asarray(music, dtype=np.float64))
    if not len(visual) or not len(music):
        return 0.0
    i = np.clip(np.searchsorted(music, visual), 1, max(1, len(music) - 1))
    d = np.minimum(np.abs(visual - music[i - 1]), np.abs(visual - music[np.minimum(i, len(music) - 1)]))
    return float(np.mean(np.exp(-d * d / (2 * sigma * sigma))))


def measure_sync(envelope: np.ndarray, onset: np.ndarray, beats: np.ndarray, fps: float) -> SyncReport:
    """Compare a video's motion envelope with its song's onset strength and beats.

    Parameters
    ----------
    envelope : np.ndarray [shape=(n_frames,)]
        :attr:`MotionEnvelope.envelope` (0-255; frame 0's value, always 0, is left out of the correlations).
    onset : np.ndarray [shape=(n_frames,)]
        The song's onset strength at each frame (:func:`neuromv.metrics.onset_strength`); if the lengths differ,
        the shorter decides.
    beats : np.ndarray [shape=(n_beats,)]
        Musical beats (s, :func:`song_beats`); those after the video's end are left out.
    fps : float
        Frames per second.

    Returns
    -------
    SyncReport
    """
    from .metrics import lagged_correlation

    fps = _check_fps(fps)
    envelope = np.asarray(envelope, dtype=np.float64)
    onset = np.asarray(onset, dtype=np.float64)
    n = min(len(envelope), len(onset))
    x, y = envelope[1:n], onset[1:n]
    max_lag = max(1, int(round(MAX_LAG * fps)))
    lags = np.arange(-max_lag, max_lag + 1)
    rs = np.array([lagged_correlation(x, y, int(lag)) for lag in lags])
    # the peak; of equal peaks, the one nearest zero lag
    best = min(np.flatnonzero(rs == rs.max()), key=lambda k: abs(lags[k]))
    near = np.abs(lags) <= 1
    duration = len(envelope) / fps
    music = np.sort(np.asarray(beats, dtype=np.float64))
    music = music[(music >= 0) & (music < duration)]
    visual = visual_beats(envelope, fps)
    tempo = _tempo(music)
    return SyncReport(lag_ms=float(lags[best]) * 1000.0 / fps, r_at_lag=float(rs[best]), r=float(rs[near].max()),
                      bas=beat_alignment_score(visual, music), sigma_ms=BAS_SIGMA * 1000.0,
                      f_measure=_beat_f_measure(music, visual),
                      tolerance_ms=BEAT_TOLERANCE * 1000.0, n_visual_beats=len(visual), n_music_beats=len(music),
                      tempo=tempo, fps=fps, frames=len(envelope))


def sync_video(video: str | os.PathLike, song: str | os.PathLike | None = None, *,
               progress: bool | ProgressCallback = False, cancel: threading.Event | None = None) -> SyncReport:
    """Measure how closely a video file's motion follows its song.

    The video is decoded frame by frame (PyAV; only the luma plane is read), so memory does not grow with its
    length beyond one float per frame; the song (up to the video's duration) is decoded mono at
    :data:`~neuromv.limits.ANALYSIS_SR`.

    Parameters
    ----------
    video : str or os.PathLike
        Any video FFmpeg reads.
    song : str or os.PathLike, optional
        The song the video goes with; default: the video's own audio track. Time 0 of the song is time 0 of the
        video.
    progress : bool or callable
        A progress bar (True) or ``callback(stage, done, total)`` over the decoded frames.
    cancel : threading.Event, optional
        Set it to stop (between frames): :class:`~neuromv.errors.Interrupted`.

    Returns
    -------
    SyncReport

    Raises
    ------
    VideoError
        The video is missing, not a regular file, not a video, corrupt, too large, or has fewer than 3 frames.
    AudioError
        No ``song`` and the video has no audio track; or the song cannot be read, or is silent.
    Interrupted
        ``cancel`` was set.
    """
    from .audio import AudioReader, check_audible, load_audio
    from .metrics import onset_strength

    path = Path(video)
    audio_path = path if song is None else Path(song)
    if song is not None:
        AudioReader(audio_path).close()  # a bad song fails before the video is decoded
    envelope, fps = _decode_envelope(path, song is None, progress, cancel)
    audio = load_audio(audio_path, sr=ANALYSIS_SR, mono=True, duration=len(envelope) / fps + 1.0)
    check_audible(audio, name=str(audio_path))
    onset = onset_strength(audio.samples[0], audio.sr, len(envelope), fps=fps)
    report = measure_sync(envelope, onset, song_beats(audio), fps)
    log.debug("%s: %s", path, report)
    return report


def _decode_envelope(path: Path, need_audio: bool, progress: bool | ProgressCallback,
                     cancel: threading.Event | None) -> tuple[np.ndarray, float]:
    """Decode ``path``'s first video stream into its motion envelope; checks that it has audio if needed."""
    import av

    from ._files import check_input_file

    check_input_file(path, "video")  # a regular, non-empty file: never a FIFO or a device
    try:
        container = av.open(os.fspath(path))
    except av.FFmpegError as e:
        raise VideoError(f"{path}: not a readable video file ({summary(e)})") from e
    with container:
        streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            raise VideoError(f"{path}: has no video stream")
        if need_audio and not container.streams.audio:
            raise AudioError(f"{path}: has no audio track; give the song too (neuromv sync VIDEO SONG)")
        stream = streams[0]
        cc = stream.codec_context
        if not (0 < cc.width <= MAX_SIDE and 0 < cc.height <= MAX_SIDE):
            raise VideoError(f"{path}: frames of {cc.width}x{cc.height}; at most {MAX_SIDE} a side are read")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if not MIN_FPS <= fps <= MAX_FPS:
            raise VideoError(f"{path}: frame rate {fps:g} frames/s; {MIN_FPS:g} to {MAX_FPS:g} are read")
        max_frames = int(MAX_SECONDS * fps)
        stream.thread_type = "AUTO"
        env = MotionEnvelope()
        with Progress("sync", stream.frames or None, progress) as bar:
            try:
                for frame in container.decode(stream):
                    check_cancel(cancel)
                    _add_decoded(env, frame)
                    bar.update()
                    if len(env) > max_frames:
                        raise VideoError(f"{path}: longer than {MAX_SECONDS:g} s")
            except av.FFmpegError as e:
                raise VideoError(f"{path}: corrupt video after {len(env)} frames ({summary(e)})") from e
    if len(env) < 3:
        raise VideoError(f"{path}: has {len(env)} frame(s); at least 3 are needed to measure motion")
    return env.envelope, fps


#: Decoded pixel formats whose first plane is 8-bit luma.
_LUMA_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p",
                 "yuv411p", "yuv410p", "nv12", "nv21", "nv16", "gray", "yuva420p"}


def _add_decoded(env: MotionEnvelope, frame) -> None:
    """Add a decoded PyAV frame by its luma plane, without a colour conversion where the format allows."""
    name = frame.format.name
    if name in _LUMA_FORMATS:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]
        full = name.startswith("yuvj") or name == "gray" or int(frame.color_range) == 2  # 2: JPEG (full) range
        env.add_luma(y, full_range=full)
    else:  # RGB, 10-bit, ...: let swscale make 8-bit RGB
        env.add(frame.to_ndarray(format="rgb24"))


def _beat_f_measure(music: np.ndarray, visual: np.ndarray) -> float:
    """``mir_eval.beat.f_measure(music, visual, BEAT_TOLERANCE)``; past its 30000 s check (a video of more than
    8 h), the same computation from its parts (``mir_eval.util.match_events`` and ``f_measure``)."""
    import mir_eval

    if not len(music) or not len(visual):
        return 0.0  # what mir_eval scores, with a warning
    if max(music[-1], visual[-1]) < mir_eval.beat.MAX_TIME:
        return float(mir_eval.beat.f_measure(music, visual, f_measure_threshold=BEAT_TOLERANCE))
    matched = len(mir_eval.util.match_events(music, visual, BEAT_TOLERANCE))
    return float(mir_eval.util.f_measure(matched / len(visual), matched / len(music)))


def _tempo(beats: np.ndarray) -> float | None:
    """Beats per minute: 60 / the mean interval between beats, over the intervals within 25 % of the median one
    (a gap in the beats, a silence, is left out); None with fewer than two beats."""
    intervals = np.diff(beats)
    if not len(intervals) or not np.median(intervals) > 0:
        return None
    mid = float(np.median(intervals))
    return 60.0 / float(intervals[np.abs(intervals - mid) <= 0.25 * mid].mean())


def _check_fps(fps: float) -> float:
    if isinstance(fps, bool) or not (isinstance(fps, numbers.Real) and math.isfinite(fps)
                                     and MIN_FPS <= fps <= MAX_FPS):
        raise ParameterError(f"fps must be from {MIN_FPS:g} to {MAX_FPS:g}, not {fps!r}")
    return float(fps)
