"""Separation speed (times real time) and peak memory for 30 s, 3 min and 10 min of music.

    python bench/separate_bench.py                  # writes its section of docs/benchmarks.md
    python bench/separate_bench.py --separator hpss --lengths 30,180

Each run is a fresh process (so its peak RSS is its own): generate the demo song looped to the length (stereo,
44.1 kHz), then time `Separator.separate` alone (model loaded before the clock starts). Peak RSS covers the whole
process: torch, the model, the input and the stems.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

CHILD = r"""
import json, sys, time, resource
import numpy as np
from neuromv.audio import Audio
from neuromv.demo import demo_song
from neuromv.separate import Separator
name, seconds = sys.argv[1], float(sys.argv[2])
base = demo_song(15.0).samples
n = int(seconds * 44100)
audio = Audio(np.ascontiguousarray(np.tile(base, (1, -(-n // base.shape[1])))[:, :n]), 44100)
sep = Separator(name, device="cpu")
t = time.perf_counter()
stems = sep.separate(audio)
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "elapsed": elapsed,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--separator", default="spleeter")
    ap.add_argument("--lengths", default="30,180,600", help="seconds of audio, comma-separated")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    rows = []
    for seconds in [float(s) for s in args.lengths.split(",")]:
        p = subprocess.run([sys.executable, "-c", CHILD, args.separator, str(seconds)], capture_output=True,
                           text=True, check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{args.separator} {seconds:g} s: {seconds / r['elapsed']:.1f}x real time, peak RSS {r['rss_mb']:.0f} MB",
              file=sys.stderr)
    lines = [
        f"Machine: {machine()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/separate_bench.py --separator {args.separator} "
        f"--lengths {args.lengths}`.",
        "",
        "The demo song looped to each length (stereo, 44.1 kHz), one fresh process per length. *Speed* is audio "
        "seconds per second of `Separator.separate` (model already loaded); *peak RSS* is the whole process's.",
        "",
        "| audio | time s | speed (x real time) | peak RSS MB |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['seconds'] / 60:g} min | {r['elapsed']:.1f} | {r['seconds'] / r['elapsed']:.1f}x | "
                     f"{r['rss_mb']:.0f} |")
    write_section(Path(args.out), f"Separation, {args.separator} (`bench/separate_bench.py`)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
