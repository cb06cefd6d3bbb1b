"""Palettes: their render cost in the compiled kernels (their look: bench/look_bench.py).

    python bench/palette_bench.py                         # prints the figures
    python bench/palette_bench.py --out docs/benchmarks.md   # and writes its section there
    python bench/palette_bench.py --rounds 10 --e2e 20 --out docs/benchmarks.md   # and end to end, a 20-s song

*Cost*: frames per second of the compiled CPPN kernel (the abstract CPPN of the default settings, hidden 32, at
1280x720, I420 as the pipeline takes it; float32, and int16 where the CPU has AVX512-VNNI) and of the picture
kernel (an untrained picture network with random grids, whose per-frame cost is that of any fitted picture), each
without and with a palette (``ember``), in interleaved rounds on the same backends, one worker thread by default;
the cost is the best time with against the best without (this machine's speed drifts; the median of the rounds is
printed too). Times are the process's CPU time (``time.process_time``), so that other work on a shared machine
does not count; the figures are frames per CPU second. Differences of a few per cent between two builds of the
kernel can be code placement and scheduling rather than work (before the int16 path's hot loop was written out in
assembly, its variant without a palette ran that loop 14 % faster than the variant with one): compare within one
build, in interleaved rounds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neuromv.motion import Motion
from neuromv.palette import palette_for, palette_levels, palette_row
from neuromv.picture import PictureNet
from neuromv.plan import abstract_cppn
from neuromv.renderer.color import PaletteMap
from neuromv.renderer.kernel import KernelBackend, kernel_choice, kernel_precisions
from neuromv.renderer.picture import PictureBackend
from neuromv.renderer.setup import RenderSetup
from neuromv.settings import Z_GAIN, RenderSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import LOOPED_SONG, machine, write_section  # noqa: E402

#: The palette whose cost is measured (every table has the same size: the cost does not depend on the colours).
COST_PALETTE = "ember"


def _zs(n_z: int, seed: int, n: int) -> np.ndarray:
    """n frames of a smooth random z path (unit RMS, times Z_GAIN: the default reactivity)."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(n_z), rng.standard_normal(n_z)
    t = np.linspace(0.0, 1.0, n)[:, None]
    z = np.cos(t * np.pi / 2) * a + np.sin(t * np.pi / 2) * b
    return (Z_GAIN * z / np.sqrt(np.mean(z ** 2, axis=1, keepdims=True))).astype(np.float32)


def _palette_map(name: str, sample: np.ndarray) -> PaletteMap:
    return PaletteMap(palette_for(name).table.astype(np.float32), palette_row(palette_levels(sample)))


def _textured_picture(seed: int = 3) -> PictureNet:
    net = PictureNet(16 / 9, 32, levels=4, base=4, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for g in net.grids:
            g.copy_(torch.randn(g.shape, generator=gen) * 2)
    return net.eval()


def _fps(draw, zs: np.ndarray) -> float:
    """Frames per second of CPU time (all threads): what the render costs, whatever else shares the machine."""
    t = time.process_time()
    for z in zs:
        draw(z)
    return len(zs) / (time.process_time() - t)


def cost(width: int, height: int, frames: int, rounds: int, threads: int) -> list[tuple[str, float, float, float]]:
    """(case, best fps without, best fps with, median cost %) for each kernel case."""
    settings = RenderSettings()
    net = abstract_cppn(settings)
    zs = _zs(net.n_z, 0, frames)
    plain_setup = RenderSetup.of(net, 64, 36, scale=1.0, pan=(0.0, 0.0), centre=None, color=None)
    sample = KernelBackend(plain_setup, threads=threads, isa=kernel_choice("float32")[0], precision="float32")
    pm = _palette_map(COST_PALETTE, np.stack([sample.render(z) for z in zs[:: max(1, frames // 4)]]))
    cases = []
    for precision in kernel_precisions():
        isa, _ = kernel_choice(precision)
        pair = [KernelBackend(RenderSetup.of(net, width, height, scale=1.0, pan=(0.0, 0.0), centre=None, color=None,
                                             palette=p), threads=threads, isa=isa, precision=precision)
                for p in (None, pm)]
        cases.append((f"CPPN kernel {precision} ({isa}), hidden {net.hidden}", pair))
    picture, motion = _textured_picture(), Motion.of(8, 0)
    pair = [PictureBackend(picture, motion, width, height, palette=p, threads=threads) for p in (None, pm)]
    if pair[0].isa is not None:
        cases.append(("picture kernel", pair))
    out = []
    pz = _zs(8, 1, frames) / Z_GAIN * 0.8
    for name, (without, with_) in cases:
        z = pz if "picture" in name else zs
        without.render_yuv420(z[0]), with_.render_yuv420(z[0])  # warm up
        a, b = [], []
        for _ in range(rounds):
            a.append(_fps(without.render_yuv420, z))
            b.append(_fps(with_.render_yuv420, z))
        med = float(np.median([100.0 * (x / y - 1.0) for x, y in zip(a, b)]))
        out.append((name, max(a), max(b), med))
        print(f"{name}: without {max(a):.1f} fps, with {max(b):.1f} fps: cost {100 * (max(a) / max(b) - 1):+.1f} % "
              f"(best of {rounds}; median of rounds {med:+.1f} %; rounds without {', '.join(f'{x:.1f}' for x in a)}; "
              f"with {', '.join(f'{x:.1f}' for x in b)})", file=sys.stderr)
    return out


def end_to_end(width: int, height: int, seconds: float, rounds: int) -> tuple[list[float], list[float]]:
    """Wall seconds of ``neuromv.render`` (the default settings, abstract) of the demo song looped to ``seconds``,
    without and with the palette, in interleaved rounds after a warm-up: what a user waits for."""
    import subprocess
    import tempfile

    import neuromv

    opts = dict(width=width, height=height, image="none", overwrite=True, cache=False)
    without, with_ = [], []
    with tempfile.TemporaryDirectory(prefix="palette-bench-") as d:
        song = Path(d) / "song.wav"
        subprocess.run([sys.executable, "-c", LOOPED_SONG, str(seconds), str(song)], check=True)
        neuromv.render(song, Path(d) / "warm.mp4", **{**opts, "duration": 2.0})
        for _ in range(rounds):
            for palette, times in ((None, without), (COST_PALETTE, with_)):
                t = time.perf_counter()
                neuromv.render(song, Path(d) / "v.mp4", palette=palette, **opts)
                times.append(time.perf_counter() - t)
    print(f"end to end: without {', '.join(f'{x:.2f}' for x in without)} s; with "
          f"{', '.join(f'{x:.2f}' for x in with_)} s", file=sys.stderr)
    return without, with_


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1280x720", help="frame size of the cost runs (default 1280x720)")
    ap.add_argument("--frames", type=int, default=30, help="frames per round (default 30)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--threads", type=int, default=1, help="worker threads (default 1; 0: every core)")
    ap.add_argument("--e2e", type=float, default=0.0, metavar="SECONDS",
                    help="also time neuromv.render of the demo song looped to SECONDS, without and with the palette "
                         "(wall time, every core; default: skip)")
    ap.add_argument("--e2e-rounds", type=int, default=4, help="interleaved end-to-end rounds (default 4)")
    ap.add_argument("--out", default=None, help="write the section into this Markdown file (default: print only)")
    args = ap.parse_args(argv)

    threads = args.threads or len(os.sched_getaffinity(0))
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(f"machine: {machine()}; {threads} threads", file=sys.stderr)
    costs = cost(width, height, args.frames, args.rounds, threads)
    e2e = end_to_end(width, height, args.e2e, args.e2e_rounds) if args.e2e else None
    if args.out:
        lines = [
            f"Machine: {machine()}.  ",
            f"Run: {_dt.date.today().isoformat()}, `python bench/palette_bench.py --size {args.size} --frames "
            f"{args.frames} --rounds {args.rounds}{f' --e2e {args.e2e:g} --e2e-rounds {args.e2e_rounds}' if e2e else ''}`"
            f" ({threads} threads).",
            "",
            f"Render cost of a palette ({COST_PALETTE}; every table has {len(palette_for(COST_PALETTE).table)} "
            f"entries) at {width}x{height}, I420 frames, best of interleaved rounds:",
            "",
            "| kernel | frames / CPU s without | with | cost | median cost of the rounds |",
            "|---|---|---|---|---|",
            *(f"| {n} | {a:.1f} | {b:.1f} | {100 * (a / b - 1):+.1f} % | {m:+.1f} % |" for n, a, b, m in costs),
        ]
        if e2e:
            a, b = e2e
            med = float(np.median([100.0 * (y / x - 1.0) for x, y in zip(a, b)]))
            lines += [
                "",
                f"End to end: `neuromv.render` of the demo song looped to {args.e2e:g} s at {width}x{height}, the "
                "default settings (this machine's default kernel, every core; features, render, x264 and AAC), "
                f"abstract, wall time, {args.e2e_rounds} interleaved rounds after a warm-up: without the palette "
                f"best {min(a):.2f} s, with it best {min(b):.2f} s: **{100 * (min(b) / min(a) - 1):+.1f} %** (median "
                f"of the rounds' costs {med:+.1f} %). The kernel figures above (one worker thread, CPU time) are the "
                "stricter measure.",
            ]
        write_section(Path(args.out), "Palettes: render cost (`bench/palette_bench.py`)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
