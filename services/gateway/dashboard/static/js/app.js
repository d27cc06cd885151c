// The dashboard shell: a hash router (#/orders, #/orders/1001, #/settings/...), the signed-in staff member
// (GET /api/v1/session), the navigation, and the live alert banner. Each page is a module in pages/ exporting
// `render(root, params, ctx)`; it may return a cleanup function. ctx.can(action) reads the staff member's role
// as the server reports it (the server checks every action again).

import { get, ProblemError } from "./api.js";
import { h, mount, toast } from "./ui.js";
import { onAlert, stop as stopLive } from "./live.js";

const routes = [
  [/^#\/signin/, "signin"],
  [/^#\/orders\/new$/, "new-order"],
  [/^#\/orders\/([^/?]+)/, "order"],
  [/^#\/(orders)?(\?.*)?$/, "orders"],
  [/^#\/settings\/?([^/?]*)/, "settings"],
];

const ctx = { me: null, can: () => false };
let cleanup = null;
let routeSeq = 0;  // a newer hash change wins: an older route's late page or error is not shown over it
let live = null; // unsubscribe of the toast listener; the stream opens once signed in (401 before that)

function startLive() {
  if (live) return;
  // message_status comes with every receipt: the order page shows it in place, a toast would only be noise.
  live = onAlert((a) => { if (ctx.me && a.kind !== "message_status") toast(`${a.title}${a.text ? " — " + a.text : ""}`, a.kind); });
}

async function whoAmI() {
  try {
    ctx.me = await get("/api/v1/session");
  } catch (e) {
    if (e instanceof ProblemError && e.status === 401) ctx.me = null; else throw e;
  }
  const allowed = new Set((ctx.me && ctx.me.permissions) || []);
  ctx.can = (action) => allowed.has(action);
}

function nav() {
  if (!ctx.me) return null;
  return h("nav", { "aria-label": "Main" },
    h("a", { href: "#/orders", class: "brand" }, "OMS"),
    h("a", { href: "#/orders" }, "Orders"),
    ctx.can("orders.create") ? h("a", { href: "#/orders/new" }, "New order") : null,
    h("a", { href: "#/settings" }, "Settings"),
    h("span", { class: "spacer" }),
    h("span", { class: "who" }, `${ctx.me.name} (${ctx.me.role})`),
    h("button", { class: "link", onclick: signOut }, "Sign out"));
}

async function signOut() {
  const { api } = await import("./api.js");
  try {
    await api("DELETE", "/api/v1/session");
  } catch (e) {
    if (!(e instanceof ProblemError && e.status === 401)) throw e; // already signed out
  }
  ctx.me = null;
  if (live) { live(); live = null; }
  stopLive();
  window.location.hash = "#/signin";
}

async function route() {
  const mine = ++routeSeq;
  const hash = window.location.hash || "#/orders";
  if (!ctx.me && !hash.startsWith("#/signin")) await whoAmI();
  // A newer route started while this one asked who is signed in: it owns the screen now (drawing this one's
  // view here would replace the newer page with an empty one).
  if (mine !== routeSeq) return;
  if (!ctx.me && !hash.startsWith("#/signin")) {
    window.location.hash = `#/signin?next=${encodeURIComponent(hash)}`;
    return;
  }
  if (ctx.me) startLive();
  let page = "orders";
  let match = null;
  for (const [re, name] of routes) {
    match = hash.match(re);
    if (match) { page = name; break; }
  }
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  const header = document.getElementById("header");
  mount(header, nav());
  const root = document.getElementById("main");
  root.setAttribute("aria-busy", "true");
  // Each route renders into a view of its own: a page still loading when the staff member moved on (its data
  // came late) writes into a view no longer on the screen, never over the page that replaced it.
  const view = h("div", { class: "view" });
  root.replaceChildren(view);
  try {
    const mod = await import(`./pages/${page}.js`);
    if (mine !== routeSeq) return;
    const params = new URLSearchParams((hash.split("?")[1]) || "");
    const done = await mod.render(view, { match, params }, ctx);
    if (mine === routeSeq) cleanup = done;
    else if (typeof done === "function") done();
    if (page === "signin") await whoAmI();
  } catch (e) {
    if (mine !== routeSeq) return;
    mount(view, h("p", { class: "problem", role: "alert" }, e.message || String(e)));
  } finally {
    root.removeAttribute("aria-busy");
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);

export { ctx };
