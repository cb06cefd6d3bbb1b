// NeuroMV features in the browser: the JavaScript twin of neuromv.features (the song's z from its dB matrix, and the
// live microphone mode's mel features). Every piece names the Python function it mirrors; offline, the results
// equal Python's to float32 rounding (tests/test_web_mel.py checks it in Chromium). An ES module with no imports
// and no constants of neuromv's own: the caller passes them (TOP_DB, fps, n_mels, smoothing: the page has them
// from Python, see neuromv.serve.page_config).
// ---- librosa.filters.mel(sr, n_fft, n_mels, fmax=sr/2): Slaney mel scale (htk=False), norm="slaney" --------
const F_SP = 200 / 3;                 // librosa.hz_to_mel: linear below 1 kHz ...
const MIN_LOG_HZ = 1000;
const MIN_LOG_MEL = MIN_LOG_HZ / F_SP;
const LOGSTEP = Math.log(6.4) / 27;   // ... logarithmic above

function hzToMel(f) {
  return f >= MIN_LOG_HZ ? MIN_LOG_MEL + Math.log(f / MIN_LOG_HZ) / LOGSTEP : f / F_SP;
}

function melToHz(m) {
  return m >= MIN_LOG_MEL ? MIN_LOG_HZ * Math.exp(LOGSTEP * (m - MIN_LOG_MEL)) : F_SP * m;
}

/** librosa.filters.mel: Float32Array [nMels * (nFft/2 + 1)], row-major (band, FFT bin). */
function melFilterbank(sr, nFft, nMels, fmin = 0, fmax = sr / 2) {
  const nBins = Math.floor(nFft / 2) + 1;
  const n = nMels + 2;
  // librosa.mel_frequencies: np.linspace over the mel scale (last point exactly fmax), back to Hz
  const lo = hzToMel(fmin), hi = hzToMel(fmax);
  const step = (hi - lo) / (n - 1);
  const melF = new Float64Array(n);
  for (let i = 0; i < n; i++) melF[i] = melToHz(i * step + lo);
  melF[n - 1] = melToHz(hi);
  const df = 1 / (nFft * (1 / sr)); // np.fft.rfftfreq(n_fft, d=1/sr)
  const w = new Float32Array(nMels * nBins);
  for (let i = 0; i < nMels; i++) {
    const d0 = melF[i + 1] - melF[i], d1 = melF[i + 2] - melF[i + 1];
    const enorm = 2 / (melF[i + 2] - melF[i]); // norm="slaney": each triangle has unit area in Hz
    for (let k = 0; k < nBins; k++) {
      const f = k * df;
      const lower = -(melF[i] - f) / d0, upper = (melF[i + 2] - f) / d1;
      // librosa stores the triangle in float32, then scales it in float64 and stores it in float32 again
      w[i * nBins + k] = Math.fround(Math.fround(Math.max(0, Math.min(lower, upper))) * enorm);
    }
  }
  return w;
}

// ---- FFT of any length (numpy.fft / scipy.fft as used by librosa.stft) ----------------------------------------
// Stockham autosort mixed-radix FFT: radix 4 and 2, odd prime radices (3, 5, 7, ... as one generic butterfly
// that pairs r with p - r), Bluestein's chirp-z (through a power-of-2 FFT) when a prime factor is above
// MAX_RADIX. Twiddles are computed once per length; plans are cached.
const MAX_RADIX = 31;
const plans = new Map();

function factorize(n) {
  const f = [];
  while (n % 4 === 0) { f.push(4); n /= 4; }
  while (n % 2 === 0) { f.push(2); n /= 2; }
  for (let p = 3; p * p <= n; p += 2) while (n % p === 0) { f.push(p); n /= p; }
  if (n > 1) f.push(n);
  return f;
}

class ComplexFFT {
  constructor(n) {
    this.n = n;
    this.re = new Float64Array(n); // the caller writes its input here, then calls run()
    this.im = new Float64Array(n);
    this._re = new Float64Array(n);
    this._im = new Float64Array(n);
    const factors = factorize(n);
    this.bluestein = factors.length > 0 && factors[factors.length - 1] > MAX_RADIX;
    if (this.bluestein) { this._initBluestein(); return; }
    this.stages = [];
    let L = 1;
    let maxP = 1;
    for (const p of factors) {
      // stage: sub-DFTs of length L become sub-DFTs of length L*p; twiddle W_{Lp}^{rk}, r in [1, p), k in [0, L)
      const tw = new Float64Array(2 * (p - 1) * L);
      for (let r = 1; r < p; r++) {
        for (let k = 0; k < L; k++) {
          const ang = (-2 * Math.PI * ((r * k) % (L * p))) / (L * p);
          tw[2 * ((r - 1) * L + k)] = Math.cos(ang);
          tw[2 * ((r - 1) * L + k) + 1] = Math.sin(ang);
        }
      }
      let cos = null, sin = null;
      if (p !== 2 && p !== 4) {
        cos = new Float64Array(p);
        sin = new Float64Array(p);
        for (let j = 0; j < p; j++) {
          cos[j] = Math.cos((2 * Math.PI * j) / p);
          sin[j] = Math.sin((2 * Math.PI * j) / p);
        }
      }
      this.stages.push({ p, L, m: n / (L * p), tw, cos, sin });
      L *= p;
      maxP = Math.max(maxP, p);
    }
    const h = (maxP + 1) >> 1;
    this._ar = new Float64Array(maxP); this._ai = new Float64Array(maxP);
    this._sr = new Float64Array(h); this._si = new Float64Array(h);
    this._dr = new Float64Array(h); this._di = new Float64Array(h);
  }

  /** Forward DFT (exp(-2 pi i j k / n), unnormalised) of this.re/this.im; returns [re, im] holding the result. */
  run() {
    if (this.bluestein) return this._runBluestein();
    let aRe = this.re, aIm = this.im, bRe = this._re, bIm = this._im;
    for (const s of this.stages) {
      if (s.p === 4) this._radix4(s, aRe, aIm, bRe, bIm);
      else if (s.p === 2) this._radix2(s, aRe, aIm, bRe, bIm);
      else this._radixOdd(s, aRe, aIm, bRe, bIm);
      let t = aRe; aRe = bRe; bRe = t;
      t = aIm; aIm = bIm; bIm = t;
    }
    return [aRe, aIm];
  }

  // Input element (k, j, r) is at k + L*(j + m*r); output (k, q, j) at k + L*q + L*p*j.
  _radix2(s, xr, xi, yr, yi) {
    const { L, m, tw } = s;
    const Lm = L * m;
    for (let j = 0; j < m; j++) {
      for (let k = 0; k < L; k++) {
        const i0 = k + L * j, i1 = i0 + Lm;
        const wr = tw[2 * k], wi = tw[2 * k + 1];
        const br = xr[i1] * wr - xi[i1] * wi, bi = xr[i1] * wi + xi[i1] * wr;
        const o = k + 2 * L * j;
        yr[o] = xr[i0] + br; yi[o] = xi[i0] + bi;
        yr[o + L] = xr[i0] - br; yi[o + L] = xi[i0] - bi;
      }
    }
  }

  _radix4(s, xr, xi, yr, yi) {
    const { L, m, tw } = s;
    const Lm = L * m, t1 = 0, t2 = 2 * L, t3 = 4 * L;
    for (let j = 0; j < m; j++) {
      for (let k = 0; k < L; k++) {
        const i0 = k + L * j, i1 = i0 + Lm, i2 = i1 + Lm, i3 = i2 + Lm;
        let w = 2 * k + t1;
        const b1r = xr[i1] * tw[w] - xi[i1] * tw[w + 1], b1i = xr[i1] * tw[w + 1] + xi[i1] * tw[w];
        w = 2 * k + t2;
        const b2r = xr[i2] * tw[w] - xi[i2] * tw[w + 1], b2i = xr[i2] * tw[w + 1] + xi[i2] * tw[w];
        w = 2 * k + t3;
        const b3r = xr[i3] * tw[w] - xi[i3] * tw[w + 1], b3i = xr[i3] * tw[w + 1] + xi[i3] * tw[w];
        const s0r = xr[i0] + b2r, s0i = xi[i0] + b2i, d0r = xr[i0] - b2r, d0i = xi[i0] - b2i;
        const s1r = b1r + b3r, s1i = b1i + b3i, d1r = b1r - b3r, d1i = b1i - b3i;
        const o = k + 4 * L * j;
        yr[o] = s0r + s1r; yi[o] = s0i + s1i;
        yr[o + L] = d0r + d1i; yi[o + L] = d0i - d1r;           // W_4 = -i
        yr[o + 2 * L] = s0r - s1r; yi[o + 2 * L] = s0i - s1i;
        yr[o + 3 * L] = d0r - d1i; yi[o + 3 * L] = d0i + d1r;
      }
    }
  }

  _radixOdd(s, xr, xi, yr, yi) {
    const { p, L, m, tw, cos, sin } = s;
    const Lm = L * m, h = (p - 1) >> 1;
    const ar = this._ar, ai = this._ai, sr = this._sr, si = this._si, dr = this._dr, di = this._di;
    for (let j = 0; j < m; j++) {
      for (let k = 0; k < L; k++) {
        const i0 = k + L * j;
        ar[0] = xr[i0]; ai[0] = xi[i0];
        for (let r = 1; r < p; r++) {
          const i = i0 + Lm * r, w = 2 * ((r - 1) * L + k);
          ar[r] = xr[i] * tw[w] - xi[i] * tw[w + 1];
          ai[r] = xr[i] * tw[w + 1] + xi[i] * tw[w];
        }
        let y0r = ar[0], y0i = ai[0];
        for (let r = 1; r <= h; r++) {
          sr[r] = ar[r] + ar[p - r]; si[r] = ai[r] + ai[p - r];
          dr[r] = ar[r] - ar[p - r]; di[r] = ai[r] - ai[p - r];
          y0r += sr[r]; y0i += si[r];
        }
        const o = k + p * L * j;
        yr[o] = y0r; yi[o] = y0i;
        for (let q = 1; q <= h; q++) {
          // y_q = a_0 + sum_r cos(t) (a_r + a_{p-r}) - i sin(t) (a_r - a_{p-r}), t = 2 pi r q / p
          let tr = ar[0], ti = ai[0], ur = 0, ui = 0;
          for (let r = 1; r <= h; r++) {
            const idx = (r * q) % p, c = cos[idx], sn = sin[idx];
            tr += c * sr[r]; ti += c * si[r];
            ur += sn * dr[r]; ui += sn * di[r];
          }
          yr[o + q * L] = tr + ui; yi[o + q * L] = ti - ur;
          yr[o + (p - q) * L] = tr - ui; yi[o + (p - q) * L] = ti + ur;
        }
      }
    }
  }

  _initBluestein() {
    // X_k = w_k * sum_j (x_j w_j) conj(w_{k-j}), w_k = exp(-i pi k^2 / n): a convolution, done with FFTs of
    // a power-of-2 length M >= 2n - 1.
    const n = this.n;
    let M = 1;
    while (M < 2 * n - 1) M *= 2;
    this._inner = getPlan(M);
    this._wr = new Float64Array(n);
    this._wi = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      const ang = (-Math.PI * ((k * k) % (2 * n))) / n;
      this._wr[k] = Math.cos(ang);
      this._wi[k] = Math.sin(ang);
    }
    const P = this._inner;
    P.re.fill(0); P.im.fill(0);
    for (let k = 0; k < n; k++) {
      P.re[k] = this._wr[k]; P.im[k] = -this._wi[k];
      if (k > 0) { P.re[M - k] = this._wr[k]; P.im[M - k] = -this._wi[k]; }
    }
    const [br, bi] = P.run();
    this._Br = Float64Array.from(br);
    this._Bi = Float64Array.from(bi);
  }

  _runBluestein() {
    const n = this.n, P = this._inner, M = P.n, wr = this._wr, wi = this._wi;
    P.re.fill(0); P.im.fill(0);
    for (let k = 0; k < n; k++) {
      P.re[k] = this.re[k] * wr[k] - this.im[k] * wi[k];
      P.im[k] = this.re[k] * wi[k] + this.im[k] * wr[k];
    }
    let [ar, ai] = P.run();
    // multiply by B, then inverse FFT as conj(FFT(conj(.))) / M
    const Br = this._Br, Bi = this._Bi;
    for (let k = 0; k < M; k++) {
      const r = ar[k] * Br[k] - ai[k] * Bi[k], i = ar[k] * Bi[k] + ai[k] * Br[k];
      P.re[k] = r; P.im[k] = -i;
    }
    [ar, ai] = P.run();
    const outR = this._re, outI = this._im;
    for (let k = 0; k < n; k++) {
      const cr = ar[k] / M, ci = -ai[k] / M;
      outR[k] = cr * wr[k] - ci * wi[k];
      outI[k] = cr * wi[k] + ci * wr[k];
    }
    return [outR, outI];
  }
}

function getPlan(n) {
  let p = plans.get(n);
  if (!p) { p = new ComplexFFT(n); plans.set(n, p); }
  return p;
}

/** Forward complex DFT of any length, in place on two Float64Arrays (or arrays) re and im. */
function fft(re, im) {
  const P = getPlan(re.length);
  P.re.set(re); P.im.set(im);
  const [r, i] = P.run();
  for (let k = 0; k < re.length; k++) { re[k] = r[k]; im[k] = i[k]; }
  return [re, im];
}

// |rfft(x)|^2 of a real frame of even length N through one complex FFT of length N/2:
// z_j = x_{2j} + i x_{2j+1}, X_k = (Z_k + conj Z_{N/2-k}) / 2 - i W_N^k (Z_k - conj Z_{N/2-k}) / 2.
class RealPower {
  constructor(N) {
    this.N = N;
    this.even = N % 2 === 0;
    this.plan = getPlan(this.even ? N / 2 : N);
    const h = this.even ? N / 2 : 0;
    this.wr = new Float64Array(h + 1);
    this.wi = new Float64Array(h + 1);
    for (let k = 0; k <= h; k++) {
      this.wr[k] = Math.cos((-2 * Math.PI * k) / N);
      this.wi[k] = Math.sin((-2 * Math.PI * k) / N);
    }
  }

  /** out[k] = |sum_j x[offset + j] window[j] e^{-2 pi i jk/N}|^2 for k in [0, N/2]; window may be null. */
  power(x, offset, window, out) {
    const N = this.N, P = this.plan;
    if (!this.even) { // odd lengths (not used by MelStream): a plain complex FFT
      for (let j = 0; j < N; j++) { P.re[j] = window ? x[offset + j] * window[j] : x[offset + j]; P.im[j] = 0; }
      const [r, i] = P.run();
      for (let k = 0; k <= N >> 1; k++) out[k] = r[k] * r[k] + i[k] * i[k];
      return out;
    }
    const h = N / 2;
    for (let j = 0; j < h; j++) {
      const a = x[offset + 2 * j], b = x[offset + 2 * j + 1];
      P.re[j] = window ? a * window[2 * j] : a;
      P.im[j] = window ? b * window[2 * j + 1] : b;
    }
    const [zr, zi] = P.run();
    const wr = this.wr, wi = this.wi;
    for (let k = 0; k <= h; k++) {
      const k1 = k === h ? 0 : k, k2 = k === 0 ? 0 : h - k;
      const ar = zr[k1], ai = zi[k1], br = zr[k2], bi = -zi[k2]; // Z_k and conj(Z_{h-k})
      const er = 0.5 * (ar + br), ei = 0.5 * (ai + bi);         // even samples' spectrum
      const or = 0.5 * (ai - bi), oi = -0.5 * (ar - br);        // odd samples' spectrum: (Z - conj Z') / 2i
      const xr = er + wr[k] * or - wi[k] * oi, xi = ei + wr[k] * oi + wi[k] * or;
      out[k] = xr * xr + xi * xi;
    }
    return out;
  }
}

/** numpy's np.abs(np.fft.rfft(frame)) ** 2 for a frame of any length: Float64Array [N/2 + 1]. */
function powerSpectrum(frame) {
  const rp = new RealPower(frame.length);
  return rp.power(frame, 0, null, new Float64Array((frame.length >> 1) + 1));
}

// ---- neuromv.features._check_fps: Fraction(fps).limit_denominator(1001) -----------------------------------------
function fpsFraction(fps) {
  if (typeof fps !== "number" || !Number.isFinite(fps) || fps <= 0) {
    throw new Error(`fps must be a positive number, not ${fps}`);
  }
  if (fps > 240) throw new Error(`fps must be at most 240, not ${fps}`);
  let best = [Math.round(fps), 1], err = Math.abs(fps - best[0]);
  for (let d = 2; d <= 1001 && err > 0; d++) {
    const n = Math.round(fps * d), e = Math.abs(fps - n / d);
    if (e < err) { best = [n, d]; err = e; }
  }
  return best; // [num, den]
}

function ceilDiv(a, b) { // exact ceil(a / b) for non-negative integers below 2^53
  let q = Math.floor(a / b);
  if (q * b < a) q += 1;
  if (q > 0 && (q - 1) * b >= a) q -= 1;
  return q;
}

// ---- neuromv.features.MelStream ---------------------------------------------------------------------------------
/**
 * Mel power spectrogram, one column per video frame, fed block by block (e.g. 128-sample AudioWorklet blocks).
 * hop = round(sr / fps), window = periodic Hann of 2 * hop samples centred on each frame time (so column c is
 * complete, and returned by feed(), once sample (c + 1) * hop has arrived: one frame of latency), power =
 * |STFT|^2, column = filterbank @ power: librosa.feature.melspectrogram(center=True, fmax=sr/2) like the Python.
 * When sr / fps is not a whole number, feed() gives raw columns every hop samples (frameRate = sr / hop);
 * melPower() resamples them to the exact frame times as the Python does.
 */
class MelStream {
  constructor(sr, fps, nMels) {
    if (!Number.isInteger(sr) || sr <= 0) {
      throw new Error(`sample rate must be a positive whole number of Hz, not ${sr}`);
    }
    if (!Number.isInteger(nMels) || nMels < 1 || nMels > 256) {
      throw new Error(`nMels must be an integer from 1 to 256, not ${nMels}`);
    }
    const [num, den] = fpsFraction(fps);
    this.sr = sr; this.fps = num / den; this.nMels = nMels;
    this._num = num; this._den = den;
    this.hop = Math.max(1, Math.round((sr * den) / num));
    this.integerHop = (sr * den) % num === 0;
    this.frameRate = sr / this.hop;
    this.nFft = 2 * this.hop;
    this.nBins = this.hop + 1;
    this.basis = melFilterbank(sr, this.nFft, nMels);
    // the non-zero span of each triangle, so that a column costs ~ nBins multiply-adds, not nMels * nBins
    this._lo = new Int32Array(nMels); this._hi = new Int32Array(nMels);
    for (let m = 0; m < nMels; m++) {
      let lo = this.nBins, hi = 0;
      for (let k = 0; k < this.nBins; k++) {
        if (this.basis[m * this.nBins + k] !== 0) { lo = Math.min(lo, k); hi = k + 1; }
      }
      this._lo[m] = lo; this._hi[m] = Math.max(lo, hi);
    }
    // scipy.signal.get_window("hann", nFft, fftbins=True): the periodic Hann window
    this.window = new Float64Array(this.nFft);
    for (let j = 0; j < this.nFft; j++) this.window[j] = 0.5 - 0.5 * Math.cos((2 * Math.PI * j) / this.nFft);
    this._rp = new RealPower(this.nFft);
    this._spec = new Float64Array(this.nBins);
    this._buf = new Float32Array(4 * this.nFft);
    this._len = this.nFft / 2; // center=True: half a window of silence first
    this.nSamples = 0;
    this.nColumns = 0;        // columns returned so far
    this._done = false;
  }

  /** Add the next samples (Float32Array or array, mono); returns the new complete columns (Float32Array [nMels]). */
  feed(y) {
    if (this._done) throw new Error("MelStream: finish() was already called");
    this.nSamples += y.length;
    this._append(y, y.length);
    return this._columns();
  }

  /**
   * Ends the stream as Python's MelStream.finish pads it (to at least one window, plus half a window of silence)
   * and returns the remaining columns, so that all columns returned equal Python's finish() (ceil(duration * fps)
   * of them; for a non-whole hop, the raw columns, which melPower() resamples).
   */
  finish() {
    if (this.nSamples === 0) throw new Error("MelStream: no samples were fed");
    if (this._done) return [];
    this._done = true;
    const length = Math.max(this.nSamples, this.nFft); // very short clips are padded to one full window
    const before = this.nColumns, lastFed = this._last; // what feed() returned
    this._append(null, length - this.nSamples + this.nFft / 2); // and centre padding at the end
    let cols = this._columns();
    const total = Math.min(before + cols.length, 1 + Math.floor(length / this.hop));
    const target = this.integerHop ? this.nFrames() : total;
    cols = cols.slice(0, Math.max(0, Math.min(total, target) - before));
    while (before + cols.length < target) { // cannot happen with centred windows; never return too few frames
      cols.push(Float32Array.from(cols.length ? cols[cols.length - 1] : lastFed));
    }
    this.nColumns = before + cols.length;
    return cols;
  }

  /** ceil(nSamples / sr * fps), exactly (neuromv.features.n_video_frames). */
  nFrames() { return ceilDiv(this.nSamples * this._num, this.sr * this._den); }

  _append(y, count) {
    if (this._len + count > this._buf.length) {
      const b = new Float32Array(Math.max(2 * this._buf.length, this._len + count));
      b.set(this._buf.subarray(0, this._len));
      this._buf = b;
    }
    if (y) {
      if (y instanceof Float32Array) this._buf.set(y, this._len);
      else for (let i = 0; i < count; i++) this._buf[this._len + i] = y[i];
    } else {
      this._buf.fill(0, this._len, this._len + count);
    }
    this._len += count;
  }

  // MelStream._columns: every complete window in the buffer becomes a column; the rest is kept
  _columns() {
    const cols = [];
    let start = 0;
    while (start + this.nFft <= this._len) {
      cols.push(this._column(start));
      start += this.hop;
    }
    if (start > 0) {
      this._buf.copyWithin(0, start, this._len);
      this._len -= start;
    }
    this.nColumns += cols.length;
    if (cols.length) this._last = cols[cols.length - 1];
    return cols;
  }

  _column(start) {
    const spec = this._rp.power(this._buf, start, this.window, this._spec);
    const col = new Float32Array(this.nMels), B = this.basis, nb = this.nBins;
    for (let m = 0; m < this.nMels; m++) {
      let acc = 0;
      const row = m * nb;
      for (let k = this._lo[m]; k < this._hi[m]; k++) acc += B[row + k] * spec[k];
      col[m] = acc;
    }
    return col;
  }
}

/**
 * neuromv.features.mel_power: MelStream(sr, fps, nMels) fed the whole signal, then finish().
 * Returns Float32Array [nMels * nFrames], row-major (band, frame), nFrames = ceil(len / sr * fps).
 */
function melPower(samples, sr, fps, nMels) {
  const ms = new MelStream(sr, fps, nMels);
  const cols = ms.feed(samples).concat(ms.finish());
  const nFrames = ms.nFrames();
  const S = new Float32Array(nMels * nFrames);
  if (ms.integerHop) {
    for (let t = 0; t < nFrames; t++) for (let m = 0; m < nMels; m++) S[m * nFrames + t] = cols[t][m];
    return S;
  }
  // non-whole hop: np.interp of the columns at the exact frame times t * (sr / fps) / hop
  const ratio = (sr * ms._den) / (ms._num * ms.hop), last = cols.length - 1;
  for (let t = 0; t < nFrames; t++) {
    const pos = t * ratio, j = Math.floor(pos);
    for (let m = 0; m < nMels; m++) {
      let v;
      if (j >= last) v = cols[last][m];
      else v = (cols[j + 1][m] - cols[j][m]) * (pos - j) + cols[j][m];
      S[m * nFrames + t] = v;
    }
  }
  return S;
}

// ---- neuromv.features.power_to_db ------------------------------------------------------------------------------
/** dB relative to a given peak power, floored at -topDb; -topDb everywhere when the peak is not > 0. */
function dbColumn(column, peak, topDb) {
  const out = new Float32Array(column.length);
  if (!(peak > 0 && Number.isFinite(peak))) return out.fill(-topDb);
  const floor = peak * 10 ** (-topDb / 10);
  for (let i = 0; i < column.length; i++) out[i] = 10 * Math.log10(Math.max(column[i], floor) / peak);
  return out;
}

/** power_to_db: dB relative to the spectrogram's own peak, floored at -topDb (any shape, flat array). */
function powerToDb(S, topDb) {
  let peak = 0;
  for (let i = 0; i < S.length; i++) if (S[i] > peak || Number.isNaN(S[i])) peak = S[i];
  return dbColumn(S, peak, topDb);
}

// ---- neuromv.features.latents_from_db ---------------------------------------------------------------------------
/**
 * z of a whole song from its dB mel matrix db: Float32Array [nMels * nFrames], row-major (band, frame), as the
 * server sends it (neuromv.features.song_db). smooth_release with release time `release` seconds (float32, as in
 * Python), then standardize (float64): each band's mean removed, divided by the RMS norm over frames.
 * Returns Float64Array [nFrames * nMels] holding float32 values, row-major (frame, band).
 */
function latentsFromDb(db, nMels, nFrames, fps, release) {
  // smooth_release: rises at once, falls back with time constant `release` (computed in float32 in Python)
  const x = new Float32Array(db);
  if (release > 0 && nFrames > 0) {
    const a = Math.fround(Math.exp(-1 / (fps * release)));
    for (let m = 0; m < nMels; m++) {
      const row = m * nFrames;
      let prev = x[row];
      for (let t = 0; t < nFrames; t++) {
        const cur = x[row + t];
        prev = Math.max(cur, Math.fround(Math.fround(a * prev) + Math.fround(Math.fround(1 - a) * cur)));
        x[row + t] = prev;
      }
    }
  }
  // standardize: remove each band's mean, divide by the RMS norm over frames (float64 in Python)
  const z = new Float64Array(nMels * nFrames);
  let total = 0;
  for (let m = 0; m < nMels; m++) {
    const row = m * nFrames;
    let mean = 0;
    for (let t = 0; t < nFrames; t++) mean += x[row + t];
    mean /= nFrames;
    for (let t = 0; t < nFrames; t++) {
      const d = x[row + t] - mean;
      z[t * nMels + m] = d;
      total += d * d;
    }
  }
  total = Math.sqrt(total / nFrames);
  for (let i = 0; i < z.length; i++) z[i] = total < 1e-6 ? 0 : Math.fround(z[i] / total);
  return z;
}

// ---- neuromv.features.latents_from_db, live ---------------------------------------------------------------------
/**
 * z for each frame of a stream of mel power columns, as latents_from_db(song_db(...)) gives for a whole song,
 * without knowing the song: push(column) -> Float32Array z [nMels].
 *  1. power_to_db against the running peak (the largest power seen so far, which converges to the song's peak).
 *     When the peak grows by D dB, the state below (in dB) is moved down by D so that it stays on the new scale.
 *  2. smooth_release, the same recursion as Python: prev = max(cur, a prev + (1 - a) cur), a = exp(-1/(fps s)).
 *  3. standardize with running statistics: per band an exponential moving mean, and an exponential moving mean of
 *     sum_m (x_m - mean_m)^2 (West's weighted-variance update), time constant `window` seconds; the weights are
 *     normalised by their sum (1 - b^n) / (1 - b), so the first frames are not biased towards 0.
 *     z = (x - mean) / sqrt(var), 0 while var < 1e-12 (standardize's total < 1e-6).
 * On a stationary signal (statistics that do not drift over `window` seconds), the running peak, mean and variance
 * converge to the whole song's, so z converges to Python's standardize(smooth_release(power_to_db(S))).
 */
class LiveLatents {
  constructor(nMels, fps, { smooth, topDb, window = 10 }) {
    if (!(topDb > 0)) throw new Error(`topDb must be a number of dB above 0, not ${topDb}`);
    this.nMels = nMels; this.fps = fps; this.topDb = topDb;
    this.smooth = smooth;
    this.window = window;
    this.reset();
  }

  get smooth() { return this._smooth; }
  /** Release time of smooth_release in seconds (0: none); can change while running. */
  set smooth(s) {
    if (!(Number.isFinite(s) && s >= 0)) throw new Error(`smooth must be a number of seconds >= 0, not ${s}`);
    this._smooth = s;
    this._a = s > 0 ? Math.fround(Math.exp(-1 / (this.fps * s))) : 0;
  }

  get window() { return this._window; }
  /** Time constant of the running mean and variance in seconds; can change while running. */
  set window(w) {
    if (!(Number.isFinite(w) && w > 0)) throw new Error(`window must be a number of seconds > 0, not ${w}`);
    this._window = w;
    this._b = Math.exp(-1 / (this.fps * w));
  }

  reset() {
    this.peak = 0;
    this.n = 0;
    this._prev = null;
    this._weight = 0;                          // sum of the EMA weights, (1 - b^n) / (1 - b)
    this._mean = new Float64Array(this.nMels);
    this._m2 = new Float64Array(this.nMels);   // weighted sum of squared deviations per band
  }

  push(column) {
    const M = this.nMels;
    let cmax = 0;
    for (let m = 0; m < M; m++) if (column[m] > cmax) cmax = column[m];
    if (cmax > this.peak && Number.isFinite(cmax)) {
      if (this.peak > 0 && this._prev) { // move the state onto the new peak's scale
        const shift = 10 * Math.log10(cmax / this.peak);
        for (let m = 0; m < M; m++) {
          this._prev[m] = Math.max(this._prev[m] - shift, -this.topDb);
          this._mean[m] -= shift;
        }
      }
      this.peak = cmax;
    }
    const db = dbColumn(column, this.peak, this.topDb);
    // smooth_release (float32 arithmetic like the Python and latentsFromDb)
    let x = db;
    if (this._smooth > 0 && this._prev) {
      const a = this._a, b = Math.fround(1 - a), prev = this._prev;
      for (let m = 0; m < M; m++) {
        const cur = db[m];
        prev[m] = Math.max(cur, Math.fround(Math.fround(a * prev[m]) + Math.fround(b * cur)));
      }
      x = prev;
    } else {
      this._prev = Float32Array.from(db);
    }
    // standardize with bias-corrected exponential moving statistics
    const b = this._b;
    this._weight = b * this._weight + 1;
    const w = this._weight, mean = this._mean, m2 = this._m2;
    let total = 0;
    for (let m = 0; m < M; m++) {
      const d = x[m] - mean[m];
      mean[m] += d / w;
      m2[m] = b * m2[m] + d * (x[m] - mean[m]);
      total += m2[m];
    }
    const variance = total / w;
    const z = new Float32Array(M);
    if (variance >= 1e-12) {
      const inv = 1 / Math.sqrt(variance);
      for (let m = 0; m < M; m++) z[m] = (x[m] - mean[m]) * inv;
    }
    this.n++;
    return z;
  }
}

export {
  latentsFromDb, melFilterbank, hzToMel, melToHz, fft, powerSpectrum, MelStream, melPower, powerToDb, dbColumn,
  LiveLatents, fpsFraction,
};
