"""The chaos suite's own tool: a proxy that really cuts, stalls and restores."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from .proxy import TcpProxy


@pytest.fixture
def echo() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(5)
    yield server.getsockname()[1]
    server.close()


def test_cut_refuses_connections_until_restored(echo: int) -> None:
    proxy = TcpProxy(echo)
    proxy.start()
    first = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    proxy.cut()
    time.sleep(0.1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
    first.settimeout(2)
    # The existing connection was dropped too: end of stream, or a reset.
    with contextlib.suppress(ConnectionResetError):
        assert first.recv(10) == b""
    proxy.restore()
    socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
    proxy.stop()


def test_stall_swallows_traffic_on_open_connections() -> None:
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(1)
    proxy = TcpProxy(upstream.getsockname()[1])
    proxy.start()
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    server, _ = upstream.accept()
    server.settimeout(0.5)
    client.sendall(b"ping")
    assert server.recv(4) == b"ping"
    proxy.stall()
    client.sendall(b"lost")
    with pytest.raises(TimeoutError):
        server.recv(4)
    proxy.stop()
    upstream.close()
