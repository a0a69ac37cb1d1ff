// The emergency banner (docs/emergency.md): one self-contained script included by
// the agent desktop and the wallboard pages. While the page holds a session
// token (sessionStorage "token" on /agent/, "cti.token" on the wallboard) it
// reads GET /api/emergency/active every 1.5 s (an in-memory answer: no database
// query) and shows a red bar naming each switch in force; none, no bar.
"use strict";
(() => {
  const EVERY_MS = 1500;
  let bar = null, last = "";
  const token = () => sessionStorage.getItem("token") || sessionStorage.getItem("cti.token");

  function describe(s) {
    const scope = s.scope === "all" ? "all calls" : `${s.scope} ${s.value}`;
    const action = { continue: "announcement", hangup: "announcement then hang up", queue: `overflow to ${s.target}`,
                     number: `overflow to ${s.target}`, voicemail: "voicemail" }[s.action] || s.action;
    return `${scope}: ${action} (${s.reason})`;
  }

  function show(active) {
    const text = active.length ? "EMERGENCY — " + active.map(describe).join(" · ") : "";
    if (text === last) return;
    last = text;
    if (!text) { if (bar) { bar.remove(); bar = null; } return; }
    if (!bar) {
      bar = document.createElement("div");
      bar.id = "emergency-banner";
      bar.setAttribute("role", "alert");
      bar.style.cssText = "position:sticky;top:0;z-index:9999;background:#b00020;color:#fff;font-weight:bold;" +
                          "padding:6px 12px;font-family:sans-serif;text-align:center";
      document.body.prepend(bar);
    }
    bar.textContent = text;   // text, never markup: reasons are typed by people
  }

  async function poll() {
    const t = token();
    if (t) {
      try {
        const r = await fetch("/api/emergency/active", { headers: { Authorization: `Bearer ${t}` } });
        if (r.ok) show((await r.json()).active || []);
      } catch (e) { /* the daemon is away: keep what is shown */ }
    } else {
      show([]);
    }
    setTimeout(poll, EVERY_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", poll);
  else poll();
})();
