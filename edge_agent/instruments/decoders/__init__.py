"""Pure decoders: bytes or text from an instrument in, a typed record or a DecodeError out.

Nothing here reads a port, sleeps or looks at the clock. Layout:

- :mod:`.base`: the record base class, :class:`ReadingDraft`, :class:`DecodeError`,
  :class:`Format` (what ``edge-agent decode --list`` shows).
- :mod:`.gatt`: Bluetooth SIG characteristics (health services, battery, device
  information, date and time), with IEEE 11073-20601 SFLOAT/FLOAT.
- :mod:`.serial`: serial instruments' formats and the framers that cut a byte stream
  into frames.
- :mod:`.registry`: every format by name (a short GATT UUID such as ``2a35``, or a
  serial format name).

Exception tree::

    ValueError
     └── DecodeError        this frame does not follow its format (permanent for the
                            frame; the next frame may be fine)
"""
