// What the order page's panels share: a form dialog that stays open until the API accepts (the problem's
// own words next to the fields it names), labelled inputs, idempotency keys, "is this amount zero" without
// parsing money, and the API paths of one order.

import { h, showProblem } from "../../ui.js";

export const API = "/api/v1";

// A modal form. `onSubmit(form)` runs the API call; a ProblemError keeps the dialog open with the problem shown
// next to its fields (`names` maps an API field path to an input name when they differ). Resolves with the
// call's answer, or null when cancelled.
export function formDialog(title, body, { submit = "Save", danger = false, onSubmit, onInput = null, names = null,
  extraActions = [] } = {}) {
  return new Promise((resolve) => {
    const problem = h("p", { class: "problem", role: "alert", hidden: true });
    const submitButton = h("button", { type: "submit", class: danger ? "danger" : "primary" }, submit);
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const form = h("form", { class: "dialog-form", novalidate: true },
      h("h2", { id: titleId }, title),
      body,
      problem,
      h("div", { class: "actions" },
        ...extraActions,
        h("button", { type: "button", class: "secondary", onclick: () => finish(null) }, "Cancel"),
        submitButton));
    const dlg = h("dialog", { "aria-labelledby": titleId, class: "order-dialog" }, form);
    let done = false;
    function finish(value) {
      if (done) return;
      done = true;
      if (dlg.open) dlg.close();
      dlg.remove();
      resolve(value);
    }
    if (onInput) form.addEventListener("input", () => onInput(form));
    if (onInput) form.addEventListener("change", () => onInput(form));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      submitButton.disabled = true;
      try {
        const result = await onSubmit(form);
        if (result !== undefined && result !== false) finish(result);
      } catch (err) {
        showProblem(form, names ? renamed(err, names) : err);
        problem.hidden = false;
        if (!problem.textContent) problem.textContent = err.message || String(err);
      } finally {
        submitButton.disabled = false;
      }
    });
    dlg.addEventListener("cancel", () => finish(null));
    document.body.append(dlg);
    dlg.showModal();
    if (onInput) onInput(form);
  });
}

// The same problem with its field paths turned into the names of this form's inputs.
export function renamed(err, names) {
  if (!err || !err.errors) return err;
  const errors = err.errors.map((e) => ({ ...e, field: (e.field && names(e.field)) || e.field }));
  return { problem: err.problem, errors, message: err.message };
}

let fieldSeq = 0;

// A labelled input (every input has a <label>). `name` is the API's field path so problems land next to it.
export function field(labelText, name, attrs = {}, tag = "input") {
  const id = `f-${++fieldSeq}`;
  const { options = [], value: initial, ...rest } = attrs;
  let input;
  if (tag === "select") {
    input = h("select", { id, name, ...rest }, ...options.map(([v, t]) =>
      h("option", { value: v, selected: String(v) === String(initial ?? "") || undefined }, t)));
  } else {
    input = h(tag, { id, name, ...rest });
    if (initial !== undefined && initial !== null) input.value = String(initial);
  }
  return h("div", { class: "field" }, h("label", { for: id }, labelText), input);
}

export function checkbox(labelText, name, checked = false) {
  const id = `f-${++fieldSeq}`;
  return h("div", { class: "field check" },
    h("input", { id, name, type: "checkbox", checked: checked || undefined }),
    h("label", { for: id }, labelText));
}

export function idempotencyKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now()}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}

// "0.00", "0", "" -> true: a string test, so money is never parsed in the page.
export function isZero(amount) {
  return !amount || !/[1-9]/.test(String(amount));
}

export function value(form, name) {
  const el = form.elements.namedItem(name);
  if (!el) return "";
  if (el.type === "checkbox") return el.checked;
  return (el.value || "").trim();
}

export function orderPath(order, tail = "") {
  return `${API}/orders/${order.id}${tail}`;
}

export function section(title, id, ...children) {
  const headingId = `${id}-title`;
  return h("section", { class: "card order-panel", id, "aria-labelledby": headingId },
    h("h2", { id: headingId }, title), ...children);
}

export function words(s) {
  return String(s || "").replaceAll("_", " ");
}
