// The phone page: sign in, get the browser phone's credentials, drive the Phone (phone.js).
import { Phone } from "./phone.js";

const $ = (id) => document.getElementById(id);
const showError = (text) => { $("error").textContent = text || ""; };
const phone = new Phone({
  audio: $("audio"),
  onError: showError,
  onChange: (s) => {
    $("registration").textContent = s.registration;
    $("call").textContent = s.call;
    $("remote").textContent = s.remote ? `with ${s.remote}` : "";
    const talking = s.call === "talking";
    $("answer").disabled = s.call !== "ringing";
    $("hangup").disabled = !["ringing", "connecting", "talking"].includes(s.call);
    $("mute").disabled = $("hold").disabled = !talking;
    $("mute").textContent = s.muted ? "Unmute" : "Mute";
    $("mute").setAttribute("aria-pressed", String(s.muted));
    $("hold").textContent = s.held ? "Resume" : "Hold";
    $("hold").setAttribute("aria-pressed", String(s.held));
    document.querySelectorAll("#keypad button").forEach((b) => { b.disabled = !talking; });
  },
});
window.ctiPhone = phone;

for (const d of "123456789*0#") {
  const b = document.createElement("button");
  b.textContent = d;
  b.disabled = true;
  b.addEventListener("click", () => phone.dtmf(d));
  $("keypad").append(b);
}
$("answer").addEventListener("click", () => phone.answer());
$("hangup").addEventListener("click", () => phone.hangup());
$("mute").addEventListener("click", () => phone.mute(!phone.state.muted));
$("hold").addEventListener("click", () => phone.hold(!phone.state.held));
$("autoanswer").addEventListener("change", (e) => { phone.autoAnswer = e.target.checked; });

async function api(path, token, options = {}) {
  const res = await fetch(path, { ...options, headers: { "Content-Type": "application/json",
    ...(token ? { Authorization: `Bearer ${token}` } : {}) } });
  const body = res.status === 204 ? null : await res.json();
  if (!res.ok) throw new Error(body && body.message ? body.message : `HTTP ${res.status}`);
  return body;
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  showError("");
  const form = new FormData(e.target);
  try {
    await phone.checkMicrophone();  // explained before the agent is seated at this phone
    const login = await api("/api/login", null, { method: "POST",
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }) });
    const me = login.user;
    if (!me.agent_id) throw new Error("This user is not an agent: the phone is for agents.");
    const creds = await api(`/api/phone/agents/${encodeURIComponent(me.agent_id)}/webrtc`, login.token,
                            { method: "POST" });
    await phone.start(creds);
  } catch (err) {
    showError(err.message);
  }
});
