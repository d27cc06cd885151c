// Sign in: e-mail and password -> POST /api/v1/session (sets the session and CSRF cookies), then the page the
// staff member wanted (?next=...) or the orders. The API's problem is shown in its own words next to the field
// it names (a wrong password: next to the password; too many attempts: on top, with the wait).

import { api, ProblemError } from "../api.js";
import { h, mount, showProblem } from "../ui.js";

export async function render(root, { params }) {
  const next = params.get("next");
  const target = next && next.startsWith("#/") && !next.startsWith("#/signin") ? next : "#/orders";
  const email = h("input", { id: "signin-email", name: "email", type: "email", autocomplete: "username",
    required: true, autofocus: true });
  const password = h("input", { id: "signin-password", name: "password", type: "password",
    autocomplete: "current-password", required: true });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "card signin", novalidate: true },
    h("h1", {}, "Sign in"),
    h("p", { class: "problem", role: "alert", hidden: true }),
    h("label", { for: "signin-email" }, "E-mail"), email,
    h("label", { for: "signin-password" }, "Password"), password,
    h("div", { class: "actions" }, button));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    button.disabled = true;
    try {
      await api("POST", "/api/v1/session", { email: email.value.trim(), password: password.value });
      window.location.hash = target;
    } catch (err) {
      showProblem(form, err instanceof ProblemError ? err : { problem: { title: String(err) } });
      password.value = "";
      password.focus();
    } finally {
      button.disabled = false;
    }
  });
  mount(root, form);
  email.focus();
}
