// The monitor page: one websocket of snapshots, frames fetched one at a time per view (a slow page skips frames).
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const withToken = (path, params) => {
  const q = new URLSearchParams(params || {});
  if (token) q.set("token", token);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
};
const $ = (id) => document.getElementById(id);
const TIMELINE_S = 60;
const views = new Map(); // topic -> {img, caption, loading, key, shownAt}
const last = {}; // part -> the JSON it was last drawn from
const slow = { states: "", at: 0 };

// true when ``value`` (without the keys in ``skip``) differs from what ``part`` was last drawn from
function changed(part, value, skip) {
  const key = JSON.stringify(value, (k, v) => (skip && skip.includes(k) ? undefined : v));
  if (last[part] === key) return false;
  last[part] = key;
  return true;
}

function text(el, value) { if (el.textContent !== value) el.textContent = value; }
function fmt(v, digits, unit) { return v === null || v === undefined ? "-" : `${Number(v).toFixed(digits)}${unit || ""}`; }
function bytes(n) {
  if (n === null || n === undefined || n < 0) return "-";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
function sensorOf(topic) { return topic.split("/").filter(Boolean)[0] || topic; }

function view(topic, kind) {
  let v = views.get(topic);
  if (!v) {
    const fig = document.createElement("figure");
    fig.dataset.topic = topic;
    fig.dataset.kind = kind;
    const img = document.createElement("img");
    img.alt = `${kind === "events" ? "event frame" : "image"} of ${topic}`;
    const caption = document.createElement("figcaption");
    fig.append(img, caption);
    const empty = $("frames").querySelector(".empty");
    if (empty) empty.remove();
    $("frames").append(fig);
    v = { fig, img, caption, loading: false, key: "", shownAt: 0 };
    img.addEventListener("load", () => {
      v.loading = false;
      // event frames are scaled by a whole number (at most 2: the DAVIS346's), pixel for pixel, to fit the column
      if (kind === "events" && img.naturalWidth && !img.dataset.sized) {
        const k = Math.max(1, Math.min(2, Math.floor($("frames").clientWidth / img.naturalWidth)));
        img.width = img.naturalWidth * k; img.height = img.naturalHeight * k; img.dataset.sized = "1";
      }
      fig.dataset.shown = v.key;
    });
    img.addEventListener("error", () => { v.loading = false; });
    views.set(topic, v);
  }
  return v;
}

function updateFrames(frames, sensors) {
  const now = performance.now();
  for (const [topic, f] of Object.entries(frames)) {
    const v = view(topic, f.kind);
    const sensor = sensors[sensorOf(topic)] || {};
    const stream = (sensor.streams || {})[f.kind] || {};
    const key = `${f.seq}:${sensor.state}`;
    text(v.caption, `${topic} · ${sensor.state || "?"}` +
      (f.kind === "events" ? ` · ${fmt(stream.events_per_s / 1e3, 0)} kev/s` : ` · ${fmt(stream.rate_hz, 1)} Hz`));
    v.fig.dataset.state = sensor.state || "";
    // a new frame when the data changed, and at least once a second (event frames go dark when a stream stops)
    if (!v.loading && (key !== v.key || now - v.shownAt > 1000)) {
      v.loading = true; v.key = key; v.shownAt = now;
      v.img.src = withToken("frame", { topic, n: f.seq, t: Math.round(now) });
    }
  }
}

function updateModel(p) {
  const banner = $("au-state");
  const bars = $("au-bars");
  if (!p) { banner.className = "banner waiting"; text(banner, "no prediction yet"); return; }
  const labels = { movement: "movement", rest: "no movement", no_face: "NO FACE", stale: "no predictions (stale)" };
  banner.className = `banner ${p.state}`;
  banner.dataset.state = p.state;
  text(banner, labels[p.state] || p.state);
  bars.replaceChildren(...p.top.map(([au, prob]) => {
    const row = document.createElement("div");
    row.className = "bar"; row.dataset.au = au; row.dataset.p = prob;
    const name = document.createElement("span"); name.textContent = au;
    const track = document.createElement("span"); track.className = "track";
    const fill = document.createElement("span"); fill.className = "fill"; fill.style.display = "block";
    fill.style.width = `${Math.max(0, Math.min(1, prob)) * 100}%`;
    track.append(fill);
    const val = document.createElement("span"); val.textContent = prob.toFixed(2);
    row.append(name, track, val);
    return row;
  }));
  text($("au-meta"), `${p.sensor} · face ${p.face_found ? "found" : "not found"} · latency ${fmt(p.latency_ms, 1, " ms")}` +
    ` · ${p.events} events · ${p.model_id}`);
}

function updateEvents(events) {
  const svg = $("timeline");
  const ns = "http://www.w3.org/2000/svg";
  const shapes = [];
  for (const e of events) {
    if (e.age_s > TIMELINE_S) continue;
    const dur = Math.max(0.2, (e.offset_us - e.onset_us) / 1e6);
    const x = 600 * (1 - (e.age_s + dur) / TIMELINE_S);
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", x.toFixed(1)); r.setAttribute("y", "8");
    r.setAttribute("width", (600 * dur / TIMELINE_S).toFixed(1)); r.setAttribute("height", "26");
    r.setAttribute("fill", "#3c8dde");
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x.toFixed(1)); t.setAttribute("y", "52");
    t.setAttribute("fill", "#e6e6e6"); t.setAttribute("font-size", "12");
    t.textContent = e.au;
    shapes.push(r, t);
  }
  svg.replaceChildren(...shapes);
  const list = $("au-events");
  list.replaceChildren(...events.slice(-10).reverse().map((e) => {
    const li = document.createElement("li");
    li.dataset.au = e.au;
    li.textContent = `${e.au} ${fmt(e.confidence, 2)} · ${e.sensor} · ${fmt(e.age_s, 1, " s")} ago`;
    return li;
  }));
}

function updateSensors(sensors) {
  const body = $("sensors").querySelector("tbody");
  const rows = Object.entries(sensors).sort().map(([name, s]) => {
    const tr = document.createElement("tr");
    tr.id = `sensor-${name}`;
    tr.dataset.state = s.state;
    const streams = Object.values(s.streams);
    const rate = streams.length ? `${streams.map((x) => fmt(x.rate_hz, 0)).join(" / ")} Hz` : "-";
    const ev = s.streams.events ? fmt(s.streams.events.events_per_s, 0) : "-";
    const sync = s.sync || {};
    const cells = [name, s.state, rate, ev, fmt(sync.offset_change_ms, 2, " ms"), fmt(sync.drift_ppm, 1, " ppm"),
      sync.locked === undefined ? "-" : (sync.locked ? "locked" : "unlocked"), s.lost === null ? "-" : String(s.lost)];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      td.textContent = c;
      if (i === 1) td.className = `state ${s.state}`;
      if (i === 6 && sync.locked !== undefined) td.className = sync.locked ? "ok" : "bad";
      if (i === 7 && s.lost) td.className = "bad";
      tr.append(td);
    });
    return tr;
  });
  body.replaceChildren(...rows);
}

function updateProtocol(p) {
  text($("subject"), p.subject || "-");
  text($("au"), p.au || "-");
  text($("trial"), p.trial === undefined ? "-" : String(p.trial));
  text($("phase"), (p.phase || "-") + (p.movement ? ` (face: ${p.movement})` : ""));
  text($("segment"), p.segment ? String(p.segment) : "-");
  text($("segments"), String(p.segments || 0));
}

function updateRecorder(r) {
  const dl = $("recorder");
  if (!r) return;
  const items = [
    ["state", r.age_s > 3 ? "silent" : (r.segment ? `recording ${r.segment.name}` : "between segments")],
    ["disk rate", `${bytes(r.disk_rate)}/s`], ["written", bytes(r.bytes)], ["queued", bytes(r.queued_bytes)],
    ["free", bytes(r.free_bytes)], ["segments", String(r.segments)],
  ];
  dl.replaceChildren(...items.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v; dd.dataset.key = k;
    return [dt, dd];
  }));
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/${withToken("ws")}`);
  ws.onopen = () => { $("link").className = "state streaming"; text($("link"), "live"); };
  ws.onclose = () => {
    $("link").className = "state stopped"; text($("link"), "disconnected: retrying");
    setTimeout(connect, 1000);
  };
  ws.onmessage = (msg) => {
    const s = JSON.parse(msg.data);
    updateFrames(s.frames, s.sensors);
    if (changed("model", s.prediction)) updateModel(s.prediction);
    if (changed("protocol", s.protocol, ["age_s"])) updateProtocol(s.protocol);
    // the tables at most once a second (their rates change with every snapshot), at once when a state changes
    const states = Object.entries(s.sensors).map(([n, x]) => `${n}:${x.state}`).join(",");
    const now = performance.now();
    if (states !== slow.states || now - slow.at > 1000) {
      slow.states = states; slow.at = now;
      updateSensors(s.sensors);
      updateRecorder(s.recorder);
      updateEvents(s.au_events);
    }
    document.body.dataset.updated = String(Date.now());
  };
}
connect();
