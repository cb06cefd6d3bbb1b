"""The separation engine that every backend shares: a song in blocks -> crossfaded windows -> stems in blocks.

A backend (:class:`Backend`) separates one window at a time; :func:`stream` converts the song to the backend's
rate and channel count (:class:`Resampler`, streaming), cuts it into overlapping windows (:func:`windowed`),
crossfades the results and converts them back. Memory stays bounded whatever the song's length.

Imports: numpy, soxr (lazily), ``neuromv.errors``, ``neuromv.progress``; no backend.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

from ..errors import ParameterError
from ..progress import CancelHooks, Progress, ProgressCallback, check_cancel

__all__ = ["Backend", "SecondsWindow", "Resampler", "windowed", "stream"]


class Backend(Protocol):
    """What :func:`stream` needs of a separator backend.

    Attributes
    ----------
    sr : int or None
        The rate it works at (Hz); None: the song's own.
    channels : int or None
        The channel count it works in; None: the song's own.
    watch : CancelHooks
        Hooks on its model's layers that check the cancel event while a window runs.
    """

    sr: int | None
    channels: int | None
    watch: CancelHooks

    def window(self, sr: int) -> tuple[int, int]:
        """Window and overlap, in samples at rate ``sr``."""

    def process(self, x: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        """Separate one window: np.ndarray [shape=(C, L), dtype=float32] -> np.ndarray [shape=(n_stems, C', L)]."""


class SecondsWindow:
    """Windows of a fixed length in seconds, whatever the working rate (a mixin for backends)."""
    _WINDOW_S: float
    _OVERLAP_S: float

    def window(self, sr: int) -> tuple[int, int]:
        return int(self._WINDOW_S * sr), int(self._OVERLAP_S * sr)


class Resampler:
    """Streaming resampler (soxr, high quality; the same as librosa's ``soxr_hq``) for (channels, k) blocks."""

    def __init__(self, sr_in: int, sr_out: int, channels: int) -> None:
        import soxr

        self._rs = soxr.ResampleStream(sr_in, sr_out, channels, dtype="float32", quality="HQ")

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """np.ndarray [shape=(channels, k)] -> np.ndarray [shape=(channels, about k * sr_out / sr_in)];
        ``last``: flush what the resampler holds."""
        y = self._rs.resample_chunk(np.ascontiguousarray(x.T, dtype=np.float32), last=last)
        return np.ascontiguousarray(y.reshape(-1, x.shape[0]).T)


def stream(backend: Backend, n_stems: int, blocks: Iterable[np.ndarray], sr: int, channels: int, *,
           n_samples: int | None = None, progress: bool | ProgressCallback = False,
           cancel: threading.Event | None = None) -> Iterator[np.ndarray]:
    """Separate a song given block by block with ``backend``; see :meth:`neuromv.separate.Separator.stream`.

    Yields
    ------
    np.ndarray [shape=(n_stems, channels, k), dtype=float32]
        The stems at ``sr``; their total length matches the input's to within a few samples of resampling.
    """
    b = backend
    wsr = b.sr or sr
    wch = b.channels or channels
    win, ov = b.window(wsr)
    total = None
    if n_samples is not None:
        m = (n_samples * wsr + sr // 2) // sr  # soxr's output length, rounded to nearest
        full = 0 if m < win else (m - win) // (win - ov) + 1
        total = full + int((full == 0 and m > 0) or m - full * (win - ov) > ov)

    def working() -> Iterator[np.ndarray]:
        rs = None if wsr == sr else Resampler(sr, wsr, wch)
        for x in blocks:
            x = np.asarray(x, dtype=np.float32)
            if x.ndim != 2 or x.shape[0] != channels:
                raise ParameterError(f"audio blocks must have shape ({channels}, k), not {x.shape}")
            if wch != channels:
                x = np.repeat(x, wch, axis=0) if channels == 1 else x.mean(axis=0, keepdims=True)
            yield x if rs is None else rs(x)
        if rs is not None:
            yield rs(np.zeros((wch, 0), np.float32), last=True)

    def process(x: np.ndarray) -> np.ndarray:
        with b.watch.watching(cancel):  # the model's layers check ``cancel`` as they run
            return b.process(x, cancel)

    back = None if wsr == sr else Resampler(wsr, sr, n_stems * channels)
    with Progress("separate", total, progress, unit="window") as bar:
        for y in windowed(working(), win, ov, process, bar, cancel):
            yield _output(y, n_stems, channels, back)
        if back is not None:
            yield _output(None, n_stems, channels, back)
    check_cancel(cancel)


def _output(y: np.ndarray | None, s: int, channels: int, back: Resampler | None) -> np.ndarray:
    """A backend's (s, C', k) block -> (s, channels, k') at the song's rate; None: flush the resampler."""
    if y is None:  # flush the resampler
        z = back(np.zeros((s * channels, 0), np.float32), last=True)
        return z.reshape(s, channels, -1)
    if y.shape[1] > channels:  # the backend worked in stereo on a mono song
        y = y.mean(axis=1, keepdims=True)
    elif y.shape[1] < channels:  # a mono backend on a stereo song
        y = np.repeat(y, channels, axis=1)
    if back is not None:
        y = back(y.reshape(s * channels, -1)).reshape(s, channels, -1)
    return np.ascontiguousarray(y, dtype=np.float32)


def windowed(blocks: Iterable[np.ndarray], win: int, ov: int, process, bar: Progress,
             cancel: threading.Event | None) -> Iterator[np.ndarray]:
    """Run ``process`` on windows of ``win`` samples that overlap by ``ov``, crossfading the overlaps linearly.

    ``process`` maps (C, L) to (S, C, L). Yields (S, C, k) blocks whose lengths add up to the input's. Holds at most
    one window of input and one of output.
    """
    if not 0 < ov < win:
        raise ValueError(f"overlap {ov} must be between 0 and the window {win}")
    ramp = np.linspace(0.0, 1.0, ov, dtype=np.float32)
    buf: list[np.ndarray] = []
    have = 0
    tail = None  # the previous window's last ov output samples, to crossfade with the next window's first

    def run(x: np.ndarray, last: bool) -> np.ndarray:
        nonlocal tail
        check_cancel(cancel)
        y = np.asarray(process(x), dtype=np.float32)
        check_cancel(cancel)  # a window can take seconds: never go on (or finish) once cancelled
        if tail is not None:
            y[..., :ov] = tail * ramp[::-1] + y[..., :ov] * ramp
        bar.update()
        if last:
            tail = None
            return y
        tail = y[..., -ov:].copy()
        return y[..., :-ov]

    for block in blocks:
        if block.shape[1] == 0:
            continue
        buf.append(block)
        have += block.shape[1]
        while have >= win:
            x = np.concatenate(buf, axis=1) if len(buf) > 1 else buf[0]
            yield run(x[:, :win], last=False)
            buf, have = [x[:, win - ov:]], x.shape[1] - (win - ov)
    x = np.concatenate(buf, axis=1) if buf else np.zeros((0, 0), np.float32)
    rest = x.shape[1] if buf else 0
    if tail is None:
        if rest:
            yield run(x, last=True)
    elif rest > ov:
        yield run(x, last=True)
    else:
        yield tail
