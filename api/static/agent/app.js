// The agent desktop: plain JavaScript, no build step. Talks to the daemon's API
// (POST /api/login, /api/acd/agents/{id}/state, /api/calls/...) and /ws with resume.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const S = sessionStorage;   // per tab: token, stream, last seq, the node in use and the pair's nodes
  const PING_MS = 25000;
  let pinger = null;
  let me = null, ws = null, backoff = 500, stateSince = null, callId = null, call = null, answeredAt = null;
  let agentState = null, wrapupEndsAt = null, callLive = false, transferPending = false;
  const answered = new Set();   // calls this page saw me answer (their end asks for a wrap-up)
  const wrapups = [];           // wrap-ups to do, oldest first: {call_id, label}
  const wrapped = new Set();    // wrap-ups saved from this page
  const STATE_WORDS = { available: "Available", not_ready: "Not ready", reserved: "Ringing", on_call: "On call",
                        wrapup: "Wrap-up", logged_out: "Logged out" };
  const PHASE_WORDS = { offered: "Ringing", answered: "Talking", held: "Held", resumed: "Resumed",
                        transferred: "Transferred", ended: "Ended" };
  const stateWords = (s) => STATE_WORDS[s] || String(s || "").replace(/_/g, " ");

  function setText(id, text) { $(id).textContent = text == null || text === "" ? "—" : String(text); }
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds)), m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, "0")}`;
  }

  // -- an HA pair: the node in use, and moving to another (docs/ha.md, "Clients follow the leader") --
  // base: "" (this page's own node) or another node's address. A node that refuses the connection
  // is left for the next one the hello named; a standby that does not share the event stream
  // (no broker) sends us to the leader it names.
  const base = () => S.getItem("base") || "";
  function nodes() {
    let list = [];
    try { list = JSON.parse(S.getItem("nodes") || "[]"); } catch (e) { list = []; }
    const all = [location.origin, ...list.filter((u) => typeof u === "string")];
    return all.filter((u, i) => all.indexOf(u) === i);
  }
  function useNode(url) {
    const target = !url || url === location.origin ? "" : url;
    if (target) S.setItem("base", target); else S.removeItem("base");
  }
  function following(from) {   // the node after `from` in the pair's list (null: no other node known)
    const all = nodes();
    if (all.length < 2) return null;
    return all[(all.indexOf(from || location.origin) + 1) % all.length];
  }
  function moveTo(url) {    // use that node; the WebSocket follows at once
    useNode(url);
    if (ws && ws.ctiNode !== base()) {
      backoff = 500;
      const old = ws; ws = null; old.onclose = null; old.close(); connect();
    }
  }

  async function api(method, path, body, retried) {
    const headers = { "Content-Type": "application/json" };
    const token = S.getItem("token");
    if (token) headers.Authorization = `Bearer ${token}`;
    const at = base();
    let r;
    try {
      r = await fetch(at + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {   // the node is away: once more on the next node of the pair
      const next = retried ? null : following(at);
      if (next) { if (base() === at) moveTo(next); return api(method, path, body, true); }
      throw err;
    }
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    const leader = r.headers.get("Cti-Leader-Url");
    if (r.status === 503 && data && data.error_id === "standby" && leader && !retried) {
      moveTo(leader);
      return api(method, path, body, true);
    }
    if (r.status === 401 && path !== "/api/login") { logout(false); }
    if (!r.ok) throw new Error((data && data.message) || `HTTP ${r.status}`);
    return data;
  }
  // The desktop's other panels (kb.js, chats.js, preview.js, mail.js: loaded after this file)
  // ask the API through this one function: the token, the errors' messages, a 401's logout.
  window.ctiApi = api;

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
    window.ctiSession = null;
    window.dispatchEvent(new CustomEvent("cti:logout"));
    if (ws) { ws.onclose = null; ws.close(); ws = null; }
    clearInterval(pinger);
    me = null;
    $("main").hidden = true; $("logout").hidden = true; $("login-view").hidden = false;
    setText("who", ""); $("link").textContent = "offline";
    $("username").focus();
  }

  async function start() {
    me = await api("GET", "/api/me");
    $("login-view").hidden = true; $("main").hidden = false; $("logout").hidden = false;
    $("who").textContent = `${me.display_name} (${me.agent_id || "no agent id"})`;
    window.ctiSession = { me, token: S.getItem("token") };   // the phone (softphone.js) starts from it
    window.dispatchEvent(new CustomEvent("cti:session", { detail: window.ctiSession }));
    connect();
    await restore();
    loadHistory();
    if (me.role !== "qa") loadCallbacks();
    $("btn-ready").focus();
  }

  // What the API knows now: my state, my call, my wrap-up (after a reload, or on entering wrap-up).
  async function restore() {
    if (!me || me.role !== "agent") return;
    let now;
    try { now = await api("GET", "/api/agent/current"); } catch (err) { $("state-error").textContent = err.message; return; }
    if (now.agent_state) showState(now.agent_state);
    if (now.call && (now.call.call_id !== callId || !callLive)) showCard(now.call, true);
    if (now.call && now.call.call_id === callId) { transferPending = now.transfer_pending; controls(); }
    if (now.wrapup) addWrapup(now.wrapup.call_id, callLabel(now.wrapup.caller_name, now.wrapup.caller_num, null));
  }

  // -- WebSocket with resume ---------------------------------------------------
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const at = base();
    const url = at ? at.replace(/^http/, "ws") + "/ws" : `${proto}//${location.host}/ws`;
    let opened = false;
    ws = new WebSocket(url);
    ws.ctiNode = at;
    $("link").textContent = "connecting…";
    ws.onopen = () => {
      opened = true;
      const auth = { type: "auth", token: S.getItem("token") };
      if (S.getItem("stream") && S.getItem("seq") !== null) {
        auth.stream = S.getItem("stream"); auth.last_seq = Number(S.getItem("seq"));
      }
      ws.send(JSON.stringify(auth));
    };
    ws.onmessage = (m) => handle(JSON.parse(m.data));
    // A ping now and then: its pong carries the stream's latest seq, so an idle desktop's stored
    // seq keeps up (an API node that never served it can resume it: docs/scale-out.md).
    clearInterval(pinger);
    pinger = setInterval(() => { if (ws && ws.readyState === WebSocket.OPEN) ws.send('{"type":"ping"}'); }, PING_MS);
    ws.onclose = (ev) => {
      $("link").textContent = "reconnecting…";
      if (ev.code === 4401) { logout(false); return; }
      // Refused (never opened: the node is down, or not ready): the next node of the pair;
      // lost after opening: this node again first (a restart), then the next.
      const next = opened ? null : following(at);
      if (next && base() === at) useNode(next);
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  function handle(msg) {
    if (msg.type === "hello") {
      backoff = 500;
      S.setItem("stream", msg.stream); S.setItem("seq", String(msg.seq));
      $("link").textContent = msg.resumed ? "online (resumed)" : "online";
      if (msg.ha) {   // a node of an HA pair: the others to try, and where the leader is
        S.setItem("nodes", JSON.stringify(msg.ha.nodes || []));
        if (!msg.ha.leading && !msg.ha.shared_stream && msg.ha.leader_url) { moveTo(msg.ha.leader_url); return; }
      }
      if (msg.snapshot && msg.snapshot.agent_state) showState(msg.snapshot.agent_state);
      return;
    }
    if (msg.type === "resync") { api("GET", "/api/me").catch(() => {}); restore(); loadHistory(); return; }
    if (msg.type === "pong") {
      if (typeof msg.seq === "number" && msg.seq > Number(S.getItem("seq") || 0)) S.setItem("seq", String(msg.seq));
      return;
    }
    if (msg.type === "error") return;
    if (typeof msg.seq === "number") S.setItem("seq", String(msg.seq));
    if (msg.type.startsWith("task.") || msg.type.startsWith("chat.")) {   // chats.js: the agent's chats
      document.dispatchEvent(new CustomEvent("cti:task", { detail: msg }));
      return;
    }
    if (msg.type === "campaign.lead") {   // preview.js: a campaign call connected to me
      if (me && msg.agent_id === me.agent_id) document.dispatchEvent(new CustomEvent("cti:campaign", { detail: msg }));
      return;
    }
    if (msg.type === "agent.state" && me && msg.agent_id === me.agent_id) showState(msg);
    else if (msg.type === "screenpop" && me && msg.agent_id === me.agent_id) showCard(msg);
    else if (msg.type === "call.ended" && msg.call_id === callId) callEnded(msg.call_id);
  }

  // -- agent state -------------------------------------------------------------
  function showState(s) {
    const entering = s.state === "wrapup" && (!agentState || agentState.state !== "wrapup");
    agentState = s;
    setText("state", stateWords(s.state));
    setText("state-reason", s.reason && s.state !== "wrapup" ? `(${s.reason})` : "");
    const pending = s.pending === "logout" ? "Log out" : (s.pending ? `Not ready (${s.pending})` : "");
    $("state-pending").hidden = !pending;
    $("state-pending").textContent = pending ? `Pending: ${pending}, once this call is over.` : "";
    stateSince = s.since || Date.now() / 1000;
    if (s.state !== "wrapup") wrapupEndsAt = null;
    else if (s.wrapup_ends_at !== undefined) wrapupEndsAt = s.wrapup_ends_at;
    if (entering) restore();   // the call to wrap up (and the ACD's end of wrap-up)
    // The queue lets the agent extend wrap-up up to wrapup_max_at; it may require a disposition.
    const extendable = s.state === "wrapup" && s.wrapup_max_at != null && s.wrapup_ends_at != null;
    $("btn-extend-wrapup").hidden = !extendable;
    $("btn-extend-wrapup").disabled = !extendable || s.wrapup_ends_at >= s.wrapup_max_at;
    const due = s.disposition_due;
    $("wrapup-due").hidden = !due;
    $("wrapup-due").textContent = due ? `This queue needs the disposition of call ${due} before you are available again.` : "";
    $("btn-ready").title = due ? "Save the disposition first" : "";
    $("btn-ready").disabled = s.state === "available" && !s.pending;
    $("btn-end-wrapup").disabled = s.state !== "wrapup";
    $("btn-dial").disabled = !(s.state === "not_ready" || s.state === "logged_out");
    tick();
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
  $("btn-extend-wrapup").addEventListener("click", () => stateAction("extend_wrapup"));

  // -- the screen-pop ---------------------------------------------------------------
  function li(list, text) { const el = document.createElement("li"); el.textContent = text; list.appendChild(el); }

  function callLabel(name, number, at) {
    const who = [name, number].filter(Boolean).join(" · ") || "unknown caller";
    return at ? `${who}, ${when(at)}` : who;
  }

  function showCard(msg, restored) {
    const c = msg.card;
    if (msg.call_id !== callId) {
      // Another call: only a new offer (or any call when none is live) takes the card; a late
      // event of a call I passed on (transferred, ended) never replaces the one I am on.
      if (msg.phase !== "offered" && !restored && (callLive || ["ended", "transferred"].includes(msg.phase))) {
        if (msg.phase === "ended") otherCallEnded(msg);
        return;
      }
      callId = msg.call_id; answeredAt = null; transferPending = false;
      ["call-error", "tc-error"].forEach((x) => { $(x).textContent = ""; });
    }
    call = c;
    callLive = msg.phase !== "ended";
    $("no-call").hidden = true; $("card").hidden = false;
    const cust = c.customer;
    setText("cust-name", cust ? cust.name : (c.caller.name || "Unknown caller"));
    $("vip").hidden = !(cust && cust.vip);
    // The emergency switch that covers this call: what the caller was told, and why.
    const inc = c.incident;
    $("incident").hidden = !inc;
    $("incident").textContent = inc ? `Emergency in force for this caller (${inc.scope}${inc.value ? " " + inc.value : ""}, ` +
      `${inc.action}): ${inc.reason || "no reason given"}` : "";
    setText("caller-num", c.caller.number);
    setText("caller-name", c.caller.name);
    setText("phase", PHASE_WORDS[msg.phase] || msg.phase);
    setText("queue", c.queue);
    setText("priority", c.priority);
    setText("wait", c.wait_s == null ? null : `${Math.round(c.wait_s)} s`);
    setText("ivr-choices", (c.ivr.choices || []).join(" → "));
    setText("ivr-entered", Object.entries(c.ivr.entered || {}).map(([k, v]) => `${k}: ${v}`).join(", "));
    renderTickets();
    $("recent").replaceChildren();
    (c.recent_calls || []).forEach((r) => li($("recent"),
      [when(r.started_at || r.linked_at), r.direction, r.state, r.agent].filter(Boolean).join(" · ")));
    (c.recent_contacts || []).forEach((r) => li($("recent"),   // chats, mails, messages (crm/conversations.py)
      [when(r.last_at), r.channel, r.subject, r.state, r.agent].filter(Boolean).join(" · ")));
    if (c.answered_at) { answeredAt = c.answered_at; answered.add(msg.call_id); }
    call.phase = msg.phase;
    document.dispatchEvent(new CustomEvent("cti:card", { detail: msg }));   // kb.js: suggestions
    $("btn-new-ticket").disabled = !c.customer;
    $("btn-card-customer").disabled = !c.customer;
    controls();
    if (msg.phase === "ended") callEnded(msg.call_id);
  }

  function renderTickets() {
    $("tickets").replaceChildren();
    (call.open_tickets || []).forEach((t) => item($("tickets"), `#${t.ticket_id} ${t.type} · ${t.state} · ${t.title || ""}`,
      button(`Open #${t.ticket_id}`, () => openTicket(t.ticket_id))));
    setText("ticket-count", (call.open_tickets || []).length);
  }

  // Each control is enabled only when it can act on the call as it is now.
  function controls() {
    const phase = call ? call.phase : null, talking = callLive && !!answeredAt;
    $("btn-hold").disabled = !talking || phase === "held";
    $("btn-resume").disabled = !callLive || phase !== "held";
    $("btn-hangup").disabled = !talking;
    $("btn-transfer").disabled = !talking || transferPending;
    $("btn-xfer-cancel").disabled = !callLive || !transferPending;
    $("btn-xfer-complete").disabled = !callLive || !transferPending;
    $("btn-dtmf").disabled = !callLive;
  }

  function callEnded(id) {
    if (id !== callId) return;
    callLive = false; transferPending = false;
    if (call) call.phase = "ended";
    controls();
    setText("phase", PHASE_WORDS.ended);
    if (answered.has(id)) addWrapup(id, callLabel(call && call.customer ? call.customer.name : call && call.caller.name,
                                                   call && call.caller.number, call && call.started_at));
    answeredAt = null;
    setTimeout(loadHistory, 1500);
  }

  // A call that is not on the card ended (e.g. one I transferred): its wrap-up waits its turn.
  function otherCallEnded(msg) {
    const c = msg.card;
    if (c.answered_at || answered.has(msg.call_id)) {
      addWrapup(msg.call_id, callLabel(c.customer ? c.customer.name : c.caller.name, c.caller.number, c.started_at));
    }
  }

  async function control(path, body) {
    $("call-error").textContent = "";
    if (!callId) return false;
    const id = callId;
    try { await api("POST", `/api/calls/${encodeURIComponent(id)}/${path}`, body); return true; }
    catch (err) { if (id === callId) $("call-error").textContent = err.message; return false; }
  }
  $("btn-hold").addEventListener("click", () => control("hold"));
  $("btn-resume").addEventListener("click", () => control("resume"));
  $("btn-hangup").addEventListener("click", () => control("hangup"));
  async function endTransfer(path) {
    if (await control(path)) { transferPending = false; controls(); }
  }
  $("btn-xfer-cancel").addEventListener("click", () => endTransfer("transfer/cancel"));
  $("btn-xfer-complete").addEventListener("click", () => endTransfer("transfer/complete"));
  $("transfer-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const mode = $("xfer-mode").value;
    const done = await control("transfer", { mode, target: { kind: $("xfer-kind").value, value: $("xfer-value").value.trim() } });
    if (done && mode === "attended") { transferPending = true; controls(); }
  });
  $("dtmf-form").addEventListener("submit", (e) => { e.preventDefault(); control("dtmf", { digits: $("dtmf").value }); });
  $("dial-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("call-error").textContent = "";
    try { const r = await api("POST", "/api/calls/dial", { number: $("dial-number").value.trim() }); callId = r.call_id; }
    catch (err) { $("call-error").textContent = err.message; }
  });

  // -- tickets ---------------------------------------------------------------------------
  // Routes: /api/tickets..., /api/customers..., /api/engineers (docs/tickets.md, "API").
  const LABELS = {
    resolve_by_phone: "Resolved by phone", send_to_lead: "Send to regional lead", dispatch: "Dispatch",
    visit_succeeded: "Visit succeeded", "visit_failed:engineer": "Visit failed (engineer's cause)",
    "visit_failed:customer": "Visit failed (customer's cause)", "visit_failed:other": "Visit failed (other cause)",
    callback_no_answer: "Callback: no answer", confirm: "Confirm (customer satisfied)",
    unsatisfied: "Customer unsatisfied", cancel: "Cancel ticket", reopen: "Reopen",
  };
  const NEEDS_REASON = new Set(["visit_failed", "unsatisfied", "cancel", "reopen"]);
  let ticket = null, pendingCommand = null, customerId = null, typesLoaded = false;

  // Times in the agent's locale and time zone (the browser's); epoch seconds or ISO strings.
  const TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  function when(t) {
    if (t == null || t === "") return "—";
    const d = new Date(typeof t === "number" ? t * 1000 : t);
    return isNaN(d) ? String(t) : TIME.format(d);
  }
  function button(text, onClick) {
    const b = document.createElement("button"); b.type = "button"; b.textContent = text;
    b.addEventListener("click", onClick); return b;
  }
  function item(list, text, ...buttons) {
    const el = document.createElement("li"); el.textContent = text;
    buttons.forEach((b) => el.appendChild(b)); list.appendChild(el); return el;
  }

  async function loadTypes() {
    if (typesLoaded) return;
    const t = await api("GET", "/api/tickets/types");
    $("tc-type").replaceChildren(...t.types.map((x) => {
      const o = document.createElement("option"); o.value = x.name; o.textContent = x.label; return o;
    }));
    typesLoaded = true;
  }

  async function newTicket(cust, fromCall) {
    $("tc-error").textContent = "";
    try { await loadTypes(); } catch (err) { $("tc-error").textContent = err.message; }
    $("tc-customer").value = cust || "";
    $("tc-call").value = fromCall || "";
    $("tc-title").value = ""; $("tc-notes").value = ""; $("tc-priority").value = "normal";
    $("ticket-create-panel").hidden = false;
    $("tc-type").focus();
  }
  $("btn-new-ticket").addEventListener("click", () => {
    if (!call || !call.customer) { $("call-error").textContent = "no known customer on this call: find one first"; return; }
    newTicket(call.customer.customer_id, callId);
  });
  $("btn-card-customer").addEventListener("click", () => { if (call && call.customer) openCustomer(call.customer.customer_id); });
  $("tc-cancel").addEventListener("click", () => { $("ticket-create-panel").hidden = true; });
  $("ticket-create-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("tc-error").textContent = "";
    const body = { type: $("tc-type").value, customer_id: $("tc-customer").value, priority: $("tc-priority").value,
                   notes: $("tc-notes").value };
    if ($("tc-title").value.trim()) body.title = $("tc-title").value.trim();
    if ($("tc-call").value) body.call_id = $("tc-call").value;
    try {
      const d = await api("POST", "/api/tickets", body);
      $("ticket-create-panel").hidden = true;
      const t = d.ticket;
      if (call && call.customer && call.customer.customer_id === t.customer_id) {
        call.open_tickets = [{ ticket_id: t.ticket_id, type: t.type, state: t.state, title: t.title },
                             ...(call.open_tickets || []).filter((x) => x.ticket_id !== t.ticket_id)];
        renderTickets();
      }
      showTicket(d);
    } catch (err) { $("tc-error").textContent = err.message; }
  });

  async function openTicket(id) {
    $("tk-error").textContent = "";
    try { showTicket(await api("GET", `/api/tickets/${id}`)); }
    catch (err) { $("wl-error").textContent = err.message; }
  }
  // preview.js: the ticket a live list's lead calls about.
  document.addEventListener("cti:open-ticket", (ev) => {
    const id = ev.detail && ev.detail.ticket_id;
    if (Number.isInteger(id) && id > 0) openTicket(id);
  });

  function showTicket(d) {
    const t = d.ticket;
    ticket = t;
    $("ticket-panel").hidden = false;
    $("ticket-title").textContent = `Ticket #${t.ticket_id}: ${t.title}`;
    setText("tk-state", t.state.replace("_", " ") + (t.overdue ? " (overdue)" : ""));
    setText("tk-type", t.type);
    $("tk-customer").textContent = t.customer_name ? `${t.customer_name} (${t.customer_id})` : t.customer_id;
    setText("tk-region", t.region);
    setText("tk-engineer", t.engineer);
    setText("tk-due", when(t.due_by));
    setText("tk-visits", t.visits);
    $("tk-title").value = t.title; $("tk-priority").value = t.priority; $("tk-notes").value = t.notes;
    $("cmd-form").hidden = true; pendingCommand = null;
    $("tk-commands").replaceChildren(...d.allowed_commands.map((k) => button(LABELS[k] || k, () => askCommand(k))));
    if (!d.allowed_commands.length) $("tk-commands").textContent = "Nothing to do: the ticket is " + t.state + ".";
    $("tk-audit").replaceChildren(...d.audit.map((a) => {
      const tr = document.createElement("tr");
      [when(a.at), a.actor, a.command, `${a.from_state || "—"} → ${a.to_state}`,
       [a.note, a.data && a.data.reason, a.data && a.data.engineer].filter(Boolean).join(" · ")].forEach((x) => {
        const td = document.createElement("td"); td.textContent = x; tr.appendChild(td);
      });
      return tr;
    }));
    $("tk-calls").replaceChildren();
    d.calls.forEach((c) => item($("tk-calls"), `${c.call_id} · ${when(c.started_at || c.linked_at)} · ${c.direction || ""}`));
    $("ticket-title").focus();
  }
  $("tk-customer").addEventListener("click", () => { if (ticket) openCustomer(ticket.customer_id); });

  $("ticket-edit-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("tk-error").textContent = "";
    const body = { expected_revision: ticket.revision };
    if ($("tk-title").value !== ticket.title) body.title = $("tk-title").value;
    if ($("tk-priority").value !== ticket.priority) body.priority = $("tk-priority").value;
    if ($("tk-notes").value !== ticket.notes) body.notes = $("tk-notes").value;
    try { showTicket(await api("PATCH", `/api/tickets/${ticket.ticket_id}`, body)); $("tk-status").textContent = "Saved."; }
    catch (err) { $("tk-error").textContent = err.message; }
  });

  async function askCommand(kind) {
    pendingCommand = kind;
    const base = kind.split(":")[0];
    $("tk-error").textContent = "";
    $("cmd-legend").textContent = LABELS[kind] || kind;
    $("cmd-submit").textContent = `Confirm: ${LABELS[kind] || kind}`;
    $("cmd-engineer-row").hidden = base !== "dispatch";
    $("cmd-lead-row").hidden = base !== "send_to_lead";
    $("cmd-reason-row").hidden = !NEEDS_REASON.has(base);
    $("cmd-reason").required = NEEDS_REASON.has(base);
    $("cmd-engineer").required = base === "dispatch";
    $("cmd-lead").required = base === "send_to_lead";
    $("cmd-reason").value = ""; $("cmd-note").value = ""; $("cmd-lead").value = "";
    $("cmd-form").hidden = false;
    if (base === "dispatch") {
      const q = ticket.region ? `?active=true&region=${encodeURIComponent(ticket.region)}` : "?active=true";
      try {
        const r = await api("GET", `/api/engineers${q}`);
        $("cmd-engineer").replaceChildren(...r.engineers.map((x) => {
          const o = document.createElement("option"); o.value = x.engineer_id; o.textContent = `${x.name} (${x.engineer_id}, ${x.region})`; return o;
        }));
        if (!r.engineers.length) $("tk-error").textContent = "no active engineer in this region";
      } catch (err) { $("tk-error").textContent = err.message; }
      $("cmd-engineer").focus();
    } else if (base === "send_to_lead") $("cmd-lead").focus();
    else if (NEEDS_REASON.has(base)) $("cmd-reason").focus();
    else $("cmd-note").focus();
  }
  $("cmd-cancel").addEventListener("click", () => { $("cmd-form").hidden = true; pendingCommand = null; });
  $("cmd-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!pendingCommand || !ticket) return;
    const [base, cause] = pendingCommand.split(":");
    const body = { command: base, expected_revision: ticket.revision };
    if (cause) body.cause = cause;
    if (base === "dispatch") body.engineer = $("cmd-engineer").value;
    if (base === "send_to_lead") body.lead = $("cmd-lead").value.trim();
    if (NEEDS_REASON.has(base)) body.reason = $("cmd-reason").value.trim();
    if ($("cmd-note").value.trim()) body.note = $("cmd-note").value.trim();
    try {
      showTicket(await api("POST", `/api/tickets/${ticket.ticket_id}/transitions`, body));
      $("tk-status").textContent = `Done: ${LABELS[pendingCommand] || pendingCommand}.`;
    } catch (err) { $("tk-error").textContent = err.message; }
  });

  $("ticket-search-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("wl-error").textContent = "";
    const q = new URLSearchParams();
    if ($("ts-q").value.trim()) q.set("q", $("ts-q").value.trim());
    q.set("state", $("ts-state").value || "open,with_lead,dispatched,to_redispatch,awaiting_callback");
    if ($("ts-overdue").checked) q.set("overdue", "true");
    try {
      const r = await api("GET", `/api/tickets?${q}`);
      $("ticket-results").replaceChildren();
      r.tickets.forEach((t) => {
        const el = item($("ticket-results"), `#${t.ticket_id} ${t.title} · ${t.customer_name || t.customer_id} · ${t.state}`,
          button(`Open #${t.ticket_id}`, () => openTicket(t.ticket_id)));
        if (t.overdue) el.classList.add("overdue");
      });
      if (!r.tickets.length) item($("ticket-results"), "No ticket found.");
    } catch (err) { $("wl-error").textContent = err.message; }
  });

  async function loadCallbacks() {
    $("wl-error").textContent = "";
    try {
      const r = await api("GET", "/api/tickets/callbacks");
      $("callbacks").replaceChildren(...r.callbacks.map((c) => {
        const tr = document.createElement("tr");
        const cells = [`#${c.ticket.ticket_id} ${c.ticket.title}`, c.customer_name,
                       when(c.ticket.callback_due_at) + (c.overdue ? " (overdue)" : "")];
        cells.forEach((x) => { const td = document.createElement("td"); td.textContent = x; tr.appendChild(td); });
        const td = document.createElement("td");
        c.phones.forEach((n) => td.appendChild(button(`Call ${n}`, () => callBack(c.ticket.ticket_id, n))));
        td.appendChild(button(`Open #${c.ticket.ticket_id}`, () => openTicket(c.ticket.ticket_id)));
        tr.appendChild(td);
        if (c.overdue) tr.classList.add("overdue");
        return tr;
      }));
    } catch (err) { $("wl-error").textContent = err.message; }
  }
  $("btn-callbacks").addEventListener("click", loadCallbacks);

  async function callBack(ticketId, number) {
    $("wl-error").textContent = "";
    try {
      const r = await api("POST", "/api/calls/dial", { number, ticket_id: ticketId });
      callId = r.call_id;
      $("wl-error").textContent = "";
      await openTicket(ticketId);
      $("tk-status").textContent = `Calling ${number}…`;
    } catch (err) { $("wl-error").textContent = err.message; }
  }

  // -- the customer page ------------------------------------------------------------------
  $("customer-search-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("GET", `/api/customers?q=${encodeURIComponent($("cs-q").value.trim())}`);
      $("customer-results").replaceChildren();
      r.customers.forEach((c) => item($("customer-results"), `${c.name} · ${c.phones.join(", ")}`,
        button(`Open ${c.customer_id}`, () => openCustomer(c.customer_id))));
      if (!r.customers.length) item($("customer-results"), "No customer found.");
    } catch (err) { $("cp-error").textContent = err.message; }
  });

  async function openCustomer(id) {
    $("cp-error").textContent = "";
    let c;
    try { c = await api("GET", `/api/customers/${encodeURIComponent(id)}`); }
    catch (err) { $("cp-error").textContent = err.message; return; }
    customerId = c.customer_id;
    $("customer-page").hidden = false;
    setText("cp-name", c.name); $("cp-vip").hidden = !c.vip;
    setText("cp-id", c.customer_id); setText("cp-language", c.language);
    setText("cp-phones", c.phones.map((p) => p.phone).join(", "));
    setText("cp-tags", c.tags.join(", "));
    ["cp-addresses", "cp-tickets", "cp-calls", "cp-recordings", "cp-notes"].forEach((x) => $(x).replaceChildren());
    c.addresses.forEach((a) => item($("cp-addresses"), [a.line1, a.line2, a.postcode, a.city, a.country].filter(Boolean).join(", ")
      + (a.region ? ` · region ${a.region}` : "") + (a.is_primary ? " · primary" : "")));
    c.tickets.forEach((t) => item($("cp-tickets"), `#${t.ticket_id} ${t.title} · ${t.state}`,
      button(`Open #${t.ticket_id}`, () => openTicket(t.ticket_id))));
    c.calls.forEach((x) => item($("cp-calls"), `${when(x.started_at || x.linked_at)} · ${x.direction || ""} · ${x.agent || ""} · ${x.state || ""}`));
    c.recordings.forEach((r) => item($("cp-recordings"), `#${r.recording_id} · ${when(r.started_at)} · ${r.duration_s == null ? "" : clock(r.duration_s)}`));
    c.notes.forEach((n) => item($("cp-notes"), `${when(n.at)} · ${n.author}: ${n.body}`));
    $("cp-conversations").replaceChildren();
    (c.conversations || []).forEach((x) => item($("cp-conversations"),
      [when(x.last_at), x.channel, x.subject, x.state, x.agent].filter(Boolean).join(" · ")));
    if (!document.getElementById("cp-new-ticket")) {
      const b = button("New ticket for this customer", () => newTicket(customerId, null)); b.id = "cp-new-ticket";
      $("cp-tickets").after(b);
    }
    $("customer-title").focus();
  }
  $("cp-note-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", `/api/customers/${encodeURIComponent(customerId)}/notes`, { body: $("cp-note").value });
      $("cp-note").value = "";
      openCustomer(customerId);
    } catch (err) { $("cp-error").textContent = err.message; }
  });

  // -- wrap-up and history ---------------------------------------------------------------
  // Wrap-ups wait in turn: the form names its call, and a call ending meanwhile never
  // replaces what the agent is typing (it is listed as the next one).
  function addWrapup(id, label) {
    if (wrapped.has(id) || wrapups.some((w) => w.call_id === id)) return;
    wrapups.push({ call_id: id, label });
    showWrapup(wrapups.length === 1);
  }
  function showWrapup(fresh) {
    const w = wrapups[0];
    $("wrapup-panel").hidden = !w;
    if (!w) return;
    if (fresh) {
      $("wrapup-call").value = w.call_id;
      $("notes").value = ""; $("disposition").value = ""; $("wrapup-status").textContent = "";
      $("disposition").focus();
    }
    $("wrapup-call-label").textContent = `Call with ${w.label} (${w.call_id})`;
    const more = wrapups.length - 1;
    $("wrapup-more").hidden = !more;
    $("wrapup-more").textContent = more ? `${more} more call${more > 1 ? "s" : ""} to wrap up after this one.` : "";
  }
  $("wrapup-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = $("wrapup-call").value;
    try {
      await api("PUT", `/api/calls/${encodeURIComponent(id)}/disposition`, { disposition: $("disposition").value, notes: $("notes").value });
      wrapped.add(id);
      const at = wrapups.findIndex((w) => w.call_id === id);
      if (at >= 0) wrapups.splice(at, 1);
      showWrapup(true);
      $("wrapup-status").textContent = wrapups.length ? "" : "Saved.";
      loadHistory();
    } catch (err) { if ($("wrapup-call").value === id) $("wrapup-status").textContent = err.message; }
  });

  async function loadHistory() {
    if (!me || me.role !== "agent") return;
    try {
      const h = await api("GET", "/api/agent/calls?limit=20");
      const rows = h.calls.map((c) => {
        const tr = document.createElement("tr");
        [when(c.started_at), c.caller_name || c.caller_num || "", c.queue || "",
         c.duration_s == null ? "" : clock(c.duration_s), c.disposition || ""].forEach((t) => {
          const td = document.createElement("td"); td.textContent = t; tr.appendChild(td);
        });
        return tr;
      });
      $("history").replaceChildren(...rows);
    } catch (err) { /* shown on the next try */ }
  }

  // Timers: time in state, or the ACD's countdown to the end of wrap-up; talk time.
  function tick() {
    const now = Date.now() / 1000, countdown = wrapupEndsAt != null;
    $("state-timer-label").textContent = countdown ? "ends in" : "for";
    if (countdown) $("state-timer").textContent = clock(wrapupEndsAt - now);
    else if (stateSince) $("state-timer").textContent = clock(now - stateSince);
    $("wrapup-countdown").hidden = !countdown;
    if (countdown) $("wrapup-countdown").textContent = `Wrap-up time left: ${clock(wrapupEndsAt - now)}`;
    if (answeredAt) $("call-timer").textContent = clock(now - answeredAt);
  }
  setInterval(tick, 1000);

  if (S.getItem("token")) start().catch(() => logout(false));
})();
