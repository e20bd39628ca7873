// Elements built from data, never from HTML strings: job names, prompts and log lines are other people's text.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function formatTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  const hours = Math.floor(s / 3600), minutes = Math.floor((s % 3600) / 60), rest = s % 60;
  return hours ? `${hours}h ${minutes}m` : minutes ? `${minutes}m ${rest}s` : `${rest}s`;
}

export function formatBytes(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function formatNumber(value, digits = 4) {
  if (value === undefined || value === null) return "–";
  return Math.abs(value) < 1e-3 && value !== 0 ? value.toExponential(2) : value.toFixed(digits);
}

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}`, dataset: { state } }, state);
}

export function progressBar(percent, label) {
  const clamped = Math.max(0, Math.min(100, percent || 0));
  const fill = h("div", { class: "progress-fill" });
  fill.style.width = `${clamped}%`;  // through the CSSOM: the page's CSP allows no inline style attributes
  return h("div", { class: "progress", role: "progressbar", "aria-valuenow": clamped.toFixed(0),
    "aria-valuemin": "0", "aria-valuemax": "100" }, fill,
    label ? h("span", { class: "progress-label" }, label) : null);
}

export function query(hash) {
  const index = hash.indexOf("?");
  return new URLSearchParams(index < 0 ? "" : hash.slice(index + 1));
}
