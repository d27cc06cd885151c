"""The channel adapters against the sandbox messaging provider and the mail catcher, each started as its own
process (``python -m``, configured only by its ``OMS_*`` settings), over real sockets, with a local receiver for
the providers' signed webhooks."""

from __future__ import annotations

import json
import os
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.notifications.channels import ChannelError, Email, Receipt
from services.notifications.channels.sms import HttpSms
from services.notifications.channels.smtp import SmtpSender
from services.notifications.channels.whatsapp import HttpWhatsApp
from services.notifications.contracts.sandbox import (
    SMS_SIGNATURE_HEADER,
    SMS_WEBHOOK_PATH,
    WHATSAPP_SIGNATURE_HEADER,
    WHATSAPP_WEBHOOK_PATH,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_SID = "ACtest"
AUTH_TOKEN = "test-sms-auth-token"
ACCESS_TOKEN = "test-whatsapp-access-token"
APP_SECRET = "test-whatsapp-app-secret"
PHONE_NUMBER_ID = "1000000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Delivery = tuple[str, dict[str, str], bytes]  # path, headers, body


class Receiver:
    """The gateway's webhook endpoints, standing in: records every delivery (path, headers, body), answers 204."""

    def __init__(self) -> None:
        self.received: list[Delivery] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._cond:
                    receiver.received.append((self.path, dict(self.headers.items()), body))
                    receiver._cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate: Callable[[list[Delivery]], bool], timeout: float = 15) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"webhooks not received in time: {[b for _, _, b in self.received]}")
                self._cond.wait(left)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    full_env.update(env)
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not start:\n{log.read_text()}") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def sandbox_url(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("messaging") / "sandbox-messaging.log"
    proc = start("services.notifications.provider.sandbox", {
        "OMS_SANDBOX_MESSAGING_PORT": str(port),
        # SMS callbacks go where each message's StatusCallback says; this one is for messages without it
        "OMS_SANDBOX_MESSAGING_SMS_WEBHOOK_URL": receiver.base + "/default-sms",
        "OMS_SANDBOX_MESSAGING_WHATSAPP_WEBHOOK_URL": receiver.base + WHATSAPP_WEBHOOK_PATH,
        "OMS_SANDBOX_MESSAGING_RECEIPT_DELAY": "0.05",
        "OMS_SMS_ACCOUNT_SID": ACCOUNT_SID,
        "OMS_SMS_AUTH_TOKEN": AUTH_TOKEN,
        "OMS_WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN,
        "OMS_WHATSAPP_APP_SECRET": APP_SECRET,
    }, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, url + "/", log)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def mail_catcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    smtp_port, http_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("mail") / "mailcatcher.log"
    proc = start("services.notifications.provider.mailcatcher", {
        "OMS_MAIL_CATCHER_SMTP_PORT": str(smtp_port),
        "OMS_MAIL_CATCHER_HTTP_PORT": str(http_port),
    }, log)
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until_up(proc, url + "/messages", log)
        yield smtp_port, url
    finally:
        stop(proc)


@pytest.fixture
def sms(sandbox_url: str, receiver: Receiver) -> Iterator[HttpSms]:
    client = HttpSms(sandbox_url, ACCOUNT_SID, AUTH_TOKEN, "+15550100", receiver.base + SMS_WEBHOOK_PATH, timeout=5)
    yield client
    client.close()


@pytest.fixture
def whatsapp(sandbox_url: str) -> Iterator[HttpWhatsApp]:
    client = HttpWhatsApp(sandbox_url, PHONE_NUMBER_ID, ACCESS_TOKEN, APP_SECRET, timeout=5)
    yield client
    client.close()


def control(sandbox_url: str, path: str, **body: Any) -> dict[str, Any]:
    resp = httpx.post(f"{sandbox_url}/sandbox/{path}", json=body, timeout=20)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


def phone(sandbox_url: str, number: str) -> list[dict[str, Any]]:
    """What the sandbox "phone" with this number received."""
    resp = httpx.get(f"{sandbox_url}/sandbox/messages", params={"to": number})
    assert resp.status_code == 200
    messages: list[dict[str, Any]] = resp.json()
    return messages


@pytest.fixture
def outage(sandbox_url: str) -> Iterator[Callable[[bool], None]]:
    def switch(down: bool) -> None:
        control(sandbox_url, "outage", down=down)

    yield switch
    switch(False)


# -- SMS receipts and WhatsApp webhooks as the service reads them -------------------------------------------


def sms_receipts(sms: HttpSms, receiver: Receiver, sid: str, count: int) -> list[Receipt]:
    """Wait for ``count`` status callbacks of ``sid``; each must verify (signature over the callback URL)."""

    def of_sid(deliveries: list[Delivery]) -> list[Delivery]:
        return [d for d in deliveries if d[0] == SMS_WEBHOOK_PATH and f"MessageSid={sid}".encode() in d[2]]

    found = of_sid(receiver.wait_for(lambda ds: len(of_sid(ds)) >= count))
    receipts: list[Receipt] = []
    for path, headers, body in found:
        assert SMS_SIGNATURE_HEADER in headers
        receipts.extend(sms.parse_webhook(receiver.base + path, body.decode(), headers))
    return receipts


def whatsapp_webhooks(whatsapp: HttpWhatsApp, receiver: Receiver, needle: str, count: int) -> list[Delivery]:
    def matching(deliveries: list[Delivery]) -> list[Delivery]:
        return [d for d in deliveries if d[0] == WHATSAPP_WEBHOOK_PATH and needle.encode() in d[2]]

    found = matching(receiver.wait_for(lambda ds: len(matching(ds)) >= count))
    for _, headers, _ in found:
        assert WHATSAPP_SIGNATURE_HEADER in headers
    return found


def wa_receipts(whatsapp: HttpWhatsApp, receiver: Receiver, wamid: str, count: int) -> list[Receipt]:
    receipts: list[Receipt] = []
    for _, headers, body in whatsapp_webhooks(whatsapp, receiver, wamid, count):
        receipts.extend(whatsapp.parse_webhook(body.decode(), headers)[0])
    return receipts


# -- e-mail ------------------------------------------------------------------------------------------------


def test_an_email_arrives_with_its_text_and_html_parts_and_its_message_id(mail_catcher: tuple[int, str]) -> None:
    smtp_port, url = mail_catcher
    sender = SmtpSender("127.0.0.1", smtp_port, sender="Atelier Lune <shop@atelier.example>", timeout=5)
    email = Email(
        to="camille@example.com",
        subject="Votre commande n° 1001 est expédiée",
        text="Bonjour Camille,\nvotre colis est en route.",
        html="<p>Bonjour Camille,</p><p>votre colis est <b>en route</b>.</p>",
        message_id="<3f2b6c1e-0c1a-5d8e-9f00-1234567890ab@oms>",
        headers={"X-OMS-Order": "1001", "Message-ID": "<not-this-one@evil>"},
    )
    sent = sender.send(email)
    assert sent.provider_message_id == email.message_id
    [mail] = httpx.get(f"{url}/messages", params={"to": "camille@example.com"}).json()
    assert mail["from"] == "shop@atelier.example" and mail["to"] == ["camille@example.com"]
    assert mail["subject"] == email.subject and mail["message_id"] == email.message_id
    assert mail["content_type"] == "multipart/alternative"
    assert mail["text"].strip() == email.text and mail["html"].strip() == email.html
    assert mail["headers"]["X-OMS-Order"] == "1001"
    assert httpx.get(f"{url}/messages", params={"to": "nobody@example.com"}).json() == []

    # a bare key@domain gets its angle brackets; a text-only mail is text/plain
    sender.send(Email(to="plain@example.com", subject="Hi", text="Just text", html=None, message_id="k1@oms"))
    [plain] = httpx.get(f"{url}/messages", params={"to": "plain@example.com"}).json()
    assert (plain["message_id"], plain["content_type"], plain["html"]) == ("<k1@oms>", "text/plain", None)


def test_an_email_with_non_ascii_names_long_lines_and_dotted_lines_arrives_as_written(
    mail_catcher: tuple[int, str],
) -> None:
    smtp_port, url = mail_catcher
    sender = SmtpSender("127.0.0.1", smtp_port, sender="Atelier Lüne, Tunis <shop@atelier.example>", timeout=5)
    subject = "Votre commande n° 1002 est expédiée — suivez-la 📦 " * 3
    text = "Bonjour Zoë,\n.\n.une ligne qui commence par un point\n" + "très long " * 200 + "\nprix = 44.535 TND"
    html = "<p>Bonjour Zoë,</p>\r\n<p>" + "<b>en route</b> " * 150 + "</p>"
    sent = sender.send(Email(to="zoe@example.com", subject=subject, text=text, html=html, message_id="<k2@oms>",
                             headers={"X-OMS-Message-Id": "k2", "X-OMS-Kind": "order_shipped"}))
    sender.close()
    assert sent.provider_message_id == "<k2@oms>"
    [mail] = httpx.get(f"{url}/messages", params={"to": "zoe@example.com"}).json()
    assert mail["from"] == "shop@atelier.example" and mail["to"] == ["zoe@example.com"]
    assert mail["header_from"] == '"Atelier Lüne, Tunis" <shop@atelier.example>'
    assert mail["subject"] == subject and mail["message_id"] == "<k2@oms>"
    assert mail["content_type"] == "multipart/alternative"
    assert mail["text"].rstrip("\n") == text and mail["html"].rstrip("\n") == html.replace("\r\n", "\n")
    assert (mail["headers"]["X-OMS-Message-Id"], mail["headers"]["X-OMS-Kind"]) == ("k2", "order_shipped")


class Refusing:
    """An SMTP server that refuses some recipients: 550 (no such user) or 451 (try again later)."""

    def __init__(self) -> None:
        self.accepted: list[str] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
        if address.startswith("busy@"):
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.accepted.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def refusing_smtp() -> Iterator[tuple[Refusing, int]]:
    handler = Refusing()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def mail(to: str) -> Email:
    return Email(to=to, subject="Order 1001", text="text", html="<p>html</p>", message_id=f"<{to}@oms>")


def test_a_refused_recipient_is_permanent_and_a_deferral_or_no_server_is_retryable(
    refusing_smtp: tuple[Refusing, int],
) -> None:
    handler, port = refusing_smtp
    sender = SmtpSender("127.0.0.1", port, timeout=5)
    with pytest.raises(ChannelError) as gone:
        sender.send(mail("gone@example.com"))
    assert (gone.value.code, gone.value.retryable) == ("recipient_refused", False)
    assert "User unknown" in gone.value.reason
    with pytest.raises(ChannelError) as busy:
        sender.send(mail("busy@example.com"))
    assert busy.value.retryable and "Greylisted" in busy.value.reason
    sender.send(mail("ok@example.com"))
    assert handler.accepted == ["ok@example.com"]

    nobody = SmtpSender("127.0.0.1", free_port(), timeout=2)
    with pytest.raises(ChannelError) as down:
        nobody.send(mail("ok@example.com"))
    assert (down.value.code, down.value.retryable) == ("smtp_unavailable", True)


# -- SMS ---------------------------------------------------------------------------------------------------


def test_an_sms_sent_twice_with_one_key_arrives_once_and_its_signed_receipts_follow(
    sms: HttpSms, sandbox_url: str, receiver: Receiver
) -> None:
    first = sms.send("+216 20 100 001", "Your order 1001 is confirmed.", "key-sms-1")
    again = sms.send("+216 20 100 001", "Your order 1001 is confirmed.", "key-sms-1")  # after a lost answer
    assert again == first and first.provider_message_id.startswith("SM")
    [message] = phone(sandbox_url, "+21620100001")
    assert (message["id"], message["body"], message["from"]) == (first.provider_message_id,
                                                                 "Your order 1001 is confirmed.", "+15550100")
    assert (message["idempotency_key"], message["requests"]) == ("key-sms-1", 2)

    receipts = sms_receipts(sms, receiver, first.provider_message_id, 2)
    assert sorted(r.status for r in receipts) == ["delivered", "sent"]
    assert all(r.provider_message_id == first.provider_message_id for r in receipts)
    assert phone(sandbox_url, "+21620100001")[0]["status"] == "delivered"

    other = sms.send("+216 20 100 001", "Your order 1001 has shipped.", "key-sms-2")  # another key: a new SMS
    assert other != first and len(phone(sandbox_url, "+21620100001")) == 2


def test_an_sms_failing_at_the_handset_gets_a_failed_receipt_with_the_reason(
    sms: HttpSms, sandbox_url: str, receiver: Receiver
) -> None:
    control(sandbox_url, "fail", to="+21620100002", code=30003)
    try:
        sent = sms.send("+21620100002", "Hello", "key-sms-fail")
        [receipt] = sms_receipts(sms, receiver, sent.provider_message_id, 1)
        assert (receipt.status, receipt.reason) == ("failed", "Unreachable destination handset (30003)")
    finally:
        control(sandbox_url, "fail", to="+21620100002", code=None)


def test_a_bad_number_or_bad_credentials_are_permanent_refusals(sms: HttpSms, sandbox_url: str) -> None:
    with pytest.raises(ChannelError) as bad:
        sms.send("12", "Hello", "key-sms-bad")
    assert (bad.value.code, bad.value.retryable) == ("invalid_number", False) and "21211" in bad.value.reason
    with HttpSms(sandbox_url, ACCOUNT_SID, "wrong-token", "+15550100", None) as intruder, \
            pytest.raises(ChannelError) as denied:
        intruder.send("+21620100003", "Hello", "key-sms-intruder")
    assert (denied.value.code, denied.value.retryable) == ("unauthorized", False)
    with HttpWhatsApp(sandbox_url, PHONE_NUMBER_ID, "wrong", APP_SECRET) as intruder_wa, \
            pytest.raises(ChannelError) as denied_wa:
        intruder_wa.send_template("+21620100003", "order_update", "en", [], "key-wa-intruder")
    assert (denied_wa.value.code, denied_wa.value.retryable) == ("unauthorized", False)
    assert phone(sandbox_url, "+21620100003") == []


# -- WhatsApp ----------------------------------------------------------------------------------------------


def test_free_text_outside_the_window_is_refused_and_the_template_goes(
    whatsapp: HttpWhatsApp, sandbox_url: str, receiver: Receiver
) -> None:
    with pytest.raises(ChannelError) as info:
        whatsapp.send_text("+21620200001", "Your order has shipped", "key-wa-1")
    assert (info.value.code, info.value.retryable) == ("outside_window", False)
    assert phone(sandbox_url, "+21620200001") == []
    # the design retries at once as a template under the same key: the refusal was not remembered
    sent = whatsapp.send_template("+21620200001", "order_shipped", "fr", ["1001", "SBX123"], "key-wa-1")
    assert whatsapp.send_template("+21620200001", "order_shipped", "fr", ["1001", "SBX123"], "key-wa-1") == sent
    [message] = phone(sandbox_url, "+21620200001")
    assert message["id"] == sent.provider_message_id and message["requests"] == 2
    assert message["template"] == {"name": "order_shipped", "language": "fr", "params": ["1001", "SBX123"]}
    receipts = wa_receipts(whatsapp, receiver, sent.provider_message_id, 3)
    assert sorted(r.status for r in receipts) == ["delivered", "read", "sent"]


def test_an_inbound_message_opens_the_window_and_free_text_arrives_once(
    whatsapp: HttpWhatsApp, sandbox_url: str, receiver: Receiver
) -> None:
    answer = control(sandbox_url, "inbound", **{"from": "+216 20 200 002", "text": "Where is my parcel?"})
    assert [d["status_code"] for d in answer["deliveries"]] == [204]
    [(_, headers, body)] = whatsapp_webhooks(whatsapp, receiver, answer["message"]["id"], 1)
    receipts, inbound = whatsapp.parse_webhook(body.decode(), headers)
    assert receipts == [] and [(m.from_number, m.text) for m in inbound] == [("+21620200002", "Where is my parcel?")]

    sent = whatsapp.send_text("+21620200002", "It arrives tomorrow.", "key-wa-2")
    assert whatsapp.send_text("+21620200002", "It arrives tomorrow.", "key-wa-2") == sent
    [message] = phone(sandbox_url, "+21620200002")
    assert (message["body"], message["type"], message["requests"]) == ("It arrives tomorrow.", "text", 2)
    receipts = wa_receipts(whatsapp, receiver, sent.provider_message_id, 3)
    assert sorted(r.status for r in receipts) == ["delivered", "read", "sent"]


def test_duplicated_receipts_verify_and_carry_one_event_id(
    whatsapp: HttpWhatsApp, sandbox_url: str, receiver: Receiver
) -> None:
    sent = whatsapp.send_template("+21620200003", "order_confirmed", "en", ["1003"], "key-wa-3")
    wa_receipts(whatsapp, receiver, sent.provider_message_id, 3)
    answer = control(sandbox_url, "receipts", message_id=sent.provider_message_id, status="delivered", repeat=2)
    assert answer["status"] == "read"  # a late delivered after read does not move the provider's record back
    receipts = wa_receipts(whatsapp, receiver, sent.provider_message_id, 5)
    late = [r for r in receipts if r.status == "delivered"]
    assert len(late) == 3 and len({r.event_id for r in late}) == 1


def test_with_chaos_on_receipts_come_duplicated_and_out_of_order_and_all_verify(
    receiver: Receiver, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "chaos.log"
    proc = start("services.notifications.provider.sandbox", {
        "OMS_SANDBOX_MESSAGING_PORT": str(port),
        "OMS_SANDBOX_MESSAGING_WHATSAPP_WEBHOOK_URL": receiver.base + WHATSAPP_WEBHOOK_PATH,
        "OMS_SANDBOX_MESSAGING_RECEIPT_DELAY": "0.02",
        "OMS_SANDBOX_MESSAGING_CHAOS": "true",
        "OMS_WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN,
        "OMS_WHATSAPP_APP_SECRET": APP_SECRET,
    }, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, url + "/", log)
        with HttpWhatsApp(url, PHONE_NUMBER_ID, ACCESS_TOKEN, APP_SECRET, timeout=5) as chaotic:
            sent = [chaotic.send_template("+21620400001", "order_confirmed", "en", [str(i)], f"key-chaos-{i}")
                    for i in range(6)]
            in_order = ["sent", "delivered", "read"]
            disorderly = 0
            for s in sent:
                # every message gets all three receipts, each validly signed (parse_webhook verifies)
                deadline = time.monotonic() + 15
                while True:
                    statuses = [r.status for r in wa_receipts(chaotic, receiver, s.provider_message_id, 1)]
                    if set(statuses) == set(in_order) or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                assert set(statuses) == set(in_order)
                time.sleep(0.2)  # the last duplicate, if any
                statuses = [r.status for r in wa_receipts(chaotic, receiver, s.provider_message_id, 1)]
                disorderly += statuses != in_order
            # with chaos on, a message's receipts come in order and once each with probability 1/48
            assert disorderly > 0
    finally:
        stop(proc)


# -- outage and the crash window ---------------------------------------------------------------------------


def test_an_outage_is_retryable_sends_nothing_and_the_retry_arrives_once(
    sms: HttpSms, whatsapp: HttpWhatsApp, sandbox_url: str, outage: Callable[[bool], None]
) -> None:
    outage(True)
    with pytest.raises(ChannelError) as sms_down:
        sms.send("+21620300001", "Hello", "key-outage-sms")
    with pytest.raises(ChannelError) as wa_down:
        whatsapp.send_template("+21620300001", "order_confirmed", "en", ["1"], "key-outage-wa")
    for down in (sms_down.value, wa_down.value):
        assert (down.code, down.retryable) == ("provider_unavailable", True)
    assert phone(sandbox_url, "+21620300001") == []
    outage(False)
    sms.send("+21620300001", "Hello", "key-outage-sms")
    whatsapp.send_template("+21620300001", "order_confirmed", "en", ["1"], "key-outage-wa")
    assert sorted(m["channel"] for m in phone(sandbox_url, "+21620300001")) == ["sms", "whatsapp"]

    unreachable = HttpSms(f"http://127.0.0.1:{free_port()}", ACCOUNT_SID, AUTH_TOKEN, "+15550100", None, timeout=1)
    with unreachable, pytest.raises(ChannelError) as gone:
        unreachable.send("+21620300001", "Hello", "key-gone")
    assert gone.value.retryable


def test_a_send_whose_answer_is_lost_reached_the_phone_and_its_resend_does_not_repeat_it(sandbox_url: str) -> None:
    control(sandbox_url, "latency", seconds=3)
    try:
        impatient = HttpSms(sandbox_url, ACCOUNT_SID, AUTH_TOKEN, "+15550100", None, timeout=0.5)
        with impatient, pytest.raises(ChannelError) as info:
            impatient.send("+21620300002", "Your refund is on its way", "key-crash")
        assert info.value.retryable  # the outcome is unknown to the sender...
        assert len(phone(sandbox_url, "+21620300002")) == 1  # ...but the phone has it
    finally:
        control(sandbox_url, "latency", seconds=0)
    with HttpSms(sandbox_url, ACCOUNT_SID, AUTH_TOKEN, "+15550100", None, timeout=5) as restarted:
        sent = restarted.send("+21620300002", "Your refund is on its way", "key-crash")
    [message] = phone(sandbox_url, "+21620300002")
    assert message["id"] == sent.provider_message_id and message["requests"] == 2


# -- the processes and their settings ----------------------------------------------------------------------


def test_the_sandbox_refuses_to_start_in_production_without_its_secrets(tmp_path: Path) -> None:
    log = tmp_path / "log"
    proc = start("services.notifications.provider.sandbox",
                 {"OMS_ENV": "production", "OMS_SANDBOX_MESSAGING_PORT": str(free_port())}, log)
    assert proc.wait(30) != 0
    assert "OMS_SMS_AUTH_TOKEN" in log.read_text()


def test_the_sandbox_home_page_reports_its_switches(sandbox_url: str) -> None:
    info = json.loads(httpx.get(sandbox_url + "/").text)
    assert info["name"] == "sandbox messaging provider" and info["down"] is False and info["chaos"] is False


def test_messages_share_one_smtp_connection_and_a_dropped_one_is_reopened(
    refusing_smtp: tuple[Refusing, int],
) -> None:
    handler, port = refusing_smtp
    sender = SmtpSender("127.0.0.1", port, timeout=5)
    sessions = []
    original = smtplib.SMTP.connect

    def counting(self: smtplib.SMTP, *args: Any, **kwargs: Any) -> Any:
        sessions.append(args)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(smtplib.SMTP, "connect", counting)
        for n in range(3):
            sender.send(mail(f"ok{n}@example.com"))
        assert len(sessions) == 1  # three messages, one connection
        assert sender._smtp is not None
        sender._smtp.sock.shutdown(socket.SHUT_RDWR)  # the server (or the network) dropped it while idle
        sender._last_used -= SmtpSender.IDLE_CHECK_SECONDS + 1
        sender.send(mail("ok3@example.com"))
        assert len(sessions) == 2  # noticed before sending, reconnected
    sender.close()
    assert handler.accepted == [f"ok{n}@example.com" for n in range(4)]
