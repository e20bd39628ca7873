// The page's shell: who is signed in, the header, and which view the address (#/...) shows.

import { api, whenSignedOut } from "./api.js";
import { h, replace } from "./dom.js";
import { renderSignIn } from "./views/signin.js";
import { renderJobs } from "./views/jobs.js";
import { renderJob } from "./views/job.js";
import { renderEnvironments, renderEnvironment } from "./views/environments.js";
import { renderDatasets } from "./views/datasets.js";

const view = document.getElementById("view");
const session = { me: null, dispose: null };

const ROUTES = [
  [/^#\/jobs\/([^/?]+)/, "jobs", (match, ctx) => renderJob(view, ctx, decodeURIComponent(match[1]))],
  [/^#\/jobs/, "jobs", (match, ctx) => renderJobs(view, ctx)],
  [/^#\/environments\/([^/?]+)/, "environments",
    (match, ctx) => renderEnvironment(view, ctx, decodeURIComponent(match[1]))],
  [/^#\/environments/, "environments", (match, ctx) => renderEnvironments(view, ctx)],
  [/^#\/datasets/, "datasets", (match, ctx) => renderDatasets(view, ctx)],
];

export function notify(message, kind = "info") {
  const notice = document.getElementById("notice");
  notice.className = `notice notice-${kind}`;
  notice.hidden = !message;
  replace(notice, message || "");
}

function context() {
  return {
    me: session.me,
    can: (permission) => session.me.permissions.includes(permission),
    notify,
    hash: location.hash,
  };
}

function show() {
  if (session.dispose) session.dispose();
  session.dispose = null;
  if (!session.me) return;
  const hash = location.hash || "#/jobs";
  for (const [pattern, section, render] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      markSection(section);
      session.dispose = render(match, context()) || null;
      return;
    }
  }
  location.hash = "#/jobs";
}

function markSection(section) {
  for (const link of document.querySelectorAll("#nav a[data-section]")) {
    link.classList.toggle("active", link.dataset.section === section);
  }
}

function showHeader(me) {
  document.getElementById("nav").hidden = !me;
  document.getElementById("account").hidden = !me;
  if (me) {
    const name = me.user ? me.user.username : "local admin (no account yet)";
    const levels = me.user ? me.user.level_names.join(", ") : "admin";
    replace(document.getElementById("whoami"), h("strong", {}, name), ` · ${levels}`);
  }
}

async function signIn(reason) {
  if (session.dispose) session.dispose();
  session.dispose = null;
  session.me = null;
  showHeader(null);
  const setup = await api("/api/auth/setup/status");
  renderSignIn(view, { needsSetup: setup.needs_setup, reason, onDone: start });
}

async function start() {
  notify("");
  try {
    session.me = await api("/api/auth/me");
  } catch (error) {
    return;  // a 401 has already brought up the sign-in form
  }
  const setup = await api("/api/auth/setup/status");
  if (setup.needs_setup) {
    session.me = null;
    await signIn();
    return;
  }
  showHeader(session.me);
  show();
}

whenSignedOut((detail) => {
  if (session.me || !view.querySelector("form.signin")) {
    signIn(session.me ? "Your session has ended: sign in again to go on." : undefined);
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/api/auth/logout", { method: "POST" }); } catch { /* signed out either way */ }
  signIn("Signed out.");
});

window.addEventListener("hashchange", show);
start();
