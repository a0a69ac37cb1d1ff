"""Several Asterisk nodes: what acts on which node. An IVR session speaks for the node it
comes from (its ids qualified as the call model's); the phones' files go to every node
that reads one, and each node reloads its own (cti.nodes.session_node, provision_targets)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.config import Settings
from cti.nodes import NodeSpec, node_of_id, provision_targets, session_node
from tests.unit.test_ivr_service import GOOD

ADDR = {"a": {"127.0.0.1", "10.77.0.1"}, "b": {"10.77.0.2"}, "c": {"10.77.0.2"}}


@pytest.mark.parametrize("peer, call_id, node", [
    ("127.0.0.1", "1733.1", "a"),              # a's address, a raw id (no systemname): a's
    ("10.77.0.1", "a-1733.1", "a"),            # a's id from a's address
    ("::ffff:127.0.0.1", "1733.1", "a"),       # the same address spelled as IPv6
    ("10.77.0.2", "b-1733.1", "b"),            # b and c share a host: the id says whose
    ("10.77.0.2", "c-1733.1", "c"),
    ("10.77.0.2", "1733.1", None),             # ...and without a systemname it cannot
    ("127.0.0.1", "b-1733.1", None),           # b's call claimed from a's address
    ("192.0.2.9", "1733.1", None),             # no node there
    ("192.0.2.9", "a-1733.1", None),
    (None, "a-1733.1", None),                  # no address known
])
def test_a_session_speaks_for_the_node_at_its_address(peer, call_id, node):
    assert session_node(peer, call_id, ADDR) == node


_addr = st.sampled_from(["127.0.0.1", "10.0.0.1", "10.0.0.2", "::1", "::ffff:10.0.0.1"])


@given(addresses=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sets(_addr, max_size=3), min_size=1),
       peer=st.none() | _addr, head=st.sampled_from(["", "a-", "b-", "c-", "x-"]))
def test_a_session_s_node_is_one_at_its_address_and_the_one_its_id_names_if_any(addresses, peer, head):
    call_id = head + "1733.4"
    found = session_node(peer, call_id, addresses)

    def norm(a: str) -> str:
        return a.removeprefix("::ffff:")

    at = {n for n, addrs in addresses.items() if peer is not None and norm(peer) in {norm(a) for a in addrs}}
    named = node_of_id(call_id, addresses)
    want = (named if named in at else None) if named is not None else (next(iter(at)) if len(at) == 1 else None)
    assert found == want
    assert found is None or peer is not None and found in at


def _spec(name: str, conf: str | None = None) -> NodeSpec:
    return NodeSpec(name, "h", 5038, "cti", "s", conf)


def test_each_node_reads_its_own_file_or_the_shared_one():
    assert provision_targets([_spec("a")], "/etc/asterisk/pjsip.d/cti.conf") == {"a": "/etc/asterisk/pjsip.d/cti.conf"}
    assert provision_targets([_spec("a"), _spec("b", "/mnt/b/cti.conf")], "/shared/cti.conf") == \
        {"a": "/shared/cti.conf", "b": "/mnt/b/cti.conf"}
    assert provision_targets([_spec("a"), _spec("b", "/mnt/b/cti.conf")], None) == {"b": "/mnt/b/cti.conf"}
    assert provision_targets([_spec("a"), _spec("b")], None) == {}


def test_a_node_s_own_file_is_a_setting_of_the_node(monkeypatch):
    from cti.nodes import node_specs

    monkeypatch.delenv("CTI_AMI_NODES", raising=False)
    s = Settings(ami_secret="x9y8z7w6v5", ami_nodes=[{"name": "a", "secret": "x9y8z7w6v5"},
                                                    {"name": "b", "secret": "x9y8z7w6v5",
                                                     "phone_pjsip_conf": "/mnt/b/cti.conf"}])
    assert [n.phone_pjsip_conf for n in node_specs(s)] == [None, "/mnt/b/cti.conf"]


# -- the IVR: a session of node b ------------------------------------------------------------



TWO = {"a": {"127.0.0.1"}, "b": {"10.77.0.2"}}


class _Session:
    """A FastAGI session as Asterisk node b opens it (its raw ids: no systemname)."""

    def __init__(self, peer: str | None, uniqueid: str = "1733.1", channel: str = "PJSIP/trunk-00000001") -> None:
        self.env = {"agi_uniqueid": uniqueid, "agi_channel": channel, "agi_callerid": "+4930999888"}
        self.peer = peer
        self.lines: list[str] = []

    def arg(self, n: int) -> str | None:
        return {1: "1733.1", 2: "7001"}.get(n)

    async def command(self, line: str, timeout: float) -> Any:
        from ivr.interpreter import AgiReply

        self.lines.append(line)
        return AgiReply(200, "0", None, {})


def _b_model():
    from cti.calls import CallModel

    model = CallModel()
    model.feed({"Event": "Newchannel", "Uniqueid": "b-1733.1", "Linkedid": "b-1733.1",
                "Channel": "PJSIP/trunk-00000001", "CallerIDNum": "+4930999888"}, 1.0)
    return model


async def test_an_ivr_session_of_node_b_walks_b_s_call_under_the_model_s_ids(tmp_path: Path):
    from ivr.service import IvrService, leg_is_live

    path = tmp_path / "menus.toml"
    path.write_text(GOOD)
    model = _b_model()
    checked: list[tuple[str, str]] = []
    reported: list[tuple[str, str]] = []

    async def verify(call_id: str, uniqueid: str, channel: str) -> bool:
        checked.append((call_id, uniqueid))
        return leg_is_live(model, call_id, uniqueid, channel)

    service = IvrService(path, clock=lambda: 100.0, verify=verify,
                         node_of=lambda peer, call_id: session_node(peer, call_id, TWO),
                         on_steps=lambda call_id, steps: reported.extend((call_id, s.action) for s in steps))
    stranger = _Session("192.0.2.9")
    await service.handle(stranger)  # type: ignore[arg-type]
    assert stranger.lines == ['SET VARIABLE CTI_IVR_ERROR "unknown channel"'] and checked == []
    from_a = _Session("127.0.0.1")            # a's address: a's ids, which are no call of b's
    await service.handle(from_a)  # type: ignore[arg-type]
    assert from_a.lines == ['SET VARIABLE CTI_IVR_ERROR "unknown channel"'] and checked == [("a-1733.1", "a-1733.1")]
    assert service.refused == 2 and reported == []
    await service.handle(_Session("10.77.0.2"))  # type: ignore[arg-type]
    assert checked[-1] == ("b-1733.1", "b-1733.1")
    assert reported and {cid for cid, _ in reported} == {"b-1733.1"}


async def test_with_one_node_an_ivr_session_s_ids_are_as_asterisk_gives_them(tmp_path: Path):
    from ivr.service import IvrService

    path = tmp_path / "menus.toml"
    path.write_text(GOOD)
    reported: list[str] = []
    service = IvrService(path, clock=lambda: 100.0, on_steps=lambda call_id, steps: reported.append(call_id))
    await service.handle(_Session(None))  # type: ignore[arg-type]
    assert set(reported) == {"1733.1"}


# -- the phones' provisioning on every node --------------------------------------------------

class _Ami:
    def __init__(self, connected: bool = True, fail: bool = False) -> None:
        self.connected = connected
        self.fail = fail
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, action: str, headers: dict[str, Any] | None = None, *, shape: str,
                   timeout: float | None = None) -> Any:
        from cti.errors import AmiActionFailed

        self.sent.append((action, headers or {}))
        if self.fail and action == "Originate":
            raise AmiActionFailed(action, "refused")
        return SimpleNamespace(response=SimpleNamespace(headers={"Value": ""}))


def _reloads(ami: _Ami) -> int:
    return sum(1 for a, h in ami.sent if a == "Originate" and h["Channel"] == "Local/pjsip@cti-phone-reload/n")


def _phones(monkeypatch, tmp_path: Path, **amis: _Ami):
    from cti.daemon import Core
    from phone.gateway import PhoneService

    monkeypatch.delenv("CTI_AMI_NODES", raising=False)
    nodes = [{"name": "a", "secret": "x9y8z7w6v5"}, {"name": "b", "secret": "x9y8z7w6v5"},
             {"name": "c", "secret": "x9y8z7w6v5", "phone_pjsip_conf": str(tmp_path / "c.conf")}]
    core = Core(Settings(ami_secret="x9y8z7w6v5", ami_nodes=nodes, phone_pjsip_conf=str(tmp_path / "shared.conf")))
    core.multi, core.nodes, core.ami = True, dict(amis), amis["a"]
    return PhoneService(core, None)


async def test_a_change_is_written_to_each_node_s_file_and_read_by_every_node_connected(monkeypatch, tmp_path):
    a, b, c = _Ami(), _Ami(connected=False), _Ami()
    phones = _phones(monkeypatch, tmp_path, a=a, b=b, c=c)
    await phones._provision()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.conf", "shared.conf"]
    assert (tmp_path / "c.conf").stat().st_mode & 0o777 == 0o600
    assert (_reloads(a), _reloads(b), _reloads(c)) == (1, 0, 1)        # b is away: at its resync
    await phones.on_node_resync("b", b.__class__())                     # b back (a new connection)
    await phones.on_node_resync("c", c)
    assert (_reloads(a), _reloads(c)) == (1, 2)


async def test_a_node_s_resync_reloads_that_node_only_and_a_failure_there_still_lists_its_phones(
        monkeypatch, tmp_path):
    a, b, c = _Ami(), _Ami(fail=True), _Ami()
    phones = _phones(monkeypatch, tmp_path, a=a, b=b, c=c)
    await phones.on_node_resync("b", b)
    assert (_reloads(a), _reloads(b), _reloads(c)) == (0, 1, 0)
    assert phones.listed                                  # its contacts read all the same
    await phones.on_resync([])                            # the primary's own reconnect
    assert (_reloads(a), _reloads(b), _reloads(c)) == (1, 1, 0)


async def test_a_failed_reload_on_one_node_does_not_keep_the_others_from_theirs(monkeypatch, tmp_path):
    from cti.errors import AmiError

    a, b, c = _Ami(fail=True), _Ami(), _Ami()
    phones = _phones(monkeypatch, tmp_path, a=a, b=b, c=c)
    with pytest.raises(AmiError):
        await phones._reload()
    assert (_reloads(a), _reloads(b), _reloads(c)) == (1, 1, 1)


# -- a recording is read from its call's node -------------------------------------------------

def test_a_recording_is_read_from_the_directory_of_its_call_s_node(tmp_path):
    from recording.files import RecordingDirs, resolve
    from recording.policy import file_name

    dirs = RecordingDirs(tmp_path / "common", {"b": tmp_path / "b"})
    for d in ("common", "b"):
        (tmp_path / d).mkdir()
    assert resolve(dirs, file_name("b-1795335442.7")) == (tmp_path / "b" / "b-1795335442.7.wav").resolve()
    assert resolve(dirs, file_name("b-1795335442.7", 2)).parent == (tmp_path / "b").resolve()
    assert resolve(dirs, file_name("a-1795335442.7")).parent == (tmp_path / "common").resolve()   # a: no own
    assert resolve(dirs, file_name("1795335442.7")).parent == (tmp_path / "common").resolve()     # one node
    assert resolve(dirs, "bb-1.wav").parent == (tmp_path / "common").resolve()       # not a node's prefix
    with pytest.raises(ValueError):
        resolve(dirs, "b-../../etc/passwd")


def test_node_recording_directories_come_only_with_several_nodes(monkeypatch):
    from recording.files import recording_dirs

    monkeypatch.delenv("CTI_AMI_NODES", raising=False)
    one = Settings(ami_secret="x9y8z7w6v5", recording_dir="/var/spool/rec", recording_read_dir="/srv/rec")
    assert recording_dirs(one).default == Path("/srv/rec") and recording_dirs(one).nodes == {}
    two = Settings(ami_secret="x9y8z7w6v5", recording_dir="/var/spool/rec",
                   ami_nodes=[{"name": "a", "secret": "x9y8z7w6v5"},
                              {"name": "b", "secret": "x9y8z7w6v5", "recording_read_dir": "/mnt/b-rec"}])
    dirs = recording_dirs(two)
    assert dirs.default == Path("/var/spool/rec") and dirs.nodes == {"b": Path("/mnt/b-rec")}


@pytest.mark.parametrize("field", ["phone_pjsip_conf", "recording_read_dir"])
@pytest.mark.parametrize("value", ["relative/path", "/with\nnewline"])
def test_a_node_s_paths_are_absolute(monkeypatch, field, value):
    from pydantic import ValidationError

    monkeypatch.delenv("CTI_AMI_NODES", raising=False)
    with pytest.raises(ValidationError, match=field):
        Settings(ami_secret="x9y8z7w6v5", ami_nodes=[{"name": "a", "secret": "x9y8z7w6v5"},
                                                     {"name": "b", "secret": "x9y8z7w6v5", field: value}])


async def test_the_ivr_knows_the_nodes_by_their_hosts_and_with_one_node_asks_nothing(monkeypatch):
    from ivr.service import _nodes_by_address

    monkeypatch.delenv("CTI_AMI_NODES", raising=False)
    one = SimpleNamespace(settings=Settings(ami_secret="x9y8z7w6v5"))
    assert await _nodes_by_address(one) is None        # type: ignore[arg-type]
    two = SimpleNamespace(settings=Settings(ami_secret="x9y8z7w6v5", ami_nodes=[
        {"name": "a", "host": "127.0.0.1", "secret": "x9y8z7w6v5"},
        {"name": "b", "host": "10.77.0.2", "secret": "x9y8z7w6v5"}]))
    node_of = await _nodes_by_address(two)             # type: ignore[arg-type]
    assert node_of is not None
    assert (node_of("10.77.0.2", "1733.1"), node_of("127.0.0.1", "1733.1"), node_of("10.77.0.9", "1733.1")) == \
        ("b", "a", None)


def test_a_file_that_cannot_be_written_does_not_keep_the_others_from_theirs(monkeypatch, tmp_path):
    phones = _phones(monkeypatch, tmp_path, a=_Ami(), b=_Ami(), c=_Ami())
    (tmp_path / "c.conf").mkdir()                     # c's file cannot be replaced by a file
    with pytest.raises(OSError):
        phones._write_conf()
    assert (tmp_path / "shared.conf").read_text().startswith("; Generated by the CTI daemon")
    assert not (tmp_path / ".c.conf.tmp").exists()
