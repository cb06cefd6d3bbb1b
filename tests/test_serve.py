"""neuromv serve: the web app's API (Starlette's test client), and the page in real headless Chromium."""

from __future__ import annotations

import base64
import io
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from conftest import beat_clip, decode_video, write_audio

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from neuromv.audio import Audio, AudioFile  # noqa: E402
from neuromv.cppn import CPPN  # noqa: E402
from neuromv.features import song_db  # noqa: E402
from neuromv.serve import cli_command, create_app  # noqa: E402


def _floats(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<f4")


@pytest.fixture()
def client(tmp_path):
    with TestClient(create_app(workdir=tmp_path / "work", max_upload=2 * 2**20)) as c:
        yield c


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return write_audio(tmp_path_factory.mktemp("serve") / "beat.flac", beat_clip(duration=3.0))


def test_page_and_only_its_own_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert client.get("/assets/app.js").headers["content-type"].startswith("text/javascript")
    for bad in ("/assets/..%2Fserve.py", "/assets/../serve.py", "/assets/serve.py", "/assets/%2Fetc%2Fpasswd",
                "/api/files/..%2F..%2Fetc%2Fpasswd", "/api/files/nope"):
        r = client.get(bad)
        assert r.status_code == 404, bad
        assert "import" not in r.text and "root:" not in r.text


def test_upload_gives_the_features_of_the_song(client, song):
    r = client.post("/api/songs?fps=30&n_mels=16", content=song.read_bytes(), headers={"X-Filename": "beat.flac"})
    assert r.status_code == 200, r.text
    info = r.json()
    src = AudioFile(song)
    expected = song_db(src.blocks(), src.sr, fps=30, n_mels=16)
    assert info["n_frames"] == expected.shape[1] == 90 and info["n_mels"] == 16
    assert info["duration"] == pytest.approx(3.0)
    np.testing.assert_array_equal(_floats(info["db"]).reshape(16, -1), expected)


def test_bad_and_oversized_uploads_get_a_message(client, tmp_path):
    r = client.post("/api/songs", content=b"not audio at all", headers={"X-Filename": "x.mp3"})
    assert r.status_code == 400 and "x.mp3" in r.json()["error"] and "not a readable audio file" in r.json()["error"]
    silent = write_audio(tmp_path / "s.wav", Audio(np.zeros((1, 8000), np.float32), 8000))
    r = client.post("/api/songs", content=silent.read_bytes(), headers={"X-Filename": "s.wav"})
    assert r.status_code == 400 and "silence" in r.json()["error"]
    r = client.post("/api/songs", content=io.BytesIO(b"\0" * (3 * 2**20)))  # no length declared: streamed, cut off
    assert r.status_code == 413 and "too large" in r.json()["error"]
    r = client.post("/api/songs", content=b"\0" * (3 * 2**20))
    assert r.status_code == 413
    assert not [p for p in (tmp_path / "work").iterdir() if p.name.startswith("song-")]  # nothing kept
    assert client.get("/").status_code == 200  # and the server goes on


def test_cppn_weights_are_the_seeds(client):
    r = client.get("/api/cppn?n_z=8&hidden=16&seed=3").json()
    net = CPPN(8, 16, seed=3)
    assert len(r["layers"]) == len(net.layers) == 6
    for got, layer in zip(r["layers"], net.layers):
        np.testing.assert_array_equal(_floats(got["w"]).reshape(got["out"], got["in"]), layer.weight.detach().numpy())
        np.testing.assert_array_equal(_floats(got["b"]), layer.bias.detach().numpy())
    assert client.get("/api/cppn?hidden=0").status_code == 400
    assert client.get("/api/cppn?seed=x").status_code == 400


def test_render_job_gives_a_valid_video(client, song):
    sid = client.post("/api/songs", content=song.read_bytes(), headers={"X-Filename": "beat.flac"}).json()["id"]
    settings = {"width": 64, "height": 36, "seed": 4, "reactivity": 1.5}
    r = client.post("/api/render", json={"song": sid, "settings": settings})
    jid = r.json()["job"]
    for _ in range(600):
        st = client.get(f"/api/jobs/{jid}").json()
        if st["state"] != "running":
            break
        time.sleep(0.1)
    assert st["state"] == "done", st
    video = client.get(st["url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert 'filename="beat.mp4"' in video.headers["content-disposition"]
    path = song.parent / "downloaded.mp4"
    path.write_bytes(video.content)
    info, frames = decode_video(path)
    assert frames.shape == (90, 36, 64, 3) and info["acodec"] == "aac"
    bad = client.post("/api/render", json={"song": sid, "settings": {"fps": -1}})
    assert bad.status_code == 400 and "fps" in bad.json()["error"]
    assert client.post("/api/render", json={"song": "nope"}).status_code == 400
    assert client.get("/api/jobs/nope").status_code == 404


def test_cli_command_gives_the_same_settings():
    from neuromv.cli import _settings_from, build_parser
    from neuromv.settings import RenderSettings

    settings = {"width": 640, "height": 360, "seed": 7, "reactivity": 1.5, "smooth": 0.4, "zoom": 2.0}
    cmd = cli_command("my song.mp3", "out.mp4", settings)
    assert cmd.startswith("neuromv render 'my song.mp3' -o out.mp4")
    import shlex

    args = build_parser().parse_args(shlex.split(cmd)[1:])
    args._defaults = RenderSettings()
    assert _settings_from(args) == RenderSettings(**settings)


# ---- the page in a real browser --------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("no chromium here (Debian package 'chromium')")
    import uvicorn

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = uvicorn.Server(uvicorn.Config(create_app(workdir=tmp_path_factory.mktemp("web")), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(accept_downloads=True)
        page.goto(f"http://127.0.0.1:{port}/")
        yield page
        browser.close()
    server.should_exit = True
    thread.join(5)


def _canvas(page, width, height, index):
    px = page.evaluate(f"""() => {{
        const s = window.neuromv, gl = s.gl;
        gl.canvas.width = {width}; gl.canvas.height = {height};
        s.draw({index});
        const a = new Uint8Array({width * height * 4});
        gl.readPixels(0, 0, {width}, {height}, gl.RGBA, gl.UNSIGNED_BYTE, a);
        return Array.from(a);
    }}""")
    return np.array(px, np.uint8).reshape(height, width, 4)[::-1, :, :3]  # GL rows start at the bottom


def test_page_frame_matches_the_offline_renderer(browser_page, song):
    from neuromv.pipeline import build_renderer, latents_for
    from neuromv.settings import RenderSettings

    page = browser_page
    page.set_input_files("#file", str(song))
    page.wait_for_function("window.neuromv.z !== null && window.neuromv.program !== null", timeout=60_000)
    w, h = 96, 54
    settings = RenderSettings(width=w, height=h)
    z = latents_for(AudioFile(song), settings)
    renderer = build_renderer(settings)
    frames = []
    for index in (10, 45, 80):
        web = _canvas(page, w, h, index).astype(int)
        diff = np.abs(web - renderer.render(z[index]))
        assert diff.mean() < 2.0 and diff.max() <= 2, (index, diff.mean(), diff.max())
        frames.append(web)
    assert np.abs(frames[0] - frames[1]).mean() > 1.0  # and the frames move with the music


def test_audio_clock_drives_the_frame_through_play_pause_and_seek(browser_page, song):
    page = browser_page
    if page.evaluate("window.neuromv.z === null"):
        page.set_input_files("#file", str(song))
        page.wait_for_function("window.neuromv.z !== null && window.neuromv.program !== null", timeout=60_000)
    # a small canvas: software GL draws it many times a second (the test is about the clock, not GL speed)
    page.evaluate("() => { window.neuromv.gl.canvas.width = 160; window.neuromv.gl.canvas.height = 90; }")
    page.evaluate("() => { const a = document.getElementById('player'); a.currentTime = 1.5; }")
    page.wait_for_function("Math.abs(window.neuromv.frameIndex - 45) <= 1", timeout=10_000)  # paused, sought
    page.evaluate("() => { const a = document.getElementById('player'); a.currentTime = 0.2; a.play(); }")
    page.wait_for_function("document.getElementById('player').currentTime > 0.5", timeout=10_000)
    clocks = []
    for _ in range(4):  # while playing, each frame drawn is the one of the audio time read for it
        now, clock, index = page.evaluate("() => [document.getElementById('player').currentTime, "
                                          "window.neuromv.clock, window.neuromv.frameIndex]")
        assert index == min(89, int(clock * 30)), (clock, index)
        assert 0 <= now - clock < 1.0  # read at the last draw (software GL draws a few frames a second)
        clocks.append(clock)
        time.sleep(0.25)
    assert clocks[-1] > clocks[0]  # and it advances with the music
    page.evaluate("() => document.getElementById('player').pause()")
    t = page.evaluate("() => document.getElementById('player').currentTime")
    page.wait_for_function(f"window.neuromv.frameIndex === Math.min(89, Math.floor({t} * 30))", timeout=10_000)


def test_bad_upload_shows_a_message_on_the_page(browser_page, tmp_path):
    bad = tmp_path / "cover.mp3"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not audio")
    browser_page.set_input_files("#file", str(bad))
    browser_page.wait_for_function("document.getElementById('status').className === 'error'", timeout=20_000)
    text = browser_page.text_content("#status")
    assert text.startswith("Could not use this file: cover.mp3: ") and "no audio stream" in text, text


def test_render_button_gives_a_video_to_download(browser_page, song, tmp_path):
    page = browser_page
    page.set_input_files("#file", str(song))
    page.wait_for_function("!document.getElementById('render').disabled", timeout=60_000)
    page.select_option("#size", "384x216")
    page.click("#render")
    page.wait_for_selector("#download", timeout=120_000)
    with page.expect_download() as info:
        page.click("#download")
    path = tmp_path / "page.mp4"
    info.value.save_as(path)
    meta, frames = decode_video(path)
    assert frames.shape == (90, 216, 384, 3) and meta["acodec"] == "aac"
    page.click("#cli")
    page.wait_for_function("document.getElementById('command').textContent.startsWith('neuromv render')")
    assert "--size 384x216" in page.text_content("#command")


def test_serve_command_refuses_impossible_options():
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "neuromv", "serve", "--max-upload", "0"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        "neuromv: error: --max-upload must be from 1 to 1048576 MB, not 0"]
    p = subprocess.run([sys.executable, "-m", "neuromv", "serve", "--port", "70000"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == ["neuromv: error: port must be from 1 to 65535, not 70000"]
