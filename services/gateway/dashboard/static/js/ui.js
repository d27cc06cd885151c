// Small UI helpers every page uses: build elements, dialogs that ask before an irreversible action, the API's
// problems next to the fields they name, toasts, money as the API sends it (exact decimal strings).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function mount(root, ...children) {
  root.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

export function money(amount, currency) {
  return amount === null || amount === undefined ? "" : `${amount} ${currency || ""}`.trim();
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function label(value) {
  return String(value || "").replaceAll("_", " ");
}

// A modal dialog (native <dialog>: focus trapped, Esc closes). Resolves with the form's data or null.
export function dialog(title, body, { submit = "OK", danger = false, onInput = null } = {}) {
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog", class: "dialog-form" },
      h("h2", { id: "dialog-title" }, title),
      body,
      h("p", { class: "problem", role: "alert", hidden: true }),
      h("div", { class: "actions" },
        h("button", { type: "button", value: "cancel", class: "secondary", onclick: () => { dlg.close(); resolve(null); } }, "Cancel"),
        h("button", { type: "submit", value: "ok", class: danger ? "danger" : "primary" }, submit)));
    const dlg = h("dialog", { "aria-labelledby": "dialog-title" }, form);
    if (onInput) form.addEventListener("input", () => onInput(form));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      resolve({ form, data: new FormData(form), close: () => { dlg.close(); dlg.remove(); } });
    });
    dlg.addEventListener("close", () => { resolve(null); setTimeout(() => dlg.remove(), 0); });
    document.body.append(dlg);
    dlg.showModal();
    if (onInput) onInput(form);
  });
}

// Asks before an irreversible action (seed 004: "you will need to confirm it in the confirmation popup").
export async function confirmAction(text, submit = "Confirm") {
  const got = await dialog("Please confirm", h("p", {}, text), { submit, danger: true });
  if (got) got.close();
  return Boolean(got);
}

// The problem's own words: next to each field it names (inputs whose name is the field path), else on top.
export function showProblem(container, err) {
  container.querySelectorAll(".field-error").forEach((e) => e.remove());
  container.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
  const top = container.querySelector(".problem");
  const problem = err && err.problem ? err.problem : { title: String(err) };
  let placed = 0;
  for (const e of (err && err.errors) || []) {
    const input = e.field ? container.querySelector(`[name="${CSS.escape(e.field)}"]`) : null;
    if (input) {
      input.setAttribute("aria-invalid", "true");
      const id = `err-${Math.random().toString(36).slice(2)}`;
      input.setAttribute("aria-describedby", id);
      input.insertAdjacentElement("afterend", h("span", { class: "field-error", id }, e.reason));
      placed += 1;
    }
  }
  if (top) {
    const rest = ((err && err.errors) || []).filter((e) => !e.field || !container.querySelector(`[name="${CSS.escape(e.field)}"]`));
    top.textContent = [problem.detail || problem.title, ...rest.map((e) => `${e.field ? e.field + ": " : ""}${e.reason}`)]
      .filter(Boolean).join(" — ");
    top.hidden = placed > 0 && !rest.length && !problem.detail;
  }
}

export function toast(text, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) { box = h("div", { id: "toasts", role: "status", "aria-live": "polite" }); document.body.append(box); }
  const t = h("div", { class: `toast ${kind}` }, text);
  box.append(t);
  setTimeout(() => t.remove(), 6000);
}
