"""Every entry point that takes outside data refuses bad input with a typed error and
a reason, and nothing else: fuzzed with hypothesis (bounded, see tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import load_agent_config
from edge_agent.instruments.profiles import load_profile
from fleet.config import load_fleet_config
from fleet.ingest.decoding import UniqueClock, points_for
from fleet.storage.lineprotocol import measurement_of
from tests.samples import every_kind_of_message
from vigie_core.clock import utc_now
from vigie_core.contract.codec import MAX_PAYLOAD_BYTES, decode
from vigie_core.contract.data import Reading
from vigie_core.contract.model import EARLIEST_STORABLE, LATEST_STORABLE
from vigie_core.contract.settings import DesiredConfig, ManagedSettings
from vigie_core.contract.topics import Topics
from vigie_core.errors import ContractError, DocumentError, RejectReason

from .test_agent import make_agent

TOPICS = Topics("vigie")
LEVEL = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
TOPIC = st.one_of(
    st.lists(LEVEL, min_size=1, max_size=7).map("/".join),
    st.builds(lambda a, rest: f"vigie/v1/{a}/{rest}", LEVEL, LEVEL),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)


def _mutated_messages() -> st.SearchStrategy[tuple[str, bytes]]:
    """Real messages with one field replaced by anything JSON can hold."""
    samples = [
        (TOPICS.topic_for(m), json.loads(m.model_dump_json())) for m in every_kind_of_message()
    ]

    def mutate(sample: tuple[str, dict[str, Any]], key_index: int, value: Any) -> tuple[str, bytes]:
        topic, body = sample
        keys = sorted(body)
        body = {**body, keys[key_index % len(keys)]: value}
        return topic, json.dumps(body).encode()

    return st.builds(mutate, st.sampled_from(samples), st.integers(0, 50), JSON)


def _rejection(call: Callable[[], object]) -> ContractError | None:
    """The typed rejection, or None if accepted; any other exception fails the test."""
    try:
        call()
    except ContractError as exc:
        return exc
    return None


@given(topic=TOPIC, payload=st.binary(max_size=300))
def test_any_topic_and_payload_is_a_message_or_a_typed_rejection(
    topic: str, payload: bytes
) -> None:
    rejection = _rejection(lambda: decode(TOPICS, topic, payload))
    # Every rejection says why (the fleet counts them per reason).
    assert rejection is None or rejection.reason


@given(sample=_mutated_messages())
def test_real_messages_with_a_field_replaced_are_accepted_or_rejected_cleanly(
    sample: tuple[str, bytes],
) -> None:
    topic, payload = sample
    rejection = _rejection(lambda: decode(TOPICS, topic, payload))
    assert rejection is None or rejection.reason


@pytest.mark.parametrize("level", ["+", "#", "a/b", "a\x00", "a\x1b", "A", "", " a"])
def test_agent_ids_that_are_not_one_plain_topic_level_are_refused(level: str) -> None:
    with pytest.raises(ValueError, match="agent id"):
        TOPICS.state(level)
    with pytest.raises(ContractError):
        decode(TOPICS, f"vigie/v1/{level}/health", b"{}")


def test_an_oversized_payload_is_refused_before_parsing() -> None:
    # Not even JSON: were it parsed, the error would be about the syntax.
    payload = b"{" * (MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(ContractError) as info:
        decode(TOPICS, "vigie/v1/booth-1/health", payload)
    assert info.value.reason.value == "oversized"


LOADERS: list[tuple[str, Callable[[Path], object]]] = [
    ("agent config", load_agent_config),
    ("fleet config", load_fleet_config),
    ("device profile", load_profile),
]


@pytest.mark.parametrize(("what", "load"), LOADERS, ids=[name for name, _ in LOADERS])
@given(document=JSON | st.text(max_size=200))
def test_config_and_profile_files_are_loaded_or_refused_with_the_file_named(
    what: str, load: Callable[[Path], object], document: object
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.yaml"
        text = document if isinstance(document, str) else yaml.safe_dump(document)
        path.write_text(text)
        try:
            load(path)
        except DocumentError as exc:
            refused: DocumentError | None = exc
        else:
            refused = None
    assert refused is None or str(path) in str(refused), what


@given(
    settings=st.dictionaries(
        st.sampled_from(["health_interval_s", "devices", "opening_hours", "x"]), JSON, max_size=3
    )
)
def test_a_desired_configuration_is_applied_or_refused_never_crashes_the_agent(
    settings: dict[str, Any],
) -> None:
    try:
        parsed = ManagedSettings.model_validate(settings)
    except ValueError:
        return  # refused by the contract: the agent reports it as unreadable
    message = DesiredConfig(
        agent_id="bus-1",
        version=1,
        sha256=parsed.digest(),
        issued_at=utc_now(),
        settings=parsed,
    )
    with tempfile.TemporaryDirectory() as folder:
        agent = make_agent(Path(folder))
        try:
            changed = asyncio.run(agent.apply_desired(message))
            report = agent.reported_config()
            assert changed == (report.version == 1)
            assert changed or report.rejected is not None or parsed == ManagedSettings()
        finally:
            agent.recorder.close()


def _reading_at(measured_at: str) -> bytes:
    (reading,) = [m for m in every_kind_of_message() if isinstance(m, Reading)][:1]
    body = json.loads(reading.model_dump_json())
    return json.dumps({**body, "measured_at": measured_at}).encode()


OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(moment=st.datetimes(timezones=OFFSETS))
def test_any_time_with_any_offset_is_stored_as_is_or_refused_with_a_reason(
    moment: datetime,
) -> None:
    # Year 1 to 9999 with offsets of up to a day: once in UTC, some fall outside what
    # datetime (and InfluxDB) can hold. A reading times itself, or is refused; the fleet
    # never meets an exception it does not expect (it used to stop ingesting).
    topic = "vigie/v1/a/reading/blood_pressure"
    rejection = _rejection(lambda: decode(TOPICS, topic, _reading_at(moment.isoformat())))
    if rejection is not None:
        assert rejection.reason is RejectReason.INVALID_PAYLOAD
        assert "outside the times that can be stored" in rejection.detail
        return
    _, message = decode(TOPICS, topic, _reading_at(moment.isoformat()))
    assert isinstance(message, Reading)
    assert message.measured_at == moment.astimezone(UTC)
    assert EARLIEST_STORABLE <= message.measured_at <= LATEST_STORABLE
    decoded = points_for(TOPICS, topic, _reading_at(moment.isoformat()), UniqueClock())
    assert decoded.refused == ()
    assert all(-(2**63) <= int(line.rsplit(b" ", 1)[1]) < 2**63 for line in decoded.lines)


@pytest.mark.parametrize(
    "measured_at",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1677-09-21T00:12:43Z",
     "2262-04-12T00:00:00Z"],
)  # fmt: skip
def test_the_times_that_used_to_stop_the_fleet_are_refused_with_a_reason(measured_at: str) -> None:
    topic = "vigie/v1/a/reading/blood_pressure"
    with pytest.raises(ContractError) as info:
        decode(TOPICS, topic, _reading_at(measured_at))
    assert info.value.reason is RejectReason.INVALID_PAYLOAD
    assert info.value.detail.startswith("measured_at: Value error,")
    decoded = points_for(TOPICS, topic, _reading_at(measured_at), UniqueClock())
    assert [reason for reason, _ in decoded.refused] == [RejectReason.INVALID_PAYLOAD.value]
    assert [measurement_of(line) for line in decoded.lines] == ["dead_letter"]
