// Settings > Notifications: which events notify the customer on which channels (order status changes: for which
// stages), the store's e-mail (new-order e-mails), the test recipient (test orders' messages go there) and the
// store's language. Every change is saved at once (PUT /notifications/settings names only what changed).

import { get, put } from "../../api.js";
import { h, mount, label, showProblem } from "../../ui.js";
import { clearProblem, field, readOnlyNote, say, statusLine, uid } from "./common.js";

const CHANNELS = [["email", "E-mail"], ["sms", "SMS"], ["whatsapp", "WhatsApp"]];
const STAFF_KIND = "new_order_staff";
const LANGUAGES = [["en", "English"], ["fr", "French"], ["ar", "Arabic"], ["es", "Spanish"]];

function check(text, attrs) {
  const id = uid("chk");
  return h("span", { class: "check" }, h("input", { type: "checkbox", id, ...attrs }), h("label", { for: id }, text));
}

export async function render(section, ctx, title) {
  const [settings, tables, stageTable] = await Promise.all([
    get("notifications/settings"), get("notifications/statuses"), get("stages")]);
  const labels = Object.fromEntries(tables.kinds.map((k) => [k.kind, k.label]));
  labels[STAFF_KIND] = "New order e-mail to the store";
  const stages = (stageTable.stages || []).map((s) => [s.stage, s.label || label(s.stage)]);
  const canEdit = ctx.can("notifications.manage");
  const status = statusLine();

  async function save(body, what, form) {
    say(status, `Saving ${what}…`, "busy");
    try {
      await put("notifications/settings", body);
      say(status, `Saved: ${what}.`);
      if (form) clearProblem(form);
    } catch (err) {
      say(status, `Not saved: ${err.message}`, "error");
      if (form) showProblem(form, err);
    }
  }

  function kindRow(k) {
    const name = k.kind;
    const enabled = check("On", { name: "enabled", checked: k.enabled !== false });
    const channels = k.channels === "auto" || !k.channels ? null : new Set(k.channels);
    const auto = check("Automatic (the order's channel)", { name: "auto", checked: channels === null });
    const chans = CHANNELS.map(([v, t]) => check(t, { name: "channel", value: v, checked: channels !== null && channels.has(v),
      disabled: channels === null }));
    const chosen = new Set(k.stages || []);
    const stageBox = name === "order_stage_changed"
      ? h("fieldset", { class: "settings-stages" }, h("legend", {}, "Notify when the order moves to"),
        stages.map(([s, text]) => check(text, { name: "stage", value: s, checked: chosen.has(s) })))
      : null;
    const fs = h("fieldset", { class: "card settings-kind", dataset: { kind: name } },
      h("legend", {}, labels[name] || label(name)),
      h("div", { class: "row" }, enabled),
      name === STAFF_KIND
        ? h("p", { class: "muted" }, "Sent by e-mail to the store's address.")
        : h("fieldset", { class: "settings-channels" }, h("legend", {}, "Channels"), h("div", { class: "row" }, auto, chans)),
      stageBox);
    fs.addEventListener("change", (e) => {
      const autoBox = fs.querySelector('input[name="auto"]');
      const boxes = [...fs.querySelectorAll('input[name="channel"]')];
      if (e.target.name === "auto") boxes.forEach((b) => { b.disabled = autoBox.checked; });
      if (e.target.name === "channel" && boxes.every((b) => !b.checked)) {
        autoBox.checked = true;
        boxes.forEach((b) => { b.disabled = true; });
      }
      const setting = { kind: name, enabled: fs.querySelector('input[name="enabled"]').checked };
      if (name === STAFF_KIND) setting.channels = ["email"];
      else setting.channels = autoBox.checked ? "auto" : boxes.filter((b) => b.checked).map((b) => b.value);
      if (stageBox) setting.stages = [...fs.querySelectorAll('input[name="stage"]:checked')].map((b) => b.value);
      save({ kinds: [setting] }, labels[name] || name, null);
    });
    return fs;
  }

  const store = h("form", { class: "card settings-store", onsubmit: (e) => e.preventDefault() },
    h("h3", {}, "Store"),
    h("p", { class: "problem", role: "alert", hidden: true }),
    field("Store e-mail (new-order e-mails)", { type: "email", name: "store_email", value: settings.store_email || "",
      autocomplete: "email" }),
    field("Test recipient (test orders' messages go here)", { type: "text", name: "test_recipient",
      value: settings.test_recipient || "" }),
    field("Language of messages", { tag: "select", name: "language", value: settings.language,
      options: LANGUAGES.some(([v]) => v === settings.language) ? LANGUAGES : [...LANGUAGES, [settings.language, settings.language]] }));
  const storeNames = { store_email: "store e-mail", test_recipient: "test recipient", language: "language" };
  store.addEventListener("change", (e) => {
    const n = e.target.name;
    if (!storeNames[n]) return;
    save({ [n]: e.target.value.trim() }, storeNames[n], store);
  });

  const body = h("div", { class: "settings-notifications" },
    h("p", { class: "muted" }, "Which events tell the customer, and how. Changes are saved at once."),
    store, tables.kinds.map((k) => k.kind).concat([STAFF_KIND])
      .map((n) => settings.kinds.find((k) => k.kind === n) || { kind: n, enabled: true, channels: "auto" })
      .map(kindRow));
  if (!canEdit) body.querySelectorAll("input, select, textarea").forEach((i) => { i.disabled = true; });
  mount(section, h("h2", { id: "settings-sub-title" }, title), canEdit ? null : readOnlyNote("the notification settings"),
    status, body);
}
