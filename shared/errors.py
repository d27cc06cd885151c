"""Errors every service raises for a client, and how they cross the wire to the gateway.

A use case that refuses a request raises a ``DomainError`` subclass. The class says what kind of problem it
is, as class attributes: ``status`` (the HTTP status), ``title`` (a short summary) and ``type`` (a
``urn:oms:problem:<slug>`` URN; by default the slug is the class name, ``ProviderFailed`` ->
``provider-failed``). The instance says what happened: a human sentence (``detail``) plus JSON-able
``extra`` fields (order id, stage, allowed moves, field errors).

Over Nameko RPC an exception travels as ``exc_type``, ``exc_path``, ``exc_args`` and ``value``
(``nameko.exceptions.serialize``). So that the gateway can answer for any error class without importing
it, a ``DomainError`` keeps everything a problem document needs in its ``args``:
``[detail, extra, {"type", "title", "status", "kinds"}]`` (``kinds``: the types of the class and of its
``DomainError`` ancestors, most specific first). ``from_wire`` rebuilds the error on the other side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

PROBLEM_TYPE_PREFIX = "urn:oms:problem:"


def slugify(name: str) -> str:
    """``IllegalTransition`` -> ``illegal-transition``: the default slug of an error class's problem type."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


class DomainError(Exception):
    """A request the service refuses; the client gets it as an RFC 9457 problem (see the module docstring).

    Subclasses set ``status`` and ``title`` (and ``type`` only to keep a URN other than the class name's),
    and keep this constructor: ``SomeError(detail, **extra)``."""

    status: int = 400
    title: str = "Bad request"
    type: str = PROBLEM_TYPE_PREFIX + "domain-error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" not in cls.__dict__:
            cls.type = PROBLEM_TYPE_PREFIX + slugify(cls.__name__)

    def __init__(self, detail: str, **extra: Any) -> None:
        kinds = [c.type for c in self.__class__.__mro__ if isinstance(c, type) and issubclass(c, DomainError)]
        problem = {"type": self.type, "title": self.title, "status": self.status, "kinds": kinds}
        super().__init__(detail, extra, problem)
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


# ------------------------------------------------------------------------------------------------ the wire
def to_wire(exc: DomainError) -> dict[str, Any]:
    """The error as Nameko sends it (``nameko.exceptions.serialize``), for answers built by hand (a batched
    call answers each item with ``{"error": to_wire(exc)}``)."""
    cls = exc.__class__
    return {
        "exc_type": cls.__name__,
        "exc_path": f"{cls.__module__}.{cls.__name__}",
        "exc_args": list(exc.args),
        "value": exc.detail,
    }


def _shared_kinds() -> dict[str, type[DomainError]]:
    """The error classes of this module by problem type: the ones a receiver can rebuild as themselves."""
    found: dict[str, type[DomainError]] = {}
    todo: list[type[DomainError]] = [DomainError]
    while todo:
        cls = todo.pop()
        if cls.__module__ == __name__:
            found[cls.type] = cls
            todo.extend(cls.__subclasses__())
    return found


def from_wire(error: Mapping[str, Any]) -> DomainError | None:
    """The ``DomainError`` a Nameko error payload describes, or None if it is not one.

    The problem (type, title, status) comes from the payload, never from a list of classes: an error class
    of any service is answered as itself. The instance is of the most specific class of this module among
    its ``kinds`` (a service's ``OrderGone(NotFound)`` is still caught by ``except NotFound``). A payload
    without the problem member (a sender that builds ``[detail, extra]`` by hand) is understood for the
    classes of this module, by name.
    """
    args = list(error.get("exc_args") or [])
    shared = _shared_kinds()
    problem = args[2] if len(args) > 2 and isinstance(args[2], Mapping) and args[2].get("type") else None
    if problem is None:
        by_name = {cls.__name__: cls for cls in shared.values()}
        known = by_name.get(str(error.get("exc_type") or ""))
        if known is None:
            return None
        problem = {"type": known.type, "title": known.title, "status": known.status, "kinds": [known.type]}
    kinds = [str(k) for k in problem.get("kinds") or [problem["type"]]]
    base = next((shared[k] for k in kinds if k in shared), DomainError)
    detail = args[0] if args else error.get("value")
    extra = args[1] if len(args) > 1 and isinstance(args[1], Mapping) else {}
    exc = base(str(detail or problem.get("title") or base.title), **{str(k): v for k, v in extra.items()
                                                                       if k != "detail"})
    exc.type = str(problem["type"])
    exc.title = str(problem.get("title") or base.title)
    exc.status = _status(problem.get("status"), base.status)
    exc.args = (exc.detail, exc.extra, {"type": exc.type, "title": exc.title, "status": exc.status, "kinds": kinds})
    return exc


def _status(value: Any, default: int) -> int:
    """Nameko sends numbers in ``exc_args`` as strings; anything but a 4xx/5xx status keeps the default."""
    try:
        status = int(value)
    except (TypeError, ValueError):
        return default
    return status if 400 <= status <= 599 else default


# ------------------------------------------------------------------------------------------------ validation
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
