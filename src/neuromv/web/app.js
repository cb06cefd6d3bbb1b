// NeuroMV live preview: the CPPN of neuromv.cppn evaluated per pixel in a WebGL2 fragment shader, driven by the
// song's features, the frame chosen from the audio clock. The math mirrors the Python code it names, so a frame
// here matches the offline renderer's frame for the same settings.
"use strict";

const Z_GAIN = 0.3; // neuromv.settings.Z_GAIN

const state = {
  song: null,          // {id, name, duration, fps, n_mels, n_frames}
  db: null,            // Float32Array [n_mels * n_frames], row-major (band, frame): neuromv.features.song_db
  z: null,             // Float64Array [n_frames * n_mels]: latents_from_db(db) * Z_GAIN * reactivity
  net: null,           // {hidden, n_z, layers: [{out, in, w: Float32Array, b: Float32Array}]}
  gl: null, program: null, uniforms: {}, buffers: [],
  frameIndex: -1,      // the frame on screen (tests read it)
  clock: 0,            // the audio time it was chosen for
  framesDrawn: 0,
  settings: { reactivity: 1, smooth: 0.2, zoom: 1, seed: 0, hidden: 32, n_mels: 32, fps: 30, width: 1280, height: 720 },
};
window.neuromv = state;

const $ = (id) => document.getElementById(id);

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function floats(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

// ---- features: neuromv.features.latents_from_db --------------------------------------------------------------
function latents(db, nMels, nFrames, fps, release) {
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

function updateLatents() {
  if (!state.db) return;
  const s = state.song;
  state.z = latents(state.db, s.n_mels, s.n_frames, s.fps, state.settings.smooth);
}

// ---- the CPPN shader ------------------------------------------------------------------------------------------
function shaderSource(H, nLayers) {
  const Q = H / 4;
  let blocks = "";
  for (let l = 0; l < nLayers; l++) blocks += `layout(std140) uniform L${l} { vec4 w[${H * Q}]; } l${l};\n`;
  let body = "";
  for (let l = 0; l < nLayers; l++) {
    body += `
  for (int j = 0; j < H; j++) {
    float acc = uB[${l * Q} + j / 4][j % 4];
    for (int k = 0; k < Q; k++) acc += dot(l${l}.w[j * Q + k], h[k]);
    g[j / 4][j % 4] = th(acc);
  }
  for (int k = 0; k < Q; k++) h[k] = g[k];`;
  }
  return `#version 300 es
precision highp float;
precision highp int;
#define H ${H}
#define Q ${Q}
uniform vec2 uSize;
uniform float uScale;
uniform vec4 uC0[Q];
uniform vec4 uW0x[Q];
uniform vec4 uW0y[Q];
uniform vec4 uW0r[Q];
uniform vec4 uB[${Math.max(1, nLayers) * Q}];
uniform vec4 uWo[3 * Q];
uniform vec3 uBo;
${blocks}
out vec4 color;
float th(float v) { return tanh(clamp(v, -15.0, 15.0)); }  // tanh's exp must not overflow on some GPUs
vec4 th(vec4 v) { return tanh(clamp(v, -15.0, 15.0)); }
void main() {
  // neuromv.cppn.coordinate_grid: pixel centres, the shorter side spans [-scale, scale], y grows downwards
  float half_ = min(uSize.x, uSize.y) / 2.0;
  float x = (gl_FragCoord.x - uSize.x / 2.0) / half_ * uScale;
  float y = ((uSize.y - gl_FragCoord.y) - uSize.y / 2.0) / half_ * uScale;
  float r = sqrt(x * x + y * y);
  vec4 h[Q];
  vec4 g[Q];
  for (int k = 0; k < Q; k++) h[k] = th(uC0[k] + uW0x[k] * x + uW0y[k] * y + uW0r[k] * r);
  ${body}
  vec3 o = uBo;
  for (int k = 0; k < Q; k++) o += vec3(dot(uWo[k], h[k]), dot(uWo[Q + k], h[k]), dot(uWo[2 * Q + k], h[k]));
  color = vec4(1.0 / (1.0 + exp(-o)), 1.0);
}`;
}

const VERTEX = `#version 300 es
void main() {
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`;

function compile(gl, type, source) {
  const s = gl.createShader(type);
  gl.shaderSource(s, source);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
  return s;
}

function setupNetwork(net) {
  const gl = state.gl;
  const H = net.hidden, Q = H / 4, nLayers = net.layers.length - 2;
  if (H % 4 !== 0) throw new Error("the preview needs a hidden width that is a multiple of 4");
  const program = gl.createProgram();
  gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
  gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, shaderSource(H, nLayers)));
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
  gl.useProgram(program);
  const u = (name) => gl.getUniformLocation(program, name);
  const first = net.layers[0], out = net.layers[net.layers.length - 1];
  const col = (c) => Float32Array.from({ length: H }, (_, j) => first.w[j * first.in + c]);
  gl.uniform4fv(u("uW0x"), col(0));
  gl.uniform4fv(u("uW0y"), col(1));
  gl.uniform4fv(u("uW0r"), col(2));
  const biases = new Float32Array(Math.max(1, nLayers) * H);
  state.buffers.forEach((b) => gl.deleteBuffer(b));
  state.buffers = [];
  for (let l = 0; l < nLayers; l++) {
    const layer = net.layers[l + 1];
    biases.set(layer.b, l * H);
    const buffer = gl.createBuffer();
    gl.bindBuffer(gl.UNIFORM_BUFFER, buffer);
    gl.bufferData(gl.UNIFORM_BUFFER, layer.w, gl.STATIC_DRAW); // (out, in) row-major = w[j * Q + k] as vec4s
    gl.uniformBlockBinding(program, gl.getUniformBlockIndex(program, `L${l}`), l);
    gl.bindBufferBase(gl.UNIFORM_BUFFER, l, buffer);
    state.buffers.push(buffer);
  }
  gl.uniform4fv(u("uB"), biases);
  gl.uniform4fv(u("uWo"), out.w);
  gl.uniform3fv(u("uBo"), out.b);
  state.program = program;
  state.uniforms = { size: u("uSize"), scale: u("uScale"), c0: u("uC0") };
}

// the frame's layer-0 bias: b0 + W_z z (neuromv.renderer: z enters as a per-frame bias)
function frameBias(zRow) {
  const first = state.net.layers[0], H = state.net.hidden, nIn = first.in;
  const c0 = new Float32Array(H);
  const gain = Z_GAIN * state.settings.reactivity;
  for (let j = 0; j < H; j++) {
    let acc = first.b[j];
    for (let m = 0; m < state.net.n_z; m++) acc += first.w[j * nIn + 3 + m] * Math.fround(zRow[m] * gain);
    c0[j] = acc;
  }
  return c0;
}

function draw(index) {
  const gl = state.gl;
  if (!state.program || !state.z) return;
  const nMels = state.song.n_mels;
  const zRow = state.z.subarray(index * nMels, (index + 1) * nMels);
  gl.viewport(0, 0, gl.canvas.width, gl.canvas.height);
  gl.uniform2f(state.uniforms.size, gl.canvas.width, gl.canvas.height);
  gl.uniform1f(state.uniforms.scale, state.settings.zoom);
  gl.uniform4fv(state.uniforms.c0, frameBias(zRow));
  gl.drawArrays(gl.TRIANGLES, 0, 3);
  state.frameIndex = index;
  state.framesDrawn += 1;
}

// ---- the loop: the audio clock picks the frame ---------------------------------------------------------------
let fpsCount = 0, fpsSince = performance.now();
function loop() {
  if (state.z) {
    const s = state.song;
    state.clock = $("player").currentTime; // the audio clock picks the frame
    draw(Math.min(s.n_frames - 1, Math.max(0, Math.floor(state.clock * s.fps))));
    fpsCount += 1;
  }
  const now = performance.now();
  if (now - fpsSince > 1000) {
    state.pageFps = (fpsCount * 1000) / (now - fpsSince);
    $("fps").textContent = state.z ? `${state.pageFps.toFixed(1)} frames/s on this page` : "";
    fpsCount = 0;
    fpsSince = now;
  }
  requestAnimationFrame(loop);
}

// ---- server round trips ---------------------------------------------------------------------------------------
async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `server error ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `server error ${response.status}`);
  return body;
}

async function loadNetwork() {
  const s = state.settings;
  const net = await api(`/api/cppn?n_z=${s.n_mels}&hidden=${s.hidden}&seed=${s.seed}`);
  net.layers = net.layers.map((l) => ({ out: l.out, in: l.in, w: floats(l.w), b: floats(l.b) }));
  state.net = net;
  setupNetwork(net);
}

async function loadSong(file) {
  status(`Analysing ${file.name}…`);
  $("render").disabled = $("cli").disabled = true;
  try {
    const s = state.settings;
    const song = await api(`/api/songs?fps=${s.fps}&n_mels=${s.n_mels}`, {
      method: "POST", body: file, headers: { "X-Filename": encodeURIComponent(file.name) },
    });
    state.db = floats(song.db);
    delete song.db;
    state.song = song;
    updateLatents();
    if (!state.net) await loadNetwork();
    const player = $("player");
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(file);
    $("render").disabled = $("cli").disabled = false;
    status(`${song.name}: ${song.duration.toFixed(1)} s, ${song.n_frames} frames. Press play.`);
  } catch (e) {
    status(`Could not use this file: ${e.message}`, true);
  }
}

function renderSettings() {
  const s = state.settings;
  return { reactivity: s.reactivity, smooth: s.smooth, zoom: s.zoom, seed: s.seed, hidden: s.hidden,
           n_mels: s.n_mels, fps: s.fps, width: s.width, height: s.height };
}

async function renderVideo() {
  const bar = $("progress");
  $("render").disabled = true;
  $("result").textContent = "Rendering…";
  bar.hidden = false;
  bar.value = 0;
  try {
    const { job } = await api("/api/render", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ song: state.song.id, settings: renderSettings() }),
    });
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      const st = await api(`/api/jobs/${job}`);
      if (st.total) bar.value = st.done / st.total;
      if (st.state === "done") {
        $("result").innerHTML = "";
        const a = document.createElement("a");
        a.href = st.url;
        a.id = "download";
        a.textContent = "Download the video";
        a.download = "";
        $("result").appendChild(a);
        break;
      }
      if (st.state === "error") throw new Error(st.error);
    }
  } catch (e) {
    $("result").textContent = `Render failed: ${e.message}`;
  } finally {
    bar.hidden = true;
    $("render").disabled = false;
  }
}

async function copyCommand() {
  try {
    const { command } = await api("/api/cli", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ song: state.song.id, settings: renderSettings() }),
    });
    $("command").textContent = command;
    await navigator.clipboard.writeText(command).catch(() => {});
  } catch (e) {
    $("command").textContent = e.message;
  }
}

// ---- wiring ---------------------------------------------------------------------------------------------------
function knob(id, apply) {
  $(id).addEventListener("input", () => {
    const v = parseFloat($(id).value);
    if ($(`${id}-out`)) $(`${id}-out`).textContent = v;
    apply(v);
  });
}

function init() {
  const canvas = $("view");
  const gl = canvas.getContext("webgl2", { preserveDrawingBuffer: true, antialias: false });
  if (!gl) {
    status("This browser has no WebGL2: the live preview cannot run here.", true);
    return;
  }
  state.gl = gl;
  gl.bindVertexArray(gl.createVertexArray());
  knob("reactivity", (v) => { state.settings.reactivity = v; });
  knob("smooth", (v) => { state.settings.smooth = v; updateLatents(); });
  knob("zoom", (v) => { state.settings.zoom = v; });
  $("seed").addEventListener("change", () => {
    state.settings.seed = Math.max(0, parseInt($("seed").value, 10) || 0);
    loadNetwork().catch((e) => status(e.message, true));
  });
  $("size").addEventListener("change", () => {
    const [w, h] = $("size").value.split("x").map(Number);
    Object.assign(state.settings, { width: w, height: h });
  });
  $("file").addEventListener("change", () => { if ($("file").files[0]) loadSong($("file").files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) loadSong(e.dataTransfer.files[0]);
  });
  $("render").addEventListener("click", renderVideo);
  $("cli").addEventListener("click", copyCommand);
  state.draw = draw; // for tests: draw a given frame
  requestAnimationFrame(loop);
}

init();
