// The reports' and staffing plan's charts, drawn by uPlot (vendor/, MIT licence):
// time on the x axis (in the reports' time zone), a legend with each series'
// colour and its value under the cursor, and points on the lines so that a
// series of a single interval shows.
"use strict";
const Charts = (() => {
  const { el } = Cti;
  const num = (v) => v === null || v === undefined ? "–" : String(Math.round(v * 10) / 10);
  const pct = (v) => v === null || v === undefined ? "–" : `${Math.round(v * 1000) / 10}%`;
  const zoned = (tz) => tz ? { tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), tz) } : {};

  function frame(title) {
    return el("figure", { class: "chart" }, el("figcaption", {}, title));
  }

  // xs: interval starts (Unix seconds); series: [{label, values, colour, bars}].
  function chart(title, xs, series, { width = 900, height = 240, percent = false, tz, step = 3600 } = {}) {
    const fig = frame(title);
    const f = percent ? pct : num;
    const opts = {
      width, height, ...zoned(tz),
      scales: {
        // One interval alone still gets a span of time around it.
        x: { time: true, range: (u, lo, hi) => [lo - step / 2, hi + step / 2] },
        y: { range: percent ? [0, 1] : (u, lo, hi) => [0, Math.max(1, hi ?? 1) * 1.1] },
      },
      axes: [{}, { values: (u, ticks) => ticks.map(f), size: 56 }],
      series: [{ label: "time" }, ...series.map((s) => ({
        label: s.label, stroke: s.colour, width: 2, value: (u, v) => f(v),
        ...(s.bars ? { fill: `${s.colour}99`, paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }
                   : { points: { show: true, size: 7, fill: s.colour } }),
      }))],
    };
    fig.uplot = new uPlot(opts, [xs, ...series.map((s) => s.values)], fig);
    return fig;
  }

  const STATES = [["available", "available"], ["on_call", "on call"], ["reserved", "reserved"], ["wrapup", "wrap-up"],
    ["not_ready", "not ready"], ["logged_out", "logged out"]];
  const COLOURS = { available: "#8fd19e", on_call: "#7aa2e3", reserved: "#b9a3f0", wrapup: "#f2d16b",
    not_ready: "#ef8f8f", logged_out: "#cccccc" };
  const clock = (t, tz) => new Date(t * 1000).toLocaleTimeString([], { timeZone: tz, hour: "2-digit", minute: "2-digit" });

  // An agent's state spans from ``start`` to ``end`` (Unix seconds), on a time axis;
  // the legend names each state's colour, the line under it the span at the cursor.
  function timeline(title, spans, start, end, { width = 900, tz } = {}) {
    const fig = frame(title);
    const at = el("p", { class: "muted timeline-at" }, "Point at the timeline for a state and its times.");
    const words = Object.fromEntries(STATES);
    const opts = {
      width, height: 110, ...zoned(tz), legend: { show: false },
      scales: { x: { time: true, range: [start, end] }, y: { range: [0, 1] } },
      axes: [{}, { show: false }],
      series: [{}, { stroke: "transparent", points: { show: false } }],
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx, top = u.bbox.top + u.bbox.height * 0.15, h = u.bbox.height * 0.7;
          for (const sp of spans) {
            const x1 = u.valToPos(Math.max(start, sp.start), "x", true);
            const x2 = u.valToPos(Math.min(end, sp.end ?? Date.now() / 1000), "x", true);
            ctx.fillStyle = COLOURS[sp.state] || "#999";
            ctx.fillRect(x1, top, Math.max(1, x2 - x1), h);
          }
        }],
        setCursor: [(u) => {
          if (u.cursor.left === undefined || u.cursor.left < 0) return;
          const t = u.posToVal(u.cursor.left, "x");
          const sp = spans.find((s) => s.start <= t && t < (s.end ?? Date.now() / 1000));
          at.textContent = sp ? `${words[sp.state] || sp.state}${sp.reason ? ` (${sp.reason})` : ""}: ` +
            `${clock(sp.start, tz)}–${sp.end ? clock(sp.end, tz) : "now"}, ${Math.round(sp.seconds / 60)} min` : "";
        }],
      },
    };
    fig.uplot = new uPlot(opts, [[start, end], [null, null]], fig);
    fig.append(el("ul", { class: "legend" }, ...STATES.map(([k, w]) => el("li", {}, el("span", { class: `swatch ${k}` }), w))), at);
    return fig;
  }
  return { chart, timeline };
})();
