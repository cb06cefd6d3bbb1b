"""neuromv.sync and ``neuromv sync``: the motion envelope, visual beats, the sync report, and its negative controls
(the same frames shifted or shuffled must score lower on every count)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from neuromv.audio import Audio
from neuromv.errors import AudioError, ParameterError, VideoError
from neuromv.sync import (BAS_SIGMA, MotionEnvelope, SyncReport, beat_alignment_score, measure_sync, sync_video,
                          visual_beats)
from neuromv.video import VideoWriter

FPS = 30
BPM = 120
DURATION = 8.0
SR = 22050
W, H = 96, 64
SHIFT = 6  # frames: 200 ms
#: the clicks: on the beat from 0.5 s (120 BPM)
CLICKS = np.arange(0.5, DURATION - 0.25, 60 / BPM)


def click_song(sr: int = SR) -> Audio:
    """Kicks at :data:`CLICKS` over a quiet pad."""
    n = int(DURATION * sr)
    t = np.arange(n) / sr
    y = 0.03 * np.sin(2 * np.pi * 220 * t)
    k = int(0.12 * sr)
    tk = np.arange(k) / sr
    kick = np.sin(2 * np.pi * (55 * tk + 4 * (1 - np.exp(-tk / 0.03)))) * np.exp(-tk / 0.04)
    kick += np.random.default_rng(0).standard_normal(k) * np.exp(-tk / 0.008) * 0.3
    for c in CLICKS:
        i = int(round(c * sr))
        y[i:i + k] += kick[: n - i]
    return Audio((0.8 * y / np.abs(y).max()).astype(np.float32)[None, :], sr)


def flash_frames(shift: int = 0) -> list[np.ndarray]:
    """A textured picture that flashes on each click (attack in one frame, release over 100 ms), ``shift`` frames
    late."""
    yy, xx = np.mgrid[0:H, 0:W]
    texture = (0.5 + 0.25 * np.sin(xx / 5.0) * np.cos(yy / 7.0))[..., None] * np.array([1.0, 0.8, 0.6])
    hits = np.round(CLICKS * FPS).astype(int) + shift
    frames = []
    for i in range(int(DURATION * FPS)):
        since = i - hits[hits <= i]
        level = 0.25 + 0.75 * (np.exp(-since.min() / (0.1 * FPS)) if len(since) else 0.0)
        frames.append(np.clip(255 * level * texture, 0, 255).astype(np.uint8))
    return frames


def write_video(path: Path, frames: list[np.ndarray], audio: Audio | None) -> Path:
    with VideoWriter(path, W, H, FPS, audio=audio, preset="ultrafast") as w:
        for f in frames:
            w.write(f)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sync")
    song = click_song()
    frames = flash_frames()
    shuffled = [frames[i] for i in np.random.default_rng(1).permutation(len(frames))]
    return {
        "good": write_video(d / "good.mp4", frames, song),
        "shifted": write_video(d / "shifted.mp4", flash_frames(SHIFT), song),
        "shuffled": write_video(d / "shuffled.mp4", shuffled, song),
        "silent_video": write_video(d / "noaudio.mp4", frames, None),
        "song": _write_wav(d / "song.wav", song),
    }


@pytest.fixture(scope="module")
def reports(videos) -> dict[str, SyncReport]:
    return {k: sync_video(videos[k]) for k in ("good", "shifted", "shuffled")}


def _write_wav(path: Path, audio: Audio) -> Path:
    from neuromv.audio import save_wav

    save_wav(path, audio)
    return path


# -- the measurement --------------------------------------------------------------------------------------------

def test_synced_video_scores_high(reports):
    rep = reports["good"]
    frame_ms = 1000 / FPS
    assert abs(rep.lag_ms) <= frame_ms + 1e-6
    assert rep.r > 0.7 and rep.r_at_lag >= rep.r
    assert rep.bas > 0.8
    assert rep.f_measure >= 0.9
    assert rep.n_music_beats == pytest.approx(len(CLICKS), abs=1)
    assert rep.n_visual_beats == len(CLICKS)
    assert rep.tempo == pytest.approx(BPM, rel=0.02)
    assert rep.frames == DURATION * FPS and rep.fps == FPS and rep.sigma_ms == 50 and rep.tolerance_ms == 70


def test_negative_control_shifted_frames(reports):
    """The same frames 6 frames (200 ms) late: the lag says so, and r near zero lag, BAS and F all drop."""
    good, bad = reports["good"], reports["shifted"]
    assert bad.lag_ms == pytest.approx(good.lag_ms + SHIFT * 1000 / FPS, abs=1000 / FPS + 1e-6)
    assert bad.r_at_lag > 0.7  # the motion still follows the music, late
    assert bad.r < good.r - 0.3
    assert bad.bas < good.bas - 0.5
    assert bad.f_measure < 0.2


def test_negative_control_shuffled_frames(reports):
    good, bad = reports["good"], reports["shuffled"]
    assert bad.r < good.r - 0.4 and bad.r_at_lag < good.r_at_lag - 0.4
    assert bad.bas < good.bas - 0.3
    assert bad.f_measure < good.f_measure - 0.4


def test_report_line_and_dict(reports):
    rep = reports["good"]
    line = str(rep)
    assert line.startswith("sync: lag ") and "\n" not in line
    for part in (f"r {rep.r:.2f}", f"BAS {rep.bas:.2f} (sigma 50 ms)", f"beat F {rep.f_measure:.2f} (+-70 ms)",
                 f"{rep.n_visual_beats} visual / {rep.n_music_beats} musical beats", "BPM"):
        assert part in line
    d = rep.to_dict()
    assert json.loads(json.dumps(d)) == d and d["bas"] == rep.bas


def test_progress_and_cancel(videos):
    import threading

    from neuromv.errors import Interrupted

    seen = []
    sync_video(videos["good"], progress=lambda stage, done, total: seen.append((stage, done)))
    assert seen[0] == ("sync", 0) and seen[-1] == ("sync", DURATION * FPS)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Interrupted):
        sync_video(videos["good"], cancel=cancel)


def test_song_given_separately(videos, reports):
    """A video without audio, measured against the song given beside it, scores as the video with it muxed."""
    rep = sync_video(videos["silent_video"], videos["song"])
    good = reports["good"]
    assert rep.f_measure == pytest.approx(good.f_measure, abs=0.05)
    assert rep.r == pytest.approx(good.r, abs=0.05)


def test_measure_sync_on_arrays():
    """Pure arrays: an envelope that is the onset strength 2 frames late, with beats on its peaks."""
    fps = 30.0
    n = 300
    onset = np.zeros(n)
    hits = np.arange(15, n, 15)
    onset[hits] = 10.0
    envelope = np.zeros(n)
    envelope[hits + 2] = 5.0
    rep = measure_sync(envelope, onset, hits / fps, fps)
    assert rep.lag_ms == pytest.approx(2000 / fps)
    assert rep.r_at_lag == pytest.approx(1.0)
    assert rep.r < 0.1  # not within one frame
    assert rep.n_visual_beats == len(hits) - 1 or rep.n_visual_beats == len(hits)
    assert rep.bas == pytest.approx(np.exp(-(2 / fps) ** 2 / (2 * BAS_SIGMA ** 2)), rel=1e-6)
    assert rep.f_measure == pytest.approx(1.0)  # 67 ms: inside +-70 ms
    with pytest.raises(ParameterError):
        measure_sync(envelope, onset, hits / fps, 0)


def test_beat_alignment_score_definition():
    music = np.array([1.0, 2.0, 3.0])
    assert beat_alignment_score(music, music) == pytest.approx(1.0)
    # averaged over the visual beats: one visual beat exactly on a musical beat scores 1, however many beats
    # the music has
    assert beat_alignment_score(np.array([2.0]), music) == pytest.approx(1.0)
    off = beat_alignment_score(np.array([2.05]), music)
    assert off == pytest.approx(np.exp(-0.5))  # one sigma away
    assert beat_alignment_score(np.array([]), music) == 0.0 and beat_alignment_score(music, np.array([])) == 0.0


def test_visual_beats_one_per_hit_and_none_when_still():
    fps = 30.0
    env = np.zeros(200)
    for h in (20, 50, 80, 110):
        env[h:h + 6] = 40 * np.exp(-np.arange(6) / 2.0)
    np.testing.assert_allclose(visual_beats(env, fps), np.array([20, 50, 80, 110]) / fps)
    noise = np.abs(np.random.default_rng(0).normal(0, 0.05, 200))  # codec noise of a still picture
    assert len(visual_beats(noise, fps)) == 0


def test_motion_envelope_rgb_and_i420_agree():
    """The same frames as RGB and as the render's I420 (limited range) give the same envelope."""
    import torch

    from neuromv.renderer.dense import rgb_to_i420

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(4)]
    a, b = MotionEnvelope(), MotionEnvelope()
    for f in frames:
        a.add(f)
        b.add(rgb_to_i420(torch.from_numpy(f).reshape(1, -1, 3), 64, 96)[0].numpy())
    assert a.envelope[0] == 0 and len(a) == 4
    np.testing.assert_allclose(a.envelope, b.envelope, rtol=0.05, atol=0.5)


def test_motion_envelope_values_and_errors():
    env = MotionEnvelope()
    for v in (10, 20, 20, 50):
        env.add(np.full((8, 8, 3), v, np.uint8))
    np.testing.assert_allclose(env.envelope, [0, 10, 0, 30], atol=1e-3)
    with pytest.raises(ParameterError, match="after frames"):
        env.add(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ParameterError, match="uint8"):
        env.add(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ParameterError):
        env.add(np.zeros((8, 8), np.uint8))  # not I420 (rows not a multiple of 3)


# -- a real render ----------------------------------------------------------------------------------------------

def test_report_of_a_real_render(tmp_path):
    import neuromv

    out = neuromv.render(click_song(), tmp_path / "r.mp4", width=160, height=90, preset="ultrafast",
                         image="none", duration=4.0).path
    rep = sync_video(out)
    assert rep.frames == 120 and rep.n_music_beats >= 6
    assert -1 <= rep.r <= 1 and 0 <= rep.bas <= 1 and 0 <= rep.f_measure <= 1
    assert rep.r > 0.2  # the abstract CPPN's motion follows the kicks


# -- bad input ----------------------------------------------------------------------------------------------------

def test_bad_inputs(tmp_path, videos):
    with pytest.raises(VideoError, match="no such file"):
        sync_video(tmp_path / "missing.mp4")
    (tmp_path / "text.mp4").write_text("not a video\n" * 10)
    with pytest.raises(VideoError, match="not a readable video"):
        sync_video(tmp_path / "text.mp4")
    with pytest.raises(VideoError, match="has no video stream"):
        sync_video(videos["song"])
    with pytest.raises(AudioError, match="has no audio track"):
        sync_video(videos["silent_video"])
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    with pytest.raises(VideoError, match="FIFO"):
        sync_video(fifo)
    with pytest.raises(VideoError, match="directory"):
        sync_video(tmp_path)
    with pytest.raises(AudioError, match="no such file"):
        sync_video(videos["silent_video"], tmp_path / "missing.wav")


# -- the command line ---------------------------------------------------------------------------------------------

def test_cli_prints_the_report(videos, capsys):
    from neuromv.cli import main

    assert main(["sync", str(videos["good"])]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("sync: lag ")
    assert main(["sync", str(videos["silent_video"]), str(videos["song"]), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["f_measure"] >= 0.9 and set(d) >= {"lag_ms", "r", "r_at_lag", "bas", "sigma_ms", "tempo"}


@pytest.mark.parametrize("args, message", [
    (["missing.mp4"], "no such file"),
    (["fifo.mp4"], "FIFO"),
    (["noaudio"], "has no audio track"),
    (["text.mp4"], "not a readable video"),
])
def test_cli_errors(tmp_path, videos, capsys, args, message):
    from neuromv.cli import main

    (tmp_path / "text.mp4").write_text("not a video\n" * 10)
    os.mkfifo(tmp_path / "fifo.mp4")
    argv = [str(videos["silent_video"]) if a == "noaudio" else str(tmp_path / a) for a in args]
    assert main(["sync", *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neuromv: error: ") and message in err[0]


def test_cli_as_a_program(videos, tmp_path):
    """``python -m neuromv sync``: the report on stdout, exit 0; a missing file: one line on stderr, exit 1."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "neuromv", "sync", str(videos["good"])], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("sync: lag ") and p.stdout.count("\n") == 1
    p = subprocess.run([sys.executable, "-m", "neuromv", "sync", str(tmp_path / "nope.mp4")], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [f"neuromv: error: {tmp_path / 'nope.mp4'}: no such file"]
