"""Fencing by epoch: the values the ACD writes into Asterisk and reads back (pure).

A leader's epoch (docs/ha.md) travels with every offer, and Asterisk keeps the
highest epoch it was given in the global ``CTI_ACD_EPOCH``:

- ``CTI_OFFER = epoch,agent,ring seconds,device``: ``cti-acd-offer`` refuses an
  offer whose epoch is below the global (the caller goes back to the wait,
  ``UserEvent(CtiOfferRefused)``). The device comes last: a dial string may hold
  commas, the dialplan takes fields 4 onwards.
- The epoch is raised only through ``[cti-acd-epoch]`` (an Originate of
  ``EPOCH_CHANNEL`` with ``CTI_NEW_EPOCH``), which sets the global only when the
  new value is higher: a deposed leader's late raise cannot lower it.
- The heartbeat is per epoch: ``CTI_ACD_HEARTBEAT_<epoch>``; the dialplan reads
  the one of the epoch in force, so a deposed leader's heartbeat (or its 0 on
  stop) is read by nobody.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

EPOCH_GLOBAL = "CTI_ACD_EPOCH"
EPOCH_VARIABLE = "CTI_NEW_EPOCH"
EPOCH_CONTEXT = "cti-acd-epoch"
# Originated to raise the epoch; the call model ignores channels named so (cti/calls.py).
EPOCH_CHANNEL = f"Local/raise@{EPOCH_CONTEXT}/n"


def epoch_digits(value: str | None) -> int | None:
    """The epoch in a value as the dialplan reads it (``FILTER(0-9,...)``): its
    digits, or None when it has none."""
    digits = "".join(c for c in (value or "") if "0" <= c <= "9")
    return int(digits) if digits else None


def heartbeat_variable(epoch: int) -> str:
    """The global the leader of ``epoch`` keeps fresh (unix seconds)."""
    return f"CTI_ACD_HEARTBEAT_{_checked(epoch)}"


@dataclass(frozen=True, slots=True)
class OfferValue:
    epoch: int
    agent: str
    ring_s: int
    device: str

    def __str__(self) -> str:
        """``CTI_OFFER`` as ``cti-acd-offer`` reads it."""
        return f"{_checked(self.epoch)},{self.agent},{self.ring_s},{self.device}"


def offer_value(epoch: int, agent: str, ring_s: float, device: str) -> str:
    return str(OfferValue(epoch, agent, int(ring_s), device))


def parse_offer(value: str) -> OfferValue:
    """``CTI_OFFER`` back, field by field as the dialplan cuts it (ValueError if malformed)."""
    parts = value.split(",", 3)
    if len(parts) != 4:
        raise ValueError(f"CTI_OFFER needs epoch,agent,ring,device: {value!r}")
    epoch = epoch_digits(parts[0])
    if epoch is None or not parts[2].isdigit():
        raise ValueError(f"CTI_OFFER epoch and ring seconds must be digits: {value!r}")
    return OfferValue(epoch, parts[1], int(parts[2]), parts[3])


@dataclass(frozen=True, slots=True)
class Refusal:
    """``UserEvent(CtiOfferRefused)``: an offer of ``epoch`` reached a channel while
    Asterisk held ``current``."""
    channel: str
    call_id: str
    agent: str
    epoch: int | None
    current: int | None


def parse_refusal(headers: Mapping[str, str]) -> Refusal:
    return Refusal(channel=headers.get("Channel", ""), call_id=headers.get("Linkedid") or headers.get("Uniqueid", ""),
                   agent=headers.get("Agent", ""), epoch=epoch_digits(headers.get("Epoch")),
                   current=epoch_digits(headers.get("Current")))


def _checked(epoch: int) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"an epoch is a positive integer, not {epoch!r}")
    return epoch
