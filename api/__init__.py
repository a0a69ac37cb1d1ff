"""aiohttp application: REST, WebSocket hub, dialplan hooks (issue 6)."""
