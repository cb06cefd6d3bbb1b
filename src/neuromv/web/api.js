// The page's round trips to the server (neuromv.serve): the configuration it embeds in the page, uploads, a
// CPPN's weights, the song's features (binary), settings documents and jobs (prepare, render) followed to the end.
// No state of its own.

/**
 * The constants and choices the server put in the page (neuromv.serve.page_config, from the Python modules that
 * define them): {Z_GAIN, PULSE_GAIN, FLOOR, CENTRE_FRAMES, LUMA, ANALYSIS_SR, TOP_DB, ONSET_BOOST, CUES_BOOST, KICK,
 * defaults, choices}.
 */
export function pageConfig(doc = document) {
  const element = doc.getElementById("neuromv-config");
  try {
    return JSON.parse(element.textContent);
  } catch (e) {
    throw new Error("this page has no configuration: open it from `neuromv serve`");
  }
}

/** base64 of little-endian float32 bytes -> Float32Array. */
export function floats(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

/** A JSON round trip: the answer's JSON, or an Error with the server's one-line message. */
export async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `server error ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `server error ${response.status}`);
  return body;
}

// an upload: the file as the body, its name in X-Filename
function upload(path, file) {
  return api(path, { method: "POST", body: file, headers: { "X-Filename": encodeURIComponent(file.name) } });
}

/** Uploads a song: {id, name, duration, fps, n_mels, n_frames, cover, features (its URL), cues (its structure:
 * neuromv.cues.Cues.to_json())}. */
export function uploadSong(file, fps, nMels) {
  return upload(`/api/songs?fps=${fps}&n_mels=${nMels}`, file);
}

/** Uploads an image: {id, name, width, height}. */
export function uploadImage(file) {
  return upload("/api/images", file);
}

/** A song's dB mel matrix: Float32Array [n_mels * n_frames], row-major (band, frame) (the X-Shape header). */
export async function features(song) {
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

/** A network as the server sends it (neuromv.serve.net_json), its base64 arrays decoded. A CPPN (kind 'abstract'
 * or 'image'): {kind, hidden, n_z, image, layers: [{out, in, w, b}], pulse}; a fitted picture (kind 'picture'):
 * {kind, aspect, levels, features, grids: [{rows, cols, data}], layers, motion: {style: [7 x n_z]}, style, maps
 * [7 x maps_height x maps_width], maps_width, maps_height, n_z, seed}. */
export function decodeNet(net) {
  net.layers = net.layers.map((l) => ({ out: l.out, in: l.in, w: floats(l.w), b: floats(l.b) }));
  if (net.pulse) net.pulse = floats(net.pulse);
  if (net.kind === "picture") {
    net.grids = net.grids.map((g) => ({ rows: g.rows, cols: g.cols, data: floats(g.data) }));
    net.motion = Object.fromEntries(Object.entries(net.motion).map(([k, v]) => [k, floats(v)]));
    net.maps = floats(net.maps);
  }
  return net;
}

/** A panel's controls as the server sends them (neuromv.serve.jobs.controls_json; null: structure off), decoded:
 * {n_frames, n_z, z_scale [n_frames], z_add [n_frames * n_z] row-major (frame, z), zoom, hue, saturation,
 * brightness [n_frames]} (Float32Arrays). */
export function decodeControls(c) {
  if (!c) return null;
  const out = { n_frames: c.n_frames, n_z: c.n_z };
  for (const k of ["z_scale", "z_add", "zoom", "hue", "saturation", "brightness"]) out[k] = floats(c[k]);
  if (out.z_add.length !== c.n_frames * c.n_z || out.zoom.length !== c.n_frames) {
    throw new Error("the picture's controls did not arrive whole");
  }
  return out;
}

/** The abstract CPPN of a seed, tone and chroma (neuromv.plan.abstract_cppn), decoded. */
export async function abstractNet(nZ, hidden, seed, tone, chroma) {
  return decodeNet(await api(`/api/cppn?n_z=${nZ}&hidden=${hidden}&seed=${seed}&tone=${tone}&chroma=${chroma}`));
}

/** A panel's palette as the server sends it (neuromv.serve.jobs.palette_json; null: the network's own colours),
 * decoded: {name, row: [4], table: Float32Array [n * 3] in [0, 1]}. */
export function decodePalette(p) {
  if (!p) return null;
  const table = floats(p.table);
  if (table.length % 3 !== 0 || p.row.length !== 4) throw new Error("the palette did not arrive whole");
  return { name: p.name, row: p.row, table };
}

/** Posts the one settings document (song id, picture, settings) that the preview, the render and the command line
 * share. */
export function postSettings(path, doc) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(doc) });
}

const STAGES = { fit: "Fitting the image", separate: "Separating the stems", render: "Rendering" };

/** A job replaced by a newer request (it was cancelled, quietly). */
export class Superseded extends Error {}

/**
 * Follows a server job until it ends: its progress into the <progress> `bar` and `what(text)`; `stale()` true: a
 * newer request replaced it (it is cancelled). Returns the job's final status; throws Superseded or an Error.
 */
export async function poll(job, bar, what, stale = () => false) {
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
