// Settings > Staff users (owners): who may sign in to the dashboard and with which role. Add a user (a password
// is generated and shown once when none is given), change a role (saved at once), disable or enable a user.

import { api, get, patch, post } from "../../api.js";
import { confirmAction, dialog, h, mount, toast, when } from "../../ui.js";
import { field, formDialog, say, statusLine } from "./common.js";

export const ROLES = [["viewer", "Viewer (reads orders)"], ["staff", "Staff (works orders)"], ["owner", "Owner (everything)"]];

export async function render(section, ctx, title) {
  const status = statusLine();
  const tbody = h("tbody");
  let users = await get("staff");

  function draw() {
    mount(tbody, users.map((u) => {
      const role = field(`Role of ${u.name}`, { tag: "select", name: "role", value: u.role, options: ROLES,
        disabled: !u.active || (ctx.me && ctx.me.id === u.id) });
      role.querySelector("label").className = "sr-only";
      role.querySelector("select").addEventListener("change", async (e) => {
        say(status, `Saving the role of ${u.name}…`, "busy");
        try {
          replace(await patch(`staff/${u.id}`, { role: e.target.value }));
          say(status, `Saved: ${u.name} is now ${e.target.value}.`);
        } catch (err) {
          say(status, `Not saved: ${err.message}`, "error");
          e.target.value = u.role;
        }
      });
      return h("tr", { dataset: { email: u.email } },
        h("th", { scope: "row" }, u.name, h("br"), h("span", { class: "muted" }, u.email)),
        h("td", {}, role),
        h("td", {}, u.active ? h("span", { class: "badge settings-active" }, "active")
          : h("span", { class: "badge stage-cancelled" }, `disabled ${when(u.disabled_at)}`)),
        h("td", {}, ctx.me && ctx.me.id === u.id ? h("span", { class: "muted" }, "you")
          : u.active
            ? h("button", { type: "button", class: "danger", "aria-label": `Disable ${u.name}`, onclick: () => disable(u) }, "Disable")
            : h("button", { type: "button", class: "secondary", "aria-label": `Enable ${u.name}`, onclick: () => enable(u) }, "Enable")));
    }));
  }

  function replace(user) {
    const i = users.findIndex((u) => u.id === user.id);
    if (i >= 0) users[i] = user; else users = [...users, user];
    draw();
  }

  async function disable(u) {
    if (!(await confirmAction(`Disable ${u.name} (${u.email})? They cannot sign in any more and their sessions end now.`, "Disable"))) return;
    try {
      await api("DELETE", `staff/${u.id}`);
      users = await get("staff");
      draw();
      say(status, `${u.name} is disabled.`);
    } catch (err) {
      say(status, `Not disabled: ${err.message}`, "error");
    }
  }

  async function enable(u) {
    try {
      replace(await patch(`staff/${u.id}`, { active: true }));
      say(status, `${u.name} can sign in again.`);
    } catch (err) {
      say(status, `Not enabled: ${err.message}`, "error");
    }
  }

  async function add() {
    const body = h("div", {},
      field("Name", { name: "name", required: true, autocomplete: "off" }),
      field("E-mail", { type: "email", name: "email", required: true, autocomplete: "off" }),
      field("Role", { tag: "select", name: "role", value: "staff", options: ROLES }),
      field("Password (leave empty to generate one)", { type: "password", name: "password", autocomplete: "new-password" }));
    const created = await formDialog("Add a staff user", body, "Add user", (data) => {
      const b = { name: data.get("name"), email: data.get("email"), role: data.get("role") };
      if (data.get("password")) b.password = data.get("password");
      return post("staff", b);
    });
    if (!created) return;
    replace(created);
    toast(`${created.name} added as ${created.role}`);
    say(status, `Added ${created.name} (${created.email}) as ${created.role}.`);
    if (created.password) {
      const got = await dialog("Their password", h("div", {},
        h("p", {}, `Give ${created.name} this password; it is shown only now.`),
        h("p", {}, h("code", { class: "settings-secret" }, created.password))), { submit: "Done" });
      if (got) got.close();
    }
  }

  mount(section, h("h2", { id: "settings-sub-title" }, title),
    h("div", { class: "row" }, h("button", { type: "button", onclick: add }, "Add staff user")),
    status,
    h("div", { class: "settings-table" }, h("table", {},
      h("caption", { class: "muted" }, "Who may sign in, and with which role"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "User"), h("th", { scope: "col" }, "Role"),
        h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Action")))),
      tbody)));
  draw();
}
