"""Clients follow the leader in an HA pair: what a node does with a request, CORS for the
pair's origins, the hello's pointer to the leader, and ``ha_peers`` (api/follow_core.py)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.follow_core import Peers, cors, hello_part, origin_of, verdict
from cti.config import Settings, parse_peers
from cti.errors import ConfigError

PEERS = Peers(me="b", urls={"a": "http://10.0.0.1:8765", "b": "http://10.0.0.2:8766"})


def v(method: str, path: str, **kw: bool) -> str:
    args = {"leading": False, "broker": True, "leader_known": True, "forwarded": False, **kw}
    return verdict(method, path, **args)


def test_the_leader_serves_everything_itself() -> None:
    assert v("POST", "/api/acd/agents/a1/state", leading=True) == "local"
    assert v("GET", "/api/acd/state", leading=True, forwarded=True) == "local"


@pytest.mark.parametrize("method, path", [("POST", "/api/acd/agents/a1/state"), ("GET", "/api/acd/state"),
                                          ("POST", "/api/login"), ("DELETE", "/api/webhooks/3")])
def test_a_standby_with_a_broker_forwards_the_whole_api_to_the_leader(method: str, path: str) -> None:
    assert v(method, path) == "forward"


@pytest.mark.parametrize("path", ["/ws", "/healthz", "/metrics", "/hooks/lookup", "/agent/app.js"])
def test_a_standby_keeps_its_own_stream_health_metrics_hooks_and_pages(path: str) -> None:
    assert v("GET", path) == "local" and v("POST", path) == "local"


def test_a_standby_without_a_broker_serves_reads_and_refuses_commands() -> None:
    assert v("GET", "/api/calls", broker=False) == "local"
    assert v("POST", "/api/login", broker=False) == "local"
    assert v("POST", "/api/acd/agents/a1/state", broker=False) == "refuse"


def test_with_no_leader_to_send_to_commands_are_refused_and_reads_served() -> None:
    assert v("POST", "/api/acd/agents/a1/state", leader_known=False) == "refuse"
    assert v("GET", "/api/calls", leader_known=False) == "local"


def test_a_request_forwarded_once_is_never_forwarded_again() -> None:
    """Two standbys that each think the other leads do not pass a command back and forth."""
    assert v("POST", "/api/acd/agents/a1/state", forwarded=True) == "refuse"
    assert v("GET", "/api/acd/state", forwarded=True) == "local"


def test_the_leader_url_is_the_holders_and_never_this_nodes_own() -> None:
    assert PEERS.leader_url("a") == "http://10.0.0.1:8765"
    assert PEERS.leader_url("b") is None        # holds the row but does not lead: taking over, stepping down
    assert PEERS.leader_url(None) is None and PEERS.leader_url("c") is None


def test_a_desktop_tries_the_other_nodes_first() -> None:
    assert PEERS.others_first() == ["http://10.0.0.1:8765", "http://10.0.0.2:8766"]


@pytest.mark.parametrize("url, origin", [("http://10.0.0.1:8765", "http://10.0.0.1:8765"),
                                         ("https://CTI.example:443", "https://cti.example"),
                                         ("http://h:80", "http://h"), ("http://[::1]:8765", "http://[::1]:8765")])
def test_an_origin_is_what_a_browser_sends(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_cors_only_for_the_pairs_own_origins_and_never_with_credentials() -> None:
    allowed = PEERS.origins()
    assert cors(None, allowed, False) is None
    assert cors("http://evil.example", allowed, True) is None
    plain = cors("http://10.0.0.1:8765", allowed, False)
    assert plain is not None and plain["Access-Control-Allow-Origin"] == "http://10.0.0.1:8765"
    assert "Cti-Leader-Url" in plain["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in plain and "Access-Control-Allow-Methods" not in plain
    pre = cors("http://10.0.0.1:8765", allowed, True)
    assert pre is not None and "Authorization" in pre["Access-Control-Allow-Headers"]


def test_the_hello_points_a_desktop_on_a_standby_at_the_leader() -> None:
    on_standby = hello_part(PEERS, leading=False, holder="a", broker=False)
    assert on_standby == {"node": "b", "leading": False, "leader": "a", "leader_url": "http://10.0.0.1:8765",
                          "nodes": ["http://10.0.0.1:8765", "http://10.0.0.2:8766"], "shared_stream": False}
    on_leader = hello_part(PEERS, leading=True, holder="b", broker=True)
    assert on_leader["leader_url"] is None and on_leader["shared_stream"] is True


def test_peers_parse_from_the_environment_form() -> None:
    assert parse_peers("a=http://10.0.0.1:8765, b=https://cti-b.example/") == (
        ("a", "http://10.0.0.1:8765"), ("b", "https://cti-b.example"))
    assert Settings(ha_peers="a=http://h1:1,b=http://h2:2").ha_peers == (("a", "http://h1:1"), ("b", "http://h2:2"))
    assert Settings().ha_peers == ()


@pytest.mark.parametrize("bad", ["a", "a=ftp://h", "a=http://h/path", "a=http://h,a=http://g", " =http://h",
                                 "a=http://h:1?x", "a b=http://h"])
def test_bad_peers_are_refused_naming_the_item(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_peers(bad)
    with pytest.raises((ValueError, ConfigError)):
        Settings(ha_peers=bad)


@given(st.text(max_size=80))
def test_any_peers_text_parses_or_is_refused_with_a_value_error(text: str) -> None:
    try:
        peers = parse_peers(text)
    except ValueError:
        return
    for node, url in peers:
        assert "=" not in node and "," not in url and url.startswith(("http://", "https://"))
        assert parse_peers(",".join(f"{n}={u}" for n, u in peers)) == peers      # round trip


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
                       st.tuples(st.sampled_from(["http", "https"]), st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
                                 st.integers(1, 65535)), min_size=1, max_size=4))
def test_peers_written_out_parse_back(nodes: dict) -> None:
    text = ",".join(f"{n}={s}://{h}:{p}" for n, (s, h, p) in nodes.items())
    assert parse_peers(text) == tuple((n, f"{s}://{h}:{p}") for n, (s, h, p) in nodes.items())


def test_the_desktops_csp_may_connect_to_every_node_of_the_pair_over_http_and_websocket() -> None:
    from api.follow_core import connect_sources

    assert connect_sources([]) == ""
    assert connect_sources(["http://10.0.0.1:8765", "https://cti-b.example:443"]) == (
        " http://10.0.0.1:8765 ws://10.0.0.1:8765 https://cti-b.example wss://cti-b.example")


def test_the_wallboard_page_may_connect_to_the_pairs_nodes_and_no_other_page_gains_them() -> None:
    from api.hygiene import page_csp

    peers = " http://10.0.0.1:8765 ws://10.0.0.1:8765"
    assert "connect-src 'self' http://10.0.0.1:8765 ws://10.0.0.1:8765;" in page_csp("/wallboard/", "", peers)
    assert "connect-src 'self';" in page_csp("/docs/", "", peers)
