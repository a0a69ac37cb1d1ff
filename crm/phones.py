"""Phone numbers in E.164, pure: the one normalisation every lookup and import uses.

E.164 here is ``+`` then 2 to 15 digits, no leading 0 after the +. A caller ID
is normalised the same way before it is looked up, so ``0049 30 1234``,
``+49-30-1234`` and (with the national prefix known) ``030 1234`` all give
``+49301234``.
"""
from __future__ import annotations

import re

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def normalise_e164(raw: str | None, country_code: str | None = None) -> str | None:
    """The E.164 form of a dialled or presented number, or None when it has none.

    ``+`` or ``00`` starts an international number; with ``country_code`` (e.g.
    "49") a number starting with a single ``0`` is national. Spaces, dashes,
    dots and brackets are ignored; any other character means "not a number".
    """
    if not raw:
        return None
    text = re.sub(r"[\s\-.()/]", "", raw)
    if text.startswith("+"):
        digits = text[1:]
    elif text.startswith("00"):
        digits = text[2:]
    elif text.startswith("0") and country_code:
        digits = country_code + text[1:]
    else:
        digits = text
    candidate = "+" + digits
    return candidate if digits.isdigit() and _E164.match(candidate) else None
