// The wallboard's emergency control (docs/emergency.md, "Switching"): declare a switch
// and end one, through the API the CLI and phones also reach (POST /api/emergency/switches,
// POST /api/emergency/switches/{id}/end). A reason is required; nothing is sent before the
// supervisor confirms what the page says will happen; the answer (or the refusal, naming
// the field) is shown under the form. Self-contained: it adds its own section to the board
// and touches nothing of wallboard.js. Shown only to a login the API lets list switches.
"use strict";
(() => {
  const { api, el } = Cti;
  const SCOPES = ["all", "node", "queue", "did", "prefix", "ivr"];
  const ACTIONS = { continue: "announcement, then the call goes on", hangup: "announcement, then hang up",
                    queue: "overflow to a queue", number: "overflow to a number", voicemail: "voicemail" };
  const TARGETED = new Set(["queue", "number", "voicemail"]);
  let box = null, list = null, out = null, pending = null;

  const field = (label, input) => el("label", {}, label, " ", input);
  const say = (text, kind) => { out.className = `feedback ${kind || ""}`.trim(); out.textContent = text; };
  const scopeText = (s) => s.scope === "all" ? "all calls" : `${s.scope} ${s.value}`;

  function build() {
    const scope = el("select", { name: "scope", id: "em-scope" }, ...SCOPES.map((s) => el("option", { value: s }, s)));
    const value = el("input", { name: "value", id: "em-value", placeholder: "queue, DID, +4930…", maxlength: "64",
                                disabled: "" });
    const action = el("select", { name: "action", id: "em-action" },
                      ...Object.entries(ACTIONS).map(([k, v]) => el("option", { value: k }, `${k}: ${v}`)));
    const target = el("input", { name: "target", id: "em-target", placeholder: "queue, number or mailbox",
                                 maxlength: "64", disabled: "" });
    const spoken = el("input", { name: "announcement", id: "em-announcement", maxlength: "400", size: "40",
                                 placeholder: "announcement, spoken (optional)" });
    const reason = el("input", { name: "reason", id: "em-reason", maxlength: "200", size: "30", required: "",
                                 placeholder: "reason (required, shown on the banner)" });
    // novalidate: the page says what is missing itself (the browser would block the submit silently).
    const form = el("form", { id: "em-form", class: "controls", novalidate: "" },
                    field("Scope", scope), field("Value", value), field("Action", action), field("Target", target),
                    field("Say", spoken), field("Reason", reason), el("button", { id: "em-on" }, "Switch on…"));
    scope.addEventListener("change", () => { value.disabled = scope.value === "all"; if (value.disabled) value.value = ""; });
    action.addEventListener("change", () => { target.disabled = !TARGETED.has(action.value); if (target.disabled) target.value = ""; });
    const confirmBox = el("div", { id: "em-confirm", class: "notice", hidden: "" });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!reason.value.trim()) { say("A reason is required: it is shown on every page's banner.", "failed"); reason.focus(); return; }
      if (scope.value !== "all" && !value.value.trim()) { say(`Scope ${scope.value} needs a value.`, "failed"); value.focus(); return; }
      pending = { scope: scope.value, value: value.value.trim(), action: action.value, target: target.value.trim(),
                  announcement: spoken.value.trim(), reason: reason.value.trim(), confirm: true };
      confirmBox.replaceChildren(
        `Switch on an emergency for ${scopeText(pending)}: ${ACTIONS[pending.action]}${pending.target ? ` (${pending.target})` : ""}. `
        + "Callers waiting in scope are moved at once, new calls take the emergency path. ",
        el("button", { id: "em-confirm-on", type: "button", onclick: () => declare(form, confirmBox) }, "Confirm: switch on"),
        " ", el("button", { type: "button", onclick: () => { pending = null; confirmBox.hidden = true; say("Not switched on."); } }, "Cancel"));
      confirmBox.hidden = false;
      document.getElementById("em-confirm-on").focus();
    });
    list = el("tbody");
    out = el("p", { id: "em-feedback", class: "feedback", role: "status", "aria-live": "polite" });
    box = el("section", { id: "emergency-control" },
             el("details", { id: "em-details" }, el("summary", {}, el("b", {}, "Emergency switches")),
                form, confirmBox, out,
                el("table", { id: "em-open" }, el("thead", {}, el("tr", {}, ...["switch", "scope", "action", "reason", "since", "end"]
                  .map((h) => el("th", {}, h)))), list)));
    box.querySelector("details").addEventListener("toggle", () => refresh());
    document.getElementById("board").append(box);
  }

  async function declare(form, confirmBox) {
    if (!pending) return;
    const body = pending;
    pending = null;
    confirmBox.hidden = true;
    say("Switching on…");
    try {
      const s = await api("POST", "/api/emergency/switches", body);
      say(`Emergency switch ${s.id} is on: ${scopeText(s)}, ${s.action}.`, "ok");
      form.reset();
      form.querySelector("#em-value").disabled = true;
      form.querySelector("#em-target").disabled = true;
    } catch (e) {
      say(`Not switched on: ${e.message}.`, "failed");
    }
    await refresh();
  }

  async function end(s, reasonInput) {
    const reason = reasonInput.value.trim();
    if (!reason) { say("Say why the switch ends (the reason is required).", "failed"); reasonInput.focus(); return; }
    const row = reasonInput.closest("tr");
    const cell = reasonInput.closest("td");
    cell.replaceChildren(`End switch ${s.id} (${scopeText(s)})? `,
      el("button", { class: "em-confirm-off", type: "button", onclick: async () => {
        say(`Switching ${s.id} off…`);
        try {
          await api("POST", `/api/emergency/switches/${s.id}/end`, { reason, confirm: true });
          say(`Emergency switch ${s.id} is off.`, "ok");
        } catch (e) {
          say(`Switch ${s.id} not switched off: ${e.message}.`, "failed");
        }
        await refresh();
      } }, "Confirm: switch off"),
      " ", el("button", { type: "button", onclick: () => refresh() }, "Cancel"));
    row.querySelector(".em-confirm-off").focus();
  }

  // ``quiet``: the periodic refresh, which leaves the list alone while someone is ending a switch
  // (a reason typed, a confirmation shown) rather than wipe what they typed.
  async function refresh(quiet) {
    if (!box || !box.querySelector("details").open) return;
    if (quiet === true && (list.querySelector(".em-confirm-off")
        || [...list.querySelectorAll(".em-end-reason")].some((i) => i.value))) return;
    let data;
    try { data = await api("GET", "/api/emergency/switches"); } catch (e) { say(`Switches not read: ${e.message}.`, "failed"); return; }
    list.replaceChildren(...data.switches.map((s) => {
      const why = el("input", { class: "em-end-reason", maxlength: "200", placeholder: "why it ends", "aria-label": `why switch ${s.id} ends` });
      return el("tr", { "data-id": String(s.id) }, el("td", {}, String(s.id)), el("td", {}, scopeText(s)),
                el("td", {}, s.target ? `${s.action} ${s.target}` : s.action), el("td", {}, s.reason),
                el("td", {}, new Date(s.starts_at).toLocaleString()),
                el("td", {}, why, " ", el("button", { type: "button", class: "em-off", onclick: () => end(s, why) }, "Switch off…")));
    }));
  }

  async function start() {
    const board = document.getElementById("board");
    if (!Cti.token() || !board || board.hidden) { setTimeout(start, 500); return; }
    try { await api("GET", "/api/emergency/switches?limit=1"); } catch (e) { return; }   // not for this login
    build();
    setInterval(() => refresh(true), 15000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
