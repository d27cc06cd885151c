// One order (#/orders/<number or id>): everything staff need on one page, each panel read from the service
// that owns it (orders, payments, fulfillment, notifications). The buttons are exactly the moves the status
// machines allow now (the stage table and the order's allowed moves, fulfillment's flags, payments' refundable
// amount) and that the signed-in role may make (ctx.can); the server checks every one again. Live alerts about
// this order (stage, payment, delivery, message status) refresh what they change.

import { get, ProblemError } from "../api.js";
import { onAlert } from "../live.js";
import { h, mount } from "../ui.js";
import { API } from "./order/common.js";
import { customer, header, items, notes, printLinks } from "./order/summary.js";
import { payments } from "./order/payments.js";
import { fulfillment } from "./order/fulfillment.js";
import { messages, timeline } from "./order/activity.js";

let stageTable = null;

async function optional(path) {
  try { return await get(path); } catch (err) { console.warn(path, err); return null; }
}

// Which parts an alert about this order changes.
const REFRESH = {
  stage_change: ["order", "fulfillment", "payments", "timeline"],
  order_held: ["order", "fulfillment", "timeline"],
  payment_update: ["order", "payments", "timeline"],
  delivery_failed: ["order", "fulfillment", "timeline"],
  out_of_stock: ["order", "fulfillment", "timeline"],
  label_void_failed: ["fulfillment", "timeline"],
  message_status: ["messages", "timeline"],
  message_failed: ["messages", "timeline"],
};

export async function render(root, { match }, ctx) {
  const ref = decodeURIComponent(match[1]).replace(/^#/, "");
  const state = { order: null, payments: null, fulfillment: null, messages: null, timeline: null };
  mount(root, h("p", { class: "muted" }, "Loading the order…"));
  try {
    state.order = await get(`${API}/orders/${encodeURIComponent(ref)}`);
  } catch (err) {
    if (err instanceof ProblemError && err.status === 404) {
      mount(root, h("h1", {}, "Order not found"), h("p", {}, err.message), h("a", { href: "#/orders" }, "Back to the orders"));
      return null;
    }
    throw err;
  }
  const id = state.order.id;
  const loaders = {
    order: async () => { state.order = await get(`${API}/orders/${id}`); },
    payments: async () => { state.payments = await optional(`${API}/orders/${id}/payments`); },
    fulfillment: async () => { state.fulfillment = await optional(`${API}/orders/${id}/fulfillment`); },
    messages: async () => { state.messages = await optional(`${API}/orders/${id}/messages`); },
    timeline: async () => { state.timeline = await optional(`${API}/orders/${id}/timeline`); },
  };
  if (!stageTable) stageTable = await optional(`${API}/stages`);
  await Promise.all(["payments", "fulfillment", "messages", "timeline"].map((k) => loaders[k]()));

  let alive = true;
  let pending = new Set();
  let running = false;
  // Refresh the named parts (coalesced: alerts in a burst cost one round of requests), then draw again.
  async function refresh(parts = Object.keys(loaders)) {
    parts.forEach((p) => pending.add(p));
    if (running) return;
    running = true;
    try {
      while (pending.size && alive) {
        const now = [...pending];
        pending = new Set();
        await Promise.all(now.map((k) => loaders[k]().catch((err) => console.warn(k, err))));
        if (alive) draw();
      }
    } finally {
      running = false;
    }
  }
  const reload = () => refresh();

  function draw() {
    const { order } = state;
    const focused = document.activeElement && document.activeElement.id;
    mount(root,
      h("p", { class: "crumbs" }, h("a", { href: "#/orders" }, "← Orders")),
      header(order, state.payments, stageTable, ctx, reload),
      h("div", { class: "order-layout" },
        h("div", { class: "order-main" },
          items(order),
          fulfillment(order, state.fulfillment, ctx, reload),
          payments(order, state.payments, ctx, reload),
          messages(state.messages)),
        h("div", { class: "order-side" },
          customer(order, ctx, reload),
          notes(order, ctx, reload),
          printLinks(order, state.fulfillment),
          timeline(state.timeline))));
    document.title = `Order ${order.display_number} — OMS`;
    if (focused) { const el = document.getElementById(focused); if (el) el.focus(); }
  }
  draw();

  const off = onAlert((alert) => {
    if (String(alert.order_id || "") !== String(id)) return;
    refresh(REFRESH[alert.kind] || ["order", "timeline"]);
  });
  return () => { alive = false; off(); };
}
