// The synonym proposals page (docs/knowledge.md, "Synonyms learned from agents"): KB admins see
// each proposed pair with its evidence and approve or reject it, or take an approved one back.
"use strict";
(() => {
  const { api, el } = Cti;
  const form = document.getElementById("filter");
  const feedback = document.getElementById("syn-feedback");
  const say = (text) => { feedback.textContent = text; };

  // The calls behind a proposal: who marked what, and the call's words the article lacked.
  const evidence = (p) => el("ul", { class: "syn-evidence" }, ...p.examples.map((x) => el("li", {},
    `${x.call_id} (${x.agent}, ${x.source === "proposal" ? "article proposed" : "helped"}, ` +
    `${new Date(x.at).toLocaleDateString()}): ${x.words.join(", ")}`)));

  async function act(p, path, body, done) {
    try {
      const r = await api("POST", `/api/kb/synonyms/proposals/${p.proposal_id}/${path}`, body);
      say(done(r));
      await load();
    } catch (e) {
      say(e.status === 409 ? `"${p.word}" was already decided by someone else; the list is fresh again.` : e.message);
      if (e.status === 409) await load();
    }
  }

  function buttons(p) {
    if (p.state === "pending") {
      return [
        el("button", { class: "syn-approve", type: "button", onclick: () => act(p, "decision", { approve: true },
          (r) => `Approved: "${r.word}" now means "${r.anchor}" (group ${r.grp}).`) }, "Approve"),
        " ",
        el("button", { class: "syn-reject", type: "button", onclick: () => act(p, "decision", { approve: false },
          (r) => `Rejected: "${r.word}" will not be proposed for "${r.anchor}" again.`) }, "Reject"),
      ];
    }
    if (p.state === "approved") {
      return [el("button", { class: "syn-withdraw", type: "button", onclick: () => act(p, "withdraw", undefined,
        (r) => `Removed: "${r.word}" left the synonyms of "${r.anchor}".`) }, "Remove")];
    }
    return [];
  }

  function row(p) {
    const who = p.decided_by ? ` by ${p.decided_by}` : "";
    return el("tr", { "data-id": p.proposal_id, "data-word": p.word },
      el("td", {}, p.word), el("td", {}, p.anchor), el("td", {}, p.language),
      el("td", {}, `${p.article_title} (#${p.article_id})`),
      el("td", {}, String(p.calls)), el("td", {}, evidence(p)),
      el("td", {}, p.state === "pending" ? "proposed" : `${p.state}${who}`),
      el("td", {}, ...buttons(p)));
  }

  async function load() {
    const f = new FormData(form);
    const q = new URLSearchParams({ state: f.get("state") });
    if (f.get("language")) q.set("language", f.get("language"));
    const d = await api("GET", `/api/kb/synonyms/proposals?${q}`);
    const empty = document.getElementById("syn-empty");
    empty.hidden = d.proposals.length > 0;
    empty.textContent = d.proposals.length ? "" : "Nothing here.";
    document.querySelector("#syn-rows tbody").replaceChildren(...d.proposals.map(row));
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try { await load(); } catch (x) { say(x.message); }
  });
  Cti.start(load);
})();
