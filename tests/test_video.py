"""neuromv.video: what is written decodes as asked; nothing partial is ever left; inputs are never touched."""

from __future__ import annotations

import os
import re
import stat
import sys

import numpy as np
import pytest
from conftest import beat_clip, decode_video

from neuromv.errors import OutputError, ParameterError
from neuromv.video import VideoWriter, check_output_path


def _frames(n, w=64, h=48):
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 0] = 200
        f[..., 1] = (i * 5) % 256
        f[..., 2] = 40
        yield f


def test_h264_aac_mp4_decodes_as_written(tmp_path):
    out = tmp_path / "v.mp4"
    audio = beat_clip(duration=2.0)
    with VideoWriter(out, 64, 48, 30, audio=audio, crf=10) as w:
        for f in _frames(60):
            w.write(f)
    info, frames = decode_video(out)
    assert info["vcodec"] == "h264" and info["acodec"] == "aac" and info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"], info["fps"]) == (64, 48, 30)
    assert frames.shape == (60, 48, 64, 3)
    assert abs(info["audio_duration"] - 2.0) < 1 / 30
    # colours survive (yuv420p and the decoder's conversion cost a few levels at most)
    assert np.abs(frames[30, 24, 32].astype(int) - [200, 150, 40]).max() <= 6
    assert not list(tmp_path.glob(".*part"))  # no temporary file left
    mode = stat.S_IMODE(os.stat(out).st_mode)
    assert mode == 0o666 & ~_umask()


def _x264_options(path) -> dict[str, str]:
    """The options x264 wrote into the stream (its SEI message: 'x264 - core ... options: a=1 b=2 ...')."""
    m = re.search(rb"x264 - core .*? options: ([^\x00]*)", path.read_bytes())
    assert m, "no x264 SEI in the file"
    return dict(kv.split("=", 1) for kv in m.group(1).decode().split() if "=" in kv)


@pytest.mark.parametrize("preset, options, expect", [
    ("cppn", None, dict(subme="0", aq="1:1.00", b_adapt="0", weightp="0", scenecut="0", analyse="0x3:0x2",
                        open_gop="0", me="dia", bframes="3")),
    ("superfast", None, dict(subme="1", b_adapt="1", weightp="1", scenecut="40", analyse="0x3:0x3", open_gop="0")),
    ("cppn", {"x264-params": "subme=2:aq-mode=0"}, dict(subme="2", aq="0", b_adapt="0", weightp="0")),
])
def test_the_cppn_preset_is_superfast_with_its_options(tmp_path, preset, options, expect):
    """'cppn' (the default) reaches x264 as superfast with PRESET_CPPN's options over it, as the stream's own record
    of its options shows; x264's own presets are left as they are, and a caller's x264 options come after ours."""
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 64, 48, 30, preset=preset, options=options) as w:
        for f in _frames(8):
            w.write(f)
    got = _x264_options(out)
    assert {k: got.get(k) for k in expect} == expect
    assert VideoWriter.__init__.__kwdefaults__["preset"] == "cppn"


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_mkv_and_no_audio(tmp_path):
    out = tmp_path / "v.mkv"
    with VideoWriter(out, 32, 32, 24) as w:
        for f in _frames(5, 32, 32):
            w.write(f)
    info, frames = decode_video(out)
    assert info["acodec"] is None and len(frames) == 5 and info["fps"] == 24


def test_error_inside_the_block_leaves_nothing(tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 64, 48, 30, audio=beat_clip(duration=1.0)) as w:
            for i, f in enumerate(_frames(20)):
                w.write(f)
                if i == 10:
                    raise RuntimeError("renderer crashed")
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_leaves_nothing(tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, 64, 48, 30) as w:
            w.write(next(_frames(1)))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_zero_frames_is_an_error_and_leaves_nothing(tmp_path):
    with pytest.raises(OutputError, match="no frames"):
        with VideoWriter(tmp_path / "v.mp4", 64, 48, 30):
            pass
    assert list(tmp_path.iterdir()) == []


def test_end_finishes_the_encoding_meanwhile_and_close_completes_the_file(tmp_path):
    """end(): no more frames; the encoder thread flushes x264 and muxes the rest of the audio before close() is
    called (the pipeline measures the sync meanwhile); close() then finishes the same file."""
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 64, 48, 30, audio=beat_clip(duration=2.0), gop=0.5) as w:
        for f in _frames(60):
            w.write(f)
        w.end()
        w.end()  # again: nothing
        w._encoder._thread.join(timeout=20)
        assert not w._encoder._thread.is_alive() and w.frames_written == 60  # all done before close()
        with pytest.raises(OutputError, match="ended"):
            w.write(next(_frames(1)))
    info, frames = decode_video(out)
    assert frames.shape == (60, 48, 64, 3) and abs(info["audio_duration"] - 2.0) < 1 / 30


def test_an_error_after_end_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "v.mp4", 64, 48, 30, audio=beat_clip(duration=1.0)) as w:
            for f in _frames(30):
                w.write(f)
            w.end()
            raise RuntimeError("the sync measurement crashed")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "v.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        VideoWriter(out, 64, 48, 30)
    assert out.read_bytes() == b"precious"
    with VideoWriter(out, 64, 48, 30, overwrite=True) as w:
        w.write(next(_frames(1)))
    assert out.stat().st_size > 100


def test_failed_overwrite_keeps_the_old_file(tmp_path):
    out = tmp_path / "v.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(ValueError):
        with VideoWriter(out, 64, 48, 30, overwrite=True) as w:
            w.write(next(_frames(1)))
            raise ValueError("boom")
    assert out.read_bytes() == b"precious"


def test_check_output_path(tmp_path):
    song = tmp_path / "song.mp4"
    song.write_bytes(b"x")
    with pytest.raises(OutputError, match="is a directory"):
        check_output_path(tmp_path)
    with pytest.raises(OutputError, match="is an input file"):
        check_output_path(song, inputs=(song,), overwrite=True)
    os.symlink(song, tmp_path / "link.mp4")
    with pytest.raises(OutputError, match="is an input file"):
        check_output_path(tmp_path / "link.mp4", inputs=(song,), overwrite=True)
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "no" / "v.mp4")
    with pytest.raises(OutputError, match="unsupported extension"):
        check_output_path(tmp_path / "v.avi")
    assert check_output_path(tmp_path / "new.mp4") == tmp_path / "new.mp4"


@pytest.mark.parametrize("kwargs", [{"width": 63}, {"crf": 60}, {"preset": "warp"}, {"fps": 0}, {"codec": "nope"}])
def test_bad_parameters_leave_nothing(tmp_path, kwargs):
    args = {"width": 64, "height": 48, "fps": 30, **kwargs}
    with pytest.raises(ParameterError):
        VideoWriter(tmp_path / "v.mp4", args.pop("width"), args.pop("height"), args.pop("fps"), **args)
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_shape(tmp_path):
    with pytest.raises(ParameterError):
        with VideoWriter(tmp_path / "v.mp4", 64, 48, 30) as w:
            w.write(np.zeros((48, 64, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_mp4_is_faststart(tmp_path):
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 64, 48, 30, audio=beat_clip(duration=1.0)) as w:
        for f in _frames(30):
            w.write(f)
    data = out.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # the index comes first: playable while downloading


def test_i420_frames_encode_without_conversion(tmp_path):
    import av

    rng = np.random.default_rng(0)
    frames = [rng.integers(16, 236, size=(72, 64), dtype=np.uint8) for _ in range(10)]  # Y, then U and V
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 64, 48, 30, crf=0, preset="ultrafast") as w:  # crf 0: x264 is lossless
        for f in frames:
            w.write(f)
    with av.open(str(out)) as c:
        decoded = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    assert len(decoded) == 10
    assert all(np.array_equal(a, b) for a, b in zip(decoded, frames))  # exactly the planes we gave


def test_i420_frames_are_read_in_place_where_pyav_maps_their_planes():
    from neuromv.video import i420_frame

    rng = np.random.default_rng(2)
    for w, h in ((1280, 720), (64, 48), (96, 54), (66, 50), (2, 2)):
        planes = rng.integers(0, 256, size=(h * 3 // 2, w), dtype=np.uint8)
        copied = i420_frame(planes)
        assert copied.planes[0].buffer_ptr != planes.ctypes.data
        for frame in (copied, i420_frame(planes, in_place=True)):
            assert (frame.width, frame.height) == (w, h)
            np.testing.assert_array_equal(frame.to_ndarray(), planes)  # the same planes, however made
    assert i420_frame(planes := np.zeros((1080, 1280), np.uint8), in_place=True).planes[0].buffer_ptr == \
        planes.ctypes.data  # 720p: no copy


@pytest.mark.skipif(sys.platform != "linux", reason="mprotect through the C library")
@pytest.mark.parametrize("w,h", [(66, 48), (266, 48), (320, 48), (266, 54)])
def test_i420_frames_are_read_in_place_and_never_past_their_end(tmp_path, w, h):
    """libx264 reads an I420 frame where it lies (no copy first): frames that end where an unreadable page begins
    encode exactly (a read past the end would crash), at widths x264 copies in C (under 256), with its vector copies
    and a tail (266: no multiple of 16), and with its vector copies alone; at a height PyAV cannot map (54), a
    copy."""
    import ctypes
    import mmap

    import av

    page = mmap.PAGESIZE
    size = w * h * 3 // 2
    end = -(-size // page) * page  # the frame's bytes end here, where the unreadable page begins
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    rng = np.random.default_rng(1)
    regions, frames = [], []
    for _ in range(6):
        region = mmap.mmap(-1, end + page)
        frame = np.frombuffer(region, dtype=np.uint8, count=size, offset=end - size).reshape(h * 3 // 2, w)
        frame[:] = rng.integers(16, 236, size=frame.shape, dtype=np.uint8)
        assert libc.mprotect(ctypes.addressof(ctypes.c_char.from_buffer(region)) + end, page, 0) == 0
        regions.append(region)
        frames.append(frame)
    out = tmp_path / "v.mp4"
    with VideoWriter(out, w, h, 30, crf=0, preset="ultrafast") as writer:
        for f in frames:
            writer.write(f)
    with av.open(str(out)) as c:
        decoded = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    assert len(decoded) == 6 and all(np.array_equal(a, b) for a, b in zip(decoded, frames, strict=True))


def test_i420_frame_shape_is_checked(tmp_path):
    with VideoWriter(tmp_path / "v.mp4", 64, 48, 30) as w:
        w.write(np.zeros((72, 64), np.uint8))  # 48 * 3 / 2 rows: I420
        with pytest.raises(ParameterError, match="I420"):
            w.write(np.zeros((48, 64), np.uint8))


def test_codec_that_cannot_start_is_a_clear_error_and_leaves_nothing(tmp_path):
    from neuromv.video import check_codec

    assert check_codec("libx264", 256, 144) == "libx264"
    with pytest.raises(ParameterError, match="libx265 needs frames at least 64 pixels wide, not 48"):
        check_codec("libx265", 48, 64)  # narrower frames crashed libx265 (heap corruption): refused first
    with pytest.raises(ParameterError, match="libx265 needs frames at least 64 pixels wide"):
        VideoWriter(tmp_path / "v.mp4", 40, 64, 30, codec="libx265")
    assert check_codec("libx265", 64, 64) == "libx265"
    with pytest.raises(ParameterError, match="not available in this FFmpeg build"):
        check_codec("no_such_encoder", 256, 144)
    with pytest.raises(ParameterError, match="not a video encoder"):
        check_codec("aac", 256, 144)
    try:
        check_codec("h264_nvenc", 256, 144)  # NVENC's minimum frame size is about 145 pixels
    except ParameterError as e:  # no NVIDIA GPU or driver here: says so, and what to use instead
        assert "NVENC" in str(e) and "--codec libx264" in str(e)
        with pytest.raises(ParameterError, match="NVENC"):
            VideoWriter(tmp_path / "v.mp4", 256, 144, 30, codec="h264_nvenc")
        assert not list(tmp_path.iterdir())
    else:  # a machine with NVENC: it really encodes
        with VideoWriter(tmp_path / "v.mp4", 256, 144, 30, codec="h264_nvenc") as w:
            for f in _frames(10, 256, 144):
                w.write(f)
        info, frames = decode_video(tmp_path / "v.mp4")
        assert info["vcodec"] == "h264" and len(frames) == 10


def test_audio_file_is_muxed_block_by_block(tmp_path):
    from neuromv.audio import AudioFile, save_wav

    song = beat_clip(duration=2.0)
    save_wav(tmp_path / "s.wav", song)
    src = AudioFile(tmp_path / "s.wav")
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 64, 48, 30, audio=src) as w:
        for f in _frames(60):
            w.write(f)
    info, _ = decode_video(out)
    assert info["acodec"] == "aac" and abs(info["audio_duration"] - 2.0) < 1 / 30
