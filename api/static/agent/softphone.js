// The browser phone inside the agent desktop (docs/agent-client.md, "The phone in the desktop").
// app.js announces the session with the window events "cti:session" {me, token} and
// "cti:logout"; this module seats the agent at the browser phone (POST .../webrtc) when the
// agent's device is a browser phone or the agent asks for it, and drives /phone/phone.js:
// it rings (a tone, the page title, a notification), Accept/Reject, mute, hang up.
// JsSIP (251 KB) is loaded only when the phone starts.
import { Phone } from "/phone/phone.js";

const $ = (id) => document.getElementById(id);
const JSSIP = "/phone/vendor/jssip-3.13.8.min.js";
const REG_WORDS = { off: "Off", connecting: "Connecting…", registered: "Ready to ring",
                    unregistered: "Not registered", failed: "Failed" };
const CALL_WORDS = { none: "No call", ringing: "Ringing", connecting: "Connecting…", talking: "Talking",
                     ended: "Call ended" };
let session = null, ringer = null, notice = null;
const baseTitle = document.title;

const phone = new Phone({
  audio: $("ph-audio"),
  onError: (text) => { $("ph-error").textContent = text || ""; },
  onChange: render,
});
window.ctiDeskPhone = phone;   // for tests and the browser console

function render(s) {
  $("ph-registration").textContent = REG_WORDS[s.registration] || s.registration;
  $("ph-call").textContent = CALL_WORDS[s.call] || s.call;
  $("ph-remote").textContent = s.remote && s.call !== "none" && s.call !== "ended" ? s.remote : "";
  const ringing = s.call === "ringing", live = ["ringing", "connecting", "talking"].includes(s.call);
  $("ph-accept").disabled = !ringing;
  $("ph-reject").disabled = !ringing;
  $("ph-hangup").disabled = !live || ringing;
  $("ph-mute").disabled = s.call !== "talking";
  $("ph-mute").textContent = s.muted ? "Unmute" : "Mute";
  $("ph-mute").setAttribute("aria-pressed", String(!!s.muted));
  $("ph-start").hidden = s.registration === "registered" || s.registration === "connecting";
  $("ph-stop").hidden = !$("ph-start").hidden;
  $("phone-panel").classList.toggle("ringing", ringing);
  ring(ringing, s.remote);
}

// Ringing: a two-tone pattern (Web Audio, no file), the title and a notification.
function ring(on, remote) {
  if (on && !ringer) {
    document.title = `Ringing: ${remote || "a call"} · ${baseTitle}`;
    ringer = startTone();
    if (globalThis.Notification && Notification.permission === "granted" && document.hidden) {
      notice = new Notification("Incoming call", { body: remote || "", tag: "cti-ring" });
      notice.onclick = () => { window.focus(); $("ph-accept").focus(); };
    }
    if (document.activeElement === document.body || !document.activeElement) $("ph-accept").focus();
  } else if (!on && ringer) {
    document.title = baseTitle;
    ringer();
    ringer = null;
    if (notice) { notice.close(); notice = null; }
  }
}

function startTone() {
  const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
  if (!Ctx) return () => {};
  const ctx = new Ctx(), gain = ctx.createGain();
  gain.gain.value = 0;
  gain.connect(ctx.destination);
  const osc = ctx.createOscillator();
  osc.frequency.value = 440;
  osc.connect(gain);
  osc.start();
  let on = false;
  const timer = setInterval(() => {   // 0.4 s on, 0.2 s off, 0.4 s on, 2 s off
    on = !on;
    gain.gain.setTargetAtTime(on ? 0.15 : 0, ctx.currentTime, 0.01);
  }, 600);
  return () => { clearInterval(timer); osc.stop(); ctx.close().catch(() => {}); };
}

function loadLibrary() {
  if (globalThis.JsSIP) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = JSSIP;
    s.onload = () => resolve();
    s.onerror = () => reject(new Error("The phone library did not load."));
    document.head.appendChild(s);
  });
}

async function api(method, path) {
  const r = await fetch(path, { method, headers: { Authorization: `Bearer ${session.token}` } });
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new Error((data && data.message) || `HTTP ${r.status}`);
  return data;
}

/** Seat the agent at this browser's phone and register it. */
async function startPhone() {
  $("ph-error").textContent = "";
  if (!session || !session.me.agent_id) return;
  try {
    if (globalThis.Notification && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
    await loadLibrary();
    await phone.checkMicrophone();   // a refusal is explained before the ACD rings this phone
    const creds = await api("POST", `/api/phone/agents/${encodeURIComponent(session.me.agent_id)}/webrtc`);
    $("ph-device").textContent = "this browser";   // the browser phone is the seat now
    await phone.start(creds);
  } catch (err) {
    $("ph-error").textContent = err.message;
  }
}

async function onSession(detail) {
  session = detail;
  if (!session.me.agent_id) return;
  let view;
  try {
    view = await api("GET", `/api/phone/agents/${encodeURIComponent(session.me.agent_id)}`);
  } catch (err) {
    return;   // no phone gateway here (it needs the database): no panel
  }
  $("phone-panel").hidden = false;
  try {
    $("ph-device").textContent = view.browser_phone ? "this browser" : (view.device || "none");
    phone.autoAnswer = !!view.auto_answer || $("ph-autoanswer").checked;
    $("ph-autoanswer").checked = phone.autoAnswer;
    if (view.browser_phone) await startPhone();
  } catch (err) {
    $("ph-error").textContent = err.message;
  }
}
window.addEventListener("cti:session", (e) => onSession(e.detail));
window.addEventListener("cti:logout", () => {
  session = null;
  phone.stop();
  phone.state.registration = "off";
  render({ ...phone.state, registration: "off", call: "none" });
  $("phone-panel").hidden = true;
});

$("ph-start").addEventListener("click", startPhone);
$("ph-stop").addEventListener("click", () => { phone.stop(); render({ ...phone.state, registration: "off" }); });
$("ph-accept").addEventListener("click", () => phone.answer());
$("ph-reject").addEventListener("click", () => phone.hangup());
$("ph-hangup").addEventListener("click", () => phone.hangup());
$("ph-mute").addEventListener("click", () => phone.mute(!phone.state.muted));
$("ph-autoanswer").addEventListener("change", (e) => { phone.autoAnswer = e.target.checked; });
render(phone.state);
if (window.ctiSession) onSession(window.ctiSession);   // app.js was first
