"""The beats' phase: the analysis's beats against the beat grid of each song's MIDI original, and whether they sit
on the beat or on the off-beat.

For each real song whose MIDI original has one tempo (its beats are then ``k * 60 / bpm`` seconds from the start),
the whole song (up to ``--whole`` seconds) and excerpts of ``--seconds`` from each of ``--offsets`` are analysed
(:func:`neuromv.analysis.analyze`) at the current beat-tracking tightness and at ``--reference`` (librosa's 100).
Each cell is mir_eval's F-measure at +-70 ms against the grid or against the grid moved by half a beat, whichever
is higher ("off": the half-beat one): 1 means the beats keep one phase throughout, even if it is the off-beat; a
value near 0.5 means they changed phase part way. Only the analysis runs (no render): about a second per cell.

    python bench/beat_phase.py --real DIR --midi DIR
"""

from __future__ import annotations

import argparse
import functools
import inspect
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from sync_bench import midi_tempo  # noqa: E402

from neuromv import analysis  # noqa: E402
from neuromv.analysis import ANALYSIS_VERSION, analyze  # noqa: E402
from neuromv.audio import AudioFile  # noqa: E402


def one_tempo(path: Path) -> bool:
    """Whether a standard MIDI file sets its tempo at most once."""
    return path.read_bytes().count(b"\xff\x51\x03") <= 1


def phase_f(truth: np.ndarray, beats: np.ndarray, period: float) -> tuple[float, bool]:
    """(F-measure at the better phase, whether that is the off-beat)."""
    import mir_eval

    on = mir_eval.beat.f_measure(truth, beats, f_measure_threshold=0.07)
    off = mir_eval.beat.f_measure(truth + period / 2, beats, f_measure_threshold=0.07)
    return max(on, off), off > on


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, required=True, help="folder of real songs (*.ogg, *.mp3, *.flac, *.wav)")
    ap.add_argument("--midi", type=Path, required=True, help="folder of their MIDI originals (same stem, .mid)")
    ap.add_argument("--offsets", default="30,60,100", help="starts of the excerpts, s (comma-separated)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each excerpt, s")
    ap.add_argument("--whole", type=float, default=600.0, help="the whole song, up to this many seconds")
    ap.add_argument("--reference", type=float, default=100.0, help="the tightness compared with (librosa's: 100)")
    args = ap.parse_args()

    now = inspect.signature(TRACK_BEATS).parameters["tightness"].default  # the analysis's own
    spans = [(0.0, args.whole, "whole")] + [(float(o), args.seconds, f"{float(o):g}-{float(o) + args.seconds:g} s")
                                           for o in args.offsets.split(",")]
    rows, cells = [], {args.reference: [], now: []}
    for f in sorted(args.real.iterdir()):
        mid = args.midi / (f.stem + ".mid")
        if f.suffix.lower() not in (".ogg", ".mp3", ".flac", ".wav") or not mid.exists() or not one_tempo(mid):
            continue
        period = 60.0 / midi_tempo(mid)
        row = []
        for start, seconds, _ in spans:
            audio = AudioFile(f, start=start, duration=seconds).load()
            truth = np.arange(np.ceil(start / period), (start + audio.duration) / period) * period - start
            out = []
            for tightness in (args.reference, now):
                analysis.track_beats = functools.partial(TRACK_BEATS, tightness=tightness)
                try:
                    beats = np.asarray(analyze(audio).beats)
                finally:
                    analysis.track_beats = TRACK_BEATS
                score, off = phase_f(truth, beats, period)
                cells[tightness].append(score)
                out.append(f"{score:.2f}{' (off)' if off else ''}")
            row.append(" → ".join(out))
        rows.append(f"| {f.stem} | " + " | ".join(row) + " |")
        print(rows[-1], flush=True)
    print(f"\nMachine: {machine()}. Analysis version {ANALYSIS_VERSION}. Command: `python bench/beat_phase.py "
          f"{' '.join(sys.argv[1:])}`. Each cell: tightness {args.reference:g} → {now:g}.\n")
    print("| song | " + " | ".join(label for _, _, label in spans) + " |")
    print("|---|" + "---|" * len(spans))
    print("\n".join(rows))
    for t, v in cells.items():
        v = np.array(v)
        print(f"\ntightness {t:g}: mean {v.mean():.2f}, lowest {v.min():.2f}, "
              f"below 0.9 in {np.sum(v < 0.9)} of {v.size}")


TRACK_BEATS = analysis.track_beats

if __name__ == "__main__":
    main()
