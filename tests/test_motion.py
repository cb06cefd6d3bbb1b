"""The motion of a fitted picture (neuromv.motion) and its renderer (neuromv.renderer.picture)."""

import numpy as np
import pytest
import torch

from neuromv.errors import ParameterError
from neuromv.metrics import FrameStats, ssim
from neuromv.motion import Motion, drive, structure_maps, structure_size
from neuromv.picture import PictureNet
from neuromv.renderer import Renderer, kernel_widths
from neuromv.renderer.dense import rgb_to_i420


def textured_net(aspect=1.5, seed=3) -> PictureNet:
    """An untrained picture network whose grids hold random values: a picture with regions, edges and texture."""
    net = PictureNet(aspect, 32, levels=4, base=4, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for g in net.grids:
            g.copy_(torch.randn(g.shape, generator=gen) * 2)
    net.eval()
    return net


def test_drive_boosts_rises_and_keeps_the_first_frame():
    z = np.array([[1.0, 0.0], [2.0, 0.0], [2.0, -1.0]], dtype=np.float32)
    u = drive(z, boost=2.0)
    np.testing.assert_allclose(u, [[1, 0], [4, 0], [2, -3]])
    assert drive(np.zeros((0, 3))).shape == (0, 3)


def test_the_drive_is_boosted_only_with_the_structure_off(media):
    """latents_for(image='picture'): the drive with ONSET_BOOST when the structure is off, with CUES_BOOST (none)
    when it is on (its kicks and steps carry the hits), both times the reactivity."""
    from neuromv.audio import AudioFile
    from neuromv.motion import CUES_BOOST, ONSET_BOOST
    from neuromv.plan import latents_for
    from neuromv.settings import Z_GAIN, RenderSettings

    song = AudioFile(media[".wav"])
    on, off = RenderSettings(reactivity=0.5), RenderSettings(structure="off", reactivity=0.5)
    z = latents_for(song, on)  # the abstract input: Z_GAIN * reactivity * z, the same both ways
    assert np.array_equal(z, latents_for(song, off))
    raw = z / np.float32(Z_GAIN * 0.5)  # the song's latents
    for st, boost in ((on, CUES_BOOST), (off, ONSET_BOOST)):
        u = latents_for(song, st, image="picture")
        np.testing.assert_allclose(u, drive(raw, boost) * np.float32(0.5), rtol=1e-4, atol=1e-5)
    assert CUES_BOOST == 0.0 < ONSET_BOOST


def test_motion_is_drawn_from_the_seed_and_styles_switch_parts_off():
    a, b = Motion.of(16, 3), Motion.of(16, 3)
    np.testing.assert_array_equal(a.matrix(), b.matrix())
    assert not np.array_equal(a.matrix(), Motion.of(16, 4).matrix())
    assert a.matrix().shape == (7, 16)
    u = np.random.default_rng(0).standard_normal(16)
    np.testing.assert_allclose(a.coefficients(u), a.matrix() @ u, rtol=1e-5, atol=1e-6)
    colour, shape = Motion.of(16, 3, "colour"), Motion.of(16, 3, "shape")
    assert not colour.flow.any() and not colour.breath.any() and colour.tone.any()
    assert not shape.tone.any() and shape.flow.any() and shape.breath.any()
    with pytest.raises(ParameterError, match="motion must be one of all, colour, shape, not 'wild'"):
        Motion.of(16, 0, "wild")


def test_structure_maps_are_normalised_and_flat_pictures_give_none():
    net = textured_net()
    w, h = structure_size(net.aspect)
    assert (w, h) == (96, 64)
    maps = structure_maps(net.render(w, h))
    assert maps.shape == (7, 64, 96)
    for m in maps[:3]:
        assert abs(m.mean()) < 1e-4 and np.sqrt((m * m).mean()) == pytest.approx(1, rel=1e-3)
    for gx, gy in (maps[3:5], maps[5:7]):
        assert np.sqrt((gx * gx + gy * gy).mean()) == pytest.approx(1, rel=1e-3)
    flat = structure_maps(np.full((64, 64, 3), 0.3))
    assert not flat.any()


def test_still_at_reactivity_zero_and_the_mean_frame_is_the_picture():
    net = textured_net()
    r = Renderer(net, 96, 64, motion=Motion.of(8, 0))
    assert r.method == "picture" and r.n_z == 8
    picture = (net.render(96, 64) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(r.render(np.zeros(8)), picture)
    # zero-mean drive vectors of about the latents' size (unit RMS norm, rises boosted): the frames swing around
    # the picture
    u = np.random.default_rng(1).standard_normal((120, 8)).astype(np.float32) * 1.5 / np.sqrt(8)
    u -= u.mean(axis=0)
    stats, singles = FrameStats(), []
    for x in u:
        f = r.render(x)
        stats.add(f)
        singles.append(ssim(f, picture))
    assert stats.reactivity > 5  # it moves
    assert ssim(stats.mean_frame, picture) > 0.9
    assert np.median(singles) > 0.4  # a random texture: the hardest case for the flow
    assert ssim(stats.mean_frame, picture) > np.median(singles) + 0.05  # the mean is closer than the frames


def test_tone_never_clips_and_follows_the_sign():
    net = textured_net()
    motion = Motion.of(8, 0, "colour")
    r = Renderer(net, 96, 64, motion=motion)
    picture = r.render(np.zeros(8)).astype(int)
    # a drive that raises the global tone only: every pixel gets brighter or stays, none clips
    u = np.linalg.lstsq(motion.tone, np.array([0.8, 0, 0, 0]), rcond=None)[0]
    up = r.render(u).astype(int)
    down = r.render(-u).astype(int)
    assert (up >= picture - 1).all() and (down <= picture + 1).all()
    assert up.mean() > picture.mean() + 5 and down.mean() < picture.mean() - 5
    inside = (picture > 2) & (picture < 253)
    assert (up[inside] < 255).all() and (down[inside] > 0).all()  # c + g c (1 - c) stays inside (0, 1)


def test_shape_motion_moves_pixels_not_colours():
    net = textured_net()
    motion = Motion.of(8, 0, "shape")
    r = Renderer(net, 96, 64, motion=motion)
    picture = r.render(np.zeros(8))
    frame = r.render(np.full(8, 3.0))
    assert np.abs(frame.astype(int) - picture).mean() > 1
    # the colours present stay the picture's own: the frame's histogram is close to the picture's
    hp = np.histogram(picture, bins=16, range=(0, 256))[0]
    hf = np.histogram(frame, bins=16, range=(0, 256))[0]
    assert np.abs(hp - hf).sum() < 0.15 * picture.size


def test_the_motion_is_the_same_at_any_resolution():
    net = textured_net()
    u = np.random.default_rng(2).standard_normal(8).astype(np.float32) * 2
    small = Renderer(net, 96, 64, motion=Motion.of(8, 0)).render(u).astype(np.float64)
    large = Renderer(net, 192, 128, motion=Motion.of(8, 0)).render(u).astype(np.float64)
    down = large.reshape(64, 2, 96, 2, 3).mean(axis=(1, 3))
    assert np.abs(down - small).mean() < 6


def test_yuv420_frames_are_the_rgb_frames_converted():
    net = textured_net()
    r = Renderer(net, 96, 64, motion=Motion.of(8, 0))
    u = np.random.default_rng(3).standard_normal(8).astype(np.float32)
    assert r.yuv420
    rgb = torch.from_numpy(r.render(u)).reshape(1, -1, 3)
    # the kernel converts the colours before rounding them, rgb_to_i420 the rounded ones: within one level
    diff = np.abs(r.render_yuv420(u).astype(int) - rgb_to_i420(rgb, 64, 96)[0].numpy().astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.25
    frames = list(r.frames(np.stack([u, -u]), yuv420=True))
    np.testing.assert_array_equal(frames[0], r.render_yuv420(u))


def test_pictures_refuse_cppn_only_options():
    net = textured_net()
    with pytest.raises(ParameterError, match="a fitted picture renders with method 'picture'"):
        Renderer(net, 32, 32, method="kernel")
    with pytest.raises(ParameterError, match="precision 'int16' needs the compiled kernel"):
        Renderer(net, 32, 32, precision="int16")
    from neuromv.cppn import CPPN

    with pytest.raises(ParameterError, match="method 'picture' is for a fitted picture"):
        Renderer(CPPN(4, 8), 32, 32, method="picture")
    with pytest.raises(ParameterError, match="z has 3 values; this CPPN takes 8"):
        Renderer(net, 32, 32, motion=Motion.of(8, 0)).render(np.zeros(3))


@pytest.mark.skipif(not kernel_widths(), reason="the compiled kernel is not installed")
@pytest.mark.parametrize("width, height, scale, pan, colour", [
    (96, 64, 1.0, (0.0, 0.0), False),
    (97, 63, 1.3, (0.2, -0.1), True),  # odd sizes (RGB only), zoomed out past the picture's border, colour knobs
])
def test_the_kernel_path_is_the_torch_path(width, height, scale, pan, colour):
    """neuromv_picture3 (the CPU's path) against picture_frame (torch, the reference): within one level, RGB and
    I420, on two worker threads."""
    from neuromv.renderer import color_matrix
    from neuromv.renderer.picture import PictureBackend

    net = textured_net()
    col = color_matrix(30, 1.2, 0.05, 1.1) if colour else None
    fast = PictureBackend(net, Motion.of(8, 0), width, height, scale=scale, pan=pan, color=col, threads=2)
    slow = PictureBackend(net, Motion.of(8, 0), width, height, scale=scale, pan=pan, color=col, use_kernel=False)
    assert fast.isa == "portable" and slow.isa is None
    for seed in range(4):
        u = np.random.default_rng(seed).standard_normal(8).astype(np.float32) * 0.8
        a, b = fast.render(u).astype(int), slow.render(u).astype(int)
        assert np.abs(a - b).max() <= 1 and np.abs(a - b).mean() < 0.05
        if width % 2 == 0:
            assert np.abs(fast.render_yuv420(u).astype(int) - slow.render_yuv420(u).astype(int)).max() <= 1
    np.testing.assert_array_equal(fast.render(np.zeros(8)), slow.render(np.zeros(8)))  # the still picture, exactly
