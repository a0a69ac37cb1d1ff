// Small SVG charts drawn here (no library, no external service).
"use strict";
const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs = {}, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  // series: [{label, values: [number|null], colour}], labels: [string]; bars for the first, lines for the rest.
  function chart(title, labels, series, { width = 900, height = 220, max } = {}) {
    const pad = { l: 44, r: 10, t: 22, b: 34 };
    const w = width - pad.l - pad.r, h = height - pad.t - pad.b;
    const all = series.flatMap((x) => x.values).filter((v) => v !== null && v !== undefined);
    const top = max ?? Math.max(1, ...all);
    const svg = s("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
    svg.append(s("text", { x: pad.l, y: 14 }, title));
    for (let i = 0; i <= 4; i++) {
      const y = pad.t + h - (h * i) / 4;
      svg.append(s("line", { x1: pad.l, x2: pad.l + w, y1: y, y2: y, stroke: "#e3e5e9" }));
      const v = (top * i) / 4;
      svg.append(s("text", { x: 2, y: y + 4 }, max === 1 ? `${Math.round(v * 100)}%` : v >= 10 ? v.toFixed(0) : v.toFixed(1)));
    }
    const n = Math.max(1, labels.length), step = w / n;
    const [bars, ...lines] = series;
    bars.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const bh = (h * v) / top;
      svg.append(s("rect", { x: pad.l + i * step + step * 0.15, y: pad.t + h - bh, width: Math.max(1, step * 0.7), height: bh,
        fill: bars.colour || "#7aa2e3" }, undefined));
    });
    for (const line of lines) {
      const pts = line.values.map((v, i) => v === null || v === undefined ? null :
        `${pad.l + i * step + step / 2},${pad.t + h - (h * v) / top}`).filter(Boolean);
      if (pts.length) svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: line.colour || "#c0392b", "stroke-width": 2 }));
    }
    const every = Math.ceil(n / 12);
    labels.forEach((l, i) => { if (i % every === 0) svg.append(s("text", { x: pad.l + i * step, y: height - 18 }, l)); });
    series.forEach((x, i) => svg.append(s("text", { x: pad.l + 10 + i * 160, y: height - 4, fill: x.colour || "#334" }, `■ ${x.label}`)));
    return svg;
  }
  const COLOURS = { available: "#8fd19e", on_call: "#7aa2e3", reserved: "#b9a3f0", wrapup: "#f2d16b", not_ready: "#ef8f8f", logged_out: "#cccccc" };
  function timeline(title, spans, start, end, { width = 900 } = {}) {
    const svg = s("svg", { class: "chart", width, height: 70, role: "img", "aria-label": title });
    svg.append(s("text", { x: 4, y: 14 }, title));
    const scale = (t) => 4 + ((width - 8) * (t - start)) / (end - start);
    for (const sp of spans) {
      const x1 = scale(Math.max(start, sp.start)), x2 = scale(Math.min(end, sp.end ?? Date.now() / 1000));
      const r = s("rect", { x: x1, y: 22, width: Math.max(0.5, x2 - x1), height: 26, fill: COLOURS[sp.state] || "#999" });
      r.append(s("title", {}, `${sp.state}${sp.reason ? " " + sp.reason : ""}: ${Math.round(sp.seconds)} s`));
      svg.append(r);
    }
    Object.entries(COLOURS).forEach(([k, c], i) => svg.append(s("text", { x: 4 + i * 110, y: 64, fill: c === "#cccccc" ? "#666" : c }, `■ ${k}`)));
    return svg;
  }
  return { chart, timeline };
})();
