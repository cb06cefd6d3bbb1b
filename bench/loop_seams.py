"""Loops' seams on real songs: a 6-s loop of each rendered at 160x90, decoded, measured (docs/loops.md).

    python bench/loop_seams.py 18                 # crf 18, the planetblupi soundtrack's music000-005
    python bench/loop_seams.py 0 --songs DIR      # lossless; the first six .ogg of DIR

For each song: the loop's start (song time of frame 0, seconds), the seam (:func:`neuromv.loop.measure_seam`: mean
absolute change of the pixels from the last frame to the first, levels of 0-255), the median, mean and 90th
percentile of the changes between consecutive frames, and seam / median (the bar: at most 1).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import numpy as np

import neuromv
from neuromv.loop import measure_seam

SONGS = Path("/tmp/music/x/usr/share/planetblupi/music")  # apt-get download planetblupi-music-ogg; dpkg -x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crf", type=int)
    ap.add_argument("--songs", type=Path, default=SONGS)
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--loop", type=float, default=6.0)
    ap.add_argument("--size", default="160x90")
    a = ap.parse_args()
    width, height = (int(v) for v in a.size.split("x"))
    print("| song | start s | seam | median | mean | p90 | seam/median |\n|---|---|---|---|---|---|---|")
    for song in sorted(a.songs.glob("*.ogg"))[:a.count]:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "loop.mp4"
            r = neuromv.render(song, out, loop=a.loop, width=width, height=height, image="none", audio="off",
                               crf=a.crf)
            with av.open(str(out)) as c:
                f = np.stack([x.to_ndarray(format="rgb24") for x in c.decode(video=0)])
        s = measure_seam(f)
        mean = float(np.mean([np.abs(f[i + 1].astype(np.int16) - f[i]).mean() for i in range(len(f) - 1)]))
        print(f"| {song.stem} | {r.settings.start:.2f} | {s.seam:.2f} | {s.median:.2f} | {mean:.2f} | {s.p90:.1f} | "
              f"{s.seam / s.median:.2f} |", flush=True)


if __name__ == "__main__":
    main()
