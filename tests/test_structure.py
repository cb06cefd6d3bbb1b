"""The visual language of the music's structure (neuromv.structure): cues made in code become per-frame controls."""

from __future__ import annotations

import numpy as np
import pytest

from neuromv.cues import Cues, Section, Span
from neuromv.errors import ParameterError
from neuromv.settings import RenderSettings
from neuromv.structure import (FLUX, HIT_WEIGHT, KICK, MUSIC, PICTURE_FLUX, PICTURE_KICK, PICTURE_MUSIC, REST,
                               ROLE_KICK, STEM_ROLES, Controls, _direction, controls_for, flux_frames,
                               kick_envelope, pulse_envelope)
from neuromv.sync import PEAK_WINDOW

FPS = 30.0
BPM = 120.0
PERIOD = 60.0 / BPM  # 0.5 s: 15 frames
BAR = 4 * PERIOD  # 2 s: 60 frames


def make_cues(duration: float = 24.0, *, sections=None, drops=(), silence=(), offbeats: bool = False,
              hits: np.ndarray | None = None) -> Cues:
    """A 120 BPM 4/4 song: a beat every 0.5 s from 0 (downbeats every 2 s), a low-band onset on every beat (strength
    ``hits``, default 1), optional high-band onsets halfway between the beats, flat energy."""
    beats = np.arange(0.0, duration - 1e-9, PERIOD)
    if silence:
        beats = beats[~np.any([(beats >= s.start) & (beats < s.end) for s in silence], axis=0)]
    strengths = np.ones(len(beats)) if hits is None else np.asarray(hits, float)
    onsets = {"low": (beats.copy(), strengths), "mid": (beats.copy(), strengths), "high": (beats.copy(), strengths)}
    if offbeats:
        times = np.concatenate([beats, beats + PERIOD / 2])
        order = np.argsort(times)
        onsets["high"] = (times[order], np.concatenate([strengths, np.ones(len(beats))])[order])
    return Cues(duration=duration, tempo=BPM, tempo_map=[(0.0, BPM)], beats_per_bar=4, beats=beats,
                downbeats=beats[np.isclose(np.remainder(beats + 1e-6, BAR), 0.0, atol=1e-3)],
                onsets=onsets, sections=list(sections or [Section(0.0, duration, "A")]),
                energy=np.ones(int(duration * 10), np.float32), energy_rate=10.0, drops=np.asarray(drops, float),
                silence=list(silence))


def settings(**kw) -> RenderSettings:
    return RenderSettings(width=64, height=36, fps=FPS, seed=3, **kw)


def frames(cues: Cues) -> int:
    return int(cues.duration * FPS)


def frame(t: float) -> int:
    return int(round(t * FPS))


def _dir(s: RenderSettings, what: int) -> np.ndarray:
    return _direction(s.n_mels, s.seed, what)


def test_controls_shapes_and_off():
    s = settings()
    c = controls_for(make_cues(), 720, s)
    assert isinstance(c, Controls) and c.n_frames == 720
    assert c.z_add.shape == (720, s.n_mels)
    for name, a in c.arrays().items():
        assert a.dtype == np.float32 and a.shape[0] == 720 and np.all(np.isfinite(a)), name
    z = np.ones((720, s.n_mels), np.float32)
    np.testing.assert_allclose(c.apply(z), z * c.z_scale[:, None] + c.z_add, rtol=1e-6)
    with pytest.raises(ParameterError, match="controls for"):
        c.apply(np.ones((719, s.n_mels), np.float32))
    assert controls_for(make_cues(), 720, settings(structure="off")) is None
    with pytest.raises(ParameterError, match="role must be one of"):
        controls_for(make_cues(), 720, s, role="guitar")


def test_kick_lands_on_the_beat_and_releases_within_it():
    cues = make_cues()
    c = controls_for(cues, frames(cues), settings())
    b = c.brightness.astype(float)
    for t in cues.beats[4:12]:
        k = frame(t)
        # the attack is the beat's own frame: the biggest rise of the beat, and the brightest frame of the beat
        assert b[k] - b[k - 1] > 0.5 * KICK["beat"] * KICK["brightness"]
        assert b[k] == pytest.approx(b[k: k + 15].max())
        assert c.zoom[k] < c.zoom[k - 1]  # a zoom-in
        # released over the beat: linearly, back to rest before the next beat
        assert np.all(np.diff(b[k: k + 12]) <= 1e-7)
        assert b[k + 13] <= 0.05 * b[k]
    # no strobe: a kick adds well under a quarter of full brightness
    assert b.max() < 0.25


def test_downbeat_kicks_harder_than_a_beat():
    cues = make_cues()
    c = controls_for(cues, frames(cues), settings())
    down = frame(cues.downbeats[2])
    beat = frame(cues.downbeats[2] + PERIOD)
    assert c.brightness[down] > c.brightness[beat] * 1.15
    assert c.zoom[down] < c.zoom[beat]


def test_hits_follow_their_strength_and_onsets_between_beats_do_not_kick():
    hits = np.tile([1.0, 0.2], 24)
    cues = make_cues(hits=hits)
    c = controls_for(cues, frames(cues), settings())
    weak, strong = frame(cues.beats[9]), frame(cues.beats[10])  # both plain beats (not downbeats)
    assert c.brightness[strong] > 1.5 * c.brightness[weak]
    # onsets between the beats move the pattern on by a share of their strength, and do not kick
    cues = make_cues(offbeats=True)
    c = controls_for(cues, frames(cues), settings())
    k, m = frame(cues.beats[9]), frame(cues.beats[9] + PERIOD / 2)
    assert c.brightness[m] <= c.brightness[m - 1] + 1e-7
    dz = np.linalg.norm(np.diff(c.z_add.astype(float), axis=0), axis=1)  # dz[i]: frame i -> i + 1
    # (the beat's frame has its three bands' onsets, the offbeat one high-band onset)
    share = (FLUX["between"] + FLUX["spread"] / (2 * round(PEAK_WINDOW * FPS) + 1)) * HIT_WEIGHT["high"] \
        / sum(HIT_WEIGHT.values())
    assert 0.7 * share * dz[k - 1] < dz[m - 1] < 1.3 * share * dz[k - 1]


@pytest.mark.parametrize("kind, table", [(False, FLUX), ("picture", PICTURE_FLUX)])
def test_pattern_moves_with_the_flux(kind, table):
    """Cues with a flux curve (schema version 2): each frame's step follows the curve at the frame, in full within
    a frame of a beat and by the table's 'between' elsewhere (a fitted picture's: PICTURE_FLUX); without a curve
    (version 1) the onsets make one."""
    cues = make_cues()
    n = frames(cues)
    t = np.arange(n) / FPS
    cues.flux_rate = 100.0
    cues.flux = np.random.default_rng(0).uniform(0.0, 1.0, int(cues.duration * 100)).astype(np.float32)
    want = np.interp(t, np.arange(len(cues.flux)) / 100.0, cues.flux)
    np.testing.assert_allclose(flux_frames(cues, t, FPS), want, rtol=1e-6)
    s = settings()
    c = controls_for(cues, n, s, kind=kind)
    # the input's angle on the circle (z_add = offset + z ((cos a - 1) u + sin a v)); one section: offset 0
    z = c.z_add.astype(float) / KICK["z"]
    coef = np.linalg.lstsq(np.stack([_dir(s, 1), _dir(s, 3)], axis=1), z.T, rcond=None)[0]  # (cos a - 1, sin a)
    angle = np.unwrap(np.arctan2(coef[1], coef[0] + 1.0))
    near = np.zeros(n, bool)
    for b in cues.beats:
        near[max(frame(b) - 1, 0): frame(b) + 2] = True
    scale = KICK["step"] * table["gain"] * s.beat * s.reactivity
    # between the beats: the share of the flux, plus the spread share of its mean over the sync's peak window
    half = round(PEAK_WINDOW * FPS)
    spread = np.convolve(want, np.ones(2 * half + 1) / (2 * half + 1), mode="same")
    between = table["between"] * want + table["spread"] * spread
    np.testing.assert_allclose(np.diff(angle), (scale * np.where(near, want, between))[1:], rtol=1e-3, atol=1e-5)
    # version-1 cues: one spike per onset, the band's weight times its strength
    old = make_cues()
    f = flux_frames(old, t, FPS)
    beat_frames = [frame(b) for b in old.beats]
    assert np.allclose(f[beat_frames], min(1.0, sum(HIT_WEIGHT.values())))
    assert np.count_nonzero(f) == len(beat_frames)


def test_pattern_steps_on_hits_and_holds_between():
    cues = make_cues()  # onsets on the beats only: the pattern moves on the beats' frames and holds between
    s = settings()
    c = controls_for(cues, frames(cues), s)
    dz = np.linalg.norm(np.diff(c.z_add.astype(float), axis=0), axis=1)  # dz[i]: frame i -> i + 1
    k = frame(cues.beats[9])
    assert dz[k - 1] > 0.05  # the step lands on the beat's own frame
    # within the sync's peak window the beat's onset is spread a little (FLUX 'spread'), then the pattern holds
    half = round(PEAK_WINDOW * FPS)
    spread = FLUX["spread"] / (2 * half + 1)
    after, before = dz[k + 1: k + half], dz[frame(cues.beats[10]) - 1 - half: frame(cues.beats[10]) - 2]
    assert np.all(after < 1.2 * spread * dz[k - 1]) and np.all(before < 1.2 * spread * dz[k - 1])
    assert np.all(dz[k + half: frame(cues.beats[10]) - 1 - half] < 1e-6)
    assert frame(cues.beats[10]) - k > 3 * half
    # the music's own motion: turned up with the kick, down between the beats
    assert c.z_scale[k] == pytest.approx(MUSIC["floor"] + (MUSIC["peak"] - MUSIC["floor"]) * KICK["beat"], rel=0.05)
    assert c.z_scale[k + 14] == pytest.approx(MUSIC["floor"], abs=0.03)
    # without kicks the music moves the picture as without cues
    assert np.all(controls_for(cues, frames(cues), settings(beat=0.0)).z_scale == 1.0)
    # a fitted picture's music moves it at a constant share: no jump of its (larger) drive on the beats
    pic = controls_for(cues, frames(cues), s, kind="picture")
    assert PICTURE_MUSIC["floor"] == PICTURE_MUSIC["peak"] and np.allclose(pic.z_scale, PICTURE_MUSIC["floor"])
    # and its kicks are PICTURE_KICK of the abstract network's (zoom and light)
    assert c.brightness[k] > 0.03
    assert pic.brightness[k] == pytest.approx(PICTURE_KICK * c.brightness[k], rel=1e-5)
    assert 1.0 - pic.zoom[k] / pic.zoom[k - 3] == pytest.approx(PICTURE_KICK * (1.0 - c.zoom[k] / c.zoom[k - 3]),
                                                                 rel=0.05)


def test_returning_section_returns_to_its_look():
    secs = [Section(0.0, 8.0, "A"), Section(8.0, 16.0, "B"), Section(16.0, 24.0, "A")]
    cues = make_cues(sections=secs)
    s = settings()
    c = controls_for(cues, frames(cues), s)
    a1, b, a2 = frame(6.0 - 0.1), frame(14.0 - 0.1), frame(22.0 - 0.1)  # just before a beat: the kick released
    assert c.hue[a1] == pytest.approx(c.hue[a2]) and c.zoom[a1] == pytest.approx(c.zoom[a2])
    assert abs(c.hue[b] - c.hue[a1]) > 10.0 and c.zoom[b] != pytest.approx(c.zoom[a1])
    # the look's input offset: the same for both A's (without the kicks' steps), another for B
    flat = controls_for(cues, frames(cues), settings(beat=0.0))
    np.testing.assert_allclose(flat.z_add[a1], flat.z_add[a2], atol=1e-6)
    assert np.linalg.norm(flat.z_add[b] - flat.z_add[a1]) > 0.3


def test_transition_takes_the_bars_and_ends_on_the_sections_downbeat():
    secs = [Section(0.0, 8.0, "A"), Section(8.0, 24.0, "B")]
    cues = make_cues(sections=secs)
    for bars in (1.0, 2.0):
        c = controls_for(cues, frames(cues), settings(transition=bars, beat=0.0))
        start, end = frame(8.0 - bars * BAR), frame(8.0)
        h = c.hue.astype(float)
        assert h[start - 1] == pytest.approx(h[0]), "the change starts `transition` bars before"
        assert h[end] == pytest.approx(h[-1]), "and ends on the section's first downbeat"
        moving = np.flatnonzero(np.abs(np.diff(h)) > 1e-4)
        assert moving.min() >= start - 1 and moving.max() <= end - 1
        assert len(moving) >= 0.8 * (end - start)
    cut = controls_for(cues, frames(cues), settings(transition=0.0, beat=0.0))
    assert np.flatnonzero(np.abs(np.diff(cut.hue)) > 1e-4).tolist() == [frame(8.0) - 1]


def test_drop_bursts():
    cues = make_cues(drops=[8.0])
    c = controls_for(cues, frames(cues), settings())
    plain = controls_for(make_cues(), frames(cues), settings())
    k = frame(8.0)
    assert c.saturation[k] > 1.3 and plain.saturation[k] == pytest.approx(1.0)
    assert c.brightness[k] > plain.brightness[k] + 0.1
    assert c.zoom[k] < plain.zoom[k] * 0.9
    # released over about a bar
    assert c.saturation[k + frame(BAR)] < 1.0 + 0.2 * (c.saturation[k] - 1.0)


def test_silence_rests():
    rest = Span(8.0, 14.0)
    cues = make_cues(silence=[rest])
    c = controls_for(cues, frames(cues), settings())
    inside = slice(frame(rest.start + 1.0), frame(rest.end - 0.5))
    assert np.all(c.z_scale[inside] == 0.0)
    assert np.allclose(c.brightness[inside], REST["brightness"])  # dimmed, no kicks
    assert np.allclose(c.zoom[inside], c.zoom[inside][0])
    dz = np.linalg.norm(np.diff(c.z_add[inside].astype(float), axis=0), axis=1)
    assert np.all(dz < 1e-6)  # the pattern holds
    assert c.z_scale[frame(4.0) + 3] > 0.1  # outside the silence the music moves


def test_stem_roles_differ_as_documented():
    cues = make_cues()
    n, s = frames(cues), settings()
    by = {role: controls_for(cues, n, s, role=role) for role in ("all", "kick", "scale", "colour", "look")}
    k = frame(cues.beats[9])
    kicks = {role: float(c.brightness[k]) for role, c in by.items()}
    assert kicks["kick"] > kicks["all"] > kicks["look"] > kicks["scale"] > 0
    assert kicks["kick"] / kicks["all"] == pytest.approx(ROLE_KICK["kick"], rel=0.05)
    away = frame(cues.beats[9] + 0.45)  # the kick released
    assert by["scale"].zoom[away] < by["all"].zoom[away] * 0.9  # the bass scales the picture
    assert abs(by["colour"].hue[away] - by["all"].hue[away]) > 10  # the vocals turn the colour
    assert by["colour"].saturation[away] > 1.2
    assert STEM_ROLES["drums"] == "kick" and STEM_ROLES["percussive"] == "kick"
    assert STEM_ROLES["bass"] == "scale" and STEM_ROLES["vocals"] == "colour" and STEM_ROLES["harmonic"] == "look"


def test_pulse_envelope_piles_up_and_releases_linearly():
    env = pulse_envelope(np.array([1.0, 1.1]), np.array([1.0, 0.5]), np.array([1.0, 1.0]), 90, 30.0, release=0.8)
    assert env[29] == 0.0 and env[30] == pytest.approx(1.0)
    assert env[33] == pytest.approx(1.0 - 3 / 24 + 0.5)  # the second hit adds to what is left of the first
    steps = np.diff(env[34:45])
    np.testing.assert_allclose(steps, -1 / 24)  # a constant rate: 1 per 0.8 of the period
    assert env[-1] == 0.0
    capped = pulse_envelope(np.array([0.0, 0.1, 0.2]), np.ones(3), np.ones(3), 30, 30.0, cap=1.5)
    assert capped.max() == pytest.approx(1.5)
    # outside the frames or without amplitude: nothing
    assert not pulse_envelope(np.array([-1.0, 5.0]), np.array([1.0, 1.0]), np.ones(2), 30, 30.0).any()
    burst = kick_envelope(np.array([0.0]), np.array([1.0]), np.array([2.0]), 90, 30.0, release=0.5)
    assert burst[0] == 1.0 and burst[30] == pytest.approx(np.exp(-1.0))


def test_cues_of_schema_version_1_are_read_without_a_flux():
    from neuromv.cues import SCHEMA_VERSION

    cues = make_cues()
    cues.flux, cues.flux_rate = np.linspace(0.0, 1.0, 240, dtype=np.float32), 10.0
    doc = cues.to_json()
    assert doc["neuromv_cues"] == SCHEMA_VERSION == 2 and len(doc["flux"]["values"]) == 240
    back = Cues.from_json(doc)
    np.testing.assert_allclose(back.flux, cues.flux, atol=5e-4)
    assert back.flux_rate == 10.0
    del doc["flux"]
    doc["neuromv_cues"] = 1
    old = Cues.from_json(doc)
    assert len(old.flux) == 0
    c = controls_for(old, frames(old), settings())  # the onsets make the flux
    assert np.linalg.norm(np.diff(c.z_add.astype(float), axis=0), axis=1).max() > 0.05
