"""neuromv.picture: the picture network (multi-resolution grid + MLP), its fit, and its model files (format 2)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from neuromv.cppn import CPPN, coordinate_grid
from neuromv.errors import Interrupted, ModelError, ParameterError
from neuromv.metrics import ssim
from neuromv.picture import (MAX_GRID_VALUES, PICTURE_QUALITIES, PictureNet, fit_picture, fit_size,
                             picture_parameters)
from neuromv.reference import cached_fit, cached_picture_fit, load_model, save_model


def detailed_image(h: int = 64, w: int = 96) -> np.ndarray:
    """Edges, gradients and fine texture: a diagonal colour ramp, a hard-edged disc, a checkerboard of 2-pixel
    squares and a sine grating."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 3.0)], axis=2)
    disc = (xx - w * 0.3) ** 2 + (yy - h * 0.5) ** 2 < (h * 0.25) ** 2
    img[disc] = [0.9, 0.2, 0.1]
    checker = ((xx // 2 + yy // 2) % 2 == 0) & (xx > w * 0.6) & (yy > h * 0.5)
    img[checker] = [1.0, 1.0, 1.0]
    img[(xx > w * 0.6) & (yy > h * 0.5) & ~checker] = [0.0, 0.0, 0.2]
    return (img * 255 + 0.5).clip(0, 255).astype(np.uint8)


TARGET = detailed_image()


def to_u8(a: np.ndarray) -> np.ndarray:
    return (a * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted() -> PictureNet:
    return fit_picture(TARGET, quality="draft", seed=3)


def test_draft_fit_holds_a_detailed_picture(fitted):
    # draft (100 steps): measured 0.88-0.89 on this image (seeds 0, 3); an untrained network: about 0
    assert not fitted.training and not any(p.requires_grad for p in fitted.parameters())
    assert ssim(to_u8(fitted.render(96, 64)), TARGET) >= 0.85
    untrained = PictureNet(96 / 64, 64, levels=6, seed=3)
    assert ssim(to_u8(untrained.render(96, 64)), TARGET) < 0.2


def test_render_at_twice_the_size_is_the_same_sharp_picture(fitted):
    small, big = fitted.render(96, 64), fitted.render(192, 128)
    down = big.reshape(64, 2, 96, 2, 3).mean(axis=(1, 3))  # each 2x2 block -> the pixel it covers
    assert ssim(to_u8(down), to_u8(small)) > 0.9
    # sharp: the disc's edge, a one-pixel step in the target, is still about one output pixel wide at 2x
    row = big[64, :, 1]  # green channel through the disc's centre: 0.2 inside, the ramp outside
    edge = int(round(2 * (96 * 0.3 - 64 * 0.25)))  # the disc's left edge at 2x
    steps = np.abs(np.diff(row[edge - 6:edge + 6]))
    assert steps.max() > 0.4 * np.abs(row[edge - 6] - row[edge + 6])
    np.testing.assert_array_equal(big, fitted.render(192, 128))  # deterministic


def test_render_chunks_are_invisible_and_match_forward(fitted):
    whole = fitted.render(96, 64, chunk=1 << 20)
    np.testing.assert_array_equal(fitted.render(96, 64, chunk=100), whole)  # 1 row at a time
    np.testing.assert_array_equal(fitted.render(96, 64, chunk=1000), whole)  # 10 rows, the last chunk short
    with torch.no_grad():
        plain = fitted(coordinate_grid(96, 64)).numpy().reshape(64, 96, 3)
        lattice = fitted.lattice(96, 64, coordinate_grid(96, 64)[:, :2].T.contiguous()).T.numpy()
    np.testing.assert_array_equal(plain, whole)
    np.testing.assert_allclose(lattice.reshape(64, 96, 3), whole, atol=1e-5)  # what the fit trains on
    panned = fitted.render(96, 64, scale=0.5, pan=(0.1, -0.2))
    with torch.no_grad():
        ref = fitted(coordinate_grid(96, 64, scale=0.5, pan=(0.1, -0.2))).numpy().reshape(64, 96, 3)
    np.testing.assert_array_equal(panned, ref)


def test_outside_the_frame_is_the_border(fitted):
    zoomed_out = fitted.render(96, 64, scale=3.0)
    corner = fitted.render(96, 64)[0, 0]
    np.testing.assert_allclose(zoomed_out[0, 0], corner, atol=0.05)  # far outside: the clamped corner


def test_fit_is_deterministic_and_reports_progress():
    events = []
    small = TARGET[::2, ::2].copy()
    a = fit_picture(small, quality="draft", progress=lambda *e: events.append(e))
    b = fit_picture(small, quality="draft")
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    steps = PICTURE_QUALITIES["draft"].steps
    assert events[0] == ("fit", 0, steps) and events[-1] == ("fit", steps, steps)
    assert len(events) > 3


def test_cancel_stops_a_fit_within_a_second():
    big = np.ascontiguousarray(np.tile(TARGET, (6, 7, 1))[:360, :640])
    ev = threading.Event()
    started, errors, done = threading.Event(), [], []

    def progress(stage, step, total):
        if step >= 1:
            started.set()

    def work():
        try:
            fit_picture(big, quality="standard", progress=progress, cancel=ev)
        except Interrupted as e:
            errors.append(e)
        done.append(time.perf_counter())

    t = threading.Thread(target=work)
    t.start()
    assert started.wait(60)
    t0 = time.perf_counter()
    ev.set()
    t.join(10)
    assert errors and done and done[0] - t0 < 1.0


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32)])
def test_fit_refuses_a_non_image_array(bad):
    with pytest.raises(ParameterError, match="uint8 of shape"):
        fit_picture(bad)
    with pytest.raises(ParameterError, match="fit quality must be one of draft, standard, high"):
        fit_picture(TARGET, quality="best")


def test_fit_size_follows_the_video_the_source_and_the_quality():
    assert fit_size(256, 256, (3000, 3000)) == (256, 256)  # the video's size
    assert fit_size(1280, 720, (3000, 3000)) == (1280, 720)
    assert fit_size(1920, 1080, (3000, 3000)) == (1280, 720)  # the quality's cap
    assert fit_size(1920, 1080, (3000, 3000), "high") == (1920, 1080)
    assert fit_size(1280, 720, (3000, 3000), "draft") == (640, 360)
    assert fit_size(1280, 720, (512, 512)) == (512, 288)  # cover: the source's 512 columns span the width
    assert fit_size(1280, 720, (512, 512), mode="contain") == (910, 512)  # contain: its 512 rows span the height
    w, h = fit_size(3840, 1080, (4000, 4000))
    assert abs(w / h - 3840 / 1080) < 0.01 and w * h <= 1280 * 720


# -- model files -------------------------------------------------------------------------------------------------
def test_save_load_round_trip_renders_bitwise_equal(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "p.safetensors", info={"aspect": 1.5, "quality": "draft"})
    loaded, info = load_model(path)
    assert isinstance(loaded, PictureNet) and info == {"aspect": 1.5, "quality": "draft"}
    assert (loaded.aspect, loaded.finest, loaded.levels, loaded.seed) == (1.5, 64, 6, 3)
    assert not any(p.requires_grad for p in loaded.parameters())
    np.testing.assert_array_equal(loaded.render(150, 100), fitted.render(150, 100))


def test_version_1_files_still_load(tmp_path):
    """A file as NeuroMV 0.x wrote it (format 1: no picture mode)."""
    for image in (True, False):
        net = CPPN(8, 16, seed=2, image=image)
        meta = {"format": "neuromv-cppn", "version": "1", "n_z": "8", "hidden": "16", "n_hidden": "5", "seed": "2",
                "mode": "image" if image else "abstract", "info": json.dumps({"aspect": 1.0})}
        p = tmp_path / f"v1_{image}.safetensors"
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(p), metadata=meta)
        loaded, info = load_model(p)
        assert isinstance(loaded, CPPN) and loaded.image == image and info == {"aspect": 1.0}
        torch.testing.assert_close(loaded.layers[2].weight, net.layers[2].weight, rtol=0, atol=0)


def _picture_meta(net: PictureNet, **change) -> dict:
    meta = {"format": "neuromv-cppn", "version": "2", "mode": "picture", "levels": str(net.levels),
            "features": str(net.features), "base": str(net.base), "finest": str(net.finest),
            "aspect": repr(net.aspect), "hidden": str(net.hidden), "n_hidden": str(net.n_hidden), "seed": "3",
            "info": "{}"}
    return {**meta, **change}


@pytest.mark.parametrize("change, tensors, message", [
    (dict(levels="1000000000"), None, "levels must be an integer from 1 to 32"),
    (dict(finest="1000000000"), None, "finest must be an integer from 1 to 8192"),
    (dict(finest="8192", aspect="64.0"), None, f"at most {MAX_GRID_VALUES}"),  # 10^9 cells: refused unread
    (dict(features="9"), None, "features must be an integer from 1 to 8"),
    (dict(aspect="nan"), None, "aspect must be a number"),
    (dict(aspect="0"), None, "aspect must be a number"),
    (dict(aspect="1e400"), None, "aspect must be a number"),
    (dict(hidden="-1"), None, "hidden must be an integer"),
    (dict(levels="9" * 5000), None, "damaged NeuroMV model metadata"),
    (dict(mode="picture", version="1"), None, "mode must be one of image, abstract in format 1"),
    (dict(aspect="2.0"), None, "has shape"),  # other grids than the file holds
    (dict(), "wrong_shape", "has shape"),
    (dict(), "missing", "missing or unexpected"),
    (dict(), "f64", "NeuroMV models are F32"),
])
def test_hostile_picture_headers_are_refused_in_one_line(fitted, tmp_path, change, tensors, message):
    state = {k: v.clone().contiguous() for k, v in fitted.state_dict().items()}
    if tensors == "wrong_shape":
        state["grids.5"] = torch.zeros(1, 2, 3, 3)
    elif tensors == "missing":
        state.pop("mlp.1.bias")
    elif tensors == "f64":
        state["mlp.0.weight"] = state["mlp.0.weight"].double()
    p = tmp_path / "bad.safetensors"
    save_file(state, str(p), metadata=_picture_meta(fitted, **change))
    with pytest.raises(ModelError, match=message) as err:
        load_model(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_picture_parameters_match_the_network(fitted):
    expected = picture_parameters(fitted.levels, fitted.features, fitted.base, fitted.finest, fitted.aspect,
                                  fitted.hidden, fitted.n_hidden)
    assert expected == {k: tuple(v.shape) for k, v in fitted.state_dict().items()}


def test_cached_picture_fit_is_keyed_by_the_quality(monkeypatch, tmp_path):
    import neuromv.reference as ref

    monkeypatch.setenv("NEUROMV_CACHE_DIR", str(tmp_path))
    calls = []
    real = ref.fit_picture
    monkeypatch.setattr(ref, "fit_picture", lambda *a, **k: calls.append(k["quality"]) or real(*a, **k))
    small = TARGET[::4, ::4].copy()
    a = cached_picture_fit(small, quality="draft")
    b = cached_fit(small, kind="picture", quality="draft")
    assert calls == ["draft"] and isinstance(b, PictureNet)
    np.testing.assert_array_equal(a.render(24, 16), b.render(24, 16))
    _, info = load_model(next((tmp_path / "fits").iterdir()))
    assert info == {"quality": "draft", "method": "picture"}
    monkeypatch.setitem(PICTURE_QUALITIES, "standard", PICTURE_QUALITIES["draft"])  # fast, but another key
    cached_picture_fit(small, quality="standard")
    assert calls == ["draft", "standard"]
    with pytest.raises(ParameterError, match="fit kind must be"):
        cached_fit(small, kind="magic")
