"""To and from the wire: compact UTF-8 JSON, validated strictly, every refusal typed.

``decode`` is what the fleet (and the agent, for what it receives) runs on every
message; it never raises anything but :class:`~vigie_core.errors.ContractError`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import Field, TypeAdapter, ValidationError

from vigie_core.contract.data import (
    MAX_BATCH_MESSAGES,
    Batch,
    DataMessage,
    Event,
    HealthReport,
    Reading,
    StoredAck,
)
from vigie_core.contract.model import INT64_MAX, SCHEMA_VERSION, ContractModel
from vigie_core.contract.presence import AgentState
from vigie_core.contract.releases import DesiredRelease, ReportedRelease
from vigie_core.contract.settings import DesiredConfig, ReportedConfig
from vigie_core.contract.topics import Channel, ParsedTopic, Topics
from vigie_core.errors import ContractError, RejectReason

#: The fleet refuses larger payloads before parsing them; agents never send them.
MAX_PAYLOAD_BYTES: Final = 64 * 1024

StateMessage = DesiredConfig | ReportedConfig | DesiredRelease | ReportedRelease
Message = AgentState | DataMessage | Batch | StoredAck | StateMessage

_CHANNEL_MODELS: Final[dict[Channel, type[ContractModel]]] = {
    Channel.STATE: AgentState,
    Channel.READING: Reading,
    Channel.HEALTH: HealthReport,
    Channel.EVENT: Event,
    Channel.BATCH: Batch,
    Channel.ACK: StoredAck,
}
_STATE_MODELS: Final[dict[tuple[Channel, str], type[ContractModel]]] = {
    (Channel.DESIRED, "config"): DesiredConfig,
    (Channel.REPORTED, "config"): ReportedConfig,
    (Channel.DESIRED, "release"): DesiredRelease,
    (Channel.REPORTED, "release"): ReportedRelease,
}


def encode(message: Message) -> bytes:
    """Serialise a message to its wire form (compact JSON, UTF-8)."""
    return message.model_dump_json(exclude_none=False).encode()


def batch_payload(agent_id: str, historical: bool, messages: Sequence[bytes]) -> bytes:
    """A :class:`Batch` around data messages that are already encoded.

    The agent's outbox holds validated contract JSON: splicing it into the envelope
    spares a backlog's drain a decode and a re-encode of every message. The result is
    exactly what ``encode(Batch(...))`` gives for the same messages.
    """
    return (
        b'{"schema_version":%d,"agent_id":"%s","historical":%s,"messages":['
        % (SCHEMA_VERSION, agent_id.encode(), b"true" if historical else b"false")
        + b",".join(messages)
        + b"]}"
    )


#: What the envelope of :func:`batch_payload` adds to its messages, at most.
BATCH_ENVELOPE_BYTES: Final = 200


def decode(topics: Topics, topic: str, payload: bytes) -> tuple[ParsedTopic, Message]:
    """Validate a received message against the contract.

    Size is checked before anything is parsed; the payload must be UTF-8 JSON and is
    validated strictly (``"120"`` is not a number here). Raises ContractError.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(RejectReason.OVERSIZED, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    parsed = topics.parse(topic)
    model = (
        _STATE_MODELS[(parsed.channel, parsed.item)]
        if parsed.item is not None
        else _CHANNEL_MODELS[parsed.channel]
    )
    try:
        # One parse on the hot path, of the bytes as received (pydantic's parser checks
        # the UTF-8 itself: decoding first cost a third of the validation's time); the
        # reason is worked out only for rejects.
        message = model.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        raise _rejection(payload, exc) from exc
    # Every model of the two tables above is one of these (narrows the type).
    assert isinstance(message, AgentState | DataMessage | Batch | StoredAck | StateMessage)  # noqa: S101
    # A model may leave schema_version to its default in code; a document on the wire
    # must say it (pydantic records which fields the document held).
    if "schema_version" not in message.model_fields_set or (
        isinstance(message, Batch)
        and any("schema_version" not in item.model_fields_set for item in message.messages)
    ):
        raise ContractError(RejectReason.UNKNOWN_SCHEMA_VERSION, "schema_version is missing")
    if message.agent_id != parsed.agent_id:
        raise ContractError(RejectReason.AGENT_MISMATCH, "payload agent_id differs from topic")
    if isinstance(message, Reading) and message.kind != parsed.kind:
        raise ContractError(RejectReason.INVALID_PAYLOAD, "payload kind differs from topic")
    return parsed, message


@dataclass(frozen=True, slots=True)
class RefusedItem:
    """One message of a batch that the contract refuses, while the others go on."""

    index: int
    error: ContractError
    #: The item's own JSON, for the dead letter that keeps it.
    payload: bytes
    #: Its sequence number when it states one: the agent is told it was set aside.
    seq: int | None


@dataclass(frozen=True, slots=True)
class SalvagedBatch:
    """What a batch refused as a whole still holds: its valid messages, each refused
    one with its own reason."""

    agent_id: str
    historical: bool
    messages: list[DataMessage]
    refused: list[RefusedItem]

    def batch(self) -> Batch | None:
        """The valid messages as a Batch (None if there are none)."""
        if not self.messages:
            return None
        return Batch(agent_id=self.agent_id, historical=self.historical, messages=self.messages)


_DATA_MESSAGE: Final = TypeAdapter[DataMessage](Annotated[DataMessage, Field(discriminator="type")])


def salvage_batch(topics: Topics, topic: str, payload: bytes) -> SalvagedBatch | None:
    """A batch ``decode`` refused, message by message: one bad message (an agent's bug,
    a clock out of range) must not sink the good ones it travels with, nor come back
    with them forever. None when the envelope itself is wrong (not JSON, another
    agent's, another schema version, too many messages): then the whole is refused.
    """
    try:
        parsed = topics.parse(topic)
        document = json.loads(payload, parse_constant=_not_json)
    except (ContractError, ValueError, RecursionError):
        return None
    if parsed.channel is not Channel.BATCH or not isinstance(document, dict):
        return None
    items, historical = document.get("messages"), document.get("historical", False)
    if (
        set(document) - {"schema_version", "agent_id", "historical", "messages"}
        or type(document.get("schema_version")) is not int
        or document["schema_version"] != SCHEMA_VERSION
        or document.get("agent_id") != parsed.agent_id
        or not isinstance(historical, bool)
        or not isinstance(items, list)
        or not 1 <= len(items) <= MAX_BATCH_MESSAGES
    ):
        return None
    messages: list[DataMessage] = []
    refused: list[RefusedItem] = []
    for index, item in enumerate(items):
        raw = json.dumps(item).encode()
        try:
            message = _data_message(raw, parsed.agent_id)
        except ContractError as error:
            seq = item.get("seq") if isinstance(item, dict) else None
            known = seq if type(seq) is int and 0 <= seq <= INT64_MAX else None
            refused.append(RefusedItem(index, error, raw, known))
        else:
            messages.append(message)
    return SalvagedBatch(parsed.agent_id, historical, messages, refused)


def _data_message(raw: bytes, agent_id: str) -> DataMessage:
    try:
        message = _DATA_MESSAGE.validate_json(raw, strict=True)
    except ValidationError as exc:
        raise _rejection(raw, exc) from exc
    if "schema_version" not in message.model_fields_set:
        raise ContractError(RejectReason.UNKNOWN_SCHEMA_VERSION, "schema_version is missing")
    if message.agent_id != agent_id:
        raise ContractError(RejectReason.AGENT_MISMATCH, "payload agent_id differs from topic")
    return message


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _json_document(payload: bytes) -> object:
    """The payload parsed as JSON, or the NOT_JSON refusal saying why it is not."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        return ContractError(RejectReason.NOT_JSON, f"not UTF-8: {error.reason}")
    try:
        # NaN and Infinity: Python's json reads them, no JSON document holds them.
        return json.loads(text, parse_constant=_not_json)
    except ValueError as error:  # JSONDecodeError is one
        return ContractError(RejectReason.NOT_JSON, str(error)[:200])
    except RecursionError:  # deeply nested arrays
        return ContractError(RejectReason.NOT_JSON, "nested too deeply")


def _rejection(payload: bytes, exc: ValidationError) -> ContractError:
    """Why a payload failed validation: not JSON, another schema version, another
    agent's message in a batch, or a field (docs/protocol.md, "Limits and rejections")."""
    document = _json_document(payload)
    if isinstance(document, ContractError):
        return document
    if not isinstance(document, dict):
        return ContractError(RejectReason.INVALID_PAYLOAD, "payload is not a JSON object")
    version = document.get("schema_version")
    # Exactly the integer 1: not true, not 1.0, not "1", not missing.
    if type(version) is not int or version != SCHEMA_VERSION:
        return ContractError(
            RejectReason.UNKNOWN_SCHEMA_VERSION, f"schema_version {str(version)[:20]!r}"
        )
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    if first["type"] == "agent_mismatch":
        return ContractError(RejectReason.AGENT_MISMATCH, f"{where}: {first['msg']}")
    return ContractError(RejectReason.INVALID_PAYLOAD, f"{where}: {first['msg']}")
