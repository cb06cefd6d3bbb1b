"""The compiled kernel's instruction-set paths (run-time dispatch) and its reduced precision (int16)."""

from __future__ import annotations

import ctypes
import importlib.util

import numpy as np
import pytest

from neuromv.cppn import CPPN
from neuromv.errors import ParameterError
from neuromv.renderer import (ISA_ENV, KERNEL_ISAS, Renderer, color_matrix, kernel_isas, kernel_precisions,
                              reference_render, resolve_precision)

pytestmark = pytest.mark.skipif(not kernel_isas(), reason="compiled kernel not installed")


def _z(seed: int, gain: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(32) * gain).astype(np.float32)


def test_the_portable_path_is_always_there_and_the_best_comes_first():
    isas = kernel_isas()
    assert isas[-1] == "portable" and set(isas) <= set(KERNEL_ISAS)
    assert list(isas) == sorted(isas, key=KERNEL_ISAS.index, reverse=True)


@pytest.mark.parametrize("isa", KERNEL_ISAS)
def test_each_path_this_cpu_runs_matches_the_reference(isa, monkeypatch):
    if isa not in kernel_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    monkeypatch.setenv(ISA_ENV, isa)
    net = CPPN(32, 16, n_hidden=3, seed=3)
    r = Renderer(net, 37, 23, method="kernel", threads=2, color=color_matrix(hue=40, saturation=1.3))
    assert r.isa == ("avx512" if isa == "avx512vnni" else isa) and r.precision == "float32"
    for seed, gain in ((0, 0.3), (1, 3.0)):
        ref = np.round(reference_render(net, 37, 23, _z(seed, gain), color=r.color) * 255).astype(int)
        diff = np.abs(r.render(_z(seed, gain)).astype(int) - ref)
        assert diff.max() <= 1 and diff.mean() < 0.05, (isa, diff.max(), diff.mean())


@pytest.mark.parametrize("isa,precision", [(i, "float32") for i in KERNEL_ISAS] + [("avx512vnni", "int16")])
def test_small_frames_rendered_in_groups_are_each_frame_as_render_makes_it(isa, precision, monkeypatch):
    # 32x18 (the structure's fit): one chunk a frame, so frames() renders them in groups, the threads sharing a
    # group's frames in one kernel call (Backend.group_job); each must be exactly render()'s frame
    import threading

    from neuromv.palette import palette_for
    from neuromv.renderer.backend import GROUP_PIXELS

    if isa not in kernel_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    monkeypatch.setenv(ISA_ENV, isa)
    net = CPPN(32, 32, seed=5)
    n = 2 * GROUP_PIXELS // (32 * 18) + 7  # two whole groups and a part
    zs = np.stack([_z(i, 0.5) for i in range(n)])
    zoom = np.linspace(0.7, 1.4, n)
    zoom[::5] = 1.0
    colours = np.stack([color_matrix(hue=3.0 * i, saturation=1.2, brightness=0.01 * (i % 7)) for i in range(n)])
    for palette in (None, palette_for("ember")):
        r = Renderer(net, 32, 18, method="kernel", precision=precision, threads=2, palette=palette)
        assert r.isa == isa or precision == "float32" and isa == "avx512vnni"
        for yuv420, controls in ((False, {}), (True, {}), (False, {"zoom": zoom, "color": colours}),
                                 (True, {"zoom": zoom, "color": colours})):
            draw = r.render_yuv420 if yuv420 else r.render
            frames = list(r.frames(zs, yuv420=yuv420, **controls))
            assert len(frames) == n
            for i, frame in enumerate(frames):
                own = {k: v[i] for k, v in controls.items()}
                np.testing.assert_array_equal(frame, draw(zs[i], **own), err_msg=f"frame {i} {yuv420} {controls}")
    assert not [t for t in threading.enumerate() if t.name.startswith("neuromv-render")]  # no workers left behind


@pytest.mark.parametrize("width, height, scale, pan", [(1280, 720, 1.0, (0.0, 0.0)), (37, 23, 2.5, (0.3, -1.7)),
                                                        (1, 1, 1.0, (0.0, 0.0)), (16, 3, 0.7, (0.0, 0.1))])
def test_the_kernels_coordinate_tiles_are_the_grid_in_its_layout(width, height, scale, pan):
    """The table the kernel reads (made from the axes) holds coordinate_grid's float32 values, tile by tile, with
    zeros where the edge tiles have no pixel."""
    from neuromv.cppn import N_COORDS, coordinate_axes, coordinate_grid
    from neuromv.renderer.kernel import tile_coords

    rows, cols = -(-height // 2), -(-width // 8)
    grid = np.zeros((2 * rows, 8 * cols, N_COORDS), dtype=np.float32)
    grid[:height, :width] = coordinate_grid(width, height, scale=scale, pan=pan).numpy().reshape(height, width, 3)
    want = grid.reshape(rows, 2, cols, 8, N_COORDS).transpose(0, 2, 4, 1, 3).reshape(rows * cols, N_COORDS, 16)
    xs, ys = coordinate_axes(width, height, scale=scale, pan=pan)
    got = tile_coords(xs.numpy(), ys.numpy())
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # bit for bit, padding zeros included


def test_a_forced_path_must_exist_and_run_here(monkeypatch):
    monkeypatch.setenv(ISA_ENV, "sse9")
    with pytest.raises(ParameterError, match=f"{ISA_ENV}='sse9' is not a kernel path"):
        Renderer(CPPN(8, 16), 8, 8, method="kernel")
    missing = [i for i in KERNEL_ISAS if i not in kernel_isas()]
    if missing:
        monkeypatch.setenv(ISA_ENV, missing[0])
        with pytest.raises(ParameterError, match="this CPU cannot run that path"):
            Renderer(CPPN(8, 16), 8, 8, method="kernel")


def test_precision_names_and_where_int16_applies(monkeypatch):
    with pytest.raises(ParameterError, match="precision must be one of auto, float32, int16, not 'bf16'"):
        Renderer(CPPN(8, 16), 8, 8, precision="bf16")
    with pytest.raises(ParameterError, match="precision 'int16' needs the compiled kernel"):
        Renderer(CPPN(8, 16, image=True), 8, 8, precision="int16")  # image mode: torch tiles, float32
    assert Renderer(CPPN(8, 16, image=True), 8, 8, precision="auto").precision == "float32"
    assert Renderer(CPPN(8, 16), 8, 8).precision == "float32"  # the library's default is the exact path
    monkeypatch.setenv(ISA_ENV, "portable")
    assert kernel_precisions() == ("float32",) and resolve_precision("auto") == "float32"
    with pytest.raises(ParameterError, match="precision 'int16' needs the kernel's avx512vnni path"):
        Renderer(CPPN(8, 16), 8, 8, precision="int16")


needs_int16 = pytest.mark.skipif("avx512vnni" not in kernel_isas(), reason="this CPU has no AVX512-VNNI")


@needs_int16
def test_auto_precision_is_int16_where_the_cpu_has_it(monkeypatch):
    monkeypatch.delenv(ISA_ENV, raising=False)
    assert kernel_precisions() == ("float32", "int16") and resolve_precision("auto") == "int16"
    r = Renderer(CPPN(8, 32), 16, 8, precision="auto")
    assert (r.isa, r.precision) == ("avx512vnni", "int16")
    monkeypatch.setenv(ISA_ENV, "avx512")  # forcing the float32 AVX-512 path turns auto into float32
    assert Renderer(CPPN(8, 32), 16, 8, precision="auto").precision == "float32"


@needs_int16
@pytest.mark.parametrize("hidden, n_hidden, seed", [(32, 5, 7), (32, 5, 3), (64, 5, 1), (16, 3, 2), (8, 1, 4)])
def test_int16_is_within_two_levels_of_float32(hidden, n_hidden, seed):
    net = CPPN(32, hidden, n_hidden=n_hidden, seed=seed)
    exact, fast = (Renderer(net, 96, 54, precision=p, threads=2) for p in ("float32", "int16"))
    for gain in (0.3, 1.0, 3.0):
        a, b = exact.render(_z(seed, gain)).astype(int), fast.render(_z(seed, gain)).astype(int)
        diff = np.abs(a - b)
        assert np.mean(diff <= 2) >= 0.99, (np.mean(diff <= 2), diff.max())
        assert diff.max() <= 16 and diff.mean() < 0.2, (diff.max(), diff.mean())


@needs_int16
def test_int16_frames_do_not_depend_on_threads_or_tiling_and_i420_follows_rgb():
    net = CPPN(32, 32, seed=9)
    z = _z(5)
    one = Renderer(net, 130, 38, precision="int16", threads=1)
    frames = [one.render(z)] + [Renderer(net, 130, 38, precision="int16", threads=t).render(z) for t in (2, 3)]
    assert all(np.array_equal(frames[0], f) for f in frames[1:])
    assert np.array_equal(one.render_yuv420(z), Renderer(net, 130, 38, precision="int16", threads=3).render_yuv420(z))
    # and it is not the float32 frame (the path really changed)
    assert not np.array_equal(frames[0], Renderer(net, 130, 38, precision="float32").render(z))


@needs_int16
def test_int16_tanh_is_within_one_level_of_the_rounded_tanh():
    # the int16 path's activation function on every pre-activation it can see: Z = round(6144 x), |Z| <= 32767
    lib = ctypes.CDLL(importlib.util.find_spec("neuromv._kernel").origin)
    z = np.arange(-32767, 32768, dtype=np.int16)
    out = np.zeros_like(z)
    assert lib.neuromv_tanh16(z.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
                              ctypes.c_long(len(z))) == 0
    exact = 8191 * np.tanh(z / 6144.0)
    assert np.abs(out - np.round(exact)).max() <= 1
    assert np.abs(out - exact).max() < 0.75 and np.mean(out == np.round(exact)) > 0.9
    assert np.array_equal(out[::-1], -out) and out.max() == 8191  # odd, and reaches 1 (never beyond)
