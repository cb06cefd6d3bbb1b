"""neuromv.render: the fast renderer agrees with the plain forward pass, on every path."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from neuromv.cppn import CPPN
from neuromv.errors import ParameterError
from neuromv.renderer import Renderer, reference_render, resolve_device


def _z(n, scale=0.3, seed=0):
    return (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)


@pytest.mark.parametrize("method", ["tiled", "dense"])
@pytest.mark.parametrize(
    "width, height, hidden, n_z, threads, tile",
    [(64, 36, 32, 32, 2, 8192), (97, 53, 32, 8, 3, 500), (33, 17, 16, 1, 1, 64), (128, 128, 48, 32, 2, 4096)],
)
@pytest.mark.parametrize("image", [False, True], ids=["abstract", "image"])
def test_fast_renderer_matches_reference_within_one_level(method, width, height, hidden, n_z, threads, tile, image):
    net = CPPN(n_z, hidden, seed=11, image=image)
    for seed, scale in ((0, 0.3), (1, 1.0), (2, 3.0), (3, 10.0)):  # gentle to wild z
        z = _z(n_z, scale, seed)
        ref = reference_render(net, width, height, z)  # float in (0, 1)
        fast = Renderer(net, width, height, threads=threads, tile=tile, method=method).render(z)
        assert fast.shape == (height, width, 3) and fast.dtype == np.uint8
        err = np.abs(fast.astype(np.float64) / 255.0 - ref).max()
        assert err <= 1.0 / 255.0, f"max error {err * 255:.3f}/255"
        # and the rounding is to nearest: most pixels agree exactly with round(255 * ref)
        assert np.mean(fast == np.round(ref * 255).astype(np.uint8)) > 0.99


def test_image_mode_at_z_zero_is_the_plain_picture_and_z_swings_around_it():
    net = CPPN(8, 16, seed=2, image=True)
    still = Renderer(net, 40, 30).render(np.zeros(8))
    with torch.no_grad():
        from neuromv.cppn import coordinate_grid

        coords = coordinate_grid(40, 30)
        plain = torch.sigmoid(net.layers[-1](net.features(coords))).reshape(30, 40, 3).numpy()
    assert np.abs(still / 255.0 - plain).max() <= 1 / 255
    z = _z(8, 1.0)
    up, down = Renderer(net, 40, 30).render(z).astype(float), Renderer(net, 40, 30).render(-z).astype(float)
    assert np.abs(up - still).mean() > 5  # it moves...
    inside = (plain > 0.2) & (plain < 0.8)  # ...and where nothing clips, +z and -z are mirror images (sin is odd)
    assert np.abs((up + down) / 2 - still)[inside].mean() < 0.15 * np.abs(up - still)[inside].mean()


def test_zoom_and_reactivity_change_the_picture():
    net = CPPN(4, seed=0)
    a = Renderer(net, 40, 30).render(_z(4))
    assert not np.array_equal(a, Renderer(net, 40, 30, scale=2.0).render(_z(4)))
    assert not np.array_equal(a, Renderer(net, 40, 30).render(_z(4) * 2))

    def detail(f):  # mean absolute difference between neighbouring pixels
        f = f.astype(np.float32)
        return np.abs(np.diff(f, axis=0)).mean() + np.abs(np.diff(f, axis=1)).mean()

    # zooming out (a larger scale) shows more of the pattern in the same pixels: more detail, monotonically
    d = [detail(Renderer(net, 40, 30, scale=s).render(_z(4))) for s in (0.5, 1.0, 2.0)]
    assert d[0] * 1.2 < d[1] < d[2], d

    # reactivity scales z: 0 is a still picture, 2 moves more than 1
    r = Renderer(net, 40, 30)
    zs = [_z(4) + 0.02 * k * _z(4, seed=1) for k in range(6)]  # a slow drift, as music gives

    def motion(gain):
        frames = [r.render(z * gain).astype(np.int16) for z in zs]
        return np.mean([np.abs(f - g).mean() for f, g in zip(frames, frames[1:])])

    m0, m1, m2 = motion(0.0), motion(1.0), motion(2.0)
    assert m0 == 0 and m1 > 1 and m2 > 1.2 * m1, (m0, m1, m2)


def test_renders_are_deterministic_and_threads_do_not_matter():
    net = CPPN(8, seed=3)
    z = _z(8)
    one = Renderer(net, 80, 45, threads=1).render(z)
    two = Renderer(net, 80, 45, threads=2).render(z)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, Renderer(net, 80, 45, threads=1).render(z))


def test_torch_thread_setting_is_restored():
    before = torch.get_num_threads()
    Renderer(CPPN(4), 64, 64, threads=2, tile=256).render(_z(4))
    assert torch.get_num_threads() == before


def test_wrong_z_size():
    with pytest.raises(ParameterError, match="z has 3 values"):
        Renderer(CPPN(4), 8, 8).render(np.zeros(3))


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ParameterError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="no CUDA GPU"):
            resolve_device("cuda")


# -- the compiled kernel -------------------------------------------------------------------------------------------
def _kernel_built() -> bool:
    from neuromv.renderer import kernel_widths

    return bool(kernel_widths())


@pytest.mark.skipif(not _kernel_built() and shutil.which("c++") is None, reason="no C++ compiler: kernel not built")
@pytest.mark.parametrize("hidden,n_hidden,size", [(32, 5, (1280, 720)), (16, 3, (37, 23)), (64, 5, (100, 31)),
                                                  (8, 1, (5, 3)), (24, 2, (17, 16))])
def test_kernel_matches_the_reference_forward_pass(hidden, n_hidden, size):
    from neuromv.renderer import kernel_widths

    assert hidden in kernel_widths()  # built with the package (pyproject's ext-modules)
    net = CPPN(32, hidden, n_hidden=n_hidden, seed=3)
    r = Renderer(net, *size)
    assert r.method == "kernel"
    for seed, gain in [(0, 0.3), (1, 3.0)]:  # also far into tanh's saturation
        z = (np.random.default_rng(seed).standard_normal(32) * gain).astype(np.float32)
        ref = np.round(reference_render(net, *size, z) * 255).astype(int)
        diff = np.abs(r.render(z).astype(int) - ref)
        assert diff.max() <= 1 and diff.mean() < 0.05, (diff.max(), diff.mean())


def test_kernel_is_chosen_only_where_it_applies():
    from neuromv.renderer import kernel_widths

    if not kernel_widths():
        with pytest.raises(ParameterError, match="kernel"):
            Renderer(CPPN(8, 32), 8, 8, method="kernel")
        return
    assert Renderer(CPPN(8, 32), 8, 8).method == "kernel"
    assert Renderer(CPPN(8, 20), 8, 8).method == "tiled"  # no kernel for hidden 20
    assert Renderer(CPPN(8, 32, image=True), 8, 8).method == "tiled"
    with pytest.raises(ParameterError, match="kernel"):
        Renderer(CPPN(8, 32, image=True), 8, 8, method="kernel")


def test_without_the_kernel_the_torch_tiles_render(monkeypatch):
    import neuromv.renderer as renderer

    monkeypatch.setattr(renderer, "kernel_widths", lambda: ())  # as installed without a C++ compiler
    net = CPPN(8, 32, seed=1)
    r = Renderer(net, 33, 17)
    assert r.method == "tiled"
    z = np.full(8, 0.2, np.float32)
    ref = np.round(reference_render(net, 33, 17, z) * 255).astype(int)
    assert np.abs(r.render(z).astype(int) - ref).max() <= 1
    with pytest.raises(ParameterError, match="not installed"):
        Renderer(net, 8, 8, method="kernel")


def _bt709_i420(rgb: np.ndarray) -> np.ndarray:
    """The I420 definition of Renderer.render_yuv420, in numpy: BT.709 limited range, 2 x 2 mean chroma."""
    h, w, _ = rgb.shape
    rgb = rgb.astype(np.float64)
    luma = rgb @ [0.2126, 0.7152, 0.0722]
    pool = lambda x: x.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    y = np.floor(16.5 + 219 / 255 * luma)
    u = np.floor(128.5 + 224 / 255 / 1.8556 * pool(rgb[..., 2] - luma))
    v = np.floor(128.5 + 224 / 255 / 1.5748 * pool(rgb[..., 0] - luma))
    return np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)


@pytest.mark.parametrize("method", ["kernel", "dense"])
@pytest.mark.parametrize("size", [(38, 22), (64, 48), (2, 2)])
def test_yuv420_frames_are_the_bt709_conversion_of_the_rgb_frames(method, size):
    from neuromv.renderer import kernel_widths

    if method == "kernel" and 16 not in kernel_widths():
        pytest.skip("no compiled kernel here")
    net = CPPN(8, 16, seed=5)
    r = Renderer(net, *size, method=method)
    assert r.yuv420
    zs = (np.random.default_rng(1).standard_normal((3, 8)) * 0.5).astype(np.float32)
    for z, i420 in zip(zs, r.frames(zs, yuv420=True)):
        expected = _bt709_i420(r.render(z))
        assert i420.shape == expected.shape and i420.dtype == np.uint8
        diff = np.abs(i420.astype(int) - expected)
        # the kernel converts float RGB, the reference the rounded RGB: one level apart at most
        assert diff.max() <= 1 and diff.sum() <= max(2, 0.3 * diff.size), (diff.max(), diff.mean())
        assert np.array_equal(i420, r.render_yuv420(z))


def test_yuv420_needs_an_even_size_and_a_method_that_makes_it():
    odd = Renderer(CPPN(8, 16, seed=5), 7, 4, method="dense")
    assert not odd.yuv420
    with pytest.raises(ParameterError, match="even size"):
        odd.render_yuv420(np.zeros(8, np.float32))
    tiled = Renderer(CPPN(8, 16, seed=5), 8, 4, method="tiled")
    assert not tiled.yuv420
    with pytest.raises(ParameterError):
        list(tiled.frames(np.zeros((1, 8), np.float32), yuv420=True))


def test_kernel_workers_share_the_tiles_of_a_frame():
    # many workers and frames of every shape: each tile rendered exactly once, whoever takes it
    from neuromv.renderer import kernel_widths

    if 16 not in kernel_widths():
        pytest.skip("no compiled kernel here")
    net = CPPN(8, 16, seed=9)
    z = (np.random.default_rng(2).standard_normal(8) * 0.3).astype(np.float32)
    for size in [(1, 1), (9, 3), (1000, 77)]:
        one = Renderer(net, *size, threads=1).render(z)
        many = Renderer(net, *size, threads=7).render(z)
        assert np.array_equal(one, many)


# -- pan and colour ------------------------------------------------------------------------------------------------
def _have(method: str) -> bool:
    from neuromv.renderer import kernel_widths

    return method != "kernel" or 16 in kernel_widths()


#: (method, image) pairs: the kernel renders abstract CPPNs only
METHODS_KINDS = [pytest.param(m, i, id=f"{m}-{'image' if i else 'abstract'}")
                 for m in ("kernel", "tiled", "dense") for i in (False, True) if not (m == "kernel" and i)]
#: a strong colour map (channels mixed with weights up to 1.5, some clipping) and a gentle one
STRONG = dict(hue=75.0, saturation=1.4, brightness=0.05, contrast=1.3)
GENTLE = dict(hue=-20.0, saturation=0.6, brightness=-0.1, contrast=0.9)


def test_color_matrix_identity_is_none_and_the_formula_holds():
    from neuromv.renderer import color_matrix

    assert color_matrix() is None and color_matrix(0, 1, 0, 1) is None and color_matrix(0.0, 1.0, 0.0, 1.0) is None
    a = color_matrix(360.0)
    assert a.shape == (3, 4) and a.dtype == np.float64
    np.testing.assert_allclose(a, np.hstack([np.eye(3), np.zeros((3, 1))]), rtol=0, atol=1e-12)
    # hue 120: red -> green -> blue -> red, greys kept
    a = color_matrix(hue=120.0)
    apply = lambda a, c: a[:, :3] @ np.asarray(c, float) + a[:, 3]  # noqa: E731
    np.testing.assert_allclose(apply(a, [1, 0, 0]), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(apply(a, [0, 1, 0]), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(apply(a, [0.3, 0.3, 0.3]), [0.3, 0.3, 0.3], atol=1e-12)
    # saturation 0: the grey of the colour's Rec. 709 luma
    c = np.array([0.9, 0.2, 0.4])
    luma = 0.2126 * 0.9 + 0.7152 * 0.2 + 0.0722 * 0.4
    np.testing.assert_allclose(apply(color_matrix(saturation=0.0), c), [luma] * 3, atol=1e-12)
    np.testing.assert_allclose(apply(color_matrix(saturation=2.0), c), 2 * c - luma, atol=1e-12)
    # contrast around mid-grey, then brightness added
    a = color_matrix(brightness=0.1, contrast=1.5)
    np.testing.assert_allclose(a[:, :3], 1.5 * np.eye(3), atol=1e-15)
    np.testing.assert_allclose(a[:, 3], [0.5 * (1 - 1.5) + 0.1] * 3, atol=1e-15)
    np.testing.assert_allclose(apply(a, c), 1.5 * (c - 0.5) + 0.5 + 0.1, atol=1e-12)
    # all together: M = contrast * S @ Hrot
    hue, sat = color_matrix(hue=33.0), color_matrix(saturation=1.7)
    both = color_matrix(hue=33.0, saturation=1.7, contrast=0.8, brightness=-0.2)
    np.testing.assert_allclose(both[:, :3], 0.8 * sat[:, :3] @ hue[:, :3], atol=1e-12)
    np.testing.assert_allclose(both[:, 3], 0.5 * 0.2 - 0.2, atol=1e-15)
    for bad in (dict(hue=float("nan")), dict(contrast=float("inf")), dict(saturation="1"), dict(brightness=None)):
        with pytest.raises(ParameterError):
            color_matrix(**bad)


def _image_reference(net: CPPN, width: int, height: int, z, *, pan=(0.0, 0.0), color=None, centre=None):
    """Image mode, the definition (docs of neuromv.cppn and Renderer): clip(p + m(p) (sin(d) - mean sin(d))), then
    the colour map, clamped. float [shape=(height, width, 3)]."""
    from neuromv.cppn import coordinate_grid, headroom

    with torch.no_grad():
        h = net.features(coordinate_grid(width, height, pan=pan))
        p = torch.sigmoid(net.layers[-1](h)).double()
        swing = torch.sin(h @ net.pulse_matrix(torch.as_tensor(z)).T).double()
        if centre is not None:
            swings = [torch.sin(h @ net.pulse_matrix(torch.as_tensor(c)).T) for c in centre]
            swing -= torch.stack(swings).double().mean(0)
        rgb = (p + headroom(p) * swing).clamp(0.0, 1.0).numpy().reshape(height, width, 3)
    if color is not None:
        rgb = np.clip(rgb @ color[:, :3].T + color[:, 3], 0.0, 1.0)
    return rgb


def _check_levels(method: str, fast: np.ndarray, ref: np.ndarray) -> None:
    """The tolerances of the tests above: within one level, rounding to nearest (the kernel: its approximate tanh
    moves a few pixels by one level)."""
    assert fast.dtype == np.uint8 and fast.shape == ref.shape
    diff = np.abs(fast.astype(int) - np.round(ref * 255).astype(int))
    assert diff.max() <= 1, diff.max()
    if method == "kernel":
        assert diff.mean() < 0.05, diff.mean()
    else:
        assert np.abs(fast / 255.0 - ref).max() <= 1.0 / 255.0
        assert np.mean(diff == 0) > 0.99


@pytest.mark.parametrize("method, image", METHODS_KINDS)
@pytest.mark.parametrize("pan, colour", [((0.4, -0.9), STRONG), ((-3.0, 2.5), GENTLE), ((0.25, 0.0), None),
                                         ((0.0, 0.0), STRONG)])
def test_pan_and_colour_match_the_reference(method, image, pan, colour):
    from neuromv.renderer import color_matrix

    if not _have(method):
        pytest.skip("no compiled kernel here")
    color = color_matrix(**colour) if colour else None
    net = CPPN(8, 16, seed=4, image=image)
    zs = (np.random.default_rng(3).standard_normal((4, 8)) * np.array([[0.3], [1.0], [3.0], [1.0]])).astype(np.float32)
    centre = zs if image else None
    r = Renderer(net, 37, 23, method=method, threads=2, tile=256, pan=pan, color=color, centre=centre)
    assert r.method == method and r.pan == tuple(map(float, pan))
    assert (r.color is None) if color is None else np.array_equal(r.color, color)
    for z in zs:
        if image:
            ref = _image_reference(net, 37, 23, z, pan=pan, color=color, centre=centre)
        else:
            ref = reference_render(net, 37, 23, z, pan=pan, color=color)
        _check_levels(method, r.render(z), ref)
    if image:  # the reference of the test agrees with reference_render's where both apply (no centre)
        ref = reference_render(net, 37, 23, zs[1], pan=pan, color=color)
        np.testing.assert_allclose(ref, _image_reference(net, 37, 23, zs[1], pan=pan, color=color), atol=1e-6)


@pytest.mark.parametrize("method, image", [p for p in METHODS_KINDS if p.values[0] != "tiled"])
def test_yuv420_with_pan_and_colour_is_the_bt709_conversion_of_the_rgb_frames(method, image):
    from neuromv.renderer import color_matrix

    if not _have(method):
        pytest.skip("no compiled kernel here")
    net = CPPN(8, 16, seed=5, image=image)
    zs = (np.random.default_rng(1).standard_normal((3, 8)) * 0.8).astype(np.float32)
    r = Renderer(net, 38, 22, method=method, pan=(0.5, 0.3), color=color_matrix(**STRONG),
                 centre=zs if image else None)
    assert r.yuv420
    for z, i420 in zip(zs, r.frames(zs, yuv420=True)):
        rgb = r.render(z)
        if not image:  # the colour is in the RGB frames...
            _check_levels(method, rgb, reference_render(net, 38, 22, z, pan=(0.5, 0.3), color=r.color))
        expected = _bt709_i420(rgb)  # ...and the I420 frames are their conversion
        diff = np.abs(i420.astype(int) - expected)
        assert diff.max() <= 1 and diff.sum() <= max(2, 0.3 * diff.size), (diff.max(), diff.mean())
        assert np.array_equal(i420, r.render_yuv420(z))


@pytest.mark.parametrize("method, image", METHODS_KINDS)
def test_no_pan_and_no_colour_is_bit_identical_to_the_plain_renderer(method, image):
    if not _have(method):
        pytest.skip("no compiled kernel here")
    net = CPPN(8, 16, seed=6, image=image)
    zs = (np.random.default_rng(2).standard_normal((2, 8)) * 2.0).astype(np.float32)
    centre = zs if image else None
    plain = Renderer(net, 37, 23, method=method, centre=centre)
    given = Renderer(net, 37, 23, method=method, centre=centre, pan=(0, 0.0), color=None)
    assert given.pan == (0.0, 0.0) and given.color is None and plain.pan == (0.0, 0.0) and plain.color is None
    for z in zs:
        np.testing.assert_array_equal(plain.render(z), given.render(z))
    np.testing.assert_array_equal(reference_render(net, 37, 23, zs[0]), reference_render(net, 37, 23, zs[0],
                                                                                         pan=(0.0, 0.0)))


def test_pan_moves_the_view_over_the_pattern():
    # a view panned by a whole number of pixels shows the unpanned frame's pixels, shifted
    net = CPPN(8, 16, seed=7)
    z = _z(8, 0.5)
    step = 2.0 / 23  # one pixel of a 37 x 23 frame: the short side spans 2
    plain = Renderer(net, 37, 23, method="tiled").render(z)
    panned = Renderer(net, 37, 23, method="tiled", pan=(5 * step, -3 * step)).render(z)
    assert np.abs(panned[3:, :-5].astype(int) - plain[:-3, 5:]).max() <= 1
    assert not np.array_equal(panned, plain)


@pytest.mark.parametrize("method", ["kernel", "tiled", "dense"])
def test_bad_pan_and_colour(method):
    if not _have(method):
        pytest.skip("no compiled kernel here")
    net = CPPN(8, 16)
    for pan in [(1.0,), (0, 0, 0), (float("nan"), 0), (0, float("inf")), "ab", None, 3.0, (True, 0), ("1", 0)]:
        with pytest.raises(ParameterError, match="pan"):
            Renderer(net, 8, 8, method=method, pan=pan)
    for color in [np.eye(3), np.zeros((4, 3)), np.full((3, 4), np.nan), [[1, 2, 3]], "red"]:
        with pytest.raises(ParameterError, match="color"):
            Renderer(net, 8, 8, method=method, color=color)
    with pytest.raises(ParameterError, match="color"):
        reference_render(net, 8, 8, np.zeros(8), color=np.ones((3, 3)))
    with pytest.raises(ParameterError, match="pan"):
        reference_render(net, 8, 8, np.zeros(8), pan=(0, None))
    r = Renderer(net, 8, 8, method=method, pan=np.array([1, -2]), color=np.ones((3, 4), np.float32).tolist())
    assert r.pan == (1.0, -2.0) and type(r.pan[0]) is float
    assert r.color.dtype == np.float64 and r.color.shape == (3, 4)


def test_a_kernel_build_without_the_colour_argument_is_not_used(monkeypatch):
    # a stale build exports only the old entry point: it must be ignored (torch path), never called wrongly
    import ctypes

    from neuromv.renderer.kernel import kernel_library

    class Stale:
        neuromv_render = object()  # the old symbol only

    monkeypatch.setattr(ctypes, "CDLL", lambda path: Stale())
    assert kernel_library.__wrapped__() is None


def test_overlapped_starts_the_next_job_before_handing_one_out_and_keeps_the_order():
    import threading

    from neuromv.renderer.threads import overlapped

    started = [threading.Event() for _ in range(5)]
    runs = [[] for _ in range(5)]

    def job(k):
        def work():
            runs[k].append(threading.current_thread().name)
            started[k].set()
        return k, work, 2

    got = []
    for k in overlapped((job(k) for k in range(5)), threads=2):
        assert len(runs[k]) == 2  # both runs of a job are done when it is handed out
        if k + 1 < 5:  # the next one was queued before this one came out: it starts without the caller
            assert started[k + 1].wait(5.0), k
        got.append(k)
    assert got == list(range(5))
    assert all(name.startswith("neuromv-render") for r in runs for name in r)


def test_overlapped_raises_a_runs_error_at_its_turn_and_leaves_no_threads_behind():
    import threading

    from neuromv.renderer.threads import overlapped

    def job(k):
        def work():
            if k == 2:
                raise ValueError("job 2 failed")
        return k, work, 2

    got = []
    with pytest.raises(ValueError, match="job 2 failed"):
        for k in overlapped((job(k) for k in range(6)), threads=2):
            got.append(k)
    assert got == [0, 1]
    # closed early: queued runs dropped, the pool's threads ended
    gen = overlapped((job(k) for k in range(1, 2)), threads=3)
    assert next(gen) == 1
    gen.close()
    gen = overlapped(((k, lambda: None, 2) for k in range(100)), threads=2)
    assert next(gen) == 0
    gen.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("neuromv-render")]


def test_blas_is_on_one_thread_during_a_render_and_comes_back_even_when_renders_overlap():
    # a server's renders overlap in threads: only the first sets the limit and it restores it, so the count never
    # stays at 1 (threadpoolctl lets only the thread that set a limit change OpenBLAS until it restores it)
    import threading

    from threadpoolctl import threadpool_info

    from neuromv.renderer.threads import blas_one_thread

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    np.ones((64, 64)) @ np.ones((64, 64))  # numpy's BLAS is loaded
    before = blas_threads()
    if not before:
        pytest.skip("no BLAS library that threadpoolctl knows")
    with blas_one_thread():
        with blas_one_thread():  # nested
            assert blas_threads() == {1}
        assert blas_threads() == {1}
    assert blas_threads() == before
    for first_ends_first in (True, False):
        a_in, b_in, a_out, b_out = (threading.Event() for _ in range(4))

        def render(entered, leave, after=None):
            if after is not None:
                after.wait(10)
            with blas_one_thread():
                entered.set()
                leave.wait(10)

        a = threading.Thread(target=render, args=(a_in, a_out))
        b = threading.Thread(target=render, args=(b_in, b_out, a_in))
        a.start(), b.start()
        assert a_in.wait(10) and b_in.wait(10)
        assert blas_threads() == {1}
        first, second = (a, b) if first_ends_first else (b, a)
        (a_out if first_ends_first else b_out).set()
        first.join()
        (b_out if first_ends_first else a_out).set()
        second.join()
        assert blas_threads() == before, first_ends_first
