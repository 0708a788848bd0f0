"""The HTTP plumbing the local test servers share: JSON in, JSON out, on 127.0.0.1.

An app answers `handle(method, path, headers, body)` with `(status, payload)` or
`(status, payload, extra_headers)`; `LocalServer` serves it from a daemon thread, as a context
manager, so a test talks to a real server over a real socket (never a mock of the network).
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    server_version = "kanana-eval-test/1"
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' connection pools expect

    def _reply(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = self.server.app.handle(method, self.path, headers, body)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a server bug is still answered, as a 500
            reply = (500, {"error": {"message": f"{type(exc).__name__}: {exc}",
                                     "type": "server_error", "param": None, "code": 500}})
        status, payload, extra = reply if len(reply) == 3 else (*reply, {})
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._reply("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._reply("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep pytest output clean
        return


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up mid-reply (a timeout, a cancelled request): no server error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalServer:
    """`app` served on 127.0.0.1 from a daemon thread; use as a context manager."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 name: str = "test-server") -> None:
        self.app = app
        self.httpd = QuietServer((host, port), JsonHandler)
        self.httpd.app = app  # type: ignore[attr-defined]
        # A short poll interval: `stop()` (httpd.shutdown) waits for it, once per test.
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name=name,
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The base URL an OpenAI client takes (`.../v1`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        stopping = getattr(self.app, "stopping", None)
        if stopping is not None:  # wakes requests the app keeps waiting on purpose
            stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)

    def serve_in_foreground(self, banner: str) -> None:
        """Script mode: print the banner (tests read the URL from it), then serve until killed."""
        print(banner, flush=True)
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
