"""src/neuromv/web/mel.js (the song's z, and the live microphone mode's features) in real headless Chromium, against
neuromv.features.

Audio is made here with numpy and passed to the page as base64 float32; results come back the same way.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pytest

import neuromv
from neuromv.features import TOP_DB, MelStream, latents_from_db, power_to_db, smooth_release, song_db

librosa = pytest.importorskip("librosa")

MEL_JS = Path(neuromv.__file__).parent / "web" / "mel.js"
CHROMIUM = "/usr/bin/chromium"
ORIGIN = "http://neuromv.test"

# Test-only helpers in the page: float32 arrays to and from base64, and neuromv.features.TOP_DB (the page has it
# from the server's configuration: mel.js keeps no copy).
HELPERS = f"window.TOP_DB = {TOP_DB!r};" + """
window.fromB64 = (s) => {
  const b = atob(s), u = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i);
  return new Float32Array(u.buffer);
};
window.toB64 = (a) => {
  const u = new Uint8Array(Float32Array.from(a).buffer);
  let s = "";
  for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000));
  return btoa(s);
};
"""


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def _floats(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4")


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (shutil.which("chromium") or Path(CHROMIUM).exists()):
        pytest.skip("chromium is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM,
                                    args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        pg = browser.new_page()
        # mel.js is an ES module: it is imported from an origin of its own (served by the test, nothing listens)
        pg.route(f"{ORIGIN}/**", lambda route: route.fulfill(
            status=200, body=MEL_JS.read_text() if route.request.url.endswith("/mel.js") else "<html></html>",
            content_type="text/javascript" if route.request.url.endswith(".js") else "text/html"))
        pg.goto(f"{ORIGIN}/")
        pg.add_script_tag(type="module", content="import * as mel from '/mel.js'; window.NeuroMVMel = mel;")
        pg.wait_for_function("window.NeuroMVMel !== undefined")
        pg.add_script_tag(content=HELPERS)
        yield pg
        browser.close()


def test_module_exports_and_keeps_no_constants(page):
    assert page.evaluate("typeof NeuroMVMel.MelStream") == "function"
    assert page.evaluate("typeof MelStream") == "undefined"  # an ES module: nothing becomes global
    assert page.evaluate("typeof NeuroMVMel.LiveLatents") == "function"
    assert page.evaluate("NeuroMVMel.TOP_DB") is None  # the caller passes neuromv.features.TOP_DB
    err = page.evaluate("() => { try { new NeuroMVMel.LiveLatents(8, 30, { smooth: 0.2 }); } "
                        "catch (e) { return e.message; } }")
    assert err == "topDb must be a number of dB above 0, not undefined"


@pytest.mark.parametrize("smooth", [0.0, 0.2, 1.5])
def test_latents_from_db_equals_python(page, smooth):
    # the song's z in the page (web/app.js draws with it): from the dB matrix the server sends
    y = _beat_pattern(22050, 6.0)
    db = song_db([y], 22050, fps=30, n_mels=16)
    ref = latents_from_db(db, fps=30, smooth=smooth)  # (n_frames, n_mels)
    z = page.evaluate("([s, m, n, smooth]) => Array.from(NeuroMVMel.latentsFromDb(fromB64(s), m, n, 30, smooth))",
                      [_b64(db), db.shape[0], db.shape[1], smooth])
    z = np.array(z).reshape(ref.shape)
    err = np.abs(z - ref).max()
    print(f"latentsFromDb smooth={smooth}: max |dz| = {err:.1e}")
    assert err < 1e-5 and np.abs(ref).max() > 0.3  # (z has unit RMS norm over the bands)


def _signal(sr: int, seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """A chirp (80 Hz to 0.4 sr), noise, and clicks every 0.3 s."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0, f1 = 80.0, 0.4 * sr
    phase = 2 * np.pi * f0 * seconds / np.log(f1 / f0) * (np.exp(t / seconds * np.log(f1 / f0)) - 1)
    y = 0.3 * np.sin(phase) + 0.05 * rng.standard_normal(n)
    for start in np.arange(0.1, seconds, 0.3):
        i = int(start * sr)
        y[i:i + 64] += np.linspace(0.9, 0, 64)[: n - i]
    return y.astype(np.float32)


def _python_mel(y: np.ndarray, sr: int, fps: float = 30, n_mels: int = 32) -> np.ndarray:
    ms = MelStream(sr, fps=fps, n_mels=n_mels)
    ms.feed(y)
    return ms.finish()


def _js_mel(page, y: np.ndarray, sr: int, fps: float = 30, n_mels: int = 32) -> np.ndarray:
    out = page.evaluate("([s, sr, fps, nMels]) => toB64(NeuroMVMel.melPower(fromB64(s), sr, fps, nMels))",
                        [_b64(y), sr, fps, n_mels])
    return _floats(out).reshape(n_mels, -1)


@pytest.mark.parametrize("sr,n_fft,n_mels", [(22050, 1470, 32), (48000, 3200, 32), (44100, 1764, 16),
                                             (22050, 1838, 32)])
def test_filterbank_equals_librosa(page, sr, n_fft, n_mels):
    js = _floats(page.evaluate("([sr, n, m]) => toB64(NeuroMVMel.melFilterbank(sr, n, m))", [sr, n_fft, n_mels]))
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=sr / 2)
    err = np.abs(js.reshape(ref.shape) - ref).max() / ref.max()
    print(f"filterbank {sr} Hz n_fft={n_fft} n_mels={n_mels}: max error / max = {err:.1e}")
    assert err < 1e-6


@pytest.mark.parametrize("n", [1470, 3200, 1764, 2048, 882, 2 * 1009, 1838, 1470 * 2])
def test_power_spectrum_equals_numpy(page, n):
    # 2 * 1009 and 1838 = 2 * 919 (22050 Hz at 24 fps) have a large prime factor: Bluestein's algorithm
    x = np.random.default_rng(n).standard_normal((3, n)).astype(np.float32)
    for frame in x:
        js = np.array(page.evaluate("(s) => Array.from(NeuroMVMel.powerSpectrum(fromB64(s)))", _b64(frame)))
        ref = np.abs(np.fft.rfft(frame.astype(np.float64))) ** 2
        assert js.shape == ref.shape
        assert np.abs(js - ref).max() / ref.max() < 1e-12


@pytest.mark.parametrize("n", [1, 2, 3, 7, 12, 735, 1009, 1600, 5 * 7 * 11 * 13])
def test_complex_fft_equals_numpy(page, n):
    rng = np.random.default_rng(n)
    re, im = rng.standard_normal(n), rng.standard_normal(n)
    r, i = page.evaluate("([re, im]) => NeuroMVMel.fft(Float64Array.from(re), Float64Array.from(im))"
                         ".map((a) => Array.from(a))", [re.tolist(), im.tolist()])
    ref = np.fft.fft(re + 1j * im)
    assert np.abs(np.array(r) + 1j * np.array(i) - ref).max() / np.abs(ref).max() < 1e-12


@pytest.mark.parametrize("sr,fps", [(22050, 30), (48000, 30), (44100, 50), (22050, 24)])
def test_mel_power_equals_python_mel_stream(page, sr, fps):
    # (22050, 24): hop 918.75 is not whole, so the columns are interpolated to the frame times as in Python
    y = _signal(sr)
    ref = _python_mel(y, sr, fps)
    js = _js_mel(page, y, sr, fps)
    assert js.shape == ref.shape == (32, int(np.ceil(3.0 * fps)))
    err = np.abs(js - ref).max() / ref.max()
    print(f"melPower {sr} Hz {fps} fps: max error / peak = {err:.1e}")
    assert err < 1e-4


@pytest.mark.parametrize("n", [1, 100, 1470, 2000, 22051])
def test_mel_power_lengths(page, n):
    # very short clips (padded to one window) and lengths that are not whole frames give Python's frame count
    y = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    ref = _python_mel(y, 22050, 30, 8)
    js = _js_mel(page, y, 22050, 30, 8)
    assert js.shape == ref.shape
    assert np.abs(js - ref).max() / ref.max() < 1e-4


BLOCKS_JS = """([s, sr, blocks]) => {
  const y = fromB64(s), ms = new NeuroMVMel.MelStream(sr, 30, 32);
  const cols = [];
  let i = 0, b = 0;
  while (i < y.length) {
    const n = blocks[b++ % blocks.length];
    for (const c of ms.feed(y.subarray(i, i + n))) cols.push(c);
    i += n;
  }
  const fed = cols.length;
  for (const c of ms.finish()) cols.push(c);
  const S = new Float32Array(32 * cols.length);
  cols.forEach((c, t) => c.forEach((v, m) => { S[m * cols.length + t] = v; }));
  return [fed, cols.length, toB64(S), toB64(NeuroMVMel.melPower(y, sr, 30, 32))];
}"""


@pytest.mark.parametrize("blocks", [[128], [1], [127, 1000, 3, 4410]])
def test_blocks_give_the_same_columns(page, blocks):
    sr = 48000
    y = _signal(sr)
    fed, total, streamed, whole = page.evaluate(BLOCKS_JS, [_b64(y), sr, blocks])
    assert total == 90 and fed == len(y) // (sr // 30)  # a column comes out as soon as its window is complete
    np.testing.assert_array_equal(_floats(streamed), _floats(whole))


def test_power_to_db_equals_python(page):
    sr = 22050
    y = _signal(sr)
    y[sr:2 * sr] = 0  # a second of digital silence: the -80 dB floor
    S_py = _python_mel(y, sr)
    S_js = _js_mel(page, y, sr)
    db_js = _floats(page.evaluate("(s) => toB64(NeuroMVMel.powerToDb(fromB64(s), TOP_DB))", _b64(S_js))).reshape(32, -1)
    same_input = np.abs(db_js - power_to_db(S_js)).max()
    end_to_end = np.abs(db_js - power_to_db(S_py)).max()
    print(f"powerToDb: {same_input:.1e} dB from power_to_db of the same S, {end_to_end:.1e} dB end to end")
    assert same_input < 1e-4 and end_to_end < 1e-3
    assert db_js.min() == -80 and db_js.max() == 0
    silent = page.evaluate("() => Array.from(NeuroMVMel.powerToDb(new Float32Array(5), TOP_DB))")
    assert silent == [-80] * 5  # digital silence: -top_db everywhere, as in Python
    col = page.evaluate("() => Array.from(NeuroMVMel.dbColumn([1, 0.1, 0, 2], 2, 60))")
    np.testing.assert_allclose(col, [10 * np.log10(0.5), -10 * np.log10(20), -60, 0], atol=1e-5)


def _running_z(x: np.ndarray, fps: float, window: float) -> np.ndarray:
    """LiveLatents' standardisation written out directly: at each frame n, the mean and variance under the
    normalised weights b^(n-i) / sum_i b^(n-i), b = exp(-1 / (fps window)). x: (n_frames, n_mels)."""
    b = np.exp(-1 / (fps * window))
    z = np.zeros_like(x, dtype=np.float64)
    for n in range(len(x)):
        w = b ** np.arange(n, -1, -1.0)
        w /= w.sum()
        mean = w @ x[: n + 1]
        var = w @ np.sum((x[: n + 1] - mean) ** 2, axis=1)
        z[n] = 0 if var < 1e-12 else (x[n] - mean) / np.sqrt(var)
    return z


@pytest.mark.parametrize("smooth", [0.0, 0.2])
def test_live_latents_steps(page, smooth):
    # A peak that rises three times: LiveLatents moves its dB state down each time, so (with no value under the
    # floor) every frame's z equals the computation done afterwards with the final peak.
    rng = np.random.default_rng(3)
    cols = 10 ** rng.uniform(-4, 0, (200, 8))  # within 70 dB of the final peak: never floored
    cols[[20, 50, 120]] *= [[3], [30], [1000]]
    z = np.array(page.evaluate("""([cols, smooth]) => {
      const L = new NeuroMVMel.LiveLatents(8, 30, { smooth, window: 2, topDb: TOP_DB });
      return cols.map((c) => Array.from(L.push(Float32Array.from(c))));
    }""", [cols.astype(np.float32).tolist(), smooth]))
    db = power_to_db(cols.T.astype(np.float32))
    x = smooth_release(db, fps=30, release=smooth).T if smooth else db.T
    ref = _running_z(x.astype(np.float64), 30, 2)
    err = np.abs(z - ref).max()
    print(f"LiveLatents smooth={smooth} vs the direct formula: max |dz| = {err:.1e}")
    assert err < 1e-4
    assert np.all(z[0] == 0)


def test_live_latents_setters(page):
    res = page.evaluate("""() => {
      const L = new NeuroMVMel.LiveLatents(2, 30, { smooth: 0.5, topDb: TOP_DB });
      const a0 = L._a;
      L.smooth = 0;
      const errors = [];
      for (const bad of [-1, NaN, Infinity]) try { L.smooth = bad; } catch (e) { errors.push(bad); }
      try { L.window = 0; } catch (e) { errors.push("window"); }
      L.window = 5;
      return { a0, a1: L._a, smooth: L.smooth, window: L.window, errors: errors.length };
    }""")
    assert res["a0"] == pytest.approx(np.exp(-1 / 15), rel=1e-7) and res["a1"] == 0 and res["smooth"] == 0
    assert res["window"] == 5 and res["errors"] == 4


def _beat_pattern(sr: int, seconds: float, seed: int = 1) -> np.ndarray:
    """A 2 s pattern repeated: kicks on the beat, a hi-hat of fresh noise, and a pad whose chord changes at 1 s."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    tp = t % 2.0
    pad = np.where(tp < 1.0, np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277 * t),
                   np.sin(2 * np.pi * 196 * t) + np.sin(2 * np.pi * 294 * t))
    y = 0.05 * pad
    tk = tp % 0.5
    y += 0.8 * np.sin(2 * np.pi * (50 * tk + 4 * (1 - np.exp(-tk / 0.03)))) * np.exp(-tk / 0.05)
    th = (tp - 0.25) % 0.5
    y += 0.1 * rng.standard_normal(n) * np.exp(-th / 0.02)
    return (0.9 * y / np.abs(y).max()).astype(np.float32)


LIVE_JS = """([s, sr, smooth]) => {
  const y = fromB64(s), ms = new NeuroMVMel.MelStream(sr, 30, 32);
  const live = new NeuroMVMel.LiveLatents(32, 30, { smooth, window: 10, topDb: TOP_DB });
  const z = [];
  for (let i = 0; i < y.length; i += 128) for (const c of ms.feed(y.subarray(i, i + 128))) z.push(live.push(c));
  const out = new Float32Array(32 * z.length);
  z.forEach((v, t) => out.set(v, 32 * t));
  return toB64(out);
}"""


@pytest.mark.parametrize("smooth", [0.2, 0.0])
def test_live_latents_converge_to_python(page, smooth):
    sr = 22050  # song_db analyses at 22050 Hz: the same rate here leaves only the running normalisation to compare
    y = _beat_pattern(sr, 60.0)
    ref = latents_from_db(song_db([y], sr, fps=30, n_mels=32), fps=30, smooth=smooth)  # (1800, 32)
    z = _floats(page.evaluate(LIVE_JS, [_b64(y), sr, smooth])).reshape(-1, 32)
    assert z.shape == ref.shape == (1800, 32)  # 60 s: every column is complete before the end
    assert np.all(z[0] == 0)  # the first frame has no variance yet
    last = slice(1200, None)  # the last 20 s
    rms = np.sqrt(np.mean(ref[last] ** 2))
    mad = np.mean(np.abs(z[last] - ref[last])) / rms
    corr = np.corrcoef(z[last].ravel(), ref[last].ravel())[0, 1]
    first = slice(60, 300)  # 2 s to 10 s: while the statistics are still settling
    corr_first = np.corrcoef(z[first].ravel(), ref[first].ravel())[0, 1]
    print(f"LiveLatents smooth={smooth}: last 20 s mean |dz| / rms = {mad:.4f}, correlation {corr:.5f}; "
          f"2-10 s correlation {corr_first:.4f}")
    assert mad < 0.05 and corr > 0.99


SPEED_JS = """([sr, seconds]) => {
  const y = new Float32Array(sr * seconds);
  for (let i = 0; i < y.length; i++) y[i] = Math.sin(i * 0.01) * 0.3 + (Math.random() - 0.5) * 0.1;
  const run = () => {
    const ms = new NeuroMVMel.MelStream(sr, 30, 32);
    const live = new NeuroMVMel.LiveLatents(32, 30, { smooth: 0.2, topDb: TOP_DB });
    let n = 0;
    const t0 = performance.now();
    for (let i = 0; i < y.length; i += 128) for (const c of ms.feed(y.subarray(i, i + 128))) { live.push(c); n++; }
    return [(performance.now() - t0) / n, n];
  };
  run();  // warm up the JIT and the FFT plan
  return run();
}"""


def test_speed_per_frame_at_48k(page):
    ms_per_frame, n = page.evaluate(SPEED_JS, [48000, 20])
    print(f"MelStream + LiveLatents at 48 kHz / 30 fps (n_fft 3200) in Chromium: {ms_per_frame * 1000:.0f} us "
          f"per frame over {n} frames (budget 33 ms)")
    assert n == 600 and ms_per_frame < 5
