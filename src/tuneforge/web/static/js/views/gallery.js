// Validation images by step, newest first, a page at a time; a validation under way shows its latest preview.

import { api, fileUrl } from "../api.js";
import { h, replace } from "../dom.js";

const PAGE = 24;

export function gallery(jobId) {
  const groups = new Map();  // step → the element holding that step's images
  const list = h("div", { class: "gallery" });
  const more = h("button", { type: "button", class: "quiet", hidden: true }, "Load older images");
  const empty = h("p", { class: "muted" }, "No validation images yet.");
  const element = h("div", {}, h("p", { class: "muted prompt" }), empty, list, more);
  let offset = 0;

  function groupFor(step) {
    if (groups.has(step)) return groups.get(step);
    const group = h("section", { class: "gallery-step", dataset: { step } }, h("h3", {}, `step ${step}`),
      h("div", { class: "tiles" }));
    const later = [...groups.keys()].filter((other) => other < step).sort((a, b) => b - a)[0];
    list.insertBefore(group, later === undefined ? null : groups.get(later));
    groups.set(step, group);
    empty.hidden = true;
    return group;
  }

  function tile(step, path, kind) {
    const url = fileUrl(jobId, `output/${path}`);
    const name = path.split("/").pop();
    return h("figure", { class: `tile tile-${kind}`, dataset: { path } },
      h("a", { href: url, target: "_blank", rel: "noopener" },
        h("img", { src: url, alt: `${kind} image at step ${step}: ${name}`, loading: "lazy" })),
      h("figcaption", {}, kind === "preview" ? `sampling… ${name}` : name));
  }

  function show(step, paths, kind) {
    const tiles = groupFor(step).querySelector(".tiles");
    if (kind === "validation") tiles.querySelectorAll(".tile-preview").forEach((t) => t.remove());
    for (const path of paths) {
      if (tiles.querySelector(`[data-path="${CSS.escape(path)}"]`)) continue;
      if (kind === "preview") {
        const current = tiles.querySelector(".tile-preview");
        if (current) current.replaceWith(tile(step, path, kind));
        else tiles.append(tile(step, path, kind));
      } else tiles.append(tile(step, path, kind));
    }
  }

  let loading = false;

  async function loadPage() {
    if (loading) return;  // a second click while a page is on its way would skip the next one
    loading = true;
    more.disabled = true;
    try {
      const search = new URLSearchParams({ kind: "validation", order: "desc", limit: PAGE, offset });
      const page = await api(`/api/jobs/${encodeURIComponent(jobId)}/files?${search}`);
      offset += page.files.length;
      for (const file of page.files) show(file.step, [file.path.replace(/^output\//, "")], "validation");
      more.hidden = offset >= page.total;
    } finally {
      loading = false;
      more.disabled = false;
    }
  }

  more.addEventListener("click", () => loadPage().catch(() => {}));

  return {
    element,
    load(prompt) {
      if (prompt) replace(element.querySelector(".prompt"), `Prompt: ${prompt}`);
      loadPage().catch(() => {});
    },
    add(event) {
      const data = event.data || {};
      if (event.type === "training.validation" && data.relative_paths) {
        show(data.step, data.relative_paths, "validation");
      } else if (event.type === "validation.image" && data.relative_path) {
        show(data.global_step, [data.relative_path], "preview");
      }
    },
  };
}
