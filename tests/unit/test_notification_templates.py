"""Notification templates (issue #12): the shipped defaults for every kind x channel x language, the validation a
staff edit goes through before it is saved (an unknown variable or a syntax error is refused naming the field),
and rendering (HTML escaped, text not, a missing value an error rather than a blank)."""

from __future__ import annotations

import pytest

from services.notifications.contracts.schemas import TemplateIn
from services.notifications.contracts.vocabulary import LANGUAGES, NOTIFICATION_KINDS, MessageChannel
from services.notifications.templating import (
    SMS_MAX_CHARS,
    RenderError,
    check,
    default_for,
    default_templates,
    render,
    sample_context,
)

pytestmark = pytest.mark.unit

KINDS = [k.name for k in NOTIFICATION_KINDS]
CHANNELS = [c.value for c in MessageChannel]


def _by_key() -> dict[tuple[str, str, str], TemplateIn]:
    return {(t.kind, t.channel.value, t.language): t for t in default_templates()}


def _problems(template: TemplateIn) -> dict[str, str]:
    return {p.field: p.reason for p in check(template)}


# --- the shipped defaults ------------------------------------------------------------------------------------

@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_default_exists_is_valid_and_renders(kind: str, channel: str, language: str) -> None:
    template = _by_key().get((kind, channel, language))
    assert template is not None, f"no shipped default for {kind} by {channel} in {language}"
    assert check(template) == []
    out = render(template, sample_context(kind))
    context = sample_context(kind)
    # The order number and what the customer must act on are in every message
    assert str(context["order"]["number"]) in out.text
    assert "None" not in out.text and "Undefined" not in out.text
    if channel == "email":
        assert out.subject and str(context["order"]["number"]) in out.subject
        assert out.html is not None and f'lang="{language}"' in out.html
        assert str(context["order"]["number"]) in out.html
    if channel == "whatsapp":
        assert out.whatsapp_template == f"oms_{kind}"
        assert out.whatsapp_params and all(out.whatsapp_params)
    if channel == "sms":
        assert len(out.text) <= SMS_MAX_CHARS


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_translations_are_real_not_the_english_copied(language: str) -> None:
    defaults = _by_key()
    for kind in KINDS:
        for channel in CHANNELS:
            en, other = defaults[(kind, channel, "en")], defaults[(kind, channel, language)]
            context = sample_context(kind)
            assert render(other, context).text != render(en, context).text, (kind, channel, language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_defaults_carry_each_kinds_own_facts(language: str) -> None:
    facts = {
        "order_placed": lambda c: [c["order"]["total"]],
        "payment_link": lambda c: [c["payment_url"], c["amount"]],
        "payment_received": lambda c: [c["amount"]],
        "payment_failed": lambda c: [c["amount"]],
        "refund_completed": lambda c: [c["amount"]],
        "shipment_created": lambda c: [c["shipment"]["tracking_url"]],
        "shipment_updated": lambda c: [c["shipment"]["tracking_url"]],
    }
    for kind, wanted in facts.items():
        context = sample_context(kind)
        for channel in CHANNELS:
            out = render(default_for(kind, channel, language), context)
            for fact in wanted(context):
                assert fact in out.text, (kind, channel, language, fact)


def test_the_stage_change_names_the_new_stage_in_the_customers_language() -> None:
    context = sample_context("order_stage_changed") | {"to_stage": "delivered", "to_stage_label": "Delivered"}
    assert "delivered" in render(default_for("order_stage_changed", "sms", "en"), context).text
    assert "livrée" in render(default_for("order_stage_changed", "sms", "fr"), context).text
    assert "entregado" in render(default_for("order_stage_changed", "sms", "es"), context).text
    assert "تم التسليم" in render(default_for("order_stage_changed", "sms", "ar"), context).text


def test_a_missing_optional_value_prints_nothing_not_none() -> None:
    context = sample_context("shipment_created")
    context["shipment"] |= {"tracking_url": None, "tracking_number": None, "carrier": None,
                            "expected_delivery": None}
    context["order"]["shipping_address"] = None
    for channel in CHANNELS:
        out = render(default_for("shipment_created", channel, "en"), context)
        assert "None" not in out.text and "Track" not in out.text
    placed = render(default_for("order_placed", "email", "en"), sample_context("order_placed") | {
        "order": sample_context("order_placed")["order"] | {"shipping_address": None}})
    assert "Delivery to" not in placed.text


def test_the_arabic_email_reads_right_to_left() -> None:
    out = render(default_for("order_placed", "email", "ar"), sample_context("order_placed"))
    assert out.html is not None and 'dir="rtl"' in out.html
    assert "شكرًا" in (out.subject or "")


def test_the_staff_new_order_email_names_order_total_items_and_customer_and_says_test() -> None:
    template = default_for("new_order_staff", "email", "en")
    assert check(template) == []
    context = sample_context("new_order_staff")
    out = render(template, context)
    assert out.subject == "New order #1001 — 44.535 TND"
    for item in context["order"]["items"]:
        assert item["name"] in out.text and item["sku"] in out.text
        assert out.html is not None and item["name"] in out.html
    assert context["customer"]["name"] in out.text and context["customer"]["phone"] in out.text
    assert "TEST" not in out.text

    test = render(template, context | {"test": True})
    assert test.subject is not None and test.subject.startswith("TEST order #1001")
    assert "TEST ORDER" in test.text and test.html is not None and "TEST ORDER" in test.html
    # staff-only: no SMS or WhatsApp version, and any language gets the English one
    assert default_for("new_order_staff", "email", "fr").language == "en"
    with pytest.raises(KeyError):
        default_for("new_order_staff", "sms", "en")


def test_default_for_falls_back_to_english_and_reads_regional_tags() -> None:
    assert default_for("order_placed", "email", "de").language == "en"
    assert default_for("order_placed", "email", "de") == default_for("order_placed", "email", "en")
    assert default_for("order_placed", "sms", "fr-TN").language == "fr"
    assert default_for("order_placed", "whatsapp", "es").language == "es"


# --- validation at save time ---------------------------------------------------------------------------------

def test_an_unknown_variable_is_refused_naming_the_field_and_the_variable() -> None:
    draft = default_for("order_placed", "email", "en").model_copy(
        update={"html": "<p>Hello {{ ordr.number }}</p>"})
    problems = _problems(draft)
    assert list(problems) == ["html"]
    assert "'ordr'" in problems["html"] and "order" in problems["html"]  # names it, lists the known ones

    # a variable another kind offers is still unknown here
    sms = TemplateIn(kind="order_placed", channel=MessageChannel.sms, text="Track: {{ shipment.tracking_url }}")
    assert "'shipment'" in _problems(sms)["text"]
    # ...and accepted where the kind offers it
    assert check(sms.model_copy(update={"kind": "shipment_created"})) == []


def test_a_variable_set_in_the_template_is_not_unknown() -> None:
    sms = TemplateIn(kind="order_placed", channel=MessageChannel.sms,
                     text="{% set n = order.number %}{% for i in order['items'] %}{{ i.name }} {% endfor %}#{{ n }}")
    assert check(sms) == []


def test_a_syntax_error_names_the_field_and_the_line() -> None:
    draft = default_for("payment_link", "email", "en").model_copy(
        update={"text": "Hello\n{{ customer.name }}\n{% if amount %}pay {{ amount }}\n"})
    problems = _problems(draft)
    assert list(problems) == ["text"]
    assert "syntax" in problems["text"] and "line" in problems["text"]

    subject = draft.model_copy(update={"text": "ok", "subject": "Order {{ order.number "})
    assert "line 1" in _problems(subject)["subject"]


def test_whatsapp_params_are_expressions_checked_like_the_text() -> None:
    base = default_for("order_placed", "whatsapp", "en")
    unknown = base.model_copy(update={"whatsapp_params": ["order.number", "amount"]})
    assert "'amount'" in _problems(unknown)["whatsapp_params[1]"]
    broken = base.model_copy(update={"whatsapp_params": ["order.number }}{{ store"]})
    assert "whatsapp_params[0]" in _problems(broken)
    assert render(base.model_copy(update={"whatsapp_params": ["order.number + 1", "customer.name|upper"]}),
                  sample_context("order_placed")).whatsapp_params == ["1002", "AMIRA BEN SALAH"]


def test_a_misspelt_key_is_refused_at_save_time_not_at_send_time() -> None:
    draft = TemplateIn(kind="order_placed", channel=MessageChannel.sms, text="Order #{{ order.nubmer }}")
    problems = _problems(draft)
    assert "nubmer" in problems["text"]


def test_the_sandbox_refuses_python_internals() -> None:
    draft = TemplateIn(kind="order_placed", channel=MessageChannel.sms,
                       text="{{ order.__class__.__mro__[1].__subclasses__() }}")
    assert "text" in _problems(draft)
    with pytest.raises(RenderError):
        render(draft, sample_context("order_placed"))


def test_each_channel_needs_its_parts() -> None:
    no_subject = default_for("order_placed", "email", "en").model_copy(update={"subject": " "})
    assert "subject" in _problems(no_subject)
    sms_with_subject = TemplateIn(kind="order_placed", channel=MessageChannel.sms, text="#{{ order.number }}",
                                  subject="Hello")
    assert "subject" in _problems(sms_with_subject)
    no_name = default_for("order_placed", "whatsapp", "en").model_copy(update={"whatsapp_template": None})
    assert "whatsapp_template" in _problems(no_name)
    bad_name = no_name.model_copy(update={"whatsapp_template": "Order Placed!"})
    assert "whatsapp_template" in _problems(bad_name)


def test_an_unknown_kind_or_a_channel_the_kind_does_not_use_is_refused() -> None:
    unknown = TemplateIn(kind="order_teleported", channel=MessageChannel.sms, text="#{{ order.number }}")
    assert "order_teleported" in _problems(unknown)["kind"]
    staff_sms = TemplateIn(kind="new_order_staff", channel=MessageChannel.sms, text="#{{ order.number }}")
    assert "channel" in _problems(staff_sms)


def test_an_sms_longer_than_providers_accept_is_refused() -> None:
    long = TemplateIn(kind="order_placed", channel=MessageChannel.sms,
                      text="{% for i in range(80) %}Order #{{ order.number }} is confirmed. {% endfor %}")
    problems = _problems(long)
    assert str(SMS_MAX_CHARS) in problems["text"]
    assert check(long.model_copy(update={"channel": MessageChannel.whatsapp, "whatsapp_template": "oms_x"})) == []


# --- rendering -----------------------------------------------------------------------------------------------

def test_html_is_escaped_and_text_is_not() -> None:
    context = sample_context("order_placed")
    context["customer"] |= {"name": "<b>x</b>", "first_name": "<b>x</b>"}
    out = render(default_for("order_placed", "email", "en"), context)
    assert out.html is not None
    assert "&lt;b&gt;x&lt;/b&gt;" in out.html and "<b>x</b>" not in out.html
    assert "Hi <b>x</b>," in out.text  # plain text is not HTML: printed as typed
    sms = render(default_for("order_placed", "whatsapp", "en"), context)
    assert "<b>x</b>" in sms.text


def test_a_missing_key_is_an_error_at_render_not_a_blank() -> None:
    context = sample_context("payment_link")
    del context["payment_url"]
    with pytest.raises(RenderError) as raised:
        render(default_for("payment_link", "sms", "en"), context)
    assert raised.value.field == "text" and "payment_url" in raised.value.reason

    without_email = sample_context("order_placed")
    del without_email["customer"]["first_name"]
    with pytest.raises(RenderError):
        render(default_for("order_placed", "email", "en"), without_email)

    with pytest.raises(RenderError) as param:
        render(default_for("payment_link", "whatsapp", "en").model_copy(update={"text": "Hi"}), context)
    assert param.value.field.startswith("whatsapp_params")


def test_the_subject_is_one_line() -> None:
    draft = default_for("order_placed", "email", "en").model_copy(
        update={"subject": "Order\n#{{ order.number }}\n{% if test %}TEST{% endif %}"})
    assert check(draft) == []
    assert render(draft, sample_context("order_placed")).subject == "Order #1001"
