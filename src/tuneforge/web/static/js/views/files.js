// A job's downloads: final weights, checkpoints (as zips), other outputs and the trainer log.

import { api } from "../api.js";
import { formatBytes, formatTime, h, replace } from "../dom.js";

const KINDS = ["weights", "checkpoint", "folder", "file", "log"];
const LABELS = { weights: "weights", checkpoint: "checkpoint (zip)", folder: "folder (zip)", file: "file",
  log: "trainer log" };

export function filesTable(jobId) {
  const body = h("tbody");
  const element = h("table", { class: "files" },
    h("thead", {}, h("tr", {}, ["File", "Kind", "Size", "Modified"].map((name) => h("th", {}, name)))), body);

  async function refresh() {
    const search = new URLSearchParams({ limit: 200 });
    KINDS.forEach((kind) => search.append("kind", kind));
    const found = (await api(`/api/jobs/${encodeURIComponent(jobId)}/files?${search}`)).files;
    replace(body, found.length ? found.map(row)
      : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Nothing to download yet.")));
  }

  return { element, refresh: () => refresh().catch(() => {}) };
}

function row(file) {
  const name = file.path.replace(/^output\//, "").replace(/^run\//, "");
  return h("tr", { dataset: { kind: file.kind } },
    h("td", {}, h("a", { href: file.url, download: file.is_folder ? `${name}.zip` : name }, name)),
    h("td", {}, LABELS[file.kind] || file.kind),
    h("td", { class: "number" }, formatBytes(file.size_bytes)),
    h("td", {}, formatTime(file.modified_at)));
}
