"""Loops (``--loop``), silent videos (``--no-audio``) and animated WebP/GIF output: the written files decoded."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import decode_video, tone, write_audio

from neuromv.cli import main
from neuromv.cues import Cues, Section
from neuromv.demo import structured_song
from neuromv.errors import ParameterError
from neuromv.loop import choose_window, close_panels, close_path, measure_seam, path_ramp, seam_score
from neuromv.pipeline import render

SMALL = dict(width=96, height=64, image="none", fps=30.0)
SMALL_ARGS = ["--size", "96x64", "--image", "none", "-q"]


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """A 24-s song of known form (A B A C A B, 2 bars of 120 BPM each): A is the chorus."""
    audio, _ = structured_song("ABACAB", bpm=120.0, bars=2)
    return write_audio(tmp_path_factory.mktemp("loop") / "song.wav", audio)


def _run(capsys, *argv) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors (a bad choice): one line and exit code 1 all the same
        code = e.code
    return code, capsys.readouterr().err


def test_the_loop_is_seamless_and_the_same_window_unclosed_is_not(song, tmp_path):
    """The mean pixel change across the seam (last frame -> first) of the decoded mp4 is no larger than the median
    change between consecutive frames (x264 at crf 18: the key frame at the loop's start included; before the
    seam was chosen by its step it was 1.1 times the median); the same frames rendered as a plain excerpt (not
    closed) jump."""
    out = tmp_path / "loop.mp4"
    r = render(song, out, loop=2.0, crf=0, **SMALL)
    info, frames = decode_video(out)
    assert len(frames) == r.frames == 60
    closed = measure_seam(frames)
    assert closed.seam <= closed.median, closed
    assert info["acodec"] == "aac" and info["audio_duration"] == pytest.approx(2.0, abs=0.05)

    # negative control: the window the loop chose (the result's start), as a plain excerpt of the same frames
    plain = render(song, tmp_path / "plain.mp4", start=r.settings.start, duration=r.settings.duration, crf=0,
                   **SMALL)
    _, open_frames = decode_video(plain.path)
    assert len(open_frames) == 60
    unclosed = measure_seam(open_frames)
    assert unclosed.seam > unclosed.p90 and unclosed.seam > 3 * closed.seam, (closed, unclosed)


def test_the_chorus_is_chosen_where_a_section_returns_else_the_loudest_window():
    energy = np.full(400, 0.2, np.float32)
    energy[250:300] = 0.9  # the second A (25-30 s) is the loudest
    energy[350:380] = 1.0  # a loud stretch in C, which does not return
    sections = [Section(0, 10, "A"), Section(10, 25, "B"), Section(25, 35, "A"), Section(35, 40, "C")]
    cues = Cues(40.0, tempo=120.0, beats=np.arange(0, 40, 0.5), downbeats=np.arange(0, 40, 2.0),
                sections=sections, energy=energy, energy_rate=10.0)
    w = choose_window(cues, 4.0, 30.0)
    assert 24.0 <= w.start <= 26.0 and w.frames == 120 and "chorus" in w.reason and "2nd" in w.reason
    no_repeat = Cues(40.0, tempo=120.0, beats=cues.beats, downbeats=cues.downbeats,
                     sections=[Section(0, 20, "A"), Section(20, 40, "B")], energy=energy, energy_rate=10.0)
    w = choose_window(no_repeat, 2.0, 30.0)
    assert 33.0 <= w.start <= 36.0 and "most energetic" in w.reason
    assert choose_window(cues, 4.0, 30.0, start=3.3).start == 3.3  # the user's start is kept
    with pytest.raises(ParameterError, match="the song lasts 40.00 s"):
        choose_window(cues, 45.0, 30.0)
    with pytest.raises(ParameterError, match="ends at 40.00 s"):
        choose_window(cues, 5.0, 30.0, start=37.0)


def test_the_seam_is_chosen_between_the_hits():
    """Of the starts offered, close_panels takes the one whose closed seam is the smallest against the loop's median
    step: a path that holds between hits (small steps) and jumps on them (every 15 frames) is not cut on a hit nor
    just after one, while the kick's release still moves it; every panel is closed there and keeps N frames."""
    n, period, choices, lead = 60, 15, 15, 5
    rng = np.random.default_rng(1)
    k = np.arange(lead + n + choices)
    since = (k - 3) % period  # frames since the last hit (a hit on frames 3, 18, 33, ...)
    size = np.where(since == 0, 1.0, np.where(since < 6, 0.3, 0.02))  # hit, release, hold
    steps = rng.standard_normal((len(k), 4))
    steps *= (size / np.linalg.norm(steps, axis=1))[:, None]
    z = np.cumsum(steps, axis=0).astype(np.float32)
    panels = [SimpleNamespace(z=z.copy(), controls=None), SimpleNamespace(z=z[:, ::-1].copy(), controls=None)]
    scores = [seam_score(z[lead + j:lead + j + n + 1], n) for j in range(choices)]
    at = close_panels(panels, n, lead, choices)
    j = at - lead
    assert j == int(np.argmin(scores)) and scores[j] < 1.0 < max(scores), scores
    assert since[at + n] >= 6  # the seam's step (frame N - 1 -> N) is a held one: neither a hit nor a release
    for p in panels:
        assert p.z.shape == (n, 4)
    assert np.allclose(panels[0].z[0], z[at])
    assert close_panels([SimpleNamespace(z=z.copy(), controls=None)], n, lead, 1) == lead  # one choice: kept
    assert seam_score(np.zeros((n + 1, 3)), n) == 0.0  # a still path has no seam


def test_close_path_makes_frame_n_frame_0_and_never_more_than_doubles_a_step():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((41, 5)), axis=0)
    y = close_path(x, 40)
    assert y.shape == (40, 5)
    assert np.allclose(y[0], x[0])
    # the step across the seam (39 -> 0) and every other step: at most twice the original's
    steps = np.linalg.norm(np.diff(np.vstack([y, y[:1]]), axis=0), axis=1)
    orig = np.linalg.norm(np.diff(x, axis=0), axis=1)
    assert np.all(steps <= 2 * orig + 1e-9)
    assert path_ramp(np.zeros((5, 2))).tolist() == [0, 0.25, 0.5, 0.75, 1]  # a still path: even in time


def test_animated_webp_and_gif_loop_forever_with_every_frame(song, tmp_path):
    from PIL import Image

    webp, gif = tmp_path / "loop.webp", tmp_path / "loop.gif"
    r = render(song, webp, loop=1.0, **SMALL)
    render(song, gif, loop=1.0, **SMALL)
    _, ref = decode_video(render(song, tmp_path / "loop.mp4", loop=1.0, **SMALL).path)
    for path in (webp, gif):
        with Image.open(path) as im:
            assert im.format == path.suffix[1:].upper() and im.is_animated
            assert im.n_frames == r.frames == 30 and im.info["loop"] == 0
            frames = []
            for i in range(im.n_frames):
                im.seek(i)
                frames.append(np.asarray(im.convert("RGB")))
        frames = np.stack(frames)
        assert frames.shape == (30, 64, 96, 3)
        # the same pictures as the video: both lossy, WebP and the mp4 with 4:2:0 chroma (48x32 here), GIF with 256
        # colours; on average within 16 levels (measured: WebP 10.8, GIF below that)
        assert np.abs(frames.astype(int) - ref).mean() < 16, path
        assert measure_seam(frames).seam <= measure_seam(frames).p90
    assert not list(tmp_path.glob(".*.part"))  # no temporary file left


def test_an_animated_writer_refuses_frames_after_end_and_still_closes(tmp_path):
    from PIL import Image

    from neuromv.animated import AnimatedWriter
    from neuromv.errors import OutputError

    with AnimatedWriter(tmp_path / "a.gif", 16, 8, 10) as w:
        for i in range(3):
            w.write(np.full((8, 16, 3), 60 * i, np.uint8))
        w.end()
        with pytest.raises(OutputError, match="ended"):
            w.write(np.zeros((8, 16, 3), np.uint8))
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 3


def test_no_audio_writes_a_silent_video(song, tmp_path, capsys):
    out = tmp_path / "canvas.mp4"
    code, err = _run(capsys, "render", song, "-o", out, "--loop", "1", "--no-audio", *SMALL_ARGS)
    assert code == 0, err
    info, frames = decode_video(out)
    assert info["acodec"] is None and len(frames) == 30
    plain = tmp_path / "plain.mp4"
    r = render(song, plain, duration=0.5, audio="off", **SMALL)  # any render, not only loops
    assert decode_video(r.path)[0]["acodec"] is None


def test_a_loop_with_stems_closes_each_panel(song, tmp_path):
    out = tmp_path / "stems.mp4"
    r = render(song, out, loop=1.0, stems="all", separator="hpss", **SMALL)
    _, frames = decode_video(out)
    assert len(frames) == r.frames == 30
    report = measure_seam(frames)
    assert report.seam <= report.p90, report


@pytest.mark.parametrize("args, message", [
    (["--loop", "30"], "a loop of 30 s needs 30.03 s of song; the song lasts 25.00 s"),
    (["--loop", "4", "--start", "22"], "a loop of 4 s from 22 s needs"),
    (["--loop", "0"], "loop must be a number from 0.5 to 60 seconds, not 0"),
    (["--loop", "-2"], "loop must be a number from 0.5 to 60 seconds"),
    (["--loop", "2", "--duration", "3"], "give --loop or --duration, not both"),
    (["--audio", "maybe"], "argument --audio: invalid choice: 'maybe'"),
])
def test_bad_loops_are_one_line_and_exit_1(song, tmp_path, capsys, args, message):
    code, err = _run(capsys, "render", song, "-o", tmp_path / "o.mp4", *SMALL_ARGS, *args)
    assert code == 1 and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_animated_output_refuses_unknown_extensions_and_long_clips(song, tmp_path, capsys):
    code, err = _run(capsys, "render", song, "-o", tmp_path / "o.apng", "--loop", "1", *SMALL_ARGS)
    assert code == 1 and "unsupported extension '.apng'" in err and ".webp or .gif" in err, err
    long_song = write_audio(tmp_path / "long.wav", tone(sr=8000, duration=62.0))
    code, err = _run(capsys, "render", long_song, "-o", tmp_path / "o.gif", *SMALL_ARGS)
    assert code == 1 and err.count("\n") == 1 and "at most 60 s, not 62.00 s" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]
