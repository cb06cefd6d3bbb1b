"""The default x264 preset, 'cppn' (neuromv.video.PRESET_CPPN), against x264's superfast: encoding CPU time, file
size and quality on NeuroMV's own frames.

    python bench/encode_bench.py                               # prints the figures
    python bench/encode_bench.py --out docs/benchmarks.md      # and writes its section there
    python bench/encode_bench.py --music song.ogg --photo photo.png --sheet docs/encode-crops.png

Sources: 1280x720 renders of the demo song's groove (abstract at the defaults; with the ``ember`` palette; the demo
cover fitted as a picture, ``--fit-quality draft``), and optionally a real song (abstract) and a photograph (a
picture), each rendered losslessly (crf 0) and decoded to the I420 frames the encoder takes. Each is then encoded by
:class:`neuromv.video.VideoWriter` (its fixed thread count, no audio) with each preset and crf. *CPU ms/frame*: the
process's CPU time over all threads, best of ``--rounds``; *KB/frame*: the file's size; *PSNR*: over Y, U and V
against the lossless frames (dB); *SSIM*: of the luma (Gaussian window, sigma 1.5), every 10th frame, as
-10 log10(1 - SSIM) dB (higher is better). ``--sheet`` writes crops (256x256) of one frame per source: the lossless
frame, then each encode in the order of the table; below them, each encode's error amplified 16 times around grey.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

import neuromv  # noqa: E402
from neuromv.audio import save_wav  # noqa: E402
from neuromv.demo import demo_cover  # noqa: E402
from neuromv.metrics import ssim  # noqa: E402
from neuromv.video import PRESET_CPPN, VideoWriter  # noqa: E402

#: (label, preset, crf): the old default first, then the new one, then x264's fastest preset for scale.
ENCODES = [("superfast, crf 18 (before)", "superfast", 18), ("cppn, crf 18 (default)", "cppn", 18),
           ("ultrafast, crf 18", "ultrafast", 18)]
W, H = 1280, 720


def lossless(song, out: Path, seconds: float, start: float, **options) -> list[np.ndarray]:
    """The I420 frames [shape=(H * 3 / 2, W), uint8] of ``seconds`` of ``song`` rendered at crf 0."""
    neuromv.render(song, out, width=W, height=H, start=start, duration=seconds, crf=0, preset="ultrafast",
                   audio="off", overwrite=True, **options)
    with av.open(str(out)) as c:
        return [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]


def ssim_db(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two luma planes (:func:`neuromv.metrics.ssim`) as -10 log10(1 - SSIM)."""
    return -10 * np.log10(max(1 - ssim(a, b), 1e-12))


def encode(frames: list[np.ndarray], out: Path, preset: str, crf: int, rounds: int):
    """(CPU ms per frame, KB per frame, PSNR dB, SSIM dB, decoded frames) of ``frames`` encoded as asked."""
    best = float("inf")
    for _ in range(rounds):
        c = time.process_time()
        with VideoWriter(out, W, H, 30, preset=preset, crf=crf, overwrite=True) as wr:
            for f in frames:
                wr.write(f)
        best = min(best, time.process_time() - c)
    with av.open(str(out)) as c:
        dec = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    mse = np.mean([np.mean((d.astype(np.float32) - f) ** 2) for d, f in zip(dec, frames)])
    psnr = 10 * np.log10(255 ** 2 / max(mse, 1e-12))
    ss = np.mean([ssim_db(d[:H], f[:H]) for d, f in list(zip(dec, frames))[::10]])
    return best / len(frames) * 1e3, out.stat().st_size / len(frames) / 1024, psnr, ss, dec


def rgb(i420: np.ndarray) -> np.ndarray:
    return av.VideoFrame.from_ndarray(i420, format="yuv420p").to_ndarray(format="rgb24")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds of each source (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="encodes per preset; the fastest counts (default 3)")
    ap.add_argument("--music", help="a real song: one more source, abstract, from its 30th second")
    ap.add_argument("--photo", help="a photograph: one more source, fitted as a picture (on --music or the demo)")
    ap.add_argument("--sheet", help="write crops of one frame per source and the encodes' errors here (PNG)")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    print(f"machine: {machine()}", file=sys.stderr)
    rows, crops = [], []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        demo = d / "demo.wav"
        save_wav(demo, neuromv.demo_song(duration=args.seconds + 6.0))
        cover = d / "cover.png"
        Image.fromarray(demo_cover(512)).save(cover)
        sources = [("demo, abstract", demo, 4.0, dict(image="none")),
                   ("demo, palette ember", demo, 4.0, dict(image="none", palette="ember")),
                   ("demo cover, picture", demo, 4.0, dict(image=cover, fit_quality="draft"))]
        if args.music:
            sources.append((f"{Path(args.music).name}, abstract", Path(args.music), 30.0, dict(image="none")))
        if args.photo:
            song, start = (Path(args.music), 30.0) if args.music else (demo, 4.0)
            sources.append((f"{Path(args.photo).name}, picture", song, start, dict(image=Path(args.photo))))
        for name, song, start, options in sources:
            frames = lossless(song, d / "src.mp4", args.seconds, start, **options)
            k = len(frames) // 2
            crop, errs = [rgb(frames[k])[200:456, 400:656]], [np.full((256, 256, 3), 128, np.uint8)]
            for label, preset, crf in ENCODES:
                ms, kb, psnr, ss, dec = encode(frames, d / "enc.mp4", preset, crf, args.rounds)
                rows.append((name, label, ms, kb, psnr, ss))
                crop.append(rgb(dec[k])[200:456, 400:656])
                errs.append(np.clip(128 + 16 * (crop[-1].astype(np.int16) - crop[0]), 0, 255).astype(np.uint8))
                print(f"{name}: {label}: {ms:.1f} CPU ms/frame, {kb:.1f} KB/frame, PSNR {psnr:.2f} dB, "
                      f"SSIM {ss:.2f} dB", file=sys.stderr)
            crops += [np.concatenate(crop, axis=1), np.concatenate(errs, axis=1)]
    if args.sheet:
        Image.fromarray(np.concatenate(crops, axis=0)).save(args.sheet)
        print(f"wrote {args.sheet}", file=sys.stderr)
    flags = " ".join(f"--{k} {Path(v).name}" for k, v in (("music", args.music), ("photo", args.photo)) if v)
    lines = [
        f"Machine: {machine()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/encode_bench.py --seconds {args.seconds:g} --rounds "
        f"{args.rounds}{' ' + flags if flags else ''}`.",
        "",
        f"{W}x{H}, {args.seconds:g} s of each source at 30 fps, rendered losslessly, then encoded by `VideoWriter` "
        f"(no audio). *cppn* is x264 superfast with `{PRESET_CPPN[1]}`. *CPU ms/frame*: all threads, best of "
        f"{args.rounds}; *PSNR* over Y, U and V against the lossless frames; *SSIM* of the luma as "
        "-10 log10(1 - SSIM) dB. Higher is better for both.",
        "",
        "| source | preset, crf | CPU ms/frame | KB/frame | PSNR dB | SSIM dB | CPU vs before | size vs before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = {}
    for name, label, ms, kb, psnr, ss in rows:
        base.setdefault(name, (ms, kb))
        b_ms, b_kb = base[name]
        lines.append(f"| {name} | {label} | {ms:.1f} | {kb:.1f} | {psnr:.2f} | {ss:.2f} | {ms / b_ms - 1:+.0%} | "
                     f"{kb / b_kb - 1:+.0%} |")
    if args.out:
        write_section(Path(args.out), "Encoder preset (`bench/encode_bench.py`)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
