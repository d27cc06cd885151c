"""The providers' webhook signatures as the adapters verify them: a good one passes, a tampered body, URL or
header and a missing header are refused with ``bad_signature`` before anything is read."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest

from services.notifications.channels import ChannelError
from services.notifications.channels.sms import HttpSms, sms_signature
from services.notifications.channels.whatsapp import HttpWhatsApp, whatsapp_signature
from services.notifications.contracts.sandbox import SMS_SIGNATURE_HEADER, WHATSAPP_SIGNATURE_HEADER

pytestmark = pytest.mark.unit

TOKEN = "sms-auth-token"
APP_SECRET = "whatsapp-app-secret"
URL = "https://oms.example/api/v1/notifications/webhooks/sms"


@pytest.fixture
def sms() -> HttpSms:
    return HttpSms("http://sms.invalid", "AC1", TOKEN, "+15550100", URL)


@pytest.fixture
def whatsapp() -> HttpWhatsApp:
    return HttpWhatsApp("http://wa.invalid", "1000000001", "token", APP_SECRET)


def sms_callback(**params: str) -> tuple[str, dict[str, str]]:
    body = urlencode(params)
    return body, {SMS_SIGNATURE_HEADER: sms_signature(TOKEN, URL, params)}


def test_the_sms_signature_is_twilios_algorithm() -> None:
    # Twilio's own documented construction: url + each sorted name and value, HMAC-SHA1, base64
    params = {"To": "+21620123456", "MessageSid": "SM1", "MessageStatus": "delivered"}
    expected = base64.b64encode(
        hmac.new(TOKEN.encode(), (URL + "MessageSidSM1MessageStatusdeliveredTo+21620123456").encode(),
                 hashlib.sha1).digest()
    ).decode()
    assert sms_signature(TOKEN, URL, params) == expected


def test_a_well_signed_sms_callback_gives_its_receipt(sms: HttpSms) -> None:
    body, headers = sms_callback(MessageSid="SM1", MessageStatus="delivered", To="+21620123456")
    [receipt] = sms.parse_webhook(URL, body, headers)
    assert (receipt.provider_message_id, receipt.status, receipt.reason) == ("SM1", "delivered", None)
    # the header's name is case-insensitive, as HTTP says
    assert sms.parse_webhook(URL, body, {k.lower(): v for k, v in headers.items()})[0].status == "delivered"


def test_undelivered_and_failed_sms_are_failed_receipts_with_the_providers_reason(sms: HttpSms) -> None:
    body, headers = sms_callback(MessageSid="SM2", MessageStatus="undelivered", To="+1555", ErrorCode="30003")
    [receipt] = sms.parse_webhook(URL, body, headers)
    assert receipt.status == "failed" and receipt.reason == "Unreachable destination handset (30003)"
    body, headers = sms_callback(MessageSid="SM3", MessageStatus="failed", ErrorCode="21610",
                                 ErrorMessage="Recipient unsubscribed")
    assert sms.parse_webhook(URL, body, headers)[0].reason == "Recipient unsubscribed (21610)"
    body, headers = sms_callback(MessageSid="SM4", MessageStatus="sending")
    assert sms.parse_webhook(URL, body, headers) == []  # an interim status is no receipt


@pytest.mark.parametrize("tamper", ["body", "url", "header", "token"])
def test_a_tampered_sms_callback_is_refused(sms: HttpSms, tamper: str) -> None:
    body, headers = sms_callback(MessageSid="SM1", MessageStatus="delivered", To="+21620123456")
    url = URL
    if tamper == "body":
        body = body.replace("delivered", "failed")
    elif tamper == "url":
        url = URL.replace("oms.example", "evil.example")
    elif tamper == "header":
        headers = {SMS_SIGNATURE_HEADER: headers[SMS_SIGNATURE_HEADER][:-4] + "AAA="}
    else:
        headers = {SMS_SIGNATURE_HEADER: sms_signature("another-token", URL, dict(
            MessageSid="SM1", MessageStatus="delivered", To="+21620123456"))}
    with pytest.raises(ChannelError) as info:
        sms.parse_webhook(url, body, headers)
    assert info.value.code == "bad_signature" and not info.value.retryable


def test_an_unsigned_sms_callback_is_refused(sms: HttpSms) -> None:
    body, _ = sms_callback(MessageSid="SM1", MessageStatus="delivered")
    with pytest.raises(ChannelError) as info:
        sms.parse_webhook(URL, body, {})
    assert info.value.code == "bad_signature" and SMS_SIGNATURE_HEADER in info.value.reason


def whatsapp_body() -> str:
    return json.dumps({
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "statuses": [
                {"id": "wamid.A", "status": "read", "timestamp": "1700000000", "recipient_id": "21620123456"},
                {"id": "wamid.B", "status": "failed", "timestamp": "1700000001", "recipient_id": "21620123456",
                 "errors": [{"code": 131026, "title": "Message undeliverable"}]},
            ],
            "messages": [{"from": "21620123456", "id": "wamid.IN", "timestamp": "1700000002", "type": "text",
                          "text": {"body": "Where is my parcel?"}}],
        }}]}],
    })


def test_the_whatsapp_signature_is_metas_algorithm() -> None:
    body = whatsapp_body()
    assert whatsapp_signature(APP_SECRET, body) == "sha256=" + hmac.new(
        APP_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()


def test_a_well_signed_whatsapp_webhook_gives_receipts_and_inbound_messages(whatsapp: HttpWhatsApp) -> None:
    body = whatsapp_body()
    receipts, inbound = whatsapp.parse_webhook(body, {WHATSAPP_SIGNATURE_HEADER: whatsapp_signature(APP_SECRET, body)})
    assert [(r.provider_message_id, r.status, r.reason) for r in receipts] == [
        ("wamid.A", "read", None), ("wamid.B", "failed", "Message undeliverable (131026)")]
    assert receipts[0].at.timestamp() == 1700000000
    [message] = inbound
    assert (message.from_number, message.provider_message_id, message.text) == (
        "+21620123456", "wamid.IN", "Where is my parcel?")


@pytest.mark.parametrize("tamper", ["body", "header", "secret", "prefix"])
def test_a_tampered_whatsapp_webhook_is_refused(whatsapp: HttpWhatsApp, tamper: str) -> None:
    body = whatsapp_body()
    header = whatsapp_signature(APP_SECRET, body)
    if tamper == "body":
        body = body.replace('"read"', '"delivered"')
    elif tamper == "header":
        header = header[:-1] + ("0" if header[-1] != "0" else "1")
    elif tamper == "secret":
        header = whatsapp_signature("another-secret", body)
    else:
        header = header.removeprefix("sha256=")
    with pytest.raises(ChannelError) as info:
        whatsapp.parse_webhook(body, {WHATSAPP_SIGNATURE_HEADER: header})
    assert info.value.code == "bad_signature" and not info.value.retryable


def test_an_unsigned_whatsapp_webhook_is_refused(whatsapp: HttpWhatsApp) -> None:
    with pytest.raises(ChannelError) as info:
        whatsapp.parse_webhook(whatsapp_body(), {"content-type": "application/json"})
    assert info.value.code == "bad_signature" and WHATSAPP_SIGNATURE_HEADER in info.value.reason
