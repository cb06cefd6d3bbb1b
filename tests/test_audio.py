"""neuromv.audio: decoding every common format, excerpts, and every way an audio file can be bad."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BEAT_DURATION, FORMATS, tone, write_audio

from neuromv.audio import Audio, check_audible, load_audio
from neuromv.errors import AudioError, ParameterError


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_decodes_every_format(media, suffix):
    audio = load_audio(media[suffix])
    assert audio.channels == 2
    assert audio.samples.dtype == np.float32
    assert audio.sr == (48000 if suffix == ".opus" else 44100)
    # lossy codecs add a little padding; never more than a few milliseconds short or 30 ms long
    assert BEAT_DURATION - 0.005 <= audio.duration <= BEAT_DURATION + 0.03
    assert 0.5 < np.abs(audio.samples).max() <= 1.05


def test_resample_mono_and_excerpt(media):
    full = load_audio(media[".flac"])
    part = load_audio(media[".flac"], sr=22050, mono=True, start=1.0, duration=0.5)
    assert (part.sr, part.channels, part.n_samples) == (22050, 1, 11025)
    exact = load_audio(media[".flac"], start=1.0, duration=0.5)
    np.testing.assert_array_equal(exact.samples, full.samples[:, 44100:44100 + 22050])


def test_excerpt_past_the_end_is_an_error(media):
    with pytest.raises(AudioError, match="no audio after start=10"):
        load_audio(media[".wav"], start=10.0)


def test_surround_becomes_stereo(tmp_path):
    import av

    path = tmp_path / "surround.wav"
    y = np.random.default_rng(0).uniform(-0.3, 0.3, (6, 11025)).astype(np.float32)
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=11025)
        s.layout = "5.1"
        f = av.AudioFrame.from_ndarray(y, format="fltp", layout="5.1")
        f.sample_rate = 11025
        for p in s.encode(f):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    a = load_audio(path)
    assert (a.sr, a.channels, a.n_samples) == (11025, 2, 11025)


def test_odd_rates_and_mono(tmp_path):
    mono = load_audio(write_audio(tmp_path / "mono.flac", tone(sr=8000)))
    assert (mono.sr, mono.channels) == (8000, 1)
    assert load_audio(tmp_path / "mono.flac", sr=37800).sr == 37800


@pytest.mark.parametrize(
    "key, message",
    [
        ("text", "not a readable audio file"),
        ("empty", "file is empty"),
        ("truncated", "truncated or corrupt"),
        ("stub", "not a readable audio file"),
    ],
)
def test_bad_files_raise_one_line_audio_errors(media, key, message):
    with pytest.raises(AudioError, match=message) as info:
        load_audio(media[key])
    assert "\n" not in str(info.value)
    assert str(media[key]) in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.mp3")
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_bad_parameters(media):
    for kwargs in ({"start": -1}, {"duration": 0}, {"duration": float("nan")}, {"sr": 0}):
        with pytest.raises(ParameterError):
            load_audio(media[".wav"], **kwargs)


def test_check_audible(media):
    check_audible(load_audio(media[".wav"]))
    with pytest.raises(AudioError, match="digital silence"):
        check_audible(load_audio(media["silent"]), name="silent.wav")
    with pytest.raises(AudioError, match="NaN"):
        check_audible(Audio(np.array([[0.0, np.nan]], np.float32), 8000))


def test_audio_shape_is_checked():
    with pytest.raises(ParameterError):
        Audio(np.zeros(10, np.float32), 8000)
    with pytest.raises(ParameterError):
        Audio(np.zeros((3, 10), np.float32), 8000)


def test_audio_file_reads_the_same_samples_in_blocks_every_time(media):
    from neuromv.audio import AudioFile

    whole = load_audio(media[".flac"], start=0.3, duration=1.7)
    src = AudioFile(media[".flac"], start=0.3, duration=1.7)
    assert (src.sr, src.channels, src.n_samples) == (whole.sr, whole.channels, whole.n_samples)
    assert src.duration == pytest.approx(whole.duration)
    for size in (1000, 1 << 16):
        blocks = list(src.blocks(size))
        assert all(b.shape[1] == size for b in blocks[:-1]) and 0 < blocks[-1].shape[1] <= size
        assert np.array_equal(np.concatenate(blocks, axis=1), whole.samples)
    assert np.array_equal(src.load().samples, whole.samples)
    with pytest.raises(ParameterError, match="block size"):
        next(src.blocks(0))


def test_audio_file_checks_before_any_work(media):
    from neuromv.audio import AudioFile

    with pytest.raises(AudioError, match="digital silence"):
        AudioFile(media["silent"])
    assert AudioFile(media["silent"], allow_silence=True).n_samples == 44100
    with pytest.raises(AudioError, match="no such file"):
        AudioFile(media["silent"].with_name("missing.wav"))


def test_audio_file_that_changes_between_reads_is_an_error(tmp_path):
    from neuromv.audio import AudioFile

    path = write_audio(tmp_path / "a.wav", tone(duration=1.0))
    src = AudioFile(path)
    write_audio(path, tone(duration=0.5))
    with pytest.raises(AudioError, match="changed while it was being read"):
        list(src.blocks())
