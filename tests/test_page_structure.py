"""The song's structure on the live page (issue 16, "The live page"): the server sends the cues and each panel's
controls, the page shows the timeline and draws the controls as the offline renderer does, and the live microphone
mode tracks beats causally with its latency measured. Real server (uvicorn), real Chromium (Playwright)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from conftest import write_audio, write_cover
from test_serve import (APPS, CHROMIUM, CHROMIUM_ARGS, EXACT, _floats, _knob, _same_look, playwright,  # noqa: F401
                        server_url)

from neuromv.audio import Audio, AudioFile
from neuromv.cues import Cues, Section, Span

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from neuromv.serve import create_app  # noqa: E402

BPM = 120.0
SR = 22050


def click_song(duration: float = 8.0, bpm: float = BPM, sr: int = SR, switch: float | None = 4.0) -> Audio:
    """Clicks (short noise bursts) on every beat over a quiet pad; the pad changes at ``switch`` seconds (two
    sections)."""
    n = int(duration * sr)
    t = np.arange(n) / sr
    pad = np.where(t < (switch or duration), 0.05 * np.sin(2 * np.pi * 220 * t), 0.05 * np.sin(2 * np.pi * 523 * t))
    y = pad.copy()
    click = np.random.default_rng(1).standard_normal(int(0.01 * sr)) * np.exp(-np.arange(int(0.01 * sr)) / (0.002 * sr))
    for b in np.arange(0, duration - 0.02, 60.0 / bpm):
        i = int(round(b * sr))
        y[i:i + len(click)] += 0.8 * click[:n - i]
    return Audio((0.9 * y / np.abs(y).max()).astype(np.float32)[None, :], sr)


def hand_cues(duration: float) -> Cues:
    """Cues of the click song as a person would write them: 120 BPM from 0, bars of 4, two sections A | B at 4 s
    and a drop at 4 s."""
    beats = np.arange(0, duration - 1e-6, 60.0 / BPM)
    return Cues(duration, BPM, [(0.0, BPM)], 4, beats, beats[::4], {}, [Section(0.0, 4.0, "A"),
                                                                          Section(4.0, duration, "B")],
                np.full(int(duration * 10), 0.8, np.float32), 10.0, [], np.array([4.0]), [], {})


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return write_audio(tmp_path_factory.mktemp("structure") / "clicks.wav", click_song())


def _upload(client, song, **query):
    q = "&".join(f"{k}={v}" for k, v in query.items())
    r = client.post(f"/api/songs?{q}", content=song.read_bytes(), headers={"X-Filename": song.name})
    assert r.status_code == 200, r.text
    return r.json()


def _prepare(client, body):
    from test_serve import _wait

    r = client.post("/api/prepare", json=body)
    assert r.status_code == 200, r.text
    st = _wait(client, r.json()["job"])
    assert st["state"] == "done", st
    return st["result"]


def test_upload_gives_the_cues_and_prepare_the_controls(tmp_path, song):
    """The upload's answer carries the song's cues (neuromv.analysis, schema version 1); a prepare with structure on
    gives each panel the controls a render of the song with those cues plays (neuromv.structure's, fitted to the
    picture by neuromv.follow: exactly), and none with structure off."""
    from neuromv.plan import make_plan
    from neuromv.settings import RenderSettings
    from neuromv.structure import controls_for

    app = create_app(workdir=tmp_path / "work")
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        info = _upload(client, song, fps=30, n_mels=16)
        cues = info["cues"]
        assert cues["neuromv_cues"] == 2 and cues["duration"] == pytest.approx(8.0, abs=0.01)
        assert cues["tempo"] == pytest.approx(BPM, rel=0.04), cues["tempo"]
        assert len(cues["beats"]) == pytest.approx(16, abs=2)
        assert (tmp_path / "work").glob("*.cues.json")  # kept beside the song, counted by the quota
        settings = {"n_mels": 16, "width": 64, "height": 36, "beat": 2.0}
        result = _prepare(client, {"song": info["id"], "settings": settings})
        (panel,) = result["panels"]
        c = panel["controls"]
        assert (c["n_frames"], c["n_z"]) == (info["n_frames"], 16)
        plan = make_plan(song, RenderSettings(**settings), cues=Cues.from_json(cues), cache=False)
        (p,) = plan.panels(AudioFile(song))
        expected = p.controls
        for name, a in expected.arrays().items():
            np.testing.assert_array_equal(_floats(c[name]).reshape(a.shape), a, err_msg=name)
        assert np.ptp(expected.zoom) > 0.01  # the kicks are there
        plain = controls_for(Cues.from_json(cues), info["n_frames"], RenderSettings(**settings), kind=False)
        assert not np.array_equal(plain.z_add, expected.z_add)  # fitted: the structure's, with the fit's offset
        result = _prepare(client, {"song": info["id"], "settings": {**settings, "structure": "off"}})
        assert result["panels"][0]["controls"] is None


def test_controls_are_bounded_like_the_features(tmp_path, song, monkeypatch):
    """The controls (n_frames x (n_z + 5) values) are refused with 413 past config.MAX_FEATURES, before they are
    computed; the song's features alone (n_frames x n_mels) still fit."""
    from neuromv.serve import config

    app = create_app(workdir=tmp_path / "work")
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        info = _upload(client, song, fps=30, n_mels=16)
        monkeypatch.setattr(config, "MAX_FEATURES", info["n_frames"] * 18)  # the features fit, the controls do not
        r = client.post("/api/prepare", json={"song": info["id"], "settings": {"n_mels": 16}})
        from test_serve import _wait

        st = _wait(client, r.json()["job"])
        assert st["state"] == "error" and "controls is more than the server sends" in st["error"], st
        assert "clicks.wav" in st["error"]


@pytest.fixture(scope="module")
def browser_page(playwright, server_url):
    """The page in headless Chromium, with the default settings (structure on)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page()
    page.goto(server_url)
    assert page.evaluate("window.neuromv.settings.structure") == "on"
    yield page
    browser.close()


def _inject_cues(page, cues: Cues):
    """Give the page's song (in the server, and on the page) these cues, as if the analysis had found them."""
    sid = page.evaluate("window.neuromv.song.id")
    item = APPS[-1].state.neuromv.storage.items[sid]
    item.info["cues"] = cues.to_json()
    page.evaluate("(c) => { window.neuromv.song.cues = c; }", cues.to_json())


def _load(page, song):
    page.set_input_files("#file", str(song))
    page.wait_for_function("window.neuromv.song && window.neuromv.song.name === 'clicks.wav' && "
                           "window.neuromv.panels.length > 0 && window.neuromv.panels[0].z", timeout=60_000)


def test_timeline_shows_the_beats_and_sections_and_seeks(browser_page, song):
    page = browser_page
    _load(page, song)
    cues = page.evaluate("window.neuromv.song.cues")
    assert page.is_visible("#timeline")
    ticks = page.locator("#timeline .beat").count()
    assert ticks == len(cues["beats"]) > 10
    down = set(round(t, 4) for t in cues["downbeats"])
    assert page.locator("#timeline .downbeat").count() == sum(round(t, 4) in down for t in cues["beats"])
    labels = page.eval_on_selector_all("#timeline .section", "es => es.map(e => e.textContent)")
    assert labels == [s["label"] for s in cues["sections"]]
    colours = page.eval_on_selector_all("#timeline .section", "es => es.map(e => e.style.background)")
    for a, ca in zip(labels, colours):  # a label keeps its colour, another label has another
        assert all((ca == cb) == (a == b) for b, cb in zip(labels, colours)), (labels, colours)
    assert page.locator("#timeline .drop").count() == len(cues["drops"])
    # taller downbeats, and a section strip of its labels' colours
    heights = page.eval_on_selector_all("#timeline .beat", "es => es.map(e => e.getBoundingClientRect().height)")
    assert max(heights) > min(heights) or not down
    box = page.locator("#timeline").bounding_box()
    page.locator("#timeline").click(position={"x": 0.75 * box["width"], "y": box["height"] / 2})  # a click seeks
    page.wait_for_function("Math.abs(document.getElementById('player').currentTime - 6.0) < 0.1", timeout=5_000)
    page.evaluate("() => { document.getElementById('player').currentTime = 0; }")


def test_structure_frames_match_the_offline_renderer(browser_page, song):
    """With structure on, a page frame is the offline renderer's frame with the same controls (z scaled and
    offset, the coordinates zoomed, the colour map of the frame's hue, saturation and brightness) within 2/255 on
    average: at a downbeat's kick, in the burst of the drop, and inside the transition from section A to B."""
    from neuromv.pipeline import build_renderer, latents_for
    from neuromv.settings import RenderSettings
    from neuromv.structure import controls_for

    page = browser_page
    _load(page, song)
    cues = hand_cues(8.0)
    _inject_cues(page, cues)
    w, h = 96, 54
    page.evaluate("() => { window.neuromv.settings.beat = 2; window.neuromv.settings.transition = 1; }")
    _knob(page, "hue", 20)
    try:
        page.evaluate("() => window.neuromv.prepare()")
        page.wait_for_function("window.neuromv.panels.length === 1 && window.neuromv.panels[0].controls && "
                               "window.neuromv.busy === 0", timeout=60_000)
        settings = RenderSettings(width=w, height=h, precision=EXACT, beat=2.0, transition=1.0, hue=20)
        z = latents_for(AudioFile(song), settings)
        c = controls_for(cues, len(z), settings, kind=False)
        seen = c.apply(z)
        kick = int(round(2.0 * 30))    # the downbeat at 2 s: a kick of the downbeat's strength
        drop = int(round(4.0 * 30)) + 2  # the drop's burst, two frames in
        inside = int(round(3.0 * 30))   # the transition: the bar before B's first downbeat (2 s to 4 s)
        assert c.zoom[kick] < c.zoom[kick - 3] - 0.02 and c.brightness[kick] > c.brightness[kick - 3] + 0.02
        assert 0 < c.hue[inside] < c.hue[-1] and not np.allclose(c.z_add[inside], c.z_add[0])
        page_controls = np.array(page.evaluate("Array.from(window.neuromv.panels[0].controls.zoom)"))
        np.testing.assert_array_equal(page_controls, c.zoom)
        expected = {}
        for i in (kick, drop, inside, 10):
            s = float(c.zoom[i])
            frame = dataclasses.replace(settings, zoom=settings.zoom * s, pan_x=settings.pan_x * s,
                                        pan_y=settings.pan_y * s, hue=settings.hue + float(c.hue[i]),
                                        saturation=settings.saturation * float(c.saturation[i]),
                                        brightness=settings.brightness + float(c.brightness[i]))
            expected[i] = build_renderer(frame).render(seen[i])
        frames = _same_look(page, "structure on", w, h, expected, max_level=3)
        plain = build_renderer(settings).render(z[kick])
        assert np.abs(frames[0] - plain).mean() > 2.0  # and the controls changed the frame
    finally:
        _knob(page, "hue", 0)
        page.evaluate("() => { window.neuromv.settings.beat = 1; window.neuromv.settings.transition = 1; }")


LIVE_BPM = 110.0


def test_live_beat_tracker_finds_the_tempo_and_shows_its_latency(playwright, server_url, tmp_path):
    """A fake microphone plays a click track at 110 BPM (a whole number of beats, so that its loop keeps the beat)
    into the live mode: the causal tracker finds the tempo within 4 %, the kicks are drawn, and the page shows the
    latency from each click's arrival in the captured audio to its kick drawn."""
    import re

    sr = 44100
    beats = 16
    audio = click_song(duration=beats * 60.0 / LIVE_BPM, bpm=LIVE_BPM, sr=sr, switch=None)
    wav = write_audio(tmp_path / "clicks.wav", audio)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}"])
    try:
        page = browser.new_page()
        page.goto(server_url)
        page.evaluate("() => { window.neuromv.gl.canvas.width = 64; window.neuromv.gl.canvas.height = 36; }")
        page.check("#live")  # no song: the abstract picture of the settings' seed
        page.wait_for_function("window.neuromv.live !== null && window.neuromv.live.beats.bpm !== null",
                               timeout=30_000)
        page.wait_for_function("window.neuromv.live.beats.latencies.length >= 8", timeout=40_000)
        time.sleep(2.0)
        beats_state = page.evaluate("""() => { const b = window.neuromv.live.beats;
            return {bpm: b.bpm, latencies: b.latencies, fired: b.beats.length, transients: b.transients.length,
                    drawn: window.neuromv.framesDrawn, pageFps: window.neuromv.pageFps,
                    fps: window.neuromv.live.mel.fps,
                    shown: document.getElementById('beat-status').textContent, text: b.describe(),
                    latency: b.latency()}; }""")
    finally:
        browser.close()
    print(f"live beat tracking: {beats_state}")
    pattern = r"beat tracking: (\d+) BPM, latency (-?\d+) ms"
    assert re.fullmatch(pattern, beats_state["shown"]), beats_state["shown"]  # on the page
    m = re.fullmatch(pattern, beats_state["text"])
    assert beats_state["bpm"] == pytest.approx(LIVE_BPM, rel=0.04)
    lat = np.array(beats_state["latencies"]) * 1000
    print(f"latency: median {np.median(lat):.0f} ms, from {lat.min():.0f} to {lat.max():.0f} ms")
    assert int(m.group(1)) == round(beats_state["bpm"]) and int(m.group(2)) == round(1000 * beats_state["latency"])
    # The bound: the beat is predicted from mel columns, whose centres are a hop apart (1000 / fps ms: the predicted
    # time is within half a hop of the click, and the click can fall anywhere in its column); the kick is drawn at the
    # first frame after the predicted time (at most one frame of the page's draw loop later); and the audio clock
    # that times both moves in steps of the audio device's callback (about 10 to 20 ms). A tracker that waited for
    # the beat's onset instead of predicting it would add a hop or more on top; one a beat late, a whole period.
    hop, draw = 1000 / beats_state["fps"], 1000 / beats_state["pageFps"]
    bound = hop + draw + 25
    print(f"latency bound {bound:.0f} ms (hop {hop:.0f} ms, draw interval {draw:.0f} ms, audio clock 25 ms)")
    assert -hop < np.median(lat) < bound, (np.median(lat), bound)


def _frame_settings(settings, c, i, zoom=True):
    """The settings of frame i with the controls c: the renderer of these draws the frame (zoom: the coordinates,
    pan included; the colour map of the frame's hue, saturation and brightness)."""
    s = float(c.zoom[i]) if zoom else 1.0
    return dataclasses.replace(settings, zoom=settings.zoom * s, pan_x=settings.pan_x * s, pan_y=settings.pan_y * s,
                               hue=settings.hue + float(c.hue[i]),
                               saturation=settings.saturation * float(c.saturation[i]),
                               brightness=settings.brightness + float(c.brightness[i]))


def _set_panel(page, net: dict, controls: dict | None):
    page.evaluate("""async ([net, controls]) => { const api = await import('/assets/api.js');
        window.neuromv.setPanels([{ name: null, box: [0, 0, 1, 1], db: null, net: api.decodeNet(net),
                                    controls: api.decodeControls(controls) }], null); }""", [net, controls])


def test_format1_and_picture_frames_with_structure_match_the_offline_renderer(browser_page, song, tmp_path):
    """The controls on the other kinds of network: a format-1 image-mode CPPN (z scaled and offset, its centring
    over the controlled frames, the colour per frame; zoom is not driven there) and a fitted picture (its drive
    scaled and offset, zoomed about the view's centre, the colour per frame: Renderer.render(zoom=, color=)) are
    the offline renderer's frames within 2/255 on average."""
    from neuromv.image import load_image
    from neuromv.pipeline import build_renderer, fit_for, latents_for
    from neuromv.serve.jobs import controls_json, net_json
    from neuromv.settings import RenderSettings
    from neuromv.structure import controls_for, frame_colors

    page = browser_page
    _load(page, song)
    cues = hand_cues(8.0)
    w, h = 96, 54
    cover = load_image(write_cover(tmp_path / "cover.png"))
    try:
        # format 1: the page's own path for it (pulse and centring)
        settings = RenderSettings(width=w, height=h, precision=EXACT, fit_steps=60, beat=2.0)
        cppn = fit_for(cover, settings, method="neuromv")
        z = latents_for(AudioFile(song), settings, image=True)
        c = controls_for(cues, len(z), settings, kind=True)
        assert np.all(c.zoom == 1) and np.ptp(c.brightness) > 0.05
        seen = c.apply(z)
        _set_panel(page, net_json(cppn), controls_json(c))
        expected = {i: build_renderer(_frame_settings(settings, c, i), cppn=cppn, z=seen).render(seen[i])
                    for i in (60, 90, 122)}
        _same_look(page, "format 1, structure on", w, h, expected, max_level=3)
        # a fitted picture: the same fit as the page's tests (the drive, scaled and offset; the zoom about the view's
        # centre; the colour per frame): the renderer's per-frame zoom and colour
        settings = RenderSettings(width=w, height=h, beat=2.0, fit_quality="draft", fit_steps=30)
        net = fit_for(cover, settings)
        z = latents_for(AudioFile(song), settings, image="picture")
        c = controls_for(cues, len(z), settings, kind="picture")
        seen, colors = c.apply(z), frame_colors(c, settings)
        renderer = build_renderer(settings, cppn=net)
        _set_panel(page, net_json(net, settings), controls_json(c))
        frames = (60, 90, 122)
        assert min(c.zoom[i] for i in frames) < 0.97  # zoomed in at the kick, the drop and in the transition
        expected = {i: renderer.render(seen[i], zoom=float(c.zoom[i]), color=colors[i]) for i in frames}
        # max 6: zoomed, the renderer resamples its maps already sampled at the pixels (bilinear twice), the page
        # samples the structure maps once at the zoomed place (mean 0.06 of a level)
        _same_look(page, "picture, structure on", w, h, expected, max_level=6)
    finally:
        page.evaluate("() => window.neuromv.prepare()")
        page.wait_for_function("window.neuromv.panels.length === 1 && window.neuromv.panels[0].net.kind === "
                               "'abstract' && window.neuromv.busy === 0", timeout=60_000)


def test_stem_panels_each_draw_their_own_controls(browser_page, song):
    """With stems, each panel gets the controls of its stem's role (the render's: neuromv.plan.Plan.panels with the
    same cues), and the page draws each panel as the offline renderer draws it with them."""
    from neuromv.plan import make_plan
    from neuromv.pipeline import build_renderer
    from neuromv.settings import RenderSettings

    page = browser_page
    _load(page, song)
    cues = hand_cues(8.0)
    _inject_cues(page, cues)
    w, h = 96, 54
    try:
        page.select_option("#separator", "hpss")
        page.select_option("#layout", "auto")
        page.select_option("#stems", "all")
        page.wait_for_function("window.neuromv.panels.length === 2 && window.neuromv.panels.every(p => p.z && "
                               "p.controls) && window.neuromv.busy === 0", timeout=120_000)
        settings = RenderSettings(width=w, height=h, precision=EXACT, stems="all", separator="hpss", layout="auto")
        panels = make_plan(song, settings, image="none", cues=cues).panels(AudioFile(song).load())
        names = page.evaluate("window.neuromv.panels.map(p => p.name)")
        assert names == [p.name for p in panels]
        for k, p in enumerate(panels):
            got = np.array(page.evaluate(f"Array.from(window.neuromv.panels[{k}].controls.hue)"))
            np.testing.assert_allclose(got, p.controls.hue, atol=1e-4, err_msg=p.name)
        assert not np.allclose(panels[0].controls.zoom, panels[1].controls.zoom)  # each its own
        expected = {}
        for i in (60, 90):
            canvas = np.zeros((h, w, 3), np.uint8)
            for p in panels:
                x, y, pw, ph = p.box
                canvas[y:y + ph, x:x + pw] = build_renderer(_frame_settings(p.settings, p.controls, i), pw, ph,
                                                            cppn=p.cppn).render(p.z[i])
            expected[i] = canvas
        _same_look(page, "stems, structure on", w, h, expected, max_level=3)
    finally:
        page.select_option("#stems", "")
        page.wait_for_function("window.neuromv.panels.length === 1 && window.neuromv.busy === 0", timeout=60_000)
