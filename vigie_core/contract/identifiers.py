"""The identifiers of the contract, and the rules that keep them safe to use.

Identifiers end up in topic levels and InfluxDB tags: a conservative alphabet keeps
MQTT wildcards (``+`` ``#``), level separators (``/``) and control characters out by
construction.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Final

from pydantic import AfterValidator, StringConstraints

IDENTIFIER_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,62}$"
IDENTIFIER_RE: Final = re.compile(IDENTIFIER_PATTERN)
#: An agent, site, device or tag id.
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]

PREFIX_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
PREFIX_RE: Final = re.compile(PREFIX_PATTERN)
DEFAULT_PREFIX: Final = "vigie"


def check_prefix(value: str) -> str:
    """A topic prefix (the first topic level), or ValueError saying what it may hold."""
    if not PREFIX_RE.match(value):
        raise ValueError(
            f"topic prefix {value!r} must be 1 to 64 letters, digits, '_' or '-' "
            "(no '/', '+', '#' or '$')"
        )
    return value


#: The first topic level, validated where it is configured.
TopicPrefix = Annotated[str, AfterValidator(check_prefix)]


class AgentKind(enum.StrEnum):
    """Where the agent runs."""

    BOOTH = "booth"
    BUS = "bus"


_CONSULTATION_RE: Final = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def check_consultation_id(value: str) -> str:
    """An opaque consultation id, or ValueError saying why not (without echoing it).

    The booth's software supplies it so that readings can be grouped per consultation.
    It must be opaque: a UUID or a random token, never something that identifies the
    patient. Long runs of digits only (a social-security number, a phone number) are
    refused for that reason, and so is anything with ``@`` (an e-mail address).
    """
    if not _CONSULTATION_RE.match(value):
        raise ValueError("a consultation id is 8 to 64 letters, digits, '-' or '_'")
    if value.isdigit() and len(value) >= 10:
        raise ValueError("a consultation id made only of digits may be a personal number")
    return value


ConsultationId = Annotated[str, AfterValidator(check_consultation_id)]

#: A SHA-256 digest in lower-case hex.
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
#: A release version as it travels in desired state and rollouts (PEP 440 is checked
#: where a manifest is read).
ReleaseVersion = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z.+!-]{1,64}$")]
#: Where releases are served from.
ReleaseUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,500}$")]

ROLLOUT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ROLLOUT_ID_RE: Final = re.compile(ROLLOUT_ID_PATTERN)
RolloutId = Annotated[str, StringConstraints(pattern=ROLLOUT_ID_PATTERN)]
