// The prediction form built from a model's input features, its errors, and CSV rows.

function node(tag, attrs = {}, text) {
  const n = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) n.setAttribute(key, String(value));
  }
  if (text !== undefined) n.textContent = text;
  return n;
}

function boundsHint(feature) {
  const { minimum: lo, maximum: hi } = feature;
  if (lo !== undefined && hi !== undefined) return `${lo} to ${hi}`;
  if (lo !== undefined) return `at least ${lo}`;
  if (hi !== undefined) return `at most ${hi}`;
  return feature.type;
}

/** One labelled control per feature: number fields with their bounds, selects for enums. */
export function buildFields(container, features, example) {
  container.replaceChildren();
  for (const feature of features) {
    const id = `field-${feature.name}`;
    const wrap = node("div", { class: "field", "data-field": feature.name });
    wrap.append(node("label", { for: id }, feature.name));
    let control;
    const value = example ? example[feature.name] : undefined;
    if (feature.enum || feature.type === "boolean") {
      control = node("select", { id, name: feature.name });
      const options = feature.enum || [false, true];
      options.forEach((option, index) => {
        const opt = node("option", { value: String(index) }, String(option));
        if (option === value) opt.selected = true;
        control.append(opt);
      });
    } else if (feature.type === "number" || feature.type === "integer") {
      control = node("input", {
        id, name: feature.name, type: "number", inputmode: "decimal",
        min: feature.minimum, max: feature.maximum, step: feature.type === "integer" ? 1 : "any",
      });
      if (value !== undefined) control.value = String(value);
    } else {
      control = node("input", { id, name: feature.name, type: "text" });
      if (value !== undefined) control.value = String(value);
    }
    wrap.append(control);
    const hint = feature.description ? `${boundsHint(feature)} · ${feature.description}` : boundsHint(feature);
    wrap.append(node("div", { class: "hint" }, hint));
    wrap.append(node("div", { class: "field-error", role: "alert" }));
    container.append(wrap);
  }
}

/** The form's values as one JSON instance; an empty field is left out (the server says so). */
export function readFields(container, features) {
  const instance = {};
  for (const feature of features) {
    const control = container.querySelector(`[name="${CSS.escape(feature.name)}"]`);
    if (!control) continue;
    if (control.tagName === "SELECT") {
      const options = feature.enum || [false, true];
      instance[feature.name] = options[Number(control.value)];
    } else if (control.type === "number") {
      if (control.value.trim() === "") continue;
      instance[feature.name] = Number(control.value);
    } else {
      instance[feature.name] = control.value;
    }
  }
  return instance;
}

export function writeFields(container, features, instance) {
  for (const feature of features) {
    const control = container.querySelector(`[name="${CSS.escape(feature.name)}"]`);
    if (!control || !(feature.name in instance)) continue;
    const value = instance[feature.name];
    if (control.tagName === "SELECT") {
      control.value = String((feature.enum || [false, true]).indexOf(value));
    } else {
      control.value = String(value);
    }
  }
}

/** A plausible instance: the example shaken by up to ±25%, kept within the bounds. */
export function randomInstance(features, example) {
  const out = {};
  for (const feature of features) {
    const base = example ? example[feature.name] : undefined;
    if (feature.enum) {
      out[feature.name] = feature.enum[Math.floor(Math.random() * feature.enum.length)];
    } else if (feature.type === "boolean") {
      out[feature.name] = Math.random() < 0.5;
    } else if (feature.type === "number" || feature.type === "integer") {
      const lo = feature.minimum ?? -Infinity, hi = feature.maximum ?? Infinity;
      let value;
      if (typeof base === "number" && base !== 0) value = base * (0.75 + Math.random() * 0.5);
      else if (Number.isFinite(lo) && Number.isFinite(hi)) value = lo + Math.random() * (hi - lo);
      else value = (Number.isFinite(lo) ? lo : 0) + Math.random();
      value = Math.min(hi, Math.max(lo, value));
      out[feature.name] = feature.type === "integer" ? Math.round(value) : Math.round(value * 1000) / 1000;
    } else {
      out[feature.name] = base ?? "";
    }
  }
  return out;
}

export function clearErrors(container) {
  container.querySelectorAll(".field.invalid").forEach((f) => f.classList.remove("invalid"));
  container.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
}

/**
 * Put each error of a 400's ``details`` next to its field; what names no field is returned.
 * @returns {{path: string, message: string}[]} the details that matched no field
 */
export function showFieldErrors(container, details) {
  const rest = [];
  for (const detail of details || []) {
    const name = String(detail.path || "").split(/[.[]/)[0];
    const field = container.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
    if (!field || !detail.path) {
      rest.push(detail);
      continue;
    }
    field.classList.add("invalid");
    const slot = field.querySelector(".field-error");
    slot.textContent = slot.textContent ? `${slot.textContent}; ${detail.message}` : detail.message;
  }
  return rest;
}

/** Split CSV text into rows of cells (quotes, doubled quotes and CRLF understood). */
export function parseCSV(text) {
  const rows = [];
  let row = [], cell = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { cell += '"'; i++; }
      else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") { row.push(cell); cell = ""; }
    else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      row.push(cell); rows.push(row); row = []; cell = "";
    } else cell += ch;
  }
  if (cell !== "" || row.length) { row.push(cell); rows.push(row); }
  return rows.filter((r) => r.some((c) => c.trim() !== ""));
}

function cellValue(text, feature) {
  const t = text.trim();
  if (!feature) return t;
  if (feature.type === "number" || feature.type === "integer") {
    return t !== "" && Number.isFinite(Number(t)) ? Number(t) : t;
  }
  if (feature.type === "boolean") return t === "true" ? true : t === "false" ? false : t;
  if (feature.enum && feature.enum.some((v) => typeof v === "number")) {
    return Number.isFinite(Number(t)) ? Number(t) : t;
  }
  return t;
}

/**
 * CSV (a header row naming the features) to JSON instances; an empty cell is left out.
 * @returns {{columns: string[], instances: object[]}}
 */
export function csvInstances(text, features) {
  const rows = parseCSV(text);
  if (rows.length < 2) throw new Error("The CSV needs a header row and at least one row of values.");
  const columns = rows[0].map((c) => c.trim());
  const byName = Object.fromEntries(features.map((f) => [f.name, f]));
  const instances = rows.slice(1).map((cells) => {
    const instance = {};
    columns.forEach((name, i) => {
      if (cells[i] !== undefined && cells[i].trim() !== "") instance[name] = cellValue(cells[i], byName[name]);
    });
    return instance;
  });
  return { columns, instances };
}

export function toCSV(features, instances) {
  const quote = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replaceAll('"', '""')}"` : String(v));
  const lines = [features.map((f) => quote(f.name)).join(",")];
  for (const row of instances) lines.push(features.map((f) => quote(row[f.name] ?? "")).join(","));
  return lines.join("\n");
}
