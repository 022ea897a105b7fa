"""`edge-agent decode`: the specification's field names as JSON, one-line refusals."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from edge_agent.cli import app

runner = CliRunner()


def test_decode_a_gatt_characteristic_by_short_or_full_uuid() -> None:
    for name in ("2a35", "00002A35-0000-1000-8000-00805F9B34FB"):
        result = runner.invoke(
            app, ["decode", name, "1e 78 00 50 00 5e 00 ea 07 0b 19 0a 1e 00 48 00 01 00 00"]
        )
        assert result.exit_code == 0, result.output
        decoded = json.loads(result.output)
        assert decoded["format"] == "2a35"
        assert (decoded["systolic"], decoded["diastolic"]) == (120.0, 80.0)
        assert decoded["mean_arterial_pressure"] == 94.0
        assert (decoded["pulse_rate"], decoded["user_id"], decoded["unit"]) == (72.0, 1, "mm[Hg]")
        assert decoded["timestamp"] == "2026-11-25T10:30:00"


def test_decode_a_line_from_standard_input() -> None:
    line = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
    result = runner.invoke(app, ["decode", "nmea", "-"], input=line)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["altitude"] == 545.4


def test_bad_input_exits_1_with_one_line() -> None:
    for args in (["2a35", "1e78"], ["2a35", "zz"], ["nmea", "$GPGGA,1*00"]):
        result = runner.invoke(app, ["decode", *args])
        assert result.exit_code == 1, args
        assert result.output.count("\n") == 1
        assert result.output.startswith("error: ")


def test_unknown_format_and_listing() -> None:
    assert runner.invoke(app, ["decode", "2a99", "00"]).exit_code == 2
    listed = runner.invoke(app, ["decode", "--list", "--json"])
    assert listed.exit_code == 0
    names = {row["name"] for row in json.loads(listed.output)}
    assert {"2a35", "2a1c", "2a9d", "2a5e", "2a5f", "2a18", "2a52", "nmea", "nonin_df2"} <= names
    table = runner.invoke(app, ["decode", "--list"])
    assert "Blood Pressure Measurement" in table.output


def test_decode_the_tanita_manuals_sample_as_pasted() -> None:
    """The SC-240 manual's sample as a device sends it decodes; as the manual prints it
    (a space after each comma) the refusal says what is wrong."""
    sample = (
        '{0,16,~0,1,~1,1,~2,1,MO,"SC-240",SN,"00000002",Bt,0,GE,1,AG,30,Hm,170,Pt,0.0,'
        "Wk,82.7,FW,18.6,fW,15.4,MW,67.3,mW,64.0,sW,19,bW,3.3,wW,48.0,ww,58.0,MI,28.6,"
        "Sw,63.6,OV,30.0,IF,6,rb,8255,rB,1973,rJ,12,rA,28,ZF,369.4,CS,FD"
    )
    result = runner.invoke(app, ["decode", "tanita", "-"], input=sample + "\r\n")
    assert result.exit_code == 0, result.output
    decoded = json.loads(result.output)
    assert decoded["measurements"]["weight"] == 82.7
    assert "AG" not in result.output
    assert "GE" not in result.output
    typeset = runner.invoke(app, ["decode", "tanita", sample.replace(",", ", ")])
    assert typeset.exit_code == 1
    assert "without its spaces after commas" in typeset.output
