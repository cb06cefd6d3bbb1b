"""neuromv serve as a small, bounded service (issue 13, server items 9-16): the job queue, the storage quota, upload
deadlines, bounded feature answers, Host/Origin/Sec-Fetch-Site checks, errors without server paths, JSON checks and
start-up failures; and a property test: any JSON posted to the JSON API gets our 4xx or a valid answer."""

from __future__ import annotations

import io
import json
import logging
import resource
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import beat_clip, write_audio, write_cover

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from neuromv import serve as serve_module  # noqa: E402
from neuromv.serve import JobQueue, Storage, allowed_hosts, create_app, du  # noqa: E402
from neuromv.serve import config as serve_config  # noqa: E402  (the limits, read from here at call time)

BASE = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return write_audio(tmp_path_factory.mktemp("limits") / "beat.flac", beat_clip(duration=3.0))


def _client(tmp_path, **options) -> TestClient:
    return TestClient(create_app(workdir=tmp_path / "work", **options), base_url=BASE)


def _upload(c, song, name="beat.flac"):
    return c.post("/api/songs", content=song.read_bytes(), headers={"X-Filename": name})


def _wait(c, jid, states=("queued", "running"), timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = c.get(f"/api/jobs/{jid}").json()
        if st["state"] not in states:
            return st
        time.sleep(0.05)
    raise AssertionError(f"job {jid} still {st['state']}")


# ---- 9: a bounded job queue ---------------------------------------------------------------------------------------

def test_jobs_wait_in_a_bounded_queue_and_cancelled_ones_leave_it(tmp_path):
    storage = Storage(tmp_path, 2**20)
    queue = JobQueue(1, storage, lambda text, job: text)
    release, running = threading.Event(), []

    def work(job):
        running.append(job.id)
        while not release.is_set():
            if job.cancel.is_set():
                from neuromv.errors import Interrupted
                raise Interrupted("interrupted")
            time.sleep(0.01)
        return "ok"

    first = queue.submit("render", work)
    jobs = [queue.submit("render", work) for _ in range(serve_module.MAX_WAITING)]
    time.sleep(0.1)
    assert running == [first.id] and first.state == "running"  # one at a time
    assert [queue.position(j) for j in jobs[:3]] == [1, 2, 3] and all(j.state == "queued" for j in jobs)
    with pytest.raises(serve_module.Refused) as e:
        queue.submit("render", work)
    assert e.value.status == 429 and "busy" in e.value.message
    queue.cancel(jobs[0])
    assert jobs[0].state == "cancelled" and queue.position(jobs[1]) == 1  # left the queue at once
    t = time.monotonic()
    queue.cancel(first)
    while not first.finished:
        time.sleep(0.01)
    assert first.state == "cancelled" and time.monotonic() - t < 1.0
    time.sleep(0.1)
    assert jobs[1].state == "running" and running == [first.id, jobs[1].id]  # the next one started
    release.set()
    queue.close()
    assert all(j.finished for j in jobs)


def test_a_superseded_fit_stops_within_a_second(tmp_path):
    with _client(tmp_path) as c:
        iid = c.post("/api/images", content=write_cover(tmp_path / "c.png").read_bytes()).json()["id"]
        slow = {"fit_steps": 100_000, "hidden": 64, "width": 64, "height": 36}
        first = c.post("/api/prepare", json={"image": iid, "settings": slow}).json()["job"]
        while c.get(f"/api/jobs/{first}").json()["stage"] != "fit":
            time.sleep(0.05)
        t = time.monotonic()
        second = c.post("/api/prepare", json={"settings": {"seed": 1}}).json()  # replaces it
        st = _wait(c, first)
        assert st["state"] == "cancelled" and time.monotonic() - t < 1.0, (st, time.monotonic() - t)
        assert _wait(c, second["job"])["state"] == "done"


# ---- 10: a storage quota ------------------------------------------------------------------------------------------

def test_storage_quota_evicts_the_least_recently_used_song(tmp_path, song):
    size = song.stat().st_size
    quota = int(2.6 * size)
    with _client(tmp_path, max_storage=quota) as c:
        ids = []
        for i in range(3):
            r = _upload(c, song, f"s{i}.flac")
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
            assert du(tmp_path / "work") <= quota
        gone = c.get(f"/api/songs/{ids[0]}/features")
        assert gone.status_code == 410 and "removed to make room" in gone.json()["error"]
        assert c.get(f"/api/songs/{ids[2]}/features").status_code == 200
        assert c.post("/api/render", json={"song": ids[0]}).status_code == 410
        # an item larger than the whole storage: 413 at once; with everything in use: 507
        big = c.post("/api/songs", content=b"\0" * (quota + 1))
        assert big.status_code == 413 and "--max-storage" in big.json()["error"]
        st = c.app.state.neuromv
        st.storage.pin(list(st.storage.items.values()))
        full = _upload(c, song, "more.flac")
        assert full.status_code == 507 and "full" in full.json()["error"]
        assert du(tmp_path / "work") <= quota


def test_images_have_their_own_cap_and_no_smuggled_data(tmp_path):
    cover = write_cover(tmp_path / "c.png", size=64).read_bytes()
    with _client(tmp_path, max_image=2**20) as c:
        r = c.post("/api/images", content=cover + b"\0" * (3 * 2**20), headers={"X-Filename": "big.png"})
        assert r.status_code == 413 and r.json()["error"] == "big.png: too large; the limit is 1 MB"
        r = c.post("/api/images", content=io.BytesIO(cover + b"\0" * (3 * 2**20)))  # no length: cut off as it comes
        assert r.status_code == 413
    with _client(tmp_path) as c:
        r = c.post("/api/images", content=cover + b"junk" * (2**20 // 2), headers={"X-Filename": "c.png"})
        assert r.status_code == 400 and r.json()["error"].startswith("c.png: 2.0 MB of data after the end"), r.text
        assert c.post("/api/images", content=cover, headers={"X-Filename": "c.png"}).status_code == 200
        assert [p.name.startswith("image-") for p in (tmp_path / "work").iterdir()] == [True]


def test_server_stems_stay_in_the_work_folder(tmp_path, song):
    from neuromv.reference import cache_dir

    before = sorted((cache_dir() / "stems").rglob("*")) if (cache_dir() / "stems").exists() else []
    with _client(tmp_path) as c:
        sid = _upload(c, song).json()["id"]
        settings = {"stems": "all", "separator": "hpss", "n_mels": 8, "hidden": 8, "seed": 1}
        st = _wait(c, c.post("/api/prepare", json={"song": sid, "settings": settings}).json()["job"])
        assert st["state"] == "done", st
        stems = list((tmp_path / "work" / f"stems-{sid}").rglob("*.npy"))
        assert sorted(p.name for p in stems) == ["harmonic.npy", "percussive.npy"]
        item = c.app.state.neuromv.storage.items[sid]
        assert item.size == du(tmp_path / "work" / f"song-{sid}.flac") + du(
            tmp_path / "work" / f"song-{sid}.f32") + du(tmp_path / "work" / f"song-{sid}.cues.json") + du(
            tmp_path / "work" / f"stems-{sid}")  # counted
    after = sorted((cache_dir() / "stems").rglob("*")) if (cache_dir() / "stems").exists() else []
    assert after == before  # nothing in the user's cache


# ---- 11: slow clients, disconnects, descriptors --------------------------------------------------------------------

@pytest.fixture()
def live_server(tmp_path):
    import uvicorn

    app = create_app(workdir=tmp_path / "live")
    sock = serve_module.listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=serve_module.KEEP_ALIVE_S,
                                           limit_concurrency=serve_module.MAX_CONNECTIONS))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield port, tmp_path / "live"
    server.should_exit = True
    thread.join(10)
    sock.close()


def _raw(port: int, head: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(head)
    return s


def _answer(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            part = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not part:
            break
        out += part
    return out


def test_a_slow_upload_is_cut_off_and_leaves_nothing(live_server, monkeypatch):
    monkeypatch.setattr(serve_config, "UPLOAD_IDLE_S", 1.0)
    monkeypatch.setattr(serve_config, "UPLOAD_GRACE_S", 2.0)
    port, work = live_server
    head = b"POST /api/songs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filename: slow.wav\r\nContent-Length: 100000\r\n\r\n"
    idle = _raw(port, head + b"RIFF")  # then nothing: a byte every 10 s would be the same
    t = time.monotonic()
    answer = _answer(idle)
    assert answer.startswith(b"HTTP/1.1 408") and b"too slow" in answer and time.monotonic() - t < 5
    trickle = _raw(port, head)  # a byte every 0.5 s: under the minimum rate once the grace period is over
    t = time.monotonic()
    trickle.settimeout(0.5)
    answer = b""
    while time.monotonic() - t < 10 and not answer:
        try:
            trickle.sendall(b"x")
            answer = trickle.recv(65536)
        except TimeoutError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            break
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 2 <= time.monotonic() - t < 5
    time.sleep(0.2)
    assert not list(work.iterdir())  # no partial file


def test_a_client_that_goes_away_logs_one_line(live_server, caplog):
    port, work = live_server
    caplog.set_level(logging.INFO)
    s = _raw(port, b"POST /api/songs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filename: gone.wav\r\nContent-Length: "
                   b"100000\r\n\r\n" + b"RIFF" + b"\0" * 5000)
    time.sleep(0.3)
    s.close()
    deadline = time.time() + 15  # a loaded machine takes its time to notice
    while not any("went away" in r.getMessage() for r in caplog.records) and time.time() < deadline:
        time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert [line for line in lines if "went away" in line] == ["upload of gone.wav cut short: the client went away"]
    assert not any(r.exc_info for r in caplog.records) and "Traceback" not in caplog.text
    assert not list(work.iterdir())


def test_out_of_file_descriptors_is_a_503(tmp_path, song):
    with _client(tmp_path) as c:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        import os

        data = song.read_bytes()
        lowest = os.open(os.devnull, os.O_RDONLY)  # the next descriptor a file would get
        os.close(lowest)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))
        try:
            r = c.post("/api/songs", content=data, headers={"X-Filename": "beat.flac"})
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert r.status_code == 503 and "try again" in r.json()["error"]
        assert _upload(c, song).status_code == 200


# ---- 12: /api/songs' answer is bounded -----------------------------------------------------------------------------

def test_song_features_are_bounded_and_binary(tmp_path, song, monkeypatch):
    with _client(tmp_path) as c:
        r = c.post("/api/songs?fps=240&n_mels=54", content=song.read_bytes(), headers={"X-Filename": "b.flac"})
        body = r.json()  # the JSON answer holds no features (the song's cues, a few KB a minute, ride along)
        assert r.status_code == 200 and len(json.dumps({k: v for k, v in body.items() if k != "cues"})) < 1000
        f = c.get(r.json()["features"])
        assert f.headers["x-shape"] == "54,720" and len(f.content) == 54 * 720 * 4  # 54 bands: the most at 240 fps
        monkeypatch.setattr(serve_config, "MAX_FEATURES", 30_000)
        t = time.monotonic()
        r = c.post("/api/songs?fps=240&n_mels=54", content=song.read_bytes(), headers={"X-Filename": "b.flac"})
        assert r.status_code == 413 and r.json()["error"].startswith("b.flac: 720 frames x 54 bands is more")
        assert time.monotonic() - t < 2
        assert len(list((tmp_path / "work").iterdir())) == 3  # the first song, its features and cues only


# ---- 13, 14: hosts, origins, cross-site requests -------------------------------------------------------------------

def test_any_bind_address_checks_host_and_origin(tmp_path):
    app = create_app(workdir=tmp_path / "w", hosts=allowed_hosts("192.168.1.9", ["studio.lan"]))
    with TestClient(app, base_url="http://192.168.1.9:8765") as c:
        assert c.get("/").status_code == 200
        assert c.get("/", headers={"Host": "studio.lan"}).status_code == 200
        assert c.get("/", headers={"Host": "10.0.0.1"}).status_code == 403  # not a wildcard bind: its address only
        r = c.get("/", headers={"Host": "attacker.example"})  # DNS rebinding
        assert r.status_code == 403 and "--allow-host attacker.example" in r.json()["error"]
        r = c.post("/api/cli", json={}, headers={"Origin": "http://attacker.example"})
        assert r.status_code == 403 and r.json()["error"] == "cross-site request refused"
        assert c.post("/api/cli", json={}, headers={"Origin": "null"}).status_code == 403
        assert c.post("/api/cli", json={}, headers={"Origin": "http://192.168.1.9:8765"}).status_code == 200


def test_cross_site_gets_are_refused_on_every_api_route(tmp_path):
    with _client(tmp_path) as c:
        for path in ("/api/cppn?hidden=1024", "/api/jobs/x", "/api/files/x", "/api/songs/x/features"):
            r = c.get(path, headers={"Sec-Fetch-Site": "cross-site"})
            assert r.status_code == 403 and r.json()["error"] == "cross-site request refused", path
            assert c.get(path, headers={"Sec-Fetch-Site": "same-site"}).status_code == 403  # another port
            assert c.get(path, headers={"Origin": "http://evil.example"}).status_code == 403
        assert c.get("/api/cppn", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
        assert c.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200  # a link to the page


# ---- 15: errors name the user's file -------------------------------------------------------------------------------

def test_errors_name_the_users_file_never_a_server_path(tmp_path, song):
    with _client(tmp_path) as c:
        sid = _upload(c, song, "my song.flac").json()["id"]
        st = _wait(c, c.post("/api/render", json={"song": sid, "settings": {"start": 100.0}}).json()["job"])
        assert st["state"] == "error" and "my song.flac" in st["error"], st
        assert str(tmp_path) not in st["error"] and sid not in st["error"]
        r = c.post("/api/songs", content=b"RIFF\x24\0\0\0WAVEjunk", headers={"X-Filename": "../../x.wav"})
        assert r.status_code == 400 and r.json()["error"].startswith("x.wav: ") and str(tmp_path) not in r.text


# ---- 16: JSON, start-up --------------------------------------------------------------------------------------------

def test_malformed_and_deep_json_get_our_400(tmp_path):
    with _client(tmp_path) as c:
        for body, message in [
            (b"[" * 30000 + b"]" * 30000, "the request is nested too deeply (more than 16 levels)"),
            (b'{"settings": {"fps": NaN}}', "the request is not valid JSON (NaN is not a JSON number)"),
            (b'{"song": ', "the request is not valid JSON (expecting value at line 1, column 10)"),
            (b"\xff\xfe", "the request is not valid JSON (not UTF-8 text)"),
            (b'{"song": [1]}', "song must be a string"),
            (b'{"settings": [1]}', "settings must be a JSON object"),
            (b'{"settings": {"fps": [1]}}', "fps must be a number from 1 to 240, not [1]"),
            (b'{"sogn": "x"}', "unknown field(s) sogn; expected song, image, settings"),
            (b'{"image": 3}', "image must be a string"),
        ]:
            for route in ("/api/prepare", "/api/cli") if b"settings" in body else ("/api/render", "/api/prepare"):
                r = c.post(route, content=body, headers={"Content-Type": "application/json"})
                assert r.status_code == 400 and r.json()["error"] == message, (route, body[:20], r.text)
        r = c.post("/api/cli", content=b"{}" + b" " * serve_module.MAX_JSON)
        assert r.status_code == 413


def test_start_up_failures_are_one_line_and_exit_1():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        p = subprocess.run([sys.executable, "-m", "neuromv", "serve", "--port", str(port)], capture_output=True,
                           text=True, timeout=60)
    finally:
        busy.close()
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [f"neuromv: error: cannot listen on 127.0.0.1:{port}: address already "
                                             f"in use"]
    p = subprocess.run([sys.executable, "-m", "neuromv", "serve", "--host", "no-such-host.invalid"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1
    assert p.stderr.startswith("neuromv: error: cannot listen on 'no-such-host.invalid': unknown host")


def test_neuromv_serve_starts_answers_and_stops_on_ctrl_c():
    """The real command: it prints its URL, serves the page and the API there, and a Ctrl-C stops it (exit 130)."""
    import signal
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "neuromv", "serve", "--port", str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()  # "neuromv: live preview at URL", printed once the socket is bound
        assert f"http://127.0.0.1:{port}/" in line, (line, p.stderr.read() if p.poll() is not None else "")
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200 and b"<canvas" in r.read()
                break
            except OSError:
                assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() is not None else ""
                time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=20)
        assert p.returncode in (0, 130) and "Traceback" not in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# ---- property: any JSON value gets our 4xx or a valid answer ---------------------------------------------------------

def test_any_json_gets_a_4xx_or_a_valid_answer(tmp_path, song):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from neuromv.settings import RenderSettings

    scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False,
                                                                                    allow_infinity=False) | st.text(max_size=20)
    values = st.recursive(scalars, lambda v: st.lists(v, max_size=3) | st.dictionaries(st.text(max_size=8), v,
                                                                                        max_size=3), max_leaves=8)
    names = [f.name for f in RenderSettings.__dataclass_fields__.values()]
    settings_docs = st.dictionaries(st.sampled_from(names) | st.text(max_size=6), values, max_size=4) | values
    with _client(tmp_path) as c:
        sid = _upload(c, song).json()["id"]
        ids = st.sampled_from([sid, "nope", None]) | values
        bodies = st.fixed_dictionaries({}, optional={"song": ids, "image": st.sampled_from(["none", "auto", "x"]) |
                                                     values, "settings": settings_docs, "output": values}) | values

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(route=st.sampled_from(["/api/cli", "/api/prepare", "/api/render"]), body=bodies)
        def check(route, body):
            if route == "/api/render" and isinstance(body, dict) and body.get("song") == sid:
                body = {**body, "song": "nope"}  # no real renders here: the settings are checked by /api/cli
            if route == "/api/prepare" and isinstance(body, dict) and body.get("song") == sid:
                body = {**body, "song": None}  # nor separations
            r = c.post(route, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            assert r.status_code in (200, 400, 410, 413, 429), (route, body, r.status_code, r.text)
            answer = r.json()
            if r.status_code != 200:
                message = answer["error"]
                assert isinstance(message, str) and "\n" not in message and "unhashable" not in message
                assert "Traceback" not in message and str(tmp_path) not in message
            else:
                assert "command" in answer or "job" in answer

        check()
        c.app.state.neuromv.queue.close()
