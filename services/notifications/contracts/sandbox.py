"""What the sandbox messaging provider publishes for its users: its two APIs (an SMS API shaped like
Twilio's Messages resource, and the WhatsApp Business Cloud API), their webhooks, and its control endpoints.

SMS (form-encoded, HTTP Basic ``<account_sid>:<auth_token>``):

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` To, From, Body, StatusCallback; header
  ``Idempotency-Key`` (the same key twice returns the first message, sends nothing) -> 201
  {sid: "SM…", status: "queued", to, from, body, date_created}; 503 while the outage switch is on;
  400 {code: 21211, message} for an invalid number.
* Status callbacks: form POST to StatusCallback: MessageSid, MessageStatus (sent, delivered, undelivered,
  failed), To, ErrorCode; header ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth_token, url + the sorted
  parameters' names and values concatenated)).

WhatsApp (JSON, ``Authorization: Bearer <access_token>``):

* ``POST /v19.0/{phone_number_id}/messages`` {messaging_product: "whatsapp", to, type: "text", text: {body}}
  or {type: "template", template: {name, language: {code}, components: [{type: "body", parameters: [{type:
  "text", text}]}]}}; header ``Idempotency-Key`` -> 200 {messaging_product, contacts: [{input, wa_id}],
  messages: [{id: "wamid.…"}]}. Free text outside the 24-hour customer-service window -> 400
  {error: {code: 131047, message: "Re-engagement message"}}.
* Webhooks: POST {object: "whatsapp_business_account", entry: [{id, changes: [{field: "messages", value:
  {statuses: [{id, status: sent|delivered|read|failed, timestamp, recipient_id, errors: [{code, title}]}],
  messages: [{from, id, timestamp, type: "text", text: {body}}]}}]}]}; header ``X-Hub-Signature-256:
  sha256=<hex HMAC-SHA256(app_secret, body)>``.

Receipts follow each accepted message (sent, then delivered, then read for WhatsApp), each possibly sent twice
and out of order when ``OMS_SANDBOX_MESSAGING_CHAOS`` is on.

Control (tests, demos): ``POST /sandbox/outage`` {down: bool}; ``POST /sandbox/inbound`` {from, text} (a
customer writes on WhatsApp: an inbound webhook); ``POST /sandbox/receipts`` {message_id, status, repeat}
(send one now); ``GET /sandbox/messages?to=`` (what "phones" received, for exactly-once checks);
``POST /sandbox/fail`` {to, code, reason} (that number's next messages fail with this receipt);
``POST /sandbox/latency`` {seconds} (answer sends that much later: a test kills the sender mid-send).

The development mail catcher (``sandbox-mail``: aiosmtpd on SMTP port 1025, HTTP port 8093) keeps what it
receives: ``GET /messages?to=`` lists them (subject, from, to, text and HTML parts, Message-ID).
"""

from __future__ import annotations

SMS_WEBHOOK_PATH = "/api/v1/notifications/webhooks/sms"
WHATSAPP_WEBHOOK_PATH = "/api/v1/notifications/webhooks/whatsapp"
SMS_SIGNATURE_HEADER = "X-Twilio-Signature"
WHATSAPP_SIGNATURE_HEADER = "X-Hub-Signature-256"
WHATSAPP_REENGAGEMENT_ERROR = 131047
CUSTOMER_SERVICE_WINDOW_HOURS = 24
