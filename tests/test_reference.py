"""neuromv.reference: fitting a CPPN to an image, saved models (safetensors), and the fit cache."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from neuromv.cppn import CPPN
from neuromv.demo import demo_cover
from neuromv.errors import ModelError, OutputError, ParameterError
from neuromv.image import fit_image
from neuromv.metrics import ssim
from neuromv.reference import (FitOptions, cache_dir, cached_fit, check_model_path, fit_cppn, load_model,
                               save_model, training_size)
from neuromv.renderer import Renderer

TARGET = fit_image(demo_cover(128), 64, 36)
FAST = FitOptions(steps=400)


@pytest.fixture(scope="module")
def fitted():
    return fit_cppn(TARGET, n_z=8, hidden=16, seed=1, options=FAST)


def test_training_size_keeps_the_aspect_and_never_upscales():
    assert training_size(1280, 720) == (171, 96)
    assert training_size(512, 512) == (128, 128)
    assert training_size(64, 48) == (64, 48)
    w, h = training_size(3840, 1080)
    assert abs(w / h - 3840 / 1080) < 0.02


def test_fit_reproduces_the_image_and_renders_sharp_at_any_size(fitted):
    assert fitted.image and not any(p.requires_grad for p in fitted.parameters())
    still = Renderer(fitted, 64, 36).render(np.zeros(8))
    assert ssim(still, TARGET) > 0.6
    untrained = Renderer(CPPN(8, 16, seed=1, image=True), 64, 36).render(np.zeros(8))
    assert ssim(untrained, TARGET) < 0.4
    big = Renderer(fitted, 256, 144).render(np.zeros(8))  # 4x the training size: same picture, more pixels
    assert ssim(big, fit_image(demo_cover(512), 256, 144)) > 0.55


def test_fit_is_deterministic_and_reports_progress():
    events = []
    a = fit_cppn(TARGET[::2, ::2].copy(), n_z=4, hidden=8, options=FitOptions(steps=60),
                 progress=lambda *e: events.append(e))
    b = fit_cppn(TARGET[::2, ::2].copy(), n_z=4, hidden=8, options=FitOptions(steps=60))
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert events[0] == ("fit", 0, 60) and events[-1] == ("fit", 60, 60)


def test_naive_fit_trains_the_plain_cppn_with_z_held_at_zero():
    naive = fit_cppn(TARGET, n_z=8, hidden=16, seed=1, options=FitOptions(steps=200, method="naive"))
    assert not naive.image
    start = CPPN(8, 16, seed=1)
    z_cols = slice(3, None)
    torch.testing.assert_close(naive.layers[0].weight[:, z_cols], start.layers[0].weight[:, z_cols])  # no gradient
    assert not torch.equal(naive.layers[0].weight[:, :3], start.layers[0].weight[:, :3])


@pytest.mark.parametrize("bad", [dict(steps=0), dict(lr=0.0), dict(batch=0), dict(method="magic"), dict(steps=1.5)])
def test_bad_fit_options(bad):
    with pytest.raises(ParameterError):
        FitOptions(**bad)


def test_fit_refuses_a_non_image_array():
    with pytest.raises(ParameterError):
        fit_cppn(np.zeros((10, 10), np.uint8))


def test_cancel_stops_a_fit():
    import threading

    from neuromv.errors import Interrupted

    ev = threading.Event()
    ev.set()
    with pytest.raises(Interrupted):
        fit_cppn(TARGET, options=FAST, cancel=ev)


# -- saved models ----------------------------------------------------------------------------------------------
def test_save_load_round_trip_renders_the_same(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.safetensors", info={"aspect": 16 / 9, "note": "x"})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    loaded, info = load_model(path)
    assert info == {"aspect": 16 / 9, "note": "x"}
    assert (loaded.image, loaded.n_z, loaded.hidden, loaded.seed) == (True, 8, 16, 1)
    z = np.random.default_rng(0).normal(size=8).astype(np.float32)
    np.testing.assert_array_equal(Renderer(loaded, 40, 30).render(z), Renderer(fitted, 40, 30).render(z))
    with pytest.raises(OutputError, match="already exists"):
        save_model(fitted, path)
    save_model(fitted, path, overwrite=True)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_abstract_models_round_trip_too(tmp_path):
    net = CPPN(4, 8, seed=3)
    path = save_model(net, tmp_path / "a.safetensors")
    loaded, _ = load_model(path)
    assert not loaded.image
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:  # format 2 writes CPPNs as format 1 did, with the new version
        assert f.metadata()["version"] == "2" and f.metadata()["mode"] == "abstract"
    torch.testing.assert_close(loaded.layers[0].weight, net.layers[0].weight)


@pytest.mark.parametrize("name, error", [("m.pt", "must end in .safetensors"), ("no/dir/m.safetensors", "does not exist")])
def test_model_output_checks(tmp_path, fitted, name, error):
    with pytest.raises(OutputError, match=error):
        save_model(fitted, tmp_path / name)
    with pytest.raises(OutputError, match="is a directory"):
        save_model(fitted, tmp_path)
    img = tmp_path / "img.safetensors"
    img.write_bytes(b"x")
    with pytest.raises(OutputError, match="is an input"):
        check_model_path(img, inputs=(img,), overwrite=True)


def _write(path, tensors, meta):
    save_file(tensors, str(path), metadata=meta)
    return path


def _good_meta(net):
    return {"format": "neuromv-cppn", "version": "1", "n_z": str(net.n_z), "hidden": str(net.hidden),
            "n_hidden": str(net.n_hidden), "seed": "0", "mode": "image", "info": json.dumps({})}


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("directory", "is a directory"),
    ("text", "not a safetensors model file"),
    ("empty", "file is empty"),
    ("truncated", "not a safetensors model file"),
    ("pickle", "not a safetensors model file"),
    ("foreign", "not a NeuroMV model"),
    ("newer", "newer than this NeuroMV"),
    ("bad_meta", "damaged NeuroMV model metadata"),
    ("missing_tensor", "missing or unexpected"),
    ("wrong_shape", "has shape"),
    ("nan", "NaN"),
])
def test_bad_model_files(tmp_path, fitted, case, message):
    good = save_model(fitted, tmp_path / "good.safetensors")
    tensors = {k: v.clone() for k, v in fitted.state_dict().items()}
    meta = _good_meta(fitted)
    p = tmp_path / "bad.safetensors"
    if case == "missing":
        p = tmp_path / "nope.safetensors"
    elif case == "directory":
        p = tmp_path
    elif case == "text":
        p.write_text("not a model at all\n")
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "truncated":
        p.write_bytes(good.read_bytes()[:-100])
    elif case == "pickle":
        torch.save(fitted.state_dict(), p)
    elif case == "foreign":
        _write(p, {"weight": torch.zeros(3, 3)}, {"author": "someone else"})
    elif case == "newer":
        _write(p, tensors, {**meta, "version": "99"})
    elif case == "bad_meta":
        _write(p, tensors, {**meta, "hidden": "lots"})
    elif case == "missing_tensor":
        tensors.pop("pulse")
        _write(p, tensors, meta)
    elif case == "wrong_shape":
        tensors["layers.0.weight"] = torch.zeros(2, 2)
        _write(p, tensors, meta)
    elif case == "nan":
        tensors["layers.1.bias"][0] = float("nan")
        _write(p, tensors, meta)
    with pytest.raises(ModelError, match=message):
        load_model(p)


# -- the cache -------------------------------------------------------------------------------------------------
def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NEUROMV_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NEUROMV_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert cache_dir() == tmp_path / "xdg" / "neuromv"


def test_cached_fit_is_reused_keyed_by_image_and_settings(monkeypatch, tmp_path):
    import neuromv.reference as ref

    monkeypatch.setenv("NEUROMV_CACHE_DIR", str(tmp_path))
    calls = []
    real_fit = ref.fit_cppn
    monkeypatch.setattr(ref, "fit_cppn", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    small = TARGET[::2, ::2].copy()
    opts = FitOptions(steps=30)
    a = cached_fit(small, n_z=4, hidden=8, options=opts)
    b = cached_fit(small, n_z=4, hidden=8, options=opts)
    assert len(calls) == 1 and len(list((tmp_path / "fits").iterdir())) == 1
    torch.testing.assert_close(a.layers[-1].weight, b.layers[-1].weight)
    cached_fit(small, n_z=4, hidden=8, options=FitOptions(steps=31))  # other settings: a new fit
    other = small.copy()
    other[0, 0] ^= 1
    cached_fit(other, n_z=4, hidden=8, options=opts)  # one pixel differs: a new fit
    cached_fit(small, n_z=4, hidden=8, options=opts, cache=False)  # no cache: fits, stores nothing
    assert len(calls) == 4 and len(list((tmp_path / "fits").iterdir())) == 3
    for f in (tmp_path / "fits").iterdir():  # a damaged cache entry is fitted again, with a warning
        f.write_bytes(b"garbage")
    cached_fit(small, n_z=4, hidden=8, options=opts)
    assert len(calls) == 5
