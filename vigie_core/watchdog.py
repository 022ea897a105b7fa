"""systemd's service notifications: ``READY=1`` once started, ``WATCHDOG=1`` while alive.

Under ``Type=notify`` systemd gives the service ``$NOTIFY_SOCKET``, an AF_UNIX datagram
socket (a leading ``@`` names one in the abstract namespace), and with ``WatchdogSec=``
also ``$WATCHDOG_USEC``: a service that sends no ``WATCHDOG=1`` for that long is killed
and, with ``Restart=``, started again. Outside systemd (a terminal, the tests, the demo)
neither is set and every call here does nothing.

The protocol is one datagram of ``KEY=value`` lines (sd_notify(3)), so this is the
whole client: ``sdnotify`` on PyPI is unmaintained, and ``systemd-python`` needs
libsystemd's headers and a C compiler on every booth PC.

Each program pings from the loop that proves it alive (the agent's event loop, once
every outbox thread has answered; the fleet service's main loop), never from a thread
of its own that would go on pinging for a program that has hung.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: Pings per watchdog period: one lost or late still leaves two in time.
PINGS_PER_PERIOD = 3


class Notifier:
    """Tells systemd this process is ready, and still alive."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The socket and the watchdog systemd gave this process, if any.

        ``$WATCHDOG_PID`` names the process systemd watches: the main one, or here also
        its direct child, the agent under ``edge-agent launch`` (whose unit then says
        ``NotifyAccess=all``). Any other process inherited the variables and keeps quiet.
        """
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        watched = environ.get("WATCHDOG_PID", "")
        if watched.isdigit() and int(watched) not in (os.getpid(), os.getppid()):
            return cls(None)
        usec = environ.get("WATCHDOG_USEC", "")
        return cls(address, int(usec) if usec.isdigit() and int(usec) > 0 else None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def ping_interval_s(self) -> float | None:
        """How often to send ``WATCHDOG=1``: a third of systemd's timeout (None: no
        watchdog)."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1e6 / PINGS_PER_PERIOD

    def ready(self) -> None:
        """Start-up is over (``Type=notify`` units count as started from here)."""
        self._send(b"READY=1")

    def alive(self) -> None:
        """Still alive: call it from the loop that proves it."""
        self._send(b"WATCHDOG=1")

    def _send(self, message: bytes) -> None:
        if self._address is None:
            return
        address = self._address
        target = "\0" + address[1:] if address.startswith("@") else address
        # Non-blocking: a reader that is behind must never stall the loop that pings.
        kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        try:
            with socket.socket(socket.AF_UNIX, kind) as sock:
                sock.sendto(message, target)
        except OSError as exc:
            # Said once: systemd acts on the silence anyway (it kills a watched service).
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd at %s: %s", address, exc.strerror or exc)
