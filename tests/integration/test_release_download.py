"""Releases over real HTTP: the artifact server's ranges, a download cut halfway that
resumes where it stopped, and `fleet keys generate` / `fleet release publish`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_agent.updates.checks import check_applicable, check_artifact
from edge_agent.updates.download import download
from fleet.releases.artifacts import ArtifactServer
from tests.chaos.proxy import TcpProxy
from vigie_core.contract.identifiers import AgentKind
from vigie_core.contract.releases import MANIFEST_NAME, SIGNATURE_SUFFIX
from vigie_core.errors import ReleaseError
from vigie_core.signing import load_public_key, verify

from .conftest import run

pytestmark = pytest.mark.integration

DATA = os.urandom(3_000_000)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "store" / "0.3.0"
    folder.mkdir(parents=True)
    (folder / "a.whl").write_bytes(DATA)
    (tmp_path / "secret.txt").write_text("outside the store")
    return tmp_path / "store"


@pytest.fixture
def server(store: Path) -> Iterator[ArtifactServer]:
    running = ArtifactServer(store)
    running.start()
    yield running
    running.stop()


def test_the_artifact_server_serves_ranges_and_nothing_outside_its_folder(
    server: ArtifactServer,
) -> None:
    url = f"{server.url}/0.3.0/a.whl"
    whole = httpx.get(url)
    assert whole.status_code == 200
    assert whole.content == DATA
    part = httpx.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == DATA[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(DATA)}"
    tail = httpx.get(url, headers={"Range": "bytes=-10"})
    assert tail.content == DATA[-10:]
    beyond = httpx.get(url, headers={"Range": f"bytes={len(DATA)}-"})
    assert beyond.status_code == 416
    assert httpx.get(f"{server.url}/../secret.txt").status_code == 404
    assert httpx.get(f"{server.url}/0.3.0/%2e%2e/%2e%2e/secret.txt").status_code == 404
    assert httpx.get(f"{server.url}/0.3.0/").status_code == 404  # no listings


def test_a_download_cut_halfway_resumes_where_it_stopped(
    server: ArtifactServer, tmp_path: Path
) -> None:
    proxy = TcpProxy(int(server.server_address[1]))
    proxy.start()
    seen: list[int] = []
    cut_at: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if not cut_at and done > total // 3:
            cut_at.append(done)
            proxy.cut()  # the bus drives into a valley

    try:
        path = download(
            f"http://127.0.0.1:{proxy.port}/0.3.0/a.whl",
            tmp_path / "a.whl",
            expected_size=len(DATA),
            progress=progress,
            sleep=lambda _: proxy.restore(),  # ...and out of it at the next retry
        )
    finally:
        proxy.stop()
    assert path.read_bytes() == DATA
    assert cut_at
    # After the cut, counting went on from what was kept, not from zero.
    after = seen[seen.index(cut_at[0]) + 1 :]
    assert after
    assert min(after) > len(DATA) // 4
    assert not (tmp_path / "a.whl.part").exists()


def test_keys_and_publish_make_a_release_an_agent_can_verify(tmp_path: Path, store: Path) -> None:
    keys = tmp_path / "keys"
    done = run("fleet", "keys", "generate", "--out", str(keys))
    assert done.returncode == 0, done.stderr
    assert (keys / "release.key").stat().st_mode & 0o777 == 0o600
    wheel = tmp_path / "vigie-0.4.0-py3-none-any.whl"
    wheel.write_bytes(DATA[:5000])
    publish = (
        "fleet",
        "release",
        "publish",
        str(wheel),
        "--version",
        "0.4.0",
        "--key",
        str(keys / "release.key"),
        "--store",
        str(store),
        "--kind",
        "bus",
    )
    done = run(*publish)
    assert done.returncode == 0, done.stderr
    folder = store / "0.4.0"
    document = (folder / MANIFEST_NAME).read_bytes()
    signature = (folder / (MANIFEST_NAME + SIGNATURE_SUFFIX)).read_bytes()
    manifest = verify(document, signature, load_public_key((keys / "release.pub").read_bytes()))
    check_artifact(folder / manifest.artifact, manifest)
    check_applicable(manifest, running="0.3.0", kind=AgentKind.BUS)
    with pytest.raises(ReleaseError, match="not booth"):
        check_applicable(manifest, running="0.3.0", kind=AgentKind.BOOTH)
    # Published releases are immutable; a missing key is a clear error.
    again = run(*publish)
    assert again.returncode == 1
    assert "never replaced" in again.stderr
    other = run(*publish[:5], "0.5.0", "--key", str(tmp_path / "nope.key"), "--store", str(store))
    assert other.returncode == 2
    assert not (store / "0.5.0").exists()
