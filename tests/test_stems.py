"""Rendering with stems: one CPPN per stem, composed into one video with the original audio."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys

import numpy as np
import pytest
from conftest import decode_video

import neuromv
from neuromv.audio import Audio
from neuromv.errors import ParameterError
from neuromv.pipeline import panel_boxes
from neuromv.settings import RenderSettings


def _tone_and_clicks(sr=22050, seconds=3.0):
    t = np.arange(int(sr * seconds)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))  # a slow swell
    clicks = np.zeros_like(t)
    clicks[:: sr // 2] = 0.9  # two per second
    return Audio(np.stack([tone + clicks, tone + clicks]).astype(np.float32), sr)


def test_panel_boxes():
    assert panel_boxes(2, 640, 360) == [(0, 0, 320, 360), (320, 0, 320, 360)]
    assert panel_boxes(4, 640, 360) == [(0, 0, 320, 180), (320, 0, 320, 180), (0, 180, 320, 180), (320, 180, 320, 180)]
    three = panel_boxes(3, 640, 360)  # auto: a 2x2 grid, the last cell empty
    assert three == [(0, 0, 320, 180), (320, 0, 320, 180), (0, 180, 320, 180)]
    assert panel_boxes(3, 600, 200, "side-by-side") == [(0, 0, 200, 200), (200, 0, 200, 200), (400, 0, 200, 200)]
    assert panel_boxes(2, 64, 36, "blend") == [(0, 0, 64, 36)] * 2


def test_stem_names_are_checked():
    assert RenderSettings(stems="all").stem_names() == ("vocals", "accompaniment")
    assert RenderSettings(stems="percussive,harmonic", separator="hpss").stem_names() == ("harmonic", "percussive")
    with pytest.raises(ParameterError, match="it makes: vocals, accompaniment"):
        RenderSettings(stems="drums")
    with pytest.raises(ParameterError, match="unknown separator"):
        RenderSettings(stems="all", separator="magic")
    with pytest.raises(ParameterError, match="layout"):
        RenderSettings(layout="mosaic")


def test_each_panel_follows_its_own_stem(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="neuromv")
    audio = _tone_and_clicks()
    r = neuromv.render(audio, tmp_path / "s.mp4", width=96, height=48, preset="ultrafast", stems="all",
                       separator="hpss")
    info, frames = decode_video(r.path)
    assert (info["width"], info["height"]) == (96, 48) and len(frames) == 90
    assert abs(info["audio_duration"] - 3.0) < 0.05  # the original song's audio, not a stem's
    left, right = frames[:, :, :48].astype(np.int16), frames[:, :, 48:].astype(np.int16)
    d_left = np.abs(np.diff(left, axis=0)).mean(axis=(1, 2, 3))  # harmonic: the slow swell
    d_right = np.abs(np.diff(right, axis=0)).mean(axis=(1, 2, 3))  # percussive: the clicks
    clicks = np.arange(15, 90, 15)  # frame i shows time i/30: a click every 15 frames
    jump = d_right[clicks - 1]  # the change into each click frame
    assert jump.mean() > 3 * np.median(d_right), (jump, np.median(d_right))
    # the harmonic panel has its own time course (HPSS leaks some click energy into it, so it is not silent there)
    assert np.corrcoef(d_left, d_right)[0, 1] < 0.8, np.corrcoef(d_left, d_right)[0, 1]
    assert not np.array_equal(left, right)
    # same song and backend again: the separation comes from the cache
    neuromv.render(audio, tmp_path / "t.mp4", width=96, height=48, preset="ultrafast", stems="all", separator="hpss")
    assert "reusing the cached separation" in caplog.text


def test_spleeter_stems_blend_and_labels(tmp_path):
    from neuromv.demo import demo_song

    r = neuromv.render(demo_song(2.0), tmp_path / "b.mp4", width=64, height=36, preset="ultrafast",
                       stems="vocals,accompaniment", layout="blend", labels=True)
    info, frames = decode_video(r.path)
    assert (info["width"], info["height"]) == (64, 36) and len(frames) == 60
    assert r.image == "stems: vocals, accompaniment"


def test_stem_images_and_errors_before_work(tmp_path):
    from conftest import write_cover

    cover = write_cover(tmp_path / "c.png", 64)
    with pytest.raises(ParameterError, match="not rendered: drums"):
        neuromv.render(_tone_and_clicks(), tmp_path / "x.mp4", stems="all", image={"drums": cover})
    with pytest.raises(ParameterError, match="need stems"):
        neuromv.render(_tone_and_clicks(), tmp_path / "x.mp4", image={"vocals": cover})
    from PIL import Image

    red = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (220, 30, 30)).save(red)
    r = neuromv.render(_tone_and_clicks(seconds=1.0), tmp_path / "i.mp4", width=64, height=32, preset="ultrafast",
                       stems="all", separator="hpss", image={"harmonic": red}, fit_steps=100)
    _, frames = decode_video(r.path)
    harmonic, percussive = frames[:, :, :32].reshape(-1, 3).mean(0), frames[:, :, 32:].reshape(-1, 3).mean(0)
    # the harmonic panel shows its own (solid red) image; the percussive one stays abstract
    assert harmonic[0] > 150 and harmonic[1] < 80 and harmonic[2] < 80, harmonic
    assert np.abs(harmonic - (220, 30, 30)).mean() + 40 < np.abs(percussive - (220, 30, 30)).mean(), percussive
    assert not (tmp_path / "x.mp4").exists()


def test_cli_stems_on_a_short_mono_8k_file(tmp_path):
    from conftest import tone, write_audio

    song = write_audio(tmp_path / "m.wav", tone(sr=8000, duration=1.0, channels=1))
    out = tmp_path / "v.mp4"
    p = subprocess.run([sys.executable, "-m", "neuromv", "render", str(song), "-o", str(out), "--size", "64x32",
                        "--preset", "ultrafast", "--stems", "all", "--labels"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    info, frames = decode_video(out)
    assert len(frames) == 30 and info["acodec"] == "aac"
    p = subprocess.run([sys.executable, "-m", "neuromv", "render", str(song), "-o", str(out), "--stems", "drums"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "it makes: vocals, accompaniment" in p.stderr
    if importlib.util.find_spec("demucs") is None:  # a backend that cannot run: one line, before any work
        p = subprocess.run([sys.executable, "-m", "neuromv", "render", str(song), "-o", str(out), "--overwrite",
                            "--stems", "all", "--separator", "demucs"], capture_output=True, text=True, timeout=300)
        assert p.returncode == 1 and p.stderr.strip().splitlines() == [
            "neuromv: error: separator 'demucs' needs the optional extra: pip install 'neuromv[demucs]'"], p.stderr


def test_four_stems_in_a_grid_with_a_loaded_separator(tmp_path, caplog):
    """demucs' four stems (a tiny randomly initialised HTDemucs: the plumbing, not the quality) in a 2x2 grid."""
    pytest.importorskip("demucs")
    import torch
    from demucs.htdemucs import HTDemucs

    from neuromv.separate import Separator

    caplog.set_level(logging.INFO, logger="neuromv")
    torch.manual_seed(0)
    model = HTDemucs(sources=["drums", "bass", "other", "vocals"], channels=8, depth=2, t_layers=1, nfft=512,
                     segment=2, samplerate=8000)
    sep = Separator("demucs", device="cpu", model=model)
    audio = _tone_and_clicks(sr=8000, seconds=2.0)
    r = neuromv.render(audio, tmp_path / "g.mp4", width=64, height=36, preset="ultrafast", stems="all",
                       separator=sep, labels=True)
    info, frames = decode_video(r.path)
    assert (info["width"], info["height"]) == (64, 36) and len(frames) == 60
    assert abs(info["audio_duration"] - 2.0) < 0.05
    assert r.image == "stems: drums, bass, other, vocals"
    panels = [frames[:, y:y + h, x:x + w].astype(np.int16) for x, y, w, h in panel_boxes(4, 64, 36, "grid")]
    assert [p.shape[1:3] for p in panels] == [(18, 32)] * 4
    for i, p in enumerate(panels):
        assert np.abs(np.diff(p, axis=0)).mean() > 0.5, i  # every panel moves with its stem
        for q in panels[i + 1:]:
            assert np.abs(p - q).mean() > 5  # its own CPPN (seed + i)
    assert "reusing the cached separation" not in caplog.text
    neuromv.render(audio, tmp_path / "h.mp4", width=64, height=36, preset="ultrafast", stems="all", separator=sep)
    assert "reusing the cached separation" not in caplog.text  # a model object of its own is never cached
