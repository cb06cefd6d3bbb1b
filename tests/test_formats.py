"""Formats (``--format 16:9|9:16|1:1|4:5``): the sizes per quality, the precedence of ``--size``, bad input, nothing
stretched (the CPPN's coordinates, a fitted picture, stems panels), the command line the page shows, and the page's
format picker in real Chromium."""

from __future__ import annotations

import math
import shlex
import subprocess
import sys

import numpy as np
import pytest
from conftest import beat_clip, decode_video, write_audio
from test_serve import CHROMIUM, CHROMIUM_ARGS, playwright, server_url  # noqa: F401  (the page's fixtures)

from neuromv.errors import ParameterError
from neuromv.settings import DEFAULT_FORMAT, FORMATS, QUALITY, RenderSettings, format_size, has_shape, with_quality


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return write_audio(tmp_path_factory.mktemp("formats") / "beat.flac", beat_clip(duration=2.0))


def _neuromv(*args):
    return subprocess.run([sys.executable, "-m", "neuromv", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _parse(*argv):
    from neuromv.cli import build_parser, settings_from_args

    return settings_from_args(build_parser().parse_args(["render", "s.wav", "-o", "o.mp4", *argv]))


# -- the table ----------------------------------------------------------------------------------------------------
def test_every_format_has_even_sizes_of_its_shape_with_the_qualitys_shorter_side():
    assert list(FORMATS) == ["16:9", "9:16", "1:1", "4:5"]
    short = {"draft": 216, "standard": 720, "high": 1080}
    for format, sizes in FORMATS.items():
        assert list(sizes) == list(QUALITY), format
        for quality, (w, h) in sizes.items():
            assert w % 2 == 0 and h % 2 == 0 and min(w, h) == short[quality], (format, quality)
            a, b = map(int, format.split(":"))
            assert w * b == h * a, (format, quality)  # exactly the shape
    assert FORMATS["9:16"]["high"] == (1080, 1920)  # Reels, Shorts, TikTok, Spotify Canvas
    assert FORMATS["1:1"]["high"] == (1080, 1080) and FORMATS["4:5"]["high"] == (1080, 1350)
    # the quality presets' sizes are the default format's row, not a copy
    assert {q: (p["width"], p["height"]) for q, p in QUALITY.items()} == FORMATS[DEFAULT_FORMAT]
    assert RenderSettings().size == FORMATS[DEFAULT_FORMAT]["standard"] and RenderSettings().format is None


def test_has_shape_allows_rounding_to_even_only():
    assert has_shape(854, 480, "16:9") and has_shape(1366, 768, "16:9")
    assert not has_shape(1280, 720, "9:16") and not has_shape(720, 720, "4:5") and not has_shape(1000, 720, "16:9")


# -- the setting and its precedence ---------------------------------------------------------------------------------
def test_a_format_turns_a_preset_size_and_keeps_its_quality():
    assert RenderSettings(format="9:16").size == (720, 1280)  # the default 1280x720 turned
    assert RenderSettings(format="4:5", width=1920, height=1080).size == (1080, 1350)  # high stays high
    assert RenderSettings(format="1:1", width=384, height=216).size == (216, 216)
    assert RenderSettings(format="9:16", width=540, height=960).size == (540, 960)  # its own size, of the shape
    s = RenderSettings(format="9:16")
    assert with_quality(s, "high").size == (1080, 1920) and with_quality(s, "draft").size == (216, 384)
    assert with_quality(RenderSettings(), "high").size == (1920, 1080)  # no format: 16:9 as before
    assert RenderSettings.from_dict(s.to_dict()) == s
    assert format_size("4:5", "draft") == (216, 270)


def test_a_size_of_another_shape_is_refused_with_one_line():
    with pytest.raises(ParameterError) as e:
        RenderSettings(format="9:16", width=1000, height=1000)
    assert str(e.value) == ("size 1000x1000 is not 9:16: give a size of that shape (720x1280 at standard quality), "
                            "or only the size, or only the format")
    for bad in ("3:2", "16x9", "", 9, None.__class__):
        with pytest.raises(ParameterError, match=r"^format must be one of 16:9, 9:16, 1:1, 4:5, not "):
            RenderSettings(format=bad)


def test_command_line_precedence():
    """--format alone: its size at the quality; --size alone: the size (any shape); both: the size, which must have
    the format's shape (even a preset's size of another shape is not turned: an explicit size wins or fails)."""
    assert _parse("--format", "9:16").size == (720, 1280)
    s = _parse("--format", "9:16", "--quality", "draft")
    assert (s.size, s.format, s.preset, s.crf) == ((216, 384), "9:16", "ultrafast", 28)
    assert _parse("--format", "4:5", "--quality", "high").size == (1080, 1350)
    assert _parse("--size", "500x300").size == (500, 300) and _parse("--size", "500x300").format is None
    assert _parse("--format", "9:16", "--size", "1080x1920", "--quality", "draft").size == (1080, 1920)
    assert _parse("--format", "16:9", "--size", "854x480").size == (854, 480)
    with pytest.raises(ParameterError, match=r"^--size 1280x720 is not 9:16: "):
        _parse("--format", "9:16", "--size", "1280x720")
    assert _parse().size == (1280, 720) and _parse().format is None


def test_bad_format_on_the_command_line_is_one_line_and_exit_1(tmp_path):
    for args, message in [(["--format", "3:2"], "neuromv: error: format must be one of 16:9, 9:16, 1:1, 4:5, not '3:2'"),
                          (["--format", "9:16", "--size", "1280x720"], "neuromv: error: --size 1280x720 is not 9:16: ")]:
        p = _neuromv("render", tmp_path / "no song.wav", "-o", tmp_path / "v.mp4", *args)
        assert p.returncode == 1 and p.stderr.startswith(message), p.stderr
        assert p.stderr.count("\n") == 1 and not (tmp_path / "v.mp4").exists()


def test_render_9_16_draft_gives_a_vertical_video(song, tmp_path):
    out = tmp_path / "reel.mp4"
    p = _neuromv("render", song, "-o", out, "--format", "9:16", "--quality", "draft", "--duration", "1", "--image",
                 "none", "-q")
    assert p.returncode == 0, p.stderr
    info, frames = decode_video(out)
    assert (info["width"], info["height"]) == (216, 384) and frames.shape[1:] == (384, 216, 3)
    assert frames.std() > 10  # a picture, not a blank frame


# -- nothing stretched ----------------------------------------------------------------------------------------------
def test_coordinate_steps_are_equal_in_x_and_y():
    """The CPPN's coordinates: one step per pixel, the same across and down, whatever the shape; the shorter side
    spans [-scale, scale]."""
    from neuromv.cppn import coordinate_grid

    scale = 1.3
    for w, h in [sizes["draft"] for sizes in FORMATS.values()]:
        g = coordinate_grid(w, h, scale=scale).reshape(h, w, 3).double().numpy()
        dx, dy = np.diff(g[0, :, 0]), np.diff(g[:, 0, 1])
        step = 2 * scale / min(w, h)
        assert np.allclose(dx, step, rtol=0, atol=1e-6) and np.allclose(dy, step, rtol=0, atol=1e-6), (w, h)
        short = g[:, 0, 1] if h <= w else g[0, :, 0]
        assert np.isclose(short[0], -scale + step / 2, atol=1e-6) and np.isclose(short[-1], scale - step / 2, atol=1e-6), (w, h)


def test_a_frame_in_any_format_is_the_same_pattern_cut_differently():
    """An abstract frame at 9:16 and 16:9 has, in its centre, exactly the 1:1 frame of the same shorter side: the
    pattern is cut to the frame's shape, never stretched (a round blob stays round)."""
    from neuromv.pipeline import build_renderer

    z = np.random.default_rng(3).standard_normal(32).astype(np.float32) * 0.3
    frames = {f: build_renderer(RenderSettings(format=f, width=384, height=216, seed=5, precision="float32"))
              .render(z).astype(int) for f in ("1:1", "9:16", "16:9", "4:5")}
    square = frames["1:1"]
    assert square.shape == (216, 216, 3) and square.std() > 10
    tall, wide, portrait = frames["9:16"], frames["16:9"], frames["4:5"]
    assert tall.shape == (384, 216, 3) and portrait.shape == (270, 216, 3) and wide.shape == (216, 384, 3)
    for centre in (tall[84:300], portrait[27:243], wide[:, 84:300]):
        assert np.abs(centre - square).max() <= 1


def _disc(size: int = 200, radius: int = 30) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((size, size, 3), np.uint8)
    image[(xx - size / 2 + 0.5) ** 2 + (yy - size / 2 + 0.5) ** 2 <= radius ** 2] = 255
    return image


@pytest.mark.parametrize("mode", ["cover", "contain"])
def test_a_fitted_picture_keeps_its_shape_in_a_tall_frame(mode):
    """--image is fitted (cover/contain) with one scale for both axes: a disc stays a disc in 9:16 and 4:5; the
    picture network is fitted at the frame's aspect."""
    from neuromv.image import fit_image
    from neuromv.picture import fit_size
    from neuromv.plan import reference_target

    for format in ("9:16", "4:5", "16:9"):
        w, h = FORMATS[format]["draft"]
        s = RenderSettings(format=format, width=w, height=h, fit=mode)
        target = reference_target(_disc(), s)
        assert target.shape == (h, w, 3)
        on = target[..., 0] > 127
        rows, cols = np.nonzero(on.any(axis=1))[0], np.nonzero(on.any(axis=0))[0]
        height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        assert abs(width - height) <= 1, (format, mode, width, height)
        scale = (max(w, h) if mode == "cover" else min(w, h)) / 200  # one scale for both axes
        assert abs(width - 60 * scale) <= 2, (format, mode, width, scale)
        fw, fh = fit_size(w, h, (200, 200, 3), "draft", mode=mode)
        assert abs(fw / fh - w / h) < 0.02, (format, fw, fh)
        assert np.array_equal(fit_image(_disc(), w, h, mode=mode), target)


# -- stems ---------------------------------------------------------------------------------------------------------
def test_stem_panels_follow_the_frames_shape():
    from neuromv.stems import panel_boxes, panel_grid, stem_panels

    # two stems: side by side across a wide frame, stacked down a tall one (not slivers)
    assert panel_boxes(2, 1280, 720) == [(0, 0, 640, 720), (640, 0, 640, 720)]
    assert panel_boxes(2, 720, 1280) == [(0, 0, 720, 640), (0, 640, 720, 640)]
    assert panel_boxes(2, 720, 900, "side-by-side") == [(0, 0, 720, 450), (0, 450, 720, 450)]
    assert panel_boxes(3, 216, 384, "side-by-side") == [(0, 0, 216, 128), (0, 128, 216, 128), (0, 256, 216, 128)]
    # grids: by the frame's shape, panels near square, few empty cells
    assert panel_grid(4, 1280, 720) == (2, 2) and panel_grid(3, 1280, 720) == (2, 2)
    assert panel_grid(6, 1280, 720) == (3, 2) and panel_grid(6, 720, 1280) == (2, 3)
    assert panel_grid(5, 1280, 720) == (3, 2) and panel_grid(5, 720, 1280) == (2, 3)
    for n in (2, 3, 4, 5, 6):
        for w, h in FORMATS["9:16"].values():
            for layout in ("auto", "side-by-side", "grid"):
                boxes = panel_boxes(n, w, h, layout)
                assert len(boxes) == n and sum(bw * bh for _, _, bw, bh in boxes) <= w * h
                # no panel more than 3:1 off square when a grid could do better (2 stems: 1.125:1 in 9:16)
                worst = max(max(bw / bh, bh / bw) for _, _, bw, bh in boxes)
                assert worst < (3.6 if layout == "side-by-side" and n > 2 else 1.8), (n, w, h, layout, boxes)
    # each panel renders at its own size, with its own shape: the video's format is not the panel's
    s = RenderSettings(format="9:16", stems="all", separator="hpss")
    panels = stem_panels(s)
    assert [box for _, box, _ in panels] == [(0, 0, 720, 640), (0, 640, 720, 640)]
    assert all(p.size == box[2:] and p.format is None and p.stems is None for _, box, p in panels)


def test_a_9_16_render_with_stems_stacks_its_panels(song):
    """The stems' panels in a tall frame: each panel is the frame of its own settings (its own shape)."""
    from neuromv.plan import build_renderer, make_plan
    from neuromv.audio import AudioFile
    from neuromv.stems import stem_frames

    s = RenderSettings(format="9:16", width=36, height=64, stems="all", separator="hpss", structure="off",
                       precision="float32", duration=0.5)
    frame = next(stem_frames(make_plan(None, s, image="none").panels(AudioFile(song).load()), s))
    assert frame.shape == (64, 36, 3)
    top, bottom = frame[:32], frame[32:]
    assert top.std() > 5 and bottom.std() > 5 and np.abs(top.astype(int) - bottom).mean() > 5  # two pictures


# -- the page ------------------------------------------------------------------------------------------------------
def test_cli_command_writes_the_format_and_only_a_size_it_does_not_imply():
    from neuromv.cli import build_parser, settings_from_args
    from neuromv.serve import cli_command, page_config

    for settings, flags in [({"format": "9:16", "width": 720, "height": 1280}, ["--format", "9:16"]),
                            ({"format": "9:16", "width": 1080, "height": 1920}, ["--format", "9:16", "--size",
                                                                                  "1080x1920"]),
                            ({"width": 720, "height": 1280}, ["--size", "720x1280"]),
                            ({"format": "1:1"}, ["--format", "1:1"])]:
        argv = shlex.split(cli_command("a.mp3", "b.mp4", settings))
        assert argv[5:-2] == flags, argv
        assert settings_from_args(build_parser().parse_args(argv[1:])) == RenderSettings(**settings)
    config = page_config()
    assert config["choices"]["format"] == {f: {q: list(size) for q, size in sizes.items()}
                                           for f, sizes in FORMATS.items()}
    assert config["defaults"]["format"] is None


def test_page_format_picker_turns_the_canvas_and_the_command(playwright, server_url, song):
    """In real Chromium: pick 9:16, and the canvas takes that shape (its pixels and its box on the page), the video
    size becomes 720x1280 (the quality kept), the page draws the frame the renderer makes at 9:16, and the command
    line the page shows says --format 9:16 (and --size only for a size the format does not imply)."""
    from test_serve import _same_look

    from neuromv.audio import AudioFile
    from neuromv.pipeline import build_renderer, latents_for

    shape = """() => { const c = document.getElementById("view"), r = c.getBoundingClientRect(), s = window.neuromv.settings;
        return [c.width, c.height, r.width / r.height, s.width, s.height, s.format,
                Array.from(document.getElementById("size").options, (o) => o.value)]; }"""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server_url)
        page.wait_for_function("window.neuromv.gl !== null")
        w, h, aspect, sw, sh, format, sizes = page.evaluate(shape)
        assert (w, h, sw, sh, format) == (640, 360, 1280, 720, None) and abs(aspect - 16 / 9) < 0.01
        assert page.input_value("#format") == "16:9" and sizes == ["384x216", "1280x720", "1920x1080"]
        page.select_option("#format", "9:16")
        w, h, aspect, sw, sh, format, sizes = page.evaluate(shape)
        assert (w, h, sw, sh, format) == (360, 640, 720, 1280, "9:16"), (w, h, sw, sh, format)
        assert abs(aspect - 9 / 16) < 0.01, aspect  # shown in its shape, not stretched by the page's layout
        assert sizes == ["216x384", "720x1280", "1080x1920"] and page.input_value("#size") == "720x1280"

        page.select_option("#structure", "off")  # the mel-driven picture, as the offline renderer below
        page.set_input_files("#file", str(song))
        page.wait_for_function("window.neuromv.panels.length > 0 && window.neuromv.panels[0].z "
                               "&& !document.getElementById('cli').disabled", timeout=60_000)
        pw, ph = 54, 96  # a 9:16 frame, drawn by the page and by the renderer
        settings = RenderSettings(width=pw, height=ph, precision="float32", structure="off")
        z = latents_for(AudioFile(song), settings)
        _same_look(page, "9:16", pw, ph, {i: build_renderer(settings).render(z[i]) for i in (10, 40)}, max_level=2)

        def command() -> list[str]:
            page.evaluate("document.getElementById('command').textContent = ''")
            page.click("#cli")
            page.wait_for_function("document.getElementById('command').textContent.startsWith('neuromv')")
            return shlex.split(page.text_content("#command"))

        argv = command()
        assert argv[argv.index("--format") + 1] == "9:16" and "--size" not in argv, argv
        page.select_option("#size", "1080x1920")
        argv = command()
        assert argv[argv.index("--format") + 1] == "9:16" and argv[argv.index("--size") + 1] == "1080x1920", argv
        page.select_option("#format", "4:5")  # the quality (high) kept
        w, h, aspect, sw, sh, format, _ = page.evaluate(shape)
        assert (w, h, sw, sh, format) == (360, 450, 1080, 1350, "4:5") and abs(aspect - 0.8) < 0.01
        argv = command()
        assert argv[argv.index("--format") + 1] == "4:5" and argv[argv.index("--size") + 1] == "1080x1350", argv
    finally:
        browser.close()
