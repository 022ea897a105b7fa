"""Vigie edge agent: reads a booth's or a bus's instruments and reports to the fleet."""

__version__ = "0.1.0"
