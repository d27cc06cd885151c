// New order by hand (#/orders/new, seed 004 "Create New Order Manually"): customer, channel, items (add and
// remove lines: SKU, name, quantity, unit price), currency, shipping address, payment method and a note. The
// form's input names are the API's field paths (customer.name, items[0].unit_price…), so the API's problems
// are shown next to the fields they name. Prices travel as the exact strings typed (never floats); the totals
// are the API's. On success the order page opens.
//
// "Place test order" (seed 003): one click places a realistic test order (POST /test-orders: channel test,
// test=true). `testOrderButton(ctx)` is exported so the orders page can offer it in its header too.

import { post } from "../api.js";
import { h, mount, showProblem, toast } from "../ui.js";

const CHANNELS = [["manual", "Manual (phone, in person)"], ["web", "Web shop"], ["whatsapp", "WhatsApp"], ["chat", "Chat"],
  ["marketplace", "Marketplace"], ["pos", "Point of sale"]];
const METHODS = [["", "Not chosen yet"], ["cash_on_delivery", "Cash on delivery"], ["bank_transfer", "Bank transfer"],
  ["pos_on_delivery", "POS on delivery"], ["card", "Card (send a payment link)"]];

let seq = 0;
function input(text, attrs, tag = "input") {
  seq += 1;
  const id = `no-${seq}`;
  const { options, value, ...rest } = attrs;
  let el;
  if (tag === "select") el = h("select", { id, ...rest }, options.map(([v, t]) => h("option", { value: v, selected: v === value }, t)));
  else if (tag === "textarea") el = h("textarea", { id, ...rest }, value || "");
  else { el = h("input", { id, ...rest }); if (value !== undefined) el.value = value; }
  return h("div", { class: "no-field" }, h("label", { for: id }, text), el);
}

// One click: a test order with sample data; then its page.
export async function placeTestOrder(button) {
  if (button) button.disabled = true;
  try {
    const order = await post("test-orders", {});
    toast(`Test order ${order.display_number || "#" + order.number} placed`);
    window.location.hash = `#/orders/${order.number}`;
    return order;
  } catch (err) {
    toast(`No test order: ${err.message}`, "error");
    return null;
  } finally {
    if (button) button.disabled = false;
  }
}

export function testOrderButton(ctx) {
  if (!ctx.can("orders.create")) return null;
  const b = h("button", { type: "button", class: "secondary", onclick: () => placeTestOrder(b) }, "Place test order");
  return b;
}

export async function render(root, _route, ctx) {
  if (!ctx.can("orders.create")) {
    mount(root, h("h1", {}, "New order"), h("p", { class: "problem" }, "Your role may not create orders."));
    return;
  }
  const lines = h("tbody", {});
  const form = h("form", { class: "no-form", novalidate: true, "aria-labelledby": "no-title" },
    h("p", { class: "problem", role: "alert", hidden: true }),
    h("fieldset", { class: "card" }, h("legend", {}, "Customer"),
      h("div", { class: "no-grid" },
        input("Name", { name: "customer.name", required: true, autocomplete: "off" }),
        input("Phone", { name: "customer.phone", type: "tel", autocomplete: "off" }),
        input("E-mail", { name: "customer.email", type: "email", autocomplete: "off" }))),
    h("fieldset", { class: "card" }, h("legend", {}, "Order"),
      h("div", { class: "no-grid" },
        input("Channel", { name: "channel", options: CHANNELS, value: "manual" }, "select"),
        input("Currency", { name: "currency", value: "EUR", maxlength: 3, autocapitalize: "characters", size: 4 }),
        input("Shipping charge", { name: "shipping", inputmode: "decimal", placeholder: "0.00" }),
        input("Payment method", { name: "payment_method", options: METHODS, value: "" }, "select"))),
    h("fieldset", { class: "card" }, h("legend", {}, "Items"),
      h("div", { class: "no-lines" }, h("table", {},
        h("thead", {}, h("tr", {}, ["SKU", "Name", "Quantity", "Unit price"].map((c) => h("th", { scope: "col" }, c)),
          h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Remove")))),
        lines)),
      h("button", { type: "button", class: "secondary", onclick: () => { addLine(); renumber(); lines.lastElementChild.querySelector("input").focus(); } }, "Add line")),
    h("fieldset", { class: "card" }, h("legend", {}, "Shipping address"),
      h("div", { class: "no-grid" },
        input("Address line 1", { name: "shipping_address.line1", autocomplete: "off" }),
        input("Address line 2", { name: "shipping_address.line2", autocomplete: "off" }),
        input("City", { name: "shipping_address.city", autocomplete: "off" }),
        input("Region", { name: "shipping_address.region", autocomplete: "off" }),
        input("Postal code", { name: "shipping_address.postal_code", autocomplete: "off" }),
        input("Country (2 letters)", { name: "shipping_address.country", maxlength: 2, size: 3, autocapitalize: "characters" }))),
    h("fieldset", { class: "card" }, h("legend", {}, "Note"),
      input("Customer's note", { name: "customer_note", rows: 3 }, "textarea")),
    h("div", { class: "actions" },
      h("a", { href: "#/orders", class: "button secondary" }, "Cancel"),
      h("button", { type: "submit" }, "Place order")));

  function addLine() {
    const tr = h("tr", { class: "no-line" },
      h("td", {}, h("input", { "aria-label": "SKU", dataset: { part: "sku" }, autocomplete: "off", size: 10 })),
      h("td", {}, h("input", { "aria-label": "Name", dataset: { part: "name" }, autocomplete: "off" })),
      h("td", {}, h("input", { "aria-label": "Quantity", dataset: { part: "quantity" }, inputmode: "numeric", value: "1", size: 4 })),
      h("td", {}, h("input", { "aria-label": "Unit price", dataset: { part: "unit_price" }, inputmode: "decimal", placeholder: "0.00", size: 8 })),
      h("td", {}, h("button", { type: "button", class: "secondary no-remove", onclick: () => { tr.remove(); renumber(); } }, "Remove")));
    lines.append(tr);
  }

  // Inputs are named items[<i>].<part> after their row's position, so a problem about items[1].quantity lands there.
  function renumber() {
    [...lines.children].forEach((tr, i) => {
      tr.querySelectorAll("input").forEach((el) => {
        el.name = `items[${i}].${el.dataset.part}`;
        el.setAttribute("aria-label", `${{ sku: "SKU", name: "Name", quantity: "Quantity", unit_price: "Unit price" }[el.dataset.part]} of line ${i + 1}`);
      });
      const rm = tr.querySelector(".no-remove");
      rm.setAttribute("aria-label", `Remove line ${i + 1}`);
      rm.disabled = lines.children.length === 1;
    });
  }

  function body() {
    const d = new FormData(form);
    const val = (k) => String(d.get(k) ?? "").trim();
    const opt = (k) => val(k) || undefined;
    const order = {
      channel: val("channel"),
      customer: { name: val("customer.name"), phone: opt("customer.phone"), email: opt("customer.email") },
      currency: val("currency").toUpperCase(),
      items: [...lines.children].map((_tr, i) => {
        const q = val(`items[${i}].quantity`);
        return { sku: val(`items[${i}].sku`), name: val(`items[${i}].name`),
          quantity: /^\d+$/.test(q) ? Number(q) : q,  // a whole number as the API wants it, else as typed (the API says why)
          unit_price: val(`items[${i}].unit_price`) };  // the exact decimal string: never a float
      }),
    };
    if (val("shipping")) order.shipping = val("shipping");
    if (val("payment_method")) order.payment_method = val("payment_method");
    if (val("customer_note")) order.customer_note = val("customer_note");
    const parts = ["line1", "line2", "city", "region", "postal_code", "country"];
    if (parts.some((p) => val(`shipping_address.${p}`))) {
      order.shipping_address = Object.fromEntries(parts.map((p) => [p, opt(`shipping_address.${p}`)]));
    }
    return order;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const order = await post("orders", body());
      toast(`Order ${order.display_number || "#" + order.number} placed`);
      window.location.hash = `#/orders/${order.number}`;
    } catch (err) {
      showProblem(form, err);
      const first = form.querySelector("[aria-invalid]") || form.querySelector(".problem:not([hidden])");
      if (first) first.focus();
    } finally {
      submit.disabled = false;
    }
  });

  addLine();
  renumber();
  const testButton = testOrderButton(ctx);
  mount(root,
    h("div", { class: "row no-head" }, h("h1", { id: "no-title" }, "New order"), h("span", { class: "spacer" }), testButton),
    h("p", { class: "muted" }, "Create an order by hand, or place a test order with sample data in one click."),
    form);
}
