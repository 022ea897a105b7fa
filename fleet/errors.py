"""The fleet's exceptions.

::

    vigie_core.errors.VigieError
    ├── ContractError, DocumentError, TlsError, ReleaseError   shared (vigie_core.errors)
    └── FleetError                  anything the fleet raises on purpose
        ├── InfluxError             talking to InfluxDB failed
        │   ├── InfluxUnavailable   transient: connection refused, timeout, 5xx; retry
        │   │   └── InfluxUnauthorized  credentials refused (401/403): data is held, not dropped
        │   └── InfluxRejected      permanent: the server refused the request (4xx)
        ├── BrokerUnavailable       transient: the broker could not be reached or refused us
        ├── LineProtocolError       permanent: a point that cannot be written as line protocol
        ├── QueryError              permanent: a CLI query could not be answered (bad argument)
        ├── TargetError             permanent: a --target that is malformed or names nobody
        ├── RolloutError            permanent: a rollout request that cannot be carried out
        ├── PkiError                permanent: the CA refused (exists, unknown name, bad CSR)
        └── DevstackError           a local service (demo, tests) could not be started

Configuration files raise :class:`vigie_core.errors.DocumentError`, shared with the
agent. httpx exceptions are translated in exactly one place, ``fleet.storage.influx``;
paho's return codes in ``fleet.mqtt``.
"""

from __future__ import annotations

from vigie_core.errors import VigieError


class FleetError(VigieError):
    """Base of every error the fleet raises on purpose."""


class InfluxError(FleetError):
    """Talking to InfluxDB failed."""


class InfluxUnavailable(InfluxError):  # noqa: N818 - reads better than InfluxUnavailableError
    """InfluxDB could not be reached or is failing; the same request may succeed later."""


class InfluxUnauthorized(InfluxUnavailable):
    """InfluxDB refused our credentials. Nothing written is lost: the ingest holds its
    data as if the server were down (until someone fixes the credentials), and the
    service refuses to start with them."""


class InfluxRejected(InfluxError):  # noqa: N818
    """InfluxDB refused the request; sending it again will not help."""


class BrokerUnavailable(FleetError):  # noqa: N818
    """The broker could not be reached, or refused the connection or a publish."""


class LineProtocolError(FleetError, ValueError):
    """A point that cannot be encoded as line protocol (an empty name, a line break,
    a non-finite number): never sent, it would corrupt the whole write."""


class QueryError(FleetError):
    """A query could not be built or answered."""


class TargetError(FleetError, ValueError):
    """A target that cannot be understood, or that matches no agent (nothing is sent)."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"{target!r}: {reason}" if target else reason)
        self.target = target
        self.reason = reason


class RolloutError(FleetError, ValueError):
    """A rollout request that cannot be carried out (nothing is sent): the option at
    fault, when there is one, and why."""

    def __init__(self, reason: str, *, option: str | None = None) -> None:
        super().__init__(f"{option}: {reason}" if option else reason)
        self.option = option
        self.reason = reason


class PkiError(FleetError):
    """The certificate authority cannot do what was asked (nothing was changed)."""


class DevstackError(FleetError, RuntimeError):
    """A local service could not be started (missing binary, port taken, no answer)."""
