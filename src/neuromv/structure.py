"""The visual language of the music's structure: a song's cues (:mod:`neuromv.cues`) become what every frame adds to
the mel-driven picture (:class:`Controls`).

- **A beat is a kick**: a zoom-in and brightness pulse with a fast attack (the beat's own frame) and a linear
  release over the beat (:func:`pulse_envelope`); a downbeat kicks harder, the hit's own strength (the bands'
  onsets at the beat) and the song's energy shape it.
- **The onsets move the pattern on**: the network's input moves along a circle, each frame by the music's onset
  strength there (the cues' ``flux``, :func:`flux_frames`): in full on the beats' frames; between them by a small
  share (:data:`FLUX` ``between``) plus a share of its mean over the sync's peak window (``spread``: the onsets'
  rise and fall, with a lone onset's peak seven times lower) (:attr:`Controls.motion`). The beats stand out as the
  peaks of the picture's change; the music's own motion (the mel latents) is turned down between the beats and up
  with the kick (:data:`MUSIC`). How much the picture changes for a step depends on the picture, so the plan fits every
  frame's step to the picture (:mod:`neuromv.follow`): its change then follows this motion (the abstract network's at
  r 0.95-0.99 on ten real songs). This is what the sync measures (docs/sync.md).
- **Each section has its look**: an offset of the network's input (another pattern of the same network), a hue
  turn (its palette) and a zoom; a section that returns (the same label) returns to its look (the pattern's steps
  count from each section's start, so it starts from the same pattern again). The change takes
  ``transition`` bars and ends on the section's first downbeat; it interpolates the inputs, never the pixels.
- **A build tightens** (a slow zoom-in), **a drop bursts** (a big kick released over a bar), **silence rests**
  (the music's motion and any kick still releasing fade out within ``REST['ease']`` and the picture dims a little,
  until the silence ends: the music comes back with a hit).
- **The kicks and the pattern's motion are the music moving the picture**: they scale with ``beat`` times
  ``reactivity``.
- **With stems**, each stem drives what suits it (:data:`STEM_ROLES`): drums kick on every beat, bass the scale
  (zoom), vocals the colour; the other stems kick only as hard as their own onsets at the beat. Every panel shares
  the song's beats and sections; its hits' strengths, its flux and its energy are its stem's own.

Everything here is a pure function of the cues and the settings; :mod:`neuromv.plan` applies the controls (the
renderer takes per-frame zoom and colour) and the live page applies the same arrays (``neuromv serve``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .cues import Cues
from .errors import ParameterError

__all__ = ["Controls", "controls_for", "kick_envelope", "pulse_envelope", "flux_frames", "KICK", "FLUX", "MUSIC",
           "PICTURE_FLUX", "BALANCE", "PICTURE_KICK", "PICTURE_MUSIC", "HIT_WEIGHT", "STEM_ROLES", "ROLES",
           "look_of", "frame_colors"]

#: The beat kick, per unit of the ``beat`` setting: a beat hits with ``beat`` (``downbeat`` on a bar's first beat)
#: times its own strength (at least ``floor`` of it: a beat without an onset still kicks a little); ``energy`` is
#: how much a quiet passage softens it. The hits pile up into the kick level (:func:`pulse_envelope`), released
#: linearly over ``release`` of a beat: the coordinates shrink by ``zoom`` and ``brightness`` is added at a level
#: of 1. The network's input moves along a circle of radius ``z``, ``step`` radians per unit of motion
#: (:data:`FLUX`). The live page's kick uses the same arrays.
KICK = {"release": 0.8, "beat": 0.8, "downbeat": 1.0, "zoom": 0.05, "brightness": 0.06, "z": 0.35,
        "floor": 0.3, "energy": 0.4, "step": 1.0}
# (``floor`` applies to the whole song and the drums; other stems' beats kick by their own hits only.)
#: The pattern's motion, per unit of the ``beat`` setting: each frame moves on by ``gain`` times the onset strength
#: at the frame (:func:`flux_frames`, in [0, 1]), in full within ``near`` frames of a beat and times ``between``
#: elsewhere, where ``spread`` times the onset strength averaged over the sync's peak window (+-100 ms) is added.
#: ``between`` trades how closely the motion follows every onset (higher) against how clearly the beats stand out
#: from the onsets between them (lower); the spread part follows the onsets' rise and fall between the beats with
#: far lower peaks (a lone onset's: a seventh as high, over seven frames). With the picture's change fitted to this
#: motion (:mod:`neuromv.follow`), both of the sync's targets hold on the six real songs measured (chosen there at
#: 320x180; docs/sync.md).
FLUX = {"gain": 0.8, "between": 0.17, "near": 1, "spread": 0.3}
#: A fitted picture's: it changes less per step than the abstract network (its tone saturates), so it steps further,
#: and by a smaller share between the beats: its change follows the asked motion less closely than the abstract
#: network's, and the onsets between the beats would make more peaks (docs/sync.md).
PICTURE_FLUX = {**FLUX, "gain": 2.4, "between": 0.16}
#: The between-beat share balanced per song (:func:`neuromv.plan.panel_controls`): where the fit's own small render
#: (:func:`neuromv.plan.follow_controls`) marks the beats less clearly than it follows the onsets (the sync's F below
#: its r: loud off-beats make visual beats of their own), the share is lowered, at most to ``low`` times the
#: default, to where the two meet: ``steps`` halvings of the interval, then the share where the line between the
#: last two crosses; of the shares tried, the one with the larger of the two's smaller value is kept. ``r_bias``:
#: how much higher that small render reads r than the decoded video does (0.005-0.017 measured, F within about
#: 0.015 either way), taken off its r first (docs/sync.md).
BALANCE = {"low": 0.6, "steps": 2, "r_bias": 0.01}
#: A fitted picture's kicks (zoom and light) are this share of :data:`KICK`'s: a photograph's detail changes more
#: per zoom than the abstract pattern, and a kick's change, the same on every beat, is the part of the picture's
#: change that the fit (:mod:`neuromv.follow`) cannot bring in line with the onsets (docs/sync.md).
PICTURE_KICK = 0.5
#: A hit's strength: each band's strongest onset within 70 ms, weighted by band (the whole mix's onset strength,
#: which the sync measures, follows mostly the mid and high bands: a least-squares fit on five real songs and two
#: synthetic ones). Cues without a flux curve (schema version 1) make theirs from the onsets with these weights.
HIT_WEIGHT = {"low": 0.2, "mid": 0.45, "high": 0.35}
#: With cues, the music's own motion (the mel latents) is scaled to ``floor`` between the beats and up to ``peak``
#: with the kick level, so that the picture moves most on the beat.
MUSIC = {"floor": 0.08, "peak": 0.35}
#: A fitted picture's: a constant share. Its drive is about five times the abstract input's size, so a share that
#: jumped with each kick moved the whole picture on beats without an onset.
PICTURE_MUSIC = {"floor": 0.1, "peak": 0.1}
#: A drop's burst: amplitude 1, released over ``release`` bars; zoom, brightness, saturation and the input's jump
#: per unit (times the ``beat`` setting).
BURST = {"release": 0.5, "zoom": 0.18, "brightness": 0.18, "saturation": 0.5, "z": 1.2}
#: A build's slow zoom-in at its end (fraction), and silence: how much the picture dims, and the ease in and out
#: (seconds).
BUILD_ZOOM = 0.12
REST = {"brightness": -0.05, "ease": 0.15}
#: A section's look per unit of the ``variety`` setting: the norm of its input offset (the music's own z has norm
#: about ``Z_GAIN`` = 0.3), its hue turn (degrees; labels take turns of the golden angle) and its zoom range.
LOOK = {"z": 1.0, "hue": 137.508, "zoom": 0.25}
#: A fitted picture keeps its picture: smaller offsets, hue turns and zooms (in only: a zoom-out would show the
#: edges), as fractions of the above.
PICTURE_LOOK = {"z": 0.25, "hue": 0.2, "zoom": 0.4}
#: The roles a panel's stem plays; 'all': the whole song (no stems).
ROLES = ("all", "kick", "scale", "colour", "look")
#: Which stem drives what (names of :data:`neuromv.settings.SEPARATOR_STEMS`); other names play 'look'.
STEM_ROLES = {"drums": "kick", "percussive": "kick", "bass": "scale", "vocals": "colour", "other": "look",
              "accompaniment": "look", "harmonic": "look"}
#: Role gains: the kick's share (1: the song's kicks), the bass zoom (coordinates shrink by this at full energy),
#: the vocals' hue turn (degrees at full energy) and saturation gain.
ROLE_KICK = {"all": 1.0, "kick": 1.6, "scale": 0.4, "colour": 0.4, "look": 0.7}
BASS_ZOOM = 0.15
VOCAL_HUE = 40.0
VOCAL_SATURATION = 0.6


@dataclass
class Controls:
    """What the structure adds to each frame (see the module's text); every array has ``n_frames`` rows.

    Attributes
    ----------
    z_scale : np.ndarray [shape=(n_frames,), dtype=float32]
        Multiplies the music's input (the scaled latents or drive vectors).
    z_add : np.ndarray [shape=(n_frames, n_z), dtype=float32]
        Added after: ``z = z_music * z_scale[:, None] + z_add``.
    zoom : np.ndarray [shape=(n_frames,), dtype=float32]
        Multiplies the coordinates (below 1 zooms in; :meth:`neuromv.renderer.Renderer.frames`).
    hue : np.ndarray [shape=(n_frames,), dtype=float32]
        Degrees added to the settings' hue.
    saturation : np.ndarray [shape=(n_frames,), dtype=float32]
        Multiplies the settings' saturation.
    brightness : np.ndarray [shape=(n_frames,), dtype=float32]
        Added to the settings' brightness.
    motion : np.ndarray [shape=(n_frames,), dtype=float32] or None
        The motion asked of each frame, in proportion (the onset strength's step, :func:`flux_frames` shaped by the
        beats; 0 in silence): what :func:`neuromv.follow.follow` fits the picture's change to. Not one of
        :attr:`FIELDS` (the page does not need it).
    """

    z_scale: np.ndarray
    z_add: np.ndarray
    zoom: np.ndarray
    hue: np.ndarray
    saturation: np.ndarray
    brightness: np.ndarray
    motion: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return len(self.zoom)

    def apply(self, z: np.ndarray) -> np.ndarray:
        """The network's input per frame: z [shape=(n_frames, n_z)] -> ``z * z_scale + z_add`` (float32)."""
        if z.shape != self.z_add.shape:
            raise ParameterError(f"controls for {self.z_add.shape} frames x inputs, not {z.shape}")
        return (z * self.z_scale[:, None] + self.z_add).astype(np.float32)

    #: The arrays' names, in order (the page receives them so: ``neuromv.serve.jobs.controls_json``).
    FIELDS = ("z_scale", "z_add", "zoom", "hue", "saturation", "brightness")

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name, in the order of :attr:`FIELDS` (for the page and for saving)."""
        return {k: getattr(self, k) for k in self.FIELDS}


def frame_colors(controls: Controls, settings) -> np.ndarray:
    """Each frame's colour map: ``color_matrix(hue + c.hue, saturation * c.saturation, brightness + c.brightness,
    contrast)`` of the settings (:func:`neuromv.renderer.color_matrix`).

    Returns
    -------
    np.ndarray [shape=(n_frames, 3, 4), dtype=float64]
    """
    from .renderer.color import color_matrices

    return color_matrices(settings.hue + controls.hue, settings.saturation * controls.saturation,
                          settings.brightness + controls.brightness, settings.contrast)


def kick_envelope(times: np.ndarray, amplitudes: np.ndarray, periods: np.ndarray, n_frames: int,
                  fps: float, release: float = BURST["release"]) -> np.ndarray:
    """Bursts (a drop's): each hit jumps to its amplitude on its own frame (``round(t * fps)``) and decays
    exponentially with time constant ``release * period``; overlapping hits take the larger value (no pile-up).

    Parameters
    ----------
    times : np.ndarray [shape=(k,)]
        Seconds.
    amplitudes : np.ndarray [shape=(k,)]
    periods : np.ndarray [shape=(k,)]
        Seconds each hit lasts (its beat's length; a bar for a burst).
    n_frames : int
    fps : float
    release : float
        Fraction of the period.

    Returns
    -------
    np.ndarray [shape=(n_frames,), dtype=float64]
    """
    env = np.zeros(n_frames)
    for t, a, p in zip(np.asarray(times, float), np.asarray(amplitudes, float), np.asarray(periods, float)):
        k = int(round(t * fps))
        if k >= n_frames or k < 0 or a <= 0:
            continue
        tau = max(release * p, 0.5 / fps)
        m = min(n_frames, k + int(math.ceil(6 * tau * fps)) + 1)
        env[k:m] = np.maximum(env[k:m], a * np.exp(-np.arange(m - k) / (fps * tau)))
    return env


def look_of(index: int, n_z: int, seed: int, picture: bool) -> tuple[np.ndarray, float, float]:
    """The look of the ``index``-th distinct section label (0: the first, the song's home look): (input offset
    [shape=(n_z,)] before the ``variety`` setting, hue turn in degrees, zoom). The same label, seed and kind give the
    same look."""
    if index == 0:
        return np.zeros(n_z), 0.0, 1.0
    g = np.random.default_rng([int(seed) & (2**63 - 1), 16, index])
    v = g.standard_normal(n_z)
    v /= max(np.linalg.norm(v), 1e-9)
    f = PICTURE_LOOK if picture else {"z": 1.0, "hue": 1.0, "zoom": 1.0}
    hue = ((index * LOOK["hue"] + 180.0) % 360.0 - 180.0) * f["hue"]
    # zooms alternate in and out (pictures: in only), growing slowly with the index
    step = LOOK["zoom"] * f["zoom"] * (0.6 + 0.4 * ((index * 0.618) % 1.0))
    zoom = 1.0 - step if (picture or index % 2 == 1) else 1.0 / (1.0 - step)
    return v * LOOK["z"] * f["z"], float(hue), float(zoom)


def _direction(n_z: int, seed: int, what: int) -> np.ndarray:
    """A fixed unit direction of the input (the kick's, the burst's), drawn from the seed."""
    v = np.random.default_rng([int(seed) & (2**63 - 1), 17, what]).standard_normal(n_z)
    return v / max(np.linalg.norm(v), 1e-9)


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _bar_length(cues: Cues, t: float) -> float:
    """The length of the bar around time ``t`` (seconds): between the downbeats around it, else from the tempo."""
    d = cues.downbeats
    if len(d) >= 2:
        i = int(np.clip(np.searchsorted(d, t) - 1, 0, len(d) - 2))
        return float(d[i + 1] - d[i])
    return cues.beats_per_bar * 60.0 / max(cues.tempo, 1e-6)


def _at(rate: float, values: np.ndarray, times: np.ndarray, outside: float | None = None) -> np.ndarray:
    """A regularly sampled curve (``rate`` per second from 0) at ``times`` (linear; held at the ends, or
    ``outside`` beyond them)."""
    if len(values) == 0:
        return np.zeros(len(times))
    return np.interp(times, np.arange(len(values)) / float(rate), np.asarray(values, np.float64), left=outside,
                     right=outside)


def _hit_strength(cues: Cues, times: np.ndarray, window: float = 0.07) -> np.ndarray:
    """Each beat's own strength: the sum over the bands of :data:`HIT_WEIGHT` times the band's strongest onset
    within ``window`` s, in [0, 1]."""
    out = np.zeros(len(times))
    for band, (t, s) in cues.onsets.items():
        t, s = np.asarray(t, float), np.asarray(s, float)
        if len(t) == 0 or len(times) == 0:
            continue
        i = np.clip(np.searchsorted(t, times), 0, len(t) - 1)
        best = np.zeros(len(times))
        for j in (np.maximum(i - 1, 0), i):
            best = np.maximum(best, np.where(np.abs(t[j] - times) <= window, s[j], 0.0))
        out += HIT_WEIGHT.get(band, 0.0) * best
    return np.minimum(out, 1.0)


def flux_frames(cues: Cues, t: np.ndarray, fps: float) -> np.ndarray:
    """The music's onset strength at each frame: the cues' ``flux`` at the frames' times (linear between its values,
    0 after its end). Cues without one (schema version 1) make it from their onsets: each band's onset adds its
    strength times :data:`HIT_WEIGHT` to the frame nearest its time.

    Parameters
    ----------
    cues : Cues
    t : np.ndarray [shape=(n_frames,)]
        Each frame's time in the song, seconds (evenly spaced, ``1 / fps`` apart).
    fps : float

    Returns
    -------
    np.ndarray [shape=(n_frames,), dtype=float64]
        In [0, 1].
    """
    t = np.asarray(t, dtype=np.float64)
    if len(cues.flux):
        return _at(cues.flux_rate, cues.flux, t, outside=0.0)
    out = np.zeros(len(t))
    if len(t) == 0:
        return out
    for band, (times, strength) in cues.onsets.items():
        k = np.round((np.asarray(times, float) - t[0]) * fps).astype(int)
        ok = (k >= 0) & (k < len(t))
        np.add.at(out, k[ok], HIT_WEIGHT.get(band, 0.0) * np.asarray(strength, float)[ok])
    return np.minimum(out, 1.0)


def _spread(x: np.ndarray, fps: float) -> np.ndarray:
    """``x`` averaged over the frames within :data:`neuromv.sync.PEAK_WINDOW` of each frame (0 beyond the ends): the
    window the sync's peak picking looks at. A lone onset becomes a plateau over that window a seventh as high (at
    30 frames/s): the motion keeps the onsets' rise and fall but makes far lower peaks."""
    from scipy.ndimage import uniform_filter1d

    from .sync import PEAK_WINDOW

    return uniform_filter1d(np.asarray(x, dtype=np.float64), 2 * max(1, int(round(PEAK_WINDOW * fps))) + 1,
                            mode="constant")


def _near_beats(beats: np.ndarray, n_frames: int, fps: float, near: int) -> np.ndarray:
    """1 on the frames within ``near`` frames of a beat (times from frame 0), else 0."""
    out = np.zeros(n_frames)
    k = np.round(np.asarray(beats, float) * fps).astype(int)
    for d in range(-near, near + 1):
        j = k + d
        out[j[(j >= 0) & (j < n_frames)]] = 1.0
    return out


def pulse_envelope(times: np.ndarray, amplitudes: np.ndarray, periods: np.ndarray, n_frames: int, fps: float,
                   release: float = KICK["release"], unit: float = 1.0, cap: float = 1.5) -> np.ndarray:
    """Hits that pile up and release linearly: each hit adds its amplitude to the level on its own frame
    (``round(t * fps)``; capped at ``cap * unit``), and the level falls back to 0 at a constant rate, ``unit`` per
    ``release * period`` seconds of the latest hit. The frame-to-frame change is then the hit's amplitude on the
    hit's frame and a small constant between hits.

    Parameters
    ----------
    times, amplitudes, periods : np.ndarray [shape=(k,)]
        Seconds, level units, seconds (the hit's beat length).
    n_frames : int
    fps : float
    release : float
        Fraction of the period that a hit of ``unit`` takes to release.
    unit : float
        A full hit's amplitude.
    cap : float
        The highest level, in units.

    Returns
    -------
    np.ndarray [shape=(n_frames,), dtype=float64]
    """
    add = np.zeros(n_frames)
    rate = np.full(n_frames, np.nan)
    k = np.round(np.asarray(times, float) * fps).astype(int)
    ok = (k >= 0) & (k < n_frames) & (np.asarray(amplitudes, float) > 0)
    np.add.at(add, k[ok], np.asarray(amplitudes, float)[ok])
    rate[k[ok]] = unit / (fps * np.maximum(release * np.asarray(periods, float)[ok], 1.0 / fps))
    out = np.zeros(n_frames)
    level, r = 0.0, 0.0
    for i in range(n_frames):
        if not math.isnan(rate[i]):
            r = rate[i]
        level = min(max(level - r, 0.0) + add[i], cap * unit)
        out[i] = level
    return out


def _merged(spans) -> tuple[np.ndarray, np.ndarray]:
    """Spans as disjoint, sorted intervals (overlapping ones joined): (starts, ends), seconds. Everything after
    this costs time in proportion to the frames and events, however a cues file lays its spans out."""
    out: list[list[float]] = []
    for a, b in sorted((sp.start, sp.end) for sp in spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    arr = np.asarray(out, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _span_of(spans: tuple[np.ndarray, np.ndarray], times: np.ndarray) -> np.ndarray:
    """For each time, the index of the merged span holding it (``start <= t < end``), or -1."""
    starts, ends = spans
    i = np.searchsorted(starts, times, side="right") - 1
    inside = (i >= 0) & (times < ends[np.maximum(i, 0)]) if len(starts) else np.zeros(len(times), bool)
    return np.where(inside, i, -1)


def _rest(silence: tuple[np.ndarray, np.ndarray], t: np.ndarray) -> np.ndarray:
    """1 inside silent spans, eased in over ``REST['ease']`` seconds from the span's start, 0 from its end on (the
    music comes back with a hit, not with a picture waking up before it)."""
    i = _span_of(silence, t)
    inside = i >= 0
    out = np.zeros(len(t))
    out[inside] = _smoothstep((t[inside] - silence[0][i[inside]]) / REST["ease"])
    return out


def _build_ramp(builds: tuple[np.ndarray, np.ndarray], t: np.ndarray) -> np.ndarray:
    """0 to 1 across each build (linear in time), 0 outside: (t - start) / (end - start)."""
    i = _span_of(builds, t)
    inside = i >= 0
    out = np.zeros(len(t))
    a, b = builds[0][i[inside]], builds[1][i[inside]]
    out[inside] = (t[inside] - a) / np.maximum(b - a, 1e-6)
    return out


def _section_looks(cues: Cues, t: np.ndarray, settings, n_z: int, picture: bool):
    """Per frame: the section look's input offset [n, n_z], hue [n] and log-zoom [n], with the transitions. Only
    the sections around the frames are visited, each over its own frames."""
    n = len(t)
    params = np.zeros((n, n_z + 2))
    secs = cues.sections
    if not secs or n == 0:
        return params[:, :n_z], params[:, n_z], params[:, n_z + 1]
    index = {lab: i for i, lab in enumerate(cues.labels)}
    looks: dict[int, np.ndarray] = {}

    def vec(label: str) -> np.ndarray:
        i = index[label]
        if i not in looks:
            off, hue, zoom = look_of(i, n_z, settings.seed, picture)
            looks[i] = np.concatenate([off * settings.variety, [hue * settings.variety, math.log(zoom) * settings.variety]])
        return looks[i]

    starts = np.array([sec.start for sec in secs])
    first = max(0, int(np.searchsorted(starts, t[0], side="right")) - 1)
    last = min(len(secs), int(np.searchsorted(starts, t[-1], side="right")) + 1)
    ks = np.searchsorted(t, starts, side="left")  # each section's first frame
    for i in range(first, last):
        lo = 0 if i == first else int(ks[i])
        hi = int(ks[i + 1]) if i + 1 < len(secs) else n
        if hi <= lo:
            continue
        params[lo:hi] = vec(secs[i].label)
        if i + 1 < len(secs):  # the transition into the next section, in this one's last bars
            prev, nxt = secs[i], secs[i + 1]
            length = settings.transition * _bar_length(cues, nxt.start - 1e-3)
            length = min(length, 0.5 * (prev.end - prev.start)) if length > 0 else 0.0
            if length > 0:
                k = max(lo, int(np.searchsorted(t, nxt.start - length, side="left")))
                u = _smoothstep((t[k:hi] - (nxt.start - length)) / length)[:, None]
                a, b = vec(prev.label), vec(nxt.label)
                params[k:hi] = a + (b - a) * u
    return params[:, :n_z], params[:, n_z], params[:, n_z + 1]


def controls_for(cues: Cues, n_frames: int, settings, *, kind: bool | str = False, role: str = "all",
                 stem_cues: Cues | None = None, start: float = 0.0, between: float | None = None) -> Controls | None:
    """The structure's controls of every frame of a render.

    Parameters
    ----------
    cues : Cues
        The song's cues (times from the song's start).
    n_frames : int
        Frames of the render; frame ``i`` shows time ``start + i / fps``.
    settings : RenderSettings
        ``structure`` ('off': None), ``beat``, ``variety``, ``transition``, ``seed``, ``fps``, ``n_mels``.
    kind : {False, 'picture', True}
        The network (:func:`neuromv.plan.kind_of`): an abstract CPPN (False), a fitted picture ('picture': milder
        looks, zoom in only) or a format-1 image-mode CPPN (True: no zoom).
    role : str
        What the panel's stem drives (:data:`ROLES`, :data:`STEM_ROLES`); 'all' without stems.
    stem_cues : Cues, optional
        The stem's own cues (its onsets and energy drive the role); default: the song's.
    start : float
        Seconds of the song before frame 0 (an excerpt's start).
    between : float, optional
        The share of the onset strength that moves the pattern between the beats, >= 0; default: :data:`FLUX`'s
        (a fitted picture: :data:`PICTURE_FLUX`'s). :func:`neuromv.plan.panel_controls` balances it per song
        (:data:`BALANCE`).

    Returns
    -------
    Controls or None
        None when ``settings.structure`` is 'off'.
    """
    if settings.structure == "off":
        return None
    if role not in ROLES:
        raise ParameterError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if between is not None and not (np.isfinite(between) and between >= 0):
        raise ParameterError(f"between must be a share >= 0, not {between!r}")
    fps, n_z = float(settings.fps), int(settings.n_mels)
    picture = kind == "picture"
    t = start + np.arange(n_frames) / fps
    own = stem_cues if stem_cues is not None else cues
    silence, builds = _merged(cues.silence), _merged(cues.builds)
    beat = float(settings.beat) * float(settings.reactivity)  # hits are the music moving the picture, too
    rest = _rest(silence, t)

    # kicks on the song's beats, shaped by the hit (the panel's own audio) and the energy
    beats = np.asarray(cues.beats, float)
    kick = np.zeros(n_frames)
    advance = np.zeros(n_frames)
    motion = np.zeros(n_frames)
    if len(beats) and beat > 0:
        # each beat's length (across a gap in the beats, at most 1.5 of the usual one)
        usual = float(np.median(np.diff(beats))) if len(beats) > 1 else 60.0 / max(cues.tempo, 1e-6)
        periods = np.minimum(np.diff(beats, append=beats[-1] + usual), 1.5 * usual)
        down = np.isin(np.round(beats, 3), np.round(np.asarray(cues.downbeats, float), 3))
        amp = np.where(down, KICK["downbeat"], KICK["beat"])
        hit = _hit_strength(own, beats)
        # a beat kicks at least at ``floor`` for the whole song and the drums; the other stems by their own hits
        floor = KICK["floor"] if role in ("all", "kick") else 0.0
        amp = amp * (floor + (1.0 - floor) * hit)
        energy = _at(own.energy_rate, own.energy, beats)
        amp *= (1.0 - KICK["energy"]) + KICK["energy"] * energy
        amp *= _span_of(silence, beats) < 0
        amp *= 1.0 + _build_ramp(builds, beats)  # a build's kicks grow towards its end
        amp *= beat * ROLE_KICK[role]
        kick = pulse_envelope(beats - start, amp, periods, n_frames, fps, KICK["release"],
                              unit=beat * ROLE_KICK[role])
    # the pattern moves with the onsets: in full on the beats, a share between them; it rests in silence
    flux, music = (PICTURE_FLUX, PICTURE_MUSIC) if picture else (FLUX, MUSIC)
    if beat > 0:
        shaped = flux_frames(own, t, fps)
        if len(beats):
            near = _near_beats(beats - start, n_frames, fps, int(flux["near"]))
            share = flux["between"] if between is None else float(between)
            between_beats = share * shaped + flux["spread"] * _spread(shaped, fps)
            shaped = near * shaped + (1.0 - near) * between_beats
        motion = shaped * (1.0 - rest)
        advance = np.cumsum(flux["gain"] * beat * ROLE_KICK[role] * motion)
    # drops burst, released over a bar
    burst = np.zeros(n_frames)
    if len(cues.drops) and beat > 0:
        bars = np.array([_bar_length(cues, d) for d in cues.drops])
        burst = kick_envelope(np.asarray(cues.drops) - start, np.full(len(bars), beat), bars, n_frames, fps,
                              BURST["release"])
    build = _smoothstep(_build_ramp(builds, t))
    kick = kick * (1.0 - rest)  # silence lets the picture rest: a kick released into it fades with it

    offset, hue, log_zoom = _section_looks(cues, t, settings, n_z, picture)
    # the pattern's steps count from each section's start: a returning section starts from its own look again
    for sec in cues.sections[1:]:
        k0 = int(round((sec.start - start) * fps))
        if 0 < k0 < n_frames:
            advance[k0:] -= advance[k0 - 1]
    angle = KICK["step"] * advance
    z_add = offset + KICK["z"] * (np.outer(np.cos(angle) - 1.0, _direction(n_z, settings.seed, 1))
                                  + np.outer(np.sin(angle), _direction(n_z, settings.seed, 3)))
    z_add += np.outer(burst * BURST["z"], _direction(n_z, settings.seed, 2))
    share = PICTURE_KICK if picture else 1.0
    zoom = np.exp(log_zoom) * (1.0 - share * KICK["zoom"] * kick) * (1.0 - BURST["zoom"] * np.minimum(burst, 1.0)) \
        * (1.0 - BUILD_ZOOM * build)
    brightness = share * KICK["brightness"] * kick + BURST["brightness"] * burst + REST["brightness"] * rest
    saturation = 1.0 + BURST["saturation"] * burst
    if role in ("scale", "colour"):
        level = _at(own.energy_rate, own.energy, t)
        if role == "scale":
            zoom = zoom * (1.0 - BASS_ZOOM * beat * level)
        else:
            hue = hue + VOCAL_HUE * settings.variety * level
            saturation = saturation * (1.0 + VOCAL_SATURATION * level)
    if kind is True:  # a format-1 image-mode CPPN is not zoomed
        zoom = np.ones(n_frames)
    f = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    gate = np.ones(n_frames)  # without kicks the music moves the picture as without cues
    if len(beats) and beat > 0:
        gate = music["floor"] + (music["peak"] - music["floor"]) * np.minimum(kick / (beat * ROLE_KICK[role]), 1.0)
    return Controls(f((1.0 - rest) * gate), f(z_add), f(np.clip(zoom, 0.05, 20.0)), f(hue),
                    f(np.maximum(saturation, 0.0)), f(brightness), f(motion))
