"""The GPU path of neuromv.renderer: device selection, Renderer.render_batch and Renderer.frames.

Everything but the tests marked ``cuda`` runs on CPU: ``method='dense'`` (the GPU algorithm) is selectable there,
and Renderer.frames runs the same batch bookkeeping on CPU (without streams and pinned memory). The CUDA-only code
(side stream, pinned host buffers, events) is tested where PyTorch sees a GPU.
"""

from __future__ import annotations

import weakref
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import neuromv.renderer as renderer
from neuromv.cppn import CPPN
from neuromv.errors import ParameterError
from neuromv.renderer import Renderer, kernel_widths, reference_render, resolve_device
from neuromv.renderer.dense import rgb_to_i420

W, H = 37, 21  # odd sizes: chunks and rows never line up with anything
HAS_CUDA = torch.cuda.is_available()
cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


def _zs(n: int, n_z: int, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, n_z)) * scale).astype(np.float32)


def _levels(a: np.ndarray, b: np.ndarray) -> int:
    """Largest difference between two uint8 images (or stacks), in levels."""
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) if a.size else 0


def _assert_matches_reference(frames: np.ndarray, net: CPPN, zs: np.ndarray, width: int = W, height: int = H):
    for frame, z in zip(frames, zs):
        ref = reference_render(net, width, height, z)
        err = np.abs(frame.astype(np.float64) / 255.0 - ref).max()
        assert err <= 1.0 / 255.0, f"max error {err * 255:.3f}/255"
        assert np.mean(frame == np.round(ref * 255).astype(np.uint8)) > 0.99  # rounding to nearest


# -- device selection --------------------------------------------------------------------------------------------
def test_auto_is_cpu_when_torch_sees_no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(" AUTO ") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert Renderer(CPPN(4, 8), 8, 8, device="auto").device.type == "cpu"


def test_auto_is_cuda_when_torch_sees_a_gpu(monkeypatch):
    # nothing is allocated: resolve_device only names the device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ParameterError, match="only 1 CUDA GPU"):
        resolve_device("cuda:1")
    with pytest.raises(ParameterError, match="bad device 'cuda:x'"):
        resolve_device("cuda:x")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA"])
def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError, match="no CUDA GPU.*--device cpu"):
        resolve_device(name)
    with pytest.raises(ParameterError, match="no CUDA GPU"):
        Renderer(CPPN(4, 8), 8, 8, device=name)


@pytest.mark.parametrize("name", ["tpu", "gpu", "", "cpu:0", "mps", None, 0, torch.float32])
def test_bad_device_names(name):
    with pytest.raises(ParameterError, match="device must be 'auto', 'cpu' or 'cuda'"):
        resolve_device(name)


def test_dense_is_the_method_on_a_gpu_and_selectable_on_cpu():
    r = Renderer(CPPN(4, 8), 8, 8, method="dense")
    assert r.method == "dense" and r.device.type == "cpu"
    if HAS_CUDA:
        assert Renderer(CPPN(4, 8), 8, 8, device="cuda").method == "dense"


# -- render_batch ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hidden, n_hidden, n_z", [(32, 5, 32), (16, 2, 8), (8, 1, 3)])
@pytest.mark.parametrize("image", [False, True], ids=["abstract", "image"])
def test_render_batch_dense_matches_per_frame_render_and_reference(image, hidden, n_hidden, n_z):
    net = CPPN(n_z, hidden, n_hidden=n_hidden, seed=5, image=image)
    zs = np.concatenate([_zs(3, n_z, 0.3, 1), _zs(3, n_z, 3.0, 2), _zs(2, n_z, 10.0, 3)])  # gentle to wild z
    dense = Renderer(net, W, H, method="dense")
    batch = dense.render_batch(zs)
    assert batch.shape == (len(zs), H, W, 3) and batch.dtype == np.uint8
    _assert_matches_reference(batch, net, zs)
    tiled = Renderer(net, W, H, method="tiled", threads=2, tile=128)
    assert _levels(batch, np.stack([tiled.render(z) for z in zs])) <= 1
    assert _levels(batch, np.stack([dense.render(z) for z in zs])) <= 1


@pytest.mark.skipif(32 not in kernel_widths(), reason="compiled kernel not built")
def test_render_batch_dense_matches_the_kernel():
    from neuromv.renderer import kernel_widths

    if 32 not in kernel_widths():
        pytest.skip("the compiled kernel is not installed here")
    net = CPPN(32, 32, seed=6)
    zs = _zs(5, 32, 1.0, 4)
    kernel = Renderer(net, W, H, method="kernel", threads=2)
    batch = Renderer(net, W, H, method="dense").render_batch(zs)
    assert _levels(batch, np.stack([kernel.render(z) for z in zs])) <= 1


def test_image_mode_centred_batch_matches_the_tiles():
    # the per-pixel mean pulse (centre) is subtracted on the dense path too
    net = CPPN(8, 16, seed=2, image=True)
    zs = _zs(6, 8, 2.0, 5)
    dense = Renderer(net, W, H, method="dense", centre=zs)
    tiled = Renderer(net, W, H, method="tiled", centre=zs)
    batch = dense.render_batch(zs)
    assert _levels(batch, np.stack([tiled.render(z) for z in zs])) <= 1
    plain = Renderer(net, W, H, method="dense").render_batch(zs)
    assert _levels(batch, plain) > 1  # the centring did something


@pytest.mark.parametrize("chunk", [1, 5, 100, 7 * 13 * 9 - 1, 7 * 13 * 9 + 3])
@pytest.mark.parametrize("image", [False, True], ids=["abstract", "image"])
def test_render_batch_in_any_chunk_size(image, chunk):
    # chunk 1 and 5: fewer pixel-frames per chunk than frames (one pixel per chunk); 100: a ragged last chunk
    net = CPPN(8, 16, seed=3, image=image)
    zs = _zs(7, 8, 1.5, 6)
    r = Renderer(net, 13, 9, method="dense")
    r.backend.chunk = chunk
    _assert_matches_reference(r.render_batch(zs), net, zs, 13, 9)


def test_render_batch_on_cpu_methods_is_render_per_frame():
    net = CPPN(8, 16, seed=4)
    zs = _zs(4, 8)
    r = Renderer(net, W, H, method="tiled")
    np.testing.assert_array_equal(r.render_batch(zs), np.stack([r.render(z) for z in zs]))


@pytest.mark.parametrize("method", ["dense", "tiled"])
def test_render_batch_shapes_and_errors(method):
    r = Renderer(CPPN(8, 16), W, H, method=method)
    empty = r.render_batch(np.zeros((0, 8), np.float32))
    assert empty.shape == (0, H, W, 3) and empty.dtype == np.uint8
    assert r.render_batch(torch.zeros(1, 8, dtype=torch.float64)).shape == (1, H, W, 3)  # tensors, any float
    with pytest.raises(ParameterError, match=r"zs must have shape \(n_frames, 8\)"):
        r.render_batch(np.zeros(8))
    with pytest.raises(ParameterError, match="zs must have shape"):
        r.render_batch(np.zeros((2, 7)))


def test_lowered_matmul_precision_is_overridden_and_restored():
    net = CPPN(8, 32, seed=8)
    zs = _zs(3, 8, 2.0)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # would allow TF32 on a GPU
        _assert_matches_reference(Renderer(net, W, H, method="dense").render_batch(zs), net, zs)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


# -- frames ------------------------------------------------------------------------------------------------------
BATCH = 3


@pytest.mark.parametrize("n_frames", [0, 1, BATCH - 1, BATCH, 2 * BATCH + 1])
@pytest.mark.parametrize("image", [False, True], ids=["abstract", "image"])
def test_frames_yields_every_frame_in_order(image, n_frames):
    net = CPPN(8, 16, seed=9, image=image)
    zs = _zs(n_frames, 8, 2.0, n_frames)
    r = Renderer(net, W, H, method="dense")
    frames = list(r.frames(zs, batch=BATCH))  # all kept: no buffer may be overwritten under a kept frame
    assert len(frames) == n_frames
    for f, z in zip(frames, zs):
        assert f.shape == (H, W, 3) and f.dtype == np.uint8
        assert _levels(f, r.render(z)) <= 1
    if n_frames:
        _assert_matches_reference(np.stack(frames), net, zs)
    for a, b in zip(frames, frames[1:]):  # distinct z, distinct frames: the order is checked above
        assert _levels(a, b) > 1


@pytest.mark.parametrize("method", ["tiled", "dense"])
def test_frames_takes_lists_tensors_and_the_default_batch(method):
    net = CPPN(4, 8, seed=1)
    zs = _zs(5, 4)
    r = Renderer(net, 16, 9, method=method)
    expected = [r.render(z) for z in zs]
    for given in (zs, list(zs), torch.from_numpy(zs)):
        got = list(r.frames(given))
        assert len(got) == 5 and max(_levels(a, b) for a, b in zip(got, expected)) <= 1
    assert list(r.frames(np.zeros((0, 4)))) == []


def test_default_batch(monkeypatch):
    r = Renderer(CPPN(4, 8), 10, 10, method="dense")
    assert r.default_batch() == renderer.MAX_BATCH == 32  # small frames: the cap
    at = lambda w, h: Renderer.default_batch(SimpleNamespace(n_pixels=w * h))  # noqa: E731 - no 4K set-up
    assert at(1920, 1080) == 32 and at(3840, 2160) == 8 and at(8192, 8192) == 1
    monkeypatch.setattr(renderer, "BATCH_PIXELS", 250)
    assert r.default_batch() == 2
    monkeypatch.setattr(renderer, "BATCH_PIXELS", 50)
    assert r.default_batch() == 1  # never 0


@pytest.mark.parametrize("batch", [0, -1, 1.5, True, "3"])
def test_frames_bad_batch(batch):
    r = Renderer(CPPN(4, 8), 8, 8, method="dense")
    with pytest.raises(ParameterError, match="batch must be an integer >= 1"):
        r.frames(_zs(2, 4), batch=batch)  # at the call, not at the first frame


def test_frames_wrong_z_shape_fails_at_the_call():
    with pytest.raises(ParameterError, match="zs must have shape"):
        Renderer(CPPN(4, 8), 8, 8, method="tiled").frames(np.zeros((3, 5)))


class _Counting:
    """Wraps a dense Renderer's backend.batch: counts the batches launched, keeps weak references to their outputs."""

    def __init__(self, r: Renderer) -> None:
        self.inner, self.outputs = r.backend.batch, []

    def __call__(self, zs):
        out = self.inner(zs)
        self.outputs.append(weakref.ref(out))
        return out

    def alive(self) -> int:
        return sum(ref() is not None for ref in self.outputs)


def test_frames_launches_the_next_batch_before_handing_out_this_one():
    r = Renderer(CPPN(4, 8), 16, 9, method="dense")
    r.backend.batch = counting = _Counting(r)
    it = r.frames(_zs(10, 4), batch=BATCH)
    assert counting.outputs == []  # lazy: nothing before the first frame is asked for
    next(it)
    assert len(counting.outputs) == 2  # batch 0 handed out, batch 1 already launched
    for _ in range(BATCH - 1):
        next(it)
    assert len(counting.outputs) == 2
    next(it)  # the first frame of batch 1: batch 2 is launched
    assert len(counting.outputs) == 3
    assert len(list(it)) == 10 - BATCH - 1
    assert len(counting.outputs) == 4  # 10 frames = 4 batches, the last one partial


def test_frames_memory_is_bounded_whatever_the_length():
    r = Renderer(CPPN(4, 8), 16, 9, method="dense")
    r.backend.batch = counting = _Counting(r)
    most = 0
    n = 0
    for frame in r.frames(_zs(40, 4), batch=2):
        n += 1
        most = max(most, counting.alive())
        del frame
    assert n == 40 and len(counting.outputs) == 20
    assert most <= 3  # the batch being handed out, the next one, and the one the caller's last frame holds


def test_frames_early_stop_is_clean():
    r = Renderer(CPPN(4, 8), 16, 9, method="dense")
    it = r.frames(_zs(10, 4), batch=BATCH)
    first = next(it)
    it.close()
    assert _levels(first, r.render(_zs(10, 4)[0])) <= 1


# -- pan and colour on the batched path -----------------------------------------------------------------------------
PAN = (0.6, -1.1)


def _colour() -> np.ndarray:
    return renderer.color_matrix(hue=140.0, saturation=1.5, brightness=-0.05, contrast=1.2)


@pytest.mark.parametrize("image", [False, True], ids=["abstract", "image"])
def test_render_batch_and_frames_honour_pan_and_colour(image):
    net = CPPN(8, 16, seed=14, image=image)
    zs = np.concatenate([_zs(3, 8, 0.3, 1), _zs(4, 8, 2.0, 2)])
    centre = zs if image else None
    dense = Renderer(net, W, H, method="dense", pan=PAN, color=_colour(), centre=centre)
    batch = dense.render_batch(zs)
    frames = np.stack(list(dense.frames(zs, batch=BATCH)))
    tiled = Renderer(net, W, H, method="tiled", pan=PAN, color=_colour(), centre=centre)
    assert _levels(batch, np.stack([tiled.render(z) for z in zs])) <= 1
    assert _levels(frames, batch) <= 1
    assert _levels(batch, np.stack([dense.render(z) for z in zs])) <= 1
    plain = Renderer(net, W, H, method="dense", centre=centre).render_batch(zs)
    assert _levels(batch, plain) > 8  # pan and colour changed the frames
    if not image:
        for frame, z in zip(batch, zs):
            ref = reference_render(net, W, H, z, pan=PAN, color=_colour())
            assert np.abs(frame.astype(np.float64) / 255.0 - ref).max() <= 1.0 / 255.0
            assert np.mean(frame == np.round(ref * 255).astype(np.uint8)) > 0.99


@pytest.mark.parametrize("chunk", [1, 100, 7 * 13 * 9 + 3])
def test_render_batch_colour_in_any_chunk_size(chunk):
    net = CPPN(8, 16, seed=15)
    zs = _zs(7, 8, 1.5, 7)
    r = Renderer(net, 13, 9, method="dense", pan=PAN, color=_colour())
    r.backend.chunk = chunk
    for frame, z in zip(r.render_batch(zs), zs):
        ref = reference_render(net, 13, 9, z, pan=PAN, color=_colour())
        assert np.abs(frame.astype(np.float64) / 255.0 - ref).max() <= 1.0 / 255.0


@pytest.mark.parametrize("image", [False, True], ids=["abstract", "image"])
def test_yuv420_frames_carry_the_colour(image):
    net = CPPN(8, 16, seed=16, image=image)
    zs = _zs(5, 8, 1.0, 8)
    r = Renderer(net, 38, 22, method="dense", pan=PAN, color=_colour(), centre=zs if image else None)
    yuv = np.stack(list(r.frames(zs, batch=2, yuv420=True)))
    rgb = torch.from_numpy(r.render_batch(zs)).reshape(len(zs), -1, 3)
    np.testing.assert_array_equal(yuv, rgb_to_i420(rgb, r.height, r.width).numpy())
    grey = Renderer(net, 38, 22, method="dense", pan=PAN, color=renderer.color_matrix(saturation=0.0),
                    centre=zs if image else None)
    chroma = np.stack(list(grey.frames(zs, yuv420=True)))[:, 22:]
    assert np.abs(chroma.astype(int) - 128).max() <= 1  # no saturation: no chroma


# -- CUDA only ---------------------------------------------------------------------------------------------------
@cuda
@pytest.mark.parametrize("image", [False, True], ids=["abstract", "image"])
def test_cuda_render_batch_matches_cpu_and_reference(image):
    net = CPPN(32, 32, seed=11, image=image)
    zs = np.concatenate([_zs(4, 32, 0.3, 1), _zs(4, 32, 3.0, 2)])
    centre = zs if image else None
    gpu = Renderer(net, 97, 53, device="cuda", centre=centre)
    assert gpu.method == "dense" and gpu.device.type == "cuda"
    batch = gpu.render_batch(zs)
    assert batch.shape == (len(zs), 53, 97, 3) and batch.dtype == np.uint8
    cpu = Renderer(net, 97, 53, method="tiled", centre=centre)
    assert _levels(batch, np.stack([cpu.render(z) for z in zs])) <= 1
    assert _levels(batch, np.stack([gpu.render(z) for z in zs])) <= 1
    if not image:
        _assert_matches_reference(batch, net, zs, 97, 53)


@cuda
@pytest.mark.parametrize("image", [False, True], ids=["abstract", "image"])
def test_cuda_pan_and_colour_match_cpu(image):
    net = CPPN(16, 32, seed=17, image=image)
    zs = _zs(5, 16, 2.0, 9)
    centre = zs if image else None
    gpu = Renderer(net, 64, 36, device="cuda", pan=PAN, color=_colour(), centre=centre)
    cpu = Renderer(net, 64, 36, method="tiled", pan=PAN, color=_colour(), centre=centre)
    frames = np.stack(list(gpu.frames(zs, batch=2)))
    assert _levels(frames, np.stack([cpu.render(z) for z in zs])) <= 1
    yuv = np.stack(list(gpu.frames(zs, batch=2, yuv420=True)))
    rgb = torch.from_numpy(frames).reshape(len(zs), -1, 3).cuda()
    np.testing.assert_array_equal(yuv, rgb_to_i420(rgb, gpu.height, gpu.width).cpu().numpy())


def _owner(frame: np.ndarray):
    """The torch tensor whose memory a yielded frame is a view of."""
    while isinstance(frame, np.ndarray):
        frame = frame.base
    return frame


def test_cpu_frames_are_views_of_their_batch():
    r = Renderer(CPPN(4, 8), 16, 9, method="dense")
    frames = list(r.frames(_zs(5, 4), batch=BATCH))
    owners = [_owner(f) for f in frames]
    assert all(isinstance(o, torch.Tensor) and not o.is_pinned() for o in owners)
    assert owners[0] is owners[BATCH - 1] and owners[0] is not owners[BATCH]


@cuda
def test_cuda_frames_double_buffered_are_identical():
    net = CPPN(16, 32, seed=12, image=True)
    zs = _zs(11, 16, 2.0, 3)
    r = Renderer(net, 64, 36, device="cuda", centre=zs)
    frames = list(r.frames(zs, batch=BATCH))  # all kept: pinned buffers must never be reused under them
    assert len(frames) == len(zs)
    owners = [_owner(f) for f in frames]
    assert all(o.is_pinned() for o in owners)  # the CUDA branch: copied into pinned host memory
    assert owners[0] is owners[BATCH - 1] and owners[0] is not owners[BATCH]
    expected = np.concatenate([r.render_batch(zs[s:s + BATCH]) for s in range(0, len(zs), BATCH)])
    np.testing.assert_array_equal(np.stack(frames), expected)  # same batches on the same device: bit-identical
    cpu = Renderer(net, 64, 36, method="tiled", centre=zs)
    assert _levels(np.stack(frames), np.stack([cpu.render(z) for z in zs])) <= 1


@cuda
def test_cuda_frames_memory_does_not_grow():
    net = CPPN(32, 32, seed=13)
    zs = _zs(60, 32)
    r = Renderer(net, 128, 72, device="cuda")
    it = r.frames(zs, batch=2)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(8):  # 4 batches
        next(it)
    early = torch.cuda.max_memory_allocated()
    assert sum(1 for _ in it) == len(zs) - 8
    assert torch.cuda.max_memory_allocated() <= early + 2 * 128 * 72 * 3  # not a batch more at the end


@cuda
def test_a_fitted_picture_renders_the_same_on_the_gpu():
    """The picture path (neuromv.renderer.picture) is torch on any device: on CUDA, the CPU's frames within a level
    (float rounding of the bilinear lookups), RGB and I420."""
    from neuromv.motion import Motion
    from neuromv.picture import PictureNet

    net = PictureNet(1.5, 32, levels=4, base=4, seed=3)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for g in net.grids:
            g.copy_(torch.randn(g.shape, generator=gen) * 2)
    net.eval()
    cpu = Renderer(net, 96, 64, motion=Motion.of(8, 0))
    gpu = Renderer(net, 96, 64, motion=Motion.of(8, 0), device="cuda")
    assert gpu.method == "picture" and gpu.device.type == "cuda"
    for u in _zs(4, 8, 0.5):
        assert _levels(gpu.render(u), cpu.render(u)) <= 1
        assert _levels(gpu.render_yuv420(u), cpu.render_yuv420(u)) <= 1


# -- the fused hidden layers (neuromv.renderer.fused) ------------------------------------------------------------
def test_fused_kernel_runs_on_cuda_with_triton_and_widths_it_takes(monkeypatch):
    from neuromv.renderer import fused

    assert not fused.supports(torch.device("cpu"), 32, 4)
    cpu = Renderer(CPPN(4, 32), 8, 8, method="dense").backend
    assert cpu.fused is False  # CPU: the torch layers
    cpu.fused = False
    with pytest.raises(ParameterError, match="the fused kernel needs a CUDA GPU"):
        cpu.fused = True
    monkeypatch.setattr(fused, "triton_available", lambda: True)  # as where Triton imports
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    gpu = torch.device("cuda")
    assert all(fused.supports(gpu, h, 4) for h in (16, 32, 64, 128))
    assert fused.supports(gpu, 32, 1)
    assert not any(fused.supports(gpu, h, 4) for h in (4, 8, 24, 48, 256))
    assert not fused.supports(gpu, 32, 0)  # no hidden-to-hidden layer: nothing to fuse
    assert not fused.supports(torch.device("cpu"), 32, 4)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert not fused.supports(gpu, 32, 4)  # before Ampere
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(fused, "triton_available", lambda: False)  # a CPU build of torch: no Triton
    assert not fused.supports(gpu, 32, 4)


def test_a_fused_kernel_that_cannot_build_falls_back_once_with_a_warning(monkeypatch, caplog):
    import neuromv.renderer.dense as dense

    monkeypatch.setattr(dense, "fused_supports", lambda *a: True)  # as on a GPU with Triton

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image for this GPU")

    monkeypatch.setattr(dense, "hidden_stack", broken)
    net = CPPN(8, 16, n_hidden=3, seed=2)
    zs = torch.from_numpy(_zs(3, 8))
    r = Renderer(net, W, H, method="dense")
    assert r.backend.fused
    with caplog.at_level("WARNING", logger="neuromv"):
        frames = r.backend.render_batch(zs)
    assert not r.backend.fused
    assert "the fused GPU kernel failed (RuntimeError: no kernel image for this GPU)" in caplog.text
    unfused = Renderer(net, W, H, method="dense")
    unfused.backend.fused = False
    np.testing.assert_array_equal(frames, unfused.render_batch(zs))
    _assert_matches_reference(frames, net, zs.numpy())


@cuda
@pytest.mark.parametrize("hidden,n_hidden,image", [(32, 5, False), (16, 3, False), (64, 4, False), (32, 5, True)],
                         ids=["32x5", "16x3", "64x4", "image"])
def test_cuda_fused_layers_match_the_torch_layers(hidden, n_hidden, image):
    net = CPPN(16, hidden, n_hidden=n_hidden, seed=5, image=image)
    zs = _zs(7, 16, 2.0, 4)
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("the fused kernel needs compute capability 8.0 on")
    r = Renderer(net, 97, 53, device="cuda", centre=zs if image else None)
    assert r.backend.fused, "Triton should run on a CUDA build of torch"
    r.backend.chunk = 1000  # chunks end mid-row and mid-block
    zoom = np.linspace(0.7, 1.4, len(zs))
    for zm in (None, zoom):
        r.backend.fused = True
        a = r.backend.render_batch(torch.from_numpy(zs), zoom=zm)
        r.backend.fused = False
        b = r.backend.render_batch(torch.from_numpy(zs), zoom=zm)
        assert _levels(a, b) <= 1 and np.mean(a == b) > 0.999
    if not image:
        r.backend.fused = True
        _assert_matches_reference(r.render_batch(zs), net, zs, 97, 53)
