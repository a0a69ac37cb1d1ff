// The staffing page: forecast and required agents per interval (/api/reports/staffing).
"use strict";
(() => {
  const { api, el, secs } = Cti;
  const form = document.getElementById("ask");
  form.day.value = new Date().toISOString().slice(0, 10);
  const STEP = { "15min": 900, "30min": 1800, "60min": 3600 };
  let zone;                    // CTI_TIMEZONE, for the chart's time axis
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const p = new URLSearchParams();
    for (const k of ["queue", "day", "granularity", "weeks", "shrinkage", "patience_s"]) if (f.get(k)) p.set(k, f.get(k));
    let d;
    try { d = await api("GET", `/api/reports/staffing?${p}`); document.getElementById("error").textContent = ""; }
    catch (x) { document.getElementById("error").textContent = x.message; return; }
    document.getElementById("policy").textContent = `Target: ${d.policy}`;
    const queue = form.queue.selectedOptions[0]?.textContent || d.queue;
    // No call in the weeks read: say so, rather than a plan of zeros.
    const empty = !d.rows.some((r) => r.forecast_calls > 0 || (r.actual_calls ?? 0) > 0);
    const note = document.getElementById("empty");
    note.hidden = !empty;
    note.textContent = empty ? `No history yet for ${queue}: no call in the ${f.get("weeks")} week(s) before ${d.day}, ` +
      "so there is nothing to forecast from." : "";
    document.getElementById("rows").hidden = empty;
    document.getElementById("charts").replaceChildren(...empty ? [] : [Charts.chart(
      `${queue}: scheduled agents and agents logged in`, d.rows.map((r) => r.start),
      [{ label: "scheduled (Erlang C, with shrinkage)", values: d.rows.map((r) => r.scheduled_erlang_c), colour: "#7aa2e3", bars: true },
       { label: "logged in", values: d.rows.map((r) => r.agents_logged_in ?? null), colour: "#c0392b" }],
      { step: STEP[p.get("granularity")] || 1800, tz: zone })]);
    document.querySelector("#rows tbody").replaceChildren(...empty ? [] : d.rows.map((r) => el("tr", {},
      ...[r.local_start.slice(11, 16), r.forecast_calls, secs(r.forecast_aht_s), r.traffic_erlangs, r.agents_erlang_c,
          r.scheduled_erlang_c, r.agents_erlang_a ?? "–", r.actual_calls ?? "–", r.agents_logged_in ?? "–"].map((v) => el("td", {}, String(v))))));
  });
  // The queues to pick from: those of the live board.
  Cti.start(async () => {
    const board = await api("GET", "/api/wallboard");
    const names = board.queue_names || {};
    zone = board.timezone;
    form.queue.replaceChildren(...board.queues.map((q) => el("option", { value: q.queue }, names[q.queue] || q.queue)));
  });
})();
