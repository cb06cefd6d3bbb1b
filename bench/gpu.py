"""GPU render speed: NeuroMV's batched CUDA path against a naive forward pass on the GPU, and end to end.

    python bench/gpu.py                                    # on a CUDA machine: writes docs/benchmarks.md
    python bench/gpu.py --seconds 5 --sizes 1920x1080 --out /tmp/b.md
    python bench/gpu.py --sweep                            # the fused kernel's block and warps at 1080p; no file

**Target: render-only at 1920x1080 at least 20x real time, i.e. 600 frames/s at 30 fps, on one H100.**

In one run, for each size (default 1920x1080 and 3840x2160; hidden 32, z of 32, 5 hidden layers, float32
throughout, no TF32):

- naive: the plain forward pass (neuromv.cppn.CPPN.forward: z concatenated to every pixel's input, torch.tanh) on
  the whole frame on the GPU, one frame at a time, then uint8 and ``.cpu()``;
- NeuroMV: ``Renderer(device='cuda').frames(zs)`` consumed: frames in batches (``Renderer.default_batch``), batch
  k + 1 queued before batch k is handed out, copies to pinned host memory on a side stream; a frame counts once
  it is in host memory as uint8; the hidden layers fused into one Triton kernel (neuromv.renderer.fused) where
  Triton is there, and the same with them unfused (separate torch products and tanh passes) for comparison;
- x real time: NeuroMV's render-only frames/s over 30 fps;
- end to end: ``neuromv.render(song, out, device='cuda', ...)`` on a generated song (features + render + encode +
  mux), with libx264 (the defaults: preset cppn, crf 18) and with ``codec='h264_nvenc'`` (n/a, with the
  reason, where the pipeline or FFmpeg refuses it).

On a machine where PyTorch sees no CUDA GPU it says so and exits 0 without writing anything.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import neuromv
from neuromv.cppn import CPPN, coordinate_grid
from neuromv.errors import NeuroMVError, summary
from neuromv.renderer import Renderer, fused
from neuromv.settings import parse_size

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

SIZES = "1920x1080,3840x2160"
HIDDEN, N_Z, N_HIDDEN = 32, 32, 5
FPS = 30
TARGET_FPS = 600  # 20x real time at 1080p on one H100
TITLE = "GPU render (`bench/gpu.py`)"


def flops_per_frame(width: int, height: int, hidden: int = HIDDEN) -> float:
    """Matrix work of one frame that any renderer must do: 4 hidden-to-hidden layers and the output layer."""
    return width * height * (4 * 2 * hidden * hidden + 2 * hidden * 3)


def gpu_name() -> str:
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return f"{props.name}, {props.total_memory / 2**30:.0f} GiB; CUDA {torch.version.cuda}"


def neuromv_fps(renderer: Renderer, zs: np.ndarray, rounds: int) -> float:
    """Render-only frames/s of Renderer.frames (best of ``rounds``), frames consumed on the host."""
    for _ in renderer.frames(zs[: renderer.default_batch() * 2]):  # warm-up: cuBLAS handles, allocator, pins
        pass
    best = 0.0
    for _ in range(rounds):
        torch.cuda.synchronize()
        t = time.perf_counter()
        n = 0
        for frame in renderer.frames(zs):
            n += frame.shape[0] > 0  # the frame is in host memory as uint8
        best = max(best, n / (time.perf_counter() - t))
    return best


@torch.no_grad()
def naive_fps(net: CPPN, width: int, height: int, zs: np.ndarray, rounds: int) -> float:
    """The plain forward pass on the whole frame on the GPU, per frame, to uint8 on the host (best of rounds)."""
    net = copy.deepcopy(net).to("cuda")
    coords = coordinate_grid(width, height).to("cuda")
    zs_gpu = torch.from_numpy(zs).to("cuda")

    def frame(z):
        return (net(coords, z) * 255 + 0.5).to(torch.uint8).reshape(height, width, 3).cpu()

    frame(zs_gpu[0])
    best = 0.0
    for _ in range(rounds):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for z in zs_gpu:
            frame(z)
        best = max(best, len(zs) / (time.perf_counter() - t))
    return best


def end_to_end(song, width: int, height: int, seconds: float, **options) -> float:
    """neuromv.render() on the GPU of ``seconds`` of the song after its intro: frames per wall-clock second."""
    with tempfile.TemporaryDirectory() as d:
        # skip the demo's quiet intro: the benchmark should see the full groove
        result = neuromv.render(song, Path(d) / "bench.mp4", device="cuda", width=width, height=height, fps=FPS,
                                start=4.0, duration=seconds, seed=7, **options)
    return result.frames / result.seconds


def end_to_end_or_reason(song, width: int, height: int, seconds: float, **options) -> tuple[float | None, str]:
    try:
        return end_to_end(song, width, height, seconds, **options), ""
    except NeuroMVError as e:
        return None, summary(e)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="seconds of video (at 30 fps) per measurement, render-only and end to end (default 10)")
    ap.add_argument("--sizes", default=SIZES, help=f"comma-separated WIDTHxHEIGHT list (default {SIZES})")
    ap.add_argument("--rounds", type=int, default=3, help="render-only rounds; the best is kept (default 3)")
    ap.add_argument("--chunk", type=int, default=None,
                    help="pixel-frames per chunk of the dense path (default: the renderer's, DENSE_CHUNK)")
    ap.add_argument("--block", type=int, default=None,
                    help=f"the fused kernel's pixels per program (default neuromv's, {fused.BLOCK})")
    ap.add_argument("--warps", type=int, default=None,
                    help=f"the fused kernel's warps per program (default neuromv's, {fused.NUM_WARPS})")
    ap.add_argument("--sweep", action="store_true",
                    help="only time the fused kernel's pixels per program and warps at the first size; no file")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    sizes = [parse_size(s.strip()) for s in args.sizes.split(",") if s.strip()]
    if args.seconds <= 0 or not sizes or args.rounds < 1:
        ap.error("--seconds must be above 0, --sizes must name a size, --rounds must be at least 1")
    fused.BLOCK = args.block or fused.BLOCK
    fused.NUM_WARPS = args.warps or fused.NUM_WARPS

    if not torch.cuda.is_available():
        print("bench/gpu.py: PyTorch sees no CUDA GPU on this machine; nothing measured, nothing written "
              f"(torch {torch.__version__}).", file=sys.stderr)
        return 0

    print(f"machine: {machine()}; GPU: {gpu_name()}", file=sys.stderr)
    n_frames = max(1, int(round(args.seconds * FPS)))
    net = CPPN(N_Z, HIDDEN, n_hidden=N_HIDDEN, seed=7)
    zs = (np.random.default_rng(0).standard_normal((n_frames, N_Z)) * 0.3).astype(np.float32)
    if args.sweep:
        return sweep(net, zs, *sizes[0], args.rounds)
    song = neuromv.demo_song(duration=4.0 + args.seconds + 1.0)
    end_to_end(song, 64, 36, 0.5)  # warm-up: librosa's, FFmpeg's and CUDA's one-time set-up are not speed
    rows = []
    for w, h in sizes:
        renderer = Renderer(net, w, h, device="cuda")
        if args.chunk:
            renderer.backend.chunk = args.chunk
        fast = neuromv_fps(renderer, zs, args.rounds)
        unfused = None
        if renderer.backend.fused:
            renderer.backend.fused = False
            unfused = neuromv_fps(renderer, zs, args.rounds)
        batch, chunk = renderer.default_batch(), renderer.backend.chunk
        del renderer
        torch.cuda.empty_cache()
        naive = naive_fps(net, w, h, zs, args.rounds)
        torch.cuda.empty_cache()
        x264, why_x264 = end_to_end_or_reason(song, w, h, args.seconds)
        nvenc, why = end_to_end_or_reason(song, w, h, args.seconds, codec="h264_nvenc")
        gflops = fast * flops_per_frame(w, h) / 1e9
        rows.append((w, h, naive, unfused, fast, batch, chunk, gflops, x264, why_x264, nvenc, why))
        print(f"{w}x{h}: naive {naive:.1f} fps, unfused {_fps(unfused, 'no Triton')}, "
              f"neuromv {fast:.1f} fps (batch {batch}; {fast / naive:.1f}x naive, "
              f"{fast / FPS:.1f}x real time, {gflops:.0f} GFLOP/s), end to end libx264 "
              f"{_fps(x264, why_x264)} fps, h264_nvenc {_fps(nvenc, why)} fps", file=sys.stderr)

    hd = next((r for r in rows if (r[0], r[1]) == (1920, 1080)), None)
    verdict = ("not measured (1920x1080 not among --sizes)" if hd is None else
               f"**{'met' if hd[4] >= TARGET_FPS else 'not met'}**: {hd[4]:.0f} fps, {hd[4] / FPS:.1f}x real time")
    lines = [
        f"Machine: {machine()}.  ",
        f"GPU: {gpu_name()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/gpu.py --seconds {args.seconds:g} --sizes "
        f"{args.sizes} --rounds {args.rounds}{f' --chunk {args.chunk}' if args.chunk else ''}"
        f"{f' --block {args.block}' if args.block else ''}{f' --warps {args.warps}' if args.warps else ''}`.",
        "",
        f"Target: render-only at 1920x1080 at least 20x real time ({TARGET_FPS} frames/s at {FPS} fps) on one "
        f"H100. This run: {verdict}.",
        "",
        f"CPPN: hidden {HIDDEN}, z of {N_Z}, {N_HIDDEN} hidden layers, float32 (no TF32), {n_frames} frames per "
        f"measurement. Fused kernel: {fused.BLOCK} pixels per program, {fused.NUM_WARPS} warps. "
        "*Naive* is the plain forward pass (`CPPN.forward`: z concatenated to every pixel's input, "
        "`torch.tanh`) on the whole frame on the GPU, one frame at a time, then uint8 and `.cpu()`. *NeuroMV* is "
        "`Renderer(device='cuda').frames(zs)` consumed: batches of frames through the network together (first "
        "layer's coordinate part computed once; chunks of at most *chunk* pixel-frames; the first layer's tanh and "
        "the hidden-to-hidden layers in one Triton kernel, `neuromv.renderer.fused`, the output layer and uint8 in "
        "torch), uint8 on the GPU, batch "
        "k + 1 queued before batch k is handed out, copies to pinned host memory on a side stream; a frame counts "
        "once it is in host memory. *Unfused* is the same with every layer a separate torch product and tanh pass "
        "(`backend.fused = False`; n/a where Triton is missing). All best of "
        f"{args.rounds} rounds. *GFLOP/s* counts NeuroMV's per-frame matrix work (4 hidden layers of 2·32·32 and "
        "the output layer of 2·32·3 per pixel). *End to end* is `neuromv.render(..., device='cuda')` on a generated "
        "song (the demo's groove): features, render, encode (libx264 at the defaults, preset cppn crf 18, or "
        "`codec='h264_nvenc'`) and AAC, mux, all in one wall clock, after one warm-up render in the same process.",
        "",
        "| size | naive fps | NeuroMV unfused fps | NeuroMV fps | batch | chunk | speed-up over naive | "
        "x real time (30 fps) | GFLOP/s | end-to-end fps, libx264 | end-to-end fps, h264_nvenc |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w, h, naive, unfused, fast, batch, chunk, gflops, x264, why_x264, nvenc, why in rows:
        lines.append(f"| {w}x{h} | {naive:.1f} | {_fps(unfused, 'no Triton')} | {fast:.1f} | {batch} | {chunk} | "
                     f"{fast / naive:.1f}x | {fast / FPS:.1f}x | {gflops:.0f} | {_fps(x264, why_x264)} | "
                     f"{_fps(nvenc, why)} |")
    write_section(Path(args.out), TITLE, lines)
    return 0


def sweep(net: CPPN, zs: np.ndarray, width: int, height: int, rounds: int) -> int:
    """Render-only frames/s of the fused kernel for each pixels-per-program and warps (printed; nothing written)."""
    renderer = Renderer(net, width, height, device="cuda")
    if not renderer.backend.fused:
        print("bench/gpu.py --sweep: the fused kernel does not run here (no Triton)", file=sys.stderr)
        return 1
    chosen = fused.BLOCK, fused.NUM_WARPS
    print(f"{width}x{height}, fused kernel (pixels per program, warps -> fps); the module's choice {chosen}:",
          file=sys.stderr)
    for block in (32, 64, 128, 256):
        for warps in (1, 2, 4, 8):
            if block * HIDDEN // (32 * warps) > 256:
                continue  # far more activations per thread than registers
            fused.BLOCK, fused.NUM_WARPS = block, warps
            try:
                fps = neuromv_fps(renderer, zs, rounds)
            except Exception as e:  # noqa: BLE001 - a variant that does not compile is reported, not fatal
                print(f"  {block:4d} {warps}: failed ({type(e).__name__}: {e})", file=sys.stderr)
                continue
            print(f"  {block:4d} {warps}: {fps:.1f}", file=sys.stderr)
    fused.BLOCK, fused.NUM_WARPS = chosen
    return 0


def _fps(value: float | None, why: str = "") -> str:
    if value is not None:
        return f"{value:.1f}"
    return f"n/a ({why.replace('|', '/')})" if why else "n/a"


if __name__ == "__main__":
    sys.exit(main())
