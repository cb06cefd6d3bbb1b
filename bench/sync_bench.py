"""Music structure and sync: the analysis's accuracy and speed, and how closely the rendered videos follow the music.

For each song (the demo, synthetic songs with a known structure, and real songs when given): the analysis (tempo
against the truth where known, section boundaries against the truth of synthetic songs with mir_eval.segment,
speed as song seconds per second), then a render with ``--structure on`` (the default) and ``off``, decoded again
and measured by :func:`neuromv.sync.sync_video` (lag, onset r within one frame, BAS, beat F at +-70 ms), and a
contact sheet per song: a frame from the middle of every section, and the frames around one downbeat.

    python bench/sync_bench.py                           # demo + synthetic songs
    python bench/sync_bench.py --real DIR --midi DIR     # + real songs; tempo truth from MIDI files beside them
    python bench/sync_bench.py --write                   # also writes the section into docs/benchmarks.md

Real songs: the planetblupi game music (Debian planetblupi-music-ogg), whose MIDI originals
(planetblupi-music-midi) give the tempo. Excerpts of ``--seconds`` from ``--offset``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"


def midi_tempo(path: Path) -> float | None:
    """The first tempo of a standard MIDI file (quarter notes per minute), read from its set-tempo meta event."""
    data = path.read_bytes()
    i = data.find(b"\xff\x51\x03")
    if i < 0:
        return None
    us = int.from_bytes(data[i + 3:i + 6], "big")
    return 60e6 / us


def synthetic_songs():
    from neuromv.demo import structured_song

    yield "synthetic ABACAB 96 BPM, drop", *structured_song("ABACAB", bpm=96.0, bars=8, drop=3, seed=1)
    yield "synthetic ABCBAB 128 BPM, silence", *structured_song("ABCBAB", bpm=128.0, bars=8, silence=(2, 4), seed=2)
    yield "synthetic ABCB 150 BPM, 3/4", *structured_song("ABCB", bpm=150.0, bars=8, beats_per_bar=3, seed=3)
    yield "synthetic AB 100->140 BPM", *structured_song("ABAB", bpm=100.0, bars=8, tempo_change=(2, 140.0), seed=4)


def section_hit_rate(truth: list[float], found, duration: float) -> float:
    """mir_eval.segment.detection's F-measure of boundaries within +-3 s (the song's ends left out)."""
    import mir_eval

    def intervals(b):
        b = sorted(set([0.0, *[x for x in b if 0 < x < duration], duration]))
        return np.array([[a, c] for a, c in zip(b[:-1], b[1:])])

    _, _, f = mir_eval.segment.detection(intervals(truth), intervals(found), window=3.0, trim=True)
    return float(f)


def contact_sheet(video: Path, cues, out: Path, title: str, size: tuple[int, int]) -> None:
    """A frame from the middle of each section (label and time under it), then the frames around one downbeat."""
    import av
    from PIL import Image, ImageDraw

    fps = 30.0
    want = {}
    for s in cues.sections:
        want[int((s.start + s.end) / 2 * fps)] = f"{s.label} {s.start:.0f}-{s.end:.0f} s"
    d = [t for t in cues.downbeats if t > 2.0]
    kick = []
    if d:
        k = int(round(d[len(d) // 2] * fps))
        kick = [k - 1, k, k + 2, k + 5, k + 9]
        for i, j in enumerate(kick):
            want.setdefault(j, f"downbeat {'-1' if i == 0 else '+' + str(j - k)} fr")
    frames = {}
    with av.open(str(video)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in want:
                frames[i] = f.to_ndarray(format="rgb24")
            if i > max(want):
                break
    w, h = size
    tw, th = (w, h) if w <= 400 else (w // 2, h // 2)
    order = [i for i in sorted(want) if i in frames and i not in kick] + [i for i in kick if i in frames]
    cols = min(6, max(1, len(order)))
    rows = -(-len(order) // cols)
    sheet = Image.new("RGB", (cols * tw, rows * (th + 14) + 16), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), title, fill="black")
    for n, i in enumerate(order):
        x, y = (n % cols) * tw, 16 + (n // cols) * (th + 14)
        sheet.paste(Image.fromarray(frames[i]).resize((tw, th)), (x, y))
        draw.text((x + 3, y + th), want[i], fill="black")
    sheet.save(out, quality=85)


def envelope_speed(frames: int = 500, runs: int = 3) -> None:
    """Print what ``MotionEnvelope.add`` costs per frame (the render calls it on every frame): random content, one
    core, best of ``runs`` loops of ``frames`` frames, I420 and RGB at 720p and 1080p (docs/sync.md's table)."""
    import time

    import numpy as np

    from neuromv.sync import MotionEnvelope

    rng = np.random.default_rng(0)
    for w, h in ((1280, 720), (1920, 1080)):
        cells = []
        for shape in ((h * 3 // 2, w), (h, w, 3)):
            pair = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2)]
            best = float("inf")
            for _ in range(runs):
                env = MotionEnvelope()
                t = time.perf_counter()
                for i in range(frames):
                    env.add(pair[i % 2])
                best = min(best, (time.perf_counter() - t) / frames)
            cells.append(f"{best * 1e3:.3f} ms")
        print(f"| {w}x{h} | {' | '.join(cells)} |")


def main() -> None:
    import neuromv
    from neuromv.analysis import analyze
    from neuromv.audio import AudioFile
    from neuromv.demo import demo_song
    from neuromv.sync import sync_video

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, help="folder of real songs (*.ogg, *.mp3, *.flac, *.wav)")
    ap.add_argument("--midi", type=Path, help="folder of their MIDI originals (same stem, .mid): the tempo truth")
    ap.add_argument("--songs", default="", help="comma-separated stems of --real to use (default: all)")
    ap.add_argument("--offset", type=float, default=30.0, help="start of each real song's excerpt, s")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each real song's excerpt, s")
    ap.add_argument("--speed-seconds", type=float, default=240.0, help="excerpt analysed for the speed figure")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--image", default="none", help="reference image for the renders (default: abstract)")
    ap.add_argument("--sheets", default="", metavar="NAMES",
                    help="write contact sheets into docs/ for the songs whose names start with these (comma-separated; "
                         "'all')")
    ap.add_argument("--write", action="store_true", help="write the section into docs/benchmarks.md")
    ap.add_argument("--envelope", action="store_true", help="only the motion envelope's cost per frame (docs/sync.md)")
    args = ap.parse_args()
    if args.envelope:
        envelope_speed()
        return
    w, h = (int(v) for v in args.size.split("x"))

    songs = [("demo (15 s, 120 BPM)", demo_song(), {"tempo": 120.0})]
    songs += [(name, audio, truth) for name, audio, truth in synthetic_songs()]
    reals = []
    if args.real:
        pick = [s for s in args.songs.split(",") if s]
        for f in sorted(args.real.iterdir()):
            if f.suffix.lower() in (".ogg", ".mp3", ".flac", ".wav", ".m4a", ".opus") and (not pick or f.stem in pick):
                tempo = midi_tempo(args.midi / (f.stem + ".mid")) if args.midi else None
                reals.append((f, tempo))

    rows, sheets = [], []
    tmp = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    for name, audio, truth in songs + [(f.name, f, {"tempo": t}) for f, t in reals]:
        is_file = isinstance(audio, Path)
        t0 = time.perf_counter()
        if is_file:
            speed_src = AudioFile(audio, duration=args.speed_seconds)
            cues_speed = analyze(speed_src)
            t_an = time.perf_counter() - t0
            speed = speed_src.duration / t_an
            clip = AudioFile(audio, start=args.offset, duration=args.seconds).load()
        else:
            clip = audio
            t0 = time.perf_counter()
            analyze(audio)
            speed = audio.duration / (time.perf_counter() - t0)
        cues = analyze(clip)
        tempo_err = None if not truth.get("tempo") else (cues.tempo - truth["tempo"]) / truth["tempo"] * 100
        hit = None
        if "boundaries" in truth:
            hit = section_hit_rate(truth["boundaries"], [s.start for s in cues.sections], clip.duration)
        reports = {}
        for structure in ("on", "off"):
            out = tmp / f"{len(rows)}-{structure}.mp4"
            neuromv.render(clip, out, width=w, height=h, structure=structure, image=args.image,
                           cues=cues if structure == "on" else None)
            reports[structure] = sync_video(out, None)
            wanted = [x for x in args.sheets.split(",") if x]
            if structure == "on" and (args.sheets == "all" or any(name.startswith(x) for x in wanted)):
                slug = "".join(c if c.isalnum() else "-" for c in name.split(" (")[0].lower()).strip("-")
                sheet = DOCS / f"structure-{slug}.jpg"
                contact_sheet(out, cues, sheet, f"{name}: sections {''.join(s.label for s in cues.sections)}",
                              (w, h))
                sheets.append(sheet.name)
        on, off = reports["on"], reports["off"]
        rows.append(
            f"| {name} | {clip.duration:.0f} | {cues.tempo:.1f}"
            f"{'' if tempo_err is None else f' ({tempo_err:+.1f} %)'} | "
            f"{'-' if hit is None else f'{hit:.2f}'} | {''.join(s.label for s in cues.sections)} | {speed:.0f}x | "
            f"{on.lag_ms:+.0f} / {on.r:.2f} / {on.bas:.2f} / {on.f_measure:.2f} | "
            f"{off.lag_ms:+.0f} / {off.r:.2f} / {off.bas:.2f} / {off.f_measure:.2f} |")
        print(rows[-1], flush=True)

    head = [f"Machine: {machine()}. Command: `python bench/sync_bench.py {' '.join(sys.argv[1:])}`. Renders at "
            f"{w}x{h}, image {args.image}, every other setting at its default; each video decoded again and measured "
            "by `neuromv sync` (lag ms / onset r within one frame / BAS (sigma 50 ms) / beat F at +-70 ms). Tempo: "
            "the analysis of the excerpt against the truth (synthetic: the generator's; real: the MIDI original's). "
            "Sections: mir_eval.segment.detection F-measure at +-3 s (synthetic songs). Speed: song seconds "
            f"analysed per second, decode included ({args.speed_seconds:.0f} s excerpts of the real songs).",
            "",
            "| song | s | tempo BPM (error) | sections F | labels | analysis speed | structure on: lag / r / BAS / F "
            "| off: lag / r / BAS / F |",
            "|---|---|---|---|---|---|---|---|", *rows]
    if sheets:
        head += ["", "Contact sheets: " + ", ".join(f"[{s}]({s})" for s in sheets)]
    print("\n".join(head))
    if args.write:
        write_section(DOC, "Music structure and sync", head)


if __name__ == "__main__":
    main()
