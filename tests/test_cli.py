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
    assert "--image" in p.stdout and "--model" in p.stdout and "--no-cache" in p.stdout
    assert neuromv("fit", "--help").returncode == 0


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


def test_quality_presets_and_explicit_options_over_them(media, tmp_path):
    out = tmp_path / "d.mp4"
    p = neuromv("render", media[".ogg"], "-o", out, "--quality", "draft", "--duration", "0.5")
    assert p.returncode == 0, p.stderr
    info, frames = decode_video(out)
    assert (info["width"], info["height"]) == (384, 216) and len(frames) == 15
    p = neuromv("render", media[".ogg"], "-o", out, "--quality", "draft", "--size", "64x32", "--duration", "0.5",
                "--overwrite")
    assert p.returncode == 0, p.stderr
    assert decode_video(out)[0]["width"] == 64  # --size beats the preset
    p = neuromv("render", media[".ogg"], "-o", tmp_path / "x.mp4", "--quality", "ultra")
    assert p.returncode == 1 and "invalid choice" in p.stderr


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
        (lambda m, d: ["render", m[".m4a"], "-o", m[".m4a"], "--overwrite"], "is an input file"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--fps", "0"], "fps"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--size", "0x0"], "size"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--size", "big"], "size"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--n-mels", "0"], "n_mels"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--fps", "abc"], "invalid float"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--device", "cuda:7"], "cuda"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.avi"], "unsupported extension"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--codec", "nope264"], "not available"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--codec", "aac"], "not a video encoder"),
        (lambda m, d: ["render", m[".wav"]], "required: -o/--output"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--brightness", "2"], "brightness"),
        (lambda m, d: ["render", m[".wav"], "-o", d / "o.mp4", "--pan-x", "nan"], "pan-x"),
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


# -- reference images (issue 3) --------------------------------------------------------------------------------
def _bomb(path):
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
                     + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))
    return path


def _bad_images(d):
    from conftest import write_cover

    good = write_cover(d / "good.png", 64).read_bytes()
    (d / "corrupt.png").write_bytes(good[:8] + bytes(range(256)) * 3)
    (d / "truncated.png").write_bytes(good[: len(good) // 3])
    from PIL import Image

    Image.new("RGB", (1, 1)).save(d / "tiny.png")
    _bomb(d / "bomb.png")
    (d / "imgdir").mkdir()
    (d / "text.safetensors").write_text("not a model")
    from safetensors.torch import save_file
    import torch

    save_file({"w": torch.zeros(2)}, str(d / "foreign.safetensors"), metadata={"who": "someone else"})


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "corrupt.png"], "not a readable image"),
        (["--image", "truncated.png"], "corrupt or truncated"),
        (["--image", "tiny.png"], "only 1x1 pixels"),
        (["--image", "bomb.png"], "decompression bomb"),
        (["--image", "imgdir"], "is a directory"),
        (["--image", "missing.png"], "no such file"),
        (["--model", "text.safetensors"], "not a safetensors model file"),
        (["--model", "foreign.safetensors"], "not a NeuroMV model"),
        (["--model", "good.png"], "not a safetensors model file"),
        (["--model", "foreign.safetensors", "--image", "good.png"], "not both"),
        (["--image", "good.png", "--fit", "stretch"], "invalid choice"),
        (["--image", "good.png", "--background", "plaid"], "background"),
        (["--image", "good.png", "--fit-steps", "0"], "fit steps"),
    ],
)
def test_bad_image_or_model_one_line_exit_1_no_output(media, tmp_path, args, message):
    _bad_images(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    p = neuromv("render", media[".wav"], "-o", out_dir / "o.mp4", *SMALL, *args, cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neuromv: error:") and message in lines[0], p.stderr
    assert list(out_dir.iterdir()) == []


def test_fit_then_render_with_the_model_and_with_the_image(media, tmp_path):
    from conftest import write_cover

    from neuromv.metrics import ssim
    from neuromv.image import fit_image, load_image

    cover = write_cover(tmp_path / "art.jpg", 128)
    model = tmp_path / "art.safetensors"
    p = neuromv("fit", cover, "-o", model, "--size", "64x48", "--steps", "1500")
    assert p.returncode == 0, p.stderr
    assert "fit: 1500 steps" in p.stderr and model.exists()
    q = neuromv("fit", cover, "-o", model, "--steps", "10")
    assert q.returncode == 1 and "already exists" in q.stderr
    q = neuromv("fit", cover, "-o", cover, "--steps", "10", "--overwrite")
    assert q.returncode == 1 and "is an input" in q.stderr
    q = neuromv("fit", tmp_path / "nope.png", "-o", tmp_path / "x.safetensors")
    assert q.returncode == 1 and "no such file" in q.stderr and not (tmp_path / "x.safetensors").exists()

    out = tmp_path / "m.mp4"
    p = neuromv("render", media[".flac"], "-o", out, *SMALL, "--model", model)
    assert p.returncode == 0, p.stderr
    assert f"image: model {model}" in p.stderr
    target = fit_image(load_image(cover), 64, 48)
    assert ssim(decode_video(out)[1].mean(axis=0), target) > 0.6

    out2 = tmp_path / "i.mp4"
    p = neuromv("render", media[".flac"], "-o", out2, *SMALL, "--image", cover, "--fit-steps", "1500")
    assert p.returncode == 0, p.stderr
    assert f"image: {cover}" in p.stderr and "fit: 1500 steps" in p.stderr
    p = neuromv("render", media[".flac"], "-o", out2, *SMALL, "--image", cover, "--fit-steps", "1500", "--overwrite")
    assert "reusing the cached fit" in p.stderr  # same image and settings: no second fit
    p = neuromv("render", media[".flac"], "-o", out2, *SMALL, "--image", cover, "--fit-steps", "1500", "--overwrite",
                "--no-cache")
    assert "fit: 1500 steps" in p.stderr
    p = neuromv("render", media[".flac"], "-o", out2, *SMALL, "--image", "none", "--overwrite")
    assert p.returncode == 0 and "rendering the abstract CPPN" in p.stderr


def test_demo_with_the_demo_cover(tmp_path):
    p = neuromv("demo", *SMALL, "--duration", "1", "--image", "demo", "--fit-steps", "200", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "image: the demo cover" in p.stderr and (tmp_path / "demo.mp4").exists()


# -- the options come from the settings table ---------------------------------------------------------------------------
def _render_parser():
    from neuromv.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return parser, sub.choices["render"]


def _readme_options() -> dict[str, str]:
    """flag -> default cell, from the README's ``| option | default | what it does |`` table."""
    import re
    from pathlib import Path

    lines = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| option | default | what it does |")
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        option, default = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:3]]
        for flag in re.findall(r"`(-{1,2}[a-z][a-z0-9-]*)", option):
            assert flag not in rows, f"{flag} twice in the README's option table"
            rows[flag] = default
    return rows


def _shown(row, value) -> str:
    """A default as the README writes it."""
    if row.default_text:
        return row.default_text
    if isinstance(value, bool):
        return "on" if value else "off"
    return format(value, "g") if isinstance(value, float) else str(value)


def test_readme_option_table_lists_every_option_with_its_default():
    """The README's table is prose, written by hand, but checked: exactly the options of 'neuromv render' (every
    row of the settings table with a flag, and the command line's own), with the table's defaults."""
    from neuromv.settings import QUALITY, SETTINGS, RenderSettings

    readme = _readme_options()
    _, render = _render_parser()
    cli = {s for a in render._actions for s in a.option_strings} - {"-h", "--help", "-o", "--output", "--quiet",
                                                                     "--verbose"}
    assert set(readme) == cli, f"missing from the README: {sorted(cli - set(readme))}; not options: " \
                               f"{sorted(set(readme) - cli)}"
    defaults = RenderSettings()
    for row in SETTINGS:
        if row.flag is not None:
            assert readme[row.flag] == _shown(row, row.default), row.flag
    assert readme["--size"] == f"{defaults.width}x{defaults.height}"
    standard = [name for name, q in QUALITY.items() if all(getattr(defaults, k) == v for k, v in q.items())]
    assert [readme["--quality"]] == standard
    for flag in ("--no-cache", "--overwrite"):
        assert readme[flag] == "off"


def test_every_setting_goes_through_the_command_line_and_back():
    """serve.cli_command writes every setting as its flag; argparse and settings_from_args read it back unchanged."""
    import shlex

    from neuromv.cli import settings_from_args
    from neuromv.serve import cli_command
    from neuromv.settings import SETTINGS, RenderSettings

    special = {"n_mels": 16, "codec": "libx265", "device": "cpu", "background": "white", "stems": "vocals",
               "format": "16:9", "palette": "#102040,#f0a030"}  # the shape of the size below
    values = {"width": 640, "height": 360}
    for row in SETTINGS:
        if row.flag is None:
            continue
        if row.name in special:
            v = special[row.name]
        elif row.kind is bool:
            v = not row.default
        elif row.choices:
            v = row.choices[-1] if row.choices[-1] != row.default else row.choices[0]
        elif row.lo is not None:
            v = (row.default or 0) + (1 if row.integer else (row.hi - (row.default or 0)) / 4)
        else:
            raise AssertionError(f"no example value for the setting {row.name}: add one to 'special'")
        values[row.name] = v
    settings = RenderSettings(**values)
    argv = shlex.split(cli_command("song.wav", "out.mp4", settings.to_dict(), "auto"))
    assert all(row.flag in argv for row in SETTINGS if row.flag is not None)
    parser, _ = _render_parser()
    assert settings_from_args(parser.parse_args(argv[1:])) == settings
    assert settings_from_args(parser.parse_args(["render", "s.wav", "-o", "o.mp4"])) == RenderSettings()
    q = settings_from_args(parser.parse_args(["render", "s.wav", "-o", "o.mp4", "--quality", "draft", "--crf", "20"]))
    assert (q.width, q.height, q.preset, q.crf) == (384, 216, "ultrafast", 20)
