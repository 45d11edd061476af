// Small inline-SVG charts: probability bars, a rate sparkline, histograms. No library.

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(width, height, label) {
  return el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
}

function empty(container, message) {
  const p = document.createElement("p");
  p.className = "empty muted";
  p.textContent = message;
  container.replaceChildren(p);
}

export function percent(p) {
  if (p >= 0.995) return `${(p * 100).toFixed(1)}%`;
  if (p < 0.001 && p > 0) return "<0.1%";
  return `${(p * 100).toFixed(1)}%`;
}

/**
 * Horizontal bars, one per class, the highest in the accent colour.
 * @param {HTMLElement} container
 * @param {{label: string, value: number}[]} items values in 0..1
 */
export function probabilityBars(container, items) {
  if (!items.length) return empty(container, "This model gives no probabilities.");
  const rowH = 24, labelW = 110, valueW = 56, width = 460;
  const chart = svg(width, items.length * rowH + 4, "class probabilities");
  const top = Math.max(...items.map((i) => i.value));
  const barW = width - labelW - valueW;
  items.forEach((item, index) => {
    const y = index * rowH + 2;
    const g = el("g", { class: "row", "data-class": item.label });
    g.append(el("text", { x: labelW - 8, y: y + 15, "text-anchor": "end", class: "label" }, item.label));
    g.append(el("rect", { x: labelW, y: y + 3, width: barW, height: rowH - 8, rx: 3, fill: "#f0f2f6" }));
    g.append(el("rect", {
      x: labelW, y: y + 3, width: Math.max(1, item.value * barW), height: rowH - 8, rx: 3,
      class: item.value === top ? "bar top" : "bar",
    }));
    g.append(el("text", { x: width - 4, y: y + 15, "text-anchor": "end", class: "value" }, percent(item.value)));
    chart.append(g);
  });
  container.replaceChildren(chart);
}

/** A line of the request rate over the page's readings (requests per second). */
export function sparkline(container, points) {
  if (!points.length) return empty(container, "Measuring… (one reading every few seconds)");
  const width = 300, height = 90, pad = 4;
  const values = points.length > 1 ? points.map((p) => p.rate) : [points[0].rate, points[0].rate];
  const max = Math.max(1, ...values);
  const x = (i) => pad + (i * (width - 2 * pad)) / (values.length - 1);
  const y = (v) => height - pad - (v / max) * (height - 2 * pad - 18);
  const line = values.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const chart = svg(width, height, "request rate");
  chart.append(el("line", { x1: pad, x2: width - pad, y1: height - pad, y2: height - pad, class: "axis" }));
  chart.append(el("path", { d: `${line} L${x(values.length - 1)},${height - pad} L${pad},${height - pad} Z`, class: "area" }));
  chart.append(el("path", { d: line, class: "line" }));
  chart.append(el("line", { x1: pad, x2: width - pad, y1: y(max), y2: y(max), class: "axis" }));
  chart.append(el("text", { x: width - pad, y: y(max) - 4, "text-anchor": "end", class: "value" }, `${max.toFixed(max < 10 ? 1 : 0)}/s`));
  container.replaceChildren(chart);
}

function seconds(le) {
  if (le === null) return "more";
  if (le < 0.001) return `${Math.round(le * 1e6)}µs`;
  if (le < 1) return `${+(le * 1000).toPrecision(3)}ms`;
  return `${le}s`;
}

/** Vertical bars of the requests per latency bucket (from Prometheus's cumulative counts). */
export function latencyHistogram(container, buckets) {
  const counts = buckets.map((b, i) => ({ le: b.le, n: b.count - (i ? buckets[i - 1].count : 0) }));
  const used = counts.map((c) => c.n > 0);
  const first = used.indexOf(true);
  if (first < 0) return empty(container, "No inference request yet.");
  const last = used.lastIndexOf(true);
  // The used buckets and a neighbour each side, widened to at least six for a readable scale.
  let lo = Math.max(0, first - 1), hi = Math.min(counts.length, last + 2);
  while (hi - lo < 6 && (lo > 0 || hi < counts.length)) {
    if (hi < counts.length) hi++;
    if (hi - lo < 6 && lo > 0) lo--;
  }
  const shown = counts.slice(lo, hi);
  const width = 300, height = 110, base = 92;
  const slot = width / shown.length;
  const max = Math.max(...shown.map((c) => c.n));
  const chart = svg(width, height, "latency histogram");
  chart.append(el("line", { x1: 0, x2: width, y1: base, y2: base, class: "axis" }));
  shown.forEach((c, i) => {
    const h = (c.n / max) * (base - 14);
    chart.append(el("rect", { x: i * slot + 2, y: base - h, width: slot - 4, height: h, rx: 2, class: "bar top" }));
    if (c.n) chart.append(el("text", { x: i * slot + slot / 2, y: base - h - 3, "text-anchor": "middle", class: "value" }, String(c.n)));
    chart.append(el("text", { x: i * slot + slot / 2, y: height - 3, "text-anchor": "middle", class: "tick" }, seconds(c.le)));
  });
  container.replaceChildren(chart);
}

/** One bar per feature: its population stability index, the threshold as a dashed line. */
export function driftBars(container, features, threshold, message) {
  if (!features) return empty(container, message);
  if (!features.length) return empty(container, "No feature to compare.");
  const rowH = 22, labelW = 120, valueW = 48, width = 300;
  const max = Math.max(threshold * 2, ...features.map((f) => f.psi || 0));
  const barW = width - labelW - valueW;
  const chart = svg(width, features.length * rowH + 6, "drift per feature");
  features.forEach((f, i) => {
    const y = i * rowH + 4;
    chart.append(el("text", { x: labelW - 6, y: y + 13, "text-anchor": "end", class: "label" }, f.name));
    chart.append(el("rect", {
      x: labelW, y: y + 2, width: Math.max(1, ((f.psi || 0) / max) * barW), height: rowH - 8, rx: 2,
      class: f.drifted ? "bar bad" : "bar top",
    }));
    chart.append(el("text", { x: width - 2, y: y + 13, "text-anchor": "end", class: "value" }, (f.psi ?? 0).toFixed(2)));
  });
  const tx = labelW + (threshold / max) * barW;
  chart.append(el("line", { x1: tx, x2: tx, y1: 0, y2: features.length * rowH + 6, class: "threshold" }));
  container.replaceChildren(chart);
}
