// Fulfillment: the lines (ordered, shipped, delivered, returned), each shipment with exactly the actions its
// flags allow (can_edit, can_mark_delivered, can_cancel, label_available, allowed_statuses), the fulfil dialog
// (manual: shipping point, carrier, tracking; carrier: packages, rates, buy the label; both split by lines and
// units), and returns.

import { api, get, post } from "../../api.js";
import { confirmAction, h, money, showProblem, toast, when } from "../../ui.js";
import { API, checkbox, field, formDialog, idempotencyKey, section, value, words } from "./common.js";

// Common carrier package types (the carrier answers in its own words if it does not know one).
const PACKAGE_TYPES = [["", "Custom size"], ["envelope", "Envelope"], ["small_box", "Small box"], ["medium_box", "Medium box"],
  ["large_box", "Large box"]];
const SHIPPING_POINTS = [["local", "Local delivery"], ["international", "International"], ["pickup", "Pickup in store"]];

export function fulfillment(order, view, ctx, reload) {
  if (!view) return section("Fulfillment", "order-fulfillment", h("p", { class: "muted" }, "Fulfillment is not available right now."));
  const can = ctx.can("fulfillment.fulfil");
  const returnable = view.lines.some((l) => l.returnable > 0);
  return section("Fulfillment", "order-fulfillment",
    h("p", {}, h("span", { class: "badge", id: "fulfillment-status" }, words(view.status)),
      view.packed ? h("span", { class: "badge" }, "packed") : null,
      " ", h("span", { class: "muted" }, `stock: ${words(view.reservation)}`)),
    h("table", { class: "fulfillment-lines" },
      h("thead", {}, h("tr", {}, h("th", {}, "Item"), h("th", { class: "num" }, "Ordered"), h("th", { class: "num" }, "Unfulfilled"),
        h("th", { class: "num hide-sm" }, "Shipped"), h("th", { class: "num hide-sm" }, "Delivered"), h("th", { class: "num hide-sm" }, "Returned"))),
      h("tbody", {}, view.lines.map((l) => h("tr", { dataset: { line: l.line_id } },
        h("td", {}, l.name, h("br"), h("span", { class: "muted" }, l.sku)), h("td", { class: "num" }, l.ordered),
        h("td", { class: "num" }, l.unfulfilled), h("td", { class: "num hide-sm" }, l.in_open_shipments + l.handed_over),
        h("td", { class: "num hide-sm" }, l.delivered), h("td", { class: "num hide-sm" }, l.returned))))),
    h("div", { class: "row" },
      can && view.can_fulfill ? h("button", { type: "button", onclick: () => fulfil(order, view, reload) }, "Fulfil") : null,
      can && returnable ? h("button", { type: "button", class: "secondary", onclick: () => recordReturn(order, view, reload) },
        "Record a return") : null),
    !view.can_fulfill && view.why_not ? h("p", { class: "muted", id: "why-not" }, view.why_not) : null,
    h("h3", {}, "Shipments"),
    view.shipments.length ? h("ul", { class: "shipments" }, view.shipments.map((s) => shipment(order, s, can, reload)))
      : h("p", { class: "muted" }, "No shipments yet."),
    view.returns.length ? h("div", {}, h("h3", {}, "Returns"), h("ul", {}, view.returns.map((r) => h("li", {},
      `${when(r.at)}: ${r.lines.map((l) => `${l.quantity} × ${l.line}${l.restock ? " (restocked)" : ""}`).join(", ")}`,
      r.reason ? ` — ${r.reason}` : "", ` (${r.actor.name})`)))) : null);
}

function shipment(order, s, can, reload) {
  const actions = [];
  if (can && s.can_edit) actions.push(h("button", { type: "button", class: "secondary", onclick: () => editShipment(s, reload) }, "Edit"));
  if (can && s.can_mark_delivered) {
    actions.push(h("button", { type: "button", class: "secondary", onclick: () => markDelivered(s, reload) }, "Mark delivered"));
  }
  actions.push(h("button", { type: "button", class: "secondary", onclick: () => track(s) }, "Track"));
  if (s.label_available) {
    actions.push(h("a", { class: "button secondary", href: `${API}/shipments/${s.id}/label.pdf`, target: "_blank", rel: "noopener" },
      "Print label"));
  }
  if (s.status !== "canceled") {
    actions.push(h("a", { class: "button secondary", href: `${API}/shipments/${s.id}/packing-slip.html`, target: "_blank",
      rel: "noopener" }, "Packing slip"));
  }
  if (can && s.can_cancel) {
    actions.push(h("button", { type: "button", class: "danger", onclick: () => cancelShipment(s, reload) },
      s.kind === "carrier" ? "Void label" : "Cancel shipment"));
  }
  return h("li", { class: "shipment card", dataset: { shipment: s.number, status: s.status } },
    h("div", { class: "row" }, h("strong", {}, `Shipment ${s.number}`), h("span", { class: "badge shipment-status" }, words(s.status)),
      h("span", { class: "muted" }, `${words(s.kind)} · ${words(s.shipping_point)}`)),
    h("p", {}, s.lines.map((l) => `${l.quantity} × ${l.name}`).join(", ")),
    h("p", { class: "muted" }, [s.carrier, s.service, s.tracking_number ? `tracking ${s.tracking_number}` : null,
      s.expected_delivery ? `expected ${s.expected_delivery}` : null,
      s.label_cost ? `label ${money(s.label_cost, s.label_currency)}` : null].filter(Boolean).join(" · ")),
    h("div", { class: "row" }, actions));
}

// ------------------------------------------------------------------------------------------- fulfil
function lineInputs(view, prefix = "units") {
  const open = view.lines.filter((l) => l.unfulfilled > 0);
  return h("fieldset", {}, h("legend", {}, "Lines and units in this shipment"),
    open.map((l) => field(`${l.name} (${l.sku}) — ${l.unfulfilled} left`, `${prefix}.${l.line_id}`,
      { type: "number", min: 0, max: l.unfulfilled, step: 1, value: l.unfulfilled, inputmode: "numeric" })));
}

// The chosen lines (zeros left out) and a map from the API's `lines[i].quantity` to this form's input name.
function chosenLines(form, view, prefix = "units") {
  const lines = [];
  const names = {};
  for (const l of view.lines) {
    const q = value(form, `${prefix}.${l.line_id}`);
    if (q === "" || q === "0") continue;
    names[`lines[${lines.length}].quantity`] = `${prefix}.${l.line_id}`;
    names[`lines[${lines.length}]`] = `${prefix}.${l.line_id}`;
    names[`lines.${lines.length}.quantity`] = `${prefix}.${l.line_id}`;
    lines.push({ line: l.line_id, quantity: /^\d+$/.test(q) ? Number(q) : q });
  }
  return { lines, names };
}

async function fulfil(order, view, reload) {
  let names = {};
  let rates = null;
  const modeManual = h("input", { type: "radio", name: "mode", value: "manual", id: "mode-manual", checked: true });
  const modeCarrier = h("input", { type: "radio", name: "mode", value: "carrier", id: "mode-carrier" });
  const manualPart = h("div", { class: "mode-manual" },
    field("Shipping point", "shipping_point", { options: SHIPPING_POINTS, value: "local" }, "select"),
    field("Carrier (optional)", "carrier", { maxlength: 200 }),
    field("Tracking number (optional)", "tracking_number", { maxlength: 200 }),
    field("Tracking link (optional)", "tracking_url", { type: "url", maxlength: 500 }),
    field("Expected delivery (optional)", "expected_delivery", { type: "date" }),
    checkbox("Already handed over (shipped)", "shipped"),
    checkbox("Tell the customer", "notify_customer", true));
  const packages = h("div", { class: "packages" });
  const addPackage = () => {
    const i = packages.children.length;
    packages.append(h("fieldset", { class: "package" }, h("legend", {}, `Package ${i + 1}`),
      field("Package type (the carrier's, or leave empty and give the size)", `packages[${i}].preset`,
        { options: PACKAGE_TYPES, value: "small_box" }, "select"),
      h("div", { class: "row" },
        field("Weight (g)", `packages[${i}].weight_grams`, { type: "number", min: 1, step: 1, value: 500, inputmode: "numeric" }),
        field("Length (cm)", `packages[${i}].length_cm`, { type: "number", min: 1, step: 1, inputmode: "numeric" }),
        field("Width (cm)", `packages[${i}].width_cm`, { type: "number", min: 1, step: 1, inputmode: "numeric" }),
        field("Height (cm)", `packages[${i}].height_cm`, { type: "number", min: 1, step: 1, inputmode: "numeric" }))));
  };
  addPackage();
  const rateList = h("div", { class: "rates", role: "radiogroup", "aria-label": "Rates" });
  const carrierPart = h("div", { class: "mode-carrier", hidden: true },
    packages,
    h("div", { class: "row" },
      h("button", { type: "button", class: "secondary", onclick: addPackage }, "Add package"),
      h("button", { type: "button", class: "secondary", id: "get-rates", onclick: () => getRates() }, "Get rates")),
    rateList,
    checkbox("Tell the customer", "notify_customer_carrier", true));
  const body = h("div", {},
    h("fieldset", { class: "row" }, h("legend", {}, "How"),
      h("span", {}, modeManual, h("label", { for: "mode-manual", class: "inline" }, "Manual")),
      h("span", {}, modeCarrier, h("label", { for: "mode-carrier", class: "inline" }, "Carrier label"))),
    lineInputs(view), manualPart, carrierPart);
  const form = () => body.closest("form");

  function carrierCommand(f) {
    const chosen = chosenLines(f, view);
    names = chosen.names;
    const pkgs = [];
    for (let i = 0; i < packages.children.length; i += 1) {
      const p = {};
      const preset = value(f, `packages[${i}].preset`);
      if (preset) p.preset = preset;
      for (const k of ["weight_grams", "length_cm", "width_cm", "height_cm"]) {
        const v = value(f, `packages[${i}].${k}`);
        if (v) p[k] = /^\d+$/.test(v) ? Number(v) : v;
      }
      pkgs.push(p);
    }
    return { lines: chosen.lines, packages: pkgs };
  }

  async function getRates() {
    const f = form();
    const problem = f.querySelector(".problem");
    try {
      const got = await post(`${API}/orders/${order.id}/shipments/rates`, carrierCommand(f));
      rates = got.rates;
      problem.hidden = true;
      rateList.replaceChildren(h("p", { class: "muted" }, got.rates.length ? "Pick a rate:" : "The carrier offers no rate for these parcels."),
        ...got.rates.map((r, i) => h("div", { class: "field check" },
          h("input", { type: "radio", name: "rate_id", value: r.rate_id, id: `rate-${i}`, checked: i === 0 || undefined }),
          h("label", { for: `rate-${i}` }, `${r.carrier} ${r.service}: ${money(r.amount, r.currency)}`,
            r.estimated_delivery ? ` — by ${r.estimated_delivery}` : ""))));
    } catch (err) {
      showProblem(f, renamedNames(err));
      problem.hidden = false;
    }
  }
  const renamedNames = (err) => ({ problem: err.problem, errors: (err.errors || []).map((e) => ({ ...e, field: names[e.field] || e.field })) });

  const done = await formDialog(`Fulfil order ${order.display_number}`, body, {
    submit: "Create shipment",
    names: (f) => names[f],
    onInput: (f) => {
      const carrier = f.elements.namedItem("mode").value === "carrier";
      manualPart.hidden = carrier;
      carrierPart.hidden = !carrier;
      const button = f.querySelector('button[type="submit"]');
      button.textContent = carrier ? "Buy label" : "Create shipment";
    },
    onSubmit: async (f) => {
      if (f.elements.namedItem("mode").value === "carrier") {
        const cmd = carrierCommand(f);
        const rateId = value(f, "rate_id");
        if (!rates || !rateId) {
          await getRates();
          return false;
        }
        const rate = rates.find((r) => r.rate_id === rateId);
        if (!(await confirmAction(`Buy the ${rate.carrier} ${rate.service} label for ${money(rate.amount, rate.currency)}?`, "Buy label"))) return false;
        return api("POST", `${API}/orders/${order.id}/shipments/label`,
          { ...cmd, rate_id: rateId, notify_customer: Boolean(value(f, "notify_customer_carrier")) },
          { headers: { "Idempotency-Key": idempotencyKey() } });
      }
      const chosen = chosenLines(f, view);
      names = chosen.names;
      const cmd = { lines: chosen.lines, shipping_point: value(f, "shipping_point"), shipped: Boolean(value(f, "shipped")),
        notify_customer: Boolean(value(f, "notify_customer")) };
      for (const k of ["carrier", "tracking_number", "tracking_url", "expected_delivery"]) if (value(f, k)) cmd[k] = value(f, k);
      return api("POST", `${API}/orders/${order.id}/shipments`, cmd, { headers: { "Idempotency-Key": idempotencyKey() } });
    },
  });
  if (done) { toast(`Shipment ${done.number} created`); reload(); }
}

// ------------------------------------------------------------------------------------------- shipment actions
async function editShipment(s, reload) {
  const statuses = [["", `keep (${words(s.status)})`], ...s.allowed_statuses.map((st) => [st, words(st)])];
  const body = h("div", {},
    field("Carrier", "carrier", { value: s.carrier || "", maxlength: 200 }),
    field("Tracking number", "tracking_number", { value: s.tracking_number || "", maxlength: 200 }),
    field("Tracking link", "tracking_url", { value: s.tracking_url || "", type: "url", maxlength: 500 }),
    field("Expected delivery", "expected_delivery", { value: s.expected_delivery || "", type: "date" }),
    s.allowed_statuses.length ? field("Status", "status", { options: statuses, value: "" }, "select") : null,
    checkbox("Tell the customer", "notify_customer"));
  const done = await formDialog(`Edit shipment ${s.number}`, body, {
    onSubmit: async (f) => {
      const cmd = { notify_customer: Boolean(value(f, "notify_customer")) };
      for (const k of ["carrier", "tracking_number", "tracking_url", "expected_delivery"]) {
        if (value(f, k) !== (s[k] || "")) cmd[k] = value(f, k) || null;
      }
      if (value(f, "status")) {
        if (!(await confirmAction(`Move shipment ${s.number} to ${words(value(f, "status"))}? A shipment only moves forward.`,
          "Save"))) return false;
        cmd.status = value(f, "status");
      }
      return api("PATCH", `${API}/shipments/${s.id}`, cmd);
    },
  });
  if (done) { toast(`Shipment ${s.number} saved`); reload(); }
}

async function markDelivered(s, reload) {
  if (!(await confirmAction(`Mark shipment ${s.number} delivered? This cannot be undone.`, "Mark delivered"))) return;
  try {
    await post(`${API}/shipments/${s.id}/deliver`, { notify_customer: true });
    toast(`Shipment ${s.number} delivered`);
    reload();
  } catch (err) {
    toast(err.message, "error");
  }
}

async function cancelShipment(s, reload) {
  const what = s.kind === "carrier" ? "Void the label of" : "Cancel";
  const done = await formDialog("Please confirm", h("div", {},
    h("p", {}, `${what} shipment ${s.number}? Its units become unfulfilled again. This cannot be undone.`),
    field("Reason (optional)", "reason", { maxlength: 500 })), {
    submit: s.kind === "carrier" ? "Void label" : "Cancel shipment", danger: true,
    onSubmit: (f) => post(`${API}/shipments/${s.id}/cancel`, value(f, "reason") ? { reason: value(f, "reason") } : {}),
  });
  if (done) { toast(`Shipment ${s.number} cancelled`); reload(); }
}

async function track(s) {
  let detail = s;
  try { detail = await get(`${API}/shipments/${s.id}`); } catch { /* show what we have */ }
  await formDialog(`Tracking of ${s.number}`, h("div", {},
    detail.tracking_url ? h("p", {}, h("a", { href: detail.tracking_url, target: "_blank", rel: "noopener" }, "Carrier's tracking page")) : null,
    detail.tracking && detail.tracking.length ? h("ol", { class: "timeline" }, detail.tracking.map((t) => h("li", {},
      `${when(t.at)} — ${words(t.status)}`, t.description ? `: ${t.description}` : "", t.location ? ` (${t.location})` : "",
      t.applied ? "" : " (late or repeated: not applied)")))
      : h("p", { class: "muted" }, "No tracking events yet.")), { submit: "Close", onSubmit: () => true });
}

// ------------------------------------------------------------------------------------------- returns
async function recordReturn(order, view, reload) {
  const lines = view.lines.filter((l) => l.returnable > 0);
  let names = {};
  const body = h("div", {},
    lines.map((l) => h("fieldset", {}, h("legend", {}, `${l.name} (${l.sku})`),
      field(`Units returned (up to ${l.returnable})`, `returned.${l.line_id}`,
        { type: "number", min: 0, max: l.returnable, step: 1, value: 0, inputmode: "numeric" }),
      checkbox("Put back in stock", `restock.${l.line_id}`, true))),
    field("Reason (optional)", "reason", { maxlength: 500 }));
  const done = await formDialog(`Record a return on ${order.display_number}`, body, {
    submit: "Record return", names: (f) => names[f],
    onSubmit: async (f) => {
      const chosen = [];
      names = {};
      for (const l of lines) {
        const q = value(f, `returned.${l.line_id}`);
        if (!q || q === "0") continue;
        names[`lines[${chosen.length}].quantity`] = `returned.${l.line_id}`;
        chosen.push({ line: l.line_id, quantity: /^\d+$/.test(q) ? Number(q) : q, restock: Boolean(value(f, `restock.${l.line_id}`)) });
      }
      if (!(await confirmAction(`Record ${chosen.reduce((n, l) => n + (Number(l.quantity) || 0), 0)} unit(s) as returned?`, "Record return"))) return false;
      return api("POST", `${API}/orders/${order.id}/returns`, { lines: chosen, ...(value(f, "reason") ? { reason: value(f, "reason") } : {}) },
        { headers: { "Idempotency-Key": idempotencyKey() } });
    },
  });
  if (done) { toast("Return recorded"); reload(); }
}
