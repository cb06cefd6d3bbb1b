"""The command line, run as a user runs it: a real process, its exit code, its stderr, the files it leaves."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import decode_video

SMALL = ["--size", "64x48", "--preset", "ultrafast"]


def neuromv(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "neuromv", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_help_is_instant_and_lists_commands():
    t = time.perf_counter()
    p = neuromv("--help")
    elapsed = time.perf_counter() - t
    assert p.returncode == 0
    assert "render" in p.stdout and "demo" in p.stdout
    assert elapsed < 3.0  # no torch/librosa/av import: about 0.2 s
    code = "import sys, neuromv.cli; neuromv.cli.build_parser(); print(sorted(m for m in ('torch', 'librosa', 'av') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
    p = neuromv("render", "--help")
    assert p.returncode == 0 and "--reactivity" in p.stdout and "--n-mels" in p.stdout


def test_render_writes_a_video(media, tmp_path):
    out = tmp_path / "v.mp4"
    p = neuromv("render", media[".ogg"], "-o", out, *SMALL, "--duration", "1", "--fps", "24")
    assert p.returncode == 0, p.stderr
    info, frames = decode_video(out)
    assert len(frames) == 24 and (info["width"], info["height"]) == (64, 48)
    assert "wrote" in p.stderr
    q = neuromv("render", media[".ogg"], "-o", out, *SMALL, "--duration", "1", "-q")
    assert q.returncode == 1 and "already exists" in q.stderr  # no silent overwrite
    q = neuromv("render", media[".ogg"], "-o", out, *SMALL, "--duration", "1", "-q", "--overwrite")
    assert q.returncode == 0 and q.stderr == ""


def test_demo_runs_with_no_input(tmp_path):
    p = neuromv("demo", *SMALL, "--duration", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    info, frames = decode_video(tmp_path / "demo.mp4")
    assert len(frames) == 30 and info["acodec"] == "aac"


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda m, d: ["render", d / "missing.mp3", "-o", d / "o.mp4"], "no such file"),
        (lambda m, d: ["render", m["text"], "-o", d / "o.mp4"], "not a readable audio file"),
        (lambda m, d: ["render", m["truncated"], "-o", d / "o.mp4"], "truncated"),
        (lambda m, d: ["render", m["stub"], "-o", d / "o.mp4"], "not a readable audio file"),
        (lambda m, d: ["render", m["empty"], "-o", d / "o.mp4"], "empty"),
        (lambda m, d: ["render", m["silent"], "-o", d / "o.mp4"], "digital silence"),
        (lambda m, d: ["render", m[".wav"], "-o", d], "is a directory"),
        (lambda m, d: ["render", m[".m4a"], "-o", m[".m4a"], "--overwrite"], "is the input file"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--fps", "0"], "fps"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--size", "0x0"], "size"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--size", "big"], "size"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--n-mels", "0"], "n_mels"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--fps", "abc"], "invalid float"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--device", "cuda:7"], "cuda"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.avi"], "unsupported extension"),
        (lambda m, d: ["render", m[".wav"]], "required: -o/--output"),
    ],
)
def test_bad_input_one_line_exit_1_no_output(media, tmp_path, make_args, message):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = {p: p.stat().st_mtime_ns for p in media.values()}
    p = neuromv(*make_args(media, out_dir))
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("neuromv: error:") and message in lines[0], lines[0]
    assert list(out_dir.iterdir()) == []
    assert {p: p.stat().st_mtime_ns for p in media.values()} == before  # inputs untouched


def test_sigterm_mid_render_leaves_no_file(tmp_path):
    import signal

    import numpy as np
    from conftest import tone, write_audio

    from neuromv.audio import Audio

    song = tone(sr=22050, duration=30.0)
    song = Audio(song.samples * np.linspace(0, 1, song.n_samples, dtype=np.float32), song.sr)
    src = write_audio(tmp_path / "long.wav", song)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "neuromv", "render", str(src), "-o", str(out_dir / "v.mp4"),
                             "--size", "640x360"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(out_dir.glob(".*.part")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)  # well into the render
    assert proc.poll() is None, "render finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(out_dir.iterdir()) == []
