"""Seamless loops (``--loop SECONDS``): the song's most representative stretch, its latent path closed.

**The stretch** (:func:`choose_window`): where the song's cues know sections that return, its chorus — the most
repeated section label (ties: the one that plays longest in all), at its most energetic occurrence (mean of the
cues' energy curve over the section), from the section's first downbeat. Otherwise the most energetic window of the
loop's length (the energy curve's moving mean), moved back to the downbeat at or before it. A ``start`` other than
0 given by the user is taken as it is. Either way the window holds ``N = round(loop * fps)`` frames, plus one frame
after it, which the closing needs; the log says which stretch was chosen and why.

**The seam** (:func:`close_panels`): a chosen stretch does not start on its downbeat but at one of the frames
within a beat of it (``LoopWindow.choices`` of them; the render reads them all), the one whose closed loop has the
smallest step across its seam against its own median step (:func:`seam_score`), measured on what the picture is
made of, closed as it will be rendered: the network's input z, plus the zoom and colour controls
(:data:`SEAM_CONTROLS`), summed over the panels. The seam's step is the music's own step from the loop's last
frame to the one after, plus a small share of the closing's drift (below): on a hit it is 5-6 times the median
step, while the kick releases 1-2 times, and where the picture holds between the hits (the music's motion turned
down, :data:`neuromv.structure.MUSIC`) a fraction of it. The frame farthest from any beat or onset, the proxy this
replaced, falls in the release: its seams were 1.0-2.1 times the median step on six real songs, the chosen ones
are 0.2-0.6 times it (docs/loops.md).

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
the music it replaces; on real songs the drift is 3-10 % of the path's length, and the seam's step is that of the
music where it falls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from .errors import ParameterError

__all__ = ["LoopWindow", "choose_window", "close_path", "close_panel", "close_panels", "seam_score", "loop_frames",
           "lead_frames", "path_ramp", "SEAM_CONTROLS", "SeamReport", "measure_seam"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopWindow:
    """The stretch of the song a loop is made of.

    Attributes
    ----------
    start : float
        Song time of the earliest frame 0, seconds.
    frames : int
        N, the loop's frames (``round(loop * fps)``).
    reason : str
        Why this stretch, for the log ("the chorus (section B, 2nd of 3 times, ...)").
    choices : int
        The frames, from ``start`` on, at which frame 0 may fall: :func:`close_panels` chooses among them the one
        with the smallest seam (1: ``start`` is frame 0).
    """

    start: float
    frames: int
    reason: str
    choices: int = 1

    def seconds(self, fps: float) -> float:
        """Audio the render reads: the N frames of every choice and the one after them that closes the path,
        seconds."""
        return (self.frames + self.choices) / fps


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
        first, choices = _seam_choices(cues, _on_downbeat(min(t, latest), down, latest), fps, latest)
        return LoopWindow(first, n, f"the chorus: section {label}, the most repeated ({count} times), at its most "
                                    f"energetic ({_ordinal(k + 1)} time, {section.start:.1f}-{section.end:.1f} s), "
                                    "from within a beat of its first downbeat", choices)
    t, mean = _loudest(cues, need, latest)
    first, choices = _seam_choices(cues, _on_downbeat(t, down, latest), fps, latest)
    return LoopWindow(first, n, f"the most energetic {need:.1f} s (no section returns; mean energy {mean:.2f}), "
                                "from within a beat of a downbeat", choices)


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


def _seam_choices(cues, t: float, fps: float, latest: float) -> tuple[float, int]:
    """(the earliest start, the number of frames from it) of the starts within a beat of the downbeat ``t`` (the
    beat: the median beat of the cues' beats within a bar of ``t``, else the tempo's), never before 0 or past
    ``latest``: the frames among which :func:`close_panels` chooses frame 0."""
    beats = np.asarray(cues.beats, dtype=float)
    steps = np.diff(beats[np.abs(beats - t) < 4.0])
    beat = float(np.median(steps)) if len(steps) else 60.0 / max(float(cues.tempo), 1.0)
    first = min(max(t - beat, 0.0), latest)
    last = min(t + beat, latest)
    return first, 1 + max(0, int(np.floor((last - first) * fps + 1e-6)))


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


#: The controls a seam is scored on besides the network's input (:func:`close_panels`), from
#: :attr:`neuromv.structure.Controls.FIELDS` (z_scale and z_add are in the input already). The input's step
#: explains most of a step's pixel change (correlation 0.86-0.99 over the frames of six real songs' loops); the
#: controls' mean ratio counts as much as the input's (a tenth as much chose a 1.4 times larger seam on one of the
#: six, a smaller one on the synthetic test song).
SEAM_CONTROLS = ("zoom", "hue", "saturation", "brightness")


def seam_score(x: np.ndarray, n: int) -> float:
    """How the step across the seam of ``x`` [shape=(n + 1, ...)] closed (:func:`close_path`) compares with the
    closed loop's other steps: the seam's step (Euclidean, frame n - 1 -> frame 0) over their median, or over their
    mean where the median is 0 (a quantity that moves now and then); 0 where the path does not move. 1: the seam is
    a median step."""
    y = close_path(np.asarray(x, dtype=np.float64), n).reshape(n, -1)
    steps = np.sqrt(((np.roll(y, -1, axis=0) - y) ** 2).sum(axis=1))  # steps[n - 1]: the seam
    inner = steps[:-1]
    typical = float(np.median(inner)) or float(inner.mean())
    return float(steps[-1] / typical) if typical > 0 else 0.0


def _panel_score(panel, n: int, at: int) -> float:
    """:func:`seam_score` of a panel's loop from its frame ``at``: its input's, plus the mean of its moving
    controls' (:data:`SEAM_CONTROLS`)."""
    score = seam_score(panel.z[at:at + n + 1], n)
    if panel.controls is not None:
        arrays = panel.controls.arrays()
        spans = (arrays[k][at:at + n + 1] for k in SEAM_CONTROLS)
        moving = [seam_score(v, n) for v in spans if np.ptp(v) > 0]  # a control that holds still has no seam
        score += float(np.mean(moving)) if moving else 0.0
    return score


def close_panels(panels, n: int, lead: int = 0, choices: int = 1) -> int:
    """Choose where a loop starts and close every panel there (:func:`close_panel`): of the ``choices`` frames
    from the ``lead``-th on (:attr:`LoopWindow.choices`), the one whose loop has the smallest seam, its
    :func:`seam_score` summed over the panels (ties: the earliest). All panels start at the same frame (they
    share the song). Returns the frames dropped before the loop's first: ``lead`` plus the frames chosen past it.
    """
    usable = max(1, min([choices] + [len(p.z) - lead - n for p in panels]))
    at = lead
    if usable > 1:
        scores = np.array([sum(_panel_score(p, n, lead + j) for p in panels) for j in range(usable)])
        j = int(np.argmin(scores))
        at = lead + j
        log.info("loop: the seam %d frames past the earliest start (of %d), score %.2f (the median step: 1; the "
                 "earliest start's %.2f)", j, usable, scores[j] / len(panels), scores[0] / len(panels))
    for p in panels:
        close_panel(p, n, at)
    return at


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
