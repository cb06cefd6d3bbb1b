"""The look: the abstract network's tone and chroma, palettes (named, custom, cover) on the torch paths and the
reference, and the default look's clipping and colourfulness on rendered, decoded videos."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

import neuromv
from neuromv.cli import main
from neuromv.cppn import CPPN, LIGHTNESS_GRID, coordinate_grid
from neuromv.demo import demo_song
from neuromv.errors import ParameterError
from neuromv.metrics import clipped_share, colourfulness, palette_distance
from neuromv.palette import (PALETTE_SIZE, dominant_colors, oklab_to_srgb, palette_for,
                             palette_levels, palette_row, palette_table, srgb_to_oklab)
from neuromv.renderer import Renderer, color_matrix, palette_map, reference_render
from neuromv.settings import CHROMA, MAX_PALETTE_COLORS, PALETTES, TONE, RenderSettings, parse_palette

Z = np.random.default_rng(5).standard_normal(32).astype(np.float32) * 0.3


# -- parsing ------------------------------------------------------------------------------------------------------
def test_parse_palette_names_cover_and_lists():
    assert parse_palette(None) is None
    assert parse_palette("Ember ") == "ember"
    assert parse_palette("cover") == "cover"
    assert parse_palette("#ff8000, #123") == ((255, 128, 0), (17, 34, 51))
    assert parse_palette("102030,abcdef") == ((16, 32, 48), (171, 205, 239))


@pytest.mark.parametrize("bad, message", [
    ("nope", "unknown palette 'nope'; choose one of ember"),
    ("#ff8000", "a palette has 2 to 16 colours, not 1"),
    ("#ff8000,#12", "palette colour '#12' is not a hex colour"),
    ("#ff8000,red", "palette colour 'red' is not a hex colour"),
    (",".join(["#000000"] * (MAX_PALETTE_COLORS + 1)), "a palette has 2 to 16 colours, not 17"),
    (7, "palette must be a name"),
    ("#1," * 10_000, "palette must be a name"),
])
def test_parse_palette_refuses_with_one_line(bad, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(")) as e:
        RenderSettings(palette=bad)
    assert "\n" not in str(e.value)


def test_cli_bad_palette_is_one_line_and_exit_1(tmp_path, capsys):
    song = tmp_path / "s.wav"
    from neuromv.audio import save_wav
    save_wav(song, demo_song(1.0))
    assert main(["render", str(song), "-o", str(tmp_path / "o.mp4"), "--palette", "mauve"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown palette 'mauve'" in err[0]
    # 'cover' without any cover art: one line before any frame is written
    assert main(["render", str(song), "-o", str(tmp_path / "o.mp4"), "--palette", "cover", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "palette 'cover' needs cover art" in err[0]
    assert not (tmp_path / "o.mp4").exists()


# -- tables -------------------------------------------------------------------------------------------------------
def test_oklab_round_trip():
    rgb = np.random.default_rng(0).random((500, 3))
    assert np.abs(oklab_to_srgb(srgb_to_oklab(rgb)) - rgb).max() < 1e-6


def test_table_runs_through_its_colours_in_oklab():
    colours = np.array([[20, 10, 60], [250, 200, 40]], dtype=np.uint8)
    t = palette_table(colours)
    assert t.shape == (PALETTE_SIZE, 3) and t.dtype == np.float32
    assert np.abs(t[0] * 255 - colours[0]).max() < 0.5 and np.abs(t[-1] * 255 - colours[1]).max() < 0.5
    # the middle is OKLab's midpoint, not sRGB's (which is darker and duller between these two)
    mid_lab = 0.5 * (srgb_to_oklab(colours[0] / 255) + srgb_to_oklab(colours[1] / 255))
    assert np.abs(t[PALETTE_SIZE // 2] - oklab_to_srgb(mid_lab)).max() < 0.01
    assert np.abs(t[PALETTE_SIZE // 2] - colours.mean(0) / 255).max() > 0.03
    # held: the first and last 30 % of a 2-colour table with hold 0.6 are flat
    held = palette_table(colours, hold=0.6)
    assert np.abs(held[: int(0.3 * PALETTE_SIZE)] - held[0]).max() < 1e-6


@pytest.mark.parametrize("name", list(PALETTES))
def test_named_palettes_stay_off_the_ends_of_the_scale(name):
    table = palette_for(name).table * 255
    assert table.min() > 5 and table.max() < 250, "a palette's own colours would count as clipped"


def test_dominant_colours_of_flat_blocks():
    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [240, 240, 240], [10, 10, 10],
                        [200, 200, 30], [30, 200, 200], [120, 60, 10]], dtype=np.uint8)
    image = np.repeat(colours, 500, axis=0).reshape(40, 100, 3)
    found = dominant_colors(image)
    assert found.shape == (8, 3)
    for c in colours:  # every block's colour is found (within rounding)
        assert np.abs(found.astype(int) - c).sum(1).min() <= 3
    lightness = srgb_to_oklab(found / 255)[:, 0]
    assert (np.diff(lightness) >= 0).all(), "dark to light"


def test_levels_spread_the_pictures_lumas():
    flat = np.full((10, 10, 3), 128, np.uint8)
    lo, hi = palette_levels(flat)
    assert hi - lo == pytest.approx(0.1)
    ramp = np.repeat(np.linspace(0, 255, 101).astype(np.uint8), 3).reshape(-1, 1, 3)
    lo, hi = palette_levels(ramp)
    row = palette_row((lo, hi))
    assert lo == pytest.approx(0.02, abs=0.01) and hi == pytest.approx(0.98, abs=0.01)
    assert row[:3].sum() * lo + row[3] == pytest.approx(0.0, abs=1e-6)
    assert row[:3].sum() * hi + row[3] == pytest.approx(PALETTE_SIZE - 1, abs=1e-6)


# -- the network's tone and chroma ----------------------------------------------------------------------------------
def test_tone_and_chroma_fold_into_the_output_layer():
    raw, toned = CPPN(32, 16, seed=4), CPPN(32, 16, seed=4, tone=0.5, chroma=0.25)
    coords = coordinate_grid(24, 16)
    with torch.no_grad():
        h = torch.cat([coords, torch.from_numpy(Z).expand(coords.shape[0], -1)], 1)
        for layer in raw.layers[:-1]:
            h = torch.tanh(layer(h))
        a = raw.layers[-1](h).double()
        m = a.mean(1, keepdim=True)
        expected = 0.5 * (m + 0.25 * (a - m))  # the pre-activations, up to the lightness's one shift
        got = torch.logit(toned(coords, torch.from_numpy(Z)).double())
    shift = got - expected
    assert float(shift.std()) < 1e-4, "one constant shift of every channel and pixel (the lightness's centring)"
    # the centring: over the reference view at z = 0, the median of the channels' mean pre-activation is 0
    grid = coordinate_grid(LIGHTNESS_GRID, LIGHTNESS_GRID)
    with torch.no_grad():
        mid = torch.logit(toned(grid, torch.zeros(32)).double()).mean(1).median()
    assert abs(float(mid)) < 1e-4
    grey = CPPN(32, 16, seed=4, chroma=0.0)(coords, torch.from_numpy(Z)).detach()
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-6) and torch.allclose(grey[:, 1], grey[:, 2], atol=1e-6)
    for a_, b_ in zip(CPPN(32, 16, seed=4, tone=1.0, chroma=1.0).parameters(), raw.parameters()):
        assert torch.equal(a_, b_)  # (1, 1) is the raw network, bit for bit
    with pytest.raises(ParameterError, match="image-mode CPPN takes 1 and 1"):
        CPPN(32, 16, image=True, tone=0.5)
    with pytest.raises(ParameterError, match="tone must be a finite number >= 0"):
        CPPN(32, 16, tone=float("nan"))


def test_the_default_look_keeps_a_bright_seeds_picture_off_white():
    """Seeds 7 and 8 push every channel up (their biases): without the lightness's centring most of the picture
    clips to white."""
    coords = coordinate_grid(96, 54)
    for seed in (7, 8):
        net = CPPN(32, 32, seed=seed, tone=TONE, chroma=CHROMA)
        frame = (net(coords, torch.zeros(32)).detach().numpy() * 255).round()
        assert 80 < frame.mean() < 170 and clipped_share(frame) <= 0.10, (seed, frame.mean(), clipped_share(frame))


# -- the render paths -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["tiled", "dense"])
@pytest.mark.parametrize("palette", ["ember", "spectrum", "#000000,#ff0000,#ffff00"])
def test_torch_paths_apply_the_palette_like_the_reference(method, palette):
    net = CPPN(32, 16, seed=2, tone=0.45, chroma=0.5)
    for colour in (None, color_matrix(hue=60, brightness=0.05, contrast=1.2)):
        r = Renderer(net, 64, 40, method=method, palette=palette_for(palette), color=colour)
        frame = r.render(Z).astype(int)
        ref = np.round(reference_render(net, 64, 40, Z, color=colour, palette=r.palette) * 255)
        d = np.abs(frame - ref)
        assert d.max() <= 1, f"{method}: off by {d.max()}"
        # every pixel is one of the palette's colours
        table = np.round(palette_for(palette).table * 255).astype(int)
        assert np.abs(frame.reshape(-1, 1, 3) - table[None]).sum(-1).min(1).max() <= 3


def test_palette_map_spreads_the_networks_own_lumas():
    net = CPPN(32, 16, seed=1, tone=0.45, chroma=0.5)
    pm = palette_map(palette_for("noir"), net, 320, 180)
    plain = reference_render(net, 320, 180, np.zeros(32, np.float32))
    pos = plain.reshape(-1, 3) @ pm.row[:3] + pm.row[3]
    # the 2-98 % lumas span the table: about 2 % of the pixels below its start, 2 % above its end
    assert 0.005 < (pos < 0).mean() < 0.05 and 0.005 < (pos > PALETTE_SIZE - 1).mean() < 0.05
    # the reference map: every colour is the table's entry at its rounded position
    pos = np.clip(np.floor(plain.reshape(-1, 3).astype(np.float64) @ pm.row[:3] + pm.row[3] + 0.5), 0,
                  PALETTE_SIZE - 1).astype(int)
    assert np.array_equal(pm.apply(plain).reshape(-1, 3), pm.table[pos].astype(np.float64))


def test_renderer_without_palette_is_unchanged():
    net = CPPN(32, 16, seed=2)
    a = Renderer(net, 48, 32, method="tiled").render(Z)
    b = Renderer(net, 48, 32, method="tiled", palette=None).render(Z)
    assert np.array_equal(a, b)


# -- rendered videos --------------------------------------------------------------------------------------------------
def _decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def song():
    return demo_song(3.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 7])  # 7: the demo's, a seed whose biases push to white
def test_default_look_keeps_the_gamut_and_is_rich_not_garish(tmp_path, song, seed):
    out = neuromv.render(song, tmp_path / "v.mp4", width=192, height=108, seed=seed, image="none").path
    frames = _decoded(out)[::6]
    clip = np.mean([clipped_share(f) for f in frames])
    colour = np.mean([colourfulness(f) for f in frames])
    assert clip <= 0.10, f"seed {seed}: {100 * clip:.1f} % of channel values clipped"
    assert 40 <= colour <= 130, f"seed {seed}: colourfulness {colour:.0f}"
    # the negative control: the raw network at the same seed clips and is garish (with the structure off: its
    # motion takes the input elsewhere, and at seed 7, whose raw values clip half to white, that was less colourful)
    raw = neuromv.render(song, tmp_path / "raw.mp4", width=192, height=108, seed=seed, image="none", tone=1.0,
                         chroma=1.0, structure="off").path
    raw_frames = _decoded(raw)[::6]
    assert np.mean([clipped_share(f) for f in raw_frames]) > 0.15
    assert np.mean([colourfulness(f) for f in raw_frames]) > 140


def test_cover_palette_keeps_the_picture_in_the_covers_colours(tmp_path, song):
    from neuromv.demo import demo_cover

    cover = demo_cover(256)
    out = tmp_path / "c.mp4"
    # the cover as the reference image's colours, the abstract CPPN (image 'none' keeps it abstract: the colours
    # come from the same cover through palette_for)
    net = CPPN(32, 32, seed=3, tone=0.45, chroma=0.5)
    r = Renderer(net, 160, 90, method="tiled", palette=palette_for("cover", cover))
    frame = r.render(Z)
    assert palette_distance(frame, dominant_colors(cover)) <= 40
    # and through the whole render, with the cover given as the image: every frame near the cover's colours
    neuromv.render(song, out, width=160, height=90, palette="cover", image=cover, fit_quality="draft")
    frames = _decoded(out)[::10]
    d = [palette_distance(f[::2, ::2], dominant_colors(cover)) for f in frames]
    assert max(d) <= 40, d
    # negative control: the network's own colours are far from them
    plain = Renderer(net, 160, 90, method="tiled").render(Z)
    assert palette_distance(plain, dominant_colors(cover)) > 40
