// Settings > Message templates: every template by kind, channel and language (the stored override or the shipped
// default); open one to edit it with a live preview rendered by the API against a real order chosen by number
// (POST /notifications/templates/preview with the unsaved draft), save it (the API checks the syntax and every
// variable: its problem is shown next to the field it names) or reset it to the default.

import { ProblemError, del, get, post, put } from "../../api.js";
import { confirmAction, h, mount, label, showProblem, toast } from "../../ui.js";
import { debounce, field, readOnlyNote, say, statusLine } from "./common.js";

const CHANNEL_NAMES = { email: "E-mail", sms: "SMS", whatsapp: "WhatsApp" };

export async function render(section, ctx, title) {
  const canEdit = ctx.can("notifications.manage");
  const [list, tables, recent] = await Promise.all([
    get("notifications/templates"), get("notifications/statuses"),
    get("orders?limit=1").catch(() => ({ items: [] }))]);
  const kindLabels = Object.fromEntries(tables.kinds.map((k) => [k.kind, k.label]));
  const kindName = (k) => kindLabels[k] || label(k);
  let templates = list.items;
  const latestOrder = recent.items && recent.items[0] ? String(recent.items[0].number) : "";

  const distinct = (key) => [...new Set(templates.map((t) => t[key]))];
  const filters = h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
    field("Kind", { tag: "select", name: "kind", value: "", options: [["", "All kinds"], ...distinct("kind").map((k) => [k, kindName(k)])] }),
    field("Channel", { tag: "select", name: "channel", value: "", options: [["", "All channels"], ...distinct("channel").map((c) => [c, CHANNEL_NAMES[c] || c])] }),
    field("Language", { tag: "select", name: "language", value: "", options: [["", "All languages"], ...distinct("language").map((l) => [l, l])] }));
  const tbody = h("tbody");
  const editor = h("div", { class: "settings-editor" });

  function drawList() {
    const f = new FormData(filters);
    const rows = templates.filter((t) => ["kind", "channel", "language"].every((k) => !f.get(k) || t[k] === f.get(k)));
    mount(tbody, rows.map((t) => h("tr", { dataset: { kind: t.kind, channel: t.channel, language: t.language } },
      h("td", {}, kindName(t.kind)),
      h("td", {}, CHANNEL_NAMES[t.channel] || t.channel),
      h("td", {}, t.language),
      h("td", {}, t.is_default ? h("span", { class: "badge" }, "default") : h("span", { class: "badge settings-custom" }, "edited")),
      h("td", {}, h("button", { type: "button", class: "secondary",
        "aria-label": `${canEdit ? "Edit" : "Open"} ${kindName(t.kind)} ${CHANNEL_NAMES[t.channel] || t.channel} ${t.language}`,
        onclick: () => openEditor(t) }, canEdit ? "Edit" : "Open")))));
    if (!rows.length) mount(tbody, h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No template matches.")));
  }
  filters.addEventListener("change", drawList);

  function replaceTemplate(t) {
    templates = templates.map((x) => (x.kind === t.kind && x.channel === t.channel && x.language === t.language ? t : x));
    drawList();
  }

  function openEditor(t, note = "") {
    const path = `notifications/templates/${encodeURIComponent(t.kind)}/${t.channel}/${t.language}`;
    const status = statusLine();
    if (note) say(status, note);
    const isEmail = t.channel === "email";
    const isWhatsApp = t.channel === "whatsapp";
    const form = h("form", { class: "card settings-template", "aria-labelledby": "template-title", novalidate: true },
      h("h3", { id: "template-title", tabindex: "-1" }, `${kindName(t.kind)} — ${CHANNEL_NAMES[t.channel] || t.channel} — ${t.language}`),
      h("p", { class: "muted" }, t.is_default ? "The shipped default." : "Edited by your team."),
      h("p", { class: "muted settings-vars" }, "Variables: ", t.variables.map((v) => h("code", {}, v)).flatMap((c, i) => (i ? [", ", c] : [c]))),
      h("p", { class: "problem", role: "alert", hidden: true }),
      isEmail ? field("Subject", { name: "subject", value: t.subject || "" }) : null,
      field(isEmail ? "Text (plain part)" : "Text", { tag: "textarea", name: "text", rows: 6, value: t.text }),
      isEmail ? field("HTML part", { tag: "textarea", name: "html", rows: 8, value: t.html || "" }) : null,
      isWhatsApp ? field("Approved WhatsApp template name", { name: "whatsapp_template", value: t.whatsapp_template || "" }) : null,
      isWhatsApp ? field("Its parameters (one expression a line)", { tag: "textarea", name: "whatsapp_params", rows: 3,
        value: (t.whatsapp_params || []).join("\n") }) : null,
      status,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => mount(editor) }, "Close"),
        canEdit && !t.is_default ? h("button", { type: "button", class: "danger", onclick: reset }, "Reset to default") : null,
        canEdit ? h("button", { type: "submit" }, "Save template") : null));
    if (!canEdit) form.querySelectorAll("input, textarea").forEach((i) => { i.readOnly = true; });

    const orderInput = h("input", { id: "preview-order", name: "preview_order", inputmode: "numeric", value: latestOrder,
      autocomplete: "off" });
    const previewOut = h("div", { class: "settings-preview-out", "aria-live": "polite" });
    const preview = h("section", { class: "card settings-preview", "aria-labelledby": "preview-title" },
      h("h3", { id: "preview-title" }, "Preview"),
      h("div", { class: "settings-field" }, h("label", { for: "preview-order" }, "Order number for the preview"), orderInput),
      previewOut);

    function draft() {
      const d = new FormData(form);
      const out = { kind: t.kind, channel: t.channel, language: t.language, text: d.get("text") || "" };
      if (isEmail) { out.subject = d.get("subject"); out.html = d.get("html") || null; }
      if (isWhatsApp) {
        out.whatsapp_template = d.get("whatsapp_template") || null;
        out.whatsapp_params = String(d.get("whatsapp_params") || "").split("\n").map((s) => s.trim()).filter(Boolean);
      }
      return out;
    }

    const ids = new Map();
    let asked = 0;
    async function renderPreview() {
      const ref = orderInput.value.trim().replace(/^#/, "");
      const mine = ++asked;
      if (!ref) { mount(previewOut, h("p", { class: "muted" }, "Enter the number of an order to see this message with it.")); return; }
      try {
        if (!ids.has(ref)) ids.set(ref, (await get(`orders/${encodeURIComponent(ref)}`)).id);
        const shown = await post("notifications/templates/preview",
          { kind: t.kind, channel: t.channel, language: t.language, order_id: ids.get(ref), draft: draft() });
        if (mine !== asked) return;
        mount(previewOut,
          h("p", { class: "muted" }, `With order #${ref}`, shown.recipient ? `, to ${shown.recipient}` : ""),
          shown.subject ? h("p", { class: "settings-preview-subject" }, h("strong", {}, "Subject: "), shown.subject) : null,
          h("pre", { class: "settings-preview-text" }, shown.text),
          shown.html ? h("details", {}, h("summary", {}, "HTML part"),
            h("iframe", { title: "HTML part of the preview", sandbox: "", srcdoc: shown.html, class: "settings-preview-html" })) : null);
      } catch (err) {
        if (mine !== asked) return;
        const words = err instanceof ProblemError && err.errors.length
          ? err.errors.map((e) => `${e.field ? e.field.replace(/^draft\./, "") + ": " : ""}${e.reason}`).join("; ")
          : err.message;
        mount(previewOut, h("p", { class: "problem" }, `No preview: ${words}`));
      }
    }
    const later = debounce(renderPreview, 400);
    form.addEventListener("input", later);
    orderInput.addEventListener("input", later);

    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!canEdit) return;
      const body = draft();
      delete body.kind; delete body.channel; delete body.language;
      say(status, "Saving…", "busy");
      try {
        const saved = await put(path, body);
        toast("Template saved");
        replaceTemplate(saved);
        openEditor(saved, "Saved.");
      } catch (err) {
        say(status, "Not saved.", "error");
        showProblem(form, err);
      }
    });

    async function reset() {
      if (!(await confirmAction(`Reset "${kindName(t.kind)}" (${CHANNEL_NAMES[t.channel]}, ${t.language}) to the shipped default? Your text is lost.`, "Reset"))) return;
      try {
        const def = await del(path);
        toast("Template reset to the default");
        replaceTemplate(def);
        openEditor(def, "Reset to the shipped default.");
      } catch (err) {
        showProblem(form, err);
      }
    }

    mount(editor, h("div", { class: "settings-editor-grid" }, form, preview));
    renderPreview();
    form.querySelector("h3").focus();
    editor.scrollIntoView({ block: "start" });
  }

  mount(section, h("h2", { id: "settings-sub-title" }, title),
    canEdit ? null : readOnlyNote("the message templates"),
    filters,
    editor,
    h("div", { class: "settings-table" }, h("table", {},
      h("caption", { class: "muted" }, "Templates by kind, channel and language"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Kind"), h("th", { scope: "col" }, "Channel"),
        h("th", { scope: "col" }, "Language"), h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Action")))),
      tbody)));
  drawList();
}
