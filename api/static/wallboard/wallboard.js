// The live wallboard: a snapshot from GET /api/wallboard, then each "wallboard"
// message of the WebSocket (docs/wallboard.md). Timers tick here between pushes.
//
// Rows and tiles are updated in place, by key (queue, call id, agent id): a
// control keeps its focus and an open list stays open across updates, and the row
// under the pointer (or holding the focus) is never moved, so a click lands on the
// row it was aimed at; the others take their new places around it.
"use strict";
(() => {
  const { api, el, pct, secs, time, stateWords } = Cti;
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
    const text = a.text || `${a.queue}: ${a.figure.replaceAll("_", " ")} is ${a.to}`;
    box.prepend(el("div", { class: a.to }, `${time(snap.at)} ${text}`));
    while (box.children.length > 5) box.lastChild.remove();
  }

  // -- feedback of the live actions ---------------------------------------------------
  async function act(what, method, path, body) {
    const out = document.getElementById("feedback");
    out.className = "feedback"; out.textContent = `${what}…`;
    try {
      const r = await api(method, path, body);
      out.className = "feedback ok";
      out.textContent = `${what}: done${r && r.detail ? ` (${r.detail})` : ""}.`;
    } catch (e) {
      out.className = "feedback failed";
      out.textContent = `${what}: failed: ${e.message}.`;
    }
  }

  // -- names ---------------------------------------------------------------------------
  const queueName = (id) => (snap.queue_names || {})[id] || id || "";
  // A caller in words: name and number (a waiting call and an agent's call carry
  // ``caller_name``, an abandoned one ``name``).
  const callerOf = (x) => ["caller_name" in x ? x.caller_name : x.name, x.number].filter(Boolean).join(" ") || "unknown caller";

  // -- in-place updates --------------------------------------------------------------------
  const setText = (node, text) => { if (node.textContent !== text) node.textContent = text; };
  const setAttr = (node, k, v) => { if (node.getAttribute(k) !== v) node.setAttribute(k, v); };
  // Pinned: under the pointer, or holding an open list or the keyboard's focus (not a
  // button merely clicked: that one may move once the pointer leaves).
  const pinned = (row) => row.matches(":hover") || !!row.querySelector("select:focus, :focus-visible");

  // Make ``parent``'s children the rows of ``items`` (keyed by ``key``), in order; ``make``
  // builds a new row, ``update`` refreshes one. Rows gone are removed; a pinned row stays
  // at its index while the others are placed around it.
  function keyed(parent, items, key, make, update) {
    const have = new Map([...parent.children].map((r) => [r.dataset.key, r]));
    const rows = items.map((it) => {
      const k = String(key(it));
      let r = have.get(k);
      if (!r) { r = make(it); r.dataset.key = k; }
      have.delete(k);
      update(r, it);
      return r;
    });
    for (const r of have.values()) r.remove();
    const old = [...parent.children];
    const pin = old.find(pinned);
    if (pin && rows.includes(pin)) {
      rows.splice(rows.indexOf(pin), 1);
      rows.splice(Math.min(old.indexOf(pin), rows.length), 0, pin);
    }
    rows.forEach((r, i) => {
      if (parent.children[i] !== r) parent.insertBefore(r, parent.children[i] || null);
    });
  }

  // -- queues ----------------------------------------------------------------------------
  const FIGS = [["waiting", "waiting"], ["longest_waiting_s", "longest wait"], ["service_level", "SL today"],
    ["service_level_15", "SL 15 min"], ["service_level_30", "SL 30 min"], ["asa_s", "ASA"], ["aht_s", "AHT"],
    ["abandon_rate", "abandon rate"], ["offered", "offered"]];

  function makeQueue(q) {
    return el("article", { class: "queue", "data-queue": q.queue },
      el("h3", {}), el("div", { class: "policy" }),
      el("div", { class: "figs" }, ...FIGS.map(([name, label]) =>
        el("div", { class: "fig", "data-queue": q.queue, "data-fig": name }, el("b"), el("span", {}, label)))),
      el("div", { class: "counts", "data-queue": q.queue, "data-fig": "counts" }));
  }

  function updateQueue(art, q, t) {
    setText(art.querySelector("h3"), queueName(q.queue));
    setText(art.querySelector(".policy"), `Service level: ${q.policy}`);
    const oldest = snap.waiting_calls.filter((w) => w.queue === q.queue && !w.callback).map((w) => w.arrived_at);
    const waitingFor = q.waiting ? t - Math.min(...oldest.concat([t - (q.longest_waiting_s || 0)])) : null;
    const values = {
      waiting: [q.waiting, String(q.waiting)], longest_waiting_s: [q.longest_waiting_s, secs(waitingFor)],
      service_level: [q.today.service_level, pct(q.today.service_level)],
      service_level_15: [q.last_15.service_level, pct(q.last_15.service_level)],
      service_level_30: [q.last_30.service_level, pct(q.last_30.service_level)],
      asa_s: [q.today.asa_s, secs(q.today.asa_s)], aht_s: [q.today.aht_s, secs(q.today.aht_s)],
      abandon_rate: [q.today.abandon_rate, pct(q.today.abandon_rate)], offered: [q.today.offered, String(q.today.offered)],
    };
    for (const f of art.querySelectorAll(".fig")) {
      const name = f.dataset.fig, [value, text] = values[name];
      setAttr(f, "class", `fig ${q.colours[name] || ""}`.trim());
      setAttr(f, "data-value", value === null || value === undefined ? "" : String(value));
      setText(f.querySelector("b"), text);
    }
    setText(art.querySelector(".counts"), `offered ${q.today.offered} · answered ${q.today.answered}` +
      ` · abandoned ${q.today.abandoned} · timed out ${q.today.timed_out}`);
  }

  // -- task queues (chat, e-mail, message: the task router's figures) -------------------
  const CHANNELS = { chat: "Chat", email: "E-mail", message: "Message" };
  const TASK_CELLS = ["channel", "queue", "waiting", "longest", "open", "offered", "answered", "abandoned", "overflowed", "sl"];

  function makeTaskQueue(q) {
    return el("tr", { "data-queue": q.queue, "data-channel": q.channel },
      ...TASK_CELLS.map((c) => el("td", { class: c })));
  }

  function updateTaskQueue(row, q) {
    const cell = (c) => row.querySelector(`td.${c}`);
    setAttr(row, "data-channel", q.channel);
    setText(cell("channel"), CHANNELS[q.channel] || q.channel);
    setText(cell("queue"), q.name || q.queue);
    setText(cell("waiting"), String(q.waiting));
    setText(cell("longest"), secs(q.longest_waiting_s));
    setText(cell("open"), String(q.open));
    setText(cell("offered"), String(q.today.offered));
    setText(cell("answered"), String(q.today.answered));
    setText(cell("abandoned"), String(q.today.abandoned));
    setText(cell("overflowed"), String(q.today.overflowed ?? 0));
    setText(cell("sl"), pct(q.today.service_level));
  }

  // -- waiting calls ---------------------------------------------------------------------
  function makeWaiting(w) {
    const id = encodeURIComponent(w.call_id);
    const row = el("tr", { "data-call": w.call_id }, el("td", { class: "caller" }), el("td", { class: "queue" }),
      el("td", { class: "waited" }), el("td", { class: "priority" }));
    const move = el("select", { class: "move", onchange: async (e) => {
      const to = e.target.value;
      if (!to) return;
      await act(`Move the call of ${callerOf(row.call)} to ${queueName(to)}`, "POST", `/api/supervisor/calls/${id}/move`, { queue: to });
      e.target.value = "";
    } });
    const up = el("button", { class: "raise", onclick: () => act(`Priority +10 for the call of ${callerOf(row.call)}`,
      "POST", `/api/supervisor/calls/${id}/move`, { priority: row.call.priority + 10 }) }, "priority +10");
    row.append(el("td", {}, move, " ", up));
    return row;
  }

  function updateWaiting(row, w, t) {
    row.call = w;
    const who = callerOf(w);
    setText(row.querySelector(".caller"), who + (w.callback ? ` (call-back${w.callback.status ? " " + w.callback.status : ""})` : ""));
    setText(row.querySelector(".queue"), queueName(w.queue));
    setText(row.querySelector(".waited"), secs(t - w.arrived_at));
    setText(row.querySelector(".priority"), String(w.priority));
    const move = row.querySelector("select.move");
    setAttr(move, "aria-label", `Move the call of ${who} to another queue`);
    setAttr(row.querySelector("button.raise"), "aria-label", `Raise the priority of the call of ${who} by 10`);
    const targets = snap.queues.filter((q) => q.queue !== w.queue);
    const sig = targets.map((q) => `${q.queue}=${queueName(q.queue)}`).join(",");
    if (move.dataset.sig !== sig && document.activeElement !== move) {
      move.dataset.sig = sig;
      move.replaceChildren(el("option", { value: "" }, "move to…"), ...targets.map((q) => el("option", { value: q.queue }, queueName(q.queue))));
    }
  }

  // -- abandoned callers --------------------------------------------------------------------
  function makeAbandoned(a) {
    const row = el("tr", { "data-call": a.call_id }, el("td", { class: "caller" }), el("td", { class: "queue" }),
      el("td", { class: "left" }), el("td", { class: "waited" }));
    const back = el("button", { class: "callback", onclick: () => act(`Call back ${callerOf(row.call)}`,
      "POST", "/api/supervisor/callbacks", { call_id: a.call_id }) }, "Call back");
    row.append(el("td", {}, el("span", { class: "cbstatus" }), back));
    return row;
  }

  function updateAbandoned(row, a) {
    row.call = a;
    const who = callerOf(a);
    setText(row.querySelector(".caller"), who);
    setText(row.querySelector(".queue"), queueName(a.queue));
    setText(row.querySelector(".left"), time(a.left_at));
    setText(row.querySelector(".waited"), secs(a.waited_s));
    setText(row.querySelector(".cbstatus"), a.callback ? `call-back ${a.callback}` : "");
    const back = row.querySelector("button.callback");
    back.hidden = !!a.callback;
    back.disabled = !a.number;
    setAttr(back, "aria-label", a.number ? `Call back ${who}` : "Call back: no number known");
  }

  // -- agents ----------------------------------------------------------------------------
  function makeAgent(a) {
    const id = encodeURIComponent(a.agent_id);
    const row = el("tr", { "data-agent": a.agent_id }, el("td", { class: "name" }),
      el("td", {}, el("span", { class: "state" }), el("span", { class: "reason" })), el("td", { class: "for" }),
      el("td", { class: "call" }));
    const spy = (m) => el("button", { class: `spy ${m}`, onclick: () =>      // rings the supervisor's own phone
      act(`${m[0].toUpperCase()}${m.slice(1)} to ${row.agent.name}`, "POST", `/api/supervisor/agents/${id}/spy`, { mode: m }) }, m);
    row.append(el("td", {}, spy("listen"), spy("whisper"), spy("barge"),
      el("button", { class: "notready", onclick: () => act(`Set ${row.agent.name} not ready`, "POST",
        `/api/supervisor/agents/${id}/state`, { action: "not_ready", reason: "supervisor" }) }, "not ready"),
      el("button", { class: "logout", onclick: () => act(`Log ${row.agent.name} out`, "POST",
        `/api/supervisor/agents/${id}/state`, { action: "logout" }) }, "log out")));
    return row;
  }

  function updateAgent(row, a, t) {
    row.agent = a;
    setText(row.querySelector(".name"), a.name || a.agent_id);
    const st = row.querySelector(".state");
    setAttr(st, "class", `state ${a.state}`);
    setText(st, stateWords(a.state));
    setText(row.querySelector(".reason"), (a.reason && a.state === "not_ready" ? ` ${a.reason}` : "") +
      (a.pending ? ` → ${stateWords(a.pending)}` : ""));
    setText(row.querySelector(".for"), a.since > 0 ? secs(t - a.since) : "–");
    setText(row.querySelector(".call"), a.call_id ? `${callerOf(a)} · ${queueName(a.queue)}` : "");
    for (const b of row.querySelectorAll("button.spy")) {
      b.hidden = a.state !== "on_call";
      setAttr(b, "aria-label", `${b.textContent} to ${a.name}'s call (rings your phone)`);
    }
    for (const b of row.querySelectorAll("button.notready, button.logout")) {
      b.hidden = a.state === "logged_out";
      setAttr(b, "aria-label", `${b.classList.contains("logout") ? "Log out" : "Set not ready"}: ${a.name}`);
    }
  }

  function render() {
    if (!snap) return;
    const t = now();
    keyed(document.getElementById("queues"), snap.queues, (q) => q.queue, makeQueue, (r, q) => updateQueue(r, q, t));
    const tasks = snap.task_queues || [];
    document.getElementById("task-queues-box").hidden = tasks.length === 0;
    keyed(document.querySelector("#task-queues tbody"), tasks, (q) => q.queue, makeTaskQueue, updateTaskQueue);
    keyed(document.querySelector("#waiting tbody"), snap.waiting_calls, (w) => w.call_id, makeWaiting, (r, w) => updateWaiting(r, w, t));
    keyed(document.querySelector("#abandoned tbody"), snap.abandoned, (a) => a.call_id, makeAbandoned, updateAbandoned);
    const counts = Object.entries(snap.agent_counts).filter(([, n]) => n).map(([s, n]) => `${n} ${stateWords(s)}`);
    setText(document.getElementById("agent-counts"), `${counts.join(", ")} · occupancy today ${pct(snap.occupancy_today)}`);
    keyed(document.querySelector("#agents tbody"), snap.agents, (a) => a.agent_id, makeAgent, (r, a) => updateAgent(r, a, t));
  }

  // An HA pair (docs/ha.md, "Clients follow the leader"): the nodes the hello named; a node
  // that refuses the connection is left for the next; a standby that does not share the
  // event stream (no broker) sends the board to the leader it names.
  let nodes = [], node = "";
  function wsUrl(base) {
    return base ? base.replace(/^http/, "ws") + "/ws" : `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  }
  function following(from) {
    const all = [location.origin, ...nodes].filter((u, i, a) => a.indexOf(u) === i);
    return all.length < 2 ? null : all[(all.indexOf(from || location.origin) + 1) % all.length];
  }
  function connect() {
    const status = document.getElementById("status");
    const at = node;
    let opened = false;
    ws = new WebSocket(wsUrl(at));
    ws.onopen = () => { opened = true; ws.send(JSON.stringify({ type: "auth", token: Cti.token() })); };
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === "hello") {
        status.textContent = "live"; status.className = "status live"; retry = 1;
        if (msg.ha) {
          nodes = (msg.ha.nodes || []).filter((u) => typeof u === "string");
          if (!msg.ha.leading && !msg.ha.shared_stream && msg.ha.leader_url) {
            node = msg.ha.leader_url === location.origin ? "" : msg.ha.leader_url;
            ws.close();
          }
        }
      }
      else if (msg.type === "wallboard") take(msg);
    };
    ws.onclose = (e) => {
      status.textContent = "offline"; status.className = "status";
      if (e.code === 4401) return;
      const next = opened ? null : following(at);
      if (next && node === at) node = next === location.origin ? "" : next;
      setTimeout(connect, retry * 1000); retry = Math.min(retry * 2, 30);
    };
  }

  Cti.start(async () => {
    take(await api("GET", "/api/wallboard"));
    connect();
    setInterval(render, 1000);
  });
})();
