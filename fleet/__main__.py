"""``python -m fleet``."""

from fleet.cli.app import app

app()
