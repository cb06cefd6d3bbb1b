"""Image mode's speed: a fitted picture against the abstract CPPN, end to end, at the defaults.

    python bench/picture_speed.py                     # writes its section of docs/benchmarks.md
    python bench/picture_speed.py --seconds 5 --out /tmp/b.md

``neuromv.render()`` of the generated demo song (its groove, from 4 s) at each size, the defaults otherwise
(precision auto, x264 preset cppn, crf 17): once with ``image='none'`` (the abstract CPPN) and once with the demo
cover (``neuromv.demo.demo_cover``), whose fit is made (and cached) before the timed runs, so the picture's time is
its render: the picture network once per resolution, then the motion per frame, encode and mux. Interleaved
rounds, best of each (this machine's speed drifts). Also render-only frames per second of each (``Renderer``
alone), and the fit's own time at the default ``--fit-quality standard``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import sys
import tempfile
import time
from pathlib import Path


import neuromv
from neuromv.demo import demo_cover
from neuromv.image import ImageSource
from neuromv.plan import build_renderer, fit_for, latents_for
from neuromv.settings import RenderSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

SIZES = [(1280, 720), (1920, 1080)]


def cover_source() -> ImageSource:
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(demo_cover(512)).save(png, format="PNG")
    return ImageSource(png.getvalue(), "the demo cover")


def e2e(song, w, h, seconds, image) -> float:
    with tempfile.TemporaryDirectory() as d:
        r = neuromv.render(song, Path(d) / "b.mp4", width=w, height=h, start=4.0, duration=seconds, image=image)
    return r.frames / r.seconds


def render_only(settings, net, z) -> float:
    t = time.perf_counter()
    renderer = build_renderer(settings, cppn=net, z=z)
    for zi in z:
        renderer.render_yuv420(zi) if renderer.yuv420 else renderer.render(zi)
    return len(z) / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds of video per render (default 6)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    print(f"machine: {machine()}", file=sys.stderr)
    song = neuromv.demo_song(duration=4.0 + args.seconds)
    cover = cover_source()
    rows = []
    for w, h in SIZES:
        settings = RenderSettings(width=w, height=h)
        t = time.perf_counter()
        net = fit_for(demo_cover(512), settings, cache=False)
        fit_s = time.perf_counter() - t
        e2e(song, w, h, 1.0, cover)  # makes and caches the render's own fit (the same target), and warms up
        best_a = best_p = ro_a = ro_p = 0.0
        z_a = latents_for(song, settings)[:60]
        z_p = latents_for(song, settings, image="picture")[:60]
        for _ in range(args.rounds):
            best_a = max(best_a, e2e(song, w, h, args.seconds, "none"))
            best_p = max(best_p, e2e(song, w, h, args.seconds, cover))
            ro_a = max(ro_a, render_only(settings, None, z_a))
            ro_p = max(ro_p, render_only(settings, net, z_p))
        rows.append((w, h, fit_s, ro_a, ro_p, best_a, best_p))
        print(f"{w}x{h}: fit {fit_s:.1f} s; render-only abstract {ro_a:.1f} fps, picture {ro_p:.1f} fps; end to end "
              f"abstract {best_a:.2f} fps, picture {best_p:.2f} fps ({best_p / best_a:.2f}x)", file=sys.stderr)
    lines = [
        f"Machine: {machine()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/picture_speed.py --seconds {args.seconds:g} "
        f"--rounds {args.rounds}`.",
        "",
        f"`neuromv.render()` of the demo song's groove at the defaults (precision auto, x264 preset "
        f"{RenderSettings().preset}, crf {RenderSettings().crf}), "
        "abstract (`image='none'`) against the demo cover fitted as a picture (its fit cached before the timed "
        "runs, so the figure is the render: the picture once per resolution, the motion per frame, encode and "
        "mux); best of the interleaved rounds. *Render-only*: `Renderer` alone on 60 frames (set-up included), "
        "I420 frames as the pipeline takes them. *Fit*: `--fit-quality standard` on the 512x512 cover.",
        "",
        "| size | fit s | render-only abstract fps | render-only picture fps | end-to-end abstract fps | "
        "end-to-end picture fps | picture / abstract |",
        "|---|---|---|---|---|---|---|",
    ]
    for w, h, fit_s, ro_a, ro_p, a, p in rows:
        lines.append(f"| {w}x{h} | {fit_s:.1f} | {ro_a:.1f} | {ro_p:.1f} | {a:.2f} | {p:.2f} | {p / a:.2f}x |")
    write_section(Path(args.out), "Image mode against the abstract CPPN (`bench/picture_speed.py`)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
