// The CPPNs of neuromv.cppn evaluated per pixel in WebGL2 fragment shaders: the programs, a panel's network on the
// GPU, the image mode's centring pass, a fitted picture (neuromv.picture.PictureNet) and its motion
// (neuromv.motion, neuromv.renderer.picture), and the drawing of one frame. The maths mirrors the Python it names,
// so a frame here matches the offline renderer's frame for the same settings.
//
// State: a `view` object made by createView ({gl, programs, floatTargets, constants}) is passed to every function;
// a panel ({name, box, db, z, net} from the app) receives its GPU resources here (buffers, w0, biases, offsetTex,
// gridTex, mlpTex, mapsTex, pictureTex...).
import { colorMatrix } from "./colour.js";

/**
 * The view of a canvas: its WebGL2 context, the compiled programs (by kind and shape) and the constants the maths
 * needs, from Python (neuromv.serve.page_config: Z_GAIN, PULSE_GAIN, FLOOR, CENTRE_FRAMES, LUMA, ONSET_BOOST,
 * CUES_BOOST).
 * Null when the browser has no WebGL2.
 */
export function createView(canvas, constants) {
  const gl = canvas.getContext("webgl2", { preserveDrawingBuffer: true, antialias: false });
  if (!gl) return null;
  const floatTargets = !!gl.getExtension("EXT_color_buffer_float");
  gl.bindVertexArray(gl.createVertexArray());
  return { gl, programs: {}, floatTargets, constants };
}

// a number as a GLSL float literal (an integer needs its ".0")
function glslFloat(v) {
  return Number.isInteger(v) ? v.toFixed(1) : String(v);
}

// ---- the palette (neuromv.palette, renderer.color.PaletteMap): the last step of a pixel's colour ------------------
// A panel's palette ({table: Float32Array [n * 3] in [0, 1], row: [4]}, from the server: neuromv.serve.jobs.
// palette_json) is an n x 1 RGBA32F texture on unit PALETTE_UNIT, read with texelFetch at the rounded position
// clamp(row[:3] . c + row[3], 0, n - 1) of the colour c after the colour map and its clamp.
const PALETTE_UNIT = 3;
const PALETTE_GLSL = `
uniform bool uHasPalette;
uniform vec4 uPaletteRow;
uniform sampler2D uPalette;
vec3 palette(vec3 c) {
  if (!uHasPalette) return c;
  float top = float(textureSize(uPalette, 0).x - 1);
  float pos = clamp(dot(uPaletteRow.xyz, c) + uPaletteRow.w, 0.0, top);
  return texelFetch(uPalette, ivec2(int(floor(pos + 0.5)), 0), 0).rgb;
}`;
const PALETTE_UNIFORMS = ["uHasPalette", "uPaletteRow"];

// the panel's palette texture (panel.palette null: none)
function setupPalette(view, panel) {
  const gl = view.gl, p = panel.palette;
  if (panel.paletteTex) gl.deleteTexture(panel.paletteTex);
  panel.paletteTex = null;
  if (!p) return;
  const n = p.table.length / 3, rgba = new Float32Array(4 * n);
  for (let i = 0; i < n; i++) rgba.set(p.table.subarray(3 * i, 3 * i + 3), 4 * i);
  panel.paletteTex = floatTexture(gl, PALETTE_UNIT, gl.RGBA32F, gl.RGBA, n, 1, rgba);
  gl.bindTexture(gl.TEXTURE_2D, null);
}

// a program's palette uniforms for the panel (its sampler is set once, at link)
function bindPalette(view, panel, u) {
  const gl = view.gl, on = !!panel.paletteTex;
  gl.uniform1i(u.uHasPalette, on ? 1 : 0);
  gl.activeTexture(gl.TEXTURE0 + PALETTE_UNIT);
  gl.bindTexture(gl.TEXTURE_2D, on ? panel.paletteTex : null);
  if (on) gl.uniform4fv(u.uPaletteRow, Float32Array.from(panel.palette.row));
}

// ---- the CPPN shaders -----------------------------------------------------------------------------------------
// kind 'abstract': neuromv.cppn.CPPN.forward; 'image': image mode, p + m(p) (sin(d) - offset); 'offset': the
// image mode's centring, mean over frames of sin(d) per pixel (neuromv.renderer.setup.pulse_mean)
function shaderSource(kind, H, nLayers, floor) {
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
  color = vec4(palette(clamp(uCm * c + uCo, 0.0, 1.0)), 1.0);`,
    image: `
  vec3 o = uBo;
  vec3 d = vec3(0.0);
  for (int k = 0; k < Q; k++) {
    o += vec3(dot(uWo[k], h[k]), dot(uWo[Q + k], h[k]), dot(uWo[2 * Q + k], h[k]));
    d += vec3(dot(uM[k], h[k]), dot(uM[Q + k], h[k]), dot(uM[2 * Q + k], h[k]));
  }
  vec3 p = 1.0 / (1.0 + exp(-o));
  vec3 m = max(vec3(${glslFloat(floor)}), 0.5 - abs(p - 0.5));  // neuromv.cppn.headroom
  vec3 off = uHasOffset ? texelFetch(uOffset, ivec2(gl_FragCoord.xy - uOrigin), 0).rgb : vec3(0.0);
  vec3 c = clamp(p + m * (sin(d) - off), 0.0, 1.0);
  color = vec4(palette(clamp(uCm * c + uCo, 0.0, 1.0)), 1.0);`,
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
${PALETTE_GLSL}
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

function program(view, kind, H, nLayers) {
  const key = `${kind}:${H}:${nLayers}`;
  if (view.programs[key]) return view.programs[key];
  const gl = view.gl;
  const prog = gl.createProgram();
  gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, VERTEX));
  gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, shaderSource(kind, H, nLayers, view.constants.FLOOR)));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
  gl.useProgram(prog);
  for (let l = 0; l < nLayers; l++) gl.uniformBlockBinding(prog, gl.getUniformBlockIndex(prog, `L${l}`), l);
  gl.uniform1i(gl.getUniformLocation(prog, "uOffset"), 0);
  gl.uniform1i(gl.getUniformLocation(prog, "uPulses"), 1);
  gl.uniform1i(gl.getUniformLocation(prog, "uPalette"), PALETTE_UNIT);
  const u = {};
  for (const name of ["uSize", "uOrigin", "uScale", "uPan", "uC0", "uW0x", "uW0y", "uW0r", "uB", "uWo", "uBo", "uCm",
                      "uCo", "uM", "uHasOffset", "uK", ...PALETTE_UNIFORMS]) u[name] = gl.getUniformLocation(prog, name);
  view.programs[key] = { prog, u };
  return view.programs[key];
}

/** A panel's network on the GPU: its hidden layers' weights in uniform buffers (a fitted picture: setupPicture). */
export function setupPanel(view, panel) {
  const gl = view.gl, net = panel.net;
  if (net.kind === "picture") {
    setupPicture(view, panel); // it frees the panel's old textures first
    setupPalette(view, panel);
    return;
  }
  setupPalette(view, panel);
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

/** Frees a panel's GPU resources. */
export function disposePanel(view, panel) {
  const gl = view.gl;
  (panel.buffers || []).forEach((b) => gl.deleteBuffer(b));
  for (const t of ["offsetTex", "gridTex", "mlpTex", "mapsTex", "pictureTex", "paletteTex"]) {
    if (panel[t]) gl.deleteTexture(panel[t]);
    panel[t] = null;
  }
}

// the network's uniforms (they live in the program, which panels of the same shape share); `zoom` multiplies the
// coordinates, pan included (the frame's zoom of neuromv.structure; 1 for the image mode, which it does not drive)
function bindPanel(view, panel, prog, s, zoom = 1) {
  const gl = view.gl, net = panel.net, u = prog.u;
  gl.useProgram(prog.prog);
  panel.buffers.forEach((b, l) => gl.bindBufferBase(gl.UNIFORM_BUFFER, l, b));
  gl.uniform4fv(u.uW0x, panel.w0[0]);
  gl.uniform4fv(u.uW0y, panel.w0[1]);
  gl.uniform4fv(u.uW0r, panel.w0[2]);
  gl.uniform4fv(u.uB, panel.biases);
  const out = net.layers[net.layers.length - 1];
  gl.uniform4fv(u.uWo, out.w);
  gl.uniform3fv(u.uBo, out.b);
  gl.uniform1f(u.uScale, s.zoom * zoom);
  gl.uniform2f(u.uPan, s.pan_x * zoom, s.pan_y * zoom);
  const cm = colorMatrix(s, view.constants.LUMA);
  gl.uniformMatrix3fv(u.uCm, false, cm.mat);
  gl.uniform3f(u.uCo, cm.offset, cm.offset, cm.offset);
  bindPalette(view, panel, u);
}

/**
 * What a panel's network sees in one frame (neuromv.plan.latents_for, then neuromv.structure's controls), float32 as
 * there: an abstract CPPN Z_GAIN * reactivity * z, a format-1 image CPPN PULSE_GAIN * reactivity * z, a fitted
 * picture its drive (pictureDrive: reactivity (z + boost (z - zPrev)), the boost ONSET_BOOST, or CUES_BOOST with
 * controls); then, with controls
 * {zScale (number), zAdd (Float32Array [n_z])} for the frame, v * zScale + zAdd. zRow, zPrev: the frame's z and the
 * previous frame's (null at first), [n_z].
 */
export function seenRow(view, panel, zRow, zPrev, s, controls = null) {
  const f = Math.fround, c = view.constants;
  let v;
  // a picture's drive: no boost where the structure's controls carry the hits (neuromv.plan.latents_for)
  if (panel.net.kind === "picture") {
    v = pictureDrive(zRow, zPrev, controls ? c.CUES_BOOST : c.ONSET_BOOST, s.reactivity);
  } else {
    const g = f((panel.net.image ? c.PULSE_GAIN : c.Z_GAIN) * s.reactivity); // np.float32(gain * reactivity)
    v = new Float32Array(zRow.length);
    for (let j = 0; j < zRow.length; j++) v[j] = f(zRow[j] * g);
  }
  if (controls) {
    const k = f(controls.zScale), add = controls.zAdd;
    for (let j = 0; j < v.length; j++) v[j] = f(f(v[j] * k) + (add ? add[j] : 0));
  }
  return v;
}

// the frame's layer-0 bias: b0 + W_z v (neuromv.renderer: z enters as a per-frame bias; v from seenRow); image mode
// (or v null): b0
function frameBias(view, panel, v) {
  const first = panel.net.layers[0], H = panel.net.hidden, nIn = first.in;
  const c0 = new Float32Array(H);
  for (let j = 0; j < H; j++) {
    let acc = first.b[j];
    if (!panel.net.image && v) {
      for (let m = 0; m < panel.net.n_z; m++) acc += first.w[j * nIn + 3 + m] * v[m];
    }
    c0[j] = acc;
  }
  return c0;
}

// image mode: the frame's pulse matrix sum_j v_j R_j [3 x hidden] (neuromv.cppn.CPPN.pulse_matrix; v from seenRow)
function pulseMatrix(view, panel, v, out = new Float32Array(3 * panel.net.hidden)) {
  const R = panel.net.pulse, n = out.length;
  out.fill(0);
  const acc = new Float64Array(n);
  for (let j = 0; j < panel.net.n_z; j++) {
    const zj = v[j];
    for (let i = 0; i < n; i++) acc[i] += zj * R[j * n + i];
  }
  out.set(acc);
  return out;
}

// image mode: each pixel's mean swing over the frames whose seen rows are `rows`, into a float texture
// (neuromv.renderer.setup.pulse_mean)
function computeOffset(view, panel, w, h, rows, s) {
  const gl = view.gl, H = panel.net.hidden, Q = H / 4;
  if (!view.floatTargets) return null;
  const K = rows.length;
  const pulses = new Float32Array(K * 3 * H);
  for (let i = 0; i < K; i++) pulseMatrix(view, panel, rows[i], pulses.subarray(i * 3 * H, (i + 1) * 3 * H));
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
  const prog = program(view, "offset", H, panel.nLayers);
  bindPanel(view, panel, prog, s);
  gl.uniform4fv(prog.u.uC0, frameBias(view, panel, null));
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

/**
 * The frames whose mean swing the image mode's centring removes: all frames, or maxFrames of them evenly spread
 * (np.linspace, neuromv.renderer.CENTRE_FRAMES).
 */
export function centreFrames(nFrames, maxFrames) {
  const K = Math.min(maxFrames, nFrames);
  return Array.from({ length: K }, (_, i) => (K === nFrames ? i : Math.round((i * (nFrames - 1)) / (K - 1))));
}

// ---- fitted pictures (neuromv.picture.PictureNet, moved by neuromv.motion) ----------------------------------------
// Two passes. The picture pass evaluates the network at every pixel of a panel's box into a texture (once per box
// size, zoom, pan and network: PictureNet.render); the motion pass samples it per frame at displaced coordinates
// and tones it (neuromv.renderer.picture.picture_frame), then the colour matrix. Every bilinear lookup is done by
// hand with texelFetch (grid_sample, mode 'bilinear', padding 'border', align_corners=False), never by the
// hardware's filtering, so the page computes what torch computes.

const ATLAS_WIDTH = 4096; // texels per row of the grid and MLP textures (a flat index i sits at (i % W, i / W))

// a texture of float data (RGBA32F or R32F), read with texelFetch only
function floatTexture(gl, unit, internal, format, width, height, data) {
  const t = gl.createTexture();
  gl.activeTexture(gl.TEXTURE0 + unit);
  gl.bindTexture(gl.TEXTURE_2D, t);
  gl.texImage2D(gl.TEXTURE_2D, 0, internal, width, height, 0, format, gl.FLOAT, data);
  for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, p, gl.NEAREST);
  return t;
}

/**
 * A fitted picture on the GPU (net from api.decodeNet, kind 'picture'): its grids in one RGBA32F atlas (level l,
 * feature f, cell (r, c) at texel off_l + ((f >> 2) * rows + r) * cols + c, channel f & 3), its MLP's weights and
 * biases in an R32F texture (per layer w (out, in) row-major, then b), its structure maps in an RGBA32F texture of
 * maps_width x 2 maps_height (rows top-down: the 3 tone maps, then below them the 4 flow fields).
 */
function setupPicture(view, panel) {
  const gl = view.gl, net = panel.net, F = net.features, G = Math.ceil(F / 4);
  disposePanel(view, panel);
  const maxSize = gl.getParameter(gl.MAX_TEXTURE_SIZE), W = Math.min(ATLAS_WIDTH, maxSize);
  const levels = [];
  let total = 0;
  for (const g of net.grids) {
    levels.push(total, g.rows, g.cols);
    total += G * g.rows * g.cols;
  }
  const rowsNeeded = Math.ceil(total / W);
  if (rowsNeeded > maxSize) throw new Error(`this picture's grids (${total} texels) do not fit in this browser's textures`);
  const atlas = new Float32Array(W * rowsNeeded * 4);
  net.grids.forEach((g, l) => {
    const n = g.rows * g.cols, off = levels[3 * l];
    for (let f = 0; f < F; f++) {
      const dst = (off + (f >> 2) * n) * 4 + (f & 3);
      for (let i = 0; i < n; i++) atlas[dst + 4 * i] = g.data[f * n + i];
    }
  });
  panel.gridTex = floatTexture(gl, 0, gl.RGBA32F, gl.RGBA, W, rowsNeeded, atlas);
  const mlpLength = net.layers.reduce((a, l) => a + l.w.length + l.b.length, 0);
  const mlpRows = Math.ceil(mlpLength / W);
  const mlp = new Float32Array(W * mlpRows);
  let at = 0;
  panel.mlpOffsets = net.layers.map((l) => {
    mlp.set(l.w, at);
    mlp.set(l.b, at + l.w.length);
    const o = [at, at + l.w.length];
    at += l.w.length + l.b.length;
    return o;
  });
  panel.mlpTex = floatTexture(gl, 1, gl.R32F, gl.RED, W, mlpRows, mlp);
  const sw = net.maps_width, sh = net.maps_height, maps = new Float32Array(sw * 2 * sh * 4);
  for (let m = 0; m < 7; m++) {
    const row0 = m < 3 ? 0 : sh, ch = m < 3 ? m : m - 3;
    for (let i = 0; i < sw * sh; i++) maps[(row0 * sw + i) * 4 + ch] = net.maps[m * sw * sh + i];
  }
  panel.mapsTex = floatTexture(gl, 0, gl.RGBA32F, gl.RGBA, sw, 2 * sh, maps);
  gl.bindTexture(gl.TEXTURE_2D, null);
  panel.levels = new Int32Array(levels);
  panel.atlasWidth = W;
  panel.kind = "picture";
  panel.pictureFor = null;
}

// the picture pass's shader: PictureNet.forward at the pixel centres of neuromv.cppn.coordinate_grid
function pictureSource(net, W, offsets) {
  const L = net.levels, F = net.features, G = Math.ceil(F / 4);
  let mlp = "";
  net.layers.forEach((l, i) => {
    const last = i === net.layers.length - 1, [ow, ob] = offsets[i];
    mlp += `
  float a${i + 1}[${l.out}];
  for (int j = 0; j < ${l.out}; j++) {
    float acc = wt(${ob} + j);
    for (int k = 0; k < ${l.in}; k++) acc += wt(${ow} + j * ${l.in} + k) * a${i}[k];
    a${i + 1}[j] = ${last ? "acc" : "max(acc, 0.0)"};
  }`;
  });
  const n = net.layers.length;
  return `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
uniform vec2 uSize;
uniform float uScale;
uniform vec2 uPan;
uniform vec2 uHalf;
uniform ivec3 uLevel[${L}];
uniform sampler2D uGrid;
uniform sampler2D uMlp;
out vec4 color;
vec4 cell(int i) { return texelFetch(uGrid, ivec2(i % ${W}, i / ${W}), 0); }
float wt(int i) { return texelFetch(uMlp, ivec2(i % ${W}, i / ${W}), 0).r; }
void main() {
  vec2 px = gl_FragCoord.xy;
  float half_ = min(uSize.x, uSize.y) / 2.0;
  float x = (px.x - uSize.x / 2.0) / half_ * uScale + uPan.x;
  float y = ((uSize.y - px.y) - uSize.y / 2.0) / half_ * uScale + uPan.y;
  // outside the frame its border (the grids' and the MLP's x, y alike), then grid_sample's [-1, 1] over the frame
  vec2 c = clamp(vec2(x, y), -uHalf, uHalf);
  vec2 g = c / uHalf;
  float a0[${L * F + 2}];
  for (int l = 0; l < ${L}; l++) {
    int off = uLevel[l].x, rows = uLevel[l].y, cols = uLevel[l].z;
    vec2 n = vec2(float(cols), float(rows));
    vec2 p = clamp(((g + 1.0) * n - 1.0) * 0.5, vec2(0.0), n - 1.0);  // padding 'border', align_corners=False
    ivec2 p0 = ivec2(floor(p));
    ivec2 p1 = min(p0 + 1, ivec2(cols, rows) - 1);
    vec2 f = p - vec2(p0);
    for (int q = 0; q < ${G}; q++) {
      int b = off + q * rows * cols;
      vec4 v = (cell(b + p0.y * cols + p0.x) * (1.0 - f.x) + cell(b + p0.y * cols + p1.x) * f.x) * (1.0 - f.y)
             + (cell(b + p1.y * cols + p0.x) * (1.0 - f.x) + cell(b + p1.y * cols + p1.x) * f.x) * f.y;
      for (int c = 0; c < 4; c++) {
        if (q * 4 + c < ${F}) a0[l * ${F} + q * 4 + c] = v[c];
      }
    }
  }
  a0[${L * F}] = c.x;
  a0[${L * F + 1}] = c.y;
  ${mlp}
  color = vec4(1.0 / (1.0 + exp(-vec3(a${n}[0], a${n}[1], a${n}[2]))), 1.0);
}`;
}

// the motion pass's shader: neuromv.renderer.picture.picture_frame, then the colour matrix
const MOTION_SOURCE = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
uniform vec2 uSize;
uniform vec2 uOrigin;
uniform float uScale;
uniform vec2 uPan;
uniform float uZoom;  // the frame's zoom (neuromv.structure): the pixel samples centre + (p - centre) * zoom
uniform vec2 uMapSize;
uniform vec4 uTone;   // a0..a3
uniform vec3 uFlow;   // b0, b1, m
uniform mat3 uCm;
uniform vec3 uCo;
uniform sampler2D uPicture;
uniform sampler2D uMaps;
${PALETTE_GLSL}
out vec4 color;
void main() {
  vec2 px = uSize / 2.0 + (gl_FragCoord.xy - uOrigin - uSize / 2.0) * uZoom;
  float half_ = min(uSize.x, uSize.y) / 2.0;
  vec2 rel = vec2(px.x - uSize.x / 2.0, (uSize.y - px.y) - uSize.y / 2.0) / half_ * uScale;  // coordinates - pan
  vec2 xy = rel + uPan;
  // the structure maps at (x, y), their frame: the short side spans [-1, 1] (PictureBackend.__init__)
  float sHalf = min(uMapSize.x, uMapSize.y) / 2.0;
  vec2 q = clamp(((xy * sHalf * 2.0 / uMapSize + 1.0) * uMapSize - 1.0) * 0.5, vec2(0.0), uMapSize - 1.0);
  ivec2 q0 = ivec2(floor(q));
  ivec2 q1 = min(q0 + 1, ivec2(uMapSize) - 1);
  vec2 fq = q - vec2(q0);
  int sh = int(uMapSize.y);
  vec4 tone = (texelFetch(uMaps, ivec2(q0.x, q0.y), 0) * (1.0 - fq.x) + texelFetch(uMaps, ivec2(q1.x, q0.y), 0) * fq.x)
              * (1.0 - fq.y)
            + (texelFetch(uMaps, ivec2(q0.x, q1.y), 0) * (1.0 - fq.x) + texelFetch(uMaps, ivec2(q1.x, q1.y), 0) * fq.x)
              * fq.y;
  vec4 flow = (texelFetch(uMaps, ivec2(q0.x, sh + q0.y), 0) * (1.0 - fq.x)
               + texelFetch(uMaps, ivec2(q1.x, sh + q0.y), 0) * fq.x) * (1.0 - fq.y)
            + (texelFetch(uMaps, ivec2(q0.x, sh + q1.y), 0) * (1.0 - fq.x)
               + texelFetch(uMaps, ivec2(q1.x, sh + q1.y), 0) * fq.x) * fq.y;
  // flow and breath: the picture at the displaced place (pixels: half_ / scale per coordinate unit), border clamp
  vec2 d = vec2(flow.x * uFlow.x + flow.z * uFlow.y, flow.y * uFlow.x + flow.w * uFlow.y) - rel * uFlow.z;
  vec2 p = px - 0.5 + vec2(d.x, -d.y) * (half_ / uScale);  // the texture's rows go up, y goes down
  p = clamp(p, vec2(0.0), uSize - 1.0);
  ivec2 p0 = ivec2(floor(p));
  ivec2 p1 = min(p0 + 1, ivec2(uSize) - 1);
  vec2 f = p - vec2(p0);
  vec3 rgb = (texelFetch(uPicture, p0, 0).rgb * (1.0 - f.x) + texelFetch(uPicture, ivec2(p1.x, p0.y), 0).rgb * f.x)
             * (1.0 - f.y)
           + (texelFetch(uPicture, ivec2(p0.x, p1.y), 0).rgb * (1.0 - f.x) + texelFetch(uPicture, p1, 0).rgb * f.x)
             * f.y;
  // tone: a swing along the picture's own regions, c -> c + g c (1 - c)
  float g = clamp(tone.x * uTone.y + tone.y * uTone.z + tone.z * uTone.w + uTone.x, -1.0, 1.0);
  rgb = rgb + g * rgb * (1.0 - rgb);
  color = vec4(palette(clamp(uCm * rgb + uCo, 0.0, 1.0)), 1.0);
}`;

function linkProgram(view, key, fragment, names, samplers) {
  if (view.programs[key]) return view.programs[key];
  const gl = view.gl;
  const prog = gl.createProgram();
  gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, VERTEX));
  gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, fragment));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
  gl.useProgram(prog);
  samplers.forEach((name, unit) => { if (name) gl.uniform1i(gl.getUniformLocation(prog, name), unit); });
  const u = {};
  for (const name of names) u[name] = gl.getUniformLocation(prog, name);
  view.programs[key] = { prog, u };
  return view.programs[key];
}

// the picture of a panel at its box size, zoom and pan, into panel.pictureTex (RGBA32F; RGBA8 where the browser
// cannot render to float textures: the picture then loses up to half a level before the motion)
function computePicture(view, panel, w, h, s) {
  const gl = view.gl, net = panel.net;
  const key = `picture:${net.levels}:${net.features}:${net.layers.map((l) => `${l.in}>${l.out}`).join(",")}:`
    + `${panel.atlasWidth}`;
  const prog = linkProgram(view, key, pictureSource(net, panel.atlasWidth, panel.mlpOffsets),
                           ["uSize", "uScale", "uPan", "uHalf", "uLevel"], ["uGrid", "uMlp"]);
  if (panel.pictureTex) gl.deleteTexture(panel.pictureTex);
  const float = view.floatTargets;
  panel.pictureTex = float ? floatTexture(gl, 2, gl.RGBA32F, gl.RGBA, w, h, null) : gl.createTexture();
  if (!float) {
    gl.activeTexture(gl.TEXTURE2);
    gl.bindTexture(gl.TEXTURE_2D, panel.pictureTex);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, w, h, 0, gl.RGBA, gl.UNSIGNED_BYTE, null);
    for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, p, gl.NEAREST);
  }
  gl.bindTexture(gl.TEXTURE_2D, null); // not bound while it is the target
  const fb = gl.createFramebuffer();
  gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
  gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, panel.pictureTex, 0);
  if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) {
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.deleteFramebuffer(fb);
    throw new Error("this browser cannot draw the picture into a texture");
  }
  gl.useProgram(prog.prog);
  gl.uniform2f(prog.u.uSize, w, h);
  gl.uniform1f(prog.u.uScale, s.zoom);
  gl.uniform2f(prog.u.uPan, s.pan_x, s.pan_y);
  gl.uniform2f(prog.u.uHalf, Math.max(net.aspect, 1), Math.max(1 / net.aspect, 1));
  gl.uniform3iv(prog.u.uLevel, panel.levels);
  gl.activeTexture(gl.TEXTURE0);
  gl.bindTexture(gl.TEXTURE_2D, panel.gridTex);
  gl.activeTexture(gl.TEXTURE1);
  gl.bindTexture(gl.TEXTURE_2D, panel.mlpTex);
  gl.disable(gl.BLEND);
  gl.viewport(0, 0, w, h);
  gl.drawArrays(gl.TRIANGLES, 0, 3);
  gl.bindFramebuffer(gl.FRAMEBUFFER, null);
  gl.deleteFramebuffer(fb);
}

/**
 * The drive vector of a picture's motion for one frame, times the reactivity (neuromv.motion.drive and
 * neuromv.plan.latents_for(image='picture'), in float32 as there): u = reactivity (z + ONSET_BOOST (z - zPrev));
 * the first frame (zPrev null): u = reactivity z.
 */
export function pictureDrive(zRow, zPrev, boost, reactivity) {
  const f = Math.fround, u = new Float32Array(zRow.length), b = f(boost), r = f(reactivity);
  for (let j = 0; j < zRow.length; j++) {
    const v = zPrev ? f(zRow[j] + f(b * f(zRow[j] - zPrev[j]))) : zRow[j];
    u[j] = f(v * r);
  }
  return u;
}

// the frame's 7 motion coefficients (a0..a3, b0, b1, m): the style's Motion.matrix() [7 x n_z] times u, in float64
function motionCoefficients(panel, u, style) {
  const M = panel.net.motion[style] || panel.net.motion[panel.net.style], n = u.length, c = new Float64Array(7);
  for (let i = 0; i < 7; i++) {
    let acc = 0;
    for (let j = 0; j < n; j++) acc += M[i * n + j] * u[j];
    c[i] = acc;
  }
  return c;
}

function drawPicture(view, panel, v, look, box, scene) {
  const gl = view.gl, s = lookSettings(scene.settings, look);
  const key = `${box.w}x${box.h}:${s.zoom}:${s.pan_x}:${s.pan_y}`;
  if (panel.pictureFor !== key) {
    computePicture(view, panel, box.w, box.h, s);
    panel.pictureFor = key;
    if (scene.layout === "blend") gl.enable(gl.BLEND); // the picture pass turned it off
  }
  const prog = linkProgram(view, "motion", MOTION_SOURCE, ["uSize", "uOrigin", "uScale", "uPan", "uZoom", "uMapSize",
                           "uTone", "uFlow", "uCm", "uCo", ...PALETTE_UNIFORMS],
                           ["uPicture", "uMaps", null, "uPalette"]);
  const c = motionCoefficients(panel, v, s.motion);
  gl.useProgram(prog.prog);
  gl.uniform2f(prog.u.uSize, box.w, box.h);
  gl.uniform2f(prog.u.uOrigin, box.x, box.y);
  gl.uniform1f(prog.u.uScale, s.zoom);
  gl.uniform2f(prog.u.uPan, s.pan_x, s.pan_y);
  gl.uniform1f(prog.u.uZoom, look ? look.zoom : 1);
  gl.uniform2f(prog.u.uMapSize, panel.net.maps_width, panel.net.maps_height);
  gl.uniform4f(prog.u.uTone, c[0], c[1], c[2], c[3]);
  gl.uniform3f(prog.u.uFlow, c[4], c[5], c[6]);
  const cm = colorMatrix(s, view.constants.LUMA);
  gl.uniformMatrix3fv(prog.u.uCm, false, cm.mat);
  gl.uniform3f(prog.u.uCo, cm.offset, cm.offset, cm.offset);
  gl.activeTexture(gl.TEXTURE0);
  gl.bindTexture(gl.TEXTURE_2D, panel.pictureTex);
  gl.activeTexture(gl.TEXTURE1);
  gl.bindTexture(gl.TEXTURE_2D, panel.mapsTex);
  bindPalette(view, panel, prog.u);
  gl.viewport(box.x, box.y, box.w, box.h);
  gl.drawArrays(gl.TRIANGLES, 0, 3);
}

// the pixel box of a panel on the canvas (GL's rows start at the bottom)
function panelBox(panel, W, H) {
  const [fx, fy, fw, fh] = panel.box;
  const x = Math.round(fx * W), y = Math.round(fy * H);
  const w = Math.round((fx + fw) * W) - x, h = Math.round((fy + fh) * H) - y;
  return { x, y: H - y - h, w, h };
}

/**
 * The view settings of a frame with its look {zoom, hue, saturation, brightness} (neuromv.structure's controls; null:
 * none): the colour matrix of hue + hue_i, saturation * saturation_i, brightness + brightness_i (the zoom is applied
 * where the coordinates are made).
 */
export function lookSettings(s, look) {
  if (!look) return s;
  return { ...s, hue: s.hue + look.hue, saturation: s.saturation * look.saturation,
           brightness: s.brightness + look.brightness };
}

function drawPanel(view, panel, v, look, box, scene) {
  if (panel.kind === "picture") {
    drawPicture(view, panel, v, look, box, scene);
    return;
  }
  const gl = view.gl, s = lookSettings(scene.settings, look);
  let offset = null;
  if (panel.kind === "image") {
    const key = `${box.w}x${box.h}:${s.reactivity}:${s.zoom}:${s.pan_x}:${s.pan_y}:${scene.centre.version}`;
    if (panel.offsetFor !== key) {
      const rows = scene.centre.rows(panel);
      panel.hasOffset = rows.length > 0 && computeOffset(view, panel, box.w, box.h, rows, s) !== null;
      panel.offsetFor = key;
      if (scene.layout === "blend") gl.enable(gl.BLEND); // the centring pass turned it off
    }
    offset = panel.hasOffset;
  }
  const prog = program(view, panel.kind, panel.net.hidden, panel.nLayers);
  bindPanel(view, panel, prog, s, panel.kind === "image" || !look ? 1 : look.zoom); // the image mode: no zoom
  gl.uniform4fv(prog.u.uC0, frameBias(view, panel, v));
  gl.uniform2f(prog.u.uSize, box.w, box.h);
  gl.uniform2f(prog.u.uOrigin, box.x, box.y);
  if (panel.kind === "image") {
    gl.uniform4fv(prog.u.uM, pulseMatrix(view, panel, v));
    gl.uniform1i(prog.u.uHasOffset, offset ? 1 : 0);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, offset ? panel.offsetTex : null);
  }
  gl.viewport(box.x, box.y, box.w, box.h);
  gl.drawArrays(gl.TRIANGLES, 0, 3);
}

/**
 * Draws one frame on the whole canvas. scene: {panels, layout, settings, seen(panel) -> what that panel's network
 * sees in this frame (seenRow) [n_z], look(panel) -> the frame's {zoom, hue, saturation, brightness} (null: none),
 * centre: {version, rows(panel) -> the seen rows of the image mode's centring}} (the centring is recomputed when the
 * version, the panel's size or the view's settings change).
 */
export function drawFrame(view, scene) {
  const gl = view.gl;
  const W = gl.canvas.width, H = gl.canvas.height;
  const blend = scene.layout === "blend";
  gl.viewport(0, 0, W, H);
  gl.clearColor(0, 0, 0, 1);
  gl.clear(gl.COLOR_BUFFER_BIT);
  if (blend) { // the mean of the stems' pictures (neuromv.pipeline, layout 'blend')
    const n = scene.panels.length;
    gl.enable(gl.BLEND);
    gl.blendColor(1 / n, 1 / n, 1 / n, 1 / n);
    gl.blendFunc(gl.CONSTANT_COLOR, gl.ONE);
  }
  for (const panel of scene.panels) {
    drawPanel(view, panel, scene.seen(panel), scene.look ? scene.look(panel) : null, panelBox(panel, W, H), scene);
  }
  gl.disable(gl.BLEND);
}
