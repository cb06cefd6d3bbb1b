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
