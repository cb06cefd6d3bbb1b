"""neuromv.cppn: the network and the coordinate grid."""

from __future__ import annotations

import pytest
import torch

from neuromv.cppn import CPPN, coordinate_grid
from neuromv.errors import ParameterError


def test_architecture():
    net = CPPN(n_z=16, hidden=24)
    sizes = [(l.in_features, l.out_features) for l in net.layers]
    assert sizes == [(3 + 16, 24), (24, 24), (24, 24), (24, 24), (24, 24), (24, 3)]  # 5 hidden layers


def test_weights_are_standard_normal_and_seeded():
    a, b, c = CPPN(seed=1), CPPN(seed=1), CPPN(seed=2)
    for la, lb in zip(a.layers, b.layers):
        assert torch.equal(la.weight, lb.weight) and torch.equal(la.bias, lb.bias)
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    w = torch.cat([l.weight.flatten() for l in CPPN(n_z=32, hidden=256).layers])
    assert abs(w.mean().item()) < 0.01 and abs(w.std().item() - 1.0) < 0.01


def test_forward_range_and_z_dependence():
    net = CPPN(n_z=4)
    coords = coordinate_grid(16, 9)
    a = net(coords, torch.zeros(4))
    b = net(coords, torch.ones(4))
    assert a.shape == (144, 3)
    assert torch.all((a > 0) & (a < 1))
    assert (a - b).abs().mean() > 0.01


def test_coordinate_grid_is_centred_and_aspect_correct():
    g = coordinate_grid(1280, 720)
    x, y, r = g[:, 0], g[:, 1], g[:, 2]
    assert g.shape == (1280 * 720, 3)
    assert abs(x.mean()) < 1e-6 and abs(y.mean()) < 1e-6
    assert abs(y.max().item() - (1 - 1 / 720)) < 1e-6  # short side spans [-1, 1] (pixel centres)
    assert abs(x.max().item() - (1280 / 720) * (1 - 1 / 1280)) < 1e-5
    assert torch.allclose(r, torch.sqrt(x**2 + y**2))
    # resolution independence: a pixel of a 4x4 grid sits where the 2x2 block it covers in an 8x8 grid does
    small, big = coordinate_grid(4, 4), coordinate_grid(8, 8)
    assert torch.allclose(small[0, :2], (big[0, :2] + big[9, :2]) / 2)  # big[9] is row 1, column 1
    assert torch.allclose(coordinate_grid(10, 10, scale=2.0), 2 * coordinate_grid(10, 10))


@pytest.mark.parametrize("kwargs", [{"n_z": -1}, {"hidden": 0}, {"n_hidden": 0}, {"hidden": 2.5}])
def test_bad_parameters(kwargs):
    with pytest.raises(ParameterError):
        CPPN(**kwargs)
    with pytest.raises(ParameterError):
        coordinate_grid(0, 10)


def test_coordinate_grid_pan_shifts_x_and_y_and_recomputes_r():
    plain = coordinate_grid(37, 23, scale=1.5, dtype=torch.float64)
    panned = coordinate_grid(37, 23, scale=1.5, pan=(0.75, -2.0), dtype=torch.float64)
    assert torch.allclose(panned[:, 0], plain[:, 0] + 0.75, rtol=0, atol=1e-12)
    assert torch.allclose(panned[:, 1], plain[:, 1] - 2.0, rtol=0, atol=1e-12)
    assert torch.allclose(panned[:, 2], torch.sqrt(panned[:, 0] ** 2 + panned[:, 1] ** 2), rtol=0, atol=1e-12)
    assert abs(panned[:, 0].mean() - 0.75) < 1e-12 and abs(panned[:, 1].mean() + 2.0) < 1e-12  # the view's centre
    # the pan is in the CPPN's coordinates: the same shift at any scale and resolution
    big = coordinate_grid(74, 46, scale=0.5, pan=(0.75, -2.0), dtype=torch.float64)
    assert torch.allclose(big[:, :2].mean(0), torch.tensor([0.75, -2.0], dtype=torch.float64), atol=1e-12)


def test_coordinate_grid_without_pan_is_unchanged_bit_for_bit():
    # the formula from before the pan existed, in float64, then cast
    for width, height, scale in [(37, 23, 1.0), (1280, 720, 2.5), (1, 5, 0.3)]:
        half = min(width, height) / 2.0
        xs = (torch.arange(width, dtype=torch.float64) + 0.5 - width / 2.0) / half * scale
        ys = (torch.arange(height, dtype=torch.float64) + 0.5 - height / 2.0) / half * scale
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        old = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.sqrt(xx * xx + yy * yy).reshape(-1)], dim=1)
        for pan in [(0.0, 0.0), (0, 0), [0.0, -0.0]]:
            assert torch.equal(coordinate_grid(width, height, scale=scale, pan=pan), old.float())
            assert torch.equal(coordinate_grid(width, height, scale=scale, pan=pan, dtype=torch.float64), old)


@pytest.mark.parametrize("pan", [(1.0,), (0.0, 0.0, 0.0), (float("nan"), 0.0), (0.0, float("-inf")), None, 1.0,
                                 "xy", (True, False), ("0", "0"), (0.0, None), (1j, 0)])
def test_coordinate_grid_bad_pan(pan):
    with pytest.raises(ParameterError, match="pan must be two finite numbers"):
        coordinate_grid(10, 10, pan=pan)


def test_coordinate_grid_pan_takes_numpy_and_integers():
    import numpy as np

    a = coordinate_grid(9, 7, pan=np.array([1, -1]))
    b = coordinate_grid(9, 7, pan=(np.float32(1.0), -1.0))
    assert torch.equal(a, b) and torch.equal(a, coordinate_grid(9, 7, pan=(1.0, -1.0)))
