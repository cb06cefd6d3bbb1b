"""Separation quality: SDR of each stem on mixes whose sources are known.

    python bench/separate_quality.py                 # the synthetic mix only
    python bench/separate_quality.py --music /tmp/music/x/usr/share/planetblupi/music/music000.ogg \
        --voices /tmp/alsa/x/usr/share/sounds/alsa   # also a mix of real recordings

Mixes (stereo, 44.1 kHz, 30 s):

- *synthetic*: `neuromv.demo.demo_voice` (a sung vowel with melody and syllables) over `demo_song`.
- *real* (when given): real speech recordings (the eight spoken channel names of Debian's `alsa-utils`,
  `apt-get download alsa-utils && dpkg -x alsa-utils_*.deb x`) placed one after another with 1.5 s gaps over a
  real instrumental recording (planetblupi's music, `apt-get download planetblupi-music-ogg`), at two levels.

SDR = 10 log10(|s|^2 / |s - ŝ|^2) over the whole clip, in dB; the baseline is the mix itself taken as the estimate
(what "no separation" scores). Also reported: how much the vocals stem takes from the music alone (music in, vocals
out, energy relative to the input): the leak of a voice-free recording into the vocals stem.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

from neuromv.audio import Audio, load_audio  # noqa: E402
from neuromv.demo import demo_song, demo_voice  # noqa: E402
from neuromv.separate import Separator  # noqa: E402

SR, SECONDS = 44100, 30.0


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / (np.sum((ref - est) ** 2) + 1e-12)))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2)))


def synthetic() -> tuple[np.ndarray, np.ndarray]:
    acc = demo_song(SECONDS, SR).samples
    v = demo_voice(acc.shape[1], SR)
    return np.stack([v, v]), acc


def real(music: Path, voices: Path, start: float, level_db: float) -> tuple[np.ndarray, np.ndarray]:
    n = int(SECONDS * SR)
    acc = load_audio(music, sr=SR, start=start, duration=SECONDS).samples
    if acc.shape[0] == 1:
        acc = np.repeat(acc, 2, axis=0)
    acc = acc[:, :n]
    clips = [load_audio(p, sr=SR, mono=True).samples[0] for p in sorted(voices.glob("*.wav")) if p.stem != "Noise"]
    if not clips:
        raise SystemExit(f"no voice recordings (*.wav) in {voices}")
    v = np.zeros(acc.shape[1], np.float32)
    at, k = int(0.5 * SR), 0
    while at < v.size:
        c = clips[k % len(clips)][: v.size - at]
        v[at:at + c.size] = c
        at += c.size + int(1.5 * SR)
        k += 1
    active = np.abs(v) > 1e-3
    v *= rms(acc) / rms(v[active]) * 10 ** (level_db / 20)  # voice level while speaking, relative to the music
    return np.stack([v, v]), acc


def measure(sep: Separator, voice: np.ndarray, acc: np.ndarray) -> dict:
    mix = voice + acc
    peak = max(1.0, float(np.abs(mix).max()))
    voice, acc, mix = voice / peak, acc / peak, mix / peak
    stems = sep.separate(Audio(mix.astype(np.float32), SR))
    leak = sep.separate(Audio(acc.astype(np.float32), SR))["vocals"].samples
    return {"vocals": sdr(voice, stems["vocals"].samples), "vocals_mix": sdr(voice, mix),
            "acc": sdr(acc, stems["accompaniment"].samples), "acc_mix": sdr(acc, mix),
            "leak": 20 * np.log10(rms(leak) / rms(acc))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--music", type=Path, help="an instrumental recording (real accompaniment)")
    ap.add_argument("--voices", type=Path, help="a folder of speech recordings (*.wav)")
    ap.add_argument("--start", type=float, default=30.0, help="where to take 30 s of the music from")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    sep = Separator("spleeter", device="cpu")
    cases = [("synthetic: sung vowel over the demo song", synthetic())]
    if args.music and args.voices:
        for level in (0.0, -6.0):
            cases.append((f"real: speech over `{args.music.name}` at {level:+g} dB", real(args.music, args.voices,
                                                                                          args.start, level)))
    rows = []
    for name, (voice, acc) in cases:
        r = measure(sep, voice, acc)
        rows.append((name, r))
        print(f"{name}: vocals {r['vocals']:.1f} dB (mix {r['vocals_mix']:.1f}), accompaniment {r['acc']:.1f} dB "
              f"(mix {r['acc_mix']:.1f}), leak {r['leak']:.1f} dB", file=sys.stderr)
    cmd = "python bench/separate_quality.py"
    if args.music and args.voices:
        cmd += f" --music .../{args.music.name} --voices .../{args.voices.name} --start {args.start:g}"
    lines = [
        f"Machine: {machine()}.  ",
        f"Run: {_dt.date.today().isoformat()}, `{cmd}`.",
        "",
        "30 s mixes with known sources, separated by `spleeter`. SDR in dB over the whole clip; *mix* is the "
        "baseline (the mix itself as the estimate); *gain* is the improvement. *Leak*: the vocals stem's energy "
        "when the music alone goes in, relative to the music.",
        "",
        "| mix | vocals SDR | mix | gain | accompaniment SDR | mix | gain | leak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['vocals']:.1f} | {r['vocals_mix']:.1f} | **{r['vocals'] - r['vocals_mix']:+.1f}** "
                     f"| {r['acc']:.1f} | {r['acc_mix']:.1f} | **{r['acc'] - r['acc_mix']:+.1f}** | "
                     f"{r['leak']:.1f} dB |")
    write_section(Path(args.out), "Separation quality, spleeter (`bench/separate_quality.py`)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
