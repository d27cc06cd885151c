"""Errors every service raises and the gateway understands.

They cross process boundaries over Nameko RPC (serialized as ``exc_type`` + ``exc_args``), so each one
carries a human sentence (``detail``) plus JSON-able ``extra`` fields (order id, stage, allowed moves,
field errors) that the gateway turns into an RFC 9457 problem document.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    title = "Bad request"

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


DOMAIN_ERRORS: dict[str, type[DomainError]] = {
    cls.__name__: cls
    for cls in (DomainError, NotFound, IllegalTransition, VersionConflict, InvalidRequest, IdempotencyMismatch)
}
