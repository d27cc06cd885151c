// What was said and done: the messages sent about the order with their delivery status (turned live by the
// `message_status` alerts), and the one timeline across all services (who did what, and when).

import { h, when } from "../../ui.js";
import { section, words } from "./common.js";

const CHANNELS = { sms: "SMS", whatsapp: "WhatsApp", email: "E-mail" };

export function messages(list) {
  if (!list) return section("Messages", "order-messages", h("p", { class: "muted" }, "Messages are not available right now."));
  return section("Messages", "order-messages",
    list.items.length ? h("table", { class: "messages" },
      h("thead", {}, h("tr", {}, h("th", {}, "Message"), h("th", {}, "To"), h("th", {}, "Status"), h("th", { class: "hide-sm" }, "Updated"))),
      h("tbody", {}, list.items.map((m) => h("tr", { dataset: { message: m.id } },
        h("td", {}, `${words(m.kind)} · ${CHANNELS[m.channel] || m.channel}`, m.redirected ? h("span", { class: "muted" }, " (test recipient)") : null),
        h("td", {}, m.recipient),
        h("td", {}, h("span", { class: `badge msg-${m.status} message-status` }, words(m.status)),
          m.reason ? h("span", { class: "muted" }, ` ${m.reason}`) : null),
        h("td", { class: "hide-sm" }, when(m.updated_at))))))
      : h("p", { class: "muted" }, "No messages yet."));
}

export function timeline(data) {
  if (!data) return section("Timeline", "order-timeline", h("p", { class: "muted" }, "The timeline is not available right now."));
  const entries = [...data.entries].reverse(); // newest first
  return section("Timeline", "order-timeline",
    entries.length ? h("ol", { class: "timeline", reversed: true }, entries.map((e) => h("li", { dataset: { kind: e.kind } },
      h("time", { datetime: e.at }, when(e.at)), " ",
      h("span", {}, e.summary),
      e.actor && e.actor.name ? h("span", { class: "muted" }, ` — ${e.actor.name}`) : null)))
      : h("p", { class: "muted" }, "Nothing has happened yet."));
}
