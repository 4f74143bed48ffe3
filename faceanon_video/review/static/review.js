// faceanon-video review page: plain JS, no build step, nothing loaded from elsewhere.
// Every request carries the run's token (in the URL for images and downloads, in a header for JSON).
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const SECOND_COLOR = "#e84393"; // "second detector disagrees" (plan candidates of source second_detector)
const S = {
  video: null, state: null, timeline: null, faces: null,
  frame: 0, view: "original", playing: false, speed: 1,
  loading: false, wanted: null, drawing: false, drag: null, selectedRegion: null,
  mergeSelection: [],
};

function url(path, params = {}) {
  const q = new URLSearchParams({ ...params, token: TOKEN });
  return `${path}?${q}`;
}

async function api(method, path, body) {
  const options = { method, headers: { "X-Review-Token": TOKEN } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    showError(data.error || `${method} ${path}: ${response.status}`);
    throw new Error(data.error || response.status);
  }
  showError("");
  return data;
}

function showError(text) { $("error").textContent = text; }

// ---------------------------------------------------------------- frames and overlay

function fmtTime(frame) {
  const s = frame / S.video.fps;
  const m = Math.floor(s / 60);
  return `${m}:${(s - 60 * m).toFixed(2).padStart(5, "0")}`;
}

function seek(frame) {
  frame = Math.max(0, Math.min(S.video.frames - 1, Math.round(frame)));
  S.frame = frame;
  $("frame-number").value = frame;
  $("time").textContent = `${fmtTime(frame)} / ${fmtTime(S.video.frames - 1)}`;
  drawTimeline();
  requestFrame(frame);
}

// One image request at a time; a seek made while one is loading replaces the pending one, so
// dragging along the timeline shows the latest position instead of queueing every frame passed.
function requestFrame(frame) {
  if (S.loading) { S.wanted = frame; return; }
  S.loading = true;
  S.wanted = null;
  const started = performance.now();
  const img = $("frame");
  const facesPromise = fetch(url(`/api/faces/${frame}`), { headers: { "X-Review-Token": TOKEN } }).then((r) => r.json());
  img.onload = async () => {
    S.faces = await facesPromise.catch(() => null);
    img.dataset.frame = frame;
    img.dataset.view = S.view;
    img.dataset.loadMs = (performance.now() - started).toFixed(1);
    drawOverlay();
    S.loading = false;
    if (S.wanted !== null && S.wanted !== frame) requestFrame(S.wanted);
    else if (S.playing) scheduleNext(performance.now() - started);
  };
  img.onerror = () => { S.loading = false; showError(`frame ${frame} could not be shown`); };
  img.src = url(`/frame/${frame}.jpg`, { view: S.view });
}

function scheduleNext(elapsedMs) {
  const step = Math.max(1, S.speed);
  if (S.frame + step >= S.video.frames) { setPlaying(false); return; }
  const wait = Math.max(0, (1000 * step) / (S.video.fps * S.speed) - elapsedMs);
  setTimeout(() => { if (S.playing) seek(S.frame + step); }, wait);
}

function setPlaying(on, speed = 1) {
  const starting = on && !S.playing;
  S.playing = on;
  S.speed = speed;
  $("play").textContent = on ? (speed > 1 ? `Pause (${speed}x)` : "Pause") : "Play";
  if (starting && !S.loading) scheduleNext(0);
}

// The frame fills the viewer's width, up to 62% of the window's height.
function fitStage() {
  const stage = $("stage");
  const byHeight = (0.62 * window.innerHeight * S.video.width) / S.video.height;
  stage.style.width = `${Math.min($("viewer").clientWidth, byHeight)}px`;
}

function scale() {
  const img = $("frame");
  return img.clientWidth / S.video.width;
}

function drawOverlay() {
  const img = $("frame"), canvas = $("overlay");
  canvas.width = img.clientWidth;
  canvas.height = img.clientHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const k = scale();
  const f = S.faces;
  const notes = [];
  if (f && f.frame === S.frame) {
    if (f.blacked_out) notes.push(f.obscure_reason ? `obscured: ${f.obscure_reason}` : "blacked out");
    if (S.view === "original") {
      for (const t of f.tracks) {
        const color = t.decision === "spare" ? "#2ecc71" : "#3498db";
        box(ctx, t.xyxy, k, color, `P${t.person_id} T${t.track_id}${t.detected ? "" : " (predicted)"} ${t.score.toFixed(2)}`, !t.detected);
      }
      for (const c of f.candidates) {
        const second = c.source === "second_detector";
        box(ctx, c.xyxy, k, second ? SECOND_COLOR : "#f39c12", `${second ? "second detector" : "candidate"} ${c.score.toFixed(2)}`, true);
      }
    }
    for (const r of f.regions) box(ctx, r.xyxy, k, "#9b59b6", `R${r.region_id}${r.keyframe ? " key" : ""}`, !r.keyframe);
  }
  if (S.drag) {
    const [x0, y0, x1, y1] = S.drag;
    ctx.strokeStyle = "#e74c3c"; ctx.lineWidth = 2; ctx.setLineDash([]);
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
  }
  $("frame-note").textContent = notes.join("; ");
}

function box(ctx, xyxy, k, color, label, dashed) {
  const [x0, y0, x1, y1] = xyxy.map((v) => v * k);
  ctx.strokeStyle = color; ctx.lineWidth = 2;
  ctx.setLineDash(dashed ? [5, 4] : []);
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  ctx.setLineDash([]);
  ctx.font = "12px sans-serif";
  const w = ctx.measureText(label).width + 6;
  ctx.fillStyle = color; ctx.fillRect(x0, Math.max(0, y0 - 15), w, 15);
  ctx.fillStyle = "#fff"; ctx.fillText(label, x0 + 3, Math.max(11, y0 - 3));
}

// ---------------------------------------------------------------- drawing a region

function canvasPoint(event) {
  const rect = $("overlay").getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

function setDrawing(on) {
  S.drawing = on;
  $("draw").classList.toggle("active", on);
  $("overlay").classList.toggle("drawing", on);
}

$("overlay").addEventListener("mousedown", (e) => {
  if (!S.drawing) return;
  const [x, y] = canvasPoint(e);
  S.drag = [x, y, x, y];
});
$("overlay").addEventListener("mousemove", (e) => {
  if (!S.drag) return;
  const [x, y] = canvasPoint(e);
  S.drag[2] = x; S.drag[3] = y;
  drawOverlay();
});
$("overlay").addEventListener("mouseup", async () => {
  if (!S.drag) return;
  const k = scale();
  const [a, b, c, d] = S.drag;
  S.drag = null;
  const xyxy = [Math.min(a, c) / k, Math.min(b, d) / k, Math.max(a, c) / k, Math.max(b, d) / k].map((v) => Math.round(v * 10) / 10);
  if (xyxy[2] - xyxy[0] < 2 || xyxy[3] - xyxy[1] < 2) { drawOverlay(); return; }
  setDrawing(false);
  if (S.selectedRegion !== null && S.state.regions.some((r) => r.region_id === S.selectedRegion)) {
    await edit("POST", `/api/regions/${S.selectedRegion}`, { frame: S.frame, xyxy });
  } else {
    await edit("POST", "/api/regions", { frame: S.frame, xyxy, mode: "interpolate" });
    S.selectedRegion = Math.max(...S.state.regions.map((r) => r.region_id));
    renderRegions();
  }
});

// ---------------------------------------------------------------- timeline

function drawTimeline() {
  const t = S.timeline;
  if (!t) return;
  const started = performance.now();
  const canvas = $("timeline");
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(100, canvas.clientWidth), height = 84;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.fillStyle = "#1b1f24"; ctx.fillRect(0, 0, width, height);
  const n = t.frames;
  const x = (frame) => (frame / n) * width;
  // Faces per frame, as the largest count in each pixel column (one pass over the frames).
  const columns = Math.ceil(width);
  const anon = new Float32Array(columns), spared = new Float32Array(columns), regions = new Float32Array(columns);
  let peak = 1;
  for (let c = 0; c < columns; c++) {
    // The frames under column c (at least one: a short clip spreads each frame over several columns).
    const first = Math.min(n - 1, Math.floor((c * n) / columns));
    const end = Math.max(first + 1, Math.floor(((c + 1) * n) / columns));
    for (let i = first; i < end; i++) {
      if (t.anonymized[i] > anon[c]) anon[c] = t.anonymized[i];
      if (t.spared[i] > spared[c]) spared[c] = t.spared[i];
      if (t.regions[i] > regions[c]) regions[c] = t.regions[i];
    }
  }
  for (let c = 0; c < columns; c++) peak = Math.max(peak, anon[c] + spared[c]);
  const barTop = 8, barHeight = 44;
  for (let c = 0; c < columns; c++) {
    const ha = (anon[c] / peak) * barHeight, hs = (spared[c] / peak) * barHeight;
    if (ha) { ctx.fillStyle = "#3498db"; ctx.fillRect(c, barTop + barHeight - ha, 1, ha); }
    if (hs) { ctx.fillStyle = "#2ecc71"; ctx.fillRect(c, barTop + barHeight - ha - hs, 1, hs); }
    if (regions[c]) { ctx.fillStyle = "#9b59b6"; ctx.fillRect(c, 56, 1, 6); }
  }
  ctx.fillStyle = "#e74c3c";
  for (const [a, b] of t.obscured.concat(t.blackouts)) ctx.fillRect(x(a), 64, Math.max(1, x(b + 1) - x(a)), 6);
  for (const m of t.misses) {
    // A frame only the second detector flags gets its own colour; any other hint wins (orange).
    ctx.fillStyle = m.kinds.length === 1 && m.kinds[0] === "second_detector" ? SECOND_COLOR : "#f39c12";
    const mx = x(m.frame);
    ctx.beginPath(); ctx.moveTo(mx, 72); ctx.lineTo(mx - 4, 82); ctx.lineTo(mx + 4, 82); ctx.fill();
  }
  ctx.fillStyle = "#fff";
  ctx.fillRect(x(S.frame), 0, 1.5, height);
  const ms = performance.now() - started;
  canvas.dataset.renderMs = ms.toFixed(1);
  $("timeline-ms").textContent = `(${n} frames drawn in ${ms.toFixed(1)} ms)`;
}

function timelineFrame(event) {
  const rect = $("timeline").getBoundingClientRect();
  return ((event.clientX - rect.left) / rect.width) * S.video.frames;
}
$("timeline").addEventListener("mousedown", (e) => {
  seek(timelineFrame(e));
  const move = (m) => seek(timelineFrame(m));
  const up = () => { window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up); };
  window.addEventListener("mousemove", move);
  window.addEventListener("mouseup", up);
});

function renderMisses() {
  const list = $("misses");
  list.replaceChildren();
  $("miss-count").textContent = S.timeline.misses.length;
  for (const m of S.timeline.misses.slice(0, 500)) {
    const item = document.createElement("li");
    const jump = button(`frame ${m.frame}`, () => seek(m.frame));
    if (m.kinds.includes("second_detector")) item.classList.add("second-detector");
    item.append(jump, ` ${m.why}`);
    list.append(item);
  }
}

function jumpMiss(direction) {
  const frames = S.timeline.misses.map((m) => m.frame);
  const target = direction > 0 ? frames.find((f) => f > S.frame) : [...frames].reverse().find((f) => f < S.frame);
  if (target !== undefined) seek(target);
}

// ---------------------------------------------------------------- side panel

function button(text, onclick, cls) {
  const b = document.createElement("button");
  b.textContent = text;
  b.addEventListener("click", onclick);
  if (cls) b.className = cls;
  return b;
}

async function edit(method, path, body) {
  S.state = await api(method, path, body);
  renderState();
  S.timeline = await api("GET", "/api/timeline");
  drawTimeline();
  renderMisses();
  requestFrame(S.frame);
}

function renderState() {
  renderPersons();
  renderRegions();
  renderBlackouts();
  $("plan-status").textContent = `${S.video.plan}: ${S.state.saved ? "saved" : "unsaved changes"}`;
  $("plan-status").className = S.state.saved ? "saved" : "unsaved";
  if (S.state.problems.length) showError(S.state.problems.join("; "));
}

function renderPersons() {
  const root = $("persons");
  root.replaceChildren();
  S.mergeSelection = S.mergeSelection.filter((id) => S.state.persons.some((p) => p.person_id === id));
  for (const p of S.state.persons) {
    const card = document.createElement("div");
    card.className = `person ${p.decision}`;
    card.dataset.person = p.person_id;
    const head = document.createElement("div");
    head.className = "person-head";
    const pick = document.createElement("input");
    pick.type = "checkbox";
    pick.className = "merge-pick";
    pick.title = "select for merging";
    pick.checked = S.mergeSelection.includes(p.person_id);
    pick.addEventListener("change", () => {
      S.mergeSelection = pick.checked ? [...S.mergeSelection, p.person_id] : S.mergeSelection.filter((id) => id !== p.person_id);
      $("merge").disabled = S.mergeSelection.length !== 2;
    });
    const title = document.createElement("strong");
    title.textContent = `Person ${p.person_id}${p.gallery_id ? ` (${p.gallery_id})` : ""}`;
    const info = document.createElement("span");
    info.textContent = ` ${p.tracks.length} track${p.tracks.length > 1 ? "s" : ""}, ${p.frames} frames`;
    const status = document.createElement("span");
    status.className = "status";
    status.textContent = p.decision === "spare" ? "spared" : "anonymized";
    const toggle = button(p.decision === "spare" ? "Anonymize" : "Spare", () =>
      edit("POST", `/api/person/${p.person_id}/decision`, { decision: p.decision === "spare" ? "anonymize" : "spare" }), "decision");
    head.append(pick, title, info, status, toggle);
    const thumbs = document.createElement("div");
    thumbs.className = "thumbs";
    for (const t of p.tracks.slice(0, 2)) {
      for (let k = 0; k < 3; k++) {
        const img = document.createElement("img");
        img.loading = "lazy";
        img.alt = `track ${t.track_id}`;
        img.src = url(`/thumb/${t.track_id}/${k}.jpg`, { v: `${t.first}-${t.last}` });
        img.addEventListener("click", () => seek(t.first));
        thumbs.append(img);
      }
    }
    const tracks = document.createElement("ul");
    tracks.className = "tracks";
    for (const t of p.tracks) {
      const li = document.createElement("li");
      li.dataset.track = t.track_id;
      li.append(`T${t.track_id}: frames ${t.first}-${t.last} `, button("jump", () => seek(t.first)),
        button("split here", () => edit("POST", "/api/split", { track_id: t.track_id, frame: S.frame }), "split"));
      tracks.append(li);
    }
    card.append(head, thumbs, tracks);
    root.append(card);
  }
  $("merge").disabled = S.mergeSelection.length !== 2;
}

function renderRegions() {
  const root = $("regions");
  root.replaceChildren();
  for (const r of S.state.regions) {
    const row = document.createElement("div");
    row.className = `region${r.region_id === S.selectedRegion ? " selected" : ""}`;
    row.dataset.region = r.region_id;
    const pick = document.createElement("input");
    pick.type = "radio"; pick.name = "region"; pick.checked = r.region_id === S.selectedRegion;
    pick.title = "select: the next box drawn becomes a keyframe of this region";
    pick.addEventListener("change", () => { S.selectedRegion = r.region_id; renderRegions(); });
    const mode = document.createElement("select");
    mode.className = "region-mode";
    for (const m of ["interpolate", "hold"]) mode.append(new Option(m, m, false, m === r.mode));
    mode.addEventListener("change", () => edit("POST", `/api/regions/${r.region_id}`, { mode: mode.value }));
    const end = document.createElement("input");
    end.type = "number"; end.min = 0; end.className = "region-end"; end.placeholder = "last keyframe";
    end.value = r.end_frame === null ? "" : r.end_frame;
    end.title = "the last box holds until this frame";
    end.addEventListener("change", () => edit("POST", `/api/regions/${r.region_id}`, { end_frame: end.value === "" ? null : Number(end.value) }));
    const keys = document.createElement("span");
    for (const k of r.keyframes) keys.append(button(`${k.frame}`, () => seek(k.frame), "keyframe"));
    row.append(pick, ` R${r.region_id} frames ${r.first}-${r.last} `, mode, " until ", end,
      button("now", () => edit("POST", `/api/regions/${r.region_id}`, { end_frame: S.frame }), "region-end-now"),
      document.createElement("br"), " keyframes: ", keys,
      button("drop keyframe here", () => edit("DELETE", `/api/regions/${r.region_id}?frame=${S.frame}`)),
      button("delete", () => { if (S.selectedRegion === r.region_id) S.selectedRegion = null; edit("DELETE", `/api/regions/${r.region_id}`); }, "region-delete"));
    root.append(row);
  }
  if (!S.state.regions.length) root.textContent = "none";
}

function renderBlackouts() {
  const root = $("blackouts");
  root.replaceChildren();
  for (const b of S.state.blackouts) {
    const li = document.createElement("li");
    li.append(`frames ${b.start_frame}-${b.end_frame} `, button("jump", () => seek(b.start_frame)),
      button("remove", () => edit("DELETE", `/api/blackouts/${b.start_frame}/${b.end_frame}`)));
    root.append(li);
  }
}

// ---------------------------------------------------------------- save, render, downloads

async function save() {
  await api("POST", "/api/save");
  S.state.saved = true;
  renderState();
}

async function render() {
  $("download-video").hidden = true;
  $("download-reports").replaceChildren();
  await api("POST", "/api/render");
  pollRender();
}

async function pollRender() {
  const p = await api("GET", "/api/render");
  const bar = $("progress");
  bar.hidden = p.state === "idle";
  bar.max = p.total || 1;
  bar.value = p.done;
  $("render").disabled = p.state === "running";
  const status = $("render-status");
  status.dataset.state = p.state;
  if (p.state === "running") {
    status.textContent = `rendering ${p.done}/${p.total}`;
    setTimeout(pollRender, 400);
  } else if (p.state === "done") {
    status.textContent = `rendered ${p.done} frames in ${p.seconds} s${p.obscured ? `, ${p.obscured} obscured` : ""}`;
    const link = $("download-video");
    link.href = url("/download/video");
    link.textContent = `Download ${S.video.output}`;
    link.hidden = false;
    const reports = $("download-reports");
    reports.replaceChildren();
    S.video.reports.forEach((name, k) => {
      const a = document.createElement("a");
      a.href = url(`/download/report/${k}`);
      a.textContent = name;
      a.className = "download-report";
      reports.append(a);
    });
  } else if (p.state === "failed") {
    status.textContent = `render failed: ${p.error}`;
  }
}

// ---------------------------------------------------------------- wiring

function onKey(e) {
  if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  const key = e.key.toLowerCase();
  const fps = Math.round(S.video.fps);
  if (e.key === " " ) { setPlaying(!S.playing); }
  else if (e.key === "ArrowRight") { setPlaying(false); seek(S.frame + (e.shiftKey ? 10 : 1)); }
  else if (e.key === "ArrowLeft") { setPlaying(false); seek(S.frame - (e.shiftKey ? 10 : 1)); }
  else if (key === "j") { setPlaying(false); seek(S.frame - fps); }
  else if (key === "k") { setPlaying(false); }
  else if (key === "l") { setPlaying(true, S.playing ? Math.min(8, S.speed * 2) : 1); }
  else if (key === "n") { jumpMiss(1); }
  else if (key === "p") { jumpMiss(-1); }
  else if (key === "b") { setDrawing(!S.drawing); }
  else if (key === "v") { setView(S.view === "original" ? "preview" : "original"); }
  else if (e.key === "Home") { seek(0); }
  else if (e.key === "End") { seek(S.video.frames - 1); }
  else return;
  e.preventDefault();
}

function setView(view) {
  S.view = view;
  for (const radio of document.querySelectorAll("input[name=view]")) radio.checked = radio.value === view;
  requestFrame(S.frame);
}

async function main() {
  S.video = await api("GET", "/api/video");
  document.title = `review: ${S.video.name}`;
  $("title").textContent = `${S.video.name} (${S.video.width}x${S.video.height}, ${S.video.frames} frames, ${S.video.mode}${S.video.preview_mode !== S.video.mode ? `, previewed as ${S.video.preview_mode}` : ""})`;
  $("frame-number").max = S.video.frames - 1;
  S.state = await api("GET", "/api/state");
  S.timeline = await api("GET", "/api/timeline");
  renderState();
  renderMisses();
  fitStage();
  seek(0);
  document.addEventListener("keydown", onKey);
  $("prev").addEventListener("click", () => seek(S.frame - 1));
  $("next").addEventListener("click", () => seek(S.frame + 1));
  $("play").addEventListener("click", () => setPlaying(!S.playing));
  $("frame-number").addEventListener("change", (e) => seek(Number(e.target.value)));
  for (const radio of document.querySelectorAll("input[name=view]")) radio.addEventListener("change", () => setView(radio.value));
  $("draw").addEventListener("click", () => setDrawing(!S.drawing));
  $("new-region").addEventListener("click", () => { S.selectedRegion = null; renderRegions(); setDrawing(true); });
  $("save").addEventListener("click", save);
  $("render").addEventListener("click", render);
  $("merge").addEventListener("click", () => {
    const [keep, other] = S.mergeSelection;
    S.mergeSelection = [];
    edit("POST", "/api/merge", { keep, other });
  });
  $("blackout-add").addEventListener("click", () =>
    edit("POST", "/api/blackouts", { start_frame: Number($("blackout-start").value), end_frame: Number($("blackout-end").value) }));
  window.addEventListener("resize", () => { fitStage(); drawTimeline(); drawOverlay(); });
  pollRender();
  document.body.dataset.ready = "1";
}

main();
