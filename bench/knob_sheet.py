"""A contact sheet of the reactivity knob and the motion styles on a fitted picture (docs/reference-knob.jpg).

    python bench/knob_sheet.py IMAGE --song music.ogg --out docs/reference-knob.jpg

Row 1: the same three moments of the song (frames 45, 105, 165 of a 10-s excerpt from ``--start``) at reactivity
0, 0.5, 1 (default), 2 and 4, one moment per row. Row 4: reactivity 1 with ``--motion colour`` and ``--motion shape``
beside ``all``. 480x270 frames, ``--fit-quality standard``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np
from PIL import Image

from neuromv.audio import Audio, load_audio
from neuromv.demo import demo_song
from neuromv.image import load_image
from neuromv.plan import build_renderer, fit_for, latents_for
from neuromv.settings import RenderSettings

KNOBS = (0.0, 0.5, 1.0, 2.0, 4.0)
MOMENTS = (45, 105, 165)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image")
    ap.add_argument("--song")
    ap.add_argument("--start", type=float, default=20.0)
    ap.add_argument("--out", default="reference-knob.jpg")
    args = ap.parse_args(argv)
    if args.song:
        full = load_audio(args.song)
        a = int(args.start * full.sr)
        audio = Audio(full.samples[:, a:a + 10 * full.sr], full.sr)
    else:
        audio = demo_song(10.0)
    base = RenderSettings(width=480, height=270)
    net = fit_for(load_image(args.image), base)
    rows = []
    for i in MOMENTS:
        row = []
        for knob in KNOBS:
            s = replace(base, reactivity=knob)
            z = latents_for(audio, s, image="picture")
            row.append(build_renderer(s, cppn=net).render(z[i]))
        rows.append(np.concatenate(row, axis=1))
    row = []
    for style in ("all", "colour", "shape"):
        s = replace(base, motion=style)
        z = latents_for(audio, s, image="picture")
        row.append(build_renderer(s, cppn=net).render(z[MOMENTS[1]]))
    row += [np.zeros_like(row[0])] * (len(KNOBS) - len(row))
    rows.append(np.concatenate(row, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out, quality=85, optimize=True)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
