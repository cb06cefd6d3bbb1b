"""Hostile inputs (issue 13, items 1, 2, 3, 4 and 8): each refused with one line and exit code 1, nothing left on
disk, quickly and in bounded memory; the library refuses the same in under 2 s."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tone, write_audio, write_cover

from neuromv.errors import AudioError, ImageError, ModelError, ParameterError

SMALL = ["--size", "64x48", "--preset", "ultrafast"]
#: Resident memory a refused CLI run may reach: Python, torch, PyAV and librosa loaded take about 0.5 GB.
MAX_RSS = 1.2e9


def _hwm(pid: int) -> int:
    """Peak resident bytes of process ``pid`` so far (VmHWM), 0 once it has gone. (Not the child's ru_maxrss:
    Linux carries the forking parent's peak across exec, so it would report this test process's own size.)"""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cli(*args, cwd=None, timeout: float = 60) -> tuple[int, str, float, float]:
    """Run ``neuromv ARGS``: (exit code, stderr, wall seconds, peak resident bytes of that process).

    A process still running after ``timeout`` s (blocked on a FIFO, allocating for minutes) is killed and fails
    the test."""
    err_path = Path(cwd or ".") / f".stderr-{os.getpid()}-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    with open(err_path, "w+") as err:
        p = subprocess.Popen([sys.executable, "-m", "neuromv", *map(str, args)], stdout=subprocess.DEVNULL,
                             stderr=err, cwd=cwd, text=True)
        peak = 0
        while True:
            peak = max(peak, _hwm(p.pid))
            pid, status, _ = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                p.kill()
                os.wait4(p.pid, 0)
                p.returncode = -9
                pytest.fail(f"neuromv {' '.join(map(str, args))} still running after {timeout} s")
            time.sleep(0.02)
        p.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - t0
        err.seek(0)
        text = err.read()
    err_path.unlink()
    return p.returncode, text, elapsed, peak


def refused(args, message: str, out_dir: Path, cwd=None, timeout: float = 60) -> str:
    """Assert the CLI refuses ``args`` with one line containing ``message``, exit 1, nothing in ``out_dir``."""
    code, err, elapsed, rss = cli(*args, cwd=cwd, timeout=timeout)
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("neuromv: error:") and message in lines[0], err
    assert list(out_dir.iterdir()) == []
    assert rss < MAX_RSS, f"{rss / 1e9:.2f} GB"
    assert elapsed < 20, f"{elapsed:.1f} s"  # the process start (torch's import) is most of it: about 2-4 s
    return lines[0]


def quick(fn, *args, **kwargs):
    """Call ``fn``; it must raise within 2 s. Returns the exception."""
    t = time.perf_counter()
    with pytest.raises(Exception) as e:
        fn(*args, **kwargs)
    assert time.perf_counter() - t < 2.0, f"took {time.perf_counter() - t:.1f} s"
    return e.value


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    return write_audio(tmp_path_factory.mktemp("song") / "song.wav", tone(sr=22050, duration=1.0))


@pytest.fixture()
def out(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


# -- item 1: frame rates far below 1 ------------------------------------------------------------------------------
def test_tiny_fps_is_refused_before_any_work(song, out):
    line = refused(["render", song, "-o", out / "v.mp4", "--fps", "0.001", "--n-mels", "64", *SMALL],
                   "fps must be a number from 1 to 240, not 0.001", out)
    assert "unexpected" not in line
    refused(["render", song, "-o", out / "v.mp4", "--fps", "240", "--n-mels", "256", *SMALL],
            "n_mels must be at most", out)
    from neuromv.features import MelStream, song_db

    assert isinstance(quick(MelStream, 22050, fps=0.002, n_mels=64), ParameterError)  # the server's path
    assert isinstance(quick(song_db, [np.ones(22050, np.float32)], 22050, fps=0.5), ParameterError)


# -- item 2: model files that claim huge networks -----------------------------------------------------------------
def _meta(**over) -> dict:
    meta = {"format": "neuromv-cppn", "version": "1", "n_z": "8", "hidden": "8", "n_hidden": "2", "seed": "0",
            "mode": "abstract", "info": "{}"}
    return {**meta, **over}


def _raw_model(path: Path, header: dict, data: bytes = b"") -> Path:
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)
    return path


def _hostile_models(d: Path) -> dict[str, tuple[Path, str]]:
    from safetensors.torch import save_file
    import torch

    def meta_only(name, **over):
        p = d / f"{name}.safetensors"
        save_file({"w": torch.zeros(1)}, str(p), metadata=_meta(**over))
        return p

    big = {"dtype": "F32", "shape": [1_000_000_000, 1_000_000], "data_offsets": [0, 4 * 10**15]}
    tensors = {f"layers.{i}.{k}": big for i in range(3) for k in ("weight", "bias")}
    return {
        "n_z": (meta_only("nz", n_z="1000000000"), "n_z must be an integer from 1 to 256, not 1000000000"),
        "n_hidden": (meta_only("nh", n_hidden="100000"), "n_hidden must be an integer from 1 to 16, not 100000"),
        "hidden": (meta_only("hid", hidden="99999999999999999999"), "hidden must be an integer from 1 to 1024"),
        "huge tensors": (_raw_model(d / "huge.safetensors", {"__metadata__": _meta(), **tensors}),
                         "truncated: tensor"),
        "huge header": (d / "hdr.safetensors", "over the limit"),
        "short file": (d / "short.safetensors", "truncated: its header claims"),
        "fifo": (d / "fifo.safetensors", "is a FIFO"),
        "device": (Path("/dev/zero"), "is a device"),
    }


def _make_special(d: Path) -> None:
    (d / "hdr.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    (d / "short.safetensors").write_bytes(struct.pack("<Q", 5000) + b'{"__metadata__": {}}')
    os.mkfifo(d / "fifo.safetensors")


def test_hostile_model_files_are_refused_from_the_header(tmp_path):
    from neuromv.reference import load_model

    _make_special(tmp_path)
    for name, (path, message) in _hostile_models(tmp_path).items():
        e = quick(load_model, path)
        assert isinstance(e, ModelError) and message in str(e), (name, str(e))


@pytest.mark.parametrize("case", ["n_z", "n_hidden", "huge tensors", "huge header", "fifo"])
def test_hostile_model_files_through_the_cli(song, out, tmp_path, case):
    _make_special(tmp_path)
    path, message = _hostile_models(tmp_path)[case]
    refused(["render", song, "-o", out / "v.mp4", *SMALL, "--model", path], message, out, timeout=30)


def test_a_model_too_large_to_be_one_is_refused_unread(tmp_path):
    from neuromv.limits import max_model_bytes
    from neuromv.reference import load_model

    p = tmp_path / "big.safetensors"
    with open(p, "wb") as f:
        f.truncate(max_model_bytes() + 1)  # sparse: nothing is written
    e = quick(load_model, p)
    assert isinstance(e, ModelError) and "over the limit" in str(e)


# -- item 3: only regular files -----------------------------------------------------------------------------------
def test_devices_fifos_and_folders_are_refused_at_once(song, out, tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    os.mkfifo(tmp_path / "pipe.wav")
    refused(["render", song, "-o", out / "v.mp4", *SMALL, "--image", "/dev/zero"], "/dev/zero: is a device", out)
    refused(["render", song, "-o", out / "v.mp4", *SMALL, "--image", tmp_path / "pipe.png"], "is a FIFO", out,
            timeout=30)
    refused(["render", tmp_path / "pipe.wav", "-o", out / "v.mp4", *SMALL], "is a FIFO", out, timeout=30)
    refused(["render", "/dev/zero", "-o", out / "v.mp4", *SMALL], "is a device", out)
    refused(["fit", "/dev/zero", "-o", out / "m.safetensors"], "is a device", out)

    from neuromv.audio import AudioFile
    from neuromv.image import load_image

    for fn, arg, error in ((load_image, "/dev/zero", ImageError), (load_image, tmp_path / "pipe.png", ImageError),
                           (load_image, tmp_path, ImageError), (AudioFile, tmp_path / "pipe.wav", AudioError),
                           (AudioFile, "/dev/zero", AudioError)):
        assert isinstance(quick(fn, arg), error)


def test_images_have_their_own_size_cap_checked_before_reading(song, out, tmp_path):
    from neuromv.image import load_image
    from neuromv.limits import MAX_IMAGE_BYTES

    big = tmp_path / "big.png"
    good = write_cover(tmp_path / "good.png", 64).read_bytes()
    with open(big, "wb") as f:  # a real PNG followed by junk, sparse: nothing is read
        f.write(good)
        f.truncate(MAX_IMAGE_BYTES + 1)
    e = quick(load_image, big)
    assert isinstance(e, ImageError) and "over the limit of 64 MB" in str(e)
    refused(["render", song, "-o", out / "v.mp4", *SMALL, "--image", big], "over the limit of 64 MB", out)


def test_cover_art_finder_passes_over_fifos_and_folders(tmp_path):
    from neuromv.image import find_cover_art

    song = write_audio(tmp_path / "s.wav", tone(duration=0.5))
    os.mkfifo(tmp_path / "cover.jpg")
    (tmp_path / "folder.png").mkdir()
    t = time.perf_counter()
    assert find_cover_art(song) is None
    write_cover(tmp_path / "front.png", 32)
    src = find_cover_art(song)
    assert time.perf_counter() - t < 2.0
    assert src is not None and Path(src.data).name == "front.png"


# -- item 4: WAV headers that declare more data than the file holds -----------------------------------------------
def _wav_with_data_size(path: Path, seconds_held: float, declared: int | None) -> Path:
    src = write_audio(path.with_suffix(".src.wav"), tone(sr=22050, duration=10.0))
    b = src.read_bytes()
    i = b.find(b"data")
    held = b[: i + 8 + int(22050 * seconds_held) * 2]
    if declared is not None:
        held = held[: i + 4] + struct.pack("<I", declared) + held[i + 8:]
    path.write_bytes(held)
    src.unlink()
    return path


def test_truncated_wav_is_refused_and_unknown_sizes_are_read_to_the_end(out, tmp_path):
    from neuromv.audio import AudioFile

    short = _wav_with_data_size(tmp_path / "short.wav", 1.0, None)  # the header still says 10 s
    e = quick(AudioFile, short)
    assert isinstance(e, AudioError) and "holds 1.00 s of the 10.00 s of audio its WAV header declares" in str(e)
    refused(["render", short, "-o", out / "v.mp4", *SMALL], "truncated or corrupt", out)
    for marker in (0xFFFFFFFF, 0):  # "length unknown": decoded to the end of the file
        assert AudioFile(_wav_with_data_size(tmp_path / f"m{marker}.wav", 1.0, marker)).duration == pytest.approx(1.0)
    whole = _wav_with_data_size(tmp_path / "whole.wav", 10.0, None)
    whole.write_bytes(whole.read_bytes() + b"LIST" + struct.pack("<I", 6) + b"INFO\0\0")  # a chunk after the data
    assert AudioFile(whole).duration == pytest.approx(10.0)


# -- item 8: what a size costs --------------------------------------------------------------------------------------
def test_a_render_logs_its_working_set_and_one_too_big_is_refused_at_once(song, out):
    code, err, _, _ = cli("render", song, "-o", out / "v.mp4", *SMALL)
    assert code == 0, err
    assert "64x48, hidden 32: about" in err and "working set, 3.07 k pixels and" in err, err
    assert "multiply-adds a frame" in err
    (out / "v.mp4").unlink()
    line = refused(["render", song, "-o", out / "v.mp4", "--size", "8192x8192", "--hidden", "1024", "-q"],
                   "size 8192x8192 with hidden 1024 needs about", out)
    assert " TB of memory" in line and "is available" in line


def test_render_refuses_what_does_not_fit_in_the_memory_available(monkeypatch, song, tmp_path):
    import neuromv.limits as limits
    from neuromv.pipeline import render

    monkeypatch.setattr(limits, "memory_available", lambda: 50_000_000)  # a machine with 50 MB to spare
    with pytest.raises(ParameterError, match=r"size 1280x720 with hidden 32 needs about .* MB of memory"):
        render(song, tmp_path / "v.mp4", image="none", size=(1280, 720))
    assert list(tmp_path.iterdir()) == []
    assert limits.memory_available.__name__ == "<lambda>"
    monkeypatch.undo()
    room = limits.memory_available()
    assert room is None or room > 0


_MEASURE = r"""
import sys, tempfile
from pathlib import Path
sys.path.insert(0, "tests")
from conftest import tone
from neuromv.limits import estimate_memory
from neuromv.pipeline import render
from neuromv.settings import RenderSettings
w, h, hidden = map(int, sys.argv[1:4])
song, d = tone(sr=22050, duration=1.0), Path(tempfile.mkdtemp())
render(song, d / "warm.mp4", image="none", size=(64, 48), fps=10, hidden=hidden)  # libraries loaded
before = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmRSS"))
s = RenderSettings(width=w, height=h, hidden=hidden, fps=10)
render(song, d / "v.mp4", s, image="none")
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))  # not ru_maxrss
print(estimate_memory(s, duration=1.0), peak - before)
"""


@pytest.mark.parametrize("w, h, hidden", [(1920, 1080, 32), (640, 360, 100)])  # the kernel, the torch tiles
def test_memory_estimate_is_within_a_factor_of_two_of_a_real_render(w, h, hidden):
    p = subprocess.run([sys.executable, "-c", _MEASURE, str(w), str(h), str(hidden)], capture_output=True,
                       text=True, timeout=300, cwd=Path(__file__).parent.parent)
    assert p.returncode == 0, p.stderr
    estimate, grown = map(int, p.stdout.split())
    assert grown > 50e6  # the render itself, not noise
    assert 0.5 < estimate / grown < 2.0, (estimate / 1e6, grown / 1e6)
