// The order itself: its header (stage, payment indicator, the stage moves the machine allows now), items and
// totals, customer (change dialog), address (edit dialog), staff notes (add, edit, delete) and print links.

import { del, patch, post, put } from "../../api.js";
import { confirmAction, h, money, showProblem, toast, when } from "../../ui.js";
import { API, field, formDialog, orderPath, section, value, words } from "./common.js";

// The words of a move's button; WHICH moves are offered comes from the stage machine, never from here.
const MOVE_WORDS = {
  placed: "Resume (placed)", confirmed: "Confirm", on_hold: "Put on hold", rejected: "Reject", cancelled: "Cancel order",
  approved: "Approve", processed: "Mark processed", shipped: "Mark shipped", delivered: "Mark delivered",
  returned: "Mark returned", archived: "Archive", abandoned: "Abandon",
};
const GENTLE = new Set(["confirmed", "approved", "processed", "placed"]); // asked too, but not in red
const WITH_REASON = new Set(["on_hold", "rejected", "cancelled", "returned"]);
const SETTLED = new Set(["shipped", "delivered", "returned", "archived"]); // customer/address are history

// The moves offered now: the order's allowed moves (the stage machine narrowed by its rules), each one a move
// the published stage table allows from this stage.
export function stageMoves(order, stageTable) {
  const row = stageTable && stageTable.stages.find((s) => s.stage === order.stage);
  const fromTable = new Set(row ? row.allowed : order.allowed_transitions);
  return (order.allowed_transitions || []).filter((s) => fromTable.has(s));
}

function stageLabel(stageTable, stage) {
  const row = stageTable && stageTable.stages.find((s) => s.stage === stage);
  return row ? row.label : words(stage);
}

export function header(order, payments, stageTable, ctx, reload) {
  const paid = payments && ["paid", "partially_refunded", "refunded"].includes(payments.status);
  const payText = payments ? words(payments.status) : words(order.payment_status || "unpaid");
  const moves = ctx.can("orders.change") ? stageMoves(order, stageTable) : [];
  const buttons = moves.map((to) => h("button", {
    type: "button", class: GENTLE.has(to) ? "primary" : "secondary", dataset: { stage: to },
    onclick: () => moveTo(order, to, stageTable, reload),
  }, order.stage === "on_hold" && to !== "cancelled" && to !== "rejected" && to === order.held_from
    ? `Resume (${stageLabel(stageTable, to)})` : MOVE_WORDS[to] || stageLabel(stageTable, to)));
  return h("div", { class: "order-head card" },
    h("div", { class: "row" },
      h("h1", {}, `Order ${order.display_number}`),
      order.test ? h("span", { class: "badge" }, "test") : null,
      h("span", { class: `badge stage-${order.stage}`, id: "order-stage", dataset: { stage: order.stage } },
        stageLabel(stageTable, order.stage)),
      h("span", { class: `pay${paid ? " paid" : ""}`, id: "order-payment", dataset: { status: payText } },
        h("span", { class: "dot", "aria-hidden": "true" }), payText),
      h("span", { class: "badge", id: "order-fulfillment" }, words(order.fulfillment_status))),
    h("p", { class: "muted" }, `Placed ${when(order.placed_at)} · ${words(order.channel)}`,
      order.held_from ? ` · held from ${stageLabel(stageTable, order.held_from)}` : ""),
    buttons.length ? h("div", { class: "row stage-moves", role: "group", "aria-label": "Move the order" }, buttons)
      : h("p", { class: "muted stage-moves" }, moves.length || !ctx.can("orders.change") ? "" : "No moves are possible from this stage."),
    h("p", { class: "problem", role: "alert", id: "stage-problem", hidden: true }));
}

async function moveTo(order, to, stageTable, reload) {
  const label = stageLabel(stageTable, to);
  const reasonField = WITH_REASON.has(to) ? field("Reason (optional)", "reason", { maxlength: 1000 }) : null;
  const body = h("div", {},
    h("p", {}, `Move order ${order.display_number} from ${stageLabel(stageTable, order.stage)} to ${label}?`),
    reasonField);
  const done = await formDialog("Please confirm", body, {
    submit: MOVE_WORDS[to] || `Move to ${label}`, danger: !GENTLE.has(to),
    onSubmit: (form) => post(orderPath(order, "/transitions"), {
      to, expected_version: order.version, ...(reasonField && value(form, "reason") ? { reason: value(form, "reason") } : {}),
    }),
  });
  if (done) {
    toast(`Order ${order.display_number} is ${label}`);
    reload();
  }
}

export function items(order) {
  const t = order.totals;
  const c = order.currency;
  return section("Items", "order-items",
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Item"), h("th", { class: "hide-sm" }, "SKU"), h("th", { class: "num" }, "Qty"),
        h("th", { class: "num hide-sm" }, "Unit price"), h("th", { class: "num" }, "Total"))),
      h("tbody", {}, order.items.map((i) => h("tr", {},
        h("td", {}, i.name), h("td", { class: "hide-sm" }, i.sku), h("td", { class: "num" }, i.quantity),
        h("td", { class: "num hide-sm" }, money(i.unit_price, c)), h("td", { class: "num" }, money(i.line_total, c))))),
      h("tfoot", {},
        [["Subtotal", t.subtotal], ["Shipping", t.shipping], ["Discount", t.discount], ["Tax", t.tax]]
          .map(([k, v]) => h("tr", {}, h("th", { colspan: 4, class: "num" }, k), h("td", { class: "num" }, money(v, c)))),
        h("tr", { class: "total" }, h("th", { colspan: 4, class: "num" }, "Total"),
          h("td", { class: "num", id: "order-total" }, money(t.total, c))))));
}

export function customer(order, ctx, reload) {
  const cu = order.customer;
  const editable = ctx.can("orders.change") && !SETTLED.has(order.stage);
  const addr = order.shipping_address;
  return section("Customer", "order-customer",
    h("p", {}, h("strong", {}, cu.name)),
    cu.phone ? h("p", {}, h("a", { href: `tel:${cu.phone}` }, cu.phone)) : null,
    cu.email ? h("p", {}, h("a", { href: `mailto:${cu.email}` }, cu.email)) : null,
    editable ? h("button", { type: "button", class: "secondary", onclick: () => changeCustomer(order, reload) },
      "Change customer") : null,
    h("h3", {}, "Shipping address"),
    addr ? h("address", {}, [addr.line1, addr.line2, [addr.postal_code, addr.city].filter(Boolean).join(" "),
      addr.region, addr.country].filter(Boolean).flatMap((l) => [l, h("br")]))
      : h("p", { class: "muted" }, "No address yet."),
    editable ? h("button", { type: "button", class: "secondary", onclick: () => editAddress(order, reload) },
      addr ? "Edit address" : "Add address") : null,
    h("h3", {}, "Customer's note"),
    h("p", { class: order.customer_note ? "" : "muted" },
      order.customer_note || (order.customer_note_skipped ? "Skipped by the customer." : "None yet.")));
}

async function changeCustomer(order, reload) {
  const cu = order.customer;
  const body = h("div", {},
    field("Name", "customer.name", { value: cu.name, required: true, autocomplete: "name" }),
    field("Phone", "customer.phone", { value: cu.phone || "", type: "tel", autocomplete: "tel" }),
    field("E-mail", "customer.email", { value: cu.email || "", type: "email", autocomplete: "email" }));
  const done = await formDialog("Change the customer", body, {
    submit: "Change customer",
    onSubmit: async (form) => {
      const next = { name: value(form, "customer.name") };
      if (value(form, "customer.phone")) next.phone = value(form, "customer.phone");
      if (value(form, "customer.email")) next.email = value(form, "customer.email");
      if (!(await confirmAction(`Replace ${cu.name} with ${next.name} as this order's customer?`, "Change customer"))) return false;
      return put(orderPath(order, "/customer"), { customer: next, expected_version: order.version });
    },
  });
  if (done) { toast("Customer changed"); reload(); }
}

async function editAddress(order, reload) {
  const a = order.shipping_address || {};
  const body = h("div", {},
    field("Address line 1", "address.line1", { value: a.line1 || "", autocomplete: "address-line1" }),
    field("Address line 2", "address.line2", { value: a.line2 || "", autocomplete: "address-line2" }),
    field("City", "address.city", { value: a.city || "", autocomplete: "address-level2" }),
    field("Region", "address.region", { value: a.region || "", autocomplete: "address-level1" }),
    field("Postal code", "address.postal_code", { value: a.postal_code || "", autocomplete: "postal-code" }),
    field("Country (2 letters)", "address.country", { value: a.country || "", maxlength: 2, autocomplete: "country" }));
  const done = await formDialog("Shipping address", body, {
    onSubmit: (form) => {
      const address = {};
      for (const k of ["line1", "line2", "city", "region", "postal_code", "country"]) {
        if (value(form, `address.${k}`)) address[k] = value(form, `address.${k}`);
      }
      return put(orderPath(order, "/address"), { address, expected_version: order.version });
    },
  });
  if (done) { toast("Address saved"); reload(); }
}

export function notes(order, ctx, reload) {
  const canChange = ctx.can("orders.change");
  const list = (order.notes || []).filter((n) => !n.deleted);
  const addForm = canChange ? h("form", { class: "note-add", onsubmit: (e) => addNote(e, order, reload) },
    field("New note", "text", { rows: 2, maxlength: 5000 }, "textarea"),
    h("p", { class: "problem", role: "alert", hidden: true }),
    h("button", { type: "submit" }, "Add note")) : null;
  return section("Notes", "order-notes",
    list.length ? h("ul", { class: "notes" }, list.map((n) => h("li", { dataset: { noteId: n.id } },
      h("p", { class: "note-text" }, n.text),
      h("p", { class: "muted" }, `${n.author.name} · ${when(n.created_at)}${n.updated_at !== n.created_at ? " (edited)" : ""}`),
      canChange ? h("div", { class: "row" },
        h("button", { type: "button", class: "link", onclick: () => editNote(order, n, reload) }, "Edit"),
        h("button", { type: "button", class: "link", onclick: () => deleteNote(order, n, reload) }, "Delete")) : null)))
      : h("p", { class: "muted" }, "No notes."),
    addForm);
}

async function addNote(e, order, reload) {
  e.preventDefault();
  const form = e.currentTarget;
  const text = value(form, "text");
  try {
    await post(orderPath(order, "/notes"), { text });
    reload();
  } catch (err) {
    showProblem(form, err);
    form.querySelector(".problem").hidden = false;
  }
}

async function editNote(order, note, reload) {
  const done = await formDialog("Edit note", field("Note", "text", { rows: 4, value: note.text, maxlength: 5000 }, "textarea"), {
    onSubmit: (form) => patch(orderPath(order, `/notes/${note.id}`), { text: value(form, "text") }),
  });
  if (done) reload();
}

async function deleteNote(order, note, reload) {
  if (!(await confirmAction(`Delete the note "${note.text.slice(0, 80)}"?`, "Delete note"))) return;
  try {
    await del(orderPath(order, `/notes/${note.id}`));
    reload();
  } catch (err) {
    toast(err.message, "error");
  }
}

export function printLinks(order, fulfillment) {
  const link = (href, text) => h("a", { class: "button secondary", href, target: "_blank", rel: "noopener" }, text);
  const slips = fulfillment ? fulfillment.shipments.filter((s) => s.status !== "canceled") : [];
  return section("Print", "order-print",
    h("div", { class: "row" },
      link(`${API}/orders/${order.id}/details.html`, "Order details"),
      link(`${API}/orders/${order.id}/invoice.html`, "Invoice"),
      ...slips.map((s) => link(`${API}/shipments/${s.id}/packing-slip.html`, `Packing slip ${s.number}`))));
}
