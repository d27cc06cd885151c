"""Scale-out is real: ``oms run -p orders=2,payments=2`` runs two processes of each, and card orders placed, paid
and confirmed concurrently through them have no duplicate effect and keep per-order order.

Every event is read back from the bus by a plain pika consumer bound before the first order. Checked per order:
confirmed once; each source's events (distinct ids: the bus is at-least-once) carry sequences 1, 2, 3 … in the
order they arrived; the history has no entry twice; the ledger has one capture. Nothing is dead-lettered, and
every one of the four processes did part of the work (its own metrics port, from ``oms run``'s run file).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import free_port, until
from tests.e2e.test_oms_run_restarts import _end, _oms_run, own_system  # noqa: F401 - own_system is a fixture

pytestmark = pytest.mark.e2e

ORDERS = 60
CARD_SUCCESS = "4242424242424242"


def _free_port_run(length: int) -> int:
    """A port p with p … p+length-1 all free (the metrics ports of the run's Nameko processes)."""
    import socket

    for _ in range(50):
        base = free_port()
        try:
            for port in range(base, base + length):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise AssertionError("no run of free ports")


def _order(i: int) -> dict[str, Any]:
    return {
        "channel": "web", "currency": "EUR", "payment_method": "card",
        "customer": {"name": f"Scale Client {i}", "email": f"scale{i}@example.com"},
        "shipping_address": {"line1": f"{i} Main Street", "city": "Berlin", "country": "DE"},
        "items": [{"sku": f"SKU-{i % 7}", "name": "Thing", "quantity": 1 + i % 3, "unit_price": "12.50"}],
    }


def _place_and_pay(api: httpx.Client, sandbox: str, i: int) -> str:
    placed = api.post("/orders", json=_order(i))
    assert placed.status_code == 201, placed.text
    oid = placed.json()["id"]
    assert api.put(f"/orders/{oid}/customer-note", json={"skip": True}).status_code == 200
    link = until(lambda: (r := api.post(f"/orders/{oid}/payments/link")).status_code == 200 and r,
                 "the payment link (payments has seen the order)", timeout=30)
    paid = httpx.post(f"{sandbox}/v1/payment_links/{link.json()['link_id']}/pay", json={"card_number": CARD_SUCCESS},
                      headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=30)
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
    return str(oid)


def test_two_processes_of_orders_and_payments_confirm_every_order_once_in_order(own_system: dict[str, str]) -> None:  # noqa: F811
    import pika

    env = {**own_system, "OMS_METRICS_PORT": str(_free_port_run(4))}
    conn = pika.BlockingConnection(pika.URLParameters(env["OMS_AMQP_URL"]))
    ch = conn.channel()
    ch.exchange_declare("oms.events", "topic", durable=True)
    tap = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(tap, "oms.events", routing_key="#")

    proc, out = _oms_run(env, "-p", "orders=2,payments=2")
    try:
        out.wait_for("OMS is running", timeout=120)
        state = Path(env["OMS_STATE_DIR"])
        run = json.loads((state / "processes.json").read_text())["processes"]
        scaled = {p["name"]: p for p in run if p["service"] in ("orders", "payments")}
        assert sorted(scaled) == ["orders", "orders#2", "payments", "payments#2"]
        assert len({p["metrics_port"] for p in scaled.values()}) == 4

        base = f"http://127.0.0.1:{env['OMS_HTTP_PORT']}/api/v1"
        key = (state / "dev-api-key").read_text().strip()
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30,
                           limits=httpx.Limits(max_connections=16))
        with ThreadPoolExecutor(8) as pool:
            order_ids = set(pool.map(lambda i: _place_and_pay(api, env["OMS_SANDBOX_PROVIDER_URL"], i), range(ORDERS)))
        assert len(order_ids) == ORDERS

        events: list[dict[str, Any]] = []

        def all_confirmed() -> bool:
            while (got := ch.basic_get(tap, auto_ack=True))[0] is not None:
                events.append(json.loads(got[2]))
            confirmed = {e["subject"] for e in events
                         if e["type"] == "order.stage_changed.v1" and e["data"].get("to_stage") == "confirmed"}
            return order_ids <= confirmed

        until(all_confirmed, f"{ORDERS} confirmations on the bus", timeout=120)
        time.sleep(1)
        all_confirmed()  # and whatever came right after

        distinct: dict[str, dict[str, Any]] = {}
        for e in events:
            distinct.setdefault(e["id"], e)  # at-least-once: a redelivered copy has the same id
        streams: dict[tuple[str, str], list[int]] = defaultdict(list)
        confirmations: Counter[str] = Counter()
        for e in (e for e in events if distinct.pop(e["id"], None) is not None):  # first copy, arrival order
            streams[(e["source"], e["subject"])].append(e["sequence"])
            if e["type"] == "order.stage_changed.v1" and e["data"].get("to_stage") == "confirmed":
                confirmations[e["subject"]] += 1
        assert all(confirmations[oid] == 1 for oid in order_ids), confirmations
        for (source, subject), sequences in streams.items():
            if subject in order_ids:
                assert sequences == list(range(1, len(sequences) + 1)), (source, subject, sequences)

        for oid in order_ids:
            order = api.get(f"/orders/{oid}").json()
            assert order["stage"] == "confirmed"
            entries = Counter(json.dumps([h["action"], h["from_stage"], h["to_stage"], h["data"]], sort_keys=True)
                              for h in order["history"])
            assert max(entries.values()) == 1, order["history"]
            ledger = api.get(f"/orders/{oid}/payments").json()["ledger"]
            captures = [e for e in ledger if e["kind"] == "captured"]
            assert len(captures) == 1 and len({e["payment_id"] for e in captures}) == 1, ledger

        dead = ch.queue_declare("oms.dead-letters", passive=True).method.message_count
        assert dead == 0
        for name, p in scaled.items():
            metrics = httpx.get(f"http://127.0.0.1:{p['metrics_port']}/metrics", timeout=5).text
            handled = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                          if line.startswith("oms_events_handled_total{") and 'outcome="ok"' in line)
            assert handled > 0, f"{name} handled no event: the second process did no work"
    finally:
        conn.close()
        _end(proc, out)
