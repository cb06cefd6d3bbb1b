"""Per-frame controls of the renderer (issue 16): a zoom and a colour map per frame, on every render path.

Frame i with zoom s and colour map A is, by definition, the frame of ``Renderer(cppn, w, h, scale=scale * s,
pan=(pan_x * s, pan_y * s), color=A)``; a fitted picture zooms about the view's centre instead.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuromv.cppn import CPPN
from neuromv.errors import ParameterError
from neuromv.limits import MAX_FRAME_ZOOM
from neuromv.motion import Motion
from neuromv.picture import PictureNet
from neuromv.renderer import Renderer, color_matrix, kernel_precisions, kernel_widths, reference_render
from neuromv.renderer.picture import PictureBackend

W, H = 64, 48
SCALE, PAN = 1.5, (0.3, -0.2)
#: zoom in, out, in a little, out a little, none
ZOOMS = np.array([0.5, 2.0, 0.83, 1.3, 1.0])


def _zs(n: int = len(ZOOMS), n_z: int = 8, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, n_z)) * 0.8).astype(np.float32)


def _colours(n: int = len(ZOOMS)) -> np.ndarray:
    return np.stack([color_matrix(hue=40.0 * i, saturation=1.3, brightness=0.03 * i, contrast=1.1)
                     for i in range(n)])


#: (method, precision, image) of every CPPN path; the kernel renders abstract CPPNs only
PATHS = [pytest.param("kernel", "float32", False, id="kernel-float32"),
         pytest.param("kernel", "int16", False, id="kernel-int16"),
         pytest.param("tiled", "float32", False, id="tiled"),
         pytest.param("dense", "float32", False, id="dense"),
         pytest.param("tiled", "float32", True, id="tiled-image"),
         pytest.param("dense", "float32", True, id="dense-image")]


def _skip_unless_runs(method: str, precision: str) -> None:
    if method == "kernel" and 16 not in kernel_widths():
        pytest.skip("no compiled kernel here")
    if precision == "int16" and "int16" not in kernel_precisions():
        pytest.skip("this CPU has no AVX512-VNNI (the kernel's int16 path)")


def _renderer(net, method: str, precision: str, *, scale: float = SCALE, pan=PAN, color=None) -> Renderer:
    return Renderer(net, W, H, method=method, precision=precision, scale=scale, pan=pan, color=color, threads=2,
                    tile=256)


def _same(method: str, a: np.ndarray, b: np.ndarray) -> None:
    """The same frames: bit for bit, except on the dense path across batches of other sizes (its matrix products
    then round a rare value the other way, as without controls): within one level there."""
    if method != "dense":
        np.testing.assert_array_equal(a, b)
        return
    diff = np.abs(a.astype(int) - b)
    assert diff.max() <= 1 and diff.mean() < 0.001, (diff.max(), diff.mean())


@pytest.mark.parametrize("method, precision, image", PATHS)
def test_each_cppn_path_with_per_frame_zoom_and_colour_is_the_zoomed_coloured_renderer(method, precision, image):
    _skip_unless_runs(method, precision)
    net = CPPN(8, 16, seed=4, image=image)
    zs, colours = _zs(), _colours()
    r = _renderer(net, method, precision, color=color_matrix(hue=-90.0))  # its own colour: replaced per frame
    assert r.method == method and r.precision == precision
    frames = [f.copy() for f in r.frames(zs, batch=2, zoom=ZOOMS, color=colours)]
    for i, (z, s, a) in enumerate(zip(zs, ZOOMS, colours)):
        zoomed = _renderer(net, method, precision, scale=SCALE * s, pan=(PAN[0] * s, PAN[1] * s), color=a)
        expected = zoomed.render(z)
        diff = np.abs(frames[i].astype(int) - expected)
        # the same path computes s (W0 xyr) instead of W0 (s xyr): float32 rounding, at most a level here and there
        assert diff.max() <= 1 and diff.mean() < 0.01, (i, diff.max(), diff.mean())
        # and the plain forward pass of the zoomed view, within the path's own tolerance
        ref = np.round(reference_render(net, W, H, z, scale=SCALE * s, pan=(PAN[0] * s, PAN[1] * s), color=a) * 255)
        diff = np.abs(frames[i].astype(int) - ref)
        if precision == "int16":  # test_kernel.py's tolerance of the int16 path against float32
            assert np.mean(diff <= 2) >= 0.99 and diff.mean() < 0.2, (i, diff.max(), diff.mean())
        else:
            assert diff.max() <= 1 and diff.mean() < 0.05, (i, diff.max(), diff.mean())
        # frames() is render() frame by frame (dense: batches of other sizes round a rare value the other way,
        # with or without controls)
        _same(method, frames[i], r.render(z, zoom=float(s), color=a))
    _same(method, np.stack(frames), r.render_batch(zs, zoom=ZOOMS, color=colours))
    # the zoom changes the frame (s = 2 is not s = 1)
    assert np.abs(frames[1].astype(int) - r.render(zs[1], color=colours[1])).mean() > 5


@pytest.mark.parametrize("method, precision", [("kernel", "float32"), ("kernel", "int16"), ("dense", "float32")])
def test_i420_frames_take_the_controls_too(method, precision):
    _skip_unless_runs(method, precision)
    net = CPPN(8, 16, seed=5)
    zs, colours = _zs(), _colours()
    r = _renderer(net, method, precision)
    assert r.yuv420
    i420 = [f.copy() for f in r.frames(zs, batch=3, yuv420=True, zoom=ZOOMS, color=colours)]
    for i, (z, s, a) in enumerate(zip(zs, ZOOMS, colours)):
        zoomed = _renderer(net, method, precision, scale=SCALE * s, pan=(PAN[0] * s, PAN[1] * s), color=a)
        diff = np.abs(i420[i].astype(int) - zoomed.render_yuv420(z))
        assert diff.max() <= 1 and diff.mean() < 0.01, (i, diff.max(), diff.mean())
        _same(method, i420[i], r.render_yuv420(z, zoom=float(s), color=a))


@pytest.mark.parametrize("method, precision, image", PATHS)
def test_without_controls_every_path_is_bit_identical_to_before(method, precision, image):
    _skip_unless_runs(method, precision)
    net = CPPN(8, 16, seed=6, image=image)
    zs = _zs(3, seed=2)
    own = color_matrix(hue=30.0, contrast=1.2)
    centre = zs if image else None
    r = Renderer(net, W, H, method=method, precision=precision, pan=PAN, color=own, centre=centre, threads=2)
    plain = [f.copy() for f in r.frames(zs)]
    for given in ([f.copy() for f in r.frames(zs, zoom=None, color=None)],
                  [f.copy() for f in r.frames(zs, zoom=np.ones(3))],
                  [f.copy() for f in r.frames(zs, color=np.stack([own] * 3))]):  # its own map, given per frame
        for a, b in zip(plain, given):
            np.testing.assert_array_equal(a, b)
    for z in zs:
        np.testing.assert_array_equal(r.render(z), r.render(z, zoom=1.0, color=None))
    np.testing.assert_array_equal(r.render_batch(zs), r.render_batch(zs, zoom=[1, 1, 1], color=None))
    # a frame's colour map replaces the renderer's: the frame of a renderer made with that map
    other = color_matrix(saturation=0.2, brightness=0.1)
    made = Renderer(net, W, H, method=method, precision=precision, pan=PAN, color=other, centre=centre, threads=2)
    np.testing.assert_array_equal(r.render(zs[0], color=other), made.render(zs[0]))


def test_image_mode_with_centring_refuses_a_zoom_but_takes_colours():
    net = CPPN(8, 16, seed=7, image=True)
    zs = _zs(3)
    r = Renderer(net, W, H, method="tiled", centre=zs)
    msg = "zoom must be 1 for an image-mode CPPN rendered with centre"
    with pytest.raises(ParameterError, match=msg):
        r.render(zs[0], zoom=0.9)
    with pytest.raises(ParameterError, match=msg):
        r.frames(zs, zoom=[1.0, 1.1, 1.0])
    with pytest.raises(ParameterError, match=msg):
        r.render_batch(zs, zoom=[1.0, 1.0, 0.5])
    np.testing.assert_array_equal(r.render(zs[0], zoom=1.0), r.render(zs[0]))
    a = color_matrix(hue=90.0)
    np.testing.assert_array_equal(next(r.frames(zs, color=[a] * 3)), r.render(zs[0], color=a))


@pytest.mark.parametrize("method", ["kernel", "tiled", "dense"])
def test_bad_controls_are_refused_at_the_call(method):
    _skip_unless_runs(method, "float32")
    r = Renderer(CPPN(8, 16), 16, 8, method=method)
    z, zs = np.zeros(8, np.float32), np.zeros((3, 8), np.float32)
    rng = f"a number from 1/{MAX_FRAME_ZOOM:g} to {MAX_FRAME_ZOOM:g}"
    for bad in (0, -1.0, float("nan"), float("inf"), MAX_FRAME_ZOOM * 1.01, 0.99 / MAX_FRAME_ZOOM, True, "2", None,
                [1.0]):
        with pytest.raises(ParameterError, match=f"zoom must be {rng}, not ") as e:
            r.render(z, zoom=bad)
        assert "\n" not in str(e.value)
    if r.yuv420:
        with pytest.raises(ParameterError, match=rng):
            r.render_yuv420(z, zoom=0.0)
    for bad, msg in (([1, 1], r"zoom must be None or an array of shape \(3,\), one per frame, not \(2,\)"),
                     (np.ones((3, 1)), r"not \(3, 1\)"), (1.0, r"not \(\)"),
                     ([1, float("nan"), 1], f"zoom\\[1\\] must be {rng}, not nan"),
                     ([1, 1, 0], f"zoom\\[2\\] must be {rng}, not 0.0"),
                     ([1, -2, 100], f"zoom\\[1\\] must be {rng}, not -2.0"),
                     (["a", 1, 1], "zoom must be None or an array of 3 numbers")):
        with pytest.raises(ParameterError, match=msg):
            r.frames(zs, zoom=bad)  # at the call, not at the first frame
        with pytest.raises(ParameterError, match=msg):
            r.render_batch(zs, zoom=bad)
    a = color_matrix(hue=10.0)
    for bad, msg in ((np.stack([a] * 2), r"color must be None or a \(3, 3, 4\) array, one map per frame"),
                     (a, r"not shape \(3, 4\)"), (np.ones((3, 3, 3)), r"not shape \(3, 3, 3\)"),
                     (np.full((3, 3, 4), np.inf), "color must hold finite numbers"),
                     ([["x"] * 4] * 3, "color must be None or a")):
        with pytest.raises(ParameterError, match=msg):
            r.frames(zs, color=bad)
        with pytest.raises(ParameterError, match=msg):
            r.render_batch(zs, color=bad)
    for bad in (np.stack([a] * 3), np.ones((4, 3)), np.full((3, 4), np.nan)):
        with pytest.raises(ParameterError, match="color"):
            r.render(z, color=bad)
    # the bounds themselves are fine
    for s in (MAX_FRAME_ZOOM, 1.0 / MAX_FRAME_ZOOM, np.float32(0.75), 2):
        assert r.render(z, zoom=s).shape == (8, 16, 3)


# -- fitted pictures ---------------------------------------------------------------------------------------------
def _picture(aspect: float = 1.5, seed: int = 3) -> PictureNet:
    """An untrained picture network whose grids hold random values: regions, edges and texture."""
    net = PictureNet(aspect, 32, levels=4, base=4, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for g in net.grids:
            g.copy_(torch.randn(g.shape, generator=gen) * 2)
    net.eval()
    return net


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """img [shape=(h, w, c)] at (x, y) pixels (the pixel centres at whole numbers), clamped to the edge pixels'
    centres: a plain numpy bilinear lookup."""
    h, w = img.shape[:2]
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    return top * (1 - fy) + (img[y1, x0] * (1 - fx) + img[y1, x1] * fx) * fy


@pytest.mark.parametrize("width, height, scale, pan", [(96, 64, 1.0, (0.0, 0.0)), (97, 63, 1.3, (0.2, -0.1))])
def test_a_pictures_zoom_and_colour_agree_on_the_kernel_and_torch_and_zoom_about_the_centre(width, height, scale,
                                                                                              pan):
    net = _picture()
    colours = _colours(4)
    slow = PictureBackend(net, Motion.of(8, 0), width, height, scale=scale, pan=pan, use_kernel=False)
    fast = PictureBackend(net, Motion.of(8, 0), width, height, scale=scale, pan=pan, threads=2)
    backends = [slow] + ([fast] if kernel_widths() else [])
    for seed, s in enumerate((0.5, 2.0, 0.83, 1.0)):
        u = np.random.default_rng(seed).standard_normal(8).astype(np.float32) * 0.8
        frames = [b.render(u, s, colours[seed]).astype(int) for b in backends]
        if len(frames) == 2:  # test_motion.py's tolerance of the kernel against torch
            assert np.abs(frames[0] - frames[1]).max() <= 1 and np.abs(frames[0] - frames[1]).mean() < 0.05
            if width % 2 == 0:
                yuv = [b.render_yuv420(u, s, colours[seed]).astype(int) for b in backends]
                assert np.abs(yuv[0] - yuv[1]).max() <= 1
        # at rest (no motion), a zoomed frame is the still picture sampled at centre + (place - centre) s
        still = np.asarray(net.render(width, height, scale=scale, pan=pan), dtype=np.float64)
        cols, rows = np.meshgrid(np.arange(width) + 0.5 - width / 2, np.arange(height) + 0.5 - height / 2)
        expected = _bilinear(still, width / 2 - 0.5 + s * cols, height / 2 - 0.5 + s * rows)
        for b in backends:
            rest = b.render(np.zeros(8, np.float32), s)
            assert np.abs(rest.astype(int) - np.round(expected * 255)).max() <= 1
        if s != 1.0:  # and the zoom changes the frame
            assert np.abs(frames[0] - slow.render(u, 1.0, colours[seed])).mean() > 3


def test_a_pictures_frames_take_the_controls_and_are_unchanged_without_them():
    net = _picture()
    motion = Motion.of(8, 0)
    zs = _zs(4, 8, seed=1)
    r = Renderer(net, 48, 32, motion=motion, color=color_matrix(contrast=1.2), threads=2)
    assert r.method == "picture"
    zoom, colours = np.array([0.7, 1.0, 1.6, 1.0]), _colours(4)
    frames = [f.copy() for f in r.frames(zs, zoom=zoom, color=colours)]
    for i, z in enumerate(zs):
        np.testing.assert_array_equal(frames[i], r.render(z, zoom=float(zoom[i]), color=colours[i]))
    plain = [f.copy() for f in r.frames(zs)]
    for a, b in zip(plain, r.frames(zs, zoom=np.ones(4))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(plain[0], r.render(zs[0], zoom=1.0, color=None))
    with pytest.raises(ParameterError, match=r"zoom\[0\] must be"):
        r.frames(zs, zoom=[0, 1, 1, 1])


def test_a_pictures_small_frames_rendered_in_groups_are_each_frame_as_render_makes_it():
    # 32x18 (the structure's fit): frames() renders them in groups, the threads sharing a group's frames in one call
    # of the picture kernel (Backend.group_job); each must be exactly render()'s frame, palette and I420 included
    from neuromv.palette import palette_for
    from neuromv.renderer.backend import GROUP_PIXELS

    if not kernel_widths():
        pytest.skip("compiled kernel not installed")
    net = _picture()
    n = 2 * GROUP_PIXELS // (32 * 18) + 7  # two whole groups and a part
    zs = _zs(n, 8, seed=2)
    zoom = np.linspace(0.6, 1.5, n)
    zoom[::4] = 1.0
    colours = np.stack([color_matrix(hue=2.0 * i, saturation=1.1, brightness=0.01 * (i % 5)) for i in range(n)])
    for palette in (None, palette_for("ember")):
        r = Renderer(net, 32, 18, motion=Motion.of(8, 0), palette=palette, threads=2)
        assert r.method == "picture" and r.backend.groups
        for yuv420 in (False, True):
            draw = r.render_yuv420 if yuv420 else r.render
            for controls in ({}, {"zoom": zoom, "color": colours}):
                frames = list(r.frames(zs, yuv420=yuv420, **controls))
                assert len(frames) == n
                for i, frame in enumerate(frames):
                    own = {k: v[i] for k, v in controls.items()}
                    np.testing.assert_array_equal(frame, draw(zs[i], **own), err_msg=f"frame {i}")


@pytest.mark.parametrize("precision", ["float32", "int16"])
def test_kernel_frames_overlapped_on_worker_threads_are_render_frame_by_frame(precision):
    # 160x96: 960 tiles, several chunks, so frames() shares each frame out and queues the next (threads.overlapped)
    import threading

    _skip_unless_runs("kernel", precision)
    net = CPPN(8, 16, seed=6)
    zs, colours = _zs(), _colours()
    r = Renderer(net, 160, 96, method="kernel", precision=precision, scale=SCALE, pan=PAN, threads=2)
    for yuv420 in (False, True):
        draw = r.render_yuv420 if yuv420 else r.render
        stream = r.frames(zs, yuv420=yuv420, zoom=ZOOMS, color=colours)
        for i, frame in enumerate(stream):
            assert [t for t in threading.enumerate() if t.name.startswith("neuromv-render")]  # the pool's path
            np.testing.assert_array_equal(frame, draw(zs[i], zoom=float(ZOOMS[i]), color=colours[i]))
        assert i == len(zs) - 1
