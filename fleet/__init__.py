"""Vigie fleet: the central service and the technicians' CLI."""
