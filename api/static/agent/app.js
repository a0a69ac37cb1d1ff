// The agent desktop: plain JavaScript, no build step. Talks to the daemon's API
// (POST /api/login, /api/acd/agents/{id}/state, /api/calls/...) and /ws with resume.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const S = sessionStorage;   // per tab: token, stream, last seq
  let me = null, ws = null, backoff = 500, stateSince = null, callId = null, call = null, answeredAt = null;

  function setText(id, text) { $(id).textContent = text == null || text === "" ? "—" : String(text); }
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds)), m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, "0")}`;
  }

  async function api(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    const token = S.getItem("token");
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (r.status === 401 && path !== "/api/login") { logout(false); }
    if (!r.ok) throw new Error((data && data.message) || `HTTP ${r.status}`);
    return data;
  }

  // -- login --------------------------------------------------------------
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    try {
      const reply = await api("POST", "/api/login", { username: $("username").value, password: $("password").value });
      S.setItem("token", reply.token);
      S.removeItem("stream"); S.removeItem("seq");
      $("password").value = "";
      await start();
    } catch (err) { $("login-error").textContent = err.message; }
  });
  $("logout").addEventListener("click", () => logout(true));

  async function logout(tellServer) {
    if (tellServer) { try { await api("POST", "/api/logout"); } catch (e) { /* ended anyway */ } }
    S.clear();
    if (ws) { ws.onclose = null; ws.close(); ws = null; }
    me = null;
    $("main").hidden = true; $("logout").hidden = true; $("login-view").hidden = false;
    setText("who", ""); $("link").textContent = "offline";
    $("username").focus();
  }

  async function start() {
    me = await api("GET", "/api/me");
    $("login-view").hidden = true; $("main").hidden = false; $("logout").hidden = false;
    $("who").textContent = `${me.display_name} (${me.agent_id || "no agent id"})`;
    connect();
    loadHistory();
    $("btn-ready").focus();
  }

  // -- WebSocket with resume ---------------------------------------------------
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/ws`);
    $("link").textContent = "connecting…";
    ws.onopen = () => {
      const auth = { type: "auth", token: S.getItem("token") };
      if (S.getItem("stream") && S.getItem("seq") !== null) {
        auth.stream = S.getItem("stream"); auth.last_seq = Number(S.getItem("seq"));
      }
      ws.send(JSON.stringify(auth));
    };
    ws.onmessage = (m) => handle(JSON.parse(m.data));
    ws.onclose = (ev) => {
      $("link").textContent = "reconnecting…";
      if (ev.code === 4401) { logout(false); return; }
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  function handle(msg) {
    if (msg.type === "hello") {
      backoff = 500;
      S.setItem("stream", msg.stream); S.setItem("seq", String(msg.seq));
      $("link").textContent = msg.resumed ? "online (resumed)" : "online";
      if (msg.snapshot && msg.snapshot.agent_state) showState(msg.snapshot.agent_state);
      return;
    }
    if (msg.type === "resync") { api("GET", "/api/me").catch(() => {}); loadHistory(); return; }
    if (msg.type === "error" || msg.type === "pong") return;
    if (typeof msg.seq === "number") S.setItem("seq", String(msg.seq));
    if (msg.type === "agent.state" && me && msg.agent_id === me.agent_id) showState(msg);
    else if (msg.type === "screenpop" && me && msg.agent_id === me.agent_id) showCard(msg);
    else if (msg.type === "call.ended" && msg.call_id === callId) callEnded(msg.call_id);
  }

  // -- agent state -------------------------------------------------------------
  function showState(s) {
    setText("state", (s.state || "").replace("_", " "));
    setText("state-reason", s.reason ? `(${s.reason})` : "");
    stateSince = s.since || Date.now() / 1000;
  }
  async function stateAction(action) {
    $("state-error").textContent = "";
    if (!me || !me.agent_id) { $("state-error").textContent = "this user has no agent id"; return; }
    const body = { action };
    if (action === "not_ready") body.reason = $("nr-reason").value;
    try { showState(await api("POST", `/api/acd/agents/${encodeURIComponent(me.agent_id)}/state`, body)); }
    catch (err) { $("state-error").textContent = err.message; }
  }
  $("btn-ready").addEventListener("click", () => stateAction("ready"));
  $("btn-not-ready").addEventListener("click", () => stateAction("not_ready"));
  $("btn-end-wrapup").addEventListener("click", () => stateAction("end_wrapup"));

  // -- the screen-pop ---------------------------------------------------------------
  function li(list, text) { const el = document.createElement("li"); el.textContent = text; list.appendChild(el); }

  function showCard(msg) {
    const c = msg.card;
    if (msg.phase === "offered" || msg.call_id !== callId) { callId = msg.call_id; answeredAt = null; }
    call = c;
    $("no-call").hidden = true; $("card").hidden = false;
    const cust = c.customer;
    setText("cust-name", cust ? cust.name : (c.caller.name || "Unknown caller"));
    $("vip").hidden = !(cust && cust.vip);
    setText("caller-num", c.caller.number);
    setText("caller-name", c.caller.name);
    setText("phase", msg.phase);
    setText("queue", c.queue);
    setText("priority", c.priority);
    setText("wait", c.wait_s == null ? null : `${Math.round(c.wait_s)} s`);
    setText("ivr-choices", (c.ivr.choices || []).join(" → "));
    setText("ivr-entered", Object.entries(c.ivr.entered || {}).map(([k, v]) => `${k}: ${v}`).join(", "));
    $("tickets").replaceChildren(); $("recent").replaceChildren();
    (c.open_tickets || []).forEach((t) => li($("tickets"), `#${t.ticket_id} ${t.type} · ${t.state} · ${t.title || ""}`));
    setText("ticket-count", (c.open_tickets || []).length);
    (c.recent_calls || []).forEach((r) => li($("recent"), `${r.started_at || r.linked_at} · ${r.state || ""} · ${r.agent || ""}`));
    if (c.answered_at) answeredAt = c.answered_at;
    const live = msg.phase !== "ended";
    $("btn-hold").disabled = !live || msg.phase === "held" || !answeredAt;
    $("btn-resume").disabled = !live || msg.phase !== "held";
    $("btn-hangup").disabled = !live || !answeredAt;
    $("btn-transfer").disabled = !live || !answeredAt;
    $("btn-xfer-cancel").disabled = !live || !answeredAt;
    $("btn-xfer-complete").disabled = !live || !answeredAt;
    $("btn-dtmf").disabled = !live;
    if (msg.phase === "ended") callEnded(msg.call_id);
  }

  function callEnded(id) {
    ["btn-hold", "btn-resume", "btn-hangup", "btn-transfer", "btn-xfer-complete", "btn-xfer-cancel", "btn-dtmf"].forEach((b) => { $(b).disabled = true; });
    setText("phase", "ended");
    if (answeredAt && $("wrapup-call").value !== id) {
      $("wrapup-call").value = id;
      $("wrapup-status").textContent = "";
      $("wrapup-panel").hidden = false;
      $("disposition").focus();
    }
    answeredAt = null;
    setTimeout(loadHistory, 1500);
  }

  async function control(path, body) {
    $("call-error").textContent = "";
    if (!callId) return;
    try { await api("POST", `/api/calls/${encodeURIComponent(callId)}/${path}`, body); }
    catch (err) { $("call-error").textContent = err.message; }
  }
  $("btn-hold").addEventListener("click", () => control("hold"));
  $("btn-resume").addEventListener("click", () => control("resume"));
  $("btn-hangup").addEventListener("click", () => control("hangup"));
  $("btn-xfer-cancel").addEventListener("click", () => control("transfer/cancel"));
  $("btn-xfer-complete").addEventListener("click", () => control("transfer/complete"));
  $("transfer-form").addEventListener("submit", (e) => {
    e.preventDefault();
    control("transfer", { mode: $("xfer-mode").value, target: { kind: $("xfer-kind").value, value: $("xfer-value").value.trim() } });
  });
  $("dtmf-form").addEventListener("submit", (e) => { e.preventDefault(); control("dtmf", { digits: $("dtmf").value }); });
  $("dial-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("call-error").textContent = "";
    try { const r = await api("POST", "/api/calls/dial", { number: $("dial-number").value.trim() }); callId = r.call_id; }
    catch (err) { $("call-error").textContent = err.message; }
  });

  // -- wrap-up and history ---------------------------------------------------------------
  $("wrapup-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = $("wrapup-call").value;
    try {
      await api("PUT", `/api/calls/${encodeURIComponent(id)}/disposition`, { disposition: $("disposition").value, notes: $("notes").value });
      $("wrapup-status").textContent = "Saved.";
      $("notes").value = ""; $("disposition").value = "";
      $("wrapup-panel").hidden = true;
      loadHistory();
    } catch (err) { $("wrapup-status").textContent = err.message; }
  });

  async function loadHistory() {
    if (!me || me.role !== "agent") return;
    try {
      const h = await api("GET", "/api/agent/calls?limit=20");
      const rows = h.calls.map((c) => {
        const tr = document.createElement("tr");
        [new Date(c.started_at).toLocaleString(), c.caller_name || c.caller_num || "", c.queue || "",
         c.duration_s == null ? "" : clock(c.duration_s), c.disposition || ""].forEach((t) => {
          const td = document.createElement("td"); td.textContent = t; tr.appendChild(td);
        });
        return tr;
      });
      $("history").replaceChildren(...rows);
    } catch (err) { /* shown on the next try */ }
  }

  setInterval(() => {
    if (stateSince) $("state-timer").textContent = clock(Date.now() / 1000 - stateSince);
    if (answeredAt) $("call-timer").textContent = clock(Date.now() / 1000 - answeredAt);
  }, 1000);

  if (S.getItem("token")) start().catch(() => logout(false));
})();
