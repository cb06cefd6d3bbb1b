"""Palettes inside the compiled kernels (neuromv_render5, every instruction-set path and both precisions; the
picture kernel neuromv_picture3) and the picture backend's torch path: each pixel's colour becomes its palette
entry after the colour map, as :meth:`PaletteMap.apply` does it."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
from test_motion import textured_net

from neuromv.cppn import CPPN
from neuromv.motion import Motion
from neuromv.palette import palette_for, palette_levels, palette_row
from neuromv.renderer import color_matrix, kernel_isas, reference_render
from neuromv.renderer.color import PaletteMap
from neuromv.renderer.dense import rgb_to_i420
from neuromv.renderer.kernel import KernelBackend, kernel_library
from neuromv.renderer.picture import PictureBackend
from neuromv.renderer.setup import RenderSetup

pytestmark = pytest.mark.skipif(not kernel_isas(), reason="compiled kernel not installed")

# an even size (I420) whose width is not a multiple of the kernel's 8-column tiles (partial tiles are written too)
W, H = 70, 38


def _z(seed: int, gain: float = 0.5, n: int = 32) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * gain).astype(np.float32)


def _palette(name: str, sample: np.ndarray) -> PaletteMap:
    return PaletteMap(palette_for(name).table.astype(np.float32), palette_row(palette_levels(sample)))


def _paths() -> list[tuple[str, str]]:
    """(isa, precision) of every kernel path this CPU runs."""
    out = [(isa, "float32") for isa in kernel_isas() if isa != "avx512vnni"]
    return out + [("avx512vnni", "int16")] if "avx512vnni" in kernel_isas() else out


def _near_entries(got: np.ndarray, rgb: np.ndarray, pm: PaletteMap, steps: int) -> np.ndarray:
    """Per pixel: whether ``got`` (uint8 RGB) is within one level of the palette entry of ``rgb`` (floats in [0, 1],
    the colour before the palette) or of one of its ``steps`` neighbours on either side."""
    n = len(pm.table)
    pos = np.clip(rgb.astype(np.float64) @ pm.row[:3] + pm.row[3], 0, n - 1)
    idx = np.floor(pos + 0.5).astype(np.intp)
    got = got.astype(np.float64)
    ok = np.zeros(got.shape[:-1], dtype=bool)
    for o in range(-steps, steps + 1):
        ok |= np.abs(got - 255.0 * pm.table[np.clip(idx + o, 0, n - 1)]).max(axis=-1) <= 1.0
    return ok


def _level_steps(pm: PaletteMap) -> int:
    """Table steps that half an 8-bit level of every channel can move a position (plus one for the rounding)."""
    return int(np.ceil(0.5 * np.abs(pm.row[:3]).sum() / 255.0)) + 1


def _palette_colours(pm: PaletteMap) -> set[tuple[int, int, int]]:
    """The 8-bit colours a palette's entries can be written as (the kernels' rounding of the 0-255 planes and the
    torch path's of the [0, 1] table)."""
    planes = pm.kernel_data()[4:].reshape(3, -1).T
    kernel = np.floor(planes + np.float32(0.5)).astype(int)
    torch_way = np.clip(np.floor(pm.table * np.float32(255.0) + np.float32(0.5)), 0, 255).astype(int)
    return {tuple(c) for c in np.concatenate([kernel, torch_way])}


def _only_palette_colours(frame: np.ndarray, pm: PaletteMap) -> float:
    """The share of ``frame``'s pixels that are one of the palette's colours exactly."""
    allowed = _palette_colours(pm)
    return float(np.mean([tuple(p) in allowed for p in frame.reshape(-1, 3).astype(int)]))


def _kernel(net: CPPN, isa: str, precision: str, *, color=None, palette=None) -> KernelBackend:
    setup = RenderSetup.of(net, W, H, scale=1.0, pan=(0.0, 0.0), centre=None, color=color, palette=palette)
    return KernelBackend(setup, threads=2, isa=isa, precision=precision)


@pytest.mark.parametrize("isa, precision", _paths())
@pytest.mark.parametrize("colour", [False, True])
def test_the_kernel_applies_the_palette_as_the_reference(isa, precision, colour):
    net = CPPN(32, 32, n_hidden=3, seed=3)
    col = color_matrix(hue=40, saturation=1.3, brightness=0.05) if colour else None
    pm = _palette("ember", reference_render(net, W, H, _z(0), color=col))
    plain, painted = _kernel(net, isa, precision, color=col), _kernel(net, isa, precision, color=col, palette=pm)
    for seed, gain in ((0, 0.5), (1, 2.0)):
        z = _z(seed, gain)
        got = painted.render(z)
        assert _only_palette_colours(got, pm) == 1.0
        # against the same path without the palette: the palette is the last step, so the only difference is that
        # path's own rounding to 8 bits (half a level)
        before = plain.render(z)
        assert _near_entries(got, before / 255.0, pm, _level_steps(pm)).all(), (isa, precision)
        # against the float64 reference: float32 paths within one table step everywhere; int16 within its own
        # error (two levels on >= 99 % of values)
        ref = reference_render(net, W, H, z, color=col)
        if precision == "float32":
            assert _near_entries(got, ref, pm, 1).all(), isa
            want = np.round(pm.apply(ref) * 255).astype(int)
            assert np.mean(np.abs(got.astype(int) - want).max(axis=-1) == 0) > 0.9
        else:
            assert np.mean(_near_entries(got, ref, pm, 4 * _level_steps(pm))) > 0.99
        # I420 is the palette's RGB converted (within a level: the kernel converts the unrounded colours)
        yuv = painted.render_yuv420(z).astype(int)
        conv = rgb_to_i420(torch.from_numpy(got).reshape(1, -1, 3), H, W)[0].numpy().astype(int)
        assert np.abs(yuv - conv).max() <= 1 and np.abs(yuv - conv).mean() < 0.25


def test_a_wrong_plane_order_or_no_palette_would_fail():
    # the checks above are sharp: the palette's planes in the wrong order, or no palette, miss them by far
    net = CPPN(32, 32, n_hidden=3, seed=3)
    pm = _palette("ember", reference_render(net, W, H, _z(0)))
    swapped = PaletteMap(np.ascontiguousarray(pm.table[:, ::-1]), pm.row)
    isa, precision = _paths()[-1]
    ref = reference_render(net, W, H, _z(0))
    for wrong in (_kernel(net, isa, precision, palette=swapped), _kernel(net, isa, precision)):
        got = wrong.render(_z(0))
        assert _only_palette_colours(got, pm) < 0.5
        assert np.mean(_near_entries(got, ref, pm, 1)) < 0.5


@pytest.mark.parametrize("isa, precision", _paths()[:1] + _paths()[-1:])
def test_per_frame_colour_maps_come_before_the_palette(isa, precision):
    net = CPPN(32, 16, n_hidden=2, seed=5)
    pm = _palette("ocean", reference_render(net, W, H, _z(2)))
    b = _kernel(net, isa, precision, color=color_matrix(hue=-30), palette=pm)
    zs = torch.from_numpy(np.stack([_z(s) for s in range(3)]))
    cols = np.stack([color_matrix(hue=h, saturation=s, contrast=c) for h, s, c in ((90, 1.5, 1.2), (0, 0.2, 1.0),
                                                                                  (200, 1.0, 0.7))])
    frames = list(b.frames(zs, 1, False, color=cols))
    steps = 1 if precision == "float32" else 4 * _level_steps(pm)
    for z, col, got in zip(zs.numpy(), cols, frames):
        ref = reference_render(net, W, H, z, color=col)
        assert np.mean(_near_entries(got, ref, pm, steps)) > (0.999 if precision == "float32" else 0.99)
        np.testing.assert_array_equal(got, b.render(z, color=col))
    # a per-frame colour map really moves the picture along the palette
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 5


@pytest.mark.parametrize("zoom, colour", [(1.0, False), (0.8, True)])
def test_the_picture_kernel_and_torch_paths_apply_the_palette(zoom, colour):
    net = textured_net()
    col = color_matrix(30, 1.2, 0.05, 1.1) if colour else None
    motion = Motion.of(8, 0)
    sample = PictureBackend(net, motion, W, H, color=col, use_kernel=False).render(np.zeros(8, np.float32))
    pm = _palette("neon", sample)
    fast = PictureBackend(net, motion, W, H, color=col, palette=pm, threads=2)
    slow = PictureBackend(net, motion, W, H, color=col, palette=pm, use_kernel=False)
    plain = PictureBackend(net, motion, W, H, color=col, use_kernel=False)
    assert fast.isa == "portable" and slow.isa is None
    for seed in range(3):
        u = _z(seed, 0.8, n=8)
        a, b = fast.render(u, zoom=zoom), slow.render(u, zoom=zoom)
        assert _only_palette_colours(a, pm) == 1.0 and _only_palette_colours(b, pm) == 1.0
        before = plain.render(u, zoom=zoom) / 255.0
        assert _near_entries(b, before, pm, _level_steps(pm)).all()
        assert _near_entries(a, before, pm, _level_steps(pm)).all()
        d = np.abs(a.astype(int) - b.astype(int))
        assert d.max() <= 2 and np.mean(d.max(axis=-1) == 0) > 0.97, (d.max(), np.mean(d.max(axis=-1) == 0))
        ya, yb = fast.render_yuv420(u, zoom=zoom).astype(int), slow.render_yuv420(u, zoom=zoom).astype(int)
        assert np.abs(ya - yb).max() <= 2 and np.abs(ya - yb).mean() < 0.25  # (torch converts 8-bit RGB)
        # per-frame colour map, then the palette, on both paths
        c = color_matrix(hue=120)
        a, b = fast.render(u, color=c), slow.render(u, color=c)
        assert _near_entries(b, plain.render(u, color=c) / 255.0, pm, _level_steps(pm)).all()
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_the_kernel_refuses_an_empty_palette_and_an_old_build_is_not_used(monkeypatch):
    lib = kernel_library()
    fp = ctypes.POINTER(ctypes.c_float)
    pic, maps, c = np.zeros((3, 2, 2), np.float32), np.zeros((7, 2, 2), np.float32), np.zeros(7)
    data = np.zeros(7, np.float32)  # a table of one entry is fine; none is refused
    out, counter = np.zeros(12, np.uint8), ctypes.c_long(0)
    args = lambda n: (pic.ctypes.data_as(fp), maps.ctypes.data_as(fp), 2, 2, 1.0, 1.0,  # noqa: E731
                      c.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), None, data.ctypes.data_as(fp), n,
                      out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), 0, ctypes.byref(counter), 1)
    assert lib.neuromv_picture3(*args(0)) == -1
    assert lib.neuromv_picture3(*args(1)) == 0

    class Stale:  # a build from before the palette: only the previous entry points
        neuromv_render4 = neuromv_picture2 = object()

    monkeypatch.setattr(ctypes, "CDLL", lambda path: Stale())
    assert kernel_library.__wrapped__() is None
