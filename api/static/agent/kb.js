// The knowledge base in the agent desktop (docs/knowledge.md): the top 3 articles for the call
// on the card, asked as soon as its pop arrives (before the agent answers) and again as the
// agent writes call notes; an article opens in the panel (rendered safely by the server) and
// takes "Helped" / "Not relevant"; a search box ("/" from anywhere, arrows, Enter, Escape).
// app.js tells this module about cards with a "cti:card" event; nothing else is shared.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let callId = null, card = null, openId = null, opened = null, notesTimer = null, searchTimer = null, asked = 0;
  let results = [], active = -1;

  const api = (method, path, body) => window.ctiApi(method, path, body);   // app.js
  const error = (text) => { $("kb-error").textContent = text || ""; };

  // -- suggestions ------------------------------------------------------------------------
  function context() {
    const c = card || {};
    const menus = [];
    ((c.ivr && c.ivr.path) || []).forEach((s) => { if (s.menu && !menus.includes(s.menu)) menus.push(s.menu); });
    const ok = (v) => typeof v === "string" && /^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$/.test(v);
    const body = { call_id: callId, notes: $("kb-notes").value.slice(0, 4000), ivr_path: menus.filter(ok).slice(0, 30),
                   tickets: (c.open_tickets || []).filter((t) => /^[a-z][a-z0-9_]{0,31}$/.test(t.type || ""))
                     .slice(0, 10).map((t) => ({ type: t.type, title: String(t.title || "").slice(0, 300) })) };
    if (ok(c.queue)) body.queue = c.queue;
    if (c.customer && /^[a-z]{2}$/.test(c.customer.language || "")) body.language = c.customer.language;
    return body;
  }

  async function suggest(since) {
    const n = ++asked, id = callId;
    try {
      const reply = await api("POST", "/api/kb/suggestions", context());
      if (n !== asked || id !== callId) return;        // a later ask, or another call, took over
      const list = $("kb-suggestions");
      list.replaceChildren();
      reply.suggestions.forEach((s) => {
        const li = document.createElement("li"), b = document.createElement("button");
        b.type = "button"; b.textContent = s.title; b.dataset.articleId = String(s.article_id);
        b.addEventListener("click", () => openArticle(s.article_id));
        li.appendChild(b); list.appendChild(li);
      });
      $("kb-none").hidden = reply.suggestions.length > 0;
      if (since !== undefined) $("kb-suggestions").dataset.ms = String(Math.round(performance.now() - since));
      error("");
    } catch (err) { if (n === asked) error(err.message); }
  }

  document.addEventListener("cti:card", (e) => {
    const msg = e.detail;
    if (!msg || !msg.card) return;
    const fresh = msg.call_id !== callId;
    if (!fresh && msg.phase === "ended") return;
    const since = performance.now();
    card = msg.card;
    if (fresh) {
      callId = msg.call_id;
      $("kb-notes").value = "";
      $("kb-call").textContent = "for this call";
      suggest(since);
    } else if (msg.phase === "answered" || msg.phase === "transferred") {
      suggest();
    }
  });

  $("kb-notes").addEventListener("input", () => {
    clearTimeout(notesTimer);
    if (callId) notesTimer = setTimeout(() => suggest(), 400);
  });

  // -- an article ---------------------------------------------------------------------------
  const TAGS = new Set(["p", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "a", "img", "ul", "ol", "li", "code",
                        "pre", "blockquote", "hr", "br", "table", "thead", "tbody", "tr", "th", "td", "s"]);
  const ATTRS = { a: ["href", "title", "rel", "target"], img: ["src", "alt", "title"], ol: ["start"] };
  // A URL with a scheme must be one of these (the server checked already; this page checks again).
  const SAFE_URL = /^(https?:|mailto:|tel:)|^(?![a-z][a-z0-9+.-]*:)/i;
  function build(nodes, parent) {
    (Array.isArray(nodes) ? nodes : []).forEach((n) => {
      if (!n || typeof n !== "object") return;
      if (typeof n.text === "string") { parent.appendChild(document.createTextNode(n.text)); return; }
      if (!TAGS.has(n.tag)) { build(n.children, parent); return; }
      const el = document.createElement(n.tag);
      (ATTRS[n.tag] || []).forEach((k) => {
        const v = n.attrs && n.attrs[k];
        if (typeof v !== "string") return;
        if ((k === "href" || k === "src") && !SAFE_URL.test(v.trim()) && !(k === "src" && /^data:image\//i.test(v))) return;
        el.setAttribute(k, v);
      });
      build(n.children, el);
      parent.appendChild(el);
    });
  }

  async function openArticle(id) {
    try {
      const a = await api("GET", `/api/kb/articles/${encodeURIComponent(id)}`);
      openId = a.article_id; opened = a;
      $("kb-article-title").textContent = a.title;
      // The article as nodes (kb/render.py to_tree), built with DOM calls: no HTML is parsed here.
      $("kb-article-body").replaceChildren();
      build(a.doc, $("kb-article-body"));
      $("kb-feedback-status").textContent = "";
      $("kb-helped").disabled = $("kb-not-relevant").disabled = !callId;
      $("kb-article").hidden = false;
      $("kb-article-title").focus();
      error("");
    } catch (err) { error(err.message); }
  }

  async function feedback(helped) {
    if (!openId || !callId) return;
    try {
      // The notes go along: their words the article lacks feed the synonyms proposed to KB admins.
      const r = await api("POST", "/api/kb/feedback", { article_id: openId, call_id: callId, helped,
                                                       notes: $("kb-notes").value.slice(0, 4000) });
      $("kb-feedback-status").textContent = helped ? `Marked helpful (${r.helped} so far).` : "Marked not relevant.";
    } catch (err) { error(err.message); }
  }
  $("kb-helped").addEventListener("click", () => feedback(true));
  $("kb-not-relevant").addEventListener("click", () => feedback(false));
  $("kb-close").addEventListener("click", () => { $("kb-article").hidden = true; openId = null; opened = null; });

  // -- proposals: what this call taught (a supervisor approves) ----------------------------------
  $("kb-propose-edit").addEventListener("change", () => {
    if ($("kb-propose-edit").checked && opened) {
      $("kb-propose-headline").value = opened.title; $("kb-propose-text").value = opened.body;
    }
  });
  $("kb-propose-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const edit = $("kb-propose-edit").checked && opened;
    if ($("kb-propose-edit").checked && !opened) { $("kb-propose-status").textContent = "Open the article first."; return; }
    const body = { kind: edit ? "edit" : "new", title: $("kb-propose-headline").value, body: $("kb-propose-text").value };
    if (edit) body.article_id = opened.article_id;
    if (callId) { body.call_id = callId; body.notes = $("kb-notes").value.slice(0, 4000); }
    try {
      const p = await api("POST", "/api/kb/proposals", body);
      $("kb-propose-status").textContent = `Sent for approval (proposal ${p.proposal_id}).`;
      $("kb-propose-form").reset();
    } catch (err) { $("kb-propose-status").textContent = err.message; }
  });

  // -- search, keyboard first --------------------------------------------------------------------
  function showResults() {
    const list = $("kb-results");
    list.replaceChildren();
    results.forEach((h, i) => {
      const li = document.createElement("li");
      li.id = `kb-r-${i}`; li.setAttribute("role", "option"); li.setAttribute("aria-selected", String(i === active));
      li.textContent = h.title;
      li.addEventListener("click", () => openArticle(h.article_id));
      list.appendChild(li);
    });
    $("kb-q").setAttribute("aria-activedescendant", active >= 0 ? `kb-r-${active}` : "");
  }

  async function search() {
    const q = $("kb-q").value.trim();
    if (!q) { results = []; active = -1; showResults(); return; }
    try {
      const lang = card && card.customer && /^[a-z]{2}$/.test(card.customer.language || "") ? card.customer.language : "en";
      const r = await api("GET", `/api/kb/search?q=${encodeURIComponent(q.slice(0, 500))}&language=${lang}`);
      if ($("kb-q").value.trim() !== q) return;
      results = r.hits; active = results.length ? 0 : -1; showResults();
      error("");
    } catch (err) { error(err.message); }
  }

  $("kb-q").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(search, 200); });
  $("kb-q").addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (!results.length) return;
      active = (active + (e.key === "ArrowDown" ? 1 : results.length - 1)) % results.length;
      showResults();
    } else if (e.key === "Enter") {
      e.preventDefault();
      if (active >= 0) openArticle(results[active].article_id);
      else search();
    } else if (e.key === "Escape") {
      $("kb-q").value = ""; results = []; active = -1; showResults(); $("kb-q").blur();
    }
  });
  $("kb-search-form").addEventListener("submit", (e) => e.preventDefault());
  document.addEventListener("keydown", (e) => {
    const t = e.target, typing = t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
    if (e.key === "/" && !typing && !e.ctrlKey && !e.metaKey && !e.altKey && !$("main").hidden) {
      e.preventDefault(); $("kb-q").focus();
    }
  });
})();
