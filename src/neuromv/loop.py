"""Seamless loops (``--loop SECONDS``): the song's most representative stretch, its latent path closed.

**The stretch** (:func:`choose_window`): where the song's cues know sections that return, its chorus — the most
repeated section label (ties: the one that plays longest in all), at its most energetic occurrence (mean of the
cues' energy curve over the section), from the section's first downbeat. Otherwise the most energetic window of the
loop's length (the energy curve's moving mean), moved back to the downbeat at or before it. A ``start`` other than
0 given by the user is taken as it is. Either way the window holds ``N = round(loop * fps)`` frames, plus one
frame after it, which the closing needs; the log says which stretch was chosen and why.

**The closing** (:func:`close_path`, :func:`close_panel`): every per-frame quantity x of the render (the network's
input z, and the structure's zoom, colour and input controls) is corrected by a linear drift so that "frame N"
would equal frame 0::

    x'(i) = x(i) + (x(0) - x(N)) * i / N,    i = 0 .. N - 1

with x(N) the value one frame after the window. Frame N - 1 then steps into frame 0 as frame N would have: the
change across the seam is an ordinary frame-to-frame step (measured: docs/loops.md). The drift is spread over the
whole loop, so no frame moves by more than ``|x(0) - x(N)|`` and a change between neighbours by that over N.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from .errors import ParameterError

__all__ = ["LoopWindow", "choose_window", "close_path", "close_panel", "loop_frames"]

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
        t = _on_downbeat(min(t, latest), down, latest)
        return LoopWindow(t, n, f"the chorus: section {label}, the most repeated ({count} times), at its most "
                                f"energetic ({_ordinal(k + 1)} time, {section.start:.1f}-{section.end:.1f} s)")
    t, mean = _loudest(cues, need, latest)
    t = _on_downbeat(t, down, latest)
    return LoopWindow(t, n, f"the most energetic {need:.1f} s (no section returns; mean energy {mean:.2f})")


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
    ramp = (np.arange(n, dtype=np.float64) / n).reshape((n,) + (1,) * (x.ndim - 1))
    return (x[:n] + (x[0] - x[n]) * ramp).astype(x.dtype)


def close_panel(panel, n: int) -> None:
    """Close the loop of one panel (:class:`neuromv.plan.Panel`, after its latents and controls, before its
    renderer): its ``z``, its controls' arrays (:attr:`neuromv.structure.Controls.FIELDS`) and its colour maps
    (recomputed from the closed controls), each to ``n`` frames (:func:`close_path`)."""
    panel.z = close_path(panel.z, n)
    if panel.controls is not None:
        from .structure import frame_colors

        c = panel.controls
        panel.controls = replace(c, **{k: close_path(v, n) for k, v in c.arrays().items()})
        panel.colors = frame_colors(panel.controls, panel.settings)
