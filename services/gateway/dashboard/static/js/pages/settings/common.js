// What the settings sub-pages share: a "saved" status line, the note shown to a role that may only look, and
// a debounce for live previews.

import { dialog, h, showProblem } from "../../ui.js";

export function statusLine() {
  return h("p", { class: "settings-status muted", role: "status", "aria-live": "polite" });
}

export function say(line, text, kind = "ok") {
  line.textContent = text;
  line.dataset.kind = kind;
}

export function readOnlyNote(what) {
  return h("p", { class: "settings-readonly muted" }, `You can look at ${what}; changing them needs another role.`);
}

export function debounce(fn, ms = 350) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

let seq = 0;
export function uid(prefix) {
  seq += 1;
  return `${prefix}-${seq}`;
}

// A labelled input: <label for=id>text</label><input id=id ...>. Returns [label, input] flattened by h().
export function field(text, attrs) {
  const id = attrs.id || uid(attrs.name || "f");
  const tag = attrs.tag || "input";
  const { tag: _tag, options, value, ...rest } = attrs;
  let input;
  if (tag === "select") {
    input = h("select", { id, ...rest }, (options || []).map(([v, t]) => h("option", { value: v, selected: v === value }, t)));
  } else if (tag === "textarea") {
    input = h("textarea", { id, ...rest }, value ?? "");
  } else {
    input = h("input", { id, ...rest });
    if (value !== undefined && value !== null) input.value = value;
  }
  return h("div", { class: "settings-field" }, h("label", { for: id }, text), input);
}

// Takes away the problems shown by ui.showProblem (after a change went through).
export function clearProblem(container) {
  container.querySelectorAll(".field-error").forEach((e) => e.remove());
  container.querySelectorAll("[aria-invalid]").forEach((e) => { e.removeAttribute("aria-invalid"); e.removeAttribute("aria-describedby"); });
  const top = container.querySelector(".problem");
  if (top) { top.textContent = ""; top.hidden = true; }
}

// A dialog with a form that stays open until the API accepts it: `send(formData)` makes the call; its problem is
// shown next to the fields it names and the person corrects and submits again. Resolves with the answer, or
// null when cancelled.
export async function formDialog(title, body, submit, send, opts = {}) {
  const pending = dialog(title, body, { submit, ...opts });
  const form = body.closest("form");
  if (form) form.noValidate = true;  // the API checks the fields and names the wrong ones
  let current = await pending;
  while (current) {
    const button = current.form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const answer = await send(current.data);
      current.close();
      return answer;
    } catch (err) {
      button.disabled = false;
      showProblem(current.form, err);
      const { form, close } = current;
      current = await new Promise((resolve) => {
        form.addEventListener("submit", (e) => { e.preventDefault(); resolve({ form, close, data: new FormData(form) }); },
          { once: true });
        form.closest("dialog").addEventListener("close", () => resolve(null), { once: true });
      });
    }
  }
  return null;
}
