// Dataset folders with their image and caption counts, a new folder, and uploads with a progress bar.

import { api, upload } from "../api.js";
import { formatBytes, h, progressBar, query, replace } from "../dom.js";

export function renderDatasets(view, ctx) {
  const path = query(ctx.hash).get("path") || "";
  replace(view, h("p", { class: "muted" }, "Loading…"));
  api(`/api/datasets/browse?${new URLSearchParams({ path })}`).then((folder) => {
    if (!ctx.alive()) return;
    replace(view, h("section", {},
      h("h1", {}, "Datasets"), breadcrumbs(folder.relative_path),
      h("p", { class: "muted" }, `${folder.image_count} images and ${folder.caption_count} captions here`),
      h("table", {},
        h("thead", {}, h("tr", {}, ["Folder", "Images", "Captions", "Sub-folders"].map((n) => h("th", {}, n)))),
        h("tbody", {}, folder.folders.length ? folder.folders.map((sub) => h("tr", {},
          h("td", {}, h("a", { href: link(sub.relative_path) }, sub.name)),
          h("td", { class: "number" }, sub.image_count), h("td", { class: "number" }, sub.caption_count),
          h("td", { class: "number" }, sub.folder_count)))
          : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No sub-folders.")))),
      ctx.can("dataset.upload") ? uploadCard(folder, ctx) : null));
  }).catch((error) => {
    if (error.status === 401 || !ctx.alive()) return;
    replace(view, h("section", { class: "card narrow" }, h("h1", {}, "Datasets"), h("p", { class: "error" },
      error.describe()), h("a", { href: "#/datasets" }, "Back to the datasets root")));
  });
}

function link(relative) {
  return relative && relative !== "." ? `#/datasets?${new URLSearchParams({ path: relative })}` : "#/datasets";
}

function breadcrumbs(relative) {
  const parts = relative && relative !== "." ? relative.split("/") : [];
  const crumbs = [h("a", { href: "#/datasets" }, "datasets")];
  parts.forEach((part, i) => crumbs.push(" / ", h("a", { href: link(parts.slice(0, i + 1).join("/")) }, part)));
  return h("p", { class: "crumbs" }, crumbs);
}

function uploadCard(folder, ctx) {
  const target = folder.relative_path === "." ? "" : folder.relative_path;
  const status = h("div", { class: "upload-status" });
  const filesInput = h("input", { type: "file", name: "files", multiple: true, "aria-label": "Files to upload" });
  const zipInput = h("input", { type: "file", name: "file", accept: ".zip,application/zip",
    "aria-label": "Zip to upload" });
  const nameInput = h("input", { name: "folder_name", placeholder: "new folder name", maxlength: 63 });

  async function send(kind) {
    const chosen = kind === "zip" ? [...zipInput.files] : [...filesInput.files];
    if (!chosen.length) { ctx.notify("Choose a file first.", "error"); return; }
    const form = new FormData();
    form.append("target_path", target || ".");
    for (const file of chosen) form.append(kind === "zip" ? "file" : "files", file);
    const total = chosen.reduce((sum, file) => sum + file.size, 0);
    replace(status, progressBar(0, `0 / ${formatBytes(total)}`));
    try {
      const report = await upload(kind === "zip" ? "/api/datasets/upload/zip" : "/api/datasets/upload", form,
        (sent, size) => replace(status, progressBar((100 * sent) / size, `${formatBytes(sent)} / ${formatBytes(size)}`)));
      const summary = `${report.files_uploaded} stored, ${report.files_unchanged} already there, `
        + `${report.files_skipped} skipped`;
      replace(status, h("p", { class: report.files_skipped ? "error" : "success" }, summary),
        report.errors.length ? h("ul", {}, report.errors.slice(0, 20).map((e) => h("li", {}, e))) : null);
      setTimeout(ctx.refresh, 1500);  // the counts, with what was just stored
    } catch (error) {
      if (error.status !== 401) replace(status, h("p", { class: "error" }, error.describe()));
    }
  }

  async function makeFolder() {
    const form = new FormData();
    form.append("parent_path", target || ".");
    form.append("folder_name", nameInput.value.trim());
    try {
      await api("/api/datasets/folders", { method: "POST", form });
      ctx.refresh();
    } catch (error) {
      if (error.status !== 401) ctx.notify(error.describe(), "error");
    }
  }

  return h("div", { class: "card" }, h("h2", {}, `Upload into ${target || "the datasets root"}`),
    h("div", { class: "upload-row" }, filesInput,
      h("button", { type: "button", onclick: () => send("files") }, "Upload files")),
    h("div", { class: "upload-row" }, zipInput,
      h("button", { type: "button", onclick: () => send("zip") }, "Upload and extract zip")),
    h("div", { class: "upload-row" }, nameInput,
      h("button", { type: "button", class: "quiet", onclick: makeFolder }, "New folder")),
    status);
}
