"""Cues: what a song's structure is, in a form a person can read, edit and give back (``neuromv analyze``).

:mod:`neuromv.analysis` finds the cues of a song; :mod:`neuromv.structure` turns them into what each video frame
shows. This module holds the data (:class:`Cues`) and its JSON file, schema version :data:`SCHEMA_VERSION`
(docs/cues.md)::

    {
      "neuromv_cues": 2,
      "duration": 241.3,                                  # seconds
      "tempo": 128.0,                                     # beats per minute, the song's main tempo
      "tempo_map": [{"time": 0.0, "bpm": 128.0}],         # where the tempo changes (the first at 0)
      "beats_per_bar": 4,
      "beats": [0.46, 0.93, ...],                         # seconds
      "downbeats": [0.46, 2.34, ...],                     # the first beat of every bar (a subset of beats)
      "onsets": {"low": {"times": [...], "strength": [...]},   # per band: seconds, strength in [0, 1]
                 "mid": {...}, "high": {...}},
      "sections": [{"start": 0.0, "end": 30.2, "label": "A"}, ...],  # cover the song; a label returns
      "energy": {"rate": 10.0, "values": [...]},          # loudness in [0, 1], `rate` values per second
      "flux": {"rate": 43.07, "values": [...]},           # the whole mix's onset strength in [0, 1] (version 2)
      "builds": [{"start": 52.1, "end": 60.0}],           # energy rising into a drop
      "drops": [60.0],                                    # seconds
      "silence": [{"start": 120.5, "end": 122.0}],        # spans to rest in
      "analysis": {...}                                   # how it was made (free-form, not read back)
    }

A bar runs from one downbeat to the next. Every list of times is sorted and lies within ``[0, duration]``.
Reading a file checks everything against the bounds below before anything is built from it, so a hostile or
mistyped file is one line of :class:`~neuromv.errors.CuesError` and never a crash or an unbounded allocation.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import CuesError

__all__ = ["SCHEMA_VERSION", "READ_VERSIONS", "BANDS", "Span", "Section", "Cues", "load_cues", "save_cues",
           "MAX_CUES_BYTES", "MAX_EVENTS_PER_SECOND", "MAX_LABEL_CHARS"]

#: The version of the JSON schema this NeuroMV writes (it reads :data:`READ_VERSIONS`). Version 2 added ``flux``.
SCHEMA_VERSION = 2
#: The schema versions this NeuroMV reads (a version-1 file has no ``flux``: the structure then makes one from the
#: onsets, :func:`neuromv.structure.flux_frames`).
READ_VERSIONS = (1, 2)
#: The onset bands, low to high: kick (below ~150 Hz), snare and voice (~150 Hz to ~3 kHz), hats (above).
BANDS = ("low", "mid", "high")
#: Largest cues file read: a 4-minute song's cues are about 120 KB (half of it the flux); an hour of dense onsets
#: and its flux about 8 MB.
MAX_CUES_BYTES = 32 * 2**20
#: Most events (beats, onsets per band, sections, ...) per second of song: onsets closer than 20 ms are one sound,
#: so 50 per second is already more than any music has.
MAX_EVENTS_PER_SECOND = 50.0
#: Longest section label, in characters ('A', 'B', ... or a name a person gives, such as 'chorus').
MAX_LABEL_CHARS = 32
#: What a label may hold (letters, digits, spaces and a little punctuation).
_LABEL = re.compile(r"^[\w .'+-]+$")
#: The rate of a curve (energy, flux) whose file gives none.
_DEFAULT_RATE = 10.0
_TOP_KEYS = ("neuromv_cues", "duration", "tempo", "tempo_map", "beats_per_bar", "beats", "downbeats", "onsets",
             "sections", "energy", "flux", "builds", "drops", "silence", "analysis")


@dataclass(frozen=True)
class Span:
    """A stretch of the song: ``start`` to ``end``, seconds."""

    start: float
    end: float


@dataclass(frozen=True)
class Section(Span):
    """A section of the song with its repetition label: sections that sound alike share a label (a chorus that
    returns gets its letter again)."""

    label: str = "A"


@dataclass
class Cues:
    """A song's structure (see the module's text for the JSON).

    Attributes
    ----------
    duration : float
        Seconds.
    tempo : float
        Main tempo, beats per minute.
    tempo_map : list of (float, float)
        ``(time s, bpm)`` where the tempo changes, the first at 0.
    beats_per_bar : int
    beats, downbeats : np.ndarray [shape=(n,), dtype=float64]
        Seconds, sorted; downbeats start the bars.
    onsets : dict of str to (np.ndarray, np.ndarray)
        Per band of :data:`BANDS`: (times s, strengths in [0, 1]), same length.
    sections : list of Section
        In order, covering ``[0, duration]``.
    energy : np.ndarray [shape=(n,), dtype=float32]
        Loudness in [0, 1], ``energy_rate`` values per second from time 0.
    energy_rate : float
        Values of ``energy`` per second.
    builds : list of Span
    drops : np.ndarray [shape=(n,), dtype=float64]
        Seconds.
    silence : list of Span
    analysis : dict
        How the cues were made (free-form; written, never interpreted).
    flux : np.ndarray [shape=(n,), dtype=float32]
        The whole mix's onset strength (spectral flux) in [0, 1], ``flux_rate`` values per second from time 0
        (value ``i`` is the change into time ``i / flux_rate``); empty when unknown (a version-1 file).
    flux_rate : float
        Values of ``flux`` per second.
    """

    duration: float
    tempo: float = 120.0
    tempo_map: list = field(default_factory=list)
    beats_per_bar: int = 4
    beats: np.ndarray = field(default_factory=lambda: np.zeros(0))
    downbeats: np.ndarray = field(default_factory=lambda: np.zeros(0))
    onsets: dict = field(default_factory=dict)
    sections: list = field(default_factory=list)
    energy: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    energy_rate: float = _DEFAULT_RATE
    builds: list = field(default_factory=list)
    drops: np.ndarray = field(default_factory=lambda: np.zeros(0))
    silence: list = field(default_factory=list)
    analysis: dict = field(default_factory=dict)
    flux: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    flux_rate: float = _DEFAULT_RATE

    @property
    def bars(self) -> list[Span]:
        """The bars: from each downbeat to the next (the last to the song's end)."""
        d = list(self.downbeats) + [self.duration]
        return [Span(float(a), float(b)) for a, b in zip(d[:-1], d[1:]) if b > a]

    @property
    def labels(self) -> list[str]:
        """The distinct section labels, in order of first appearance."""
        return list(dict.fromkeys(s.label for s in self.sections))

    def to_json(self) -> dict[str, Any]:
        """The JSON document (see the module's text); times rounded to 0.1 ms."""
        t = lambda a: [round(float(x), 4) for x in a]  # noqa: E731
        return {
            "neuromv_cues": SCHEMA_VERSION,
            "duration": math.ceil(float(self.duration) * 1e4) / 1e4,  # up: never 0, never before a rounded time
            "tempo": round(float(self.tempo), 3),
            "tempo_map": [{"time": round(float(a), 4), "bpm": round(float(b), 3)} for a, b in self.tempo_map],
            "beats_per_bar": int(self.beats_per_bar),
            "beats": t(self.beats),
            "downbeats": t(self.downbeats),
            "onsets": {b: {"times": t(self.onsets[b][0]), "strength": [round(float(x), 3) for x in self.onsets[b][1]]}
                       for b in BANDS if b in self.onsets},
            "sections": [{"start": round(s.start, 4), "end": round(s.end, 4), "label": s.label}
                         for s in self.sections],
            "energy": {"rate": float(self.energy_rate), "values": [round(float(x), 3) for x in self.energy]},
            "flux": {"rate": float(self.flux_rate), "values": [round(float(x), 3) for x in self.flux]},
            "builds": [{"start": round(s.start, 4), "end": round(s.end, 4)} for s in self.builds],
            "drops": t(self.drops),
            "silence": [{"start": round(s.start, 4), "end": round(s.end, 4)} for s in self.silence],
            "analysis": self.analysis,
        }

    @classmethod
    def from_json(cls, doc: Any, where: str = "cues") -> Cues:
        """Check a JSON document (see the module's text) and build the cues from it.

        Raises
        ------
        CuesError
            One line naming ``where`` and the field: wrong version, unknown keys, wrong types, non-finite or
            negative numbers, unsorted or out-of-range times, too many events, a bad label.
        """
        return _Reader(where).cues(doc)


def save_cues(cues: Cues, path: str | os.PathLike, *, overwrite: bool = True,
              inputs: tuple = ()) -> None:
    """Write ``cues`` as JSON to ``path``, atomically (a temporary file moved into place when complete).

    Raises
    ------
    OutputError
        ``path`` exists (without ``overwrite``), is one of ``inputs``, or cannot be written.
    """
    from ._files import atomic_file, check_output

    check_output(path, inputs=inputs, overwrite=overwrite, kind="cues file")
    text = json.dumps(cues.to_json(), indent=1)
    with atomic_file(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")


def load_cues(path: str | os.PathLike) -> Cues:
    """Read and check a cues file (at most :data:`MAX_CUES_BYTES`; regular files only).

    Raises
    ------
    CuesError
    """
    from ._files import open_input_file

    with open_input_file(path, "cues", MAX_CUES_BYTES) as f:
        data = f.read(MAX_CUES_BYTES + 1)
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as e:
        raise CuesError(f"{path}: not a cues file (invalid JSON: {str(e).splitlines()[0]})") from None
    return Cues.from_json(doc, str(path))


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


class _Reader:
    """The checks of :meth:`Cues.from_json`, each failing with one line that names the file and the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, message: str) -> CuesError:
        return CuesError(f"{self.where}: {message}")

    def cues(self, doc: Any) -> Cues:
        from .limits import MAX_SECONDS

        if not isinstance(doc, dict) or "neuromv_cues" not in doc:
            raise self.fail("not a cues file (a JSON object with 'neuromv_cues' is expected)")
        version = doc["neuromv_cues"]
        if isinstance(version, bool) or version not in READ_VERSIONS:
            raise self.fail(f"cues schema version {version!r}; this NeuroMV reads versions "
                            f"{', '.join(map(str, READ_VERSIONS))} (run 'neuromv analyze' again)")
        if version < 2 and "flux" in doc:
            raise self.fail("flux needs schema version 2")
        unknown = sorted(set(doc) - set(_TOP_KEYS))
        if unknown:
            raise self.fail(f"unknown field(s): {', '.join(map(str, unknown))[:200]}")
        duration = self.number(doc.get("duration"), "duration", 0.0, MAX_SECONDS, lo_open=True)
        self.max_events = max(16, int(math.ceil(duration * MAX_EVENTS_PER_SECOND)))
        self.duration = duration
        tempo = self.number(doc.get("tempo", 120.0), "tempo", 1.0, 1000.0)
        tempo_map = [(self.time(e, "tempo_map[].time", "time"), self.number(self.get(e, "bpm", "tempo_map[]"),
                                                                           "tempo_map[].bpm", 1.0, 1000.0))
                     for e in self.list(doc.get("tempo_map", []), "tempo_map")]
        self.sorted([a for a, _ in tempo_map], "tempo_map")
        beats_per_bar = self.number(doc.get("beats_per_bar", 4), "beats_per_bar", 1, 32, integer=True)
        beats = self.times(doc.get("beats", []), "beats")
        downbeats = self.times(doc.get("downbeats", []), "downbeats")
        onsets = {}
        raw = doc.get("onsets", {})
        if not isinstance(raw, dict):
            raise self.fail("onsets must be an object of bands")
        for band, entry in raw.items():
            if band not in BANDS:
                raise self.fail(f"onsets: unknown band {str(band)[:40]!r} (bands: {', '.join(BANDS)})")
            if not isinstance(entry, dict) or set(entry) - {"times", "strength"}:
                raise self.fail(f"onsets.{band} must be {{'times': [...], 'strength': [...]}}")
            times = self.times(entry.get("times", []), f"onsets.{band}.times")
            strength = self.values(entry.get("strength", [1.0] * len(times)), f"onsets.{band}.strength", 0.0, 1.0)
            if len(strength) != len(times):
                raise self.fail(f"onsets.{band}: {len(times)} times but {len(strength)} strengths")
            onsets[band] = (times, strength)
        sections = []
        for i, e in enumerate(self.list(doc.get("sections", []), "sections")):
            start, end = self.span(e, f"sections[{i}]", extra=("label",))
            label = self.get(e, "label", f"sections[{i}]")
            if not isinstance(label, str) or not 0 < len(label) <= MAX_LABEL_CHARS or not _LABEL.match(label):
                raise self.fail(f"sections[{i}].label must be 1 to {MAX_LABEL_CHARS} letters, digits, spaces or "
                                f".'+-_, not {str(label)[:40]!r}")
            sections.append(Section(start, end, label))
        for i, (a, b) in enumerate(zip(sections[:-1], sections[1:])):
            if b.start < a.end - 1e-6:
                raise self.fail(f"sections[{i + 1}] starts at {b.start:g} s, before sections[{i}] ends "
                                f"({a.end:g} s): sections are in order and do not overlap")
        rate, energy = self.curve(doc.get("energy", {}), "energy", duration)
        flux_rate, flux = self.curve(doc.get("flux", {}), "flux", duration)
        builds = [Span(*self.span(e, f"builds[{i}]")) for i, e in enumerate(self.list(doc.get("builds", []),
                                                                                        "builds"))]
        silence = [Span(*self.span(e, f"silence[{i}]")) for i, e in enumerate(self.list(doc.get("silence", []),
                                                                                         "silence"))]
        drops = self.times(doc.get("drops", []), "drops")
        analysis = doc.get("analysis", {})
        if not isinstance(analysis, dict):
            raise self.fail("analysis must be an object")
        return Cues(duration, tempo, tempo_map, int(beats_per_bar), beats, downbeats, onsets, sections, energy, rate,
                    builds, drops, silence, analysis, flux, flux_rate)

    # -- pieces ------------------------------------------------------------------------------------------------
    def curve(self, obj: Any, name: str, duration: float) -> tuple[float, np.ndarray]:
        """A curve in [0, 1] sampled ``rate`` times a second (``energy``, ``flux``): (rate, values as float32), at
        most one value per sample of the song and two more."""
        if not isinstance(obj, dict) or set(obj) - {"rate", "values"}:
            raise self.fail(f"{name} must be {{'rate': values per second, 'values': [...]}}")
        rate = self.number(obj.get("rate", _DEFAULT_RATE), f"{name}.rate", 0.01, 1000.0)
        values = self.values(obj.get("values", []), f"{name}.values", 0.0, 1.0,
                             limit=int(math.ceil(duration * rate)) + 2)
        return rate, values.astype(np.float32)

    def get(self, obj: Any, key: str, name: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise self.fail(f"{name} needs '{key}'")
        return obj[key]

    def list(self, value: Any, name: str) -> list:
        if not isinstance(value, list):
            raise self.fail(f"{name} must be a list")
        if len(value) > self.max_events:
            raise self.fail(f"{name} has {len(value):,} entries, more than {self.max_events:,} "
                            f"({MAX_EVENTS_PER_SECOND:g} per second of song)")
        return value

    def number(self, value: Any, name: str, lo: float, hi: float, *, integer: bool = False,
               lo_open: bool = False) -> float:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (value > lo if lo_open else value >= lo) and value <= hi and (not integer or value == int(value)))
        if not ok:
            kind = "a whole number" if integer else "a number"
            raise self.fail(f"{name} must be {kind} {'>' if lo_open else '>='} {lo:g} and <= {hi:g}, "
                            f"not {str(value)[:40]}")
        return int(value) if integer else float(value)

    def time(self, obj: Any, name: str, key: str) -> float:
        return self.number(self.get(obj, key, name.split(".")[0]), name, 0.0, self.duration)

    def values(self, value: Any, name: str, lo: float, hi: float, limit: int | None = None) -> np.ndarray:
        if not isinstance(value, list):
            raise self.fail(f"{name} must be a list of numbers")
        limit = self.max_events if limit is None else limit
        if len(value) > limit:
            raise self.fail(f"{name} has {len(value):,} values, more than {limit:,}")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
            raise self.fail(f"{name} must be a list of numbers")
        a = np.asarray(value, dtype=np.float64)
        bad = ~np.isfinite(a) | (a < lo) | (a > hi)
        if bad.any():
            raise self.fail(f"{name}[{int(np.argmax(bad))}] = {a[bad][0]:g} is outside [{lo:g}, {hi:g}]")
        return a

    def times(self, value: Any, name: str) -> np.ndarray:
        a = self.values(value, name, 0.0, self.duration)
        self.sorted(a, name)
        return a

    def sorted(self, a, name: str) -> None:
        a = np.asarray(a, dtype=np.float64)
        if a.size > 1 and np.any(np.diff(a) < 0):
            raise self.fail(f"{name} must be in increasing order (entry {int(np.argmax(np.diff(a) < 0)) + 1} is not)")

    def span(self, obj: Any, name: str, extra: tuple = ()) -> tuple[float, float]:
        if not isinstance(obj, dict) or set(obj) - {"start", "end", *extra}:
            raise self.fail(f"{name} must be {{'start': s, 'end': s{''.join(f', {k!r}: ...' for k in extra)}}}")
        start = self.number(self.get(obj, "start", name), f"{name}.start", 0.0, self.duration)
        end = self.number(self.get(obj, "end", name), f"{name}.end", 0.0, self.duration)
        if end <= start:
            raise self.fail(f"{name} ends ({end:g} s) before it starts ({start:g} s)")
        return start, end
