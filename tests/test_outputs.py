"""Outputs, cancellation and signals (issue 13, items 5, 6, 7): the output check with its writability probe,
atomic no-clobber, cancellation within a fraction of a second in the fit and the separation, and the CLI's
signal handling at start-up, mid-work and after the output is in place. Real processes, real files."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import beat_clip, decode_video, tone, write_audio, write_cover

import neuromv
from neuromv._files import AtomicFile, atomic_file, atomic_files, check_output
from neuromv.errors import Interrupted, OutputError, ParameterError

SMALL = ["--size", "64x48", "--preset", "ultrafast"]


def neuromv_cli(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "neuromv", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@pytest.fixture
def locked(tmp_path):
    """A folder nobody can write in (chmod 0555; as root, which ignores modes, the immutable attribute)."""
    d = tmp_path / "locked"
    d.mkdir()
    d.chmod(0o555)
    immutable = False
    if _writable(d):  # root
        immutable = subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode == 0 if shutil.which(
            "chattr") else False
        if not immutable or _writable(d):
            d.chmod(0o755)
            pytest.skip("no way to make an unwritable folder here (root without chattr)")
    yield d
    if immutable:
        subprocess.run(["chattr", "-i", str(d)], check=True)
    d.chmod(0o755)


def _no_part_files(*folders: Path) -> None:
    for folder in folders:
        if folder.exists():
            assert [p.name for p in folder.rglob("*.part")] == [], folder


def _one_error_line(p, *needles: str) -> str:
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("neuromv: error:"), lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# -- item 5: the output folder is probed before any work ----------------------------------------------------------
def test_check_output_probes_the_folder_and_names_it(tmp_path, locked):
    with pytest.raises(OutputError, match=f"{locked}/v.mp4: cannot write in folder {locked} "):
        check_output(locked / "v.mp4", kind="video", suffixes=(".mp4",))
    with pytest.raises(OutputError, match="is a directory; give a video file name such as .*video.mp4"):
        check_output(tmp_path, kind="video", suffixes=(".mp4",))
    with pytest.raises(OutputError, match="folder .*missing does not exist"):
        check_output(tmp_path / "missing" / "v.mp4")
    with pytest.raises(OutputError, match=r"unsupported extension '.pt'; a model file must end in .safetensors"):
        check_output(tmp_path / "m.pt", kind="model", suffixes=(".safetensors",))
    assert check_output(tmp_path / "v.mp4") == tmp_path / "v.mp4"
    assert sorted(tmp_path.iterdir()) == [locked]  # the probe left nothing


def test_unwritable_folder_fails_at_once_for_every_command(media, tmp_path, locked):
    img = write_cover(tmp_path / "art.png")
    for args in (["render", media[".wav"], "-o", locked / "v.mp4", *SMALL],
                 ["demo", "-o", locked / "demo.mp4", *SMALL],
                 ["fit", img, "-o", locked / "m.safetensors", "--steps", "100000"],
                 ["separate", media[".wav"], "-o", locked / "stems", "--separator", "hpss"],
                 ["separate", media[".wav"], "-o", locked, "--separator", "hpss"]):
        t = time.perf_counter()
        p = neuromv_cli(*args)
        assert p.returncode == 1, (args, p.stderr)
        _one_error_line(p, f"cannot write in folder {locked}")
        assert "unexpected" not in p.stderr and "PermissionError" not in p.stderr
        assert time.perf_counter() - t < 30  # before the work (a fit of 100000 steps takes minutes)
    assert list(locked.iterdir()) == []


def test_output_that_is_a_directory_or_in_a_missing_folder(media, tmp_path):
    img = write_cover(tmp_path / "art.png")
    d = tmp_path / "dir.safetensors"
    d.mkdir()
    p = neuromv_cli("fit", img, "-o", d, "--steps", "10")
    assert p.returncode == 1 and _one_error_line(p, f"{d}: is a directory")
    p = neuromv_cli("fit", img, "-o", tmp_path / "no" / "m.safetensors", "--steps", "10")
    assert p.returncode == 1 and _one_error_line(p, "does not exist")
    p = neuromv_cli("separate", media[".wav"], "-o", tmp_path / "no" / "stems", "--separator", "hpss")
    assert p.returncode == 1 and _one_error_line(p, "does not exist")
    p = neuromv_cli("demo", "-o", tmp_path, *SMALL)
    assert p.returncode == 1 and _one_error_line(p, f"{tmp_path}: is a directory")
    _no_part_files(tmp_path)


# -- item 6: no-clobber is atomic ---------------------------------------------------------------------------------
def test_atomic_file_without_overwrite_never_replaces(tmp_path):
    out = tmp_path / "f.bin"
    f = AtomicFile(out, overwrite=False)
    f.tmp.write_bytes(b"mine")
    out.write_bytes(b"theirs")  # another writer got there first
    with pytest.raises(OutputError, match=r"f.bin: already exists \(use --overwrite to replace it\)"):
        f.commit()
    assert out.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]

    with atomic_file(tmp_path / "g.bin", overwrite=False) as tmp:
        Path(tmp).write_bytes(b"new")
    assert (tmp_path / "g.bin").read_bytes() == b"new"
    assert oct((tmp_path / "g.bin").stat().st_mode & 0o777) == oct(0o666 & ~neuromv._files.umask())
    with atomic_file(tmp_path / "g.bin") as tmp:  # overwrite=True: replaced
        Path(tmp).write_bytes(b"newer")
    assert (tmp_path / "g.bin").read_bytes() == b"newer"


def test_atomic_files_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    with pytest.raises(OutputError, match="b.wav: already exists"):
        with atomic_files([a, b], overwrite=False) as (ta, tb):
            Path(ta).write_bytes(b"a")
            Path(tb).write_bytes(b"b")
            b.write_bytes(b"theirs")  # appears while the stems are being written
    assert not a.exists() and b.read_bytes() == b"theirs"  # a was put in place, then taken back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.wav"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_files([a], overwrite=False) as (ta,):
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.wav"]


def test_two_threads_render_to_one_absent_path_exactly_one_wins(tmp_path):
    out = tmp_path / "v.mp4"
    both_writing = threading.Barrier(2, timeout=60)  # both are past every check before either finishes

    def progress(stage, done, total):
        if stage == "render" and done == 0:
            both_writing.wait()

    results = {}

    def run(k: int, seed: int):
        try:
            results[k] = neuromv.render(beat_clip(duration=1.0), out, width=48, height=32, preset="ultrafast",
                                        seed=seed, progress=progress)
        except OutputError as e:
            results[k] = e

    threads = [threading.Thread(target=run, args=(k, k)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    errors = [r for r in results.values() if isinstance(r, OutputError)]
    wins = [r for r in results.values() if not isinstance(r, OutputError)]
    assert len(wins) == 1 and len(errors) == 1, results
    assert str(errors[0]) == f"{out}: already exists (use --overwrite to replace it)"
    assert len(decode_video(out)[1]) == 30  # the winner's video, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_two_render_processes_to_one_absent_path(tmp_path):
    song = write_audio(tmp_path / "s.wav", beat_clip(duration=2.0))
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "neuromv", "render", str(song), "-o", str(out / "v.mp4"), *SMALL, "-q"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], errs
    loser = errs[[p.returncode for p in procs].index(1)]
    assert loser.strip() == f"neuromv: error: {out / 'v.mp4'}: already exists (use --overwrite to replace it)"
    assert len(decode_video(out / "v.mp4")[1]) == 60
    assert sorted(p.name for p in out.iterdir()) == ["v.mp4"]


def test_save_model_no_clobber_is_atomic(tmp_path):
    from neuromv.cppn import CPPN
    from neuromv.reference import save_model

    out = tmp_path / "m.safetensors"
    save_model(CPPN(4, 8), out)
    with pytest.raises(OutputError, match="already exists"):
        save_model(CPPN(4, 8, seed=1), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


# -- item 7: duration shorter than a frame --------------------------------------------------------------------------
def test_duration_shorter_than_one_frame_says_so(media, tmp_path):
    p = neuromv_cli("render", media[".wav"], "-o", tmp_path / "v.mp4", *SMALL, "--duration", "1e-9")
    assert p.returncode == 1
    _one_error_line(p, "duration 1e-09 s is shorter than one frame (0.0333 s at 30 fps)")
    with pytest.raises(ParameterError, match=r"duration 0.01 s is shorter than one frame \(0.0417 s at 24 fps\)"):
        neuromv.render(beat_clip(), tmp_path / "v.mp4", fps=24, duration=0.01)
    p = neuromv_cli("render", media[".wav"], "-o", tmp_path / "v.mp4", *SMALL, "--start", "4.01")
    assert p.returncode == 1
    _one_error_line(p, "no audio after start=4.01 s (the file lasts 4.00 s)")
    assert list(tmp_path.iterdir()) == []


# -- item 7: cancellation within a fraction of a second ---------------------------------------------------------
def _cancel_after(work, delay: float = 0.3) -> float:
    """Run ``work(cancel)`` in a thread, set ``cancel`` after ``delay`` s; return how long after the set it took to
    raise Interrupted (fails if it finished or raised anything else)."""
    cancel = threading.Event()
    out: dict = {}

    def run():
        try:
            work(cancel)
            out["result"] = "finished"
        except BaseException as e:  # noqa: BLE001 - reported below
            out["result"] = e
        out["t"] = time.perf_counter()

    t = threading.Thread(target=run)
    t.start()
    time.sleep(delay)
    assert t.is_alive(), out
    set_at = time.perf_counter()
    cancel.set()
    t.join(60)
    assert isinstance(out.get("result"), Interrupted), out
    return out["t"] - set_at


@pytest.fixture(scope="module")
def warm():
    """Import the libraries whose first use takes a second (torch.optim, librosa's numba code), as a longer session
    would have: cancellation is measured on the work, not on imports."""
    import librosa
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    librosa.istft(librosa.stft(np.zeros(4096, np.float32)))


@pytest.mark.parametrize("hidden", [32, 512])
def test_fit_stops_within_a_fraction_of_a_second(warm, hidden):
    from neuromv.reference import FitOptions, fit_cppn

    img = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    took = _cancel_after(lambda c: fit_cppn(img, hidden=hidden, options=FitOptions(steps=100_000), cancel=c))
    assert took < 1.0, took  # checked every step and every layer (a step at hidden 512 takes about 0.5 s)


def test_render_cancelled_during_the_fit_leaves_nothing(warm, tmp_path):
    img = write_cover(tmp_path / "art.png")
    out = tmp_path / "out"
    out.mkdir()
    took = _cancel_after(lambda c: neuromv.render(beat_clip(duration=1.0), out / "v.mp4", width=48, height=32,
                                                  image=img, fit_steps=100_000, cache=False, cancel=c))
    assert took < 1.0, took
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("backend", ["spleeter", "hpss"])
def test_separation_stops_within_a_fraction_of_a_second_and_leaves_nothing(warm, tmp_path, backend):
    from neuromv.pipeline import separate_song
    from neuromv.separate import Separator

    sep = Separator(backend, device="cpu")
    song = write_audio(tmp_path / "s.wav", tone(sr=44100, duration=60.0, channels=2))
    took = _cancel_after(lambda c: separate_song(song, tmp_path / "stems", sep, cancel=c), delay=0.5)
    assert took < 1.0, took
    assert not (tmp_path / "stems").exists()  # the folder it made is gone again, with no stem and no .part
    took = _cancel_after(lambda c: sep.separate(tone(sr=44100, duration=60.0, channels=2), cancel=c))
    assert took < 1.0, took


def test_hpss_in_slabs_is_librosas_hpss():
    import librosa

    from neuromv.separate.hpss import decompose

    x = np.random.default_rng(1).standard_normal(22050 * 3).astype(np.float32)
    spec = librosa.stft(x)
    for mine, theirs in zip(decompose(spec, None), librosa.decompose.hpss(spec)):
        np.testing.assert_array_equal(mine, theirs)


# -- item 7: signals, with real processes ---------------------------------------------------------------------------
def _caught(pid: int) -> int:
    """The process's mask of caught signals (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


def _wait_for_handlers(proc, timeout: float = 30.0) -> None:
    """Until NeuroMV's handlers are in place: SIGTERM caught (Python itself catches only SIGINT)."""
    deadline = time.time() + timeout
    while not _caught(proc.pid) & (1 << (signal.SIGTERM - 1)):
        assert proc.poll() is None and time.time() < deadline, "the handlers were never installed"
        time.sleep(0.001)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("wait", [0.0, 0.15])
def test_sigint_during_start_up_exits_130_quietly(media, tmp_path, wait):
    proc = subprocess.Popen([sys.executable, "-m", "neuromv", "render", str(media[".wav"]), "-o",
                             str(tmp_path / "v.mp4"), *SMALL], stderr=subprocess.PIPE, text=True)
    _wait_for_handlers(proc)  # installed first thing in main(), before the heavy imports
    maps = Path(f"/proc/{proc.pid}/maps").read_text()
    assert "torch" not in maps  # still starting up
    time.sleep(wait)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == "neuromv: interrupted; no output written"  # no traceback
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_separate_stops_on_a_signal(tmp_path, sig):
    song = write_audio(tmp_path / "long.wav", tone(sr=44100, duration=120.0, channels=2))
    out = tmp_path / "stems"
    proc = subprocess.Popen([sys.executable, "-m", "neuromv", "separate", str(song), "-o", str(out)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out.exists() and list(out.glob(".*.part"))):  # the stem files are being written: separating
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.02)
    time.sleep(0.5)
    sent = time.perf_counter()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    took = time.perf_counter() - sent
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "neuromv: interrupted; no output written"
    assert "Traceback" not in err
    assert took < 3.0, took  # about one layer of the U-Net, plus the process's exit
    assert not out.exists()


def test_a_late_signal_does_not_turn_success_into_failure(media, tmp_path):
    out = tmp_path / "v.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "neuromv", "render", str(media[".wav"]), "-o", str(out), *SMALL,
                             "--duration", "1"], stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "wrote" in line:  # the output is in place
            for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):  # the second SIGINT would raise
                proc.send_signal(sig)
            break
    rest = proc.stderr.read()
    proc.wait(60)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "interrupted" not in rest and "Traceback" not in rest
    assert len(decode_video(out)[1]) == 30
    _no_part_files(tmp_path)
