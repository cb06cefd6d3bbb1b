// The song's structure on the page: the timeline under the player (beat ticks, downbeats taller, a strip of sections
// coloured per label with the letter, drops marked; a click seeks) and a frame's controls (neuromv.structure) read
// from a panel's arrays. No state of its own: the timeline's elements are rebuilt from the cues each time.

/**
 * A frame's controls from a panel's arrays (api.decodeControls; null: structure off): {zScale, zAdd [n_z], zoom, hue
 * (degrees, added to the hue knob), saturation (multiplies it), brightness (added)} of frame t (the last one past
 * the end), or null.
 */
export function controlsAt(controls, t) {
  if (!controls) return null;
  const i = Math.min(Math.max(0, t), controls.n_frames - 1), n = controls.n_z;
  return { zScale: controls.z_scale[i], zAdd: controls.z_add.subarray(i * n, (i + 1) * n), zoom: controls.zoom[i],
           hue: controls.hue[i], saturation: controls.saturation[i], brightness: controls.brightness[i] };
}

// a label's colour: labels in order of first appearance take hues around the wheel (golden angle apart)
function labelColour(index) {
  return `hsl(${Math.round((index * 137.508) % 360)} 55% 42%)`;
}

function mark(parent, className, left, width = null) {
  const e = document.createElement("div");
  e.className = className;
  e.style.left = `${left}%`;
  if (width !== null) e.style.width = `${width}%`;
  parent.appendChild(e);
  return e;
}

/**
 * Shows `cues` (neuromv.cues.Cues.to_json(); null: none, the timeline is hidden) in the timeline element: its
 * .sections strip (one .section per section, coloured per label, its label as text, data-label), its .beats row (one
 * .beat per beat, .downbeat for the bars' first beats), .drop marks and a .playhead. A click anywhere calls
 * seek(seconds).
 */
export function showCues(timeline, cues, seek) {
  timeline.replaceChildren();
  timeline.hidden = !cues;
  if (!cues) return;
  const d = cues.duration, at = (t) => (100 * t) / d;
  const strip = document.createElement("div");
  strip.className = "sections";
  const labels = [...new Set(cues.sections.map((s) => s.label))];
  for (const s of cues.sections) {
    const e = mark(strip, "section", at(s.start), at(s.end - s.start));
    e.style.background = labelColour(labels.indexOf(s.label));
    e.textContent = s.label;
    e.dataset.label = s.label;
    e.title = `${s.label}: ${s.start.toFixed(1)} to ${s.end.toFixed(1)} s`;
  }
  const beats = document.createElement("div");
  beats.className = "beats";
  const down = new Set(cues.downbeats.map((t) => t.toFixed(4)));
  for (const t of cues.beats) mark(beats, down.has(t.toFixed(4)) ? "beat downbeat" : "beat", at(t));
  for (const t of cues.drops) mark(beats, "drop", at(t)).title = `drop at ${t.toFixed(1)} s`;
  timeline.append(strip, beats);
  mark(timeline, "playhead", 0);
  timeline.title = `${cues.tempo.toFixed(1)} BPM, ${cues.beats.length} beats, ${cues.sections.length} sections`;
  timeline.onclick = (e) => {
    const r = timeline.getBoundingClientRect();
    seek(Math.min(d, Math.max(0, ((e.clientX - r.left) / r.width) * d)));
  };
}

/** Moves the timeline's playhead to `seconds` of a song of `duration` s. */
export function showPlayhead(timeline, seconds, duration) {
  const head = timeline.lastElementChild;
  if (!timeline.hidden && head && head.className === "playhead") head.style.left = `${(100 * seconds) / duration}%`;
}
