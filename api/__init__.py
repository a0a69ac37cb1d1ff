"""The HTTP side of the daemon: REST routes, the WebSocket hub, dialplan hooks, webhooks,
the pages of the agent desktop, the wallboard and the browser phone; ``api.app`` mounts
every feature on the core."""
