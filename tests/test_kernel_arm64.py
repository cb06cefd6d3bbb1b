"""The compiled kernel built for ARM64 (aarch64) and run there: issue 19's "a portable path builds on ARM64".

The kernel (src/neuromv/_kernel.cpp, with the install's compile flags from pyproject.toml) and a small caller
(tests/arm64_harness.cpp) are cross-compiled with Debian's ``aarch64-linux-gnu-g++`` and run under ``qemu-aarch64``
(user-mode emulation of an ARM64 CPU). What the x86-64 renderer passes to the kernel is recorded at the ctypes
boundary, rendered again on ARM64, and compared with the x86-64 frame and with the reference forward pass. Skipped
where the cross compiler or qemu-user is missing (``apt-get install g++-aarch64-linux-gnu qemu-user``; .ci/run
installs them).
"""

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the install's tomli, as neuromv.looks
    import tomli as tomllib  # type: ignore[no-redef]

import neuromv.renderer.kernel as kernel_module
from neuromv.cppn import CPPN
from neuromv.motion import Motion
from neuromv.palette import palette_for
from neuromv.picture import PictureNet
from neuromv.renderer import ISA_ENV, Renderer, color_matrix, kernel_isas, reference_render
from neuromv.renderer.dense import rgb_to_i420
from neuromv.renderer.picture import PictureBackend

ROOT = Path(__file__).resolve().parent.parent
CXX, QEMU = shutil.which("aarch64-linux-gnu-g++"), shutil.which("qemu-aarch64")
pytestmark = [
    pytest.mark.skipif(not kernel_isas(), reason="compiled kernel not installed"),
    pytest.mark.skipif(not (CXX and QEMU), reason="no aarch64-linux-gnu-g++ or qemu-aarch64"),
]


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    """The kernel and tests/arm64_harness.cpp built as one static ARM64 program, with the install's flags."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (ext,) = [e for e in project["tool"]["setuptools"]["ext-modules"] if e["name"] == "neuromv._kernel"]
    out = tmp_path_factory.mktemp("arm64") / "harness"
    cmd = [CXX, *ext["extra-compile-args"], "-Wall", "-static", *(str(ROOT / s) for s in ext["sources"]),
           str(ROOT / "tests" / "arm64_harness.cpp"), "-o", str(out)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0 and not build.stderr, build.stderr  # no error, and no warning either
    return out


def _run(harness: Path, record: bytes, size: int) -> np.ndarray:
    """The frame's bytes [shape=(size,), dtype=uint8] that the ARM64 build renders for ``record``."""
    done = subprocess.run([QEMU, str(harness)], input=record, capture_output=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert len(done.stdout) == size
    return np.frombuffer(done.stdout, dtype=np.uint8)


def _floats(ptr, n: int) -> bytes:
    """n float32 values at a ctypes pointer (none for a null pointer or n = 0)."""
    return b"" if not ptr or n <= 0 else np.ctypeslib.as_array(ptr, shape=(n,)).astype(np.float32).tobytes()


class _Recorder:
    """The kernel library as the renderer sees it, recording each call of the two frame entry points (their
    inputs, in the harness's record format, and the frame the x86-64 build made) before passing it on."""

    def __init__(self, lib) -> None:
        self._lib, self.calls = lib, []

    def __getattr__(self, name):
        return getattr(self._lib, name)

    def neuromv_render5(self, path, hidden, ct, w0, c0, ws, wq, wd, bs, n_layers, wo, bo, color, palette, palette_n,
                        out, mode, width, height, nxt, chunk):
        n_tiles = -(-width // 8) * -(-height // 2)
        rec = struct.pack("<9q", 1, hidden, n_layers, width, height, mode, bool(color), palette_n, n_tiles)
        rec += b"".join(_floats(p, n) for p, n in (
            (ct, n_tiles * 48), (w0, hidden * 3), (c0, hidden), (ws, n_layers * hidden * hidden),
            (bs, n_layers * hidden), (wo, 3 * hidden), (bo, 3), (color, 12), (palette, 4 + 3 * palette_n)))
        rc = self._lib.neuromv_render5(path, hidden, ct, w0, c0, ws, wq, wd, bs, n_layers, wo, bo, color, palette,
                                       palette_n, out, mode, width, height, nxt, chunk)
        self._keep(rec, out, width * height * 3 // 2 if mode else width * height * 3)
        return rc

    def neuromv_picture3(self, picture, maps, width, height, to_px, zoom, c, color, palette, palette_n, out, mode,
                         nxt, chunk):
        rec = struct.pack("<6q", 2, width, height, mode, bool(color), palette_n)
        rec += struct.pack("<2d", to_px, zoom) + np.ctypeslib.as_array(c, shape=(7,)).astype(np.float64).tobytes()
        rec += b"".join(_floats(p, n) for p, n in ((picture, 3 * width * height), (maps, 7 * width * height),
                                                   (color, 12), (palette, 4 + 3 * palette_n)))
        rc = self._lib.neuromv_picture3(picture, maps, width, height, to_px, zoom, c, color, palette, palette_n, out,
                                        mode, nxt, chunk)
        self._keep(rec, out, width * height * 3 // 2 if mode else width * height * 3)
        return rc

    def _keep(self, rec: bytes, out, size: int) -> None:
        frame = np.ctypeslib.as_array(ctypes.cast(out, ctypes.POINTER(ctypes.c_uint8)), shape=(size,)).copy()
        self.calls.append((rec, frame))


@pytest.fixture
def recorder(monkeypatch) -> _Recorder:
    """Every kernel call of the renderers made in the test, on the portable path, recorded."""
    rec = _Recorder(kernel_module.kernel_library())
    monkeypatch.setattr(kernel_module, "kernel_library", lambda: rec)
    monkeypatch.setattr("neuromv.renderer.picture.kernel_library", lambda: rec)
    monkeypatch.setenv(ISA_ENV, "portable")
    return rec


def test_the_arm64_build_has_the_portable_path_alone_and_refuses_the_others(harness):
    done = subprocess.run([QEMU, str(harness), "paths"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["1", "-2", "-2", "-2"], done.stdout + done.stderr


# every compiled width; odd sizes (partial tiles at the right and bottom), an even one for I420
@pytest.mark.parametrize("hidden, n_hidden, width, height", [(8, 2, 37, 23), (16, 3, 64, 36), (24, 4, 21, 9),
                                                             (32, 4, 70, 38), (48, 3, 9, 17), (64, 5, 16, 2)])
def test_abstract_frames_on_arm64_match_x86_and_the_reference(harness, recorder, hidden, n_hidden, width, height):
    net = CPPN(32, hidden, n_hidden=n_hidden, seed=hidden)
    r = Renderer(net, width, height, method="kernel", threads=1, color=color_matrix(hue=40, saturation=1.3))
    assert r.isa == "portable"
    for seed, gain in ((0, 0.3), (1, 3.0)):
        z = (np.random.default_rng(seed).standard_normal(32) * gain).astype(np.float32)
        x86 = r.render(z)
        (rec, frame), = recorder.calls
        recorder.calls.clear()
        np.testing.assert_array_equal(frame, x86.ravel())
        arm = _run(harness, rec, x86.size).reshape(x86.shape).astype(int)
        # a compiler may round the two builds differently (fusing multiply-adds on ARM64, which x86-64's portable
        # path cannot): one level at most (Debian's GCC 12 gives the same bytes)
        assert np.abs(arm - x86).max() <= 1 and np.mean(arm != x86) < 0.01
        ref = np.round(reference_render(net, width, height, z, color=r.color) * 255).astype(int)
        diff = np.abs(arm - ref)  # test_kernel.py's tolerance for every path against the reference
        assert diff.max() <= 1 and diff.mean() < 0.05, (diff.max(), diff.mean())
        if width % 2 == 0 and height % 2 == 0:
            yuv = r.render_yuv420(z)
            (rec, _), = recorder.calls
            recorder.calls.clear()
            arm_yuv = _run(harness, rec, yuv.size).reshape(yuv.shape).astype(int)
            assert np.abs(arm_yuv - yuv).max() <= 1
            i420 = rgb_to_i420(torch.from_numpy(x86.reshape(1, -1, 3)), height, width)[0].numpy().reshape(yuv.shape)
            assert np.abs(arm_yuv - i420.astype(int)).max() <= 1


def test_palette_frames_on_arm64_match_x86(harness, recorder):
    net = CPPN(32, 32, seed=5)
    r = Renderer(net, 70, 38, method="kernel", threads=1, palette=palette_for("ember"))
    z = (np.random.default_rng(2).standard_normal(32) * 0.8).astype(np.float32)
    for render in (r.render, r.render_yuv420):
        frame = render(z)
        (rec, _), = recorder.calls
        recorder.calls.clear()
        arm = _run(harness, rec, frame.size).reshape(frame.shape).astype(int)
        # a pixel whose colour sits at an entry's edge may take the neighbouring entry on one machine: rarely
        assert np.mean(arm != frame) < 0.01


def test_picture_frames_on_arm64_match_x86(harness, recorder):
    net = PictureNet(1.5, 32, levels=4, base=4, seed=3)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # random grids: regions, edges and texture
        for g in net.grids:
            g.copy_(torch.randn(g.shape, generator=gen) * 2)
    net.eval()
    b = PictureBackend(net, Motion.of(8, 0), 66, 44, threads=1, color=color_matrix(contrast=1.2))
    u = np.random.default_rng(4).standard_normal(8).astype(np.float32) * 0.8
    for zoom in (1.0, 1.7):
        for render in (b.render, b.render_yuv420):
            frame = render(u, zoom)
            (rec, _), = recorder.calls
            recorder.calls.clear()
            arm = _run(harness, rec, frame.size).reshape(frame.shape).astype(int)
            assert np.abs(arm - frame).max() <= 1 and np.mean(arm != frame) < 0.01
