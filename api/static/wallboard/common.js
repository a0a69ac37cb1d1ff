// Shared by the wallboard pages: the session token, API calls, small helpers.
"use strict";
const Cti = (() => {
  const KEY = "cti.token";
  const token = () => sessionStorage.getItem(KEY);
  class ApiFailure extends Error {
    constructor(status, errorId, message) { super(message); this.status = status; this.errorId = errorId; }
  }
  async function api(method, path, body) {
    const headers = { "Authorization": `Bearer ${token()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401) { sessionStorage.removeItem(KEY); showLogin(); throw new ApiFailure(401, "unauthenticated", "log in again"); }
    const text = await r.text();
    const data = text && r.headers.get("Content-Type")?.includes("json") ? JSON.parse(text) : text;
    if (!r.ok) throw new ApiFailure(r.status, data && data.error_id, (data && data.message) || r.statusText);
    return data;
  }
  let onReady = () => {};
  function showLogin() {
    document.getElementById("login").hidden = false;
    const main = document.querySelector("main, .page");
    if (main) main.hidden = true;
  }
  // A notice under the header: the page cannot be used by this login (its role), or failed to load.
  function notice(text, link) {
    let box = document.getElementById("notice");
    if (!box) {
      box = el("div", { id: "notice", class: "notice", role: "alert" });
      document.querySelector("header").after(box);
    }
    box.replaceChildren(text, ...(link ? [" ", el("a", { href: link[0] }, link[1])] : []));
    box.hidden = false;
  }
  function start(ready) {
    onReady = ready;
    const form = document.getElementById("login");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = new FormData(form);
      const r = await fetch("/api/login", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: f.get("username"), password: f.get("password") }) });
      const data = await r.json();
      if (!r.ok) { document.getElementById("login-error").textContent = data.message; return; }
      sessionStorage.setItem(KEY, data.token);
      form.hidden = true;
      go();
    });
    const out = document.getElementById("logout");
    out.addEventListener("click", async () => {
      try { await api("POST", "/api/logout"); } catch (e) { /* gone already */ }
      sessionStorage.removeItem(KEY); location.reload();
    });
    if (token()) go(); else showLogin();
  }
  async function go() {
    document.getElementById("logout").hidden = false;
    const main = document.querySelector("main, .page");
    try {
      // The pages are for supervisors and admins: ask before showing an empty board.
      await api("GET", "/api/wallboard");
      if (main) main.hidden = false;
      await onReady();
    } catch (e) {
      if (main) main.hidden = true;
      if (e.status === 403) {
        notice("The wallboard, reports and staffing pages are for supervisors and admins; this login cannot see them.",
          ["/agent/", "Agents: go to the agent desktop."]);
      } else if (e.status !== 401) {
        notice(`The page could not load: ${e.message}`);
      }
    }
  }
  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k ?? ""));
    return e;
  };
  const pct = (v) => v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`;
  const secs = (v) => {
    if (v === null || v === undefined) return "–";
    v = Math.max(0, Math.round(v));
    return v < 60 ? `${v}s` : v < 3600 ? `${Math.floor(v / 60)}m${String(v % 60).padStart(2, "0")}` :
      `${Math.floor(v / 3600)}h${String(Math.floor(v % 3600 / 60)).padStart(2, "0")}`;
  };
  const time = (t) => new Date(t * 1000).toLocaleTimeString();
  // The words for an agent state ("on_call" -> "on call", "wrapup" -> "wrap-up").
  const stateWords = (s) => ({ wrapup: "wrap-up", on_call: "on call", not_ready: "not ready", logged_out: "logged out" })[s] || s;
  return { api, start, token, el, pct, secs, time, notice, stateWords };
})();
