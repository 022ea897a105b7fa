"""``python -m edge_agent``."""

from edge_agent.cli import app

app()
