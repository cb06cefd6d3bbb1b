"""neuromv.features: frame count, timing, loudness invariance, silence, smoothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import BEATS_1, SILENCE, beat_clip

from neuromv.errors import ParameterError
from neuromv.features import mel_power, n_video_frames, normalize, smooth_release, song_latents, standardize


@pytest.mark.parametrize("fps", [24, 25, 29.97, 30, 60])
@pytest.mark.parametrize("seconds", [0.5, 1.0, 1.01, 2.345])
def test_frame_count_is_ceil_of_duration_times_fps(fps, seconds):
    sr = 22050
    n = int(round(seconds * sr))
    y = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    z = song_latents(y, sr, fps=fps, n_mels=8)
    expected = math.ceil(n / sr * fps - 1e-9)
    assert z.shape == (expected, 8)
    assert n_video_frames(n, sr, fps) == expected
    assert np.all(np.isfinite(z))


def test_exact_counts_without_float_error():
    assert n_video_frames(22050 * 3, 22050, 30) == 90  # 3 s is exactly 90 frames, not 91
    assert n_video_frames(22050 * 3 + 1, 22050, 30) == 91


def test_mel_power_shape_and_hop():
    sr = 22050
    y = np.zeros(sr, np.float32)
    y[sr // 2] = 1.0  # a click at 0.5 s
    S = mel_power(y, sr, fps=30, n_mels=16)
    assert S.shape == (16, 30)
    assert int(S.sum(axis=0).argmax()) == 15  # frame 15 is centred on t = 0.5 s


def test_loudness_does_not_change_the_latents():
    y = beat_clip(sr=22050).mono()
    loud = song_latents(y, 22050)
    quiet = song_latents(y * 0.01, 22050)
    np.testing.assert_allclose(quiet, loud, atol=1e-3)


def test_latents_are_unit_scaled():
    z = song_latents(beat_clip(sr=22050).mono(), 22050, n_mels=32, smooth=0)
    assert abs(np.sqrt(np.mean(np.sum(z**2, axis=1))) - 1.0) < 1e-4
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)


def test_silence_gives_zeros_not_nan():
    z = song_latents(np.zeros(22050, np.float32), 22050)
    assert np.all(z == 0)
    assert np.all(normalize(np.zeros((4, 10))) == 0)
    assert np.all(standardize(np.full((4, 10), -80.0)) == 0)


def test_latents_move_on_beats_and_rest_in_silence():
    fps = 30
    z = song_latents(beat_clip(sr=22050).mono(), 22050, fps=fps)
    step = np.linalg.norm(np.diff(z, axis=0), axis=1)
    beats = step[int(BEATS_1[0] * fps) + 1:int(BEATS_1[1] * fps) - 1].mean()
    silence = step[int(SILENCE[0] * fps) + 12:int(SILENCE[1] * fps) - 1].mean()  # after the release has settled
    assert beats > 0.1
    assert silence < 0.02 * beats


def test_smoothing_attacks_instantly_and_releases_slowly():
    x = np.zeros((1, 40), np.float32)
    x[0, 10] = 1.0
    y = smooth_release(x, fps=30, release=0.2)
    assert y[0, 10] == 1.0  # onset kept on its frame
    assert y[0, 9] == 0.0  # nothing before it
    a = math.exp(-1 / (30 * 0.2))
    np.testing.assert_allclose(y[0, 11:14], [a, a**2, a**3], rtol=1e-5)
    np.testing.assert_array_equal(smooth_release(x, fps=30, release=0), x)


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"fps": -1}, {"fps": float("nan")}, {"n_mels": 0}, {"n_mels": 1000}])
def test_bad_parameters(kwargs):
    with pytest.raises(ParameterError):
        song_latents(np.ones(2205, np.float32), 22050, **kwargs)


def test_smoothing_rejects_negative_release():
    with pytest.raises(ParameterError):
        smooth_release(np.zeros((1, 3)), fps=30, release=-1)


@pytest.mark.parametrize("fps", [30, 24, 25])
def test_mel_stream_equals_librosa_on_the_whole_signal_in_any_blocks(fps):
    import librosa

    from neuromv.features import MelStream

    rng = np.random.default_rng(fps)
    y = (rng.standard_normal(22050 * 3 + 123) * np.linspace(0, 1, 22050 * 3 + 123)).astype(np.float32)
    hop = round(22050 / fps)
    ref = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=2 * hop, hop_length=hop, window="hann",
                                         center=True, power=2.0, n_mels=32, fmax=11025)
    whole = mel_power(y, 22050, fps=fps)
    mel = MelStream(22050, fps=fps)
    for block in np.array_split(y, 37):  # blocks shorter and longer than a window
        mel.feed(block)
    assert np.allclose(mel.finish(), whole, rtol=1e-4, atol=1e-6 * whole.max())
    if 22050 % fps == 0:  # whole hop: librosa's columns themselves
        assert np.allclose(whole, ref[:, : whole.shape[1]], rtol=1e-4, atol=1e-6 * ref.max())


def test_latents_from_blocks_equal_song_latents():
    from neuromv.features import latents_from_blocks

    x = (np.random.default_rng(0).standard_normal((2, 44100 * 3)) * 0.3).astype(np.float32)
    whole = song_latents(x.mean(axis=0), 44100, n_mels=16)
    streamed = latents_from_blocks((x[:, i:i + 777] for i in range(0, x.shape[1], 777)), 44100, n_mels=16)
    assert streamed.shape == whole.shape == (90, 16)
    assert np.abs(streamed - whole).max() < 1e-4
    with pytest.raises(ParameterError, match="no audio"):
        latents_from_blocks([], 44100)


@pytest.mark.parametrize("sr", [22050, 44100, 48000])
def test_max_mels_leaves_no_mel_filter_empty(sr):
    """neuromv.limits.max_mels: at every allowed frame rate, that many bands each hold an FFT bin (librosa's own
    filter bank), and the frame rates bound the window: 1 fps is a 2 s window."""
    import librosa

    from neuromv.features import MelStream
    from neuromv.limits import MAX_FPS, MIN_FPS, max_mels

    for fps in (MIN_FPS, 23.976, 30, 60, 61, 120, 199, MAX_FPS):
        n = max_mels(fps, sr)
        hop = max(1, round(sr / fps))
        basis = librosa.filters.mel(sr=sr, n_fft=2 * hop, n_mels=n, fmax=sr / 2)
        assert (basis.max(axis=1) > 0).all(), (fps, n)
    assert MelStream(sr, fps=MIN_FPS, n_mels=8).n_fft == 2 * sr
    with pytest.raises(ParameterError, match="fps must be a number from 1 to 240"):
        MelStream(sr, fps=0.5)
    with pytest.raises(ParameterError, match="n_mels must be at most"):
        MelStream(sr, fps=MAX_FPS, n_mels=max_mels(MAX_FPS, sr) + 1)
