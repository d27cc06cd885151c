// Settings (#/settings/<sub-page>): notifications, templates, stock, staff, API keys. Each sub-page is a module in
// pages/settings/ exporting `render(section, ctx)`; this page draws the sub-navigation (only the sub-pages the
// role may open) and mounts the chosen one. The server checks every change again: the pages only hide what it
// would refuse.

import { h, mount } from "../ui.js";

export const SUBPAGES = [
  { name: "notifications", title: "Notifications", visible: () => true },
  { name: "templates", title: "Message templates", visible: () => true },
  { name: "stock", title: "Stock", visible: () => true },
  { name: "staff", title: "Staff users", visible: (ctx) => ctx.can("staff.manage") },
  { name: "apikeys", title: "API keys", visible: (ctx) => ctx.can("apikeys.manage") },
];

export async function render(root, { match }, ctx) {
  const visible = SUBPAGES.filter((s) => s.visible(ctx));
  const wanted = (match && match[1]) || "";
  const current = visible.find((s) => s.name === wanted) || visible[0];
  const section = h("section", { class: "settings-body", "aria-labelledby": "settings-sub-title" });
  mount(root,
    h("h1", {}, "Settings"),
    h("nav", { class: "settings-nav", "aria-label": "Settings" },
      h("ul", {}, visible.map((s) => h("li", {},
        h("a", { href: `#/settings/${s.name}`, "aria-current": s === current ? "page" : false }, s.title))))),
    section);
  const mod = await import(`./settings/${current.name}.js`);
  return mod.render(section, ctx, current.title);
}
