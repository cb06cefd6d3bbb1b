"""Memory against song length: peak RSS of a 1-minute and a 10-minute render at 1920x1080 (no stems).

    python bench/memory_bench.py                       # 1 and 10 minutes, hidden 8, x264 ultrafast
    python bench/memory_bench.py --minutes 1 3 --hidden 32 --preset cppn
    python bench/memory_bench.py --image demo --no-reference  # image mode: the demo cover fitted as a picture

Each render is `neuromv render SONG -o OUT --size 1920x1080 --image none` in a fresh process; its peak RSS is
measured by a wrapper process (getrusage of its child). The song is the demo song looped to length, a 44.1 kHz
stereo WAV written by a process of its own. In the same run, the naive reference renders the same songs from
audio decoded whole into memory (`neuromv.render(neuromv.load_audio(song), ...)`), as every prototype does.

The CPPN's width and the x264 preset change the render's speed and a fixed amount of memory, not how memory grows
with the song: the defaults (hidden 8, ultrafast) let a 10-minute 1080p song render in minutes rather than most
of an hour on 2 cores. `--hidden 32 --preset cppn` measures the default look.

Target (issue 5): the 10-minute song under 1 GB, and within 10 % of the 1-minute song's peak.
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

WRAP = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")

#: The naive reference: the whole song decoded into memory first, then the same render.
IN_MEMORY = r"""
import sys
import neuromv
song, out, size, hidden, preset = sys.argv[1:6]
w, h = map(int, size.split("x"))
neuromv.render(neuromv.load_audio(song), out, width=w, height=h, hidden=int(hidden), preset=preset, image="none",
               overwrite=True)
"""


def peak(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one process running ``cmd``."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", WRAP, *cmd], check=True, capture_output=True, text=True)
    return time.perf_counter() - t, int(p.stdout.split()[-1]) / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--preset", default="ultrafast")
    ap.add_argument("--image", default="none",
                    help="reference image (default none: the abstract CPPN); 'demo' writes the demo cover, fitted as "
                         "a picture (the fit is made and cached by a first, short render outside the figures)")
    ap.add_argument("--no-reference", action="store_true", help="skip the in-memory reference renders")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as d:
        image = args.image
        if image == "demo":
            image = str(Path(d) / "cover.png")
            subprocess.run([sys.executable, "-c", "import sys; from PIL import Image; from neuromv.demo import "
                            "demo_cover; Image.fromarray(demo_cover(512)).save(sys.argv[1])", image], check=True)
        if image != "none":  # the fit, cached: the figures are the render's
            song = Path(d) / "song.wav"
            subprocess.run([sys.executable, "-c", LOOPED_SONG, "2", str(song)], check=True)
            subprocess.run([sys.executable, "-m", "neuromv", "render", str(song), "-o", str(Path(d) / "w.mp4"), "-q",
                            "--image", image, "--size", args.size, "--preset", args.preset], check=True)
        for minutes in args.minutes:
            song, video = Path(d) / "song.wav", Path(d) / "video.mp4"
            subprocess.run([sys.executable, "-c", LOOPED_SONG, str(minutes * 60), str(song)], check=True)
            wall, mb = peak([sys.executable, "-m", "neuromv", "render", str(song), "-o", str(video), "--overwrite",
                             "-q", "--image", image, "--size", args.size, "--hidden", str(args.hidden),
                             "--preset", args.preset])
            print(f"{minutes:g} min: neuromv {mb:.0f} MB peak, {wall:.0f} s", file=sys.stderr)
            ref = None
            if not args.no_reference and image == "none":
                ref = peak([sys.executable, "-c", IN_MEMORY, str(song), str(video), args.size, str(args.hidden),
                            args.preset])
                print(f"{minutes:g} min: in-memory reference {ref[1]:.0f} MB peak, {ref[0]:.0f} s", file=sys.stderr)
            rows.append((minutes, wall, mb, ref))

    base = rows[0][2]
    lines = [
        f"Machine: {machine()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/memory_bench.py --minutes "
        f"{' '.join(f'{m:g}' for m in args.minutes)} --size {args.size} --hidden {args.hidden} --preset "
        f"{args.preset}{' --image ' + args.image if args.image != 'none' else ''}`.",
        "",
        f"`neuromv render SONG --size {args.size} --image "
        f"{'cover.png (the demo cover, fitted as a picture and cached first)' if args.image == 'demo' else args.image} "
        f"--hidden {args.hidden} --preset {args.preset}` in a "
        "fresh process per song; the song is the demo song looped (44.1 kHz stereo WAV). *In-memory reference*: the "
        "same render from audio decoded whole first (`neuromv.render(neuromv.load_audio(song), ...)`). Target: the "
        "longest song under 1024 MB and within 10 % of the shortest.",
        "",
        "| song | NeuroMV peak RSS MB | vs shortest | wall s | in-memory reference peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for minutes, wall, mb, ref in rows:
        lines.append(f"| {minutes:g} min | **{mb:.0f}** | {mb / base - 1:+.1%} | {wall:.0f} | "
                     + (f"{ref[1]:.0f} |" if ref else "not run |"))
    title = "Memory against song length" + (", fitted picture" if args.image != "none" else "")
    write_section(Path(args.out), f"{title} (`bench/memory_bench.py`)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
