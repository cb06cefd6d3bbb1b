"""Live preview frame rate: how fast the page (`neuromv serve`) draws in headless Chromium, at three canvas sizes.

    python bench/preview_fps.py            # needs Debian's chromium and Playwright (the test extra)

The server runs in this process; the page loads the demo song (20 s), and frames of it are drawn one after the other
for at least 4 s (and at least 3 frames) per canvas size, each waited for; first with the abstract CPPN, then with the
picture fitted to the demo cover (image mode: a PictureNet at the default fit quality, moved by neuromv.motion; the
picture pass, once per size, is not counted). The reference is the offline CPU renderer (`Renderer.render`, same network) at the same
size in the same run. With software GL (SwiftShader, as here) the page measures the CPU; on a GPU machine, run it
with --no-software to measure the GPU.
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

    import numpy as np
    from PIL import Image

    import neuromv
    from neuromv.audio import save_wav
    from neuromv.demo import demo_cover
    from neuromv.pipeline import build_renderer, fit_for
    from neuromv.serve import create_app
    from neuromv.settings import RenderSettings

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
            page.wait_for_function("window.neuromv.panels.length > 0 && window.neuromv.panels[0].z", timeout=60_000)
            fps = {}
            for mode in ("abstract", "picture"):
                if mode == "picture":
                    cover = Path(d) / "cover.png"
                    Image.fromarray(demo_cover(256)).save(cover)
                    page.set_input_files("#image-file", str(cover))
                    page.wait_for_function("window.neuromv.panels.length === 1 && window.neuromv.panels[0].net.kind "
                                           "=== 'picture' && window.neuromv.panels[0].z", timeout=300_000)
                for w, h in SIZES:
                    # each draw is followed by a 1-pixel readPixels, which waits for the GPU (software GL here)
                    # to finish it; the first draw at a size (a picture: with its picture pass) is not counted
                    fps[mode, w, h] = page.evaluate(f"""() => {{
                        const s = window.neuromv, gl = s.gl, px = new Uint8Array(4);
                        gl.canvas.width = {w}; gl.canvas.height = {h};
                        s.draw(100); gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
                        let n = 0; const t0 = performance.now();
                        while (n < 3 || performance.now() - t0 < {args.seconds * 1000}) {{
                            s.draw(101 + n); gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px); n++;
                        }}
                        return n * 1000 / (performance.now() - t0); }}""")
                    print(f"{mode} {w}x{h}: {fps[mode, w, h]:.2f} frames/s", file=sys.stderr)
            for w, h in SIZES:  # the reference: the offline CPU renderer, same networks and sizes
                ref = []
                for image in (False, True):
                    settings = RenderSettings(width=w, height=h)
                    cppn = fit_for(demo_cover(256), RenderSettings()) if image else None
                    z = np.random.default_rng(0).standard_normal((5, settings.n_mels)).astype(np.float32)
                    r = build_renderer(settings, cppn=cppn)
                    r.render(z[0])
                    t = time.perf_counter()
                    for k in range(4):
                        r.render(z[k])
                    ref.append(4 / (time.perf_counter() - t))
                rows.append((w, h, fps["abstract", w, h], ref[0], fps["picture", w, h], ref[1]))
            renderer = page.evaluate("() => { const gl = window.neuromv.gl, "
                                     "e = gl.getExtension('WEBGL_debug_renderer_info'); "
                                     "return e ? gl.getParameter(e.UNMASKED_RENDERER_WEBGL) : "
                                     "gl.getParameter(gl.RENDERER); }")
            browser.close()
        server.should_exit = True
    lines = [
        f"Machine: {machine()}; GL: {renderer}.  ",
        f"Run: {_dt.date.today().isoformat()}, `python bench/preview_fps.py"
        + ("" if args.software else " --no-software") + "`.",
        "",
        "The page of `neuromv serve` in headless Chromium with the demo song; frames drawn per second, each waited "
        "for with a 1-pixel readPixels (each frame "
        "evaluates the CPPN, hidden 32, for every pixel in the fragment shader), with the abstract CPPN and with "
        "the picture fitted to the demo cover (image mode: the picture drawn once per size, then per frame its "
        "motion: one bilinear lookup of the picture and of the structure maps per pixel, and the tone). Reference: "
        "the offline CPU renderer (`Renderer.render`: the compiled kernel for the abstract CPPN, "
        "`PictureBackend` for the picture) at the same size in the same run.",
        "",
        "| canvas | page, abstract | offline CPU, abstract | page, picture | offline CPU, picture |",
        "|---|---|---|---|---|",
        *[f"| {w}x{h} | {a:.2f} | {ra:.1f} | {i:.2f} | {ri:.1f} |" for w, h, a, ra, i, ri in rows],
    ]
    write_section(Path(args.out), "Live preview frame rate (`bench/preview_fps.py`)", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
