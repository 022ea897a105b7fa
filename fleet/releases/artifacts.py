"""Serving release artifacts over HTTP, with Range requests so that a booth on a poor
link resumes a download instead of starting again.

Written by hand because the standard library's ``http.server`` serves no ranges, and
a web framework would be a large dependency for one read-only folder. Any HTTP server
or object store that honours ``Range`` can serve the same folder instead.
"""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path
from typing import Any

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ArtifactServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the service's log

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        path = self.server.resolve(self.path)
        if path is None:
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        header = self.headers.get("Range")
        status = 200
        if header is not None:
            match = _RANGE_RE.match(header.strip())
            if match is None or (not match.group(1) and not match.group(2)):
                self.send_error(416)
                return
            first, last = match.group(1), match.group(2)
            if first:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            else:  # a suffix: the last N bytes
                start = max(0, size - int(last))
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        with path.open("rb") as handle:
            handle.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = handle.read(min(_CHUNK, left))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client went away; it will resume
                left -= len(chunk)


class ArtifactServer(http.server.ThreadingHTTPServer):
    """Serves the files under ``root`` (read-only, no listings, nothing outside it)."""

    daemon_threads = True

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = root.resolve()
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def resolve(self, request_path: str) -> Path | None:
        relative = request_path.split("?", 1)[0].lstrip("/")
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="artifacts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
