// The live wallboard: a snapshot from GET /api/wallboard, then each "wallboard"
// message of the WebSocket (docs/wallboard.md). Timers tick here between pushes.
"use strict";
(() => {
  const { api, el, pct, secs, time } = Cti;
  let snap = null, skew = 0, ws = null, retry = 1;
  const now = () => Date.now() / 1000 + skew;

  function take(s) {
    snap = s;
    skew = s.at - Date.now() / 1000;
    render();
    for (const a of s.alerts || []) alert_(a);
  }

  function alert_(a) {
    const box = document.getElementById("alerts");
    const d = el("div", { class: a.to }, `${time(snap.at)} ${a.queue}: ${a.figure.replaceAll("_", " ")} is ${a.to}` +
      ` (${a.figure.startsWith("service") || a.figure === "abandon_rate" ? pct(a.value) : a.value})`);
    box.prepend(d);
    while (box.children.length > 5) box.lastChild.remove();
  }

  function fig(q, name, label, value, text) {
    const colour = q.colours[name] || "";
    return el("div", { class: `fig ${colour}`, "data-queue": q.queue, "data-fig": name, "data-value": value ?? "" },
      el("b", {}, text), el("span", {}, label));
  }

  function render() {
    if (!snap) return;
    const t = now();
    const qs = document.getElementById("queues");
    qs.replaceChildren(...snap.queues.map((q) => {
      const waitingFor = q.waiting ? t - Math.min(...snap.waiting_calls.filter((w) => w.queue === q.queue &&
        !w.callback).map((w) => w.arrived_at).concat([t - (q.longest_waiting_s || 0)])) : null;
      return el("article", { class: "queue", "data-queue": q.queue },
        el("h3", {}, q.queue),
        el("div", { class: "policy", title: "service level policy" }, `Service level: ${q.policy}`),
        el("div", { class: "figs" },
          fig(q, "waiting", "waiting", q.waiting, String(q.waiting)),
          fig(q, "longest_waiting_s", "longest wait", q.longest_waiting_s, secs(waitingFor)),
          fig(q, "service_level", "SL today", q.today.service_level, pct(q.today.service_level)),
          fig(q, "service_level_15", "SL 15 min", q.last_15.service_level, pct(q.last_15.service_level)),
          fig(q, "service_level_30", "SL 30 min", q.last_30.service_level, pct(q.last_30.service_level)),
          fig(q, "asa_s", "ASA", q.today.asa_s, secs(q.today.asa_s)),
          fig(q, "aht_s", "AHT", q.today.aht_s, secs(q.today.aht_s)),
          fig(q, "abandon_rate", "abandon rate", q.today.abandon_rate, pct(q.today.abandon_rate)),
          fig(q, "offered", "offered", q.today.offered, String(q.today.offered))),
        el("div", { class: "counts", "data-queue": q.queue, "data-fig": "counts" },
          `offered ${q.today.offered} · answered ${q.today.answered} · abandoned ${q.today.abandoned}` +
          ` · timed out ${q.today.timed_out}`));
    }));
    const queues = snap.queues.map((q) => q.queue);
    document.querySelector("#waiting tbody").replaceChildren(...snap.waiting_calls.map((w) => el("tr", { "data-call": w.call_id },
      el("td", {}, w.number || w.call_id, w.callback ? " (callback)" : ""), el("td", {}, w.queue),
      el("td", {}, secs(t - w.arrived_at)), el("td", {}, String(w.priority)),
      el("td", {},
        el("select", { onchange: (e) => act("POST", `/api/supervisor/calls/${encodeURIComponent(w.call_id)}/move`,
          { queue: e.target.value }) }, el("option", {}, "move to…"), ...queues.filter((q) => q !== w.queue).map((q) => el("option", { value: q }, q))),
        el("button", { onclick: () => act("POST", `/api/supervisor/calls/${encodeURIComponent(w.call_id)}/move`,
          { priority: w.priority + 10 }) }, "priority +10")))));
    document.querySelector("#abandoned tbody").replaceChildren(...snap.abandoned.map((a) => el("tr", { "data-call": a.call_id },
      el("td", {}, a.number || "unknown", a.name ? ` ${a.name}` : ""), el("td", {}, a.queue),
      el("td", {}, time(a.left_at)), el("td", {}, secs(a.waited_s)),
      el("td", {}, a.callback ? el("span", {}, `call-back ${a.callback}`) :
        el("button", { disabled: a.number ? undefined : "", onclick: () => act("POST", "/api/supervisor/callbacks", { call_id: a.call_id }) }, "Call back")))));
    const counts = Object.entries(snap.agent_counts).filter(([, n]) => n).map(([s, n]) => `${n} ${s.replace("_", " ")}`);
    document.getElementById("agent-counts").textContent = `${counts.join(", ")} · occupancy today ${pct(snap.occupancy_today)}`;
    document.querySelector("#agents tbody").replaceChildren(...snap.agents.map((a) => el("tr", { "data-agent": a.agent_id },
      el("td", {}, a.name), el("td", {}, el("span", { class: `state ${a.state}` }, a.state.replace("_", " ")), a.reason && a.state === "not_ready" ? ` ${a.reason}` : "",
        a.pending ? ` → ${a.pending}` : ""),
      el("td", {}, a.since > 0 ? secs(t - a.since) : "–"), el("td", {}, a.call_id ? `${a.call_id} / ${a.queue}` : ""),
      el("td", {}, ...(a.state === "on_call" ? ["listen", "whisper", "barge"].map((m) => el("button", { onclick: () => spy(a.agent_id, m) }, m)) : []),
        ...(a.state !== "logged_out" ? [
          el("button", { onclick: () => act("POST", `/api/supervisor/agents/${encodeURIComponent(a.agent_id)}/state`, { action: "not_ready", reason: "supervisor" }) }, "not ready"),
          el("button", { onclick: () => act("POST", `/api/supervisor/agents/${encodeURIComponent(a.agent_id)}/state`, { action: "logout" }) }, "log out")] : [])))));
  }

  async function act(method, path, body) {
    try { await api(method, path, body); } catch (e) { alert_({ queue: "action", figure: e.message, to: "red", value: "" }); }
  }
  function spy(agent, mode) {   // rings the supervisor's own phone (their user's agent id)
    act("POST", `/api/supervisor/agents/${encodeURIComponent(agent)}/spy`, { mode });
  }

  function connect() {
    const status = document.getElementById("status");
    ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: Cti.token() }));
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === "hello") { status.textContent = "live"; status.className = "status live"; retry = 1; }
      else if (msg.type === "wallboard") take(msg);
    };
    ws.onclose = (e) => {
      status.textContent = "offline"; status.className = "status";
      if (e.code === 4401) return;
      setTimeout(connect, retry * 1000); retry = Math.min(retry * 2, 30);
    };
  }

  Cti.start(async () => {
    take(await api("GET", "/api/wallboard"));
    connect();
    setInterval(render, 1000);
  });
})();
