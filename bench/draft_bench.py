"""Draft preview: how long `neuromv render SONG --quality draft` takes for a 3-minute song, end to end.

    python bench/draft_bench.py                    # the demo song looped to 3 minutes
    python bench/draft_bench.py --song music.ogg   # any song (its first --seconds)

Each render is the CLI in a fresh process, timed on the wall clock from start to exit (imports, decoding,
features, render, encode, mux), with its peak RSS. For comparison, in the same run, the standard quality renders
the first 30 s of the same song (a whole song at standard quality takes minutes).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, LOOPED_SONG, machine, write_section  # noqa: E402

from neuromv.settings import QUALITY  # noqa: E402


WRAP = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def run(song: Path, out: Path, *args: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one `neuromv render` process (measured by a wrapper process of its own)."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", WRAP, sys.executable, "-m", "neuromv", "render", str(song), "-o",
                        str(out), "--overwrite", "-q", "--image", "none", *args],
                       check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    return wall, int(p.stdout.split()[-1]) / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--song", type=Path, help="a song (default: the demo song looped)")
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        song = args.song
        if song is None:
            song = Path(d) / "song.wav"
            subprocess.run([sys.executable, "-c", LOOPED_SONG, str(args.seconds), str(song)], check=True)
        out = Path(d) / "v.mp4"
        draft, draft_mb = run(song, out, "--quality", "draft", "--duration", str(args.seconds))
        std, std_mb = run(song, out, "--quality", "standard", "--duration", "30")
    print(f"draft: {args.seconds:g} s of song in {draft:.1f} s wall; standard: 30 s of song in {std:.1f} s",
          file=sys.stderr)
    frames = int(args.seconds * 30)
    name = "the demo song looped" if args.song is None else f"`{args.song.name}`"
    lines = [
        f"Machine: {machine()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/draft_bench.py"
        + (f" --song {args.song.name}" if args.song else "") + f" --seconds {args.seconds:g}`.",
        "",
        f"Song: {name}, abstract CPPN (`--image none`). Wall clock of the whole `neuromv render` process "
        "(imports, decode, features, render, encode, mux), fresh process each. Target: a 3-minute song at draft "
        "quality in under 60 s.",
        "",
        "| quality | size, x264 preset, crf | song rendered | wall s | frames/s | x real time | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
        f"| draft | 384x216, ultrafast, 28 | {args.seconds:g} s | **{draft:.1f}** | {frames / draft:.1f} | "
        f"{args.seconds / draft:.1f}x | {draft_mb:.0f} |",
        f"| standard | 1280x720, {QUALITY['standard']['preset']}, {QUALITY['standard']['crf']} | 30 s | {std:.1f} | "
        f"{900 / std:.1f} | {30 / std:.2f}x | {std_mb:.0f} |",
    ]
    write_section(Path(args.out), "Draft preview (`bench/draft_bench.py`)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
