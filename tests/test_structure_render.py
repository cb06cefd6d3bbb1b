"""The music's structure through the whole product: ``neuromv analyze``, ``render --cues`` (edited cues change the
video), ``--structure off`` (the mel envelope alone, as before cues existed), the analysis cache, stems with
roles, and the render's sync line: decoded videos, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import decode_video, write_audio

import neuromv
from neuromv.cues import load_cues
from neuromv.demo import structured_song
from neuromv.sync import MotionEnvelope, measure_sync, visual_beats

SMALL = dict(width=96, height=54, preset="ultrafast")


def neuromv_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "neuromv", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """A 16-second synthetic song (AB, 4 bars each, 120 BPM) as a FLAC file, with its truth."""
    audio, truth = structured_song("AB", bpm=120.0, bars=4, sr=22050, seed=3)
    path = write_audio(tmp_path_factory.mktemp("song") / "song.flac", audio)
    return path, audio, truth


@pytest.fixture()
def cache_home(tmp_path, monkeypatch):
    """A fresh cache folder for this test (fits, stems and cues)."""
    monkeypatch.setenv("NEUROMV_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_analyze_writes_cues_and_refuses_bad_outputs(song, tmp_path):
    path, _, truth = song
    out = tmp_path / "cues.json"
    p = neuromv_cli("analyze", path, "-o", out)
    assert p.returncode == 0, p.stderr
    assert "wrote" in p.stderr and "BPM" in p.stderr
    cues = load_cues(out)
    assert abs(cues.tempo - 120.0) < 2.4
    assert [s.label for s in cues.sections] == ["A", "B"]
    doc = json.loads(out.read_text())
    assert doc["neuromv_cues"] == 2 and len(doc["beats"]) == len(cues.beats)
    # no silent overwrite, never the input, one line each
    p = neuromv_cli("analyze", path, "-o", out)
    assert p.returncode == 1 and "already exists" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = neuromv_cli("analyze", path, "-o", path, "--overwrite")
    assert p.returncode == 1 and "input" in p.stderr and path.stat().st_size > 1000
    fifo = tmp_path / "fifo.flac"
    os.mkfifo(fifo)
    p = neuromv_cli("analyze", fifo, "-o", tmp_path / "f.json")
    assert p.returncode == 1 and "FIFO" in p.stderr and not (tmp_path / "f.json").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(neuromv_cues=7), "schema version 7"),
    (lambda d: d.update(beats=[3.0, 1.0]), "increasing order"),
    (lambda d: d["sections"].append({"start": 1.0, "end": 0.5, "label": "C"}), "ends"),
    (lambda d: d.update(tempo="fast"), "tempo must be a number"),
    (lambda d: d.update(extra=1), "unknown field"),
    (lambda d: d["flux"]["values"].__setitem__(0, 2.0), "flux.values[0] = 2 is outside [0, 1]"),
    (lambda d: d.update(neuromv_cues=1), "flux needs schema version 2"),
])
def test_render_refuses_a_bad_cues_file_before_any_work(song, tmp_path, edit, message):
    path, _, _ = song
    out = tmp_path / "cues.json"
    assert neuromv_cli("analyze", path, "-o", out).returncode == 0
    doc = json.loads(out.read_text())
    edit(doc)
    out.write_text(json.dumps(doc))
    video = tmp_path / "v.mp4"
    p = neuromv_cli("render", path, "-o", video, "--size", "64x48", "--cues", out)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert not video.exists()
    p = neuromv_cli("render", path, "-o", video, "--size", "64x48", "--cues", tmp_path / "missing.json")
    assert p.returncode == 1 and "no such file" in p.stderr


def test_edited_cues_change_the_video(song, tmp_path):
    """Relabelling the second section as a return of the first gives it the first's look: the frames of the
    second half change, the first half's do not."""
    path, audio, _ = song
    cues = neuromv.analyze(audio)
    same = load_cues_from(cues, tmp_path / "same.json", relabel=None)
    edited = load_cues_from(cues, tmp_path / "edited.json", relabel="A")
    a = neuromv.render(path, tmp_path / "a.mp4", cues=same, **SMALL, seed=1)
    b = neuromv.render(path, tmp_path / "b.mp4", cues=edited, **SMALL, seed=1)
    fa, fb = decode_video(a.path)[1].astype(float), decode_video(b.path)[1].astype(float)
    half = cues.sections[1].start
    bar = 2.0
    early = int((half - 2 * bar) * 30)  # before the transition into B
    late = int((half + bar) * 30)
    assert np.abs(fa[:early] - fb[:early]).mean() < 0.5
    assert np.abs(fa[late:] - fb[late:]).mean() > 10


def load_cues_from(cues, path, relabel):
    from dataclasses import replace

    from neuromv.cues import Section, save_cues

    sections = [Section(s.start, s.end, relabel if (relabel and i == 1) else s.label)
                for i, s in enumerate(cues.sections)]
    save_cues(replace(cues, sections=sections), path)
    return path


def test_structure_off_is_the_mel_envelope_alone(song, tmp_path):
    """--structure off renders exactly what the renderer makes of the latents, as before cues existed."""
    from neuromv.plan import build_renderer, latents_for
    from neuromv.settings import RenderSettings

    _, audio, _ = song
    s = RenderSettings(**SMALL, structure="off", seed=2, duration=3.0)
    from neuromv.pipeline import _excerpt

    clip = _excerpt(audio, 0.0, 3.0)
    plan = neuromv.plan.make_plan(clip, s, image="none")
    panel = plan.panels(clip)[0]
    assert panel.controls is None and plan.cues is None
    z = latents_for(clip, s)
    expected = list(build_renderer(s).frames(z))
    got = list(panel.frames())
    assert all(np.array_equal(a, b) for a, b in zip(expected, got)) and len(got) == len(expected)


def test_kicks_land_on_the_beats_and_the_render_logs_its_sync(song, tmp_path, caplog):
    """With structure on, a visual beat of the decoded video falls on (nearly) every beat of the song, the motion
    follows the onsets more closely than without the structure, and the render logs its sync line."""
    import logging

    path, audio, truth = song
    with caplog.at_level(logging.INFO, logger="neuromv"):
        result = neuromv.render(path, tmp_path / "v.mp4", **SMALL, seed=4)
    assert any(r.getMessage().startswith("sync: lag") for r in caplog.records)
    assert result.sync is not None and abs(result.sync.lag_ms) <= 34
    env = MotionEnvelope()
    for f in decode_video(result.path)[1]:
        env.add(f)
    vb = visual_beats(env.envelope, 30.0)
    beats = np.asarray(truth["beats"])
    hits = sum(np.min(np.abs(vb - b)) <= 0.07 for b in beats[beats < 15.5])
    assert hits >= 0.9 * np.sum(beats < 15.5)
    off = neuromv.render(path, tmp_path / "off.mp4", **SMALL, seed=4, structure="off")
    assert result.sync.r >= 0.7 and result.sync.r > off.sync.r + 0.1  # the hits are what follows the onsets


def test_the_analysis_is_cached_like_a_fit(song, tmp_path, cache_home, caplog):
    import logging

    path, _, _ = song
    with caplog.at_level(logging.INFO, logger="neuromv"):
        neuromv.render(path, tmp_path / "1.mp4", **SMALL, duration=1.0)
        first = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cues (")]
        caplog.clear()
        neuromv.render(path, tmp_path / "2.mp4", **SMALL, duration=1.0)
        second = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cues (")]
    assert first and first[0].startswith("cues (analysis)")
    assert second and second[0].startswith("cues (cache)")


def test_stems_drive_what_suits_them(song):
    """Each stem panel gets the controls of its role: the percussive stem kicks harder than the harmonic one."""
    from neuromv.plan import make_plan
    from neuromv.settings import RenderSettings

    _, audio, _ = song
    s = RenderSettings(**SMALL, stems="all", separator="hpss")
    plan = make_plan(audio, s, image="none")
    panels = {p.name: p for p in plan.panels(audio)}
    assert set(panels) == {"harmonic", "percussive"}
    assert all(p.controls is not None for p in panels.values())
    zoom = {n: 1.0 - p.controls.zoom / np.median(p.controls.zoom) for n, p in panels.items()}
    assert zoom["percussive"].max() > 1.2 * zoom["harmonic"].max()
