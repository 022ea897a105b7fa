"""I/O adapters for instruments: thin layers over bleak (BLE) and pyserial (serial).

A driver moves bytes and reports connection state to an :class:`InstrumentListener`;
it never decodes (decoders are pure, in ``edge_agent.instruments.decoders``) and the
rest of the agent never imports bleak or pyserial. Each driver is imported lazily by
the agent's instrument pool (``edge_agent.runtime.instruments``), so an agent without
BLE instruments never loads bleak.
"""
