// phonesync dashboard: small progressive enhancements; every page works without this file.
"use strict";

function formatNumber(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "—";
}

function watchJob(card) {
  const id = card.dataset.job;
  const field = (name) => card.querySelector('[data-field="' + name + '"]');
  const bar = card.querySelector("progress");
  async function poll() {
    let job;
    try {
      const response = await fetch("/jobs/" + encodeURIComponent(id) + "/status", {
        headers: { Accept: "application/json" }, credentials: "same-origin",
      });
      if (!response.ok) { return setTimeout(poll, 3000); }
      job = await response.json();
    } catch (e) {
      return setTimeout(poll, 3000);
    }
    field("state").textContent = job.state;
    field("done").textContent = formatNumber(job.done);
    field("total").textContent = formatNumber(job.total);
    field("status").textContent = job.status || "";
    if (job.percent !== null) { bar.value = job.percent; bar.textContent = job.percent + " %"; }
    if (job.error) { field("error").textContent = job.error; field("error").hidden = false; }
    if (job.run_id) {
      field("run").href = "/runs/" + encodeURIComponent(job.run_id);
      document.getElementById("job-run").hidden = false;
    }
    card.dataset.state = job.state;
    if (!job.final) { setTimeout(poll, 1000); }
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
