"""Templates over the API: the shipped defaults with the store's overrides, saved only when valid (syntax and
variables: an unknown variable is refused at save time naming the field and the variable), reset to the default,
and previewed with a real order the service knows."""

from __future__ import annotations

from typing import Any

from services.notifications import domain, store, templating
from services.notifications.contracts.schemas import (
    PreviewRequest,
    PreviewView,
    TemplateIn,
    TemplateList,
    TemplateView,
)
from services.notifications.contracts.vocabulary import LANGUAGES, ORDER_VARIABLES, MessageChannel
from services.notifications.settings import NotificationSettings
from services.notifications.usecases.common import actor_json, preferences, read, test_recipient
from services.notifications.usecases.context import order_context
from services.notifications.usecases.sending import TEMPLATES, Templates, template_for, template_of_row, test_prefix
from shared.db import Database
from shared.errors import InvalidRequest, NotFound, field_error, parse


def variables_of(kind: str) -> list[str]:
    extra = templating.kind_variables(kind)
    return sorted(ORDER_VARIABLES | (extra or frozenset()))


def view(t: TemplateIn, *, is_default: bool, updated_at: Any = None) -> dict[str, Any]:
    return TemplateView(**t.model_dump(), is_default=is_default, variables=variables_of(t.kind),
                        updated_at=updated_at).model_dump(mode="json")


def _check_names(kind: str, channel: str | None = None, language: str | None = None) -> None:
    if kind not in domain.KIND_NAMES:
        raise InvalidRequest(f"unknown notification kind '{kind}'",
                             errors=[field_error("kind", f"one of {', '.join(domain.KIND_NAMES)}", "unknown_kind")])
    if channel is not None and channel not in {c.value for c in MessageChannel}:
        raise InvalidRequest(f"unknown channel '{channel}'",
                             errors=[field_error("channel", "one of email, sms, whatsapp", "unknown_channel")])
    if language is not None and language.split("-")[0] not in LANGUAGES:
        raise InvalidRequest(f"no templates in '{language}'",
                             errors=[field_error("language", f"one of {', '.join(LANGUAGES)}", "unknown_language")])


def list_templates(db: Database, kind: str | None = None, channel: str | None = None,
                   language: str | None = None) -> dict[str, Any]:
    with read(db) as tx:
        overrides = {(r["kind"], r["channel"], r["language"]): r for r in store.list_template_overrides(tx)}
    items = []
    keys = {(t.kind, t.channel.value, t.language): t for t in templating.default_templates()}
    for key in sorted(set(keys) | set(overrides)):
        k, c, lang = key
        if (kind and k != kind) or (channel and c != channel) or (language and lang != language):
            continue
        row = overrides.get(key)
        items.append(view(template_of_row(row), is_default=False, updated_at=row["updated_at"]) if row
                     else view(keys[key], is_default=True))
    return TemplateList.model_validate({"items": items}).model_dump(mode="json")


def invalid(problems: list[templating.TemplateProblem], prefix: str = "") -> InvalidRequest:
    return InvalidRequest(
        "; ".join(f"{prefix}{p.field}: {p.reason}" for p in problems),
        errors=[field_error(f"{prefix}{p.field}", p.reason, "invalid_template") for p in problems])


def save_template(db: Database, command: Any, actor: Any) -> dict[str, Any]:
    t = parse(TemplateIn, command, "template")
    _check_names(t.kind, t.channel.value, t.language)
    problems = templating.check(t)
    if problems:
        raise invalid(problems)
    with db.transaction() as tx:
        row = store.save_template(tx, t.model_dump(mode="json"), actor_json(actor))
    return view(template_of_row(row), is_default=False, updated_at=row["updated_at"])


def reset_template(db: Database, kind: str, channel: str, language: str, actor: Any) -> dict[str, Any]:
    _check_names(kind, channel, language)
    try:
        default = templating.default_for(kind, channel, language)
    except KeyError:
        raise NotFound(f"no {channel} template for {kind}", kind=kind, channel=channel) from None
    with db.transaction() as tx:
        store.delete_template(tx, kind, channel, language)
    return view(default, is_default=True)


def preview_template(db: Database, settings: NotificationSettings, command: Any,
                     templates: Templates = TEMPLATES) -> dict[str, Any]:
    """The message as the order's customer would get it (the draft, or the stored template); the kind's own
    values (a payment link, a shipment...) are sample values, the order's are real."""
    req = parse(PreviewRequest, command, "preview")
    _check_names(req.kind, req.channel.value, req.language)
    if req.draft is not None:
        problems = templating.check(req.draft)
        if problems:
            raise invalid(problems, "draft.")
    with read(db) as tx:
        order = store.get_order(tx, req.order_id)
        if order is None:
            raise NotFound(f"notifications knows no order {req.order_id}", order_id=str(req.order_id))
        template = req.draft or template_for(tx, templates, req.kind, req.channel.value, req.language)
        prefs = preferences(tx, settings)
    sample = templating.sample_context(req.kind)
    context = {**sample, **order_context(order, settings)}
    rendered = test_prefix(templates.render(template, context), bool(order["test"]))
    customer = order["customer"] or {}
    if req.kind == domain.STAFF_KIND:
        recipient: str | None = prefs.store_email or settings.store_email
    else:
        address = customer.get("email") if req.channel is MessageChannel.email else customer.get("phone")
        r = domain.route(req.channel, address, test=bool(order["test"]),
                         test_recipient=test_recipient(prefs, settings),
                         sandbox_channels=settings.sandbox_channels()) if address else None
        recipient = r.recipient if r else None
    return PreviewView(subject=rendered.subject, text=rendered.text, html=rendered.html,
                       recipient=recipient).model_dump(mode="json")
