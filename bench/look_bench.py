"""The look: clipping and colourfulness of rendered videos, before (the raw network) and at the defaults, per
palette, with contact sheets (the render cost of a palette: bench/palette_bench.py).

Each case renders an excerpt through :func:`neuromv.render` (the whole pipeline: features, structure, the
compiled kernel, H.264), decodes every 4th frame of the video it wrote and measures, per frame,
:func:`neuromv.metrics.clipped_share` and :func:`neuromv.metrics.colourfulness` (Hasler-Süsstrunk), averaged over
the frames; the table gives the range over songs and seeds. ``cover`` palettes are measured with
:func:`neuromv.metrics.palette_distance` to the cover's 8 dominant colours.

    python bench/look_bench.py [--real DIR] [--songs N] [--seeds 0 1 2] [--size 320x180] [--seconds 8]
                               [--palettes all] [--sheet docs/look-before-after.jpg] [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

import neuromv  # noqa: E402
from neuromv.audio import AudioFile  # noqa: E402
from neuromv.demo import demo_cover, demo_song  # noqa: E402
from neuromv.metrics import clipped_share, colourfulness, palette_distance  # noqa: E402
from neuromv.palette import dominant_colors  # noqa: E402
from neuromv.settings import PALETTES, parse_size  # noqa: E402

#: The raw network of N(0, 1) weights: what the defaults were before the tone.
BEFORE = dict(tone=1.0, chroma=1.0)


def decoded(path: Path, every: int = 4) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % every == 0]


def songs(args) -> list[tuple[str, object]]:
    out = [("demo", demo_song(args.seconds))]
    if args.real:
        for p in sorted(Path(args.real).glob("*.ogg"))[: args.songs]:
            d = AudioFile(p).duration
            start = max(0.0, min(30.0, d / 3))
            out.append((p.stem, AudioFile(p, start=start, duration=args.seconds).load()))
    return out


def measure(name, audio, options: dict, size, work: Path, cover=None) -> dict:
    """Render, decode and measure one case. With ``cover``, the song is written beside a cover.png of it and
    rendered with image 'auto': the abstract CPPN in the cover's colours, as a user's song with cover art is."""
    out = work / f"{name}.mp4"
    song, image = audio, "none"
    if cover is not None:
        from PIL import Image

        from neuromv.audio import save_wav

        folder = work / name
        folder.mkdir(exist_ok=True)
        song, image = folder / "song.wav", "auto"
        save_wav(song, audio)
        Image.fromarray(cover).save(folder / "cover.png")
    neuromv.render(song, out, width=size[0], height=size[1], overwrite=True, image=image, **options)
    frames = decoded(out)
    row = {"clip": float(np.mean([clipped_share(f) for f in frames])),
           "colour": float(np.mean([colourfulness(f) for f in frames])), "frames": frames}
    if options.get("palette") == "cover":
        colors = dominant_colors(cover)
        row["distance"] = float(np.mean([palette_distance(f[::4, ::4], colors) for f in frames]))
    return row


def sheet(rows: list[list[np.ndarray]], names: list[str], path: Path, columns: int = 6) -> None:
    """A contact sheet: with a few cases, one row per song and seed (the cases side by side); with many, a labelled
    block per case (its frames of every song and seed stacked), ``columns`` blocks a row."""
    from PIL import Image, ImageDraw

    if len(names) <= 4:
        img = Image.fromarray(np.concatenate([np.concatenate(r, axis=1) for r in rows if r], axis=0))
    else:
        th, tw = rows[0][0].shape[:2]
        label = 26
        block = label + len(rows) * th
        img = Image.new("RGB", (min(columns, len(names)) * tw, -(-len(names) // columns) * block), (20, 20, 24))
        draw = ImageDraw.Draw(img)
        for k, name in enumerate(names):
            x, y = (k % columns) * tw, (k // columns) * block
            draw.text((x + 6, y + 6), name, fill=(235, 235, 235))
            for j, r in enumerate(rows):
                img.paste(Image.fromarray(r[k]), (x, y + label + j * th))
    img.save(path, quality=88)
    print(f"wrote {path} ({img.width}x{img.height})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", help="a folder of .ogg songs")
    ap.add_argument("--songs", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--palettes", nargs="*", default=[], help="palette names (or 'all') measured besides the defaults")
    ap.add_argument("--sheet", help="contact sheet: before | default (| palettes), a row per song and seed")
    ap.add_argument("--write", action="store_true", help="record the figures in docs/benchmarks.md")
    args = ap.parse_args()
    size = parse_size(args.size)
    palettes = list(PALETTES) + ["cover"] if args.palettes == ["all"] else args.palettes
    cases = [("before", BEFORE), ("default", {})] + [(p, {"palette": p}) for p in palettes]
    results: dict[str, list[dict]] = {name: [] for name, _ in cases}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for song, audio in songs(args):
            for seed in args.seeds:
                row = []
                for name, opts in cases:
                    cover = demo_cover() if name == "cover" else None
                    r = measure(f"{song}-{seed}-{name}", audio, {**opts, "seed": seed}, size, work, cover)
                    r.update(song=song, seed=seed)
                    results[name].append(r)
                    frames = r.pop("frames")
                    row.append(frames[min(5, len(frames) - 1)])
                    extra = f" distance {r['distance']:.1f}" if "distance" in r else ""
                    print(f"{song} seed {seed} {name}: clipped {100 * r['clip']:.1f} %, colourfulness "
                          f"{r['colour']:.0f}{extra}", flush=True)
                rows.append(row)
    lines = ["| case | clipped channel values (mean over frames; min-max over songs x seeds) | colourfulness "
             "(min-max) | |", "|---|---|---|---|"]
    for name, rs in results.items():
        clip = [100 * r["clip"] for r in rs]
        col = [r["colour"] for r in rs]
        extra = (f"distance to the cover's 8 colours {min(r['distance'] for r in rs):.1f}-"
                 f"{max(r['distance'] for r in rs):.1f}") if rs and "distance" in rs[0] else ""
        lines.append(f"| {name} | {np.mean(clip):.1f} % ({min(clip):.1f}-{max(clip):.1f}) | "
                     f"{min(col):.0f}-{max(col):.0f} (mean {np.mean(col):.0f}) | {extra} |")
    print("\n".join(lines))
    if args.sheet:
        sheet(rows, [name for name, _ in cases], Path(args.sheet))
    if args.write:
        n_songs = len({r["song"] for r in results["default"]})
        body = [f"`python bench/look_bench.py {' '.join(sys.argv[1:])}` on {machine()}.", "",
                f"{n_songs} songs (the demo and real excerpts of {args.seconds:g} s) x seeds {args.seeds}, "
                f"{size[0]}x{size[1]}, rendered by `neuromv.render` at the defaults (structure on) and decoded; "
                "clipped: channel values <= 5 or >= 250; colourfulness: Hasler-Süsstrunk (109 is 'extremely "
                "colourful'). 'before': tone 1, chroma 1, the raw network (the defaults before issue 17).", "",
                *lines]
        body += ["", "The render cost of a palette: the next section (bench/palette_bench.py)."]
        write_section(DOC, "The look: palettes" if palettes else "The look: clipping and colourfulness at the defaults",
                      body)


if __name__ == "__main__":
    main()
