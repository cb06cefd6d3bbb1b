"""Reference images: the old method (format-1 image-mode CPPN) and the new one (picture network + motion), per image.

    python bench/reference_bench.py --song music.ogg                  # writes its section of docs/benchmarks.md
    python bench/reference_bench.py --song music.ogg --sheets docs    # and a contact sheet per image
    python bench/reference_bench.py --quick --out /tmp/b.md           # the demo song, two images, 256x256 only

Images: the openly licensed photographs that scikit-image ships (``pip install scikit-image``: astronaut, public
domain; coffee and chelsea, CC0; rocket, public domain; or ``--photos DIR`` holding those files) and two generated covers (neuromv.demo.demo_cover, and
rings: fine structure everywhere); without scikit-image only the generated ones. Song: ``--song`` (10 s from
``--start``; real music, e.g. ``apt-get download planetblupi-music-ogg``) or the generated demo song.

For each image, size and method, at the defaults (reactivity 1) but with the structure off: the frames are the
music's own motion, without the beats' kicks and steps (``neuromv.structure``), like the abstract reference's; the
render with the structure on is measured by bench/sync_bench.py:

- *fit s*: the fit's time (old: 3000 Adam steps at 171x96 or 128x128; new: ``--fit-quality standard``);
- *static*: SSIM of the still picture (reactivity 0) against the image fitted to the frame;
- *single*: the median SSIM of single frames (every 10th) against it; *mean*: the SSIM of the mean frame;
- *motion*: mean |frame i - frame i-1| on 0-255; *onset r*: its Pearson correlation with librosa's onset strength
  at the best lag within one frame (neuromv.metrics.onset_correlation, max_lag=1);
- *render fps*: frames rendered per second (not encoded), the per-resolution set-up included.

The abstract CPPN's motion and onset r on the same excerpt are the reference the issue sets ("at least half").
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

import numpy as np

from neuromv.audio import Audio, load_audio
from neuromv.demo import demo_cover, demo_song
from neuromv.metrics import FrameStats, onset_correlation, onset_strength, ssim
from neuromv.plan import build_renderer, fit_for, kind_of, latents_for, reference_target
from neuromv.settings import RenderSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

SIZES = [(256, 256), (1280, 720)]
SKIMAGE = {"astronaut": ("astronaut.png", "portrait photo (NASA, public domain)"),
           "coffee": ("coffee.png", "coffee cup photo (CC0)"),
           "chelsea": ("chelsea.png", "cat photo (CC0)"),
           "rocket": ("rocket.jpg", "rocket launch photo (SpaceX, public domain)")}


def rings_cover(n: int = 512) -> np.ndarray:
    """A detail-rich poster: coloured concentric rings and diagonal stripes."""
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / n * 2 - 1
    r = np.hypot(x + 0.25, y + 0.1)
    rings = 0.5 + 0.5 * np.sin(r * 28)
    stripes = (np.sin((x - y) * 22) > 0).astype(np.float64)
    a = np.where(x > 0.35, stripes, rings)
    rgb = np.stack([0.15 + 0.8 * a, 0.2 + 0.5 * (1 - a) * (y + 1) / 2, 0.35 + 0.5 * (1 - r.clip(0, 1))], axis=-1)
    return (rgb.clip(0, 1) * 255 + 0.5).astype(np.uint8)


def images(quick: bool, photos: str | None = None) -> dict[str, tuple[np.ndarray, str]]:
    """The photographs found in ``photos`` (default: scikit-image's data folder, if installed), then the two
    generated covers: {name: (pixels, description)}."""
    import importlib.util

    from neuromv.image import load_image

    out = {}
    folder = Path(photos) if photos else None
    if folder is None:
        spec = importlib.util.find_spec("skimage")
        folder = Path(spec.origin).parent / "data" if spec else None
    for name, (file, what) in SKIMAGE.items():
        if folder is not None and (folder / file).is_file():
            out[name] = (load_image(folder / file), what)
    out["cover"] = (demo_cover(512), "generated album cover (neuromv.demo.demo_cover)")
    out["rings"] = (rings_cover(512), "generated rings and stripes")
    if quick:
        out = dict(list(out.items())[:2])
    return out


def run(net, settings, z, target, onset):
    """(static SSIM, single median, mean SSIM, motion, onset r, render fps, frames to show) of one network."""
    t = time.perf_counter()
    renderer = build_renderer(settings, cppn=net, z=z)
    still = renderer.render(np.zeros(z.shape[1], np.float32))
    stats, singles, shown = FrameStats(), [], []
    render_s = time.perf_counter() - t
    for i, zi in enumerate(z):
        t = time.perf_counter()
        frame = renderer.render(zi)
        render_s += time.perf_counter() - t
        stats.add(frame)
        if i % 10 == 5:
            singles.append(ssim(frame, target))
        if i in SHOW:
            shown.append(frame)
    return (ssim(still, target), float(np.median(singles)), ssim(stats.mean_frame, target), stats.reactivity,
            onset_correlation(stats.changes, onset, max_lag=1), len(z) / render_s, [still] + shown)


SHOW = (45, 105, 165, 225)


def sheet(path: Path, target: np.ndarray, rows: dict[str, list[np.ndarray]]) -> None:
    """Reference, then per method: the still picture and frames at SHOW (one row per method)."""
    from PIL import Image

    h, w = target.shape[:2]
    scale = min(1.0, 200 / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = lambda a: np.asarray(Image.fromarray(np.asarray(a, np.uint8)).resize(size, Image.LANCZOS))  # noqa
    lines = []
    for frames in rows.values():
        lines.append(np.concatenate([small(target)] + [small(f) for f in frames], axis=1))
    Image.fromarray(np.concatenate(lines, axis=0)).save(path, optimize=True)
    print(f"wrote {path}", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--song", help="the music (default: the generated demo song)")
    ap.add_argument("--start", type=float, default=20.0, help="start of the 10-s excerpt of --song, seconds")
    ap.add_argument("--quick", action="store_true", help="two images, 256x256 only")
    ap.add_argument("--photos", help="folder holding scikit-image's astronaut.png, coffee.png, chelsea.png, "
                                     "rocket.jpg (default: the installed scikit-image's data folder)")
    ap.add_argument("--sheets", help="folder for the contact sheets (PNG per image, at 1280x720)")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)

    print(f"machine: {machine()}", file=sys.stderr)
    if args.song:
        full = load_audio(args.song)
        a = int(args.start * full.sr)
        audio = Audio(full.samples[:, a:a + 10 * full.sr], full.sr)
        song = f"{Path(args.song).name} ({args.start:g}-{args.start + 10:g} s)"
    else:
        audio, song = demo_song(10.0), "the generated demo song (10 s)"
    sizes = SIZES[:1] if args.quick else SIZES
    rows = []
    for name, (pixels, what) in images(args.quick, args.photos).items():
        for w, h in sizes:
            # the music's own motion, without the structure's controls, for both methods and the abstract reference
            # (with the structure on, a picture's drive is not boosted: its controls carry the hits; sync_bench.py)
            base = RenderSettings(width=w, height=h, structure="off")
            target = reference_target(pixels, base)
            onset = None
            shown = {}
            for method in ("old", "new"):
                t = time.perf_counter()
                net = fit_for(pixels, base, cache=False, method="neuromv" if method == "old" else "picture")
                fit_s = time.perf_counter() - t
                z = latents_for(audio, base, image=kind_of(net))
                if onset is None:
                    onset = onset_strength(audio.mono(), audio.sr, len(z), fps=base.fps)
                static, single, mean, motion, r, fps, frames = run(net, base, z, target, onset)
                shown[method] = frames
                rows.append((name, f"{w}x{h}", method, fit_s, static, single, mean, motion, r, fps))
                print(f"{time.strftime('%H:%M:%S')} {name} {w}x{h} {method}: fit {fit_s:.1f} s static {static:.3f} "
                      f"single {single:.3f} mean {mean:.3f} motion {motion:.2f} onset r {r:.2f} {fps:.1f} fps",
                      file=sys.stderr, flush=True)
            z = latents_for(audio, base)
            stats = FrameStats()
            renderer = build_renderer(base)
            for zi in z:
                stats.add(renderer.render(zi))
            rows.append((name, f"{w}x{h}", "abstract", None, None, None, None, stats.reactivity,
                         onset_correlation(stats.changes, onset, max_lag=1), None))
            print(f"  abstract: motion {stats.reactivity:.2f} onset r {rows[-1][8]:.2f}", file=sys.stderr)
            if args.sheets and (w, h) == sizes[-1]:
                sheet(Path(args.sheets) / f"reference-{name}.png", target, shown)
    what = ", ".join(f"{n} ({d})" for n, (_, d) in images(args.quick, args.photos).items())
    f = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
    lines = [
        f"Machine: {machine()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/reference_bench.py"
        f"{' --song ' + Path(args.song).name if args.song else ''}{' --quick' if args.quick else ''}`; "
        f"song: {song}. Images: {what}.",
        "",
        "*Old*: the format-1 image-mode CPPN (3000 steps at the training size, pulse gain 2.5). *New*: the picture "
        "network (`--fit-quality standard`) moved by `neuromv.motion`. Both at the defaults (reactivity 1) with the "
        "structure off (the music's own motion; the structure's kicks and steps: bench/sync_bench.py). "
        "*static*: SSIM of the still picture against the image fitted to the frame; *single*: median SSIM of single "
        "frames; *mean*: SSIM of the mean frame; *motion*: mean |frame i - frame i-1| (0-255); *onset r*: its "
        "correlation with librosa's onset strength at the best lag within one frame; *fps*: rendered (not "
        "encoded) frames per second. *Abstract*: the abstract CPPN on the same excerpt (the motion reference).",
        "",
        "| image | size | method | fit s | static | single | mean | motion | onset r | render fps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, size, method, fit_s, static, single, mean, motion, r, fps in rows:
        lines.append(f"| {name} | {size} | {method} | {f(fit_s, '.1f')} | {f(static, '.3f')} | {f(single, '.3f')} | "
                     f"{f(mean, '.3f')} | {motion:.2f} | {r:.2f} | {f(fps, '.1f')} |")
    write_section(Path(args.out), "Reference images: old and new method per image (`bench/reference_bench.py`)",
                  lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
