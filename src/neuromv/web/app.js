// NeuroMV live preview: the page's state and its wiring. The CPPNs of neuromv.cppn are evaluated per pixel in WebGL2
// (gl.js), driven by the song's features (mel.js: z from the dB matrix) or the microphone's (live.js), the frame
// chosen from the audio clock; api.js talks to the server. The constants and defaults come from Python, in the page
// (api.pageConfig): a frame here matches the offline renderer's frame for the same settings.
import { abstractNet, decodeControls, decodeNet, decodePalette, features, floats, pageConfig, poll, postSettings, Superseded,
         uploadImage, uploadSong } from "./api.js";
import { centreFrames, createView, disposePanel, drawFrame, seenRow, setupPanel } from "./gl.js";
import { closeLive, openLive } from "./live.js";
import { latentsFromDb } from "./mel.js";
import { controlsAt, showCues, showPlayhead } from "./timeline.js";

const config = pageConfig();

// the settings this page has controls for: what it sends to the server (the others keep Python's defaults)
const PAGE_SETTINGS = ["reactivity", "smooth", "zoom", "pan_x", "pan_y", "hue", "saturation", "brightness", "contrast",
                       "seed", "hidden", "n_mels", "fps", "width", "height", "fit", "fit_quality", "fit_steps",
                       "motion", "stems", "separator", "layout", "structure", "beat", "variety", "transition", "format",
                       "tone", "chroma", "palette"];

const state = {
  config,              // neuromv.serve.page_config
  song: null,          // {id, name, duration, fps, n_mels, n_frames, cover, features (its URL), cues}
                       // cues: neuromv.cues.Cues.to_json() of the song (beats, downbeats, sections, drops...)
  db: null,            // Float32Array [n_mels * n_frames], row-major (band, frame): neuromv.features.song_db
  panels: [],          // one per picture: {name, box: [x, y, w, h] fractions, db, z, net, controls, ...} (several
                       // with stems); controls: neuromv.structure's per-frame arrays, or null (structure off)
  layout: null,        // the stems' layout, or null
  image: "none",       // the picture: 'none', 'auto' (the song's cover art) or an uploaded image's id
  view: null,          // gl.js's view of the canvas; gl and floatTargets are its (the tests read them here)
  gl: null, floatTargets: false,
  frameIndex: -1,      // the frame on screen (tests read it)
  clock: 0,            // the audio time it was chosen for
  framesDrawn: 0,
  live: null,          // live mode: live.js's object {context, stream, mel, latents, z, frames, ...}
  liveGeneration: 0,   // counts live-mode switches: a start still waiting for the microphone gives up
  prepareToken: 0,     // counts picture requests: an older one is cancelled
  busy: 0,             // round trips under way (a prepare job: fit, separation)
  look: null,          // the built-in look last picked (neuromv.looks.LOOKS), or null; the controls may differ
  settings: Object.fromEntries(PAGE_SETTINGS.map((k) => [k, config.defaults[k]])),
};
window.neuromv = state;

const $ = (id) => document.getElementById(id);

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// ---- features and drawing -------------------------------------------------------------------------------------
function updateLatents() {
  const s = state.song;
  for (const p of state.panels) {
    const db = p.db || state.db;
    if (!db || !s) continue;
    p.z = latentsFromDb(db, s.n_mels, s.n_frames, s.fps, state.settings.smooth);
    p.offsetFor = null; // the image mode's centring depends on z
  }
  if (state.live) state.live.latents.smooth = state.settings.smooth;
}

function ready() {
  return state.panels.length > 0 && state.panels.every((p) => p.net && (state.live || p.z));
}

// what panel p's network sees in frame t of the song: its z, the previous frame's, and the frame's controls
function songSeen(p, t) {
  const n = state.song.n_mels, row = (i) => p.z.subarray(i * n, (i + 1) * n);
  return seenRow(state.view, p, row(t), t > 0 ? row(t - 1) : null, state.settings, controlsAt(p.controls, t));
}

// draw frame `index` of the song (live mode: the newest z, and the live beat tracker's kick)
function draw(index) {
  if (!ready()) return;
  const live = state.live, song = state.song, s = state.settings;
  const liveLook = live && live.beats ? live.beats.look(s) : null;
  drawFrame(state.view, {
    panels: state.panels, layout: state.layout, settings: s,
    seen: live ? (p) => seenRow(state.view, p, live.z, live.zPrev, s) : (p) => songSeen(p, index),
    look: live ? () => liveLook : (p) => controlsAt(p.controls, index),
    centre: live ? { version: live.centreVersion,
                     rows: (p) => live.centreRows().map((z) => seenRow(state.view, p, z, null, s)) }
      : { version: "song", rows: (p) => centreFrames(song.n_frames, config.CENTRE_FRAMES).map((t) => songSeen(p, t)) },
  });
  if (live && live.beats) live.beats.drawn(liveLook);
  state.frameIndex = index;
  state.framesDrawn += 1;
}

// the loop: the audio clock picks the frame
const meter = { count: 0, since: performance.now() };
function loop() {
  try {
    if (state.live && ready()) {
      draw(state.live.frames);
      meter.count += 1;
    } else if (state.song && ready()) {
      const s = state.song;
      state.clock = $("player").currentTime; // the audio clock picks the frame
      draw(Math.min(s.n_frames - 1, Math.max(0, Math.floor(state.clock * s.fps))));
      showPlayhead($("timeline"), state.clock, s.duration);
      meter.count += 1;
    }
  } catch (e) {
    status(`Drawing failed: ${e.message}`, true);
  }
  const now = performance.now();
  if (state.live && state.live.beats) $("beat-status").textContent = state.live.beats.describe();
  if (now - meter.since > 1000) {
    state.pageFps = (meter.count * 1000) / (now - meter.since);
    $("fps").textContent = meter.count ? `${state.pageFps.toFixed(1)} frames/s on this page` : "";
    meter.count = 0;
    meter.since = now;
  }
  requestAnimationFrame(loop);
}

function setPanels(panels, layout) {
  state.panels.forEach((p) => disposePanel(state.view, p));
  state.panels = panels;
  state.layout = layout;
  panels.forEach((p) => setupPanel(state.view, p));
  updateLatents();
  if (!state.floatTargets && panels.some((p) => p.net.kind === "image")) {
    status("This browser cannot render to float textures: the picture is shown without its centring.", true);
  } else if (!state.floatTargets && panels.some((p) => p.net.kind === "picture")) {
    status("This browser cannot render to float textures: the picture is kept at 8 bits per colour.", true);
  }
}

// ---- server round trips ---------------------------------------------------------------------------------------
// the one settings document (song, picture, settings) that the preview, the render and the command line share
function settingsDocument() {
  return { song: state.song ? state.song.id : null, image: state.image, settings: { ...state.settings } };
}

// whether the song's structure drives the picture (its controls come from the server, with the panels)
function structured() {
  return !!state.song && !state.live && state.settings.structure !== "off";
}

// the pictures for the current settings: abstract ones come at once; an image fit, stems or the song's structure
// take a server job
async function prepare() {
  const s = state.settings, token = ++state.prepareToken;
  const stale = () => token !== state.prepareToken;
  if (state.image === "none" && !s.stems && !structured() && !s.palette) {
    const net = await abstractNet(s.n_mels, s.hidden, s.seed, s.tone, s.chroma);
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
    const { job } = await postSettings("/api/prepare", settingsDocument());
    const st = await poll(job, bar, (text) => status(text), stale);
    if (stale()) return;
    const panels = st.result.panels.map((p) => ({ name: p.name, box: p.box, db: p.db ? floats(p.db) : null,
                                                 net: decodeNet(p.net), controls: decodeControls(p.controls),
                                                 palette: decodePalette(p.palette) }));
    setPanels(panels, st.result.layout);
    const what = [state.image !== "none" ? "image fitted" : null, s.stems ? `${panels.length} stems` : null,
                  panels.some((p) => p.controls) ? "structure on" : null,
                  panels[0] && panels[0].palette ? `palette ${panels[0].palette.name}` : null];
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
    const song = await uploadSong(file, s.fps, s.n_mels);
    state.db = await features(song);
    state.song = song;
    showCues($("timeline"), song.cues, (t) => { $("player").currentTime = t; });
    // panels with features of their own (stems) belong to the old song: none is drawn until they are remade
    const own = state.panels.some((p) => p.db);
    if (own) setPanels([], null);
    for (const p of state.panels) p.controls = null; // the old song's structure: until the new one's arrive
    const cover = $("picture").querySelector("option[value=auto]");
    cover.disabled = !song.cover;
    showPaletteCover();
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
    if (state.image !== "none" || s.stems || !state.panels.length || stale || structured() || s.palette === "cover") {
      prepareLater();
    }
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
    const image = await uploadImage(file);
    const option = document.createElement("option");
    option.value = image.id;
    option.textContent = `${image.name} (${image.width}x${image.height})`;
    $("picture").appendChild(option);
    $("picture").value = image.id;
    state.image = image.id;
    showPaletteCover();
    status(`${image.name}: ${image.width}x${image.height}.`);
    prepareLater();
  } catch (e) {
    status(`Could not use this image: ${e.message}`, true);
  }
}

async function renderVideo() {
  const bar = $("progress");
  $("render").disabled = true;
  $("result").textContent = "Rendering…";
  bar.hidden = false;
  bar.value = 0;
  try {
    const { job } = await postSettings("/api/render", settingsDocument());
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
    const { command } = await postSettings("/api/cli", { ...settingsDocument(), look: state.look });
    $("command").textContent = command;
    if (navigator.clipboard) await navigator.clipboard.writeText(command).catch(() => {}); // not on plain http
  } catch (e) {
    $("command").textContent = e.message;
  }
}

// ---- looks (neuromv.looks) ------------------------------------------------------------------------------------
// a built-in look sets every setting a look holds (those it leaves out: the defaults); the controls follow
function applyLook(name) {
  const values = config.looks[name];
  if (!values) return;
  for (const key of config.LOOK_SETTINGS) state.settings[key] = key in values ? values[key] : config.defaults[key];
  state.look = name;
  showValues();
  updateLatents();
  prepareLater();
}

// the look file of the current settings (its TOML written by the server: neuromv.looks.look_toml), downloaded
async function saveLook() {
  const name = $("look-name").value.trim() || (state.look ? `${state.look}-custom` : "my-look");
  try {
    const { toml, filename } = await postSettings("/api/look", { settings: { ...state.settings }, name });
    $("command").textContent = toml;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([toml], { type: "application/toml" }));
    a.download = filename;
    a.id = "look-file";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    $("command").textContent = e.message;
  }
}

// ---- live mode ------------------------------------------------------------------------------------------------
async function startLive() {
  const generation = ++state.liveGeneration;
  const s = state.settings;
  const live = await openLive({ sr: config.ANALYSIS_SR, fps: s.fps, nMels: s.n_mels, smooth: s.smooth,
                                topDb: config.TOP_DB, kick: config.KICK }, () => generation === state.liveGeneration);
  if (!live) return; // turned off (or on again) meanwhile
  state.live = live;
  $("player").pause();
  status(`Live: listening at ${live.sr} Hz. The picture follows the input.`);
  if (!state.panels.length || s.stems) {
    s.stems = null;
    $("stems").value = "";
    prepareLater();
  }
}

function stopLive() {
  state.liveGeneration += 1; // a start still waiting for the microphone gives up
  const live = state.live;
  if (!live) return;
  state.live = null;
  closeLive(live);
  $("live").checked = false;
  $("beat-status").textContent = "";
  status(state.song ? `${state.song.name}: press play.` : "Drop a song to start, or use the microphone.");
}

// ---- the abstract network's colours (tone, chroma) and the palettes (neuromv.palette) -------------------------
// The palette is the last step of a pixel's colour, spread over the picture's own lumas as the render measures them
// (for the view, the colour map and the video's size): the server sends it with the panels (a prepare), remade when
// those change (once a knob is let go). Tone and chroma are the abstract network's own: a new network.

// the palette's 'cover' choice: only with cover art (the song's, or an uploaded image)
function showPaletteCover() {
  const has = (state.song && state.song.cover) || !["none", "auto"].includes(state.image);
  $("palette").querySelector("option[value=cover]").disabled = !has;
}

function wireColours() {
  for (const id of ["tone", "chroma"]) {
    knob(id, (v) => { state.settings[id] = v; });
    // a fitted picture ignores them; abstract panels get a new network
    $(id).addEventListener("change", () => { if (state.image === "none" || state.settings.palette) prepareLater(); });
  }
  for (const id of ["zoom", "pan_x", "pan_y", "hue", "saturation", "brightness", "contrast", "size"]) {
    $(id).addEventListener("change", () => { if (state.settings.palette) prepareLater(); });
  }
  const custom = $("palette-custom");
  const choose = () => {
    const v = $("palette").value;
    custom.hidden = v !== "custom";
    if (v === "custom" && !custom.value.trim()) return; // waits for its colours
    state.settings.palette = v === "custom" ? custom.value.trim() : v || null;
    prepareLater();
  };
  $("palette").addEventListener("change", choose);
  custom.addEventListener("change", choose);
  showPaletteCover();
}

// ---- wiring ---------------------------------------------------------------------------------------------------
const KNOBS = ["reactivity", "smooth", "zoom", "pan_x", "pan_y", "hue", "saturation", "brightness", "contrast", "beat",
               "variety", "transition", "tone", "chroma"];
const FIT_LABELS = { cover: "cover (fill, crop)", contain: "contain (whole image)" };

function fillSelect(id, options, selected) {
  for (const [value, label] of options) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = label;
    option.selected = String(value) === String(selected);
    $(id).appendChild(option);
  }
}

// the controls show Python's defaults and choices (neuromv.serve.page_config)
function showSettings() {
  const s = state.settings, choices = config.choices;
  for (const id of KNOBS) {
    $(id).value = s[id];
    $(`${id}-out`).textContent = s[id];
  }
  $("seed").value = s.seed;
  fillSelect("fit", choices.fit.map((v) => [v, FIT_LABELS[v] || v]), s.fit);
  fillSelect("fit_quality", choices.fit_quality.map((v) => [v, v]), s.fit_quality);
  fillSelect("motion", choices.motion.map((v) => [v, v]), s.motion);
  fillSelect("structure", choices.structure.map((v) => [v, v]), s.structure);
  fillSelect("separator", Object.entries(choices.separator).map(([v, stems]) => [v, `${v} (${stems.join(" / ")})`]),
             s.separator);
  fillSelect("layout", choices.layout.map((v) => [v, v.replaceAll("-", " ")]), s.layout);
  fillSelect("look", [["", "(choose a look)"], ...Object.keys(config.looks).map((v) => [v, v])], "");
  fillSelect("palette", [["", "the network's own colours"], ...choices.palette.map((v) => [v, v]),
                        ["cover", "the cover art's colours"], ["custom", "custom colours…"]], s.palette || "");
  const preset = presetOf(s.width, s.height);
  fillSelect("format", Object.keys(choices.format).map((f) => [f, f]), s.format || (preset && preset.format));
  fillSizes();
}

// the format and quality (neuromv.settings.FORMATS) whose size is w x h, or null
function presetOf(w, h) {
  for (const [format, sizes] of Object.entries(config.choices.format)) {
    for (const [quality, [fw, fh]] of Object.entries(sizes)) if (fw === w && fh === h) return { format, quality };
  }
  return null;
}

// the video sizes offered: the chosen format's, one per quality
function fillSizes() {
  const s = state.settings, format = $("format").value;
  $("size").replaceChildren();
  fillSelect("size", Object.entries(config.choices.format[format]).map(([q, [w, h]]) => [`${w}x${h}`,
             `${w}x${h} (${q})`]), `${s.width}x${s.height}`);
}

// the canvas takes the video's shape (its shorter side 360 pixels), shown whole within the window's height
function shapeCanvas() {
  const { width: w, height: h } = state.settings, canvas = $("view"), short = 360;
  [canvas.width, canvas.height] = w >= h ? [Math.round(short * w / h), short] : [short, Math.round(short * h / w)];
  Object.assign(canvas.style, { aspectRatio: `${w} / ${h}`, width: `min(100%, calc(75vh * ${w / h}))`,
                                alignSelf: "center" });
}

// the controls show the settings' current values (after a look is picked); a control another part adds for a
// setting (its id the setting's name) follows too
function showValues() {
  const s = state.settings;
  for (const key of new Set([...KNOBS, ...config.LOOK_SETTINGS, "seed"])) {
    const element = $(key);
    if (!element || !(key in s)) continue;
    if (element.type === "checkbox") element.checked = !!s[key];
    else element.value = s[key] === null ? "" : s[key];
    if ($(`${key}-out`)) $(`${key}-out`).textContent = s[key];
  }
}

function knob(id, apply) {
  $(id).addEventListener("input", () => {
    const v = parseFloat($(id).value);
    if ($(`${id}-out`)) $(`${id}-out`).textContent = v;
    apply(v);
  });
}

function init() {
  showSettings();
  const view = createView($("view"), config);
  if (!view) {
    status("This browser has no WebGL2: the live preview cannot run here.", true);
    return;
  }
  Object.assign(state, { view, gl: view.gl, floatTargets: view.floatTargets });
  shapeCanvas();
  knob("reactivity", (v) => { state.settings.reactivity = v; });
  // the structure's hits scale with the reactivity too: their controls are remade once the knob is let go
  $("reactivity").addEventListener("change", () => { if (structured()) prepareLater(); });
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
  // a format turns the video (the quality kept): the canvas, the stems' panels and a fitted picture follow it
  $("format").addEventListener("change", () => {
    const s = state.settings, format = $("format").value;
    const [w, h] = config.choices.format[format][(presetOf(s.width, s.height) || { quality: "standard" }).quality];
    Object.assign(s, { format, width: w, height: h });
    fillSizes();
    shapeCanvas();
    // stems, a fitted picture and a palette (its levels are measured at the video's shape) are made again
    if ((s.stems && state.song) || state.image !== "none" || s.palette) prepareLater();
  });
  $("picture").addEventListener("change", () => { state.image = $("picture").value; showPaletteCover(); prepareLater(); });
  $("fit").addEventListener("change", () => {
    state.settings.fit = $("fit").value;
    if (state.image !== "none") prepareLater();
  });
  $("fit_quality").addEventListener("change", () => {
    state.settings.fit_quality = $("fit_quality").value;
    if (state.image !== "none") prepareLater();
  });
  // a fitted picture carries every style's motion: the style changes at once
  $("motion").addEventListener("change", () => { state.settings.motion = $("motion").value; });
  // the song's structure: its controls come with the panels (a prepare job), remade when these change
  $("structure").addEventListener("change", () => {
    state.settings.structure = $("structure").value;
    if (state.song) prepareLater();
  });
  for (const id of ["beat", "variety", "transition"]) {
    knob(id, (v) => { state.settings[id] = v; });
    $(id).addEventListener("change", () => { if (structured()) prepareLater(); });
  }
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
  $("look").addEventListener("change", () => applyLook($("look").value));
  $("save-look").addEventListener("click", saveLook);
  $("render").addEventListener("click", renderVideo);
  $("cli").addEventListener("click", copyCommand);
  wireColours();
  state.draw = draw; // for tests: draw a given frame
  state.prepare = prepare;
  state.setPanels = setPanels; // for tests: panels of a given network (a format-1 model's, say)
  requestAnimationFrame(loop);
}

init();
