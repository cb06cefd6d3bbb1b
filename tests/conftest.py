"""Shared test material: every test makes its own audio; nothing depends on files outside the repo."""

from __future__ import annotations

import logging
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from neuromv.audio import Audio

# Keep torch at the two cores of the CI machine, whatever the host says.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Fits are cached in a throw-away folder, never in the user's cache (subprocesses inherit it).
os.environ["NEUROMV_CACHE_DIR"] = tempfile.mkdtemp(prefix="neuromv-test-cache-")

@pytest.fixture(autouse=True)
def _neuromv_logger():
    """Each test starts with the library's logger as an application finds it: ``neuromv.cli.main`` called in the
    test process gives it its own handler and stops its propagation, which would hide later tests' records from
    ``caplog``."""
    log = logging.getLogger("neuromv")
    saved = log.handlers[:], log.level, log.propagate
    yield
    log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]


#: Layout of the beat clip: beats, then digital silence, then beats again (seconds).
BEAT_SR = 44100
BEATS_1 = (0.0, 1.5)
SILENCE = (1.5, 3.0)
BEATS_2 = (3.0, 4.0)
BEAT_DURATION = 4.0


def beat_clip(sr: int = BEAT_SR, duration: float = BEAT_DURATION, channels: int = 2) -> Audio:
    """Kick drums every 0.25 s with a quiet pad under them, and a stretch of digital silence in the middle."""
    n = int(round(duration * sr))
    t = np.arange(n) / sr
    y = 0.05 * np.sin(2 * np.pi * 220 * t) + 0.03 * np.sin(2 * np.pi * 330 * t)
    kick_n = int(0.15 * sr)
    tk = np.arange(kick_n) / sr
    kick = np.sin(2 * np.pi * (50 * tk + 4 * (1 - np.exp(-tk / 0.03)))) * np.exp(-tk / 0.05)
    noise = np.random.default_rng(0).standard_normal(kick_n) * np.exp(-tk / 0.01) * 0.3
    for lo, hi in (BEATS_1, BEATS_2):
        for start in np.arange(lo, hi - 1e-9, 0.25):
            i = int(start * sr)
            m = min(kick_n, n - i)
            y[i:i + m] += 0.8 * kick[:m] + noise[:m]
    y[int(SILENCE[0] * sr):int(SILENCE[1] * sr)] = 0.0
    y = (0.9 * y / np.abs(y).max()).astype(np.float32)
    samples = np.stack([y, 0.8 * y]) if channels == 2 else y[None, :]
    return Audio(np.ascontiguousarray(samples), sr)


def tone(sr: int = 22050, duration: float = 2.0, channels: int = 1, freq: float = 440.0) -> Audio:
    t = np.arange(int(round(duration * sr))) / sr
    y = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return Audio(np.ascontiguousarray(np.repeat(y[None, :], channels, axis=0)), sr)


#: file suffix -> (container format, codec, rate the codec needs or None)
FORMATS = {
    ".wav": ("wav", "pcm_s16le", None),
    ".mp3": ("mp3", "libmp3lame", None),
    ".flac": ("flac", "flac", None),
    ".ogg": ("ogg", "vorbis", None),
    ".opus": ("ogg", "libopus", 48000),
    ".m4a": ("ipod", "aac", None),
}


def write_audio(path: Path, audio: Audio) -> Path:
    """Encode ``audio`` to ``path`` with PyAV, in the format its suffix names (see FORMATS)."""
    fmt, codec, need_rate = FORMATS[path.suffix]
    rate = need_rate or audio.sr
    layout = "mono" if audio.channels == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.layout = layout
        if codec == "vorbis":
            s.codec_context.options = {"strict": "experimental"}
        frame_samples = 4096
        for i in range(0, audio.n_samples, frame_samples):
            chunk = np.ascontiguousarray(audio.samples[:, i:i + frame_samples])
            f = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            f.sample_rate = audio.sr
            f.pts = i
            f.time_base = Fraction(1, audio.sr)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Audio files made once per session: the beat clip in every format, a silent file and broken files."""
    d = tmp_path_factory.mktemp("media")
    clip = beat_clip()
    files = {suffix: write_audio(d / f"beat{suffix}", clip) for suffix in FORMATS}
    files["silent"] = write_audio(d / "silent.wav", Audio(np.zeros((2, 44100), np.float32), 44100))
    (d / "text.mp3").write_text("this is not audio, just text with an mp3 name\n" * 20)
    files["text"] = d / "text.mp3"
    (d / "empty.wav").write_bytes(b"")
    files["empty"] = d / "empty.wav"
    data = files[".mp3"].read_bytes()
    (d / "truncated.mp3").write_bytes(data[: len(data) // 2])
    files["truncated"] = d / "truncated.mp3"
    (d / "stub.mp3").write_bytes(data[:300])
    files["stub"] = d / "stub.mp3"
    return files


def decode_video(path: Path) -> tuple[dict, np.ndarray]:
    """Open a written video with PyAV: its stream facts and all frames as np.ndarray [n, h, w, 3] uint8."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        info = {
            "vcodec": vs.codec_context.name,
            "width": vs.codec_context.width,
            "height": vs.codec_context.height,
            "fps": vs.average_rate,
            "pix_fmt": vs.codec_context.pix_fmt,
            "acodec": c.streams.audio[0].codec_context.name if c.streams.audio else None,
            "audio_duration": (float(c.streams.audio[0].duration * c.streams.audio[0].time_base)
                               if c.streams.audio else None),
        }
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return info, frames


def write_cover(path: Path, size: int = 96) -> Path:
    """The generated demo cover, saved as an image file (format from the suffix)."""
    from PIL import Image

    from neuromv.demo import demo_cover

    Image.fromarray(demo_cover(size)).save(path)
    return path
