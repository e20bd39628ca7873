// The event log, newest first: the latest page on opening, older pages on request, live events on top, and a
// bounded number of rows on the page however many events the job has.

import { api } from "../api.js";
import { h, replace } from "../dom.js";

const PAGE = 100;
const MAX_ROWS = 500;
const SEVERITIES = ["debug", "info", "success", "warning", "error"];

export function eventLog(jobId) {
  const body = h("tbody");
  const select = h("select", { "aria-label": "Least severity shown" },
    h("option", { value: "" }, "all events"),
    h("option", { value: "info" }, "info and above"),
    h("option", { value: "warning" }, "warnings and errors"),
    h("option", { value: "error" }, "errors only"));
  const more = h("button", { type: "button", class: "quiet", hidden: true }, "Load older events");
  const element = h("div", {}, h("div", { class: "filters" }, select),
    h("div", { class: "event-scroll" }, h("table", { class: "events" }, body)), more);
  let end = 0, older = 0;

  const shown = (event) => !select.value
    || SEVERITIES.indexOf(event.severity) >= SEVERITIES.indexOf(select.value);

  function rowFor(event) {
    const text = event.message && event.message !== event.title && !(event.images || []).length
      ? `${event.title} — ${event.message}` : event.title || event.message || event.type;
    return h("tr", { class: `severity-${event.severity}`, dataset: { index: event.index } },
      h("td", { class: "muted nowrap" }, new Date(event.timestamp).toLocaleTimeString()),
      h("td", {}, h("span", { class: `severity severity-${event.severity}` }, event.severity)),
      h("td", { class: "muted" }, event.type),
      h("td", { class: "message" }, text));
  }

  let generation = 0;  // a page asked for before the filter changed is dropped when it arrives

  async function loadOlder() {
    const asked = generation;
    const search = new URLSearchParams({ before_index: older, limit: PAGE });
    if (select.value) search.set("min_severity", select.value);
    more.disabled = true;
    try {
      const page = await api(`/api/jobs/${encodeURIComponent(jobId)}/events?${search}`);
      if (asked !== generation) return;
      body.append(...page.events.reverse().map(rowFor));
      older = page.next_index;
      more.hidden = page.events.length < PAGE || older === 0;
    } finally {
      if (asked === generation) more.disabled = false;
    }
  }

  function restart() {
    generation += 1;
    replace(body);
    older = end;
    loadOlder().catch(() => {});
  }

  select.addEventListener("change", restart);
  more.addEventListener("click", () => loadOlder().catch(() => {}));

  return {
    element,
    load(nextIndex) {
      end = nextIndex;
      restart();
    },
    add(event) {
      end = Math.max(end, event.index + 1);
      if (!shown(event)) return;
      body.prepend(rowFor(event));
      while (body.rows.length > MAX_ROWS) {
        body.lastElementChild.remove();
        more.hidden = false;
      }
      older = Number(body.lastElementChild.dataset.index);
    },
  };
}
