// What the chats and messages panels share (docs/omnichannel.md): canned replies in a <select>
// that inserts the chosen text at the reply box's caret, and a task's transfer to a queue or an agent.
// Through app.js's window.ctiApi; text only (textContent), never markup.
"use strict";
(() => {
  const api = (method, path, body) => window.ctiApi(method, path, body);   // app.js
  const cache = new Map();     // queue -> {at, list}: asked again after a minute

  async function replies(queue) {
    const hit = cache.get(queue);
    if (hit && Date.now() - hit.at < 60000) return hit.list;
    try {
      const r = await api("GET", `/api/canned-replies?queue=${encodeURIComponent(queue)}`);
      cache.set(queue, { at: Date.now(), list: r.replies });
      return r.replies;
    } catch (e) { return []; }
  }

  async function load(select, queue) {
    const list = queue ? await replies(queue) : [];
    const first = document.createElement("option");
    first.value = ""; first.textContent = list.length ? "Insert a canned reply…" : "No canned replies";
    select.replaceChildren(first, ...list.map((r) => {
      const o = document.createElement("option");
      o.value = String(r.reply_id); o.textContent = r.title; o.dataset.body = r.body;
      return o;
    }));
    select.disabled = !list.length;
  }

  function attach(select, textarea) {
    select.addEventListener("change", () => {
      const o = select.selectedOptions[0];
      if (!o || !o.value) return;
      const at = textarea.selectionStart ?? textarea.value.length, end = textarea.selectionEnd ?? at;
      textarea.value = textarea.value.slice(0, at) + o.dataset.body + textarea.value.slice(end);
      select.value = "";
      textarea.focus();
      textarea.dispatchEvent(new Event("input"));
    });
  }

  // The task's transfer targets as the choices of a <datalist> (queue ids, or agent ids named).
  async function targets(taskId, kind, datalist) {
    try {
      const t = await api("GET", `/api/tasks/${encodeURIComponent(taskId)}/transfer-targets`);
      datalist.replaceChildren(...(kind === "agent" ? t.agents.map((a) => [a.agent_id, `${a.name} · ${a.state} · ${a.load}/${a.capacity}`])
        : t.queues.map((q) => [q, ""])).map(([value, label]) => {
        const o = document.createElement("option");
        o.value = value; if (label) o.label = label;
        return o;
      }));
    } catch (e) { datalist.replaceChildren(); }
  }

  // kind: "queue" or "agent"; resolves to the task as it is then.
  const transfer = (taskId, kind, to) =>
    api("POST", `/api/tasks/${encodeURIComponent(taskId)}/transfer`, { [kind]: to.trim() });

  window.ctiTaskKit = { canned: { load, attach }, transfer, targets };
})();
