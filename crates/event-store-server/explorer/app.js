// The Event Store explorer: a page of plain JavaScript over the HTTP API, served by the same
// binary. Data is only ever put in the page as text (never as HTML).
"use strict";

const main = document.getElementById("main");
// The API's root: the explorer lives at {root}explorer/.
const ROOT = location.pathname.replace(/explorer\/[^/]*$/, "");
const PAGE = 50;
const TOKEN_KEY = "event-store-token";
let token = sessionStorage.getItem(TOKEN_KEY) || "";
// What the current page runs in the background (the live tail, the stats refresh): stopped on
// navigation.
let cleanup = [];

// ---- helpers -------------------------------------------------------------------------------

/** An element: `h("a", {href: "#/x", class: "c"}, "text", child…)`. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.reason ? `${body.field}: ${body.reason}` : body.message)) || `HTTP ${status}`);
    this.status = status;
  }
}

function headers(extra) {
  const all = Object.assign({ Accept: "application/json" }, extra || {});
  if (token) all.Authorization = `Bearer ${token}`;
  return all;
}

/** GET `path?query` from the API: `{body, next}`. */
async function api(path, query) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") params.set(k, v);
  }
  const qs = params.toString();
  const response = await fetch(ROOT + path.replace(/^\//, "") + (qs ? `?${qs}` : ""), {
    headers: headers(),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

const enc = encodeURIComponent;

function hashFor(page, arg, query) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") params.set(k, v);
  }
  const qs = params.toString();
  return `#/${page}${arg !== undefined ? `/${enc(arg)}` : ""}${qs ? `?${qs}` : ""}`;
}

function go(page, arg, query) {
  location.hash = hashFor(page, arg, query);
}

function when(time) {
  const t = new Date(time);
  return Number.isNaN(t.getTime()) ? String(time) : t.toLocaleString();
}

function typeOf(e) {
  return `${e.namespace}.${e.type}`;
}

function showError(err, where) {
  const box = h("div", { class: "error", role: "alert", "data-testid": "error" });
  if (err.status === 401) {
    box.append("This server needs a token. ", h("button", { type: "button", onclick: askToken }, "Enter a token"));
  } else if (err.status === 403) {
    box.append("Your token lacks the scope for this page.");
  } else {
    box.append(err.message || String(err));
  }
  (where || main).append(box);
}

async function copy(text, button) {
  let done = false;
  try {
    await navigator.clipboard.writeText(text);
    done = true;
  } catch (_) {
    // Outside a secure context there is no clipboard API: copy from a selected text area.
    const area = h("textarea", { class: "offscreen", readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    done = document.execCommand("copy");
    area.remove();
  }
  const label = button.textContent;
  button.textContent = done ? "Copied" : "Copy failed";
  setTimeout(() => { button.textContent = label; }, 1200);
}

function copyButton(label, text, testid) {
  const button = h("button", { type: "button", class: "copy", "data-testid": testid }, label);
  button.addEventListener("click", () => copy(text, button));
  return button;
}

/** A table of events; each row opens its event. */
function eventTable(events, { showStream = true } = {}) {
  if (!events.length) return h("p", { class: "empty", "data-testid": "no-events" }, "No events.");
  return h("table", { class: "events", "data-testid": "events" },
    h("thead", {}, h("tr", {},
      showStream && h("th", {}, "Stream"), h("th", { class: "num" }, "Version"),
      h("th", { class: "num" }, "Position"), h("th", {}, "Type"), h("th", {}, "Time"),
      h("th", {}, "Id"))),
    h("tbody", {}, events.map((e) => row(hashFor("event", e.id), [
      showStream && h("a", { href: hashFor("stream", e.stream) }, e.stream),
      h("span", { class: "num" }, e.version), h("span", { class: "num" }, e.position),
      typeOf(e), h("time", { datetime: e.context.time, title: e.context.time }, when(e.context.time)),
      h("a", { href: hashFor("event", e.id), class: "mono" }, e.id),
    ]))));
}

/** A row that `Enter` (or a click outside its links) opens. */
function row(target, cells) {
  const tr = h("tr", { tabindex: 0, "data-href": target },
    cells.filter((c) => c !== false).map((c) => h("td", {}, c)));
  tr.addEventListener("click", (ev) => {
    if (!ev.target.closest("a")) location.hash = target;
  });
  return tr;
}

function pager(next, onNext, first) {
  return h("div", { class: "pager" },
    first && h("button", { type: "button", onclick: first }, "First page"),
    next !== null && next !== undefined
      ? h("button", { type: "button", onclick: onNext, "data-testid": "next-page" }, "Next page")
      : h("span", { class: "muted" }, "End"));
}

function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

// ---- pages ---------------------------------------------------------------------------------

async function streamsPage(_, query) {
  const input = h("input", {
    type: "search", name: "prefix", value: query.get("prefix") || "", placeholder: "order-",
    "data-testid": "stream-search", autocomplete: "off",
  });
  const form = h("form", { class: "bar", role: "search" }, field("Streams starting with", input),
    h("button", { type: "submit" }, "Find"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go("streams", undefined, { prefix: input.value });
  });
  main.append(h("h1", {}, "Streams"), form);
  const page = await api("/streams", { prefix: query.get("prefix"), after: query.get("after"), limit: PAGE });
  if (!page.streams.length) {
    main.append(h("p", { class: "empty" }, "No stream."));
    return;
  }
  main.append(h("table", { "data-testid": "streams" },
    h("thead", {}, h("tr", {}, h("th", {}, "Stream"), h("th", { class: "num" }, "Events"),
      h("th", { class: "num" }, "Last position"), h("th", {}, "Last event"))),
    h("tbody", {}, page.streams.map((s) => row(hashFor("stream", s.stream), [
      h("a", { href: hashFor("stream", s.stream) }, s.stream),
      h("span", { class: "num" }, s.events), h("span", { class: "num" }, s.last_position),
      h("time", { datetime: s.last_time, title: s.last_time }, when(s.last_time)),
    ])))),
  pager(page.next,
    () => go("streams", undefined, { prefix: query.get("prefix"), after: page.next }),
    query.get("after") ? () => go("streams", undefined, { prefix: query.get("prefix") }) : null));
}

async function streamPage(stream, query) {
  const backward = query.get("backward") === "true";
  main.append(h("h1", {}, h("span", { class: "muted" }, "Stream "), h("span", { "data-testid": "stream-id" }, stream)),
    h("div", { class: "bar" },
      copyButton("Copy stream id", stream, "copy-stream"),
      h("a", { href: hashFor("stream", stream, backward ? {} : { backward: "true" }) },
        backward ? "Oldest first" : "Newest first"),
      h("a", { href: hashFor("live", undefined, { stream_prefix: stream }) }, "Live tail of this prefix")));
  const page = await api(`/streams/${enc(stream)}`, {
    from: query.get("from"), limit: PAGE, backward: backward ? "true" : null,
  });
  main.append(eventTable(page.events, { showStream: false }),
    pager(page.next, () => go("stream", stream, { from: page.next, backward: backward ? "true" : null }),
      query.get("from") ? () => go("stream", stream, backward ? { backward: "true" } : {}) : null));
}

async function eventPage(id) {
  const e = await api(`/events/${enc(id)}`);
  const json = JSON.stringify(e, null, 2);
  main.append(h("h1", {}, h("span", { class: "muted" }, "Event "), typeOf(e)),
    h("dl", { class: "facts" },
      h("dt", {}, "Id"), h("dd", { class: "mono", "data-testid": "event-id" }, e.id),
      h("dt", {}, "Stream"), h("dd", {}, h("a", { href: hashFor("stream", e.stream) }, e.stream), ` version ${e.version}`),
      h("dt", {}, "Position"), h("dd", { class: "mono" }, e.position),
      h("dt", {}, "Time"), h("dd", {}, h("time", { datetime: e.context.time }, when(e.context.time)), " ",
        h("span", { class: "muted mono" }, e.context.time)),
      h("dt", {}, "Type"), h("dd", {}, h("a", { href: hashFor("search", undefined, { type: typeOf(e) }) }, typeOf(e)))),
    h("div", { class: "bar" }, copyButton("Copy id", e.id, "copy-id"), copyButton("Copy JSON", json, "copy-json")),
    h("pre", { class: "json", "data-testid": "event-json" }, json));
}

/** `datetime-local` text (local time) as RFC 3339 UTC, or "". */
function toRfc3339(local) {
  if (!local) return "";
  const t = new Date(local);
  return Number.isNaN(t.getTime()) ? "" : t.toISOString();
}

/** RFC 3339 as `datetime-local` text, or "". */
function toLocalInput(rfc) {
  if (!rfc) return "";
  const t = new Date(rfc);
  if (Number.isNaN(t.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}T${pad(t.getHours())}:${pad(t.getMinutes())}`;
}

async function searchPage(_, query) {
  const inputs = {
    type: h("input", { name: "type", value: query.get("type") || "", placeholder: "shop.OrderPlaced", "data-testid": "search-type", autocomplete: "off" }),
    stream_prefix: h("input", { name: "stream_prefix", value: query.get("stream_prefix") || "", placeholder: "order-", autocomplete: "off" }),
    subject: h("input", { name: "subject", value: query.get("subject") || "", placeholder: "user_id=42", "data-testid": "search-subject", autocomplete: "off" }),
    since: h("input", { name: "since", type: "datetime-local", value: toLocalInput(query.get("since")) }),
    until: h("input", { name: "until", type: "datetime-local", value: toLocalInput(query.get("until")) }),
  };
  const form = h("form", { class: "bar wrap", role: "search" },
    field("Type (namespace.Type)", inputs.type), field("Stream prefix", inputs.stream_prefix),
    field("Subject (field=value)", inputs.subject), field("From", inputs.since), field("Until", inputs.until),
    h("button", { type: "submit", "data-testid": "search-submit" }, "Search"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go("search", undefined, {
      type: inputs.type.value.trim(), stream_prefix: inputs.stream_prefix.value.trim(),
      subject: inputs.subject.value.trim(), since: toRfc3339(inputs.since.value), until: toRfc3339(inputs.until.value),
    });
  });
  main.append(h("h1", {}, "Search"), form);
  const filter = {};
  for (const key of ["type", "stream_prefix", "subject", "since", "until"]) filter[key] = query.get(key);
  if (!Object.values(filter).some((v) => v)) {
    main.append(h("p", { class: "muted" }, "Find events by type, stream, subject and time."));
    return;
  }
  // A namespace alone (`shop`) searches the namespace.
  if (filter.type && !filter.type.includes(".")) {
    filter.namespace = filter.type;
    delete filter.type;
  }
  const page = await api("/search", Object.assign({ after: query.get("after"), limit: PAGE }, filter));
  main.append(eventTable(page.events),
    pager(page.next, () => {
      const next = Object.fromEntries(query.entries());
      next.after = page.next;
      go("search", undefined, next);
    }));
}

/** Reads Server-Sent Events from `response`'s body, calling `onEvent({id, event, data})`. */
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let current = { data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (line === "") {
        if (current.data.length) onEvent({ id: current.id, event: current.event || "message", data: current.data.join("\n") });
        current = { data: [] };
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const key = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (key === "data") current.data.push(val);
        else if (key === "id") current.id = val;
        else if (key === "event") current.event = val;
      }
    }
  }
}

const LIVE_ROWS = 500;

async function livePage(_, query) {
  const type = h("input", { name: "type", value: query.get("type") || "", placeholder: "shop.OrderPlaced", "data-testid": "live-type", autocomplete: "off" });
  const prefix = h("input", { name: "stream_prefix", value: query.get("stream_prefix") || "", placeholder: "order-", autocomplete: "off" });
  const form = h("form", { class: "bar" }, field("Type (namespace.Type)", type), field("Stream prefix", prefix),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go("live", undefined, { type: type.value.trim(), stream_prefix: prefix.value.trim() });
  });
  const status = h("p", { class: "status", "data-testid": "live-status" }, "connecting…");
  const pause = h("button", { type: "button" }, "Pause");
  const body = h("tbody", { "data-testid": "live-events" });
  const table = h("table", { class: "events" },
    h("thead", {}, h("tr", {}, h("th", {}, "Stream"), h("th", { class: "num" }, "Version"),
      h("th", { class: "num" }, "Position"), h("th", {}, "Type"), h("th", {}, "Time"))), body);
  main.append(h("h1", {}, "Live tail"), form, h("div", { class: "bar" }, status, pause), table);

  const filter = {};
  const t = query.get("type");
  if (t) filter[t.includes(".") ? "type" : "namespace"] = t;
  if (query.get("stream_prefix")) filter.stream_prefix = query.get("stream_prefix");
  const controller = new AbortController();
  let paused = false;
  let held = [];
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) { held.forEach(show); held = []; }
  });
  let count = 0;
  function show(e) {
    body.prepend(row(hashFor("event", e.id), [
      h("a", { href: hashFor("stream", e.stream) }, e.stream), h("span", { class: "num" }, e.version),
      h("span", { class: "num" }, e.position), typeOf(e),
      h("time", { datetime: e.context.time }, when(e.context.time)),
    ]));
    while (body.rows.length > LIVE_ROWS) body.lastElementChild.remove();
  }
  cleanup.push(() => controller.abort());
  let last = null;
  let backoff = 500;
  (async () => {
    while (!controller.signal.aborted) {
      try {
        const params = new URLSearchParams(filter);
        const extra = last ? { "Last-Event-ID": last } : {};
        const response = await fetch(`${ROOT}log/live?${params}`, { headers: headers(Object.assign({ Accept: "text/event-stream" }, extra)), signal: controller.signal });
        if (!response.ok) {
          const err = new ApiError(response.status, await response.json().catch(() => null));
          if (response.status === 401 || response.status === 403 || response.status === 422) {
            status.textContent = "stopped";
            showError(err);
            return;
          }
          throw err;
        }
        status.textContent = last ? `connected, resumed after ${last}` : "connected: new events appear at the top";
        status.dataset.state = "connected";
        backoff = 500;
        await readEvents(response, (m) => {
          if (m.event === "dropped") {
            status.textContent = "the server dropped this tail (too slow); resuming…";
            return;
          }
          if (m.event !== "event") return;
          last = m.id;
          count += 1;
          status.textContent = `connected: ${count} event${count === 1 ? "" : "s"} since this page opened`;
          const e = JSON.parse(m.data);
          if (paused) held.push(e); else show(e);
        });
      } catch (err) {
        if (controller.signal.aborted) return;
        status.textContent = `disconnected (${err.message}); reconnecting…`;
      }
      if (controller.signal.aborted) return;
      status.dataset.state = "reconnecting";
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  })();
}

const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

function swatch(color) {
  const el = h("span", { class: "swatch" });
  el.style.background = color;
  return el;
}

/** A stacked bar chart (SVG) of events per minute by type. */
function chart(timeline) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, ...kids) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    kids.forEach((k) => el.append(k));
    return el;
  };
  const types = [...new Set(timeline.minutes.flatMap((m) => Object.keys(m.counts)))].sort();
  const color = (t) => PALETTE[types.indexOf(t) % PALETTE.length];
  const max = Math.max(1, ...timeline.minutes.map((m) => Object.values(m.counts).reduce((a, b) => a + b, 0)));
  const W = 900; const H = 220; const left = 44; const bottom = 24; const top = 8;
  const n = timeline.minutes.length;
  const bw = (W - left) / n;
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "Events per minute by type", "data-testid": "chart" });
  root.append(svg("line", { x1: left, x2: W, y1: y(0), y2: y(0), class: "axis" }),
    svg("text", { x: left - 6, y: y(max) + 4, "text-anchor": "end", class: "tick" }, String(max)),
    svg("text", { x: left - 6, y: y(0) + 4, "text-anchor": "end", class: "tick" }, "0"));
  timeline.minutes.forEach((m, i) => {
    let base = 0;
    for (const t of types) {
      const v = m.counts[t] || 0;
      if (!v) continue;
      const rect = svg("rect", { x: left + i * bw + 1, width: Math.max(1, bw - 2), y: y(base + v), height: y(base) - y(base + v), fill: color(t) });
      rect.append(svg("title", {}, `${new Date(m.minute).toLocaleTimeString()}: ${v} ${t}`));
      root.append(rect);
      base += v;
    }
    if (i % 10 === 0) {
      root.append(svg("text", { x: left + i * bw, y: H - 6, class: "tick" },
        new Date(m.minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
    }
  });
  const legend = h("ul", { class: "legend" }, types.map((t) =>
    h("li", {}, swatch(color(t)), t)));
  return h("figure", {}, root, legend,
    h("figcaption", {}, `Events per minute by type, last ${n} minutes (${timeline.events} events${timeline.truncated ? ", the oldest minutes incomplete" : ""})`));
}

async function statsPage() {
  main.append(h("h1", {}, "Stats"));
  const holder = h("div", { "data-testid": "stats" });
  main.append(holder);
  async function refresh() {
    const [stats, timeline] = await Promise.all([api("/stats"), api("/stats/timeline", { minutes: 60 })]);
    const facts = h("dl", { class: "cards" },
      h("div", {}, h("dt", {}, "Events"), h("dd", { "data-testid": "stat-events" }, stats.events)),
      h("div", {}, h("dt", {}, "Streams"), h("dd", {}, stats.streams)),
      h("div", {}, h("dt", {}, "Head"), h("dd", { class: "mono" }, stats.head ?? "–")),
      h("div", {}, h("dt", {}, "Size"), h("dd", {}, stats.size_bytes == null ? "–" : `${(stats.size_bytes / 1048576).toFixed(1)} MiB`)));
    const types = h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Type"), h("th", { class: "num" }, "Events"))),
      h("tbody", {}, stats.types.map((t) => {
        const target = hashFor("search", undefined, { type: typeOf(t) });
        return row(target, [h("a", { href: target }, typeOf(t)), h("span", { class: "num" }, t.events)]);
      })));
    holder.replaceChildren(facts, chart(timeline), h("h2", {}, "Events by type"), types);
  }
  await refresh();
  const timer = setInterval(() => refresh().catch((err) => showError(err, holder)), 15000);
  cleanup.push(() => clearInterval(timer));
}

// ---- routing and keys ----------------------------------------------------------------------

const PAGES = { streams: streamsPage, stream: streamPage, event: eventPage, search: searchPage, live: livePage, stats: statsPage };

async function render() {
  cleanup.forEach((stop) => stop());
  cleanup = [];
  const [path, qs] = (location.hash.replace(/^#\/?/, "") || "streams").split("?");
  const [name, ...rest] = path.split("/");
  const page = PAGES[name] ? name : "streams";
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : undefined;
  const query = new URLSearchParams(qs || "");
  const tab = { stream: "streams", event: "streams" }[page] || page;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === tab) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  main.replaceChildren();
  main.dataset.page = page;
  document.title = `${page[0].toUpperCase()}${page.slice(1)} · Event Store explorer`;
  try {
    await PAGES[page](arg, query);
  } catch (err) {
    showError(err);
  }
  main.dataset.ready = "true";
}

function askToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  input.value = token;
  dialog.showModal();
  input.focus();
}

document.getElementById("token-button").addEventListener("click", askToken);
document.getElementById("token-dialog").addEventListener("close", (ev) => {
  const action = ev.target.returnValue;
  if (action === "save") token = document.getElementById("token-input").value.trim();
  if (action === "clear") token = "";
  if (action === "save" || action === "clear") {
    if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
    render();
  }
});

function moveRow(step) {
  const rows = [...main.querySelectorAll("tbody tr[data-href]")];
  if (!rows.length) return;
  const at = rows.indexOf(document.activeElement);
  const next = rows[Math.max(0, Math.min(rows.length - 1, at < 0 ? 0 : at + step))];
  next.focus();
}

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const typing = ev.target.closest("input, textarea, select, dialog");
  if (typing) {
    if (ev.key === "Escape" && !ev.target.closest("dialog")) ev.target.blur();
    return;
  }
  const pages = { 1: "streams", 2: "search", 3: "live", 4: "stats" };
  if (pages[ev.key]) { go(pages[ev.key]); ev.preventDefault(); return; }
  switch (ev.key) {
    case "/": {
      const input = main.querySelector("input");
      if (input) { input.focus(); input.select(); ev.preventDefault(); }
      break;
    }
    case "j": moveRow(1); ev.preventDefault(); break;
    case "k": moveRow(-1); ev.preventDefault(); break;
    case "t": askToken(); ev.preventDefault(); break;
    case "Enter": {
      const tr = ev.target.closest && ev.target.closest("tr[data-href]");
      if (tr) { location.hash = tr.dataset.href; ev.preventDefault(); }
      break;
    }
    default:
  }
});

window.addEventListener("hashchange", render);
render();
