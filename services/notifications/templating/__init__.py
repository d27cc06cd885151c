"""Notification templates: one per kind x channel x language, rendered by Jinja2's sandboxed environment.

The shipped defaults (``defaults/``) cover every kind of ``NOTIFICATION_KINDS`` on every channel in ``LANGUAGES``
(``en`` is the fallback); staff overrides are stored by the service and validated here before they are saved:
a syntax error or a variable the kind does not offer is refused then, naming the field, never at send time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.notifications.contracts.schemas import TemplateIn


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None
    whatsapp_template: str | None = None
    whatsapp_params: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TemplateProblem:
    field: str  # "text", "subject", "html", "whatsapp_params[0]", "kind", "channel"
    reason: str  # e.g. "unknown variable 'ordr' (known: customer, order, store, test, shipment)"


def check(template: TemplateIn) -> list[TemplateProblem]:
    """Every problem of a template (syntax, unknown variables, missing parts for the channel); empty: valid."""
    raise NotImplementedError  # implemented by the templating work (h-ntemplates)


def render(template: TemplateIn, context: dict[str, Any]) -> Rendered:
    """The message for ``context`` (see n-design: the template context); HTML is autoescaped, text is not."""
    raise NotImplementedError


def default_templates() -> list[TemplateIn]:
    """The shipped defaults: every kind x channel x language."""
    raise NotImplementedError


def default_for(kind: str, channel: str, language: str) -> TemplateIn:
    """The shipped default for this kind and channel in ``language`` (falls back to ``en``)."""
    raise NotImplementedError


def sample_context(kind: str) -> dict[str, Any]:
    """A full context for ``kind`` with sample values (tests; the defaults are checked against it)."""
    raise NotImplementedError
