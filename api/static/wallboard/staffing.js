// The staffing page: forecast and required agents per interval (/api/reports/staffing).
"use strict";
(() => {
  const { api, el, secs } = Cti;
  const form = document.getElementById("ask");
  form.day.value = new Date().toISOString().slice(0, 10);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const p = new URLSearchParams();
    for (const k of ["queue", "day", "granularity", "weeks", "shrinkage", "patience_s"]) if (f.get(k)) p.set(k, f.get(k));
    let d;
    try { d = await api("GET", `/api/reports/staffing?${p}`); document.getElementById("error").textContent = ""; }
    catch (x) { document.getElementById("error").textContent = x.message; return; }
    document.getElementById("policy").textContent = `Target: ${d.policy}`;
    const labels = d.rows.map((r) => r.local_start.slice(11, 16));
    document.getElementById("charts").replaceChildren(Charts.chart(`${d.queue}: scheduled agents (bars) and agents logged in (line)`, labels,
      [{ label: "scheduled", values: d.rows.map((r) => r.scheduled_erlang_c) },
       { label: "logged in", values: d.rows.map((r) => r.agents_logged_in), colour: "#c0392b" }]));
    document.querySelector("#rows tbody").replaceChildren(...d.rows.map((r) => el("tr", {},
      ...[r.local_start.slice(11, 16), r.forecast_calls, secs(r.forecast_aht_s), r.traffic_erlangs, r.agents_erlang_c,
          r.scheduled_erlang_c, r.agents_erlang_a ?? "–", r.actual_calls ?? "–", r.agents_logged_in ?? "–"].map((v) => el("td", {}, String(v))))));
  });
  Cti.start(() => {});
})();
