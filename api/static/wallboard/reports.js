// Interval reports: the table, charts of offered/answered with service level, CSV export, an agent timeline;
// the figures per channel (voice, chat, e-mail, message) over the days.
"use strict";
(() => {
  const { api, el, pct, secs } = Cti;
  const form = document.getElementById("ask");
  const today = new Date().toISOString().slice(0, 10);
  form.start.value = form.end.value = today;
  document.getElementById("timeline").day.value = today;

  function params() {
    const f = new FormData(form);
    const p = new URLSearchParams({ start: f.get("start"), end: f.get("end"), granularity: f.get("granularity") });
    const who = f.get("who").trim();
    if (f.get("kind") === "channels") return ["channels", p];      // every channel: no queue or agent
    if (who) p.set(f.get("kind") === "queues" ? "queue" : "agent", who);
    return [f.get("kind"), p];
  }

  let zone;                    // the reports' time zone (CTI_TIMEZONE), for the timeline's axis

  async function show() {
    const [kind, p] = params();
    document.getElementById("error").textContent = "";
    let data;
    try { data = await api("GET", `/api/reports/${kind}?${p}`); } catch (e) { document.getElementById("error").textContent = e.message; return; }
    zone = data.timezone;
    document.getElementById("sources").textContent = data.intervals
      ? `${data.timezone}; 15-minute intervals from rollups: ${data.intervals.rollup}, read from the calls: ${data.intervals.raw}`
      : `${data.timezone}; every call and task of the days, by channel`;
    const rows = data.rows;
    const cols = kind === "channels"
      ? [["interval", (r) => r.local_start.replace("T", " ").slice(0, 16)], ["channel", (r) => r.channel],
         ["offered", (r) => r.offered], ["answered", (r) => r.answered],
         ["abandoned", (r) => r.abandoned], ["timed out", (r) => r.timed_out], ["waiting", (r) => r.waiting],
         ["wait p50", (r) => secs(r.wait_p50_s)], ["wait p90", (r) => secs(r.wait_p90_s)], ["AHT", (r) => secs(r.aht_s)]]
      : kind === "queues"
      ? [["queue", (r) => r.queue], ["interval", (r) => r.local_start.replace("T", " ").slice(0, 16)], ["offered", (r) => r.offered],
         ["answered", (r) => r.answered], ["abandoned", (r) => r.abandoned], ["timed out", (r) => r.timed_out],
         ["SL", (r) => pct(r.service_level)], ["ASA", (r) => secs(r.asa_s)], ["AHT", (r) => secs(r.aht_s)],
         ["abandon rate", (r) => pct(r.abandon_rate)], ["longest wait", (r) => secs(r.longest_wait_s)]]
      : [["agent", (r) => r.agent], ["interval", (r) => r.local_start.replace("T", " ").slice(0, 16)], ["answered", (r) => r.answered],
         ["AHT", (r) => secs(r.aht_s)], ["logged in", (r) => secs(r.logged_in_s)], ["occupancy", (r) => pct(r.occupancy)],
         ["utilization", (r) => pct(r.utilization)],
         ["not ready", (r) => Object.entries(r.not_ready_by_reason).map(([k, v]) => `${k || "-"} ${secs(v)}`).join(", ")]];
    document.querySelector("#rows thead").replaceChildren(el("tr", {}, ...cols.map(([h]) => el("th", {}, h))));
    document.querySelector("#rows tbody").replaceChildren(...rows.map((r) => el("tr", {}, ...cols.map(([, f]) => el("td", {}, String(f(r)))))));
    const charts = document.getElementById("charts");
    charts.replaceChildren();
    const groups = {};
    if (kind !== "channels") for (const r of rows) (groups[r.queue ?? r.agent] ??= []).push(r);
    const step = { "15min": 900, "30min": 1800, "60min": 3600, day: 86400, week: 604800 }[p.get("granularity")] || 3600;
    const opt = { tz: data.timezone, step };
    for (const [name, rs] of Object.entries(groups).slice(0, 8)) {
      const xs = rs.map((r) => r.start);
      if (kind === "queues") {
        charts.append(Charts.chart(`${name}: offered and answered calls`, xs,
          [{ label: "offered", values: rs.map((r) => r.offered), colour: "#7aa2e3", bars: true },
           { label: "answered", values: rs.map((r) => r.answered), colour: "#2a7d3b" }], opt));
        charts.append(Charts.chart(`${name}: service level`, xs,
          [{ label: "service level", values: rs.map((r) => r.service_level), colour: "#1f5fbf" }],
          { ...opt, percent: true, height: 180 }));
      } else {
        charts.append(Charts.chart(`${name}: occupancy and utilization`, xs,
          [{ label: "occupancy", values: rs.map((r) => r.occupancy), colour: "#1f5fbf" },
           { label: "utilization", values: rs.map((r) => r.utilization), colour: "#c0392b" }],
          { ...opt, percent: true, height: 180 }));
      }
    }
    const csv = document.getElementById("csv");
    p.set("format", "csv");
    csv.href = `/api/reports/${kind}?${p}`;
  }

  document.getElementById("csv").addEventListener("click", async (e) => {
    e.preventDefault();
    const [kind, p] = params();
    p.set("format", "csv");
    const r = await fetch(`/api/reports/${kind}?${p}`, { headers: { Authorization: `Bearer ${Cti.token()}` } });
    const blob = await r.blob();
    const a = el("a", { href: URL.createObjectURL(blob), download: `${kind}-${p.get("start")}-${p.get("end")}.csv` });
    document.body.append(a); a.click(); a.remove();
  });

  form.addEventListener("submit", (e) => { e.preventDefault(); show(); });
  const tl = document.getElementById("timeline");
  tl.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = await api("GET", `/api/reports/agents/${encodeURIComponent(tl.agent.value)}/timeline?day=${tl.day.value}`);
    const start = data.spans.length ? Math.min(...data.spans.map((s) => s.start)) : 0;
    const end = data.spans.length ? Math.max(...data.spans.map((s) => s.end ?? Date.now() / 1000)) : 1;
    document.getElementById("timeline-chart").replaceChildren(data.spans.length
      ? Charts.timeline(`${data.agent_id} on ${data.day}`, data.spans, start, end, { tz: zone })
      : el("p", {}, `No state changes of ${data.agent_id} on ${data.day}.`));
  });
  Cti.start(show);
})();
