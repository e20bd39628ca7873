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

// Each view gets its own context; once the view is left, `alive()` says so, and a late answer draws nothing.
function context(token) {
  return {
    me: session.me,
    can: (permission) => session.me.permissions.includes(permission),
    notify,
    hash: location.hash,
    alive: () => token.alive,
    refresh: () => { if (token.alive) show(); },
  };
}

function leave() {
  if (session.dispose) session.dispose();
  session.dispose = null;
}

function show() {
  leave();
  if (!session.me) return;
  const hash = location.hash || "#/jobs";
  for (const [pattern, section, render] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      markSection(section);
      const token = { alive: true };
      let disposeView = null;
      try {
        disposeView = render(match, context(token));
      } catch (error) {  // a malformed address (#/jobs/%zz) must not leave a blank page
        replace(view, h("p", { class: "error" }, `This address cannot be shown: ${error.message}`));
      }
      session.dispose = () => { token.alive = false; if (disposeView) disposeView(); };
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

let signingIn = null;  // one sign-in form at a time, however many requests were refused at once

function signIn(reason) {
  leave();
  session.me = null;
  showHeader(null);
  if (!signingIn) {
    signingIn = api("/api/auth/setup/status")
      .then((setup) => renderSignIn(view, { needsSetup: setup.needs_setup, reason, onDone: start }))
      .catch((error) => replace(view, h("p", { class: "error" }, `The server cannot be reached: ${error.message}`)))
      .finally(() => { signingIn = null; });
  }
  return signingIn;
}

async function start() {
  notify("");
  try {
    session.me = await api("/api/auth/me");
  } catch (error) {
    if (error.status !== 401) {  // a 401 has already brought up the sign-in form
      replace(view, h("p", { class: "error" }, `The server did not answer: ${error.message}. Reload to try again.`));
    }
    return;
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
  const wasSignedIn = session.me !== null;
  leave();
  session.me = null;  // a 401 from the logout itself then brings up no second form
  try { await api("/api/auth/logout", { method: "POST" }); } catch { /* signed out either way */ }
  if (wasSignedIn) signIn("Signed out.");
});

window.addEventListener("hashchange", show);
start();
