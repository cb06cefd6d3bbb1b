"""Render speed: NeuroMV's renderer against a naive reference, the machine's sgemm ceiling, and end to end.

    python bench/render_bench.py                 # writes docs/benchmarks.md
    python bench/render_bench.py --frames 20 --out /tmp/b.md

In one run, on this machine, for 512x512, 1280x720 and 1920x1080 (hidden 32, z of 32, 5 hidden layers, float32):

- naive: the plain forward pass, z concatenated to every pixel's input and torch.tanh (neuromv.cppn.CPPN.forward);
- torch tiles: neuromv.renderer.Renderer(method="tiled"), the torch CPU path (used where the kernel does not apply);
- neuromv: neuromv.renderer.Renderer (what `neuromv render` uses: the compiled fused kernel when installed), in
  float32 and, where the CPU has AVX512-VNNI, in the reduced precision int16 (issue 19), side by side;
- ceiling: a large float32 matrix product with numpy (OpenBLAS) and torch (MKL), in GFLOP/s;
- end to end: neuromv.render() on a generated song (features + render + H.264/AAC encode + mux), frames/s.

Achieved GFLOP/s counts the matrix work of one frame that any renderer must do: per pixel, 2*H*H for each of the
4 hidden-to-hidden layers and 2*H*3 for the output layer (the coordinate half of layer 1 is the same in every
frame and is not counted).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import neuromv
from neuromv.cppn import CPPN, coordinate_grid
from neuromv.renderer import Renderer, kernel_precisions
from neuromv.settings import RenderSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

DEFAULTS = RenderSettings()
SIZES = [(512, 512), (1280, 720), (1920, 1080)]
HIDDEN, N_Z = 32, 32


def flops_per_frame(width: int, height: int, hidden: int = HIDDEN) -> float:
    return width * height * (4 * 2 * hidden * hidden + 2 * hidden * 3)


#: numpy's product, timed in a process of its own: ``python -c NUMPY_SGEMM N REPEATS`` prints GFLOP/s and the
#: kernels OpenBLAS chose (threadpoolctl's "architecture").
NUMPY_SGEMM = r"""
import sys, time
import numpy as np
import threadpoolctl
n, repeats = int(sys.argv[1]), int(sys.argv[2])
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
a @ b
best = float("inf")
for _ in range(repeats):
    t = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - t)
arch = [i.get("architecture") for i in threadpoolctl.threadpool_info() if i.get("internal_api") == "openblas"]
print(2 * n**3 / best / 1e9, arch[0] if arch else "?")
"""


def sgemm_ceiling(n: int = 4096, repeats: int = 5) -> dict[str, float]:
    """Best-of-N GFLOP/s of an n x n x n float32 product, all cores: numpy (OpenBLAS) and torch (MKL).

    numpy's is timed in a child process twice where the environment sets ``OPENBLAS_CORETYPE``: as set, and with
    OpenBLAS free to pick its kernels for this CPU. This project's machines set it to Haswell (AVX2), which on a
    CPU with full-width AVX-512 (Zen 5) halves the product's speed and so the ceiling; the ceiling is the best.
    Keys name the library and, for numpy, the kernels used: ``"numpy/OpenBLAS (SkylakeX)"``.
    """
    out = {}
    envs = [dict(os.environ)]
    if os.environ.get("OPENBLAS_CORETYPE"):
        envs.append({k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"})
    for env in envs:
        line = subprocess.run([sys.executable, "-c", NUMPY_SGEMM, str(n), str(repeats)], env=env, check=True,
                              capture_output=True, text=True).stdout.split()
        how = f"OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}, " if "OPENBLAS_CORETYPE" in env else ""
        out[f"numpy/OpenBLAS ({how}{line[1]})"] = float(line[0])
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    ta @ tb
    best = min(_timed(lambda: ta @ tb) for _ in range(repeats))
    out["torch/MKL"] = 2 * n**3 / best / 1e9
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def frames_per_second(fn, zs: np.ndarray, warmup: int = 1) -> float:
    for i in range(warmup):
        fn(zs[i])
    t = time.perf_counter()
    for z in zs:
        fn(z)
    return len(zs) / (time.perf_counter() - t)


def streamed_fps(r: Renderer, zs: np.ndarray) -> float:
    """Frames per second of ``r.frames(zs[1:])`` consumed (how a render streams them), after ``r.render(zs[0])``."""
    r.render(zs[0])
    t = time.perf_counter()
    n = sum(1 for _ in r.frames(zs[1:]))
    return n / (time.perf_counter() - t)


def naive_renderer(net: CPPN, width: int, height: int):
    coords = coordinate_grid(width, height)

    @torch.no_grad()
    def render(z):
        rgb = net(coords, torch.from_numpy(z))
        return (rgb * 255 + 0.5).to(torch.uint8).reshape(height, width, 3).numpy()

    return render


def end_to_end(width: int, height: int, n_frames: int, fps: int = 30, **options) -> float:
    """neuromv.render() of a generated song lasting n_frames / fps seconds: frames per wall-clock second (NaN
    where neuromv.render() does not take ``options``, e.g. a precision not yet among the render settings)."""
    song = neuromv.demo_song(duration=4.0 + n_frames / fps)
    with tempfile.TemporaryDirectory() as d:
        # skip the demo's quiet intro: the benchmark should see the full groove
        try:
            result = neuromv.render(song, Path(d) / "bench.mp4", width=width, height=height, fps=fps, start=4.0,
                                    duration=n_frames / fps, seed=7, **options)
        except (TypeError, neuromv.NeuroMVError) as e:
            if options != {"precision": "float32"}:
                print(f"end to end with {options}: not measured ({e})", file=sys.stderr)
                return float("nan")
            # a version without the precision setting renders in float32
            result = neuromv.render(song, Path(d) / "bench.mp4", width=width, height=height, fps=fps, start=4.0,
                                    duration=n_frames / fps, seed=7)
    return result.frames / result.seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=12, help="frames timed per renderer and size (default 12)")
    ap.add_argument("--naive-frames", type=int, default=4, help="frames for the slow naive reference (default 4)")
    ap.add_argument("--e2e-seconds", type=float, default=12.0,
                    help="wall-clock seconds of work per end-to-end render, as frames = this x render-only fps")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds (render-only and end to end alike); the best of each is kept")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)

    print(f"machine: {machine()}", file=sys.stderr)
    end_to_end(64, 36, 10)  # warm-up: librosa's and FFmpeg's one-time set-up are not render speed
    ceiling = sgemm_ceiling()
    print("sgemm ceiling: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in ceiling.items()), file=sys.stderr)
    top = max(ceiling.values())
    net = CPPN(N_Z, HIDDEN, seed=7)
    zs = (np.random.default_rng(0).standard_normal((max(args.frames, args.naive_frames) + 1, N_Z)) * 0.3).astype(np.float32)
    reduced = "int16" in kernel_precisions()  # the kernel's reduced precision runs on this CPU
    rows, rows_int16 = [], []
    for w, h in SIZES:
        naive_r, fast_r = naive_renderer(net, w, h), Renderer(net, w, h, precision="float32")
        tiled_r = Renderer(net, w, h, method="tiled")
        int16_r = Renderer(net, w, h, precision="int16") if reduced else None
        naive = fast = tiled = quick = e2e = e2e_q = 0.0
        e2e_frames = e2e_q_frames = None  # set from the first round's render-only speed, then kept
        for _ in range(args.rounds):  # interleaved, best of each: this machine's speed drifts by +-20 %
            naive = max(naive, frames_per_second(naive_r, zs[1:args.naive_frames + 1], warmup=1))
            tiled = max(tiled, frames_per_second(tiled_r.render, zs[1:args.frames + 1], warmup=1))
            fast = max(fast, streamed_fps(fast_r, zs[:args.frames + 1]))
            if int16_r is not None:
                quick = max(quick, streamed_fps(int16_r, zs[:args.frames + 1]))
            e2e_frames = e2e_frames or max(60, int(args.e2e_seconds * fast))
            e2e = max(e2e, end_to_end(w, h, e2e_frames, precision="float32"))
            if int16_r is not None:
                e2e_q_frames = e2e_q_frames or max(60, int(args.e2e_seconds * quick))
                e2e_q = max(e2e_q, end_to_end(w, h, e2e_q_frames, precision="int16"))
        del tiled_r
        gflops = fast * flops_per_frame(w, h) / 1e9
        rows.append((w, h, naive, tiled, fast, gflops, e2e, f"{fast_r.method}, {fast_r.isa}"))
        print(f"{w}x{h}: naive {naive:.2f} fps, torch tiles {tiled:.2f} fps, neuromv ({fast_r.method}) {fast:.2f} fps ({fast / naive:.1f}x), "
              f"{gflops:.0f} GFLOP/s ({gflops / top:.0%} of ceiling), end to end {e2e:.2f} fps "
              f"({e2e / fast:.3f} of render-only)", file=sys.stderr)
        if int16_r is not None:
            gq = quick * flops_per_frame(w, h) / 1e9
            rows_int16.append((w, h, fast, quick, gq, e2e_q))
            print(f"{w}x{h}: int16 ({int16_r.isa}) {quick:.2f} fps ({quick / fast:.2f}x float32), {gq:.0f} GFLOP/s "
                  f"counted as float32 work ({gq / top:.2f}x ceiling), end to end {e2e_q:.2f} fps "
                  f"({e2e_q / quick:.3f} of render-only)", file=sys.stderr)

    lines = [
        f"Machine: {machine()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/render_bench.py --frames {args.frames} "
        f"--naive-frames {args.naive_frames} --e2e-seconds {args.e2e_seconds:g} --rounds {args.rounds}`.",
        "",
        "Compute ceiling (4096³ float32 matrix product, best of 5, all cores; the best is the ceiling; numpy's with "
        "the kernels OpenBLAS used, also free of the environment's `OPENBLAS_CORETYPE` where one is set): "
        + ", ".join(f"{k} **{v:.0f} GFLOP/s**" for k, v in ceiling.items()) + ".",
        "",
        "CPPN: hidden 32, z of 32, 5 hidden layers, float32. Naive, NeuroMV and end to end are timed in interleaved "
        "rounds and the best round of each is kept, since this machine's speed drifts by about 20 % from minute to "
        "minute. "
        "*Naive* is the plain forward pass (z concatenated to "
        "every pixel's input, `torch.tanh`). *Torch tiles* is the renderer's torch CPU path (`method='tiled'`). "
        "*NeuroMV* is `neuromv.renderer.Renderer` as `neuromv render` uses it, its frames streamed by "
        "`Renderer.frames` (method in brackets: `kernel` is the compiled fused kernel, src/neuromv/_kernel.cpp, with "
        "the next frame started before one is handed out). *GFLOP/s* (NeuroMV's) counts the "
        "per-frame matrix work (4 hidden layers of 2·32·32 and the output layer of 2·32·3 per pixel) against the "
        "larger ceiling. *End to end* is `neuromv.render()` on a generated song (the demo's groove) long enough for "
        f"about 12 s of work: features, render, libx264 (the defaults: preset {DEFAULTS.preset}, crf "
        f"{DEFAULTS.crf}) and AAC encode and mux, all in one wall clock, after one warm-up render in the same "
        "process.",
        "",
        "| size | naive fps | torch tiles fps | NeuroMV fps | speed-up over naive | GFLOP/s | of ceiling | "
        "end-to-end fps | end-to-end / render-only |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w, h, naive, tiled, fast, gflops, e2e, method in rows:
        lines.append(f"| {w}x{h} | {naive:.2f} | {tiled:.2f} | {fast:.2f} ({method}) | {fast / naive:.1f}x | "
                     f"{gflops:.0f} | {gflops / top:.0%} | {e2e:.2f} | {e2e / fast:.3f} |")
    lines += ["", "Reduced precision (`Renderer(precision='int16')`: the hidden layers in 16-bit fixed point with exact "
              "int32 sums, `vpdpwssd`), against float32 in the same rounds; GFLOP/s counted as the same float32 work:"
              if reduced else "Reduced precision: not measured (this CPU has no AVX512-VNNI).", ""]
    if reduced:
        lines += ["| size | float32 fps | int16 fps | int16 / float32 | int16 GFLOP/s | of ceiling | "
                  "int16 end-to-end fps | end-to-end / render-only |", "|---|---|---|---|---|---|---|---|"]
        for w, h, fast, quick, gq, e2e_q in rows_int16:
            lines.append(f"| {w}x{h} | {fast:.2f} | {quick:.2f} | {quick / fast:.2f}x | {gq:.0f} | {gq / top:.2f}x | "
                         f"{e2e_q:.2f} | {e2e_q / quick:.3f} |")
    write_section(Path(args.out), "Render speed (`bench/render_bench.py`)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
