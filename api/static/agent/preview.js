// Preview campaigns in the agent desktop (docs/dialer.md, "Preview on the desktop"): pick a
// running preview campaign, take its next lead (held for this agent), read the lead card and
// the script (shown as text), call (click-to-dial: the agent goes not ready first) or skip
// with a reason, then record the survey answers and the outcome. A campaign call the dialer
// connected to this agent arrives from app.js as a "cti:campaign" event (the hub's
// campaign.lead message): its lead card, script and survey are shown the same way, with
// the attempt and the call already known (nothing to dial or skip), and the same form.
// On each session (a login, a reloaded page) the attempt awaiting this agent's result, if
// any, is asked for (GET /api/preview/pending) and shown again: a connected campaign call,
// or the agent's own preview dial, is never left without its outcome because the page
// was reloaded.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let lead = null, attempt = null, callId = null;

  const api = (method, path, body) => window.ctiApi(method, path, body);   // app.js
  const error = (text) => { $("pv-error").textContent = text || ""; };
  const status = (text) => { $("pv-status").textContent = text || ""; };

  async function campaigns() {
    error("");
    try {
      const reply = await api("GET", "/api/preview/campaigns");
      const select = $("pv-campaign");
      select.replaceChildren(...reply.campaigns.map((c) => {
        const o = document.createElement("option");
        o.value = String(c.campaign_id);
        o.textContent = c.name;
        return o;
      }));
      status(reply.campaigns.length ? "" : "No preview campaign is running.");
    } catch (e) { error(e.message); }
  }

  // The survey's questions; only those on the path the answers take are shown
  // (docs/dialer.md, "Surveys and branching"): a question's branches by answer, else its
  // next, else the following one; "end" ends it. The server checked it when it was saved.
  let questions = [];

  function after(q, i, answer) {
    let target = answer ? (q.branches || {})[answer] : undefined;
    if (target === undefined) target = q.next;
    if (target === undefined || target === null) return i + 1 < questions.length ? questions[i + 1].id : null;
    return target === "end" ? null : target;
  }

  function branch() {
    const index = new Map(questions.map((q, i) => [q.id, i]));
    const shown = new Set();
    let id = questions.length ? questions[0].id : null;
    while (id !== null && index.has(id) && !shown.has(id)) {
      shown.add(id);
      const i = index.get(id), q = questions[i], el = $(`pv-q-${id}`);
      const answer = el ? el.value : "";
      if (!answer && Object.keys(q.branches || {}).length) break;   // its answer says what follows
      id = after(q, i, answer);
    }
    document.querySelectorAll("#pv-survey [data-box]").forEach((b) => { b.hidden = !shown.has(b.dataset.box); });
  }

  function survey(list) {
    const box = $("pv-survey");
    box.replaceChildren(Object.assign(document.createElement("legend"), { textContent: "Survey" }));
    questions = (list || []).filter((q) => /^[a-z][a-z0-9_]{0,31}$/.test(q.id || ""));
    questions.forEach((q) => {
      const id = `pv-q-${q.id}`;
      const label = Object.assign(document.createElement("label"), { htmlFor: id, textContent: String(q.text) });
      let input;
      if (q.type === "choice" || q.type === "yes_no") {
        input = document.createElement("select");
        const options = q.type === "yes_no" ? ["yes", "no"] : (q.options || []);
        input.append(Object.assign(document.createElement("option"), { value: "", textContent: "—" }));
        options.forEach((v) => input.append(Object.assign(document.createElement("option"),
                                                          { value: String(v), textContent: String(v) })));
      } else {
        input = Object.assign(document.createElement("input"), { maxLength: 500 });
      }
      input.id = id;
      input.dataset.question = q.id;
      input.addEventListener("change", branch);
      input.addEventListener("input", branch);
      const row = document.createElement("div");
      row.dataset.box = q.id;
      row.append(label, input);
      box.append(row);
    });
    branch();
  }

  // A live list's lead calls about a ticket: its number, type, title and state, and a button
  // that opens it in the ticket view (app.js listens for "cti:open-ticket").
  const STATES = { awaiting_callback: "awaiting the confirmation callback", to_redispatch: "visit to arrange again" };
  function ticket(t) {
    const dd = $("pv-ticket");
    const has = !!(t && typeof t.ticket_id === "number");
    dd.hidden = !has; $("pv-ticket-term").hidden = !has;
    dd.replaceChildren();
    if (!has) return;
    const what = `#${t.ticket_id} ${t.type}: ${t.title} (${STATES[t.state] || t.state}; visits ${t.visits}` +
      (t.callback_attempts ? `, callbacks not answered ${t.callback_attempts}` : "") + ") ";
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = `Open ticket #${t.ticket_id}`;
    open.addEventListener("click", () =>
      document.dispatchEvent(new CustomEvent("cti:open-ticket", { detail: { ticket_id: t.ticket_id } })));
    dd.append(document.createTextNode(what), open);
  }

  function show(card) {
    lead = card; attempt = null; callId = null;
    $("pv-card").hidden = !card;
    if (!card) return;
    $("pv-name").textContent = card.name || "(no name)";
    $("pv-phone").textContent = card.phone;
    $("pv-attempts").textContent = String(card.attempts);
    ticket(card.ticket);
    $("pv-script").textContent = card.script || "";
    $("pv-result").reset();
    survey(card.survey);
    $("pv-call").disabled = false;
    $("pv-skip").disabled = false;
  }

  // A progressive or predictive call connected to me: the card of its lead, the result form.
  function connected(msg) {
    if (!msg || !msg.card || typeof msg.attempt_id !== "number") return;
    show(msg.card);
    attempt = msg.attempt_id;
    callId = typeof msg.call_id === "string" ? msg.call_id : null;
    $("pv-call").disabled = true;
    $("pv-skip").disabled = true;
    $("pv-outcome").value = "answered";
    error("");
    status(`Campaign call: ${msg.card.campaign}, lead ${msg.card.lead_id}. Record the outcome below.`);
  }

  // After a reload: the attempt still waiting for my result, shown as it was.
  async function restore(session) {
    if (!session || !session.me || session.me.role !== "agent" || lead) return;
    let reply;
    try { reply = await api("GET", "/api/preview/pending"); } catch (e) { return; }
    const p = reply && reply.pending;
    if (!p || lead) return;
    if (p.kind === "connected") { connected(p); return; }
    show(p.card);
    attempt = p.attempt_id;
    callId = typeof p.call_id === "string" ? p.call_id : null;
    $("pv-call").disabled = true;
    $("pv-skip").disabled = true;
    error("");
    status(`Your call to lead ${p.card.lead_id} (${p.card.campaign}) waits for its outcome. Record it below.`);
  }

  async function next() {
    error("");
    const cid = Number($("pv-campaign").value);
    if (!cid) { error("Pick a campaign first."); return; }
    try {
      show(await api("POST", "/api/preview/next", { campaign_id: cid }));
      status(`Lead ${lead.lead_id} is yours for five minutes.`);
    } catch (e) { show(null); error(e.message); }
  }

  async function call() {
    if (!lead) return;
    error("");
    try {
      const dialed = await api("POST", `/api/preview/leads/${lead.lead_id}/dial`);
      attempt = dialed.attempt_id;
      $("pv-call").disabled = true;
      $("pv-skip").disabled = true;
      status(`Calling ${dialed.phone}…`);
      try {
        callId = (await api("POST", "/api/calls/dial", { number: dialed.phone })).call_id;
        status(`Call ${callId} placed to ${dialed.phone}.`);
      } catch (e) { error(`The call was not placed: ${e.message}. Record what happened below.`); }
    } catch (e) { error(e.message); }
  }

  async function skip() {
    if (!lead) return;
    const reason = $("pv-skip-reason").value.trim();
    if (!reason) { error("Say why you skip this lead."); return; }
    try {
      await api("POST", `/api/preview/leads/${lead.lead_id}/skip`, { reason });
      status("Lead skipped.");
      show(null);
    } catch (e) { error(e.message); }
  }

  async function save(ev) {
    ev.preventDefault();
    if (attempt === null) { error("Call the lead first (or skip it)."); return; }
    const answers = {};
    // Only the questions on the path the answers took: one the branching skipped is not sent.
    document.querySelectorAll("#pv-survey [data-box]:not([hidden]) [data-question]").forEach((el) => {
      if (el.value) answers[el.dataset.question] = el.value.slice(0, 500);
    });
    const body = { outcome: $("pv-outcome").value, answers, opt_out: $("pv-optout").checked };
    const disposition = $("pv-disposition").value.trim();
    if (disposition) body.disposition = disposition;
    const at = $("pv-callback").value;
    if (at) body.callback_at = new Date(at).toISOString();
    if (callId) body.call_id = callId;
    const newPhone = $("pv-newphone").value.trim();
    if (newPhone) body.new_phone = newPhone;      // added to the customer's record
    try {
      const r = await api("POST", `/api/preview/attempts/${attempt}/result`, body);
      status(`Saved: the lead is now ${r.state.replace(/_/g, " ")}.`);
      show(null);
    } catch (e) { error(e.message); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("pv-refresh").addEventListener("click", campaigns);
    $("pv-next").addEventListener("click", next);
    $("pv-call").addEventListener("click", call);
    $("pv-skip").addEventListener("click", skip);
    $("pv-result").addEventListener("submit", save);
    document.addEventListener("cti:campaign", (ev) => connected(ev.detail));
  });
  window.addEventListener("cti:session", (ev) => restore(ev.detail));
  if (window.ctiSession) restore(window.ctiSession);     // the session began before this file ran
  window.addEventListener("cti:logout", () => show(null));
})();
