"""Outbound campaigns: leads and their retries, calling windows, pacing (docs/dialer.md).

``leads``, ``windows`` and ``pacing`` are pure cores (time passed in, no I/O).
"""
