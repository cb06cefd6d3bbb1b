// NeuroMV live preview: the CPPNs of neuromv.cppn evaluated per pixel in WebGL2 fragment shaders, driven by the
// song's features (or the microphone's, live), the frame chosen from the audio clock. The math mirrors the Python
// code it names, so a frame here matches the offline renderer's frame for the same settings.
"use strict";

const Z_GAIN = 0.3;      // neuromv.settings.Z_GAIN: abstract CPPNs see z * Z_GAIN * reactivity
const PULSE_GAIN = 2.5;  // neuromv.settings.PULSE_GAIN: image CPPNs' pulse is driven by z * PULSE_GAIN * reactivity
const FLOOR = 0.1;       // neuromv.cppn.FLOOR
const CENTRE_FRAMES = 256; // neuromv.renderer.CENTRE_FRAMES
const LUMA = [0.2126, 0.7152, 0.0722];

const state = {
  song: null,          // {id, name, duration, fps, n_mels, n_frames, cover, features (its URL)}
  db: null,            // Float32Array [n_mels * n_frames], row-major (band, frame): neuromv.features.song_db
  panels: [],          // one per picture: {name, box: [x, y, w, h] fractions, db, z, net, ...} (several with stems)
  layout: null,        // the stems' layout, or null
  image: "none",       // the picture: 'none', 'auto' (the song's cover art) or an uploaded image's id
  gl: null, programs: {}, floatTargets: false,
  frameIndex: -1,      // the frame on screen (tests read it)
  clock: 0,            // the audio time it was chosen for
  framesDrawn: 0,
  live: null,          // live mode: {context, stream, mel, latents, z, frames}
  busy: 0,             // round trips under way (a prepare job: fit, separation)
  settings: {
    reactivity: 1, smooth: 0.2, zoom: 1, pan_x: 0, pan_y: 0, hue: 0, saturation: 1, brightness: 0, contrast: 1,
    seed: 0, hidden: 32, n_mels: 32, fps: 30, width: 1280, height: 720, fit: "cover", fit_steps: 3000, stems: null,
    separator: "spleeter", layout: "auto",
  },
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
  const s = state.song;
  for (const p of state.panels) {
    const db = p.db || state.db;
    if (!db || !s) continue;
    p.z = latents(db, s.n_mels, s.n_frames, s.fps, state.settings.smooth);
    p.offsetFor = null; // the image mode's centring depends on z
  }
  if (state.live) state.live.latents.smooth = state.settings.smooth;
}

// z as the CPPN sees it (neuromv.pipeline.latents_for): the panel's row times the gain of its kind
function gain(panel) {
  return (panel.net.image ? PULSE_GAIN : Z_GAIN) * state.settings.reactivity;
}

// ---- colour: neuromv.renderer.color_matrix --------------------------------------------------------------------
function colorMatrix(s) {
  const t = (s.hue * Math.PI) / 180, c = Math.cos(t), sn = Math.sin(t), k = 1 / Math.sqrt(3);
  // rotation about the grey axis: cos t I + sin t [k]x + (1 - cos t) k k^T
  const R = [[c + (1 - c) * k * k, -sn * k + (1 - c) * k * k, sn * k + (1 - c) * k * k],
             [sn * k + (1 - c) * k * k, c + (1 - c) * k * k, -sn * k + (1 - c) * k * k],
             [-sn * k + (1 - c) * k * k, sn * k + (1 - c) * k * k, c + (1 - c) * k * k]];
  const sat = s.saturation, M = [];
  for (let i = 0; i < 3; i++) {
    M.push([0, 1, 2].map((j) => {
      let v = 0;
      for (let m = 0; m < 3; m++) v += ((i === m ? sat : 0) + (1 - sat) * LUMA[m]) * R[m][j];
      return s.contrast * v;
    }));
  }
  const offset = 0.5 * (1 - s.contrast) + s.brightness;
  // column-major mat3 for GLSL: column j holds M[0..2][j]
  return { mat: new Float32Array([M[0][0], M[1][0], M[2][0], M[0][1], M[1][1], M[2][1], M[0][2], M[1][2], M[2][2]]),
           offset };
}

// ---- the CPPN shaders -----------------------------------------------------------------------------------------
// kind 'abstract': neuromv.cppn.CPPN.forward; 'image': image mode, p + m(p) (sin(d) - offset); 'offset': the
// image mode's centring, mean over frames of sin(d) per pixel (neuromv.renderer._pulse_mean)
function shaderSource(kind, H, nLayers) {
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
  const tail = {
    abstract: `
  vec3 o = uBo;
  for (int k = 0; k < Q; k++) o += vec3(dot(uWo[k], h[k]), dot(uWo[Q + k], h[k]), dot(uWo[2 * Q + k], h[k]));
  vec3 c = 1.0 / (1.0 + exp(-o));
  color = vec4(clamp(uCm * c + uCo, 0.0, 1.0), 1.0);`,
    image: `
  vec3 o = uBo;
  vec3 d = vec3(0.0);
  for (int k = 0; k < Q; k++) {
    o += vec3(dot(uWo[k], h[k]), dot(uWo[Q + k], h[k]), dot(uWo[2 * Q + k], h[k]));
    d += vec3(dot(uM[k], h[k]), dot(uM[Q + k], h[k]), dot(uM[2 * Q + k], h[k]));
  }
  vec3 p = 1.0 / (1.0 + exp(-o));
  vec3 m = max(vec3(${FLOOR.toFixed(2)}), 0.5 - abs(p - 0.5));  // neuromv.cppn.headroom
  vec3 off = uHasOffset ? texelFetch(uOffset, ivec2(gl_FragCoord.xy - uOrigin), 0).rgb : vec3(0.0);
  vec3 c = clamp(p + m * (sin(d) - off), 0.0, 1.0);
  color = vec4(clamp(uCm * c + uCo, 0.0, 1.0), 1.0);`,
    offset: `
  vec3 acc = vec3(0.0);
  for (int i = 0; i < uK; i++) {
    vec3 d = vec3(0.0);
    for (int k = 0; k < Q; k++) {
      d += vec3(dot(texelFetch(uPulses, ivec2(k, i), 0), h[k]), dot(texelFetch(uPulses, ivec2(Q + k, i), 0), h[k]),
                dot(texelFetch(uPulses, ivec2(2 * Q + k, i), 0), h[k]));
    }
    acc += sin(d);
  }
  color = vec4(acc / float(uK), 1.0);`,
  }[kind];
  return `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
#define H ${H}
#define Q ${Q}
uniform vec2 uSize;
uniform vec2 uOrigin;
uniform float uScale;
uniform vec2 uPan;
uniform vec4 uC0[Q];
uniform vec4 uW0x[Q];
uniform vec4 uW0y[Q];
uniform vec4 uW0r[Q];
uniform vec4 uB[${Math.max(1, nLayers) * Q}];
uniform vec4 uWo[3 * Q];
uniform vec3 uBo;
uniform mat3 uCm;
uniform vec3 uCo;
uniform vec4 uM[3 * Q];
uniform bool uHasOffset;
uniform sampler2D uOffset;
uniform sampler2D uPulses;
uniform int uK;
${blocks}
out vec4 color;
float th(float v) { return tanh(clamp(v, -15.0, 15.0)); }  // tanh's exp must not overflow on some GPUs
vec4 th(vec4 v) { return tanh(clamp(v, -15.0, 15.0)); }
void main() {
  // neuromv.cppn.coordinate_grid: pixel centres, the shorter side spans [-scale, scale] around the pan, y down
  vec2 px = gl_FragCoord.xy - uOrigin;
  float half_ = min(uSize.x, uSize.y) / 2.0;
  float x = (px.x - uSize.x / 2.0) / half_ * uScale + uPan.x;
  float y = ((uSize.y - px.y) - uSize.y / 2.0) / half_ * uScale + uPan.y;
  float r = sqrt(x * x + y * y);
  vec4 h[Q];
  vec4 g[Q];
  for (int k = 0; k < Q; k++) h[k] = th(uC0[k] + uW0x[k] * x + uW0y[k] * y + uW0r[k] * r);
  ${body}
  ${tail}
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

function program(kind, H, nLayers) {
  const key = `${kind}:${H}:${nLayers}`;
  if (state.programs[key]) return state.programs[key];
  const gl = state.gl;
  const prog = gl.createProgram();
  gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, VERTEX));
  gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, shaderSource(kind, H, nLayers)));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
  gl.useProgram(prog);
  for (let l = 0; l < nLayers; l++) gl.uniformBlockBinding(prog, gl.getUniformBlockIndex(prog, `L${l}`), l);
  gl.uniform1i(gl.getUniformLocation(prog, "uOffset"), 0);
  gl.uniform1i(gl.getUniformLocation(prog, "uPulses"), 1);
  const u = {};
  for (const name of ["uSize", "uOrigin", "uScale", "uPan", "uC0", "uW0x", "uW0y", "uW0r", "uB", "uWo", "uBo", "uCm",
                      "uCo", "uM", "uHasOffset", "uK"]) u[name] = gl.getUniformLocation(prog, name);
  state.programs[key] = { prog, u };
  return state.programs[key];
}

// a panel's network on the GPU: its hidden layers' weights in uniform buffers
function setupPanel(panel) {
  const gl = state.gl, net = panel.net;
  const H = net.hidden, nLayers = net.layers.length - 2;
  if (H % 4 !== 0) throw new Error("the preview needs a hidden width that is a multiple of 4");
  (panel.buffers || []).forEach((b) => gl.deleteBuffer(b));
  panel.buffers = [];
  for (let l = 0; l < nLayers; l++) {
    const buffer = gl.createBuffer();
    gl.bindBuffer(gl.UNIFORM_BUFFER, buffer);
    gl.bufferData(gl.UNIFORM_BUFFER, net.layers[l + 1].w, gl.STATIC_DRAW); // (out, in) row-major = w[j * Q + k]
    panel.buffers.push(buffer);
  }
  const first = net.layers[0];
  const col = (c) => Float32Array.from({ length: H }, (_, j) => first.w[j * first.in + c]);
  panel.w0 = [col(0), col(1), col(2)];
  panel.biases = new Float32Array(Math.max(1, nLayers) * H);
  for (let l = 0; l < nLayers; l++) panel.biases.set(net.layers[l + 1].b, l * H);
  panel.kind = net.image ? "image" : "abstract";
  panel.nLayers = nLayers;
  panel.offsetFor = null;
}

function disposePanel(panel) {
  const gl = state.gl;
  (panel.buffers || []).forEach((b) => gl.deleteBuffer(b));
  if (panel.offsetTex) gl.deleteTexture(panel.offsetTex);
}

// the network's uniforms (they live in the program, which panels of the same shape share)
function bindPanel(panel, prog) {
  const gl = state.gl, net = panel.net, u = prog.u, s = state.settings;
  gl.useProgram(prog.prog);
  panel.buffers.forEach((b, l) => gl.bindBufferBase(gl.UNIFORM_BUFFER, l, b));
  gl.uniform4fv(u.uW0x, panel.w0[0]);
  gl.uniform4fv(u.uW0y, panel.w0[1]);
  gl.uniform4fv(u.uW0r, panel.w0[2]);
  gl.uniform4fv(u.uB, panel.biases);
  const out = net.layers[net.layers.length - 1];
  gl.uniform4fv(u.uWo, out.w);
  gl.uniform3fv(u.uBo, out.b);
  gl.uniform1f(u.uScale, s.zoom);
  gl.uniform2f(u.uPan, s.pan_x, s.pan_y);
  const cm = colorMatrix(s);
  gl.uniformMatrix3fv(u.uCm, false, cm.mat);
  gl.uniform3f(u.uCo, cm.offset, cm.offset, cm.offset);
}

// the frame's layer-0 bias: b0 + W_z z (neuromv.renderer: z enters as a per-frame bias); image mode: b0
function frameBias(panel, zRow) {
  const first = panel.net.layers[0], H = panel.net.hidden, nIn = first.in;
  const c0 = new Float32Array(H);
  const g = gain(panel);
  for (let j = 0; j < H; j++) {
    let acc = first.b[j];
    if (!panel.net.image) {
      for (let m = 0; m < panel.net.n_z; m++) acc += first.w[j * nIn + 3 + m] * Math.fround(zRow[m] * g);
    }
    c0[j] = acc;
  }
  return c0;
}

// image mode: the frame's pulse matrix sum_j z_j R_j [3 x hidden] (neuromv.cppn.CPPN.pulse_matrix)
function pulseMatrix(panel, zRow, out = new Float32Array(3 * panel.net.hidden)) {
  const R = panel.net.pulse, n = out.length, g = gain(panel);
  out.fill(0);
  const acc = new Float64Array(n);
  for (let j = 0; j < panel.net.n_z; j++) {
    const zj = Math.fround(zRow[j] * g);
    for (let i = 0; i < n; i++) acc[i] += zj * R[j * n + i];
  }
  out.set(acc);
  return out;
}

// image mode: each pixel's mean swing over (up to CENTRE_FRAMES of) the frames, into a float texture
function computeOffset(panel, w, h, zRows) {
  const gl = state.gl, H = panel.net.hidden, Q = H / 4;
  if (!state.floatTargets) return null;
  const K = zRows.length;
  const pulses = new Float32Array(K * 3 * H);
  for (let i = 0; i < K; i++) pulseMatrix(panel, zRows[i], pulses.subarray(i * 3 * H, (i + 1) * 3 * H));
  const ptex = gl.createTexture();
  gl.activeTexture(gl.TEXTURE1);
  gl.bindTexture(gl.TEXTURE_2D, ptex);
  gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA32F, 3 * Q, K, 0, gl.RGBA, gl.FLOAT, pulses);
  // without mipmaps a texture must filter with NEAREST (or LINEAR), else it reads as zeros
  for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, p, gl.NEAREST);
  if (!panel.offsetTex) panel.offsetTex = gl.createTexture();
  gl.activeTexture(gl.TEXTURE0);
  gl.bindTexture(gl.TEXTURE_2D, panel.offsetTex);
  gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA32F, w, h, 0, gl.RGBA, gl.FLOAT, null);
  for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, p, gl.NEAREST);
  const fb = gl.createFramebuffer();
  gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
  gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, panel.offsetTex, 0);
  if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) {
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.deleteFramebuffer(fb);
    gl.deleteTexture(ptex);
    return null;
  }
  gl.bindTexture(gl.TEXTURE_2D, null); // not bound while it is the target
  const prog = program("offset", H, panel.nLayers);
  bindPanel(panel, prog);
  gl.uniform4fv(prog.u.uC0, frameBias(panel, null));
  gl.uniform2f(prog.u.uSize, w, h);
  gl.uniform2f(prog.u.uOrigin, 0, 0);
  gl.uniform1i(prog.u.uK, K);
  gl.disable(gl.BLEND);
  gl.viewport(0, 0, w, h);
  gl.drawArrays(gl.TRIANGLES, 0, 3);
  gl.bindFramebuffer(gl.FRAMEBUFFER, null);
  gl.deleteFramebuffer(fb);
  gl.activeTexture(gl.TEXTURE1);
  gl.bindTexture(gl.TEXTURE_2D, null);
  gl.deleteTexture(ptex);
  return panel.offsetTex;
}

// the frames whose mean the centring removes: all, or CENTRE_FRAMES of them evenly spread (np.linspace)
function centreRows(panel) {
  const n = state.song.n_frames, nMels = state.song.n_mels;
  const K = Math.min(CENTRE_FRAMES, n);
  const rows = [];
  for (let i = 0; i < K; i++) {
    const t = K === n ? i : Math.round((i * (n - 1)) / (K - 1));
    rows.push(panel.z.subarray(t * nMels, (t + 1) * nMels));
  }
  return rows;
}

// the pixel box of a panel on the canvas (GL's rows start at the bottom)
function panelBox(panel, W, H) {
  const [fx, fy, fw, fh] = panel.box;
  const x = Math.round(fx * W), y = Math.round(fy * H);
  const w = Math.round((fx + fw) * W) - x, h = Math.round((fy + fh) * H) - y;
  return { x, y: H - y - h, w, h };
}

function drawPanel(panel, zRow, box) {
  const gl = state.gl;
  let offset = null;
  if (panel.kind === "image") {
    const key = `${box.w}x${box.h}:${state.settings.reactivity}:${state.settings.zoom}:${state.settings.pan_x}:` +
                `${state.settings.pan_y}:${state.live ? state.live.centreVersion : "song"}`;
    if (panel.offsetFor !== key) {
      const rows = state.live ? state.live.centreRows() : centreRows(panel);
      panel.hasOffset = rows.length > 0 && computeOffset(panel, box.w, box.h, rows) !== null;
      panel.offsetFor = key;
      if (state.layout === "blend") gl.enable(gl.BLEND); // the centring pass turned it off
    }
    offset = panel.hasOffset;
  }
  const prog = program(panel.kind, panel.net.hidden, panel.nLayers);
  bindPanel(panel, prog);
  gl.uniform4fv(prog.u.uC0, frameBias(panel, zRow));
  gl.uniform2f(prog.u.uSize, box.w, box.h);
  gl.uniform2f(prog.u.uOrigin, box.x, box.y);
  if (panel.kind === "image") {
    gl.uniform4fv(prog.u.uM, pulseMatrix(panel, zRow));
    gl.uniform1i(prog.u.uHasOffset, offset ? 1 : 0);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, offset ? panel.offsetTex : null);
  }
  gl.viewport(box.x, box.y, box.w, box.h);
  gl.drawArrays(gl.TRIANGLES, 0, 3);
}

function ready() {
  return state.panels.length > 0 && state.panels.every((p) => p.net && (state.live || p.z));
}

// draw frame `index` of the song (live mode: the newest z)
function draw(index) {
  const gl = state.gl;
  if (!ready()) return;
  const W = gl.canvas.width, H = gl.canvas.height;
  const blend = state.layout === "blend";
  gl.viewport(0, 0, W, H);
  gl.clearColor(0, 0, 0, 1);
  gl.clear(gl.COLOR_BUFFER_BIT);
  if (blend) { // the mean of the stems' pictures (neuromv.pipeline, layout 'blend')
    const n = state.panels.length;
    gl.enable(gl.BLEND);
    gl.blendColor(1 / n, 1 / n, 1 / n, 1 / n);
    gl.blendFunc(gl.CONSTANT_COLOR, gl.ONE);
  }
  for (const panel of state.panels) {
    let zRow;
    if (state.live) zRow = state.live.z;
    else {
      const nMels = state.song.n_mels;
      zRow = panel.z.subarray(index * nMels, (index + 1) * nMels);
    }
    drawPanel(panel, zRow, panelBox(panel, W, H));
  }
  gl.disable(gl.BLEND);
  state.frameIndex = index;
  state.framesDrawn += 1;
}

// ---- the loop: the audio clock picks the frame ---------------------------------------------------------------
let fpsCount = 0, fpsSince = performance.now();
function loop() {
  try {
    if (state.live && ready()) {
      draw(state.live.frames);
      fpsCount += 1;
    } else if (state.song && ready()) {
      const s = state.song;
      state.clock = $("player").currentTime; // the audio clock picks the frame
      draw(Math.min(s.n_frames - 1, Math.max(0, Math.floor(state.clock * s.fps))));
      fpsCount += 1;
    }
  } catch (e) {
    status(`Drawing failed: ${e.message}`, true);
  }
  const now = performance.now();
  if (now - fpsSince > 1000) {
    state.pageFps = (fpsCount * 1000) / (now - fpsSince);
    $("fps").textContent = fpsCount ? `${state.pageFps.toFixed(1)} frames/s on this page` : "";
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

// a song's dB mel matrix: little-endian float32 bytes, (n_mels, n_frames) row-major (the X-Shape header)
async function features(song) {
  const response = await fetch(song.features);
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || `server error ${response.status}`);
  }
  const [nMels, nFrames] = (response.headers.get("X-Shape") || "").split(",").map(Number);
  const db = new Float32Array(await response.arrayBuffer());
  if (nMels !== song.n_mels || nFrames !== song.n_frames || db.length !== nMels * nFrames) {
    throw new Error("the song's features did not arrive whole");
  }
  return db;
}

function decodeNet(net) {
  net.layers = net.layers.map((l) => ({ out: l.out, in: l.in, w: floats(l.w), b: floats(l.b) }));
  if (net.pulse) net.pulse = floats(net.pulse);
  return net;
}

function setPanels(panels, layout) {
  state.panels.forEach(disposePanel);
  state.panels = panels;
  state.layout = layout;
  panels.forEach(setupPanel);
  updateLatents();
  if (!state.floatTargets && panels.some((p) => p.net.image)) {
    status("This browser cannot render to float textures: the picture is shown without its centring.", true);
  }
}

const STAGES = { fit: "Fitting the image", separate: "Separating the stems", render: "Rendering" };

class Superseded extends Error {}

// follow a server job until it ends; `stale()` true: a newer request replaced it (it is cancelled, quietly)
async function poll(job, bar, what, stale = () => false) {
  for (;;) {
    await new Promise((r) => setTimeout(r, 200));
    if (stale()) {
      fetch(`/api/jobs/${job}/cancel`, { method: "POST" }).catch(() => {});
      throw new Superseded();
    }
    const st = await api(`/api/jobs/${job}`);
    if (stale()) continue;
    if (st.total) bar.value = st.done / st.total;
    if (st.state === "queued") {
      what(`Waiting for the server: ${st.position} job${st.position === 1 ? "" : "s"} ahead of this one…`);
    }
    if (st.state === "running" && st.total) {
      what(`${STAGES[st.stage] || st.stage}… ${Math.round((100 * st.done) / st.total)} %`);
    }
    if (st.state === "done") return st;
    if (st.state === "error") throw new Error(st.error);
    if (st.state === "cancelled") throw new Superseded();
  }
}

let prepareToken = 0;
// the pictures for the current settings: abstract ones come at once; an image fit or stems take a server job
async function prepare() {
  const s = state.settings, token = ++prepareToken;
  const stale = () => token !== prepareToken;
  if (state.image === "none" && !s.stems) {
    const net = decodeNet(await api(`/api/cppn?n_z=${s.n_mels}&hidden=${s.hidden}&seed=${s.seed}`));
    if (stale()) return;
    setPanels([{ name: null, box: [0, 0, 1, 1], db: null, net }], null);
    return;
  }
  if (!state.song && (s.stems || state.image === "auto")) {
    status("Drop a song first: stems and cover art come from a song.");
    return;
  }
  const bar = $("busy");
  state.busy += 1;
  bar.hidden = false;
  bar.value = 0;
  $("render").disabled = true;
  try {
    const { job } = await postSettings("/api/prepare");
    const st = await poll(job, bar, (text) => status(text), stale);
    if (stale()) return;
    const panels = st.result.panels.map((p) => ({ name: p.name, box: p.box, db: p.db ? floats(p.db) : null,
                                                 net: decodeNet(p.net) }));
    setPanels(panels, st.result.layout);
    const what = [state.image !== "none" ? "image fitted" : null, s.stems ? `${panels.length} stems` : null];
    const where = state.song ? `${state.song.name}: ` : "";
    status(`${where}${what.filter(Boolean).join(", ")}.${state.live ? "" : state.song ? " Press play." :
      " Drop a song, or use the microphone."}`);
  } catch (e) {
    if (!(e instanceof Superseded) && !stale()) throw e;
  } finally {
    state.busy -= 1;
    if (!state.busy) bar.hidden = true;
    $("render").disabled = !state.song || state.busy > 0;
  }
}

function prepareLater() {
  prepare().catch((e) => status(`Could not prepare the picture: ${e.message}`, true));
}

async function loadSong(file) {
  stopLive();
  status(`Analysing ${file.name}…`);
  $("render").disabled = $("cli").disabled = true;
  try {
    const s = state.settings;
    const song = await api(`/api/songs?fps=${s.fps}&n_mels=${s.n_mels}`, {
      method: "POST", body: file, headers: { "X-Filename": encodeURIComponent(file.name) },
    });
    state.db = await features(song);
    state.song = song;
    // panels with features of their own (stems) belong to the old song: none is drawn until they are remade
    const own = state.panels.some((p) => p.db);
    if (own) setPanels([], null);
    const cover = $("picture").querySelector("option[value=auto]");
    cover.disabled = !song.cover;
    if (state.image === "auto" && !song.cover) {
      state.image = "none";
      $("picture").value = "none";
    }
    const player = $("player");
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(file);
    status(`${song.name}: ${song.duration.toFixed(1)} s, ${song.n_frames} frames${song.cover ?
      " (it has cover art: choose it under Picture)" : ""}. Press play.`);
    $("cli").disabled = false;
    const stale = state.panels.some((p) => p.net.image) !== (state.image !== "none");
    updateLatents(); // the panels that use the song's features follow it at once
    if (state.image !== "none" || s.stems || !state.panels.length || stale) prepareLater();
  } catch (e) {
    status(`Could not use this file: ${e.message}`, true);
  } finally {
    $("render").disabled = !state.song || state.busy > 0;
    $("cli").disabled = !state.song;
  }
}

async function loadImage(file) {
  status(`Reading ${file.name}…`);
  try {
    const image = await api("/api/images", {
      method: "POST", body: file, headers: { "X-Filename": encodeURIComponent(file.name) },
    });
    const option = document.createElement("option");
    option.value = image.id;
    option.textContent = `${image.name} (${image.width}x${image.height})`;
    $("picture").appendChild(option);
    $("picture").value = image.id;
    state.image = image.id;
    status(`${image.name}: ${image.width}x${image.height}.`);
    prepareLater();
  } catch (e) {
    status(`Could not use this image: ${e.message}`, true);
  }
}

function renderSettings() {
  const s = state.settings;
  const out = {};
  for (const k of ["reactivity", "smooth", "zoom", "pan_x", "pan_y", "hue", "saturation", "brightness", "contrast",
                   "seed", "hidden", "n_mels", "fps", "width", "height", "fit", "fit_steps", "stems", "separator",
                   "layout"]) {
    out[k] = s[k];
  }
  return out;
}

// the one settings document (song, picture, settings) that the preview, the render and the command line share
function postSettings(path) {
  return api(path, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ song: state.song ? state.song.id : null, image: state.image, settings: renderSettings() }),
  });
}

async function renderVideo() {
  const bar = $("progress");
  $("render").disabled = true;
  $("result").textContent = "Rendering…";
  bar.hidden = false;
  bar.value = 0;
  try {
    const { job } = await postSettings("/api/render");
    const st = await poll(job, bar, (text) => { $("result").textContent = text; });
    $("result").innerHTML = "";
    const a = document.createElement("a");
    a.href = st.url;
    a.id = "download";
    a.textContent = "Download the video";
    a.download = "";
    $("result").appendChild(a);
  } catch (e) {
    $("result").textContent = e instanceof Superseded ? "Render cancelled." : `Render failed: ${e.message}`;
  } finally {
    bar.hidden = true;
    $("render").disabled = false;
  }
}

async function copyCommand() {
  try {
    const { command } = await postSettings("/api/cli");
    $("command").textContent = command;
    if (navigator.clipboard) await navigator.clipboard.writeText(command).catch(() => {}); // not on plain http
  } catch (e) {
    $("command").textContent = e.message;
  }
}

// ---- live mode: the microphone or line-in drives the CPPN (mel.js computes the features) ----------------------
const LIVE_CENTRE_SECONDS = 20;
const ANALYSIS_SR = 22050; // neuromv.features.ANALYSIS_SR

let liveGeneration = 0;

async function startLive() {
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    throw new Error("this browser cannot capture audio here (it needs http://127.0.0.1 or https)");
  }
  const generation = ++liveGeneration;
  let stream = null, context = null;
  const release = () => {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (context) context.close().catch(() => {});
  };
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    // the features are computed at neuromv.features.ANALYSIS_SR, as offline (the browser resamples the input)
    context = new AudioContext({ sampleRate: ANALYSIS_SR });
    await context.audioWorklet.addModule("/assets/capture.js");
    if (generation !== liveGeneration) { release(); return; } // turned off (or on again) meanwhile
    const source = context.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(context, "neuromv-capture");
    const s = state.settings;
    const live = {
      context, stream, node, sr: context.sampleRate, frames: 0, centreVersion: 0,
      mel: new NeuroMVMel.MelStream(context.sampleRate, s.fps, s.n_mels),
      latents: new NeuroMVMel.LiveLatents(s.n_mels, s.fps, { smooth: s.smooth }),
      z: new Float32Array(s.n_mels),
      history: [],   // recent z, for the image mode's centring
      power: [],     // recent mel power columns (tests compare them with Python's)
      centreRows() {
        const step = Math.max(1, Math.ceil(this.history.length / 64));
        return this.history.filter((_, i) => i % step === 0);
      },
    };
    node.port.onmessage = (e) => {
      for (const column of live.mel.feed(e.data)) {
        live.z = live.latents.push(column);
        live.power.push(column);
        if (live.power.length > LIVE_CENTRE_SECONDS * s.fps) live.power.shift();
        live.frames += 1;
        live.history.push(live.z);
        if (live.history.length > LIVE_CENTRE_SECONDS * s.fps) live.history.shift();
        if (live.frames % (4 * s.fps) === 0) live.centreVersion += 1; // recentre every 4 s
      }
    };
    source.connect(node); // not to the speakers: no feedback
    state.live = live;
  } catch (e) {
    release();
    throw e;
  }
  $("player").pause();
  status(`Live: listening at ${state.live.sr} Hz. The picture follows the input.`);
  if (!state.panels.length || state.settings.stems) {
    state.settings.stems = null;
    $("stems").value = "";
    prepareLater();
  }
}

function stopLive() {
  liveGeneration += 1; // a start still waiting for the microphone gives up
  const live = state.live;
  if (!live) return;
  state.live = null;
  live.node.port.onmessage = null;
  live.stream.getTracks().forEach((t) => t.stop());
  live.context.close();
  $("live").checked = false;
  status(state.song ? `${state.song.name}: press play.` : "Drop a song to start, or use the microphone.");
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
  state.floatTargets = !!gl.getExtension("EXT_color_buffer_float");
  gl.bindVertexArray(gl.createVertexArray());
  knob("reactivity", (v) => { state.settings.reactivity = v; });
  knob("smooth", (v) => { state.settings.smooth = v; updateLatents(); });
  for (const id of ["zoom", "pan_x", "pan_y", "hue", "saturation", "brightness", "contrast"]) {
    knob(id, (v) => { state.settings[id] = v; });
  }
  $("seed").addEventListener("change", () => {
    state.settings.seed = Math.max(0, parseInt($("seed").value, 10) || 0);
    prepareLater();
  });
  $("size").addEventListener("change", () => {
    const [w, h] = $("size").value.split("x").map(Number);
    Object.assign(state.settings, { width: w, height: h });
    if (state.settings.stems && state.song) prepareLater(); // the panels' shapes follow the video's
  });
  $("picture").addEventListener("change", () => { state.image = $("picture").value; prepareLater(); });
  $("fit").addEventListener("change", () => {
    state.settings.fit = $("fit").value;
    if (state.image !== "none") prepareLater();
  });
  $("fit_steps").addEventListener("change", () => {
    state.settings.fit_steps = parseInt($("fit_steps").value, 10);
    if (state.image !== "none") prepareLater();
  });
  $("stems").addEventListener("change", () => {
    if (state.live) { $("stems").value = ""; status("Stems need a song: turn the live mode off first.", true); return; }
    state.settings.stems = $("stems").value || null;
    prepareLater();
  });
  for (const id of ["separator", "layout"]) {
    $(id).addEventListener("change", () => {
      state.settings[id] = $(id).value;
      if (state.settings.stems) prepareLater();
    });
  }
  $("live").addEventListener("change", () => {
    if ($("live").checked) {
      startLive().catch((e) => { $("live").checked = false; status(`No live input: ${e.message}`, true); });
    } else stopLive();
  });
  const IMAGE = /\.(png|jpe?g|webp|gif|bmp|tiff?)$/i;
  const useFile = (file) => { // dropped: an image by its type or name, else a song
    if (!file) return;
    if (file.type.startsWith("image/") || IMAGE.test(file.name)) loadImage(file);
    else loadSong(file);
  };
  $("file").addEventListener("change", () => { if ($("file").files[0]) loadSong($("file").files[0]); });
  $("image-file").addEventListener("change", () => {
    if ($("image-file").files[0]) loadImage($("image-file").files[0]);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    for (const file of e.dataTransfer.files) useFile(file);
  });
  $("render").addEventListener("click", renderVideo);
  $("cli").addEventListener("click", copyCommand);
  state.draw = draw; // for tests: draw a given frame
  state.prepare = prepare;
  requestAnimationFrame(loop);
}

init();
