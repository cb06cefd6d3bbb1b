"""neuromv batch (neuromv.batch): many songs, locally and on a real local Ray instance (127.0.0.1).

One Ray instance serves the whole module (``ray_local``); renders are tiny (64x36, draft, no structure analysis).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest

from neuromv.audio import save_wav
from neuromv.batch import RESULTS_NAME, run_batch
from neuromv.cli import main
from neuromv.demo import demo_song
from neuromv.errors import ParameterError
from neuromv.settings import RenderSettings

pytest.importorskip("ray")

#: Every render here: tiny and quick.
TINY = ["--size", "64x36", "--quality", "draft", "--structure", "off"]
TINY_SETTINGS = RenderSettings(width=64, height=36, preset="ultrafast", crf=28, structure="off")
#: The songs' lengths (s) and so their frames at 30 fps.
LENGTHS = {"a": 1.0, "b": 1.5, "c": 2.0}
FRAMES = {"a": 30, "b": 45, "c": 60}


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    """A folder of three short songs and a corrupt one (random bytes named .mp3)."""
    d = tmp_path_factory.mktemp("songs")
    for i, (name, seconds) in enumerate(LENGTHS.items()):
        save_wav(d / f"{name}.wav", demo_song(seconds, seed=i))
    (d / "corrupt.mp3").write_bytes(os.urandom(20_000))
    return d


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs, 127.0.0.1) for the module's Ray tests; run_batch uses it as it is."""
    from neuromv.cluster import ray_session

    with ray_session("local", num_cpus=2) as ray:
        yield ray


def rows(outdir: Path) -> list[dict]:
    return [json.loads(line) for line in (outdir / RESULTS_NAME).read_text().splitlines()]


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def check_videos(outdir: Path, names=tuple(FRAMES)) -> None:
    for name in names:
        assert frame_count(outdir / f"{name}.mp4") == FRAMES[name], name
    assert not list(outdir.glob(".*.part"))


def by_status(outdir: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in rows(outdir):
        out.setdefault(r["status"], []).append(Path(r["input"]).stem)
    return {k: sorted(v) for k, v in out.items()}


def test_local_batch_with_a_corrupt_song_then_resume(songs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(songs), "-o", str(out), *TINY, "-q"]) == 1
    err = capsys.readouterr().err
    assert "batch: 4 songs: 3 rendered, 0 skipped (already complete), 1 failed" in err
    assert err.strip().splitlines()[-1].startswith("neuromv: error: batch: 4 songs")
    assert by_status(out) == {"ok": ["a", "b", "c"], "error": ["corrupt"]}
    bad = next(r for r in rows(out) if r["status"] == "error")
    assert "corrupt.mp3: not a readable audio file" in bad["error"] and "\n" not in bad["error"]
    assert {Path(r["input"]).stem: r["frames"] for r in rows(out) if r["status"] == "ok"} == FRAMES
    assert all(r["seconds"] > 0 for r in rows(out))
    check_videos(out)
    assert not (out / "corrupt.mp4").exists()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}

    # rerun: the complete videos are skipped (untouched), the corrupt song fails again
    assert main(["batch", str(songs), "-o", str(out), *TINY, "-q"]) == 1
    assert "3 skipped (already complete), 1 failed" in capsys.readouterr().err
    again = rows(out)[4:]
    assert sorted(r["status"] for r in again) == ["error", "skipped", "skipped", "skipped"]
    assert {Path(r["input"]).stem: r["frames"] for r in again if r["status"] == "skipped"} == FRAMES
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == before

    # only the good songs: exit 0
    assert main(["batch", str(songs / "a.wav"), str(songs / "*.wav"), "-o", str(out), *TINY, "-q"]) == 0


def test_manifest_settings_names_and_collisions(songs, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    save_wav(other / "a.wav", demo_song(1.0, seed=5))  # the same stem as songs/a.wav: a-2.mp4
    manifest = tmp_path / "list.csv"
    manifest.write_text("song,output,fps,size,seed\n"
                        f"{songs / 'b.wav'},bee,10,,\n"
                        f"{os.path.relpath(songs / 'c.wav', tmp_path)},,,96x54,3\n")
    out = tmp_path / "out"
    calls = []
    result = run_batch([songs / "a.wav", other, manifest], out, TINY_SETTINGS,
                       progress=lambda *a: calls.append(a))
    assert result.succeeded and result.count("ok") == 4
    assert [c for c in calls if c[0] == "frames"][-1] == ("frames", 30 + 30 + 15 + 60, None)
    assert ("songs", 4, 4) in calls
    assert sorted(p.name for p in out.glob("*.mp4")) == ["a-2.mp4", "a.mp4", "bee.mp4", "c.mp4"]
    assert frame_count(out / "a-2.mp4") == 30
    assert frame_count(out / "bee.mp4") == 15  # 1.5 s at 10 fps
    with av.open(str(out / "c.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (96, 54)
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text(json.dumps({"song": str(songs / "a.wav"), "output": "x.mov", "hue": 90}) + "\n\n")
    r = run_batch([jsonl], out, TINY_SETTINGS)
    assert r.succeeded and (out / "x.mov").is_file()


def test_killed_batch_resumes(songs, tmp_path):
    """SIGKILL a local batch while its second song is being encoded; the rerun skips the first, renders the
    second again, and leaves no partial file."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.wav").symlink_to(songs / "a.wav")
    save_wav(d / "long.wav", demo_song(12.0))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    p = subprocess.Popen([sys.executable, "-m", "neuromv", "batch", str(d), "-o", str(out), *TINY, "-q"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not list(out.glob(".long.mp4.*.part")):  # the second song's video is being written
            assert p.poll() is None, p.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert [Path(r["input"]).stem for r in rows(out)] == ["a"]  # killed mid-song: one row
    assert not (out / "long.mp4").exists() and list(out.glob(".long.mp4.*.part"))
    result = run_batch([d], out, TINY_SETTINGS)
    assert result.succeeded
    assert {Path(r.input).stem: r.status for r in result.songs} == {"a": "skipped", "long": "ok"}
    assert frame_count(out / "long.mp4") == 360
    assert not list(out.glob(".*.part"))


@pytest.mark.parametrize("case", ["address", "no-ray", "empty", "outdir-file", "unknown-setting", "missing-song",
                                  "bad-value"])
def test_bad_input_one_line_before_work(case, songs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    args = [str(songs / "a.wav")]
    extra: list[str] = []
    if case == "address":
        extra, expect = ["--ray", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"
    elif case == "no-ray":
        monkeypatch.setitem(sys.modules, "ray", None)
        extra, expect = ["--ray", "local"], "--ray needs Ray, which is not installed: pip install 'neuromv[cluster]'"
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "notes.txt").write_text("no songs here")
        args, expect = [str(tmp_path / "empty")], "no audio files found in"
    elif case == "outdir-file":
        out.write_text("a file")
        expect = f"{out}: is a file, not a folder"
    else:
        manifest = tmp_path / "m.csv"
        manifest.write_text({"unknown-setting": "song,sparkle\na.wav,3\n",
                             "missing-song": "song,fps\na.wav,24\nnope.wav,24\n",
                             "bad-value": "song,fps\na.wav,fast\n"}[case])
        if case != "unknown-setting":
            (tmp_path / "a.wav").symlink_to(songs / "a.wav")
        args = [str(manifest)]
        expect = {"unknown-setting": f"{manifest} row 1: unknown setting(s) sparkle",
                  "missing-song": f"{manifest} row 3: song 'nope.wav' not found",
                  "bad-value": f"{manifest} row 2: fps must be a number, not 'fast'"}[case]
    t = time.perf_counter()
    assert main(["batch", *args, "-o", str(out), *TINY, *extra, "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err, err
    assert time.perf_counter() - t < 15
    assert not (out / RESULTS_NAME).exists()  # no work began


def test_ray_batch(songs, tmp_path, ray_local):
    out = tmp_path / "out"
    result = run_batch([songs], out, TINY_SETTINGS, ray="local")
    assert not result.succeeded
    assert by_status(out) == {"ok": ["a", "b", "c"], "error": ["corrupt"]}
    bad = next(r for r in rows(out) if r["status"] == "error")
    # the worker's message names the driver's file, not its temporary copy
    assert bad["error"].startswith(f"{songs / 'corrupt.mp3'}: not a readable audio file"), bad["error"]
    check_videos(out)
    again = run_batch([songs / "a.wav", songs / "b.wav"], out, TINY_SETTINGS, ray="local", workers=1)
    assert again.succeeded and [r.status for r in again.songs] == ["skipped", "skipped"]


def _task_pids() -> list[int]:
    """Processes running a batch song's Ray task (Ray titles a worker 'ray::<function>' while it runs one)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::render_song_task"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker's pid in /proc")
def test_ray_worker_killed_mid_song(songs, tmp_path, ray_local):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a", "b"):
        save_wav(d / f"{name}.wav", demo_song(6.0, seed=ord(name)))
    out = tmp_path / "out"
    done: dict = {}
    t = threading.Thread(target=lambda: done.setdefault("result", run_batch([d], out, TINY_SETTINGS, ray="local")))
    t.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and t.is_alive() and time.monotonic() < deadline:
        pids = _task_pids()
        if pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.01)
    t.join(120)
    assert killed is not None, "no worker was seen running a song"
    result = done["result"]
    assert result.succeeded, [r.error for r in result.songs]
    assert sorted(Path(r.input).stem for r in result.songs) == ["a", "b"]
    for name in ("a", "b"):
        assert frame_count(out / f"{name}.mp4") == 180
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)


def test_api_bad_options(songs, tmp_path):
    with pytest.raises(ParameterError, match="--workers and --worker-cpus are for --ray"):
        run_batch([songs / "a.wav"], tmp_path / "o", TINY_SETTINGS, workers=2)
    with pytest.raises(ParameterError, match="no such file or folder, and no glob that matches"):
        run_batch([tmp_path / "nothing.wav"], tmp_path / "o", TINY_SETTINGS)
    with pytest.raises(ParameterError, match="no audio files found"):
        run_batch([str(tmp_path / "*.flac")], tmp_path / "o", TINY_SETTINGS)


def test_ray_batch_cancelled(songs, tmp_path, ray_local):
    """A cancel (Ctrl-C) during a Ray batch: Interrupted within a second or so, no video but complete ones."""
    from neuromv.errors import Interrupted

    d = tmp_path / "in"
    d.mkdir()
    save_wav(d / "long.wav", demo_song(30.0))
    out, cancel, caught = tmp_path / "out", threading.Event(), {}

    def run():
        try:
            run_batch([d], out, TINY_SETTINGS, ray="local", cancel=cancel)
        except Interrupted as e:
            caught["error"] = e

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while not _task_pids() and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    cancel.set()
    stopped = time.monotonic()
    t.join(30)
    assert not t.is_alive() and "error" in caught
    assert time.monotonic() - stopped < 5
    assert not (out / "long.mp4").exists() and not list(out.glob(".*.part"))


def test_a_rows_look_replaces_the_command_lines_look_but_not_its_explicit_options(songs, tmp_path):
    """As on the command line: a look's values, then the options given; a row's look replaces --look entirely."""
    from dataclasses import replace

    from neuromv.batch import collect_songs
    from neuromv.looks import apply_look

    song = sorted(songs.glob("*.wav"))[0]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"song": str(song), "look": "pastel"}) + "\n"
                        + json.dumps({"song": str(song), "output": "b.mp4"}) + "\n")
    cli = replace(apply_look(RenderSettings(), "neon"), seed=5)  # --look neon --seed 5
    row_look, plain = collect_songs([manifest], tmp_path / "out", cli, explicit={"seed": 5})
    assert row_look.settings == replace(apply_look(RenderSettings(), "pastel"), seed=5)
    assert plain.settings == cli
    # a row's size must have the format's shape (as --size with --format), never turned silently
    manifest.write_text(json.dumps({"song": str(song), "size": "1280x720"}) + "\n")
    with pytest.raises(ParameterError, match="m.jsonl row 1: size 1280x720 is not 9:16"):
        collect_songs([manifest], tmp_path / "out", RenderSettings(format="9:16"))
