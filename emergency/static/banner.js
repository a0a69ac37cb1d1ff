// The emergency banner (docs/emergency.md): one self-contained script included by
// the agent desktop and the wallboard pages. While the page holds a session
// token (sessionStorage "token" on /agent/, "cti.token" on the wallboard) it
// long-polls GET /api/emergency/active?since=<version>&wait=10 (the daemon
// answers at once when the set changed, else after 10 s; an in-memory answer,
// no database query) and shows a red bar naming each switch in force.
"use strict";
(() => {
  const RETRY_MS = 2000;
  let bar = null, last = "", version = null;
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
    let again = RETRY_MS;
    if (t) {
      try {
        const q = version === null ? "" : `?since=${version}&wait=10`;
        const r = await fetch("/api/emergency/active" + q, { headers: { Authorization: `Bearer ${t}` } });
        if (r.ok) {
          const data = await r.json();
          show(data.active || []);
          if (data.version !== version) again = 0;   // asked again at once, now waiting for the next change
          version = data.version;
          if (q) again = 0;
        } else {
          version = null;
        }
      } catch (e) { version = null; /* the daemon is away: keep what is shown, try again */ }
    } else {       // not logged in yet: look again soon (sessionStorage only, no request)
      show([]);
      version = null;
      again = 300;
    }
    setTimeout(poll, again);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", poll);
  else poll();
})();
