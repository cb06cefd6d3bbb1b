// The CPPNs of neuromv.cppn evaluated per pixel in WebGL2 fragment shaders: the programs, a panel's network on the
// GPU, the image mode's centring pass, and the drawing of one frame. The maths mirrors the Python it names, so a
// frame here matches the offline renderer's frame for the same settings.
//
// State: a `view` object made by createView ({gl, programs, floatTargets, constants}) is passed to every function;
// a panel ({name, box, db, z, net} from the app) receives its GPU resources here (buffers, w0, biases, offsetTex...).
import { colorMatrix } from "./colour.js";

/**
 * The view of a canvas: its WebGL2 context, the compiled programs (by kind and shape) and the constants the maths
 * needs, from Python (neuromv.serve.page_config: Z_GAIN, PULSE_GAIN, FLOOR, CENTRE_FRAMES, LUMA).
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
  color = vec4(clamp(uCm * c + uCo, 0.0, 1.0), 1.0);`,
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
  const u = {};
  for (const name of ["uSize", "uOrigin", "uScale", "uPan", "uC0", "uW0x", "uW0y", "uW0r", "uB", "uWo", "uBo", "uCm",
                      "uCo", "uM", "uHasOffset", "uK"]) u[name] = gl.getUniformLocation(prog, name);
  view.programs[key] = { prog, u };
  return view.programs[key];
}

/** A panel's network on the GPU: its hidden layers' weights in uniform buffers. */
export function setupPanel(view, panel) {
  const gl = view.gl, net = panel.net;
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
  if (panel.offsetTex) gl.deleteTexture(panel.offsetTex);
}

// the network's uniforms (they live in the program, which panels of the same shape share)
function bindPanel(view, panel, prog, s) {
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
  gl.uniform1f(u.uScale, s.zoom);
  gl.uniform2f(u.uPan, s.pan_x, s.pan_y);
  const cm = colorMatrix(s, view.constants.LUMA);
  gl.uniformMatrix3fv(u.uCm, false, cm.mat);
  gl.uniform3f(u.uCo, cm.offset, cm.offset, cm.offset);
}

// z as the CPPN sees it (neuromv.pipeline.latents_for): the panel's row times the gain of its kind
function gain(view, panel, s) {
  return (panel.net.image ? view.constants.PULSE_GAIN : view.constants.Z_GAIN) * s.reactivity;
}

// the frame's layer-0 bias: b0 + W_z z (neuromv.renderer: z enters as a per-frame bias); image mode: b0
function frameBias(view, panel, zRow, s) {
  const first = panel.net.layers[0], H = panel.net.hidden, nIn = first.in;
  const c0 = new Float32Array(H);
  const g = gain(view, panel, s);
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
function pulseMatrix(view, panel, zRow, s, out = new Float32Array(3 * panel.net.hidden)) {
  const R = panel.net.pulse, n = out.length, g = gain(view, panel, s);
  out.fill(0);
  const acc = new Float64Array(n);
  for (let j = 0; j < panel.net.n_z; j++) {
    const zj = Math.fround(zRow[j] * g);
    for (let i = 0; i < n; i++) acc[i] += zj * R[j * n + i];
  }
  out.set(acc);
  return out;
}

// image mode: each pixel's mean swing over the frames zRows, into a float texture (neuromv.renderer.setup.pulse_mean)
function computeOffset(view, panel, w, h, zRows, s) {
  const gl = view.gl, H = panel.net.hidden, Q = H / 4;
  if (!view.floatTargets) return null;
  const K = zRows.length;
  const pulses = new Float32Array(K * 3 * H);
  for (let i = 0; i < K; i++) pulseMatrix(view, panel, zRows[i], s, pulses.subarray(i * 3 * H, (i + 1) * 3 * H));
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
  gl.uniform4fv(prog.u.uC0, frameBias(view, panel, null, s));
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
 * The rows of z whose mean the image mode's centring removes: all frames, or maxFrames of them evenly spread
 * (np.linspace, neuromv.renderer.CENTRE_FRAMES). z: [nFrames * nMels], row-major (frame, band).
 */
export function centreRows(z, nFrames, nMels, maxFrames) {
  const K = Math.min(maxFrames, nFrames);
  const rows = [];
  for (let i = 0; i < K; i++) {
    const t = K === nFrames ? i : Math.round((i * (nFrames - 1)) / (K - 1));
    rows.push(z.subarray(t * nMels, (t + 1) * nMels));
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

function drawPanel(view, panel, zRow, box, scene) {
  const gl = view.gl, s = scene.settings;
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
  bindPanel(view, panel, prog, s);
  gl.uniform4fv(prog.u.uC0, frameBias(view, panel, zRow, s));
  gl.uniform2f(prog.u.uSize, box.w, box.h);
  gl.uniform2f(prog.u.uOrigin, box.x, box.y);
  if (panel.kind === "image") {
    gl.uniform4fv(prog.u.uM, pulseMatrix(view, panel, zRow, s));
    gl.uniform1i(prog.u.uHasOffset, offset ? 1 : 0);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, offset ? panel.offsetTex : null);
  }
  gl.viewport(box.x, box.y, box.w, box.h);
  gl.drawArrays(gl.TRIANGLES, 0, 3);
}

/**
 * Draws one frame on the whole canvas. scene: {panels, layout, settings, zRow(panel) -> the frame's z of that
 * panel [nMels], centre: {version, rows(panel) -> the z rows of the image mode's centring}} (the centring is
 * recomputed when the version, the panel's size or the view's settings change).
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
  for (const panel of scene.panels) drawPanel(view, panel, scene.zRow(panel), panelBox(panel, W, H), scene);
  gl.disable(gl.BLEND);
}
