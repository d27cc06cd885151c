// The live alert stream (GET /api/v1/alerts/stream, server-sent events): one EventSource for the whole page.
// Pages subscribe to alert kinds; the browser reconnects by itself and sends Last-Event-ID, so nothing is lost
// or repeated across a reconnect.

const listeners = new Set();
let source = null;

export function onAlert(fn) {
  listeners.add(fn);
  start();
  return () => listeners.delete(fn);
}

export function start() {
  if (source) return;
  source = new EventSource("/api/v1/alerts/stream");
  const deliver = (e) => {
    let alert;
    try { alert = JSON.parse(e.data); } catch { return; }
    for (const fn of listeners) fn(alert);
  };
  source.onmessage = deliver;
  for (const kind of ["new_order", "payment_update", "stage_change", "order_held", "out_of_stock",
    "delivery_failed", "message_failed", "label_void_failed", "message_status"]) {
    source.addEventListener(kind, deliver);
  }
  source.onerror = () => {
    document.body.dataset.live = "reconnecting";
    // An HTTP error (401 before sign-in, 503) closes an EventSource for good: open a new one after a pause.
    if (source && source.readyState === EventSource.CLOSED) {
      source = null;
      setTimeout(() => { if (listeners.size) start(); }, 2000);
    }
  };
  source.onopen = () => { document.body.dataset.live = "on"; };
}

export function stop() {
  if (source) source.close();
  source = null;
}
