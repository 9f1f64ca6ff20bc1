// phonesync dashboard: small progressive enhancements; every page works without this file.
"use strict";

function formatNumber(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "—";
}

// A job's card (a run, or a preview's dry run): poll its status and keep the card live. A card
// with data-reload-when-final reloads the page once the job has ended (a preview then shows
// what it found).
function watchJob(card) {
  const id = card.dataset.job;
  const url = card.dataset.statusUrl || "/jobs/" + encodeURIComponent(id) + "/status";
  const field = (name) => card.querySelector('[data-field="' + name + '"]');
  const show = (name, text) => { const el = field(name); if (el) { el.textContent = text; } };
  const bar = card.querySelector("progress");
  async function poll() {
    let job;
    try {
      const response = await fetch(url, {
        headers: { Accept: "application/json" }, credentials: "same-origin",
      });
      if (!response.ok) { return setTimeout(poll, 3000); }
      job = await response.json();
    } catch (e) {
      return setTimeout(poll, 3000);
    }
    show("state", job.state);
    show("done", formatNumber(job.done));
    show("total", formatNumber(job.total));
    show("status", job.status || "");
    if (bar && job.percent !== null) { bar.value = job.percent; bar.textContent = job.percent + " %"; }
    if (job.error && field("error")) { field("error").textContent = job.error; field("error").hidden = false; }
    const run = document.getElementById("job-run");
    if (job.run_id && run && field("run")) {
      field("run").href = "/runs/" + encodeURIComponent(job.run_id);
      run.hidden = false;
    }
    card.dataset.state = job.state;
    if (!job.final) { setTimeout(poll, 1000); } else if ("reloadWhenFinal" in card.dataset) { window.location.reload(); }
  }
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-job]").forEach(watchJob);
  // Confirm buttons: one click starts one run, not two.
  document.querySelectorAll("form button[data-once]").forEach((button) => {
    button.form.addEventListener("submit", () => { button.disabled = true; });
  });
});
