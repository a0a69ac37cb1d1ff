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
import uuid

from cti.ami import AmiClient
from cti.demo import PlacedCall

_KEYS = re.compile(r"^[0-9*#ABCDwW]*$")


async def place_dtmf_call(ami: AmiClient, *, digits: str, caller_num: str, caller_name: str = "IVR test",
                          did: str = "5001", patience: int = 60) -> PlacedCall:
    """Originate one simulated inbound caller who sends ``digits`` once answered.

    Returns once Asterisk accepted the Originate; the call's id (Linkedid) is
    the returned ``channel_id``. Raises ``ValueError`` for keys SendDTMF does
    not know.
    """
    if not _KEYS.match(digits):
        raise ValueError(f"digits {digits!r}: only 0-9 * # A-D and the pauses w, W")
    channel_id = f"ivr-{uuid.uuid4().hex[:16]}"
    await ami.send("Originate", {
        "Channel": f"Local/p{int(patience)}@cti-demo-dtmf/n",
        "Context": "cti-inbound",
        "Exten": did,
        "Priority": "1",
        "CallerID": '"{}" <{}>'.format(caller_name.replace("\\", "\\\\").replace('"', '\\"'), caller_num),
        "Variable": f"__DIGITS={digits}",
        "ChannelId": channel_id,
        "OtherChannelId": channel_id + "-2",
        "Timeout": "30000",
        "Async": "true",
    }, shape="single")
    return PlacedCall(channel_id, caller_num, caller_name, did)
