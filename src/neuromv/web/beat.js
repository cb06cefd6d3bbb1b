// The live mode's beat tracker: causal (it never reads a sample that has not arrived). From the live mel power columns
// (mel.js, as the song's features are made) an onset strength per column (the spectral flux of the dB columns); over
// the last WINDOW_S seconds of it, the tempo by autocorrelation (the period refined over several beats) and the beat
// phase by a comb; the next beat is predicted forward from the last one. When the audio clock passes a predicted
// beat, the kick starts: the same envelope and constants as the render's (neuromv.structure.KICK, from the page's
// configuration). Its latency is measured on the page: each click's arrival in the captured audio (a transient in
// the raw samples) against the time the kick for it was drawn.

const WINDOW_S = 8;          // seconds of onset strength the tempo and phase are read from
const MIN_BPM = 60, MAX_BPM = 200, PRIOR_BPM = 120; // the tempo range, and the prior's centre (one octave wide)
const UPDATE_S = 0.25;       // the tempo and phase are re-estimated this often
const FLOOR_DB = 80;         // dB below the loudest column that count as silence
const LATENCY_PAIRS = 16;    // the latency shown is the median of the last so many clicks
const CLICK_RISE = 10;       // a click: a render quantum with 10 times (10 dB) the energy of the ones before it
const CLICK_GAP_S = 0.1;     // and at least 0.1 s after the last one

/** Parabolic interpolation of a peak at index i of a (its three points): the peak's fractional index. */
function refine(a, i) {
  if (i <= 0 || i >= a.length - 1) return i;
  const d = a[i - 1] - 2 * a[i] + a[i + 1];
  return d < 0 ? i + (0.5 * (a[i - 1] - a[i + 1])) / d : i;
}

/** Linear interpolation of a at fractional index x (0 outside). */
function at(a, x) {
  const i = Math.floor(x), f = x - i;
  if (i < 0 || i + 1 >= a.length) return i >= 0 && i < a.length ? a[i] : 0;
  return a[i] * (1 - f) + a[i + 1] * f;
}

/**
 * Tempo and last beat of an onset-strength envelope env (frames at fps, oldest first), causally: {period (frames,
 * fractional), bpm, phase (frames from the last value back to the last beat), strength} or null (too short, or
 * nothing periodic).
 */
export function estimateBeat(env, fps) {
  const n = env.length, kMin = Math.floor((60 * fps) / MAX_BPM), kMax = Math.ceil((60 * fps) / MIN_BPM);
  if (n < 2 * kMax) return null;
  let mean = 0;
  for (const v of env) mean += v;
  mean /= n;
  const e = Float64Array.from(env, (v) => v - mean);
  const maxLag = Math.floor(n / 2), ac = new Float64Array(maxLag + 1);
  for (let k = 0; k <= maxLag; k++) {
    let s = 0;
    for (let i = k; i < n; i++) s += e[i] * e[i - k];
    ac[k] = s / (n - k);
  }
  if (!(ac[0] > 0)) return null;
  // the period: autocorrelation at the lag and its multiples, weighted by a prior over the tempo (log-normal, one
  // octave wide at PRIOR_BPM: librosa's beat tracker's)
  let best = -Infinity, k0 = 0;
  for (let k = kMin; k <= kMax; k++) {
    let s = 0, w = 0;
    for (let m = 1; m * k <= maxLag && m <= 4; m++) { s += ac[m * k] / m; w += 1 / m; }
    const prior = Math.exp(-0.5 * Math.log2((60 * fps) / k / PRIOR_BPM) ** 2);
    const score = (s / w) * prior;
    if (score > best) { best = score; k0 = k; }
  }
  if (!(best > 0)) return null;
  // refined over as many beats as the window holds: the peak near m * k0, interpolated, over m
  let period = refine(ac, k0);
  for (let m = 2; Math.round(m * period) + 1 <= maxLag; m++) {
    let i = Math.round(m * period);
    for (const j of [i - 1, i + 1]) if (ac[j] > ac[i]) i = j;
    period = refine(ac, i) / m;
  }
  // the phase: the comb over the past beats that collects the most onset strength
  let bestPhase = 0, bestSum = -Infinity;
  for (let phase = 0; phase < period; phase += 0.25) {
    let s = 0;
    for (let x = n - 1 - phase; x >= 0; x -= period) s += at(env, x);
    if (s > bestSum) { bestSum = s; bestPhase = phase; }
  }
  return { period, bpm: (60 * fps) / period, phase: bestPhase, strength: best / ac[0] };
}

/**
 * The kick's level dt seconds after a beat of `period` seconds (neuromv.structure.pulse_envelope, its constants
 * `kick`: neuromv.structure.KICK): a beat's full kick, kick.beat, at once, then a linear release of one unit per
 * release * period seconds (at least one frame at `fps`); 0 once released.
 */
export function kickShape(dt, period, kick, fps) {
  if (dt < 0) return 0;
  return Math.max(0, kick.beat - dt / Math.max(kick.release * period, 1 / fps));
}

/**
 * The live beat tracker of one live session. push(column, time) for each mel power column (time: the audio clock's
 * time of the column's centre, seconds); at each draw,
 * listen(samples, time, sr) for the raw samples (the clicks, for the latency); at each draw, look() -> the frame's
 * {zoom, hue, saturation, brightness} (the kick) and drawn(look) after drawing it.
 */
export class BeatTracker {
  constructor(fps, kick, clock) {
    this.fps = fps; this.kick = kick; this.clock = clock; // clock(): the audio clock now, seconds
    this.env = []; this.prev = null; this.peakDb = -Infinity; this.sinceUpdate = 0;
    this.lastTime = 0;      // the newest column's time
    this.bpm = null; this.period = null; // seconds
    this.nextBeat = null;   // the predicted time of the next beat
    this.kickAt = null;     // the time of the beat whose kick is under way
    this.beats = [];        // the beats fired: {time (predicted), drawn (clock when its kick was first drawn)}
    this.transients = [];   // clicks found in the captured audio (their arrival times)
    this.latencies = [];    // drawn - arrival, seconds, per click matched with a beat
  }

  /** A mel power column (Float32Array [nMels]) whose centre is at `time` (s). */
  push(column, time) {
    const db = Float64Array.from(column, (p) => 10 * Math.log10(Math.max(p, 1e-12)));
    for (const v of db) this.peakDb = Math.max(this.peakDb, v);
    const floor = this.peakDb - FLOOR_DB;
    let flux = 0;
    if (this.prev) {
      for (let m = 0; m < db.length; m++) flux += Math.max(0, Math.max(db[m], floor) - Math.max(this.prev[m], floor));
      flux /= db.length;
    }
    this.prev = db;
    this.env.push(flux);
    if (this.env.length > WINDOW_S * this.fps) this.env.shift();
    this.lastTime = time;
    if (++this.sinceUpdate >= UPDATE_S * this.fps) {
      this.sinceUpdate = 0;
      this.update();
    }
  }

  update() {
    const est = estimateBeat(this.env, this.fps);
    if (!est || est.strength < 0.05) return;
    this.bpm = est.bpm;
    this.period = est.period / this.fps;
    const last = this.lastTime - est.phase / this.fps; // the last beat the window shows
    let next = last + this.period;
    const now = this.clock();
    while (next < now - 0.5 * this.period) next += this.period;
    // a beat already fired for this one: the one after it
    if (this.kickAt !== null && next - this.kickAt < 0.5 * this.period) next += this.period;
    this.nextBeat = next;
  }

  /**
   * Raw captured samples (mono) whose first arrived at `time` (the audio clock), in render quanta of `quantum`: a
   * click is a quantum whose energy jumps CLICK_RISE times above the recent ones (and is not far below the loudest),
   * CLICK_GAP_S apart at least; its arrival time is its quantum's.
   */
  listen(samples, time, sr, quantum = 128) {
    for (let q = 0; q + quantum <= samples.length; q += quantum) {
      let e = 0;
      for (let i = q; i < q + quantum; i++) e += samples[i] * samples[i];
      e /= quantum;
      this.peakEnergy = Math.max(this.peakEnergy || 0, e);
      const t = time + q / sr, recent = this.recentEnergy === undefined ? e : this.recentEnergy;
      if (e > CLICK_RISE * recent && e > 1e-3 * this.peakEnergy && !(t - this.lastClick < CLICK_GAP_S)) {
        this.lastClick = t;
        this.transients.push(t);
        if (this.transients.length > 64) this.transients.shift();
      }
      this.recentEnergy = 0.7 * recent + 0.3 * e; // about 4 quanta of memory
    }
  }

  /**
   * The kick of the frame drawn now (null: no tempo yet), as the render draws a beat's (neuromv.structure.controls_for
   * with kind abstract, role 'all'): amplitude KICK.beat times the `beat` and `reactivity` settings, released linearly (a beat at full
   * strength; live, the bar and the onsets' strengths are not known: no downbeats, no off-beat hits, no step of the
   * pattern), the coordinates times 1 - KICK.zoom * kick, KICK.brightness * kick added.
   */
  look(settings) {
    if (this.nextBeat === null) return null;
    const now = this.clock();
    if (now >= this.nextBeat) { // the beat has come: its kick starts
      this.kickAt = this.nextBeat;
      this.beats.push({ time: this.nextBeat, drawn: null });
      if (this.beats.length > 64) this.beats.shift();
      this.nextBeat += this.period;
      if (this.nextBeat < now) this.nextBeat = now + this.period; // the clock jumped (a stalled page)
    }
    const k = this.kickAt === null ? 0
      : settings.beat * settings.reactivity * kickShape(now - this.kickAt, this.period, this.kick, this.fps);
    return { zoom: 1 - this.kick.zoom * k, hue: 0, saturation: 1, brightness: this.kick.brightness * k, kick: k };
  }

  /** The frame of `look` was drawn: a beat's first kick frame is timed, and matched with its click. */
  drawn(look) {
    const beat = this.beats[this.beats.length - 1];
    if (!look || !beat || beat.drawn !== null) return;
    beat.drawn = this.clock();
    this.match();
  }

  match() {
    const half = 0.5 * this.period;
    for (const beat of this.beats) {
      if (beat.drawn === null || beat.matched) continue;
      let best = null;
      for (const t of this.transients) if (Math.abs(t - beat.time) < half && (best === null || Math.abs(t - beat.time)
        < Math.abs(best - beat.time))) best = t;
      if (best === null) continue;
      beat.matched = true;
      this.latencies.push(beat.drawn - best);
      if (this.latencies.length > LATENCY_PAIRS) this.latencies.shift();
    }
  }

  /** The median latency (s) from a click's arrival to its kick drawn, or null. */
  latency() {
    if (!this.latencies.length) return null;
    const a = [...this.latencies].sort((x, y) => x - y);
    return a[Math.floor(a.length / 2)];
  }

  /** "beat tracking: 121 BPM, latency 45 ms" (what the page shows). */
  describe() {
    if (this.bpm === null) return "beat tracking: listening…";
    const lat = this.latency();
    return `beat tracking: ${Math.round(this.bpm)} BPM, latency ${lat === null ? "–" : Math.round(1000 * lat)} ms`;
  }
}
