"""The fleet's exceptions.

::

    FleetError
    ├── InfluxError                 talking to InfluxDB failed
    │   ├── InfluxUnavailable       transient: connection refused, timeout, 5xx; retry
    │   │   └── InfluxUnauthorized  credentials refused (401/403): data is held, not dropped
    │   └── InfluxRejected          permanent: the server refused the request (4xx)
    └── QueryError                  a CLI query could not be answered (bad argument)

Configuration files raise :class:`edge_agent.contract.DocumentError`, shared with the
agent. httpx exceptions are translated in exactly one place, ``fleet.influx``.
"""


class FleetError(Exception):
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


class QueryError(FleetError):
    """A query could not be built or answered."""
