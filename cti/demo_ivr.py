"""Demo and test callers for the IVR: a simulated caller who presses keys.

``place_dtmf_call`` originates ``Local/p<patience>@cti-demo-dtmf/n`` into the
inbound entry with ``__DIGITS`` set: the ``;1`` half enters ``cti-inbound``
(and so the IVR) with the caller ID given; the ``;2`` half, the caller, sends
the keys with ``SendDTMF`` (``w`` pauses half a second, ``W`` a second) and
waits ``patience`` seconds. Demo only: it needs the ``cti-demo`` AMI user and
the ``cti-demo-dtmf`` context from ``asterisk-config/demo``.
"""
from __future__ import annotations

import re

from cti.ami import AmiClient
from cti.demo import PlacedCall, place_call

_KEYS = re.compile(r"^[0-9*#ABCDwW]*$")
_SOUND = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_/-]{0,99}$")


async def place_dtmf_call(ami: AmiClient, *, digits: str, caller_num: str, caller_name: str = "IVR test",
                          did: str = "5001", patience: int = 60, speak: list[str] | None = None,
                          context: str = "cti-inbound", variables: dict[str, str] | None = None) -> PlacedCall:
    """Originate one simulated inbound caller who sends ``digits`` once answered.

    With ``speak`` (Asterisk sound names), the caller then plays those sounds
    into the call (its "voice", e.g. for a voicemail) and hangs up, instead of
    waiting ``patience`` seconds. ``context`` is the inbound entry
    (``cti-inbound``, or ``cti-inbound-curl`` for the dialplan hooks);
    ``variables`` are set on the inbound channel.

    Returns once Asterisk accepted the Originate; the call's id (Linkedid) is
    the returned ``channel_id``. Raises ``ValueError`` for keys SendDTMF does
    not know or a sound name that is not one.
    """
    if not _KEYS.match(digits):
        raise ValueError(f"digits {digits!r}: only 0-9 * # A-D and the pauses w, W")
    values = {**(variables or {}), "__DIGITS": digits}
    if speak:
        if not all(_SOUND.match(s) for s in speak):
            raise ValueError(f"speak {speak!r}: sound names only (letters, digits, _ - /)")
        values["__SPEAK"] = "&".join(speak)
    return await place_call(ami, caller_num=caller_num, caller_name=caller_name, did=did, patience=patience,
                            variables=values, caller_context="cti-demo-dtmf", id_prefix="ivr",
                            context=context)
