// Settings > API keys (owners): the keys machines use (Authorization: Bearer <key>). Create one with a role (the
// key is shown once, then only its prefix), revoke one (refused at once on every gateway).

import { api, get, post } from "../../api.js";
import { confirmAction, dialog, h, mount, toast, when } from "../../ui.js";
import { field, formDialog, say, statusLine } from "./common.js";
import { ROLES } from "./staff.js";

export async function render(section, ctx, title) {
  const status = statusLine();
  const tbody = h("tbody");
  let keys = await get("apikeys");

  function draw() {
    mount(tbody, keys.map((k) => h("tr", { dataset: { prefix: k.prefix } },
      h("th", { scope: "row" }, k.name),
      h("td", {}, h("code", {}, `${k.prefix}…`)),
      h("td", {}, k.role),
      h("td", {}, when(k.created_at)),
      h("td", {}, k.last_used_at ? when(k.last_used_at) : h("span", { class: "muted" }, "never")),
      h("td", {}, k.active ? h("button", { type: "button", class: "danger", "aria-label": `Revoke ${k.name}`, onclick: () => revoke(k) }, "Revoke")
        : h("span", { class: "badge stage-cancelled" }, `revoked ${when(k.revoked_at)}`)))));
    if (!keys.length) mount(tbody, h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No API keys.")));
  }

  async function revoke(k) {
    if (!(await confirmAction(`Revoke the key "${k.name}" (${k.prefix}…)? Whatever uses it is refused from now on.`, "Revoke"))) return;
    try {
      await api("DELETE", `apikeys/${k.id}`);
      keys = await get("apikeys");
      draw();
      say(status, `Revoked "${k.name}".`);
    } catch (err) {
      say(status, `Not revoked: ${err.message}`, "error");
    }
  }

  async function create() {
    const body = h("div", {},
      field("Name (who or what uses it)", { name: "name", required: true, autocomplete: "off" }),
      field("Role", { tag: "select", name: "role", value: "owner", options: ROLES }));
    const created = await formDialog("Create an API key", body, "Create key",
      (data) => post("apikeys", { name: data.get("name"), role: data.get("role") }));
    if (!created) return;
    keys = await get("apikeys");
    draw();
    toast(`API key "${created.name}" created`);
    const got = await dialog("The new API key", h("div", {},
      h("p", {}, "Copy it now: it is shown only once."),
      h("p", {}, h("code", { class: "settings-secret" }, created.key)),
      h("p", { class: "muted" }, "Send it as the header Authorization: Bearer <key>.")), { submit: "Done" });
    if (got) got.close();
  }

  mount(section, h("h2", { id: "settings-sub-title" }, title),
    h("div", { class: "row" }, h("button", { type: "button", onclick: create }, "Create API key")),
    status,
    h("div", { class: "settings-table" }, h("table", {},
      h("caption", { class: "muted" }, "Keys for machines"),
      h("thead", {}, h("tr", {}, ["Name", "Key", "Role", "Created", "Last used"].map((c) => h("th", { scope: "col" }, c)),
        h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Action")))),
      tbody)));
  draw();
}
