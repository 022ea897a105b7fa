"""To and from the wire: compact UTF-8 JSON, validated strictly, every refusal typed.

``decode`` is what the fleet (and the agent, for what it receives) runs on every
message; it never raises anything but :class:`~vigie_core.errors.ContractError`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from pydantic import ValidationError

from vigie_core.contract.data import Batch, DataMessage, Event, HealthReport, Reading, StoredAck
from vigie_core.contract.model import SCHEMA_VERSION, ContractModel
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
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(RejectReason.NOT_JSON, f"not UTF-8: {exc.reason}") from exc
    model = (
        _STATE_MODELS[(parsed.channel, parsed.item)]
        if parsed.item is not None
        else _CHANNEL_MODELS[parsed.channel]
    )
    try:
        # One parse on the hot path; the reason is worked out only for rejects.
        message = model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise _rejection(text, exc) from exc
    # Every model of the two tables above is one of these (narrows the type).
    assert isinstance(message, AgentState | DataMessage | Batch | StoredAck | StateMessage)  # noqa: S101
    if message.agent_id != parsed.agent_id:
        raise ContractError(RejectReason.AGENT_MISMATCH, "payload agent_id differs from topic")
    if isinstance(message, Reading) and message.kind != parsed.kind:
        raise ContractError(RejectReason.INVALID_PAYLOAD, "payload kind differs from topic")
    return parsed, message


def _rejection(text: str, exc: ValidationError) -> ContractError:
    """Why a payload failed validation: not JSON, another schema version, or a field."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        return ContractError(RejectReason.NOT_JSON, str(error)[:200])
    except RecursionError:  # deeply nested arrays
        return ContractError(RejectReason.NOT_JSON, "nested too deeply")
    if not isinstance(document, dict):
        return ContractError(RejectReason.INVALID_PAYLOAD, "payload is not a JSON object")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return ContractError(
            RejectReason.UNKNOWN_SCHEMA_VERSION, f"schema_version {str(version)[:20]!r}"
        )
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    return ContractError(RejectReason.INVALID_PAYLOAD, f"{where}: {first['msg']}")
