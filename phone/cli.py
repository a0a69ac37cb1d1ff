"""``cti pjsip`` and ``cti phones ...``: the agents' phones from the command line.

    cti pjsip [--write FILE]         the PJSIP sections of the devices (stdout, or FILE written 0600)
    cti phones list                  devices, their kind and who sits at each
    cti phones add DEVICE [--webrtc] [--label TEXT]
                                     create a device (or give it a new secret); the password is
                                     read from standard input's first line when it is not a
                                     terminal, else made at random; printed once
    cti phones remove DEVICE

A running daemon takes devices changed here at its next start; while it runs,
use the API (``POST /api/phone/devices``), which provisions at once.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import asyncpg

from phone import phone_db
from phone.model import Device, DeviceError, check_device_id, device_of_dial, ha1, render_pjsip


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("pjsip", help="print or write the PJSIP sections of the agents' phones")
    p.add_argument("--write", metavar="FILE", help="write them to FILE (mode 0600) instead of printing")
    ph = sub.add_parser("phones", help="agents' phones (docs/softphone.md)").add_subparsers(
        dest="phones_command", required=True)
    ph.add_parser("list", help="devices and who sits at each")
    a = ph.add_parser("add", help="create a device, or give it a new secret")
    a.add_argument("device")
    a.add_argument("--webrtc", action="store_true", help="a browser phone (default: a SIP phone)")
    a.add_argument("--label", default="")
    r = ph.add_parser("remove", help="remove a device")
    r.add_argument("device")


async def run_pjsip(args: argparse.Namespace, dsn: str, realm: str, agent_devices: list[tuple[str, str]]) -> int:
    """``agent_devices``: (agent id, configured dial string) of the ACD's agents, to warn
    about agents whose PJSIP device is not provisioned."""
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=1, timeout=10)
    try:
        devices = await phone_db.devices(pool)
    finally:
        await pool.close()
    text = render_pjsip(devices, realm)
    known = {d.device_id for d in devices if d.ha1 is not None}
    for agent_id, dial in agent_devices:
        device = device_of_dial(dial)
        if device is not None and device not in known:
            print(f"cti pjsip: agent {agent_id}: device {device} has no credential here "
                  f"(cti phones add {device})", file=sys.stderr)
    if args.write:
        path = Path(args.write)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
        print(f"cti pjsip: {len(known)} device(s) written to {path}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


async def run_phones(args: argparse.Namespace, dsn: str, realm: str) -> int:
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=1, timeout=10)
    try:
        if args.phones_command == "list":
            seated = {a.device_id: a.agent_id for a in await phone_db.agents(pool) if a.device_id}
            for d in await phone_db.devices(pool):
                cred = "" if d.ha1 else " (no credential)"
                print(f"{d.device_id}\t{d.kind}\t{seated.get(d.device_id) or '-'}\t{d.label}{cred}")
            return 0
        try:
            device_id = check_device_id(args.device)
        except DeviceError as exc:
            print(f"cti phones: {exc}", file=sys.stderr)
            return 2
        if args.phones_command == "remove":
            if not await phone_db.delete_device(pool, device_id):
                print(f"cti phones: no device {device_id!r}", file=sys.stderr)
                return 1
            return 0
        password = "" if sys.stdin.isatty() else sys.stdin.readline().strip()
        if password and len(password) < 12:
            print("cti phones: a device password needs 12 characters or more", file=sys.stderr)
            return 2
        password = password or secrets.token_urlsafe(18)
        kind = "webrtc" if args.webrtc else "sip"
        await phone_db.save_device(pool, Device(device_id, kind, ha1(device_id, realm, password), args.label), realm)
        print(f"device {device_id} ({kind}), realm {realm}, password: {password}")
        return 0
    finally:
        await pool.close()
