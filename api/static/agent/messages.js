// The agent's messaging conversations (SMS and messaging apps, docs/messaging.md): those of my
// open message tasks, one conversation's messages with their delivery, a reply (with canned
// replies), transfer and close. The list follows app.js's "cti:task" events (task.offered,
// task.released, task.closed of the message channel) and is asked again every 15 s while shown.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const kit = () => window.ctiTaskKit;     // taskkit.js
  let openId = null, timer = null;
  const tasks = new Map();                 // conversation id -> my task (its queue: the canned replies)

  const api = (method, path, body) => window.ctiApi(method, path, body);   // app.js
  const error = (text) => { $("msg-error").textContent = text || ""; };
  const el = (tag, text) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; };
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
  const conversationOf = (ref) => { const m = /^conversation-(\d+)$/.exec(ref || ""); return m ? Number(m[1]) : null; };

  async function refresh() {
    if ($("main").hidden || !sessionStorage.getItem("token")) return;
    try {
      const mine = await api("GET", "/api/tasks");
      tasks.clear();
      mine.tasks.filter((t) => t.channel === "message").forEach((t) => {
        const id = conversationOf(t.ref);
        if (id !== null) tasks.set(id, t);
      });
      const r = await api("GET", "/api/messaging/conversations?mine=true&limit=100");
      const list = $("msg-conversations");
      list.replaceChildren();
      r.conversations.forEach((c) => {
        const li = el("li"), b = el("button", `${c.number} · ${c.state}`);
        b.type = "button"; b.className = "link-button"; b.dataset.conversationId = String(c.conversation_id);
        b.addEventListener("click", () => openConversation(c.conversation_id));
        li.appendChild(b);
        li.appendChild(el("span", ` ${when(c.last_at)}`));
        list.appendChild(li);
      });
      $("msg-none").hidden = r.conversations.length > 0;
      if (openId !== null && !r.conversations.some((c) => c.conversation_id === openId)) {
        openId = null; $("msg-conversation").hidden = true;
      }
      error("");
    } catch (err) { error(err.message); }
  }

  async function openConversation(id) {
    try {
      const c = await api("GET", `/api/messaging/conversations/${encodeURIComponent(id)}`);
      openId = c.conversation_id;
      $("msg-number").textContent = c.number;
      $("msg-meta").textContent = `${c.state}` + (c.customer_id ? ` · customer ${c.customer_id}` : "");
      $("msg-log").replaceChildren(...c.messages.map((m) => {
        const li = el("li", `${m.direction === "in" ? "Customer" : (m.author || "Agent")} · ${when(m.sent_at)}: ${m.text}`
          + (m.direction === "out" ? ` (${m.delivery}${m.last_error ? `: ${m.last_error}` : ""})` : ""));
        li.className = `msg-${m.direction}`; li.dataset.messageId = String(m.message_id);
        return li;
      }));
      $("msg-conversation").hidden = false;
      const task = tasks.get(openId);
      if (kit()) kit().canned.load($("msg-canned"), task ? task.queue : null);
      $("msg-status").textContent = "";
      error("");
    } catch (err) { error(err.message); }
  }

  $("msg-reply").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("msg-text").value.trim(), id = openId;
    if (id === null || !text) return;
    try {
      await api("POST", `/api/messaging/conversations/${id}/messages`, { text });
      $("msg-text").value = "";
      $("msg-status").textContent = "Reply queued.";
      await openConversation(id);
    } catch (err) { error(err.message); }   // the text stays in the box
  });
  $("msg-close").addEventListener("click", async () => {
    const id = openId;
    if (id === null) return;
    try {
      await api("POST", `/api/messaging/conversations/${id}/close`);
      openId = null; $("msg-conversation").hidden = true;
      await refresh();
    } catch (err) { error(err.message); }
  });
  const targets = () => { const t = tasks.get(openId); if (t && kit()) kit().targets(t.task_id, $("msg-transfer-kind").value, $("msg-transfer-targets")); };
  $("msg-transfer-kind").addEventListener("change", targets);
  $("msg-transfer-to").addEventListener("focus", targets);
  $("msg-transfer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const task = tasks.get(openId);
    if (!task || !kit()) return;
    try {
      await kit().transfer(task.task_id, $("msg-transfer-kind").value, $("msg-transfer-to").value);
      $("msg-transfer-to").value = "";
      await refresh();
    } catch (err) { error(err.message); }
  });
  if (kit()) kit().canned.attach($("msg-canned"), $("msg-text"));

  document.addEventListener("cti:task", (e) => {
    const t = e.detail.task;
    if (t && t.channel === "message" && /^task\.(offered|released|closed)$/.test(e.detail.type)) refresh();
  });
  window.addEventListener("cti:logout", () => { openId = null; $("msg-conversation").hidden = true; $("msg-conversations").replaceChildren(); });
  new MutationObserver(() => {
    clearInterval(timer);
    if (!$("main").hidden) { refresh(); timer = setInterval(refresh, 15000); }
  }).observe($("main"), { attributes: true, attributeFilter: ["hidden"] });
  if (!$("main").hidden) { refresh(); timer = setInterval(refresh, 15000); }
})();
