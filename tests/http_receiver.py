"""A local HTTP receiver for the tests of destinations that POST (http_out): a threading
server on 127.0.0.1 that answers each POST as the test scripts it and keeps what it got."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Script = Callable[[int], tuple[int, dict[str, str], bytes]]


class Seen:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.times: list[float] = []


@contextmanager
def http_server(script: Script) -> Iterator[tuple[str, Seen]]:
    """A threading HTTP server; `script(n)` answers the n-th POST (1-based) with status, headers, body."""
    import time

    seen = Seen()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                seen.requests.append((self.path, dict(self.headers.items()), json.loads(body)))
                seen.times.append(time.monotonic())
                n = len(seen.requests)
            status, headers, answer = script(n)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mch/records", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
