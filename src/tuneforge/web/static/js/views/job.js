// One job, live: stage and start-up, progress with ETA, loss and learning-rate plots, the validation gallery,
// files to download, the event log, and the steering buttons for those allowed to press them.

import { api } from "../api.js";
import { formatDuration, formatNumber, formatTime, h, progressBar, replace, stateBadge } from "../dom.js";
import { Chart, Series } from "../plot.js";
import { eventLog } from "./events.js";
import { filesTable } from "./files.js";
import { gallery } from "./gallery.js";

const FINAL = ["completed", "failed", "cancelled", "stopped"];
const STEERING = [
  ["stop", "Stop", "Save a checkpoint and stop", ["running"]],
  ["cancel", "Cancel", "Stop at once, without a checkpoint", ["queued", "starting", "running"]],
  ["checkpoint", "Checkpoint now", "Save a checkpoint at the next step", ["running"]],
  ["validation", "Validate now", "Sample validation images at the next step", ["running"]],
  ["resume", "Resume", "A new job from its last checkpoint, with the same settings", ["stopped", "failed", "cancelled"]],
];
const REFRESH_MS = 5000;

export function renderJob(view, ctx, jobId) {
  const parts = {
    header: h("div", { class: "job-header" }),
    actions: h("div", { class: "actions" }),
    stages: h("ul", { class: "stages" }),
    progress: h("div", { class: "job-progress" }),
    loss: h("canvas", { class: "chart", id: "loss-chart", "aria-label": "Loss by step" }),
    rate: h("canvas", { class: "chart small", id: "lr-chart", "aria-label": "Learning rate by step" }),
  };
  const loss = new Series(), rate = new Series();
  const charts = [new Chart(parts.loss, loss, { format: (v) => formatNumber(v) }),
    new Chart(parts.rate, rate, { color: "#b45309", format: (v) => v.toExponential(1) })];
  const speed = new SpeedMeter();
  const images = gallery(jobId);
  const files = filesTable(jobId);
  const log = eventLog(jobId);
  let job = null, stream = null, stopped = false, timer = null;

  replace(view, h("section", { class: "job" },
    h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
    parts.header, parts.actions,
    h("div", { class: "grid-2" },
      h("div", { class: "card" }, h("h2", {}, "Progress"), parts.progress, parts.stages),
      h("div", { class: "card" }, h("h2", {}, "Loss"), parts.loss, h("h3", {}, "Learning rate"), parts.rate)),
    h("div", { class: "card" }, h("h2", {}, "Validation images"), images.element),
    h("div", { class: "card" }, h("h2", {}, "Checkpoints and files"), files.element),
    h("div", { class: "card" }, h("h2", {}, "Events"), log.element)));

  async function load() {
    try {
      job = await api(`/api/jobs/${encodeURIComponent(jobId)}`);
    } catch (error) {
      if (stopped) return false;
      if (error.status === 404) {
        replace(view, h("section", { class: "card narrow" }, h("h1", {}, "No such job"),
          h("p", {}, `There is no job '${jobId}'. `, h("a", { href: "#/jobs" }, "Back to the jobs")), ));
        stopped = true;
      } else if (error.status !== 401) ctx.notify(error.describe(), "error");
      return false;
    }
    if (stopped) return false;
    showJob();
    return true;
  }

  function showJob() {
    const started = job.started_at ? `started ${formatTime(job.started_at)}` : `created ${formatTime(job.created_at)}`;
    replace(parts.header,
      h("h1", {}, job.env_name || job.job_id, " ", stateBadge(job.status)),
      h("p", { class: "muted" }, `job ${job.job_id} · ${job.owner} · ${started}`,
        job.finished_at ? ` · ended ${formatTime(job.finished_at)}` : "",
        job.devices.length ? ` · GPU ${job.devices.join(", ")}` : job.gpu_count ? "" : " · CPU"),
      job.reason ? h("p", { class: job.status === "failed" ? "error" : "muted" }, job.reason) : null);
    replace(parts.actions, ...steeringButtons());
    showProgress(job.progress);
    replace(parts.stages, Object.entries(job.startup_progress || {}).map(([key, stage]) =>
      h("li", { class: `stage stage-${stage.status}`, dataset: { stage: key } },
        h("span", {}, stage.label || key), progressBar(stage.percent, stage.status))));
  }

  function steeringButtons() {
    if (!job.may_steer) return [];
    const allowed = ([action, , , states]) => states.includes(job.status)
      && (action !== "resume" || ctx.can("job.submit"));
    return STEERING.filter(allowed).map(([action, label, title]) =>
      h("button", { type: "button", class: action === "cancel" ? "danger" : "", title,
        dataset: { action }, onclick: (event) => steer(action, label, event.target) }, label));
  }

  async function steer(action, label, button) {
    if (action === "cancel" && !confirm("Cancel this job now, without saving a checkpoint?")) return;
    button.disabled = true;
    try {
      const answer = await api(`/api/jobs/${encodeURIComponent(jobId)}/${action}`, { method: "POST" });
      ctx.notify(answer.message || `${label}: requested`, "success");
      if (action === "resume" && answer.job_id) {
        location.hash = `#/jobs/${encodeURIComponent(answer.job_id)}`;
        return;
      }
    } catch (error) {
      if (error.status !== 401) ctx.notify(`${label}: ${error.describe()}`, "error");
    }
    button.disabled = false;
    load();
  }

  function showProgress(progress) {
    if (!progress) {
      replace(parts.progress, h("p", { class: "muted" }, FINAL.includes(job.status) ? "No training steps ran."
        : "Waiting for the first step…"));
      return;
    }
    const remaining = speed.secondsLeft(progress);
    replace(parts.progress,
      progressBar(progress.percent, `step ${progress.step}/${progress.total_steps}`),
      h("dl", { class: "facts" },
        h("dt", {}, "Epoch"), h("dd", {}, `${progress.epoch}/${progress.total_epochs}`),
        h("dt", {}, "Loss"), h("dd", { id: "current-loss" }, formatNumber(progress.loss)),
        h("dt", {}, "Learning rate"), h("dd", {}, formatNumber(progress.learning_rate)),
        h("dt", {}, "Samples/s"), h("dd", {}, formatNumber(progress.samples_per_second, 2)),
        h("dt", {}, "ETA"), h("dd", {}, FINAL.includes(job.status) ? "–" : formatDuration(remaining)),
        ...costFacts(progress.telemetry)));
  }

  function onEvent(event) {
    log.add(event);
    if (event.type === "training.progress" && event.progress) {
      const p = event.progress;  // a report lists every step since the previous one
      const steps = p.steps || [p.step], losses = p.losses || [p.loss], rates = p.learning_rates || [p.learning_rate];
      steps.forEach((step, i) => { loss.add(step, losses[i]); rate.add(step, rates[i]); });
      charts.forEach((chart) => chart.redraw());
      speed.add(event.timestamp, event.progress.step);
      if (job) { job.progress = event.progress; showProgress(event.progress); }
    } else if (event.type === "lifecycle.stage" && event.stage && job) {
      job.startup_progress = { ...job.startup_progress, [event.stage.key]: event.stage };
      showJob();
    } else if (event.type === "training.validation" || event.type === "validation.image") {
      images.add(event);
    } else if (event.type === "training.checkpoint") {
      files.refresh();
    } else if (event.type === "training.status") {
      load();
    }
  }

  let lastIndex = 0, retry = null;

  async function follow() {
    let series;
    try {
      series = await api(`/api/jobs/${encodeURIComponent(jobId)}/metrics?max_points=1500`);
    } catch (error) {
      if (!stopped && error.status !== 401) retry = setTimeout(follow, 3000);
      return;
    }
    if (stopped) return;
    loss.load(series.step, series.loss);
    rate.load(series.step, series.learning_rate);
    charts.forEach((chart) => chart.redraw());
    log.load(series.next_index);
    listen(series.next_index);
  }

  // EventSource reconnects by itself after a dropped connection; after a refused one (a proxy's 502 while the
  // server restarts) it gives up, so the page opens a new one from the last event it saw, until the job has ended.
  function listen(since, delay = 1000) {
    lastIndex = since;
    stream = new EventSource(`/api/training/events/stream?job_id=${encodeURIComponent(jobId)}`
      + `&since_index=${since}`);
    stream.onmessage = (message) => {
      const event = JSON.parse(message.data);
      lastIndex = event.index + 1;
      delay = 1000;
      onEvent(event);
    };
    stream.addEventListener("end", () => { stream.close(); load(); files.refresh(); });
    stream.onerror = () => {
      if (stream.readyState !== EventSource.CLOSED || stopped) return;
      load().then((found) => {
        if (found && !stopped && !FINAL.includes(job.status)) {
          retry = setTimeout(() => listen(lastIndex, Math.min(delay * 2, 30000)), delay);
        }
      });
    };
  }

  async function poll() {  // the stream carries the events; this catches what it does not (queue, devices)
    if (stopped) return;
    if (job && !FINAL.includes(job.status)) await load();
    timer = setTimeout(poll, REFRESH_MS);
  }

  load().then((found) => {
    if (!found) return;
    images.load(job.config && job.config.validation_prompt);
    files.refresh();
    follow();
    timer = setTimeout(poll, REFRESH_MS);
  });

  return () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(retry);
    if (stream) stream.close();
    charts.forEach((chart) => chart.dispose());
  };
}

const PHASES = ["data", "forward", "backward", "optimizer", "other"];

// What the latest steps cost: time and where it went, throughput, memory, and MFU on a GPU.
function costFacts(t) {
  if (!t) return [];
  const split = PHASES.map((name) => `${name} ${Math.round((100 * t[`${name}_seconds`]) / t.step_seconds)}%`);
  return [
    h("dt", {}, "Step time"), h("dd", { id: "step-time" }, `${(1000 * t.step_seconds).toFixed(1)} ms`),
    h("dt", {}, "Split"), h("dd", {}, split.join(" · ")),
    h("dt", {}, "Image tokens/s"), h("dd", {}, Math.round(t.image_tokens_per_second).toLocaleString()),
    h("dt", {}, "Peak memory"), h("dd", {}, `${Math.round(t.peak_memory_mb).toLocaleString()} MiB`
      + (t.memory_kind === "rss" ? " (process)" : " (GPU)")),
    t.mfu === null || t.mfu === undefined ? null : [h("dt", {}, "MFU"), h("dd", {}, `${(100 * t.mfu).toFixed(1)}%`)],
  ];
}

// Steps per second over the last minute of reports, for the ETA.
class SpeedMeter {
  constructor() {
    this.points = [];
  }

  add(timestamp, step) {
    this.points.push([Date.parse(timestamp), step]);
    const cutoff = this.points[this.points.length - 1][0] - 60000;
    while (this.points.length > 2 && this.points[0][0] < cutoff) this.points.shift();
  }

  secondsLeft(progress) {
    if (this.points.length < 2) return NaN;
    const [[t0, s0], [t1, s1]] = [this.points[0], this.points[this.points.length - 1]];
    const perSecond = (s1 - s0) / ((t1 - t0) / 1000);
    return perSecond > 0 ? (progress.total_steps - progress.step) / perSecond : NaN;
  }
}
