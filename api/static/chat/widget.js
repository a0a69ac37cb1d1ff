/* Web chat widget: <script src="https://cti.example.org/chat/widget.js" defer></script>
 * on any page adds a "Chat with us" box (docs/omnichannel.md). Text only. A
 * data-queue="support" attribute on the script tag sends new chats to that chat queue
 * (the server refuses one that is no chat queue; without it, the first chat queue). Talks to
 * /chat/ws on the server the script came from; keeps the chat token and the last
 * message number in sessionStorage, so a reload or a dropped connection resumes the
 * same chat without losing or repeating a message. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script ? script.src : location.href);
  var queue = (script && script.getAttribute("data-queue")) || null;
  var wsUrl = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/chat/ws";
  var KEY = "cti-chat:" + base.host;
  var saved = {};
  try { saved = JSON.parse(sessionStorage.getItem(KEY) || "{}"); } catch (e) { saved = {}; }
  var ws = null, lastSeq = saved.last_seq || 0, token = saved.token || null, closed = false, retry = 0;
  var typingTimer = null, typingSent = false, outbox = [];

  var css = document.createElement("link");
  css.rel = "stylesheet"; css.href = new URL("/chat/widget.css", base).href;
  document.head.appendChild(css);

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) e.textContent = text;
    return e;
  }
  var box = el("section", {"class": "cti-chat", "aria-label": "Chat with us", "data-state": "form"});
  var head = el("h2", {"class": "cti-chat-head"}, "Chat with us");
  var form = el("form", {"class": "cti-chat-form"});
  function field(label, tag, attrs) {
    var l = el("label", {}, label + " "), input = el(tag, attrs);
    l.appendChild(input); return l;
  }
  form.appendChild(field("Name", "input", {name: "name", required: "", maxlength: "80", autocomplete: "name"}));
  form.appendChild(field("E-mail", "input", {name: "email", type: "email", required: "", maxlength: "254",
                                            autocomplete: "email"}));
  form.appendChild(field("Your question", "textarea", {name: "question", required: "", maxlength: "1000",
                                                      rows: "3"}));
  var copy = el("label", {"class": "cti-chat-copy"});
  copy.appendChild(el("input", {type: "checkbox", name: "transcript"}));
  copy.appendChild(document.createTextNode(" Send me a copy of the chat"));
  form.appendChild(copy);
  form.appendChild(el("button", {type: "submit"}, "Start chat"));
  var status = el("p", {"class": "cti-chat-status", "role": "status", "aria-live": "polite"});
  var log = el("ol", {"class": "cti-chat-log", "aria-live": "polite"});
  var typing = el("p", {"class": "cti-chat-typing", "hidden": ""}, "The agent is typing…");
  var send = el("form", {"class": "cti-chat-send", "hidden": ""});
  send.appendChild(el("label", {"class": "cti-chat-sr", "for": "cti-chat-text"}, "Message"));
  send.appendChild(el("textarea", {id: "cti-chat-text", name: "text", maxlength: "2000", rows: "2"}));
  send.appendChild(el("button", {type: "submit"}, "Send"));
  send.appendChild(el("button", {type: "button", "class": "cti-chat-leave"}, "End chat"));
  var error = el("p", {"class": "cti-chat-error", "role": "alert"});
  var download = el("a", {"class": "cti-chat-download", "hidden": "", "download": "chat-transcript.txt"},
                    "Download the transcript");
  [head, form, status, log, typing, send, error, download].forEach(function (c) { box.appendChild(c); });
  document.body.appendChild(box);

  function save() { sessionStorage.setItem(KEY, JSON.stringify({token: token, last_seq: lastSeq})); }
  function show(state) { box.setAttribute("data-state", state); form.hidden = state !== "form";
    send.hidden = state !== "chat"; }
  function line(m) {
    if (m.seq <= lastSeq) return;            // already shown (a resume sends what follows lastSeq)
    lastSeq = m.seq; save();
    var li = el("li", {"class": "cti-chat-" + m.sender, "data-seq": String(m.seq)});
    li.appendChild(el("span", {"class": "cti-chat-who"}, m.sender === "customer" ? "You" :
      m.sender === "agent" ? "Agent" : ""));
    li.appendChild(el("span", {"class": "cti-chat-body"}, m.body));
    log.appendChild(li); li.scrollIntoView({block: "end"});
  }
  function minutes(s) { var m = Math.max(1, Math.round(s / 60)); return m + (m === 1 ? " minute" : " minutes"); }
  function handle(f) {
    if (f.type === "started") { token = f.token; save(); retry = 0; show(f.status === "closed" ? "closed" : "chat");
      while (outbox.length) ws.send(outbox.shift()); }
    else if (f.type === "message") line(f);
    else if (f.type === "queue") status.textContent = f.position ? "You are number " + f.position +
      (f.wait_s != null ? ", about " + minutes(f.wait_s) : "") + "." : "";
    else if (f.type === "agent") { status.textContent = "An agent is with you."; }
    else if (f.type === "typing") typing.hidden = !f.on;
    else if (f.type === "error") error.textContent = f.reason;
    else if (f.type === "closed") { closed = true; show("closed"); typing.hidden = true;
      status.textContent = "The chat has ended." + (f.mail ? " A copy is on its way to your e-mail." : "");
      download.href = new URL(f.transcript, base).href;
      download.hidden = false; }
  }
  function connect(first) {
    ws = new WebSocket(wsUrl);
    ws.onopen = function () { ws.send(JSON.stringify(first || {type: "resume", token: token, last_seq: lastSeq})); };
    ws.onmessage = function (ev) { handle(JSON.parse(ev.data)); };
    ws.onclose = function (ev) {
      if (closed || !token) { if (!token && ev.code === 4400) show("form"); return; }
      status.textContent = "Reconnecting…";
      retry = Math.min(retry + 1, 6);
      setTimeout(function () { connect(null); }, 500 * Math.pow(2, retry - 1));
    };
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault(); error.textContent = "";
    var d = new FormData(form);
    show("chat");
    var start = {type: "start", name: d.get("name"), email: d.get("email"), question: d.get("question"),
                 transcript: d.get("transcript") === "on"};
    if (queue) start.queue = queue;
    connect(start);
  });
  send.addEventListener("submit", function (e) {
    e.preventDefault();
    var t = send.elements.text, body = t.value.trim();
    if (!body) return;
    var frame = JSON.stringify({type: "message", body: body});
    if (ws && ws.readyState === 1) ws.send(frame); else outbox.push(frame);   // sent on reconnect
    t.value = ""; error.textContent = "";
    if (typingSent && ws && ws.readyState === 1) { ws.send('{"type":"typing","on":false}'); typingSent = false; }
  });
  send.elements.text.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send.requestSubmit(); }
  });
  send.elements.text.addEventListener("input", function () {
    if (!ws || ws.readyState !== 1) return;
    if (!typingSent) { ws.send('{"type":"typing","on":true}'); typingSent = true; }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () {
      if (ws && ws.readyState === 1) ws.send('{"type":"typing","on":false}'); typingSent = false; }, 3000);
  });
  box.querySelector(".cti-chat-leave").addEventListener("click", function () {
    if (ws && ws.readyState === 1) ws.send('{"type":"leave"}');
  });
  if (token) { show("chat"); connect(null); }
})();
