"""The analysis: a song's structure (:class:`~neuromv.cues.Cues`) from its audio, block by block.

One pass over the audio (:func:`spectral_features`: resampled to :data:`~neuromv.features.ANALYSIS_SR`, an STFT of
:data:`N_FFT` samples every :data:`HOP` samples) keeps three small matrices per STFT frame: a mel spectrogram, a
chroma and the RMS. Everything else works on them (docs/cues.md says how each cue is found):

- onsets per band (:func:`band_envelopes`, :func:`pick_onsets`): spectral flux of the log mel spectrogram in each of
  :data:`~neuromv.cues.BANDS`, on the percussive part (HPSS of the mel spectrogram) for the low and high bands;
- tempo, its changes and the beats (:func:`tempo_curve`, :func:`track_beats`): autocorrelation of the onset
  envelope in windows; the song's metrical level by a log-normal tempo prior times how well a beat grid of each
  candidate period explains the flux and the low band (:func:`tempo_curve`); dynamic programming (Ellis 2007) with
  the local period; each segment's tempo refined from its beats;
- the metre and downbeats (:func:`find_downbeats`): the beat phase where the kick is strongest and the harmony
  changes;
- sections (:func:`find_sections`): bar-synchronous chroma and MFCC, checkerboard novelty (Foote 2000) on the
  bars' self-similarity at a scale of a twelfth of the song (4 to 8 bars), and labels by clustering the sections'
  mean features (at most 6 letters);
- energy, silence, builds and drops (:func:`energy_curve`, :func:`find_silence`, :func:`find_drops`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .cues import BANDS, Cues, Section, Span
from .errors import NeuroMVError
from .features import ANALYSIS_SR, AnalysisBlocks
from .progress import Progress, ProgressCallback, check_cancel

__all__ = ["ANALYSIS_VERSION", "HOP", "N_FFT", "FRAME_RATE", "FLUX_RATE", "ONSET_LAG_S", "BPM_RANGE", "BAND_EDGES_HZ",
           "SpectralFeatures",
           "analyze", "spectral_features", "band_envelopes", "pick_onsets", "tempo_curve", "track_beats",
           "find_downbeats", "find_sections", "energy_curve", "find_silence", "find_drops", "cached_analysis"]

log = logging.getLogger(__name__)

#: Version of the analysis: a cache of cues is keyed by it (bump it when a change would give other cues).
ANALYSIS_VERSION = 5
#: STFT hop, samples at ANALYSIS_SR (23.2 ms).
HOP = 512
#: STFT window, samples at ANALYSIS_SR (92.9 ms).
N_FFT = 2048
#: STFT frames per second.
FRAME_RATE = ANALYSIS_SR / HOP
#: The flux of a centred window peaks before the sound starts (the window sees it coming): onset and beat times
#: are moved this much later (measured on synthetic drums, 60 to 180 bpm: 11 to 21 ms early).
ONSET_LAG_S = 0.017
#: Mel bands of the analysis spectrogram.
N_MELS = 64
#: The cues' flux (the whole mix's onset strength, :func:`flux_curve`): values per second, its STFT hop (samples at
#: ANALYSIS_SR) and mel bands. It is the onset strength the sync measures at 30 frames/s
#: (:func:`neuromv.metrics.onset_strength`: librosa's, whose hop is one video frame and whose 128 bands these are),
#: computed here block by block: the motion that follows it follows what the sync measures, frame for frame.
FLUX_RATE = 30.0
FLUX_HOP = int(round(ANALYSIS_SR / FLUX_RATE))
FLUX_MELS = 128
#: The tempi a beat is looked for in (bpm); a tempo outside is counted in halves or doubles.
BPM_RANGE = (55.0, 200.0)
#: The bands' edges, Hz: low below 150 (kick, bass), mid 150 to 3000 (snare, voice, chords), high above (hats).
BAND_EDGES_HZ = (150.0, 3000.0)
#: HPSS median filters: frames (time) and mel bands.
_HPSS_KERNEL = 17
#: Tempo estimation window, seconds, and its hop.
_TEMPO_WINDOW_S = 12.0
_TEMPO_HOP_S = 2.0
#: A window's beat period (where it leaves the song's tempo): the fastest autocorrelation peak at least this
#: fraction of the strongest in range.
_FASTEST_FRACTION = 0.5
#: The song's metrical level (which of the autocorrelation's peaks is the beat, not the bar, half-bar or eighth):
#: a log-normal tempo prior (Ellis 2007; librosa's start_bpm) centred here (bpm), this many octaves wide...
_PRIOR_BPM = 120.0
_PRIOR_OCTAVES = 0.7
#: ... times how far a beat grid of that period stands out from the envelope (the whole flux and the low band),
#: in windows of _TEMPO_WINDOW_S, each at its best phase.
#: A kick on every beat of twice the tempo (the low band's autocorrelation there at least _KICK_AC and this
#: fraction of its value at the chosen period) makes the faster level the beat.
_KICK_AC = 0.6
_KICK_SAME = 0.9
#: A window keeps the song's tempo if its autocorrelation there is at least this fraction of its own best.
_KEEP_TEMPO = 0.6
#: A new tempo lasts at least this many windows (of _TEMPO_HOP_S).
_MIN_TEMPO_WINDOWS = 4
#: Tempo segments differing by less than this ratio are one tempo.
_SAME_TEMPO = 0.04
#: Beat-tracking tightness (Ellis 2007): how strongly the beats keep the local period. librosa's 100 let a few bars
#: whose off-beats are louder move the beat by half a beat (on one planetblupi excerpt, 27 s of it); 300 keeps the
#: phase, and a half-beat or tempo slip still pays only 300 log(1.5)^2 = 49, a few bars' worth of beats.
_TIGHTNESS = 300.0
#: Energy curve: values per second, and the dB range below the song's loud level mapped to [0, 1].
ENERGY_RATE = 10.0
_ENERGY_RANGE_DB = 40.0
#: Silence: at least this long, this far (dB) below the song's typical level.
_SILENCE_MIN_S = 0.5
_SILENCE_BELOW_DB = 35.0
#: Sections: the section scale (the checkerboard kernel's half width and the shortest section) is a twelfth of the
#: song's bars, but 4 to 8 bars (a real song's 100 bars and more: 8-bar sections; a short synthetic song: 4).
_SECTION_BARS = (4, 8)
_SECTION_FRACTION = 12
#: Section labels: clusters are cut at the larger of this fraction of the typical within-section spread and
#: _LABEL_CUT of the largest distance between sections; at most _MAX_LABELS letters (a handful).
_LABEL_SPREAD = 0.8
_LABEL_CUT = 0.25
_MAX_LABELS = 6
#: Drops: the jump (dB) of the low band (kick and bass) or of the whole mix at a downbeat.
_DROP_LOW_DB = 10.0
_DROP_ALL_DB = 6.0
#: Builds: the least rise (dB) over the build and the least correlation of its loudness with time.
_BUILD_RISE_DB = 3.0
_BUILD_CORR = 0.5


@dataclass
class SpectralFeatures:
    """What one pass over the audio keeps: per STFT frame (``FRAME_RATE`` per second, frame ``i`` centred at
    ``i * HOP / ANALYSIS_SR`` s).

    Attributes
    ----------
    mel : np.ndarray [shape=(N_MELS, n_frames), dtype=float32]
        Mel power spectrogram (0 Hz to ANALYSIS_SR / 2).
    chroma : np.ndarray [shape=(12, n_frames), dtype=float32]
        Chroma (power per pitch class, C first).
    rms : np.ndarray [shape=(n_frames,), dtype=float32]
        RMS amplitude of each frame's samples.
    mel_hz : np.ndarray [shape=(N_MELS,)]
        Centre frequency of each mel band, Hz.
    duration : float
        Seconds of audio.
    flux_mel : np.ndarray [shape=(FLUX_MELS, n_flux_frames), dtype=float32]
        The mel power spectrogram of :func:`flux_curve`: FLUX_RATE frames per second (hop FLUX_HOP), frame ``j``
        centred at ``j / FLUX_RATE`` s.
    """

    mel: np.ndarray
    chroma: np.ndarray
    rms: np.ndarray
    mel_hz: np.ndarray
    duration: float
    flux_mel: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.rms.size)


def _hz_to_mel(f):
    """Slaney's mel scale (librosa's default): linear to 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f < 1000.0, f / (200.0 / 3), 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27))


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    return np.where(m < 15.0, m * (200.0 / 3), 1000.0 * np.exp((m - 15.0) * (np.log(6.4) / 27)))


def _mel_filters(n_mels: int = N_MELS) -> tuple[np.ndarray, np.ndarray]:
    """Triangular mel filters over the STFT bins, area-normalized (as librosa.filters.mel with its defaults; here
    without importing librosa, whose import alone takes longer than analysing a song).

    Returns
    -------
    basis : np.ndarray [shape=(n_mels, 1 + N_FFT // 2), dtype=float32]
    centres : np.ndarray [shape=(n_mels,)]
        Hz.
    """
    fft_hz = np.linspace(0, ANALYSIS_SR / 2, 1 + N_FFT // 2)
    mel_hz = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(ANALYSIS_SR / 2)), n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    basis = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return basis.astype(np.float32), mel_hz[1:-1]


def _chroma_filters(lo_hz: float = 55.0, hi_hz: float = 5000.0) -> np.ndarray:
    """Each STFT bin from ``lo_hz`` to ``hi_hz`` shared among the 12 pitch classes (C first) by a Gaussian of half a
    semitone around its pitch. Returns [shape=(12, 1 + N_FFT // 2), dtype=float32]."""
    fft_hz = np.linspace(0, ANALYSIS_SR / 2, 1 + N_FFT // 2)
    keep = (fft_hz >= lo_hz) & (fft_hz <= hi_hz)
    pitch = 12.0 * np.log2(np.maximum(fft_hz, 1e-9) / 440.0) + 9.0  # semitones above C
    d = (pitch[None, :] - np.arange(12)[:, None] + 6.0) % 12.0 - 6.0
    w = np.exp(-0.5 * (d / 0.5) ** 2) * keep[None, :]
    return (w / (w.sum(axis=0, keepdims=True) + 1e-12)).astype(np.float32)


class _Stft:
    """The STFT (centred frames, zero padding, as librosa's) of samples fed in blocks, every ``hop`` samples, kept
    as ``basis @ power`` (and each frame's RMS); frames need not line up with blocks."""

    def __init__(self, hop: int, basis: np.ndarray) -> None:
        import scipy.sparse

        self._window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann, as librosa's
        self.hop = hop
        # a sparse product: each bin feeds a few bands, and it needs no BLAS (whose threads, on a busy machine, made
        # this product 100 times slower than the FFT)
        basis = basis.copy()
        basis[basis < 1e-4 * basis.max(axis=1, keepdims=True)] = 0.0
        self._basis = scipy.sparse.csr_matrix(basis)
        self._buf = np.zeros(N_FFT // 2, dtype=np.float32)
        self._out, self._rms = [], []
        self.n_samples = 0

    def feed(self, y: np.ndarray) -> None:
        self.n_samples += y.size
        self._buf = np.concatenate([self._buf, y.astype(np.float32, copy=False)])
        self._frames()

    def _frames(self) -> None:
        import scipy.fft

        n = 0 if self._buf.size < N_FFT else 1 + (self._buf.size - N_FFT) // self.hop
        if n == 0:
            return
        frames = np.lib.stride_tricks.sliding_window_view(self._buf, N_FFT)[::self.hop][:n]
        power = np.abs(scipy.fft.rfft(frames * self._window, axis=1)) ** 2  # (n, 1 + N_FFT / 2)
        self._out.append(self._basis @ power.T)
        self._rms.append(np.sqrt(np.mean(frames ** 2, axis=1)))
        self._buf = self._buf[n * self.hop:].copy()

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(``basis @ power`` [shape=(bands, n_frames)], RMS [shape=(n_frames,)]), ``1 + n_samples // hop``
        frames."""
        n_frames = 1 + self.n_samples // self.hop
        self._buf = np.concatenate([self._buf, np.zeros(N_FFT, dtype=np.float32)])
        self._frames()
        return np.concatenate(self._out, axis=1)[:, :n_frames], np.concatenate(self._rms)[:n_frames]


class _SpectralStream:
    """Both STFTs of the analysis (:class:`SpectralFeatures`) of samples fed in blocks."""

    def __init__(self) -> None:
        mel_basis, self.mel_hz = _mel_filters()
        self._main = _Stft(HOP, np.concatenate([mel_basis, _chroma_filters()]))
        self._flux = _Stft(FLUX_HOP, _mel_filters(FLUX_MELS)[0])

    @property
    def n_samples(self) -> int:
        return self._main.n_samples

    def feed(self, y: np.ndarray) -> None:
        self._main.feed(y)
        self._flux.feed(y)

    def finish(self) -> SpectralFeatures:
        both, rms = self._main.finish()
        flux_mel, _ = self._flux.finish()
        return SpectralFeatures(np.ascontiguousarray(both[:N_MELS], np.float32),
                                np.ascontiguousarray(both[N_MELS:], np.float32), rms.astype(np.float32),
                                self.mel_hz, self.n_samples / ANALYSIS_SR,
                                np.ascontiguousarray(flux_mel, np.float32))


def spectral_features(blocks: Iterable[np.ndarray], sr: int, *,
                      cancel: threading.Event | None = None) -> SpectralFeatures:
    """One pass over the audio, block by block: memory holds one block and the feature matrices.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(k,) mono or (channels, k)]
        The samples in order (e.g. ``audio.blocks()``), any block sizes: the result does not depend on them.
    sr : int
        Their rate, Hz (resampled to ANALYSIS_SR with soxr on the fly).
    cancel : threading.Event, optional
        Checked between blocks.

    Returns
    -------
    SpectralFeatures

    Raises
    ------
    ParameterError
        No samples.
    """
    stream = _SpectralStream()
    source = AnalysisBlocks(blocks, sr, cancel)
    for y in source:
        stream.feed(y)
    feats = stream.finish()
    feats.duration = source.n_samples / sr
    return feats


# -- onsets --------------------------------------------------------------------------------------------------------

def _db(x: np.ndarray, floor: float = 1e-10) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(x, floor))


def _mean_flux(S: np.ndarray, ref: float, *, first: float | None) -> np.ndarray:
    """Spectral flux: the mean over the bands of the positive frame-to-frame change of the log power
    (``S`` [shape=(bands, n_frames)] / ``ref``, in dB floored at -80); the change into frame 0 is from ``first`` dB
    (None: none, 0). Returns float64 [shape=(n_frames,)]."""
    db = np.maximum(_db(S / ref), -80.0)
    prepend = db[:, :1] if first is None else first
    return np.maximum(0.0, np.diff(db, axis=1, prepend=prepend)).mean(axis=0)


def band_envelopes(feats: SpectralFeatures) -> dict[str, np.ndarray]:
    """Onset strength per band: the mean positive change of the log mel power from frame to frame.

    The low and high bands use the percussive part of the mel spectrogram (HPSS, Fitzgerald 2010, with median
    filters of _HPSS_KERNEL frames and bands), so held bass notes and pads do not blur the kick and the hats; the
    mid band uses the whole spectrogram (snares, but also chord changes and sung notes are onsets there).

    Returns
    -------
    dict of str to np.ndarray [shape=(n_frames,), dtype=float32]
        Per band of BANDS, in dB per frame (>= 0); the change into frame ``i`` is at ``i``.
    """
    from scipy.ndimage import median_filter

    # HPSS (soft masks, as librosa.decompose.hpss with margin 1)
    harm = median_filter(feats.mel, size=(1, _HPSS_KERNEL), mode="reflect")
    perc = median_filter(feats.mel, size=(_HPSS_KERNEL, 1), mode="reflect")
    perc = feats.mel * (perc ** 2 / (harm ** 2 + perc ** 2 + 1e-20))
    ref = float(feats.mel.max()) or 1.0
    lo, hi = BAND_EDGES_HZ
    bands = {"low": feats.mel_hz < lo, "mid": (feats.mel_hz >= lo) & (feats.mel_hz < hi), "high": feats.mel_hz >= hi}
    out = {}
    for name in BANDS:
        S = perc if name != "mid" else feats.mel
        # silence before the song: a sound at 0 is an onset
        out[name] = _mean_flux(S[bands[name]], ref, first=-80.0).astype(np.float32)
    return out


def pick_onsets(env: np.ndarray, *, delta: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The onsets of one band's envelope: peaks above their neighbourhood's mean by ``delta`` (relative to the
    envelope's 99th percentile), more than 3 frames (70 ms) apart.

    Returns
    -------
    times : np.ndarray [shape=(n,)]
        Seconds.
    strength : np.ndarray [shape=(n,)]
        In [0, 1]: the peak's height relative to the envelope's 99th percentile.
    """
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    scale = float(np.percentile(env, 99)) if env.size else 0.0
    if scale <= 0:
        return np.zeros(0), np.zeros(0)
    e = env.astype(np.float64) / scale
    # as librosa.util.peak_pick(pre_max=3, post_max=3, pre_avg=10, post_avg=10, wait=3)
    local_max = e == maximum_filter1d(e, 7, mode="constant", cval=-np.inf)
    local_mean = uniform_filter1d(e, 21, mode="nearest")
    cand = np.flatnonzero(local_max & (e >= local_mean + delta))
    peaks, last = [], -np.inf
    for i in cand:
        if i - last > 3:
            peaks.append(i)
            last = i
    peaks = np.array(peaks, dtype=int)
    return _frame_times(peaks) + ONSET_LAG_S, np.clip(e[peaks], 0.0, 1.0)


def _frame_times(frames: np.ndarray) -> np.ndarray:
    return np.asarray(frames, dtype=np.float64) / FRAME_RATE


def _beat_envelope(envs: dict[str, np.ndarray]) -> np.ndarray:
    """The envelope the beat is tracked on: the bands, each scaled to unit standard deviation, the hats at half
    weight (they often play twice per beat)."""
    out = np.zeros_like(envs["low"], dtype=np.float64)
    for name, w in (("low", 1.0), ("mid", 1.0), ("high", 0.5)):
        e = envs[name].astype(np.float64)
        sd = e.std()
        if sd > 0:
            out += w * e / sd
    return out


# -- tempo and beats -----------------------------------------------------------------------------------------------

def _autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalized autocorrelation of ``x`` (mean removed) at lags 0..max_lag (0 if ``x`` is flat)."""
    x = x - x.mean()
    n = 1 << int(np.ceil(np.log2(2 * x.size)))
    f = np.fft.rfft(x, n)
    ac = np.fft.irfft(f * np.conj(f), n)[:max_lag + 1]
    return ac / ac[0] if ac[0] > 0 else np.zeros(max_lag + 1)


def _best_period(ac: np.ndarray) -> tuple[float, float]:
    """The beat period (frames, sub-frame) in an autocorrelation: the fastest peak in BPM_RANGE whose height is
    at least _FASTEST_FRACTION of the strongest there. Returns (period, height); (nan, 0) if there is no peak."""
    lo = int(np.floor(60.0 * FRAME_RATE / BPM_RANGE[1]))
    hi = min(ac.size - 2, int(np.ceil(60.0 * FRAME_RATE / BPM_RANGE[0])))
    lags = np.arange(max(lo, 1), hi + 1)
    is_peak = (ac[lags] > ac[lags - 1]) & (ac[lags] >= ac[lags + 1]) & (ac[lags] > 0)
    peaks = lags[is_peak]
    if peaks.size == 0:
        return float("nan"), 0.0
    top = ac[peaks].max()
    p = int(peaks[np.argmax(ac[peaks] >= _FASTEST_FRACTION * top)])
    a, b, c = ac[p - 1], ac[p], ac[p + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
    return p + float(np.clip(shift, -0.5, 0.5)), float(b)


def _peak(ac: np.ndarray, p: int) -> float:
    """The sub-frame position of the peak of ``ac`` at integer lag ``p`` (a parabola through three lags)."""
    a, b, c = ac[p - 1], ac[p], ac[p + 1]
    return p + (float(np.clip(0.5 * (a - c) / (a - 2 * b + c), -0.5, 0.5)) if a - 2 * b + c < 0 else 0.0)


def _grid_salience(env: np.ndarray, period: float, win: int) -> float:
    """How far a beat grid of ``period`` frames stands out: in windows of ``win`` frames (half overlapping), the
    mean of ``env`` (its maximum over 3 frames) at the grid's points at the best phase, over the window's mean;
    averaged over the windows. A period that is the song's pulse (beat, half bar, bar) scores high; a period that
    only the autocorrelation likes (a dotted or triplet figure: 3/4 or 2/3 of the beat) drifts off the music."""
    from scipy.ndimage import maximum_filter1d

    m = maximum_filter1d(env.astype(np.float64), 3)
    win = min(win, m.size)
    starts = np.arange(0, m.size - win + 1, max(1, win // 2))
    phases = np.arange(0.0, period, 1.0)
    k = np.arange(int((win - 1 - period) // period) + 1)
    idx = np.minimum(np.round(phases[:, None] + k[None, :] * period).astype(int), win - 1)  # (phases, points)
    w = m[starts[:, None, None] + idx[None]]  # (windows, phases, points)
    means = np.array([m[s:s + win].mean() for s in starts]) + 1e-12
    return float(np.mean(w.mean(axis=2).max(axis=1) / means))


def _song_period(env: np.ndarray, low: np.ndarray | None, max_lag: int) -> float:
    """The song's beat period (frames): which of the autocorrelation's peaks in BPM_RANGE is the beat.

    Each peak is scored by a log-normal tempo prior (centre _PRIOR_BPM, _PRIOR_OCTAVES wide) times the grid
    salience (:func:`_grid_salience`) of the whole envelope and of the low band: the prior settles between the
    bar, the beat and the eighths where the music has all of them, the salience rejects the off-grid periods.
    A clean kick on every beat of the twice faster level (dance music; the synthetic songs at 150 to 180 bpm)
    makes that level the beat. NaN if there is no peak.
    """
    ac = _autocorrelation(env, max_lag)
    if low is None:
        return _best_period(ac)[0]
    lo = max(1, int(np.floor(60.0 * FRAME_RATE / BPM_RANGE[1])))
    hi = min(ac.size - 2, int(np.ceil(60.0 * FRAME_RATE / BPM_RANGE[0])))
    lags = np.arange(lo, hi + 1)
    peaks = lags[(ac[lags] > ac[lags - 1]) & (ac[lags] >= ac[lags + 1]) & (ac[lags] > 0.1)]
    if peaks.size == 0:
        return _best_period(ac)[0]
    if peaks.size == 1:
        return _peak(ac, int(peaks[0]))
    ac_low = _autocorrelation(low, max_lag)
    win = int(round(_TEMPO_WINDOW_S * FRAME_RATE))
    periods = np.array([_peak(ac, int(p)) for p in peaks])
    prior = np.exp(-0.5 * (np.log2(60.0 * FRAME_RATE / periods / _PRIOR_BPM) / _PRIOR_OCTAVES) ** 2)
    score = prior * np.array([_grid_salience(env, p, win) * _grid_salience(low, p, win) for p in periods])
    best = int(np.argmax(score))
    kick = [ac_low[int(p) - 1:int(p) + 2].max() for p in peaks]
    for j, p in enumerate(periods):
        if (abs(p / (periods[best] / 2) - 1) < _SAME_TEMPO and kick[j] >= _KICK_AC
                and kick[j] >= _KICK_SAME * kick[best]):
            best = j
            break
    log.debug("tempo candidates %s, scores %s: %.1f bpm", np.round(60.0 * FRAME_RATE / periods, 1),
              np.round(score, 3), 60.0 * FRAME_RATE / periods[best])
    return float(periods[best])


def tempo_curve(env: np.ndarray, low: np.ndarray | None = None) -> list[tuple[float, float]]:
    """Where the tempo changes: the beat period of each window of the onset envelope, smoothed and cut into
    segments of one tempo.

    Parameters
    ----------
    env : np.ndarray [shape=(n_frames,)]
        Onset envelope at FRAME_RATE.
    low : np.ndarray [shape=(n_frames,)], optional
        The low band's onset envelope (the kick): with it, the song's metrical level is chosen by
        :func:`_song_period`'s prior and beat grids; without it, the fastest strong autocorrelation peak.

    Returns
    -------
    list of (float, float)
        ``(start s, bpm)`` per segment, the first at 0 (a rough tempo: :func:`track_beats` refines it).
    """
    win = int(round(_TEMPO_WINDOW_S * FRAME_RATE))
    hop = int(round(_TEMPO_HOP_S * FRAME_RATE))
    max_lag = int(np.ceil(60.0 * FRAME_RATE / BPM_RANGE[0])) + 2
    whole = _song_period(env, None if low is None else low.astype(np.float64), max_lag)
    if env.size < win + hop:
        return [(0.0, 60.0 * FRAME_RATE / whole if np.isfinite(whole) else 120.0)]
    starts = np.arange(0, env.size - win + 1, hop)
    hann = np.hanning(win)
    periods, heights = [], []
    for s in starts:
        ac = _autocorrelation(env[s:s + win] * hann, max_lag)
        p, h = _best_period(ac)
        if np.isfinite(whole) and np.isfinite(p):
            # the song's tempo still holds here unless this window's own beat is much stronger than it (a song
            # whose rhythm varies keeps its tempo; only a window that has left it starts a new one)
            lo, hi = int(np.floor(whole * (1 - _SAME_TEMPO))), int(np.ceil(whole * (1 + _SAME_TEMPO)))
            k = lo + int(np.argmax(ac[lo:hi + 1]))
            if ac[k] >= _KEEP_TEMPO * h and 0 < k < ac.size - 1:
                a, b, c = ac[k - 1], ac[k], ac[k + 1]
                p = k + (float(np.clip(0.5 * (a - c) / (a - 2 * b + c), -0.5, 0.5)) if a - 2 * b + c < 0 else 0.0)
                h = float(b)
        periods.append(p)
        heights.append(h)
    periods = np.array(periods)
    ok = np.isfinite(periods) & (np.array(heights) > 0.1)
    if not ok.any():
        return [(0.0, 60.0 * FRAME_RATE / whole if np.isfinite(whole) else 120.0)]
    periods = np.where(ok, periods, np.nan)
    # fold octave slips: a window at twice or half its neighbours' period is counted at theirs
    lp = np.log2(periods)
    for i in range(lp.size):
        near = lp[max(0, i - 3):i + 4]
        ref = np.nanmedian(near) if np.isfinite(near).any() else np.nan
        if np.isfinite(lp[i]) and np.isfinite(ref):
            for k in (-1.0, 1.0):
                if abs(lp[i] + k - ref) < 0.1:
                    lp[i] += k
    # fill gaps, smooth, then cut where the tempo moves by more than _SAME_TEMPO
    idx = np.arange(lp.size)
    good = np.isfinite(lp)
    lp = np.interp(idx, idx[good], lp[good])
    from scipy.ndimage import median_filter

    lp = median_filter(lp, size=5, mode="nearest")
    segs = [[0]]
    for i in range(1, lp.size):
        if abs(lp[i] - np.median(lp[segs[-1]])) > np.log2(1 + _SAME_TEMPO):
            segs.append([i])
        else:
            segs[-1].append(i)
    # segments of fewer than _MIN_TEMPO_WINDOWS windows join the neighbour closest in tempo
    changed = True
    while changed and len(segs) > 1:
        changed = False
        for j, s in enumerate(segs):
            if len(s) < _MIN_TEMPO_WINDOWS:
                nb = [k for k in (j - 1, j + 1) if 0 <= k < len(segs)]
                k = min(nb, key=lambda k: abs(np.median(lp[segs[k]]) - np.median(lp[s])))
                segs[k] = sorted(segs[k] + s)
                del segs[j]
                changed = True
                break
    out = []
    for s in segs:
        bpm = 60.0 * FRAME_RATE / 2 ** float(np.median(lp[s]))
        t0 = 0.0 if not out else (starts[s[0]] + win / 2) / FRAME_RATE - _TEMPO_HOP_S / 2
        if out and abs(bpm / out[-1][1] - 1) < _SAME_TEMPO:
            continue
        out.append((t0, bpm))
    return out


def track_beats(env: np.ndarray, tempo_map: list[tuple[float, float]], *,
                tightness: float = _TIGHTNESS) -> np.ndarray:
    """Beats by dynamic programming (Ellis 2007): the frames that maximise the onset envelope at the beats minus
    ``tightness`` times the squared log-ratio of each interval to the local period.

    Parameters
    ----------
    env : np.ndarray [shape=(n_frames,)]
        Onset envelope at FRAME_RATE.
    tempo_map : list of (float, float)
        ``(start s, bpm)``: the local period.

    Returns
    -------
    np.ndarray [shape=(n_beats,), dtype=int]
        Beat frames, increasing (leading and trailing beats where the envelope is weak are left out).
    """
    n = env.size
    if n < 4 or not np.any(env > 0):
        return np.zeros(0, dtype=int)
    # the local period; around a change (half a tempo window either side) either period may be kept, so the
    # beats switch tempo where the music does
    period = np.empty(n)
    other = np.empty(n)
    for t0, bpm in tempo_map:
        period[int(round(t0 * FRAME_RATE)):] = 60.0 * FRAME_RATE / bpm
    other[:] = period
    zone = int(round(_TEMPO_WINDOW_S / 2 * FRAME_RATE))
    for (_, b0), (t1, b1) in zip(tempo_map[:-1], tempo_map[1:]):
        c = int(round(t1 * FRAME_RATE))
        other[max(0, c - zone):c] = 60.0 * FRAME_RATE / b1
        other[c:c + zone] = 60.0 * FRAME_RATE / b0
    e = env / (env.std() or 1.0)
    # a slight smoothing, so that a beat a frame off its onset still scores
    g = np.exp(-0.5 * (np.arange(-3, 4) / 1.0) ** 2)
    local = np.convolve(e, g / g.sum(), mode="same")
    cum = local.copy()
    back = np.full(n, -1, dtype=int)
    for t in range(1, n):
        p, q = period[t], other[t]
        lo, hi = max(0, t - int(round(2 * max(p, q)))), t - int(round(min(p, q) / 2))
        if hi <= lo:
            continue
        prev = np.arange(lo, hi)
        cost = np.log((t - prev) / p) ** 2
        if q != p:
            cost = np.minimum(cost, np.log((t - prev) / q) ** 2)
        score = cum[prev] - tightness * cost
        k = int(np.argmax(score))
        if score[k] > 0 or t >= 2 * max(p, q):
            cum[t] = local[t] + score[k]
            back[t] = prev[k]
    # the last beat: the best-scoring frame in the last period
    p = period[-1]
    tail = np.arange(max(0, n - int(round(p))), n)
    t = int(tail[np.argmax(cum[tail])])
    beats = [t]
    while back[t] >= 0:
        t = back[t]
        beats.append(t)
    beats = np.array(beats[::-1])
    # trim weak beats at the ends (an intro or outro without a pulse)
    strength = local[beats]
    thresh = 0.5 * np.sqrt(np.mean(strength ** 2))
    strong = np.flatnonzero(strength >= thresh)
    if strong.size:
        beats = beats[strong[0]:strong[-1] + 1]
    return beats


def _refine_tempo(beat_times: np.ndarray, tempo_map: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Each tempo segment's bpm from its beats (a line through the beat times), and the change moved to the beat
    where the beat intervals change."""
    if beat_times.size < 4:
        return tempo_map
    ibi = np.diff(beat_times)
    mids = beat_times[:-1]
    out = []
    bounds = [t for t, _ in tempo_map[1:]]
    # the change: the first beat from which the intervals are closer to the new period than to the old
    for j, (t0, bpm) in enumerate(tempo_map):
        if j > 0:
            old, new = 60.0 / tempo_map[j - 1][1], 60.0 / bpm
            near = np.flatnonzero(np.abs(mids - t0) < 8.0)
            closer = [i for i in near if abs(ibi[i] - new) < abs(ibi[i] - old)
                      and all(abs(ibi[k] - new) < abs(ibi[k] - old) for k in range(i, min(i + 3, ibi.size)))]
            lo_t = out[-1][0] if out else 0.0
            hi_t = tempo_map[j + 1][0] if j + 1 < len(tempo_map) else np.inf
            if closer and lo_t < beat_times[closer[0]] < hi_t:
                t0 = float(beat_times[closer[0]])
                bounds[j - 1] = t0
        out.append([t0, bpm])
    edges = [0.0] + bounds + [np.inf]
    for j in range(len(out)):
        sel = (beat_times >= edges[j] - 1e-6) & (beat_times <= edges[j + 1] + 1e-6)
        bt = beat_times[sel]
        if bt.size >= 4:
            d = np.diff(bt)
            med = np.median(d)
            # a line through the beats (ignoring gaps: a beat index counts the periods between beats)
            steps = np.concatenate([[0], np.cumsum(np.maximum(1, np.round(d / med)))])
            slope = np.polyfit(steps, bt, 1)[0]
            if slope > 0:
                out[j][1] = 60.0 / slope
    out[0][0] = 0.0
    # a segment left shorter than a tempo window by the moves above is not a tempo of its own
    kept = [out[0]]
    for j in range(1, len(out)):
        end = out[j + 1][0] if j + 1 < len(out) else beat_times[-1]
        if end - out[j][0] >= _TEMPO_WINDOW_S / 2 and abs(out[j][1] / kept[-1][1] - 1) >= _SAME_TEMPO:
            kept.append(out[j])
    return [(float(a), float(b)) for a, b in kept]


def find_downbeats(beat_frames: np.ndarray, envs: dict[str, np.ndarray], chroma: np.ndarray) -> tuple[int, int]:
    """The metre and the phase of the bars: for 3 and 4 beats a bar and every phase, how much stronger than the
    other beats the kick is on the bar's first beat and how much more the harmony changes there. Three only when
    it fits clearly better than four.

    Returns
    -------
    beats_per_bar : int
        3 or 4.
    phase : int
        The index of the first beat that starts a bar.
    """
    nb = beat_frames.size
    if nb < 8:
        return 4, 0
    low = envs["low"].astype(np.float64)
    kick = np.array([low[max(0, f - 2):f + 3].max() for f in beat_frames])
    # harmony change: chroma of the beat before vs the beat after each beat
    edges = np.concatenate([beat_frames, [chroma.shape[1]]])
    cb = np.stack([chroma[:, a:max(a + 1, b)].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)
    cb = cb / (np.linalg.norm(cb, axis=0, keepdims=True) + 1e-12)
    change = np.concatenate([[0.0], 1.0 - np.sum(cb[:, 1:] * cb[:, :-1], axis=0)])

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / (x.std() or 1.0)

    f = z(kick) + z(change)
    scores = {}
    for m in (3, 4):
        best = max(range(m), key=lambda ph: f[ph::m].mean())
        scores[m] = (f[best::m].mean() - f.mean(), best)
    m = 3 if scores[3][0] > 1.3 * max(scores[4][0], 1e-9) else 4
    return m, scores[m][1]


# -- sections ------------------------------------------------------------------------------------------------------

def _sync(x: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Column means of ``x`` [shape=(d, n)] between consecutive ``frames`` (the last to the end)."""
    edges = np.concatenate([frames, [x.shape[1]]]).astype(int)
    return np.stack([x[:, a:max(a + 1, b)].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)


def _bar_features(feats: SpectralFeatures, bar_frames: np.ndarray) -> np.ndarray:
    """Per bar: chroma (normalized) and MFCC 1..12 of the log mel spectrogram, each feature z-scored over the song
    and each group weighted equally. Returns [shape=(n_bars, 24)]."""
    import scipy.fft

    logmel = _db(feats.mel / (float(feats.mel.max()) or 1.0))
    mfcc = scipy.fft.dct(np.maximum(logmel, -80.0), axis=0, type=2, norm="ortho")[1:13]
    chroma = feats.chroma / (feats.chroma.max(axis=0, keepdims=True) + 1e-10)
    parts = []
    for m in (_sync(chroma, bar_frames), _sync(mfcc, bar_frames)):
        m = (m - m.mean(axis=1, keepdims=True)) / (m.std(axis=1, keepdims=True) + 1e-6)
        parts.append(m / np.sqrt(m.shape[0]))
    return np.concatenate(parts, axis=0).T


def _novelty(X: np.ndarray, half: int) -> np.ndarray:
    """Foote's checkerboard novelty of the rows of ``X`` (a Gaussian-tapered kernel of ``half`` rows a side)."""
    n = X.shape[0]
    Xn = X / (np.linalg.norm(X, axis=1, keepdims=True) + 1e-9)
    S = Xn @ Xn.T
    k = np.arange(-half, half)
    sign = np.where(k < 0, -1.0, 1.0)
    taper = np.exp(-0.5 * ((k + 0.5) / (0.5 * half)) ** 2)
    K = np.outer(sign, sign) * np.outer(taper, taper)
    P = np.pad(S, half)
    return np.array([np.sum(K * P[i:i + 2 * half, i:i + 2 * half]) for i in range(n)])


def find_sections(feats: SpectralFeatures, downbeat_frames: np.ndarray) -> list[Section]:
    """Sections: boundaries at the bars where the music changes most (checkerboard novelty on the bars'
    self-similarity, peaks at least a section scale apart: a twelfth of the song, 4 to 8 bars), labelled by
    clustering the sections' mean features (average linkage; a returning section gets its letter again).
    Neighbours with one label are one section.

    Returns
    -------
    list of Section
        In order, covering [0, duration].
    """
    dur = feats.duration
    if dur < 1e-3:  # too short to write a section (the file keeps times to 0.1 ms)
        return []
    if downbeat_frames.size < 2 * _SECTION_BARS[0]:
        return [Section(0.0, dur, "A")]
    X = _bar_features(feats, downbeat_frames)
    n = X.shape[0]
    scale = int(np.clip(round(n / _SECTION_FRACTION), *_SECTION_BARS))
    half = min(scale, max(1, n // 4))
    nov = _novelty(X, half)
    nov = np.maximum(nov, 0.0)
    thresh = nov.mean() + 0.5 * nov.std()
    cand = [i for i in range(1, n) if nov[i] >= thresh and nov[i] == nov[i - 1:i + 2].max()]
    # strongest first, each at least `scale` bars from the others and from the song's ends
    bar_s = float(np.median(np.diff(downbeat_frames))) / FRAME_RATE
    at = downbeat_frames / FRAME_RATE
    bounds = []
    for i in sorted(cand, key=lambda i: -nov[i]):
        if (all(abs(i - j) >= scale for j in bounds) and at[i] >= (scale - 0.5) * bar_s
                and dur - at[i] >= (scale - 0.5) * bar_s):
            bounds.append(i)
    bounds = sorted(bounds)
    edges = [0] + bounds + [n]
    means = np.stack([X[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])])
    labels = _cluster(means, X, edges)
    times = [0.0] + [float(downbeat_frames[i]) / FRAME_RATE for i in bounds] + [dur]
    out: list[Section] = []
    for (a, b), lab in zip(zip(times[:-1], times[1:]), labels):
        if out and out[-1].label == lab:
            out[-1] = Section(out[-1].start, b, lab)
        else:
            out.append(Section(a, b, lab))
    return out


def _cluster(means: np.ndarray, X: np.ndarray, edges: list[int]) -> list[str]:
    """Letters for the sections: average-linkage clusters of their mean features, cut where sections are further
    apart than _LABEL_SPREAD of the bars' typical distance from their section's mean (or _LABEL_CUT of the largest
    distance), and into at most _MAX_LABELS clusters."""
    k = means.shape[0]
    if k == 1:
        return ["A"]
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    spread = np.median([np.sqrt(np.mean(np.sum((X[a:b] - X[a:b].mean(axis=0)) ** 2, axis=1)))
                        for a, b in zip(edges[:-1], edges[1:])])
    d = pdist(means)
    cut = max(_LABEL_SPREAD * spread, _LABEL_CUT * float(d.max()))
    tree = linkage(d, method="average")
    ids = fcluster(tree, t=cut, criterion="distance")
    if ids.max() > _MAX_LABELS:
        ids = fcluster(tree, t=_MAX_LABELS, criterion="maxclust")
    letters: dict[int, str] = {}
    out = []
    for i in ids:
        if i not in letters:
            j = len(letters)
            letters[i] = chr(ord("A") + j) if j < 26 else f"S{j}"
        out.append(letters[i])
    return out


# -- energy, silence, builds, drops --------------------------------------------------------------------------------

def _frame_db(feats: SpectralFeatures) -> np.ndarray:
    return _db(feats.rms.astype(np.float64) ** 2)


def flux_curve(feats: SpectralFeatures) -> np.ndarray:
    """The whole mix's onset strength at ``FLUX_RATE`` values per second (value ``j`` at ``j / FLUX_RATE`` s): the
    onset strength the sync measures (:func:`neuromv.metrics.onset_strength`, librosa's ``onset_strength`` at a hop
    of one frame at 30 frames/s), divided by its 99th percentile and clipped to [0, 1].

    As librosa computes it: the log power of the ``FLUX_MELS``-band mel spectrogram (dB, floored 80 dB below its
    maximum), the mean over the bands of its positive change from frame to frame, and librosa's shift of a centred
    STFT (``1 + N_FFT // (2 * FLUX_HOP)`` frames: value ``j`` is the change into frame ``j - 1``).

    Returns
    -------
    np.ndarray [shape=(n_flux_frames,), dtype=float32]
    """
    db = _db(feats.flux_mel.astype(np.float64))
    if db.size:
        db = np.maximum(db, db.max() - 80.0)
    rise = np.maximum(0.0, np.diff(db, axis=1)).mean(axis=0) if db.shape[1] > 1 else np.zeros(0)
    shift = 1 + N_FFT // (2 * FLUX_HOP)
    flux = np.concatenate([np.zeros(shift), rise])[:db.shape[1]]
    top = float(np.percentile(flux, 99)) if flux.size else 0.0
    return np.clip(flux / top if top > 0 else np.zeros_like(flux), 0.0, 1.0).astype(np.float32)


def energy_curve(feats: SpectralFeatures, rate: float = ENERGY_RATE) -> np.ndarray:
    """Loudness, ``rate`` values per second: the mean power of each 1/rate s, in dB, mapped to [0, 1] over
    _ENERGY_RANGE_DB below the song's loud level (its 99th percentile).

    Returns
    -------
    np.ndarray [shape=(ceil(duration * rate),), dtype=float32]
    """
    n = max(1, int(np.ceil(feats.duration * rate - 1e-9)))
    idx = np.minimum((np.arange(feats.n_frames) / FRAME_RATE * rate).astype(int), n - 1)
    power = np.bincount(idx, weights=feats.rms.astype(np.float64) ** 2, minlength=n)
    count = np.maximum(1, np.bincount(idx, minlength=n))
    db = _db(power / count)
    top = float(np.percentile(db, 99))
    return np.clip(1.0 + (db - top) / _ENERGY_RANGE_DB, 0.0, 1.0).astype(np.float32)


def find_silence(feats: SpectralFeatures) -> list[Span]:
    """Spans of at least _SILENCE_MIN_S where every frame is _SILENCE_BELOW_DB under the song's typical level (the
    median of its frames louder than the quietest fifth)."""
    db = _frame_db(feats)
    floor = np.percentile(db, 20)
    loud = db[db > floor]
    level = float(np.median(loud)) if loud.size else float(db.max())
    quiet = np.concatenate([[False], db < level - _SILENCE_BELOW_DB, [False]])
    d = np.diff(quiet.astype(int))
    out = []
    for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
        # frame i covers i*HOP +- N_FFT/2: the silent span is between the last loud window and the next
        t0 = min(feats.duration, max(0.0, (a + N_FFT / HOP / 2 - 0.5) / FRAME_RATE))
        t1 = min(feats.duration, (b - 1 - N_FFT / HOP / 2 + 0.5) / FRAME_RATE) if b < db.size else feats.duration
        if t1 - t0 >= _SILENCE_MIN_S:
            out.append(Span(float(t0), float(t1)))
    return out


def find_drops(feats: SpectralFeatures, downbeat_frames: np.ndarray, beat_frames: np.ndarray
               ) -> tuple[list[Span], np.ndarray]:
    """Drops and the builds into them.

    A drop is a downbeat where the low band (kick and bass) jumps by _DROP_LOW_DB or the whole mix by _DROP_ALL_DB
    (half a bar after against half a bar before), into a loud part of the song, after a build or a break (the bar
    before it much quieter). A build is the longest stretch of 2 to 8 bars ending at a drop whose loudness per beat
    rises (correlation with time >= _BUILD_CORR, a rise of at least _BUILD_RISE_DB).

    Returns
    -------
    builds : list of Span
    drops : np.ndarray [shape=(n,)]
        Seconds.
    """
    if downbeat_frames.size < 3 or beat_frames.size < 8:
        return [], np.zeros(0)
    all_db = _frame_db(feats)
    low = feats.mel[feats.mel_hz < BAND_EDGES_HZ[0]].sum(axis=0)
    low_db = _db(low.astype(np.float64) / (float(low.max()) or 1.0))
    level = float(np.percentile(all_db, 75))
    beat_db = _db(np.array([np.mean(feats.rms[a:max(a + 1, b)].astype(np.float64) ** 2) for a, b in
                            zip(beat_frames, np.append(beat_frames[1:], feats.n_frames))]))
    bar_len = float(np.median(np.diff(downbeat_frames)))
    half = max(2, int(round(bar_len / 2)))
    builds, drops = [], []
    last_drop = -np.inf

    def power_mean(x_db: np.ndarray) -> float:
        return float(_db(np.mean(10.0 ** (x_db / 10.0)))) if x_db.size else -100.0

    for d in downbeat_frames[1:]:
        if d - half < 0 or d + half > feats.n_frames or d - last_drop < 4 * bar_len:
            continue
        jump_low = power_mean(low_db[d:d + half]) - power_mean(low_db[d - half:d])
        after = power_mean(all_db[d:d + half])
        jump_all = after - power_mean(all_db[d - half:d])
        if after < level - 6.0 or not (jump_low >= _DROP_LOW_DB or jump_all >= _DROP_ALL_DB):
            continue
        before_bar = power_mean(all_db[max(0, d - int(bar_len)):d])
        is_break = before_bar <= after - 10.0
        build = None
        j = int(np.searchsorted(beat_frames, d))  # beats before the drop: beat_frames[:j]
        bpb = max(1, int(round(bar_len / np.median(np.diff(beat_frames)))))
        for bars in range(8, 1, -1):
            k = bars * bpb
            if j - k < 0:
                continue
            seg = beat_db[j - k:j]
            if seg.std() == 0:
                continue
            r = np.corrcoef(np.arange(k), seg)[0, 1]
            rise = seg[-bpb:].mean() - seg[:bpb].mean()
            if r >= _BUILD_CORR and rise >= _BUILD_RISE_DB:
                build = Span(float(beat_frames[j - k]) / FRAME_RATE, float(d) / FRAME_RATE)
                break
        if build is None and not is_break:
            continue
        if build is not None:
            builds.append(build)
        drops.append(float(d) / FRAME_RATE)
        last_drop = d
    return builds, np.array(drops)


# -- all of it -----------------------------------------------------------------------------------------------------

#: The stages of :func:`analyze`, for progress.
_STAGES = ("spectrum", "onsets", "beats", "sections", "energy")


def analyze(audio, *, progress: bool | ProgressCallback = False, cancel: threading.Event | None = None) -> Cues:
    """Find a song's structure: tempo and its changes, beats, downbeats, onsets per band, sections with repetition
    labels, energy, builds, drops and silence.

    Parameters
    ----------
    audio : Audio or AudioFile
        Read block by block (``audio.blocks()``): memory holds one block and the feature matrices (about 310 bytes
        per 23 ms frame: 4.6 MB for a 4-minute song).
    progress : bool or callable
        A tqdm bar (True) or ``callback('analyze', done, total)`` per stage.
    cancel : threading.Event, optional
        Checked between blocks and stages: :class:`~neuromv.errors.Interrupted` when set.

    Returns
    -------
    Cues
        Every field filled; ``analysis`` holds ``version`` (ANALYSIS_VERSION), ``sr``, ``hop``, ``seconds`` (wall
        time) and ``realtime`` (song seconds per second of analysis).
    """
    t_start = time.perf_counter()
    with Progress("analyze", len(_STAGES), progress, unit="stage") as bar:
        feats = spectral_features(audio.blocks(), audio.sr, cancel=cancel)
        bar.update()
        check_cancel(cancel)
        envs = band_envelopes(feats)
        onsets = {name: pick_onsets(envs[name]) for name in BANDS}
        bar.update()
        check_cancel(cancel)
        env = _beat_envelope(envs)
        rough = tempo_curve(env, envs["low"])
        beat_frames = track_beats(env, rough)
        beats_per_bar, phase = find_downbeats(beat_frames, envs, feats.chroma)
        is_down = np.zeros(beat_frames.size, dtype=bool)
        is_down[phase::beats_per_bar] = True
        silence = find_silence(feats)
        beat_times = _frame_times(beat_frames) + ONSET_LAG_S
        if silence and beat_frames.size:  # no beats where the song rests (the bars keep counting through)
            quiet = np.zeros(beat_times.size, dtype=bool)
            for s in silence:
                quiet |= (beat_times >= s.start) & (beat_times < s.end)
            beat_frames, beat_times, is_down = beat_frames[~quiet], beat_times[~quiet], is_down[~quiet]
        tempo_map = _refine_tempo(beat_times, rough)
        downbeat_frames = beat_frames[is_down]
        bar.update()
        check_cancel(cancel)
        sections = find_sections(feats, downbeat_frames)
        bar.update()
        check_cancel(cancel)
        energy = energy_curve(feats)
        builds, drops = find_drops(feats, downbeat_frames, beat_frames)
        bar.update()
    dur = feats.duration
    # the main tempo: the one that lasts longest
    spans = [(b, (tempo_map[i + 1][0] if i + 1 < len(tempo_map) else dur) - t) for i, (t, b) in enumerate(tempo_map)]
    tempo = max(spans, key=lambda s: s[1])[0] if spans else 120.0
    seconds = time.perf_counter() - t_start
    clip = lambda a: np.clip(np.asarray(a, dtype=np.float64), 0.0, dur)  # noqa: E731
    cues = Cues(
        duration=dur, tempo=float(tempo), tempo_map=[(float(min(t, dur)), float(b)) for t, b in tempo_map],
        beats_per_bar=int(beats_per_bar), beats=clip(beat_times), downbeats=clip(beat_times[is_down]),
        onsets={k: (clip(t), s) for k, (t, s) in onsets.items()}, sections=sections, energy=energy,
        energy_rate=ENERGY_RATE, builds=builds, drops=clip(drops), silence=silence, flux=flux_curve(feats),
        flux_rate=FLUX_RATE,
        analysis={"version": ANALYSIS_VERSION, "sr": ANALYSIS_SR, "hop": HOP, "seconds": round(seconds, 3),
                  "realtime": round(dur / max(seconds, 1e-9), 1)},
    )
    log.info("analysed %.1f s in %.2f s: %.1f bpm, %d beats, %d sections (%s), %d drops", dur, seconds, tempo,
             beat_times.size, len(sections), "".join(s.label for s in sections), len(drops))
    # the cues as their JSON holds them (times to 0.1 ms, strengths to 0.001): a render from the cache, from a
    # written file or straight from the analysis is then the same video, bit for bit
    return Cues.from_json(cues.to_json(), "the analysis")


# -- the cache ------------------------------------------------------------------------------------------------------
def cached_analysis(audio, *, cache: bool = True, progress: bool | ProgressCallback = False,
                    cancel: threading.Event | None = None) -> tuple[Cues, str]:
    """:func:`analyze`, reusing an earlier analysis of the same audio (the :class:`~neuromv.cache.ContentCache`
    ``'cues'``, keyed by :data:`ANALYSIS_VERSION` and the audio: a file's bytes and excerpt, or decoded samples).

    Returns
    -------
    (Cues, str)
        The cues and where they came from ('cache' or 'analysis'). A cache entry that cannot be read or written is
        only a warning: the song is analysed again.
    """
    import hashlib
    import json

    from .audio import AudioFile
    from .cache import ContentCache
    from .cues import load_cues, save_cues

    if not cache:
        return analyze(audio, progress=progress, cancel=cancel), "analysis"
    store = ContentCache("cues")
    if isinstance(audio, AudioFile):
        h = hashlib.sha256()
        with open(audio.path, "rb") as f:  # AudioFile has checked it is a regular file
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        key = store.key({"version": ANALYSIS_VERSION, "excerpt": json.dumps(audio.options, default=str)},
                        h.digest())
    else:
        key = store.key({"version": ANALYSIS_VERSION, "sr": audio.sr, "shape": list(audio.samples.shape)},
                        audio.samples)
    path = store.path(key + ".json")
    if path.is_file():
        try:
            return load_cues(path), "cache"
        except NeuroMVError as e:
            log.warning("cues cache: %s; analysing again", e)
    cues = analyze(audio, progress=progress, cancel=cancel)
    store.store(path, lambda tmp: save_cues(cues, tmp, overwrite=True))
    return cues, "analysis"
