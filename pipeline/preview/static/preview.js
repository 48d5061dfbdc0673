// Polls /api/cameras twice a second (or at the daemon's preview.fps), naming the cameras whose
// tiles are on screen: the daemon encodes frames only for those. No framework, no CDN.
"use strict";
const page = document.body.dataset.page;
const single = page === "camera" ? decodeURIComponent(location.pathname.split("/")[2] || "") : null;
const grid = document.getElementById("grid");
const tiles = new Map();      // camera id -> {figure, img, caption parts}
const onScreen = new Set();   // camera ids whose tile is visible
const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (e.isIntersecting) onScreen.add(e.target.dataset.camera); else onScreen.delete(e.target.dataset.camera);
  }
}) : null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function tileFor(cam) {
  let t = tiles.get(cam.id);
  if (t) return t;
  const figure = el("figure", "tile");
  figure.dataset.camera = cam.id;
  const img = el("img");
  img.alt = cam.id;
  img.dataset.frame = "";
  const link = el("a");
  link.href = "/camera/" + encodeURIComponent(cam.id);
  link.appendChild(img);
  const caption = el("figcaption");
  const name = el("span", "name", cam.id), state = el("span", "state"), stats = el("span", "muted");
  const counts = el("span", "analytics");  // live tracks and zone/line counts, when tracking is on
  caption.append(name, state, stats, counts);
  figure.append(page === "grid" ? link : img, caption);
  grid.appendChild(figure);
  t = {figure, img, state, stats, counts, loading: null};
  tiles.set(cam.id, t);
  if (observer && !single) observer.observe(figure); else onScreen.add(cam.id);
  return t;
}

function show(cam) {
  const t = tileFor(cam);
  t.state.textContent = cam.state;
  t.state.className = "state " + cam.state;
  t.state.title = cam.reason || "";
  const lat = cam.latency_ms === null ? "-" : cam.latency_ms.toFixed(0) + " ms";
  t.stats.textContent = `${cam.fps.toFixed(1)} fps · ${lat} · ${cam.dropped} dropped`;
  t.counts.textContent = analyticsText(cam.analytics);
  if (single) showCounts(cam.analytics);
  const f = cam.frame;
  if (f && t.img.dataset.frame !== String(f.index) && t.loading !== f.url) {
    // load off screen, then swap: data-frame always names the frame the <img> shows
    t.loading = f.url;
    const next = new Image();
    next.onload = () => {
      t.img.src = next.src;
      t.img.dataset.frame = String(f.index);
      t.img.dataset.seq = String(f.seq);
      t.img.dataset.detections = JSON.stringify(f.detections);
      t.loading = null;
      if (single) showDetections(f.detections);
    };
    next.onerror = () => { t.loading = null; };
    next.src = f.url;
  }
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// "3 tracks · shed: person enter 8, person exit 7 · path: car forward 3"; "" when tracking is off
function analyticsText(a) {
  if (!a) return "";
  const rules = new Map();
  for (const c of a.counts) {
    if (!rules.has(c.rule)) rules.set(c.rule, []);
    rules.get(c.rule).push(`${c.label} ${c.what} ${c.count}`);
  }
  const parts = [plural(a.tracks, "track")];
  for (const [rule, list] of rules) parts.push(`${rule}: ${list.join(", ")}`);
  return parts.join(" · ");
}

function showCounts(a) {
  const section = document.getElementById("counts");
  section.hidden = !a;
  if (!a) return;
  document.getElementById("tracks").textContent = plural(a.tracks, "live track");
  document.querySelector("#counts tbody").replaceChildren(...a.counts.map((c) => {
    const tr = el("tr");
    tr.append(el("td", "", c.rule), el("td", "", c.label), el("td", "", c.what), el("td", "", String(c.count)));
    return tr;
  }));
}

function showDetections(dets) {
  const body = document.querySelector("#detections tbody");
  body.replaceChildren(...dets.map((d) => {
    const tr = el("tr");
    tr.append(el("td", "", d.label), el("td", "", d.score.toFixed(2)),
              el("td", "", d.track_id === undefined ? "" : String(d.track_id)),
              el("td", "", d.box.map((v) => v.toFixed(0)).join(", ")));
    return tr;
  }));
}

async function showSnapshots() {
  const r = await fetch("/api/snapshots", {cache: "no-store"});
  if (!r.ok) return;
  const list = (await r.json()).snapshots.filter((s) => !single || s.camera === single);
  const box = document.getElementById("event-list");
  document.getElementById("events").hidden = list.length === 0;
  box.replaceChildren(...list.map((s) => {
    const fig = el("figure"), a = el("a"), img = el("img");
    a.href = s.url; img.src = s.url; img.loading = "lazy"; img.alt = s.name;
    a.appendChild(img);
    fig.append(a, el("figcaption", "", `${s.camera} · ${s.reason} · ${new Date(s.at * 1000).toLocaleTimeString()}`));
    return fig;
  }));
}

let period = 500, polls = 0, lastCpu = null;
async function poll() {
  try {
    const watch = single ? [single] : [...onScreen];
    const query = single ? "full=" + encodeURIComponent(single) : "watch=" + encodeURIComponent(watch.join(","));
    const r = await fetch("/api/cameras?" + query, {cache: "no-store"});
    if (r.ok) {
      const doc = await r.json();
      period = Math.max(100, 1000 / doc.fps);
      const cams = doc.cameras.filter((c) => !single || c.id === single);
      for (const cam of cams) show(cam);
      const seen = new Set(cams.map((c) => c.id));
      for (const [id, t] of tiles) if (!seen.has(id)) { t.figure.remove(); tiles.delete(id); }
      const up = cams.filter((c) => c.state === "up").length;
      // the preview's own cost, from its threads' CPU time (pipeline_preview_cpu_seconds_total)
      const now = performance.now() / 1000;
      let cost = "";
      if (lastCpu) cost = ` · preview ${(1000 * (doc.preview_cpu_s - lastCpu.s) / (now - lastCpu.t)).toFixed(0)} ms CPU/s`;
      if (!lastCpu || now - lastCpu.t > 5) lastCpu = {s: doc.preview_cpu_s, t: now};
      document.getElementById("summary").textContent = `${up}/${cams.length} up${cost}`;
      if (single) document.getElementById("title").textContent = single;
      if (doc.snapshots && polls % 10 === 0) showSnapshots();
    }
  } catch (e) { /* daemon restarting: try again */ }
  polls += 1;
  setTimeout(poll, period);
}
poll();
