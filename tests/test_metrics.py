"""neuromv.metrics: SSIM, streaming frame statistics, onset correlation, measuring a written video."""

from __future__ import annotations

import numpy as np
import pytest

import neuromv
from neuromv.demo import demo_cover
from neuromv.errors import ParameterError
from neuromv.metrics import FrameStats, measure_video, onset_correlation, onset_strength, ssim


def test_ssim_identical_unrelated_and_degraded():
    img = demo_cover(64).astype(np.float64)
    assert ssim(img, img) == pytest.approx(1.0)
    noise = np.random.default_rng(0).uniform(0, 255, img.shape)
    assert ssim(img, noise) < 0.1
    blurred = ssim(img, img * 0.5 + 64)
    assert 0.5 < blurred < 0.99  # contrast halved: similar, not the same
    assert ssim(img, noise) == pytest.approx(ssim(noise, img))
    with pytest.raises(ParameterError):
        ssim(img, img[:10])


def test_frame_stats_mean_and_changes():
    stats = FrameStats()
    frames = [np.full((4, 5, 3), v, np.uint8) for v in (10, 20, 20, 50)]
    for f in frames:
        stats.add(f)
    assert stats.count == 4
    np.testing.assert_allclose(stats.mean_frame, 25.0)
    np.testing.assert_allclose(stats.changes, [10, 0, 30])
    assert stats.reactivity == pytest.approx(40 / 3)
    with pytest.raises(ParameterError):
        stats.add(np.zeros((2, 2, 3)))


def test_onset_correlation():
    onset = np.array([0, 5, 0, 0, 5, 0, 0, 5, 0.0])
    follows = onset[1:] * 2 + 1  # the change into frame i follows onset[i]
    assert onset_correlation(follows, onset) == pytest.approx(1.0)
    assert onset_correlation(-follows, onset) == pytest.approx(-1.0)
    assert onset_correlation(np.ones(8), onset) == 0.0
    early = onset[2:] * 2 + 1  # the change into frame i follows onset[i + 1]: found within one frame only
    assert onset_correlation(early, onset) < 0
    assert onset_correlation(early, onset, max_lag=1) == pytest.approx(1.0)


def test_onset_strength_peaks_on_the_beats():
    from conftest import BEATS_1, SILENCE, beat_clip

    clip = beat_clip()
    n = 120
    onset = onset_strength(clip.mono(), clip.sr, n, fps=30)
    assert onset.shape == (n,)
    beats = onset[int(BEATS_1[0] * 30):int(BEATS_1[1] * 30)]
    silence = onset[int(SILENCE[0] * 30) + 3:int(SILENCE[1] * 30) - 3]
    assert beats.max() > 5 * max(silence.max(), 1e-6)


def test_measure_video_of_a_real_render(tmp_path):
    from conftest import beat_clip

    out = neuromv.render(beat_clip(), tmp_path / "v.mp4", width=64, height=36, preset="ultrafast", image="none").path
    m = measure_video(out)
    assert m.frames == 120 and m.fidelity is None
    assert m.reactivity > 1.0
    assert m.onset_correlation > 0.2  # the abstract CPPN's change follows the kicks
    assert "reactivity" in str(m)
