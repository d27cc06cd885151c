"""The notifications sender draining queued e-mails, in-process: ``python bench/sender_round.py``.

Creates a database of its own (dropped after), migrates it, hands N ``order.placed`` events to the message
consumer (``usecases.handle_events``: 2 e-mails per order, the customer's and the store's), starts an SMTP sink
(aiosmtpd, its own process: its CPU is not counted) and runs ``send_due`` rounds over a real ``SmtpSender``
until every message is sent. Reports messages/s and, per message, this process's CPU (``time.process_time``),
the CPU of the database backend serving it (``/proc/<pid>/stat``, one pooled connection) and the statements it
ran (``execute`` calls; an ``executemany`` counts once: it is pipelined).

``--mime`` instead times building the mail alone: ``build_message`` (``EmailMessage`` + ``email.policy.SMTP``)
flattened as ``send_message`` does, the same mail with the compat32 classes (``MIMEMultipart``/``MIMEText``,
``email.header``) or ``EmailMessage(policy=compat32)``, and ``mail_bytes`` where the code has it.

``--code DIR`` runs another checkout's services (e.g. the main worktree for a before/after pair).
Needs the local Postgres (trust), as the tests do. No broker: ``migrate`` is told not to declare queues.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SINK = """
import signal, sys
from aiosmtpd.controller import Controller

class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
signal.sigwait([signal.SIGTERM, signal.SIGINT])
controller.stop()
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mime(n: int) -> None:
    from email import policy
    from email.contentmanager import raw_data_manager
    from email.generator import BytesGenerator
    from email.header import Header
    from email.message import EmailMessage
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    from email.utils import formatdate

    from services.notifications.channels import Email, smtp

    sender = "Atelier Lune <shop@atelier.example>"
    mail = Email(to="camille@example.com", subject="Votre commande n° 1001 est confirmée",
                 text="Bonjour Camille,\nmerci pour votre commande n° 1001.\n" * 12,
                 html="<p>Bonjour Camille,</p><p>merci pour votre commande <b>n° 1001</b>.</p>\n" * 12,
                 message_id="<3f2b6c1e-0c1a-5d8e-9f00-1234567890ab@oms>",
                 headers={"X-OMS-Message-Id": "3f2b6c1e-0c1a-5d8e-9f00-1234567890ab", "X-OMS-Kind": "order_placed"})
    crlf32 = policy.compat32.clone(linesep="\r\n")

    def as_send_message(msg: Any) -> bytes:  # what smtplib.send_message does before sendmail
        out = io.BytesIO()
        BytesGenerator(out).flatten(msg, linesep="\r\n")
        return out.getvalue()

    def compat_classes() -> bytes:
        msg = MIMEMultipart("alternative")
        msg["From"], msg["To"] = sender, mail.to
        msg["Subject"] = Header(mail.subject, "utf-8")
        msg["Message-ID"], msg["Date"] = mail.message_id, formatdate(usegmt=True)
        for k, v in mail.headers.items():
            msg[k] = v
        msg.attach(MIMEText(mail.text, "plain", "utf-8"))
        msg.attach(MIMEText(mail.html or "", "html", "utf-8"))
        return msg.as_bytes(policy=crlf32)

    def email_message_compat32() -> bytes:
        msg = EmailMessage(policy=policy.compat32)
        msg["From"], msg["To"] = sender, mail.to
        msg["Subject"] = Header(mail.subject, "utf-8")
        msg["Message-ID"], msg["Date"] = mail.message_id, formatdate(usegmt=True)
        for k, v in mail.headers.items():
            msg[k] = v
        msg.set_content(mail.text, subtype="plain", charset="utf-8", content_manager=raw_data_manager)
        msg.add_alternative(mail.html, subtype="html", charset="utf-8", content_manager=raw_data_manager)
        return msg.as_bytes(policy=crlf32)

    ways: dict[str, Any] = {
        "build_message (EmailMessage, policy SMTP) + send_message's flatten":
            lambda: as_send_message(smtp.build_message(mail, sender)),
        "  of which build_message alone": lambda: smtp.build_message(mail, sender),
        "compat32 classes (MIMEMultipart/MIMEText/Header) + as_bytes": compat_classes,
        "EmailMessage(policy=compat32) + as_bytes": email_message_compat32,
    }
    if hasattr(smtp, "mail_bytes"):
        ways["mail_bytes (what the sender sends)"] = lambda: smtp.mail_bytes(mail, sender)
    for name, way in ways.items():
        way()
        t = time.process_time()
        for _ in range(n):
            way()
        print(f"{name}: {(time.process_time() - t) / n * 1e6:,.0f} us CPU per mail")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=1000, help="orders placed: 2 e-mails each")
    ap.add_argument("--limit", type=int, default=20, help="messages per send_due round")
    ap.add_argument("--base", default="postgresql://postgres@127.0.0.1:5432")
    ap.add_argument("--db-prefix", default="oms_bench_sender_")
    ap.add_argument("--code", default=str(ROOT), help="the checkout whose services run")
    ap.add_argument("--mime", type=int, default=0, metavar="N", help="only time building N mails each way")
    args = ap.parse_args()
    sys.path.insert(0, args.code)
    if args.mime:
        mime(args.mime)
        return

    import psycopg

    name = f"{args.db_prefix}{uuid.uuid4().hex[:8]}"
    url = f"{args.base}/{name}"
    os.environ["OMS_DATABASE_URL"] = url
    from services import notifications
    from services.notifications import usecases
    from services.notifications.channels.smtp import SmtpSender
    from services.notifications.settings import NotificationSettings
    from shared.config import get_settings
    from shared.db import Database
    from shared.migrate import migrate
    from tests.builders import OrderStream, place_order

    print(f"code: {Path(notifications.__file__).parents[2]}")
    get_settings.cache_clear()
    migrate(get_settings(), declare_amqp=False)
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE)
    db = Database(url, "notifications", size=1)  # one connection: one backend to measure
    db.open()
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == b"ready"
        settings = NotificationSettings(store_email="shop@example.com", notify_claim_timeout=300)
        envs = [OrderStream.place(place_order(currency="TND", lines=[("TEE", 2, "19.900")],
                                              customer={"name": "Lina Ben Ali", "email": f"c{n}@example.com"}),
                                  number=100_000 + n).envelopes[0] for n in range(args.orders)]
        for i in range(0, len(envs), 100):
            usecases.handle_events(db, settings, "orders", envs[i:i + 100])
        with db.transaction() as tx:
            queued = tx.execute("SELECT count(*) AS n FROM messages WHERE status = 'queued'").fetchone()["n"]
            backend = tx.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        smtp = SmtpSender("127.0.0.1", port, sender="Atelier Lune <shop@example.com>", timeout=10)
        channels = usecases.Channels(smtp, None, None)  # type: ignore[arg-type]  # e-mail only

        calls = [0]
        orig_execute, orig_many = psycopg.Cursor.execute, psycopg.Cursor.executemany

        def execute(self: Any, *a: Any, **kw: Any) -> Any:
            calls[0] += 1
            return orig_execute(self, *a, **kw)

        def executemany(self: Any, *a: Any, **kw: Any) -> Any:
            calls[0] += 1
            return orig_many(self, *a, **kw)

        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
        rounds = 0
        pg0, cpu0, t0 = cpu_seconds(backend), time.process_time(), time.perf_counter()
        while usecases.send_due(db, channels, settings, limit=args.limit):
            rounds += 1
        wall, cpu, pg = time.perf_counter() - t0, time.process_time() - cpu0, cpu_seconds(backend) - pg0
        psycopg.Cursor.execute, psycopg.Cursor.executemany = orig_execute, orig_many  # type: ignore[method-assign]
        smtp.close()
        with db.transaction() as tx:
            by_status = {r["status"]: r["n"] for r in tx.execute(
                "SELECT status, count(*) AS n FROM messages GROUP BY 1").fetchall()}
            still = tx.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        print(f"messages {queued} in {rounds} rounds of {args.limit}: {queued / wall:,.0f} messages/s, "
              f"wall {wall:.2f} s; CPU per message: this process {cpu * 1e3 / queued:.2f} ms, "
              f"Postgres backend {pg * 1e3 / queued:.2f} ms{'' if still == backend else ' (backend changed!)'}; "
              f"statements per message {calls[0] / queued:.2f}")
        print("messages by status:", by_status)
    finally:
        db.close()
        sink.terminate()
        sink.wait(10)
        with psycopg.connect(f"{args.base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
