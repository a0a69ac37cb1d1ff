"""Recordings: the policy (what is recorded, when), starting them through the dialplan,
retention, QA review."""
