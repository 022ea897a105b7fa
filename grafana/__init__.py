"""Grafana as code: ``grafana.build`` writes the dashboards and alert rules (see
``python -m grafana.build --help``)."""
