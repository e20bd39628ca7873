// Sign in, or create the first admin while the server has none.

import { api } from "../api.js";
import { h, replace } from "../dom.js";

function field(label, name, type = "text", extra = {}) {
  return h("label", {}, label, h("input", { name, type, required: true, ...extra }));
}

export function renderSignIn(view, { needsSetup, reason, onDone }) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const form = needsSetup ? firstAdminForm() : loginForm();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    error.hidden = true;
    try {
      if (needsSetup) {
        const body = { email: data.email, username: data.username, password: data.password };
        if (data.setup_token) body.setup_token = data.setup_token;
        await api("/api/auth/setup/first-admin", { method: "POST", json: body });
      } else {
        await api("/api/auth/login", { method: "POST",
          json: { username: data.username, password: data.password, remember_me: data.remember_me === "on" } });
      }
      await onDone();
    } catch (failure) {
      replace(error, failure.describe ? failure.describe() : String(failure));
      error.hidden = false;
      button.disabled = false;
    }
  });
  replace(view, h("section", { class: "card narrow" },
    reason ? h("p", { class: "muted" }, reason) : null, form, error));
  form.querySelector("input").focus();
}

function loginForm() {
  return h("form", { class: "signin", "aria-label": "Sign in" },
    h("h1", {}, "Sign in"),
    field("Username or email", "username", "text", { autocomplete: "username" }),
    field("Password", "password", "password", { autocomplete: "current-password" }),
    h("label", { class: "inline" }, h("input", { name: "remember_me", type: "checkbox" }), "Keep me signed in"),
    h("button", { type: "submit" }, "Sign in"));
}

function firstAdminForm() {
  return h("form", { class: "signin", "aria-label": "Create the first admin" },
    h("h1", {}, "Create the first admin"),
    h("p", { class: "muted" }, "This server has no admin yet. The account you create here can add everyone else."),
    field("Username", "username", "text", { autocomplete: "username", minlength: 3, maxlength: 50 }),
    field("Email", "email", "email", { autocomplete: "email" }),
    field("Password", "password", "password", { autocomplete: "new-password", minlength: 8 }),
    h("label", {}, "Setup token (only from another machine: printed when the server started)",
      h("input", { name: "setup_token", type: "password", autocomplete: "off" })),
    h("button", { type: "submit" }, "Create admin and sign in"));
}
