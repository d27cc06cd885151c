// Payments and refunds: the payment summary and ledger, recording money received by hand, and the refund
// dialog (units per line, shipping, an adjustment refund and a fee kept) whose amount is the API's own
// preview (POST .../refunds/preview) as the form changes: the page never computes money.

import { api, post } from "../../api.js";
import { confirmAction, h, money, showProblem, toast, when } from "../../ui.js";
import { checkbox, field, formDialog, idempotencyKey, isZero, orderPath, section, value, words } from "./common.js";

const MANUAL = new Set(["cash_on_delivery", "bank_transfer", "pos_on_delivery"]);

export function payments(order, summary, ctx, reload) {
  if (!summary) return section("Payments", "order-payments", h("p", { class: "muted" }, "Payments are not available right now."));
  const c = summary.currency;
  const refundable = !isZero(summary.net_paid);
  const canRefund = refundable && ctx.can("payments.refund");
  const canRecord = ctx.can("payments.record") && !isZero(summary.balance_due)
    && (!summary.payment_method || MANUAL.has(summary.payment_method)) && !["cancelled", "rejected", "archived"].includes(summary.stage);
  const rows = [["Status", words(summary.status)], ["Method", words(summary.payment_method || "not chosen")],
    ["Total", money(summary.total, c)], ["Paid", money(summary.net_paid, c)], ["Refunded", money(summary.refunded, c)],
    ["Balance due", money(summary.balance_due, c)]];
  if (!isZero(summary.overpaid)) rows.push(["Overpaid", money(summary.overpaid, c)]);
  if (!isZero(summary.authorized)) rows.push(["Authorized", money(summary.authorized, c)]);
  return section("Payments", "order-payments",
    h("dl", { class: "facts" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { fact: k } }, v)])),
    summary.ledger.length ? h("table", { class: "ledger" },
      h("caption", { class: "muted" }, "Money movements"),
      h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "What"), h("th", { class: "num" }, "Amount"))),
      h("tbody", {}, summary.ledger.map((e) => h("tr", {},
        h("td", {}, when(e.at)), h("td", {}, words(e.kind), e.manual_action_required ? " (pay out by hand)" : ""),
        h("td", { class: "num" }, money(e.amount, e.currency))))))
      : h("p", { class: "muted" }, "No money has moved yet."),
    h("div", { class: "row" },
      canRecord ? h("button", { type: "button", class: "secondary", onclick: () => recordPayment(order, summary, reload) },
        "Record payment") : null,
      canRefund ? h("button", { type: "button", class: "danger", onclick: () => refund(order, summary, reload) },
        "Refund") : null));
}

async function recordPayment(order, summary, reload) {
  const body = h("div", {},
    field(`Amount received (${summary.currency})`, "amount", { value: summary.balance_due, inputmode: "decimal", required: true }),
    field("Receipt reference (optional)", "reference", { maxlength: 200 }));
  const done = await formDialog("Record money received", body, {
    submit: "Record payment",
    onSubmit: async (form) => {
      const amount = value(form, "amount");
      if (!(await confirmAction(`Record ${money(amount, summary.currency)} received for order ${order.display_number}?`,
        "Record payment"))) return false;
      return api("POST", orderPath(order, "/payments/manual"),
        { amount, ...(value(form, "reference") ? { reference: value(form, "reference") } : {}) },
        { headers: { "Idempotency-Key": idempotencyKey() } });
    },
  });
  if (done) { toast("Payment recorded"); reload(); }
}

// The refund command the form describes (amounts as typed: exact decimal strings).
function refundCommand(form, order) {
  const cmd = {};
  if (value(form, "from_returns")) cmd.from_returns = true;
  else {
    const lines = {};
    for (const item of order.items) {
      const q = value(form, `lines.${item.sku}`);
      if (q && q !== "0") lines[item.sku] = /^\d+$/.test(q) ? Number(q) : q;
    }
    cmd.lines = lines;
  }
  for (const k of ["shipping", "adjustment_refund", "adjustment_fee"]) if (value(form, k)) cmd[k] = value(form, k);
  if (value(form, "reason")) cmd.reason = value(form, "reason");
  return cmd;
}

async function refund(order, summary, reload) {
  const c = summary.currency;
  const returned = (summary.returns || []).some((r) => r.returned_not_refunded > 0);
  const amountOut = h("output", { id: "refund-amount", class: "refund-amount", "aria-live": "polite" }, "…");
  const after = h("span", { class: "muted", id: "refund-status-after" });
  const body = h("div", {},
    h("fieldset", {}, h("legend", {}, "Items"),
      order.items.map((i) => field(`${i.name} (${i.sku}) — up to ${i.quantity}`, `lines.${i.sku}`,
        { type: "number", min: 0, max: i.quantity, step: 1, value: 0, inputmode: "numeric" }))),
    returned ? checkbox("Refund the returned units instead", "from_returns") : null,
    field(`Shipping (${c})`, "shipping", { inputmode: "decimal", placeholder: "0.00" }),
    field(`Adjustment refund (${c})`, "adjustment_refund", { inputmode: "decimal", placeholder: "0.00" }),
    field(`Adjustment fee kept (${c})`, "adjustment_fee", { inputmode: "decimal", placeholder: "0.00" }),
    field("Reason (optional)", "reason", { maxlength: 500 }),
    h("p", { class: "refund-preview" }, "Refund amount: ", h("strong", {}, amountOut), " ", after));
  let seq = 0;
  let timer = null;
  let lastPreview = null;
  const preview = (form) => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++seq;
      amountOut.textContent = "…";
      try {
        const got = await post(orderPath(order, "/refunds/preview"), refundCommand(form, order));
        if (mine !== seq) return;
        lastPreview = got;
        amountOut.textContent = money(got.total, got.currency);
        amountOut.dataset.amount = got.total;
        after.textContent = got.ok && got.status_after ? `(payment status after: ${words(got.status_after)})` : "";
        showProblem(form, { problem: { detail: got.ok ? "" : "This refund is not possible as it stands." }, errors: got.errors || [] });
        form.querySelector(".problem").hidden = got.ok;
      } catch (err) {
        if (mine !== seq) return;
        lastPreview = null;
        amountOut.textContent = "—";
        delete amountOut.dataset.amount;
        showProblem(form, err);
        form.querySelector(".problem").hidden = false;
      }
    }, 200);
  };
  const done = await formDialog(`Refund order ${order.display_number}`, body, {
    submit: "Refund", danger: true, onInput: preview,
    onSubmit: async (form) => {
      const cmd = refundCommand(form, order);
      const shown = lastPreview && lastPreview.ok ? money(lastPreview.total, lastPreview.currency) : "this amount";
      if (!(await confirmAction(`Refund ${shown} to the customer? Money sent back cannot be taken back.`, "Refund"))) return false;
      return api("POST", orderPath(order, "/refunds"), cmd, { headers: { "Idempotency-Key": idempotencyKey() } });
    },
  });
  clearTimeout(timer);
  if (done) {
    toast(`Refunded ${money(done.total, done.currency)}${done.manual ? " (pay it out by hand)" : ""}`);
    reload();
  }
}
