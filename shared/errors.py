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
``extra`` and the problem travel as JSON *strings*: Nameko's ``safe_for_serialization`` turns every value
in ``exc_args`` that is not a string, list or dict into ``str(value)`` (``None`` -> ``"None"``, ``1001`` ->
``"1001"``), while a string passes untouched, so numbers, ``null``, lists and objects keep their JSON types.

The rule for "not allowed": **409** when the request is valid but the resource's current state does not
allow it (``NotAllowedInThisState``; a stage move the machine forbids is its special case
``IllegalTransition``; a stale ``expected_version`` is ``VersionConflict``); **422** when the request itself
is wrong and the client can fix it (``InvalidRequest``, with one ``errors`` entry per field, built by
``field_error``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar
from uuid import UUID

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
        self.detail = detail
        self.extra = extra
        self._set_args({"type": self.type, "title": self.title, "status": self.status, "kinds": kinds})

    def _set_args(self, problem: Mapping[str, Any]) -> None:
        """``args`` as they cross the wire: the detail, then ``extra`` and the problem as JSON strings."""
        self.args = (self.detail, _to_json(self.extra), _to_json(problem))

    def __str__(self) -> str:
        return self.detail


class NotFound(DomainError):
    status = 404
    title = "Not found"


class NotAllowedInThisState(DomainError):
    """The request is valid, but the resource's current state does not allow it (an edit of an archived or
    shipped order, money on a cancelled order...): 409, whatever the action."""

    status = 409
    title = "Not allowed in this state"


class IllegalTransition(NotAllowedInThisState):
    """A stage move the stage machine does not allow from the order's stage (names ``allowed`` moves)."""

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


def _json_default(value: Any) -> Any:
    """What JSON cannot say natively, said the way the API says it (money as a decimal string)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def _to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _member(args: list[Any], index: int) -> Mapping[str, Any] | None:
    """``args[index]`` as a mapping: a JSON string (what ``DomainError`` sends) or, from a sender that built
    the payload by hand, a mapping as it is."""
    if len(args) <= index:
        return None
    value = args[index]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, Mapping) else None


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
    problem = _member(args, 2)
    if problem is not None and not problem.get("type"):
        problem = None
    if problem is None:
        by_name = {cls.__name__: cls for cls in shared.values()}
        known = by_name.get(str(error.get("exc_type") or ""))
        if known is None:
            return None
        problem = {"type": known.type, "title": known.title, "status": known.status, "kinds": [known.type]}
    kinds = [str(k) for k in problem.get("kinds") or [problem["type"]]]
    base = next((shared[k] for k in kinds if k in shared), DomainError)
    detail = args[0] if args else error.get("value")
    extra = _member(args, 1) or {}
    exc = base(str(detail or problem.get("title") or base.title), **{str(k): v for k, v in extra.items()
                                                                       if k != "detail"})
    exc.type = str(problem["type"])
    exc.title = str(problem.get("title") or base.title)
    exc.status = _status(problem.get("status"), base.status)
    exc._set_args({"type": exc.type, "title": exc.title, "status": exc.status, "kinds": kinds})
    return exc


def _status(value: Any, default: int) -> int:
    """A payload built by hand may carry the status as a string; anything but a 4xx/5xx keeps the default."""
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


LOCATIONS = ("body", "query", "path", "header", "cookie")
UNSPECIFIED_CODE = "invalid"


def field_error(field: str, reason: str, code: str, location: str = "body") -> dict[str, str]:
    """One entry of a problem's ``errors``, in the shape the published ``ValidationProblem`` promises.

    ``field``: the path of the value (``items[0].unit_price``, ``""`` for the whole body); ``reason``: why,
    for a person; ``code``: why, for a program (``too_many_decimals``, ``unknown_currency``, or pydantic's
    error type such as ``greater_than``); ``location``: where the field was sent (``body``, ``query``,
    ``path`` or ``header``). Every ``errors=[...]`` of every service is built with this function.
    """
    if location not in LOCATIONS:
        raise ValueError(f"location must be one of {', '.join(LOCATIONS)}, not {location!r}")
    return {"field": field, "location": location, "reason": reason, "code": code}


def complete_errors(errors: Iterable[Any]) -> list[dict[str, str]]:
    """``errors`` entries with every member of ``field_error``: an entry built by hand without ``location``
    or ``code`` (a sender not yet using ``field_error``) gets ``body`` and ``invalid``. The gateway passes
    every problem's ``errors`` through this, so no answer breaks its published schema."""
    out = []
    for entry in errors:
        e = entry if isinstance(entry, Mapping) else {"reason": str(entry)}
        location = str(e.get("location") or "body")
        out.append(field_error(str(e.get("field") or ""), str(e.get("reason") or "invalid value"),
                               str(e.get("code") or UNSPECIFIED_CODE), location if location in LOCATIONS else "body"))
    return out


def describe(errors: Iterable[Mapping[str, Any]]) -> str:
    """``errors`` as one sentence for a problem's ``detail``: ``items[0].quantity: must be > 0; …``."""
    return "; ".join(f"{e.get('field') or 'body'}: {e.get('reason')}" for e in errors)


def field_errors(exc: ValidationError, location: str = "body") -> list[dict[str, str]]:
    """A pydantic ``ValidationError`` as the ``errors`` list of an ``InvalidRequest``; ``code`` is pydantic's
    error type (``missing``, ``greater_than``...), as the gateway reports its own validation errors.

    Whole-body errors (e.g. "give either a note or skip=true") get the field ``""``.
    """
    errors = []
    for err in exc.errors(include_url=False):
        reason = err["msg"].removeprefix("Value error, ")
        errors.append(field_error(field_path(err["loc"]), reason, str(err["type"]), location))
    return errors


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, what: str = "request", location: str | None = None) -> M:
    """Validate an RPC argument with its contract model; field errors name the field (items[0].quantity).

    ``location`` is where an HTTP client sent the fields: by default the model's ``problem_location`` class
    attribute if it has one (a query model says ``"query"``), else ``"body"``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc, location or str(getattr(model, "problem_location", "body")))
        raise InvalidRequest(f"The {what} is not valid: " + describe(errors), errors=errors) from None
