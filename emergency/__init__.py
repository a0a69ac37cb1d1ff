"""Emergency mode (docs/emergency.md): switches that reroute new and waiting calls."""
