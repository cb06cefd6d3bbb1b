"""The live-preview server under load: 20 clients upload songs and images, fetch features and start renders against a
real `neuromv serve` (uvicorn on 127.0.0.1, a random port) for 60 s.

    python bench/serve_load.py [--seconds 60] [--clients 20] [--max-storage 200]

The server runs as a subprocess (`python -m neuromv serve`, its default limits except a small storage quota, so
that eviction is exercised). Recorded: requests served, refused (408/413/429/503/507), other 4xx (410: a song
evicted under a client), 5xx (must be 0), the server's peak RSS (must stay under 2 GB), the work folder's peak size
(must stay within the quota) and the latency of `POST /api/songs` (upload and analysis) and of
`GET /api/songs/ID/features`.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, LOOPED_SONG, machine, write_section  # noqa: E402

REFUSED = (408, 413, 429, 503, 507)


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--max-storage", type=int, default=200, help="the server's quota in MB (default: 200)")
    ap.add_argument("--out", default=str(DOC))
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="neuromv-load-"))
    songs = []
    for seconds in (10, 20, 30):  # 1.8, 3.5 and 5.3 MB WAVs
        path = tmp / f"song{seconds}.wav"
        subprocess.run([sys.executable, "-c", LOOPED_SONG, str(seconds), str(path)], check=True)
        songs.append((path.name, path.read_bytes()))
    from PIL import Image

    from neuromv.demo import demo_cover

    cover = tmp / "cover.png"
    Image.fromarray(demo_cover(256)).save(cover)
    image = cover.read_bytes()

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    work_parent = tmp / "server"
    work_parent.mkdir()
    cmd = [sys.executable, "-m", "neuromv", "serve", "--port", str(port), "--max-storage", str(args.max_storage),
           "-q"]
    server = subprocess.Popen(cmd, env={**os.environ, "TMPDIR": str(work_parent)}, stderr=subprocess.PIPE,
                              text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        server.kill()
        raise SystemExit(f"the server did not start: {server.stderr.read()}")

    codes: collections.Counter = collections.Counter()
    latency: dict[str, list[float]] = {"upload": [], "features": []}
    peaks = {"rss": 0.0, "work": 0}
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds

    def record(route: str, r: httpx.Response, t: float) -> None:
        with lock:
            codes[(route, r.status_code)] += 1
            if route in latency and r.status_code == 200:
                latency[route].append(time.perf_counter() - t)

    def client(k: int) -> None:
        rng = random.Random(k)
        with httpx.Client(base_url=base, timeout=120) as c:
            jobs: list[str] = []
            while time.monotonic() < stop:
                name, data = rng.choice(songs)
                t = time.perf_counter()
                r = c.post("/api/songs", content=data, headers={"X-Filename": name})
                record("upload", r, t)
                if r.status_code != 200:
                    time.sleep(0.2)
                    continue
                song = r.json()
                t = time.perf_counter()
                record("features", c.get(song["features"]), t)
                if rng.random() < 0.3:
                    t = time.perf_counter()
                    record("image", c.post("/api/images", content=image, headers={"X-Filename": "cover.png"}), t)
                if rng.random() < 0.5:
                    settings = {"width": 128, "height": 72, "duration": 3.0, "preset": "ultrafast"}
                    t = time.perf_counter()
                    r = c.post("/api/render", json={"song": song["id"], "settings": settings})
                    record("render", r, t)
                    if r.status_code == 200:
                        jobs.append(r.json()["job"])
                for jid in jobs[-3:]:
                    t = time.perf_counter()
                    r = c.get(f"/api/jobs/{jid}")
                    record("job", r, t)
                    if r.status_code == 200 and r.json().get("url"):
                        t = time.perf_counter()
                        record("video", c.get(r.json()["url"]), t)
                        jobs.remove(jid)

    def watch() -> None:
        while time.monotonic() < stop + 5:
            peaks["rss"] = max(peaks["rss"], _rss_mb(server.pid))
            peaks["work"] = max(peaks["work"], _du(work_parent))
            time.sleep(0.2)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    watcher = threading.Thread(target=watch)
    watcher.start()
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    watcher.join()
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
    stderr = server.stderr.read()
    import numpy as np
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)

    served = sum(n for (_, code), n in codes.items() if code < 400)
    refused = collections.Counter({code: n for (_, code), n in codes.items() if code in REFUSED})
    other4xx = collections.Counter({code: n for (_, code), n in codes.items() if 400 <= code < 500 and
                                    code not in REFUSED})
    errors5xx = sum(n for (_, code), n in codes.items() if code >= 500 and code not in REFUSED)

    def pct(route: str) -> str:
        a = np.array(latency[route]) * 1000
        return f"p50 {np.percentile(a, 50):.0f} ms, p95 {np.percentile(a, 95):.0f} ms (n={a.size})" if a.size else "-"

    by_route = ", ".join(f"{route} {code}: {n}" for (route, code), n in sorted(codes.items()))
    lines = [
        f"requests served: {served}",
        f"refused: {sum(refused.values())} ({', '.join(f'{c}: {n}' for c, n in sorted(refused.items())) or 'none'})",
        f"other 4xx: {sum(other4xx.values())} ({', '.join(f'{c}: {n}' for c, n in sorted(other4xx.items())) or 'none'})",
        f"5xx: {errors5xx}",
        f"peak server RSS: {peaks['rss']:.0f} MB",
        f"peak work folder: {peaks['work'] / 2**20:.1f} MB (quota {args.max_storage} MB)",
        f"POST /api/songs (upload + analysis): {pct('upload')}",
        f"GET /api/songs/ID/features: {pct('features')}",
        f"by route and status: {by_route}",
    ]
    print("\n".join(lines))
    if stderr.strip():
        print("server stderr:\n" + stderr[-3000:], file=sys.stderr)
    ok = errors5xx == 0 and peaks["rss"] < 2048 and peaks["work"] <= args.max_storage * 2**20
    if not args.no_write:
        write_section(Path(args.out), "Server under load (bench/serve_load.py)", [
            f"Machine: {machine()}.  ",
            f"Run: {_dt.date.today().isoformat()}, `python bench/serve_load.py --seconds {args.seconds:g} "
            f"--clients {args.clients} --max-storage {args.max_storage}` ({wall:.0f} s).",
            "",
            f"A real `neuromv serve --max-storage {args.max_storage}` (uvicorn on 127.0.0.1, default limits: 1 job at "
            f"a time, 16 waiting) and {args.clients} client threads, each in a loop: upload one of three WAVs "
            "(10, 20, 30 s of the demo song: 1.8-5.3 MB), fetch its features, upload the cover (30 %), start a "
            "128x72 render of 3 s (50 %) and poll its last jobs, downloading finished videos. Targets: no 5xx, peak "
            "RSS under 2 GB, the work folder within the quota.",
            "",
            "| figure | value |",
            "|---|---|",
            *[f"| {line.split(': ', 1)[0]} | {line.split(': ', 1)[1]} |" for line in lines[:-1]],
            "",
            f"By route and status: {by_route}.",
        ])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
