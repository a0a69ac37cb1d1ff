"""Skill-based routing: skills, agents, queues, the pure routing core."""
