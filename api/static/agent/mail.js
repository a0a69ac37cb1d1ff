// E-mail threads in the agent desktop (docs/mail.md): the open threads (waiting first, then mine),
// one thread's messages, take, reply, close. The list is asked again every 15 s while logged in, and
// at once when a thread's task comes or goes on /ws (taking a thread takes its task; its offer opens it).
// Bodies: the text/plain one as text; an HTML-only mail from the server's sanitised HTML, parsed
// into an inert document and rebuilt here with DOM calls from a short list of tags (no URL but
// http(s)/mailto links survives, and no image source: nothing remote loads).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let openId = null, timer = null;

  const api = (method, path, body) => window.ctiApi(method, path, body);   // app.js
  const error = (text) => { $("mail-error").textContent = text || ""; };
  const el = (tag, text) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; return e; };
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

  async function refresh() {
    if ($("main").hidden || !sessionStorage.getItem("token")) return;
    try {
      const r = await api("GET", "/api/mail/threads?state=open&limit=100");
      const list = $("mail-threads");
      list.replaceChildren();
      r.threads.forEach((t) => {
        const li = el("li"), b = el("button", `${t.subject} · ${t.address}`);
        b.type = "button"; b.className = "link-button"; b.dataset.threadId = String(t.thread_id);
        b.addEventListener("click", () => openThread(t.thread_id));
        li.appendChild(b);
        li.appendChild(el("span", ` ${t.state}${t.assigned_to ? ` (${t.assigned_to})` : ""}`));
        list.appendChild(li);
      });
      $("mail-none").hidden = r.threads.length > 0;
      error("");
    } catch (err) { error(err.message); }
  }

  const TAGS = new Set(["p", "div", "span", "br", "b", "strong", "i", "em", "u", "s", "a", "ul", "ol", "li", "blockquote",
                        "pre", "code", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
                        "hr"]);
  function rebuild(from, to) {
    from.childNodes.forEach((n) => {
      if (n.nodeType === Node.TEXT_NODE) { to.appendChild(document.createTextNode(n.data)); return; }
      if (n.nodeType !== Node.ELEMENT_NODE) return;
      const tag = n.tagName.toLowerCase();
      if (!TAGS.has(tag)) { rebuild(n, to); return; }
      const e = document.createElement(tag);
      const href = tag === "a" ? (n.getAttribute("href") || "").trim() : "";
      if (/^(https?:|mailto:)/i.test(href)) { e.setAttribute("href", href); e.setAttribute("rel", "noopener noreferrer nofollow"); e.setAttribute("target", "_blank"); }
      rebuild(n, e);
      to.appendChild(e);
    });
  }

  function body(m) {
    const box = el("div");
    box.className = "mail-body";
    if (m.show === "text") box.appendChild(el("pre", m.text));
    else if (m.show === "html") rebuild(new DOMParser().parseFromString(m.html, "text/html").body, box);
    else box.appendChild(el("p", "(no text)"));
    return box;
  }

  async function openThread(id) {
    try {
      const t = await api("GET", `/api/mail/threads/${encodeURIComponent(id)}`);
      openId = t.thread_id;
      $("mail-subject").textContent = t.subject;
      $("mail-meta").textContent = `${t.address} · ${t.state}${t.assigned_to ? ` (${t.assigned_to})` : ""}`
        + (t.customer_id ? ` · customer ${t.customer_id}` : "") + (t.ticket_id ? ` · ticket #${t.ticket_id}` : "");
      const list = $("mail-messages");
      list.replaceChildren();
      t.items.forEach((m) => {
        const li = el("li");
        li.className = `mail-${m.direction}`;
        li.appendChild(el("p", `${m.direction === "in" ? "From" : "Sent by"} ${m.direction === "in" ? (m.from_name || m.from_addr) : (m.author || m.from_addr)} · ${when(m.received_at)}`
          + (m.status === "failed" ? " · NOT SENT" : "") + (m.malformed ? " · malformed mail (kept as received)" : "")));
        li.appendChild(body(m));
        if (m.attachments.length) {
          const ul = el("ul");
          m.attachments.forEach((a) => ul.appendChild(el("li", `${a.filename || "attachment"} (${a.content_type}, ${a.size} bytes)`)));
          li.appendChild(ul);
        }
        list.appendChild(li);
      });
      $("mail-thread").hidden = false;
      $("mail-status").textContent = "";
      error("");
    } catch (err) { error(err.message); }
  }

  async function act(method, suffix, payload, done) {
    if (!openId) return;
    try {
      await api(method, `/api/mail/threads/${openId}/${suffix}`, payload);
      await openThread(openId);
      await refresh();
      $("mail-status").textContent = done;
    } catch (err) { error(err.message); }
  }
  $("mail-take").addEventListener("click", () => act("POST", "take", undefined, "Taken."));
  $("mail-close").addEventListener("click", () => act("POST", "close", undefined, "Closed."));
  $("mail-reply-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("mail-reply-text").value;
    if (!text.trim()) return;
    await act("POST", "reply", { text }, "Reply sent.");
    if (!$("mail-error").textContent) $("mail-reply-text").value = "";
  });
  $("mail-refresh").addEventListener("click", refresh);

  // A mail thread's task offered to me opens that thread; its task leaving me refreshes the list.
  document.addEventListener("cti:task", (e) => {
    const t = e.detail.task;
    if (!t || t.channel !== "email") return;
    const m = /^mail:(\d+)(?:\/\d+)?$/.exec(t.ref || "");
    refresh();
    if (m && e.detail.type === "task.offered") {
      const id = Number(m[1]);
      // The thread becomes mine just after the offer (the server writes it behind the task): look again.
      openThread(id).then(() => setTimeout(() => { if (openId === id) openThread(id); }, 1000));
    } else if (m && openId === Number(m[1])) openThread(openId);
  });

  // Start when the desktop shows (after a login), stop asking while it is hidden.
  new MutationObserver(() => {
    clearInterval(timer);
    if (!$("main").hidden) { refresh(); timer = setInterval(refresh, 15000); }
  }).observe($("main"), { attributes: true, attributeFilter: ["hidden"] });
  if (!$("main").hidden) { refresh(); timer = setInterval(refresh, 15000); }
})();
