"""``python -m fleet``."""

from fleet.cli import app

app()
