"""Downloading a release over a flaky link: what arrived is kept in ``<file>.part`` and
the next attempt asks only for the rest (HTTP Range), across retries and reboots."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.errors import DownloadError
from vigie_core.backoff import backoff_delay


def download(
    url: str,
    destination: Path,
    *,
    expected_size: int,
    attempts: int = 20,
    timeout_s: float = 30.0,
    progress: Callable[[int, int], None] = lambda _done, _total: None,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Fetch ``url`` to ``destination``; returns it once ``expected_size`` bytes are in.

    The size is only a stopping rule: the caller checks the hash and signature.
    """
    # Imported here, when a release is downloaded: httpx brings its command line with
    # it (click, rich, pygments: 10 MiB of an idle agent's memory).
    import httpx  # noqa: PLC0415

    partial = destination.with_name(destination.name + ".part")
    rng = rng or random.Random()
    for attempt in range(attempts):
        have = partial.stat().st_size if partial.exists() else 0
        if have > expected_size:
            partial.unlink()  # not the file we expect: start again
            have = 0
        if have == expected_size:
            partial.replace(destination)
            return destination
        try:
            _fetch_from(url, partial, have, expected_size, timeout_s, progress)
        except (httpx.HTTPError, OSError) as exc:
            if attempt == attempts - 1:
                raise DownloadError(f"{url}: {exc}") from None
            sleep(backoff_delay(attempt, 1.0, 60.0, rng))
    raise DownloadError(f"{url}: still incomplete after {attempts} attempts")


def _fetch_from(
    url: str,
    partial: Path,
    offset: int,
    total: int,
    timeout_s: float,
    progress: Callable[[int, int], None],
) -> None:
    import httpx  # noqa: PLC0415 - see download()

    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with httpx.stream("GET", url, headers=headers, timeout=timeout_s) as response:
        if response.status_code == 200 and offset:
            offset = 0  # the server ignored the range: take it from the start
        elif response.status_code not in (200, 206):
            raise httpx.HTTPStatusError(
                f"status {response.status_code}", request=response.request, response=response
            )
        with partial.open("r+b" if offset else "wb") as handle:
            handle.seek(offset)
            handle.truncate()
            done = offset
            for chunk in response.iter_bytes():
                handle.write(chunk)
                done += len(chunk)
                progress(done, total)
            handle.flush()
