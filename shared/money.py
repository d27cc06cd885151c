"""Money, once for every service: ISO 4217 currencies, their minor units, exact ``Decimal`` amounts.

Every service quantizes, parses and prints amounts with these functions, so an order that one service
accepts is one every other service can read, to the last minor unit. The currency table is not typed out
here: codes and minor units come from the ``iso4217`` package, which follows the ISO 4217 maintenance
agency's published list. A code that is not on that list, or that names no money (gold ``XAU``, the
testing code ``XTS``: ISO gives them no minor unit), is refused with a reason naming the field.

Amounts are ``Decimal`` and travel as strings (``"12.50"``). A binary float is refused, never converted:
it has already lost the amount the customer saw. Amounts given by someone (a price, a refund, a provider's
report) finer than the currency's minor unit are refused (``10.005 EUR``); only amounts *computed* here
(a share of a discount, a pro-rata refund) are rounded, with a rounding mode the caller names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from functools import lru_cache
from typing import Annotated, Any

import iso4217
from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

ZERO = Decimal(0)


class MoneyError(ValueError):
    """An amount or currency that cannot be money (unknown currency, too many decimals, not a number)."""


# --------------------------------------------------------------------------------------------------------
# Currencies (ISO 4217, from the iso4217 package)
# --------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _minor_units() -> Mapping[str, int]:
    return {c.code: c.exponent for c in iso4217.Currency if c.exponent is not None}


CURRENCIES: Mapping[str, int] = _minor_units()
"""ISO 4217 code -> minor unit (decimal places) of every currency money can be counted in."""


def currency_name(code: str) -> str:
    return iso4217.Currency(normalize_currency(code)).currency_name


def normalize_currency(currency: object, *, field: str = "currency") -> str:
    """Upper-case and check an ISO 4217 code; a typo or a made-up code must not become a new currency."""
    if not isinstance(currency, str):
        raise MoneyError(f"{field}: must be a 3-letter ISO 4217 code, got {type(currency).__name__}")
    code = currency.strip().upper()
    if code not in CURRENCIES:
        if len(code) == 3 and code.isalpha() and code in iso4217.Currency.__members__:
            raise MoneyError(f"{field}: {code} is an ISO 4217 code but not a currency money can be counted in")
        raise MoneyError(f"{field}: {currency!r} is not an ISO 4217 currency code")
    return code


def minor_unit(currency: str) -> int:
    """Decimal places of the currency's minor unit: EUR 2, JPY 0, TND 3, CLF 4."""
    return CURRENCIES[normalize_currency(currency)]


def _exponent(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_unit(currency))


# --------------------------------------------------------------------------------------------------------
# Amounts
# --------------------------------------------------------------------------------------------------------


def to_decimal(value: object, *, field: str = "amount") -> Decimal:
    """Turn an ``int``, ``str`` or ``Decimal`` into a finite ``Decimal``; refuse floats.

    Floats raise ``TypeError`` (the caller used the wrong type, not a wrong value). Strings are accepted
    because JSON carries money as strings.
    """
    if isinstance(value, (bool, float)):
        raise TypeError(f"{field}: {type(value).__name__} is not accepted for money, use Decimal or str")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(f"{field}: {value!r} is not a decimal number") from None
    else:
        raise TypeError(f"{field}: {type(value).__name__} is not accepted for money, use Decimal or str")
    if not result.is_finite():
        raise MoneyError(f"{field}: {value!r} is not a finite amount")
    return result


def quantize(amount: Decimal | int | str, currency: str, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Write ``amount`` with exactly the currency's decimal places (``12.5`` EUR -> ``12.50``).

    On an amount that already fits the currency this only adds trailing zeros; it rounds only amounts
    computed here (allocations, pro-rata shares), with ``rounding``.
    """
    with localcontext() as ctx:
        ctx.prec = 60
        return to_decimal(amount).quantize(_exponent(currency), rounding=rounding)


def fits(amount: Decimal, currency: str) -> bool:
    """True if ``amount`` has no more decimals than the currency's minor unit."""
    return quantize(amount, currency, ROUND_DOWN) == amount


def parse_amount(value: object, currency: str, *, field: str = "amount") -> Decimal:
    """Validate an amount given by someone (request, provider, order) and return it quantized.

    Unlike :func:`quantize`, precision finer than the minor unit is an error: ``"1.005"`` EUR is refused
    instead of becoming ``1.01``, because whoever typed it meant something that cannot be paid.
    """
    amount = to_decimal(value, field=field)
    code = normalize_currency(currency)
    if not fits(amount, code):
        raise MoneyError(f"{field}: {amount} has more decimals than {code} allows ({minor_unit(code)})")
    return quantize(amount, code, ROUND_DOWN)


def format_amount(amount: Decimal, currency: str) -> str:
    """How an amount is written in JSON, documents and messages: positional, the currency's places."""
    return f"{quantize(amount, currency):f}"


@dataclass(frozen=True, slots=True)
class Money:
    """A ``Decimal`` amount and its currency, exact in the minor unit; arithmetic only within a currency."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        currency = normalize_currency(self.currency)
        object.__setattr__(self, "currency", currency)
        object.__setattr__(self, "amount", parse_amount(self.amount, currency))

    @classmethod
    def of(cls, value: Decimal | int | str, currency: str) -> Money:
        return cls(to_decimal(value), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(ZERO, currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise MoneyError(f"currency mismatch: {self.currency} vs {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __str__(self) -> str:
        return f"{format_amount(self.amount, self.currency)} {self.currency}"

    def as_json(self) -> dict[str, str]:
        """Amount as a string, currency alongside."""
        return {"amount": format_amount(self.amount, self.currency), "currency": self.currency}


def allocate_proportionally(amount: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """Split ``amount`` across ``weights`` so the parts sum to ``amount`` exactly (largest remainder).

    Each part is first rounded toward zero to the minor unit; the minor units left over are then handed out
    one by one to the parts with the largest discarded remainders (ties: earlier position first). If every
    weight is zero the amount is split evenly by count, so that nothing is lost.
    """
    amount = parse_amount(amount, currency)
    if not weights:
        if amount != ZERO:
            raise MoneyError("cannot allocate a non-zero amount over no lines")
        return []
    ws = [to_decimal(w, field="weight") for w in weights]
    if any(w < 0 for w in ws):
        raise MoneyError("allocation weights must not be negative")
    total_weight = sum(ws, ZERO)
    if total_weight == ZERO:
        ws = [Decimal(1)] * len(ws)
        total_weight = Decimal(len(ws))
    exp = _exponent(currency)
    sign = Decimal(1) if amount >= 0 else Decimal(-1)
    magnitude = abs(amount)
    with localcontext() as ctx:
        ctx.prec = 60
        exact = [magnitude * w / total_weight for w in ws]
        floors = [e.quantize(exp, rounding=ROUND_DOWN) for e in exact]
        remainders = [e - f for e, f in zip(exact, floors, strict=True)]
    left = int(((magnitude - sum(floors, ZERO)) / exp).to_integral_value())
    order = sorted(range(len(ws)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        floors[i] += exp
    return [sign * f for f in floors]


# --------------------------------------------------------------------------------------------------------
# Pydantic field types (request bodies, views and events of every service)
# --------------------------------------------------------------------------------------------------------


def _refuse_float(value: Any) -> Any:
    """Refuse binary floats before pydantic turns them into a Decimal that is not the price meant."""
    if isinstance(value, float | bool):
        raise ValueError('amounts must be given as a decimal string such as "12.50" (or an integer), not a float')
    return value


def _plain_decimal(value: Decimal) -> Decimal:
    """``1E+2`` is a valid Decimal but a poor price string; keep amounts in positional notation."""
    if value.as_tuple().exponent > 0:  # type: ignore[operator]
        return value.quantize(Decimal(1))
    return value


MAX_MINOR_UNIT = max(CURRENCIES.values())

_AMOUNT_JSON_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "pattern": rf"^\d+(\.\d{{1,{MAX_MINOR_UNIT}}})?$",
        "examples": ["12.50"],
        "description": "Decimal amount as a string, with at most the currency's decimal places (ISO 4217); "
        "JSON floats are refused.",
    }
)

Amount = Annotated[
    Decimal,
    BeforeValidator(_refuse_float),
    Field(ge=0, max_digits=18, decimal_places=MAX_MINOR_UNIT, allow_inf_nan=False),
    AfterValidator(_plain_decimal),
    _AMOUNT_JSON_SCHEMA,
]
"""A non-negative amount given by a client, checked against its currency by the service that reads it."""

MoneyValue = Annotated[Decimal, _AMOUNT_JSON_SCHEMA]
"""An amount in a view or event: computed by a service, already quantized to the currency's minor unit."""


def _currency_code(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return normalize_currency(value, field="currency")
    except MoneyError as exc:
        raise ValueError(str(exc).removeprefix("currency: ")) from None


CurrencyCode = Annotated[
    str,
    BeforeValidator(_currency_code),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Z]{3}$",
            "examples": ["EUR", "JPY", "TND"],
            "description": "ISO 4217 currency code.",
        }
    ),
]
"""An ISO 4217 code of a currency with a minor unit; anything else is refused naming the field."""
