"""The Ray path's overhead against a plain render on this machine, its measured parts, and a scaling model.

    python bench/cluster_bench.py                          # a three-minute song, 640x360: writes docs/benchmarks.md
    python bench/cluster_bench.py --seconds 60 --out /tmp/b.md

One run renders the demo song looped to ``--seconds`` twice, abstract, at ``--size`` and the default encoder
settings (libx264 cppn, crf 18), in separate processes' worth of state but one after the other:

- plain: ``neuromv.render(song, out)``, every core of this machine for one render;
- segmented: ``neuromv.render(song, out, ray='local', segments=...)``: a local Ray instance started for the render
  (its start counted), the features on the driver, the frame ranges on 1-CPU Ray tasks (render + encode, closed
  GOPs), the segments' bytes back through Ray's object store, the join and the AAC mux.

The parts measured (``RenderResult.parts``): features, Ray's start, the segments' wall time, each worker's frames/s
(render + encode on one CPU), bytes moved (the job out, the segments back), the join; the join is measured again
without audio (the remux alone: what remains is the AAC encode). From these, the model of a render on M machines of
C cores: ``features + ray start + W * N / (S * f) + join + bytes / bandwidth`` with S segments as ``--segments
auto`` makes them (one per CPU, none over 30 s, at most one per GOP), W = ceil(S / (M * C)) waves and f the
per-worker frames/s; and a catalogue's cost in machine-hours.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import neuromv
from neuromv.segments import MAX_SEGMENT_SECONDS
from neuromv.settings import RenderSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, LOOPED_SONG, machine, write_section  # noqa: E402

#: Assumed network bandwidth between machines for the model, bytes/s (10 Gb/s, a common cloud NIC).
BANDWIDTH = 10e9 / 8
#: Seconds of video per GOP, the shortest a segment can be (the ``gop`` setting's default).
GOP_SECONDS = RenderSettings().gop
#: Songs and lengths for the model.
MODEL_SONGS = (("three-minute song", 180.0), ("one-hour DJ set", 3600.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180.0, help="song length (default: %(default)s)")
    ap.add_argument("--size", default="640x360", help="video size (default: %(default)s)")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--segments", default="auto", help="segments of the Ray render (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=DOC)
    args = ap.parse_args()
    width, height = map(int, args.size.lower().split("x"))
    opts = dict(width=width, height=height, fps=args.fps, image="none", overwrite=True, cache=False)
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as d:
        d = Path(d)
        song = d / "song.wav"
        subprocess.run([sys.executable, "-c", LOOPED_SONG, str(args.seconds), str(song)], check=True)
        neuromv.render(song, d / "warm.mp4", **{**opts, "duration": 2.0})  # imports, kernel load
        t = time.perf_counter()
        plain = neuromv.render(song, d / "plain.mp4", **opts)
        plain_s = time.perf_counter() - t
        t = time.perf_counter()
        seg = neuromv.render(song, d / "seg.mp4", ray="local", segments=args.segments, **opts)
        seg_s = time.perf_counter() - t
        from neuromv.video import concat_videos

        t = time.perf_counter()
        concat_videos([seg.path], d / "remux.mp4")
        remux_s = time.perf_counter() - t
        plain_bytes, seg_bytes = plain.path.stat().st_size, seg.path.stat().st_size
        psnr = _psnr_range(plain.path, seg.path)
    p = seg.parts
    n = seg.frames
    f = sorted(p["worker_fps"])[len(p["worker_fps"]) // 2]
    moved = p["bytes_job"] + p["bytes_back"]
    lines = [
        f"Machine: {machine()} (**2 cores**: the segments run as 2 one-CPU Ray tasks at a time).  ",
        f"Run: {_dt.date.today()}, `python bench/cluster_bench.py --seconds {args.seconds:g} --size {args.size} "
        f"--segments {args.segments}`: the demo song looped to {args.seconds:g} s, abstract, {width}x{height} at "
        f"{args.fps} fps ({n} frames), libx264 cppn crf 18. Plain first, then segmented, in one process; other "
        "work shared the machine, so the figures carry some noise.",
        "",
        "| | plain render | segmented on local Ray |",
        "|---|---|---|",
        f"| wall time | {plain_s:.1f} s | {seg_s:.1f} s (**{100 * (seg_s / plain_s - 1):+.1f} %**) |",
        f"| frames/s end to end | {n / plain_s:.1f} | {n / seg_s:.1f} |",
        f"| file | {plain_bytes / 1e6:.2f} MB | {seg_bytes / 1e6:.2f} MB ({p['segments']} segments, "
        f"{p['segments']} IDR frames at the starts) |",
        "",
        "Parts of the segmented render:",
        "",
        "| part | measured |",
        "|---|---|",
        f"| features and structure (driver, once) | {p['features_s']:.1f} s |",
        f"| Ray start (`ray.init`, local) | {p['ray_start_s']:.1f} s |",
        f"| segments (render + encode on the workers, wall) | {p['segments_s']:.1f} s |",
        f"| per-worker frames/s (render + encode, 1 CPU), median | {f:.1f} (all: "
        f"{', '.join(f'{x:.1f}' for x in p['worker_fps'])}) |",
        f"| join: remux + AAC encode and mux | {p['join_s']:.2f} s (remux alone {remux_s:.2f} s) |",
        f"| bytes moved: job out (settings, CPPN, z, controls) / segments back | {p['bytes_job'] / 1e6:.2f} MB / "
        f"{p['bytes_back'] / 1e6:.2f} MB |",
        f"| worker processes' peak resident memory (max over tasks) | {max(p['worker_peak_mb']):.0f} MB (segments "
        f"of at most {MAX_SEGMENT_SECONDS:g} s) |",
        f"| segmented vs plain, decoded frames, both lossy crf 18 | "
        f"{'the same, bit for bit' if psnr[0] == 99.0 else f'PSNR min {psnr[0]:.1f} / median {psnr[1]:.1f} dB'} |",
        "",
        f"Model: a render on M machines of C CPUs, each CPU a worker at the measured {f:.1f} frames/s, is features + "
        f"Ray start + W x frames / (S x {f:.1f}) + join + bytes / 10 Gb/s, with S = max(M x C, song / "
        f"{MAX_SEGMENT_SECONDS:g} s) segments (`--segments auto`; at most one per {GOP_SECONDS:g}-s GOP) run in W = "
        "S / (M x C) waves (rounded up); the features and the join scale with the song "
        f"(measured here: {p['features_s'] / args.seconds:.3f} s and {p['join_s'] / args.seconds:.4f} s per second "
        "of song).",
        "",
        "| song | machines (C = 2) | segments | modelled wall time | speed-up over 1 machine |",
        "|---|---|---|---|---|",
    ]
    for name, secs in MODEL_SONGS:
        base = None
        for m in (1, 10, 100):
            s, wall = _model(secs, args.fps, m, 2, f, p, args.seconds, moved / max(1, n))
            base = base or wall
            lines.append(f"| {name} | {m} | {s} | {_hms(wall)} | {base / wall:.1f}x |")
    per_song_h = plain_s / args.seconds * 180 / 3600
    lines += [
        "",
        f"A catalogue: one three-minute song costs {per_song_h * 3600:.0f} s of this 2-core machine plain "
        f"({per_song_h:.3f} machine-hours at {width}x{height}), so 10 000 songs cost about "
        f"{10000 * per_song_h:.0f} machine-hours: {10000 * per_song_h / 10:.0f} h on 10 such machines, "
        f"{10000 * per_song_h / 100:.1f} h on 100 (songs in parallel with `neuromv batch`; segments add "
        f"{100 * (seg_s / plain_s - 1):+.0f} % here and pay only for long songs). See docs/cluster.md.",
    ]
    write_section(args.out, "Cluster: segmented render on Ray (`bench/cluster_bench.py`)", lines)
    print("\n".join(lines))


def _model(song_s: float, fps: int, machines: int, cores: int, f: float, p: dict, measured_s: float,
           bytes_per_frame: float) -> tuple[int, float]:
    """(segments, modelled wall seconds) of a ``song_s`` render on ``machines`` x ``cores`` workers."""
    n = song_s * fps
    gops = max(1, int(-(-song_s // GOP_SECONDS)))
    s = max(1, min(gops, max(machines * cores, int(-(-song_s // MAX_SEGMENT_SECONDS)))))  # segment_count's rule
    waves = -(-s // (machines * cores))
    per = song_s / measured_s
    return s, (p["features_s"] * per + p["ray_start_s"] + waves * (n / s) / f + p["join_s"] * per
               + n * bytes_per_frame / BANDWIDTH)


def _psnr_range(a: Path, b: Path) -> tuple[float, float]:
    import av
    import numpy as np

    values = []
    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        for x, y in zip(ca.decode(video=0), cb.decode(video=0)):
            d = x.to_ndarray(format="rgb24").astype(np.float64) - y.to_ndarray(format="rgb24")
            mse = float(np.mean(d * d))
            values.append(99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
    return float(min(values)), float(np.median(values))


def _hms(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


if __name__ == "__main__":
    main()
