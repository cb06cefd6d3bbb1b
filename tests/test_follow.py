"""The structure's motion fitted to the picture (neuromv.follow, neuromv.plan.follow_controls): the offset scales each
frame's step as asked, the rounds bring a picture whose sensitivity varies from frame to frame to follow the motion
asked of it, and a real render's change follows the controls' motion more closely with the fit than without."""

from __future__ import annotations

import numpy as np
import pytest

from neuromv.errors import ParameterError
from neuromv.follow import FOLLOW, fitted_controls, follow, next_gain, scaled_steps


def _walk(n=400, n_z=8, seed=0):
    return np.cumsum(np.random.default_rng(seed).normal(0, 0.1, (n, n_z)), axis=0).astype(np.float32)


def test_scaled_steps_scale_each_step_and_leak_back():
    u = _walk()
    assert np.array_equal(scaled_steps(u, np.ones(len(u))), np.zeros_like(u))
    gain = np.random.default_rng(1).uniform(0.2, 3.0, len(u))
    v = u + scaled_steps(u, gain, leak=0.0)
    assert np.allclose(np.diff(v, axis=0), gain[1:, None] * np.diff(u, axis=0), atol=1e-4)
    # with a leak the drift decays: a single doubled step is taken back geometrically
    g = np.ones(len(u))
    g[10] = 2.0
    d = scaled_steps(u, g, leak=0.1)
    assert np.allclose(d[10], 0.9 * (u[10] - u[9]), atol=1e-6)
    assert np.allclose(d[30], 0.9 ** 21 * (u[10] - u[9]), atol=1e-6)
    # where held, the drift stays: a picture at rest does not creep back
    hold = np.zeros(len(u), bool)
    hold[20:40] = True
    d = scaled_steps(u, g, leak=0.1, hold=hold)
    assert np.allclose(d[20:40], d[19] + 0 * d[20:40], atol=1e-6) and np.abs(d[19]).max() > 0
    assert np.allclose(d[41], 0.9 * d[40], atol=1e-6)
    with pytest.raises(ParameterError, match="leak"):
        scaled_steps(u, g, leak=1.0)
    with pytest.raises(ParameterError, match="gain"):
        scaled_steps(u, g[:-1])


def test_fitted_controls_scale_the_input_zoom_and_light_steps():
    """The input's steps by the gain, the zoom's and the light's by the gain within [1 / kick, kick] (a kick in the
    picture's clip grows, one that moves it too much shrinks); the colour stays; kick 1 leaves zoom and light."""
    from neuromv.structure import Controls

    n, rng = 200, np.random.default_rng(3)
    u = _walk(n)
    zoom = (1 - 0.05 * rng.random(n)).astype(np.float32)  # kicks zoom in
    light = (0.06 * rng.random(n)).astype(np.float32)
    c = Controls(z_scale=np.ones(n, np.float32), z_add=np.zeros_like(u), zoom=zoom,
                 hue=rng.random(n).astype(np.float32),
                 saturation=np.ones(n, np.float32), brightness=light, motion=np.ones(n, np.float32))
    gain = rng.choice([0.1, 0.5, 2.0, 10.0], n)
    f = fitted_controls(c, u, gain, kick=3.0)
    assert np.array_equal(f.z_add, scaled_steps(u, gain))
    clipped = np.clip(gain, 1 / 3, 3)
    scaled_zoom = zoom + scaled_steps(zoom[:, None], clipped)[:, 0]
    assert np.allclose(f.zoom, np.minimum(scaled_zoom, 1.0), atol=1e-6)  # it never zooms out
    assert scaled_zoom.max() > 1.0 and f.zoom.max() <= 1.0
    assert np.allclose(f.brightness, light + scaled_steps(light[:, None], clipped)[:, 0], atol=1e-6)
    # without the leak each step is exactly scaled: x10 becomes x3, x0.1 becomes x1/3
    v = light + scaled_steps(light[:, None], clipped, leak=0.0)[:, 0]
    assert np.allclose(np.diff(v), clipped[1:] * np.diff(light), atol=1e-5)
    assert f.hue is c.hue and f.saturation is c.saturation and f.motion is c.motion
    same = fitted_controls(c, u, gain, kick=1.0)
    assert same.zoom is c.zoom and same.brightness is c.brightness
    assert np.array_equal(fitted_controls(c, u, np.ones(n)).zoom, zoom)
    with pytest.raises(ParameterError, match="kick"):
        fitted_controls(c, u, gain, kick=0.5)


def test_next_gain_pushes_towards_the_motion_asked_within_bounds():
    n = 200
    motion, envelope = np.ones(n), np.full(n, 2.0)
    envelope[50], envelope[60], motion[70] = 6.0, 0.5, 0.0  # too much, too little, moved where nothing was asked
    g = next_gain(np.ones(n), envelope, motion, rate=1.0, floor=0.0)
    assert g[0] == 1.0 and g[50] < 0.5 and g[60] > 2.0 and g[70] == pytest.approx(1.0 / FOLLOW["step"])
    assert np.allclose(g[[20, 55, 65, 150]], 1.0, atol=0.05)
    assert np.all(g >= 1.0 / FOLLOW["gain"]) and np.all(g <= FOLLOW["gain"])
    assert np.array_equal(next_gain(np.ones(n), envelope, np.zeros(n)), np.ones(n))  # nothing asked
    assert np.array_equal(next_gain(np.ones(n), np.zeros(n), motion), np.ones(n))  # nothing moved
    # a frame's gain depends on no later frame: a change from frame 100 on leaves the gains before it
    later = envelope.copy()
    later[100:] *= 3.0
    h = next_gain(np.ones(n), later, motion)
    assert np.array_equal(h[:100], next_gain(np.ones(n), envelope, motion)[:100])


def test_follow_fits_a_picture_whose_sensitivity_varies():
    """A model picture: its change into frame i is the input's step times a sensitivity that varies from frame to
    frame (0.2 to 5), plus a change of its own that no input step makes. Unfitted, its change follows the motion
    asked at r ~0.67; fitted, at r > 0.9; every round is one render."""
    rng = np.random.default_rng(2)
    n = 600
    motion = np.where(np.arange(n) % 15 == 0, 1.0, 0.15) * rng.uniform(0.2, 1.0, n)
    steps = motion[:, None] * rng.normal(0, 1, (n, 6)) / np.sqrt(6)
    u = np.cumsum(steps, axis=0).astype(np.float32)
    sensitivity = np.exp(rng.uniform(np.log(0.2), np.log(5.0), n))
    own = rng.uniform(0.0, 0.02, n)
    calls = []

    def change(inputs):
        e = np.zeros(n)
        e[1:] = sensitivity[1:] * np.linalg.norm(np.diff(inputs, axis=0), axis=1) + own[1:]
        return e

    def envelope_of(gain):
        calls.append(1)
        return change(u + scaled_steps(u, gain))

    before = np.corrcoef(change(u)[1:], motion[1:])[0, 1]
    gain = follow(motion, envelope_of, rounds=4)
    after = np.corrcoef(change(u + scaled_steps(u, gain))[1:], motion[1:])[0, 1]
    assert len(calls) == 4
    assert before < 0.7 and after > 0.9, (before, after)
    # nothing asked, no rounds, or no frames: gains of 1 and no render
    calls.clear()
    assert np.array_equal(follow(np.zeros(n), envelope_of), np.ones(n))
    assert np.array_equal(follow(motion, envelope_of, rounds=0), np.ones(n))
    assert not calls
    with pytest.raises(ParameterError, match="envelope of shape"):
        follow(motion, lambda g: np.zeros(n - 1))


def test_a_render_follows_the_controls_motion_more_closely(monkeypatch):
    """The plan's panel (abstract CPPN, a synthetic song with its cues): the frames' change follows the controls'
    motion more closely with the fit (the default rounds) than without (0 rounds), at the render's own size (r 0.97
    against 0.94); and
    the fitted controls are the same whatever the precision setting (the fit renders in float32)."""
    import neuromv.follow
    from neuromv.demo import structured_song
    from neuromv.plan import make_plan
    from neuromv.settings import RenderSettings
    from neuromv.sync import MotionEnvelope

    audio, _ = structured_song("AB", bpm=120.0, bars=4, sr=22050, seed=5)

    def panel(**kw):
        plan = make_plan(audio, RenderSettings(width=128, height=72, **kw), cache=False)
        (p,) = plan.panels(audio)
        env = MotionEnvelope()
        for f in p.frames():
            env.add(f)
        e, m = env.envelope, p.controls.motion
        return p, np.corrcoef(e[1:], m[1:])[0, 1]

    fitted, r_fit = panel()
    other, _ = panel(precision="int16")
    assert np.array_equal(fitted.controls.z_add, other.controls.z_add)
    monkeypatch.setitem(neuromv.follow.FOLLOW, "rounds", 0)
    plain, r_plain = panel()
    assert not np.array_equal(fitted.controls.z_add, plain.controls.z_add)
    # the change not explained by the motion asked: 0.12 of its variance unfitted, 0.07 fitted
    assert 1 - r_fit ** 2 < 0.7 * (1 - r_plain ** 2) and r_fit > 0.95, (r_plain, r_fit)


def test_a_cancel_during_the_fit_stops_the_render(tmp_path):
    """The fit's renders are checked for a cancel like the render's frames: nothing is written."""
    import threading

    import neuromv
    from neuromv.demo import structured_song
    from neuromv.errors import Interrupted

    audio, _ = structured_song("AB", bpm=120.0, bars=2, sr=22050, seed=5)
    cancel = threading.Event()
    stages = []

    def progress(stage, done, total):
        stages.append(stage)
        if stage == "follow":
            cancel.set()

    with pytest.raises(Interrupted):
        neuromv.render(audio, tmp_path / "v.mp4", width=48, height=32, progress=progress, cancel=cancel)
    assert "follow" in stages and "render" not in stages
    assert list(tmp_path.iterdir()) == []


def test_a_quarter_size_render_read_whole_measures_what_the_sync_reads():
    """The fit's frames: a CPPN rendered at a quarter of the size each way and read whole (MotionEnvelope(step=1))
    measures the change the sync reads of the full-size frames (every 4th pixel): r > 0.97 over 120 frames of a
    random walk, and the same level within 10 %."""
    from neuromv.plan import build_renderer
    from neuromv.settings import RenderSettings
    from neuromv.sync import MotionEnvelope

    z = 0.3 * _walk(120, 32, seed=3)
    envelopes = []
    for (w, h), step in (((128, 72), 4), ((32, 18), 1)):
        r = build_renderer(RenderSettings(width=w, height=h, precision="float32"))
        env = MotionEnvelope(step=step)
        for f in r.frames(z):
            env.add(f)
        envelopes.append(env.envelope[1:])
    big, small = envelopes
    assert np.corrcoef(big, small)[0, 1] > 0.97
    assert abs(small.mean() / big.mean() - 1.0) < 0.1
    with pytest.raises(ParameterError, match="step"):
        MotionEnvelope(step=0)


@pytest.mark.parametrize("off_beat", [0.5, 1.0])
def test_the_between_beat_share_is_lowered_where_the_off_beats_make_visual_beats(off_beat, caplog):
    """A song whose onsets between the beats (a hit on each half beat, ``off_beat`` times as strong as the beat's)
    make visual beats of their own on the fit's render: the share between the beats is lowered until the beats
    stand out as clearly as the onsets are followed (neuromv.structure.BALANCE); with quieter half beats it stays."""
    import dataclasses
    import logging

    from neuromv.analysis import analyze
    from neuromv.demo import structured_song
    from neuromv.plan import make_plan
    from neuromv.settings import RenderSettings
    from neuromv.structure import BALANCE, FLUX, controls_for

    audio, _ = structured_song("AB", bpm=120.0, bars=4, sr=22050, seed=5)
    cues = analyze(audio)
    t = np.arange(int(audio.duration * cues.flux_rate) + 1) / cues.flux_rate
    flux = np.zeros(len(t))
    for b in cues.beats:
        for at, level in ((b, 1.0), (b + 0.25, off_beat)):
            flux += level * np.where(t >= at - 1e-9, np.exp(-np.maximum(t - at, 0.0) / 0.05), 0.0)
    cues = dataclasses.replace(cues, flux=np.minimum(flux / flux.max(), 1.0).astype(np.float32))
    settings = RenderSettings(width=64, height=36)
    with caplog.at_level(logging.INFO, logger="neuromv.plan"):
        (panel,) = make_plan(audio, settings, cache=False, cues=cues).panels(audio)
    lines = [r.getMessage() for r in caplog.records if "between-beat share" in r.getMessage()]
    default = controls_for(cues, len(panel.z), settings)
    off = np.round(np.asarray(cues.beats) * settings.fps).astype(int) + 8  # frames just after the half beats
    off = off[off < len(panel.z)]
    if off_beat < 1.0:  # the beats stand out: the share stays, the motion is the structure's own
        assert not lines
        assert np.array_equal(panel.controls.motion, default.motion)
        return
    share = float(lines[0].split("share ")[1].split(" ")[0])
    assert BALANCE["low"] * FLUX["between"] <= share < FLUX["between"] - 0.01, lines
    # less motion between the beats, the same on them
    beats = np.round(np.asarray(cues.beats) * settings.fps).astype(int)
    assert np.allclose(panel.controls.motion[beats], default.motion[beats])
    assert panel.controls.motion[off].sum() < 0.95 * default.motion[off].sum()
