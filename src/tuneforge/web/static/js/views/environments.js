// Config environments: the list, and one environment's settings (read-only).

import { api } from "../api.js";
import { formatTime, h, replace } from "../dom.js";

export function renderEnvironments(view, ctx) {
  const body = h("tbody");
  replace(view, h("section", {}, h("h1", {}, "Environments"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Model", "Training", "Modified"].map((n) => h("th", {}, n)))),
      body)));
  api("/api/configs/").then((listing) => {
    if (!ctx.alive()) return;
    replace(body, listing.configs.length ? listing.configs.map((env) => h("tr", {},
      h("td", {}, h("a", { href: `#/environments/${encodeURIComponent(env.name)}` }, env.name),
        env.is_active ? [" ", h("span", { class: "badge" }, "active")] : null),
      h("td", {}, [env.model_family, env.model_flavour].filter(Boolean).join(" ") || "–"),
      h("td", {}, env.error ? h("span", { class: "error" }, env.error)
        : [env.model_type, env.lora_type].filter(Boolean).join(" · ") || "–"),
      h("td", {}, formatTime(env.updated_at))))
      : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No environments yet: create one over the API.")));
  }).catch((error) => { if (error.status !== 401 && ctx.alive()) ctx.notify(error.describe(), "error"); });
}

export function renderEnvironment(view, ctx, name) {
  replace(view, h("p", { class: "muted" }, "Loading…"));
  api(`/api/configs/${encodeURIComponent(name)}`).then((env) => {
    if (!ctx.alive()) return;
    const rows = Object.entries(env.config).sort(([a], [b]) => a.localeCompare(b)).map(([key, value]) =>
      h("tr", {}, h("th", { class: "key" }, key),
        h("td", {}, h("code", {}, typeof value === "string" ? value : JSON.stringify(value)))));
    replace(view, h("section", {},
      h("p", {}, h("a", { href: "#/environments" }, "← Environments")),
      h("h1", {}, env.name),
      h("p", { class: "muted" }, "Read-only here: change it with PUT /api/configs/", env.name, " (see ",
        h("a", { href: "/docs", target: "_blank", rel: "noopener" }, "API docs"), ")."),
      h("div", { class: "card" }, h("table", { class: "config" }, h("tbody", {}, rows)))));
  }).catch((error) => {
    if (error.status === 401 || !ctx.alive()) return;
    replace(view, h("section", { class: "card narrow" }, h("h1", {}, "No such environment"),
      h("p", {}, error.describe(), " ", h("a", { href: "#/environments" }, "Back to the environments"))));
  });
}
