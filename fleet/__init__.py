"""Vigie fleet: the central service and the technicians' CLI."""

__version__ = "0.1.0"
