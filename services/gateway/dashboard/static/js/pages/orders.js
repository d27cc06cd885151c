// The orders page (issue #13, seeds 000, 002, 003): the order list as rows on a desktop and cards on a phone
// (one table, restyled by app.css), its filters, sort and search kept in the address (#/orders?stage=placed...)
// so a view can be bookmarked, saved for the team, or picked back; the next page by the list's cursor; live: a
// new order that matches the filters appears at the top, a payment turns its indicator (orange dotted circle ->
// green tick), a stage or fulfillment change refreshes its row; selection + bulk actions (approve, mark packed,
// packing slips as one PDF), each asked for first; the filtered list as CSV with a progress bar.
// Money is shown as the API sends it (exact decimal strings); the server checks every permission again.

import { api, get, post, put, del } from "../api.js";
import { h, mount, money, when, label, dialog, confirmAction, showProblem, toast } from "../ui.js";
import { onAlert } from "../live.js";
import { testOrderButton } from "./new-order.js";

const FILTERS = ["q", "stage", "payment_status", "fulfillment_status", "channel", "placed_from", "placed_to", "test",
  "sort", "direction"];
const PAYMENT_STATUSES = ["unpaid", "in_progress", "partially_paid", "paid", "partially_refunded", "refunded"];
const CHANNELS = ["whatsapp", "web", "manual", "marketplace", "chat", "pos", "test"];
const PAID = new Set(["paid", "partially_refunded"]);
const SORTS = [
  ["placed_at:desc", "Order date, newest first"],
  ["placed_at:asc", "Order date, oldest first"],
  ["paid_at:desc", "Payment completion, latest first"],
  ["paid_at:asc", "Payment completion, earliest first"],
];
const PAGE = 50;

let tables = null; // {stages: [...], fulfillment: [...]} read once from the API's own tables

async function loadTables() {
  if (tables) return tables;
  const [stages, ful] = await Promise.all([get("stages"), get("fulfillment/statuses")]);
  tables = {
    stages: stages.stages.map((s) => [s.stage, s.label]),
    fulfillment: ful.fulfillment_statuses.map((s) => [s.status, s.label]),
  };
  return tables;
}

// The current query from the address: only the list's own parameters, single values (the page's selects).
function queryFrom(params) {
  const q = {};
  for (const k of FILTERS) {
    const v = params.get(k);
    if (v !== null && v !== "") q[k] = v;
  }
  return q;
}

function listPath(q, cursor) {
  const s = new URLSearchParams({ ...q, limit: String(PAGE) });
  if (cursor) s.set("cursor", cursor);
  return `orders?${s}`;
}

function go(q) {
  const s = new URLSearchParams(q).toString();
  window.location.hash = `#/orders${s ? "?" + s : ""}`;
}

// A saved view stores the list's query as the API takes it (lists for stage, channel...): back to the page's form.
function fromView(query) {
  const q = {};
  for (const [k, v] of Object.entries(query || {})) {
    if (!FILTERS.includes(k)) continue;
    q[k] = Array.isArray(v) ? v.join(",") : String(v);
  }
  return q;
}

function toView(q) {
  const out = {};
  for (const [k, v] of Object.entries(q)) {
    if (["stage", "channel", "payment_status", "fulfillment_status"].includes(k)) out[k] = v.split(",");
    else if (k === "test") out[k] = v === "true";
    else out[k] = v;
  }
  return out;
}

function select(name, text, options, value, { any = "Any" } = {}) {
  const id = `f-${name}`;
  return h("div", { class: "field" },
    h("label", { for: id }, text),
    h("select", { id, name },
      any === null ? null : h("option", { value: "" }, any),
      options.map(([v, t]) => h("option", { value: v, selected: v === value }, t))));
}

function paymentIndicator(o) {
  const status = o.payment_status || "unpaid";
  const paid = PAID.has(status);
  return h("span", { class: `pay ${paid ? "paid" : "pending"}`, dataset: { status } },
    h("span", { class: "dot", "aria-hidden": "true" }),
    h("span", { class: "pay-text" }, paid ? "Paid" : label(status)));
}

export async function render(root, { params }, ctx) {
  const q = queryFrom(params);
  const t = await loadTables();
  const stageLabel = Object.fromEntries(t.stages);
  const fulLabel = Object.fromEntries(t.fulfillment);
  const selected = new Set();
  const shown = new Map(); // order id -> its row
  let cursor = null;

  // ---------------------------------------------------------------------------------------------- the list
  const tbody = h("tbody", {});
  const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => page(cursor) },
    "Show more orders");
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const selectAll = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select every order shown",
    onchange: () => {
      for (const [id, tr] of shown) {
        const box = tr.querySelector("input.pick");
        box.checked = selectAll.checked;
        if (selectAll.checked) selected.add(id); else selected.delete(id);
      }
      updateBulk();
    } });

  function row(o) {
    const pick = h("input", { type: "checkbox", class: "pick", "aria-label": `Select order ${o.display_number}`,
      checked: selected.has(o.id), onchange: (e) => {
        if (e.target.checked) selected.add(o.id); else selected.delete(o.id);
        updateBulk();
      } });
    const c = o.customer || {};
    return h("tr", { dataset: { id: o.id, number: String(o.number) }, class: o.test ? "test-order" : "" },
      h("td", { class: "pick-cell" }, pick),
      h("td", { class: "number", "data-label": "Order" },
        h("a", { href: `#/orders/${o.number}` }, o.display_number), o.test ? h("span", { class: "badge test" }, "Test") : null),
      h("td", { "data-label": "Placed" }, h("time", { datetime: o.placed_at }, when(o.placed_at))),
      h("td", { class: "customer", "data-label": "Customer" }, c.name || "",
        c.phone ? h("span", { class: "muted sub" }, c.phone) : null),
      h("td", { class: "hide-sm", "data-label": "Channel" }, label(o.channel)),
      h("td", { class: "num", "data-label": "Items" }, String(o.item_count)),
      h("td", { class: "num total", "data-label": "Total" }, money(o.totals.total, o.currency)),
      h("td", { "data-label": "Stage" }, h("span", { class: `badge stage-${o.stage}` }, stageLabel[o.stage] || label(o.stage))),
      h("td", { class: "payment", "data-label": "Payment" }, paymentIndicator(o)),
      h("td", { class: "fulfillment", "data-label": "Fulfillment" }, fulLabel[o.fulfillment_status] || label(o.fulfillment_status)));
  }

  function show(o, { top = false, fresh = false } = {}) {
    const tr = row(o);
    if (fresh) tr.classList.add("fresh");
    const old = shown.get(o.id);
    if (old) old.replaceWith(tr);
    else if (top) tbody.prepend(tr);
    else tbody.append(tr);
    shown.set(o.id, tr);
  }

  async function page(after) {
    more.disabled = true;
    try {
      const res = await get(listPath(q, after));
      if (!after) { tbody.replaceChildren(); shown.clear(); }
      res.items.forEach((o) => show(o));
      cursor = res.next_cursor;
      more.hidden = !cursor;
      status.textContent = shown.size ? `${shown.size} order${shown.size === 1 ? "" : "s"} shown${cursor ? ", more below" : ""}`
        : "No orders match these filters.";
    } catch (e) {
      showProblem(filters, e);
    } finally {
      more.disabled = false;
    }
  }

  // --------------------------------------------------------------------------------------------- filters
  const sortValue = `${q.sort || "placed_at"}:${q.direction || "desc"}`;
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter orders",
    onsubmit: (e) => { e.preventDefault(); apply(); } },
    h("div", { class: "field grow" },
      h("label", { for: "f-q" }, "Search"),
      h("input", { id: "f-q", name: "q", type: "search", value: q.q || "",
        placeholder: "Number, customer, phone, e-mail or SKU" })),
    select("stage", "Stage", t.stages, q.stage),
    select("payment_status", "Payment", PAYMENT_STATUSES.map((s) => [s, label(s)]), q.payment_status),
    select("fulfillment_status", "Fulfillment", t.fulfillment, q.fulfillment_status),
    select("channel", "Channel", CHANNELS.map((c) => [c, label(c)]), q.channel),
    h("div", { class: "field" }, h("label", { for: "f-placed_from" }, "Placed from"),
      h("input", { id: "f-placed_from", name: "placed_from", type: "date", value: q.placed_from || "" })),
    h("div", { class: "field" }, h("label", { for: "f-placed_to" }, "Placed to"),
      h("input", { id: "f-placed_to", name: "placed_to", type: "date", value: q.placed_to || "" })),
    select("test", "Orders", [["false", "Real only"], ["true", "Test only"]], q.test, { any: "Real and test" }),
    select("sort", "Sort by", SORTS, sortValue, { any: null }),
    h("button", { type: "submit" }, "Apply"),
    h("p", { class: "problem", role: "alert", hidden: true }));
  filters.addEventListener("change", (e) => { if (e.target.name !== "q") apply(); });

  function apply() {
    const data = new FormData(filters);
    const next = {};
    for (const [k, v] of data.entries()) {
      if (k === "sort") {
        const [sort, direction] = String(v).split(":");
        if (sort !== "placed_at") next.sort = sort;
        if (direction !== "desc") next.direction = direction;
      } else if (v !== "") next[k] = String(v);
    }
    go(next);
  }

  // ------------------------------------------------------------------------------------------ saved views
  const viewPick = h("select", { id: "saved-view", name: "view" }, h("option", { value: "" }, "Choose a view…"));
  let views = [];
  async function loadViews() {
    try {
      views = (await get("views")).items;
    } catch { views = []; }
    viewPick.replaceChildren(h("option", { value: "" }, "Choose a view…"),
      ...views.map((v) => h("option", { value: v.id }, v.name)));
  }
  viewPick.addEventListener("change", () => {
    const v = views.find((x) => x.id === viewPick.value);
    if (v) go(fromView(v.query));
  });
  async function saveView() {
    const got = await dialog("Save this view for the team",
      h("div", {}, h("label", { for: "view-name" }, "Name"),
        h("input", { id: "view-name", name: "name", required: true, maxlength: 80, autocomplete: "off" })),
      { submit: "Save view" });
    if (!got) return;
    const attempt = async () => {
      const name = String(new FormData(got.form).get("name") || "");
      const same = views.find((v) => v.name.toLowerCase() === name.trim().toLowerCase());
      try {
        if (same) await put(`views/${same.id}`, { name, query: toView(q) });
        else await post("views", { name, query: toView(q) });
        got.close();
        toast(`View “${name.trim()}” saved`);
        await loadViews();
        const mine = views.find((v) => v.name.toLowerCase() === name.trim().toLowerCase());
        if (mine) viewPick.value = mine.id;
      } catch (e) {
        showProblem(got.form, e); // the problem's own words, next to the name; submitting again retries
      }
    };
    got.form.addEventListener("submit", attempt);
    await attempt();
  }
  async function deleteView() {
    const v = views.find((x) => x.id === viewPick.value);
    if (!v) { toast("Choose a view to delete first."); return; }
    if (!(await confirmAction(`Delete the view “${v.name}” for everyone?`, "Delete view"))) return;
    try { await del(`views/${v.id}`); toast(`View “${v.name}” deleted`); await loadViews(); }
    catch (e) { toast(e.message, "error"); }
  }
  const viewsBar = h("div", { class: "views row" },
    h("label", { for: "saved-view" }, "Saved views"), viewPick,
    ctx.can("views.manage") ? h("button", { type: "button", class: "secondary", onclick: saveView }, "Save view") : null,
    ctx.can("views.manage") ? h("button", { type: "button", class: "secondary", onclick: deleteView }, "Delete view") : null);

  // ----------------------------------------------------------------------------------------- bulk actions
  const count = h("span", { class: "bulk-count" }, "");
  const bulkButtons = [];
  if (ctx.can("orders.change")) bulkButtons.push(h("button", { type: "button", onclick: () => bulk("approve") }, "Approve"));
  if (ctx.can("fulfillment.fulfil")) {
    bulkButtons.push(h("button", { type: "button", onclick: () => bulk("pack") }, "Mark packed"));
    bulkButtons.push(h("button", { type: "button", class: "secondary", onclick: slips }, "Packing slips (PDF)"));
  }
  const bulkBar = h("div", { class: "bulk row", role: "region", "aria-label": "Selected orders", hidden: true },
    count, bulkButtons, h("button", { type: "button", class: "link", onclick: clearSelection }, "Clear selection"));

  function updateBulk() {
    bulkBar.hidden = selected.size === 0;
    count.textContent = `${selected.size} selected`;
  }
  function clearSelection() {
    selected.clear();
    tbody.querySelectorAll("input.pick").forEach((b) => { b.checked = false; });
    selectAll.checked = false;
    updateBulk();
  }
  function numbersOf(ids) {
    return ids.map((id) => shown.get(id)).filter(Boolean).map((tr) => `#${tr.dataset.number}`);
  }

  async function bulk(action) {
    const ids = [...selected];
    const numbers = numbersOf(ids);
    const what = action === "approve" ? "Approve" : "Mark as packed";
    if (!(await confirmAction(`${what} ${ids.length} order${ids.length === 1 ? "" : "s"}: ${numbers.join(", ")}?`,
      action === "approve" ? "Approve orders" : "Mark packed"))) return;
    const failed = [];
    for (const id of ids) {
      try {
        if (action === "approve") {
          show(await post(`orders/${id}/transitions`, { to: "approved" }));
        } else {
          await post(`orders/${id}/fulfillment/pack`);
          refresh(id);
        }
      } catch (e) {
        failed.push(`${numbersOf([id])[0] || id}: ${e.message}`);
      }
    }
    const done = ids.length - failed.length;
    toast(`${what}: ${done} of ${ids.length} done${failed.length ? ". Not done: " + failed.join("; ") : ""}`,
      failed.length ? "error" : "info");
    clearSelection();
  }

  async function slips() {
    const ids = [...selected];
    try {
      const res = await api("POST", "documents/packing-slips.pdf", { orders: ids }, { raw: true });
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: `packing-slips-${ids.length}.pdf`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (e) {
      toast(e.message, "error");
    }
  }

  // -------------------------------------------------------------------------------------------- CSV export
  const progress = h("progress", { id: "export-progress", max: 1, value: 0, hidden: true, "aria-label": "Export progress" });
  const progressText = h("span", { class: "muted", role: "status", "aria-live": "polite" });
  const exportButton = h("button", { type: "button", class: "secondary", onclick: exportCsv }, "Export CSV");

  async function exportCsv() {
    exportButton.disabled = true;
    progress.hidden = false;
    progress.removeAttribute("value"); // indeterminate until the count is known
    progressText.textContent = "Preparing the export…";
    try {
      const s = new URLSearchParams(q);
      const res = await api("GET", `orders/export.csv?${s}`, undefined, { raw: true, headers: { Accept: "text/csv" } });
      const total = Number(res.headers.get("X-Total-Count") || "0");
      const reader = res.body.getReader();
      const chunks = [];
      let rows = -1; // the header row
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        for (const b of value) if (b === 10) rows += 1;
        if (total > 0) {
          progress.max = total;
          progress.value = Math.min(rows, total);
          progressText.textContent = `Exporting ${Math.min(rows, total)} of ${total} orders…`;
        }
      }
      const blob = new Blob(chunks, { type: "text/csv" });
      const name = (res.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
      const url = URL.createObjectURL(blob);
      const a = h("a", { href: url, download: name ? name[1] : "orders.csv", hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      progressText.textContent = `Exported ${Math.max(rows, 0)} orders.`;
    } catch (e) {
      progressText.textContent = "";
      toast(e.message, "error");
    } finally {
      progress.hidden = true;
      exportButton.disabled = false;
    }
  }

  // ----------------------------------------------------------------------------------------------- live
  // Orders learns of payments and shipments by events, like notifications does: the alert may come first, so
  // an order read too early is read again a few times until it shows the change.
  async function refresh(id, changed = () => true) {
    for (const wait of [0, 300, 800, 1500, 3000]) {
      if (wait) await new Promise((r) => setTimeout(r, wait));
      if (!shown.has(id)) return;
      let o;
      try { o = await get(`orders/${id}`); } catch { return; }
      show(o);
      if (changed(o)) return;
    }
  }

  async function newOrder(alert) {
    if (!alert.order_id || shown.has(alert.order_id)) return;
    const newestFirst = (q.sort || "placed_at") === "placed_at" && (q.direction || "desc") === "desc";
    if (!newestFirst) return; // it belongs somewhere else in this order: the next load shows it
    // Does it match the filters? Ask the list itself (first page of the same query).
    for (const wait of [0, 500, 1500]) {
      if (wait) await new Promise((r) => setTimeout(r, wait));
      let res;
      try { res = await get(listPath(q, null)); } catch { return; }
      const o = res.items.find((x) => x.id === alert.order_id);
      if (o) { show(o, { top: true, fresh: true }); status.textContent = `New order ${o.display_number}`; return; }
    }
  }

  const off = onAlert((a) => {
    if (a.kind === "new_order") newOrder(a);
    else if (a.order_id && shown.has(a.order_id)) {
      const before = shown.get(a.order_id).querySelector(".pay").dataset.status;
      if (a.kind === "payment_update") refresh(a.order_id, (o) => (o.payment_status || "unpaid") !== before);
      else refresh(a.order_id);
    }
  });

  // ----------------------------------------------------------------------------------------------- layout
  const table = h("table", { class: "orders-table" },
    h("caption", { class: "visually-hidden" }, "Orders"),
    h("thead", {}, h("tr", {},
      h("th", { class: "pick-cell" }, selectAll),
      h("th", { scope: "col" }, "Order"), h("th", { scope: "col" }, "Placed"), h("th", { scope: "col" }, "Customer"),
      h("th", { scope: "col", class: "hide-sm" }, "Channel"), h("th", { scope: "col", class: "num" }, "Items"),
      h("th", { scope: "col", class: "num" }, "Total"), h("th", { scope: "col" }, "Stage"),
      h("th", { scope: "col" }, "Payment"), h("th", { scope: "col" }, "Fulfillment"))),
    tbody);

  mount(root,
    h("div", { class: "orders-head row" }, h("h1", {}, "Orders"), h("span", { class: "spacer" }),
      testOrderButton(ctx), exportButton, progress, progressText),
    viewsBar, filters, bulkBar, status,
    h("div", { class: "orders-list" }, table),
    h("div", { class: "actions" }, more));

  await Promise.all([page(null), loadViews()]);
  return () => off();
}
