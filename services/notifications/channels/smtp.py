"""``SmtpSender``: the ``EmailSender`` port over SMTP (``smtplib``), one connection kept open for many messages.

Each new order sends two e-mails (the customer's, the store's): connecting, EHLO, STARTTLS, login and QUIT for
each would be most of the work. The connection is kept and checked with a NOOP before it is used again after
a pause (a server closes idle connections); after any failure it is dropped, and the next message connects
anew.

The mail is ``multipart/alternative`` (the text part first, then the HTML part when there is one), with the
``Message-ID`` the caller derived from the message's idempotency key: SMTP has no idempotency, so a resend after
a crash between the server's "250 OK" and the record of ``sent`` delivers a second copy under the SAME
Message-ID (mail clients show one).

Failure taxonomy (``ChannelError``):

* ``retryable=True``: the server could not be reached or dropped the connection, timed out, answered a 4xx
  (greylisting, a full mailbox queue, "try again later"), or refused our credentials or STARTTLS (a
  configuration fault of ours, not the message's: once it is fixed the message goes out).
* ``retryable=False``: the server refused the message for good with a 5xx: the recipient does not exist
  (``recipient_refused``), the sender or the content was refused (``sender_refused``, ``message_refused``).
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate
from typing import TYPE_CHECKING

from services.notifications.channels import ChannelError, Email, EmailSender, Sent

# Headers the sender sets itself; the caller's ``Email.headers`` cannot replace them.
_OWN_HEADERS = frozenset({"from", "to", "subject", "message-id", "date", "mime-version", "content-type",
                          "content-transfer-encoding"})


def message_id(value: str) -> str:
    """``value`` as a Message-ID header value: ``<...>``; a bare ``key@domain`` gets the angle brackets."""
    value = value.strip()
    if not value:
        raise ValueError("an e-mail needs a Message-ID")
    return value if value.startswith("<") and value.endswith(">") else f"<{value}>"


def build_message(email: Email, sender: str) -> EmailMessage:
    """The MIME message of ``email``: text/plain alone, or multipart/alternative text + HTML."""
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender
    msg["To"] = email.to
    msg["Subject"] = email.subject
    msg["Message-ID"] = message_id(email.message_id)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    for name, value in email.headers.items():
        if name.lower() in _OWN_HEADERS:
            continue
        msg[name] = value
    msg.set_content(email.text, subtype="plain", charset="utf-8")
    if email.html is not None:
        msg.add_alternative(email.html, subtype="html", charset="utf-8")
    return msg


def _text(message: bytes | str) -> str:
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


def _refusal(code: int, message: bytes | str, what: str, permanent_code: str) -> ChannelError:
    reason = f"{what}: {code} {_text(message)}".strip()
    if 500 <= code < 600:
        return ChannelError(reason, code=permanent_code, retryable=False)
    return ChannelError(reason, code="smtp_deferred", retryable=True)


class SmtpSender:
    """``EmailSender`` over SMTP. ``starttls``: upgrade the connection before logging in (port 587); a
    ``username`` makes it log in (``password`` may be empty). ``timeout`` bounds connecting and each command.
    smtplib blocks; under eventlet (Nameko) the socket is cooperative."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        sender: str = "oms@localhost",
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username or None
        self.password = password or ""
        self.starttls = starttls
        self.sender = sender
        self.timeout = timeout
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0
        self._lock = threading.Lock()  # one message at a time on the one connection

    IDLE_CHECK_SECONDS = 5.0
    """A connection unused for longer is checked with a NOOP first (an idle connection may have been closed)."""

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None and time.monotonic() - self._last_used > self.IDLE_CHECK_SECONDS:
            try:
                code, _ = self._smtp.noop()
                if code != 250:
                    self.close()
            except (smtplib.SMTPException, OSError):
                self.close()
        if self._smtp is None:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            try:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password)
            except BaseException:
                smtp.close()
                raise
            self._smtp = smtp
        return self._smtp

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def send(self, email: Email) -> Sent:
        with self._lock:
            return self._send(email)

    def _send(self, email: Email) -> Sent:
        msg = build_message(email, self.sender)
        where = f"SMTP {self.host}:{self.port}"
        try:
            try:
                refused = self._connection().send_message(msg, to_addrs=[email.to])
            except BaseException:
                self.close()  # after a failure the session's state is unknown: the next message starts anew
                raise
            self._last_used = time.monotonic()
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b"recipient refused"))
            raise _refusal(code, text, f"{where} refused {email.to}", "recipient_refused") from exc
        except smtplib.SMTPSenderRefused as exc:
            raise _refusal(exc.smtp_code, exc.smtp_error, f"{where} refused the sender {exc.sender}",
                           "sender_refused") from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise ChannelError(f"{where}: login refused ({exc.smtp_code} {_text(exc.smtp_error)})",
                               code="smtp_auth_failed", retryable=True) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise ChannelError(f"{where}: {exc}", code="smtp_unsupported", retryable=True) from exc
        except smtplib.SMTPResponseException as exc:  # SMTPDataError, a refused HELO, ...
            raise _refusal(exc.smtp_code, exc.smtp_error, f"{where} refused the message",
                           "message_refused") from exc
        except (smtplib.SMTPException, OSError) as exc:  # timeouts and TLS errors are OSErrors
            # connection refused/reset/dropped, timeouts, a TLS handshake failure: the server was not there
            raise ChannelError(f"{where} unavailable: {type(exc).__name__}: {exc}", code="smtp_unavailable",
                               retryable=True) from exc
        if refused:  # only with several recipients; ours is one, refused above, but keep the port honest
            code, text = refused.get(email.to, next(iter(refused.values())))
            raise _refusal(code, text, f"{where} refused {email.to}", "recipient_refused")
        return Sent(provider_message_id=str(msg["Message-ID"]))


if TYPE_CHECKING:  # mypy checks that SmtpSender implements the port

    def _implements_the_port(sender: SmtpSender) -> EmailSender:
        return sender
