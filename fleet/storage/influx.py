"""InfluxDB over its portable v1 HTTP API: ``/write`` (line protocol) and ``/query``.

InfluxDB 1.x serves these natively, 2.x through its v1 compatibility API and 3.x too,
so nothing here ties the fleet to one server generation. httpx errors are translated
to the fleet's exception tree here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from fleet.errors import InfluxRejected, InfluxUnauthorized, InfluxUnavailable
from fleet.storage.lineprotocol import Point, encode_batch


class PointWriter(Protocol):
    """The one thing the ingest loop needs from a database."""

    def write(self, points: Sequence[Point]) -> None: ...

    def write_body(self, body: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a query result: a measurement, its group-by tags and its rows."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


@dataclass(frozen=True, slots=True)
class InfluxCredentials:
    """User and password (1.x, basic auth) or token (2.x and 3.x); neither: no auth.

    Sent in headers only, never in a URL (InfluxDB logs URLs) nor in an error message.
    """

    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None

    def apply(self) -> dict[str, Any]:
        """httpx.Client keyword arguments."""
        if self.token is not None:
            return {"headers": {"Authorization": f"Token {self.token.get_secret_value()}"}}
        if self.username is not None and self.password is not None:
            return {"auth": (self.username, self.password.get_secret_value())}
        return {}

    def describe(self) -> str:
        if self.token is not None:
            return "the token"
        return f"user {self.username!r}" if self.username else "anonymous access"


class InfluxClient:
    """A small synchronous client for one database."""

    def __init__(
        self,
        url: str,
        database: str,
        timeout_s: float = 10.0,
        credentials: InfluxCredentials | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.credentials = credentials or InfluxCredentials()
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, **self.credentials.apply())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InfluxClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise InfluxUnavailable(f"InfluxDB at {self.url} unreachable: {exc}") from exc
        if response.status_code >= 500:
            raise InfluxUnavailable(
                f"InfluxDB at {self.url} failed: {response.status_code} {response.text[:200]}"
            )
        if response.status_code in (401, 403):
            raise InfluxUnauthorized(
                f"InfluxDB at {self.url} refused {self.credentials.describe()} on "
                f"{path} ({response.status_code}): check influxdb.username and its "
                "password file (or the token), and that 'fleet db init' granted access"
            )
        if response.status_code >= 400:
            raise InfluxRejected(
                f"InfluxDB refused {path}: {response.status_code} {response.text[:300]}"
            )
        return response

    def ping(self) -> None:
        self._request("GET", "/ping")

    def create_database(self) -> None:
        """Create the database if it does not exist (idempotent on every version)."""
        self._request("POST", "/query", data={"q": f'CREATE DATABASE "{self.database}"'})

    def execute(self, statement: str) -> None:
        """Run one InfluxQL statement that changes something (POST); raise on its error.

        Statements can carry passwords: they go in the request body, never in the URL.
        """
        self._results(self._request("POST", "/query", data={"q": statement}))

    def _results(self, response: httpx.Response) -> list[dict[str, Any]]:
        """The statements' results; an error in any of them raises (InfluxDB answers
        200 with the error inside the body)."""
        results: list[dict[str, Any]] = response.json().get("results", [])
        for result in results:
            if "error" in result:
                error = str(result["error"])
                if "privilege" in error or "authoriz" in error:
                    raise InfluxUnauthorized(
                        f"InfluxDB refused {self.credentials.describe()}: {error}"
                    )
                raise InfluxRejected(f"InfluxDB refused the statement: {error}")
        return results

    def check_access(self) -> None:
        """Fail now, with a clear reason, if we cannot read this database (wrong
        credentials, no grant, no database): better than at the first write."""
        self.query("SHOW MEASUREMENTS LIMIT 1")

    def write(self, points: Sequence[Point]) -> None:
        if points:
            self.write_body(encode_batch(points))

    def write_body(self, body: bytes) -> None:
        """Write line protocol as it is (a spilled batch)."""
        self._request(
            "POST", "/write", params={"db": self.database, "precision": "ns"}, content=body
        )

    def query(self, influxql: str) -> list[Series]:
        """Run InfluxQL; times come back as integer nanoseconds."""
        response = self._request(
            "GET", "/query", params={"db": self.database, "q": influxql, "epoch": "ns"}
        )
        series: list[Series] = []
        for result in self._results(response):
            for item in result.get("series", []):
                series.append(
                    Series(
                        item.get("name", ""),
                        item.get("tags", {}),
                        item["columns"],
                        item.get("values", []),
                    )
                )
        return series


def influxql_string(value: str) -> str:
    """A single-quoted InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def provision(
    admin: InfluxClient,
    *,
    retention: str,
    writer: tuple[str, SecretStr] | None,
    reader: tuple[str, SecretStr] | None = None,
) -> None:
    """Set a database up (InfluxDB 1.x, with an admin's credentials): the database,
    how long it keeps data, the fleet's user (read and write on this database only)
    and optionally a read-only user for Grafana. Running it again updates passwords
    and the retention, nothing else.

    The retention is set on ``autogen``, the database's default policy, so that every
    query and dashboard keeps working unchanged.
    """
    database = admin.database
    admin.execute(f'CREATE DATABASE "{database}"')
    admin.execute(f'ALTER RETENTION POLICY "autogen" ON "{database}" DURATION {retention} DEFAULT')
    for account, privilege in ((writer, "ALL"), (reader, "READ")):
        if account is None:
            continue
        name, password = account
        secret = influxql_string(password.get_secret_value())
        existing = {
            str(row["user"]) for series in admin.query("SHOW USERS") for row in series.rows()
        }
        if name in existing:
            admin.execute(f'SET PASSWORD FOR "{name}" = {secret}')
        else:
            admin.execute(f'CREATE USER "{name}" WITH PASSWORD {secret}')
        admin.execute(f'GRANT {privilege} ON "{database}" TO "{name}"')
