"""``SmtpSender``: the ``EmailSender`` port over SMTP (``smtplib``), one connection kept open for many messages.

Each new order sends two e-mails (the customer's, the store's): connecting, EHLO, STARTTLS, login and QUIT for
each would be most of the work. The connection is kept and checked with a NOOP before it is used again after
a pause (a server closes idle connections); after any failure it is dropped, and the next message connects
anew.

The mail is ``multipart/alternative`` (the text part first, then the HTML part when there is one), with the
``Message-ID`` the caller derived from the message's idempotency key: SMTP has no idempotency, so a resend after
a crash between the server's "250 OK" and the record of ``sent`` delivers a second copy under the SAME
Message-ID (mail clients show one).

The mail is built with the email package's compat32 classes and written once to bytes (``mail_bytes``), then
handed to ``sendmail``: the ``EmailMessage`` API's header registry, then ``send_message`` flattening the message
again with a generator, was a tenth of the notifications process's CPU while it drained (~4 ms per mail against
~1.1 ms, ``python bench/sender_round.py --mime 2000``). Headers and both parts are UTF-8 quoted-printable
(7-bit clean, ASCII readable), CR/LF in a header value become spaces (no header injection). An address that is
not ASCII (SMTPUTF8) still goes through ``build_message`` and ``send_message``, which know that extension.

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
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP as SMTP_POLICY
from email.policy import compat32
from email.utils import formataddr, formatdate, parseaddr
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


# Never written from ``Email.headers``: send_message used to drop these before sending (blind copies).
_DROPPED_HEADERS = frozenset({"bcc", "resent-bcc"})

# UTF-8 with quoted-printable for headers and bodies (the email package's default for UTF-8 is base64): ASCII
# stays readable in the raw mail and every line is 7-bit.
_UTF8 = Charset("utf-8")
_UTF8.header_encoding = QP
_UTF8.body_encoding = QP
_CRLF = compat32.clone(linesep="\r\n", max_line_length=78)


def _one_line(value: str) -> str:
    return value.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def _header(name: str, value: str) -> str | Header:
    """A header's value on one line (no header injection); text that is not ASCII as RFC 2047 encoded words."""
    value = _one_line(value)
    return value if value.isascii() else Header(value, _UTF8, maxlinelen=78, header_name=name)


def split_address(value: str) -> tuple[str, str]:
    """``Name <addr>`` -> (name, addr); the name may hold commas or quotes (a store's name often does)."""
    value = _one_line(value).strip()
    if value.endswith(">") and "<" in value:
        name, _, addr = value[:-1].rpartition("<")
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
        return name, addr.strip()
    return parseaddr(value)


def address_value(value: str) -> str:
    """An address header's value: ``Name <addr>`` with a quoted or encoded name, or the bare address."""
    if value.isascii() and not any(c in value for c in ' <>"(),;:\\\r\n'):
        return value  # a bare address, as recipients are: nothing to parse
    return formataddr(split_address(value), charset=_UTF8)


def _part(text: str, subtype: str) -> MIMEText:
    return MIMEText(text.replace("\r\n", "\n").replace("\r", "\n"), subtype, _UTF8)  # type: ignore[arg-type]


def mail_bytes(email: Email, sender: str, *, from_header: str | None = None) -> bytes:
    """The mail of ``email`` as sent (CRLF, 7-bit): text/plain alone, or multipart/alternative text + HTML.
    ``from_header``: the From value already formatted (the sender caches it).

    Built with the email package's compat32 classes and written once by its generator: the ``EmailMessage``
    API's header registry, then ``send_message`` flattening it again, cost ~4 ms of CPU per mail on the 2-core
    bench machine, these ~1.1 ms (``python bench/sender_round.py --mime 2000``)."""
    msg: MIMEText | MIMEMultipart
    if email.html is None:
        msg = _part(email.text, "plain")
    else:
        msg = MIMEMultipart("alternative")
        msg.attach(_part(email.text, "plain"))
        msg.attach(_part(email.html, "html"))
    msg["From"] = from_header if from_header is not None else address_value(sender)
    msg["To"] = address_value(email.to)
    msg["Subject"] = _header("Subject", email.subject)  # type: ignore[assignment]  # a Header is a value too
    msg["Message-ID"] = _one_line(message_id(email.message_id))
    msg["Date"] = formatdate(usegmt=True)
    for name, value in email.headers.items():
        if name.lower() not in _OWN_HEADERS and name.lower() not in _DROPPED_HEADERS:
            name = _one_line(name).replace(":", "")
            msg[name] = _header(name, value)  # type: ignore[assignment]
    return msg.as_bytes(policy=_CRLF)


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
        # the envelope sender as send_message took it from the From header, and that header, made once
        self._from_addr = split_address(sender)[1]
        self._from_header = address_value(sender)
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
        where = f"SMTP {self.host}:{self.port}"
        mid = message_id(email.message_id)
        try:
            try:
                if self._from_addr.isascii() and email.to.isascii():
                    raw = mail_bytes(email, self.sender, from_header=self._from_header)
                    refused = self._connection().sendmail(self._from_addr, [email.to], raw)
                else:  # SMTPUTF8: send_message knows the extension (and refuses when the server does not)
                    refused = self._connection().send_message(build_message(email, self.sender),
                                                              to_addrs=[email.to])
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
        return Sent(provider_message_id=mid)


if TYPE_CHECKING:  # mypy checks that SmtpSender implements the port

    def _implements_the_port(sender: SmtpSender) -> EmailSender:
        return sender
