// The campaign board on the wallboard (docs/dialer.md, "The campaign board"): each outbound
// campaign's state, today's dialed, connected and abandoned calls, its abandonment over
// 24 hours and 30 days against its cap, leads left, agents on its queue, calls in flight,
// the dial level at the runner's last tick (why, and its measured inputs, on hover);
// start, pause and stop each, and pause every campaign at once (the emergency stop).
// Polled from GET /api/campaigns/board every few seconds while the board is shown; the
// section stays hidden when there is no campaign.
"use strict";
(() => {
  const { api, el, pct } = Cti;
  const EVERY_MS = 5000;
  let busy = false;

  function feedback(text, ok) {
    const out = document.getElementById("campaigns-feedback");
    out.textContent = text;
    out.className = `feedback ${ok ? "ok" : "failed"}`;
  }

  async function setState(c, state) {
    try {
      await api("POST", `/api/campaigns/${c.campaign_id}/state`, { state });
      feedback(`${c.name}: ${state}.`, true);
    } catch (e) { feedback(`${c.name}: not ${state}: ${e.message}`, false); }
    await refresh();
  }

  function rate(v, cap) {
    const cell = el("td", { class: v > cap ? "over" : "" }, pct(v));
    if (v > cap) cell.title = "over the cap: the dialer dials progressively only";
    return cell;
  }

  // The dial level at the runner's last tick, with why and what it measured on hover.
  function dialLevel(c) {
    const text = c.dial_level === null || c.dial_level === undefined ? "–" : c.dial_level.toFixed(2);
    const cell = el("td", { class: "dial-level" }, text);
    if (c.pacing_reason) {
      cell.title = `${c.pacing_reason}; ${c.free_for_campaign} free for it; measured: ` +
        `${pct(c.measured_live_rate)} answered by a person, ${c.measured_answer_delay_s} s to answer, ` +
        `${c.measured_handle_s} s handled`;
    }
    return cell;
  }

  function row(c) {
    const start = el("button", { type: "button", "data-action": "start", onclick: () => setState(c, "running") }, "Start");
    const pause = el("button", { type: "button", "data-action": "pause", onclick: () => setState(c, "paused") }, "Pause");
    const stop = el("button", { type: "button", "data-action": "stop", onclick: () => setState(c, "stopped") }, "Stop");
    start.disabled = c.state === "running";
    pause.disabled = c.state !== "running";
    stop.disabled = c.state === "stopped";
    start.setAttribute("aria-label", `Start ${c.name}`);
    pause.setAttribute("aria-label", `Pause ${c.name}`);
    stop.setAttribute("aria-label", `Stop ${c.name}`);
    return el("tr", { "data-campaign": String(c.campaign_id), class: c.over_cap ? "over-cap" : "" },
      el("td", {}, c.name, el("span", { class: "muted" }, ` ${c.mode}`)),
      el("td", { class: `cstate ${c.state}` }, c.state),
      el("td", {}, String(c.dialed)), el("td", {}, String(c.connected)), el("td", {}, pct(c.connect_rate)),
      el("td", {}, c.in_flight === null ? "–" : String(c.in_flight)), dialLevel(c), el("td", {}, String(c.abandoned)),
      rate(c.abandon_24h, c.abandon_cap), rate(c.abandon_30d, c.abandon_cap),
      el("td", {}, pct(c.abandon_cap)), el("td", {}, String(c.leads_left)),
      el("td", {}, c.agents === null ? "–" : String(c.agents)),
      el("td", {}, start, " ", pause, " ", stop));
  }

  async function refresh() {
    if (busy || document.getElementById("board").hidden || !Cti.token()) return;
    busy = true;
    try {
      const b = await api("GET", "/api/campaigns/board");
      const box = document.getElementById("campaigns-box");
      box.hidden = b.campaigns.length === 0;
      document.getElementById("campaigns-day").textContent = `today since ${new Date(b.day_start).toLocaleString()}`;
      // Keep the focus on a button across the redraw (keyboard users start and pause in a row).
      const focused = document.activeElement && document.activeElement.closest("#campaigns tr");
      const key = focused && focused.dataset.campaign, action = document.activeElement?.dataset?.action;
      document.querySelector("#campaigns tbody").replaceChildren(...b.campaigns.map(row));
      if (key && action) document.querySelector(`#campaigns tr[data-campaign="${key}"] [data-action="${action}"]`)?.focus();
    } catch (e) {
      if (e.status !== 401 && e.status !== 403) feedback(`Campaigns could not load: ${e.message}`, false);
    } finally { busy = false; }
  }

  async function stopAll() {
    try {
      const r = await api("POST", "/api/campaigns/emergency-stop");
      feedback(r.paused.length ? `Paused every running campaign (${r.paused.length}).` : "No campaign was running.", true);
    } catch (e) { feedback(`Not paused: ${e.message}`, false); }
    await refresh();
  }

  document.getElementById("campaigns-stop-all").addEventListener("click", stopAll);
  setInterval(refresh, EVERY_MS);
  // The first look as soon as the board shows (it is hidden until the login is checked).
  const first = setInterval(() => {
    if (!document.getElementById("board").hidden) { clearInterval(first); refresh(); }
  }, 200);
})();
