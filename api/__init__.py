"""The HTTP side of the daemon: REST routes, the WebSocket hub, dialplan hooks, webhooks,
the pages of the agent desktop, the wallboard and the browser phone; ``server.root`` mounts
them with every other feature on the core."""
