// The web callback form: POST /api/callback-requests (docs/messaging.md).
"use strict";
(function () {
  const form = document.getElementById("callback");
  const status = document.getElementById("status");
  function say(text, kind) {
    status.textContent = text;
    status.className = kind;
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const when = form.elements.when.value;
    let preferred = "asap";
    if (when === "at") {
      const at = form.elements.at.value;
      if (!at) { say("Choose a time, or 'as soon as possible'.", "error"); return; }
      preferred = new Date(at).toISOString();
    }
    const body = {name: form.elements.name.value, number: form.elements.number.value, preferred: preferred,
                  website: form.elements.website.value};
    form.querySelector("button").disabled = true;
    try {
      const r = await fetch("/api/callback-requests", {method: "POST", headers: {"Content-Type": "application/json"},
                                                        body: JSON.stringify(body)});
      const answer = await r.json().catch(() => ({}));
      if (r.status === 202) {
        say("Thank you: we will call " + answer.number + (answer.not_before ? " from "
            + new Date(answer.not_before).toLocaleString() : " as soon as an agent is free") + ".", "ok");
        form.reset();
      } else {
        say(answer.message || ("The request was not taken (" + r.status + ")."), "error");
      }
    } catch (e) {
      say("The request could not be sent; check your connection and try again.", "error");
    } finally {
      form.querySelector("button").disabled = false;
    }
  });
})();
