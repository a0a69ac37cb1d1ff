"""Recording policy and MixMonitor control (issue 5)."""
