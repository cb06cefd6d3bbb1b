"""End to end: a song becomes a video; decode what was written and check it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import BEAT_DURATION, BEATS_1, SILENCE, beat_clip, decode_video

import neuromv
from neuromv.errors import AudioError, OutputError, ParameterError

SMALL = dict(width=96, height=64, preset="ultrafast")


@pytest.fixture(scope="module")
def rendered(media, tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "beat.mp4"
    result = neuromv.render(media[".mp3"], out, **SMALL, seed=5)
    return result, decode_video(out)


def test_streams_size_fps_and_frame_count(rendered):
    result, (info, frames) = rendered
    assert info["vcodec"] == "h264" and info["acodec"] == "aac"
    assert (info["width"], info["height"], info["fps"]) == (96, 64, 30)
    n = math.ceil(BEAT_DURATION * 30)
    assert result.frames == n and len(frames) == n
    assert abs(info["audio_duration"] - result.duration) <= 1 / 30
    assert abs(result.duration - BEAT_DURATION) < 0.03


def test_frames_change_on_beats_and_rest_in_silence(rendered):
    _, (_, frames) = rendered
    diff = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))  # diff[i]: frame i -> i+1
    fps = 30
    on_beats = diff[int(BEATS_1[0] * fps):int(BEATS_1[1] * fps) - 1].mean()
    in_silence = diff[int(SILENCE[0] * fps) + 12:int(SILENCE[1] * fps) - 1].mean()  # once the release settles
    assert on_beats > 3.0, on_beats
    assert in_silence < 0.1 * on_beats, (on_beats, in_silence)


def test_same_seed_same_video_bit_for_bit(rendered, media, tmp_path):
    result, (_, frames) = rendered
    again = neuromv.render(media[".mp3"], tmp_path / "again.mp4", **SMALL, seed=5)
    np.testing.assert_array_equal(decode_video(again.path)[1], frames)
    assert again.path.read_bytes() == result.path.read_bytes()
    other = neuromv.render(media[".mp3"], tmp_path / "other.mp4", **SMALL, seed=6)
    assert np.abs(decode_video(other.path)[1].astype(int) - frames).mean() > 10


def test_from_audio_object_excerpt_and_progress(tmp_path):
    events = []
    result = neuromv.render(beat_clip(), tmp_path / "x.mp4", width=48, height=32, start=0.5, duration=1.0, fps=24,
                            progress=lambda stage, done, total: events.append((stage, done, total)))
    info, frames = decode_video(result.path)
    assert len(frames) == 24 and info["fps"] == 24
    assert abs(info["audio_duration"] - 1.0) <= 1 / 24
    assert events[0] == ("render", 0, 24) and events[-1] == ("render", 24, 24)


def test_odd_size_is_rounded_up(tmp_path, caplog):
    result = neuromv.render(beat_clip(duration=0.5), tmp_path / "odd.mp4", width=33, height=21)
    info, _ = decode_video(result.path)
    assert (info["width"], info["height"]) == (34, 22)
    assert "rounded up to 34x22" in caplog.text


def test_size_as_string_and_settings_object(tmp_path):
    settings = neuromv.RenderSettings(seed=3, fps=12)
    result = neuromv.render(beat_clip(duration=0.5), tmp_path / "s.mp4", settings, size="40x30")
    assert result.settings.seed == 3 and (result.settings.width, result.settings.height) == (40, 30)
    assert result.frames == 6


@pytest.mark.parametrize(
    "key, error, message",
    [
        ("text", AudioError, "not a readable audio file"),
        ("truncated", AudioError, "truncated"),
        ("empty", AudioError, "empty"),
        ("silent", AudioError, "digital silence"),
    ],
)
def test_bad_audio_leaves_no_output(media, tmp_path, key, error, message):
    out = tmp_path / "v.mp4"
    with pytest.raises(error, match=message):
        neuromv.render(media[key], out, **SMALL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options",
    [{"fps": 0}, {"width": 0, "height": 0}, {"n_mels": 0}, {"reactivity": -1}, {"device": "tpu"}, {"bogus": 1}],
)
def test_bad_options_fail_before_any_work(media, tmp_path, options):
    with pytest.raises(ParameterError):
        neuromv.render(media[".wav"], tmp_path / "v.mp4", **options)
    assert list(tmp_path.iterdir()) == []


def test_output_equal_to_input_is_refused(media):
    before = media[".m4a"].read_bytes()
    with pytest.raises(OutputError, match="is the input"):
        neuromv.render(media[".m4a"], media[".m4a"], overwrite=True)
    assert media[".m4a"].read_bytes() == before


def test_demo_song_renders(tmp_path):
    song = neuromv.demo_song(duration=2.0)
    assert song.channels == 2 and abs(song.duration - 2.0) < 1e-3
    result = neuromv.render(song, tmp_path / "demo.mp4", width=64, height=36)
    assert result.frames == 60


def test_cancel_event_stops_between_frames_and_leaves_nothing(tmp_path):
    import threading

    from neuromv.errors import Interrupted

    cancel = threading.Event()
    seen = []

    def progress(stage, done, total):
        seen.append(done)
        if done == 3:
            cancel.set()

    with pytest.raises(Interrupted):
        neuromv.render(beat_clip(), tmp_path / "v.mp4", width=48, height=32, progress=progress, cancel=cancel)
    assert max(seen) == 3
    assert list(tmp_path.iterdir()) == []
