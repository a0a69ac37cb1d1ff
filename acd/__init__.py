"""Skill-based routing (issue 3): skills, agents, queues, the pure routing core."""
