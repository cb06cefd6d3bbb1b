"""Reference images: fidelity vs reactivity of the naive approach and NeuroMV's method (the Pareto table).

    python bench/reference_bench.py                # writes its section of docs/benchmarks.md
    python bench/reference_bench.py --quick --out /tmp/b.md

One song (the generated demo song, 15 s, 450 frames) and one image (neuromv.demo.demo_cover, a generated album
cover). For each method, each training length and each value of the reactivity knob, the video's frames are
rendered (not encoded) at 256x144 and measured with neuromv.metrics:

- fidelity: SSIM of the mean frame against the reference image at that size;
- reactivity: mean |frame i - frame i-1| on 0-255, and its correlation with the onset strength;
- also the median SSIM of single frames (every 15th), to show what one frame looks like.

Methods (neuromv.reference):

- naive: the whole plain CPPN (z concatenated to the coordinates) trained on the image with z held at 0, then
  driven by the music's z (times Z_GAIN x knob) through its first layer;
- neuromv: z kept out of the fit, driving the frozen pulse (times PULSE_GAIN x knob).

Both use the same features, seed, architecture, optimiser and steps.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

import numpy as np

from neuromv.demo import demo_cover, demo_song
from neuromv.metrics import FrameStats, onset_correlation, onset_strength, ssim
from neuromv.pipeline import build_renderer, fit_for, latents_for, reference_target
from neuromv.settings import FIT_STEPS, PULSE_GAIN, Z_GAIN, RenderSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

SIZE = (256, 144)
THRESHOLD = 0.6  # fidelity at which the methods are compared (the target)


def rings_cover(n: int = 512) -> np.ndarray:
    """A detail-rich poster: coloured concentric rings and diagonal stripes (structure a blurred mean frame lacks)."""
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / n * 2 - 1
    r = np.hypot(x + 0.25, y + 0.1)
    rings = 0.5 + 0.5 * np.sin(r * 28)
    stripes = (np.sin((x - y) * 22) > 0).astype(np.float64)
    a = np.where(x > 0.35, stripes, rings)
    rgb = np.stack([0.15 + 0.8 * a, 0.2 + 0.5 * (1 - a) * (y + 1) / 2, 0.35 + 0.5 * (1 - r.clip(0, 1))], axis=-1)
    return (rgb.clip(0, 1) * 255 + 0.5).astype(np.uint8)


IMAGES = {"cover": ("neuromv.demo.demo_cover: a generated album cover (gradients, flat shapes, hard edges, small "
                    "bars)", lambda: demo_cover(512)),
          "rings": ("bench/reference_bench.py rings_cover: coloured concentric rings and diagonal stripes (fine "
                    "structure everywhere)", lambda: rings_cover(512))}


def measure(cppn, settings, z, target, onset):
    renderer = build_renderer(settings, cppn=cppn, z=z)
    stats = FrameStats()
    singles = []
    for i, zi in enumerate(z):
        frame = renderer.render(zi)
        stats.add(frame)
        if i % 15 == 7:
            singles.append(ssim(frame, target))
    return (ssim(stats.mean_frame, target), stats.reactivity, onset_correlation(stats.changes, onset),
            float(np.median(singles)))


def pareto(points):
    """Indices of points not dominated in (fidelity, reactivity)."""
    keep = []
    for i, (f, r) in enumerate(points):
        if not any((f2 >= f and r2 >= r) and (f2 > f or r2 > r) for f2, r2 in points):
            keep.append(i)
    return set(keep)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer points (a smoke run, minutes less)")
    ap.add_argument("--image", choices=sorted(IMAGES), default="cover", help="the reference image (default: cover)")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)

    steps_list = [300, 1000] if args.quick else [500, 1500, FIT_STEPS, 6000]
    knobs = {
        "naive": [0.25, 0.5, 1.0, 2.0] if args.quick else [0.125, 0.25, 0.5, 1.0, 2.0, 4.0],
        "neuromv": [0.5, 1.0, 2.0] if args.quick else [0.5, 1.0, 2.0, 4.0, 8.0],
    }
    print(f"machine: {machine()}", file=sys.stderr)
    audio = demo_song()
    what, make = IMAGES[args.image]
    cover = make()
    base = RenderSettings(width=SIZE[0], height=SIZE[1])
    target = reference_target(cover, base)
    rows = []
    fit_seconds = {}
    for method in ("naive", "neuromv"):
        for steps in steps_list:
            settings = base.__class__(**{**base.to_dict(), "fit_steps": steps})
            t = time.perf_counter()
            cppn = fit_for(cover, settings, cache=False, method=method)
            fit_seconds[(method, steps)] = time.perf_counter() - t
            z1 = latents_for(audio, settings, image=cppn.image) / settings.reactivity
            onset = onset_strength(audio.mono(), audio.sr, len(z1), fps=settings.fps)
            for knob in knobs[method]:
                fid, react, corr, single = measure(cppn, settings, z1 * knob, target, onset)
                rows.append((method, steps, knob, fid, react, corr, single))
                print(f"{time.strftime('%H:%M:%S')} {method:8s} steps {steps:5d} knob {knob:5.3g}: fidelity {fid:.3f} reactivity {react:5.2f} "
                      f"onset corr {corr:.2f} single-frame SSIM {single:.3f} (fit {fit_seconds[(method, steps)]:.1f} s)",
                      file=sys.stderr, flush=True)

    def best(method, threshold):
        ok = [r for r in rows if r[0] == method and r[3] >= threshold]
        return max(ok, key=lambda r: r[4]) if ok else None

    default = next((r for r in rows if r[0] == "neuromv" and r[1] == FIT_STEPS and r[2] == 1.0), None)

    lines = [
        f"Machine: {machine()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/reference_bench.py --image {args.image}"
        f"{' --quick' if args.quick else ''}`.",
        "",
        f"One song (the generated demo song, 15 s, 450 frames at 30 fps) and one image ({what}), fitted at 171x96 "
        "pixels (the training size for any 16:9 video) and rendered at "
        f"{SIZE[0]}x{SIZE[1]}. *Fidelity* is the SSIM of the mean frame against the cover at that size; "
        "*reactivity* the mean absolute difference between consecutive frames (0-255); *onset r* the correlation "
        "of each frame's change with the audio's onset strength; *single SSIM* the median SSIM of single frames "
        "(every 15th) against the cover. *Naive* trains the whole plain CPPN with z held at 0, then drives it with "
        f"the music through its first layer (z x {Z_GAIN} x knob). *NeuroMV* keeps z out of the fit and drives the "
        f"frozen pulse (z x {PULSE_GAIN} x knob); the knob is `--reactivity`. Same seed, features, optimiser and "
        "steps. ✓ marks the Pareto front of each method (no other point of the same method has both more fidelity "
        "and more reactivity).",
        "",
    ]
    lines += ["Most reactivity each method reaches at a given fidelity or more (from the points below):", "",
              "| fidelity ≥ | naive: reactivity (steps, knob) | NeuroMV: reactivity (steps, knob) | NeuroMV / naive |",
              "|---|---|---|---|"]
    for threshold in (THRESHOLD, 0.65, 0.7, 0.75):
        n, m = best("naive", threshold), best("neuromv", threshold)
        cell = lambda r: "none" if r is None else f"{r[4]:.2f} ({r[1]}, {r[2]:g})"  # noqa: E731
        ratio = f"{m[4] / n[4]:.1f}x" if n and m else ("naive never gets there" if m else "-")
        lines.append(f"| {threshold:g} | {cell(n)} | {cell(m)} | {ratio} |")
        print(f"fidelity >= {threshold}: naive {cell(n)}, neuromv {cell(m)}: {ratio}", file=sys.stderr)
    lines.append("")
    if default:
        lines += [
            f"**Defaults** ({FIT_STEPS} steps, reactivity 1): fidelity {default[3]:.3f}, reactivity {default[4]:.2f}, "
            f"onset r {default[5]:.2f}. Fit time at the default: "
            f"{fit_seconds[('neuromv', FIT_STEPS)]:.1f} s (naive: {fit_seconds[('naive', FIT_STEPS)]:.1f} s).",
            "",
        ]
    lines += [
        "| method | fit steps | fit s | knob | fidelity | reactivity | onset r | single SSIM | Pareto |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in ("naive", "neuromv"):
        mine = [r for r in rows if r[0] == method]
        front = pareto([(r[3], r[4]) for r in mine])
        for i, (meth, steps, knob, fid, react, corr, single) in enumerate(mine):
            lines.append(f"| {meth} | {steps} | {fit_seconds[(meth, steps)]:.1f} | {knob:g} | {fid:.3f} | "
                         f"{react:.2f} | {corr:.2f} | {single:.3f} | {'✓' if i in front else ''} |")
    write_section(Path(args.out), f"Reference images, {args.image}: fidelity vs reactivity (`bench/reference_bench.py`)",
                  lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
