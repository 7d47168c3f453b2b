// The /ui page (docs/ui.md): recent records from GET /messages, new ones live from
// GET /messages/stream, the header strip from /readyz, /ui/status and /audit/checkpoint.
// "Search the whole trail" (`?trail=1`) reads GET /audit/records instead, page by page.
//
// Rules this file keeps: record data goes into the page as text only (textContent, never
// innerHTML); the API key lives in sessionStorage and travels as `Authorization: Bearer`,
// never in a URL (so the stream is read with fetch(), not EventSource, which cannot send it).

const KEY_STORE = "rg-api-key";
const FILTERS = ["topic", "user", "model", "text", "since", "until"];
const LIMIT = 100;
const MAX_ROWS = 500;
const STATUS_EVERY_MS = 5000;
const RECONNECT_MS = 3000;

const $ = (id) => document.getElementById(id);

const state = {
  paused: false,
  pending: [], // records that arrived while paused, oldest first (the newest MAX_ROWS)
  pendingCount: 0, // how many arrived while paused, all of them
  shown: new Set(), // "topic/partition/offset" of the rows in the table
  records: new Map(), // the same ids -> the record, for the detail view
  stream: null, // AbortController of the live tail
  generation: 0, // bumped by every reload: older loads and streams stop touching the page
  cursor: null, // the whole trail's next page (GET /audit/records), when there is one
};

// ---- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorOf(response) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    // not the API's error body
  }
  return new ApiError(
    response.status,
    error?.code ?? `http_${response.status}`,
    error?.message ?? `${response.status} ${response.statusText}`,
  );
}

async function getJson(path, { auth = true } = {}) {
  const headers = { Accept: "application/json", ...(auth ? authHeaders() : {}) };
  const response = await fetch(path, { headers });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

// ---- filters, in the form and in the URL ---------------------------------------------------

function filtersFromUrl() {
  const params = new URLSearchParams(location.search);
  for (const name of FILTERS) $(`f-${name}`).value = params.get(name) ?? "";
  $("f-trail").checked = params.get("trail") === "1";
}

function filterParams() {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const value = $(`f-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  if ($("f-trail").checked) params.set("trail", "1");
  return params;
}

function applyFilters(event) {
  event?.preventDefault();
  const query = filterParams().toString();
  history.pushState(null, "", query ? `?${query}` : location.pathname);
  reload();
}

// ---- errors and the key --------------------------------------------------------------------

function showError(error) {
  const box = $("error");
  box.textContent =
    error instanceof ApiError ? `${error.status} ${error.code}: ${error.message}` : `${error}`;
  box.hidden = false;
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    $("key-form").hidden = false;
    $("key").focus();
  }
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function useKey(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("key").value);
  $("key").value = "";
  $("key-form").hidden = true;
  reload();
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORE);
  reload();
}

// ---- the table -----------------------------------------------------------------------------

const idOf = (record) => `${record.topic}/${record.partition}/${record.offset}`;

function fieldsOf(record) {
  const value = record.value;
  const event = value && typeof value === "object" && !Array.isArray(value) ? value : null;
  const text = (v) => (typeof v === "string" ? v : v == null ? "" : JSON.stringify(v));
  return {
    user: event ? text(event.user_id) : "",
    model: event ? text(event.model) : "",
    prompt: !event ? text(value)
      : "prompt" in event ? text(event.prompt)
      : "input_messages" in event ? said(event.input_messages)
      : text(value),
    response: !event ? ""
      : !("response" in event) && "output_messages" in event ? said(event.output_messages)
      : text(event.response),
  };
}

// A schema version 2 record may hold its content only as GenAI messages: their text parts.
function said(messages) {
  if (!Array.isArray(messages)) return "";
  return messages
    .flatMap((m) => (Array.isArray(m?.parts) ? m.parts : []))
    .map((p) => (typeof p?.content === "string" ? p.content : ""))
    .filter((t) => t)
    .join("\n");
}

const preview = (text, length = 80) => (text.length > length ? `${text.slice(0, length)}…` : text);

function timeOf(record) {
  const utc = record.timestamp_utc;
  return utc ? `${utc.slice(0, 10)} ${utc.slice(11, 23)}` : "—";
}

function integrityOf(record) {
  if (record.writer == null) return { text: "not an audit record", state: "none" };
  const place = `${record.writer.slice(0, 8)}… #${record.seq}`;
  if (record.checkpointed === true) return { text: `${place} · checkpointed`, state: "signed" };
  if (record.checkpointed === false) return { text: `${place} · not yet signed`, state: "pending" };
  return { text: `${place} · no checkpoint known`, state: "unknown" };
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.append(td);
  return td;
}

function rowOf(record) {
  const row = document.createElement("tr");
  row.dataset.id = idOf(record);
  const fields = fieldsOf(record);
  const open = document.createElement("button");
  open.type = "button";
  open.className = "open";
  open.textContent = timeOf(record);
  open.setAttribute("aria-label", `Details of ${record.topic} ${record.partition}/${record.offset}`);
  open.addEventListener("click", () => showDetail(record));
  cell(row, "").append(open);
  cell(row, record.topic);
  cell(row, `${record.partition}/${record.offset}`, "num");
  cell(row, fields.user, "user");
  cell(row, fields.model);
  cell(row, preview(fields.prompt), "text prompt");
  cell(row, preview(fields.response), "text response");
  const integrity = integrityOf(record);
  cell(row, integrity.text, "integrity").dataset.state = integrity.state;
  return row;
}

function remember(record) {
  const id = idOf(record);
  if (state.shown.has(id)) return false;
  state.shown.add(id);
  state.records.set(id, record);
  return true;
}

function trim() {
  const rows = $("rows");
  // A search of the whole trail keeps every page asked for ("More").
  while (rows.rows.length > MAX_ROWS && !$("f-trail").checked) {
    const id = rows.lastElementChild.dataset.id;
    state.shown.delete(id);
    state.records.delete(id);
    rows.lastElementChild.remove();
  }
  $("empty").hidden = rows.rows.length > 0;
}

function prepend(records) {
  // `records` oldest first: each goes on top, so the newest ends first.
  const rows = $("rows");
  for (const record of records) if (remember(record)) rows.prepend(rowOf(record));
  trim();
}

function append(records) {
  // `records` newest first (GET /messages), below any that the stream brought meanwhile.
  const rows = $("rows");
  for (const record of records) if (remember(record)) rows.append(rowOf(record));
  trim();
}

function clearTable() {
  $("rows").replaceChildren();
  state.shown.clear();
  state.records.clear();
  state.pending = [];
  state.pendingCount = 0;
  updatePending();
}

// ---- the live tail -------------------------------------------------------------------------

function setLive(text) {
  $("live").textContent = text;
}

function updatePending() {
  const count = $("new-count");
  count.hidden = state.pendingCount === 0;
  count.textContent = `${state.pendingCount} new`;
}

function onRecord(record) {
  if (state.paused) {
    state.pending.push(record);
    if (state.pending.length > MAX_ROWS) state.pending.shift(); // the table keeps no more
    state.pendingCount += 1;
    updatePending();
  } else {
    prepend([record]);
  }
}

function togglePause() {
  state.paused = !state.paused;
  const button = $("pause");
  button.textContent = state.paused ? "Resume" : "Pause";
  button.setAttribute("aria-pressed", String(state.paused));
  if (!state.paused) {
    prepend(state.pending);
    state.pending = [];
    state.pendingCount = 0;
    updatePending();
  }
  setLive(state.paused ? "paused" : "live");
}

function parseEvent(block) {
  // One Server-Sent Event: `event:`, `data:` and `id:` lines; `:` lines are comments.
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return { event, data: data.join("\n") };
}

async function follow(generation, params, subscribed) {
  const controller = new AbortController();
  state.stream = controller;
  const response = await fetch(`/messages/stream?${params}`, {
    headers: { Accept: "text/event-stream", ...authHeaders() },
    signal: controller.signal,
  });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done || generation !== state.generation) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (block.startsWith(": subscribed")) {
        setLive(state.paused ? "paused" : "live");
        subscribed();
      }
      const { event, data } = parseEvent(block);
      if (event === "message" && data) onRecord(JSON.parse(data));
      if (event === "overflow") return; // too far behind: reconnect
    }
  }
}

async function tail(generation, params, subscribed) {
  // Follows the stream while this load is the current one, reconnecting when it ends.
  while (generation === state.generation) {
    try {
      setLive("connecting…");
      await follow(generation, params, subscribed);
    } catch (error) {
      if (generation !== state.generation || error.name === "AbortError") return;
      subscribed(); // let the first load go on and show its own answer
      if (error instanceof ApiError) {
        showError(error);
        setLive("not following");
        return;
      }
    }
    if (generation !== state.generation) return;
    setLive("reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
  }
}

// ---- loading -------------------------------------------------------------------------------

// ---- the whole trail ----------------------------------------------------------------------

function trailQuery(params) {
  // GET /audit/records's names for the form's filters; `topic` and `text` are the live
  // view's only (the search reads the audit topic and filters on stored fields).
  const query = new URLSearchParams({ limit: String(LIMIT) });
  for (const [from, to] of [["user", "user_id"], ["model", "model"], ["since", "since"], ["until", "until"]]) {
    if (params.get(from)) query.set(to, params.get(from));
  }
  return query;
}

async function searchTrail(generation, params) {
  const query = trailQuery(params);
  if (state.cursor) query.set("cursor", state.cursor);
  setLive("searching the whole trail…");
  $("more").hidden = true;
  try {
    const page = await getJson(`/audit/records?${query}`);
    if (generation !== state.generation) return;
    state.cursor = page.cursor;
    append(page.records);
    const shown = $("rows").rows.length;
    // A page cut by the scan bound is partial: say so, never show it as the whole answer.
    const rest = page.complete
      ? "all found"
      : page.stopped_by === "scan_limit"
        ? `partial: the scan bound was reached after ${page.scanned} records read; More reads on`
        : "More shows the next page";
    setLive(`whole trail ${page.since.slice(0, 19)}Z – ${page.until.slice(0, 19)}Z: ${shown} records, ${rest}`);
    $("more").hidden = page.complete;
    $("empty").hidden = shown > 0 || !page.complete;
  } catch (error) {
    if (generation === state.generation) {
      showError(error);
      setLive("search failed");
    }
  }
}

async function reload() {
  const generation = ++state.generation;
  state.stream?.abort();
  state.cursor = null;
  clearError();
  clearTable();
  $("forget-key").hidden = !sessionStorage.getItem(KEY_STORE);
  const params = filterParams();
  $("pause").hidden = params.has("trail");
  $("records").caption.textContent = params.has("trail")
    ? "The whole trail (GET /audit/records), newest first"
    : "Recent records, newest first";
  $("more").hidden = true;
  if (params.has("trail")) {
    await searchTrail(generation, params);
    return;
  }
  // Subscribed first, then the page read: nothing written in between is missed (repeats are
  // dropped by topic/partition/offset).
  let subscribed;
  const ready = new Promise((resolve) => (subscribed = resolve));
  tail(generation, params, subscribed);
  await Promise.race([ready, new Promise((resolve) => setTimeout(resolve, 2000))]);
  if (generation !== state.generation) return;
  try {
    params.set("limit", String(LIMIT));
    const page = await getJson(`/messages?${params}`);
    if (generation !== state.generation) return;
    append(page.messages);
    $("empty").hidden = $("rows").rows.length > 0;
  } catch (error) {
    if (generation === state.generation) {
      showError(error);
      $("empty").hidden = true;
    }
  }
}

// ---- the detail view -----------------------------------------------------------------------

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function curlOf(record) {
  const params = new URLSearchParams({
    topic: record.topic,
    partition: String(record.partition),
    offset: String(record.offset),
    limit: "1",
  });
  const url = `${location.origin}/messages?${params}`;
  const auth = sessionStorage.getItem(KEY_STORE) ? `-H "Authorization: Bearer $RG_API_KEY" ` : "";
  return `curl -sS ${auth}${shellQuote(url)}`;
}

function showDetail(record) {
  const headers = record.headers ?? {};
  $("detail-title").textContent = `Record ${record.topic} ${record.partition}/${record.offset}`;
  $("d-position").textContent =
    `topic ${record.topic}, partition ${record.partition}, offset ${record.offset}`;
  $("d-time").textContent = record.timestamp_utc ?? "—";
  $("d-key").textContent = record.key ?? "(none)";
  $("d-digest").textContent = headers["rg-digest"] ?? "—";
  $("d-chain").textContent =
    record.writer == null
      ? "— (not on a writer's chain)"
      : `writer ${record.writer}, seq ${record.seq}, link ${headers["rg-chain"] ?? "—"}`;
  $("d-checkpointed").textContent =
    record.checkpointed === true
      ? "covered by a signed checkpoint"
      : record.checkpointed === false
        ? "not yet covered by a signed checkpoint"
        : "unknown (no signing key, or no checkpoint of this writer known)";
  // Only an audit record's rg-redaction says what the service did: another topic's record
  // carries whatever headers its publisher chose.
  $("d-redaction").textContent =
    record.writer == null
      ? "— (not an audit record)"
      : (headers["rg-redaction"] ?? "none recorded (written with RG_REDACTION=off)");
  $("d-curl").textContent = curlOf(record);
  const body = $("d-headers").tBodies[0];
  body.replaceChildren();
  for (const [name, value] of Object.entries(headers)) {
    const row = document.createElement("tr");
    cell(row, name, "mono");
    cell(row, value ?? "(null)", "mono");
    body.append(row);
  }
  $("d-encoding").textContent = `(${record.value_encoding})`;
  $("d-value").textContent =
    typeof record.value === "string" ? record.value : JSON.stringify(record.value, null, 2);
  $("detail").showModal();
}

async function copyCurl() {
  const text = $("d-curl").textContent;
  const button = $("copy-curl");
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    // No clipboard (not a secure context): select it for Ctrl+C.
    getSelection().selectAllChildren($("d-curl"));
    button.textContent = "Selected: press Ctrl+C";
  }
  setTimeout(() => (button.textContent = "Copy"), 2000);
}

// ---- the header strip ----------------------------------------------------------------------

function formatBytes(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function drawRate(rates) {
  const svg = $("rate-chart");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const top = Math.max(1, ...rates);
  const step = rates.length > 1 ? 120 / (rates.length - 1) : 0;
  const points = rates.map((rate, i) => `${(i * step).toFixed(1)},${(29 - (rate / top) * 28).toFixed(1)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.append(line);
  const last = rates.at(-1) ?? 0;
  svg.setAttribute(
    "aria-label",
    `records per second over the last ${rates.length} intervals: now ${last.toFixed(1)}, highest ${Math.max(0, ...rates).toFixed(1)}`,
  );
}

async function refreshReady() {
  const ready = $("ready");
  const why = $("ready-why");
  try {
    const response = await fetch("/readyz", { headers: { Accept: "application/json" } });
    if (response.ok) {
      // Alarms (a witness that refused our checkpoints) do not stop writes: shown beside it.
      const alarms = (await response.json()).alarms ?? [];
      ready.textContent = alarms.length ? "ready, with alarms" : "ready";
      ready.dataset.state = alarms.length ? "bad" : "ok";
      why.textContent = alarms.join("; ");
    } else {
      const error = await errorOf(response);
      ready.textContent = "not ready";
      ready.dataset.state = "bad";
      why.textContent = `${error.code}: ${error.message}`;
    }
  } catch (error) {
    ready.textContent = "no answer";
    ready.dataset.state = "bad";
    why.textContent = `${error}`;
  }
}

async function refreshStatus() {
  try {
    const status = await getJson("/ui/status", { auth: false });
    const spool = status.spool;
    $("spool").textContent = spool.enabled
      ? `${spool.depth} records (${formatBytes(spool.bytes)}), oldest ${spool.oldest_age_s.toFixed(0)} s`
      : "off";
    const flight = status.in_flight;
    $("in-flight").textContent =
      `${flight.records} of ${flight.max_records} records, ${formatBytes(flight.bytes)}`;
    const following = $("following");
    if (status.messages.following) {
      following.textContent = "following";
      following.dataset.state = "ok";
      $("following-why").textContent = "";
    } else {
      // The table and the live tail show nothing newer until the reader is back.
      following.textContent = "not following";
      following.dataset.state = "bad";
      $("following-why").textContent = "reconnecting to Kafka: nothing newer shows until it is back";
    }
    const rates = status.rate.records_per_s;
    $("rate-now").textContent = rates.length
      ? `${rates.at(-1).toFixed(1)}/s`
      : `measuring (every ${status.rate.interval_s} s)`;
    drawRate(rates);
    showWitnesses(status.witnesses ?? []);
    const topics = $("topics");
    topics.replaceChildren(
      ...status.topics.map((topic) => Object.assign(document.createElement("option"), { value: topic })),
    );
  } catch (error) {
    $("spool").textContent = `${error.message}`;
  }
}

// The witnesses of the log of writers: a refusal is an alarm, a lag only a warning.
function showWitnesses(witnesses) {
  const shown = $("witnesses");
  const why = $("witnesses-why");
  if (!witnesses.length) {
    shown.textContent = "none";
    shown.dataset.state = "unknown";
    why.textContent = "";
    return;
  }
  const refused = witnesses.filter((w) => w.alarm);
  const lagging = witnesses.filter((w) => !w.alarm && w.age_s > 0);
  shown.textContent = witnesses
    .map((w) => `${w.name}: ${w.cosigned_size}${w.age_s > 0 ? ` (${w.age_s.toFixed(0)} s behind)` : ""}`)
    .join(", ");
  shown.dataset.state = refused.length ? "bad" : lagging.length ? "unknown" : "ok";
  why.textContent = refused.map((w) => `${w.name} ${w.alarm}`).join("; ");
}

async function refreshCheckpoint() {
  const shown = $("checkpoint");
  try {
    const checkpoint = await getJson("/audit/checkpoint", { auth: false });
    shown.textContent =
      `seq ${checkpoint.seq} of ${checkpoint.writer.slice(0, 8)}… at ${checkpoint.time.slice(0, 19)}Z, key ${checkpoint.key_id}`;
    markCovered(checkpoint);
  } catch (error) {
    shown.textContent = error instanceof ApiError ? error.message : `${error}`;
  }
}

function markCovered(checkpoint) {
  // Rows shown before this writer's latest checkpoint was signed: covered now. (Other
  // writers' coverage is the API's to tell: GET /messages on the next load.)
  for (const row of $("rows").rows) {
    const record = state.records.get(row.dataset.id);
    if (record?.writer !== checkpoint.writer || record.seq > checkpoint.seq) continue;
    if (record.checkpointed === true) continue;
    record.checkpointed = true;
    const shown = integrityOf(record);
    const cell = row.querySelector("td.integrity");
    cell.textContent = shown.text;
    cell.dataset.state = shown.state;
  }
}

function refreshStrip() {
  Promise.allSettled([refreshReady(), refreshStatus(), refreshCheckpoint()]).finally(() =>
    setTimeout(refreshStrip, STATUS_EVERY_MS),
  );
}

// ---- start ---------------------------------------------------------------------------------

function start() {
  $("filters").addEventListener("submit", applyFilters);
  $("clear").addEventListener("click", () => {
    for (const name of FILTERS) $(`f-${name}`).value = "";
    $("f-trail").checked = false;
    applyFilters();
  });
  $("f-trail").addEventListener("change", applyFilters);
  $("more").addEventListener("click", () => searchTrail(state.generation, filterParams()));
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("pause").addEventListener("click", togglePause);
  $("new-count").addEventListener("click", () => state.paused && togglePause());
  $("copy-curl").addEventListener("click", copyCurl);
  window.addEventListener("popstate", () => {
    filtersFromUrl();
    reload();
  });
  filtersFromUrl();
  refreshStrip();
  reload();
}

start();
