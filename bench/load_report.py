"""The markdown tables bench/load.py prints after its JSON: a load, ramp or soak run's
steps, and a fan-out run with its floor.
"""
from __future__ import annotations

from typing import Any

from bench.load_figures import ms


def load_table(out: dict[str, Any]) -> str:
    c = out["conditions"]
    head = (f"{c['date']}, {c['cpus']} CPUs, load average at start {c['loadavg_at_start'][0]}; "
            f"{out['agents']} agents (ring {c['ring_s'][0]}-{c['ring_s'][1]} s, talk {c['talk_s'][0]}-"
            f"{c['talk_s'][1]} s, no wrap-up), {out['supervisors']} supervisors; {int(c['ivr_share'] * 100)}% "
            f"through the IVR, {int(c['abandon_share'] * 100)}% abandoning after {c['abandon_patience_s'][0]}-"
            f"{c['abandon_patience_s'][1]} s; {c['duration_s']:g} s per rate; the daemon logging at "
            f"{c.get('daemon_log_level', 'warning')}\n")
    lines = [head,
             "| rate asked | calls/s placed | calls | peak concurrent | Originates refused | screen-pop p50 / p99 "
             "| pops missing | routing, agent free: p50 / p99 | event lag p50 / p99 (bucket) | daemon CPU | "
             "Asterisk CPU | PostgreSQL CPU | daemon / Asterisk CPU per call | daemon RSS peak | integrity |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in out["steps"]:
        sp, r, lag, cpu, per = s["screenpop"], s["routing"], s["event_lag"], s["cpu_s"], s["cpu_ms_per_call"]
        integ = "clean" if s["integrity"]["ok"] else s["integrity"]["explain"][:80]
        lines.append(
            f"| {s['rate_asked']:g}/s | {s['calls_per_s']:.2f} | {s['accepted']} | {s['peak_concurrent_calls']} "
            f"| {s['originate_failed']} | {ms(sp['p50_s'])} / {ms(sp['p99_s'])} | {sp['missing']} of {sp['offers']} "
            f"| {ms(r['agent_free_p50_s'])} / {ms(r['agent_free_p99_s'])} | <= {ms(lag['p50_le_s'])} / "
            f"<= {ms(lag['p99_le_s'])} | {cpu['daemon']:.1f} s | {cpu['asterisk']:.1f} s | {cpu['postgres']:.1f} s "
            f"| {per['daemon']:.1f} / {per['asterisk']:.1f} ms | {s['daemon_rss_peak_mb']:.0f} MB | {integ} |")
    for s in out["steps"]:
        per = s["cpu_ms_per_call"]
        if "api_nodes" in per:
            lines.append(f"\n{s['rate_asked']:g}/s, the WebSockets on API nodes: CPU per call leader {per['daemon']:.1f} ms, "
                         f"API nodes {per['api_nodes']:.1f} ms (all of them), broker {per['broker']:.1f} ms, "
                         f"Asterisk {per['asterisk']:.1f} ms")
    idle = out["idle_cpu_s_per_s"]
    if idle:
        lines.append(f"\nIdle (clients connected, no calls), CPU seconds per second: daemon {idle['daemon']}, "
                     f"Asterisk {idle['asterisk']}, PostgreSQL {idle['postgres']}")
    if "highest_sustained_rate" in out:
        lines.append(f"\nHighest rate sustained: {out['highest_sustained_rate']}/s")
    if "extra_clients" in out:
        x = out["extra_clients"]
        lines.append(f"\nAlso connected through the run: {x['connected']} more clients in 2 processes, "
                     f"{x['supervisors']} supervisors and {x['idle_desktops']} idle agent desktops; call events "
                     f"reaching every one of those supervisors: {x['reached_every_supervisor']} of {x['call_events']}, "
                     f"delivery p50 {ms(x['delivery_p50_s'])} / p99 {ms(x['delivery_p99_s'])}, to the last of them "
                     f"p50 {ms(x['to_last_supervisor_p50_s'])} / p99 {ms(x['to_last_supervisor_p99_s'])}")
    if "day" in out:
        d = out["day"]
        lines.append(f"\nThe day beside the calls: {d['recordings']} recordings, callbacks {d['callbacks']}, "
                     f"{d['tickets_filed']} tickets filed ({d['ticket_errors']} refused, {d['open_tickets']} open), "
                     f"{d['webhooks_received']} webhook deliveries received ({d['webhook_bytes']:,} bytes)")
    if "soak" in out:
        v = out["soak"]
        since = v.get("measured_from_s") or 0.0
        lines.append(f"\nSoak: {v['samples']} samples; growth from {since:.0f} s on: RSS "
                     f"{v['slopes']['rss_mb_per_h']} MB/h, tasks {v['slopes']['tasks_per_h']}/h, fds "
                     f"{v['slopes']['fds_per_h']}/h; verdict: {v['verdict']}")
    return "\n".join(lines)


def fanout_table(o: dict[str, Any]) -> str:
    c = o["conditions"]
    head = (f"{c['date']}, {c['cpus']} CPUs, load average at start {c['loadavg_at_start'][0]}; {o['connected']} "
            f"supervisor clients in {o['client_processes']} processes (connected in {o['connect_s']} s), "
            f"{o['calls_placed']} calls in {c['duration_s']:g} s (asked: {o['rate_asked']:g}/s), "
            f"each call event published to every client (supervisors and admins share one stream)\n")
    cpu, rss = o["cpu_s"], o["daemon_rss_mb"]
    return "\n".join([
        head,
        "| call events | reached all clients | deliveries | delivery p50 / p99 | to the first client p50 / p99 "
        "| to the last client p50 / p99 / max "
        "| daemon CPU | per event / per delivery | client processes CPU | daemon RSS before / connected / peak "
        "| per connection | slow drops |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {int(o['events_published'])} | {o['events_reaching_every_client']} of {o['call_events_seen']} "
        f"| {int(o['deliveries']):,} | {ms(o['delivery_p50_s'])} / {ms(o['delivery_p99_s'])} "
        f"| {ms(o['to_first_client_p50_s'])} / {ms(o['to_first_client_p99_s'])} "
        f"| {ms(o['to_last_client_p50_s'])} / {ms(o['to_last_client_p99_s'])} / {ms(o['to_last_client_max_s'])} "
        f"| {cpu['daemon']:.1f} s | {o['daemon_cpu_us_per_event']:.0f} µs / {o['daemon_cpu_us_per_delivery']:.1f} µs "
        f"| {o['client_processes_cpu_s']:.1f} s | {rss['before_clients']:.0f} / {rss['connected']:.0f} / "
        f"{rss['peak']:.0f} MB | {o['daemon_kb_per_connection']:.0f} KB | {int(o['slow_drops'])} |",
        "",
        fanout_bytes_line(o),
        "",
        fanout_floor_line(o),
    ])


def fanout_bytes_line(o: dict[str, Any]) -> str:
    others = o.get("other_messages_per_client") or {}
    parts = [f"{t}: {v['messages']:g} messages, {v['bytes']:,} bytes" for t, v in others.items()]
    return (f"Each client received {o.get('call_event_bytes_per_client', 0):,} bytes of call events"
            + (f"; besides them, {'; '.join(parts)}." if parts else "."))


def fanout_floor_line(o: dict[str, Any]) -> str:
    f = o.get("floor")
    if not f:
        return ""
    return (f"Baseline in the same run (bench/fanout_floor.py): one ready-made {f['size']}-byte frame (the mean call "
            f"event here) written to {f['clients']} sockets in a tight loop, read by the same client code in "
            f"{f['processes']} processes, {f['rounds_complete']} of {f['rounds']} rounds complete: to the last client "
            f"p50 {ms(f['to_last_client_p50_s'])} / p99 {ms(f['to_last_client_p99_s'])} (the send loop "
            f"{ms(f['send_loop_p50_s'])}, {f['sender_cpu_us_per_send']} µs of CPU per send; the readers "
            f"{f['readers_cpu_us_per_message']} µs per message).")
