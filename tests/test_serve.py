"""neuromv serve: the web app's API (Starlette's test client), and the page in real headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import beat_clip, decode_video, write_audio, write_cover

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

import neuromv  # noqa: E402

from neuromv.audio import Audio, AudioFile  # noqa: E402
from neuromv.features import song_db  # noqa: E402
from neuromv.serve import cli_command, create_app, page_config  # noqa: E402


def _floats(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<f4")


@pytest.fixture()
def client(tmp_path):
    app = create_app(workdir=tmp_path / "work", max_upload=2 * 2**20)
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        yield c


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return write_audio(tmp_path_factory.mktemp("serve") / "beat.flac", beat_clip(duration=3.0))


def test_page_and_only_its_own_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for name in ("app.js", "api.js", "colour.js", "gl.js", "live.js", "mel.js", "capture.js", "timeline.js",
                 "beat.js"):  # ES modules
        assert client.get(f"/assets/{name}").headers["content-type"].startswith("text/javascript"), name
    for bad in ("/assets/..%2Fserve.py", "/assets/../serve.py", "/assets/serve.py", "/assets/%2Fetc%2Fpasswd",
                "/api/files/..%2F..%2Fetc%2Fpasswd", "/api/files/nope"):
        r = client.get(bad)
        assert r.status_code == 404, bad
        assert "import" not in r.text and "root:" not in r.text


WEB = Path(neuromv.__file__).parent / "web"


def _page_config(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="neuromv-config">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


def test_page_gets_pythons_constants_and_keeps_no_copies(client):
    from neuromv import cppn, features, renderer, separate, settings

    config = _page_config(client.get("/").text)
    assert config == page_config()
    assert {k: config[k] for k in ("Z_GAIN", "PULSE_GAIN", "FLOOR", "CENTRE_FRAMES", "LUMA", "ANALYSIS_SR",
                                   "TOP_DB")} == {
        "Z_GAIN": settings.Z_GAIN, "PULSE_GAIN": settings.PULSE_GAIN, "FLOOR": cppn.FLOOR,
        "CENTRE_FRAMES": renderer.CENTRE_FRAMES, "LUMA": list(renderer.LUMA), "ANALYSIS_SR": features.ANALYSIS_SR,
        "TOP_DB": features.TOP_DB}
    assert config["defaults"] == dataclasses.asdict(settings.RenderSettings())
    assert config["choices"]["separator"] == {k: list(v) for k, v in separate.BACKENDS.items()}
    assert config["choices"]["layout"] == list(settings.LAYOUTS)
    assert config["choices"]["fit"] == list(settings.FIT_MODES)
    assert config["choices"]["fit_quality"] == list(settings.FIT_QUALITIES)
    assert config["choices"]["motion"] == list(settings.MOTIONS)
    from neuromv import motion

    assert config["ONSET_BOOST"] == motion.ONSET_BOOST and config["CUES_BOOST"] == motion.CUES_BOOST
    from neuromv import structure

    assert config["KICK"] == structure.KICK  # the live beat tracker's kick is the render's
    assert config["choices"]["structure"] == list(settings.STRUCTURES)
    assert config["choices"]["size"]["standard"] == [1280, 720]
    # the page's code defines none of them, nor holds their values (index.html: no default values either)
    for js in WEB.glob("*.js"):
        text = js.read_text()
        names = "Z_GAIN|PULSE_GAIN|FLOOR|CENTRE_FRAMES|LUMA|ANALYSIS_SR|TOP_DB|ONSET_BOOST|CUES_BOOST|KICK"
        assert not re.search(rf"\b({names})\s*=", text), js.name
        for literal in ("0.2126", "0.7152", "0.0722", "22050", "2.5", "3000", "spleeter", "side-by-side", "draft",
                        "colour\"", "7919"):
            assert literal not in text, (js.name, literal)
    assert not re.search(r'id="(reactivity|smooth|zoom|hue|saturation|contrast|seed)"[^>]* value=',
                         (WEB / "index.html").read_text())
    assert client.get("/assets/index.html").status_code == 404  # only the page at / (it has the configuration)


def test_other_hosts_and_other_sites_are_refused(client, tmp_path):
    r = client.get("/", headers={"Host": "evil.example"})  # a DNS-rebound name
    assert r.status_code == 403 and r.json()["error"].startswith("unknown host 'evil.example'")
    r = client.post("/api/cli", json={}, headers={"Origin": "http://evil.example"})  # another site's page
    assert r.status_code == 403 and r.json()["error"] == "cross-site request refused"
    assert client.post("/api/cli", json={}, headers={"Origin": "http://127.0.0.1:8765"}).status_code == 200
    assert client.get("/", headers={"Host": "[::1]:8765"}).status_code == 200
    from neuromv.serve import allowed_hosts

    app = create_app(workdir=tmp_path / "any", hosts=allowed_hosts("0.0.0.0", ["studio.lan"]))
    with TestClient(app, base_url="http://192.168.1.9:8765") as c:
        assert c.get("/").status_code == 200  # --host 0.0.0.0: any address, still no cross-site changes
        assert c.post("/api/cli", json={}, headers={"Origin": "http://evil.example"}).status_code == 403
        assert c.get("/", headers={"Host": "studio.lan:8765"}).status_code == 200  # --allow-host studio.lan
        assert c.get("/", headers={"Host": "rebound.example:8765"}).status_code == 403


def test_bad_requests_get_a_message_and_leave_nothing(client):
    r = client.post("/api/songs?fps=abc", content=b"whatever")
    assert r.status_code == 400 and "fps" in r.json()["error"]
    r = client.post("/api/songs?n_mels=1.5", content=b"whatever")
    assert r.status_code == 400
    assert client.post("/api/cli", json=[1, 2]).json()["error"] == "the request must be a JSON object"
    assert client.post("/api/render", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post("/api/prepare", json={"settings": {"stems": "all"}}).status_code == 400  # stems need a song
    assert not [p for p in client.app.state.neuromv.workdir.iterdir()]


def test_upload_gives_the_features_of_the_song(client, song):
    r = client.post("/api/songs?fps=30&n_mels=16", content=song.read_bytes(), headers={"X-Filename": "beat.flac"})
    assert r.status_code == 200, r.text
    info = r.json()
    src = AudioFile(song)
    expected = song_db(src.blocks(), src.sr, fps=30, n_mels=16)
    assert info["n_frames"] == expected.shape[1] == 90 and info["n_mels"] == 16
    assert info["duration"] == pytest.approx(3.0)
    f = client.get(info["features"])  # binary: float32 little-endian, (n_mels, n_frames)
    assert f.headers["content-type"] == "application/octet-stream" and f.headers["x-shape"] == "16,90"
    np.testing.assert_array_equal(np.frombuffer(f.content, "<f4").reshape(16, -1), expected)


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
    from neuromv.plan import abstract_cppn
    from neuromv.settings import RenderSettings

    r = client.get("/api/cppn?n_z=8&hidden=16&seed=3").json()
    net = abstract_cppn(RenderSettings(n_mels=8, hidden=16, seed=3))  # the default tone and chroma
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
        if st["state"] not in ("queued", "running"):
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


def _wait(client, jid, timeout=300):
    for _ in range(timeout * 10):
        st = client.get(f"/api/jobs/{jid}").json()
        if st["state"] not in ("queued", "running"):
            return st
        time.sleep(0.1)
    raise AssertionError(f"job {jid} still running")


def test_image_upload_fit_and_render_with_it(client, song, tmp_path):
    from neuromv.pipeline import fit_for
    from neuromv.settings import RenderSettings

    cover = write_cover(tmp_path / "cover.png")
    r = client.post("/api/images", content=cover.read_bytes(), headers={"X-Filename": "cover.png"})
    assert r.status_code == 200, r.text
    image = r.json()
    assert (image["name"], image["width"], image["height"]) == ("cover.png", 96, 96)
    bad = client.post("/api/images", content=b"GIF89a broken", headers={"X-Filename": "bad.gif"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("bad.gif: "), bad.json()
    sid = client.post("/api/songs", content=song.read_bytes(), headers={"X-Filename": "beat.flac"}).json()["id"]
    settings = {"width": 64, "height": 36, "fit_quality": "draft", "fit_steps": 40, "seed": 2, "hidden": 16,
                "n_mels": 8, "motion": "shape"}
    jid = client.post("/api/prepare", json={"song": sid, "image": image["id"], "settings": settings}).json()["job"]
    st = _wait(client, jid)
    assert st["state"] == "done", st
    [panel] = st["result"]["panels"]
    assert panel["box"] == [0, 0, 1, 1] and panel["db"] is None and panel["net"]["kind"] == "picture"
    # the fitted picture is the pipeline's (the fit cache is shared: the render below reuses it), with its motion
    from neuromv.image import load_image
    from neuromv.motion import MOTIONS, Motion, structure_maps, structure_size

    net = fit_for(load_image(cover), RenderSettings(**settings))
    got = panel["net"]
    assert (got["aspect"], got["levels"], got["features"]) == (net.aspect, net.levels, net.features)
    assert [(g["rows"], g["cols"]) for g in got["grids"]] == [tuple(g.shape[2:]) for g in net.grids]
    for g, grid in zip(got["grids"], net.grids):
        np.testing.assert_array_equal(_floats(g["data"]), grid.numpy().ravel())
    for g, layer in zip(got["layers"], net.mlp):
        np.testing.assert_array_equal(_floats(g["w"]).reshape(g["out"], g["in"]), layer.weight.numpy())
    assert set(got["motion"]) == set(MOTIONS) and got["style"] == "shape"
    for style in MOTIONS:
        np.testing.assert_array_equal(_floats(got["motion"][style]), Motion.of(8, 2, style).matrix().ravel())
    sw, sh = structure_size(net.aspect)
    assert (got["maps_width"], got["maps_height"]) == (sw, sh)
    np.testing.assert_array_equal(_floats(got["maps"]), structure_maps(net.render(sw, sh)).ravel())
    from neuromv.reference import cache_dir

    fits = sorted((cache_dir() / "fits").iterdir())
    jid = client.post("/api/render", json={"song": sid, "image": image["id"], "settings": settings}).json()["job"]
    st = _wait(client, jid)
    assert st["state"] == "done", st
    assert sorted((cache_dir() / "fits").iterdir()) == fits  # the render reused the preview's fit
    path = tmp_path / "image.mp4"
    path.write_bytes(client.get(st["url"]).content)
    _, frames = decode_video(path)
    assert frames.shape == (90, 36, 64, 3)
    cmd = client.post("/api/cli", json={"song": sid, "image": image["id"], "settings": settings}).json()["command"]
    assert "--image cover.png" in cmd and "--fit-steps 40" in cmd and "--fit-quality draft" in cmd
    assert "--motion shape" in cmd
    assert client.post("/api/prepare", json={"song": sid, "image": "nope"}).status_code == 400


def test_prepare_stems_gives_a_panel_per_stem(client, song):
    from neuromv.audio import AudioFile as AF
    from neuromv.pipeline import stem_audio
    from neuromv.settings import RenderSettings

    sid = client.post("/api/songs", content=song.read_bytes(), headers={"X-Filename": "beat.flac"}).json()["id"]
    settings = {"width": 64, "height": 36, "stems": "all", "separator": "hpss", "n_mels": 8, "hidden": 16, "seed": 5}
    st = _wait(client, client.post("/api/prepare", json={"song": sid, "settings": settings}).json()["job"])
    assert st["state"] == "done", st
    panels = st["result"]["panels"]
    assert [p["name"] for p in panels] == ["harmonic", "percussive"] and st["result"]["layout"] == "auto"
    assert [p["box"] for p in panels] == [[0, 0, 0.5, 1], [0.5, 0, 0.5, 1]]
    assert [p["net"]["seed"] for p in panels] == [5, 6]
    stems = stem_audio(AF(song).load(), RenderSettings(**settings))
    for p in panels:
        a = stems[p["name"]]
        expected = song_db(a.blocks(), a.sr, fps=30, n_mels=8)
        np.testing.assert_array_equal(_floats(p["db"]).reshape(8, -1), expected)


def test_cli_command_gives_the_same_settings():
    from neuromv.cli import settings_from_args, build_parser
    from neuromv.settings import RenderSettings

    settings = {"width": 640, "height": 360, "seed": 7, "reactivity": 1.5, "smooth": 0.4, "zoom": 2.0,
                "pan_x": -0.5, "pan_y": 0.25, "hue": 40.0, "saturation": 1.3, "brightness": -0.1, "contrast": 1.2,
                "fit": "contain", "fit_steps": 300, "fit_quality": "high", "motion": "colour", "stems": "all", "separator": "hpss", "layout": "blend"}
    cmd = cli_command("my song.mp3", "out.mp4", settings)
    assert cmd.startswith("neuromv render 'my song.mp3' -o out.mp4") and cmd.endswith("--image none")
    import shlex

    args = build_parser().parse_args(shlex.split(cmd)[1:])
    args._defaults = RenderSettings()
    assert settings_from_args(args) == RenderSettings(**settings) and args.image == ["none"]
    assert "--image" not in cli_command("a.mp3", "b.mp4", {}, "auto")  # the CLI's default: the song's cover art
    assert cli_command("a.mp3", "b.mp4", {}, "my cover.png").endswith("--image 'my cover.png'")


# ---- the page in a real browser --------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


APPS = []  # the browser tests' server app, to look at its jobs
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("no chromium here (Debian package 'chromium')")
    import uvicorn

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    app = create_app(workdir=tmp_path_factory.mktemp("web"))
    APPS.append(app)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def playwright(server_url):
    from playwright import sync_api

    with sync_api.sync_playwright() as p:  # one per process: a second one cannot start while this one runs
        yield p


@pytest.fixture(scope="module")
def browser_page(playwright, server_url):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(accept_downloads=True)
    page.goto(server_url)
    # these tests are about the mel-driven picture: the song's structure off (tests/test_page_structure.py has it on)
    page.select_option("#structure", "off")
    yield page
    browser.close()


#: The page computes in float32 (WebGL), so its frames are compared with the renderer's exact float32 path; the
#: int16 path's distance from float32 is tested in tests/test_kernel.py.
EXACT = "float32"


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


def _same_look(page, label, width, height, expected, max_level):
    """Draw each frame ``index`` of ``expected`` ({index: offline frame}) on the page and compare: a mean absolute
    difference below 2 levels of 255 (the issue's limit), none above ``max_level``. Returns the page's frames."""
    frames = []
    for index, offline in expected.items():
        web = _canvas(page, width, height, index).astype(int)
        diff = np.abs(web - offline)
        print(f"{label}, frame {index}: mean {diff.mean():.4f}, max {diff.max()}")
        assert diff.mean() < 2.0 and diff.max() <= max_level, (label, index, diff.mean(), diff.max())
        frames.append(web)
    return frames


def test_page_frame_matches_the_offline_renderer(browser_page, song):
    from neuromv.pipeline import build_renderer, latents_for
    from neuromv.settings import RenderSettings

    page = browser_page
    page.set_input_files("#file", str(song))
    page.wait_for_function("window.neuromv.panels.length > 0 && window.neuromv.panels[0].z", timeout=60_000)
    w, h = 96, 54
    settings = RenderSettings(width=w, height=h, precision=EXACT)
    z = latents_for(AudioFile(song), settings)
    renderer = build_renderer(settings)
    frames = _same_look(page, "abstract", w, h, {i: renderer.render(z[i]) for i in (10, 45, 80)}, max_level=2)
    assert np.abs(frames[0] - frames[1]).mean() > 1.0  # and the frames move with the music


def test_page_draws_with_the_served_gain(browser_page, song, monkeypatch):
    """The page takes Z_GAIN from the server (neuromv.serve.page_config), not from a copy: served twice as large,
    its frames at reactivity 1 are the offline renderer's at reactivity 2 (the CPPN sees Z_GAIN * reactivity * z)."""
    import neuromv.settings
    from neuromv.pipeline import build_renderer, latents_for
    from neuromv.settings import RenderSettings

    w, h = 96, 54
    settings = RenderSettings(width=w, height=h, precision=EXACT, reactivity=2.0)
    z = latents_for(AudioFile(song), settings)
    renderer = build_renderer(settings)
    expected = {i: renderer.render(z[i]) for i in (10, 45)}
    monkeypatch.setattr(neuromv.settings, "Z_GAIN", 2 * neuromv.settings.Z_GAIN)
    page = browser_page.context.browser.new_page()
    try:
        page.goto(browser_page.url)
        page.select_option("#structure", "off")
        assert page.evaluate("window.neuromv.config.Z_GAIN") == 2 * 0.3
        assert page.evaluate("window.neuromv.settings.reactivity") == 1
        page.set_input_files("#file", str(song))
        page.wait_for_function("window.neuromv.panels.length > 0 && window.neuromv.panels[0].z", timeout=60_000)
        _same_look(page, "served Z_GAIN x2 at reactivity 1", w, h, expected, max_level=2)
    finally:
        page.close()


def _knob(page, id_, value, event="input"):
    page.evaluate(f"""() => {{ const e = document.getElementById({id_!r}); e.value = {str(value)!r};
        e.dispatchEvent(new Event({event!r})); }}""")


def _load_song(page, song):
    if not page.evaluate("window.neuromv.song !== null && window.neuromv.panels.length > 0"):
        page.set_input_files("#file", str(song))
        page.wait_for_function("window.neuromv.panels.length > 0 && window.neuromv.panels[0].z", timeout=60_000)


def test_colour_and_pan_knobs_match_the_offline_renderer(browser_page, song):
    from neuromv.pipeline import build_renderer, latents_for
    from neuromv.settings import RenderSettings

    page = browser_page
    _load_song(page, song)
    knobs = {"hue": 40, "saturation": 1.3, "brightness": -0.1, "contrast": 1.2, "pan_x": 0.3, "pan_y": -0.2,
             "zoom": 1.5}
    try:
        for k, v in knobs.items():
            _knob(page, k, v)
        w, h = 96, 54
        settings = RenderSettings(width=w, height=h, precision=EXACT, **knobs)
        renderer = build_renderer(settings)
        assert renderer.color is not None and renderer.pan == (0.3, -0.2)
        z = latents_for(AudioFile(song), settings)
        _same_look(page, "colour and pan", w, h, {i: renderer.render(z[i]) for i in (10, 45)}, max_level=2)
    finally:
        for k, v in {"hue": 0, "saturation": 1, "brightness": 0, "contrast": 1, "pan_x": 0, "pan_y": 0,
                     "zoom": 1}.items():
            _knob(page, k, v)


#: A quick picture fit for the page's tests (the cover is 96x96: the fit is made at 96x54 for a 16:9 video).
QUICK_FIT = {"fit_quality": "draft", "fit_steps": 30}


def _page_settings(page, **values):
    page.evaluate(f"() => Object.assign(window.neuromv.settings, {json.dumps(values)})")


def test_picture_frame_matches_the_offline_renderer(browser_page, song, tmp_path):
    """A fitted picture (neuromv.picture) drawn by the page's two passes (the picture once, its motion per frame)
    is the offline renderer's frame (build_renderer, the same drive rows) within 2/255 on average: plain, zoomed
    and panned, at reactivity 1.5, and for each motion style."""
    from neuromv.image import load_image
    from neuromv.pipeline import build_renderer, fit_for, latents_for
    from neuromv.settings import RenderSettings

    # the page draws these frames without the structure's controls: the drive is the boosted one (ONSET_BOOST)
    unstructured = functools.partial(dataclasses.replace, structure="off")
    page = browser_page
    _load_song(page, song)
    _page_settings(page, reactivity=1.5, **QUICK_FIT)
    cover = write_cover(tmp_path / "cover.png")
    w, h = 96, 54
    try:
        page.set_input_files("#image-file", str(cover))
        page.wait_for_function("window.neuromv.panels.length === 1 && window.neuromv.panels[0].net.kind === "
                               "'picture'", timeout=120_000)
        assert page.evaluate("window.neuromv.floatTargets")  # the picture pass renders to a float texture
        net = fit_for(load_image(cover), RenderSettings(reactivity=1.5, **QUICK_FIT))  # the server's cached fit
        still = None
        for view in ({}, {"zoom": 1.6, "pan_x": 0.5, "pan_y": -0.4}):  # past the fitted frame: its border
            for k, v in view.items():
                _knob(page, k, v)
            settings = RenderSettings(width=w, height=h, reactivity=1.5, **QUICK_FIT, **view)
            z = latents_for(AudioFile(song), unstructured(settings), image="picture")
            renderer = build_renderer(settings, cppn=net)
            assert renderer.method == "picture"
            frames = _same_look(page, f"picture {view or 'plain'}", w, h,
                                {i: renderer.render(z[i]) for i in (0, 10, 45, 80)}, max_level=3)
            assert np.abs(frames[1] - frames[2]).mean() > 1.0  # the frames move with the music
            if not view:
                still = frames
        assert np.abs(frames[1] - still[1]).mean() > 1.0  # and zoom and pan moved the view
        for style in ("colour", "shape"):  # the styles switch on the page at once (every style's matrix is sent)
            page.select_option("#motion", style)
            settings = RenderSettings(width=w, height=h, reactivity=1.5, motion=style, zoom=1.6, pan_x=0.5,
                                      pan_y=-0.4, **QUICK_FIT)
            z = latents_for(AudioFile(song), unstructured(settings), image="picture")
            renderer = build_renderer(settings, cppn=net)
            _same_look(page, f"picture, motion {style}", w, h, {i: renderer.render(z[i]) for i in (10, 45)},
                       max_level=3)
    finally:
        page.select_option("#motion", "all")
        for k, v in {"zoom": 1, "pan_x": 0, "pan_y": 0}.items():
            _knob(page, k, v)
        _page_settings(page, reactivity=1, fit_quality="standard", fit_steps=None)
        page.select_option("#picture", "none")
        page.wait_for_function("window.neuromv.panels.length === 1 && !window.neuromv.panels[0].net.image")


def test_format1_image_cppn_keeps_its_page_path(browser_page, song, tmp_path):
    """An image-mode CPPN of model format 1 (kind 'image': pulse and centring) still draws as the render does."""
    from neuromv.image import load_image
    from neuromv.pipeline import build_renderer, fit_for, latents_for
    from neuromv.serve import net_json
    from neuromv.settings import RenderSettings

    page = browser_page
    _load_song(page, song)
    video = RenderSettings(fit_steps=60, reactivity=1.5)
    cppn = fit_for(load_image(write_cover(tmp_path / "cover.png")), video, method="neuromv")
    assert cppn.image and net_json(cppn)["kind"] == "image"
    _page_settings(page, reactivity=1.5)
    try:
        page.evaluate("""async (net) => { const api = await import('/assets/api.js');
            window.neuromv.setPanels([{ name: null, box: [0, 0, 1, 1], db: null, net: api.decodeNet(net) }], null);
        }""", net_json(cppn))
        w, h = 96, 54
        settings = RenderSettings(width=w, height=h, precision=EXACT, fit_steps=60, reactivity=1.5)
        z = latents_for(AudioFile(song), settings, image=True)
        renderer = build_renderer(settings, cppn=cppn, z=z)
        frames = _same_look(page, "image mode (format 1)", w, h, {i: renderer.render(z[i]) for i in (10, 45)},
                            max_level=3)
        assert np.abs(frames[0] - frames[1]).mean() > 1.0
    finally:
        _page_settings(page, reactivity=1)
        page.evaluate("() => window.neuromv.prepare()")
        page.wait_for_function("window.neuromv.panels.length === 1 && window.neuromv.panels[0].net.kind === "
                               "'abstract'")


def test_picture_stays_interactive(browser_page, song, tmp_path):
    """The page's draw loop with a fitted picture at its default canvas size: frames per second (software GL)."""
    page = browser_page
    _load_song(page, song)
    _page_settings(page, **QUICK_FIT)
    try:
        page.set_input_files("#image-file", str(write_cover(tmp_path / "cover.png")))
        page.wait_for_function("window.neuromv.panels.length === 1 && window.neuromv.panels[0].net.kind === "
                               "'picture'", timeout=120_000)
        size, first = page.evaluate("""() => { const s = window.neuromv, c = s.gl.canvas, px = new Uint8Array(4);
            c.width = 640; c.height = 360;
            const t0 = performance.now();
            s.draw(10); s.gl.readPixels(0, 0, 1, 1, s.gl.RGBA, s.gl.UNSIGNED_BYTE, px);  // with the picture pass
            return [[c.width, c.height], performance.now() - t0]; }""")
        print(f"picture at {size[0]}x{size[1]}: the first frame (picture pass and motion) took {first:.0f} ms")
        page.evaluate("() => document.getElementById('player').play()")
        drawn = page.evaluate("window.neuromv.framesDrawn")
        time.sleep(3.5)  # the loop's meter reports once a second
        fps = page.evaluate("window.neuromv.pageFps")
        drawn = page.evaluate("window.neuromv.framesDrawn") - drawn
        print(f"picture at {size[0]}x{size[1]}: {fps:.1f} frames/s on the page (software GL), {drawn} in 3.5 s")
        assert fps > 4 and page.get_attribute("#status", "class") != "error", (fps, page.text_content("#status"))
    finally:
        page.evaluate("() => document.getElementById('player').pause()")
        _page_settings(page, fit_quality="standard", fit_steps=None)
        page.select_option("#picture", "none")
        page.wait_for_function("window.neuromv.panels.length === 1 && !window.neuromv.panels[0].net.image")


def test_a_newer_picture_request_cancels_the_older_ones(browser_page, song, tmp_path):
    page = browser_page
    _load_song(page, song)
    cover = write_cover(tmp_path / "slow.png")
    _page_settings(page, fit_steps=100000)  # fits that would take minutes
    try:
        page.set_input_files("#image-file", str(cover))
        page.wait_for_function("window.neuromv.busy > 0")
        for seed in (1, 2, 3):
            _knob(page, "seed", seed, "change")
            time.sleep(0.3)
        page.select_option("#picture", "none")
        page.wait_for_function("window.neuromv.busy === 0 && document.getElementById('busy').hidden", timeout=30_000)
        page.wait_for_function("window.neuromv.panels.length === 1 && !window.neuromv.panels[0].net.image")
        deadline = time.time() + 30
        jobs = APPS[-1].state.neuromv.queue.jobs
        while any(not j.finished for j in jobs.values()) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(not j.finished for j in jobs.values())  # every superseded fit was cancelled
        assert page.get_attribute("#status", "class") != "error", page.text_content("#status")
        assert not page.is_disabled("#render")
    finally:
        _knob(page, "seed", 0, "change")
        _page_settings(page, fit_steps=None)
        page.wait_for_function("window.neuromv.panels.length === 1 && window.neuromv.panels[0].net.seed === 0")


def test_stem_panels_match_the_offline_renderer(browser_page, song):
    from neuromv.audio import AudioFile as AF
    from neuromv.plan import make_plan
    from neuromv.stems import stem_frames
    from neuromv.settings import RenderSettings

    page = browser_page
    _load_song(page, song)
    try:
        page.select_option("#separator", "hpss")
        for layout in ("auto", "blend"):
            page.select_option("#layout", layout)
            page.select_option("#stems", "all")
            page.wait_for_function(f"window.neuromv.panels.length === 2 && window.neuromv.panels.every(p => p.z) "
                                   f"&& window.neuromv.layout === {layout!r}", timeout=120_000)
            w, h = 96, 54
            settings = RenderSettings(width=w, height=h, precision=EXACT, stems="all", separator="hpss", layout=layout,
                                      structure="off")  # as the page (the browser_page fixture)
            frames = stem_frames(make_plan(None, settings, image='none').panels(AF(song).load()), settings)
            expected = [f for i, f in zip(range(46), frames)]
            _same_look(page, f"stems {layout}", w, h, {i: expected[i] for i in (10, 45)}, max_level=3)
    finally:
        page.select_option("#stems", "")
        page.wait_for_function("window.neuromv.panels.length === 1")


def test_audio_clock_drives_the_frame_through_play_pause_and_seek(browser_page, song):
    page = browser_page
    if not page.evaluate("window.neuromv.panels.length > 0 && !!window.neuromv.panels[0].z"):
        page.set_input_files("#file", str(song))
        page.wait_for_function("window.neuromv.panels.length > 0 && window.neuromv.panels[0].z", timeout=60_000)
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
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))  # a PNG signature and nothing valid after it
    browser_page.evaluate("() => { document.getElementById('status').className = ''; }")
    browser_page.set_input_files("#image-file", str(corrupt))
    browser_page.wait_for_function("document.getElementById('status').className === 'error'", timeout=20_000)
    text = browser_page.text_content("#status")
    assert text.startswith("Could not use this image: corrupt.png: "), text
    assert browser_page.evaluate("document.getElementById('picture').value") == "none"  # nothing was added


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


def test_live_mode_follows_the_microphone(playwright, server_url, tmp_path):
    """A fake capture device plays a file into the page's live mode: the mel features computed in JavaScript
    (web/mel.js) match Python's on that file, and the picture moves with them."""
    from neuromv.features import song_db

    clip = beat_clip(sr=44100, duration=4.0, channels=1)  # beats, 1.5 s of silence, beats; the capture loops it
    wav = write_audio(tmp_path / "mic.wav", clip)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}"])
    try:
        page = browser.new_page()
        page.goto(server_url)
        page.evaluate("() => { window.neuromv.gl.canvas.width = 64; window.neuromv.gl.canvas.height = 36; }")
        _page_settings(page, **QUICK_FIT)
        page.set_input_files("#image-file", str(write_cover(tmp_path / "cover.png")))  # an image, and no song
        page.wait_for_function("window.neuromv.panels.length === 1 && window.neuromv.panels[0].net.kind === "
                               "'picture'", timeout=60_000)
        page.check("#live")
        page.wait_for_function("window.neuromv.live !== null && window.neuromv.live.frames > 30", timeout=30_000)
        assert page.evaluate("window.neuromv.live.sr") == 22050
        first = page.evaluate("window.neuromv.framesDrawn")
        shots = set()
        for _ in range(6):  # the picture changes as the input does
            shots.add(bytes(page.evaluate("""() => { const gl = window.neuromv.gl, a = new Uint8Array(64 * 36 * 4);
                gl.readPixels(0, 0, 64, 36, gl.RGBA, gl.UNSIGNED_BYTE, a); return Array.from(a); }""")))
            time.sleep(0.4)
        assert len(shots) >= 3 and page.evaluate("window.neuromv.framesDrawn") > first
        page.wait_for_function("window.neuromv.live.frames > 300", timeout=60_000)  # 10 s: 2.5 loops
        power = np.array(page.evaluate("window.neuromv.live.power.slice(-240).map(c => Array.from(c))"))
        z = np.array(page.evaluate("window.neuromv.live.history.slice(-240).map(c => Array.from(c))"))
    finally:
        browser.close()
    # the band profile of the captured loop (2 whole loops of 4 s) against Python's features of the file
    expected = song_db([clip.samples], clip.sr, fps=30, n_mels=32)  # dB relative to the file's peak
    got = 10 * np.log10(np.maximum(power, power.max() * 1e-8) / power.max()).T
    diff = np.abs(got.mean(axis=1) - expected.mean(axis=1))
    print(f"live: band means differ from Python's by {diff.mean():.3f} dB on average, {diff.max():.3f} at most")
    assert diff.mean() < 1.0 and diff.max() < 2.0, diff
    # z moves with the music: its RMS norm about its mean over these 8 s is 1 for Python's z of the loop; live, the
    # running statistics (10-s memory) are still settling after 10 s, so less is asked
    swing = np.sqrt(np.mean(np.sum((z - z.mean(axis=0)) ** 2, axis=1)))
    print(f"live: z swings by {swing:.2f} (RMS norm about its mean)")
    assert np.isfinite(z).all() and swing > 0.5, swing
