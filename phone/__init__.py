"""Agents' phones: PJSIP devices for SIP and browser phones, their binding to agents, their reachability."""
