"""I/O adapters for instruments: thin layers over bleak (BLE) and pyserial (serial).

A driver moves bytes and reports connection state to an :class:`InstrumentListener`;
it never decodes (decoders are pure, in :mod:`edge_agent.decoders`) and the rest of
the agent never imports bleak or pyserial. Each driver is imported lazily by
:func:`edge_agent.instrument.driver_for`, so an agent without BLE instruments never
loads bleak.
"""
