"""Phone numbers: the one form every aggregate stores, compares and looks numbers up in.

Vietnam is home. A number written nationally (0912 345 678, (028) 3823-4567), with the
country code but no plus (84912345678, as carriers' systems often send it), with 00 for
the plus (0084…) or with the national 0 kept after the country code (+84 (0)91…)
becomes E.164: +84912345678. Other international numbers keep their plus. Short service
numbers (1900…, 1800…) have no E.164 form and stay as dialled. Spaces, dots, dashes,
slashes and brackets are ignored.

Hotlines and agents' mobiles must be reachable from anywhere, so they also ask for
`e164=True`: a full international number, and a national one of 9 or 10 digits after 0.
"""

from __future__ import annotations

import re

from domain.base import DomainError


class InvalidPhoneNumber(DomainError):
    """Not a phone number the service can dial or show."""


_SEPARATORS = re.compile(r"[\s().\-/]")
_DIGITS = re.compile(r"[0-9]{3,15}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# Vietnamese national significant numbers: 9 digits (mobiles), 10 (landlines since 2017).
_VIETNAM_NATIONAL_LENGTHS = (9, 10)


def normalize_phone_number(
    raw: str, error: type[DomainError] = InvalidPhoneNumber, *, e164: bool = False
) -> str:
    """`raw` in the stored form of the module docstring, or `error` when it is no number.

    A number has 3 to 15 ASCII digits, after an optional + (or 00). With `e164`, short
    numbers and badly sized Vietnamese national ones are refused too.
    """
    if not isinstance(raw, str):
        raise error("a phone number is text")
    written = _SEPARATORS.sub("", raw)
    if written.startswith("00"):
        written = "+" + written[2:]
    plus = written.startswith("+")
    digits = written[1:] if plus else written
    if not _DIGITS.fullmatch(digits):
        raise error(f"a phone number has 3 to 15 digits: {raw!r}")
    if plus:
        # "+84 (0)91…": the national 0 written after the country code.
        number = "+84" + digits[3:] if digits.startswith("840") else "+" + digits
    elif digits.startswith("0"):
        if e164 and len(digits) - 1 not in _VIETNAM_NATIONAL_LENGTHS:
            raise error(f"{raw!r} is not a Vietnamese number (0 and 9 or 10 digits)")
        number = "+84" + digits[1:]
    elif digits.startswith("84") and len(digits) - 2 in _VIETNAM_NATIONAL_LENGTHS:
        number = "+" + digits
    else:
        number = digits  # a short service number, as dialled
    if e164 and not _E164.fullmatch(number):
        raise error(f"{raw!r} is not a phone number (e.g. 0912345678 or +84…)")
    return number
