"""Errors every service raises and the gateway understands.

They cross process boundaries over Nameko RPC (serialized as ``exc_type`` + ``exc_args``), so each one
carries a human sentence (``detail``) plus JSON-able ``extra`` fields (order id, stage, allowed moves,
field errors) that the gateway turns into an RFC 9457 problem document.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

DOMAIN_ERRORS: dict[str, type[DomainError]] = {}
"""Every DomainError class by name (subclasses register themselves), for clients rebuilding remote errors."""


class DomainError(Exception):
    status = 400
    title = "Bad request"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        DOMAIN_ERRORS[cls.__name__] = cls

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail, extra)
        self.detail = detail
        self.extra = extra

    def __str__(self) -> str:
        return self.detail


class NotFound(DomainError):
    status = 404
    title = "Not found"


class IllegalTransition(DomainError):
    status = 409
    title = "Illegal transition"


class VersionConflict(DomainError):
    status = 409
    title = "Version conflict"


class InvalidRequest(DomainError):
    status = 422
    title = "Invalid request"


class IdempotencyMismatch(DomainError):
    status = 422
    title = "Idempotency key reused with a different request"


class PermanentError(Exception):
    """A message that can never succeed however often it is retried: dead-letter it at once."""


DOMAIN_ERRORS[DomainError.__name__] = DomainError


def field_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """``("items", 0, "quantity")`` -> ``"items[0].quantity"``: the way a person names a field."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """A pydantic ``ValidationError`` as the ``errors`` list of an ``InvalidRequest`` (``field``, ``reason``).

    Whole-body errors (e.g. "give either a note or skip=true") get the field ``""``.
    """
    errors = []
    for err in exc.errors(include_url=False):
        reason = err["msg"].removeprefix("Value error, ")
        errors.append({"field": field_path(err["loc"]), "reason": reason})
    return errors


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, what: str = "request") -> M:
    """Validate an RPC argument with its contract model; field errors name the field (items[0].quantity)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise InvalidRequest(
            f"The {what} is not valid: " + "; ".join(f"{e['field'] or 'body'}: {e['reason']}" for e in errors),
            errors=errors,
        ) from None
