"""One song across workers (neuromv.segments): a segmented render on a real local Ray instance (127.0.0.1) against
a plain single-machine render of the same song; the joins; bad input."""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest
from conftest import decode_video

import neuromv
from neuromv.errors import OutputError, ParameterError
from neuromv.segments import check_segments, segment_count, segment_ranges

pytest.importorskip("ray")

#: A tiny, fast render of the 4 s beat clip (96 frames at 24 fps) in groups of pictures of 32 frames (4/3 s), so
#: three segments of one GOP each.
SMALL = dict(width=96, height=64, fps=24, image="none", preset="ultrafast", cache=False, gop=4 / 3)
SEGMENTS = 3
GOP = 32


@pytest.fixture(scope="module")
def ray_local():
    from neuromv.cluster import ray_session

    with ray_session("local", num_cpus=2) as ray:
        yield ray


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _stream_facts(path):
    with av.open(str(path)) as c:
        return len(c.streams.video), len(c.streams.audio), c.duration / 1e6


def _pair(song, tmp_path, **options):
    """(plain, segmented) RenderResults and decoded videos of ``song`` with ``options``."""
    options = {**SMALL, **options}
    plain = neuromv.render(song, tmp_path / "plain.mp4", **options)
    seg = neuromv.render(song, tmp_path / "seg.mp4", ray="local", segments=SEGMENTS, **options)
    return plain, seg, decode_video(plain.path), decode_video(seg.path)


def _check_joins(a: np.ndarray, b: np.ndarray, n: int) -> None:
    """No gap and no repeated frame at the joins: the step from the frame before each join to the one after it is
    the plain render's (a repeat would be a zero step, a dropped frame a different one). The picture moves at the
    first join (the clip's beats), so a repeat there would show; the second falls in the clip's silence, where
    with the structure on the picture rests."""
    steps = []
    for first, _ in segment_ranges(n, SEGMENTS, GOP)[1:]:
        step_plain = np.abs(a[first].astype(int) - a[first - 1]).mean()
        step_seg = np.abs(b[first].astype(int) - b[first - 1]).mean()
        assert step_seg == pytest.approx(step_plain, rel=0.05, abs=0.3)
        steps.append(step_plain)
    assert steps[0] > 0.5


@pytest.mark.parametrize("structure", ["off", "on"])
def test_segmented_lossless_equals_plain(ray_local, media, tmp_path, structure):
    """Lossless (crf 0), the segmented render's frames are the plain render's, bit for bit: the features, the
    structure's controls and colours are sliced right and the joins lose or repeat nothing."""
    plain, seg, (ia, a), (ib, b) = _pair(media[".wav"], tmp_path, structure=structure, crf=0)
    assert seg.frames == plain.frames == len(a) == len(b) == 96
    assert seg.duration == pytest.approx(plain.duration)
    assert seg.parts["segments"] == SEGMENTS and len(seg.parts["worker_fps"]) == SEGMENTS
    assert len(seg.parts["worker_peak_mb"]) == SEGMENTS and min(seg.parts["worker_peak_mb"]) > 50  # Python + torch
    assert ia == ib  # codec, size, rate, pixel format, audio codec and its duration
    assert _stream_facts(seg.path) == pytest.approx(_stream_facts(plain.path))  # one audio stream, same length
    assert min(_psnr(x, y) for x, y in zip(a, b)) == float("inf")
    _check_joins(a, b, len(a))


def test_segmented_lossy_equals_plain(ray_local, media, tmp_path):
    """At the default crf and preset too, the segmented render is the plain one, bit for bit: both encode one GOP
    at a time, each by a fresh encoder with a fixed thread count, and the segments are whole GOPs."""
    plain, seg, (ia, a), (ib, b) = _pair(media[".wav"], tmp_path, structure="off", preset="cppn")
    assert (seg.settings.crf, seg.settings.preset) == (18, "cppn") and len(a) == len(b) == 96 and ia == ib
    assert np.array_equal(a, b)
    assert _packets(seg.path) == _packets(plain.path)


def _packets(path) -> list[tuple[int, bool, bytes]]:
    """The video stream's packets: (pts, key frame, bytes)."""
    with av.open(str(path)) as c:
        return [(p.pts, p.is_keyframe, bytes(p)) for p in c.demux(video=0) if p.size]


def _write(path, frames, gop=None, crf=18, codec="libx264"):
    from neuromv.video import VideoWriter

    with VideoWriter(path, frames.shape[2], frames.shape[1], 24, crf=crf, preset="ultrafast", gop=gop,
                     codec=codec) as w:
        for f in frames:
            w.write(f)
    return path


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_gops_join_into_the_whole(tmp_path, codec):
    """A VideoWriter with GOPs of 8 frames, written whole, is the same stream as its two halves written apart and
    joined (between GOPs); with one encoder for the whole video (gop None) it is not: the rate control's history
    differs after the cut. Each GOP opens with a key frame."""
    from neuromv.video import concat_videos

    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (1, 32, 64, 3)).astype(np.float64)
    frames = np.clip(base + np.cumsum(rng.normal(0, 6, (24, 32, 64, 3)), axis=0), 0, 255).astype(np.uint8)
    for gop, same in ((8 / 24, True), (None, False)):
        d = tmp_path / str(gop)
        d.mkdir()
        whole = _write(d / "whole.mp4", frames, gop, codec=codec)
        joined, n = concat_videos([_write(d / "a.mp4", frames[:16], gop, codec=codec),
                                   _write(d / "b.mp4", frames[16:], gop, codec=codec)], d / "joined.mp4")
        assert n == 24
        assert (_packets(joined) == _packets(whole)) is same, gop
        keys = [i for i, (_, key, _) in enumerate(_packets(whole)) if key]
        assert keys == ([0, 8, 16] if same else [0])


def test_segment_ranges_and_counts():
    assert segment_ranges(96, 3, 32) == [(0, 32), (32, 64), (64, 96)]
    assert segment_ranges(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert segment_ranges(2, 5) == [(0, 1), (1, 2)]  # never an empty segment
    assert segment_ranges(1000, 3, 300) == [(0, 300), (300, 600), (600, 1000)]  # whole GOPs, the last one short
    assert segment_ranges(1000, 9, 300) == [(0, 300), (300, 600), (600, 900), (900, 1000)]  # one per GOP at most
    assert segment_count("auto", 180 * 30, 300, 64, 30) == 18  # one per 10-s GOP
    assert segment_count("auto", 180 * 30, 300, 8, 30) == 8  # one per CPU
    assert segment_count("auto", 180 * 30, 300, 2, 30) == 6  # none over 30 s (MAX_SEGMENT_SECONDS)
    assert segment_count(2, 180 * 30, 300, 64, 30) == 6
    assert segment_count("auto", 3600 * 30, 300, 64, 30) == 120
    assert segment_count("auto", 3600 * 30, 300, 256, 30) == 256
    assert segment_count("auto", 30, 300, 64, 30) == 1
    assert segment_count(4, 2, 1, 1, 30) == 2
    assert segment_count(4, 301, 300, 1, 30) == 2
    assert segment_count(1, 4000, 1200, 1, 30) == 4  # a GOP longer than 30 s: one GOP a segment
    assert check_segments("auto") == "auto" and check_segments("7") == 7


@pytest.mark.parametrize("bad", [0, -1, "0", "many", 2.5, True, 10**6])
def test_bad_segments(bad):
    with pytest.raises(ParameterError, match="--segments must be 'auto' or a whole number"):
        check_segments(bad)


def test_bad_input_before_any_work(ray_local, media, tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(ParameterError, match="--segments must be"):
        neuromv.render(media[".wav"], out, ray="local", segments=0, **SMALL)
    with pytest.raises(ParameterError, match="--segments needs --ray"):
        neuromv.render(media[".wav"], out, segments=2, **SMALL)
    with pytest.raises(ParameterError, match=r"a render on Ray \(--ray\) is one picture"):
        neuromv.render(media[".wav"], out, ray="local", segments=2, stems="all", **SMALL)
    with pytest.raises(ParameterError, match="not an animation"):
        neuromv.render(media[".wav"], tmp_path / "v.gif", ray="local", **SMALL)
    with pytest.raises(ParameterError, match="cannot reach the Ray cluster at 127.0.0.1:9"):
        neuromv.render(media[".wav"], out, ray="127.0.0.1:9", segments=2, **SMALL)
    with pytest.raises(ParameterError, match="--ray must be 'local' or a cluster's address"):
        neuromv.render(media[".wav"], out, ray="nowhere", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_join_refuses_parts_of_other_settings(tmp_path):
    from neuromv.video import concat_videos

    frames = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    for name, crf in (("a.mp4", 18), ("b.mp4", 30)):
        _write(tmp_path / name, frames, crf=crf)
    with pytest.raises(OutputError, match="encoded with other settings"):
        concat_videos([tmp_path / "a.mp4", tmp_path / "b.mp4"], tmp_path / "j.mp4")
    assert not (tmp_path / "j.mp4").exists()
    path, n = concat_videos([tmp_path / "a.mp4", tmp_path / "a.mp4"], tmp_path / "j.mp4")
    assert n == 8 and len(decode_video(path)[1]) == 8


def test_cli_segments_bad_input(media, tmp_path):
    """The command line: one line on stderr, exit 1, before any work (a new process: no Ray started)."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", "neuromv", "render", str(media[".wav"]), "-o",
                               str(tmp_path / "v.mp4"), "--size", "64x48", *args], capture_output=True, text=True,
                              timeout=120)

    for args, words in ((["--ray", "local", "--segments", "0"], "--segments must be"),
                        (["--segments", "3"], "--segments needs --ray"),
                        (["--ray", "127.0.0.1:9"], "cannot reach the Ray cluster"),
                        (["--ray", "local", "--stems", "all"], "a render on Ray (--ray) is one picture")):
        p = run(*args)
        assert p.returncode == 1, p.stderr
        assert words in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert list(tmp_path.iterdir()) == []
