"""A TCP proxy a test can cut, stall and restore: a bus leaving coverage, a dead link."""

from __future__ import annotations

import contextlib
import socket
import threading

from fleet.devstack.services import free_port


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``cut()`` drops every connection and
    refuses new ones until ``restore()``."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        #: While cut: a socket that holds the port without listening (connections are
        #: refused), so that no outgoing connection takes it as its local port meanwhile.
        self._placeholder: socket.socket | None = None
        self._stalled = threading.Event()
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        self._listen()

    def _bound(self) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        return sock

    def _listen(self) -> None:
        listener = self._bound()
        listener.listen(64)
        with self._lock:
            self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: cut
            if not self._register(listener, client):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                self._close(client)
                continue
            if not self._register(listener, upstream):
                self._close(client)
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _register(self, listener: socket.socket, sock: socket.socket) -> bool:
        """Track ``sock`` so that a cut drops it, unless the cut came first: checked
        under the lock ``cut()`` takes, so no connection accepted just before a cut (or
        while it runs) survives it."""
        with self._lock:
            if self._listener is listener:
                self._sockets.add(sock)
                return True
        self._close(sock)
        return False

    def _close(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        with self._lock:
            self._sockets.discard(sock)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self._stalled.is_set():  # stalled: swallowed, like a dead link
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(sink)

    def cut(self) -> None:
        """No more connectivity: current connections die, new ones are refused."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets = list(self._sockets)
        if listener is not None:
            # shutdown() first: on Linux, close() alone does not wake the thread blocked
            # in accept(), and the socket would go on accepting connections.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            self._placeholder = self._bound()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._stalled.clear()
        if self._listener is None:
            if self._placeholder is not None:
                self._placeholder.close()
                self._placeholder = None
            self._listen()

    def stall(self) -> None:
        """Connections stay open but nothing gets through, in either direction: what a
        client sees as publishes accepted locally and never acknowledged."""
        self._stalled.set()

    def stop(self) -> None:
        self.cut()
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
