"""Live preview frame rate: how fast the page (`neuromv serve`) draws in headless Chromium, at three canvas sizes.

    python bench/preview_fps.py            # needs Debian's chromium and Playwright (the test extra)

The server runs in this process; the page loads the demo song (20 s), plays it, and the frames drawn in 4 s are
counted per canvas size. With software GL (SwiftShader, as here) this measures the CPU; on a GPU machine, run it
without --software to measure the GPU.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOC, machine, write_section  # noqa: E402

SIZES = [(640, 360), (320, 180), (160, 90)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--software", action=argparse.BooleanOptionalAction, default=True,
                    help="software GL (SwiftShader); --no-software uses the machine's GPU")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    import uvicorn
    from playwright.sync_api import sync_playwright

    import neuromv
    from neuromv.audio import save_wav
    from neuromv.serve import create_app

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no chromium here (Debian package 'chromium')", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory() as d:
        song = Path(d) / "song.wav"
        save_wav(song, neuromv.demo_song(duration=20.0))
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        server = uvicorn.Server(uvicorn.Config(create_app(workdir=Path(d) / "work"), host="127.0.0.1", port=port,
                                               log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        flags = ["--autoplay-policy=no-user-gesture-required"]
        if args.software:
            flags += ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=flags)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#file", str(song))
            page.wait_for_function("window.neuromv.z !== null && window.neuromv.program !== null", timeout=60_000)
            page.evaluate("() => document.getElementById('player').play()")
            for w, h in SIZES:
                page.evaluate(f"() => {{ const c = window.neuromv.gl.canvas; c.width = {w}; c.height = {h}; }}")
                time.sleep(1.0)
                n0, t0 = page.evaluate("() => window.neuromv.framesDrawn"), time.perf_counter()
                time.sleep(args.seconds)
                n1, t1 = page.evaluate("() => window.neuromv.framesDrawn"), time.perf_counter()
                rows.append((w, h, (n1 - n0) / (t1 - t0)))
                print(f"{w}x{h}: {rows[-1][2]:.2f} frames/s", file=sys.stderr)
            renderer = page.evaluate("() => { const gl = window.neuromv.gl; "
                                     "return gl.getParameter(gl.RENDERER); }")
            browser.close()
        server.should_exit = True
    lines = [
        f"Machine: {machine()}; GL: {renderer}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/preview_fps.py"
        + ("" if args.software else " --no-software") + "`.",
        "",
        "The page of `neuromv serve` in headless Chromium playing the demo song; frames drawn per second (each frame "
        "evaluates the CPPN, hidden 32, for every pixel in the fragment shader).",
        "",
        "| canvas | frames/s |",
        "|---|---|",
        *[f"| {w}x{h} | {fps:.2f} |" for w, h, fps in rows],
    ]
    write_section(Path(args.out), "Live preview frame rate (`bench/preview_fps.py`)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
