"""The line formats of serial instruments, byte by byte from their manuals.

Every accepted line here is one the manuals show a device sending (or is built by
the manual's own rules, the checksum computed here independently of the decoder);
every refused one says why.

- Tanita: SC-240 instruction manual, "Connection with a personal computer", "(2)
  Output data items", output sample (standard, male, 30 years, 170 cm); the SC-330
  manual's "Transmit data" items and order for ``ID``, ``Da``, ``TI``.
- Nonin: 2500 PalmSAT / 8500 "Serial Output", Avant 4000 / 9600 "Real-Time Patient
  Data Output", 9847 "Real-Time Serial Output", 8600V "Real-Time Data Output".
- A&D: EK-L series manual, 9-2 "Data format" (``ST,+001234.5  g``,
  ``OL,+999999.9  g``); GC series 16.2 (``ST,+0001.234 kg``); GX-A (``OL,+9999999E+19``).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.errors import DecodeError
from edge_agent.instruments.decoders import registry
from edge_agent.instruments.decoders.serial.framing import LineFramer
from edge_agent.instruments.decoders.serial.tanita import TanitaRecord, format_tanita_record
from edge_agent.instruments.readings import DEVICE_CLOCK_INVALID, DEVICE_TIME_PARTIAL
from tests.samples import SC240, SC240_UNITS, SC240_VALUES


def _lines(data: bytes, framer: LineFramer | None = None) -> list[bytes]:
    """The frames the serial driver would hand the decoder."""
    return [f for f in (framer or LineFramer()).feed(data) if isinstance(f, bytes)]


def _sum_checksum(body: bytes) -> bytes:
    """The manuals' checksum, computed here on its own: sum mod 256, uppercase hex."""
    return b"%02X" % (sum(body) % 256)


# --- Tanita -------------------------------------------------------------------------------


def test_the_manuals_checksum_is_a_sum_of_the_bytes_as_sent() -> None:
    body = SC240[: SC240.index(b"CS,")]
    assert _sum_checksum(body) == b"FD"


def test_sc240_sample_decodes_and_never_lets_the_person_through() -> None:
    (frame,) = _lines(SC240)
    record = registry.decode("tanita", frame)
    draft = record.reading()
    assert draft is not None
    assert dict(draft.values) == SC240_VALUES
    assert dict(draft.units) == SC240_UNITS
    assert (draft.device_time, draft.quality) == (None, ())  # the SC-240 has no clock
    assert isinstance(record, TanitaRecord)
    assert (record.model, record.serial_number) == ("SC-240", "00000002")
    assert record.results["basal_metabolic_rate_kcal"] == 1973.0  # rB: kcal
    assert record.results["muscle_mass_kg"] == 64.0
    decoded = record.as_json()
    text = str(decoded) + repr(draft)
    for key in ("'GE'", "'AG'", "'Bt'", "'age'", "gender"):
        assert key not in text
    assert "30" not in text  # the age


def test_a_record_with_the_date_time_and_id_of_the_sc330() -> None:
    pairs = [
        ("MO", '"SC-330"'),
        ("SN", '"00000001"'),
        ("ID", '"0000004711"'),
        ("Da", '"25/11/2026"'),
        ("TI", '"10:30"'),
        ("Bt", "0"),
        ("GE", "2"),
        ("AG", "57"),
        ("Hm", "162.0"),
        ("Pt", "0.5"),
        ("Wk", "68.4"),
        ("FW", "33.5"),
    ]
    record = format_tanita_record(pairs)
    body = record[: record.index(b"CS,")]
    assert record.endswith(b"CS," + _sum_checksum(body) + b"\r\n")
    (frame,) = _lines(record)
    decoded = registry.decode("tanita", frame)
    draft = decoded.reading()
    assert draft is not None
    assert draft.device_time is not None
    assert draft.device_time.isoformat() == "2026-11-25T10:30:00"
    assert dict(draft.values) == {"weight": 68.4, "height": 162.0, "body_fat_percentage": 33.5}
    assert "4711" not in str(decoded.as_json())
    assert "57" not in str(decoded.as_json())


def test_spaces_after_commas_crlf_or_lf_and_a_stray_byte_before_the_record() -> None:
    spaced = SC240[: SC240.index(b",CS,") + 1].replace(b",", b", ").rstrip(b" ")
    record = spaced + b" CS, " + _sum_checksum(spaced) + b" \n"
    for data in (record, SC240.replace(b"\r\n", b"\n"), b"\x00" + SC240):
        (frame,) = _lines(data)
        draft = registry.decode("tanita", frame).reading()
        assert draft is not None
        assert draft.values["weight"] == 82.7


def test_weight_in_lb_mode() -> None:
    """WB-3000 manual, "Output data": lb mode sends Wp (and the height as ft-in, Hf,
    whose layout the manual does not give: not read)."""
    pairs = [("MO", '"WB-3000"'), ("Hf", "5'07"), ("Wp", "165.2"), ("MI", "25.9")]
    record = registry.decode("tanita", _lines(format_tanita_record(pairs))[0])
    draft = record.reading()
    assert draft is not None
    assert dict(draft.values) == {"weight": 165.2, "bmi": 25.9}
    assert draft.units["weight"] == "[lb_av]"
    assert record.as_json()["ignored"] == ["Hf"]


def test_a_long_mc780_record_fits_the_tanita_framing() -> None:
    keys = [a + b for a in "acdeghijklnop" for b in "ACDEGHJKLNOQU"][:150]
    pairs = [("MO", '"MC-780"'), ("Wk", "70.5"), *((key, "123.4") for key in keys)]
    data = format_tanita_record(pairs)
    assert len(data) > 1000
    (frame,) = _lines(data, registry.new_framer("tanita"))  # type: ignore[arg-type]
    assert registry.decode("tanita", frame).as_json()["measurements"] == {"weight": 70.5}


def test_an_unset_clock_keeps_the_reading_flagged() -> None:
    for date_text, quality in (("00/00/0000", DEVICE_CLOCK_INVALID), (None, DEVICE_TIME_PARTIAL)):
        pairs = [("Da", f'"{date_text}"')] if date_text else []
        pairs += [("TI", '"10:30"'), ("Wk", "70.0")]
        draft = registry.decode("tanita", _lines(format_tanita_record(pairs))[0]).reading()
        assert draft is not None
        assert (draft.device_time, draft.quality) == (None, (quality,))


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (SC240[:-4] + b"00", "checksum 00, computed FD"),
        (SC240[:-2] + b"}", "no brace"),  # the invented form the old simulator sent
        (SC240[:120], "truncated"),
        (SC240[:-4] + b"F", "not two uppercase hex digits"),
        (SC240[:-4] + b"fd", "not two uppercase hex digits"),  # the manuals: uppercase
        (SC240[:-2].replace(b",", b", "), "without its spaces after commas"),
        (b"Wk,82.7,CS,00", "no '{'"),
        (b"junk before the record " + SC240, "bytes before"),
        (format_tanita_record([("Hm", "170")]), "no weight"),
        (format_tanita_record([("Wk", "8x.7")]), "not a number"),
        (
            format_tanita_record([("Wk", "82.7"), ("GE", '"Jean, Dupont"')]),
            "without a value|unbalanced quotes",
        ),
        (format_tanita_record([("Wk", "82.7"), ("Da", '"2026-11-25"')]), "dd/mm/yyyy"),
        ("{0,16,Wk,7é,CS,00".encode(), "not ASCII"),
    ],
)
def test_tanita_refusals(frame: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason) as raised:
        registry.decode("tanita", frame.rstrip(b"\r\n"))
    assert "Dupont" not in str(raised.value)  # a refusal never quotes a person's data


@given(st.integers(min_value=0, max_value=len(SC240) - 3), st.integers(0, 255))
def test_any_changed_byte_of_the_sample_is_refused(position: int, value: int) -> None:
    frame = bytearray(SC240[:-2])
    if frame[position] == value or value in (0x0D, 0x0A):
        return
    frame[position] = value
    with pytest.raises(DecodeError):
        registry.decode("tanita", bytes(frame))


# --- Nonin ASCII output ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "values", "quality", "context"),
    [
        (b"SPO2=097 HR=072\r\n", (97.0, 72.0), (), {}),  # 2500, 8500, Avant 9600
        (b"SPO2=--- HR=---\r\n", (None, None), (), {}),
        (b"SPO2=096 HR=080 F\r\n", (96.0, 80.0), (), {"averaging": "fast"}),  # DIP 8 up
        (b"SPO2=096 HR=080*\r\n", (96.0, 80.0), ("event_marker",), {}),  # Avant 4000
        (b"12:34:56 SPO2=095 HR=110\r\n", (95.0, 110.0), (DEVICE_TIME_PARTIAL,), {}),  # 8600V
        (
            b"23:59:59 SPO2=--- HR=--- B*\n",  # 9847: breath detected, event marked
            (None, None),
            ("breath_detected", DEVICE_TIME_PARTIAL, "event_marker"),
            {},
        ),
        (b"SPO2=097 HR=072  \r\n", (97.0, 72.0), (), {}),
    ],
)
def test_nonin_text_lines_of_the_manuals(
    line: bytes,
    values: tuple[float | None, float | None],
    quality: tuple[str, ...],
    context: dict[str, str],
) -> None:
    (frame,) = _lines(line)
    record = registry.decode("nonin_text", frame)
    draft = record.reading()
    assert draft is not None
    assert (draft.values["spo2"], draft.values["pulse_rate"]) == values
    assert draft.quality == quality
    assert dict(draft.context) == context
    assert draft.device_time is None  # a time of day without a date times nothing
    if values[0] is None:
        assert dict(draft.invalid) == {"spo2": "no_value", "pulse_rate": "no_value"}


def test_nonin_time_of_day_is_kept_in_the_record() -> None:
    assert (
        registry.decode("nonin_text", b"12:34:56 SPO2=095 HR=110").as_json()["time_of_day"]
        == "12:34:56"
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"SPO2=101 HR=070", "above 100"),
        (b"24:00:00 SPO2=095 HR=110", "not hh:mm:ss"),
        (b"12:34 SPO2=095 HR=110", "not a data line"),
        (b"SPO2=95 HR=110", "not a data line"),
        (b"SPO2=095 HR=110 artifact", "not a data line"),
        (b"SPO2=095 HR=110 **", "repeated"),
        (b"Nonin 8500 V1.2 25/11/26 10:30:00", "not a data line"),  # a header: no data
    ],
)
def test_nonin_text_refusals(line: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        registry.decode("nonin_text", line)


# --- A&D standard format ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "weight", "unit", "context"),
    [
        (b"ST,+001234.5  g\r\n", 1.2345, "kg", {"device_unit": "g"}),  # EK-L 9-2
        (b"ST,+0001.234 kg\r\n", 1.234, "kg", {}),  # GC 16.2
        (b"ST,+00075.40 kg\r\n", 75.4, "kg", {}),
        (b"ST,+00165.20 lb\r\n", 165.2, "[lb_av]", {}),
        (b"ST,+00123.50 oz\r\n", 7.71875, "[lb_av]", {"device_unit": "oz"}),
        (b"ST,-00000.05 kg\r\n", -0.05, "kg", {}),
        (b"ST,+00075.40 kg  \n", 75.4, "kg", {}),
    ],
)
def test_and_weights(line: bytes, weight: float, unit: str, context: dict[str, str]) -> None:
    (frame,) = _lines(line)
    draft = registry.decode("and_standard", frame).reading()
    assert draft is not None
    assert (draft.values["weight"], draft.units["weight"]) == (weight, unit)
    assert (dict(draft.context), draft.quality) == (context, ())


def test_and_unstable_and_overloads() -> None:
    unstable = registry.decode("and_standard", b"US,+00075.40 kg").reading()
    assert unstable is not None
    assert unstable.quality == ("unstable",)
    for line, units in ((b"OL,+9999999E+19", {}), (b"OL,+999999.9  g", {"weight": "kg"})):
        overload = registry.decode("and_standard", line).reading()
        assert overload is not None
        assert (dict(overload.values), dict(overload.units)) == ({"weight": None}, units)
        assert dict(overload.invalid) == {"weight": "overload"}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"QT,+00012345 PC", "counting"),
        (b"ST,+000123.4  %", r"unit '%' \(percentage data\)"),
        (b"ST,+0012.345ozt", r"unit 'ozt' \(troy ounces\)"),
        (b"ST,+00075.40 st", "unit 'st' is unknown"),
        (b"XX,+00075.40 kg", "is not HH"),
        (b"ST,+000x5.40 kg", "is not HH"),
        (b"ST,+00075.40kg", "is not HH"),
        (b"ST,+00.0.540 kg", "not a number"),
    ],
)
def test_and_refusals(line: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        registry.decode("and_standard", line)
