// The live mode: the microphone or line-in drives the CPPN. capture.js (an AudioWorklet) hands the samples over in
// blocks, mel.js turns them into mel columns and z as the song's features would be. State: the `live` object that
// openLive returns, owned by the caller.
import { BeatTracker } from "./beat.js";
import { LiveLatents, MelStream } from "./mel.js";

const CENTRE_SECONDS = 20;  // the recent z (and mel columns) kept, for the image mode's centring (and the tests)
const RECENTRE_SECONDS = 4; // the centring follows the input every so often

/**
 * Opens the audio input at the analysis rate `sr` (neuromv.features.ANALYSIS_SR, as offline: the browser
 * resamples the input) and computes z for each frame as it arrives. options: {sr, fps, nMels, smooth, topDb}
 * (neuromv.features.TOP_DB), kick (neuromv.structure.KICK: the live beat tracker's kick). `current()` false: the
 * live mode was turned off (or on again) meanwhile, and it gives up (returns null). The live object: {context, stream, node, sr, frames (frames computed), z (the newest, [nMels]),
 * zPrev (the one before it, null at first),
 * latents (its smoothing can change), history (recent z), power (recent mel power columns), centreVersion,
 * centreRows(), beats (beat.js's BeatTracker: the tempo, the kick, the latency)}.
 */
export async function openLive({ sr, fps, nMels, smooth, topDb, kick }, current = () => true) {
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    throw new Error("this browser cannot capture audio here (it needs http://127.0.0.1 or https)");
  }
  let stream = null, context = null;
  const release = () => {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (context) context.close().catch(() => {});
  };
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    context = new AudioContext({ sampleRate: sr });
    await context.audioWorklet.addModule("/assets/capture.js");
    if (!current()) { release(); return null; }
    const source = context.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(context, "neuromv-capture");
    const keep = CENTRE_SECONDS * fps;
    const live = {
      context, stream, node, sr: context.sampleRate, frames: 0, centreVersion: 0,
      mel: new MelStream(context.sampleRate, fps, nMels),
      latents: new LiveLatents(nMels, fps, { smooth, topDb }),
      z: new Float32Array(nMels),
      zPrev: null,   // the z before it (a fitted picture's motion follows the rises of z)
      history: [],   // recent z, for the image mode's centring
      power: [],     // recent mel power columns (tests compare them with Python's)
      beats: new BeatTracker(fps, kick, () => context.currentTime),
      samples: 0,    // samples received
      centreRows() {
        const step = Math.max(1, Math.ceil(this.history.length / 64));
        return this.history.filter((_, i) => i % step === 0);
      },
    };
    const mel = live.mel;
    node.port.onmessage = (e) => {
      const { samples, time } = e.data;
      live.beats.listen(samples, time, live.sr);
      // the audio clock's time of sample 0 (as this block places it): a column's centre is at column * hop
      const start = time - live.samples / live.sr;
      live.samples += samples.length;
      for (const column of mel.feed(samples)) {
        live.beats.push(column, start + (live.frames * mel.hop) / live.sr); // column `frames`'s centre
        live.zPrev = live.z;
        live.z = live.latents.push(column);
        live.power.push(column);
        if (live.power.length > keep) live.power.shift();
        live.frames += 1;
        live.history.push(live.z);
        if (live.history.length > keep) live.history.shift();
        if (live.frames % (RECENTRE_SECONDS * fps) === 0) live.centreVersion += 1;
      }
    };
    source.connect(node); // not to the speakers: no feedback
    return live;
  } catch (e) {
    release();
    throw e;
  }
}

/** Stops the input and closes its audio context. */
export function closeLive(live) {
  live.node.port.onmessage = null;
  live.stream.getTracks().forEach((t) => t.stop());
  live.context.close();
}
