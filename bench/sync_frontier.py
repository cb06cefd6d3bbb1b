"""What any motion envelope can reach on a song under ``neuromv sync``'s measures (docs/sync.md).

    python bench/sync_frontier.py --real /tmp/music/x/usr/share/planetblupi/music --songs music001,music006

For each 60-s excerpt (from 30 s) the "ideal render" is the song's own onset strength (the one the sync measures,
:func:`neuromv.metrics.onset_strength`), in full within one frame of each beat (:func:`neuromv.sync.song_beats`)
and times ``w`` elsewhere, at 20 levels of luma at its peak; it is scored by :func:`neuromv.sync.measure_sync`
(r within one frame, beat F at +-70 ms) for each ``w``. No video is rendered.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neuromv.audio import Audio, AudioFile
from neuromv.metrics import onset_strength
from neuromv.sync import ANALYSIS_SR, measure_sync, song_beats

FPS = 30.0
SHARES = (1.0, 0.3, 0.2, 0.15, 0.1, 0.05)


def main() -> None:
    import librosa

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, required=True, help="folder of songs")
    ap.add_argument("--songs", required=True, help="comma-separated file stems")
    ap.add_argument("--offset", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    a = ap.parse_args()
    print("| song | " + " | ".join(f"w {w:g}: r / F" for w in SHARES) + " |")
    print("|---" * (len(SHARES) + 1) + "|")
    for stem in a.songs.split(","):
        path = next(a.real.glob(stem + ".*"))
        clip = AudioFile(path, start=a.offset, duration=a.seconds).load()
        y = librosa.resample(clip.samples.mean(axis=0), orig_sr=clip.sr, target_sr=ANALYSIS_SR)
        n = int(clip.duration * FPS)
        o = onset_strength(y, ANALYSIS_SR, n, fps=FPS)
        beats = song_beats(Audio(y[None].astype(np.float32), ANALYSIS_SR))
        near = np.zeros(n)
        for k in np.round(beats * FPS).astype(int):
            near[max(k - 1, 0): max(k + 2, 0)] = 1.0
        cells = []
        for w in SHARES:
            r = measure_sync(20.0 * o / o.max() * (near + w * (1.0 - near)), o, beats, FPS)
            cells.append(f"{r.r:.2f} / {r.f_measure:.2f}")
        print(f"| {stem} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
