"""Serial instruments' formats, and the framing each one needs."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Final

from edge_agent.instruments.decoders.base import Format
from edge_agent.instruments.decoders.serial.and_scale import decode_and_standard
from edge_agent.instruments.decoders.serial.framing import Framer, LineFramer, NoninDf2Framer
from edge_agent.instruments.decoders.serial.nmea import decode_nmea
from edge_agent.instruments.decoders.serial.nonin import decode_nonin_df2, decode_nonin_text
from edge_agent.instruments.decoders.serial.tanita import decode_tanita

SERIAL_FORMATS: Final[tuple[Format, ...]] = (
    Format("nonin_text", "Nonin pulse oximeter, ASCII line output", "text", decode_nonin_text),
    Format(
        "nonin_df2", "Nonin pulse oximeter, binary Data Format 2 packet", "hex", decode_nonin_df2
    ),
    Format("and_standard", "A&D scale, standard format line", "text", decode_and_standard),
    Format("tanita", "Tanita body-composition record", "text", decode_tanita),
    Format("nmea", "NMEA 0183 GGA or RMC sentence", "text", decode_nmea),
)
#: A Tanita MC-780 record carries some 150 items: well over the usual line's 512 bytes.
LONG_LINE: Final = 4096
#: Framing name -> a new framer.
FRAMERS: Final[dict[str, Callable[[], Framer]]] = {
    "line": LineFramer,
    "long_line": partial(LineFramer, LONG_LINE),
    "nonin_df2": NoninDf2Framer,
}
#: Serial format -> the framing its byte stream needs.
FORMAT_FRAMING: Final = {
    "nonin_text": "line",
    "nonin_df2": "nonin_df2",
    "and_standard": "line",
    "tanita": "long_line",
    "nmea": "line",
}

__all__ = ["FORMAT_FRAMING", "FRAMERS", "SERIAL_FORMATS"]
