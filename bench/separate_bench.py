"""Separation speed (times real time) and peak memory for 30 s, 3 min and 10 min of music.

    python bench/separate_bench.py                  # writes its section of docs/benchmarks.md
    python bench/separate_bench.py --separator hpss --lengths 30,180

Each measurement is a fresh process (so its peak RSS is its own). The song is the demo song looped to the length
(stereo, 44.1 kHz), written as a WAV file beforehand. Three ways, in the same run:

- *file to files*: `neuromv.separate_song(song.wav, dir)`, what `neuromv separate` runs: the song is decoded block by
  block, separated in overlapping windows and the stems streamed into their WAV files. Nothing grows with the song.
- *array to arrays*: `Separator.separate(audio)` on a decoded song (the API that `render --stems` uses): the same
  windows, but the song and its stems are arrays in memory.
- *naive, one pass*: the whole song through the backend's network at once (no windows), for 30 s and 3 min only.

Time covers the separation (model loaded before the clock starts; for *file to files* it includes decoding and
writing). Peak RSS covers the whole process: torch, the model, buffers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, LOOPED_SONG, machine, write_section  # noqa: E402


CHILD = r"""
import json, sys, time, resource
from neuromv.audio import load_audio
from neuromv.pipeline import separate_song
from neuromv.separate import Separator
name, mode, song, out = sys.argv[1:5]
sep = Separator(name, device="cpu")
t = time.perf_counter()
if mode == "file":
    separate_song(song, out, sep, overwrite=True)
else:
    audio = load_audio(song)
    t = time.perf_counter()
    if mode == "array":
        sep.separate(audio)
    else:  # naive: one window as long as the song
        x = audio.samples
        sep._backend.process(x if x.shape[0] == 2 or name == "hpss" else x.repeat(2, axis=0))
elapsed = time.perf_counter() - t
print(json.dumps({"elapsed": elapsed, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

MODES = {"file": "file to files (streamed)", "array": "array to arrays", "onepass": "naive, one pass"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--separator", default="spleeter")
    ap.add_argument("--lengths", default="30,180,600", help="seconds of audio, comma-separated")
    ap.add_argument("--onepass-max", type=float, default=180, help="longest song for the naive one-pass row (s)")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    rows = []
    lengths = [float(x) for x in args.lengths.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in lengths:
            song = Path(tmp) / f"{seconds:g}.wav"
            subprocess.run([sys.executable, "-c", LOOPED_SONG, str(seconds), str(song)], check=True)
            for mode in MODES:
                if mode == "onepass" and seconds > args.onepass_max:
                    continue
                p = subprocess.run([sys.executable, "-c", CHILD, args.separator, mode, str(song), str(Path(tmp) / "o")],
                                   capture_output=True, text=True)
                if p.returncode:
                    print(p.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"{mode} {seconds:g} s failed")
                r = json.loads(p.stdout.strip().splitlines()[-1]) | {"seconds": seconds, "mode": mode}
                rows.append(r)
                print(f"{args.separator} {MODES[mode]} {seconds:g} s: {seconds / r['elapsed']:.1f}x real time, "
                      f"peak RSS {r['rss_mb']:.0f} MB", file=sys.stderr)
            song.unlink()
    lines = [
        f"Machine: {machine()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/separate_bench.py --separator {args.separator} "
        f"--lengths {args.lengths}`.",
        "",
        "The demo song looped to each length (stereo, 44.1 kHz, a WAV file), one fresh process per row. *Speed* is "
        "audio seconds per second of separation (model already loaded); *peak RSS* is the whole process's. *File to "
        "files* is `neuromv separate` (decode, separate, write, all streamed); *array to arrays* is "
        "`Separator.separate` on a decoded song; *naive, one pass* is the song through the network in one window.",
        "",
        "| way | audio | time s | speed (x real time) | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {MODES[r['mode']]} | {r['seconds'] / 60:g} min | {r['elapsed']:.1f} | "
                     f"{r['seconds'] / r['elapsed']:.1f}x | {r['rss_mb']:.0f} |")
    write_section(Path(args.out), f"Separation, {args.separator} (`bench/separate_bench.py`)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
