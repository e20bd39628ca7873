// The jobs list: state, environment, owner, progress, loss, devices and times, a page at a time, kept live.

import { api } from "../api.js";
import { formatNumber, formatTime, h, progressBar, query, replace, stateBadge } from "../dom.js";

const PAGE = 25;
const STATES = ["queued", "starting", "running", "completed", "stopped", "cancelled", "failed"];
const REFRESH_MS = 2000;

export function renderJobs(view, ctx) {
  const params = query(ctx.hash);
  const filters = { state: params.get("state") || "", owner: params.get("owner") || "",
    offset: Number(params.get("offset")) || 0 };
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const stateSelect = h("select", { name: "state", "aria-label": "State" },
    h("option", { value: "" }, "any state"),
    STATES.map((state) => h("option", { value: state, selected: state === filters.state }, state)));
  const ownerInput = h("input", { name: "owner", placeholder: "any owner", value: filters.owner,
    "aria-label": "Owner", maxlength: 50 });
  const form = h("form", { class: "filters" }, stateSelect, ownerInput,
    ctx.me.user ? h("button", { type: "button", class: "quiet",
      onclick: () => { ownerInput.value = ctx.me.user.username; go({ owner: ownerInput.value, offset: 0 }); } },
    "Mine") : null,
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go({ state: stateSelect.value, owner: ownerInput.value.trim(), offset: 0 });
  });
  stateSelect.addEventListener("change", () => go({ state: stateSelect.value, offset: 0 }));

  function go(change) {
    const next = { ...filters, ...change };
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(next)) if (value) search.set(key, value);
    location.hash = `#/jobs?${search}`;
  }

  replace(view, h("section", {},
    h("div", { class: "title-row" }, h("h1", {}, "Jobs"), form),
    h("table", { class: "jobs" },
      h("thead", {}, h("tr", {}, ["Job", "State", "Environment", "Owner", "Progress", "Loss", "Devices",
        "Started", "Ended"].map((name) => h("th", {}, name)))),
      body),
    pager));

  let stopped = false, timer = null;
  async function refresh() {
    const search = new URLSearchParams({ limit: PAGE, offset: filters.offset });
    if (filters.state) search.set("state", filters.state);
    if (filters.owner) search.set("owner", filters.owner);
    try {
      const page = await api(`/api/jobs?${search}`);
      if (stopped) return;
      replace(body, page.jobs.length ? page.jobs.map(row)
        : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No jobs match.")));
      pagerFor(page);
    } catch (error) {
      if (error.status !== 401) ctx.notify(error.describe ? error.describe() : String(error), "error");
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  function pagerFor(page) {
    const first = page.total ? page.offset + 1 : 0, last = page.offset + page.count;
    replace(pager,
      h("button", { type: "button", class: "quiet", disabled: page.offset === 0,
        onclick: () => go({ offset: Math.max(0, page.offset - PAGE) }) }, "← Newer"),
      h("span", { class: "muted" }, `${first}–${last} of ${page.total}`),
      h("button", { type: "button", class: "quiet", disabled: last >= page.total,
        onclick: () => go({ offset: page.offset + PAGE }) }, "Older →"));
  }

  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

function row(job) {
  const progress = job.progress || {};
  const label = progress.total_steps ? `${progress.step}/${progress.total_steps}` : "";
  return h("tr", { dataset: { jobId: job.job_id } },
    h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}` }, job.job_id)),
    h("td", {}, stateBadge(job.status)),
    h("td", {}, job.env_name || "–"),
    h("td", {}, job.owner),
    h("td", { class: "wide" }, progressBar(progress.percent || (job.status === "completed" ? 100 : 0), label)),
    h("td", { class: "number" }, formatNumber(progress.loss)),
    h("td", {}, job.devices.length ? job.devices.map((d) => `GPU ${d}`).join(", ")
      : job.gpu_count ? `${job.gpu_count} GPU` : "CPU"),
    h("td", {}, formatTime(job.started_at)),
    h("td", {}, formatTime(job.finished_at)));
}
