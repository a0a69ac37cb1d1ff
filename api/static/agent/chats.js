// The agent's web chats (docs/omnichannel.md): one tab per chat, an unread mark on the
// others, reply (with canned replies: taskkit.js), typing, transfer, close with a disposition. Fed by app.js's "cti:task" events
// (task.offered, task.closed, chat.message, chat.typing from /ws); sends through the API.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const chats = new Map();    // task_id -> {task, lines: Map(seq -> line), unread, tab}
  let current = null, typingTimer = null, typingOn = false;

  const api = (method, path, body) => window.ctiApi(method, path, body);   // app.js

  function open(task) {
    const me = window.ctiSession && window.ctiSession.me;
    if (task.channel !== "chat" || chats.has(task.task_id)) return;
    if (me && me.agent_id && task.agent_id && task.agent_id !== me.agent_id) return;   // a supervisor's stream
    const tab = document.createElement("button");
    tab.type = "button"; tab.setAttribute("role", "tab"); tab.className = "chat-tab";
    tab.dataset.task = task.task_id;
    tab.addEventListener("click", () => select(task.task_id));
    $("chat-tabs").appendChild(tab);
    const c = { task, lines: new Map(), unread: 0, tab };
    chats.set(task.task_id, c);
    label(c);
    $("chats-none").hidden = true;
    if (!current) select(task.task_id);
    load(c);
  }

  function label(c) {
    c.tab.textContent = (c.name ? `${c.name} · ` : "") + (c.task.customer_ref || c.task.task_id) +
      (c.unread ? ` (${c.unread} new)` : "");
    c.tab.classList.toggle("unread", c.unread > 0);
    c.tab.setAttribute("aria-selected", String(current === c.task.task_id));
  }

  async function load(c) {
    const after = Math.max(0, ...c.lines.keys());
    try {
      const r = await api("GET", `/api/tasks/${encodeURIComponent(c.task.task_id)}/messages?after=${after}`);
      r.messages.forEach((m) => add(c, m, false));
      if (r.customer) { c.name = r.customer; label(c); }
    } catch (e) { /* the chat's messages come on /ws too */ }
  }

  function add(c, m, live) {
    if (c.lines.has(m.seq)) return;
    c.lines.set(m.seq, m);
    if (live && current !== c.task.task_id && m.sender === "customer") { c.unread += 1; label(c); }
    if (current === c.task.task_id) render(c);
  }

  function select(id) {
    current = id;
    const c = chats.get(id);
    chats.forEach(label);
    $("chat-pane").hidden = !c;
    if (!c) return;
    c.unread = 0; label(c);
    $("chat-customer").textContent = `${c.task.customer_ref} — ${c.task.subject || ""}`;
    $("chat-typing").hidden = true;
    if (window.ctiTaskKit) window.ctiTaskKit.canned.load($("chat-canned"), c.task.queue);   // taskkit.js
    render(c);
  }

  function render(c) {
    const log = $("chat-log");
    log.replaceChildren(...[...c.lines.values()].sort((a, b) => a.seq - b.seq).map((m) => {
      const li = document.createElement("li");
      li.className = `chat-${m.sender}`; li.dataset.seq = String(m.seq);
      li.textContent = `${m.sender === "customer" ? "Customer" : m.sender === "agent" ? "Me" : "*"}: ${m.body}`;
      return li;
    }));
  }

  function closeTab(id) {
    const c = chats.get(id);
    if (!c) return;
    c.tab.remove(); chats.delete(id);
    if (current === id) { current = null; const next = chats.keys().next(); select(next.done ? null : next.value); }
    $("chats-none").hidden = chats.size > 0;
  }

  document.addEventListener("cti:task", (e) => {
    const msg = e.detail;
    if (msg.type === "task.offered") open(msg.task);
    else if (msg.type === "task.closed" || msg.type === "task.released") closeTab(msg.task.task_id);
    else if (msg.type === "chat.message") {
      const c = chats.get(msg.task_id);
      if (c) add(c, msg, true);
    } else if (msg.type === "chat.typing" && msg.task_id === current) $("chat-typing").hidden = !msg.on;
  });
  document.addEventListener("cti:session", reload);
  window.addEventListener("cti:session", reload);
  window.addEventListener("cti:logout", () => { [...chats.keys()].forEach(closeTab); });

  async function reload() {
    try { (await api("GET", "/api/tasks")).tasks.forEach(open); } catch (e) { /* not an agent, or none */ }
  }

  $("chat-reply").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("chat-text"), body = text.value.trim(), id = current;
    if (!id || !body) return;
    $("chat-error").textContent = "";
    try {
      const m = await api("POST", `/api/tasks/${encodeURIComponent(id)}/messages`, { body });
      text.value = "";
      const c = chats.get(id);
      if (c) add(c, m, false);
    } catch (err) { $("chat-error").textContent = err.message; }   // the text stays in the box
  });
  $("chat-text").addEventListener("input", () => {
    if (!current) return;
    const id = current;
    if (!typingOn) { typingOn = true; api("POST", `/api/tasks/${encodeURIComponent(id)}/typing`, { on: true }).catch(() => {}); }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => { typingOn = false;
      api("POST", `/api/tasks/${encodeURIComponent(id)}/typing`, { on: false }).catch(() => {}); }, 3000);
  });
  if (window.ctiTaskKit) window.ctiTaskKit.canned.attach($("chat-canned"), $("chat-text"));
  const targets = () => { if (current && window.ctiTaskKit) window.ctiTaskKit.targets(current, $("chat-transfer-kind").value, $("chat-transfer-targets")); };
  $("chat-transfer-kind").addEventListener("change", targets);
  $("chat-transfer-to").addEventListener("focus", targets);
  $("chat-transfer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = current;
    if (!id || !window.ctiTaskKit) return;
    $("chat-error").textContent = "";
    try {
      const t = await window.ctiTaskKit.transfer(id, $("chat-transfer-kind").value, $("chat-transfer-to").value);
      $("chat-transfer-to").value = "";
      if (t.agent_id !== (window.ctiSession && window.ctiSession.me && window.ctiSession.me.agent_id)) closeTab(id);
    } catch (err) { $("chat-error").textContent = err.message; }
  });
  $("chat-close").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!current) return;
    const id = current;     // task.closed on /ws may close the tab (and select another) before the reply
    $("chat-error").textContent = "";
    try {
      await api("POST", `/api/tasks/${encodeURIComponent(id)}/close`, { disposition: $("chat-disposition").value });
      closeTab(id);
    } catch (err) { $("chat-error").textContent = err.message; }
  });
})();
