"""The ``hpss`` backend: harmonic / percussive separation with librosa (median filtering), no model.

Imports: numpy, librosa and scipy (lazily), ``neuromv.progress``, the engine.
"""

from __future__ import annotations

import threading

import numpy as np

from ..progress import CancelHooks, check_cancel
from .engine import SecondsWindow

__all__ = ["HPSS", "decompose"]

_HPSS_KERNEL = 31
_HPSS_SLAB = 64  # rows (or columns) of the spectrogram per median filter call: tens of milliseconds


class HPSS(SecondsWindow):
    """The hpss backend (:class:`neuromv.separate.engine.Backend`): 20 s windows, 1 s crossfades, any rate."""

    sr = channels = None  # works at the song's rate and channels
    _WINDOW_S, _OVERLAP_S = 20.0, 1.0
    watch = CancelHooks()

    def process(self, x: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        """Separate one window: np.ndarray [shape=(C, L)] -> np.ndarray [shape=(2, C, L)] (harmonic, percussive)."""
        import librosa

        n = x.shape[1]
        x = np.pad(x, ((0, 0), (0, max(0, 2048 - n))))  # at least one STFT frame
        out = np.zeros((2, *x.shape), dtype=np.float32)
        for c, ch in enumerate(x):
            spec = librosa.stft(ch)
            check_cancel(cancel)
            h, p = decompose(spec, cancel)
            check_cancel(cancel)
            out[0, c] = librosa.istft(h, length=len(ch))
            out[1, c] = librosa.istft(p, length=len(ch))
        return out[:, :, :n]


def decompose(spec: np.ndarray, cancel: threading.Event | None) -> tuple[np.ndarray, np.ndarray]:
    """``librosa.decompose.hpss(spec)`` (kernel 31, power 2, margin 1), the same numbers, with ``cancel`` checked
    between slabs of the median filters: the harmonic filter runs along time, so it is cut into bands of rows;
    the percussive one along frequency, so into runs of columns (each filter's edges are those of its own axis).

    spec : np.ndarray [shape=(n_bins, n_frames), dtype=complex]; returns (harmonic, percussive), complex, same shape.
    """
    import librosa
    from scipy.ndimage import median_filter

    mag, phase = librosa.magphase(spec)
    harm, perc = np.empty_like(mag), np.empty_like(mag)
    for i in range(0, mag.shape[0], _HPSS_SLAB):
        check_cancel(cancel)
        harm[i:i + _HPSS_SLAB] = median_filter(mag[i:i + _HPSS_SLAB], size=(1, _HPSS_KERNEL), mode="reflect")
    for j in range(0, mag.shape[1], _HPSS_SLAB):
        check_cancel(cancel)
        perc[:, j:j + _HPSS_SLAB] = median_filter(mag[:, j:j + _HPSS_SLAB], size=(_HPSS_KERNEL, 1), mode="reflect")
    mask_harm = librosa.util.softmask(harm, perc, power=2, split_zeros=True)
    mask_perc = librosa.util.softmask(perc, harm, power=2, split_zeros=True)
    return (mag * mask_harm) * phase, (mag * mask_perc) * phase
