"""Return Order: units that came back after delivery, by line and quantity; ``restock`` per line puts them
back on hand. Only units delivered and not yet returned may come back (a cancelled or failed shipment's
units never reached the customer). ``fulfillment.return_recorded`` tells payments (refund preview) and
orders (the returned stage, once the status is ``returned``)."""

from __future__ import annotations

import uuid
from typing import Any

from services.fulfillment import domain, store
from services.fulfillment.contracts import events as ev
from services.fulfillment.contracts.schemas import ReturnCommand
from services.fulfillment.usecases import views
from services.fulfillment.usecases.common import actor_of, base, emit, move_stock, now, refresh_status, refuse
from shared.db import Database
from shared.errors import parse


def record_return(db: Database, order_id: str, command: Any, actor: Any) -> dict[str, Any]:
    cmd = parse(ReturnCommand, command, "return")
    who = actor_of(actor)
    return_id = str(uuid.uuid4())
    causation = f"return:{return_id}"
    with db.transaction() as tx:
        o = store.load(tx, order_id, for_update=True)
        try:
            lines = o.check_return([(ln.line, ln.quantity, ln.restock, ln.location) for ln in cmd.lines])
        except domain.Refused as exc:
            refuse(exc, order_id=o.order_id)
        r = domain.OrderReturn(id=return_id, lines=tuple(lines), reason=cmd.reason, actor=who.model_dump(), at=now())
        store.insert_return(tx, o.order_id, r)
        o.returns.append(r)
        for ln in sorted((ln for ln in lines if ln.restock), key=lambda ln: (ln.sku, ln.location)):
            move_stock(tx, ln.sku, ln.location, ln.quantity, 0, reason=f"returned from order #{o.number}", actor=who,
                       causation=causation, order=o, create=True)

        def quantities(restocked_only: bool) -> list[ev.LineQuantity]:
            totals: dict[tuple[str, str], int] = {}
            for ln in lines:
                if ln.restock or not restocked_only:
                    totals[(ln.line_id, ln.sku)] = totals.get((ln.line_id, ln.sku), 0) + ln.quantity
            return [ev.LineQuantity(line_id=lid, sku=sku, quantity=q) for (lid, sku), q in totals.items()]

        emit(tx, o, ev.ReturnRecorded(**base(o, who), return_id=uuid.UUID(return_id), lines=quantities(False),
                                      restocked=quantities(True), reason=cmd.reason), causation)
        refresh_status(tx, o, who, causation)
        return views.return_view(o, r).model_dump(mode="json")
