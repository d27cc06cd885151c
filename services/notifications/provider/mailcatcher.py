"""The development mail catcher (``sandbox-mail``): an SMTP server (aiosmtpd) that accepts every mail, prints its
subject, and keeps the latest ones in memory for a tiny HTTP API:

* ``GET /messages?to=<address>`` -> JSON list, oldest first, of ``{from, to, subject, message_id, date, text,
  html, headers, received_at}`` (``to``: the envelope recipients; the filter matches any of them, case-insensitive).
* ``DELETE /messages`` forgets them all.

A mail is kept as received and read (parsed into those fields) the first time it is asked for: parsing it with
the email package's default policy cost ~8 ms of CPU per mail on the 2-core bench machine, as much as the
sender spent sending it, and most mails are never looked at. Receiving reads the headers only (the subject).

Run: ``python -m services.notifications.provider.mailcatcher`` (settings: ``MailCatcherSettings``: SMTP port
1025, HTTP port 8093). Development and tests only: it relays nothing and checks no one.
"""

from __future__ import annotations

import argparse
import email
import email.errors
import email.parser
import email.policy
import json
import logging
import signal
import threading
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("oms.mailcatcher")


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    content = part.get_content()
    return content.replace("\r\n", "\n") if isinstance(content, str) else None  # SMTP's CRLF -> newlines


def read_mail(mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> dict[str, Any]:
    """What the catcher keeps of one received mail."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return {
        "from": mail_from,
        "to": list(rcpt_tos),
        "header_from": str(message.get("From", "")),
        "header_to": str(message.get("To", "")),
        "subject": str(message.get("Subject", "")),
        "message_id": str(message.get("Message-ID", "")),
        "date": str(message.get("Date", "")),
        "content_type": message.get_content_type(),
        "text": _part(message, "plain"),
        "html": _part(message, "html"),
        "headers": {k: str(v) for k, v in message.items()},
        "received_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def subject_of(raw: bytes) -> str:
    """The decoded Subject, from the headers alone (for the log line; ~0.1 ms instead of a whole parse)."""
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    try:
        return str(make_header(decode_header(headers.get("Subject", ""))))
    except (UnicodeError, LookupError, email.errors.HeaderParseError):
        return str(headers.get("Subject", ""))


def unreadable(mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> dict[str, Any]:
    """What is kept of a mail the parser fails on: a catcher never refuses a mail."""
    return {"from": mail_from, "to": list(rcpt_tos), "subject": "", "message_id": "",
            "text": raw.decode("utf-8", "replace"), "html": None, "headers": {}}


class Mailbox:
    """The kept mails (the latest ``keep``), shared by the SMTP handler and the HTTP server. A mail is kept raw
    and parsed at its first listing (then kept parsed)."""

    def __init__(self, keep: int = 1000) -> None:
        self._mails: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add_raw(self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> None:
        received_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._lock:
            self._mails.append({"raw": (mail_from, list(rcpt_tos), raw, received_at), "to": list(rcpt_tos)})

    def list(self, to: str | None = None) -> list[dict[str, Any]]:
        wanted = to.strip().lower() if to else None
        with self._lock:
            chosen = [m for m in self._mails if wanted is None or wanted in (r.lower() for r in m["to"])]
            for m in chosen:
                if "raw" in m:
                    self._read(m)
            return [dict(m) for m in chosen]

    def count(self) -> int:
        with self._lock:
            return len(self._mails)

    @staticmethod
    def _read(kept: dict[str, Any]) -> None:
        mail_from, rcpt_tos, raw, received_at = kept.pop("raw")
        try:
            kept.update(read_mail(mail_from, rcpt_tos, raw), received_at=received_at)
        except Exception:  # noqa: BLE001 - keep what can be kept of a malformed mail
            log.exception("could not parse a mail from %s", mail_from)
            kept.update(unreadable(mail_from, rcpt_tos, raw), received_at=received_at)

    def clear(self) -> None:
        with self._lock:
            self._mails.clear()


class CatchingHandler:
    """aiosmtpd handler: accept everything, keep it."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd API)
        raw = envelope.original_content or (envelope.content if isinstance(envelope.content, bytes) else b"")
        self.mailbox.add_raw(envelope.mail_from or "", envelope.rcpt_tos, raw)
        try:
            subject = subject_of(raw)
        except Exception:  # noqa: BLE001 - the log line must not refuse a mail
            subject = "(unreadable headers)"
        log.info("mail to %s: %s", ", ".join(envelope.rcpt_tos), subject)
        return "250 Message accepted for delivery"


def http_server(mailbox: Mailbox, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _json(self, status: int, data: Any) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            url = urlsplit(self.path)
            if url.path == "/messages":
                to = parse_qs(url.query).get("to", [None])[0]
                self._json(200, mailbox.list(to))
            elif url.path == "/":
                self._json(200, {"name": "mail catcher", "messages": mailbox.count()})
            else:
                self._json(404, {"error": {"code": "not_found", "message": "GET /messages?to="}})

        def do_DELETE(self) -> None:  # noqa: N802 (http.server API)
            if urlsplit(self.path).path == "/messages":
                mailbox.clear()
                self._json(200, {"deleted": True})
            else:
                self._json(404, {"error": {"code": "not_found", "message": "DELETE /messages"}})

        def log_message(self, *args: Any) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: Sequence[str] | None = None) -> None:
    from services.notifications.provider.settings import get_mail_catcher_settings

    settings = get_mail_catcher_settings()
    parser = argparse.ArgumentParser(description="Development mail catcher (SMTP in, JSON out)")
    parser.add_argument("--host", default=settings.mail_catcher_host)
    parser.add_argument("--smtp-port", type=int, default=settings.mail_catcher_smtp_port)
    parser.add_argument("--http-port", type=int, default=settings.mail_catcher_http_port)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: 5 lines per mail; ours says which one
    mailbox = Mailbox(settings.mail_catcher_keep)
    controller = Controller(CatchingHandler(mailbox), hostname=args.host, port=args.smtp_port)
    controller.start()
    server = http_server(mailbox, args.host, args.http_port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    log.info("mail catcher: SMTP on %s:%s, mails at http://%s:%s/messages", args.host, args.smtp_port, args.host,
             args.http_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        controller.stop()


if __name__ == "__main__":
    main()
