"""bench/chat_latency.py's pure parts: the routing it runs, the customers' addresses, the
client's connection pool, the figures (no daemon, no socket)."""
from __future__ import annotations

import asyncio
import tomllib

import pytest

from acd.config import parse_config
from api.client_address import client_address, networks
from bench.chat_latency import (
    BenchError, acd_config, chats_per_agent, client_session, customer_address, daemon_settings, summary, within,
)


@pytest.mark.parametrize("chats,agents", [(20, 5), (500, 50), (1, 1), (7, 3)])
def test_the_routing_is_a_valid_configuration_that_holds_every_chat_at_once(chats, agents):
    per_agent = chats_per_agent(chats, agents)
    cfg = parse_config(tomllib.loads(acd_config(agents, per_agent)))
    assert len(cfg.agents) == agents
    assert sum(a.capacity.chat for a in cfg.agents) >= chats
    assert [q.channel for q in cfg.queues] == ["voice", "chat"]


def test_more_chats_than_the_agents_may_hold_is_refused_before_the_run():
    with pytest.raises(BenchError, match="at most 50"):
        chats_per_agent(5000, 50)
    with pytest.raises(BenchError):
        chats_per_agent(0, 5)


def test_every_customer_is_a_client_of_its_own_as_the_daemon_reads_it():
    """The widget's per-address limits (5 chats, 20 connections) are the real ones: each
    customer must be seen at its own forwarded address, not at loopback."""
    trusted = networks((daemon_settings()["http_trusted_proxies"],))
    seen = {client_address("127.0.0.1", customer_address(n), trusted) for n in range(2000)}
    assert len(seen) == 2000 and "127.0.0.1" not in seen


def test_the_daemon_does_not_cap_connections_per_address_since_every_socket_is_from_loopback():
    assert daemon_settings()["http_client_max"] == 0


def test_the_client_pool_has_no_cap_so_the_101st_websocket_does_not_wait_forever():
    async def limits():
        async with client_session() as http:
            return http.connector.limit, http.connector.limit_per_host

    assert asyncio.run(limits()) == (0, 0)


def test_a_step_that_does_not_finish_is_named():
    async def stuck():
        await within(0.01, "every chat with an agent", asyncio.Event().wait())

    with pytest.raises(BenchError, match="every chat with an agent: not done within 0.01 s"):
        asyncio.run(stuck())


def test_summary_counts_a_message_never_received_as_lost():
    sent = {"lat:0:1": 1.0, "lat:0:2": 2.0, "lat:1:1": 3.0}
    arrivals = {"lat:0:1": 1.010, "lat:1:1": 3.002, "other": 9.0}
    s = summary(sent, arrivals)
    assert (s["sent"], s["received"], s["lost"]) == (3, 2, 1)
    assert s["p50_ms"] == pytest.approx(2.0) and s["max_ms"] == pytest.approx(10.0)


def test_summary_of_nothing_has_no_percentiles():
    assert summary({}, {})["p99_ms"] is None
