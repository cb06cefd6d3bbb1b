"""Looks (issue 17, "Looks"): named bundles of settings, built in or TOML files, shared by the CLI (--look, neuromv
looks), the Python API (render(look=...)) and the page (pick, tweak, save, copy the command)."""

from __future__ import annotations

import dataclasses
import os
import shlex
import threading
import time

import pytest

import neuromv
from neuromv.cli import build_parser, main, settings_from_args
from neuromv.errors import LookError, ParameterError
from neuromv.looks import (LOOK_SETTINGS, LOOKS, MAX_LOOK_BYTES, apply_look, load_look, look_toml, look_values,
                           parse_look_toml, read_look, save_look)
from neuromv.settings import RenderSettings


def _settings(*argv: str) -> RenderSettings:
    return settings_from_args(build_parser().parse_args(["render", "song.wav", "-o", "out.mp4", *argv]))


# ---- the looks themselves ------------------------------------------------------------------------------------------

def test_look_settings_are_the_pictures_not_the_runs():
    names = {f.name for f in dataclasses.fields(RenderSettings)}
    assert set(LOOK_SETTINGS) <= names and len(set(LOOK_SETTINGS)) == len(LOOK_SETTINGS)
    for run in ("width", "height", "fps", "n_mels", "crf", "preset", "codec", "start", "duration", "device",
                "precision", "stems", "separator", "fit_quality", "fit_steps"):
        assert run not in LOOK_SETTINGS
    for picture in ("palette", "zoom", "pan_x", "pan_y", "reactivity", "smooth", "hidden", "motion", "beat",
                    "variety", "transition", "hue", "saturation", "brightness", "contrast", "tone", "chroma"):
        assert picture in LOOK_SETTINGS


def test_builtin_looks_are_valid_and_differ():
    assert 4 <= len(LOOKS) <= 6 and LOOKS["default"] == {}
    seen = set()
    for name, values in LOOKS.items():
        settings = apply_look(RenderSettings(), name)  # validated by RenderSettings
        assert look_values(settings) == values, name  # each sets only what differs from the defaults
        key = tuple(sorted(values.items()))
        assert key not in seen, name
        seen.add(key)
    assert {LOOKS[n].get("palette") for n in ("ember", "neon", "mono", "cover")} == {"ember", "neon", "noir", "cover"}


@pytest.mark.parametrize("name", list(LOOKS))
def test_toml_round_trip(name, tmp_path):
    text = look_toml(LOOKS[name], name)
    assert text.splitlines()[1:3] == ["neuromv_look = 1", f'name = "{name}"']
    assert parse_look_toml(text) == (name, LOOKS[name])
    path = save_look(LOOKS[name], tmp_path / f"{name}.toml")
    assert read_look(path) == (name, LOOKS[name])
    assert load_look(str(path)) == LOOKS[name]


def test_custom_values_round_trip_with_types(tmp_path):
    values = {"seed": 12, "hidden": 16, "zoom": 2, "pan_x": -0.25, "palette": "#ff8800,#102040", "labels": True,
              "background": "#102030", "motion": "shape", "structure": "off", "hue": -1e-05}
    path = save_look(values, tmp_path / "mine.toml")
    back = load_look(path)
    assert back == {**values, "zoom": 2.0} and isinstance(back["zoom"], float) and isinstance(back["seed"], int)
    with pytest.raises(neuromv.OutputError, match="already exists"):
        save_look(values, path)  # never over a file unless asked
    save_look({"zoom": 3.0}, path, overwrite=True)
    assert load_look(path) == {"zoom": 3.0}
    assert look_values(RenderSettings(zoom=3.0, width=640, crf=30)) == {"zoom": 3.0}  # run settings are no look


def test_any_valid_values_round_trip():
    """look_toml writes every float, int, bool and string a look may hold so that tomllib reads the same back."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from neuromv.settings import SETTINGS

    rows = {r.name: r for r in SETTINGS if r.name in LOOK_SETTINGS}

    def value(row):
        if row.kind is bool:
            return st.booleans()
        if row.choices:
            return st.sampled_from(row.choices)
        if row.name == "palette":
            return st.sampled_from(["ember", "cover", "#ff8800,#123", "#010203,#a0b0c0,#ffffff"])
        if row.name == "background":
            return st.sampled_from(["black", "white", "#1a2b3c", "26,43,60"])
        if row.integer:
            return st.integers(int(row.lo), int(min(row.hi, 2**31)))
        return st.floats(row.lo, row.hi, exclude_min=row.lo_open, allow_nan=False)

    @hypothesis.settings(max_examples=150, deadline=None)
    @hypothesis.given(st.fixed_dictionaries({}, optional={k: value(r) for k, r in rows.items()}))
    def check(values):
        checked = {k: float(v) if rows[k].kind is float else v for k, v in values.items()}
        assert parse_look_toml(look_toml(values, "x")) == ("x", checked)

    check()


# ---- bad input: one line, naming the file ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("neuromv_look = 1\nzoom = 2.0\npalette = ember\n", r"bad\.toml: not valid TOML \(.*line 3"),
    ("neuromv_look = 1\nzoom = 2.0 x\n", r"bad\.toml: not valid TOML \(.*line 2, column"),
    ("neuromv_look = 1\ncolour = 'red'\n", r"bad\.toml: 'colour' is not a setting \(a look may set: seed, hidden"),
    ("neuromv_look = 1\nwidth = 640\n", r"bad\.toml: 'width' is not a setting a look may set"),
    ("neuromv_look = 1\nzoom = 'big'\n", r"bad\.toml: zoom must be a number above 0 and at most .*, not 'big'"),
    ("neuromv_look = 1\nhidden = 2.5\n", r"bad\.toml: hidden must be an integer from 1 to .*, not 2\.5"),
    ("neuromv_look = 1\npalette = 'plaid'\n", r"bad\.toml: unknown palette 'plaid'; choose one of ember"),
    ("neuromv_look = 1\nlabels = 'yes'\n", r"bad\.toml: labels must be true or false, not 'yes'"),
    ("neuromv_look = 1\n[look]\nzoom = 2.0\n", r"bad\.toml: 'look' is not a setting"),
    ("zoom = 2.0\n", r"bad\.toml: not a look file \(it needs the line 'neuromv_look = 1'\)"),
    ("neuromv_look = 2\n", r"bad\.toml: look format version 2; this NeuroMV reads version 1"),
    ("neuromv_look = 1\nname = 'a b/c'\n", r"bad\.toml: name must be 1-64 letters"),
    ("neuromv_look = 1\nseed = " + "9" * 5000 + "\n", r"bad\.toml: not valid TOML"),
    ("neuromv_look = 1\nx = " + "[" * 3000 + "\n", r"bad\.toml: not valid TOML"),
])
def test_bad_look_files_get_one_line(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(LookError, match=message) as info:
        load_look(path)
    assert "\n" not in str(info.value) and isinstance(info.value, ParameterError)


def test_unknown_name_lists_the_looks():
    with pytest.raises(LookError) as info:
        load_look("sunset")
    assert str(info.value) == ("unknown look 'sunset'; choose one of default, ember, neon, pastel, mono, cover or a "
                               "look file (.toml)")


def test_hostile_look_files_are_refused_without_blocking(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text("neuromv_look = 1\n" + "# padding\n" * (MAX_LOOK_BYTES // 10))
    with pytest.raises(LookError, match=r"big\.toml: over the limit of 64 KB for a look file"):
        load_look(big)
    with pytest.raises(LookError, match=r"is a directory, not a look file"):
        load_look(str(tmp_path) + "/")
    with pytest.raises(LookError, match=r"missing\.toml: no such file"):
        load_look(tmp_path / "missing.toml")
    with pytest.raises(LookError, match=r"not UTF-8"):
        (tmp_path / "bin.toml").write_bytes(b"neuromv_look = 1\nname = '\xff'\n")
        load_look(tmp_path / "bin.toml")
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    result = {}

    def read():
        try:
            load_look(fifo)
        except LookError as e:
            result["error"] = str(e)

    t = threading.Thread(target=read, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 5  # no writer ever comes: it must not wait for one
    assert result["error"] == f"{fifo}: is a FIFO (named pipe), not a look file; only regular files are read"


# ---- the command line -----------------------------------------------------------------------------------------------

def test_look_then_explicit_options(tmp_path):
    s = _settings("--look", "neon")
    assert (s.palette, s.beat, s.zoom, s.seed, s.width) == ("neon", 2.0, 0.8, 0, 1280)
    # an option given overrides the look, even at its default value; an option not given does not
    s = _settings("--look", "neon", "--beat", "1", "--zoom", "3", "--seed", "4")
    assert (s.palette, s.beat, s.zoom, s.seed, s.reactivity) == ("neon", 1.0, 3.0, 4, 1.4)
    path = save_look({"labels": True, "structure": "off", "pan_y": 0.5}, tmp_path / "l.toml")
    s = _settings("--look", str(path), "--quality", "draft")
    assert (s.labels, s.structure, s.pan_y, s.width, s.crf) == (True, "off", 0.5, 384, 28)
    assert _settings("--look", "default") == RenderSettings()
    demo = settings_from_args(build_parser().parse_args(["demo", "--look", "ember"]))
    assert (demo.seed, demo.width, demo.palette) == (7, 640, "ember")  # demo's own defaults stay


def test_bad_look_on_the_command_line_is_one_line_exit_1(tmp_path, capsys):
    assert main(["render", "song.wav", "-o", str(tmp_path / "o.mp4"), "--look", "sunset"]) == 1
    err = capsys.readouterr().err
    assert err == ("neuromv: error: unknown look 'sunset'; choose one of default, ember, neon, pastel, mono, cover "
                   "or a look file (.toml)\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("neuromv_look = 1\n\nzoom = = 2\n")
    assert main(["demo", "-o", str(tmp_path / "o.mp4"), "--look", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"neuromv: error: {bad}: not valid TOML (") and "line 3" in err and err.count("\n") == 1
    assert not (tmp_path / "o.mp4").exists()


def test_looks_command_lists_shows_and_saves(tmp_path, capsys):
    assert main(["looks"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(LOOKS)
    assert "palette=neon" in out[2] and "the defaults" in out[0]
    assert main(["looks", "show", "ember"]) == 0
    assert parse_look_toml(capsys.readouterr().out) == ("ember", LOOKS["ember"])
    path = tmp_path / "mine.toml"
    assert main(["looks", "save", str(path), "--look", "ember", "--zoom", "2", "--palette", "ocean", "--labels",
                 "--beat", "1"]) == 0
    expected = {**LOOKS["ember"], "zoom": 2.0, "palette": "ocean", "labels": True}
    del expected["beat"]  # given at its default: left out
    assert read_look(path) == ("mine", expected) and "beat" not in path.read_text()
    assert main(["looks", "show", str(path)]) == 0
    assert parse_look_toml(capsys.readouterr().out) == read_look(path)
    capsys.readouterr()
    assert main(["looks", "save", str(path), "--zoom", "3"]) == 1  # exists
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # not a look setting: no such option
        main(["looks", "save", str(tmp_path / "x.toml"), "--width", "3"])
    assert info.value.code == 1
    assert "unrecognized arguments: --width 3" in capsys.readouterr().err


# ---- the Python API -------------------------------------------------------------------------------------------------

def test_render_with_a_look(tmp_path):
    from conftest import beat_clip, decode_video

    from neuromv.pipeline import _settings as render_settings

    s, _ = render_settings(None, {"look": "ember", "seed": 3, "beat": 1.0})
    assert (s.palette, s.smooth, s.seed, s.beat) == ("ember", 0.35, 3, 1.0)
    s, _ = render_settings(RenderSettings(width=320, height=180), {"look": {"zoom": 2}, "zoom": 1.5})
    assert (s.zoom, s.width) == (1.5, 320)
    with pytest.raises(LookError, match="unknown look 'x'"):
        render_settings(None, {"look": "x"})
    # a real render with a look on top of settings, the explicit options last
    out = tmp_path / "v.mp4"
    result = neuromv.render(beat_clip(duration=1.0), out, look="pastel", width=64, height=36, structure="off",
                            image="none", cache=False)
    assert result.frames == 30
    meta, frames = decode_video(out)
    assert frames.shape == (30, 36, 64, 3)
    assert neuromv.load_look("pastel") == LOOKS["pastel"] and neuromv.save_look is save_look


# ---- the page -------------------------------------------------------------------------------------------------------

def test_cli_command_with_a_look_reads_back():
    from neuromv.serve import cli_command

    settings = dataclasses.asdict(apply_look(RenderSettings(), "neon"))
    settings.update(zoom=1.5, beat=2.0, width=640, height=360)  # a tweak, and the look's own value
    cmd = cli_command("a song.mp3", "v.mp4", settings, "none", look="neon")
    assert cmd.startswith("neuromv render 'a song.mp3' -o v.mp4 --look neon ")
    words = shlex.split(cmd)
    assert "--zoom" in words and "--beat" not in words and "--palette" not in words and "--size" in words
    assert settings_from_args(build_parser().parse_args(words[1:])) == RenderSettings(**settings)
    # a palette the look sets but the settings drop cannot be said with an option: then no --look
    cmd = cli_command("a.mp3", "v.mp4", {**settings, "palette": None}, "none", look="neon")
    assert "--look" not in cmd
    assert settings_from_args(build_parser().parse_args(shlex.split(cmd)[1:])).palette is None
    assert "--look" not in cli_command("a.mp3", "v.mp4", {}, "none", look="default")
    with pytest.raises(ParameterError, match="unknown look"):
        cli_command("a.mp3", "v.mp4", {}, "none", look="/etc/passwd")  # built-in names only: no server files


def test_look_endpoint_and_page_config(tmp_path):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from neuromv.serve import create_app, page_config

    config = page_config()
    assert config["looks"] == LOOKS and config["LOOK_SETTINGS"] == list(LOOK_SETTINGS)
    with TestClient(create_app(workdir=tmp_path / "w"), base_url="http://127.0.0.1:8765") as c:
        r = c.post("/api/look", json={"settings": {"zoom": 2.0, "palette": "ocean", "width": 320}, "name": "mine"})
        assert r.status_code == 200 and r.json()["filename"] == "mine.toml"
        assert parse_look_toml(r.json()["toml"]) == ("mine", {"zoom": 2.0, "palette": "ocean"})
        r = c.post("/api/look", json={"settings": {}, "name": "../etc"})
        assert r.status_code == 400 and "name must be 1-64 letters" in r.json()["error"]
        r = c.post("/api/cli", json={"settings": {}, "look": "nope"})
        assert r.status_code == 400 and r.json()["error"].startswith("unknown look 'nope'")
        r = c.post("/api/cli", json={"settings": {**LOOKS["mono"], "zoom": 2.0}, "look": "mono"})
        assert "--look mono" in r.json()["command"] and "--zoom 2.0" in r.json()["command"]


def test_page_picks_a_look_tweaks_saves_and_copies(tmp_path):
    from conftest import beat_clip, write_audio
    from test_serve import CHROMIUM, CHROMIUM_ARGS, _knob

    pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("no chromium here (Debian package 'chromium')")
    import socket

    import uvicorn
    from playwright import sync_api

    from neuromv.serve import create_app

    song = write_audio(tmp_path / "beat.wav", beat_clip(duration=2.0))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = uvicorn.Server(uvicorn.Config(create_app(workdir=tmp_path / "web"), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(accept_downloads=True)
            page.goto(f"http://127.0.0.1:{port}/")
            options = page.eval_on_selector_all("#look option", "os => os.map(o => o.value)")
            assert options == ["", *LOOKS]
            _knob(page, "zoom", 3.5)  # a value the look replaces
            page.select_option("#look", "neon")
            values = page.evaluate("""() => ({zoom: document.getElementById('zoom').value,
                beat: document.getElementById('beat').value, smooth: document.getElementById('smooth').value,
                out: document.getElementById('beat-out').textContent, settings: window.neuromv.settings})""")
            assert (float(values["zoom"]), float(values["beat"]), float(values["smooth"])) == (0.8, 2.0, 0.1)
            assert values["out"] == "2"
            for key in LOOK_SETTINGS:  # every setting a look holds: the look's, or the default
                assert values["settings"][key] == LOOKS["neon"].get(key, getattr(RenderSettings(), key)), key
            # tweak: the zoom, and the structure off (so the song needs no analysis here)
            _knob(page, "zoom", 1.5)
            page.select_option("#structure", "off")
            page.fill("#look-name", "neon-mine")
            with page.expect_download() as info:
                page.click("#save-look")
            path = tmp_path / "saved.toml"
            info.value.save_as(path)
            assert info.value.suggested_filename == "neon-mine.toml"
            assert read_look(path) == ("neon-mine", {**LOOKS["neon"], "zoom": 1.5, "structure": "off"})
            page.set_input_files("#file", str(song))
            page.wait_for_function("!document.getElementById('cli').disabled", timeout=60_000)
            page.click("#cli")
            page.wait_for_function("document.getElementById('command').textContent.startsWith('neuromv render')")
            words = shlex.split(page.text_content("#command"))
            assert words[:7] == ["neuromv", "render", "beat.wav", "-o", "video.mp4", "--look", "neon"]
            assert "--zoom" in words and "--structure" in words and "--beat" not in words
            assert settings_from_args(build_parser().parse_args(words[1:])) == RenderSettings(
                **{**dataclasses.asdict(apply_look(RenderSettings(), "neon")), "zoom": 1.5, "structure": "off"})
            browser.close()
    finally:
        server.should_exit = True
        thread.join(5)


def test_looks_save_writes_only_toml_and_never_its_input(tmp_path, capsys):
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF")
    assert main(["looks", "save", str(song), "--zoom", "2", "--overwrite"]) == 1
    assert "a look file must end in .toml" in capsys.readouterr().err and song.read_bytes() == b"RIFF"
    mine = tmp_path / "mine.toml"
    assert main(["looks", "save", str(mine), "--zoom", "2"]) == 0
    before = mine.read_bytes()
    assert main(["looks", "save", str(mine), "--look", str(mine), "--overwrite"]) == 1
    assert "is an input file" in capsys.readouterr().err and mine.read_bytes() == before
