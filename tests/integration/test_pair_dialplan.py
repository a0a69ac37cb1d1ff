"""The dialplan names both nodes of an HA pair (docs/ha.md, "The dialplan and the pair"): with the
first node's hooks or FastAGI not answering, the call is served by the second
(``CTI_HTTP_2``, ``CTI_AGI_2``), in the sandbox's dialplan with one real daemon as the second."""
from __future__ import annotations

import asyncpg

from crm.customer_lookup import save_customer
from cti.demo_ivr import place_dtmf_call
from tests.integration import test_ivr
from tests.integration.conftest import free_port

ivr = test_ivr.ivr      # the fixture: a daemon with the IVR on the sandbox's FastAGI port and the hooks


async def test_with_the_first_nodes_hooks_away_the_second_answers_them(ivr, demo_ami):
    conn = await asyncpg.connect(ivr.dsn)
    await save_customer(conn, "C-91", "Vera VIP", ["+4930555091"], language="fr", vip=True)
    await conn.close()
    nobody = f"http://127.0.0.1:{free_port()}"           # the first node: nothing listens
    call = await place_dtmf_call(demo_ami, digits="", caller_num="+4930555091", did="7001",
                                 context="cti-inbound-curl", variables={"CTI_HTTP": nobody, "CTI_HTTP_2": ivr.http})
    d = await ivr.user_event("CtiHookRoute", call.channel_id)
    assert (d["Source"], d["Customer"], d["Vip"], d["CtiLanguage"]) == ("hooks", "C-91", "1", "fr")
    r = await ivr.route_of(call.channel_id)
    assert (r["Queue"], r["CtiPriority"], r["Customer"]) == ("vip", "10", "C-91")


async def test_with_the_first_nodes_fastagi_away_the_second_runs_the_menu(ivr, demo_ami):
    dead = f"agi://127.0.0.1:{free_port()}"
    call = await place_dtmf_call(demo_ami, digits="WW1", caller_num="+4930100031", did="6001",
                                 variables={"CTI_AGI": dead, "CTI_AGI_2": "agi://127.0.0.1:4573"})
    route = await ivr.route_of(call.channel_id)
    assert route["Queue"] == "sales"          # the menu's choice, not the dialplan's default (support)


async def test_with_both_nodes_away_the_dialplan_still_takes_its_default_route(ivr, demo_ami):
    call = await place_dtmf_call(demo_ami, digits="WW1", caller_num="+4930100032", did="6001",
                                 variables={"CTI_AGI": f"agi://127.0.0.1:{free_port()}",
                                            "CTI_AGI_2": f"agi://127.0.0.1:{free_port()}"})
    assert (await ivr.route_of(call.channel_id))["Queue"] == "support"
