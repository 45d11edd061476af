// The web page: model list, per-model try-it tabs, results, traffic and drift pictures.
// Everything comes from the JSON API (with the tab's key); nothing from any other origin.

import { apiKey, call, curlCommand, onUnauthorized, setApiKey } from "./api.js";
import { driftBars, latencyHistogram, percent, probabilityBars, sparkline } from "./charts.js";
import {
  buildFields, clearErrors, csvInstances, randomInstance, readFields, showFieldErrors, toCSV,
  writeFields,
} from "./forms.js";

const $ = (id) => document.getElementById(id);
const STATS_EVERY_MS = 3000;
const DRIFT_EVERY_MS = 30000;

const state = {
  models: [],
  health: {},
  meta: {}, // "name@version" -> metadata
  current: null, // metadata of the model shown
  version: null, // null: the default version
  images: [], // File objects picked on the image tab
  previews: [], // their blob: URLs, revoked when cleared
  dataURL: null, // the one picked picture as a data: URL, for the JSON tab
  stats: [],
  statsPausedUntil: 0,
  timers: [],
};

// -- helpers ------------------------------------------------------------------------------

function text(tag, value, className) {
  const n = document.createElement(tag);
  if (className) n.className = className;
  n.textContent = value;
  return n;
}

function modelBase(name, version) {
  const path = `/models/${encodeURIComponent(name)}`;
  return version ? `${path}/versions/${encodeURIComponent(version)}` : path;
}

function runtimeLabel(runtime) {
  if (!runtime) return "—";
  const engine = runtime.serving || runtime.runtime || "?";
  if (runtime.compiled === true) return `${engine} · compiled`;
  if (runtime.compiled === false) return `${engine} · not compiled`;
  return engine;
}

function classLabels(meta) {
  if (meta.class_names) return meta.class_names.map(String);
  if (meta.classes) return meta.classes.map(String);
  return [];
}

function errorMessage(result) {
  const body = result.body || {};
  return body.error ? `${result.status} ${body.type || ""}: ${body.error}` : `HTTP ${result.status}`;
}

// -- the API key --------------------------------------------------------------------------

function showKeyPanel(message) {
  $("key-panel").hidden = false;
  $("key-button").hidden = false;
  $("key-error").textContent = message || "";
  $("key-input").focus();
}

function wireKey() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    setApiKey(key);
    $("key-input").value = "";
    $("key-panel").hidden = true;
    $("key-button").hidden = false;
    loadModels();
  });
  $("key-forget").addEventListener("click", () => {
    setApiKey(null);
    $("key-input").value = "";
    showKeyPanel("Key forgotten.");
  });
  $("key-button").addEventListener("click", () => {
    $("key-panel").hidden = !$("key-panel").hidden;
  });
  if (apiKey()) $("key-button").hidden = false;
  onUnauthorized(() => {
    showKeyPanel(apiKey() ? "The server refused this key (401). Check it and try again." : "");
  });
}

// -- the model list -----------------------------------------------------------------------

async function loadModels() {
  const health = await call("/health");
  renderHealth(health);
  const listed = await call("/models");
  if (!listed.ok) {
    $("page-message").hidden = false;
    $("page-message").textContent =
      listed.status === 401 ? "Enter the API key above to see the models." : errorMessage(listed);
    $("model-list").replaceChildren(text("li", "—", "muted"));
    return;
  }
  state.models = listed.body.models;
  call("/").then((index) => {
    // The API map (JSON: call() asks for it), for the server's version.
    if (index.ok && index.body.version) $("server-version").textContent = `v${index.body.version}`;
  });
  const metas = await Promise.all(state.models.map((m) => metadata(m.name, null)));
  renderModelList(metas);
  const wanted = decodeURIComponent((location.hash.match(/^#\/models\/([^/]+)/) || [])[1] || "");
  const names = state.models.map((m) => m.name);
  const fallback = (health.body && health.body.default_model) || names[0];
  selectModel(names.includes(wanted) ? wanted : fallback);
}

function renderHealth(result) {
  const pill = $("health");
  const body = result.body || {};
  state.health = Object.fromEntries((body.models || []).map((m) => [m.name, m]));
  const healthy = result.ok && body.status === "healthy";
  pill.textContent = body.status || `HTTP ${result.status}`;
  pill.className = `pill ${healthy ? "pill-ok" : "pill-bad"}`;
}

async function metadata(name, version) {
  const key = `${name}@${version || ""}`;
  if (!state.meta[key]) {
    const result = await call(modelBase(name, version));
    state.meta[key] = result.ok ? result.body : { name, error: errorMessage(result) };
  }
  return state.meta[key];
}

function renderModelList(metas) {
  const list = $("model-list");
  list.replaceChildren();
  state.models.forEach((model, i) => {
    const meta = metas[i];
    const health = state.health[model.name];
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `#/models/${encodeURIComponent(model.name)}`;
    a.dataset.model = model.name;
    const name = text("div", "", "name");
    const ok = health ? health.loaded && !health.failed_versions : model.default_version !== null;
    name.append(text("span", "", `dot ${ok ? "ok" : "bad"}`), text("span", model.name));
    const sub = meta.error
      ? "failed to load"
      : `v${model.default_version} · ${meta.kind === "image" ? "image · " : ""}${runtimeLabel(meta.runtime)}`;
    a.append(name, text("div", sub, "sub"));
    li.append(a);
    list.append(li);
  });
}

// -- one model ----------------------------------------------------------------------------

async function selectModel(name, version = null) {
  if (!name) return;
  const meta = await metadata(name, version);
  state.current = meta;
  state.version = version;
  document.querySelectorAll("#model-list a").forEach((a) => {
    a.classList.toggle("active", a.dataset.model === name);
  });
  $("page-message").hidden = true;
  $("model").hidden = false;
  $("model-name").textContent = name;
  $("model-description").textContent = meta.description || meta.error || "";
  renderVersions(meta);
  renderFacts(meta);
  // A model whose version failed to load has no metadata to build tabs from; its error shows.
  document.querySelector("#model .grid").hidden = Boolean(meta.error);
  $("monitor").hidden = Boolean(meta.error);
  setupTabs(meta);
  resetResult();
  if (meta.error) state.timers.forEach(clearInterval);
  else startMonitoring(name, version);
}

function renderVersions(meta) {
  const select = $("version-select");
  select.replaceChildren();
  const versions = meta.versions || [];
  const model = state.models.find((m) => m.name === meta.name);
  for (const v of versions) {
    const label = model && String(model.default_version) === v ? `${v} (default)` : v;
    const option = text("option", label);
    option.value = v;
    select.append(option);
  }
  select.value = state.version || meta.version;
  select.parentElement.hidden = versions.length < 2;
}

function renderFacts(meta) {
  const facts = $("model-facts");
  facts.replaceChildren();
  const health = state.health[meta.name];
  const rows = [
    ["version", meta.version ?? "—"],
    ["task", meta.task ?? "—"],
    ["input", meta.kind === "image" ? `image ${(meta.image?.size || []).join("×")} ${meta.image?.mode || ""}` : `${(meta.inputs || []).length} features`],
    ["classes", meta.classes ? String(meta.classes.length) : "—"],
    ["runtime", runtimeLabel(meta.runtime)],
    ["health", health ? (health.loaded ? "loaded" : "not loaded") : "—"],
  ];
  if (meta.runtime && meta.runtime.reason) rows.push(["why not compiled", meta.runtime.reason]);
  for (const [dt, dd] of rows) {
    const div = document.createElement("div");
    div.append(text("dt", dt), text("dd", dd));
    facts.append(div);
  }
}

// -- tabs ---------------------------------------------------------------------------------

function tabsFor(meta) {
  if (meta.kind === "image") return ["image", "json"];
  if (meta.input_schema) return ["form", "json", "batch"];
  return ["json"];
}

function showTab(name) {
  document.querySelectorAll("#tabs .tab").forEach((tab) => {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  });
  document.querySelectorAll(".tab-panel").forEach((panel) => {
    panel.hidden = panel.dataset.panel !== name;
  });
  updateCurlPreview(name);
}

function jsonRoute(meta) {
  const base = modelBase(meta.name, state.version);
  if (meta.kind === "image") return `${base}/predict_image_base64`;
  if (meta.input_schema) return `${base}/predict`;
  return `/v2${base}/infer`;
}

function jsonExample(meta) {
  if (meta.kind === "image") {
    return { image: state.dataURL || "<base64 or a data: URL of a picture>" };
  }
  if (meta.example) return meta.example;
  return { inputs: [] };
}

function setupTabs(meta) {
  const tabs = tabsFor(meta);
  document.querySelectorAll("#tabs .tab").forEach((tab) => {
    tab.hidden = !tabs.includes(tab.dataset.tab);
  });
  if (meta.input_schema) {
    buildFields($("fields"), meta.inputs, meta.example);
    $("batch-csv").value = toCSV(meta.inputs, [meta.example, randomInstance(meta.inputs, meta.example), randomInstance(meta.inputs, meta.example)]);
  }
  $("json-route").textContent = `POST ${jsonRoute(meta)}`;
  $("json-body").value = JSON.stringify(jsonExample(meta), null, 2);
  ["form-error", "json-error", "batch-error", "image-error"].forEach((id) => { $(id).textContent = ""; });
  $("batch-errors").replaceChildren();
  clearImages();
  showTab(tabs[0]);
}

function updateCurlPreview(tab) {
  const meta = state.current;
  if (!meta) return;
  const base = modelBase(meta.name, state.version);
  let command;
  if (tab === "form") command = curlCommand(`${base}/predict`, { json: readFields($("fields"), meta.inputs) });
  else if (tab === "batch") {
    let instances = [];
    try { instances = csvInstances($("batch-csv").value, meta.inputs).instances; } catch { /* shown on send */ }
    command = curlCommand(`${base}/predict_batch`, { json: { instances } });
  } else if (tab === "image") {
    const names = state.images.length ? state.images.map((f) => f.name) : ["digit.png"];
    command = curlCommand(`${base}/predict_image`, { files: names });
  } else {
    let body;
    try { body = JSON.parse($("json-body").value); } catch { body = $("json-body").value; }
    command = curlCommand(jsonRoute(meta), { json: body });
  }
  $("curl").textContent = command;
}

// -- results ------------------------------------------------------------------------------

function resetResult() {
  $("result-empty").hidden = false;
  $("result-body").hidden = true;
}

function showAnswer(result, { title, confidence, chart, table, label = "predicted class" }) {
  $("result-empty").hidden = true;
  $("result-body").hidden = false;
  $("result-body").classList.toggle("failed", !result.ok);
  $("result-label").textContent = label;
  $("result-class").textContent = title;
  $("result-message").textContent = result.ok ? "" : (result.body && result.body.error) || "";
  $("result-confidence").textContent = confidence ?? "—";
  $("result-latency").textContent = `${result.ms.toFixed(1)} ms`;
  $("result-status").textContent = String(result.status);
  $("result-json").textContent = JSON.stringify(result.body, null, 2);
  const chartBox = $("result-chart");
  if (chart) probabilityBars(chartBox, chart);
  else chartBox.replaceChildren();
  $("result-table").replaceChildren(...(table ? [table] : []));
  refreshStats();
}

function showFailure(result) {
  const type = result.body && result.body.type;
  showAnswer(result, { title: type || `HTTP ${result.status}`, label: "error" });
}

function tabularAnswer(result, meta) {
  const body = result.body;
  const labels = classLabels(meta);
  const probs = body.probability;
  const chart = Array.isArray(probs) ? probs.map((p, i) => ({ label: labels[i] ?? String(i), value: p })) : null;
  const title = body.class_name ?? String(body.prediction);
  showAnswer(result, {
    title,
    confidence: Array.isArray(probs) ? percent(Math.max(...probs)) : null,
    chart: chart || [],
  });
}

function resultsTable(columns, rows) {
  const table = document.createElement("table");
  table.className = "results";
  const head = document.createElement("tr");
  columns.forEach((c) => head.append(text("th", c)));
  table.append(head);
  for (const row of rows) {
    const tr = document.createElement("tr");
    row.forEach((cell) => tr.append(text("td", String(cell ?? ""), typeof cell === "number" ? "num" : "")));
    table.append(tr);
  }
  return table;
}

// -- the form tab -------------------------------------------------------------------------

async function sendForm(event) {
  event.preventDefault();
  const meta = state.current;
  const fields = $("fields");
  clearErrors(fields);
  $("form-error").textContent = "";
  const instance = readFields(fields, meta.inputs);
  const path = `${modelBase(meta.name, state.version)}/predict`;
  $("curl").textContent = curlCommand(path, { json: instance });
  const result = await call(path, { method: "POST", json: instance });
  if (result.ok) return tabularAnswer(result, meta);
  const rest = showFieldErrors(fields, result.body && result.body.details);
  const details = (result.body && result.body.details) || [];
  if (rest.length || !details.length) {
    $("form-error").textContent = rest.length ? rest.map((d) => `${d.path || "request"}: ${d.message}`).join("; ") : errorMessage(result);
  }
  showFailure(result);
}

// -- the JSON tab -------------------------------------------------------------------------

async function sendJSON(event) {
  event.preventDefault();
  const meta = state.current;
  $("json-error").textContent = "";
  let body;
  try {
    body = JSON.parse($("json-body").value);
  } catch (err) {
    $("json-error").textContent = `Not valid JSON: ${err.message}`;
    return;
  }
  const path = jsonRoute(meta);
  $("curl").textContent = curlCommand(path, { json: body });
  const result = await call(path, { method: "POST", json: body });
  if (!result.ok) {
    const details = (result.body && result.body.details) || [];
    $("json-error").textContent = [errorMessage(result), ...details.map((d) => `${d.path}: ${d.message}`)].join("\n");
    return showFailure(result);
  }
  if (meta.kind === "image") return imageAnswer(result, meta, ["(JSON)"]);
  if (result.body.predictions) return batchAnswer(result, meta, null);
  if ("prediction" in result.body) return tabularAnswer(result, meta);
  showAnswer(result, { title: "OK" });
}

// -- the batch tab ------------------------------------------------------------------------

function batchAnswer(result, meta, instances) {
  const labels = classLabels(meta);
  const predictions = result.body.predictions;
  const counts = new Map();
  for (const p of predictions) {
    const name = p.class_name ?? String(p.prediction);
    counts.set(name, (counts.get(name) || 0) + 1);
  }
  const features = instances ? meta.inputs.map((f) => f.name) : [];
  // The answer first: a wide model's features scroll away to the right.
  const columns = ["#", "predicted", "confidence", ...features];
  const rows = predictions.map((p, i) => [
    p.instance_id ?? i,
    p.class_name ?? p.prediction,
    Array.isArray(p.probability) ? percent(Math.max(...p.probability)) : "—",
    ...features.map((f) => instances[i][f]),
  ]);
  const order = labels.length ? labels.filter((l) => counts.has(l)) : [...counts.keys()];
  const classifier = meta.task !== "regression";
  showAnswer(result, {
    title: `${predictions.length} rows`,
    confidence: null,
    // A classifier's class mix over the rows; a regressor's values are in the table.
    chart: classifier ? order.map((label) => ({ label, value: counts.get(label) / predictions.length })) : null,
    table: resultsTable(columns, rows),
  });
}

async function sendBatch(event) {
  event.preventDefault();
  const meta = state.current;
  $("batch-error").textContent = "";
  $("batch-errors").replaceChildren();
  let parsed;
  try {
    parsed = csvInstances($("batch-csv").value, meta.inputs);
  } catch (err) {
    $("batch-error").textContent = err.message;
    return;
  }
  const path = `${modelBase(meta.name, state.version)}/predict_batch`;
  const body = { instances: parsed.instances };
  $("curl").textContent = curlCommand(path, { json: body });
  const result = await call(path, { method: "POST", json: body });
  if (result.ok) return batchAnswer(result, meta, parsed.instances);
  $("batch-error").textContent = errorMessage(result);
  for (const d of (result.body && result.body.details) || []) {
    const match = String(d.path || "").match(/^instances\[(\d+)\]\.?(.*)$/);
    const where = match ? `row ${Number(match[1]) + 1}${match[2] ? `, ${match[2]}` : ""}` : d.path;
    $("batch-errors").append(text("li", `${where}: ${d.message}`));
  }
  showFailure(result);
}

function loadBatchFile() {
  const file = $("batch-file").files[0];
  if (!file) return;
  $("batch-file-name").textContent = file.name;
  file.text().then((content) => {
    $("batch-csv").value = content;
    updateCurlPreview("batch");
  });
}

// -- the image tab ------------------------------------------------------------------------

function clearImages() {
  state.previews.forEach((url) => URL.revokeObjectURL(url));
  state.images = [];
  state.previews = [];
  state.dataURL = null;
  $("previews").replaceChildren();
  $("image-button").disabled = true;
  $("image-file").value = "";
}

function pickImages(files) {
  const picked = [...files]; // before clearImages() empties the input's live FileList
  clearImages();
  state.images = picked.filter((f) => f.type.startsWith("image/") || !f.type);
  for (const file of state.images) {
    const url = URL.createObjectURL(file); // a blob: URL: the picture stays in the browser
    state.previews.push(url);
    const figure = document.createElement("div");
    figure.className = "preview";
    const img = document.createElement("img");
    img.src = url;
    img.alt = file.name;
    figure.append(img, text("div", file.name, "caption"));
    $("previews").append(figure);
  }
  $("image-button").disabled = state.images.length === 0;
  if (state.images.length === 1) {
    const reader = new FileReader();
    reader.onload = () => {
      state.dataURL = reader.result;
      $("json-body").value = JSON.stringify({ image: reader.result }, null, 2);
    };
    reader.readAsDataURL(state.images[0]);
  }
  updateCurlPreview("image");
}

function imageAnswer(result, meta, names) {
  const body = result.body;
  const one = body.predictions ? body.predictions[0] : body;
  const labels = classLabels(meta);
  const probs = one.all_probabilities || {};
  const chart = (labels.length ? labels : Object.keys(probs)).filter((l) => l in probs).map((label) => ({ label, value: probs[label] }));
  let table = null;
  if (body.predictions) {
    table = resultsTable(["#", "file", "predicted", "confidence"], body.predictions.map((p, i) => [
      p.instance_id ?? i, names[i] ?? "", p.predicted_class, percent(p.confidence),
    ]));
  }
  showAnswer(result, {
    title: body.predictions ? `${one.predicted_class} (first of ${body.predictions.length})` : one.predicted_class,
    confidence: percent(one.confidence),
    chart,
    table,
  });
}

async function sendImages(event) {
  event.preventDefault();
  const meta = state.current;
  $("image-error").textContent = "";
  if (!state.images.length) return;
  const form = new FormData();
  state.images.forEach((file) => form.append("image", file, file.name));
  const path = `${modelBase(meta.name, state.version)}/predict_image`;
  const names = state.images.map((f) => f.name);
  $("curl").textContent = curlCommand(path, { files: names });
  const result = await call(path, { method: "POST", body: form });
  if (result.ok) return imageAnswer(result, meta, names);
  $("image-error").textContent = errorMessage(result);
  showFailure(result);
}

function wireDropZone() {
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    pickImages(event.dataTransfer.files);
  });
  $("image-file").addEventListener("change", () => pickImages($("image-file").files));
}

// -- traffic and drift --------------------------------------------------------------------

function startMonitoring(name, version) {
  state.timers.forEach(clearInterval);
  state.stats = [];
  $("rate-now").textContent = "";
  $("latency-quantiles").textContent = "";
  refreshStats();
  refreshDrift(name, version);
  state.timers = [
    setInterval(refreshStats, STATS_EVERY_MS),
    setInterval(() => refreshDrift(name, version), DRIFT_EVERY_MS),
  ];
}

function ms(value) {
  return value === null || value === undefined ? "—" : `${value < 10 ? value.toFixed(2) : value.toFixed(0)} ms`;
}

async function refreshStats() {
  const meta = state.current;
  if (!meta || Date.now() < state.statsPausedUntil) return;
  const result = await call(`/models/${encodeURIComponent(meta.name)}/stats`);
  if (result.status === 429) {
    // Rate-limited with the admin routes: wait as told instead of spending the budget.
    state.statsPausedUntil = Date.now() + Math.max(result.retryAfter, 10) * 1000;
  }
  if (!result.ok || state.current !== meta) {
    if (!result.ok) $("stats-counts").textContent = `Statistics unavailable: ${errorMessage(result)}`;
    return;
  }
  const stats = result.body;
  state.stats.push({ ts: stats.ts, requests: stats.requests });
  if (state.stats.length > 41) state.stats.shift();
  const points = state.stats.slice(1).map((p, i) => ({
    rate: Math.max(0, (p.requests - state.stats[i].requests) / Math.max(0.001, p.ts - state.stats[i].ts)),
  }));
  sparkline($("rate-chart"), points);
  $("rate-now").textContent = points.length ? `${points[points.length - 1].rate.toFixed(2)} req/s` : "";
  latencyHistogram($("latency-chart"), stats.latency.buckets);
  const lat = stats.latency;
  $("latency-quantiles").textContent = lat.count ? `p50 ${ms(lat.p50_ms)} · p95 ${ms(lat.p95_ms)}` : "";
  const statuses = Object.entries(stats.by_status).map(([s, n]) => `${s}: ${n}`).join(", ");
  $("stats-counts").textContent = `${stats.requests} inference requests, ${stats.errors} errors${statuses ? ` (${statuses})` : ""}; mean latency ${ms(lat.mean_ms)}.`;
}

async function refreshDrift(name, version) {
  if (state.current && state.current.kind === "image") {
    $("drift-summary").textContent = "";
    return driftBars($("drift-chart"), null, 0, "Drift is reported for tabular models (their logged features).");
  }
  const result = await call(`${modelBase(name, version)}/drift?window=3600`);
  if (!state.current || state.current.name !== name) return;
  const body = result.body || {};
  if (!result.ok) {
    $("drift-summary").textContent = "";
    const why = body.type === "PredictionLogOff"
      ? "Needs the prediction log (MODELSERVE_PREDICTION_LOG)."
      : body.type === "ReferenceNotFound"
        ? "No reference profile yet: modelserve validate --reference train.csv"
        : errorMessage(result);
    return driftBars($("drift-chart"), null, 0, why);
  }
  const drifted = body.drifted || [];
  $("drift-summary").textContent = `${body.rows} rows, last hour · ${drifted.length ? `${drifted.length} drifted` : "no drift"}`;
  driftBars($("drift-chart"), body.features || [], body.threshold, "");
}

// -- start --------------------------------------------------------------------------------

function wire() {
  wireKey();
  wireDropZone();
  document.querySelectorAll("#tabs .tab").forEach((tab) => {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  });
  $("form-tab").addEventListener("submit", sendForm);
  $("json-tab").addEventListener("submit", sendJSON);
  $("batch-tab").addEventListener("submit", sendBatch);
  $("image-tab").addEventListener("submit", sendImages);
  $("fields").addEventListener("input", () => updateCurlPreview("form"));
  $("json-body").addEventListener("input", () => updateCurlPreview("json"));
  $("batch-csv").addEventListener("input", () => updateCurlPreview("batch"));
  $("batch-file").addEventListener("change", loadBatchFile);
  $("image-clear").addEventListener("click", () => { clearImages(); updateCurlPreview("image"); });
  $("random-button").addEventListener("click", () => {
    const meta = state.current;
    clearErrors($("fields"));
    writeFields($("fields"), meta.inputs, randomInstance(meta.inputs, meta.example));
    updateCurlPreview("form");
  });
  $("reset-button").addEventListener("click", () => {
    clearErrors($("fields"));
    writeFields($("fields"), state.current.inputs, state.current.example);
    updateCurlPreview("form");
  });
  $("json-example").addEventListener("click", () => {
    $("json-body").value = JSON.stringify(jsonExample(state.current), null, 2);
    updateCurlPreview("json");
  });
  $("batch-random").addEventListener("click", () => {
    const meta = state.current;
    const rows = Array.from({ length: 5 }, () => randomInstance(meta.inputs, meta.example));
    $("batch-csv").value = toCSV(meta.inputs, rows);
    updateCurlPreview("batch");
  });
  $("version-select").addEventListener("change", () => {
    const meta = state.current;
    const model = state.models.find((m) => m.name === meta.name);
    const v = $("version-select").value;
    selectModel(meta.name, model && String(model.default_version) === v ? null : v);
  });
  $("curl-copy").addEventListener("click", () => {
    navigator.clipboard?.writeText($("curl").textContent);
  });
  window.addEventListener("hashchange", () => {
    const match = location.hash.match(/^#\/models\/([^/]+)/);
    if (match) selectModel(decodeURIComponent(match[1]));
  });
}

wire();
loadModels();
