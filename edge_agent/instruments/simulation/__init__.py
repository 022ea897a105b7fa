"""Simulated instruments: realistic readings for demos, tests and benchmarks. Pure."""
