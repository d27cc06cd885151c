"""``oms dlq list`` and ``oms dlq replay``: look at and recover dead-lettered events (queue ``oms.dead-letters``).

Both commands are careful never to lose a dead letter:

* ``list`` takes messages with ``basic.get`` *without* acknowledging them and gives every one back
  (``basic.reject`` with ``requeue``) once it has read them; if anything goes wrong in between, closing the
  connection gives them back as well. RabbitMQ puts requeued messages back at their original positions.
* ``replay`` republishes a dead letter to the queue it failed in (default exchange, routing key = header
  ``x-oms-queue``, ``mandatory`` so a missing queue is noticed) with ``x-oms-attempts`` reset to 0, waits for
  the broker's publisher confirm, and only then acknowledges (removes) the dead letter. A crash in between
  leaves the dead letter in place, so the worst case is a duplicate, which the consumers' inbox dedupes.
  Dead letters not selected are held unacknowledged during the scan (so the scan cannot see them twice) and
  requeued at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Inspect and replay dead-lettered events (queue oms.dead-letters).", no_args_is_help=True)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

ATTEMPTS_HEADER = "x-oms-attempts"  # same names as shared.consumer (not imported: it pulls in nameko)
ERROR_HEADER = "x-oms-error"
QUEUE_HEADER = "x-oms-queue"
REPLAYS_HEADER = "x-oms-replays"


@dataclass
class DeadLetter:
    index: int
    delivery_tag: int
    message_id: str | None
    type: str | None
    subject: str | None
    queue: str | None
    attempts: int | None
    error: str | None
    body: bytes
    properties: dict[str, Any]
    headers: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        try:
            body: Any = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            body = self.body.decode("utf-8", "replace")
        return {
            "index": self.index,
            "message_id": self.message_id,
            "type": self.type,
            "subject": self.subject,
            "queue": self.queue,
            "attempts": self.attempts,
            "error": self.error,
            "headers": self.headers,
            "body": body,
        }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _dead_letter(index: int, msg: Any) -> DeadLetter:
    props = dict(msg.properties or {})
    headers = dict(props.get("application_headers") or {})
    body = msg.body if isinstance(msg.body, bytes) else str(msg.body).encode()
    event: dict[str, Any] = {}
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            event = parsed
    except (ValueError, UnicodeDecodeError):
        pass
    attempts = headers.get(ATTEMPTS_HEADER)
    try:
        attempts = int(attempts) if attempts is not None else None
    except (TypeError, ValueError):
        attempts = None
    return DeadLetter(
        index=index,
        delivery_tag=msg.delivery_tag,
        message_id=_text(props.get("message_id")) or _text(event.get("id")),
        type=_text(props.get("type")) or _text(event.get("type")),
        subject=_text(headers.get("ce-subject")) or _text(event.get("subject")),
        queue=_text(headers.get(QUEUE_HEADER)),
        attempts=attempts,
        error=_text(headers.get(ERROR_HEADER)),
        body=body,
        properties=props,
        headers=headers,
    )


@contextmanager
def _dlq_channel() -> Iterator[tuple[Any, int]]:
    """A py-amqp channel on the broker of the settings and the number of ready dead letters.

    Closing the connection on the way out gives back every message still unacknowledged.
    """
    from shared.amqp import DEAD_LETTER_QUEUE, connect
    from shared.config import get_settings

    settings = get_settings()
    try:
        conn = connect(settings.amqp_url)
    except Exception as exc:  # noqa: BLE001 - socket, auth, vhost: all end the command the same way
        err_console.print(f"[red]cannot connect to RabbitMQ: {exc!r}[/]")
        raise typer.Exit(1) from None
    try:
        channel = conn.channel()
        ok = channel.queue_declare(DEAD_LETTER_QUEUE, durable=True, auto_delete=False)
        yield channel, int(ok.message_count)
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a broken connection is gone either way; the broker requeues
            conn.collect()


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many dead letters.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array (with headers and bodies).")] = False,
) -> None:
    """Show dead letters without removing them (they are read and given back)."""
    from shared.amqp import DEAD_LETTER_QUEUE

    letters: list[DeadLetter] = []
    with _dlq_channel() as (channel, ready):
        try:
            while len(letters) < min(limit, ready):
                msg = channel.basic_get(DEAD_LETTER_QUEUE, no_ack=False)
                if msg is None:
                    break
                letters.append(_dead_letter(len(letters) + 1, msg))
        finally:
            # Give them all back before printing (a slow terminal must not hold them). RabbitMQ puts a
            # requeued message back at its original position; if this fails, closing the connection does it.
            for d in letters:
                channel.basic_reject(d.delivery_tag, requeue=True)
    if as_json:
        print(json.dumps([d.as_json() for d in letters], ensure_ascii=False, default=str))
        return
    if not letters:
        console.print(f"{DEAD_LETTER_QUEUE} is empty.")
        return
    table = Table(title=DEAD_LETTER_QUEUE)
    for name in ("#", "message id", "type", "queue", "attempts"):
        table.add_column(name, overflow="fold")
    table.add_column("error", overflow="fold", ratio=1)
    for d in letters:
        table.add_row(
            str(d.index),
            d.message_id or "-",
            d.type or "-",
            d.queue or "-",
            "-" if d.attempts is None else str(d.attempts),
            d.error or "-",
        )
    console.print(table)
    more = f" (showing {len(letters)} of {ready})" if ready > len(letters) else ""
    console.print(f"{ready} dead letter(s){more}. Replay with: oms dlq replay --id MESSAGE_ID | --all")


@app.command()
def replay(
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="Replay the dead letter(s) with this message id. Repeatable.")
    ] = None,
    queues: Annotated[
        list[str] | None,
        typer.Option("--queue", help="Replay every dead letter that failed in this queue. Repeatable."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
) -> None:
    """Move dead letters back to the queue they failed in (attempts reset to 0); the others stay."""
    from shared.amqp import DEAD_LETTER_QUEUE, ConfirmedPublisher, OutgoingMessage
    from shared.config import get_settings

    wanted_ids = set(ids or [])
    wanted_queues = set(queues or [])
    if not (all_ or wanted_ids or wanted_queues):
        err_console.print("[red]say what to replay: --all, --id MESSAGE_ID or --queue QUEUE[/]")
        raise typer.Exit(2)

    def selected(d: DeadLetter) -> bool:
        return all_ or d.message_id in wanted_ids or d.queue in wanted_queues

    replayed: list[DeadLetter] = []
    failed: list[tuple[DeadLetter, str]] = []
    found_ids: set[str] = set()
    held: list[DeadLetter] = []
    publisher = ConfirmedPublisher(get_settings().amqp_url, confirm_timeout=10.0)
    with _dlq_channel() as (channel, ready):
        try:
            # Scan at most the messages that were there when we started: the ones we do not take are held
            # unacked, so basic.get never returns the same one twice and the loop ends.
            for index in range(1, ready + 1):
                msg = channel.basic_get(DEAD_LETTER_QUEUE, no_ack=False)
                if msg is None:
                    break
                d = _dead_letter(index, msg)
                if not selected(d):
                    held.append(d)
                    continue
                if d.message_id:
                    found_ids.add(d.message_id)
                reason = _republish(publisher, d, OutgoingMessage)
                if reason is not None:
                    failed.append((d, reason))
                    held.append(d)
                    continue
                channel.basic_ack(d.delivery_tag)  # only now: the copy is confirmed in its queue
                replayed.append(d)
        finally:
            publisher.close()
            for d in held:
                try:
                    channel.basic_reject(d.delivery_tag, requeue=True)
                except Exception:  # noqa: BLE001 - closing the connection requeues it anyway
                    break

    for d in replayed:
        console.print(f"replayed {d.message_id} ({d.type or '?'}) → {d.queue}")
    for d, reason in failed:
        err_console.print(f"[yellow]kept {d.message_id} in {DEAD_LETTER_QUEUE}: {reason}[/]")
    missing = sorted(wanted_ids - found_ids)
    for mid in missing:
        err_console.print(f"[yellow]no dead letter with message id {mid}[/]")
    left = ready - len(replayed)
    console.print(f"Replayed {len(replayed)} dead letter(s); {max(left, 0)} left in {DEAD_LETTER_QUEUE}.")
    if failed or missing:
        raise typer.Exit(1)


def _republish(publisher: Any, d: DeadLetter, outgoing: Any) -> str | None:
    """Publish ``d`` back to its queue and wait for the confirm; None on success, else why not."""
    if not d.queue:
        return f"it has no {QUEUE_HEADER} header (which queue would it go back to?)"
    headers = {k: v for k, v in d.headers.items() if k != ERROR_HEADER}
    headers[ATTEMPTS_HEADER] = 0
    try:
        headers[REPLAYS_HEADER] = int(d.headers.get(REPLAYS_HEADER, 0)) + 1
    except (TypeError, ValueError):
        headers[REPLAYS_HEADER] = 1
    props = {k: v for k, v in d.properties.items() if k != "application_headers"}
    props["application_headers"] = headers
    props.setdefault("delivery_mode", 2)
    publisher.returned.clear()
    try:
        publisher.publish([outgoing("", d.queue, d.body, props, mandatory=True)])
    except Exception as exc:  # noqa: BLE001 - nack, timeout, lost connection: keep the dead letter
        return f"republishing failed: {exc!r}"
    if publisher.returned:
        return f"queue {d.queue!r} does not exist (the broker returned the message)"
    return None
