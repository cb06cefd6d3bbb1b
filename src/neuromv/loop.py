"""Seamless loops (``--loop SECONDS``): the song's most representative stretch, its latent path closed.

**The stretch** (:func:`choose_window`): where the song's cues know sections that return, its chorus — the most
repeated section label (ties: the one that plays longest in all), at its most energetic occurrence (mean of the
cues' energy curve over the section), from the section's first downbeat. Otherwise the most energetic window of the
loop's length (the energy curve's moving mean), moved back to the downbeat at or before it. Either then starts
within a beat of that downbeat (half a beat before it where that is as quiet), at the frame farthest from any beat
or onset of the cues both at the loop's start and N frames later, so that the seam falls between hits and the
downbeat's hit plays inside the loop: a hit is the largest step of the picture, 5-6 times a median step, and across
the seam it would read as a jump (docs/loops.md). A ``start`` other than 0 given by the user is taken as it is.
Either way the window holds ``N = round(loop * fps)`` frames, plus one frame after it, which the closing needs; the
log says which stretch was chosen and why.

**The closing** (:func:`close_path`, :func:`close_panel`): every per-frame quantity x of the render (the network's
input z, and each of the structure's zoom, colour and input controls) is corrected by a drift so that "frame N"
would equal frame 0::

    x'(i) = x(i) + (x(0) - x(N)) * s(i) / s(N),    i = 0 .. N - 1

with x(N) the value one frame after the window and s(i) the length of x's own path from frame 0 to frame i
(:func:`path_ramp`). Frame N - 1 then steps into frame 0 as frame N would have. The correction is spread over the
path by its length rather than evenly in time (``i / N``): the picture holds its pattern between the beats and
moves on them (:mod:`neuromv.structure`), and an even drift would add motion between the beats (measured: the
median step between frames rose from 5.6 to 9.0 levels); by length, it rides on the steps the path takes anyway.
Since ``|x(0) - x(N)| <= s(N)``, no step of the closed path, the seam's included, is more than twice the step of
the music it replaces (docs/loops.md has the measured seams).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from .errors import ParameterError

__all__ = ["LoopWindow", "choose_window", "close_path", "close_panel", "loop_frames", "lead_frames", "path_ramp",
           "SeamReport", "measure_seam"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopWindow:
    """The stretch of the song a loop is made of.

    Attributes
    ----------
    start : float
        Song time of frame 0, seconds.
    frames : int
        N, the loop's frames (``round(loop * fps)``).
    reason : str
        Why this stretch, for the log ("the chorus (section B, 2nd of 3 times, ...)").
    """

    start: float
    frames: int
    reason: str

    def seconds(self, fps: float) -> float:
        """Audio the render reads: the N frames and the one after them that closes the path, seconds."""
        return (self.frames + 1) / fps


def lead_frames(start: float, fps: float, smooth: float) -> int:
    """Frames read before a loop's first, so that its features have settled by then: ``1 + 3 * smooth`` seconds
    (the envelope's release, and the analysis window's start), fewer where the song begins sooner. Without them
    the first five or so frames of an excerpt differ from what the same music gives later (the smoothing starts
    from nothing), and the loop's two ends would not match."""
    return max(0, min(int(start * fps + 1e-6), int(round((1.0 + 3.0 * smooth) * fps))))


def loop_frames(loop: float, fps: float) -> int:
    """N = ``round(loop * fps)``, at least 2 (a loop of one frame does not move)."""
    return max(2, int(round(loop * fps)))


def choose_window(cues, loop: float, fps: float, *, start: float | None = None) -> LoopWindow:
    """The stretch of the song a loop of ``loop`` seconds is made of (see the module's text).

    Parameters
    ----------
    cues : Cues
        The song's cues (:mod:`neuromv.cues`): its duration, sections, energy and downbeats.
    loop : float
        Seconds.
    fps : float
        Frame rate.
    start : float, optional
        The user's start (seconds): taken as it is.

    Returns
    -------
    LoopWindow

    Raises
    ------
    ParameterError
        The loop (with its closing frame) is longer than the song, or than the song after ``start``.
    """
    n = loop_frames(loop, fps)
    need = (n + 1) / fps
    duration = float(cues.duration)
    if start is not None:
        if start + need > duration + 1e-6:
            raise ParameterError(f"a loop of {loop:g} s from {start:g} s needs {need:.2f} s of song, but it ends at "
                                 f"{duration:.2f} s")
        return LoopWindow(float(start), n, f"from --start {start:g} s")
    if need > duration + 1e-6:
        raise ParameterError(f"a loop of {loop:g} s needs {need:.2f} s of song; the song lasts {duration:.2f} s")
    latest = max(0.0, duration - need)
    down = np.asarray(cues.downbeats, dtype=float)
    chorus = _chorus(cues)
    if chorus is not None:
        section, label, k, count = chorus
        at = down[(down >= section.start - 1e-6) & (down < section.end)]
        t = float(at[0]) if len(at) else float(section.start)
        t = _quiet_start(cues, _on_downbeat(min(t, latest), down, latest), n, fps, latest)
        return LoopWindow(t, n, f"the chorus: section {label}, the most repeated ({count} times), at its most "
                                f"energetic ({_ordinal(k + 1)} time, {section.start:.1f}-{section.end:.1f} s), "
                                "the seam in the quietest frame within a beat of its first downbeat")
    t, mean = _loudest(cues, need, latest)
    t = _quiet_start(cues, _on_downbeat(t, down, latest), n, fps, latest)
    return LoopWindow(t, n, f"the most energetic {need:.1f} s (no section returns; mean energy {mean:.2f}), the "
                            "seam in the quietest frame within a beat of a downbeat")


def _chorus(cues):
    """(section, label, occurrence index, count) of the most energetic occurrence of the most repeated label, or
    None where no label returns."""
    sections = list(cues.sections)
    counts: dict[str, list] = {}
    for s in sections:
        counts.setdefault(s.label, []).append(s)
    repeated = {k: v for k, v in counts.items() if len(v) >= 2}
    if not repeated:
        return None
    label = max(repeated, key=lambda k: (len(repeated[k]), sum(s.end - s.start for s in repeated[k])))
    occ = repeated[label]
    energies = [_mean_energy(cues, s.start, s.end) for s in occ]
    k = int(np.argmax(energies))
    return occ[k], label, k, len(occ)


def _mean_energy(cues, a: float, b: float) -> float:
    e = np.asarray(cues.energy, dtype=float)
    if len(e) == 0:
        return 0.0
    i, j = int(a * cues.energy_rate), max(int(a * cues.energy_rate) + 1, int(np.ceil(b * cues.energy_rate)))
    part = e[min(i, len(e) - 1):min(j, len(e))]
    return float(part.mean()) if len(part) else 0.0


def _loudest(cues, need: float, latest: float) -> tuple[float, float]:
    """(start s, mean energy) of the loudest window of ``need`` seconds starting at most at ``latest``."""
    e = np.asarray(cues.energy, dtype=float)
    rate = float(cues.energy_rate)
    w = max(1, int(round(need * rate)))
    last = int(latest * rate)
    if len(e) < w or last < 0:
        return 0.0, float(e.mean()) if len(e) else 0.0
    c = np.concatenate([[0.0], np.cumsum(e)])
    means = (c[w:] - c[:-w]) / w  # means[i]: the window from sample i
    means = means[:last + 1]
    i = int(np.argmax(means))
    return i / rate, float(means[i])


def _on_downbeat(t: float, down: np.ndarray, latest: float) -> float:
    """The downbeat at or before ``t`` (within a bar), else ``t``; never past ``latest``."""
    before = down[(down <= t + 1e-6) & (down <= latest + 1e-6)]
    return float(before[-1]) if len(before) and t - before[-1] < 4.0 else float(min(t, latest))


def _quiet_start(cues, t: float, n: int, fps: float, latest: float) -> float:
    """The start, within a beat of the downbeat ``t``, whose seam is quietest: the frame whose time and the
    time N frames later (where the seam's step would be) are both farthest from any beat or onset of the cues
    (ties: nearest half a beat before ``t``); never past ``latest`` or before 0. A hit is the largest step of the
    picture: on the seam it would read as a jump."""
    beats = np.asarray(cues.beats, dtype=float)
    near = beats[np.abs(beats - t) < 4.0]
    steps = np.diff(near)
    beat = float(np.median(steps)) if len(steps) else 60.0 / max(float(cues.tempo), 1.0)
    events = [beats] + [np.asarray(times, float)[np.asarray(strength, float) >= 0.1]
                        for times, strength in cues.onsets.values()]
    events = np.sort(np.concatenate(events)) if events else np.zeros(0)
    cands = t - beat + np.arange(int(round(2 * beat * fps)) + 1) / fps
    cands = cands[(cands >= 0) & (cands <= latest + 1e-9)]
    if len(cands) == 0 or len(events) == 0:
        return float(min(max(t - beat / 2, 0.0), latest))

    def gap(x: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(events, x), 1, len(events) - 1)
        return np.minimum(np.abs(x - events[k - 1]), np.abs(events[k] - x))

    score = np.minimum(gap(cands), gap(cands + n / fps))
    best = np.flatnonzero(score >= score.max() - 0.5 / fps)
    return float(cands[best[np.argmin(np.abs(cands[best] - (t - beat / 2)))]])


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def close_path(x: np.ndarray, n: int) -> np.ndarray:
    """Close a per-frame path: ``x`` [shape=(n + 1, ...)] -> [shape=(n, ...)], ``x'(i) = x(i) + (x(0) - x(n)) * i
    / n``, so that the frame after the last would be frame 0 again. Same dtype.

    Raises
    ------
    ParameterError
        Fewer than ``n + 1`` rows.
    """
    x = np.asarray(x)
    if len(x) < n + 1:
        raise ParameterError(f"a loop of {n} frames needs {n + 1} frames of the song, not {len(x)}")
    ramp = path_ramp(x[:n + 1])[:n].reshape((n,) + (1,) * (x.ndim - 1))
    return (x[:n] + (x[0] - x[n]) * ramp).astype(x.dtype)


def path_ramp(x: np.ndarray) -> np.ndarray:
    """How far along its own path each frame of ``x`` [shape=(n + 1, ...)] is: the cumulative length of its steps
    (Euclidean, per frame), from 0 at frame 0 to 1 at frame n; ``i / n`` where the path does not move.

    Returns
    -------
    np.ndarray [shape=(n + 1,), dtype=float64]
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    steps = np.sqrt(((x[1:] - x[:-1]) ** 2).sum(axis=1))
    total = steps.sum()
    if not np.isfinite(total) or total <= 0:
        return np.arange(len(x), dtype=np.float64) / max(1, len(x) - 1)
    return np.concatenate([[0.0], np.cumsum(steps) / total])


def close_panel(panel, n: int, lead: int = 0) -> None:
    """Close the loop of one panel (:class:`neuromv.plan.Panel`, after its latents and controls, before its
    renderer): its ``z``, its controls' arrays (:attr:`neuromv.structure.Controls.FIELDS`) and its colour maps
    (recomputed from the closed controls), each to ``n`` frames (:func:`close_path`), after dropping the ``lead``
    frames read before the loop (:func:`lead_frames`)."""
    panel.z = close_path(panel.z[lead:], n)
    if panel.controls is not None:
        from .structure import frame_colors

        c = panel.controls
        panel.controls = replace(c, **{k: close_path(v[lead:], n) for k, v in c.arrays().items()})
        panel.colors = frame_colors(panel.controls, panel.settings)


@dataclass(frozen=True)
class SeamReport:
    """How a loop's seam compares with its ordinary frame-to-frame changes (:func:`measure_seam`).

    Attributes
    ----------
    seam : float
        Mean absolute change of the pixels from the last frame to the first, levels of 0-255.
    median, p90 : float
        Median and 90th percentile of the same change between consecutive frames inside the loop.
    """

    seam: float
    median: float
    p90: float

    def __str__(self) -> str:
        return (f"seam {self.seam:.2f} levels; consecutive frames: median {self.median:.2f}, 90th percentile "
                f"{self.p90:.2f} (seam / median {self.seam / max(self.median, 1e-9):.2f})")


def measure_seam(frames: np.ndarray) -> SeamReport:
    """The change across a loop's seam against the changes between its consecutive frames.

    Parameters
    ----------
    frames : np.ndarray [shape=(n, h, w, 3), dtype=uint8]
        The loop's frames in order (decoded from the file), n >= 3.

    Returns
    -------
    SeamReport
    """
    f = np.asarray(frames)
    if f.ndim != 4 or len(f) < 3:
        raise ParameterError(f"a loop's frames must have shape (n >= 3, h, w, 3), not {f.shape}")
    steps = np.array([np.abs(f[i + 1].astype(np.int16) - f[i]).mean() for i in range(len(f) - 1)])
    seam = float(np.abs(f[0].astype(np.int16) - f[-1]).mean())
    return SeamReport(seam, float(np.median(steps)), float(np.percentile(steps, 90)))
