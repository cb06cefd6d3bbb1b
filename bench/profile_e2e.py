"""Where the time of an end-to-end render goes: each stage alone, in CPU time per frame, against the whole render.

    python bench/profile_e2e.py                        # 1280x720, 20 s of the demo song, the defaults
    python bench/profile_e2e.py --size 1920x1080 --preset ultrafast
    python bench/profile_e2e.py --size 1920x1080 --device cuda   # on a GPU: its own section of benchmarks.md

Each stage runs alone on the same song and settings, timed in process CPU time (all threads, getrusage), then
`neuromv.render()` runs the whole thing. On a machine whose cores are all busy during the render (the kernel uses
every core), wall time x cores is the CPU the render could have had: what the stages do not account for is idle
core time (waiting) or overhead. A sampling profiler cannot do this job here: py-spy cannot unwind libx264's frames.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

import neuromv  # noqa: E402
from neuromv.analysis import analyze  # noqa: E402
from neuromv.audio import AudioFile, save_wav  # noqa: E402
from neuromv.pipeline import build_renderer, latents_for  # noqa: E402
from neuromv.settings import RenderSettings, parse_size  # noqa: E402
from neuromv.video import VideoWriter  # noqa: E402


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Stage:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    def run(self, name: str, fn):
        w, c = time.perf_counter(), cpu()
        out = fn()
        self.rows.append((name, time.perf_counter() - w, cpu() - c))
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--preset", default=RenderSettings().preset)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the render runs")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    w, h = parse_size(args.size)
    settings = RenderSettings(width=w, height=h, preset=args.preset, seed=7, device=args.device)
    cores = len(os.sched_getaffinity(0))
    st = Stage()
    with tempfile.TemporaryDirectory() as d:
        song = Path(d) / "song.wav"
        save_wav(song, neuromv.demo_song(duration=args.seconds + 4.0))
        neuromv.render(song, Path(d) / "warm.mp4", width=64, height=36, duration=1.0, image="none")  # imports
        src = st.run("decode + check the song (AudioFile)", lambda: AudioFile(song, start=4.0))
        z = st.run("features (decode, resample, mel, normalise)", lambda: latents_for(src, settings))
        st.run("music analysis (the structure's cues: analyze)", lambda: analyze(src))
        n = len(z)
        r = st.run("renderer set-up", lambda: build_renderer(settings))
        kind = "I420" if r.yuv420 else "RGB"
        on_gpu = r.device.type == "cuda"
        frames = st.run(f"render ({r.method}, {kind}, {r.threads} threads)",
                        lambda: [f.copy() for f in (r.frames(z[:60], yuv420=r.yuv420))])
        st.rows[-1] = (st.rows[-1][0], st.rows[-1][1] * n / 60, st.rows[-1][2] * n / 60)  # 60 frames, scaled

        def encode(audio, size, frames):
            with VideoWriter(Path(d) / "enc.mp4", *size, settings.fps, audio=audio, crf=settings.crf,
                             preset=settings.preset, overwrite=True) as wr:
                for i in range(n):
                    wr.write(frames[i % len(frames)])

        st.run(f"video encode (libx264 {settings.preset}, from {kind})", lambda: encode(None, (w, h), frames))
        tiny = [np.zeros((16, 16, 3), np.uint8)]
        st.run("audio encode + mux (AAC, with a 16x16 video)", lambda: encode(src, (16, 16), tiny))
        frames.clear()  # free the rendered frames before the end-to-end run
        wall, c = time.perf_counter(), cpu()
        result = neuromv.render(song, Path(d) / "e2e.mp4", width=w, height=h, preset=args.preset, seed=7,
                                start=4.0, image="none", device=args.device)
        e2e_wall, e2e_cpu = time.perf_counter() - wall, cpu() - c
    assert result.frames == n
    total_cpu = sum(row[2] for row in st.rows)
    ms = lambda s: s / n * 1e3  # noqa: E731
    print(f"{n} frames; end to end {n / e2e_wall:.2f} fps, {ms(e2e_cpu):.1f} ms CPU/frame", file=sys.stderr)
    lines = [
        f"Machine: {machine()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/profile_e2e.py --size {args.size} --seconds "
        f"{args.seconds:g} --preset {args.preset}{' --device ' + args.device if args.device != 'cpu' else ''}`.",
        "",
        f"{n} frames ({args.seconds:g} s of the demo song at 30 fps), {args.size}, hidden 32, libx264 {args.preset} "
        f"crf {settings.crf}, AAC. Each stage alone, then `neuromv.render()` of the same song (the render stage is "
        f"timed on 60 frames and scaled). CPU is process CPU time over all threads; the machine has {cores} cores.",
        "",
        "| stage | wall s | CPU s | CPU ms per frame | share of the stages' CPU |",
        "|---|---|---|---|---|",
    ]
    for name, wl, cp in st.rows:
        lines.append(f"| {name} | {wl:.2f} | {cp:.2f} | {ms(cp):.1f} | {cp / total_cpu:.1%} |")
    lines += [
        f"| **stages together** | {sum(r[1] for r in st.rows):.2f} | {total_cpu:.2f} | {ms(total_cpu):.1f} | 100% |",
        f"| **`neuromv.render()`** | {e2e_wall:.2f} | {e2e_cpu:.2f} | {ms(e2e_cpu):.1f} | "
        f"{e2e_cpu / total_cpu:.1%} |",
        "",
        f"End to end: **{n / e2e_wall:.2f} frames/s**; its wall time x {cores} cores is {e2e_wall * cores:.1f} CPU s, "
        f"of which {e2e_cpu:.1f} s were used ({e2e_cpu / (e2e_wall * cores):.0%}); the rest is cores left idle.",
    ]
    title = "Where the time goes (`bench/profile_e2e.py`)" + (", on a GPU" if on_gpu else "")
    write_section(Path(args.out), title, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
