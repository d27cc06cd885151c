// Settings > Stock: units on hand, reserved and available per SKU and location (GET /stock, a page at a time);
// search by SKU; set a count (a stock take) or adjust by a number of units, each with a reason; and a SKU's
// movement history (every change with its reason, who made it and the order it was for).

import { get, post, put } from "../../api.js";
import { h, mount, toast, when } from "../../ui.js";
import { field, formDialog, readOnlyNote } from "./common.js";

const PAGE = 100;

export async function render(section, ctx, title) {
  const canEdit = ctx.can("stock.manage");
  let items = [];
  let nextAfter = null;
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => load(false) }, "Show more");
  const history = h("section", { class: "settings-history", "aria-live": "polite" });
  const search = h("form", { class: "filters", role: "search" },
    field("Search SKU", { type: "search", name: "q", autocomplete: "off" }),
    h("button", { type: "submit", class: "secondary" }, "Find"),
    canEdit ? h("button", { type: "button", onclick: () => setStock(null) }, "Set stock of a SKU") : null);

  async function load(first) {
    const page = await get(`stock?limit=${PAGE}${!first && nextAfter ? `&after=${encodeURIComponent(nextAfter)}` : ""}`);
    items = first ? page.items : items.concat(page.items);
    nextAfter = page.next_after;
    more.hidden = !nextAfter;
    draw();
  }

  function matches() {
    const q = String(new FormData(search).get("q") || "").trim().toLowerCase();
    return q ? items.filter((i) => i.sku.toLowerCase().includes(q)) : items;
  }

  function draw() {
    const rows = matches();
    mount(tbody, rows.flatMap((item) => item.locations.map((loc, n) => h("tr", { dataset: { sku: item.sku, location: loc.location } },
      n === 0 ? h("th", { scope: "row", rowspan: item.locations.length }, item.sku) : null,
      h("td", {}, loc.location),
      h("td", { class: "num" }, loc.on_hand),
      h("td", { class: "num" }, loc.reserved),
      h("td", { class: "num" }, loc.available),
      h("td", {}, h("div", { class: "row" },
        canEdit ? h("button", { type: "button", class: "secondary", "aria-label": `Set ${item.sku} at ${loc.location}`,
          onclick: () => setStock(item, loc) }, "Set") : null,
        canEdit ? h("button", { type: "button", class: "secondary", "aria-label": `Adjust ${item.sku} at ${loc.location}`,
          onclick: () => adjust(item, loc) }, "Adjust") : null,
        n === 0 ? h("button", { type: "button", class: "secondary", "aria-label": `History of ${item.sku}`,
          onclick: () => showHistory(item.sku) }, "History") : null))))));
    if (!rows.length) mount(tbody, h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No stock recorded for this search.")));
  }

  search.addEventListener("input", draw);
  search.addEventListener("submit", async (e) => {
    e.preventDefault();
    const q = String(new FormData(search).get("q") || "").trim();
    if (!q || matches().length) return draw();
    const page = await get(`stock?sku=${encodeURIComponent(q)}`);  // not in the pages loaded: ask for that SKU
    for (const it of page.items) if (!items.some((i) => i.sku === it.sku)) items.push(it);
    draw();
  });

  function updated(item) {
    const i = items.findIndex((x) => x.sku === item.sku);
    if (i >= 0) items[i] = item; else items = [...items, item].sort((a, b) => (a.sku < b.sku ? -1 : 1));
    draw();
  }

  async function change(titleText, body, submit, send) {
    const item = await formDialog(titleText, body, submit, send);
    if (item) updated(item);
    return item;
  }

  async function setStock(item, loc) {
    const sku = item ? item.sku : null;
    const body = h("div", {},
      sku ? h("p", {}, `SKU ${sku}`) : field("SKU", { name: "sku", required: true, autocomplete: "off" }),
      field("Location", { name: "location", value: loc ? loc.location : "main", required: true }),
      field("Units on hand (counted)", { type: "number", name: "on_hand", min: 0, step: 1, inputmode: "numeric", required: true,
        value: loc ? loc.on_hand : "" }),
      field("Reason", { name: "reason", required: true, placeholder: "e.g. stock take" }));
    const item2 = await change(sku ? `Set stock of ${sku}` : "Set stock of a SKU", body, "Set stock", async (data) => {
      const target = sku || String(data.get("sku") || "").trim();
      if (!target) throw { problem: { title: "Which SKU?" }, errors: [{ field: "sku", reason: "enter the SKU" }] };
      return put(`stock/${encodeURIComponent(target)}`, {
        location: String(data.get("location") || "").trim(), on_hand: whole(data.get("on_hand")), reason: data.get("reason") });
    });
    if (item2) { toast(`Stock of ${item2.sku} set`); showHistory(item2.sku); }
  }

  async function adjust(item, loc) {
    const body = h("div", {},
      h("p", {}, `SKU ${item.sku} at ${loc.location}: ${loc.on_hand} on hand, ${loc.reserved} reserved`),
      field("Units to add (negative to remove)", { type: "number", name: "delta", step: 1, inputmode: "numeric", required: true }),
      field("Reason", { name: "reason", required: true, placeholder: "e.g. received, damaged" }));
    const item2 = await change(`Adjust stock of ${item.sku}`, body, "Adjust stock", (data) =>
      post(`stock/${encodeURIComponent(item.sku)}/adjustments`,
        { location: loc.location, delta: whole(data.get("delta")), reason: data.get("reason") }));
    if (item2) { toast(`Stock of ${item2.sku} adjusted`); showHistory(item2.sku); }
  }

  async function showHistory(sku) {
    const page = await get(`stock/${encodeURIComponent(sku)}/movements?limit=50`);
    mount(history,
      h("h3", { id: "movements-title", tabindex: "-1" }, `Movements of ${sku}`),
      h("div", { class: "settings-table" }, h("table", { "aria-labelledby": "movements-title" },
        h("thead", {}, h("tr", {}, ["When", "Location", "On hand", "Reserved", "After", "Reason", "By", "Order"]
          .map((c) => h("th", { scope: "col", class: ["On hand", "Reserved", "After"].includes(c) ? "num" : null }, c)))),
        h("tbody", {}, page.items.length ? page.items.map((m) => h("tr", {},
          h("td", {}, when(m.at)),
          h("td", {}, m.location),
          h("td", { class: "num" }, signed(m.delta_on_hand)),
          h("td", { class: "num" }, signed(m.delta_reserved)),
          h("td", { class: "num" }, `${m.on_hand_after} / ${m.reserved_after}`),
          h("td", {}, m.reason),
          h("td", {}, m.actor ? m.actor.name : ""),
          h("td", {}, m.order_number ? h("a", { href: `#/orders/${m.order_number}` }, `#${m.order_number}`) : "")))
          : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No movement yet."))))));
    history.querySelector("h3").focus();
  }

  mount(section, h("h2", { id: "settings-sub-title" }, title),
    canEdit ? null : readOnlyNote("the stock levels"),
    search,
    h("div", { class: "settings-table" }, h("table", {},
      h("caption", { class: "muted" }, "Units per SKU and location"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "SKU"), h("th", { scope: "col" }, "Location"),
        h("th", { scope: "col", class: "num" }, "On hand"), h("th", { scope: "col", class: "num" }, "Reserved"),
        h("th", { scope: "col", class: "num" }, "Available"), h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")))),
      tbody)),
    more, history);
  await load(true);
}

// A whole number as the API wants it (an int); anything else goes as typed so the API names the problem.
function whole(value) {
  const s = String(value ?? "").trim();
  return /^-?\d+$/.test(s) ? Number(s) : s;
}

function signed(n) {
  return n > 0 ? `+${n}` : String(n);
}
