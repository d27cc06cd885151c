"""``oms events tail``: watch the domain events on the bus, exactly as an integrator would see them.

It deliberately uses pika (not the project's own py-amqp helpers): a plain AMQP client, a server-named
exclusive queue bound to the ``oms.events`` topic exchange, one line per CloudEvent. If this works, any
integrator's consumer written the same way works too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(help="Watch domain events (CloudEvents) on the message bus.", no_args_is_help=True)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXCHANGE = "oms.events"  # same as shared.amqp.EVENTS_EXCHANGE (not imported: keep this an integrator's view)


def binding_keys(patterns: Sequence[str] | None) -> list[str]:
    """Routing keys to bind from ``--type`` patterns.

    AMQP topic ``*`` matches exactly one word, so ``order.*`` would not match ``order.placed.v1``; the glob-ish
    trailing ``*`` a person types is therefore widened to ``#`` (zero or more words). Anything else is passed
    through as an AMQP topic pattern. No pattern = every event (``#``).
    """
    keys: list[str] = []
    for raw in patterns or ():
        for part in raw.split(","):
            p = part.strip()
            if not p:
                continue
            if p == "*":
                p = "#"
            elif p.endswith(".*"):
                p = p[:-1] + "#"
            if p not in keys:
                keys.append(p)
    return keys or ["#"]


def _short_time(value: Any) -> str:
    """``2024-05-01T12:34:56.789012+00:00`` -> ``12:34:56.789`` (the date is noise when watching live)."""
    if not isinstance(value, str) or "T" not in value:
        return str(value or "-")
    clock = value.split("T", 1)[1]
    for sep in ("+", "Z", "-"):
        clock = clock.split(sep, 1)[0]
    hms, _, frac = clock.partition(".")
    return f"{hms}.{(frac + '000')[:3]}" if frac else hms


def _clip(text: Any, width: int = 60) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1] + "…"


def summarize(event_type: str, data: Any) -> str:
    """A short human summary of an event's ``data``, e.g. ``#1001 placed → confirmed``."""
    if not isinstance(data, dict):
        return _clip(json.dumps(data, default=str)) if data is not None else ""
    prefix = f"#{data['number']}" if "number" in data else ""
    if data.get("test"):
        prefix += " [test]"
    kind = event_type.split(".")[1] if event_type.count(".") >= 2 else event_type
    body = ""
    if kind == "placed":
        items = data.get("items") or []
        total = (data.get("totals") or {}).get("total")
        customer = (data.get("customer") or {}).get("name")
        body = f"placed via {data.get('channel', '?')}: {len(items)} item(s)"
        if total is not None:
            body += f", {total} {data.get('currency', '')}".rstrip()
        if customer:
            body += f" ({_clip(customer, 30)})"
        if data.get("stage") and data.get("stage") != "placed":
            body += f" → {data['stage']}"
    elif kind == "stage_changed":
        body = f"{data.get('from_stage', '?')} → {data.get('to_stage', '?')}"
        if data.get("reason"):
            body += f" ({_clip(data['reason'], 40)})"
    elif kind == "address_set":
        addr = data.get("address") or {}
        body = f"address: {_clip(addr.get('city', '?'), 30)}, {addr.get('country', '?')}"
    elif kind == "payment_method_set":
        body = f"payment: {data.get('method', '?')}" + (" (paid)" if data.get("paid") else "")
    elif kind == "customer_note_set":
        body = "customer skipped the note" if data.get("skipped") else f"customer note: {_clip(data.get('note'), 40)!r}"
    elif kind == "customer_changed":
        body = f"customer: {_clip((data.get('customer') or {}).get('name', '?'), 40)}"
    elif kind in ("note_added", "note_edited"):
        body = f"{kind.replace('_', ' ')}: {_clip(data.get('text'), 40)!r}"
    elif kind == "note_deleted":
        body = "note deleted"
    else:
        scalars = [
            f"{k}={_clip(v, 24)}"
            for k, v in data.items()
            if k not in ("number", "test", "order_id", "actor", "at", "version") and isinstance(v, str | int | float)
        ]
        body = " ".join(scalars[:4])
    return f"{prefix} {body}".strip()


def format_line(event: dict[str, Any]) -> Text:
    event_type = str(event.get("type", "?"))
    line = Text()
    line.append(_short_time(event.get("time")), style="dim")
    line.append("  ")
    line.append(f"{event_type:<30}", style="bold cyan")
    line.append(" ")
    line.append(str(event.get("subject", "-")), style="magenta")
    line.append(f"  seq {event.get('sequence', '-')!s:<4} ", style="dim")
    line.append(summarize(event_type, event.get("data")))
    return line


@app.command()
def tail(
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            "-t",
            help="Event types to show (AMQP topic pattern; a trailing * matches the rest, e.g. 'order.*'). "
            "Repeatable. Default: all.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print each CloudEvent as raw JSON, one per line.")] = False,
    count: Annotated[int | None, typer.Option("--count", "-n", min=1, help="Exit after N events.")] = None,
) -> None:
    """Print events live from the bus (Ctrl-C to stop)."""
    import pika
    import pika.exceptions

    from shared.config import get_settings

    settings = get_settings()
    keys = binding_keys(types)
    params = pika.URLParameters(settings.amqp_url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    try:
        connection = pika.BlockingConnection(params)
    except pika.exceptions.AMQPError as exc:
        err_console.print(f"[red]cannot connect to RabbitMQ ({_safe_url(settings.amqp_url)}): {exc!r}[/]")
        raise typer.Exit(1) from None

    seen = 0
    try:
        channel = connection.channel()
        channel.exchange_declare(EXCHANGE, "topic", durable=True)
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        for key in keys:
            channel.queue_bind(queue, EXCHANGE, routing_key=key)
        err_console.print(f"listening on {EXCHANGE} for {', '.join(keys)} (Ctrl-C to stop)")

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            nonlocal seen
            seen += 1
            _print_event(method.routing_key, properties, body, as_json)
            if count is not None and seen >= count:
                ch.stop_consuming()

        channel.basic_consume(queue, on_message, auto_ack=True)
        channel.start_consuming()
    except KeyboardInterrupt:
        err_console.print(f"stopped after {seen} event(s).")
    except BrokenPipeError:  # `oms events tail | head`: the reader is gone, so is our reason to run
        pass
    except pika.exceptions.AMQPError as exc:
        err_console.print(f"[red]lost the connection to RabbitMQ: {exc!r}[/]")
        raise typer.Exit(1) from None
    finally:
        try:
            if connection.is_open:
                connection.close()
        except Exception:  # noqa: BLE001 - closing a broken connection: it is gone either way
            pass


def _print_event(routing_key: str, properties: Any, body: bytes, as_json: bool) -> None:
    try:
        event = json.loads(body)
        if not isinstance(event, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError):
        err_console.print(
            f"[yellow]{routing_key}: message {getattr(properties, 'message_id', None)} is not a CloudEvent "
            f"({len(body)} bytes)[/]"
        )
        return
    if as_json:
        sys.stdout.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    else:
        console.print(format_line(event), soft_wrap=True)


def _safe_url(url: str) -> str:
    """The URL without its password, for error messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
