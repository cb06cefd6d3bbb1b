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
    # once the release settles, until 3 frames before the music returns at SILENCE[1] (the return moves the picture
    # from the frame before its first kick: a centred window's onset strength rises a frame early)
    in_silence = diff[int(SILENCE[0] * fps) + 12:int(SILENCE[1] * fps) - 3].mean()
    assert on_beats > 3.0, on_beats
    assert in_silence < 0.1 * on_beats, (on_beats, in_silence)


def test_same_seed_same_video_bit_for_bit(rendered, media, tmp_path):
    result, (_, frames) = rendered
    again = neuromv.render(media[".mp3"], tmp_path / "again.mp4", **SMALL, seed=5)
    np.testing.assert_array_equal(decode_video(again.path)[1], frames)
    assert again.path.read_bytes() == result.path.read_bytes()
    other = neuromv.render(media[".mp3"], tmp_path / "other.mp4", **SMALL, seed=6)
    assert np.abs(decode_video(other.path)[1].astype(int) - frames).mean() > 10


def test_a_file_streamed_renders_like_the_same_audio_in_memory(media, tmp_path):
    # a path is read block by block (features, then the mux), an Audio object is held: same video
    from neuromv.audio import load_audio

    kw = dict(width=48, height=32, start=0.5, duration=2.0, seed=3)
    streamed = neuromv.render(media[".flac"], tmp_path / "s.mp4", **kw)
    held = neuromv.render(load_audio(media[".flac"]), tmp_path / "h.mp4", **kw)
    (info_s, a), (info_h, b) = decode_video(streamed.path), decode_video(held.path)
    assert a.shape == b.shape == (60, 32, 48, 3)
    assert np.abs(a.astype(int) - b).max() <= 1
    assert info_s["audio_duration"] == pytest.approx(info_h["audio_duration"])


def test_from_audio_object_excerpt_and_progress(tmp_path):
    events = []
    result = neuromv.render(beat_clip(), tmp_path / "x.mp4", width=48, height=32, start=0.5, duration=1.0, fps=24,
                            progress=lambda stage, done, total: events.append((stage, done, total)))
    info, frames = decode_video(result.path)
    assert len(frames) == 24 and info["fps"] == 24
    assert abs(info["audio_duration"] - 1.0) <= 1 / 24
    render = [e for e in events if e[0] == "render"]
    assert render[0] == ("render", 0, 24) and render[-1] == ("render", 24, 24)
    assert events[-1] == ("render", 24, 24)


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


def test_colour_and_pan_reach_the_video(tmp_path):
    """Saturation 0 gives a grey video (no chroma); pan moves the view: the panned render's frame is the plain
    render's frame shifted by whole pixels."""
    from neuromv.cppn import CPPN
    from neuromv.pipeline import build_renderer
    from neuromv.renderer import Renderer

    grey = neuromv.render(beat_clip(duration=0.5), tmp_path / "grey.mp4", size="64x36", saturation=0.0, crf=0)
    _, frames = decode_video(grey.path)
    assert np.abs(frames.astype(int) - frames.mean(axis=3, keepdims=True)).max() <= 2  # r = g = b, within x264
    plain = neuromv.render(beat_clip(duration=0.5), tmp_path / "plain.mp4", size="64x36", crf=0, hue=90)
    assert np.abs(decode_video(plain.path)[1].astype(int) - frames).mean() > 5
    settings = neuromv.RenderSettings(width=64, height=36, pan_x=8 / 18, precision="float32")  # 8 px right (half the short side: 18 px)
    z = np.zeros(settings.n_mels, np.float32)
    net = CPPN(settings.n_mels, settings.hidden)
    panned = build_renderer(settings, cppn=net).render(z).astype(int)
    wide = Renderer(net, 96, 36).render(z).astype(int)  # 16 px more on each side, the same scale
    assert np.abs(panned - wide[:, 24:24 + 64]).max() <= 1


@pytest.mark.parametrize(
    "options",
    [{"fps": 0}, {"width": 0, "height": 0}, {"n_mels": 0}, {"reactivity": -1}, {"device": "tpu"}, {"bogus": 1},
     {"hue": 400}, {"saturation": -1}, {"contrast": float("inf")}, {"pan_y": "up"}],
)
def test_bad_options_fail_before_any_work(media, tmp_path, options):
    with pytest.raises(ParameterError):
        neuromv.render(media[".wav"], tmp_path / "v.mp4", **options)
    assert list(tmp_path.iterdir()) == []


def test_output_equal_to_input_is_refused(media):
    before = media[".m4a"].read_bytes()
    with pytest.raises(OutputError, match="is an input"):
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
        if stage == "render":
            seen.append(done)
            if done == 3:
                cancel.set()

    with pytest.raises(Interrupted):
        neuromv.render(beat_clip(), tmp_path / "v.mp4", width=48, height=32, progress=progress, cancel=cancel)
    assert max(seen) == 3
    assert list(tmp_path.iterdir()) == []


# -- reference images (issue 3) --------------------------------------------------------------------------------
IMG = dict(width=96, height=54, preset="ultrafast", fit_steps=800)


def _cover_png(path):
    from conftest import write_cover

    return write_cover(path, 128)


def _target(path, width=96, height=54):
    from neuromv.image import fit_image, load_image

    return fit_image(load_image(path), width, height)


def _changes(frames):
    return np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))  # [i]: frame i -> i+1


@pytest.fixture(scope="module")
def image_render(media, tmp_path_factory):
    d = tmp_path_factory.mktemp("image")
    cover = _cover_png(d / "art.png")
    result = neuromv.render(media[".mp3"], d / "img.mp4", image=cover, **IMG)
    return result, cover, decode_video(result.path)


def test_fitted_render_looks_like_its_image_and_moves_on_beats(image_render):
    from neuromv.metrics import ssim

    result, cover, (info, frames) = image_render
    assert result.image == str(cover) and (info["width"], info["height"]) == (96, 54)
    target = _target(cover)
    assert ssim(frames.mean(axis=0), target) > 0.6  # fidelity: the mean frame is the picture
    diff = _changes(frames)
    on_beats = diff[int(BEATS_1[0] * 30):int(BEATS_1[1] * 30) - 1].mean()
    in_silence = diff[int(SILENCE[0] * 30) + 12:int(SILENCE[1] * 30) - 3].mean()  # as in the test above
    assert on_beats > 4.0, on_beats  # ...and it still moves with the music
    assert in_silence < 0.1 * on_beats, (on_beats, in_silence)
    abstract = decode_video(neuromv.render(media_path(image_render), result.path.with_name("abs.mp4"), image="none",
                                           **IMG).path)[1]
    assert ssim(abstract.mean(axis=0), target) < ssim(frames.mean(axis=0), target) - 0.2


def media_path(image_render):
    from conftest import write_audio

    out = image_render[0].path.with_name("beat.wav")
    return out if out.exists() else write_audio(out, beat_clip())


def test_reactivity_knob_trades_resemblance_for_motion(image_render, tmp_path):
    from neuromv.metrics import ssim

    # the mel envelope's trade (structure off: with it, the hits move the picture as well; their motion grows with
    # the knob too, below)
    result, cover, (_, on) = image_render
    target = _target(cover)
    calm, frames, wild = (decode_video(neuromv.render(media_path(image_render), tmp_path / f"{r}.mp4", image=cover,
                                                      reactivity=r, structure="off", **IMG).path)[1]
                          for r in (0.3, 1.0, 3.0))
    motion = [_changes(f).mean() for f in (calm, frames, wild)]
    single = [np.median([ssim(x, target) for x in f[::10]]) for f in (calm, frames, wild)]  # one frame's resemblance
    mean = [ssim(f.mean(axis=0), target) for f in (calm, frames, wild)]
    assert motion[0] < motion[1] < motion[2], motion
    assert single[0] > single[1] > single[2], single
    assert min(mean) > 0.6, mean  # the mean frame stays the picture at every setting
    calm_on = decode_video(neuromv.render(media_path(image_render), tmp_path / "calm-on.mp4", image=cover,
                                          reactivity=0.3, **IMG).path)[1]
    assert _changes(calm_on).mean() < 0.6 * _changes(on).mean()


def test_embedded_cover_art_and_sidecar_are_found(tmp_path):
    from conftest import write_audio
    from mutagen.id3 import APIC, ID3

    from neuromv.metrics import ssim

    song = write_audio(tmp_path / "tagged.mp3", beat_clip(duration=1.0))
    png = _cover_png(tmp_path / "x.png").read_bytes()
    tags = ID3()
    tags.add(APIC(encoding=3, mime="image/png", type=3, desc="front", data=png))
    tags.save(song)
    result = neuromv.render(song, tmp_path / "v.mp4", **IMG)
    assert "embedded cover art (ID3 APIC)" in result.image
    frames = decode_video(result.path)[1]
    assert ssim(frames.mean(axis=0), _target(tmp_path / "x.png")) > 0.6

    plain = write_audio(tmp_path / "sub" / "plain.wav", beat_clip(duration=1.0)) if (tmp_path / "sub").mkdir() is None else None
    (tmp_path / "sub" / "Folder.PNG").write_bytes(png)
    assert "Folder.PNG next to the song" in neuromv.render(plain, tmp_path / "w.mp4", **IMG).image
    assert neuromv.render(plain, tmp_path / "n.mp4", image="none", **IMG).image is None


def test_saved_model_renders_like_the_fit(tmp_path):
    from neuromv.reference import FitOptions, fit_cppn, save_model, training_size

    cover = _cover_png(tmp_path / "c.png")
    cppn = fit_cppn(_target(cover, *training_size(96, 54)), options=FitOptions(steps=300))
    model = save_model(cppn, tmp_path / "m.safetensors", info={"aspect": 96 / 54})
    a = neuromv.render(beat_clip(duration=1.0), tmp_path / "a.mp4", model=model, **IMG)
    b = neuromv.render(beat_clip(duration=1.0), tmp_path / "b.mp4", model=cppn, **IMG)
    assert a.image == f"model {model}"
    np.testing.assert_array_equal(decode_video(a.path)[1], decode_video(b.path)[1])
    with pytest.raises(ParameterError, match="not both"):
        neuromv.render(beat_clip(duration=1.0), tmp_path / "c.mp4", model=model, image=cover)
    with pytest.raises(OutputError, match="is an input"):
        neuromv.render(beat_clip(duration=1.0), model, model=model, overwrite=True)


def test_bad_image_or_model_fails_before_any_work(tmp_path):
    from neuromv.errors import ImageError, ModelError

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError, match="bad.png"):
        neuromv.render(beat_clip(duration=1.0), tmp_path / "o.mp4", image=bad)
    with pytest.raises(ModelError, match="not a safetensors"):
        neuromv.render(beat_clip(duration=1.0), tmp_path / "o.mp4", model=bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png"]


def test_background_fills_transparency_of_the_reference_image(tmp_path):
    from PIL import Image

    from neuromv.plan import resolve_image

    im = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    im.paste((0, 0, 255, 255), (0, 0, 16, 32))
    im.save(tmp_path / "t.png")
    for background, rgb in (("black", (0, 0, 0)), ("white", (255, 255, 255))):
        pixels, _ = resolve_image(tmp_path / "t.png", None, background)
        assert tuple(pixels[5, 30]) == rgb and tuple(pixels[5, 2]) == (0, 0, 255)


def test_quality_preset_then_options():
    from neuromv.settings import QUALITY, RenderSettings, with_quality

    s = with_quality(RenderSettings(seed=3), "high")
    assert (s.width, s.height, s.preset, s.crf, s.seed) == (1920, 1080, "veryfast", 16, 3)
    assert with_quality(RenderSettings(), "standard") == RenderSettings()  # standard is the defaults
    assert set(QUALITY) == {"draft", "standard", "high"}
    with pytest.raises(ParameterError, match="quality must be one of draft, standard, high"):
        with_quality(RenderSettings(), "best")
    with pytest.raises(ParameterError, match="quality"):
        neuromv.render(neuromv.demo_song(1.0), "/nonexistent/x.mp4", quality="best")
