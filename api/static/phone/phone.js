// The agent's browser phone: a WebRTC SIP phone registered through Asterisk's
// PJSIP WebSocket transport (docs/softphone.md), built on JsSIP (vendor/, a
// classic script defining the global JsSIP: load it before this module).
//
//   import { Phone, explainMediaError } from "/phone/phone.js";
//   const phone = new Phone({ audio: document.querySelector("audio"), onChange, onError });
//   await phone.start(credentials);       // from POST /api/phone/agents/{id}/webrtc
//   phone.answer(); phone.hangup(); phone.mute(true); phone.hold(true); phone.dtmf("5");
//
// onChange(state) gets {registration, call, muted, held, remote, autoAnswered}:
// registration is "off" | "connecting" | "registered" | "unregistered" | "failed";
// call is "none" | "ringing" | "connecting" | "talking" | "ended".
// onError(message) gets a sentence for the agent, never a stack trace.

const MEDIA_ERRORS = {
  NotAllowedError: "Microphone access was refused. Allow the microphone for this site " +
    "(the icon left of the address bar), then reload the page.",
  SecurityError: "The browser refused the microphone: this page must be opened over https " +
    "(or on localhost).",
  NotFoundError: "No microphone was found. Plug in a headset or a microphone, then try again.",
  NotReadableError: "The microphone could not be opened: another application may be using it, " +
    "or the device failed. Close the other application or reconnect the headset.",
  OverconstrainedError: "The chosen microphone is not available. Pick another input device.",
  AbortError: "The microphone stopped while starting. Try again, or reconnect the headset.",
};

/** A sentence an agent can act on, for an error of getUserMedia (or of a call's media). */
export function explainMediaError(err) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "This browser cannot use a microphone here: open the page over https (or on localhost) " +
      "in a current browser.";
  }
  const name = err && err.name;
  return MEDIA_ERRORS[name] || `The microphone could not be used (${name || "unknown error"}).`;
}

/** True when the INVITE asks the phone to answer by itself (Call-Info answer-after, Alert-Info). */
export function asksAutoAnswer(request) {
  const callInfo = (request.getHeaders("Call-Info") || []).join(",");
  const alertInfo = (request.getHeaders("Alert-Info") || []).join(",");
  return /answer-after\s*=\s*0/i.test(callInfo) || /auto-?answer/i.test(alertInfo);
}

export class Phone {
  constructor({ audio = null, onChange = () => {}, onError = () => {}, autoAnswer = false } = {}) {
    this.audio = audio;
    this.onChange = onChange;
    this.onError = onError;
    this.autoAnswer = autoAnswer;     // answer every call at once (the agent's own choice)
    this.ua = null;
    this.session = null;
    this.state = { registration: "off", call: "none", muted: false, held: false, remote: "",
                   autoAnswered: false };
  }

  _set(changes) {
    Object.assign(this.state, changes);
    this.onChange({ ...this.state });
  }

  /** Ask for the microphone once, so a refusal is explained before any call rings. */
  async checkMicrophone() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error(explainMediaError(null));
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      stream.getTracks().forEach((t) => t.stop());
    } catch (err) {
      throw new Error(explainMediaError(err));
    }
  }

  /** Register with {uri, password, ws_url}. Resolves once registered; rejects with a sentence. */
  async start(creds) {
    const JsSIP = globalThis.JsSIP;
    if (!JsSIP) throw new Error("The phone library did not load (vendor/jssip-*.min.js).");
    await this.checkMicrophone();
    this.stop();
    const socket = new JsSIP.WebSocketInterface(creds.ws_url);
    this.ua = new JsSIP.UA({
      sockets: [socket], uri: creds.uri, password: creds.password, realm: creds.realm,
      register: true, session_timers: false, register_expires: 120,
      connection_recovery_min_interval: 2, connection_recovery_max_interval: 30,
    });
    this._set({ registration: "connecting" });
    const registered = new Promise((resolve, reject) => {
      this.ua.on("registered", () => { this._set({ registration: "registered" }); resolve(); });
      this.ua.on("registrationFailed", (e) => {
        this._set({ registration: "failed" });
        const why = e.cause === JsSIP.C.causes.AUTHENTICATION_ERROR
          ? "The phone's credentials were refused: reload the page to get new ones."
          : `The phone could not register (${e.cause}).`;
        this.onError(why);
        reject(new Error(why));
      });
    });
    this.ua.on("unregistered", () => this._set({ registration: "unregistered" }));
    this.ua.on("disconnected", () => {
      if (this.state.registration === "registered") this._set({ registration: "connecting" });
    });
    this.ua.on("newRTCSession", (e) => this._newSession(e));
    this.ua.start();
    return registered;
  }

  stop() {
    if (this.ua) {
      this.ua.stop();
      this.ua = null;
    }
  }

  _newSession({ session, originator, request }) {
    if (this.session && !this.session.isEnded()) {
      if (originator === "remote") session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
      return;
    }
    this.session = session;
    const remote = session.remote_identity;
    this._set({ call: originator === "remote" ? "ringing" : "connecting", muted: false, held: false,
                remote: remote ? (remote.display_name || remote.uri.user) : "", autoAnswered: false });
    session.on("peerconnection", (ev) => this._attach(ev.peerconnection));
    session.on("accepted", () => this._set({ call: "talking" }));
    session.on("confirmed", () => this._set({ call: "talking" }));
    session.on("ended", () => this._ended());
    session.on("failed", (ev) => {
      if (ev.cause === globalThis.JsSIP.C.causes.USER_DENIED_MEDIA_ACCESS) {
        this.onError(explainMediaError({ name: "NotAllowedError" }));
      }
      this._ended();
    });
    session.on("hold", () => this._set({ held: true }));
    session.on("unhold", () => this._set({ held: false }));
    if (originator === "remote" && (this.autoAnswer || asksAutoAnswer(request))) {
      this._set({ autoAnswered: true });
      this.answer();
    }
  }

  _attach(pc) {
    pc.addEventListener("track", (ev) => {
      if (this.audio && ev.streams && ev.streams[0]) {
        this.audio.srcObject = ev.streams[0];
        this.audio.play().catch(() => {});  // autoplay rules: the agent's next click starts it
      }
    });
  }

  _ended() {
    this._set({ call: "ended", muted: false, held: false });
    this.session = null;
  }

  answer() {
    if (!this.session || this.state.call !== "ringing") return;
    this._set({ call: "connecting" });
    try {
      this.session.answer({ mediaConstraints: { audio: true, video: false },
                            pcConfig: { iceServers: [] } });
      if (this.session.connection) this._attach(this.session.connection);
    } catch (err) {
      this.onError(explainMediaError(err));
    }
  }

  /** Place a call from the browser phone (e.g. an internal number). */
  call(target) {
    if (!this.ua) return;
    this.ua.call(target, { mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: [] } });
  }

  hangup() {
    if (this.session && !this.session.isEnded()) this.session.terminate();
  }

  mute(on) {
    if (!this.session) return;
    if (on) this.session.mute({ audio: true }); else this.session.unmute({ audio: true });
    this._set({ muted: !!on });
  }

  hold(on) {
    if (!this.session || this.state.call !== "talking") return;
    if (on) this.session.hold(); else this.session.unhold();
  }

  dtmf(digits) {
    if (!this.session || this.state.call !== "talking" || !/^[0-9*#A-D]+$/.test(digits)) return;
    this.session.sendDTMF(digits, { transportType: "RFC2833" });
  }
}
