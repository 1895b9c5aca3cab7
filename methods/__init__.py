"""The networks, losses and method registry of the reproduction (self-contained: imports nothing from bench)."""
