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

from fleet.errors import InfluxRejected, InfluxUnavailable
from fleet.lineprotocol import Point, encode_batch


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


class InfluxClient:
    """A small synchronous client for one database."""

    def __init__(self, url: str, database: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)

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
        for result in response.json().get("results", []):
            if "error" in result:
                raise InfluxRejected(f"query failed: {result['error']}")
            for item in result.get("series", []):
                series.append(
                    Series(item["name"], item.get("tags", {}), item["columns"], item["values"])
                )
        return series
